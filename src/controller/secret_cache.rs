//! The compact caches the two Secret watches feed, instead of kube reflector
//! stores of whole objects: for every other Secret in scope its resourceVersion
//! and whether it holds our in-use finalizer; for the connection Secrets a
//! DcsInstance controls, their controller, our labels, type and a digest of their
//! data.
//!
//! Why not reflector stores: an `ObjectMeta` is about 400 bytes before any of its
//! strings, the store keys repeat name, namespace, uid and resourceVersion, and a
//! reflector buffers a whole second store while it relists. With 10 000 Secrets in
//! scope that was tens of MiB at the peak. Here an entry is its name, a
//! resourceVersion and a few bytes; a relist marks entries as it goes and sweeps
//! the unmarked ones at its end, so there is never a second copy.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt as _};

use crate::connection_secret::{
    DATA_DIGEST_ANNOTATION, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, data_digest_bytes,
    managed_labels,
};
use crate::intern::Atom;
use crate::lifecycle::IN_USE_FINALIZER;

/// One watch's cache: namespace -> name -> (relist mark, value).
pub struct WatchCache<V> {
    inner: Mutex<Inner<V>>,
    listed: tokio::sync::watch::Sender<bool>,
}

/// name -> (relist mark, value), for one namespace.
type Names<V> = HashMap<Box<str>, (u32, V)>;

struct Inner<V> {
    /// Bumped when a relist starts; entries the relist delivers carry the new mark,
    /// the others are swept when it ends.
    mark: u32,
    namespaces: HashMap<Box<str>, Names<V>>,
}

impl<V> Default for WatchCache<V> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                mark: 0,
                namespaces: HashMap::new(),
            }),
            listed: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl<V> WatchCache<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the entry for `namespace`/`name`, if the watch has seen it.
    pub fn with<R>(&self, namespace: &str, name: &str, read: impl FnOnce(&V) -> R) -> Option<R> {
        let inner = self.lock();
        inner
            .namespaces
            .get(namespace)
            .and_then(|names| names.get(name))
            .map(|(_, value)| read(value))
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().namespaces.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the watch has listed once (before that, a missing entry means
    /// nothing).
    pub fn is_listed(&self) -> bool {
        *self.listed.borrow()
    }

    /// Resolves once the watch has listed once.
    pub async fn listed(&self) {
        let mut listed = self.listed.subscribe();
        // The sender lives as long as self, which the caller borrows.
        let _ = listed.wait_for(|listed| *listed).await;
    }

    /// Applies one watch event; `slim` gives what to keep of an object (None: keep
    /// nothing, and forget what was kept).
    pub fn apply<K: Resource>(&self, event: &Event<K>, slim: impl Fn(&K) -> Option<V>) {
        let mut inner = self.lock();
        match event {
            Event::Init => inner.mark = inner.mark.wrapping_add(1),
            Event::InitApply(object) | Event::Apply(object) => {
                let mark = inner.mark;
                inner.put(object, slim(object).map(|value| (mark, value)));
            }
            Event::Delete(object) => inner.put(object, None),
            Event::InitDone => {
                let mark = inner.mark;
                inner.namespaces.retain(|_, names| {
                    names.retain(|_, (seen, _)| *seen == mark);
                    names.shrink_to_fit();
                    !names.is_empty()
                });
                inner.namespaces.shrink_to_fit();
                drop(inner);
                self.listed.send_replace(true);
            }
        }
    }
}

impl<V> Inner<V> {
    fn put<K: Resource>(&mut self, object: &K, entry: Option<(u32, V)>) {
        let namespace = object.meta().namespace.as_deref().unwrap_or_default();
        let Some(name) = object.meta().name.as_deref() else {
            return;
        };
        match entry {
            Some(entry) => {
                let names = match self.namespaces.get_mut(namespace) {
                    Some(names) => names,
                    None => self.namespaces.entry(namespace.into()).or_default(),
                };
                names.insert(name.into(), entry);
            }
            None => {
                if let Some(names) = self.namespaces.get_mut(namespace) {
                    names.remove(name);
                    if names.is_empty() {
                        self.namespaces.remove(namespace);
                    }
                }
            }
        }
    }
}

/// What the metadata watch keeps of a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    pub resource_version: Box<str>,
    /// Whether it holds the in-use finalizer of a DcsInstance that deletes its
    /// instance.
    pub in_use: bool,
}

impl SecretVersion {
    pub fn of(meta: &PartialObjectMeta<Secret>) -> Option<Self> {
        Some(Self {
            resource_version: meta.metadata.resource_version.as_deref()?.into(),
            in_use: meta.finalizers().iter().any(|f| f == IN_USE_FINALIZER),
        })
    }
}

/// The metadata watch's cache.
pub type SecretVersions = WatchCache<SecretVersion>;

impl SecretVersions {
    /// The resourceVersion the watch last saw of this Secret.
    pub fn resource_version(&self, namespace: &str, name: &str) -> Option<String> {
        self.with(namespace, name, |v| v.resource_version.to_string())
    }

    /// Whether the Secret holds the in-use finalizer; None if the watch has not
    /// seen it.
    pub fn in_use(&self, namespace: &str, name: &str) -> Option<bool> {
        self.with(namespace, name, |v| v.in_use)
    }
}

/// What the owned-Secret watch keeps of a connection Secret: who controls it, our
/// instance label, its type and a SHA-256 of its data (never the data). Not its
/// uid or resourceVersion: a write reads the Secret from the API server first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSecret {
    /// The same for every Secret (`dcs.operator.dev/v1alpha1`): shared.
    controller_api_version: Atom,
    controller_name: Box<str>,
    controller_uid: Box<str>,
    block_owner_deletion: Option<bool>,
    /// Whether the managed-by label holds our value (the watch's selector says so,
    /// but a slim copy is judged on what it holds).
    managed_by: bool,
    instance_label: InstanceLabel,
    type_: Option<Atom>,
    data_digest: [u8; 32],
}

/// The instance label's value, which is the controller's name (cut to 63
/// characters) unless someone changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum InstanceLabel {
    Absent,
    ControllerName,
    Other(Box<str>),
}

impl OwnedSecret {
    /// [`OwnedSecret::of`], boxed for the cache.
    pub fn boxed(secret: &Secret) -> Option<Box<Self>> {
        Self::of(secret).map(Box::new)
    }

    /// None unless a DcsInstance controls the Secret (anyone may label a Secret
    /// managed-by=dcs-operator).
    pub fn of(secret: &Secret) -> Option<Self> {
        let controller = secret
            .metadata
            .owner_references
            .as_ref()?
            .iter()
            .find(|owner| owner.controller == Some(true) && owner.kind == "DcsInstance")?;
        let labels = secret.metadata.labels.as_ref();
        let label = |key: &str| labels.and_then(|labels| labels.get(key));
        let expected_label = managed_labels(&controller.name).remove(INSTANCE_LABEL);
        let instance_label = match label(INSTANCE_LABEL) {
            None => InstanceLabel::Absent,
            Some(value) if Some(value) == expected_label.as_ref() => InstanceLabel::ControllerName,
            Some(value) => InstanceLabel::Other(value.as_str().into()),
        };
        Some(Self {
            controller_api_version: controller.api_version.as_str().into(),
            controller_name: controller.name.as_str().into(),
            controller_uid: controller.uid.as_str().into(),
            block_owner_deletion: controller.block_owner_deletion,
            managed_by: label(MANAGED_BY_LABEL).is_some_and(|v| v == MANAGED_BY),
            instance_label,
            type_: secret.type_.as_deref().map(Atom::from),
            data_digest: data_digest_bytes(secret),
        })
    }

    /// The slim Secret reconcile compares with what it would write: name, our
    /// labels, the controller reference, the type and the data digest (as the
    /// [`DATA_DIGEST_ANNOTATION`]), never the data.
    pub fn to_secret(&self, namespace: &str, name: &str) -> Secret {
        let mut labels = std::collections::BTreeMap::new();
        if self.managed_by {
            labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
        }
        let instance_label = match &self.instance_label {
            InstanceLabel::Absent => None,
            InstanceLabel::ControllerName => {
                managed_labels(&self.controller_name).remove(INSTANCE_LABEL)
            }
            InstanceLabel::Other(value) => Some(value.to_string()),
        };
        if let Some(value) = instance_label {
            labels.insert(INSTANCE_LABEL.to_string(), value);
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(labels),
                annotations: Some(std::collections::BTreeMap::from([(
                    DATA_DIGEST_ANNOTATION.to_string(),
                    hex::encode(self.data_digest),
                )])),
                owner_references: Some(vec![OwnerReference {
                    api_version: self.controller_api_version.to_string(),
                    kind: "DcsInstance".to_string(),
                    name: self.controller_name.to_string(),
                    uid: self.controller_uid.to_string(),
                    controller: Some(true),
                    block_owner_deletion: self.block_owner_deletion,
                }]),
                ..ObjectMeta::default()
            },
            type_: self.type_.as_deref().map(str::to_string),
            ..Secret::default()
        }
    }
}

/// The owned-Secret watch's cache. Boxed: an entry is 120 bytes, and a hash
/// table keeps a third or more of its slots empty.
pub type OwnedSecrets = WatchCache<Box<OwnedSecret>>;

impl OwnedSecrets {
    /// The slim copy of a connection Secret a DcsInstance controls.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.with(namespace, name, |owned| owned.to_secret(namespace, name))
    }

    /// Applies an owned-Secret watch event.
    pub fn apply_event(&self, event: &Event<Secret>) {
        self.apply(event, OwnedSecret::boxed);
    }
}

impl SecretVersions {
    /// Applies a metadata watch event.
    pub fn apply_event(&self, event: &Event<PartialObjectMeta<Secret>>) {
        self.apply(event, SecretVersion::of);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection_secret::{Owner, connection_secret, is_up_to_date};

    fn meta(
        namespace: &str,
        name: &str,
        rv: &str,
        finalizers: &[&str],
    ) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                resource_version: Some(rv.into()),
                finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
                ..ObjectMeta::default()
            },
            _phantom: Default::default(),
        }
    }

    #[test]
    fn a_relist_sweeps_what_it_did_not_deliver_and_keeps_serving_meanwhile() {
        let cache = SecretVersions::default();
        assert!(!cache.is_listed());
        cache.apply_event(&Event::Init);
        cache.apply_event(&Event::InitApply(meta("a", "one", "1", &[])));
        cache.apply_event(&Event::InitApply(meta(
            "b",
            "two",
            "2",
            &[IN_USE_FINALIZER],
        )));
        cache.apply_event(&Event::InitDone);
        assert!(cache.is_listed());
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.in_use("b", "two"), Some(true));
        assert_eq!(cache.in_use("a", "one"), Some(false));

        // A relist that no longer has "two": it is served until the relist ends.
        cache.apply_event(&Event::Init);
        cache.apply_event(&Event::InitApply(meta("a", "one", "5", &[])));
        assert_eq!(cache.resource_version("b", "two").as_deref(), Some("2"));
        assert_eq!(cache.resource_version("a", "one").as_deref(), Some("5"));
        cache.apply_event(&Event::InitDone);
        assert_eq!(cache.resource_version("b", "two"), None);
        assert_eq!(cache.len(), 1);

        cache.apply_event(&Event::Delete(meta("a", "one", "6", &[])));
        assert!(cache.is_empty());
        assert_eq!(cache.lock().namespaces.len(), 0);
    }

    #[test]
    fn an_object_without_a_name_or_version_is_not_kept() {
        let cache = SecretVersions::default();
        let mut nameless = meta("a", "x", "1", &[]);
        nameless.metadata.name = None;
        cache.apply_event(&Event::Apply(nameless));
        let mut versionless = meta("a", "y", "1", &[]);
        versionless.metadata.resource_version = None;
        cache.apply_event(&Event::Apply(versionless));
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn listed_resolves_after_the_first_list() {
        let cache = std::sync::Arc::new(SecretVersions::default());
        let waiting = tokio::spawn({
            let cache = cache.clone();
            async move { cache.listed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        cache.apply_event(&Event::Init);
        cache.apply_event(&Event::InitDone);
        waiting.await.unwrap();
    }

    fn owner() -> Owner {
        Owner {
            api_version: "dcs.operator.dev/v1alpha1".into(),
            kind: "DcsInstance".into(),
            name: "cache".into(),
            uid: "uid-1".into(),
        }
    }

    fn details(password: &str) -> crate::connection_secret::ConnectionDetails {
        crate::connection_secret::ConnectionDetails {
            engine: "Redis".into(),
            engine_version: Some("6.0".into()),
            addresses: vec!["10.0.0.1".into()],
            port: 6379,
            password: Some(password.into()),
        }
    }

    fn slim(secret: &Secret) -> Option<Secret> {
        OwnedSecret::of(secret).map(|owned| owned.to_secret("ns", "cache-dcs"))
    }

    #[test]
    fn the_owned_copy_keeps_a_digest_never_the_data_and_forgets_secrets_nobody_controls() {
        let mut written = connection_secret("ns", "cache-dcs", &owner(), &details("hunter2"));
        written.metadata.uid = Some("s-1".into());
        written.metadata.resource_version = Some("9".into());
        let cache = OwnedSecrets::default();
        cache.apply_event(&Event::Apply(written.clone()));
        let copy = cache.secret("ns", "cache-dcs").unwrap();
        assert!(copy.data.is_none());
        assert!(!format!("{copy:?}").contains("hunter2"));
        assert!(is_up_to_date(&copy, &written));
        assert_eq!(copy.metadata.labels, written.metadata.labels);
        assert_eq!(
            copy.metadata.owner_references,
            written.metadata.owner_references
        );
        assert_eq!(copy.type_, written.type_);
        let changed = connection_secret("ns", "cache-dcs", &owner(), &details("other"));
        assert!(!is_up_to_date(&copy, &changed));

        // A foreign annotation claiming our digest is overwritten by the real one.
        let mut forged = changed.clone();
        forged.metadata.annotations = Some(std::collections::BTreeMap::from([(
            DATA_DIGEST_ANNOTATION.to_string(),
            crate::connection_secret::data_digest(&written),
        )]));
        assert!(!is_up_to_date(&slim(&forged).unwrap(), &written));
        // A changed instance label is kept as it is (and then differs).
        let mut relabelled = written.clone();
        relabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(INSTANCE_LABEL.into(), "someone-else".into());
        assert!(!is_up_to_date(&slim(&relabelled).unwrap(), &written));

        // Someone removes the controller reference: the cache forgets it.
        let mut orphan = written.clone();
        orphan.metadata.owner_references = None;
        assert!(slim(&orphan).is_none());
        cache.apply_event(&Event::Apply(orphan));
        assert!(cache.secret("ns", "cache-dcs").is_none());
    }
}
