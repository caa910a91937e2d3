//! The lifecycle's Kubernetes writes: the DcsInstance's annotations and cleanup
//! finalizer (merge patches, with the resourceVersion as precondition where two
//! writers could race), and the in-use finalizer on a credentials Secret that a
//! `Delete` DcsInstance still needs.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::{Map, Value, json};
use tracing::{debug, warn};

use super::super::{Context, Error, Result, Shared};
use super::Driven;
use crate::crd::{DcsInstance, DeletionPolicy, ManagementPolicy};
use crate::lifecycle::{CLEANUP_FINALIZER, IN_USE_FINALIZER, Marks, View};

/// One metadata change: annotations to set (Some) or remove (None), and the
/// finalizer list to write, if it changes.
#[derive(Debug, Default)]
pub struct MetaChange {
    pub annotations: Vec<(&'static str, Option<String>)>,
    pub cleanup_finalizer: Option<bool>,
    /// Send the object's resourceVersion: the write fails if anyone wrote since.
    pub precondition: bool,
}

/// Applies `change` to the DcsInstance; returns the object as written.
pub async fn patch(
    ctx: &Context,
    obj: &DcsInstance,
    change: MetaChange,
) -> Result<Arc<DcsInstance>> {
    let shared = &ctx.shared;
    shared.check_write()?;
    let namespace = obj
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let mut metadata = Map::new();
    if change.precondition {
        let version = obj
            .resource_version()
            .ok_or(Error::MissingObjectKey("metadata.resourceVersion"))?;
        metadata.insert("resourceVersion".into(), Value::String(version));
    }
    if !change.annotations.is_empty() {
        let annotations: Map<String, Value> = change
            .annotations
            .into_iter()
            .map(|(key, value)| (key.to_string(), value.map_or(Value::Null, Value::String)))
            .collect();
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    if let Some(want) = change.cleanup_finalizer {
        let finalizers = finalizers_with(obj.finalizers(), CLEANUP_FINALIZER, want);
        metadata.insert("finalizers".into(), json!(finalizers));
        // A merge patch replaces the whole list: without the precondition another
        // controller's finalizer added meanwhile would be dropped.
        if let Some(version) = obj.resource_version() {
            metadata.insert("resourceVersion".into(), Value::String(version));
        }
    }
    let api: Api<DcsInstance> = Api::namespaced(shared.client.clone(), &namespace);
    let written = api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": metadata })),
        )
        .await
        .map_err(|source| Error::PatchMetadata { source })?;
    shared.metrics.write("metadata");
    Ok(Arc::new(written))
}

/// `finalizers` with `finalizer` present or absent, order kept.
pub fn finalizers_with(finalizers: &[String], finalizer: &str, present: bool) -> Vec<String> {
    let mut list: Vec<String> = finalizers
        .iter()
        .filter(|f| f.as_str() != finalizer)
        .cloned()
        .collect();
    if present {
        list.push(finalizer.to_string());
    }
    list
}

/// After a non-deleting step: the cleanup finalizer present exactly when wanted,
/// and the credentials Secret held while a `Delete` object needs it.
pub async fn keep_finalizers(ctx: &Context, driven: Driven) -> Result<Driven> {
    let obj = driven.obj.clone();
    let marks = Marks::of(&obj);
    let view = View::of(&obj, &marks);
    let want = view.wants_cleanup_finalizer();
    let obj = if want != view.has_cleanup_finalizer {
        let change = MetaChange {
            cleanup_finalizer: Some(want),
            ..MetaChange::default()
        };
        patch(ctx, &obj, change).await?
    } else {
        obj
    };
    if holds_credentials(&obj) {
        hold_credentials(ctx, &obj).await?;
    } else if credentials_held(ctx, &obj).await? {
        // No longer Delete (or no longer Manage): the Secret is let go unless
        // another Delete object in the namespace still needs it.
        release_credentials(ctx, &obj).await?;
    }
    Ok(Driven { obj, ..driven })
}

/// Whether the object's credentials Secret carries the in-use finalizer (from the
/// metadata cache when there is one, else one metadata GET).
async fn credentials_held(ctx: &Context, obj: &DcsInstance) -> Result<bool> {
    let (Some(namespace), Some(reference)) =
        (obj.namespace(), obj.spec.credentials_secret_ref.as_ref())
    else {
        return Ok(false);
    };
    let held = |meta: &kube::core::PartialObjectMeta<Secret>| {
        meta.finalizers().iter().any(|f| f == IN_USE_FINALIZER)
    };
    if let Some(versions) = ctx.secret_metadata.as_ref() {
        return Ok(versions.in_use(&namespace, &reference.name) == Some(true));
    }
    let api: Api<Secret> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    let found = api
        .get_metadata_opt(&reference.name)
        .await
        .map_err(|source| Error::ReadCredentials {
            name: reference.name.to_string(),
            source,
        })?;
    Ok(found.is_some_and(|meta| held(&meta)))
}

/// Whether this object needs its credentials Secret to outlive it.
fn holds_credentials(obj: &DcsInstance) -> bool {
    obj.spec.management_policy == ManagementPolicy::Manage
        && obj.spec.deletion_policy == DeletionPolicy::Delete
        && obj.spec.credentials_secret_ref.is_some()
}

/// Adds the in-use finalizer to the credentials Secret when it lacks it (read from
/// the metadata cache when there is one, else one GET).
async fn hold_credentials(ctx: &Context, obj: &DcsInstance) -> Result<()> {
    let (Some(namespace), Some(reference)) =
        (obj.namespace(), obj.spec.credentials_secret_ref.as_ref())
    else {
        return Ok(());
    };
    let cached = ctx
        .secret_metadata
        .as_ref()
        .and_then(|versions| versions.in_use(&namespace, &reference.name));
    if cached == Some(true) {
        return Ok(());
    }
    set_in_use(ctx, &namespace, &reference.name, true).await
}

/// Sets or removes the in-use finalizer on one Secret (a missing Secret is left).
async fn set_in_use(ctx: &Context, namespace: &str, name: &str, present: bool) -> Result<()> {
    let shared = &ctx.shared;
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), namespace);
    let read_error = |source| Error::ReadCredentials {
        name: name.to_string(),
        source,
    };
    let Some(secret) = api.get_metadata_opt(name).await.map_err(read_error)? else {
        return Ok(());
    };
    let has = secret.finalizers().iter().any(|f| f == IN_USE_FINALIZER);
    if has == present || (present && secret.metadata.deletion_timestamp.is_some()) {
        return Ok(());
    }
    shared.check_write()?;
    let body = json!({ "metadata": {
        "resourceVersion": secret.resource_version(),
        "finalizers": finalizers_with(secret.finalizers(), IN_USE_FINALIZER, present),
    }});
    api.patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
        .map_err(|source| Error::PatchCredentialsFinalizer {
            name: name.to_string(),
            source,
        })?;
    shared.metrics.write("secret_finalizer");
    Ok(())
}

/// After `released` let go: the credentials Secret loses its in-use finalizer
/// unless another `Delete` DcsInstance in the namespace still names it.
pub async fn release_credentials(ctx: &Context, released: &DcsInstance) -> Result<()> {
    let (Some(namespace), Some(reference)) = (
        released.namespace(),
        released.spec.credentials_secret_ref.as_ref(),
    ) else {
        return Ok(());
    };
    let api: Api<DcsInstance> = Api::namespaced(ctx.shared.client.clone(), &namespace);
    let others = api
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::ListInstances { source })?;
    let still_needed = others.items.iter().any(|other| {
        other.uid() != released.uid()
            && holds_credentials(other)
            && other.spec.credentials_secret_ref.as_ref() == Some(reference)
            && (other.metadata.deletion_timestamp.is_none()
                || other.finalizers().iter().any(|f| f == CLEANUP_FINALIZER))
    });
    if still_needed {
        debug!("the credentials Secret is still needed by another DcsInstance");
        return Ok(());
    }
    set_in_use(ctx, &namespace, &reference.name, false).await
}

/// Whether the DcsInstance CRD itself is being deleted (then every object is
/// treated as Orphan: the cluster is being torn down, not the caches). Unknown
/// (no permission, an error) counts as no.
pub async fn crd_is_deleting(shared: &Shared) -> bool {
    let api: Api<CustomResourceDefinition> = Api::all(shared.client.clone());
    match api.get_metadata_opt(DcsInstance::crd_name()).await {
        Ok(found) => found.is_some_and(|crd| crd.metadata.deletion_timestamp.is_some()),
        Err(error) => {
            warn!("could not read the DcsInstance CRD: {error}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalizers_keep_order_and_others() {
        let list = vec!["a".to_string(), CLEANUP_FINALIZER.to_string(), "b".into()];
        assert_eq!(finalizers_with(&list, CLEANUP_FINALIZER, false), ["a", "b"]);
        assert_eq!(
            finalizers_with(&list, CLEANUP_FINALIZER, true),
            ["a", "b", CLEANUP_FINALIZER]
        );
        assert_eq!(finalizers_with(&[], "x", true), ["x"]);
    }
}
