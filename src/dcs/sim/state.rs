//! The simulator's mutable world: instances and their scripted transitions, faults,
//! counters, per-access-key lock-outs and throttling windows. No HTTP in here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::iam::{self, IdentityConfig};
use super::{
    Fault, FaultKind, SimConfig, SimError, SimInstance, Transition, WriteConfig, api, file, write,
};
use crate::clock::SharedClock;

/// The gateway locks an access key after this many signature failures in a row…
pub const LOCKOUT_AFTER_FAILURES: u32 = 5;
/// …for this long.
pub const LOCKOUT_DURATION: TimeDelta = TimeDelta::minutes(5);

/// What the simulator has seen since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Requests per route label: `show_v1`, `show_v2`, `list_v1`, `list_v2`, the
    /// write-side labels ([`super::OP_LABELS`]), the identity routes'
    /// ([`iam::ROUTE_LABELS`]) and `unknown`.
    pub requests: BTreeMap<String, u64>,
    /// Responses of the DCS and identity routes per HTTP status.
    pub responses: BTreeMap<u16, u64>,
    pub auth_failures: u64,
    pub lockouts: u64,
    pub throttled: u64,
    pub faults_injected: u64,
    /// Write requests that took effect, per write route label (`create`, `resize`,
    /// `update`, `update_password`, `reset_password`, `delete`, `tags_action`), and
    /// identity exchanges that issued a token or credentials, per identity route
    /// label; `requests` counts every call, refused or not.
    #[serde(default)]
    pub writes_applied: BTreeMap<String, u64>,
}

impl Counters {
    fn zeroed() -> Self {
        Self {
            requests: api::route_labels()
                .chain(std::iter::once(api::UNKNOWN_ROUTE))
                .map(|label| (label.to_string(), 0))
                .collect(),
            writes_applied: write::WRITE_LABELS
                .iter()
                .chain(iam::ROUTE_LABELS.iter())
                .map(|label| (label.to_string(), 0))
                .collect(),
            ..Default::default()
        }
    }

    pub fn requests_for(&self, label: &str) -> u64 {
        self.requests.get(label).copied().unwrap_or(0)
    }

    pub fn responses_for(&self, status: u16) -> u64 {
        self.responses.get(&status).copied().unwrap_or(0)
    }

    pub fn applied_for(&self, label: &str) -> u64 {
        self.writes_applied.get(label).copied().unwrap_or(0)
    }
}

#[derive(Debug)]
pub(crate) struct StoredInstance {
    pub(crate) fields: Map<String, Value>,
    /// Not yet applied, sorted by `after`.
    pub(crate) pending: Vec<Transition>,
    /// What the write routes keep beside the API fields.
    pub(crate) meta: WriteMeta,
}

/// Per-instance state of the write side that the read routes never show.
#[derive(Debug, Default)]
pub(crate) struct WriteMeta {
    /// Made by CreateInstance (not loaded from a file or the admin API).
    pub(crate) created_by_api: bool,
    /// List answers include the instance from this simulated time on (`list_lag`).
    pub(crate) listed_from: Option<Duration>,
    /// DeleteSingleInstance accepted: gone at this simulated time.
    pub(crate) delete_at: Option<Duration>,
    /// None: password-free, or unknown (an instance from a file accepts any old password).
    pub(crate) password: Option<String>,
    pub(crate) password_failures: u32,
    pub(crate) password_locked_until: Option<DateTime<Utc>>,
    pub(crate) rename_commands: Option<Map<String, Value>>,
}

impl StoredInstance {
    pub(crate) fn new(fields: Map<String, Value>, pending: Vec<Transition>) -> Self {
        Self {
            fields,
            pending,
            meta: WriteMeta::default(),
        }
    }

    /// Schedules a change, keeping `pending` sorted (after those due at the same time).
    pub(crate) fn schedule(&mut self, transition: Transition) {
        let at = self
            .pending
            .partition_point(|t| t.after <= transition.after);
        self.pending.insert(at, transition);
    }

    /// Applies every transition whose time has come; each applies once.
    pub(crate) fn catch_up(&mut self, elapsed: Duration) {
        let due = self.pending.partition_point(|t| t.after <= elapsed);
        for transition in self.pending.drain(..due) {
            merge(&mut self.fields, transition.set);
        }
    }
}

fn merge(fields: &mut Map<String, Value>, set: Map<String, Value>) {
    for (key, value) in set {
        // The identity is the map key; a field update must not move the instance.
        if key == "instance_id" || key == "project_id" {
            continue;
        }
        fields.insert(key, value);
    }
}

#[derive(Debug, Default)]
struct KeyRecord {
    consecutive_failures: u32,
    locked_until: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    /// Keyed by (project_id, instance_id): iteration order is the list order.
    pub(crate) instances: BTreeMap<(String, String), StoredInstance>,
    faults: Vec<Fault>,
    pub(crate) counters: Counters,
    keys: HashMap<String, KeyRecord>,
    rate_limit: Option<u32>,
    /// Per throttling key: the clock second of the window and requests in it.
    windows: HashMap<String, (i64, u32)>,
    pub(crate) write: WriteConfig,
    /// Accepted deletions: (simulated time, key). Usually empty, so purging is cheap.
    pub(crate) deleting: Vec<(Duration, (String, String))>,
    /// Hands out instance IPs from the simulated subnet.
    pub(crate) next_ip: u32,
}

impl Inner {
    /// Removes the instances whose deletion has completed by `elapsed`.
    pub(crate) fn purge(&mut self, elapsed: Duration) {
        if self.deleting.is_empty() {
            return;
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deleting)
            .into_iter()
            .partition(|(at, _)| *at <= elapsed);
        self.deleting = waiting;
        for (_, key) in done {
            self.instances.remove(&key);
        }
    }

    pub(crate) fn count_applied(&mut self, label: &str) {
        *self
            .counters
            .writes_applied
            .entry(label.to_string())
            .or_default() += 1;
    }
}

/// Shared by every request handler and by in-process callers (tests, demo mode).
pub struct SimState {
    clock: SharedClock,
    started: DateTime<Utc>,
    access_key: Option<(String, String)>,
    auth_token: Option<String>,
    inner: Mutex<Inner>,
    identity: iam::Identity,
}

impl std::fmt::Debug for SimState {
    // Keeps the secret key and token out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimState")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// Why an authenticated request may not proceed to DCS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Throttle {
    Allowed,
    Refused { limit: u32, retry_after_secs: u64 },
}

impl SimState {
    pub fn new(config: SimConfig, clock: SharedClock) -> Self {
        let started = clock.now();
        let state = Self {
            clock,
            started,
            access_key: config.access_key,
            auth_token: config.auth_token,
            identity: iam::Identity::new(config.identity),
            inner: Mutex::new(Inner {
                instances: BTreeMap::new(),
                faults: Vec::new(),
                counters: Counters::zeroed(),
                keys: HashMap::new(),
                rate_limit: config.rate_limit_per_second,
                windows: HashMap::new(),
                write: config.writes,
                deleting: Vec::new(),
                next_ip: 0,
            }),
        };
        for instance in config.instances {
            state.upsert_instance(instance);
        }
        state
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Simulated time since start; transitions are scheduled against it.
    pub fn elapsed(&self) -> Duration {
        (self.clock.now() - self.started)
            .to_std()
            .unwrap_or(Duration::ZERO)
    }

    /// Adds or replaces an instance (fields and script). One without an
    /// `instance_id` cannot be addressed and is ignored.
    pub fn upsert_instance(&self, instance: SimInstance) {
        let Some(instance_id) = instance.instance_id().map(str::to_string) else {
            tracing::warn!(project_id = %instance.project_id, "ignoring a simulated instance without instance_id");
            return;
        };
        let mut pending = instance.transitions;
        pending.sort_by_key(|t| t.after);
        self.lock().instances.insert(
            (instance.project_id, instance_id),
            StoredInstance::new(instance.fields, pending),
        );
    }

    /// Merges fields into an instance. Transitions already due are applied first,
    /// so this update wins over them; later ones still apply when their time comes.
    pub fn update_instance(
        &self,
        project_id: &str,
        instance_id: &str,
        set: Map<String, Value>,
    ) -> bool {
        let elapsed = self.elapsed();
        let mut inner = self.lock();
        inner.purge(elapsed);
        let Some(stored) = inner
            .instances
            .get_mut(&(project_id.to_string(), instance_id.to_string()))
        else {
            return false;
        };
        stored.catch_up(elapsed);
        merge(&mut stored.fields, set);
        true
    }

    pub fn delete_instance(&self, project_id: &str, instance_id: &str) -> bool {
        self.lock()
            .instances
            .remove(&(project_id.to_string(), instance_id.to_string()))
            .is_some()
    }

    /// The current fields, after every transition due by the clock.
    pub fn instance(&self, project_id: &str, instance_id: &str) -> Option<Map<String, Value>> {
        let elapsed = self.elapsed();
        let mut inner = self.lock();
        inner.purge(elapsed);
        let stored = inner
            .instances
            .get_mut(&(project_id.to_string(), instance_id.to_string()))?;
        stored.catch_up(elapsed);
        Some(stored.fields.clone())
    }

    /// Every instance of a project, current fields, ordered by instance_id.
    pub fn project_instances(&self, project_id: &str) -> Vec<Map<String, Value>> {
        self.project_view(project_id, false)
    }

    /// What a list answer shows: as [`Self::project_instances`], without the
    /// instances created less than `list_lag` ago.
    pub fn listed_instances(&self, project_id: &str) -> Vec<Map<String, Value>> {
        self.project_view(project_id, true)
    }

    fn project_view(&self, project_id: &str, as_listed: bool) -> Vec<Map<String, Value>> {
        let elapsed = self.elapsed();
        let mut inner = self.lock();
        inner.purge(elapsed);
        inner
            .instances
            .iter_mut()
            .filter(|((project, _), _)| project == project_id)
            .filter(|(_, stored)| {
                !as_listed || stored.meta.listed_from.is_none_or(|from| from <= elapsed)
            })
            .map(|(_, stored)| {
                stored.catch_up(elapsed);
                stored.fields.clone()
            })
            .collect()
    }

    /// Runs `f` on the whole world under the lock, after due deletions, with the
    /// simulated elapsed time and the clock's now: one write is one atomic step.
    pub(crate) fn world<R>(&self, f: impl FnOnce(&mut Inner, Duration, DateTime<Utc>) -> R) -> R {
        let now = self.clock.now();
        let elapsed = self.elapsed();
        let mut inner = self.lock();
        inner.purge(elapsed);
        f(&mut inner, elapsed, now)
    }

    pub fn write_config(&self) -> WriteConfig {
        self.lock().write.clone()
    }

    /// Replaces the write timings and quotas; scheduled changes keep their times.
    pub fn set_write_config(&self, config: WriteConfig) {
        self.lock().write = config;
    }

    /// The write side at a glance, for `/_sim/writes` and tests: every instance made
    /// by CreateInstance or being deleted, with its tags, the changes still to come
    /// (in seconds from now) and when it shows in lists or disappears.
    pub fn write_view(&self) -> Vec<Value> {
        let elapsed = self.elapsed();
        let mut inner = self.lock();
        inner.purge(elapsed);
        let seconds_from_now = |at: Duration| at.saturating_sub(elapsed).as_secs_f64();
        inner
            .instances
            .iter_mut()
            .filter(|(_, stored)| stored.meta.created_by_api || stored.meta.delete_at.is_some())
            .map(|((project, id), stored)| {
                stored.catch_up(elapsed);
                let field = |key: &str| stored.fields.get(key).cloned().unwrap_or(Value::Null);
                let pending: Vec<Value> = stored
                    .pending
                    .iter()
                    .map(|t| serde_json::json!({"in_seconds": seconds_from_now(t.after), "set": Value::Object(t.set.clone())}))
                    .collect();
                serde_json::json!({
                    "project_id": project,
                    "instance_id": id,
                    "name": field("name"),
                    "status": field("status"),
                    "tags": stored.fields.get("tags").cloned().unwrap_or_else(|| Value::Array(Vec::new())),
                    "created_by_api": stored.meta.created_by_api,
                    "pending": pending,
                    "listed_in_seconds": stored.meta.listed_from.map(seconds_from_now),
                    "deleted_in_seconds": stored.meta.delete_at.map(seconds_from_now),
                    "password_free": stored.meta.password.is_none() && field("no_password_access") == "true",
                    "rename_commands": stored.meta.rename_commands.clone().map(Value::Object),
                })
            })
            .collect()
    }

    /// Every instance as an instance-file entry (with `project_id` and the
    /// transitions still to come), so a dump can be loaded again.
    pub fn entries(&self) -> Vec<Value> {
        let elapsed = self.elapsed();
        let mut inner = self.lock();
        inner.purge(elapsed);
        inner
            .instances
            .iter_mut()
            .map(|((project, _), stored)| {
                stored.catch_up(elapsed);
                file::entry_value(project, &stored.fields, &stored.pending)
            })
            .collect()
    }

    /// Adds a fault after the ones already active (first match wins). A fault
    /// with `count: 0` would never fire and is dropped.
    pub fn inject_fault(&self, fault: Fault) {
        if fault.count == Some(0) {
            return;
        }
        self.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    pub fn reset_counters(&self) {
        self.lock().counters = Counters::zeroed();
    }

    /// Replaces the JWKS the ID-token routes trust (demo mode hands over the
    /// cluster's `/openid/v1/jwks`); returns how many RSA keys it holds.
    pub fn set_jwks(&self, jwks: &Value) -> Result<usize, SimError> {
        self.identity.set_jwks(jwks)
    }

    /// Replaces the identity configuration (IdPs, OIDC providers, Pod Identity
    /// tokens, and the JWKS when it carries one). Issued tokens and temporary
    /// credentials stay valid until they expire.
    pub fn set_identity(&self, config: IdentityConfig) -> Result<(), SimError> {
        self.identity.set_config(config)
    }

    /// The identity services at a glance (`GET /_sim/identity`): the configuration
    /// without Pod Identity tokens, the trusted key ids, and how many federated
    /// tokens and temporary credentials are live.
    pub fn identity_view(&self) -> Value {
        self.identity.view()
    }

    /// Federated tokens and temporary credentials held (each bounded).
    pub fn identity_counts(&self) -> (usize, usize) {
        self.identity.counts()
    }

    pub(crate) fn identity(&self) -> &iam::Identity {
        &self.identity
    }

    pub(crate) fn count_applied(&self, label: &str) {
        self.lock().count_applied(label);
    }

    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        let mut inner = self.lock();
        inner.rate_limit = per_second;
        inner.windows.clear();
    }

    pub fn rate_limit(&self) -> Option<u32> {
        self.lock().rate_limit
    }

    pub(crate) fn count_request(&self, label: &str) {
        *self
            .lock()
            .counters
            .requests
            .entry(label.to_string())
            .or_default() += 1;
    }

    pub(crate) fn count_response(&self, status: u16) {
        *self.lock().counters.responses.entry(status).or_default() += 1;
    }

    /// The first active fault matching the route, consuming one of its count.
    pub(crate) fn take_fault(&self, route: &str) -> Option<FaultKind> {
        let mut inner = self.lock();
        let mut hit = None;
        for (index, fault) in inner.faults.iter_mut().enumerate() {
            if fault.route.as_deref().is_some_and(|r| r != route) {
                continue;
            }
            // Write-only kinds wait for a request they can apply to.
            if !fault.kind.applies_to(route) {
                continue;
            }
            if let Some(fraction) = fault.fraction
                && rand::random::<f64>() >= fraction
            {
                continue;
            }
            let exhausted = match &mut fault.count {
                Some(count) => {
                    *count = count.saturating_sub(1);
                    *count == 0
                }
                None => false,
            };
            hit = Some((index, fault.kind.clone(), exhausted));
            break;
        }
        let (index, kind, exhausted) = hit?;
        if exhausted {
            inner.faults.remove(index);
        }
        inner.counters.faults_injected += 1;
        Some(kind)
    }

    /// The secret for an access key, if it is the configured one.
    pub(crate) fn secret_for(&self, access_key: &str) -> Option<String> {
        self.access_key
            .as_ref()
            .filter(|(ak, _)| ak == access_key)
            .map(|(_, sk)| sk.clone())
    }

    pub(crate) fn token_matches(&self, token: &str) -> bool {
        self.auth_token
            .as_deref()
            .is_some_and(|expected| constant_time_eq(expected.as_bytes(), token.as_bytes()))
    }

    /// True while the key is locked out; an expired lock is forgotten.
    pub(crate) fn is_locked(&self, access_key: &str) -> bool {
        let now = self.clock.now();
        let mut inner = self.lock();
        let Some(record) = inner.keys.get_mut(access_key) else {
            return false;
        };
        match record.locked_until {
            Some(until) if until > now => true,
            Some(_) => {
                *record = KeyRecord::default();
                false
            }
            None => false,
        }
    }

    /// Counts a refused request; with an access key, counts towards its lock-out.
    /// Returns true when this failure locked the key.
    pub(crate) fn auth_failed(&self, access_key: Option<&str>) -> bool {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.counters.auth_failures += 1;
        let Some(access_key) = access_key else {
            return false;
        };
        let record = inner.keys.entry(access_key.to_string()).or_default();
        if record.locked_until.is_some_and(|until| until > now) {
            return false;
        }
        record.locked_until = None;
        record.consecutive_failures += 1;
        if record.consecutive_failures < LOCKOUT_AFTER_FAILURES {
            return false;
        }
        record.consecutive_failures = 0;
        record.locked_until = Some(now + LOCKOUT_DURATION);
        inner.counters.lockouts += 1;
        true
    }

    pub(crate) fn auth_succeeded(&self, access_key: &str) {
        self.lock().keys.remove(access_key);
    }

    /// Takes one request from the key's fixed one-second window.
    pub(crate) fn throttle(&self, key: &str) -> Throttle {
        let second = self.clock.now().timestamp();
        let mut inner = self.lock();
        let Some(limit) = inner.rate_limit else {
            return Throttle::Allowed;
        };
        let window = inner.windows.entry(key.to_string()).or_insert((second, 0));
        if window.0 != second {
            *window = (second, 0);
        }
        if window.1 < limit {
            window.1 += 1;
            return Throttle::Allowed;
        }
        inner.counters.throttled += 1;
        // Whole-second windows: the next one opens within a second.
        Throttle::Refused {
            limit,
            retry_after_secs: 1,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;

    const PROJECT: &str = "0123456789abcdef0123456789abcdef";

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test fields are objects"),
        }
    }

    fn state_with(instances: Vec<SimInstance>) -> (SimState, ManualClock) {
        let clock = ManualClock::new(Utc::now());
        let config = SimConfig {
            instances,
            ..SimConfig::with_default_keys()
        };
        (SimState::new(config, Arc::new(clock.clone())), clock)
    }

    fn creating() -> SimInstance {
        SimInstance::new(
            PROJECT,
            fields(json!({"instance_id": "a", "status": "CREATING"})),
            vec![
                Transition {
                    after: Duration::from_secs(120),
                    set: fields(json!({"status": "ERROR", "error_code": "dcs.03.0017"})),
                },
                Transition {
                    after: Duration::from_secs(10),
                    set: fields(json!({"status": "RUNNING"})),
                },
            ],
        )
    }

    #[test]
    fn transitions_apply_lazily_in_order() {
        let (state, clock) = state_with(vec![creating()]);
        let status = |s: &SimState| s.instance(PROJECT, "a").unwrap()["status"].clone();
        assert_eq!(status(&state), "CREATING");
        clock.advance(TimeDelta::seconds(9));
        assert_eq!(status(&state), "CREATING");
        clock.advance(TimeDelta::seconds(1));
        assert_eq!(status(&state), "RUNNING");
        clock.advance(TimeDelta::minutes(5));
        let now = state.instance(PROJECT, "a").unwrap();
        assert_eq!(
            (now["status"].clone(), now["error_code"].clone()),
            (json!("ERROR"), json!("dcs.03.0017"))
        );
    }

    #[test]
    fn a_runtime_update_after_a_due_transition_wins() {
        let (state, clock) = state_with(vec![creating()]);
        clock.advance(TimeDelta::seconds(30));
        // The 10 s transition is due but not yet read; the update must still win.
        assert!(state.update_instance(
            PROJECT,
            "a",
            fields(json!({"status": "FROZEN", "instance_id": "moved"}))
        ));
        assert_eq!(state.instance(PROJECT, "a").unwrap()["status"], "FROZEN");
        clock.advance(TimeDelta::minutes(2));
        assert_eq!(state.instance(PROJECT, "a").unwrap()["status"], "ERROR");
        assert!(!state.update_instance(PROJECT, "nope", Map::new()));
        assert!(state.delete_instance(PROJECT, "a"));
        assert!(!state.delete_instance(PROJECT, "a"));
        assert!(state.instance(PROJECT, "a").is_none());
    }

    #[test]
    fn entries_keep_pending_transitions() {
        let (state, _) = state_with(vec![creating()]);
        let entries = state.entries();
        assert_eq!(entries[0]["project_id"], PROJECT);
        assert_eq!(entries[0]["transitions"][0]["after"], "10s");
        let text = serde_json::to_string(&entries).unwrap();
        let again = file::parse_instances(&text).unwrap();
        assert_eq!(again[0].transitions.len(), 2);
    }

    #[test]
    fn faults_count_down_in_order_and_by_route() {
        let (state, _) = state_with(vec![]);
        state.inject_fault(Fault::times(FaultKind::Malformed, 2).on_route("show_v1"));
        state.inject_fault(Fault::times(FaultKind::Truncated, 1));
        state.inject_fault(Fault::times(FaultKind::Reset, 0));
        assert_eq!(state.take_fault("list_v2"), Some(FaultKind::Truncated));
        assert_eq!(state.take_fault("list_v2"), None);
        assert_eq!(state.take_fault("show_v1"), Some(FaultKind::Malformed));
        assert_eq!(state.take_fault("show_v1"), Some(FaultKind::Malformed));
        assert_eq!(state.take_fault("show_v1"), None);
        assert_eq!(state.counters().faults_injected, 3);
        state.inject_fault(Fault {
            fraction: Some(0.0),
            ..Fault::always(FaultKind::Reset)
        });
        assert_eq!(state.take_fault("show_v1"), None);
        state.inject_fault(Fault::always(FaultKind::Reset));
        assert_eq!(state.take_fault("show_v1"), Some(FaultKind::Reset));
        assert_eq!(state.take_fault("show_v1"), Some(FaultKind::Reset));
        state.clear_faults();
        assert_eq!(state.take_fault("show_v1"), None);
    }

    #[test]
    fn fault_json_shape() {
        let fault: Fault =
            serde_json::from_value(json!({"kind": "status", "status": 503, "count": 3})).unwrap();
        assert_eq!(fault.count, Some(3));
        assert!(
            matches!(fault.kind, FaultKind::Status { status: 503, ref error_code, .. } if error_code == "SIM.0001")
        );
        let latency: Fault =
            serde_json::from_value(json!({"kind": "latency", "ms": 200, "fraction": 0.5})).unwrap();
        assert_eq!(latency.kind, FaultKind::Latency { ms: 200 });
        assert_eq!(
            serde_json::to_value(&latency).unwrap(),
            json!({"kind": "latency", "ms": 200, "fraction": 0.5})
        );
        assert!(serde_json::from_value::<Fault>(json!({"kind": "bogus"})).is_err());
        assert!(
            Fault {
                fraction: Some(2.0),
                ..latency.clone()
            }
            .validate()
            .is_err()
        );
        assert!(latency.clone().on_route("nowhere").validate().is_err());
        assert!(latency.on_route("list_v2").validate().is_ok());
    }

    #[test]
    fn reset_password_code_fault_shape_and_scope() {
        let fault: Fault =
            serde_json::from_value(json!({"kind": "reset_password_code", "code": "3"})).unwrap();
        assert_eq!(fault.kind, FaultKind::reset_password_code("3"));
        assert_eq!(fault.kind.name(), "reset_password_code");
        let named: Fault = serde_json::from_value(
            json!({"kind": "reset_password_code", "code": "5", "message": "m", "route": "reset_password"}),
        )
        .unwrap();
        assert_eq!(
            named.kind,
            FaultKind::ResetPasswordCode {
                code: "5".into(),
                message: "m".into()
            }
        );
        assert!(named.validate().is_ok());
        assert!(
            fault
                .clone()
                .on_route("update_password")
                .validate()
                .is_err()
        );
        assert!(serde_json::from_value::<Fault>(json!({"kind": "reset_password_code"})).is_err());
        // Only the reset route consumes it.
        let (state, _) = state_with(vec![]);
        state.inject_fault(Fault::times(FaultKind::reset_password_code("3"), 1));
        assert_eq!(state.take_fault("update_password"), None);
        assert_eq!(state.take_fault("show_v1"), None);
        assert_eq!(
            state.take_fault("reset_password"),
            Some(FaultKind::reset_password_code("3"))
        );
        assert_eq!(state.take_fault("reset_password"), None);
    }

    #[test]
    fn five_failures_lock_the_key_for_five_minutes() {
        let (state, clock) = state_with(vec![]);
        for _ in 0..4 {
            assert!(!state.auth_failed(Some("AK")));
        }
        assert!(!state.is_locked("AK"));
        state.auth_succeeded("AK");
        for _ in 0..4 {
            assert!(!state.auth_failed(Some("AK")));
        }
        assert!(state.auth_failed(Some("AK")));
        assert!(state.is_locked("AK"));
        assert!(!state.is_locked("OTHER"));
        clock.advance(TimeDelta::minutes(5) - TimeDelta::seconds(1));
        assert!(state.is_locked("AK"));
        clock.advance(TimeDelta::seconds(1));
        assert!(!state.is_locked("AK"));
        let counters = state.counters();
        assert_eq!((counters.auth_failures, counters.lockouts), (9, 1));
    }

    #[test]
    fn throttle_uses_whole_clock_seconds_per_key() {
        let (state, clock) = state_with(vec![]);
        assert_eq!(state.throttle("a"), Throttle::Allowed);
        state.set_rate_limit(Some(2));
        clock.set(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        assert_eq!(state.throttle("a"), Throttle::Allowed);
        assert_eq!(state.throttle("a"), Throttle::Allowed);
        assert_eq!(state.throttle("b"), Throttle::Allowed);
        assert_eq!(
            state.throttle("a"),
            Throttle::Refused {
                limit: 2,
                retry_after_secs: 1
            }
        );
        clock.advance(TimeDelta::milliseconds(999));
        assert!(matches!(state.throttle("a"), Throttle::Refused { .. }));
        clock.advance(TimeDelta::milliseconds(1));
        assert_eq!(state.throttle("a"), Throttle::Allowed);
        assert_eq!(state.counters().throttled, 2);
    }

    #[test]
    fn token_and_secret_lookup() {
        let clock = ManualClock::new(Utc::now());
        let state = SimState::new(
            SimConfig {
                auth_token: Some("tok".into()),
                ..SimConfig::with_default_keys()
            },
            Arc::new(clock),
        );
        assert!(state.token_matches("tok"));
        assert!(!state.token_matches("tok2"));
        assert_eq!(
            state.secret_for(SimConfig::DEFAULT_ACCESS_KEY).as_deref(),
            Some(SimConfig::DEFAULT_SECRET_KEY)
        );
        assert_eq!(state.secret_for("other"), None);
        let (no_token, _) = state_with(vec![]);
        assert!(!no_token.token_matches(""));
    }
}
