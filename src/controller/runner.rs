//! Running the controller: one per served scope (every namespace, or each listed
//! one), each with three watches (DcsInstances, the owned connection Secrets as
//! digests, the metadata of every other Secret), readiness, and the wake-ups that
//! reach reconcile (leadership regained, batch answers that changed).

use std::future::Future;
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

use super::{Context, Shared, error_policy, reconcile, secrets};
use crate::connection_secret::{MANAGED_BY, MANAGED_BY_LABEL, slim_for_cache};
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
    let (owned_reader, owned) = watch_owned_secrets(scoped(&client, &scope));
    let (metadata_reader, referenced) = watch_secret_metadata(scoped(&client, &scope));
    let (store, instances) = watch_instances(scoped(&client, &scope), shared.selector.as_deref());
    shared.instances.add_store(store.clone());
    report_readiness(
        &shared,
        [
            ready_when_listed(store.clone()),
            ready_when_listed(owned_reader.clone()),
            ready_when_listed(metadata_reader.clone()),
        ],
    );
    let ctx = Arc::new(Context {
        shared: shared.clone(),
        owned_secrets: Some(owned_reader),
        secret_metadata: Some(metadata_reader),
    });
    let config = controller::Config::default().concurrency(shared.concurrency);
    Controller::for_stream(instances, store.clone())
        .with_config(config)
        .reconcile_all_on(leadership_gained(&shared))
        .reconcile_on(shared.reconcile_requests(scope))
        .owns_stream(owned)
        .watches_stream(referenced, move |secret| referencing(&store, &secret))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!("controller: {error}");
            }
        })
        .await;
}

/// Drops what the operator never reads from cached objects: managedFields (often the
/// largest part of an object), and the last-applied annotation (a second copy of the
/// object, for a Secret its data).
pub fn strip_metadata(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

type Applied<K> = Pin<Box<dyn futures::Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The connection Secrets, label-selected: only those a DcsInstance controls are
/// cached, and of those a digest of their data, never the data (anyone may label a
/// Secret managed-by=dcs-operator).
fn watch_owned_secrets(api: Api<Secret>) -> (Store<Secret>, Applied<Secret>) {
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let stream = watcher(api, config)
        .default_backoff()
        .filter_map(|event| futures::future::ready(slim_owned_event(event)))
        .reflect(writer)
        .applied_objects()
        .boxed();
    (reader, stream)
}

/// Metadata only: notices changes of credentials and password Secrets without
/// holding every Secret's data in memory. Our own connection Secrets are left out
/// at the server: each of their writes would otherwise come back here and be
/// matched against every DcsInstance.
fn watch_secret_metadata(
    api: Api<PartialObjectMeta<Secret>>,
) -> (
    Store<PartialObjectMeta<Secret>>,
    Applied<PartialObjectMeta<Secret>>,
) {
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}!={MANAGED_BY}"));
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|meta: &mut PartialObjectMeta<Secret>| {
            // Name and resourceVersion are all the credentials cache needs.
            strip_metadata(&mut meta.metadata);
            meta.metadata.annotations = None;
            meta.metadata.labels = None;
            meta.metadata.owner_references = None;
        })
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, stream)
}

/// The DcsInstances (label-selected with `--selector`).
fn watch_instances(
    api: Api<DcsInstance>,
    selector: Option<&str>,
) -> (Store<DcsInstance>, Applied<DcsInstance>) {
    let mut config = watcher::Config::default();
    if let Some(selector) = selector {
        config = config.labels(selector);
    }
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|obj: &mut DcsInstance| strip_metadata(obj.meta_mut()))
        .reflect(writer)
        .applied_objects()
        .boxed();
    (reader, stream)
}

/// The owned-Secret watch's events as the cache should see them: Secrets no
/// DcsInstance controls are dropped (or removed, if they were cached before), and
/// the rest slimmed to a digest of their data.
pub(super) fn slim_owned_event(
    event: Result<watcher::Event<Secret>, watcher::Error>,
) -> Option<Result<watcher::Event<Secret>, watcher::Error>> {
    use watcher::Event;
    Some(Ok(match event {
        Err(error) => return Some(Err(error)),
        Ok(Event::Apply(secret)) => match slim_for_cache(&secret) {
            Some(slim) => Event::Apply(slim),
            None => Event::Delete(secret),
        },
        Ok(Event::InitApply(secret)) => Event::InitApply(slim_for_cache(&secret)?),
        Ok(Event::Delete(secret)) => Event::Delete(secret),
        Ok(other) => other,
    }))
}

type Ready = Pin<Box<dyn Future<Output = bool> + Send>>;

fn ready_when_listed<K>(store: Store<K>) -> Ready
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
{
    Box::pin(async move { store.wait_until_ready().await.is_ok() })
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
        .map(|obj| ObjectRef::from_obj(obj.as_ref()))
        .collect()
}
