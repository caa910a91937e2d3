//! Batch polling: DcsInstances are grouped by (endpoint, project, full credentials);
//! per group and tick one paged list call fills the observation store for all of
//! them, and only the objects whose answer changed are reconciled. Steady state
//! costs ceil(N/1000) DCS calls per group and tick instead of N.
//!
//! Each group polls in its own supervised task, so a slow or hostile endpoint
//! delays only its own group. A group spans namespaces only when they hold the very
//! same credentials (one owner); its list calls spend the share of the namespace
//! that created it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::Shared;
use super::budget::GateKey;
use super::dcs_call::{self, CallOutcome, CallTarget, PermitMode};
use super::store::ObservationKey;
use crate::crd::DcsInstance;
use crate::dcs::client::MAX_LIST_PAGE;
use crate::dcs::{Credentials, Endpoint};
use crate::intern::Atom;

/// How long a whole listing (every page) may take.
const LIST_DEADLINE: Duration = Duration::from_secs(120);
/// Registrations arriving together are served by one list call.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// The longest a group waits between ticks, whatever its members ask: a group
/// must wake up now and then to notice it has no members left.
const MAX_TICK: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub endpoint: Arc<str>,
    pub project_id: Arc<str>,
    pub credentials_fingerprint: Arc<str>,
}

/// One DcsInstance in a group, compact (a group holds thousands): its name, its
/// namespace (shared: many members share one), the instance it reads.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    name: Box<str>,
    namespace: Atom,
    /// Shared with the observation store's key for the instance.
    instance_id: Arc<str>,
    poll_interval: Duration,
}

impl Member {
    /// The DcsInstance, to ask for its reconcile.
    fn object(&self) -> ObjectRef<DcsInstance> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

/// A group as one tick sees it.
struct Snapshot {
    /// Whose share of DCS calls the list spends.
    namespace: String,
    endpoint: Endpoint,
    credentials: Credentials,
    gate: GateKey,
    /// Shared with the group: a tick copies pointers, not members.
    members: Vec<Arc<Member>>,
}

struct Group {
    /// The namespace of the member that created the group.
    namespace: String,
    endpoint: Endpoint,
    credentials: Credentials,
    gate: GateKey,
    /// uid -> member.
    members: HashMap<Box<str>, Arc<Member>>,
    refresh: Arc<Notify>,
}

#[derive(Default)]
pub struct BatchPoller {
    groups: Mutex<HashMap<GroupKey, Group>>,
}

impl std::fmt::Debug for BatchPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchPoller")
    }
}

/// What a reconcile registers: who it is and what it reads.
pub struct Registration<'a> {
    pub uid: &'a str,
    pub namespace: &'a str,
    pub gate: &'a GateKey,
    pub object: ObjectRef<DcsInstance>,
    pub endpoint: &'a Endpoint,
    pub project_id: &'a str,
    pub credentials: &'a Credentials,
    pub credentials_fingerprint: &'a str,
    pub instance_id: &'a str,
    pub poll_interval: Duration,
}

impl BatchPoller {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupKey, Group>> {
        self.groups
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Puts a DcsInstance in its group, starting the group's poller when it is new
    /// and asking for a list right away when the member is new.
    pub fn register(&self, shared: &Arc<Shared>, registration: Registration<'_>) {
        let key = GroupKey {
            endpoint: crate::intern::shared(registration.endpoint.as_str()),
            project_id: crate::intern::shared(registration.project_id),
            credentials_fingerprint: crate::intern::shared(registration.credentials_fingerprint),
        };
        let member = Member {
            name: registration.object.name.as_str().into(),
            namespace: registration
                .object
                .namespace
                .as_deref()
                .unwrap_or(registration.namespace)
                .into(),
            instance_id: registration.instance_id.into(),
            poll_interval: registration.poll_interval,
        };
        let mut groups = self.lock();
        // A DcsInstance belongs to one group: moving (new credentials, endpoint) leaves the old.
        for (other, group) in groups.iter_mut() {
            if *other != key {
                group.members.remove(registration.uid);
            }
        }
        match groups.get_mut(&key) {
            Some(group) => {
                let old = group.members.get(registration.uid);
                let new_member = old.is_none_or(|old| old.instance_id != member.instance_id);
                // Replaced only on a change: an unchanged member keeps its allocation.
                if old.is_none_or(|old| **old != member) {
                    group
                        .members
                        .insert(registration.uid.into(), Arc::new(member));
                }
                group.credentials = registration.credentials.clone();
                group.gate = registration.gate.clone();
                if new_member {
                    group.refresh.notify_one();
                }
            }
            None => {
                let refresh = Arc::new(Notify::new());
                refresh.notify_one();
                groups.insert(
                    key.clone(),
                    Group {
                        namespace: registration.namespace.to_string(),
                        endpoint: registration.endpoint.clone(),
                        credentials: registration.credentials.clone(),
                        gate: registration.gate.clone(),
                        members: HashMap::from([(registration.uid.into(), Arc::new(member))]),
                        refresh: refresh.clone(),
                    },
                );
                let metrics = shared.metrics.clone();
                let shared = Arc::downgrade(shared);
                tokio::spawn(crate::supervise::supervised(
                    "batch_poller",
                    metrics,
                    move || poll_group(shared.clone(), key.clone(), refresh.clone()),
                ));
            }
        }
    }

    /// Removes members whose DcsInstance is gone; false when none is left.
    fn prune(&self, key: &GroupKey, alive: impl Fn(&ObjectRef<DcsInstance>) -> bool) -> bool {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(key) else {
            return false;
        };
        group.members.retain(|_, member| alive(&member.object()));
        if group.members.is_empty() {
            groups.remove(key);
            return false;
        }
        true
    }

    /// Drops members whose DcsInstance is gone from every group, and groups left
    /// empty (their pollers notice at their next wake-up, which this brings forward).
    pub fn prune_all(&self, alive: impl Fn(&ObjectRef<DcsInstance>) -> bool) {
        self.lock().retain(|_, group| {
            group.members.retain(|_, member| alive(&member.object()));
            if group.members.is_empty() {
                group.refresh.notify_one();
            }
            !group.members.is_empty()
        });
    }

    /// (groups, members), for `dcs_operator_cache_entries`.
    pub fn sizes(&self) -> (usize, usize) {
        let groups = self.lock();
        (
            groups.len(),
            groups.values().map(|group| group.members.len()).sum(),
        )
    }

    fn snapshot(&self, key: &GroupKey) -> Option<Snapshot> {
        let groups = self.lock();
        let group = groups.get(key)?;
        Some(Snapshot {
            namespace: group.namespace.clone(),
            endpoint: group.endpoint.clone(),
            credentials: group.credentials.clone(),
            gate: group.gate.clone(),
            members: group.members.values().cloned().collect(),
        })
    }

    /// Makes every group poll now (tests count ticks with this instead of waiting).
    pub fn refresh_all(&self) {
        for group in self.lock().values() {
            group.refresh.notify_one();
        }
    }
}

/// One group's poller: a list call per tick (the shortest poll interval of its
/// members), or sooner when a new member registers.
async fn poll_group(shared: Weak<Shared>, key: GroupKey, refresh: Arc<Notify>) {
    let mut next_tick = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(next_tick.min(MAX_TICK)) => {}
            _ = refresh.notified() => tokio::time::sleep(DEBOUNCE).await,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !shared.leader.may_write() {
            // A standby does not poll DCS.
            next_tick = Duration::from_secs(5);
            continue;
        }
        if !shared
            .batch
            .prune(&key, |object| shared.instances.contains(object))
        {
            debug!(endpoint = %key.endpoint, "batch group has no members left");
            return;
        }
        let Some(snapshot) = shared.batch.snapshot(&key) else {
            return;
        };
        let interval = snapshot
            .members
            .iter()
            .map(|m| m.poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(60));
        next_tick = poll_once(&shared, &key, snapshot, interval).await;
    }
}

/// One tick of a group: the list call and what its answer (or refusal) tells each
/// member. Returns when the next tick is due.
async fn poll_once(
    shared: &Arc<Shared>,
    key: &GroupKey,
    snapshot: Snapshot,
    interval: Duration,
) -> Duration {
    let Snapshot {
        namespace,
        endpoint,
        credentials,
        gate,
        members,
    } = snapshot;
    // Several DcsInstances may name the same DCS instance: merge once, tell all.
    let by_instance = ByInstance::new(members);
    // Items are merged as they are decoded and the rest dropped at once: a project
    // may hold far more instances than this operator serves, and a tick must not
    // hold thousands of full answers (nor a hostile endpoint's millions).
    let mut found = vec![false; by_instance.len()];
    let target = CallTarget {
        gate: &gate,
        fingerprint: &key.credentials_fingerprint,
        namespace: &namespace,
        operation: "list_instances",
    };
    let outcome = dcs_call::call(shared, target, PermitMode::Wait, || {
        let list = shared.dcs.list_instances_with(
            &endpoint,
            &credentials,
            &key.project_id,
            MAX_LIST_PAGE,
            |id| !by_instance.reading(id).is_empty(),
            |item| merge_listed(shared, key, &by_instance, &mut found, item),
        );
        // A whole listing, every page, within a deadline: a server that keeps
        // sending full pages must not hold its namespace's slot for an hour.
        within_deadline(list)
    })
    .await;
    let at = shared.clock.now();
    match outcome {
        CallOutcome::Wait(after) => after,
        CallOutcome::Refused(error) => {
            // Throttled or circuit open: every member learns why.
            let error = Arc::new(error);
            for member in by_instance.members() {
                let key = observation_key(key, &member.instance_id);
                if shared.observations.record_list_failure(key, &error, at) {
                    shared.request_reconcile(member.object());
                }
            }
            interval
        }
        CallOutcome::Answered(result) => {
            let unlisted = by_instance.instances().filter(|(at, _)| !found[*at]);
            let result = result.map(|_| ()).map_err(Arc::new);
            learn_unlisted(shared, key, result, unlisted, at, interval)
        }
    }
}

/// The members of one tick sorted by the instance they read: a lookup is a binary
/// search, and an instance is a run of its readers (no map per tick).
struct ByInstance {
    members: Vec<Arc<Member>>,
}

impl ByInstance {
    fn new(mut members: Vec<Arc<Member>>) -> Self {
        members.sort_unstable_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Self { members }
    }

    fn len(&self) -> usize {
        self.members.len()
    }

    fn members(&self) -> &[Arc<Member>] {
        &self.members
    }

    /// Where the readers of `instance_id` start, and they.
    fn position(&self, instance_id: &str) -> (usize, &[Arc<Member>]) {
        let start = self
            .members
            .partition_point(|m| &*m.instance_id < instance_id);
        let rest = &self.members[start..];
        let count = rest.partition_point(|m| &*m.instance_id == instance_id);
        (start, &rest[..count])
    }

    /// The members reading `instance_id` (none: empty).
    fn reading(&self, instance_id: &str) -> &[Arc<Member>] {
        self.position(instance_id).1
    }

    /// Each instance read, as (where its readers start, the readers).
    fn instances(&self) -> impl Iterator<Item = (usize, &[Arc<Member>])> {
        let mut start = 0;
        self.members
            .chunk_by(|a, b| a.instance_id == b.instance_id)
            .map(move |readers| {
                let at = start;
                start += readers.len();
                (at, readers)
            })
    }
}

/// Merges one listed item over the last answer of its instance, and wakes the
/// members whose answer changed (or that need a ShowInstance).
fn merge_listed(
    shared: &Shared,
    key: &GroupKey,
    by_instance: &ByInstance,
    found: &mut [bool],
    item: crate::dcs::Instance,
) {
    let Some(id) = item.instance_id.as_deref() else {
        return;
    };
    let (at, readers) = by_instance.position(id);
    let Some(first) = readers.first() else {
        return;
    };
    if let Some(seen) = found.get_mut(at) {
        *seen = true;
    }
    let outcome = shared.observations.record_listed(
        observation_key(key, &first.instance_id),
        item,
        shared.clock.now(),
    );
    if outcome.changed || outcome.needs_show {
        for member in readers {
            shared.request_reconcile(member.object());
        }
    }
}

/// A whole listing, every page, within [`LIST_DEADLINE`]: a server that keeps
/// sending full pages must not hold its namespace's share for an hour.
async fn within_deadline<T>(
    list: impl std::future::Future<Output = Result<T, crate::dcs::DcsError>>,
) -> Result<T, crate::dcs::DcsError> {
    tokio::time::timeout(LIST_DEADLINE, list)
        .await
        .unwrap_or_else(|_| {
            Err(crate::dcs::DcsError::Transport {
                message: format!("the listing took longer than {} s", LIST_DEADLINE.as_secs()),
                timeout: true,
            })
        })
}

/// What a list answer tells the members it did not list: after a success, only
/// ShowInstance can say whether they still exist; after a failure, they learn why
/// (pages that arrived were merged already). Returns when the next tick is due.
fn learn_unlisted<'a>(
    shared: &Shared,
    key: &GroupKey,
    result: Result<(), Arc<crate::dcs::DcsError>>,
    unlisted: impl Iterator<Item = (usize, &'a [Arc<Member>])>,
    at: chrono::DateTime<chrono::Utc>,
    interval: Duration,
) -> Duration {
    if let Err(error) = &result {
        warn!(endpoint = %key.endpoint, reason = error.reason(), "batch list failed: {error}");
    }
    for (_, readers) in unlisted {
        let Some(first) = readers.first() else {
            continue;
        };
        let observation = observation_key(key, &first.instance_id);
        let tell = match &result {
            Ok(()) => {
                shared.observations.request_show(observation);
                true
            }
            Err(error) => shared
                .observations
                .record_list_failure(observation, error, at),
        };
        if tell {
            for member in readers {
                shared.request_reconcile(member.object());
            }
        }
    }
    match result {
        Ok(()) => interval,
        Err(_) => interval.min(Duration::from_secs(30)),
    }
}

fn observation_key(group: &GroupKey, instance_id: &Arc<str>) -> ObservationKey {
    ObservationKey {
        endpoint: group.endpoint.clone(),
        project_id: group.project_id.clone(),
        credentials_fingerprint: group.credentials_fingerprint.clone(),
        instance_id: instance_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, instance_id: &str) -> Arc<Member> {
        Arc::new(Member {
            name: name.into(),
            namespace: "tenant".into(),
            instance_id: instance_id.into(),
            poll_interval: Duration::from_secs(60),
        })
    }

    #[test]
    fn members_are_found_by_the_instance_they_read_each_instance_once() {
        let by_instance = ByInstance::new(vec![
            member("c", "id-3"),
            member("a", "id-1"),
            member("b", "id-3"),
            member("d", "id-2"),
        ]);
        fn names(readers: &[Arc<Member>]) -> Vec<&str> {
            let mut names: Vec<&str> = readers.iter().map(|m| &*m.name).collect();
            names.sort();
            names
        }
        assert_eq!(names(by_instance.reading("id-3")), ["b", "c"]);
        assert_eq!(names(by_instance.reading("id-1")), ["a"]);
        assert!(by_instance.reading("id-0").is_empty());
        assert!(by_instance.reading("id-4").is_empty());
        let instances: Vec<(usize, Vec<&str>)> = by_instance
            .instances()
            .map(|(at, readers)| (at, names(readers)))
            .collect();
        assert_eq!(
            instances,
            [(0, vec!["a"]), (1, vec!["d"]), (2, vec!["b", "c"])]
        );
        // The position merge_listed marks is the one instances() reports.
        assert_eq!(by_instance.position("id-3").0, 2);
        assert_eq!(by_instance.len(), 4);
    }
}
