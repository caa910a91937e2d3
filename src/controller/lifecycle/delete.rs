//! Deleting: wait for a deletable state, check the ownership tag, DELETE once,
//! wait for the 404, then release the finalizer (and the credentials Secret's
//! in-use finalizer when no other `Delete` object needs it).

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;

use super::create::find_one;
use super::marks::{self, MetaChange};
use super::{DELETE_REQUEUE, Driven, Interrupted, LOOKUP_REQUEUE, REFUSAL_BACKSTOP, call, event};
use crate::controller::gather::{self, Access};
use crate::controller::{Context, Result};
use crate::crd::DcsInstance;
use crate::dcs::DcsStatus;
use crate::dcs::model::StatusClass;
use crate::dcs::writes::{InstanceFilter, WriteOutcome, error_outcome, is_busy};
use crate::lifecycle::{Attempt, INSTANCE_ID_ANNOTATION, OWNER_TAG_KEY};
use crate::plan::{LifecycleProblem, reasons};

/// A DELETE sent by this process is not sent again for this long while the
/// instance is still listed (DCS takes minutes to remove it).
const DELETE_RESEND_AFTER: Duration = Duration::from_secs(300);

/// Drops the cleanup finalizer; an unresolved `sent` attempt is looked up once
/// first, so an Event can name the instance left behind.
pub(super) async fn release(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    resolve_first: Option<Attempt>,
) -> Result<Driven> {
    if let Some(attempt) = resolve_first {
        let namespace = obj.namespace().unwrap_or_default();
        let note = match gather::access(ctx, &obj, &namespace).await? {
            Ok(access) => {
                let filter = InstanceFilter::owner(&attempt.uid);
                match find_one(ctx, &namespace, &access, &filter).await {
                    Ok(Some(found)) => format!(
                        "left DCS instance {} in place (deletionPolicy Orphan)",
                        found.instance_id
                    ),
                    Ok(None) => {
                        "the unresolved create attempt left no instance that is listed yet".into()
                    }
                    Err(_) => format!(
                        "could not look up the unresolved create attempt; look for instances tagged {OWNER_TAG_KEY}={}",
                        attempt.uid
                    ),
                }
            }
            Err(problem) => format!(
                "could not look up the unresolved create attempt ({}); look for instances tagged {OWNER_TAG_KEY}={}",
                problem.message(),
                attempt.uid
            ),
        };
        event(ctx, &obj, reasons::INSTANCE_ORPHANED, note, true).await;
    }
    let change = MetaChange {
        cleanup_finalizer: Some(false),
        ..MetaChange::default()
    };
    marks::patch(ctx, &obj, change).await?;
    marks::release_credentials(ctx, &obj).await?;
    Ok(Driven::finished(obj))
}

/// `Delete`: the instance goes first, then the finalizer.
pub(super) async fn delete_instance(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    instance_id: String,
) -> Result<Driven> {
    let namespace = obj.namespace().unwrap_or_default();
    let access = match gather::access(ctx, &obj, &namespace).await? {
        Ok(access) => access,
        Err(problem) => {
            let detail = format!("the DCS instance cannot be deleted: {}", problem.message());
            let blocked = LifecycleProblem::CleanupBlocked { detail };
            return Ok(Driven::lifecycle(obj, blocked, Duration::from_secs(60)));
        }
    };
    delete_owned(ctx, obj, &access, &instance_id, false).await
}

/// Deletes `instance_id` if it carries this object's tag, then waits for its 404.
/// `replacing`: retry-create's replacement of a CREATEFAILED instance (the object
/// stays; a new attempt starts after the 404).
pub(super) async fn delete_owned(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    access: &Access,
    instance_id: &str,
    replacing: bool,
) -> Result<Driven> {
    let shared = &ctx.shared;
    let namespace = obj.namespace().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    let (endpoint, credentials, project) = (
        &access.resolved.endpoint,
        &access.credentials,
        access.project_id.as_str(),
    );
    let shown = call(ctx, access, &namespace, "show_instance", || {
        shared
            .dcs
            .show_instance(endpoint, credentials, project, instance_id)
    })
    .await;
    let instance = match shown {
        Err(Interrupted::Failed(error)) if error.is_instance_not_found() => {
            return gone(ctx, obj, instance_id, replacing).await;
        }
        Err(interrupted) => return Ok(blocked_or_wait(obj, interrupted, "reading the instance")),
        Ok(instance) => instance,
    };
    let status = instance.status.as_deref().map(DcsStatus::parse);
    let deletable = status.as_ref().is_some_and(|s| {
        matches!(
            s.class(),
            StatusClass::Ready | StatusClass::Degraded | StatusClass::Failed
        )
    });
    if !deletable {
        let state = status
            .as_ref()
            .map_or("unknown", |s| s.as_str())
            .to_string();
        let detail =
            format!("waiting for the instance {instance_id} to leave {state} before deleting it");
        return Ok(waiting(obj, detail, replacing));
    }
    let tags = call(ctx, access, &namespace, "show_tags", || {
        shared
            .dcs
            .show_tags(endpoint, credentials, project, instance_id)
    })
    .await;
    let ours = match tags {
        Ok(tags) => tags.iter().any(|t| t.is_owner(&uid)),
        Err(interrupted) => {
            return Ok(blocked_or_wait(
                obj,
                interrupted,
                "reading the instance's tags",
            ));
        }
    };
    if !ours {
        let detail = format!(
            "the instance {instance_id} does not carry this DcsInstance's ownership tag ({OWNER_TAG_KEY}={uid}); it is not deleted"
        );
        let blocked = LifecycleProblem::CleanupBlocked { detail };
        return Ok(Driven::lifecycle(obj, blocked, REFUSAL_BACKSTOP));
    }
    send_delete(ctx, obj, access, instance_id, replacing).await
}

/// The DELETE, at most once per [`DELETE_RESEND_AFTER`] from this process.
async fn send_delete(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    access: &Access,
    instance_id: &str,
    replacing: bool,
) -> Result<Driven> {
    let shared = &ctx.shared;
    let uid = obj.uid().unwrap_or_default();
    let now = shared.clock.now();
    let recently = shared
        .deletes_sent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&uid)
        .filter(|(not_before, _)| *not_before > now)
        .cloned();
    let pending = format!("deleting the instance {instance_id}; waiting for DCS to remove it");
    match recently {
        Some((_, Some(refusal))) => {
            let blocked = LifecycleProblem::CleanupBlocked { detail: refusal };
            return Ok(Driven::lifecycle(obj, blocked, REFUSAL_BACKSTOP));
        }
        Some((_, None)) => return Ok(waiting(obj, pending, replacing)),
        None => {}
    }
    shared.check_write()?;
    let namespace = obj.namespace().unwrap_or_default();
    let result = call(ctx, access, &namespace, "delete_instance", || {
        shared.dcs.delete_instance(
            &access.resolved.endpoint,
            &access.credentials,
            &access.project_id,
            instance_id,
        )
    })
    .await;
    let outcome = match &result {
        Ok(()) => WriteOutcome::Accepted,
        Err(Interrupted::Failed(error)) => error_outcome(error),
        Err(Interrupted::Wait(_)) => WriteOutcome::NotSent,
    };
    shared.metrics.dcs_write("delete_instance", outcome);
    match result {
        Err(Interrupted::Failed(error)) if error.is_instance_not_found() => {
            gone(ctx, obj, instance_id, replacing).await
        }
        Err(Interrupted::Failed(error)) if is_busy(&error) => Ok(waiting(
            obj,
            format!(
                "DCS cannot delete the instance {instance_id} now ({}); trying again",
                crate::plan::error_message(&error)
            ),
            replacing,
        )),
        Err(Interrupted::Failed(error)) if outcome == WriteOutcome::Refused => {
            // Refused: not asked again for half an hour (never a loop of DELETEs).
            let detail = format!(
                "deleting the instance failed: {}",
                crate::plan::error_message(&error)
            );
            not_before(shared, uid, REFUSAL_BACKSTOP, Some(detail.clone()));
            if replacing {
                return replacement_refused(ctx, obj, instance_id, &error).await;
            }
            let blocked = LifecycleProblem::CleanupBlocked { detail };
            Ok(Driven::lifecycle(obj, blocked, REFUSAL_BACKSTOP))
        }
        Err(interrupted) => Ok(blocked_or_wait(obj, interrupted, "deleting the instance")),
        Ok(()) => {
            not_before(shared, uid, DELETE_RESEND_AFTER, None);
            Ok(waiting(obj, pending, replacing))
        }
    }
}

/// No DELETE for this object's instance from this process for `wait`.
fn not_before(
    shared: &crate::controller::Shared,
    uid: String,
    wait: Duration,
    refusal: Option<String>,
) {
    let until = crate::clock::later(shared.clock.now(), wait);
    shared
        .deletes_sent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(uid, (until, refusal));
}

/// retry-create could not delete the CREATEFAILED instance: the replacement ends
/// (retry-create removed, the attempt refused) and the condition says what to do.
async fn replacement_refused(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    instance_id: &str,
    error: &crate::dcs::DcsError,
) -> Result<Driven> {
    let attempt = crate::lifecycle::Marks::of(&obj)
        .attempt
        .map(|a| a.at(crate::lifecycle::Phase::Created).to_string());
    let change = MetaChange {
        annotations: vec![
            (crate::lifecycle::RETRY_CREATE_ANNOTATION, None),
            (crate::lifecycle::CREATE_ATTEMPT_ANNOTATION, attempt),
        ],
        ..MetaChange::default()
    };
    let obj = marks::patch(ctx, &obj, change).await?;
    let problem = LifecycleProblem::Kept {
        reason: reasons::REQUEST_REFUSED,
        message: format!(
            "retry-create: DCS refused to delete the failed instance {instance_id}: {}; delete it in the DCS console, then set the annotation {} again",
            crate::plan::error_message(error),
            crate::lifecycle::RETRY_CREATE_ANNOTATION,
        ),
    };
    Ok(Driven::lifecycle(obj, problem, REFUSAL_BACKSTOP))
}

/// The instance is gone (404): release the object, or (retry-create) forget the
/// failed id so the next reconcile starts a new attempt.
async fn gone(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    instance_id: &str,
    replacing: bool,
) -> Result<Driven> {
    if let Some(uid) = obj.uid() {
        ctx.shared
            .deletes_sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&uid);
    }
    let note = format!("deleted DCS instance {instance_id}");
    event(ctx, &obj, reasons::INSTANCE_DELETED, note, false).await;
    if replacing {
        // The failed attempt ends as refused: with retry-create still set, the next
        // reconcile claims a new one.
        let attempt = crate::lifecycle::Marks::of(&obj)
            .attempt
            .map(|a| a.at(crate::lifecycle::Phase::Refused).to_string());
        let change = MetaChange {
            annotations: vec![
                (INSTANCE_ID_ANNOTATION, None),
                (crate::lifecycle::CREATE_ATTEMPT_ANNOTATION, attempt),
            ],
            ..MetaChange::default()
        };
        let obj = marks::patch(ctx, &obj, change).await?;
        let problem = LifecycleProblem::Replacing {
            instance_id: instance_id.to_string(),
        };
        return Ok(Driven::lifecycle(obj, problem, Duration::from_secs(1)));
    }
    release(ctx, obj, None).await
}

/// Waiting on DCS: Deleting (or Replacing, for retry-create).
fn waiting(obj: Arc<DcsInstance>, detail: String, replacing: bool) -> Driven {
    let problem = if replacing {
        LifecycleProblem::Replacing {
            instance_id: obj
                .annotations()
                .get(INSTANCE_ID_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
        }
    } else {
        LifecycleProblem::Deleting { detail }
    };
    Driven::lifecycle(obj, problem, DELETE_REQUEUE)
}

/// A call that did not answer during cleanup: a wait, or CleanupBlocked.
fn blocked_or_wait(obj: Arc<DcsInstance>, interrupted: Interrupted, step: &str) -> Driven {
    match interrupted {
        Interrupted::Wait(after) => Driven {
            requeue: Some(after.max(Duration::from_millis(100))),
            ..Driven::lifecycle(
                obj,
                LifecycleProblem::Deleting {
                    detail: "waiting for this namespace's share of DCS calls".into(),
                },
                after,
            )
        },
        Interrupted::Failed(error) if error.is_transient() => Driven::lifecycle(
            obj,
            LifecycleProblem::Deleting {
                detail: format!(
                    "{step} failed, trying again: {}",
                    crate::plan::error_message(&error)
                ),
            },
            LOOKUP_REQUEUE,
        ),
        Interrupted::Failed(error) => Driven::lifecycle(
            obj,
            LifecycleProblem::CleanupBlocked {
                detail: format!("{step} failed: {}", crate::plan::error_message(&error)),
            },
            Duration::from_secs(300),
        ),
    }
}

/// `Delete` with a `sent` attempt: find what it created, then delete that.
pub(super) async fn resolve_for_delete(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    attempt: Attempt,
) -> Result<Driven> {
    let namespace = obj.namespace().unwrap_or_default();
    let access = match gather::access(ctx, &obj, &namespace).await? {
        Ok(access) => access,
        Err(problem) => {
            let detail = format!(
                "the create attempt cannot be looked up: {}",
                problem.message()
            );
            let blocked = LifecycleProblem::CleanupBlocked { detail };
            return Ok(Driven::lifecycle(obj, blocked, Duration::from_secs(60)));
        }
    };
    let filter = InstanceFilter::owner(&attempt.uid);
    match find_one(ctx, &namespace, &access, &filter).await {
        Ok(Some(found)) => {
            let change = MetaChange {
                annotations: vec![(INSTANCE_ID_ANNOTATION, Some(found.instance_id.clone()))],
                ..MetaChange::default()
            };
            let obj = marks::patch(ctx, &obj, change).await?;
            delete_owned(ctx, obj, &access, &found.instance_id, false).await
        }
        Ok(None) => Ok(Driven::lifecycle(
            obj,
            LifecycleProblem::Deleting {
                detail:
                    "looking for the instance of the unresolved create attempt before letting go"
                        .into(),
            },
            LOOKUP_REQUEUE,
        )),
        Err(interrupted) => Ok(blocked_or_wait(obj, interrupted, "looking up the instance")),
    }
}
