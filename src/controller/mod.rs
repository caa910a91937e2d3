//! The controller: Context, reconcile (read -> plan -> write), error_policy and run.
//! DCS answers live in a shared observation store; a reconcile calls DCS only when
//! the stored answer is older than the object's polling state allows, so the
//! reconciles our own writes trigger cost no DCS call.

pub mod batch;
pub mod budget;
pub mod dcs_call;
pub mod resolve;
pub mod secrets;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::Instrument;
use tracing::{debug, info, warn};

use crate::clock::SharedClock;
use crate::crd::{DcsInstance, DcsInstanceStatus};
use crate::dcs::DcsClient;
use crate::leader::LeaderGate;
use crate::metrics::{InstanceView, Metrics, ReasonLabels, ResultLabels};
use crate::plan::{self, PlanInput, Problem};
use crate::secret::{MANAGED_BY, MANAGED_BY_LABEL, Owner};
use crate::server::Readiness;
use batch::{BatchPoller, Registration};
use budget::ApiBudget;
use dcs_call::{CallOutcome, CallTarget, NamespaceLimits, PermitMode};
use resolve::{Resolved, SpecDefaults};
use secrets::{CredentialsResolver, SecretOutcome};
use std::collections::HashSet;
use store::{ObservationKey, ObservationStore};

pub const FIELD_MANAGER: &str = "dcs-operator";
/// How soon work refused during a lapse of the leader gate is tried again.
const LEADER_LAPSE_REQUEUE: Duration = Duration::from_secs(2);
/// error_policy's first retry; doubles per failure in a row up to the maximum.
const ERROR_BACKOFF_FIRST: Duration = Duration::from_secs(5);
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Event notes are limited to this many bytes by the API server.
const MAX_EVENT_NOTE_BYTES: usize = 1024;
/// Setting or changing this annotation (to any value, e.g. a timestamp) makes the
/// operator observe the instance now, whatever its polling state.
pub const REFRESH_ANNOTATION: &str = "dcs.operator.dev/reconcile-requested-at";

type RequestSender = futures::channel::mpsc::UnboundedSender<ObjectRef<DcsInstance>>;
pub type RequestReceiver = futures::channel::mpsc::UnboundedReceiver<ObjectRef<DcsInstance>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("the object has no {0}")]
    MissingObjectKey(&'static str),
    #[error("could not serialize: {0}")]
    Serialization(#[from] serde_json::Error),
    #[error("this replica is not the leader (or its Lease renewal is overdue); not writing")]
    NotLeader,
    #[error("the reconcile panicked: {0}")]
    Panicked(String),
}

impl Error {
    /// A short, bounded, PascalCase label for events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "Conflict",
            Error::Kube(_) => "KubernetesApiError",
            Error::MissingObjectKey(_) => "MissingObjectKey",
            Error::Serialization(_) => "SerializationError",
            Error::NotLeader => "NotLeader",
            Error::Panicked(_) => "Panicked",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every reconcile shares, whatever namespace it serves.
pub struct Shared {
    pub client: Client,
    pub dcs: DcsClient,
    pub clock: SharedClock,
    pub observations: Arc<ObservationStore>,
    /// The DCS API budget per gate (rate, throttling, breaker, auth lock-out).
    pub budget: ApiBudget,
    /// Each namespace's share of DCS calls in flight.
    pub namespace_limits: NamespaceLimits,
    /// Origins besides the region hosts that share the cloud's gates (the demo
    /// simulator, which stands in for a region).
    pub cloud_origins: Vec<String>,
    /// Whether stable instances are observed by one list call per group and tick.
    pub batching: bool,
    pub batch: BatchPoller,
    /// Where to ask for reconciles of objects whose observation changed, per
    /// controller scope (None: every namespace).
    reconcile_requests: std::sync::Mutex<Vec<(Option<String>, RequestSender)>>,
    /// A digest of the `reconcile-requested-at` annotation value last honoured, per
    /// uid (a digest: the value is tenant data of up to 256 KiB).
    refreshes: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Failed reconciles in a row, per uid: error_policy backs off on these.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    pub defaults: SpecDefaults,
    pub credentials: CredentialsResolver,
    pub passwords: secrets::PasswordReader,
    pub metrics: Arc<Metrics>,
    pub instances: Arc<InstanceView>,
    pub leader: Arc<LeaderGate>,
    /// Publishes Events on transitions; None publishes nothing.
    pub recorder: Option<Recorder>,
    pub readiness: Arc<Readiness>,
    /// Label selector on DcsInstances, to split a cluster between deployments.
    pub selector: Option<String>,
    /// Reconciles at once per controller (0: unbounded).
    pub concurrency: u16,
}

impl Shared {
    /// A single writer (no election), no events, fresh metrics: what tests and a
    /// bare `run` start from; `run` then sets what its flags ask for.
    pub fn new(
        client: Client,
        dcs: DcsClient,
        clock: SharedClock,
        defaults: SpecDefaults,
        credentials: CredentialsResolver,
    ) -> Self {
        let observations = Arc::new(ObservationStore::default());
        let instances = Arc::new(InstanceView::new(observations.clone()));
        Self {
            client,
            dcs,
            leader: Arc::new(LeaderGate::always(clock.clone())),
            clock,
            observations,
            budget: ApiBudget::default(),
            namespace_limits: NamespaceLimits::default(),
            cloud_origins: Vec::new(),
            batching: false,
            batch: BatchPoller::default(),
            reconcile_requests: std::sync::Mutex::default(),
            refreshes: std::sync::Mutex::default(),
            failures: std::sync::Mutex::default(),
            defaults,
            credentials,
            passwords: secrets::PasswordReader::default(),
            metrics: Arc::new(Metrics::new(instances.clone())),
            instances,
            recorder: None,
            readiness: Arc::new(Readiness::default()),
            selector: None,
            concurrency: 32,
        }
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

    /// True once per new value of the `dcs.operator.dev/reconcile-requested-at` annotation.
    fn refresh_requested(&self, obj: &DcsInstance, uid: &str) -> bool {
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
        let uids: HashSet<String> = live.iter().filter_map(|obj| obj.uid()).collect();
        let objects: HashSet<ObjectRef<DcsInstance>> = live
            .iter()
            .map(|obj| ObjectRef::from_obj(obj.as_ref()))
            .collect();
        let referenced: HashSet<(String, String)> = live
            .iter()
            .flat_map(|obj| {
                let namespace = obj.namespace().unwrap_or_default();
                [
                    obj.spec
                        .credentials_secret_ref
                        .as_ref()
                        .map(|r| r.name.clone()),
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
            .retain(|uid, _| uids.contains(uid));
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|uid, _| uids.contains(uid));
        self.credentials.retain(&referenced);
        self.passwords.retain(&referenced);
        self.budget.prune(self.clock.now());
        self.namespace_limits.prune();
        self.batch.prune_all(|object| objects.contains(object));
        for (cache, entries) in self.cache_sizes() {
            self.metrics.set_cache_entries(cache, entries);
        }
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
    fn reconciled(&self, uid: &str) {
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

/// One controller's context: the shared parts plus the caches of its watches.
pub struct Context {
    pub shared: Arc<Shared>,
    /// Connection Secrets we manage (label-selected), to compare without a GET.
    pub owned_secrets: Option<reflector::Store<Secret>>,
    /// Metadata of every Secret in scope: tells when a credentials Secret changed.
    pub secret_metadata: Option<reflector::Store<PartialObjectMeta<Secret>>>,
}

impl Context {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            owned_secrets: None,
            secret_metadata: None,
        }
    }
}

pub fn owner_of(obj: &DcsInstance) -> Result<Owner> {
    Ok(Owner {
        api_version: DcsInstance::api_version(&()).to_string(),
        kind: DcsInstance::kind(&()).to_string(),
        name: obj.name_any(),
        uid: obj.uid().ok_or(Error::MissingObjectKey("metadata.uid"))?,
    })
}

pub async fn reconcile(obj: Arc<DcsInstance>, ctx: Arc<Context>) -> Result<Action> {
    // Every log line about an instance carries its namespace, name and instance id.
    let span = tracing::info_span!(
        "reconcile",
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        instance_id = %obj.spec.instance_id,
    );
    let started = std::time::Instant::now();
    let uid = obj.uid().unwrap_or_default();
    // A panic fails this object, never the process (kube-runtime would re-raise it).
    let inner = reconcile_inner(obj, ctx.clone()).instrument(span);
    let result = crate::supervise::catching("reconcile", &ctx.shared.metrics, inner)
        .await
        .unwrap_or_else(|text| Err(Error::Panicked(text)));
    let metrics = &ctx.shared.metrics;
    metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics
        .reconciles
        .get_or_create(&ResultLabels { result: outcome })
        .inc();
    match &result {
        Ok(_) => ctx.shared.reconciled(&uid),
        Err(error) => {
            metrics
                .reconcile_failures
                .get_or_create(&ReasonLabels {
                    reason: error.reason(),
                })
                .inc();
        }
    }
    result
}

async fn reconcile_inner(obj: Arc<DcsInstance>, ctx: Arc<Context>) -> Result<Action> {
    let shared = &ctx.shared;
    if !shared.leader.may_write() {
        // A standby keeps its caches warm but neither polls DCS nor writes; it is
        // woken for every object when it becomes the leader. A leader whose renewal
        // is only overdue comes back to this object soon: no transition will.
        return Ok(if shared.leader.is_leading() {
            Action::requeue(LEADER_LAPSE_REQUEUE)
        } else {
            Action::await_change()
        });
    }
    let namespace = obj
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = obj.name_any();
    let owner = owner_of(&obj)?;
    let now = shared.clock.now();
    let mut problems = Vec::new();

    let resolved = match resolve::resolve(&obj.spec, &name, &shared.defaults) {
        Ok(resolved) => Some(resolved),
        Err(message) => {
            problems.push(Problem::InvalidSpec(message));
            None
        }
    };

    let mut observation = None;
    let mut password = None;
    if let Some(resolved) = &resolved {
        match shared
            .credentials
            .resolve(
                &shared.client,
                &namespace,
                &obj.spec,
                &resolved.endpoint_source,
                &shared.budget,
                ctx.secret_metadata.as_ref(),
            )
            .await?
        {
            Err(problem) => problems.push(problem),
            Ok(found) => match obj.spec.project_id.clone().or(found.project_id.clone()) {
                None => problems.push(Problem::InvalidSpec(
                    "spec.projectId is required: the credentials carry no projectId".into(),
                )),
                Some(project_id) => {
                    let observed = observe(
                        &ctx,
                        &obj,
                        &namespace,
                        resolved,
                        &found.credentials,
                        &project_id,
                        &owner.uid,
                    )
                    .await;
                    match observed {
                        Observed::Now(found) => observation = Some(found),
                        // Nothing observed yet: write nothing, look again soon.
                        Observed::NotYet(after) => return Ok(Action::requeue(after)),
                    }
                }
            },
        }
        if let Some(reference) = &obj.spec.password_secret_ref {
            match shared
                .passwords
                .read(
                    &shared.client,
                    &namespace,
                    &reference.name,
                    &reference.key,
                    ctx.secret_metadata.as_ref(),
                )
                .await?
            {
                Ok(value) => password = Some(value),
                Err(message) => problems.push(Problem::PasswordSecretNotFound(message)),
            }
        }
    }

    let connection_secret_name = resolved
        .as_ref()
        .map(|r| r.connection_secret_name.clone())
        .unwrap_or_else(|| format!("{name}-dcs"));
    let poll_interval = resolved
        .as_ref()
        .map(|r| r.poll_interval)
        .unwrap_or(shared.defaults.poll_interval);
    let make_plan = |problems: &[Problem]| {
        plan::plan(&PlanInput {
            namespace: &namespace,
            owner: &owner,
            generation: obj.meta().generation,
            current: obj.status.as_ref(),
            observation: observation.as_ref(),
            problems,
            connection_secret_name: &connection_secret_name,
            password: password
                .as_ref()
                .map(|p: &crate::dcs::SecretString| p.expose()),
            poll_interval,
            batched: shared.batching,
            now,
        })
    };
    let mut planned = make_plan(&problems);

    if let Some(desired) = &planned.secret {
        let outcome = secrets::ensure_connection_secret(
            shared,
            ctx.owned_secrets.as_ref(),
            &namespace,
            desired,
            &owner.uid,
        )
        .await?;
        match outcome {
            SecretOutcome::Conflict(message) => {
                problems.push(Problem::SecretConflict(message));
                planned = make_plan(&problems);
            }
            SecretOutcome::TypeMismatch(message) => {
                problems.push(Problem::SecretTypeMismatch(message));
                planned = make_plan(&problems);
            }
            SecretOutcome::Unchanged | SecretOutcome::Created | SecretOutcome::Patched => {}
        }
    }

    if write_status_if_changed(shared, &obj, &namespace, &planned.status).await? {
        publish_events(shared, &obj, &planned.status).await;
    }

    Ok(match planned.requeue_after {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

enum Observed {
    Now(plan::Observation),
    /// No observation exists yet (the group's first list is on its way, or the
    /// budget is empty): look again after this long.
    NotYet(Duration),
}

/// Returns the observation to plan with: the stored one while it is fresh, else a
/// ShowInstance call (or the refusal the gate remembers: a locked key, a throttling
/// pause, an open circuit).
async fn observe(
    ctx: &Context,
    obj: &DcsInstance,
    namespace: &str,
    resolved: &Resolved,
    credentials: &crate::dcs::Credentials,
    project_id: &str,
    uid: &str,
) -> Observed {
    let shared = &ctx.shared;
    let key = ObservationKey {
        endpoint: resolved.endpoint.as_str().to_string(),
        project_id: project_id.to_string(),
        // A SHA-256 over the credentials: computed once per reconcile, used as the
        // store key, the batch group and the gate's proof of which secret worked.
        credentials_fingerprint: credentials.fingerprint(),
        instance_id: obj.spec.instance_id.clone(),
    };
    let fingerprint = key.credentials_fingerprint.as_str();
    let gate = budget::gate_key(&resolved.endpoint, credentials, &shared.cloud_origins);
    shared.observations.bind(uid, &key);
    if shared.batching {
        shared.batch.register(
            &ctx.shared,
            Registration {
                uid,
                namespace,
                gate: &gate,
                object: ObjectRef::from_obj(obj),
                endpoint: &resolved.endpoint,
                project_id,
                credentials,
                credentials_fingerprint: fingerprint,
                instance_id: &obj.spec.instance_id,
                poll_interval: resolved.poll_interval,
            },
        );
    }
    let now = shared.clock.now();
    let stored = shared.observations.get(&key);
    let forced = shared.refresh_requested(obj, uid) || shared.observations.show_requested(&key);
    match &stored {
        Some(stored)
            if !forced
                && plan::next_poll_at(stored, resolved.poll_interval, uid, shared.batching)
                    > now =>
        {
            return Observed::Now(stored.clone());
        }
        // With batching the first observation comes from the group's list call.
        None if shared.batching && !forced => return Observed::NotYet(Duration::from_secs(2)),
        _ => {}
    }
    let target = CallTarget {
        gate: &gate,
        fingerprint,
        namespace,
        operation: "show_instance",
    };
    let outcome = dcs_call::call(shared, target, PermitMode::TryNow, || {
        shared.dcs.show_instance(
            &resolved.endpoint,
            credentials,
            project_id,
            &obj.spec.instance_id,
        )
    })
    .await;
    let result = match outcome {
        CallOutcome::Wait(after) => {
            // Not now (empty bucket, busy namespace): plan with what is known (it may
            // be Stale by now), else look again soon and report nothing.
            return match stored {
                Some(stored) => Observed::Now(stored),
                None => Observed::NotYet(
                    after.clamp(Duration::from_millis(100), Duration::from_secs(60)),
                ),
            };
        }
        CallOutcome::Refused(refusal) => {
            return Observed::Now(match stored {
                Some(stored) if stored.result.is_err() => stored,
                _ => shared.observations.record(key, Err(refusal), now),
            });
        }
        CallOutcome::Answered(result) => result.map(|answer| answer.value),
    };
    match &result {
        Ok(instance) => debug!(
            status = instance.status.as_deref().unwrap_or(""),
            "observed"
        ),
        Err(error) => warn!(
            reason = error.reason(),
            request_id = error.request_id().unwrap_or(""),
            "DCS observation failed: {error}"
        ),
    }
    Observed::Now(shared.observations.record(key, result, shared.clock.now()))
}

/// Server-side apply of the whole planned status, only when it differs from the
/// stored one (compared as JSON, the form it has on the wire).
pub async fn write_status_if_changed(
    shared: &Shared,
    obj: &DcsInstance,
    namespace: &str,
    planned: &DcsInstanceStatus,
) -> Result<bool> {
    let desired = serde_json::to_value(planned)?;
    let stored = serde_json::to_value(obj.status.clone().unwrap_or_default())?;
    if desired == stored {
        return Ok(false);
    }
    shared.check_write()?;
    let api: Api<DcsInstance> = Api::namespaced(shared.client.clone(), namespace);
    let body = serde_json::json!({
        "apiVersion": DcsInstance::api_version(&()),
        "kind": DcsInstance::kind(&()),
        "status": desired,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    shared.metrics.write("status");
    info!(
        status = planned.status.as_deref().unwrap_or(""),
        "status updated"
    );
    Ok(true)
}

/// Events for what changed between the stored and the written status. Failing to
/// publish one is logged, never fatal: the status already says it.
async fn publish_events(shared: &Shared, obj: &DcsInstance, written: &DcsInstanceStatus) {
    let Some(recorder) = &shared.recorder else {
        return;
    };
    let reference = obj.object_ref(&());
    for planned in plan::transition_events(obj.status.as_ref(), written) {
        if shared.check_write().is_err() {
            return;
        }
        let event = KubeEvent {
            type_: if planned.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: planned.reason.to_string(),
            note: Some(
                crate::dcs::bounded::clip_bytes(&planned.note, MAX_EVENT_NOTE_BYTES).to_string(),
            ),
            action: "Observe".to_string(),
            secondary: None,
        };
        match recorder.publish(&event, &reference).await {
            Ok(()) => shared.metrics.write("event"),
            Err(error) => warn!(
                reason = planned.reason,
                "could not publish an event: {error}"
            ),
        }
    }
}

/// The Reporter for this operator's Events.
pub fn reporter(instance: Option<String>) -> Reporter {
    Reporter {
        controller: FIELD_MANAGER.to_string(),
        instance,
    }
}

/// Backs off per object: 5 s after the first failure in a row, doubling to 5
/// minutes, so a write the API server refuses is never retried in a tight loop.
pub fn error_policy(obj: Arc<DcsInstance>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.shared.failed(&obj.uid().unwrap_or_default());
    let after = error_backoff(failures);
    warn!(
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        reason = error.reason(),
        retry_in_seconds = after.as_secs(),
        "reconcile failed: {error}"
    );
    Action::requeue(after)
}

/// The wait after `failures` failed reconciles in a row (1 = the first).
pub fn error_backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    ERROR_BACKOFF_FIRST
        .saturating_mul(1u32 << exponent)
        .min(ERROR_BACKOFF_MAX)
}

/// Drops what the operator never reads from cached objects: managedFields (often the
/// largest part of an object), and the last-applied annotation (a second copy of the
/// object, for a Secret its data).
pub fn strip_metadata(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// The owned-Secret watch's events as the cache should see them: Secrets no
/// DcsInstance controls are dropped (or removed, if they were cached before), and
/// the rest slimmed to a digest of their data.
fn slim_owned_event(
    event: Result<watcher::Event<Secret>, watcher::Error>,
) -> Option<Result<watcher::Event<Secret>, watcher::Error>> {
    use watcher::Event;
    Some(Ok(match event {
        Err(error) => return Some(Err(error)),
        Ok(Event::Apply(secret)) => match crate::secret::slim_for_cache(&secret) {
            Some(slim) => Event::Apply(slim),
            None => Event::Delete(secret),
        },
        Ok(Event::InitApply(secret)) => Event::InitApply(crate::secret::slim_for_cache(&secret)?),
        Ok(Event::Delete(secret)) => Event::Delete(secret),
        Ok(other) => other,
    }))
}

/// Which namespaces to serve: all, or the listed ones (one controller each).
pub async fn run(
    shared: Arc<Shared>,
    namespaces: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let controllers = scopes.into_iter().map(|scope| {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        async move {
            let client = shared.client.clone();
            let (instances, secrets, secret_metadata): (
                Api<DcsInstance>,
                Api<Secret>,
                Api<PartialObjectMeta<Secret>>,
            ) = match &scope {
                Some(ns) => (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client, ns),
                ),
                None => (
                    Api::all(client.clone()),
                    Api::all(client.clone()),
                    Api::all(client),
                ),
            };
            let (owned_reader, owned_writer) = reflector::store();
            // Only Secrets a DcsInstance controls, and of those a digest of their
            // data, never the data: anyone may label a Secret managed-by=dcs-operator.
            let owned = watcher(
                secrets,
                watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
            )
            .default_backoff()
            .filter_map(|event| futures::future::ready(slim_owned_event(event)))
            .reflect(owned_writer)
            .applied_objects();
            // Metadata only: notices changes of credentials and password Secrets
            // without holding every Secret's data in memory. Our own connection
            // Secrets are left out at the server: each of their writes would otherwise
            // come back here and be matched against every DcsInstance.
            let (metadata_reader, metadata_writer) = reflector::store();
            let referenced = watcher(
                secret_metadata,
                watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}!={MANAGED_BY}")),
            )
            .default_backoff()
            .modify(|meta: &mut PartialObjectMeta<Secret>| {
                // Name and resourceVersion are all the credentials cache needs.
                strip_metadata(&mut meta.metadata);
                meta.metadata.annotations = None;
                meta.metadata.labels = None;
                meta.metadata.owner_references = None;
            })
            .reflect(metadata_writer)
            .touched_objects();
            let mut instance_config = watcher::Config::default();
            if let Some(selector) = &shared.selector {
                instance_config = instance_config.labels(selector);
            }
            let (store, instance_writer) = reflector::store();
            let instance_stream = watcher(instances, instance_config)
                .default_backoff()
                .modify(|obj: &mut DcsInstance| strip_metadata(obj.meta_mut()))
                .reflect(instance_writer)
                .applied_objects();
            let controller = Controller::for_stream(instance_stream, store.clone()).with_config(
                kube::runtime::controller::Config::default().concurrency(shared.concurrency),
            );
            shared.instances.add_store(store.clone());
            shared.readiness.expect(3);
            for ready in [
                Box::pin({
                    let store = store.clone();
                    async move { store.wait_until_ready().await.is_ok() }
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>,
                Box::pin({
                    let reader = owned_reader.clone();
                    async move { reader.wait_until_ready().await.is_ok() }
                }),
                Box::pin({
                    let reader = metadata_reader.clone();
                    async move { reader.wait_until_ready().await.is_ok() }
                }),
            ] {
                let readiness = shared.readiness.clone();
                tokio::spawn(async move {
                    if ready.await {
                        readiness.synced();
                    }
                });
            }
            // Becoming the leader wakes every object: a standby left them waiting.
            let became_leader =
                futures::stream::unfold(shared.leader.subscribe(), |mut leading| async move {
                    loop {
                        leading.changed().await.ok()?;
                        if *leading.borrow_and_update() {
                            return Some(((), leading));
                        }
                    }
                });
            let ctx = Arc::new(Context {
                shared: shared.clone(),
                owned_secrets: Some(owned_reader),
                secret_metadata: Some(metadata_reader),
            });
            let requested = shared.reconcile_requests(scope.clone());
            controller
                .reconcile_all_on(became_leader)
                .reconcile_on(requested)
                .owns_stream(owned)
                .watches_stream(referenced, move |secret| {
                    let namespace = secret.namespace();
                    let name = secret.name_any();
                    store
                        .state()
                        .into_iter()
                        .filter(|obj| {
                            obj.namespace() == namespace && secrets::references(&obj.spec, &name)
                        })
                        .map(|obj| ObjectRef::from_obj(obj.as_ref()))
                        .collect::<Vec<_>>()
                })
                .graceful_shutdown_on(shutdown)
                .run(reconcile, error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(error) = result {
                        debug!("controller: {error}");
                    }
                })
                .await;
        }
    });
    futures::future::join_all(controllers).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owned_secret_cache_keeps_only_slim_secrets_a_dcs_instance_controls() {
        use crate::secret::{ConnectionDetails, connection_secret};
        let owner = Owner {
            api_version: "dcs.operator.dev/v1alpha1".into(),
            kind: "DcsInstance".into(),
            name: "cache".into(),
            uid: "uid-1".into(),
        };
        let details = ConnectionDetails {
            engine: "Redis".into(),
            engine_version: None,
            addresses: vec!["10.0.0.1".into()],
            port: 6379,
            password: Some("hunter2".into()),
        };
        let owned = connection_secret("ns", "cache-dcs", &owner, &details);
        let mut foreign = owned.clone();
        foreign.metadata.owner_references = None;
        let applied = |event| match slim_owned_event(Ok(event)) {
            Some(Ok(event)) => Some(event),
            _ => None,
        };
        match applied(watcher::Event::Apply(owned.clone())) {
            Some(watcher::Event::Apply(slim)) => {
                assert!(slim.data.is_none());
                assert!(!format!("{slim:?}").contains("hunter2"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            applied(watcher::Event::Apply(foreign.clone())),
            Some(watcher::Event::Delete(_))
        ));
        assert!(applied(watcher::Event::InitApply(foreign)).is_none());
        assert!(matches!(
            applied(watcher::Event::InitApply(owned)),
            Some(watcher::Event::InitApply(_))
        ));
    }

    #[test]
    fn error_backoff_doubles_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| error_backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(error_backoff(u32::MAX), ERROR_BACKOFF_MAX);
        assert_eq!(error_backoff(0), ERROR_BACKOFF_FIRST);
    }

    #[tokio::test]
    async fn namespace_shares_are_capped_and_forgotten_when_idle() {
        let limits = NamespaceLimits::new(2);
        let a = limits.try_acquire("a").unwrap();
        let _b = limits.try_acquire("a").unwrap();
        assert!(
            limits.try_acquire("a").is_none(),
            "the third call in namespace a waits"
        );
        assert!(
            limits.try_acquire("b").is_some(),
            "namespace b is not affected"
        );
        drop(a);
        assert!(limits.try_acquire("a").is_some());
        limits.prune();
        assert_eq!(limits.len(), 1, "a still has a call in flight");
        drop(_b);
        limits.prune();
        assert!(limits.is_empty());
    }
}
