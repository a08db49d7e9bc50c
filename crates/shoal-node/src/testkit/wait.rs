//! Waiting for a condition instead of sleeping: a test polls what a user
//! could observe until it holds, and fails naming what it waited for and
//! what it last saw.

use std::fmt::Display;
use std::time::Duration;
use tokio::time::Instant;

/// How often a condition is checked: far below anything a test waits for,
/// far above the cost of checking.
const POLL: Duration = Duration::from_millis(20);

/// What a probe returns: `true`, `Some(value)` or `Ok(value)` once its
/// condition holds; `false`, `None` or `Err(what it saw)` while it does not.
pub trait Check {
    type Output;
    fn check(self) -> Result<Self::Output, String>;
}

impl Check for bool {
    type Output = ();
    fn check(self) -> Result<(), String> {
        if self { Ok(()) } else { Err(String::new()) }
    }
}

impl<T> Check for Option<T> {
    type Output = T;
    fn check(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T, E: Display> Check for Result<T, E> {
    type Output = T;
    fn check(self) -> Result<T, String> {
        self.map_err(|seen| seen.to_string())
    }
}

/// Checks `probe` until its condition holds and returns what it found; if
/// it still does not hold after `timeout` (a probe that never answers
/// included), fails the test naming `what` it waited for.
pub async fn wait_until<C: Check>(
    timeout: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> C,
) -> C::Output {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match tokio::time::timeout_at(deadline, probe()).await {
            Ok(outcome) => match outcome.check() {
                Ok(found) => return found,
                Err(seen) => seen,
            },
            Err(_) => "no answer from the check itself".to_string(),
        };
        if Instant::now() >= deadline {
            let seen = if seen.is_empty() {
                String::new()
            } else {
                format!("; last saw: {seen}")
            };
            panic!("waited {timeout:?} for {what}{seen}");
        }
        tokio::time::sleep(POLL).await;
    }
}
