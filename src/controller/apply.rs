//! Every write reconcile makes, and only on a real difference: the connection
//! Secret (ownership checked against the API server, never a cache alone), the
//! status (server-side apply, whole), and Events on transitions. Each write goes
//! through the leader gate first.

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::{info, warn};

use super::events::EventSpec;
use super::gather::{ExistingSecret, Gathered};
use super::{Context, Error, FIELD_MANAGER, Result, Shared};
use crate::connection_secret::{controller_uid, is_up_to_date};
use crate::crd::{DcsInstance, DcsInstanceStatus};
use crate::plan::{self, Plan};

/// Makes the plan true: the Secret first (status then names a Secret that exists),
/// then status, then the Events its change deserves.
pub async fn apply(
    ctx: &Context,
    obj: &DcsInstance,
    gathered: &Gathered,
    planned: &Plan,
) -> Result<()> {
    let shared = &ctx.shared;
    if let Some(desired) = &planned.secret {
        write_connection_secret(shared, gathered, desired).await?;
    }
    if write_status_if_changed(shared, obj, &gathered.namespace, &planned.status).await? {
        publish_events(shared, obj, &planned.status).await;
    }
    Ok(())
}

/// Makes the connection Secret hold `desired`. A Secret whose controller is not
/// this DcsInstance is never touched. Creation is a POST (fails if one appeared
/// meanwhile); updates are merge patches carrying the uid and resourceVersion they
/// were based on, read from the API server.
async fn write_connection_secret(
    shared: &Shared,
    gathered: &Gathered,
    desired: &Secret,
) -> Result<()> {
    let owner_uid = gathered.owner.uid.as_str();
    let name = desired.name_any();
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &gathered.namespace);
    let existing = match &gathered.connection_secret {
        ExistingSecret::Cached(cached) | ExistingSecret::Read(cached)
            if controller_uid(cached) == Some(owner_uid) && is_up_to_date(cached, desired) =>
        {
            return Ok(());
        }
        ExistingSecret::Read(read) => Some(read.clone()),
        ExistingSecret::Absent => None,
        // A cache may be stale: the API server says who owns it now.
        ExistingSecret::Cached(_) | ExistingSecret::NotRead => {
            api.get_opt(&name)
                .await
                .map_err(|source| Error::ReadConnectionSecret {
                    name: name.clone(),
                    source,
                })?
        }
    };
    let write_error = |source| Error::WriteSecret {
        name: name.clone(),
        source,
    };
    match existing {
        None => {
            shared.check_write()?;
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PostParams::default()
            };
            api.create(&params, desired).await.map_err(write_error)?;
            shared.metrics.write("secret_create");
            info!(secret = %name, "connection Secret created");
        }
        Some(existing) if controller_uid(&existing) != Some(owner_uid) => {
            // The cache said ours; the API server says otherwise. Look again.
            return Err(Error::SecretTakenMeanwhile { name });
        }
        Some(existing) if is_up_to_date(&existing, desired) => {}
        Some(existing) => {
            let patch = secret_patch(&existing, desired)?;
            shared.check_write()?;
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            };
            api.patch(&name, &params, &Patch::Merge(&patch))
                .await
                .map_err(write_error)?;
            shared.metrics.write("secret_patch");
            info!(secret = %name, "connection Secret updated");
        }
    }
    Ok(())
}

/// A merge patch from `existing` to `desired`: every old key removed unless kept,
/// our labels and owner set, and the uid and resourceVersion it was based on as
/// preconditions. Never `type`, which the API server does not let change.
fn secret_patch(existing: &Secret, desired: &Secret) -> Result<serde_json::Value> {
    let mut data = serde_json::Map::new();
    for key in existing.data.iter().flatten().map(|(k, _)| k) {
        data.insert(key.clone(), serde_json::Value::Null);
    }
    for (key, value) in desired.data.iter().flatten() {
        data.insert(key.clone(), serde_json::to_value(value)?);
    }
    Ok(json!({
        "metadata": {
            "uid": existing.uid(),
            "resourceVersion": existing.resource_version(),
            "labels": desired.metadata.labels,
            "ownerReferences": desired.metadata.owner_references,
        },
        "data": data,
    }))
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
    let body = json!({
        "apiVersion": DcsInstance::api_version(&()),
        "kind": DcsInstance::kind(&()),
        "status": desired,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::PatchStatus { source })?;
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
    for planned in plan::transition_events(obj.status.as_ref(), written) {
        let event = EventSpec {
            warning: planned.warning,
            reason: planned.reason,
            note: &planned.note,
            action: "Observe",
        };
        if !publish_event(shared, obj, event).await {
            return;
        }
    }
}

/// Publishes one Event about `obj` (as leader only); false when this replica may
/// not write. A failure is logged and counted, never fatal.
pub(super) async fn publish_event(
    shared: &Shared,
    obj: &DcsInstance,
    event: EventSpec<'_>,
) -> bool {
    let Some(publisher) = &shared.events else {
        return true;
    };
    if shared.check_write().is_err() {
        return false;
    }
    match publisher
        .publish(&obj.object_ref(&()), event, shared.clock.now())
        .await
    {
        Ok(_) => shared.metrics.write("event"),
        Err(error) => warn!(reason = event.reason, "could not publish an event: {error}"),
    }
    true
}
