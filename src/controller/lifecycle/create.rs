//! Creating, adopting and reclaiming: claim → lookup → sent → POST → id, each
//! step recorded before the next; adoption and reclaim write the ownership tag
//! only after reading the tags DCS holds now.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use tracing::{info, warn};

use super::marks::{self, MetaChange};
use super::{Driven, Interrupted, LOOKUP_REQUEUE, REFUSAL_BACKSTOP, call, event};
use crate::controller::gather::{self, Access};
use crate::controller::{Context, Error, Result};
use crate::crd::{DcsInstance, DesiredInstance};
use crate::dcs::writes::{
    CreateInstanceBody, InstanceFilter, ResourceTag, TagAction, WriteOutcome, error_outcome,
};
use crate::dcs::{DcsError, DcsStatus, SecretString};
use crate::lifecycle::{
    Attempt, CREATE_ATTEMPT_ANNOTATION, CREATE_SENT_AT_ANNOTATION, INSTANCE_ID_ANNOTATION,
    OWNER_TAG_KEY, Phase, RECLAIM_FROM_ANNOTATION, RETRY_CREATE_ANNOTATION, View, naming,
};
use crate::plan::{LifecycleProblem, Problem, SpecProblem, reasons};

/// Everything a create needs, read before anything is written.
struct Prepared {
    namespace: String,
    access: Access,
    body: CreateInstanceBody,
    /// The user's tags in the body, as status.managed records them.
    tags_set: Vec<crate::crd::AppliedTag>,
}

/// A new attempt: claim it, look up, mark it sent, POST once, record the id.
pub(super) async fn claim_and_create(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    attempt: Attempt,
) -> Result<Driven> {
    let prepared = match prepare(ctx, &obj).await? {
        Ok(prepared) => prepared,
        Err(problem) => return Ok(Driven::problem(obj, problem, None)),
    };
    let claim = MetaChange {
        annotations: vec![
            (CREATE_ATTEMPT_ANNOTATION, Some(attempt.to_string())),
            (RETRY_CREATE_ANNOTATION, None),
            (CREATE_SENT_AT_ANNOTATION, None),
            (INSTANCE_ID_ANNOTATION, None),
        ],
        cleanup_finalizer: Some(true),
        precondition: true,
    };
    let obj = marks::patch(ctx, &obj, claim).await?;
    info!(attempt = %attempt, "create attempt claimed");
    let name = prepared.body.name.clone();
    let (namespace, access) = (&prepared.namespace, &prepared.access);
    let uid = attempt.uid.as_str();
    match find_one(ctx, namespace, access, &InstanceFilter::owner(uid)).await {
        Err(interrupted) => {
            // The claim stays; it is not superseded before the backoff is over.
            ctx.shared.claim_failed(uid, None);
            return Ok(interrupted.into_driven(obj, "looking up the instance"));
        }
        Ok(Some(found)) => return record(ctx, obj, &attempt, found).await,
        Ok(None) => {}
    }
    let by_name = InstanceFilter::ExactName(name.clone());
    match find_one(ctx, namespace, access, &by_name).await {
        Err(interrupted) => {
            ctx.shared.claim_failed(uid, None);
            return Ok(interrupted.into_driven(obj, "looking up the name"));
        }
        Ok(Some(found)) if found.has_tag(OWNER_TAG_KEY, &attempt.uid) => {
            return record(ctx, obj, &attempt, found).await;
        }
        Ok(Some(_)) => {
            let problem = LifecycleProblem::NameInUse { name };
            return refuse(ctx, obj, &attempt, problem).await;
        }
        Ok(None) => {}
    }
    send(ctx, obj, attempt, prepared).await
}

/// Marks the attempt sent (the precondition fails if another replica superseded
/// the claim: then it never POSTs), then sends the one POST.
async fn send(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    attempt: Attempt,
    prepared: Prepared,
) -> Result<Driven> {
    let shared = &ctx.shared;
    let sent = MetaChange {
        annotations: vec![
            (
                CREATE_ATTEMPT_ANNOTATION,
                Some(attempt.at(Phase::Sent).to_string()),
            ),
            (
                CREATE_SENT_AT_ANNOTATION,
                Some(
                    shared
                        .clock
                        .now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ),
            ),
        ],
        cleanup_finalizer: None,
        precondition: true,
    };
    let obj = marks::patch(ctx, &obj, sent).await?;
    // No other check between `sent` and the POST: an attempt marked sent whose POST
    // never went would cost the user a lookup window and a retry-create.
    let access = &prepared.access;
    let started = std::time::Instant::now();
    let result = shared
        .dcs
        .create_instance(
            &access.resolved.endpoint,
            &access.credentials,
            &access.project_id,
            &prepared.body,
        )
        .await;
    shared
        .metrics
        .dcs_request("create_instance", &result, started.elapsed(), 1);
    let outcome = crate::dcs::writes::write_outcome(&result);
    shared.metrics.dcs_write("create_instance", outcome);
    match result {
        Ok(answer) => {
            let id = answer.value.instance_id;
            let note = format!("created DCS instance {id} ({})", prepared.body.name);
            let mut driven = record_id(ctx, obj, &attempt, id).await?;
            event(ctx, &driven.obj, reasons::INSTANCE_CREATED, note, false).await;
            // What the create set, so converging starts from it (no tag write, no
            // password reset right after a create).
            let uid = attempt.uid.as_str();
            driven.managed_init = Some(crate::crd::ManagedStatus {
                tags: prepared.tags_set,
                password_digest: prepared
                    .body
                    .password
                    .as_ref()
                    .map(|p| crate::lifecycle::converge::password_digest(uid, p.expose())),
                operations: Vec::new(),
            });
            Ok(driven)
        }
        Err(error) => create_failed(ctx, obj, &attempt, error).await,
    }
}

/// A create that did not answer with an id: refused (nothing exists), not sent
/// (claimed again later), or unknown (only lookups from now on).
async fn create_failed(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    attempt: &Attempt,
    error: DcsError,
) -> Result<Driven> {
    warn!(reason = error.reason(), "create failed: {error}");
    match error_outcome(&error) {
        WriteOutcome::Refused => {
            let problem = LifecycleProblem::Refused {
                detail: crate::plan::error_message(&error),
            };
            refuse(ctx, obj, attempt, problem).await
        }
        WriteOutcome::NotSent => {
            // Nothing reached DCS: the attempt goes back to claimed, which the next
            // reconcile supersedes (after the throttle's wait).
            let back = MetaChange {
                annotations: vec![(
                    CREATE_ATTEMPT_ANNOTATION,
                    Some(attempt.at(Phase::Claimed).to_string()),
                )],
                ..MetaChange::default()
            };
            let obj = marks::patch(ctx, &obj, back).await?;
            let wait = match &error {
                DcsError::Throttled { retry_after, .. } => retry_after.unwrap_or(LOOKUP_REQUEUE),
                _ => REFUSAL_BACKSTOP,
            };
            // The patch back to claimed wakes the object at once: it must not claim
            // and POST again before the throttle's wait.
            ctx.shared.claim_failed(&attempt.uid, Some(wait));
            Ok(Interrupted::Failed(error).into_driven(obj, "creating the instance")).map(|driven| {
                Driven {
                    requeue: Some(wait),
                    ..driven
                }
            })
        }
        WriteOutcome::Unknown | WriteOutcome::Accepted => Ok(Driven::lifecycle(
            obj,
            LifecycleProblem::CreatePending {
                attempt: attempt.number,
            },
            LOOKUP_REQUEUE,
        )),
    }
}

/// Ends the attempt as refused; the condition says why, and nothing is sent
/// again until the spec changes or the user sets retry-create.
async fn refuse(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    attempt: &Attempt,
    problem: LifecycleProblem,
) -> Result<Driven> {
    let refused = MetaChange {
        annotations: vec![(
            CREATE_ATTEMPT_ANNOTATION,
            Some(attempt.at(Phase::Refused).to_string()),
        )],
        ..MetaChange::default()
    };
    let obj = marks::patch(ctx, &obj, refused).await?;
    Ok(Driven::lifecycle(obj, problem, REFUSAL_BACKSTOP))
}

/// Records the id at once (no precondition: the attempt is this object's, and
/// losing the id is the one thing that must not happen).
async fn record_id(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    attempt: &Attempt,
    id: String,
) -> Result<Driven> {
    let recorded = MetaChange {
        annotations: vec![
            (INSTANCE_ID_ANNOTATION, Some(id.clone())),
            (
                CREATE_ATTEMPT_ANNOTATION,
                Some(attempt.at(Phase::Created).to_string()),
            ),
            (CREATE_SENT_AT_ANNOTATION, None),
        ],
        ..MetaChange::default()
    };
    let obj = marks::patch(ctx, &obj, recorded).await?;
    ctx.shared.claim_cleared(&attempt.uid);
    info!(instance_id = id, "instance id recorded");
    Ok(Driven::observe(obj, id, true))
}

/// A lookup found the attempt's instance (it carries this uid's tag).
async fn record(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    attempt: &Attempt,
    found: crate::dcs::writes::FoundInstance,
) -> Result<Driven> {
    info!(
        instance_id = found.instance_id,
        "found the instance of an earlier attempt"
    );
    record_id(ctx, obj, attempt, found.instance_id).await
}

/// A `sent` attempt: look it up by its tag; never a second POST.
pub(super) async fn resolve(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    attempt: Attempt,
    view: &View<'_>,
) -> Result<Driven> {
    let namespace = obj.namespace().unwrap_or_default();
    let access = match gather::access(ctx, &obj, &namespace).await? {
        Ok(access) => access,
        Err(problem) => return Ok(Driven::problem(obj, problem, Some(LOOKUP_REQUEUE))),
    };
    let filter = InstanceFilter::owner(&attempt.uid);
    match find_one(ctx, &namespace, &access, &filter).await {
        Err(interrupted) => Ok(interrupted.into_driven(obj, "looking up the instance")),
        Ok(Some(found)) => record(ctx, obj, &attempt, found).await,
        Ok(None) if view.lookup_window_over => Ok(Driven::lifecycle(
            obj,
            LifecycleProblem::CreateUnresolved {
                uid: attempt.uid.clone(),
            },
            // Still looked for now and then: a very late instance is recorded.
            Duration::from_secs(300),
        )),
        Ok(None) => Ok(Driven::lifecycle(
            obj,
            LifecycleProblem::CreatePending {
                attempt: attempt.number,
            },
            LOOKUP_REQUEUE,
        )),
    }
}

/// One owner or name lookup, confirmed; an answer that is truncated or holds items
/// that do not confirm the filter is treated as "maybe": never create on it.
pub(super) async fn find_one(
    ctx: &Context,
    namespace: &str,
    access: &Access,
    filter: &InstanceFilter,
) -> std::result::Result<Option<crate::dcs::writes::FoundInstance>, Interrupted> {
    let shared = &ctx.shared;
    let found = call(ctx, access, namespace, "find_instances", || {
        shared.dcs.find_instances(
            &access.resolved.endpoint,
            &access.credentials,
            &access.project_id,
            filter,
        )
    })
    .await?;
    if found.truncated || found.dropped > 0 {
        return Err(Interrupted::Failed(DcsError::Decode {
            message: "the lookup answer is not conclusive (truncated, or items that do not match the filter)".into(),
            request_id: None,
        }));
    }
    Ok(found.instances.into_iter().next())
}

/// Reads what a create needs (credentials, permission to spend, the password) and
/// builds the body; a problem, and nothing written, when something is missing.
async fn prepare(
    ctx: &Context,
    obj: &DcsInstance,
) -> Result<std::result::Result<Prepared, Problem>> {
    let namespace = obj
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let access = match gather::access(ctx, obj, &namespace).await? {
        Ok(access) => access,
        Err(problem) => return Ok(Err(problem)),
    };
    if let Some(problem) = may_spend(ctx, &namespace, &access) {
        return Ok(Err(problem));
    }
    let Some(desired) = obj.spec.instance.as_ref() else {
        return Ok(Err(Problem::InvalidSpec(SpecProblem::NoDesiredInstance)));
    };
    let password = if desired.no_password_access == Some(true) {
        None
    } else {
        match read_password(ctx, obj, &namespace).await? {
            Ok(password) => Some(password),
            Err(problem) => return Ok(Err(problem)),
        }
    };
    let uid = obj.uid().ok_or(Error::MissingObjectKey("metadata.uid"))?;
    let name = desired
        .name
        .clone()
        .unwrap_or_else(|| naming::default_instance_name(&namespace, &obj.name_any()));
    let body = create_body(desired, name, password, &uid);
    Ok(Ok(Prepared {
        namespace,
        access,
        body,
        tags_set: crate::lifecycle::converge::applied_tags(desired),
    }))
}

/// The password from spec.passwordSecretRef.
async fn read_password(
    ctx: &Context,
    obj: &DcsInstance,
    namespace: &str,
) -> Result<std::result::Result<SecretString, Problem>> {
    let Some(reference) = &obj.spec.password_secret_ref else {
        return Ok(Err(Problem::InvalidSpec(SpecProblem::NoPasswordSecret)));
    };
    let shared = &ctx.shared;
    let read = shared.passwords.read(
        &shared.client,
        namespace,
        &reference.name,
        &reference.key,
        ctx.secret_metadata.as_deref(),
    );
    Ok(read.await?.map_err(Problem::Password))
}

/// Manage spends money: with the DcsInstance's own credentials, or the operator's
/// where the admin allows it (`--default-credentials-manage-namespaces`).
fn may_spend(ctx: &Context, namespace: &str, access: &Access) -> Option<Problem> {
    let allowed = access.own_credentials
        || ctx
            .shared
            .lifecycle
            .manage_namespaces
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|n| n == namespace));
    (!allowed).then(|| {
        Problem::Lifecycle(LifecycleProblem::ManageNotAllowed {
            detail: format!(
                "the operator's own credentials may not create or delete instances in namespace {namespace}; set spec.credentialsSecretRef, or ask the cluster admin to add the namespace to --default-credentials-manage-namespaces"
            ),
        })
    })
}

/// The CreateInstance body: the desired instance, the ownership tag, pay-per-use.
pub fn create_body(
    desired: &DesiredInstance,
    name: String,
    password: Option<SecretString>,
    uid: &str,
) -> CreateInstanceBody {
    let mut tags: Vec<ResourceTag> = desired
        .tags
        .iter()
        .map(|t| ResourceTag::new(&t.key, &t.value))
        .collect();
    tags.push(ResourceTag::owner(uid));
    let window = desired.maintenance_window.as_ref();
    CreateInstanceBody {
        name,
        engine: desired.engine.as_str().to_string(),
        engine_version: desired.engine_version.clone(),
        capacity: desired.capacity.gigabytes(),
        spec_code: desired.spec_code.clone(),
        az_codes: desired.availability_zones.clone(),
        vpc_id: desired.vpc_id.clone(),
        subnet_id: desired.subnet_id.clone(),
        security_group_id: desired.security_group_id.clone(),
        port: desired.port.and_then(|p| u16::try_from(p).ok()),
        no_password_access: desired.no_password_access,
        password,
        tags,
        description: desired.description.clone(),
        maintain_begin: window.map(|w| w.begin.clone()),
        maintain_end: window.map(|w| w.end.clone()),
        enterprise_project_id: desired.enterprise_project_id.clone(),
    }
}

/// Adoption: the instance must carry this uid's tag, or none (then it gets it);
/// never with the operator's credentials, never one another uid holds.
pub(super) async fn adopt(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    instance_id: String,
) -> Result<Driven> {
    let established =
        obj.status.as_ref().and_then(|s| s.instance_id.as_deref()) == Some(instance_id.as_str());
    if established {
        return Ok(Driven::observe(obj, instance_id, true));
    }
    let namespace = obj.namespace().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    let access = match gather::access(ctx, &obj, &namespace).await? {
        Ok(access) => access,
        Err(problem) => return Ok(Driven::problem(obj, problem, None)),
    };
    if !access.own_credentials {
        let detail = "adopting an instance needs the DcsInstance's own credentials (spec.credentialsSecretRef): the operator's are never used to take over an existing instance".to_string();
        let problem = LifecycleProblem::ManageNotAllowed { detail };
        return Ok(Driven::problem(obj, Problem::Lifecycle(problem), None));
    }
    // The tag of a deleted DcsInstance may be taken over with reclaim-from.
    let reclaim = crate::lifecycle::Marks::of(&obj).reclaim_from;
    let replacing = match &reclaim {
        Some(from) if !uid_alive(ctx, from).await? => Some(from.as_str()),
        _ => None,
    };
    match claim_tag(ctx, &namespace, &access, &instance_id, &uid, replacing).await {
        Err(interrupted) => Ok(interrupted.into_driven(obj, "claiming the instance")),
        Ok(TagClaim::Held(holder)) => {
            let detail = format!(
                "the instance {instance_id} carries the ownership tag of another DcsInstance (uid {holder}); it cannot be adopted. If that DcsInstance was deleted (or this is it, restored), set the annotation {RECLAIM_FROM_ANNOTATION} to {holder}"
            );
            let problem = LifecycleProblem::OwnershipMismatch { detail };
            Ok(Driven::problem(obj, Problem::Lifecycle(problem), None))
        }
        Ok(TagClaim::Ours { written }) => {
            let obj = if reclaim.is_some() {
                let change = MetaChange {
                    annotations: vec![(RECLAIM_FROM_ANNOTATION, None)],
                    ..MetaChange::default()
                };
                marks::patch(ctx, &obj, change).await?
            } else {
                obj
            };
            if written {
                let note = format!("adopted DCS instance {instance_id}");
                event(ctx, &obj, reasons::INSTANCE_ADOPTED, note, false).await;
            }
            Ok(Driven::observe(obj, instance_id, true))
        }
    }
}

/// Whether any DcsInstance (in any namespace) has this uid (metadata only).
async fn uid_alive(ctx: &Context, uid: &str) -> Result<bool> {
    let all: Api<DcsInstance> = Api::all(ctx.shared.client.clone());
    let listed = all
        .list_metadata(&ListParams::default())
        .await
        .map_err(|source| Error::ListInstances { source })?;
    Ok(listed
        .items
        .iter()
        .any(|other| other.metadata.uid.as_deref() == Some(uid)))
}

/// What the ownership tag says after [`claim_tag`].
enum TagClaim {
    /// This uid's (already, or written now).
    Ours { written: bool },
    /// Another uid's.
    Held(String),
}

/// Reads the instance's tags and writes this uid's ownership tag when the tag is
/// absent, or (reclaim) held by `replacing`.
async fn claim_tag(
    ctx: &Context,
    namespace: &str,
    access: &Access,
    instance_id: &str,
    uid: &str,
    replacing: Option<&str>,
) -> std::result::Result<TagClaim, Interrupted> {
    let shared = &ctx.shared;
    let (endpoint, credentials, project) = (
        &access.resolved.endpoint,
        &access.credentials,
        access.project_id.as_str(),
    );
    let tags = call(ctx, access, namespace, "show_tags", || {
        shared
            .dcs
            .show_tags(endpoint, credentials, project, instance_id)
    })
    .await?;
    let holder = tags
        .iter()
        .find(|t| t.key == OWNER_TAG_KEY)
        .map(|t| t.value.clone());
    match holder {
        Some(holder) if holder == uid => return Ok(TagClaim::Ours { written: false }),
        Some(holder) if Some(holder.as_str()) != replacing => return Ok(TagClaim::Held(holder)),
        _ => {}
    }
    if shared.check_write().is_err() {
        return Err(Interrupted::Wait(Duration::from_secs(2)));
    }
    let owner = [ResourceTag::owner(uid)];
    let result = call(ctx, access, namespace, "tag_action", || {
        shared.dcs.tag_action(
            endpoint,
            credentials,
            project,
            instance_id,
            TagAction::Create,
            &owner,
        )
    })
    .await;
    let outcome = match &result {
        Ok(_) => WriteOutcome::Accepted,
        Err(Interrupted::Failed(error)) => error_outcome(error),
        Err(Interrupted::Wait(_)) => WriteOutcome::NotSent,
    };
    shared.metrics.dcs_write("tag_action", outcome);
    result.map(|_| TagClaim::Ours { written: true })
}

/// After a restore changed the uid: the tag moves from the old uid to this one
/// only if the instance carries the old uid's tag and no DcsInstance has that uid.
pub(super) async fn reclaim(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    instance_id: String,
    from_uid: String,
) -> Result<Driven> {
    let namespace = obj.namespace().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    if uid_alive(ctx, &from_uid).await? {
        let detail = format!(
            "{RECLAIM_FROM_ANNOTATION}: a DcsInstance with uid {from_uid} still exists; only the instance of a deleted object can be reclaimed"
        );
        let problem = LifecycleProblem::OwnershipMismatch { detail };
        return Ok(Driven::problem(obj, Problem::Lifecycle(problem), None));
    }
    let access = match gather::access(ctx, &obj, &namespace).await? {
        Ok(access) => access,
        Err(problem) => return Ok(Driven::problem(obj, problem, None)),
    };
    let claimed = claim_tag(
        ctx,
        &namespace,
        &access,
        &instance_id,
        &uid,
        Some(&from_uid),
    );
    match claimed.await {
        Err(interrupted) => Ok(interrupted.into_driven(obj, "reclaiming the instance")),
        Ok(TagClaim::Held(holder)) => {
            let detail = format!(
                "{RECLAIM_FROM_ANNOTATION}: the instance {instance_id} is tagged for uid {holder}, not {from_uid}"
            );
            let problem = LifecycleProblem::OwnershipMismatch { detail };
            Ok(Driven::problem(obj, Problem::Lifecycle(problem), None))
        }
        Ok(TagClaim::Ours { .. }) => {
            let attempt = Attempt::new(&uid, 1, Phase::Created);
            let change = MetaChange {
                annotations: vec![
                    (CREATE_ATTEMPT_ANNOTATION, Some(attempt.to_string())),
                    (RECLAIM_FROM_ANNOTATION, None),
                ],
                ..MetaChange::default()
            };
            let obj = marks::patch(ctx, &obj, change).await?;
            Ok(Driven::observe(obj, instance_id, true))
        }
    }
}

/// retry-create on a recorded instance: a CREATEFAILED one is deleted (owned
/// only), and once it is gone a new attempt starts; any other state is left.
pub(super) async fn retry_created(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    instance_id: String,
    view: &View<'_>,
) -> Result<Driven> {
    let namespace = obj.namespace().unwrap_or_default();
    let access = match gather::access(ctx, &obj, &namespace).await? {
        Ok(access) => access,
        Err(problem) => return Ok(Driven::problem(obj, problem, None)),
    };
    let shared = &ctx.shared;
    let shown = call(ctx, &access, &namespace, "show_instance", || {
        shared.dcs.show_instance(
            &access.resolved.endpoint,
            &access.credentials,
            &access.project_id,
            &instance_id,
        )
    })
    .await;
    let status = match shown {
        Err(Interrupted::Failed(error)) if error.is_instance_not_found() => {
            let next = view.marks.attempt.as_ref().map_or_else(
                || Attempt::new(view.uid, 1, Phase::Claimed),
                |a| a.next(view.uid),
            );
            return claim_and_create(ctx, obj, next).await;
        }
        Err(interrupted) => return Ok(interrupted.into_driven(obj, "reading the instance")),
        Ok(instance) => instance.status.as_deref().map(DcsStatus::parse),
    };
    if status == Some(DcsStatus::CreateFailed) {
        return super::delete::delete_owned(ctx, obj, &access, &instance_id, true).await;
    }
    let change = MetaChange {
        annotations: vec![(RETRY_CREATE_ANNOTATION, None)],
        ..MetaChange::default()
    };
    let obj = marks::patch(ctx, &obj, change).await?;
    let state = status
        .as_ref()
        .map_or("unknown", |s| s.as_str())
        .to_string();
    let note = format!(
        "{RETRY_CREATE_ANNOTATION} ignored: the instance {instance_id} is {state}, not CREATEFAILED"
    );
    event(ctx, &obj, reasons::RETRY_CREATE_IGNORED, note, true).await;
    Ok(Driven::observe(obj, instance_id, true))
}
