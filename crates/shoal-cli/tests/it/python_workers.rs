//! Functions written in Python (`clients/python`), tested with pytest
//! against real `shoal node` processes and real worker processes: called
//! through any node, errors with their codes, job progress, a worker
//! SIGKILLed mid-call, a worker stopped with SIGTERM, the asyncio client.
//! The package and pytest go into a virtual environment under `target/`,
//! from PyPI, on first use.

use std::path::Path;
use std::process::Command;

#[test]
#[cfg_attr(
    not(shoal_python),
    ignore = "needs python3 (with venv and pip), found on PATH when the tests were built"
)]
fn python_functions_and_clients_pass_their_pytest_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join("target/python-venv");
    if !venv.join("bin/pytest").exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(made.success(), "python3 -m venv failed");
    }
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("{}[test]", root.join("clients/python").display()))
        .status()
        .expect("pip runs");
    assert!(installed.success(), "pip install ./clients/python failed");
    let output = Command::new(venv.join("bin/pytest"))
        .args(["-q", "-p", "no:cacheprovider"])
        .current_dir(root.join("clients/python"))
        .env("SHOAL_BIN", env!("CARGO_BIN_EXE_shoal"))
        .output()
        .expect("pytest runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "pytest failed:\n{report}");
}
