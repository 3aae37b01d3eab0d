//! Logging refused connections without letting a client that retries fill the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

/// Refusals remembered, to log each kind once per [`REFUSAL_LOG_EVERY`].
pub const REFUSALS_REMEMBERED_MAX: usize = 256;
/// How often one address's refusals of one kind reach the log at warn level.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Logs a refusal at warn level once per address and kind of reason in [`REFUSAL_LOG_EVERY`],
/// at debug level otherwise. It remembers at most [`REFUSALS_REMEMBERED_MAX`] of them.
pub struct Refusals {
    what: &'static str,
    last: Mutex<HashMap<String, Instant>>,
}

impl Refusals {
    /// `what` is the log message, such as "peer connection refused".
    pub fn new(what: &'static str) -> Refusals {
        Refusals {
            what,
            last: Mutex::new(HashMap::new()),
        }
    }

    pub fn log(&self, who: IpAddr, reason: &str) {
        // Numbers in a reason (times, ports, serials) differ from try to try; the kind stays.
        let kind: String = reason
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        let key = format!("{who} {kind}");
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() >= REFUSALS_REMEMBERED_MAX {
            last.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_EVERY);
            if last.len() >= REFUSALS_REMEMBERED_MAX {
                last.clear();
            }
        }
        let due = last
            .get(&key)
            .is_none_or(|at| now.duration_since(*at) >= REFUSAL_LOG_EVERY);
        if due {
            last.insert(key, now);
            warn!(%who, %reason, "{}", self.what);
        } else {
            debug!(%who, %reason, "{}", self.what);
        }
    }
}
