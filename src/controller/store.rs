//! The shared observation store: DCS answers keyed by endpoint, project, credentials
//! fingerprint and instance, filled by ShowInstance calls and by batch list calls;
//! and the [`InstanceView`] over the watch caches that metrics and pruning read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use chrono::{DateTime, Utc};

use crate::crd::DcsInstance;
use crate::dcs::model::{DcsStatus, StringOrList};
use crate::dcs::{DcsError, Instance, StatusClass};
use crate::intern::Atom;
use crate::plan::Observation;

/// Whose answer an observation is. Two DcsInstances share an answer only when all
/// four parts match, so a namespace with different credentials never reads another's.
/// Shared strings: the keys of one batch group share their endpoint, project and
/// fingerprint, and the uid bindings share the stored keys' parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObservationKey {
    pub endpoint: Arc<str>,
    pub project_id: Arc<str>,
    pub credentials_fingerprint: Arc<str>,
    pub instance_id: Arc<str>,
}

/// One key's state, compact: 10 000 of these are the store.
#[derive(Debug, Clone)]
struct Entry {
    at: DateTime<Utc>,
    /// Why the last attempt failed; None when it succeeded (its answer is
    /// `last_good`). Shared: a failed list call tells every member of its group the
    /// same error (one allocation for 10 000 members, not 10 000).
    failure: Option<Arc<DcsError>>,
    consecutive_failures: u32,
    /// The last successful answer, for status when the last attempt succeeded and
    /// for merging list items (which lack some fields).
    last_good: Option<Arc<Kept>>,
    /// Whether the last good answer came from ShowInstance (it has `error_code`).
    last_good_is_full: bool,
}

impl Entry {
    /// The observation this entry stands for (None only if it holds neither an
    /// answer nor a failure, which the store never builds).
    fn observation(&self, key: &ObservationKey) -> Option<Observation> {
        let result = match (&self.failure, &self.last_good) {
            (Some(error), _) => Err(error.as_ref().clone()),
            (None, Some(kept)) => Ok(Arc::new(kept.restore(&key.instance_id))),
            (None, None) => return None,
        };
        Some(Observation {
            at: self.at,
            result,
            consecutive_failures: self.consecutive_failures,
        })
    }

    fn succeeded(&self) -> bool {
        self.failure.is_none() && self.last_good.is_some()
    }
}

/// What the store keeps of an answer: the fields [`Instance::slim`] keeps, as
/// 16-byte strings (shared where values repeat, boxed where they do not), so an
/// answer costs a third of a whole `Instance`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    instance_id: AnsweredId,
    name: Option<Box<str>>,
    engine: Option<Atom>,
    engine_version: Option<Atom>,
    capacity: Option<i64>,
    capacity_minor: Option<Atom>,
    ip: Option<Box<str>>,
    port: Option<i64>,
    status: Option<Atom>,
    task: Option<Box<str>>,
    max_memory: Option<i64>,
    used_memory: Option<i64>,
    resource_spec_code: Option<Atom>,
    spec_code: Option<Atom>,
    error_code: Option<Atom>,
    available_zones: Option<Box<StringOrList>>,
    description: Option<Box<str>>,
    maintain_begin: Option<Atom>,
    maintain_end: Option<Atom>,
    security_group_id: Option<Atom>,
    vpc_id: Option<Atom>,
    subnet_id: Option<Atom>,
}

/// The id an answer carried: almost always the key's (asked by id, or listed and
/// matched by id), so kept only when it differs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AnsweredId {
    Key,
    Absent,
    Other(Box<str>),
}

impl Kept {
    fn of(instance: Instance, key_id: &str) -> Self {
        let boxed = |text: Option<String>| text.map(String::into_boxed_str);
        let shared = |text: Option<String>| text.map(Atom::from);
        let Instance {
            instance_id,
            name,
            engine,
            engine_version,
            capacity,
            capacity_minor,
            ip,
            port,
            status,
            task,
            max_memory,
            used_memory,
            resource_spec_code,
            spec_code,
            error_code,
            available_zones,
            description,
            maintain_begin,
            maintain_end,
            security_group_id,
            vpc_id,
            subnet_id,
            ..
        } = instance.slim();
        Self {
            instance_id: match instance_id {
                Some(id) if id == key_id => AnsweredId::Key,
                Some(id) => AnsweredId::Other(id.into_boxed_str()),
                None => AnsweredId::Absent,
            },
            name: boxed(name),
            engine,
            engine_version,
            capacity,
            capacity_minor: shared(capacity_minor),
            ip: boxed(ip),
            port,
            status,
            task: boxed(task),
            max_memory,
            used_memory,
            resource_spec_code,
            spec_code,
            error_code: shared(error_code),
            available_zones: available_zones.map(Box::new),
            description: boxed(description),
            maintain_begin,
            maintain_end,
            security_group_id,
            vpc_id,
            subnet_id,
        }
    }

    /// The answer as [`Instance::slim`] made it (`key_id`: its key's instance id).
    fn restore(&self, key_id: &str) -> Instance {
        let text = |value: &Option<Box<str>>| value.as_deref().map(str::to_string);
        let shared_text = |value: &Option<Atom>| value.as_deref().map(str::to_string);
        Instance {
            instance_id: match &self.instance_id {
                AnsweredId::Key => Some(key_id.to_string()),
                AnsweredId::Absent => None,
                AnsweredId::Other(id) => Some(id.to_string()),
            },
            name: text(&self.name),
            engine: self.engine.clone(),
            engine_version: self.engine_version.clone(),
            capacity: self.capacity,
            capacity_minor: shared_text(&self.capacity_minor),
            ip: text(&self.ip),
            port: self.port,
            status: self.status.clone(),
            task: text(&self.task),
            max_memory: self.max_memory,
            used_memory: self.used_memory,
            resource_spec_code: self.resource_spec_code.clone(),
            spec_code: self.spec_code.clone(),
            error_code: shared_text(&self.error_code),
            available_zones: self.available_zones.as_deref().cloned(),
            description: text(&self.description),
            maintain_begin: self.maintain_begin.clone(),
            maintain_end: self.maintain_end.clone(),
            security_group_id: self.security_group_id.clone(),
            vpc_id: self.vpc_id.clone(),
            subnet_id: self.subnet_id.clone(),
            ..Instance::default()
        }
    }

    /// Equal for everything status and the Secret mirror (used memory moves every
    /// poll and lives in metrics only).
    fn same_for_status(&self, other: &Kept) -> bool {
        Kept {
            used_memory: None,
            ..self.clone()
        } == Kept {
            used_memory: None,
            ..other.clone()
        }
    }
}

/// What merging one list item changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// Anything that status or the Secret mirror differs from before.
    pub changed: bool,
    /// ShowInstance must tell the rest (the item's status needs its `error_code`).
    pub needs_show: bool,
}

#[derive(Debug, Default)]
pub struct ObservationStore {
    entries: Mutex<HashMap<ObservationKey, Entry>>,
    /// Keys whose next observation must be a ShowInstance: the list cannot tell a new
    /// fault's `error_code`, nor whether a missing instance still exists.
    show_wanted: Mutex<std::collections::HashSet<ObservationKey>>,
    /// Which key each DcsInstance (by uid) read last, for the per-instance metrics.
    keys_by_uid: Mutex<HashMap<String, ObservationKey>>,
}

impl ObservationStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObservationKey, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn get(&self, key: &ObservationKey) -> Option<Observation> {
        self.lock()
            .get(key)
            .and_then(|entry| entry.observation(key))
    }

    fn wanted(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<ObservationKey>> {
        self.show_wanted
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// True when the list asked for a ShowInstance of this key.
    pub fn show_requested(&self, key: &ObservationKey) -> bool {
        self.wanted().contains(key)
    }

    /// Asks that the next observation of this key be a ShowInstance.
    pub fn request_show(&self, key: ObservationKey) {
        self.wanted().insert(key);
    }

    /// Records a ShowInstance attempt. A failure keeps counting from the previous
    /// entry, so backoff grows.
    pub fn record(
        &self,
        key: ObservationKey,
        result: Result<Instance, DcsError>,
        at: DateTime<Utc>,
    ) -> Observation {
        self.record_shared(key, result.map_err(Arc::new), at)
    }

    fn record_shared(
        &self,
        key: ObservationKey,
        result: Result<Instance, Arc<DcsError>>,
        at: DateTime<Utc>,
    ) -> Observation {
        let mut entries = self.lock();
        // The stored key is kept: its strings are shared with the uid bindings.
        let (key, previous) = match entries.remove_entry(&key) {
            Some((stored, previous)) => (stored, Some(previous)),
            None => (key, None),
        };
        let (entry, observation) = match result {
            Ok(instance) => {
                let kept = Kept::of(instance, &key.instance_id);
                let observation = Observation {
                    at,
                    result: Ok(Arc::new(kept.restore(&key.instance_id))),
                    consecutive_failures: 0,
                };
                let entry = Entry {
                    at,
                    failure: None,
                    consecutive_failures: 0,
                    last_good: Some(Arc::new(kept)),
                    last_good_is_full: true,
                };
                (entry, observation)
            }
            Err(error) => {
                let failures = previous
                    .as_ref()
                    .map_or(0, |e| e.consecutive_failures)
                    .saturating_add(1);
                let observation = Observation {
                    at,
                    result: Err(error.as_ref().clone()),
                    consecutive_failures: failures,
                };
                let entry = Entry {
                    at,
                    failure: Some(error),
                    consecutive_failures: failures,
                    last_good: previous.as_ref().and_then(|e| e.last_good.clone()),
                    last_good_is_full: previous.as_ref().is_some_and(|e| e.last_good_is_full),
                };
                (entry, observation)
            }
        };
        // A ShowInstance answered the list's question, whatever it said.
        self.wanted().remove(&key);
        entries.insert(key, entry);
        observation
    }

    /// Merges a list item over the last answer for its key: fields the list does not
    /// carry keep their last value. A degraded or failed status the last full answer
    /// did not already explain asks for a ShowInstance (only it has `error_code`).
    pub fn record_listed(&self, key: ObservationKey, item: Instance, at: DateTime<Utc>) -> Listed {
        let mut entries = self.lock();
        let previous = entries.get(&key);
        let item = item.slim();
        let merged = Kept::of(
            match previous.and_then(|e| e.last_good.as_deref()) {
                Some(last) => item.merged_over(&last.restore(&key.instance_id)),
                None => item,
            },
            &key.instance_id,
        );
        let changed = !previous.is_some_and(|e| {
            e.succeeded()
                && e.last_good
                    .as_deref()
                    .is_some_and(|before| before.same_for_status(&merged))
        });
        let class = merged
            .status
            .as_deref()
            .map(|status| DcsStatus::parse(status).class());
        let explained = previous.is_some_and(|e| {
            e.last_good_is_full
                && e.last_good
                    .as_ref()
                    .is_some_and(|last| last.status == merged.status)
        });
        let needs_show =
            matches!(class, Some(StatusClass::Degraded | StatusClass::Failed)) && !explained;
        let full = explained && previous.is_some_and(|e| e.last_good_is_full);
        if needs_show {
            self.wanted().insert(key.clone());
        }
        entries.insert(
            key,
            Entry {
                at,
                failure: None,
                consecutive_failures: 0,
                last_good: Some(Arc::new(merged)),
                last_good_is_full: full,
            },
        );
        Listed {
            changed,
            needs_show,
        }
    }

    /// Records a failed list call for one member of its group (the error is shared
    /// by all of them).
    pub fn record_list_failure(
        &self,
        key: ObservationKey,
        error: &Arc<DcsError>,
        at: DateTime<Utc>,
    ) -> bool {
        let before_ok = self.get(&key).is_none_or(|o| o.result.is_ok());
        self.record_shared(key, Err(error.clone()), at);
        before_ok
    }

    pub fn bind(&self, uid: &str, key: &ObservationKey) {
        let mut keys = self
            .keys_by_uid
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // The stored entry's key, when there is one: its parts are shared. A binding
        // made before the entry existed holds copies until then.
        let stored = self
            .lock()
            .get_key_value(key)
            .map(|(stored, _)| stored.clone());
        match (keys.get_mut(uid), stored) {
            (Some(bound), Some(stored)) if *bound == stored => {
                if !Arc::ptr_eq(&bound.instance_id, &stored.instance_id) {
                    *bound = stored;
                }
            }
            (Some(bound), None) if bound == key => {}
            (_, stored) => {
                keys.insert(uid.to_string(), stored.unwrap_or_else(|| key.clone()));
            }
        }
    }

    /// The memory in use of the last successful answer for the DcsInstance with
    /// this uid (what the per-instance gauge shows).
    pub fn used_memory_bytes_for(&self, uid: &str) -> Option<u64> {
        let key = self
            .keys_by_uid
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(uid)
            .cloned()?;
        let entries = self.lock();
        let entry = entries.get(&key).filter(|e| e.succeeded())?;
        crate::dcs::model::mb_to_bytes(entry.last_good.as_deref()?.used_memory?)
    }

    /// (entries, uid bindings, ShowInstance requests).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let bindings = self
            .keys_by_uid
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len();
        (self.lock().len(), bindings, self.wanted().len())
    }

    /// Drops entries and bindings no live DcsInstance uses any more.
    pub fn retain_uids(&self, live: &std::collections::HashSet<&str>) {
        let mut keys = self
            .keys_by_uid
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        keys.retain(|uid, _| live.contains(uid.as_str()));
        // Borrowed while the bindings stay locked (bindings before entries, as
        // everywhere): no copy of 10 000 keys.
        let used: std::collections::HashSet<&ObservationKey> = keys.values().collect();
        self.lock().retain(|key, _| used.contains(key));
        self.wanted().retain(|key| used.contains(key));
    }
}

/// What the per-instance gauges read at scrape time: the DcsInstance watch caches
/// (one per served namespace) and the observation store.
#[derive(Default)]
pub struct InstanceView {
    stores: Mutex<Vec<Store<DcsInstance>>>,
    pub observations: Arc<ObservationStore>,
}

impl std::fmt::Debug for InstanceView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceView")
    }
}

impl InstanceView {
    pub fn new(observations: Arc<ObservationStore>) -> Self {
        Self {
            stores: Mutex::default(),
            observations,
        }
    }

    /// Whether a DcsInstance is still in any watch cache.
    /// (With no watch cache registered, as in unit tests, everything counts as alive.)
    pub fn contains(&self, object: &kube::runtime::reflector::ObjectRef<DcsInstance>) -> bool {
        let stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        stores.is_empty() || stores.iter().any(|store| store.get(object).is_some())
    }

    /// The uids of every DcsInstance in the watch caches.
    pub fn uids(&self) -> std::collections::HashSet<String> {
        self.instances()
            .iter()
            .filter_map(|obj| obj.uid())
            .collect()
    }

    pub fn add_store(&self, store: Store<DcsInstance>) {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(store);
    }

    /// Every DcsInstance in the watch caches.
    pub fn instances(&self) -> Vec<Arc<DcsInstance>> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|store| store.state())
            .collect()
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

    fn instance(status: &str, ip: &str) -> Instance {
        Instance {
            instance_id: Some("i".into()),
            status: Some(status.into()),
            ip: Some(ip.into()),
            ..Instance::default()
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
    fn list_items_merge_and_report_changes() {
        let store = ObservationStore::default();
        let now = Utc::now();
        let mut full = instance("RUNNING", "10.0.0.1");
        full.available_zones = Some(crate::dcs::model::StringOrList::Many(vec!["az1".into()]));
        store.record(key("a"), Ok(full), now);
        let same = store.record_listed(key("a"), instance("RUNNING", "10.0.0.1"), now);
        assert_eq!(
            same,
            Listed {
                changed: false,
                needs_show: false
            }
        );
        let kept = store.get(&key("a")).unwrap().result.unwrap();
        assert_eq!(
            kept.available_zones(),
            vec!["az1"],
            "fields the list lacks are kept"
        );
        let mut used = instance("RUNNING", "10.0.0.1");
        used.used_memory = Some(99);
        assert!(
            !store.record_listed(key("a"), used, now).changed,
            "used memory is not a change"
        );
        assert!(
            store
                .record_listed(key("a"), instance("RUNNING", "10.0.0.2"), now)
                .changed
        );
    }

    #[test]
    fn a_new_fault_asks_for_show_instance_once() {
        let store = ObservationStore::default();
        let now = Utc::now();
        store.record(key("a"), Ok(instance("RUNNING", "10.0.0.1")), now);
        let listed = store.record_listed(key("a"), instance("ERROR", "10.0.0.1"), now);
        assert!(listed.changed && listed.needs_show);
        assert!(store.show_requested(&key("a")));
        let mut shown = instance("ERROR", "10.0.0.1");
        shown.error_code = Some("dcs.03.0017".into());
        store.record(key("a"), Ok(shown), now);
        assert!(!store.show_requested(&key("a")));
        // The next list of the same fault is explained: no new ShowInstance, code kept.
        let again = store.record_listed(key("a"), instance("ERROR", "10.0.0.1"), now);
        assert_eq!(
            again,
            Listed {
                changed: false,
                needs_show: false
            }
        );
        let kept = store.get(&key("a")).unwrap().result.unwrap();
        assert_eq!(kept.error_code.as_deref(), Some("dcs.03.0017"));
    }

    #[test]
    fn retain_drops_what_no_instance_uses() {
        let store = ObservationStore::default();
        let now = Utc::now();
        store.record(key("a"), Ok(instance("RUNNING", "x")), now);
        store.record(key("b"), Ok(instance("RUNNING", "x")), now);
        store.bind("uid-a", &key("a"));
        store.bind("uid-b", &key("b"));
        store.retain_uids(&["uid-a"].into_iter().collect());
        assert!(store.get(&key("a")).is_some());
        assert!(store.get(&key("b")).is_none());
        assert!(store.used_memory_bytes_for("uid-b").is_none());
    }

    #[test]
    fn an_answer_is_kept_compact_and_restored_as_slim_made_it() {
        let full: Instance = serde_json::from_value(serde_json::json!({
            "instance_id": "i-1", "name": "orders", "engine": "Redis", "engine_version": "6.0",
            "capacity": 2, "capacity_minor": ".5", "ip": "10.0.0.1", "port": 6379,
            "status": "RUNNING", "task": "EXTEND", "max_memory": 1536, "used_memory": 12,
            "resource_spec_code": "redis.ha.xu1.large.r2.2", "spec_code": "s",
            "error_code": "DCS.4001", "available_zones": ["az1", "az2"],
            "description": "d", "maintain_begin": "02:00:00", "maintain_end": "06:00:00",
            "security_group_id": "sg", "vpc_id": "vpc", "subnet_id": "subnet",
            "vpc_name": "dropped", "user_name": "dropped", "order_id": "dropped",
        }))
        .unwrap();
        let id = full.instance_id.clone().unwrap_or_default();
        let kept = Kept::of(full.clone(), &id);
        assert_eq!(kept.instance_id, AnsweredId::Key, "not kept twice");
        assert_eq!(kept.restore(&id), full.clone().slim());
        assert!(kept.restore(&id).vpc_name.is_none());
        // An answer about another id, or none, is told as it was.
        assert_eq!(
            Kept::of(full.clone(), "other").restore("other"),
            full.clone().slim()
        );
        let anonymous = Instance {
            instance_id: None,
            ..full.clone()
        };
        assert_eq!(
            Kept::of(anonymous.clone(), &id).restore(&id),
            anonymous.slim()
        );
        assert!(std::mem::size_of::<Kept>() * 2 < std::mem::size_of::<Instance>());
    }
}
