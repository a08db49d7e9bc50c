//! The web dashboard in headless Chromium, driven by playwright-core
//! (`dashboard/tests/dashboard.test.mjs`): three real `shoal node`
//! processes; the page lists them, a job submitted from its form runs to
//! 100 %, a SIGKILLed node turns dead on it, the token prompt keeps a
//! guarded node's data out of sight, and the page weighs under 300 KB.
//! Screenshots land in `target/dashboard-screenshots/`.

use crate::common::npm_ci;
use std::path::Path;
use std::process::Command;

#[test]
#[cfg_attr(
    not(shoal_browser),
    ignore = "needs Chromium (apt-get install chromium), found on PATH when the tests were built"
)]
fn the_dashboard_works_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dashboard = root.join("dashboard");
    npm_ci(&dashboard, "playwright-core");
    let output = Command::new("node")
        .args(["--test", "--test-reporter=spec", "tests/"])
        .current_dir(&dashboard)
        .env("SHOAL_BIN", env!("CARGO_BIN_EXE_shoal"))
        .env(
            "SHOAL_SCREENSHOTS",
            root.join("target/dashboard-screenshots"),
        )
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the browser tests failed:\n{report}"
    );
}
