//! `shoal demo`, the README's first command, as a user runs it.

use std::process::Command;

#[test]
fn demo_computes_pi_on_a_local_cluster() {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["demo", "--samples", "20000000", "--chunks", "30"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let estimate: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pi ≈ "))
        .expect("an estimate line")
        .trim()
        .parse()
        .unwrap();
    assert!((estimate - std::f64::consts::PI).abs() < 1e-3, "{estimate}");
    let chunks: u64 = stdout
        .lines()
        .filter(|l| l.starts_with("node "))
        .map(|l| {
            l.split(": ")
                .nth(1)
                .unwrap()
                .trim_end_matches(" chunks")
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(chunks, 30, "every chunk ran once: {stdout}");
}

#[test]
fn demo_fib_is_right() {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["demo", "fib", "80"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("fib(80) = 23416728348467685"), "{stdout}");
}
