//! The managed lifecycle's I/O: carries out what [`crate::lifecycle::decide`] says
//! (claim, look up, create, adopt, reclaim, delete, release) with every write
//! ordered and preconditioned as docs/managing.md describes. Observe objects
//! without the cleanup finalizer pass straight through with no call at all.
//!
//! - [`marks`]: the metadata writes (annotations, finalizers, the credentials
//!   Secret's in-use finalizer);
//! - [`create`]: claim → lookup → sent → POST → id; adoption and reclaim;
//! - [`delete`]: deletable state → ownership → DELETE → 404 → release.

pub mod converge;
mod create;
mod delete;
pub mod marks;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use tracing::warn;

use super::apply::publish_event;
use super::dcs_call::{self, CallOutcome, CallTarget, PermitMode};
use super::events::EventSpec;
use super::gather::Access;
use super::{Context, Result};
use crate::crd::{DcsInstance, ManagementPolicy};
use crate::dcs::DcsError;
use crate::lifecycle::{Blocked, Decision, Marks, View, decide};
use crate::plan::conditions::find;
use crate::plan::{LifecycleProblem, Problem, reasons};

/// How soon a lost create is looked up again.
const LOOKUP_REQUEUE: Duration = Duration::from_secs(15);
/// How soon a deletion in progress is looked at again.
const DELETE_REQUEUE: Duration = Duration::from_secs(10);
/// A refusal is asked again at most this often without a change (a backstop for
/// a cloud-side fix nobody tells the operator about).
const REFUSAL_BACKSTOP: Duration = Duration::from_secs(30 * 60);

/// What the lifecycle leaves for the rest of the reconcile.
#[derive(Debug)]
pub struct Driven {
    /// The object as it is now (after this reconcile's metadata writes).
    pub obj: Arc<DcsInstance>,
    /// The instance to observe, if there is one.
    pub observe: Option<String>,
    /// status.instanceId (Manage only).
    pub managed_id: Option<String>,
    pub problems: Vec<Problem>,
    /// Look again this soon at the latest (the plan may ask sooner).
    pub requeue: Option<Duration>,
    /// Nothing more to do (the object was released, or is not ours to touch):
    /// no status write.
    pub finished: bool,
    /// The record of what a create just set (its tags, its password).
    pub managed_init: Option<crate::crd::ManagedStatus>,
}

impl Driven {
    fn observe(obj: Arc<DcsInstance>, instance_id: String, managed: bool) -> Self {
        Driven {
            managed_id: managed.then(|| instance_id.clone()),
            observe: Some(instance_id),
            obj,
            problems: Vec::new(),
            requeue: None,
            finished: false,
            managed_init: None,
        }
    }

    fn problem(obj: Arc<DcsInstance>, problem: Problem, requeue: Option<Duration>) -> Self {
        let managed_id = obj.status.as_ref().and_then(|s| s.instance_id.clone());
        Driven {
            obj,
            observe: None,
            managed_id,
            problems: vec![problem],
            requeue,
            finished: false,
            managed_init: None,
        }
    }

    fn lifecycle(obj: Arc<DcsInstance>, problem: LifecycleProblem, requeue: Duration) -> Self {
        Self::problem(obj, Problem::Lifecycle(problem), Some(requeue))
    }

    fn finished(obj: Arc<DcsInstance>) -> Self {
        Driven {
            obj,
            observe: None,
            managed_id: None,
            problems: Vec::new(),
            requeue: None,
            finished: true,
            managed_init: None,
        }
    }
}

/// Runs the lifecycle step this object needs, if any.
pub async fn drive(ctx: &Context, obj: Arc<DcsInstance>) -> Result<Driven> {
    let marks = Marks::of(&obj);
    let mut view = View::of(&obj, &marks);
    if view.policy == ManagementPolicy::Observe && !view.has_cleanup_finalizer && !view.deleting {
        // Today's behaviour, at today's cost: no call, no write.
        return Ok(match decide(&view) {
            Decision::Observe { instance_id } => Driven::observe(obj, instance_id, false),
            Decision::Blocked(blocked) => {
                Driven::problem(obj, blocked_problem(&blocked, None), None)
            }
            _ => Driven::finished(obj),
        });
    }
    let shared = &ctx.shared;
    let now = shared.clock.now();
    view.refused_generation = refused_generation(&obj);
    view.lookup_window_over = marks
        .sent_at
        .is_none_or(|sent| crate::clock::later(sent, shared.lifecycle.lookup_window) <= now);
    if view.deleting && view.deletes_instance() {
        view.crd_deleting = marks::crd_is_deleting(shared).await;
    }
    let decision = decide(&view);
    // An object whose marks belong to another uid (a copy, a restore) owns
    // nothing: it gets no finalizer and holds no Secret.
    let foreign = matches!(
        decision,
        Decision::Blocked(
            Blocked::OwnershipMismatch { .. }
                | Blocked::IdWithoutAttempt
                | Blocked::MalformedAnnotation(_)
        )
    );
    let driven = carry_out(ctx, obj.clone(), &view, decision).await?;
    if driven.finished || view.deleting || foreign {
        return Ok(driven);
    }
    marks::keep_finalizers(ctx, driven).await
}

/// One decision's I/O.
async fn carry_out(
    ctx: &Context,
    obj: Arc<DcsInstance>,
    view: &View<'_>,
    decision: Decision,
) -> Result<Driven> {
    let managed = view.policy == ManagementPolicy::Manage;
    Ok(match decision {
        Decision::Observe { instance_id } => Driven::observe(obj, instance_id, managed),
        Decision::Nothing => Driven::finished(obj),
        Decision::Blocked(blocked) if view.deleting => {
            let detail = blocked_problem(&blocked, Some(&obj)).message();
            Driven::lifecycle(
                obj,
                LifecycleProblem::CleanupBlocked { detail },
                REFUSAL_BACKSTOP,
            )
        }
        Decision::Blocked(blocked) => {
            let problem = blocked_problem(&blocked, Some(&obj));
            let requeue = match blocked {
                Blocked::CreateUnresolved | Blocked::Refused => Some(REFUSAL_BACKSTOP),
                _ => None,
            };
            Driven::problem(obj, problem, requeue)
        }
        Decision::Claim { attempt } => match ctx.shared.claim_wait(view.uid) {
            // The last claim could not go on (a failed lookup, a throttled create):
            // no new claim, no status write, until its wait is over.
            Some(wait) => Driven {
                requeue: Some(wait),
                ..Driven::finished(obj)
            },
            None => create::claim_and_create(ctx, obj, attempt).await?,
        },
        Decision::Resolve { attempt } => create::resolve(ctx, obj, attempt, view).await?,
        Decision::Adopt { instance_id } => create::adopt(ctx, obj, instance_id).await?,
        Decision::Reclaim {
            instance_id,
            from_uid,
        } => create::reclaim(ctx, obj, instance_id, from_uid).await?,
        Decision::RetryCreated { instance_id } => {
            create::retry_created(ctx, obj, instance_id, view).await?
        }
        Decision::Release { resolve_first } => delete::release(ctx, obj, resolve_first).await?,
        Decision::DeleteInstance { instance_id } => {
            delete::delete_instance(ctx, obj, instance_id).await?
        }
        Decision::ResolveForDelete { attempt } => {
            delete::resolve_for_delete(ctx, obj, attempt).await?
        }
    })
}

/// The generation whose create attempt was refused, as the Synced condition
/// records it.
fn refused_generation(obj: &DcsInstance) -> Option<i64> {
    find(obj.status.as_ref(), reasons::SYNCED)
        .filter(|c| c.reason == reasons::REQUEST_REFUSED || c.reason == reasons::NAME_IN_USE)
        .and_then(|c| c.observed_generation)
}

/// The condition a blocked decision shows.
fn blocked_problem(blocked: &Blocked, obj: Option<&DcsInstance>) -> Problem {
    let uid = obj.and_then(|o| o.uid()).unwrap_or_default();
    Problem::Lifecycle(match blocked {
        Blocked::MalformedAnnotation(name) => LifecycleProblem::AnnotationInvalid { name },
        Blocked::OwnershipMismatch { recorded_uid } => LifecycleProblem::OwnershipMismatch {
            detail: format!(
                "the annotation {} was written for the DcsInstance with uid {recorded_uid}, not this one ({uid}): it was copied or restored; after a restore set the annotation {} to {recorded_uid}",
                crate::lifecycle::CREATE_ATTEMPT_ANNOTATION,
                crate::lifecycle::RECLAIM_FROM_ANNOTATION,
            ),
        },
        Blocked::IdWithoutAttempt => LifecycleProblem::OwnershipMismatch {
            detail: format!(
                "the annotation {} has no {} saying which DcsInstance recorded it; adopt the instance with spec.instanceId instead",
                crate::lifecycle::INSTANCE_ID_ANNOTATION,
                crate::lifecycle::CREATE_ATTEMPT_ANNOTATION,
            ),
        },
        Blocked::InstanceIdMismatch { recorded } => LifecycleProblem::InstanceIdMismatch {
            recorded: recorded.clone(),
        },
        Blocked::Refused => kept_refusal(obj),
        Blocked::CreateUnresolved => LifecycleProblem::CreateUnresolved { uid },
    })
}

/// The refusal the status already reports (DCS's code and message are not kept
/// anywhere else); a generic one when status was lost.
fn kept_refusal(obj: Option<&DcsInstance>) -> LifecycleProblem {
    let synced = obj.and_then(|o| find(o.status.as_ref(), reasons::SYNCED));
    match synced {
        Some(c) if c.reason == reasons::NAME_IN_USE => LifecycleProblem::Kept {
            reason: reasons::NAME_IN_USE,
            message: c.message.to_string(),
        },
        Some(c) if c.reason == reasons::REQUEST_REFUSED => LifecycleProblem::Kept {
            reason: reasons::REQUEST_REFUSED,
            message: c.message.to_string(),
        },
        _ => LifecycleProblem::Refused {
            detail: "the last create attempt was refused".into(),
        },
    }
}

/// A lifecycle DCS call that did not answer: wait, or a problem to report.
enum Interrupted {
    Wait(Duration),
    Failed(DcsError),
}

/// One budgeted DCS call for the lifecycle (the namespace's share and the gate
/// apply as to observation).
async fn call<T, F, Fut>(
    ctx: &Context,
    access: &Access,
    namespace: &str,
    operation: &'static str,
    send: F,
) -> std::result::Result<T, Interrupted>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<crate::dcs::client::Answer<T>, DcsError>>,
{
    let target = CallTarget {
        gate: &access.gate,
        fingerprint: &access.fingerprint,
        namespace,
        operation,
    };
    match dcs_call::call(&ctx.shared, target, PermitMode::TryNow, send).await {
        CallOutcome::Answered(Ok(answer)) => Ok(answer.value),
        CallOutcome::Answered(Err(error)) | CallOutcome::Refused(error) => {
            Err(Interrupted::Failed(error))
        }
        CallOutcome::Wait(after) => Err(Interrupted::Wait(after)),
    }
}

impl Interrupted {
    /// The reconcile's answer to an interrupted step.
    fn into_driven(self, obj: Arc<DcsInstance>, step: &'static str) -> Driven {
        match self {
            Interrupted::Wait(after) => Driven {
                requeue: Some(after.max(Duration::from_millis(100))),
                ..Driven::lifecycle(
                    obj,
                    LifecycleProblem::Dcs {
                        step,
                        reason: reasons::PENDING,
                        message: "waiting for this namespace's share of DCS calls".into(),
                    },
                    after,
                )
            },
            Interrupted::Failed(error) => {
                warn!(reason = error.reason(), "{step} failed: {error}");
                // No request id in the message: a status that changes with every
                // failure would wake the object up again at once.
                let problem = LifecycleProblem::Dcs {
                    step,
                    reason: error.reason(),
                    message: crate::plan::error_message(&error),
                };
                Driven::lifecycle(obj, problem, LOOKUP_REQUEUE)
            }
        }
    }
}

/// An Event about the lifecycle (created, adopted, deleted, orphaned). Failing to
/// publish is logged, never fatal.
async fn event(
    ctx: &Context,
    obj: &DcsInstance,
    reason: &'static str,
    note: String,
    warning: bool,
) {
    let event = EventSpec {
        warning,
        reason,
        note: &note,
        action: "Manage",
    };
    publish_event(&ctx.shared, obj, event).await;
}
