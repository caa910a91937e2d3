//! The controller: the reconcile driver (gather → plan → apply), error_policy, and
//! the step-named errors. The pieces, in the order a reconcile meets them:
//!
//! - [`gather`]: everything reconcile reads (I/O);
//! - [`crate::plan`]: what should be true (pure);
//! - [`apply`]: the writes, only on a difference (I/O);
//! - [`shared`]: what every reconcile shares; [`runner`]: the watches and the loop;
//! - [`dcs_call`], [`budget`], [`batch`], [`store`]: how DCS is called and answers kept;
//! - [`resolve`] (pure) and [`secrets`] (reads): the spec and the Secrets it names.
//!
//! DCS answers live in a shared observation store; a reconcile calls DCS only when
//! the stored answer is older than the object's polling state allows, so the
//! reconciles our own writes trigger cost no DCS call.

pub mod apply;
pub mod batch;
pub mod budget;
pub mod dcs_call;
pub mod events;
pub mod gather;
pub mod identity;
pub mod lifecycle;
pub mod resolve;
pub mod runner;
pub mod secret_cache;
pub mod secrets;
pub mod shared;
pub mod store;
pub mod wake;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{Instrument, warn};

use crate::crd::DcsInstance;
use crate::metrics::{ReasonLabels, ResultLabels};
use crate::plan;
use gather::Gather;

pub use events::EventPublisher;
pub use runner::run;
pub use shared::{RequestReceiver, Shared, SharedBuilder};

pub const FIELD_MANAGER: &str = "dcs-operator";
/// How soon work refused during a lapse of the leader gate is tried again.
const LEADER_LAPSE_REQUEUE: Duration = Duration::from_secs(2);
/// error_policy's first retry; doubles per failure in a row up to the maximum.
const ERROR_BACKOFF_FIRST: Duration = Duration::from_secs(5);
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Setting or changing this annotation (to any value, e.g. a timestamp) makes the
/// operator observe the instance now, whatever its polling state.
pub const REFRESH_ANNOTATION: &str = "dcs.operator.dev/reconcile-requested-at";

/// Why a reconcile failed: each variant names the step, and keeps its source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the credentials Secret {name}: {source}")]
    ReadCredentials {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading the password Secret {name}: {source}")]
    ReadPassword {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading the connection Secret {name}: {source}")]
    ReadConnectionSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the connection Secret {name}: {source}")]
    WriteSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the connection Secret {name} is not controlled by this DcsInstance any more; looking again"
    )]
    SecretTakenMeanwhile { name: String },
    #[error("writing the lifecycle annotations or finalizer: {source}")]
    PatchMetadata {
        #[source]
        source: kube::Error,
    },
    #[error("writing the in-use finalizer of the credentials Secret {name}: {source}")]
    PatchCredentialsFinalizer {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing DcsInstances: {source}")]
    ListInstances {
        #[source]
        source: kube::Error,
    },
    #[error("patching the status: {source}")]
    PatchStatus {
        #[source]
        source: kube::Error,
    },
    #[error("the object has no {0}")]
    MissingObjectKey(&'static str),
    #[error("could not serialize the status: {0}")]
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
            Error::ReadCredentials { source, .. }
            | Error::ReadPassword { source, .. }
            | Error::ReadConnectionSecret { source, .. }
            | Error::WriteSecret { source, .. }
            | Error::PatchStatus { source }
            | Error::PatchMetadata { source }
            | Error::PatchCredentialsFinalizer { source, .. }
                if is_conflict(source) =>
            {
                "Conflict"
            }
            Error::ReadCredentials { .. } => "ReadCredentialsFailed",
            Error::ReadPassword { .. } => "ReadPasswordFailed",
            Error::ReadConnectionSecret { .. } => "ReadSecretFailed",
            Error::WriteSecret { .. } => "WriteSecretFailed",
            Error::SecretTakenMeanwhile { .. } => "SecretTakenMeanwhile",
            Error::PatchStatus { .. } => "PatchStatusFailed",
            Error::PatchMetadata { .. } => "PatchMetadataFailed",
            Error::PatchCredentialsFinalizer { .. } => "PatchSecretFinalizerFailed",
            Error::ListInstances { .. } => "ListInstancesFailed",
            Error::MissingObjectKey(_) => "MissingObjectKey",
            Error::Serialization(_) => "SerializationError",
            Error::NotLeader => "NotLeader",
            Error::Panicked(_) => "Panicked",
        }
    }
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One controller's context: the shared parts plus the caches of its watches.
pub struct Context {
    pub shared: Arc<Shared>,
    /// Connection Secrets we control, as digests, to compare without a GET.
    pub owned_secrets: Option<Arc<secret_cache::OwnedSecrets>>,
    /// The resourceVersion of every other Secret in scope: tells when a
    /// credentials or password Secret changed.
    pub secret_metadata: Option<Arc<secret_cache::SecretVersions>>,
    /// The wake-up queue in front of the Controller: reconciles and error backoffs
    /// set their next wake-up here instead of in kube's scheduler. None when
    /// reconcile is called directly (tests): the Action carries the wait.
    pub wake: Option<Arc<wake::WakeQueue>>,
}

impl Context {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            owned_secrets: None,
            secret_metadata: None,
            wake: None,
        }
    }
}

/// Reconciles one DcsInstance: logged with its namespace, name and instance id,
/// counted, and a panic turned into an error for this object alone.
pub async fn reconcile(obj: Arc<DcsInstance>, ctx: Arc<Context>) -> Result<Action> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        instance_id = obj.spec.instance_id.as_deref().unwrap_or_default(),
    );
    let started = std::time::Instant::now();
    let uid = obj.uid().unwrap_or_default();
    let object = runner::named(obj.as_ref());
    if let Some(wake) = &ctx.wake {
        wake.started(&object);
    }
    let steps = reconcile_steps(obj, ctx.clone()).instrument(span);
    let result = crate::supervise::catching("reconcile", &ctx.shared.metrics, steps)
        .await
        .unwrap_or_else(|text| Err(Error::Panicked(text)));
    ctx.shared.count_reconcile(&uid, &result, started.elapsed());
    Ok(wake_after(&ctx, &object, result?))
}

/// The Action for a reconcile that wants to run again `after` (never: None). With a
/// wake-up queue, the wait is set there and kube's scheduler holds nothing.
fn wake_after(ctx: &Context, object: &ObjectRef<DcsInstance>, after: Option<Duration>) -> Action {
    match (&ctx.wake, after) {
        (Some(wake), Some(after)) => {
            wake.wake_after(object, after);
            Action::await_change()
        }
        (_, after) => after.map_or_else(Action::await_change, Action::requeue),
    }
}

/// gather → plan → apply.
async fn reconcile_steps(obj: Arc<DcsInstance>, ctx: Arc<Context>) -> Result<Option<Duration>> {
    let shared = &ctx.shared;
    if !shared.leader.may_write() {
        // A standby keeps its caches warm but neither polls DCS nor writes; it is
        // woken for every object when it becomes the leader. A leader whose renewal
        // is only overdue comes back to this object soon: no transition will.
        return Ok(shared.leader.is_leading().then_some(LEADER_LAPSE_REQUEUE));
    }
    let driven = lifecycle::drive(&ctx, obj).await?;
    if driven.finished {
        return Ok(driven.requeue);
    }
    let obj = driven.obj.clone();
    let observe = driven.observe.as_deref();
    let mut gathered = match gather::gather(&ctx, &obj, observe, driven.problems).await? {
        Gather::Ready(gathered) => gathered,
        // Nothing observed yet: write nothing, look again soon.
        Gather::NotYet(after) => return Ok(Some(after)),
    };
    gathered.managed_instance_id = driven.managed_id;
    note_immutable_changes(&obj, &mut gathered);
    let converged = converge_managed(&ctx, &obj, &mut gathered, driven.managed_init).await?;
    let input = gathered.plan_input(&obj, shared.batching, shared.clock.now());
    let mut planned = plan::plan(&input);
    if converged.hold_secret {
        // The password Secret holds a value DCS does not have yet: applications
        // keep the one that works.
        planned.secret = None;
    }
    apply::apply(&ctx, &obj, &gathered, &planned).await?;
    // The soonest of the plan's next look, the lifecycle's and converging's.
    Ok([planned.requeue_after, driven.requeue, converged.requeue]
        .into_iter()
        .flatten()
        .min())
}

/// In-place changes of a managed instance (none for Observe): at most one write,
/// its record and condition handed to the plan.
async fn converge_managed(
    ctx: &Context,
    obj: &DcsInstance,
    gathered: &mut gather::Gathered,
    initial: Option<crate::crd::ManagedStatus>,
) -> Result<lifecycle::converge::Converged> {
    if obj.spec.management_policy != crate::crd::ManagementPolicy::Manage {
        return Ok(lifecycle::converge::Converged::default());
    }
    if !gathered.problems.is_empty() {
        // Nothing is converged, but a password DCS does not have yet still must
        // not reach the connection Secret.
        let managed = obj.status.as_ref().and_then(|s| s.managed.as_deref());
        let digest = gathered
            .password
            .as_ref()
            .map(|p| crate::lifecycle::converge::password_digest(&gathered.owner.uid, p.expose()));
        return Ok(lifecycle::converge::Converged {
            hold_secret: lifecycle::converge::holds(managed, digest.as_deref()),
            ..lifecycle::converge::Converged::default()
        });
    }
    let converged = lifecycle::converge::converge(ctx, obj, gathered, initial).await?;
    gathered.problems.extend(converged.problems.iter().cloned());
    gathered.managed = converged.managed.clone();
    Ok(converged)
}

/// A managed instance whose spec asks for what DCS cannot change in place (the
/// CRD refuses it; a server without the rule, or a spec from before it, may not):
/// reported in Synced, never written.
fn note_immutable_changes(obj: &DcsInstance, gathered: &mut gather::Gathered) {
    let (Some(desired), Some(_)) = (obj.spec.instance.as_ref(), &gathered.managed_instance_id)
    else {
        return;
    };
    let observed = gathered
        .observation
        .as_ref()
        .and_then(|o| o.result.as_ref().ok());
    if let Some(instance) = observed {
        let fields = plan::problems::immutable_differences(desired, instance);
        if !fields.is_empty() {
            gathered
                .problems
                .push(plan::Problem::ImmutableFieldChanged { fields });
        }
    }
}

impl Shared {
    /// Counts a finished reconcile in the metrics, and resets the object's backoff
    /// after a success.
    fn count_reconcile<T>(&self, uid: &str, result: &Result<T>, took: Duration) {
        self.metrics.reconcile_duration.observe(took.as_secs_f64());
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .reconciles
            .get_or_create(&ResultLabels { result: outcome })
            .inc();
        match result {
            Ok(_) => self.reconciled(uid),
            Err(error) => {
                self.metrics
                    .reconcile_failures
                    .get_or_create(&ReasonLabels {
                        reason: error.reason(),
                    })
                    .inc();
            }
        }
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
    wake_after(&ctx, &runner::named(obj.as_ref()), Some(after))
}

/// The wait after `failures` failed reconciles in a row (1 = the first).
pub fn error_backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    ERROR_BACKOFF_FIRST
        .saturating_mul(1u32 << exponent)
        .min(ERROR_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection_secret::Owner;
    use dcs_call::NamespaceLimits;
    use kube::runtime::watcher;

    #[test]
    fn the_owned_secret_cache_keeps_only_slim_secrets_a_dcs_instance_controls() {
        use crate::connection_secret::{ConnectionDetails, connection_secret};
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
        let cache = secret_cache::OwnedSecrets::default();
        cache.apply_event(&watcher::Event::Apply(owned.clone()));
        let slim = cache.secret("ns", "cache-dcs").expect("kept");
        assert!(slim.data.is_none());
        assert!(!format!("{slim:?}").contains("hunter2"));
        // Someone takes the controller reference away: forgotten.
        cache.apply_event(&watcher::Event::Apply(foreign.clone()));
        assert!(cache.is_empty());
        // Never kept from a list either.
        cache.apply_event(&watcher::Event::Init);
        cache.apply_event(&watcher::Event::InitApply(foreign));
        cache.apply_event(&watcher::Event::InitDone);
        assert!(cache.is_empty());
        cache.apply_event(&watcher::Event::Apply(owned));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_instance_cache_keeps_what_reconcile_reads_and_drops_the_rest() {
        use std::collections::BTreeMap;
        let mut obj: DcsInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "dcs.operator.dev/v1alpha1", "kind": "DcsInstance",
            "metadata": {
                "name": "cache", "namespace": "ns", "uid": "u-1", "generation": 3,
                "resourceVersion": "42", "creationTimestamp": "2026-01-01T00:00:00Z",
                "deletionTimestamp": "2026-01-02T00:00:00Z",
                "finalizers": ["someone.else/keep", "dcs.operator.dev/cleanup"],
                "labels": {"team": "a"},
                "annotations": {
                    "dcs.operator.dev/create-attempt": "1",
                    "dcs.operator.dev/reconcile-requested-at": "now",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"huge\": 1}",
                    "tenant/notes": "x",
                },
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "o-1"}],
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {"instanceId": "i-1", "projectId": "p"},
            "status": {"status": "RUNNING", "ip": "10.0.0.1"},
        }))
        .unwrap();
        let spec = obj.spec.clone();
        let status = obj.status.clone();
        runner::slim_instance(&mut obj);
        let meta = &obj.metadata;
        assert_eq!(meta.name.as_deref(), Some("cache"));
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
        assert_eq!(meta.uid.as_deref(), Some("u-1"));
        assert_eq!(meta.generation, Some(3));
        assert_eq!(meta.resource_version.as_deref(), Some("42"));
        assert!(meta.deletion_timestamp.is_some());
        assert_eq!(meta.finalizers.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            meta.annotations.clone().unwrap_or_default(),
            BTreeMap::from([
                (
                    "dcs.operator.dev/create-attempt".to_string(),
                    "1".to_string()
                ),
                (
                    "dcs.operator.dev/reconcile-requested-at".to_string(),
                    "now".to_string()
                ),
            ])
        );
        assert!(meta.labels.is_none() && meta.owner_references.is_none());
        assert!(meta.managed_fields.is_none() && meta.creation_timestamp.is_none());
        assert_eq!(obj.spec, spec);
        assert_eq!(obj.status, status);
    }

    #[test]
    fn a_relist_after_the_first_is_applied_in_place_and_removes_what_it_lacks() {
        use kube::runtime::reflector;
        use watcher::Event;
        let object = |name: &str, rv: &str| {
            let mut obj = DcsInstance::new(name, Default::default());
            obj.metadata.namespace = Some("ns".into());
            obj.metadata.resource_version = Some(rv.into());
            obj
        };
        let (reader, mut writer) = reflector::store::<DcsInstance>();
        let mut relist = runner::RelistInPlace::default();
        let mut feed = |event: Event<DcsInstance>| {
            for event in relist.events(event, || reader.state()) {
                writer.apply_watcher_event(&event);
            }
        };
        // The first list goes through as is and marks the store ready.
        feed(Event::Init);
        feed(Event::InitApply(object("a", "1")));
        feed(Event::InitApply(object("b", "1")));
        feed(Event::InitDone);
        let names = |reader: &reflector::Store<DcsInstance>| {
            let mut names: Vec<String> = reader
                .state()
                .iter()
                .map(|o| format!("{}@{}", o.name_any(), o.resource_version().unwrap()))
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&reader), ["a@1", "b@1"]);
        // A relist that no longer has "b" and has a new "c": applied as it comes.
        feed(Event::Init);
        feed(Event::InitApply(object("a", "2")));
        assert_eq!(names(&reader), ["a@2", "b@1"], "served throughout");
        feed(Event::InitApply(object("c", "2")));
        feed(Event::InitDone);
        assert_eq!(names(&reader), ["a@2", "c@2"]);
        // Watch events in between pass unchanged.
        feed(Event::Delete(object("a", "3")));
        assert_eq!(names(&reader), ["c@2"]);
    }

    #[tokio::test]
    async fn tenant_named_endpoints_share_one_cap_across_namespaces() {
        let limits = NamespaceLimits::with_tenant_origins(8, 2);
        let held: Vec<_> = ["a", "b"]
            .iter()
            .map(|ns| {
                (
                    limits.try_acquire(ns).unwrap(),
                    limits.try_acquire_tenant_origin().unwrap(),
                )
            })
            .collect();
        assert!(
            limits.try_acquire("c").is_some(),
            "namespace c has its share"
        );
        assert!(
            limits.try_acquire_tenant_origin().is_none(),
            "but tenant-named endpoints are capped across namespaces"
        );
        drop(held);
        assert!(limits.try_acquire_tenant_origin().is_some());
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
