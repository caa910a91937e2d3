//! Running the controller: one per served scope (every namespace, or each listed
//! one), each with three watches (DcsInstances, the owned connection Secrets as
//! digests, the metadata of every other Secret), readiness, and the wake-ups that
//! reach reconcile (leadership regained, batch answers that changed).

use std::collections::HashSet;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::debug;

use super::secret_cache::{OwnedSecret, OwnedSecrets, SecretVersion, SecretVersions, WatchCache};
use super::wake::WakeQueue;
use super::{Context, Shared, error_policy, reconcile, secrets};
use crate::connection_secret::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::crd::DcsInstance;

/// Serves all namespaces (`namespaces` empty), or the listed ones (one controller
/// each), until `shutdown` resolves.
pub async fn run(
    shared: Arc<Shared>,
    namespaces: Vec<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let controllers = scopes
        .into_iter()
        .map(|scope| run_scope(shared.clone(), scope, shutdown.clone()));
    futures::future::join_all(controllers).await;
}

/// The APIs of one scope: a namespace, or the whole cluster.
fn scoped<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// One controller: its watches, its readiness, its wake-ups, then reconciles until
/// shutdown.
async fn run_scope(
    shared: Arc<Shared>,
    scope: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = shared.client.clone();
    let (owned_cache, owned) = watch_owned_secrets(scoped(&client, &scope));
    let (versions, referenced) = watch_secret_metadata(scoped(&client, &scope));
    let (store, instances, instances_listed) =
        watch_instances(scoped(&client, &scope), shared.selector.as_deref());
    shared.instances.add_store(store.clone());
    report_readiness(
        &shared,
        [
            listed(instances_listed.clone()),
            cache_listed(owned_cache.clone()),
            cache_listed(versions.clone()),
        ],
    );
    // The Controller holds at most two requests per reconcile slot (kube's 0 is
    // unbounded: so is the hand-over); the rest wait, compact, in the wake-up queue.
    let limit = match shared.concurrency {
        0 => usize::MAX,
        slots => 2 * usize::from(slots),
    };
    let wake = Arc::new(WakeQueue::new(limit));
    let ctx = Arc::new(Context {
        shared: shared.clone(),
        owned_secrets: Some(owned_cache),
        secret_metadata: Some(versions),
        wake: Some(wake.clone()),
    });
    let triggers = Triggers {
        instances,
        owned,
        referenced,
        requests: shared.reconcile_requests(scope),
        leadership: leadership_gained(&shared),
    };
    let feeding = feed_wake_ups(triggers, store.clone(), wake.clone());
    let config = controller::Config::default().concurrency(shared.concurrency);
    let controller = Controller::for_stream(futures::stream::pending(), store.clone())
        .with_config(config)
        .reconcile_on(handed_over(wake, store, instances_listed))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!("controller: {error}");
            }
        });
    // The watches feed the queue for as long as the Controller runs (until shutdown).
    futures::future::select(Box::pin(controller), Box::pin(feeding)).await;
}

/// Everything that wakes a DcsInstance besides its own timers.
struct Triggers<L> {
    instances: Applied<DcsInstance>,
    owned: Applied<Secret>,
    referenced: Applied<PartialObjectMeta<Secret>>,
    requests: super::shared::RequestReceiver,
    leadership: L,
}

/// Drives the watches (which also fill their caches) and puts every object they,
/// the batch poller or a regained leadership wake into the queue, by namespace and
/// name. Never returns.
async fn feed_wake_ups<L>(triggers: Triggers<L>, store: Store<DcsInstance>, wake: Arc<WakeQueue>)
where
    L: futures::Stream<Item = ()> + Send + 'static,
{
    type Woken = Pin<Box<dyn futures::Stream<Item = Vec<ObjectRef<DcsInstance>>> + Send>>;
    let held = store.clone();
    let streams: [Woken; 5] = [
        triggers
            .instances
            .map(|obj| obj.map(|obj| vec![named(&obj)]).unwrap_or_default())
            .boxed(),
        triggers.owned.map(owners).boxed(),
        triggers
            .referenced
            .map(move |secret| {
                secret
                    .map(|secret| referencing(&store, &secret))
                    .unwrap_or_default()
            })
            .boxed(),
        triggers.requests.map(|object| vec![object]).boxed(),
        triggers
            .leadership
            .map(move |()| held.state().iter().map(|obj| named(obj.as_ref())).collect())
            .boxed(),
    ];
    futures::stream::select_all(streams)
        .for_each(|objects| {
            for object in &objects {
                wake.wake(object);
            }
            futures::future::ready(())
        })
        .await;
    // Watches end only with the process; the Controller's shutdown ends this.
    futures::future::pending::<()>().await;
}

/// The Controller's one trigger: the queue's objects, once the first list is in the
/// store (until then the store shows nothing, and every object would look gone).
fn handed_over(
    wake: Arc<WakeQueue>,
    store: Store<DcsInstance>,
    mut instances_listed: tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<Item = ObjectRef<DcsInstance>> + Send + 'static {
    let alive = move |object: &ObjectRef<DcsInstance>| store.get(object).is_some();
    futures::stream::once(async move {
        let _ = instances_listed.wait_for(|listed| *listed).await;
    })
    .flat_map(move |()| wake.clone().stream(alive.clone()))
}

/// What the DcsInstance cache keeps of an object: everything reconcile and the
/// lifecycle read (name, namespace, uid, generation, resourceVersion,
/// deletionTimestamp, finalizers, the operator's own annotations, the spec and the
/// status, which is compared whole before it is written), and nothing else:
/// labels (the selector is applied by the API server, which sends a removal when an
/// object stops matching), other annotations (up to 256 KiB of tenant data),
/// managedFields, ownerReferences and timestamps no one reads.
pub fn slim_instance(obj: &mut DcsInstance) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    meta.creation_timestamp = None;
    meta.generate_name = None;
    meta.self_link = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key.starts_with(OWN_ANNOTATION_PREFIX));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// The operator's own annotations (and the tenant's requests to it) start so.
const OWN_ANNOTATION_PREFIX: &str = "dcs.operator.dev/";

/// Objects per page of a watch's list. A page is held twice while it is decoded
/// (the body, then the objects with everything the API server sends, managedFields
/// included, before they are slimmed): at kube's default of 500 that was several
/// MiB at the start-up peak. Smaller pages cost more requests only while listing.
const LIST_PAGE_SIZE: u32 = 100;

fn watch_config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE_SIZE)
}

type Applied<K> = Pin<Box<dyn futures::Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The connection Secrets, label-selected: only those a DcsInstance controls are
/// cached, and of those a digest of their data, never the data (anyone may label a
/// Secret managed-by=dcs-operator).
fn watch_owned_secrets(api: Api<Secret>) -> (Arc<OwnedSecrets>, Applied<Secret>) {
    let cache = Arc::new(OwnedSecrets::default());
    let config = watch_config().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let stream = watcher(api, config)
        .default_backoff()
        .map(feeding(&cache, OwnedSecret::boxed))
        .applied_objects()
        .boxed();
    (cache, without_errors(stream))
}

/// Applies each watch event to `cache` (keeping what `slim` gives of an object) as
/// it passes on.
fn feeding<K: Resource, V>(
    cache: &Arc<WatchCache<V>>,
    slim: fn(&K) -> Option<V>,
) -> impl FnMut(WatchEvent<K>) -> WatchEvent<K> + use<K, V> {
    let cache = cache.clone();
    move |event| {
        if let Ok(event) = &event {
            cache.apply(event, slim);
        }
        event
    }
}

type WatchEvent<K> = Result<watcher::Event<K>, watcher::Error>;

/// Metadata only: notices changes of credentials and password Secrets without
/// holding every Secret in memory (a resourceVersion each). Our own connection
/// Secrets are left out at the server: each of their writes would otherwise come
/// back here and be matched against every DcsInstance.
fn watch_secret_metadata(
    api: Api<PartialObjectMeta<Secret>>,
) -> (Arc<SecretVersions>, Applied<PartialObjectMeta<Secret>>) {
    let cache = Arc::new(SecretVersions::default());
    let config = watch_config().labels(&format!("{MANAGED_BY_LABEL}!={MANAGED_BY}"));
    let stream = watcher(api, config)
        .default_backoff()
        .map(feeding(&cache, SecretVersion::of))
        .touched_objects()
        .boxed();
    (cache, without_errors(stream))
}

/// The DcsInstances (label-selected with `--selector`).
fn watch_instances(
    api: Api<DcsInstance>,
    selector: Option<&str>,
) -> (
    Store<DcsInstance>,
    Applied<DcsInstance>,
    tokio::sync::watch::Receiver<bool>,
) {
    let mut config = watch_config();
    if let Some(selector) = selector {
        config = config.labels(selector);
    }
    let (reader, writer) = reflector::store();
    let mut relist = RelistInPlace::default();
    let held = reader.clone();
    // Told from the stream, once the store has applied the first list's end: the
    // store's own wait_until_ready wakes only one waiter, and the Controller is one.
    let (listed_tx, listed_rx) = tokio::sync::watch::channel(false);
    let stream = watcher(api, config)
        .default_backoff()
        .modify(slim_instance)
        .flat_map(move |event| {
            let events = match event {
                Ok(event) => relist
                    .events(event, || held.state())
                    .into_iter()
                    .map(Ok)
                    .collect(),
                Err(error) => vec![Err(error)],
            };
            futures::stream::iter(events)
        })
        .reflect(writer)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                listed_tx.send_replace(true);
            }
        })
        .applied_objects()
        .boxed();
    (reader, without_errors(stream), listed_rx)
}

/// Ready once the first list of DcsInstances is in the store.
fn listed(mut listed: tokio::sync::watch::Receiver<bool>) -> Ready {
    Box::pin(async move { listed.wait_for(|listed| *listed).await.is_ok() })
}

/// A watch's errors stop here: each watch backs off by itself
/// (`default_backoff`), and the Controller would otherwise pause every trigger,
/// wake-ups included, with one backoff shared by all watches that resets only
/// after two quiet minutes (a relist took 8 s that way).
fn without_errors<K: Send + 'static>(stream: Applied<K>) -> Applied<K> {
    stream
        .filter(|item| {
            if let Err(error) = item {
                debug!("watch: {error}");
            }
            futures::future::ready(item.is_ok())
        })
        .boxed()
}

/// Applies every relist after the first in place. A reflector store buffers a whole
/// second copy of every object while it relists and swaps it in at the end: at
/// 10 000 DcsInstances that doubled the largest cache at the worst moment. Instead,
/// each relisted object replaces its old copy as it arrives, and at the end of the
/// relist the objects it did not deliver are removed. The first list goes through
/// as it is (the store is empty then, and its end marks the store ready).
#[derive(Debug, Default)]
pub struct RelistInPlace {
    listed_once: bool,
    /// What the relist in progress has delivered, as a hash of (namespace, name)
    /// under this process's random keys: 8 bytes an object instead of two strings
    /// (1.3 MB at 10 000). Two objects sharing a hash (odds of about 1 in 10^11 at
    /// 10 000) would keep one deleted object until the next relist.
    delivered: Option<HashSet<u64>>,
    keys: std::hash::RandomState,
}

impl RelistInPlace {
    /// What the store applies for `event`; `held` gives what it holds now (asked
    /// only at the end of a relist).
    pub fn events(
        &mut self,
        event: watcher::Event<DcsInstance>,
        held: impl FnOnce() -> Vec<Arc<DcsInstance>>,
    ) -> Vec<watcher::Event<DcsInstance>> {
        use watcher::Event;
        if !self.listed_once {
            self.listed_once = matches!(event, Event::InitDone);
            return vec![event];
        }
        let keys = self.keys.clone();
        let key = move |obj: &DcsInstance| {
            keys.hash_one((
                obj.metadata.namespace.as_deref(),
                obj.metadata.name.as_deref(),
            ))
        };
        match event {
            Event::Init => {
                self.delivered = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(obj) => {
                self.delivered.get_or_insert_default().insert(key(&obj));
                vec![Event::Apply(obj)]
            }
            Event::InitDone => {
                let delivered = self.delivered.take().unwrap_or_default();
                held()
                    .into_iter()
                    .filter(|obj| !delivered.contains(&key(obj)))
                    .map(|obj| Event::Delete(obj.as_ref().clone()))
                    .collect()
            }
            other => vec![other],
        }
    }
}

type Ready = Pin<Box<dyn Future<Output = bool> + Send>>;

fn cache_listed<V: Send + Sync + 'static>(cache: Arc<WatchCache<V>>) -> Ready {
    Box::pin(async move {
        cache.listed().await;
        true
    })
}

/// `/readyz` turns ready once every watch of every scope has listed once.
fn report_readiness(shared: &Shared, watches: [Ready; 3]) {
    shared.readiness.expect(watches.len());
    for ready in watches {
        let readiness = shared.readiness.clone();
        tokio::spawn(async move {
            if ready.await {
                readiness.synced();
            }
        });
    }
}

/// Fires when this replica becomes the leader, or regains the gate after a lapse:
/// every object is reconciled then (a standby left them waiting).
fn leadership_gained(shared: &Shared) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(shared.leader.subscribe(), |mut leading| async move {
        loop {
            leading.changed().await.ok()?;
            if *leading.borrow_and_update() {
                return Some(((), leading));
            }
        }
    })
}

/// The DcsInstances in the Secret's namespace that name it (credentials or password).
fn referencing(
    store: &Store<DcsInstance>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<DcsInstance>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    store
        .state()
        .into_iter()
        .filter(|obj| obj.namespace() == namespace && secrets::references(&obj.spec, &name))
        .map(|obj| named(obj.as_ref()))
        .collect()
}

/// An object's reference by namespace and name (no uid or resourceVersion).
pub(super) fn named<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectRef<K> {
    let reference = ObjectRef::new(&obj.name_any());
    match obj.meta().namespace.as_deref() {
        Some(namespace) => reference.within(namespace),
        None => reference,
    }
}

/// The DcsInstances a connection Secret names as its owners (as kube's `owns`
/// trigger finds them: every owner reference of the kind and API version).
fn owners(secret: Result<Secret, watcher::Error>) -> Vec<ObjectRef<DcsInstance>> {
    let Ok(secret) = secret else {
        return Vec::new();
    };
    let Some(namespace) = secret.metadata.namespace.as_deref() else {
        return Vec::new();
    };
    let api_version = DcsInstance::api_version(&());
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|owner| owner.kind == DcsInstance::kind(&()) && owner.api_version == api_version)
        .map(|owner| ObjectRef::new(&owner.name).within(namespace))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owner(api_version: &str, kind: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: "8f0c2a4e-0000-4000-8000-000000000001".into(),
            controller: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn a_secret_wakes_the_dcs_instances_it_names_as_owners_by_name_only() {
        let mut secret = Secret::default();
        secret.metadata.name = Some("cache-connection".into());
        secret.metadata.namespace = Some("tenant-a".into());
        secret.metadata.owner_references = Some(vec![
            owner("dcs.operator.dev/v1alpha1", "DcsInstance", "cache"),
            owner("dcs.operator.dev/v1beta9", "DcsInstance", "other-version"),
            owner("v1", "ConfigMap", "cache"),
            owner("apps/v1", "Deployment", "app"),
        ]);
        let woken = owners(Ok(secret.clone()));
        assert_eq!(woken, vec![ObjectRef::new("cache").within("tenant-a")]);
        // By namespace and name: nothing else is carried into the queue.
        assert!(woken[0].extra.uid.is_none() && woken[0].extra.resource_version.is_none());

        secret.metadata.namespace = None;
        assert!(owners(Ok(secret)).is_empty());
    }

    #[test]
    fn an_instance_is_named_without_uid_or_version() {
        let mut obj = DcsInstance::new("cache", Default::default());
        obj.metadata.namespace = Some("tenant-a".into());
        obj.metadata.uid = Some("8f0c2a4e-0000-4000-8000-000000000002".into());
        obj.metadata.resource_version = Some("42".into());
        let reference = named(&obj);
        assert_eq!(reference, ObjectRef::new("cache").within("tenant-a"));
        assert!(reference.extra.uid.is_none() && reference.extra.resource_version.is_none());
    }
}
