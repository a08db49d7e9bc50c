//! Running one test in a process of its own. Every test of this binary is
//! a thread of one process, so a test that measures the process (its
//! resident memory) would count the others too; it runs alone in a child.

use std::process::Command;

/// Set in the child: the name of the test it runs alone.
const ALONE: &str = "SHOAL_TEST_ALONE";

/// Runs `body` in a child process of this test binary in which `test` (its
/// name as `cargo test` lists it) is the only test; in that child, runs it.
pub fn run_alone(test: &str, body: impl FnOnce()) {
    if std::env::var(ALONE).as_deref() == Ok(test) {
        body();
        return;
    }
    let binary = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(binary)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, test)
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{test} failed in its own process");
    // A misspelt name matches no test, and libtest calls that a success.
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in its own process"
    );
}
