//! Controller tests against a mocked Kubernetes API server (the kube-rs controller-rs
//! ApiServerVerifier pattern: each expected request is asserted in order) and the DCS
//! simulator over real loopback HTTP. Counts, never wall-clock times.

use std::sync::Arc;
use std::time::Duration;

use dcs_operator::clock::SystemClock;
use dcs_operator::controller::resolve::SpecDefaults;
use dcs_operator::controller::secret_cache::{OwnedSecrets, SecretVersions};
use dcs_operator::controller::secrets::CredentialsResolver;
use dcs_operator::controller::{Context, Shared, SharedBuilder, reconcile};
use dcs_operator::crd::{DcsInstance, DcsInstanceSpec, DcsInstanceStatus, LocalSecretReference};
use dcs_operator::dcs::sim::{SimConfig, SimHandle, SimInstance, Simulator};
use dcs_operator::dcs::{ClientConfig, DcsClient};
use http::{Request, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::client::Body;
use kube::core::PartialObjectMetaExt;
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};

pub(crate) const PROJECT: &str = "0123456789abcdef0123456789abcdef";
pub(crate) const INSTANCE: &str = "68d5745e-6af2-40e4-945d-fe449be00148";
pub(crate) const NS: &str = "default";
pub(crate) const UID: &str = "11111111-2222-3333-4444-555555555555";

pub(crate) type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub(crate) async fn simulator() -> SimHandle {
    let mut fields = serde_json::Map::new();
    for (key, value) in [
        ("instance_id", json!(INSTANCE)),
        ("name", json!("dcs-a11e")),
        ("engine", json!("Redis")),
        ("engine_version", json!("6.0")),
        ("capacity", json!(2)),
        ("ip", json!("192.168.3.100")),
        ("port", json!(6379)),
        ("status", json!("RUNNING")),
        ("max_memory", json!(1536)),
        ("used_memory", json!(56)),
    ] {
        fields.insert(key.into(), value);
    }
    let config = SimConfig {
        instances: vec![SimInstance::new(PROJECT, fields, Vec::new())],
        ..SimConfig::with_default_keys()
    };
    Simulator::start(
        config,
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

pub(crate) fn dcs_instance(sim: &SimHandle, status: Option<DcsInstanceStatus>) -> DcsInstance {
    let mut obj = new_dcs_instance("cache", UID, INSTANCE, &sim.base_url());
    obj.meta_mut().resource_version = Some("100".into());
    obj.status = status;
    obj
}

/// A DcsInstance in `default` reading `instance_id` from `endpoint` with the
/// Secret `creds`, as the watch would deliver it after creation.
pub(crate) fn new_dcs_instance(
    name: &str,
    uid: &str,
    instance_id: &str,
    endpoint: &str,
) -> DcsInstance {
    let mut obj = DcsInstance::new(
        name,
        DcsInstanceSpec {
            instance_id: Some(instance_id.into()),
            project_id: Some(PROJECT.into()),
            endpoint: Some(endpoint.into()),
            credentials_secret_ref: Some(LocalSecretReference {
                name: "creds".into(),
            }),
            ..DcsInstanceSpec::default()
        },
    );
    obj.meta_mut().namespace = Some(NS.into());
    obj.meta_mut().uid = Some(uid.into());
    obj.meta_mut().generation = Some(1);
    obj
}

pub(crate) fn credentials_secret() -> Secret {
    let mut data = std::collections::BTreeMap::new();
    data.insert(
        "accessKey".to_string(),
        ByteString(SimConfig::DEFAULT_ACCESS_KEY.into()),
    );
    data.insert(
        "secretKey".to_string(),
        ByteString(SimConfig::DEFAULT_SECRET_KEY.into()),
    );
    Secret {
        metadata: ObjectMeta {
            name: Some("creds".into()),
            namespace: Some(NS.into()),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    }
}

pub(crate) struct Harness {
    pub(crate) ctx: Arc<Context>,
    pub(crate) handle: ApiServerHandle,
    pub(crate) sim: SimHandle,
    client: Client,
    clock: dcs_operator::clock::SharedClock,
}

pub(crate) async fn harness() -> Harness {
    harness_with_clock(Arc::new(SystemClock)).await
}

pub(crate) async fn harness_with_clock(clock: dcs_operator::clock::SharedClock) -> Harness {
    harness_with(clock, |builder| builder).await
}

/// A harness whose Shared is adjusted (leader gate, recorder) before use.
pub(crate) async fn harness_with(
    clock: dcs_operator::clock::SharedClock,
    configure: impl FnOnce(SharedBuilder) -> SharedBuilder,
) -> Harness {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let sim = simulator().await;
    let mut h = Harness {
        ctx: Arc::new(Context::new(Arc::new(
            shared_builder(&client, &clock).build(),
        ))),
        handle,
        sim,
        client,
        clock,
    };
    h.ctx = h.fresh_context(configure);
    h
}

/// A harness whose writes go through an elected leader gate (closed until renewed).
pub(crate) async fn harness_with_elected_leader(
    clock: &dcs_operator::clock::ManualClock,
) -> (Harness, Arc<dcs_operator::leader::LeaderGate>) {
    let gate = Arc::new(dcs_operator::leader::LeaderGate::elected(Arc::new(
        clock.clone(),
    )));
    let in_harness = gate.clone();
    let h = harness_with(Arc::new(clock.clone()), move |builder| {
        builder.leader(in_harness)
    })
    .await;
    (h, gate)
}

fn shared_builder(client: &Client, clock: &dcs_operator::clock::SharedClock) -> SharedBuilder {
    Shared::builder(
        client.clone(),
        DcsClient::new(ClientConfig::default(), clock.clone()).unwrap(),
        clock.clone(),
        SpecDefaults {
            poll_interval: Duration::from_secs(60),
            ..SpecDefaults::default()
        },
        CredentialsResolver::new(None),
    )
}

impl Harness {
    /// A new Shared on the same mocked API server: empty stores and caches (as after
    /// a restart, or a poll interval later), configured by `configure`.
    pub(crate) fn fresh_context(
        &self,
        configure: impl FnOnce(SharedBuilder) -> SharedBuilder,
    ) -> Arc<Context> {
        let shared = configure(shared_builder(&self.client, &self.clock)).build();
        Arc::new(Context::new(Arc::new(shared)))
    }

    /// This harness's Shared with warm watch caches: the owned-Secret cache holding
    /// `secret` as the watch delivers it (a digest of its data), and the metadata
    /// cache holding the credentials Secret and `others`.
    pub(crate) fn with_warm_caches(&self, secret: &Secret, others: &[&Secret]) -> Arc<Context> {
        let owned = Arc::new(OwnedSecrets::default());
        owned.apply_event(&watcher::Event::Init);
        owned.apply_event(&watcher::Event::InitApply(secret.clone()));
        owned.apply_event(&watcher::Event::InitDone);
        assert_eq!(
            owned.len(),
            1,
            "a connection Secret this DcsInstance controls"
        );
        let versions = Arc::new(SecretVersions::default());
        versions.apply_event(&watcher::Event::Init);
        for meta in std::iter::once(&credentials_secret())
            .chain(others.iter().copied())
            .map(|s| s.metadata.clone())
        {
            versions.apply_event(&watcher::Event::InitApply(
                meta.into_response_partial::<Secret>(),
            ));
        }
        versions.apply_event(&watcher::Event::InitDone);
        Arc::new(Context {
            shared: self.ctx.shared.clone(),
            owned_secrets: Some(owned),
            secret_metadata: Some(versions),
            wake: None,
        })
    }

    /// Reconciles `obj` in the background; the mocked API server answers with
    /// [`Harness::server`], then the task is awaited.
    pub(crate) fn start(
        &self,
        obj: DcsInstance,
    ) -> tokio::task::JoinHandle<dcs_operator::controller::Result<kube::runtime::controller::Action>>
    {
        let ctx = self.ctx.clone();
        tokio::spawn(async move { reconcile(Arc::new(obj), ctx).await })
    }

    /// The chainable verifier of the requests one reconcile makes.
    pub(crate) fn server(&mut self) -> ApiServerVerifier<'_> {
        ApiServerVerifier {
            handle: &mut self.handle,
            created: None,
            applied: None,
        }
    }
}

/// The mocked API server, expecting requests in order and answering them
/// (the kube-rs controller-rs ApiServerVerifier pattern), chainable:
/// `h.server().credentials_read().await.secret_absent().await.secret_created().await.status_applied().await`.
pub(crate) struct ApiServerVerifier<'a> {
    handle: &'a mut ApiServerHandle,
    /// The Secret the operator created, as posted.
    pub(crate) created: Option<Value>,
    /// The last status the operator applied (the whole apply body).
    pub(crate) applied: Option<Value>,
}

impl ApiServerVerifier<'_> {
    /// The credentials Secret is read; it holds the good keys.
    pub(crate) async fn credentials_read(self) -> Self {
        self.credentials_read_as(&credentials_secret()).await
    }

    /// The credentials Secret is read; it holds `secret`.
    pub(crate) async fn credentials_read_as(self, secret: &Secret) -> Self {
        let (_, send) = expect(self.handle, "GET", &format!("{SECRETS}/creds")).await;
        respond(send, 200, serde_json::to_value(secret).unwrap());
        self
    }

    /// The credentials Secret is read; there is none.
    pub(crate) async fn credentials_absent(self) -> Self {
        let (_, send) = expect(self.handle, "GET", &format!("{SECRETS}/creds")).await;
        respond(send, 404, not_found("creds"));
        self
    }

    /// The password Secret `pw` is read; it is `secret`.
    pub(crate) async fn password_read(self, secret: &Secret) -> Self {
        let (_, send) = expect(self.handle, "GET", &format!("{SECRETS}/pw")).await;
        respond(send, 200, serde_json::to_value(secret).unwrap());
        self
    }

    /// The connection Secret is read; there is none.
    pub(crate) async fn secret_absent(self) -> Self {
        let (_, send) = expect(self.handle, "GET", &format!("{SECRETS}/cache-dcs")).await;
        respond(send, 404, not_found("cache-dcs"));
        self
    }

    /// The connection Secret is read; it is `secret`.
    pub(crate) async fn secret_read(self, secret: &Secret) -> Self {
        let (_, send) = expect(self.handle, "GET", &format!("{SECRETS}/cache-dcs")).await;
        respond(send, 200, serde_json::to_value(secret).unwrap());
        self
    }

    /// The connection Secret is created by POST; kept in `created`.
    pub(crate) async fn secret_created(mut self) -> Self {
        let (request, send) = expect(self.handle, "POST", SECRETS).await;
        let created = body_json(request).await;
        respond(send, 201, created.clone());
        self.created = Some(created);
        self
    }

    /// The status is applied at `STATUS` (server-side apply, forced, our field
    /// manager); kept in `applied`.
    pub(crate) async fn status_applied(self) -> Self {
        self.status_applied_at(STATUS).await
    }

    pub(crate) async fn status_applied_at(mut self, path: &str) -> Self {
        let (request, send) = expect(self.handle, "PATCH", path).await;
        let query = request.uri().query().unwrap_or_default().to_string();
        assert!(query.contains("fieldManager=dcs-operator"), "{query}");
        assert!(query.contains("force=true"), "{query}");
        let applied = body_json(request).await;
        let mut echoed = applied.clone();
        echoed["metadata"] =
            json!({"name": path.trim_end_matches("/status").rsplit('/').next(), "namespace": NS});
        echoed["spec"] = json!({"instanceId": INSTANCE});
        respond(send, 200, echoed);
        self.applied = Some(applied);
        self
    }

    /// The applied status, typed.
    pub(crate) fn status(&self) -> DcsInstanceStatus {
        let applied = self.applied.as_ref().expect("a status was applied");
        serde_json::from_value(applied["status"].clone()).unwrap()
    }

    /// The created Secret, typed.
    pub(crate) fn secret(&self) -> Secret {
        serde_json::from_value(self.created.clone().expect("a Secret was created")).unwrap()
    }
}

pub(crate) fn respond(
    send: tower_test::mock::SendResponse<Response<Body>>,
    status: u16,
    body: Value,
) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

pub(crate) fn not_found(name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
           "message": format!("secrets \"{name}\" not found"), "code": 404})
}

pub(crate) async fn expect(
    handle: &mut ApiServerHandle,
    method: &str,
    path: &str,
) -> (
    Request<Body>,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
        .expect("the client hung up");
    assert_eq!(request.method().as_str(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    (request, send)
}

pub(crate) async fn body_json(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// One condition of an applied status.
pub(crate) fn condition_in(applied: &Value, type_: &str) -> Value {
    applied["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
        .clone()
}

/// Asserts that no further request reaches the API server.
pub(crate) async fn expect_nothing_more(handle: &mut ApiServerHandle) {
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
    {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

pub(crate) const SECRETS: &str = "/api/v1/namespaces/default/secrets";
pub(crate) const STATUS: &str =
    "/apis/dcs.operator.dev/v1alpha1/namespaces/default/dcsinstances/cache/status";

/// The first reconcile: credentials read, one DCS call, Secret created by POST, status applied.
/// Returns the applied status and the created Secret.
pub(crate) async fn first_reconcile(h: &mut Harness) -> (DcsInstanceStatus, Secret) {
    let task = h.start(dcs_instance(&h.sim, None));
    let done = h
        .server()
        .credentials_read()
        .await
        .secret_absent()
        .await
        .secret_created()
        .await
        .status_applied()
        .await;
    let result = (done.status(), done.secret());
    task.await.unwrap().unwrap();
    result
}

#[tokio::test]
async fn first_reconcile_creates_the_secret_and_applies_status() {
    let mut h = harness().await;
    let (status, secret) = first_reconcile(&mut h).await;
    assert_eq!(status.status.as_deref(), Some("RUNNING"));
    assert_eq!(status.ip.as_deref(), Some("192.168.3.100"));
    assert_eq!(status.port, Some(6379));
    assert_eq!(status.capacity.as_deref(), Some("2Gi"));
    assert_eq!(status.connection_secret_name.as_deref(), Some("cache-dcs"));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Running")
    );
    assert_eq!(secret.type_.as_deref(), Some("servicebinding.io/redis"));
    let owner: &OwnerReference = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.uid.as_str(), owner.controller), (UID, Some(true)));
    assert_eq!(secret.data.as_ref().unwrap()["host"].0, b"192.168.3.100");
    assert_eq!(h.sim.state().counters().requests_for("show_v1"), 1);
    expect_nothing_more(&mut h.handle).await;
}

#[tokio::test]
async fn unchanged_means_no_write_and_own_writes_cost_no_dcs_call() {
    let mut h = harness().await;
    let (status, secret) = first_reconcile(&mut h).await;
    // The watches now hold what we wrote: the owned Secret and the credentials'
    // metadata; the credentials cache is warm from the first reconcile (same
    // resourceVersion 7).
    let mut stored_secret = secret.clone();
    stored_secret.metadata.resource_version = Some("200".into());
    let ctx = h.with_warm_caches(&stored_secret, &[]);
    // Reconciles triggered by our own status and Secret writes: ten of them.
    for _ in 0..10 {
        let obj = Arc::new(dcs_instance(&h.sim, Some(status.clone())));
        reconcile(obj, ctx.clone()).await.unwrap();
    }
    expect_nothing_more(&mut h.handle).await;
    assert_eq!(
        h.sim.state().counters().requests_for("show_v1"),
        1,
        "no DCS call after the first"
    );
}

#[tokio::test]
async fn without_caches_an_unchanged_secret_is_read_but_never_written() {
    let mut h = harness().await;
    let (status, secret) = first_reconcile(&mut h).await;
    let task = h.start(dcs_instance(&h.sim, Some(status)));
    h.server()
        .credentials_read()
        .await
        .secret_read(&secret)
        .await;
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut h.handle).await;
}

#[tokio::test]
async fn an_ip_change_patches_the_secret_and_status_once() {
    let mut h = harness().await;
    let (status, secret) = first_reconcile(&mut h).await;
    let mut set = serde_json::Map::new();
    set.insert("ip".into(), json!("192.168.3.200"));
    assert!(h.sim.state().update_instance(PROJECT, INSTANCE, set));
    // A fresh store means the next reconcile observes again (as after a poll interval).
    h.ctx = h.fresh_context(|builder| builder);
    let task = h.start(dcs_instance(&h.sim, Some(status)));
    let mut existing = secret.clone();
    existing.metadata.uid = Some("secret-uid".into());
    existing.metadata.resource_version = Some("200".into());
    let server = h
        .server()
        .credentials_read()
        .await
        .secret_read(&existing)
        .await;
    let (request, send) = expect(server.handle, "PATCH", &format!("{SECRETS}/cache-dcs")).await;
    let patch = body_json(request).await;
    // Optimistic concurrency: the patch names the uid and resourceVersion it was based on.
    assert_eq!(patch["metadata"]["uid"], "secret-uid");
    assert_eq!(patch["metadata"]["resourceVersion"], "200");
    assert_eq!(
        patch["data"]["host"],
        json!(ByteString(b"192.168.3.200".to_vec()))
    );
    respond(send, 200, serde_json::to_value(&existing).unwrap());
    let server = server.status_applied().await;
    assert_eq!(server.status().ip.as_deref(), Some("192.168.3.200"));

    task.await.unwrap().unwrap();
    expect_nothing_more(&mut h.handle).await;
}

#[tokio::test]
async fn a_foreign_secret_is_never_touched() {
    let mut h = harness().await;
    let task = h.start(dcs_instance(&h.sim, None));
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some("cache-dcs".into()),
            namespace: Some(NS.into()),
            resource_version: Some("5".into()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    // No POST, no PATCH of the Secret: straight to status.
    let server = h
        .server()
        .credentials_read()
        .await
        .secret_read(&foreign)
        .await
        .status_applied()
        .await;
    let applied = server.applied.clone().unwrap();
    let ready = condition_in(&applied, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "SecretConflict");
    assert!(applied["status"].get("connectionSecretName").is_none());

    task.await.unwrap().unwrap();
    expect_nothing_more(&mut h.handle).await;
}

#[tokio::test]
async fn missing_credentials_secret_says_so_and_calls_no_dcs() {
    let mut h = harness().await;
    let task = h.start(dcs_instance(&h.sim, None));
    let server = h.server().credentials_absent().await.status_applied().await;
    let applied = server.applied.clone().unwrap();
    let conditions = applied["status"]["conditions"].as_array().unwrap();
    for type_ in ["Ready", "Synced"] {
        let c = conditions.iter().find(|c| c["type"] == type_).unwrap();
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "CredentialsNotFound");
        assert!(c["message"].as_str().unwrap().contains("creds"));
    }

    task.await.unwrap().unwrap();
    expect_nothing_more(&mut h.handle).await;
    assert_eq!(h.sim.state().counters().requests_for("show_v1"), 0);
}

#[tokio::test]
async fn wrong_secret_key_is_tried_once_per_five_minutes_across_instances() {
    let mut h = harness().await;
    let mut wrong = credentials_secret();
    wrong.data.as_mut().unwrap().insert(
        "secretKey".into(),
        ByteString(b"not-the-secret-key".to_vec()),
    );
    for round in 0..5 {
        let mut obj = dcs_instance(&h.sim, None);
        // Different DcsInstances (and namespaces' worth of objects) share one access key.
        obj.meta_mut().name = Some(format!("cache{round}"));
        obj.meta_mut().uid = Some(format!("uid-{round}"));
        let task = h.start(obj);
        let status_path = format!(
            "/apis/dcs.operator.dev/v1alpha1/namespaces/default/dcsinstances/cache{round}/status"
        );
        let server = h
            .server()
            .credentials_read_as(&wrong)
            .await
            .status_applied_at(&status_path)
            .await;
        let synced = condition_in(server.applied.as_ref().unwrap(), "Synced");
        assert_eq!(synced["reason"], "Unauthorized");

        task.await.unwrap().unwrap();
    }
    let counters = h.sim.state().counters();
    assert_eq!(
        counters.requests_for("show_v1"),
        1,
        "one signed attempt for five DcsInstances"
    );
    assert_eq!(counters.lockouts, 0);
}

#[tokio::test]
async fn poll_ticks_follow_the_injected_clock() {
    let clock = dcs_operator::clock::ManualClock::new(chrono::Utc::now());
    let mut h = harness_with_clock(Arc::new(clock.clone())).await;
    let (status, secret) = first_reconcile(&mut h).await;
    let ctx = h.with_warm_caches(&secret, &[]);
    let calls = || h.sim.state().counters().requests_for("show_v1");
    let tick = |advance: i64| {
        clock.advance(chrono::TimeDelta::seconds(advance));
        reconcile(
            Arc::new(dcs_instance(&h.sim, Some(status.clone()))),
            ctx.clone(),
        )
    };
    // Within the 60 s poll interval (plus at most 6 s of jitter): no DCS call.
    for step in [10, 10, 9] {
        tick(step).await.unwrap();
    }
    assert_eq!(calls(), 1);
    tick(30).await.unwrap(); // 59 s after the first observation
    assert_eq!(calls(), 1);
    tick(8).await.unwrap(); // 67 s: due
    assert_eq!(calls(), 2);
    // Nothing changed in DCS: the due poll wrote nothing to Kubernetes.
    expect_nothing_more(&mut h.handle).await;
    // Five more ticks: one DCS call each, still no writes.
    for _ in 0..5 {
        tick(67).await.unwrap();
    }
    assert_eq!(calls(), 7);
    expect_nothing_more(&mut h.handle).await;
}

#[tokio::test]
async fn password_goes_into_the_secret_and_is_read_only_when_it_changed() {
    let mut h = harness().await;
    let mut obj = dcs_instance(&h.sim, None);
    obj.spec.password_secret_ref = Some(Box::new(dcs_operator::crd::SecretKeyReference {
        name: "pw".into(),
        key: "password".into(),
    }));
    let password_secret = Secret {
        metadata: ObjectMeta {
            name: Some("pw".into()),
            namespace: Some(NS.into()),
            resource_version: Some("9".into()),
            ..ObjectMeta::default()
        },
        data: Some(
            [("password".to_string(), ByteString(b"s3cr3t/pw".to_vec()))]
                .into_iter()
                .collect(),
        ),
        ..Secret::default()
    };
    let task = h.start(obj.clone());
    let server = h
        .server()
        .credentials_read()
        .await
        .password_read(&password_secret)
        .await
        .secret_absent()
        .await
        .secret_created()
        .await
        .status_applied()
        .await;
    task.await.unwrap().unwrap();
    let (secret, applied) = (server.secret(), server.applied.clone().unwrap());
    let data = secret.data.clone().unwrap();
    assert_eq!(data["password"].0, b"s3cr3t/pw");
    assert_eq!(data["uri"].0, b"redis://:s3cr3t%2Fpw@192.168.3.100:6379");
    assert!(
        !applied.to_string().contains("s3cr3t"),
        "no password in status"
    );

    // The watches hold both Secrets at the versions read: nothing is read again.
    let cached = h.with_warm_caches(&secret, &[&password_secret]);
    obj.status = serde_json::from_value(applied["status"].clone()).unwrap();
    for _ in 0..3 {
        reconcile(Arc::new(obj.clone()), cached.clone())
            .await
            .unwrap();
    }
    expect_nothing_more(&mut h.handle).await;
}

#[tokio::test]
async fn a_lapsed_leader_requeues_its_work_and_a_standby_waits_for_leadership() {
    use dcs_operator::clock::{Clock, ManualClock};
    use dcs_operator::leader::LEASE_DURATION;
    use kube::runtime::controller::Action;
    let clock = ManualClock::new(chrono::Utc::now());
    let (mut h, gate) = harness_with_elected_leader(&clock).await;
    let obj = Arc::new(dcs_instance(&h.sim, None));
    // A standby: nothing is read or written, and nothing is requeued (becoming the
    // leader reconciles every object).
    let action = reconcile(obj.clone(), h.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    // The leader whose renewal is overdue: the work comes back soon by itself.
    gate.renewed(clock.now(), LEASE_DURATION);
    clock.advance(chrono::TimeDelta::seconds(30));
    assert!(!gate.may_write() && gate.is_leading());
    let action = reconcile(obj, h.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(2)));
    expect_nothing_more(&mut h.handle).await;
    assert_eq!(h.sim.state().counters().requests_for("show_v1"), 0);
}
