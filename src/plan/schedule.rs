//! PURE: when to look again. Adaptive polling by status class, backoff after
//! failures, batch fallback, staleness, and the requeue a plan asks for.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{AUTH_RETRY, FIRST_BACKOFF, Observation, TRANSITIONAL_POLL};
use crate::clock::later;
use crate::dcs::DcsError;
use crate::dcs::model::StatusClass;

/// A stable per-object jitter of 0-10 % of the poll interval, so objects created
/// together do not poll together, and one object's due time never drifts.
pub fn jitter(poll_interval: Duration, uid: &str) -> Duration {
    let hash = uid.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    poll_interval.mul_f64((hash % 1000) as f64 / 10_000.0)
}

/// How much longer than the poll interval a degraded or failed instance waits:
/// it is not about to change by itself.
pub const DEGRADED_FACTOR: u32 = 2;
/// With batch polling, a group's list call refreshes stable instances every tick;
/// a DcsInstance calls DCS alone only when its answer is this many intervals old
/// (the list stopped covering it).
pub const BATCH_FALLBACK_FACTOR: u32 = 3;

/// How long after an observation the next one is due. `batched`: a list call per
/// credentials group keeps stable answers fresh, so only transitional states (and
/// a list that stopped covering the instance) call DCS alone.
pub fn poll_delay(
    observation: &Observation,
    poll_interval: Duration,
    uid: &str,
    batched: bool,
) -> Duration {
    let stable = |factor: u32| {
        poll_interval
            .saturating_mul(factor)
            .saturating_add(jitter(poll_interval, uid))
    };
    match &observation.result {
        Ok(instance) => match instance.status().map(|s| s.class()) {
            Some(StatusClass::Transitional | StatusClass::Unknown) | None => TRANSITIONAL_POLL,
            _ if batched => stable(BATCH_FALLBACK_FACTOR),
            Some(StatusClass::Ready) => stable(1),
            Some(StatusClass::Degraded | StatusClass::Failed) => stable(DEGRADED_FACTOR),
        },
        Err(error) if error.is_instance_not_found() => stable(1),
        Err(DcsError::Unauthorized(_) | DcsError::Forbidden(_)) => AUTH_RETRY,
        Err(_) if batched => stable(BATCH_FALLBACK_FACTOR),
        Err(error) => {
            let exponent = observation.consecutive_failures.saturating_sub(1).min(16);
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << exponent)
                .min(poll_interval.max(FIRST_BACKOFF));
            match error {
                DcsError::Throttled {
                    retry_after: Some(after),
                    ..
                } => backoff.max(*after),
                _ => backoff,
            }
        }
    }
}

/// When the next observation is due.
pub fn next_poll_at(
    observation: &Observation,
    poll_interval: Duration,
    uid: &str,
    batched: bool,
) -> DateTime<Utc> {
    later(
        observation.at,
        poll_delay(observation, poll_interval, uid, batched),
    )
}

/// A successful answer older than this is `Stale`: three poll intervals plus the
/// largest jitter, past the point where the batch fallback would have asked again.
pub fn stale_after(poll_interval: Duration) -> Duration {
    poll_interval
        .saturating_mul(BATCH_FALLBACK_FACTOR)
        .saturating_add(poll_interval / 10)
}

/// How long until the next reconcile: the next poll, or a poll interval when no
/// observation applies (missing credentials); None for an invalid spec, which waits
/// for the spec to change.
pub fn requeue_after(
    observation: Option<&Observation>,
    credentials_missing: bool,
    spec_invalid: bool,
    poll_interval: Duration,
    uid: &str,
    batched: bool,
    now: DateTime<Utc>,
) -> Option<Duration> {
    if spec_invalid {
        return None;
    }
    let due = match observation {
        Some(observation) if !credentials_missing => {
            next_poll_at(observation, poll_interval, uid, batched)
        }
        _ => later(now, poll_interval),
    };
    Some(
        due.signed_duration_since(now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1)),
    )
}

/// True when a successful answer observed at `at` is too old to stand for now.
pub fn is_stale(at: DateTime<Utc>, poll_interval: Duration, now: DateTime<Utc>) -> bool {
    now.signed_duration_since(at)
        .to_std()
        .unwrap_or(Duration::ZERO)
        > stale_after(poll_interval)
}
