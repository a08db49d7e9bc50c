//! Tells the integration tests whether they may do what needs root, such as
//! creating network namespaces: `cfg(shoal_root)` when the build runs as
//! root, which is how its tests then run (CI does both as root); and
//! whether tmux is there to drive `shoal chat` in a terminal:
//! `cfg(shoal_tmux)` (CI installs it); and whether the dashboard can be
//! tested in a browser: `cfg(shoal_browser)` when Chromium is on the PATH
//! (CI installs Debian's); and whether Python workers can be tested:
//! `cfg(shoal_python)` when `python3` is on the PATH. Without them those tests are ignored and say
//! why, rather than pass untried.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shoal_root)");
    println!("cargo::rustc-check-cfg=cfg(shoal_tmux)");
    println!("cargo::rustc-check-cfg=cfg(shoal_browser)");
    println!("cargo::rustc-check-cfg=cfg(shoal_python)");
    println!("cargo::rerun-if-changed=build.rs");
    // `sudo cargo test` after a build as a user changes USER: look again.
    println!("cargo::rerun-if-env-changed=USER");
    if effective_uid_is_root() {
        println!("cargo::rustc-cfg=shoal_root");
    }
    println!("cargo::rerun-if-env-changed=PATH");
    if on_path("tmux") {
        println!("cargo::rustc-cfg=shoal_tmux");
    }
    if on_path("chromium") {
        println!("cargo::rustc-cfg=shoal_browser");
    }
    if on_path("python3") {
        println!("cargo::rustc-cfg=shoal_python");
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The second field of the `Uid:` line of `/proc/self/status` (real,
/// effective, saved, filesystem); no procfs means no namespaces either.
fn effective_uid_is_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0")
}
