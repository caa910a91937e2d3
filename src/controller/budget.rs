//! The DCS API budget per access key (the gateway counts and locks by access key):
//! a token bucket, a pause for everyone after a 429 with Retry-After, a circuit
//! breaker after repeated 5xx or transport failures (with half-open probes), and at
//! most one attempt per five minutes after a 401/403 unless the credentials change.
//!
//! The gateway locks an access key after five failed signatures in a row, whatever
//! the secret key. So credentials not yet proven (no success with that exact secret)
//! go one call at a time per access key, and after a 401/403 every unproven secret
//! for that access key waits five minutes; a proven one keeps working.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::dcs::DcsError;
use crate::plan::AUTH_RETRY;

/// Consecutive 5xx/transport failures that open the circuit.
pub const BREAKER_THRESHOLD: u32 = 5;
/// How long an open circuit first stays open; doubles on a failed probe.
pub const BREAKER_OPEN: Duration = Duration::from_secs(30);
/// At most one default poll interval: a healed service must be seen again within a
/// poll or two, whatever happened before.
const BREAKER_MAX_OPEN: Duration = Duration::from_secs(60);
/// Without a Retry-After, a 429 pauses callers this long.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(5);

/// Whether a call may go out now.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Go,
    /// Not now, for a reason the user should see (locked key, throttled, circuit
    /// open): report this error as the observation.
    Refused(DcsError),
    /// The local token bucket is empty: try again after this long; nothing to report.
    Wait(Duration),
}

#[derive(Debug, Clone)]
struct KeyState {
    tokens: f64,
    refilled_at: DateTime<Utc>,
    /// Credential fingerprints that had a success with this access key.
    proven: std::collections::HashSet<String>,
    /// An unproven credential's call is under way: others with this key wait for it.
    unproven_in_flight: bool,
    auth_blocked: Option<(DateTime<Utc>, DcsError)>,
    paused: Option<(DateTime<Utc>, DcsError)>,
    server_failures: u32,
    open: Option<(DateTime<Utc>, DcsError)>,
    open_for: Duration,
    probing: bool,
}

#[derive(Debug)]
pub struct ApiBudget {
    rate_per_second: f64,
    burst: f64,
    keys: Mutex<HashMap<String, KeyState>>,
}

impl Default for ApiBudget {
    fn default() -> Self {
        Self::new(20.0, 40)
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

impl ApiBudget {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        Self {
            rate_per_second: rate_per_second.max(0.001),
            burst: f64::from(burst.max(1)),
            keys: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeyState>> {
        self.keys
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Asks for one call with access key `key` and credentials `fingerprint` at
    /// `now`; a `Go` spends a token.
    pub fn admit(&self, key: &str, fingerprint: &str, now: DateTime<Utc>) -> Admission {
        let mut keys = self.lock();
        let state = keys.entry(key.to_string()).or_insert_with(|| KeyState {
            tokens: self.burst,
            refilled_at: now,
            proven: Default::default(),
            unproven_in_flight: false,
            auth_blocked: None,
            paused: None,
            server_failures: 0,
            open: None,
            open_for: BREAKER_OPEN,
            probing: false,
        });
        let proven = state.proven.contains(fingerprint);
        if let Some((until, error)) = &state.auth_blocked {
            if now < *until && !proven {
                return Admission::Refused(error.clone());
            }
            if now >= *until {
                state.auth_blocked = None;
            }
        }
        if !proven && state.unproven_in_flight {
            return Admission::Wait(Duration::from_millis(500));
        }
        if let Some((until, error)) = &state.paused {
            if now < *until {
                return Admission::Refused(error.clone());
            }
            state.paused = None;
        }
        if let Some((until, error)) = &state.open {
            // Half-open: after the open time one probe goes; the rest wait for it.
            if now < *until || state.probing {
                return Admission::Refused(error.clone());
            }
            state.probing = true;
        }
        let elapsed = (now - state.refilled_at).to_std().unwrap_or(Duration::ZERO);
        state.tokens =
            (state.tokens + elapsed.as_secs_f64() * self.rate_per_second).min(self.burst);
        state.refilled_at = now;
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            if !proven {
                state.unproven_in_flight = true;
            }
            Admission::Go
        } else {
            if state.probing {
                state.probing = false;
            }
            Admission::Wait(Duration::from_secs_f64(
                (1.0 - state.tokens) / self.rate_per_second,
            ))
        }
    }

    /// Learns from an answer to a call that `admit` let go.
    pub fn record<T>(
        &self,
        key: &str,
        fingerprint: &str,
        result: &Result<T, DcsError>,
        now: DateTime<Utc>,
    ) {
        let mut keys = self.lock();
        let Some(state) = keys.get_mut(key) else {
            return;
        };
        let probing = std::mem::replace(&mut state.probing, false);
        if !state.proven.contains(fingerprint) {
            state.unproven_in_flight = false;
        }
        match result {
            Ok(_) => {
                state.proven.insert(fingerprint.to_string());
                state.server_failures = 0;
                state.open = None;
                state.open_for = BREAKER_OPEN;
            }
            Err(error @ (DcsError::Unauthorized(_) | DcsError::Forbidden(_))) => {
                // Revoked or wrong: this secret is no longer proven.
                state.proven.remove(fingerprint);
                state.auth_blocked = Some((now + delta(AUTH_RETRY), error.clone()));
            }
            Err(error @ DcsError::Throttled { retry_after, .. }) => {
                let pause = retry_after
                    .unwrap_or(DEFAULT_THROTTLE_PAUSE)
                    .max(Duration::from_secs(1));
                state.paused = Some((now + delta(pause), error.clone()));
            }
            Err(error @ (DcsError::Server(_) | DcsError::Transport { .. })) => {
                state.server_failures += 1;
                if probing {
                    state.open_for = (state.open_for * 2).min(BREAKER_MAX_OPEN);
                    state.open = Some((now + delta(state.open_for), error.clone()));
                } else if state.server_failures >= BREAKER_THRESHOLD {
                    state.open = Some((now + delta(state.open_for), error.clone()));
                }
            }
            Err(_) => {}
        }
    }

    /// A credentials Secret holding this key changed: its new content gets a try.
    pub fn credentials_changed(&self, key: &str) {
        if let Some(state) = self.lock().get_mut(key) {
            state.auth_blocked = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::ApiError;

    fn api(status: u16) -> ApiError {
        ApiError {
            status,
            ..Default::default()
        }
    }

    /// A budget in which the credentials `fp` have already worked for `ak`.
    fn proven(rate: f64, burst: u32, now: DateTime<Utc>) -> ApiBudget {
        let budget = ApiBudget::new(rate, burst);
        assert_eq!(
            budget.admit("ak", "fp", now - TimeDelta::hours(1)),
            Admission::Go
        );
        budget.record::<()>("ak", "fp", &Ok(()), now - TimeDelta::hours(1));
        budget
    }

    #[test]
    fn token_bucket_limits_the_rate() {
        let now = Utc::now();
        let budget = proven(2.0, 3, now);
        let goes = (0..10)
            .filter(|_| budget.admit("ak", "fp", now) == Admission::Go)
            .count();
        assert_eq!(goes, 3, "the burst");
        assert!(matches!(budget.admit("ak", "fp", now), Admission::Wait(_)));
        assert_eq!(budget.admit("other", "fp2", now), Admission::Go, "per key");
        let later = now + TimeDelta::seconds(1);
        let goes = (0..10)
            .filter(|_| budget.admit("ak", "fp", later) == Admission::Go)
            .count();
        assert_eq!(goes, 2, "two a second");
    }

    #[test]
    fn auth_failure_blocks_the_key_for_five_minutes() {
        let budget = ApiBudget::new(100.0, 100);
        let now = Utc::now();
        assert_eq!(budget.admit("ak", "fp", now), Admission::Go);
        budget.record::<()>("ak", "fp", &Err(DcsError::Unauthorized(api(401))), now);
        assert!(matches!(
            budget.admit("ak", "fp", now + TimeDelta::seconds(299)),
            Admission::Refused(DcsError::Unauthorized(_))
        ));
        assert_eq!(
            budget.admit("ak", "fp", now + TimeDelta::seconds(300)),
            Admission::Go
        );
        budget.record::<()>("ak", "fp", &Err(DcsError::Forbidden(api(403))), now);
        budget.credentials_changed("ak");
        assert_eq!(budget.admit("ak", "fp", now), Admission::Go);
    }

    #[test]
    fn unproven_secrets_go_one_at_a_time_and_a_failure_blocks_them_all() {
        let budget = ApiBudget::new(100.0, 100);
        let now = Utc::now();
        assert_eq!(budget.admit("ak", "wrong-1", now), Admission::Go);
        assert!(
            matches!(budget.admit("ak", "wrong-1", now), Admission::Wait(_)),
            "one at a time"
        );
        assert!(
            matches!(budget.admit("ak", "wrong-2", now), Admission::Wait(_)),
            "whatever the secret"
        );
        budget.record::<()>("ak", "wrong-1", &Err(DcsError::Unauthorized(api(401))), now);
        assert!(matches!(
            budget.admit("ak", "wrong-2", now),
            Admission::Refused(_)
        ));
        // A proven secret for the same key keeps working (its successes also reset
        // the gateway's count of failures in a row).
        let budget = ApiBudget::new(100.0, 100);
        assert_eq!(budget.admit("ak", "right", now), Admission::Go);
        budget.record::<()>("ak", "right", &Ok(()), now);
        assert_eq!(budget.admit("ak", "right", now), Admission::Go);
        assert_eq!(
            budget.admit("ak", "right", now),
            Admission::Go,
            "proven: no longer one at a time"
        );
        assert_eq!(budget.admit("ak", "wrong", now), Admission::Go);
        budget.record::<()>("ak", "wrong", &Err(DcsError::Unauthorized(api(401))), now);
        assert!(matches!(
            budget.admit("ak", "wrong", now),
            Admission::Refused(_)
        ));
        assert_eq!(budget.admit("ak", "right", now), Admission::Go);
    }

    #[test]
    fn throttling_pauses_every_caller_of_the_key() {
        let budget = ApiBudget::new(100.0, 100);
        let now = Utc::now();
        budget.admit("ak", "fp", now);
        let throttled = DcsError::Throttled {
            retry_after: Some(Duration::from_secs(7)),
            api: api(429),
        };
        budget.record::<()>("ak", "fp", &Err(throttled), now);
        assert!(matches!(
            budget.admit("ak", "fp", now + TimeDelta::seconds(6)),
            Admission::Refused(DcsError::Throttled { .. })
        ));
        assert_eq!(
            budget.admit("ak", "fp", now + TimeDelta::seconds(7)),
            Admission::Go
        );
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let mut now = Utc::now();
        let budget = proven(1000.0, 1000, now);
        let failure: Result<(), DcsError> = Err(DcsError::Server(api(503)));
        for _ in 0..BREAKER_THRESHOLD {
            assert_eq!(budget.admit("ak", "fp", now), Admission::Go);
            budget.record("ak", "fp", &failure, now);
        }
        assert!(matches!(
            budget.admit("ak", "fp", now),
            Admission::Refused(DcsError::Server(_))
        ));
        now += TimeDelta::seconds(30);
        assert_eq!(
            budget.admit("ak", "fp", now),
            Admission::Go,
            "one half-open probe"
        );
        assert!(
            matches!(budget.admit("ak", "fp", now), Admission::Refused(_)),
            "only one"
        );
        budget.record("ak", "fp", &failure, now);
        now += TimeDelta::seconds(30);
        assert!(
            matches!(budget.admit("ak", "fp", now), Admission::Refused(_)),
            "open twice as long"
        );
        now += TimeDelta::seconds(30);
        assert_eq!(budget.admit("ak", "fp", now), Admission::Go);
        budget.record::<()>("ak", "fp", &Ok(()), now);
        assert_eq!(budget.admit("ak", "fp", now), Admission::Go, "closed again");
        assert_eq!(budget.admit("ak", "fp", now), Admission::Go);
    }
}
