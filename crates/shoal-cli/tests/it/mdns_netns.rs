//! mDNS discovery, tested where its multicast cannot leave: two network
//! namespaces joined by a veth pair, one `shoal node --mdns` in each, and
//! no `--join` — they must find each other on their own.
//!
//! Needs root (to create namespaces); elsewhere it is ignored, with the
//! reason, since mDNS must never be tried on a real interface.

use crate::common::wait_until;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Two namespaces and the veth pair between them; removed when dropped.
struct Link {
    names: [String; 2],
    addrs: [String; 2],
}

impl Link {
    /// Creates both namespaces and the link; `None` if `ip` failed.
    fn create() -> Option<Link> {
        let tag = std::process::id() % 10_000;
        let names = [format!("shoal-a-{tag}"), format!("shoal-b-{tag}")];
        let subnet = format!("10.231.{}", tag % 250);
        let addrs = [format!("{subnet}.1"), format!("{subnet}.2")];
        let link = Link { names, addrs };
        let (a, b) = (&link.names[0], &link.names[1]);
        let veth = [format!("sva{tag}"), format!("svb{tag}")];
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", a],
            vec!["netns", "add", b],
            vec![
                "link", "add", &veth[0], "type", "veth", "peer", "name", &veth[1],
            ],
            vec!["link", "set", &veth[0], "netns", a],
            vec!["link", "set", &veth[1], "netns", b],
        ];
        for step in steps {
            if !ip(&step) {
                return None;
            }
        }
        for (i, ns) in link.names.iter().enumerate() {
            let cidr = format!("{}/24", link.addrs[i]);
            let ok = ip(&["-n", ns, "addr", "add", &cidr, "dev", &veth[i]])
                && ip(&["-n", ns, "link", "set", &veth[i], "up", "multicast", "on"])
                && ip(&["-n", ns, "link", "set", "lo", "up"]);
            if !ok {
                return None;
            }
        }
        Some(link)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so both.
        for ns in &self.names {
            ip(&["netns", "del", ns]);
        }
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A node in namespace `ns`, listening on `addr`; killed when dropped.
struct NsNode {
    child: Child,
    peer_id: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NsNode {
    fn start(ns: &str, addr: &str) -> NsNode {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("node.log");
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_shoal"),
                "node",
                "--mdns",
            ])
            .args(["--listen", &format!("/ip4/{addr}/tcp/0")])
            .args(["--http", "off", "--slots", "1", "--heartbeat-ms", "200"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let peer_id = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("peer_id="))
            .unwrap_or_else(|| panic!("no ready line, got {line:?}"))
            .to_string();
        NsNode {
            child,
            peer_id,
            log,
            _dir: dir,
        }
    }

    fn saw_join_of(&self, other: &NsNode) -> bool {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .any(|l| l.contains("node_joined") && l.contains(&other.peer_id))
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
#[cfg_attr(not(shoal_root), ignore = "needs root: creates network namespaces")]
async fn nodes_in_separate_network_namespaces_find_each_other_by_mdns() {
    let link = Link::create().expect("network namespaces and a veth pair (needs iproute2)");
    let a = NsNode::start(&link.names[0], &link.addrs[0]);
    let b = NsNode::start(&link.names[1], &link.addrs[1]);
    wait_until(
        Duration::from_secs(30),
        "the nodes to find each other by mDNS",
        async || {
            if a.saw_join_of(&b) && b.saw_join_of(&a) {
                Ok(())
            } else {
                Err(format!(
                    "\n--- a ---\n{}\n--- b ---\n{}",
                    std::fs::read_to_string(&a.log).unwrap_or_default(),
                    std::fs::read_to_string(&b.log).unwrap_or_default()
                ))
            }
        },
    )
    .await;
}
