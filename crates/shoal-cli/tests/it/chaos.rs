//! The short chaos run: five real nodes under kills, pauses and (as root)
//! partitions, with calls, jobs and document writes running throughout;
//! and a rolling restart of the five, each drained and restarted twice.
//! The long run is `shoal chaos --duration 600` (see the README).
//!
//! Exactly one of the two tests runs on any machine; the other is ignored
//! and says why.

use serde_json::Value;
use std::process::Command;

#[test]
#[cfg_attr(
    not(shoal_root),
    ignore = "needs root: a partition puts each node in its own network namespace"
)]
fn a_short_chaos_run_with_partitions_loses_and_duplicates_nothing() {
    short_chaos_run("kill,pause,partition");
}

/// What a machine without root can run; as root the run above covers it.
#[test]
#[cfg_attr(
    shoal_root,
    ignore = "as root, the run with partitions also kills and pauses nodes"
)]
fn a_short_chaos_run_without_partitions_loses_and_duplicates_nothing() {
    short_chaos_run("kill,pause");
}

/// Each node drained (SIGTERM) and restarted in turn, twice, under the
/// same workload: nothing lost or duplicated, and no job waited for a
/// lease to run out.
#[test]
fn a_rolling_restart_loses_nothing_and_no_job_waits_for_a_lease() {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "chaos",
            "--nodes",
            "5",
            "--duration",
            "120",
            "--clients",
            "4",
        ])
        .args([
            "--faults",
            "restart",
            "--max-faults",
            "10",
            "--interval-ms",
            "300",
        ])
        .arg("--json")
        .output()
        .expect("shoal chaos runs");
    let (stdout, figures) = figures_of(&output);
    assert_eq!(figures["faults_by_kind"]["restart"], 10, "{stdout}");
    assert_eq!(figures["fault_failures"], 0, "{stdout}");
    assert_eq!(figures["jobs_waited_for_lease"], 0, "{stdout}");
    assert_eq!(figures["lost"], 0, "{stdout}");
    assert_eq!(figures["duplicates"], 0, "{stdout}");
    assert_eq!(figures["linearizability_violations"], 0, "{stdout}");
    assert!(
        figures["jobs_completed_once"].as_u64().unwrap() > 0,
        "{stdout}"
    );
}

/// The run's output and its JSON figures (the last line); panics with the
/// output if it failed.
fn figures_of(output: &std::process::Output) -> (String, Value) {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "shoal chaos failed:\n{stdout}\n{stderr}"
    );
    let figures: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON figures as the last line:\n{stdout}"));
    (stdout, figures)
}

fn short_chaos_run(faults: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "chaos",
            "--nodes",
            "5",
            "--duration",
            "20",
            "--clients",
            "6",
        ])
        .args(["--faults", faults, "--interval-ms", "500", "--json"])
        .output()
        .expect("shoal chaos runs");
    let (stdout, figures) = figures_of(&output);
    let count = |name: &str| {
        figures[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name}"))
    };

    // What the user relies on: nothing acknowledged went missing or ran twice.
    assert_eq!(count("lost"), 0, "{stdout}");
    assert_eq!(count("duplicates"), 0, "{stdout}");
    assert_eq!(count("linearizability_violations"), 0, "{stdout}");
    // And the run really exercised the cluster under faults.
    assert!(count("faults") >= 3, "too few faults:\n{stdout}");
    assert!(count("calls_ok") > 0, "{stdout}");
    assert!(count("jobs_completed_once") > 0, "{stdout}");
    assert!(count("doc_writes_acknowledged") > 0, "{stdout}");
    assert!(count("doc_reads_ok") > 0, "{stdout}");
    assert!(
        figures["drain_s"].is_number(),
        "the queue never drained:\n{stdout}"
    );
}
