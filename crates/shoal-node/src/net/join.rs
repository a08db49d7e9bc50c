//! The `--join` addresses, and every other address given by host name.
//!
//! A join address may name its node by IP (`/ip4/10.0.0.1/tcp/7000`) or by
//! host name (`/dns4/shoal-0.shoal/tcp/7000`, `/dns6/…`, `/dns/…`). The event
//! loop dials a join address while the node knows no member; a name is
//! looked up again before every such dial, with the system resolver (what
//! `getent hosts` answers: `/etc/hosts`, the search domains of
//! `/etc/resolv.conf`); Shoal keeps no answer, so a node that restarted
//! with another IP address (a Kubernetes pod, a container) is found again.
//!
//! ```text
//!   rejoin tick ─► Joining::due ─► lookup task (one per name) ─► Joining::looked_up
//!                      │                                                │
//!                      └── IP addresses as they are ──► swarm.dial ◄────┘ a few of its addresses
//! ```
//!
//! A name may stand for many nodes (a headless Kubernetes service lists
//! every pod), this one included: the swarm never dials an address it
//! listens on, so a node skips itself and dials the others.

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use rand::seq::SliceRandom;
use std::io;
use std::net::IpAddr;
use tokio::task::JoinSet;

/// Of the addresses a name resolves to, a node dials at most this many:
/// one member is enough to be let in, and membership introduces the rest,
/// so a name for a whole cluster does not open a connection to each node.
const NAMED_ADDRS_TO_DIAL: usize = 4;
/// Lookups of names dialed once (not join addresses) in flight at once;
/// more are refused.
const MAX_ONE_OFF_LOOKUPS: usize = 16;

/// What a finished lookup was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// The join address at this index.
    Join(usize),
    /// A single dial asked for by the node.
    Once,
}

/// A finished lookup, for [`Joining::looked_up`].
pub struct LookedUp {
    purpose: Purpose,
    addr: Multiaddr,
    found: io::Result<Vec<Multiaddr>>,
}

/// The join addresses, and the lookups of the names among them.
pub struct Joining {
    addrs: Vec<JoinAddr>,
    /// Lookups in flight: at most one per join address, plus a few
    /// one-off dials; aborted when the event loop drops this.
    lookups: JoinSet<LookedUp>,
    one_off_lookups: usize,
}

struct JoinAddr {
    addr: Multiaddr,
    /// Whether its name is being looked up now; a slow resolver does not
    /// pile up lookups of the same name.
    looking_up: bool,
    /// Whether the name's failure to resolve was logged as a warning since
    /// it last resolved: a name that stays unresolvable warns once.
    warned: bool,
}

impl Joining {
    pub fn new(addrs: Vec<Multiaddr>) -> Self {
        Joining {
            addrs: addrs
                .into_iter()
                .map(|addr| JoinAddr {
                    addr,
                    looking_up: false,
                    warned: false,
                })
                .collect(),
            lookups: JoinSet::new(),
            one_off_lookups: 0,
        }
    }

    /// Starts looking up the join addresses that carry a name (those not
    /// being looked up already), and returns those that need no lookup, to
    /// be dialed now.
    pub fn due(&mut self) -> Vec<Multiaddr> {
        let mut dial_now = Vec::new();
        for (index, join) in self.addrs.iter_mut().enumerate() {
            if host_name(&join.addr).is_none() {
                dial_now.push(join.addr.clone());
            } else if !join.looking_up {
                join.looking_up = true;
                spawn_lookup(&mut self.lookups, Purpose::Join(index), join.addr.clone());
            }
        }
        dial_now
    }

    /// Resolves `addr` if it carries a name (its addresses come back from
    /// [`Joining::next`]); returns it if it can be dialed as it is.
    pub fn dial_once(&mut self, addr: Multiaddr) -> Option<Multiaddr> {
        if host_name(&addr).is_none() {
            return Some(addr);
        }
        if self.one_off_lookups >= MAX_ONE_OFF_LOOKUPS {
            tracing::warn!(%addr, "too many host names being looked up; not dialed");
            return None;
        }
        self.one_off_lookups += 1;
        spawn_lookup(&mut self.lookups, Purpose::Once, addr);
        None
    }

    /// Whether a lookup is in flight, so [`Joining::next`] has something to wait for.
    pub fn is_looking_up(&self) -> bool {
        !self.lookups.is_empty()
    }

    /// The next finished lookup. Cancel-safe: a lookup that finishes while
    /// the caller is elsewhere waits for the next call.
    pub async fn next(&mut self) -> Option<LookedUp> {
        loop {
            match self.lookups.join_next().await? {
                Ok(looked_up) => return Some(looked_up),
                // A lookup only ends early when the loop shuts down.
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => continue,
            }
        }
    }

    /// Takes a finished lookup in: logs what went wrong (once per streak of
    /// failures for a join address) and returns the addresses to dial.
    pub fn looked_up(&mut self, looked_up: LookedUp) -> Vec<Multiaddr> {
        let LookedUp {
            purpose,
            addr,
            found,
        } = looked_up;
        let index = match purpose {
            Purpose::Join(index) => index,
            Purpose::Once => {
                self.one_off_lookups -= 1;
                return found.unwrap_or_else(|error| {
                    tracing::warn!(%addr, %error, "cannot resolve the host name; not dialed");
                    Vec::new()
                });
            }
        };
        let join = &mut self.addrs[index];
        join.looking_up = false;
        match found {
            Ok(found) => {
                if std::mem::take(&mut join.warned) {
                    tracing::info!(%addr, "the join address's host name resolves now");
                }
                tracing::debug!(%addr, ?found, "resolved a join address");
                found
            }
            Err(error) if !join.warned => {
                join.warned = true;
                tracing::warn!(%addr, %error,
                    "cannot resolve the join address's host name; retrying until it resolves \
                     (check the name, e.g. with `getent hosts`, and that the node it names has started)");
                Vec::new()
            }
            Err(error) => {
                tracing::debug!(%addr, %error, "the join address's host name still does not resolve");
                Vec::new()
            }
        }
    }
}

fn spawn_lookup(lookups: &mut JoinSet<LookedUp>, purpose: Purpose, addr: Multiaddr) {
    lookups.spawn(async move {
        let found = resolve(&addr).await;
        LookedUp {
            purpose,
            addr,
            found,
        }
    });
}

/// Which addresses a name may stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
    Any,
}

impl Family {
    fn admits(self, ip: &IpAddr) -> bool {
        match self {
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
            Family::Any => true,
        }
    }
}

/// The host name `addr` starts with (`/dns4/<name>/…`, `/dns6/…`, `/dns/…`),
/// and the addresses it may stand for.
fn host_name(addr: &Multiaddr) -> Option<(String, Family)> {
    match addr.iter().next()? {
        Protocol::Dns4(name) => Some((name.to_string(), Family::V4)),
        Protocol::Dns6(name) => Some((name.to_string(), Family::V6)),
        Protocol::Dns(name) => Some((name.to_string(), Family::Any)),
        _ => None,
    }
}

/// Whether `addr` names its host (`/dns`, `/dns4`, `/dns6`, `/dnsaddr`)
/// rather than giving its IP address.
pub fn has_host_name(addr: &Multiaddr) -> bool {
    addr.iter().any(|part| {
        matches!(
            part,
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_)
        )
    })
}

/// `addr` with its host name replaced by the IP addresses the system
/// resolver gives for it (at most [`NAMED_ADDRS_TO_DIAL`] of them, picked
/// at random so newcomers spread over a cluster's nodes); `addr` itself if
/// it has no name.
async fn resolve(addr: &Multiaddr) -> io::Result<Vec<Multiaddr>> {
    let Some((name, family)) = host_name(addr) else {
        return Ok(vec![addr.clone()]);
    };
    // The port only shapes the answer's form; the lookup is of the name.
    let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in found.map(|socket| socket.ip()) {
        if family.admits(&ip) && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        let wanted = match family {
            Family::V4 => "IPv4 ",
            Family::V6 => "IPv6 ",
            Family::Any => "",
        };
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} has no {wanted}address"),
        ));
    }
    ips.shuffle(&mut rand::rng());
    ips.truncate(NAMED_ADDRS_TO_DIAL);
    Ok(ips.into_iter().map(|ip| with_ip(addr, ip)).collect())
}

/// `addr` with its first part (the host name) replaced by `ip`.
fn with_ip(addr: &Multiaddr, ip: IpAddr) -> Multiaddr {
    std::iter::once(Protocol::from(ip))
        .chain(addr.iter().skip(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn a_name_resolves_to_ip_addresses_of_its_family_keeping_the_rest() {
        let peer = libp2p::PeerId::random();
        let named = addr(&format!("/dns4/localhost/tcp/7000/p2p/{peer}"));
        let found = resolve(&named).await.unwrap();
        assert_eq!(
            found,
            vec![addr(&format!("/ip4/127.0.0.1/tcp/7000/p2p/{peer}"))]
        );
        let any = resolve(&addr("/dns/localhost/tcp/7000")).await.unwrap();
        assert!(
            !any.is_empty() && any.iter().all(|a| !has_host_name(a)),
            "{any:?}"
        );
        let plain = addr("/ip4/10.0.0.1/tcp/7000");
        assert_eq!(resolve(&plain).await.unwrap(), vec![plain]);
    }

    #[test]
    fn an_unresolvable_join_name_warns_once_per_streak_and_is_looked_up_again() {
        let name = addr("/dns4/node1/tcp/7000");
        let ip = addr("/ip4/10.0.0.1/tcp/7000");
        let mut joining = Joining::new(vec![name.clone(), ip.clone()]);
        // Lookups are spawned on this runtime but never run: the test hands
        // `looked_up` the outcomes itself.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        assert_eq!(
            joining.due(),
            vec![ip.clone()],
            "an IP address is dialed at once"
        );
        assert!(joining.addrs[0].looking_up);
        assert_eq!(joining.due(), vec![ip], "one lookup of a name at a time");
        let failed = || LookedUp {
            purpose: Purpose::Join(0),
            addr: name.clone(),
            found: Err(io::Error::new(io::ErrorKind::NotFound, "no such name")),
        };
        assert!(joining.looked_up(failed()).is_empty());
        assert!(joining.addrs[0].warned && !joining.addrs[0].looking_up);
        assert!(joining.looked_up(failed()).is_empty());
        assert!(joining.addrs[0].warned, "still failing: no second warning");
        let resolved = addr("/ip4/10.0.0.2/tcp/7000");
        let found = joining.looked_up(LookedUp {
            purpose: Purpose::Join(0),
            addr: name,
            found: Ok(vec![resolved.clone()]),
        });
        assert_eq!(found, vec![resolved]);
        assert!(!joining.addrs[0].warned, "a new failure warns again");
    }

    #[test]
    fn names_are_recognised_wherever_they_are() {
        assert!(has_host_name(&addr("/dns4/a/tcp/1")));
        assert!(has_host_name(&addr("/dns6/a/tcp/1")));
        assert!(has_host_name(&addr("/dns/a/tcp/1")));
        assert!(has_host_name(&addr("/dnsaddr/a")));
        assert!(!has_host_name(&addr("/ip4/127.0.0.1/tcp/1")));
        assert_eq!(
            with_ip(&addr("/dns6/a/tcp/1"), "::1".parse().unwrap()),
            addr("/ip6/::1/tcp/1")
        );
    }
}
