//! The shared observation store (DCS answers keyed by endpoint, project, credentials
//! fingerprint and instance) and the per-access-key gate that keeps failed
//! authentication to one attempt per five minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};

use crate::dcs::{DcsError, Instance};
use crate::plan::{AUTH_RETRY, Observation};

/// Whose answer an observation is. Two DcsInstances share an answer only when all
/// four parts match, so a namespace with different credentials never reads another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObservationKey {
    pub endpoint: String,
    pub project_id: String,
    pub credentials_fingerprint: String,
    pub instance_id: String,
}

#[derive(Debug, Default)]
pub struct ObservationStore {
    entries: Mutex<HashMap<ObservationKey, Observation>>,
    /// Which key each DcsInstance (by uid) read last, for the per-instance metrics.
    keys_by_uid: Mutex<HashMap<String, ObservationKey>>,
}

impl ObservationStore {
    pub fn bind(&self, uid: &str, key: &ObservationKey) {
        let mut keys = self
            .keys_by_uid
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if keys.get(uid) != Some(key) {
            keys.insert(uid.to_string(), key.clone());
        }
    }

    /// Forgets a deleted DcsInstance's binding.
    pub fn unbind(&self, uid: &str) {
        self.keys_by_uid
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(uid);
    }

    /// The last successful answer for the DcsInstance with this uid.
    pub fn latest_for(&self, uid: &str) -> Option<Arc<Instance>> {
        let key = self
            .keys_by_uid
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(uid)
            .cloned()?;
        self.get(&key)?.result.ok()
    }

    pub fn get(&self, key: &ObservationKey) -> Option<Observation> {
        self.lock().get(key).cloned()
    }

    /// Records an attempt. A failure keeps counting from the previous entry, so
    /// backoff grows; a list answer (later) merges over the last ShowInstance answer.
    pub fn record(
        &self,
        key: ObservationKey,
        result: Result<Instance, DcsError>,
        at: DateTime<Utc>,
    ) -> Observation {
        let mut entries = self.lock();
        let previous_failures = entries
            .get(&key)
            .map(|o| o.consecutive_failures)
            .unwrap_or(0);
        let observation = match result {
            Ok(instance) => Observation {
                at,
                result: Ok(Arc::new(instance)),
                consecutive_failures: 0,
            },
            Err(error) => Observation {
                at,
                result: Err(error),
                consecutive_failures: previous_failures.saturating_add(1),
            },
        };
        entries.insert(key, observation.clone());
        observation
    }

    pub fn remove_instance(&self, instance_id: &str) {
        self.lock().retain(|key, _| key.instance_id != instance_id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObservationKey, Observation>> {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The API gateway locks an access key after five failed signatures, whatever the
/// secret key. After one 401/403 for an access key, nobody calls with that key for
/// five minutes, unless a credentials Secret holding it changed (a rotation).
#[derive(Debug, Default)]
pub struct AuthGate {
    blocked: Mutex<HashMap<String, Blocked>>,
}

#[derive(Debug, Clone)]
struct Blocked {
    until: DateTime<Utc>,
    error: DcsError,
}

impl AuthGate {
    /// The error to report instead of calling, while the key is blocked.
    pub fn blocked(&self, gate_key: &str, now: DateTime<Utc>) -> Option<DcsError> {
        let blocked = self.lock();
        blocked
            .get(gate_key)
            .filter(|b| now < b.until)
            .map(|b| b.error.clone())
    }

    pub fn record(&self, gate_key: &str, result: &Result<Instance, DcsError>, now: DateTime<Utc>) {
        if let Err(error @ (DcsError::Unauthorized(_) | DcsError::Forbidden(_))) = result {
            let until = now + TimeDelta::from_std(AUTH_RETRY).unwrap_or(TimeDelta::MAX);
            self.lock().insert(
                gate_key.to_string(),
                Blocked {
                    until,
                    error: error.clone(),
                },
            );
        }
    }

    /// A credentials Secret holding this key changed: allow one new attempt now.
    pub fn credentials_changed(&self, gate_key: &str) {
        self.lock().remove(gate_key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Blocked>> {
        self.blocked
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::ApiError;

    fn key(fp: &str) -> ObservationKey {
        ObservationKey {
            endpoint: "e".into(),
            project_id: "p".into(),
            credentials_fingerprint: fp.into(),
            instance_id: "i".into(),
        }
    }

    #[test]
    fn failures_count_and_reset() {
        let store = ObservationStore::default();
        let now = Utc::now();
        let err = || {
            Err(DcsError::Server(ApiError {
                status: 503,
                ..Default::default()
            }))
        };
        assert_eq!(store.record(key("a"), err(), now).consecutive_failures, 1);
        assert_eq!(store.record(key("a"), err(), now).consecutive_failures, 2);
        assert_eq!(
            store
                .record(key("a"), Ok(Instance::default()), now)
                .consecutive_failures,
            0
        );
        assert!(
            store.get(&key("b")).is_none(),
            "other credentials see nothing"
        );
    }

    #[test]
    fn gate_blocks_for_five_minutes_and_opens_on_rotation() {
        let gate = AuthGate::default();
        let now = Utc::now();
        let unauthorized = Err(DcsError::Unauthorized(ApiError {
            status: 401,
            ..Default::default()
        }));
        gate.record("AK", &unauthorized, now);
        assert!(gate.blocked("AK", now + TimeDelta::seconds(299)).is_some());
        assert!(gate.blocked("AK", now + TimeDelta::seconds(300)).is_none());
        assert!(gate.blocked("OTHER", now).is_none());
        gate.credentials_changed("AK");
        assert!(gate.blocked("AK", now).is_none());
        gate.record("AK", &Ok(Instance::default()), now);
        assert!(gate.blocked("AK", now).is_none());
    }
}
