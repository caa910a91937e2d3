//! Converging a managed instance in place: the one write [`next_step`] picks
//! (after the ownership check), its record in `status.managed`, and the Synced
//! condition it leaves. A refused or unconfirmed write is never repeated for the
//! same desired values; a busy instance is waited for.

use std::time::Duration;

use tracing::{info, warn};

use super::{Interrupted, call};
use crate::controller::gather::{self, Access, Gathered};
use crate::controller::{Context, Result};
use crate::crd::{DcsInstance, ManagedStatus};
use crate::dcs::writes::{
    ModifyInstanceBody, ResizeInstanceBody, ResourceTag, TagAction, WriteOutcome, error_outcome,
    is_busy,
};
use crate::dcs::{DcsError, DcsStatus, SecretString};
use crate::lifecycle::converge::{
    self, ACCEPTED, Change, Operation, REFUSED, Step, next_step, password_digest,
};
use crate::plan::{Problem, reasons};

/// The code recorded for a password reset whose outcome is unknown.
const UNKNOWN_CODE: &str = "OutcomeUnknown";

/// How soon a busy instance is looked at again.
const BUSY_REQUEUE: Duration = Duration::from_secs(15);

/// What converging leaves for the plan.
#[derive(Debug, Default)]
pub struct Converged {
    /// status.managed to write.
    pub managed: Option<ManagedStatus>,
    pub problems: Vec<Problem>,
    pub requeue: Option<Duration>,
    /// The password Secret holds a value DCS does not have yet: the connection
    /// Secret keeps the old one.
    pub hold_secret: bool,
}

/// Compares, and makes at most one write, for a managed instance that was just
/// observed. `initial`: the record a create made this reconcile.
pub async fn converge(
    ctx: &Context,
    obj: &DcsInstance,
    gathered: &Gathered,
    initial: Option<ManagedStatus>,
) -> Result<Converged> {
    let (Some(desired), Some(id)) = (
        obj.spec.instance.as_ref(),
        gathered.managed_instance_id.as_deref(),
    ) else {
        return Ok(Converged::default());
    };
    let current = obj
        .status
        .as_ref()
        .and_then(|s| s.managed.as_deref().cloned());
    let mut managed = initial.or(current).unwrap_or_default();
    // Writes this process made that the status (from a cache that may lag behind
    // our own patches) does not show yet: never sent twice.
    for record in ctx.shared.converge_journal(&gathered.owner.uid) {
        let known = managed
            .operations
            .iter()
            .any(|r| r.operation == record.operation && r.at >= record.at);
        if !known {
            managed = converge::with_record(managed, record);
        }
    }
    let Some(instance) = gathered
        .observation
        .as_ref()
        .and_then(|o| o.result.as_ref().ok())
    else {
        return Ok(Converged {
            managed: Some(managed),
            ..Converged::default()
        });
    };
    let uid = gathered.owner.uid.as_str();
    let digest = gathered
        .password
        .as_ref()
        .map(|p| password_digest(uid, p.expose()));
    // Adopted, created before this record existed, or status lost: the current
    // value is recorded as applied, never reset.
    if managed.password_digest.is_none() {
        managed.password_digest = digest.clone();
    }
    let changes = converge::changes(desired, instance, &managed, digest.as_deref());
    let status = instance.status.as_deref().map(DcsStatus::parse);
    let task = instance.has_task();
    let step = next_step(
        changes,
        &managed.operations,
        status.as_ref(),
        task,
        ctx.shared.clock.now(),
    );
    let mut converged = match step {
        Step::Converged => Converged::default(),
        Step::Busy(message) => not_synced(reasons::BUSY, message, BUSY_REQUEUE),
        Step::Report {
            not_converged,
            refused,
        } => report(&not_converged, refused.as_ref()),
        Step::Write(change) => {
            let write = Write {
                uid: &gathered.owner.uid,
                id,
                change: &change,
                password: gathered.password.as_ref(),
            };
            let mut converged = write_one(ctx, obj, gathered, managed, write).await?;
            converged.hold_secret = holds(converged.managed.as_ref(), digest.as_deref());
            return Ok(converged);
        }
    };
    converged.hold_secret = holds(Some(&managed), digest.as_deref());
    converged.managed = Some(managed);
    Ok(converged)
}

/// Whether the password Secret's value (its digest) is not the one DCS was last
/// given: then the connection Secret keeps the old one, whatever else happened.
pub fn holds(managed: Option<&ManagedStatus>, digest: Option<&str>) -> bool {
    let applied = managed.and_then(|m| m.password_digest.as_deref());
    digest.is_some() && applied.is_some() && applied != digest
}

/// A Synced-only problem (Ready keeps following the instance).
fn not_synced(reason: &'static str, message: String, requeue: Duration) -> Converged {
    Converged {
        problems: vec![Problem::NotSynced { reason, message }],
        requeue: Some(requeue),
        ..Converged::default()
    }
}

/// Nothing to write: say which writes did not converge, or which was refused.
fn report(not_converged: &[Operation], refused: Option<&crate::crd::OperationRecord>) -> Converged {
    if let Some(record) = refused.filter(|r| r.code.as_deref() == Some(UNKNOWN_CODE)) {
        let message = format!(
            "the {} change's outcome is unknown ({}); it is sent again in at most 30 minutes, and the connection Secret keeps the old password meanwhile",
            record.operation,
            record.message.as_deref().unwrap_or_default(),
        );
        return not_synced(reasons::NOT_CONVERGED, message, converge::REFUSAL_BACKSTOP);
    }
    if let Some(record) = refused {
        let message = format!(
            "DCS refused the {} change: {} {}; fix the spec (the change is asked again at most every 30 minutes, or at once for other values)",
            record.operation,
            record.code.as_deref().unwrap_or_default(),
            record.message.as_deref().unwrap_or_default(),
        );
        return not_synced(
            reasons::REQUEST_REFUSED,
            message,
            converge::REFUSAL_BACKSTOP,
        );
    }
    let names: Vec<&str> = not_converged.iter().map(|o| o.as_str()).collect();
    let message = format!(
        "DCS accepted the {} change but still reports other values; it is not sent again until spec.instance changes (check the instance in the DCS console)",
        names.join(", ")
    );
    not_synced(reasons::NOT_CONVERGED, message, converge::REFUSAL_BACKSTOP)
}

/// The write chosen, and what it needs.
struct Write<'a> {
    uid: &'a str,
    id: &'a str,
    change: &'a Change,
    password: Option<&'a SecretString>,
}

/// The ownership check, the write, and its record.
async fn write_one(
    ctx: &Context,
    obj: &DcsInstance,
    gathered: &Gathered,
    managed: ManagedStatus,
    write: Write<'_>,
) -> Result<Converged> {
    let namespace = gathered.namespace.as_str();
    let access = match gather::access(ctx, obj, namespace).await? {
        Ok(access) => access,
        Err(problem) => {
            return Ok(Converged {
                managed: Some(managed),
                problems: vec![problem],
                ..Converged::default()
            });
        }
    };
    let shared = &ctx.shared;
    let (endpoint, credentials, project) = (
        &access.resolved.endpoint,
        &access.credentials,
        access.project_id.as_str(),
    );
    let tags = call(ctx, &access, namespace, "show_tags", || {
        shared
            .dcs
            .show_tags(endpoint, credentials, project, write.id)
    })
    .await;
    let owned = match tags {
        Ok(tags) => tags.iter().any(|t| t.is_owner(&gathered.owner.uid)),
        Err(interrupted) => return Ok(interrupted_write(managed, interrupted)),
    };
    if !owned {
        let message = format!(
            "the instance {} does not carry this DcsInstance's ownership tag; nothing is changed",
            write.id
        );
        let mut converged = not_synced(
            reasons::OWNERSHIP_MISMATCH,
            message,
            converge::REFUSAL_BACKSTOP,
        );
        converged.managed = Some(managed);
        return Ok(converged);
    }
    shared.check_write()?;
    let result = send(ctx, &access, namespace, &write).await;
    // Whatever came back, the stored answer is out of date: the next reconcile
    // reads the instance again (EXTENDING, the new port, or that nothing changed).
    shared
        .observations
        .request_show(crate::controller::store::ObservationKey {
            endpoint: access.resolved.endpoint.as_str().into(),
            project_id: access.project_id.as_str().into(),
            credentials_fingerprint: access.fingerprint.as_str().into(),
            instance_id: write.id.into(),
        });
    Ok(recorded(ctx, managed, &write, result))
}

/// Sends the write (tags: a delete of the operator's removed tags, then a create).
async fn send(
    ctx: &Context,
    access: &Access,
    namespace: &str,
    write: &Write<'_>,
) -> std::result::Result<(), Interrupted> {
    let shared = &ctx.shared;
    let (endpoint, credentials, project) = (
        &access.resolved.endpoint,
        &access.credentials,
        access.project_id.as_str(),
    );
    let id = write.id;
    let operation = write.change.operation().as_str();
    let result = match write.change {
        Change::Resize {
            spec_code,
            gigabytes,
        } => {
            let body = ResizeInstanceBody {
                spec_code: spec_code.clone(),
                new_capacity: *gigabytes,
                change_type: None,
                execute_immediately: None,
            };
            call(ctx, access, namespace, "resize_instance", || {
                shared
                    .dcs
                    .resize_instance(endpoint, credentials, project, id, &body)
            })
            .await
        }
        Change::Modify {
            name,
            description,
            window,
            security_group_id,
        } => {
            let body = ModifyInstanceBody {
                name: name.clone(),
                description: description.clone(),
                maintain_begin: window.as_ref().map(|w| w.0.clone()),
                maintain_end: window.as_ref().map(|w| w.1.clone()),
                security_group_id: security_group_id.clone(),
                port: None,
            };
            update(ctx, access, namespace, id, body).await
        }
        Change::Port(port) => {
            let body = ModifyInstanceBody {
                port: Some(*port),
                ..ModifyInstanceBody::default()
            };
            update(ctx, access, namespace, id, body).await
        }
        Change::Tags { create, delete, .. } => {
            send_tags(ctx, access, namespace, id, create, delete).await
        }
        Change::Password { .. } => {
            let password = write.password;
            call(ctx, access, namespace, "reset_password", || {
                shared
                    .dcs
                    .reset_password(endpoint, credentials, project, id, password, None)
            })
            .await
            .map(|_| ())
        }
    };
    let outcome = match &result {
        Ok(()) => WriteOutcome::Accepted,
        Err(Interrupted::Failed(error)) => error_outcome(error),
        Err(Interrupted::Wait(_)) => WriteOutcome::NotSent,
    };
    shared
        .metrics
        .dcs_write(operation_label(operation), outcome);
    result
}

/// The metric label of an in-place write.
fn operation_label(operation: &str) -> &'static str {
    match operation {
        "resize" => "resize_instance",
        "modify" | "port" => "update_instance",
        "tags" => "tag_action",
        _ => "reset_password",
    }
}

async fn update(
    ctx: &Context,
    access: &Access,
    namespace: &str,
    id: &str,
    body: ModifyInstanceBody,
) -> std::result::Result<(), Interrupted> {
    let shared = &ctx.shared;
    call(ctx, access, namespace, "update_instance", || {
        shared.dcs.update_instance(
            &access.resolved.endpoint,
            &access.credentials,
            &access.project_id,
            id,
            &body,
        )
    })
    .await
}

async fn send_tags(
    ctx: &Context,
    access: &Access,
    namespace: &str,
    id: &str,
    create: &[crate::crd::AppliedTag],
    delete: &[crate::crd::AppliedTag],
) -> std::result::Result<(), Interrupted> {
    let shared = &ctx.shared;
    let to_tags = |tags: &[crate::crd::AppliedTag]| -> Vec<ResourceTag> {
        tags.iter()
            .map(|t| ResourceTag::new(&t.key, &t.value))
            .collect()
    };
    for (action, tags) in [
        (TagAction::Delete, to_tags(delete)),
        (TagAction::Create, to_tags(create)),
    ] {
        if tags.is_empty() {
            continue;
        }
        call(ctx, access, namespace, "tag_action", || {
            shared.dcs.tag_action(
                &access.resolved.endpoint,
                &access.credentials,
                &access.project_id,
                id,
                action,
                &tags,
            )
        })
        .await?;
    }
    Ok(())
}

/// The record a write's result leaves, and the condition.
fn recorded(
    ctx: &Context,
    managed: ManagedStatus,
    write: &Write<'_>,
    result: std::result::Result<(), Interrupted>,
) -> Converged {
    let change = write.change;
    let error = match result {
        Ok(()) => return written(ctx, managed, write),
        Err(Interrupted::Wait(_)) => {
            let message = "waiting for this namespace's share of DCS calls".to_string();
            return not_synced_with(managed, reasons::BUSY, message, BUSY_REQUEUE, change);
        }
        Err(Interrupted::Failed(error)) => error,
    };
    let message = crate::plan::error_message(&error);
    if is_busy(&error) {
        let message = format!("DCS is busy: {message}");
        return not_synced_with(managed, reasons::BUSY, message, BUSY_REQUEUE, change);
    }
    if matches!(
        error,
        DcsError::Unauthorized(_) | DcsError::Forbidden(_) | DcsError::NotFound(_)
    ) {
        // Not a refusal of the change (expired keys, a missing permission): said
        // with its own reason, and asked again once that is fixed.
        return not_synced_with(managed, error.reason(), message, BUSY_REQUEUE, change);
    }
    match error_outcome(&error) {
        WriteOutcome::Refused => {
            warn!(
                operation = change.operation().as_str(),
                "in-place write refused: {message}"
            );
            refused(ctx, managed, write, refusal_of(&error))
        }
        WriteOutcome::NotSent => {
            not_synced_with(managed, reasons::BUSY, message, BUSY_REQUEUE, change)
        }
        // The outcome is unknown. A password reset is sent again (the same value)
        // later: applications keep the password that surely works meanwhile. Any
        // other change counts as written: never sent again for these values; if
        // DCS still differs once it settles, NotConverged says so.
        _ if matches!(change, Change::Password { .. }) => {
            refused(ctx, managed, write, (UNKNOWN_CODE.to_string(), message))
        }
        _ => written(ctx, managed, write),
    }
}

/// A refused (or, for a password, unconfirmed) write: recorded, so the same
/// values are asked again only after the backstop.
fn refused(
    ctx: &Context,
    managed: ManagedStatus,
    write: &Write<'_>,
    refusal: (String, String),
) -> Converged {
    let now = ctx.shared.clock.now();
    let record = converge::record(write.change, REFUSED, now, Some(refusal));
    ctx.shared.journal_write(write.uid, record.clone());
    let managed = converge::with_record(managed, record.clone());
    let mut converged = report(&[], Some(&record));
    converged.managed = Some(managed);
    converged
}

/// A write DCS took (or one whose outcome is unknown): recorded as written.
fn written(ctx: &Context, mut managed: ManagedStatus, write: &Write<'_>) -> Converged {
    let change = write.change;
    info!(
        operation = change.operation().as_str(),
        "in-place write sent"
    );
    if let Change::Password { digest } = change {
        managed.password_digest = Some(digest.clone());
    }
    if let Change::Tags { desired, .. } = change {
        managed.tags = desired.clone();
    }
    let record = converge::record(change, ACCEPTED, ctx.shared.clock.now(), None);
    ctx.shared.journal_write(write.uid, record.clone());
    Converged {
        managed: Some(converge::with_record(managed, record)),
        requeue: Some(Duration::from_secs(10)),
        ..Converged::default()
    }
}

fn not_synced_with(
    managed: ManagedStatus,
    reason: &'static str,
    message: String,
    requeue: Duration,
    change: &Change,
) -> Converged {
    let mut converged = not_synced(reason, message, requeue);
    converged.hold_secret = matches!(change, Change::Password { .. });
    converged.managed = Some(managed);
    converged
}

/// DCS's code and message for a refusal record.
fn refusal_of(error: &DcsError) -> (String, String) {
    match error.api() {
        Some(api) => (
            api.error_code
                .clone()
                .unwrap_or_else(|| api.status.to_string()),
            api.error_msg.clone().unwrap_or_default(),
        ),
        None => (error.reason().to_string(), error.to_string()),
    }
}

fn interrupted_write(managed: ManagedStatus, interrupted: Interrupted) -> Converged {
    let (reason, message) = match interrupted {
        Interrupted::Wait(_) => (
            reasons::BUSY,
            "waiting for this namespace's share of DCS calls".to_string(),
        ),
        Interrupted::Failed(error) => (
            error.reason(),
            format!("reading the instance's tags: {error}"),
        ),
    };
    let mut converged = not_synced(reason, message, BUSY_REQUEUE);
    converged.managed = Some(managed);
    converged
}
