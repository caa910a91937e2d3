//! Everything reconcile reads, in one place: the resolved spec, the credentials and
//! project, the observation (stored, or one budgeted DCS call), the password, and
//! the connection Secret as it exists now (the owned-Secret cache, else one GET
//! when a Secret is about to be written). What cannot be read becomes a typed
//! [`Problem`] for the plan, never an early return.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, warn};

use super::batch::Registration;
use super::budget;
use super::dcs_call::{self, CallOutcome, CallTarget, PermitMode};
use super::resolve::{self, Resolved};
use super::store::ObservationKey;
use super::{Context, Error, Result};
use crate::connection_secret::{Owner, controller_uid};
use crate::crd::DcsInstance;
use crate::dcs::{Credentials, SecretString};
use crate::plan::{self, CredentialsProblem, Observation, PlanInput, Problem, SpecProblem};

/// How long a reconcile about to write a connection Secret waits for the owned-Secret
/// watch's first list before reading the Secret itself.
const OWNED_LIST_WAIT: Duration = Duration::from_secs(10);

/// The connection Secret as reconcile found it. Its Debug names the Secret, never
/// its data.
#[derive(Clone)]
pub enum ExistingSecret {
    /// Not looked at: nothing is about to be written.
    NotRead,
    /// The API server says there is none.
    Absent,
    /// The owned-Secret cache's slim copy (a digest, never the data): may be stale.
    Cached(Secret),
    /// Just read from the API server.
    Read(Secret),
}

impl std::fmt::Debug for ExistingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |secret: &Secret| secret.metadata.name.clone().unwrap_or_default();
        match self {
            ExistingSecret::NotRead => f.write_str("NotRead"),
            ExistingSecret::Absent => f.write_str("Absent"),
            ExistingSecret::Cached(secret) => write!(f, "Cached({})", name(secret)),
            ExistingSecret::Read(secret) => write!(f, "Read({})", name(secret)),
        }
    }
}

impl ExistingSecret {
    fn secret(&self) -> Option<&Secret> {
        match self {
            ExistingSecret::Cached(secret) | ExistingSecret::Read(secret) => Some(secret),
            ExistingSecret::NotRead | ExistingSecret::Absent => None,
        }
    }
}

/// What one reconcile read.
#[derive(Debug)]
pub struct Gathered {
    pub namespace: String,
    pub owner: Owner,
    pub observation: Option<Observation>,
    pub password: Option<SecretString>,
    pub problems: Vec<Problem>,
    pub connection_secret_name: String,
    pub connection_secret: ExistingSecret,
    pub poll_interval: Duration,
    /// The managed instance's id, for status.instanceId (set by the lifecycle).
    pub managed_instance_id: Option<String>,
    /// status.managed, as converging leaves it.
    pub managed: Option<crate::crd::ManagedStatus>,
}

impl Gathered {
    /// The plan's input: what was read, the stored status, and the time.
    pub fn plan_input<'a>(
        &'a self,
        obj: &'a DcsInstance,
        batched: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> PlanInput<'a> {
        PlanInput {
            namespace: &self.namespace,
            owner: &self.owner,
            generation: obj.meta().generation,
            current: obj.status.as_ref(),
            observation: self.observation.as_ref(),
            problems: &self.problems,
            connection_secret_name: &self.connection_secret_name,
            password: self.password.as_ref().map(SecretString::expose),
            existing_secret_type: self
                .connection_secret
                .secret()
                .filter(|secret| controller_uid(secret) == Some(self.owner.uid.as_str()))
                .map(|secret| secret.type_.as_deref().unwrap_or("Opaque")),
            poll_interval: self.poll_interval,
            batched,
            managed_instance_id: self.managed_instance_id.as_deref(),
            managed: self.managed.as_ref(),
            now,
        }
    }
}

/// Gathered, or not yet: nothing is observed yet (the group's first list is on its
/// way, or the budget is empty) and nothing should be written.
pub enum Gather {
    Ready(Box<Gathered>),
    NotYet(Duration),
}

pub fn owner_of(obj: &DcsInstance) -> Result<Owner> {
    Ok(Owner {
        api_version: DcsInstance::api_version(&()).to_string(),
        kind: DcsInstance::kind(&()).to_string(),
        name: obj.name_any(),
        uid: obj.uid().ok_or(Error::MissingObjectKey("metadata.uid"))?,
    })
}

/// Reads everything reconcile needs for `obj`, whose DCS instance is `instance_id`
/// (the spec's, or the one the operator created), or None while there is none yet:
/// then nothing is observed and the lifecycle's problems say why.
pub async fn gather(
    ctx: &Context,
    obj: &DcsInstance,
    instance_id: Option<&str>,
    mut problems: Vec<Problem>,
) -> Result<Gather> {
    let shared = &ctx.shared;
    let namespace = obj
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = obj.name_any();
    let owner = owner_of(obj)?;
    let resolved = resolve::resolve(&obj.spec, &name, &shared.defaults)
        .map_err(|problem| problems.push(Problem::InvalidSpec(problem)))
        .ok();
    let mut observation = None;
    let mut password = None;
    if let (Some(resolved), Some(instance_id)) = (&resolved, instance_id) {
        let at = Where {
            namespace: &namespace,
            resolved,
            uid: &owner.uid,
            instance_id,
        };
        match observe_with_credentials(ctx, obj, at).await? {
            Observed::Now(found) => observation = Some(found),
            Observed::NotYet(after) => return Ok(Gather::NotYet(after)),
            Observed::Blocked(problem) => problems.push(problem),
        }
        if let Some(reference) = &obj.spec.password_secret_ref {
            let read = shared.passwords.read(
                &shared.client,
                &namespace,
                &reference.name,
                &reference.key,
                ctx.secret_metadata.as_deref(),
            );
            match read.await? {
                Ok(value) => password = Some(value),
                Err(problem) => problems.push(Problem::Password(problem)),
            }
        }
    }
    let connection_secret_name = resolved
        .as_ref()
        .map(|r| r.connection_secret_name.clone())
        .unwrap_or_else(|| format!("{name}-dcs"));
    let about_to_write = problems.is_empty()
        && observation.as_ref().is_some_and(|o| {
            o.result
                .as_ref()
                .is_ok_and(|i| plan::status::has_connection_details(i, obj.status.as_ref()))
        });
    let connection_secret =
        read_connection_secret(ctx, &namespace, &connection_secret_name, about_to_write).await?;
    if connection_secret
        .secret()
        .is_some_and(|secret| controller_uid(secret) != Some(owner.uid.as_str()))
    {
        problems.push(Problem::SecretConflict {
            name: connection_secret_name.clone(),
        });
    }
    Ok(Gather::Ready(Box::new(Gathered {
        namespace,
        owner,
        observation,
        password,
        problems,
        connection_secret_name,
        connection_secret,
        poll_interval: resolved
            .map(|r| r.poll_interval)
            .unwrap_or(shared.defaults.poll_interval),
        managed_instance_id: None,
        managed: None,
    })))
}

/// The connection Secret from the owned-Secret cache; else, when one is about to be
/// written, from the API server (ownership is never judged from a missing cache
/// entry: the cache holds only Secrets this operator controls).
async fn read_connection_secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
    about_to_write: bool,
) -> Result<ExistingSecret> {
    if let Some(owned) = &ctx.owned_secrets {
        if about_to_write && !owned.is_listed() {
            // Right after a (re)start: one paged LIST is about to tell, rather than
            // one GET per DcsInstance. Past the bound, a GET it is.
            let _ = tokio::time::timeout(OWNED_LIST_WAIT, owned.listed()).await;
        }
        if let Some(cached) = owned.secret(namespace, name) {
            return Ok(ExistingSecret::Cached(cached));
        }
    }
    if !about_to_write {
        return Ok(ExistingSecret::NotRead);
    }
    let api: Api<Secret> = Api::namespaced(ctx.shared.client.clone(), namespace);
    let found = api
        .get_opt(name)
        .await
        .map_err(|source| Error::ReadConnectionSecret {
            name: name.to_string(),
            source,
        })?;
    Ok(found.map_or(ExistingSecret::Absent, ExistingSecret::Read))
}

/// An observation, not yet, or why there can be none.
pub enum Observed {
    Now(Observation),
    /// No observation exists yet: look again after this long.
    NotYet(Duration),
    /// No usable credentials or project: nothing can be observed.
    Blocked(Problem),
}

/// Where and as whom DCS is called for one DcsInstance.
#[derive(Debug, Clone)]
pub struct Access {
    pub resolved: Resolved,
    pub credentials: Credentials,
    pub project_id: String,
    /// The DcsInstance's own credentials (not the operator's defaults): only these
    /// may adopt, and only these may manage outside the admin's list.
    pub own_credentials: bool,
    pub gate: budget::GateKey,
    /// The credentials' SHA-256: the store key, batch group and gate proof.
    pub fingerprint: String,
}

/// The resolved spec, credentials and project of `obj`, or the problem that stops
/// any DCS call.
pub async fn access(ctx: &Context, obj: &DcsInstance, namespace: &str) -> Result<Accessed> {
    match resolve::resolve(&obj.spec, &obj.name_any(), &ctx.shared.defaults) {
        Ok(resolved) => access_with(ctx, obj, namespace, resolved).await,
        Err(problem) => Ok(Err(Problem::InvalidSpec(problem))),
    }
}

/// Access, or why there is none.
pub type Accessed = std::result::Result<Access, Problem>;

/// The credentials (the DcsInstance's own, or the operator's where allowed) and
/// project for an already resolved spec.
async fn access_with(
    ctx: &Context,
    obj: &DcsInstance,
    namespace: &str,
    resolved: Resolved,
) -> Result<Accessed> {
    let shared = &ctx.shared;
    if let Some(identity) = &obj.spec.identity {
        return Ok(identity_access(ctx, obj, namespace, identity, resolved).await);
    }
    let found = shared
        .credentials
        .resolve(
            &shared.client,
            namespace,
            &obj.spec,
            &resolved.endpoint_source,
            &shared.budget,
            ctx.secret_metadata.as_deref(),
        )
        .await?;
    let found = match found {
        Ok(found) => found,
        Err(problem) => return Ok(Err(Problem::Credentials(problem))),
    };
    let Some(project_id) = obj
        .spec
        .project_id
        .as_deref()
        .or(found.project_id.as_deref())
    else {
        return Ok(Err(Problem::InvalidSpec(SpecProblem::NoProjectId)));
    };
    // The operator's own exchanged credentials rotate: they are known by their
    // stable key, as a workload identity is.
    let stable = obj
        .spec
        .credentials_secret_ref
        .is_none()
        .then(|| shared.credentials.defaults.as_ref()?.stable_key())
        .flatten();
    let (fingerprint, gate) = match stable {
        Some(key) => {
            let gate = budget::gate_key_for(&resolved.endpoint, &key, &shared.cloud_origins);
            (key, gate)
        }
        None => (
            found.credentials.fingerprint(),
            budget::gate_key(
                &resolved.endpoint,
                &found.credentials,
                &shared.cloud_origins,
            ),
        ),
    };
    Ok(Ok(Access {
        project_id: project_id.to_string(),
        own_credentials: obj.spec.credentials_secret_ref.is_some(),
        fingerprint,
        gate,
        credentials: found.credentials,
        resolved,
    }))
}

/// Access through a workload identity: its temporary credentials, keyed (store,
/// batch group, gate) by the stable identity, not by keys that rotate.
async fn identity_access(
    ctx: &Context,
    obj: &DcsInstance,
    namespace: &str,
    identity: &crate::crd::WorkloadIdentity,
    resolved: Resolved,
) -> Accessed {
    let shared = &ctx.shared;
    let Some(identities) = shared.identities.as_ref() else {
        return Err(Problem::Credentials(CredentialsProblem::TokenRequestFailed(
            "this operator is not configured for workload identity (--identity-namespaces, --identity-audience)".into(),
        )));
    };
    let Some(project_id) = obj
        .spec
        .project_id
        .as_deref()
        .or(identity.project_id.as_deref())
    else {
        return Err(Problem::InvalidSpec(SpecProblem::NoProjectId));
    };
    let uid = obj.uid().unwrap_or_default();
    let found = identities
        .credentials(
            &shared.client,
            namespace,
            &uid,
            identity,
            &resolved.endpoint,
        )
        .await
        .map_err(Problem::Credentials)?;
    let gate = budget::gate_key_for(
        &resolved.endpoint,
        &found.fingerprint,
        &shared.cloud_origins,
    );
    Ok(Access {
        project_id: project_id.to_string(),
        own_credentials: true,
        fingerprint: found.fingerprint,
        gate,
        credentials: found.credentials,
        resolved,
    })
}

/// The observation of `instance_id` for an object whose access is known.
async fn observe_with_credentials(
    ctx: &Context,
    obj: &DcsInstance,
    at: Where<'_>,
) -> Result<Observed> {
    let Where {
        namespace,
        resolved,
        uid,
        instance_id,
    } = at;
    let access = match access_with(ctx, obj, namespace, resolved.clone()).await? {
        Ok(access) => access,
        Err(problem) => return Ok(Observed::Blocked(problem)),
    };
    let target = Target {
        namespace,
        resolved,
        credentials: &access.credentials,
        project_id: &access.project_id,
        uid,
        instance_id,
        fingerprint: &access.fingerprint,
        gate: &access.gate,
    };
    Ok(observe(ctx, obj, target).await)
}

/// Which DcsInstance is observed, and its DCS instance.
struct Where<'a> {
    namespace: &'a str,
    resolved: &'a Resolved,
    uid: &'a str,
    instance_id: &'a str,
}

/// Where and as whom one DcsInstance is observed.
struct Target<'a> {
    namespace: &'a str,
    resolved: &'a Resolved,
    credentials: &'a Credentials,
    project_id: &'a str,
    uid: &'a str,
    instance_id: &'a str,
    /// The stable key of the credentials (a workload identity's survives the
    /// rotation of its temporary keys).
    fingerprint: &'a str,
    gate: &'a budget::GateKey,
}

/// The observation to plan with: the stored one while it is fresh, else a
/// ShowInstance call (or the refusal the gate remembers: a locked key, a throttling
/// pause, an open circuit).
async fn observe(ctx: &Context, obj: &DcsInstance, target: Target<'_>) -> Observed {
    let shared = &ctx.shared;
    let Target {
        namespace,
        resolved,
        credentials,
        project_id,
        uid,
        instance_id,
        fingerprint,
        gate,
    } = target;
    // Endpoint, project and fingerprint repeat across thousands of objects: the
    // shared copies, so each binding does not keep its own.
    let key = ObservationKey {
        endpoint: crate::intern::shared(resolved.endpoint.as_str()),
        project_id: crate::intern::shared(project_id),
        // A SHA-256 over the credentials (or the workload identity): computed once
        // per reconcile, used as the store key, the batch group and the gate's
        // proof of which secret worked.
        credentials_fingerprint: crate::intern::shared(fingerprint),
        instance_id: instance_id.into(),
    };
    shared.observations.bind(uid, &key);
    if shared.batching {
        shared.batch.register(
            &ctx.shared,
            Registration {
                uid,
                namespace,
                gate,
                // Name and namespace only: a member is kept per DcsInstance, and
                // its resourceVersion and uid would be two more strings each.
                object: ObjectRef::new(&obj.name_any()).within(namespace),
                endpoint: &resolved.endpoint,
                project_id,
                credentials,
                credentials_fingerprint: fingerprint,
                instance_id,
                poll_interval: resolved.poll_interval,
            },
        );
    }
    let now = shared.clock.now();
    let stored = shared.observations.get(&key);
    let forced = shared.refresh_requested(obj, uid) || shared.observations.show_requested(&key);
    let fresh = |stored: &Observation| {
        plan::next_poll_at(stored, resolved.poll_interval, uid, shared.batching) > now
    };
    match &stored {
        Some(stored) if !forced && fresh(stored) => return Observed::Now(stored.clone()),
        // With batching the first observation comes from the group's list call.
        None if shared.batching && !forced => return Observed::NotYet(Duration::from_secs(2)),
        _ => {}
    }
    let target = CallTarget {
        gate,
        fingerprint,
        namespace,
        operation: "show_instance",
    };
    let outcome = dcs_call::call(shared, target, PermitMode::TryNow, || {
        shared
            .dcs
            .show_instance(&resolved.endpoint, credentials, project_id, instance_id)
    })
    .await;
    record_show(shared, key, stored, outcome, now)
}

/// What a ShowInstance attempt leaves in the store, and the observation to plan with.
fn record_show(
    shared: &super::Shared,
    key: ObservationKey,
    stored: Option<Observation>,
    outcome: CallOutcome<crate::dcs::Instance>,
    now: chrono::DateTime<chrono::Utc>,
) -> Observed {
    let result = match outcome {
        // Not now (empty bucket, busy namespace): plan with what is known (it may be
        // Stale by now), else look again soon and report nothing.
        CallOutcome::Wait(after) => {
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
