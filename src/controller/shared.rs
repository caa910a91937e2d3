//! What every reconcile shares, whatever namespace it serves: the clients, the
//! clock, the observation store, the API budget and fair shares, the batch poller,
//! the caches of Secrets read, metrics and the leader gate. Built once by
//! [`SharedBuilder`]; its fields are the controller's own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use super::batch::BatchPoller;
use super::budget::ApiBudget;
use super::dcs_call::NamespaceLimits;
use super::resolve::SpecDefaults;
use super::secrets::{CredentialsResolver, PasswordReader};
use super::store::{InstanceView, ObservationStore};
use super::{Error, REFRESH_ANNOTATION, Result};
use crate::clock::SharedClock;
use crate::crd::DcsInstance;
use crate::dcs::DcsClient;
use crate::leader::LeaderGate;
use crate::metrics::{Metrics, MetricsOptions};
use crate::server::Readiness;

type RequestSender = futures::channel::mpsc::UnboundedSender<ObjectRef<DcsInstance>>;
pub type RequestReceiver = futures::channel::mpsc::UnboundedReceiver<ObjectRef<DcsInstance>>;

/// What every reconcile shares.
pub struct Shared {
    pub(super) client: Client,
    pub(super) dcs: DcsClient,
    pub(super) clock: SharedClock,
    pub(super) observations: Arc<ObservationStore>,
    /// The DCS API budget per gate (rate, throttling, breaker, auth lock-out).
    pub(super) budget: ApiBudget,
    /// Each namespace's share of DCS calls in flight.
    pub(super) namespace_limits: NamespaceLimits,
    /// Origins besides the region hosts that share the cloud's gates (the demo
    /// simulator, which stands in for a region).
    pub(super) cloud_origins: Vec<String>,
    /// Whether stable instances are observed by one list call per group and tick.
    pub(super) batching: bool,
    pub(super) batch: BatchPoller,
    /// Where to ask for reconciles of objects whose observation changed, per
    /// controller scope (None: every namespace).
    reconcile_requests: Mutex<Vec<(Option<String>, RequestSender)>>,
    /// A digest of the `reconcile-requested-at` annotation value last honoured, per
    /// uid (a digest: the value is tenant data of up to 256 KiB).
    refreshes: Mutex<HashMap<String, u64>>,
    /// Failed reconciles in a row, per uid: error_policy backs off on these.
    failures: Mutex<HashMap<String, u32>>,
    pub(super) defaults: SpecDefaults,
    pub(super) credentials: CredentialsResolver,
    pub(super) passwords: PasswordReader,
    pub(super) metrics: Arc<Metrics>,
    pub(super) instances: Arc<InstanceView>,
    pub(super) leader: Arc<LeaderGate>,
    /// Publishes Events on transitions; None publishes nothing.
    pub(super) events: Option<super::events::EventPublisher>,
    pub(super) readiness: Arc<Readiness>,
    /// Label selector on DcsInstances, to split a cluster between deployments.
    pub(super) selector: Option<String>,
    /// Reconciles at once per controller (0: unbounded).
    pub(super) concurrency: u16,
    /// Who may create and delete, and how long a lost create is looked up.
    pub(super) lifecycle: LifecycleOptions,
    /// uid -> the in-place writes this process made (the last per operation): a
    /// reconcile working from a cached object whose status lags behind never
    /// sends the same write again.
    pub(super) converge_journal: Mutex<HashMap<String, Vec<crate::crd::OperationRecord>>>,
    /// Workload identities (spec.identity); None when the operator has none set up.
    pub(super) identities: Option<Arc<super::identity::Identities>>,
    /// uid -> no DELETE for that object's instance from this process before then
    /// (a delete in progress is waited for, not sent again every requeue), and the
    /// refusal's message when DCS refused (shown as CleanupBlocked meanwhile).
    pub(super) deletes_sent: Mutex<HashMap<String, DeleteWait>>,
    /// uid -> (no new create attempt before, failures in a row): a claim whose
    /// lookup failed, or a throttled create, is not claimed again at once (the
    /// claim patch itself wakes the object up again).
    pub(super) claim_waits: Mutex<HashMap<String, (chrono::DateTime<chrono::Utc>, u32)>>,
}

/// No DELETE before this time; the refusal's message when DCS refused.
pub(super) type DeleteWait = (chrono::DateTime<chrono::Utc>, Option<String>);

/// The managed lifecycle's settings (`--default-credentials-manage-namespaces`,
/// `--create-lookup-window`).
#[derive(Debug, Clone)]
pub struct LifecycleOptions {
    /// Namespaces where the operator's own credentials may create and delete;
    /// None: every namespace (demo mode only, where the cloud is the simulator).
    pub manage_namespaces: Option<Vec<String>>,
    /// How long a create with an unknown outcome is looked up.
    pub lookup_window: std::time::Duration,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        Self {
            manage_namespaces: Some(Vec::new()),
            lookup_window: std::time::Duration::from_secs(600),
        }
    }
}

/// Builds a [`Shared`]: a single writer (no election), no events, instance series
/// on, per-object polling, the default budget and shares, unless told otherwise.
pub struct SharedBuilder {
    client: Client,
    dcs: DcsClient,
    clock: SharedClock,
    defaults: SpecDefaults,
    credentials: CredentialsResolver,
    batching: bool,
    budget: ApiBudget,
    namespace_limits: NamespaceLimits,
    cloud_origins: Vec<String>,
    leader: Option<Arc<LeaderGate>>,
    events: Option<super::events::EventPublisher>,
    selector: Option<String>,
    concurrency: u16,
    metrics: MetricsOptions,
    lifecycle: LifecycleOptions,
    identities: Option<Arc<super::identity::Identities>>,
}

impl SharedBuilder {
    /// Batch polling (one list per group and tick) instead of one ShowInstance each.
    pub fn batching(mut self, on: bool) -> Self {
        self.batching = on;
        self
    }

    pub fn budget(mut self, budget: ApiBudget) -> Self {
        self.budget = budget;
        self
    }

    pub fn namespace_limits(mut self, limits: NamespaceLimits) -> Self {
        self.namespace_limits = limits;
        self
    }

    /// Origins that share the cloud's gates besides the region hosts.
    pub fn cloud_origins(mut self, origins: Vec<String>) -> Self {
        self.cloud_origins = origins;
        self
    }

    pub fn leader(mut self, leader: Arc<LeaderGate>) -> Self {
        self.leader = Some(leader);
        self
    }

    pub fn events(mut self, events: super::events::EventPublisher) -> Self {
        self.events = Some(events);
        self
    }

    pub fn selector(mut self, selector: Option<String>) -> Self {
        self.selector = selector;
        self
    }

    pub fn concurrency(mut self, concurrency: u16) -> Self {
        self.concurrency = concurrency;
        self
    }

    pub fn metrics(mut self, options: MetricsOptions) -> Self {
        self.metrics = options;
        self
    }

    pub fn lifecycle(mut self, options: LifecycleOptions) -> Self {
        self.lifecycle = options;
        self
    }

    pub fn identities(mut self, identities: Arc<super::identity::Identities>) -> Self {
        self.identities = Some(identities);
        self
    }

    pub fn build(self) -> Shared {
        let observations = Arc::new(ObservationStore::default());
        let instances = Arc::new(InstanceView::new(observations.clone()));
        Shared {
            client: self.client,
            dcs: self.dcs,
            leader: self
                .leader
                .unwrap_or_else(|| Arc::new(LeaderGate::always(self.clock.clone()))),
            clock: self.clock,
            observations,
            budget: self.budget,
            namespace_limits: self.namespace_limits,
            cloud_origins: self.cloud_origins,
            batching: self.batching,
            batch: BatchPoller::default(),
            reconcile_requests: Mutex::default(),
            refreshes: Mutex::default(),
            failures: Mutex::default(),
            defaults: self.defaults,
            credentials: self.credentials,
            passwords: PasswordReader::default(),
            metrics: Arc::new(Metrics::with_options(instances.clone(), self.metrics)),
            instances,
            events: self.events,
            readiness: Arc::new(Readiness::default()),
            selector: self.selector,
            concurrency: self.concurrency,
            lifecycle: self.lifecycle,
            deletes_sent: Mutex::default(),
            claim_waits: Mutex::default(),
            converge_journal: Mutex::default(),
            identities: self.identities,
        }
    }
}

impl Shared {
    /// The builder, from what every Shared needs.
    pub fn builder(
        client: Client,
        dcs: DcsClient,
        clock: SharedClock,
        defaults: SpecDefaults,
        credentials: CredentialsResolver,
    ) -> SharedBuilder {
        SharedBuilder {
            client,
            dcs,
            clock,
            defaults,
            credentials,
            batching: false,
            budget: ApiBudget::default(),
            namespace_limits: NamespaceLimits::default(),
            cloud_origins: Vec::new(),
            leader: None,
            events: None,
            selector: None,
            concurrency: 32,
            metrics: MetricsOptions::default(),
            lifecycle: LifecycleOptions::default(),
            identities: None,
        }
    }

    /// A builder for a new process with the same clients, clock and defaults, and
    /// nothing else kept: what a restart starts from.
    pub fn rebuild(&self) -> SharedBuilder {
        Shared::builder(
            self.client.clone(),
            self.dcs.clone(),
            self.clock.clone(),
            self.defaults.clone(),
            CredentialsResolver::new(self.credentials.defaults.clone()),
        )
        .lifecycle(self.lifecycle.clone())
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The DcsInstances the watches hold (for pruning, metrics, tests).
    pub fn instances(&self) -> &Arc<InstanceView> {
        &self.instances
    }

    pub fn batch(&self) -> &BatchPoller {
        &self.batch
    }

    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    pub fn leader(&self) -> &Arc<LeaderGate> {
        &self.leader
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn is_batching(&self) -> bool {
        self.batching
    }

    /// Asks the controller serving this object's namespace to reconcile it.
    pub fn request_reconcile(&self, object: ObjectRef<DcsInstance>) {
        let senders = self
            .reconcile_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (scope, sender) in senders.iter() {
            if scope.is_none() || scope.as_deref() == object.namespace.as_deref() {
                let _ = sender.unbounded_send(object.clone());
            }
        }
    }

    /// A stream of reconcile requests for one controller scope.
    pub fn reconcile_requests(&self, scope: Option<String>) -> RequestReceiver {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        self.reconcile_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((scope, sender));
        receiver
    }

    /// The in-place writes this process made for `uid`.
    pub(super) fn converge_journal(&self, uid: &str) -> Vec<crate::crd::OperationRecord> {
        self.converge_journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .cloned()
            .unwrap_or_default()
    }

    /// Remembers an in-place write (the last per operation).
    pub(super) fn journal_write(&self, uid: &str, record: crate::crd::OperationRecord) {
        let mut journal = self
            .converge_journal
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let records = journal.entry(uid.to_string()).or_default();
        records.retain(|r| r.operation != record.operation);
        records.push(record);
    }

    /// How long a new create attempt for `uid` must still wait, if at all.
    pub(super) fn claim_wait(&self, uid: &str) -> Option<std::time::Duration> {
        let now = self.clock.now();
        let waits = self.claim_waits.lock().unwrap_or_else(|p| p.into_inner());
        let (not_before, _) = waits.get(uid)?;
        (*not_before - now).to_std().ok().filter(|d| !d.is_zero())
    }

    /// After a claim that could not go on: wait `at_least`, or a backoff doubling
    /// from 15 s to 5 minutes with the failures in a row.
    pub(super) fn claim_failed(&self, uid: &str, at_least: Option<std::time::Duration>) {
        let now = self.clock.now();
        let mut waits = self.claim_waits.lock().unwrap_or_else(|p| p.into_inner());
        let failures = waits.get(uid).map_or(0, |(_, n)| *n).saturating_add(1);
        let backoff = std::time::Duration::from_secs(15)
            .saturating_mul(1 << failures.saturating_sub(1).min(5))
            .min(std::time::Duration::from_secs(300));
        let wait = at_least.map_or(backoff, |least| least.max(backoff));
        waits.insert(uid.to_string(), (crate::clock::later(now, wait), failures));
    }

    /// A claim went through (or the object needs none): no wait.
    pub(super) fn claim_cleared(&self, uid: &str) {
        self.claim_waits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }

    /// True once per new value of the `dcs.operator.dev/reconcile-requested-at` annotation.
    pub(super) fn refresh_requested(&self, obj: &DcsInstance, uid: &str) -> bool {
        let Some(value) = obj.annotations().get(REFRESH_ANNOTATION) else {
            return false;
        };
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            value.hash(&mut hasher);
            hasher.finish()
        };
        let mut refreshes = self.refreshes.lock().unwrap_or_else(|p| p.into_inner());
        refreshes.insert(uid.to_string(), digest) != Some(digest)
    }

    /// Forgets everything kept for DcsInstances that are gone and for Secrets no
    /// live DcsInstance references (their secret material is dropped), prunes idle
    /// gates and namespaces, and publishes the sizes as
    /// `dcs_operator_cache_entries{cache}`. `live` is every DcsInstance served.
    pub fn prune(&self, live: &[Arc<DcsInstance>]) {
        // Borrowed from `live`: at 10 000 objects, owned copies (and object
        // references with uid and resourceVersion) were about 5 MB each pass.
        let uids: HashSet<&str> = live
            .iter()
            .filter_map(|obj| obj.metadata.uid.as_deref())
            .collect();
        let objects: HashSet<(&str, &str)> = live
            .iter()
            .filter_map(|obj| {
                let meta = &obj.metadata;
                Some((
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref()?,
                ))
            })
            .collect();
        let referenced: HashSet<(String, String)> = live
            .iter()
            .flat_map(|obj| {
                let namespace = obj.namespace().unwrap_or_default();
                [
                    obj.spec
                        .credentials_secret_ref
                        .as_ref()
                        .map(|r| r.name.to_string()),
                    obj.spec
                        .password_secret_ref
                        .as_ref()
                        .map(|r| r.name.clone()),
                ]
                .into_iter()
                .flatten()
                .map(move |name| (namespace.clone(), name))
            })
            .collect();
        self.observations.retain_uids(&uids);
        self.refreshes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|uid, _| uids.contains(uid.as_str()));
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|uid, _| uids.contains(uid.as_str()));
        self.deletes_sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|uid, _| uids.contains(uid.as_str()));
        self.claim_waits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|uid, _| uids.contains(uid.as_str()));
        if let Some(identities) = &self.identities {
            identities.retain(&uids);
        }
        self.converge_journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|uid, _| uids.contains(uid.as_str()));
        self.credentials.retain(&referenced);
        self.passwords.retain(&referenced);
        self.budget.prune(self.clock.now());
        self.namespace_limits.prune();
        self.batch.prune_all(|object| {
            let namespace = object.namespace.as_deref().unwrap_or_default();
            objects.contains(&(namespace, object.name.as_str()))
        });
        for (cache, entries) in self.cache_sizes() {
            self.metrics.set_cache_entries(cache, entries);
        }
        // Process-wide (values are shared while they are decoded), so not among
        // this Shared's caches; shown beside them.
        crate::intern::prune();
        self.metrics
            .set_cache_entries("interned_strings", crate::intern::table_len());
    }

    /// How many entries each map keyed by tenant data holds.
    pub fn cache_sizes(&self) -> Vec<(&'static str, usize)> {
        let (groups, members) = self.batch.sizes();
        let (observations, bindings, shows) = self.observations.sizes();
        vec![
            ("observations", observations),
            ("observation_bindings", bindings),
            ("show_requests", shows),
            (
                "refresh_annotations",
                self.refreshes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .len(),
            ),
            (
                "error_backoff",
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .len(),
            ),
            (
                "deletes_sent",
                self.deletes_sent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .len(),
            ),
            (
                "claim_waits",
                self.claim_waits
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .len(),
            ),
            (
                "converge_journal",
                self.converge_journal
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .len(),
            ),
            (
                "identities",
                self.identities.as_ref().map_or(0, |i| i.len()),
            ),
            ("credentials", self.credentials.len()),
            ("passwords", self.passwords.len()),
            ("api_gates", self.budget.len()),
            ("namespace_limits", self.namespace_limits.len()),
            ("batch_groups", groups),
            ("batch_members", members),
        ]
    }

    /// Counts one more failed reconcile in a row for this uid; returns the count.
    pub fn failed(&self, uid: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(uid.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// A reconcile worked: the next failure starts the backoff anew.
    pub(super) fn reconciled(&self, uid: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !failures.is_empty() {
            failures.remove(uid);
        }
    }

    /// Every write goes through here: a standby, or a leader whose Lease renewal is
    /// overdue, writes nothing.
    pub fn check_write(&self) -> Result<()> {
        if self.leader.may_write() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }
}
