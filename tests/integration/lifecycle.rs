//! The managed lifecycle (issue #12) end to end: reconcile against a stateful fake
//! API server and the DCS simulator over real loopback HTTP, with one manual clock
//! for both. Every test counts the DCS writes the simulator applied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use dcs_operator::clock::ManualClock;
use dcs_operator::controller::resolve::SpecDefaults;
use dcs_operator::controller::secrets::CredentialsResolver;
use dcs_operator::controller::shared::LifecycleOptions;
use dcs_operator::controller::{Context, Shared, SharedBuilder, reconcile};
use dcs_operator::crd::{
    Capacity, DcsInstance, DcsInstanceSpec, DeletionPolicy, DesiredInstance, Engine, InstanceTag,
    LocalSecretReference, ManagementPolicy, SecretKeyReference,
};
use dcs_operator::dcs::sim::{
    Fault, FaultKind, SimConfig, SimHandle, SimInstance, Simulator, WriteConfig,
};
use dcs_operator::dcs::{ClientConfig, DcsClient};
use dcs_operator::lifecycle::{
    CLEANUP_FINALIZER, CREATE_ATTEMPT_ANNOTATION, IN_USE_FINALIZER, INSTANCE_ID_ANNOTATION,
    OWNER_TAG_KEY, RECLAIM_FROM_ANNOTATION, RETRY_CREATE_ANNOTATION,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde_json::{Value, json};

use crate::fake_apiserver::{FakeApiServer, fake_api_server};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const NS: &str = "team-a";
const UID: &str = "4a1b2c3d-0000-4000-8000-000000000001";
const PASSWORD: &str = "Sim-Passw0rd";

struct World {
    api: FakeApiServer,
    client: kube::Client,
    sim: SimHandle,
    clock: ManualClock,
    ctx: Arc<Context>,
}

fn sim_config(writes: WriteConfig, instances: Vec<SimInstance>) -> SimConfig {
    SimConfig {
        writes,
        instances,
        ..SimConfig::with_default_keys()
    }
}

async fn world(config: SimConfig) -> World {
    let clock = ManualClock::new(Utc::now());
    let sim = Simulator::start(
        config,
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let (client, api) = fake_api_server();
    api.insert(secret("creds", credentials_data()));
    api.insert(secret(
        "pw",
        BTreeMap::from([("password".into(), PASSWORD.into())]),
    ));
    let mut w = World {
        ctx: Arc::new(Context::new(Arc::new(builder(&client, &clock).build()))),
        api,
        client,
        sim,
        clock,
    };
    w.ctx = w.context(|b| b);
    w
}

fn builder(client: &kube::Client, clock: &ManualClock) -> SharedBuilder {
    let shared_clock: dcs_operator::clock::SharedClock = Arc::new(clock.clone());
    Shared::builder(
        client.clone(),
        DcsClient::new(ClientConfig::default(), shared_clock.clone()).unwrap(),
        shared_clock,
        SpecDefaults {
            poll_interval: Duration::from_secs(60),
            ..SpecDefaults::default()
        },
        CredentialsResolver::new(None),
    )
    .lifecycle(LifecycleOptions {
        manage_namespaces: Some(Vec::new()),
        lookup_window: Duration::from_secs(600),
    })
}

fn credentials_data() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("accessKey".into(), SimConfig::DEFAULT_ACCESS_KEY.into()),
        ("secretKey".into(), SimConfig::DEFAULT_SECRET_KEY.into()),
    ])
}

fn secret(name: &str, data: BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn desired() -> DesiredInstance {
    DesiredInstance {
        name: None,
        engine: Engine::Redis,
        engine_version: Some("6.0".into()),
        capacity: Capacity::Gi2,
        spec_code: "redis.ha.xu1.large.r2.2".into(),
        availability_zones: vec!["cn-north-4a".into(), "cn-north-4b".into()],
        vpc_id: "3d5c1f1e-6a3b-4c2d-9e8f-0a1b2c3d4e5f".into(),
        subnet_id: "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d".into(),
        security_group_id: None,
        port: None,
        no_password_access: None,
        tags: vec![InstanceTag {
            key: "env".into(),
            value: "test".into(),
        }],
        description: None,
        maintenance_window: None,
        enterprise_project_id: None,
    }
}

fn managed(name: &str, uid: &str, deletion: DeletionPolicy, endpoint: &str) -> DcsInstance {
    let mut obj = DcsInstance::new(
        name,
        DcsInstanceSpec {
            management_policy: ManagementPolicy::Manage,
            deletion_policy: deletion,
            instance: Some(Box::new(desired())),
            project_id: Some(PROJECT.into()),
            endpoint: Some(endpoint.into()),
            credentials_secret_ref: Some(LocalSecretReference {
                name: "creds".into(),
            }),
            password_secret_ref: Some(Box::new(SecretKeyReference {
                name: "pw".into(),
                key: "password".into(),
            })),
            ..DcsInstanceSpec::default()
        },
    );
    obj.meta_mut().namespace = Some(NS.into());
    obj.meta_mut().uid = Some(uid.into());
    obj
}

impl World {
    /// A new Shared on the same fake API server and simulator: a restart.
    fn context(&self, configure: impl FnOnce(SharedBuilder) -> SharedBuilder) -> Arc<Context> {
        Arc::new(Context::new(Arc::new(
            configure(builder(&self.client, &self.clock)).build(),
        )))
    }

    fn obj(&self, name: &str) -> Option<DcsInstance> {
        self.api.get_dcs(NS, name)
    }

    /// One reconcile of the object as the API server has it now; false when gone.
    async fn step_with(&self, ctx: &Arc<Context>, name: &str) -> bool {
        let Some(obj) = self.obj(name) else {
            return false;
        };
        let _ = reconcile(Arc::new(obj), ctx.clone()).await;
        true
    }

    async fn step(&self, name: &str) -> bool {
        self.step_with(&self.ctx, name).await
    }

    /// `steps` reconciles, the clock moving `every` seconds between them.
    async fn run(&self, name: &str, steps: usize, every: i64) {
        for _ in 0..steps {
            if !self.step(name).await {
                return;
            }
            self.clock.advance(TimeDelta::seconds(every));
        }
    }

    fn creates(&self) -> u64 {
        self.sim.state().counters().applied_for("create")
    }

    fn create_requests(&self) -> u64 {
        self.sim.state().counters().requests_for("create")
    }

    fn deletes(&self) -> u64 {
        self.sim.state().counters().applied_for("delete")
    }

    fn instances(&self) -> Vec<serde_json::Map<String, Value>> {
        self.sim.state().project_instances(PROJECT)
    }

    fn annotation(&self, name: &str, key: &str) -> Option<String> {
        self.obj(name)?.metadata.annotations?.get(key).cloned()
    }

    fn reason(&self, name: &str, type_: &str) -> Option<String> {
        let obj = self.obj(name)?;
        obj.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.reason.to_string())
    }

    /// Patches the stored object as a user would (bumping generation on spec edits).
    async fn edit(&self, name: &str, patch: Value) {
        let api: kube::Api<DcsInstance> = kube::Api::namespaced(self.client.clone(), NS);
        api.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    }

    async fn delete(&self, name: &str) {
        let api: kube::Api<DcsInstance> = kube::Api::namespaced(self.client.clone(), NS);
        api.delete(name, &Default::default()).await.unwrap();
    }

    /// The create-attempt values written, in order, from the PATCH bodies.
    fn attempt_history(&self) -> Vec<String> {
        self.api
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && !r.path.ends_with("/status"))
            .filter_map(|r| {
                r.body.as_ref()?["metadata"]["annotations"][CREATE_ATTEMPT_ANNOTATION]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }
}

async fn new_world() -> World {
    world(sim_config(WriteConfig::default(), Vec::new())).await
}

#[tokio::test]
async fn create_claims_sends_records_the_id_and_becomes_ready_with_the_password() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.step("cache").await;
    assert_eq!(w.creates(), 1);
    assert_eq!(
        w.attempt_history(),
        [
            format!("{UID}/1/claimed"),
            format!("{UID}/1/sent"),
            format!("{UID}/1/created")
        ]
    );
    let id = w
        .annotation("cache", INSTANCE_ID_ANNOTATION)
        .expect("the id is recorded");
    let obj = w.obj("cache").unwrap();
    assert_eq!(
        obj.status.as_ref().unwrap().instance_id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        obj.status.as_ref().unwrap().status.as_deref(),
        Some("CREATING")
    );
    assert!(
        obj.metadata
            .finalizers
            .as_deref()
            .unwrap_or_default()
            .is_empty(),
        "Orphan with the id recorded needs no finalizer"
    );
    // The instance carries the ownership tag, the user's tag and the default name.
    let created = &w.instances()[0];
    assert_eq!(created["name"], json!(format!("{NS}-cache")));
    let tags = created["tags"].as_array().unwrap();
    assert!(tags.contains(&json!({"key": OWNER_TAG_KEY, "value": UID})));
    assert!(tags.contains(&json!({"key": "env", "value": "test"})));
    // CREATING → RUNNING → Ready with the password in the connection Secret.
    w.run("cache", 3, 11).await;
    assert_eq!(w.reason("cache", "Ready").as_deref(), Some("Running"));
    let connection = w
        .api
        .get_secret(NS, "cache-dcs")
        .expect("the connection Secret");
    let data = connection.data.unwrap();
    assert_eq!(data["password"].0, PASSWORD.as_bytes());
    // Steady state: no DCS write, no Kubernetes write.
    w.api.clear_requests();
    w.run("cache", 5, 61).await;
    assert_eq!(w.creates(), 1);
    assert_eq!(w.api.writes(), 0, "{:?}", w.api.requests());
}

#[tokio::test]
async fn a_dropped_answer_and_a_restart_with_list_lag_still_make_one_instance() {
    let writes = WriteConfig {
        list_lag: Duration::from_secs(90),
        ..WriteConfig::default()
    };
    let w = world(sim_config(writes, Vec::new())).await;
    w.sim
        .state()
        .inject_fault(Fault::times(FaultKind::ApplyThenDrop, 1).on_route("create"));
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.step("cache").await;
    assert_eq!(w.create_requests(), 1);
    assert_eq!(
        w.instances().len(),
        1,
        "the create was applied, its answer dropped"
    );
    assert_eq!(
        w.reason("cache", "Synced").as_deref(),
        Some("CreatePending")
    );
    // Restarts, every 15 s, while the list does not show the instance yet, and after.
    for _ in 0..8 {
        w.clock.advance(TimeDelta::seconds(15));
        let restarted = w.context(|b| b);
        w.step_with(&restarted, "cache").await;
    }
    assert_eq!(
        w.create_requests(),
        1,
        "an unknown outcome is never sent again"
    );
    assert_eq!(w.instances().len(), 1);
    assert_eq!(
        w.annotation("cache", INSTANCE_ID_ANNOTATION).as_deref(),
        w.instances()[0]["instance_id"].as_str()
    );
}

#[tokio::test]
async fn a_claim_left_by_a_crash_is_superseded_and_creates_once() {
    let w = new_world().await;
    let mut obj = managed("cache", UID, DeletionPolicy::Orphan, &w.sim.base_url());
    obj.meta_mut().annotations = Some(BTreeMap::from([(
        CREATE_ATTEMPT_ANNOTATION.to_string(),
        format!("{UID}/1/claimed"),
    )]));
    w.api.insert(obj);
    w.step("cache").await;
    assert_eq!(w.creates(), 1);
    assert_eq!(
        w.annotation("cache", CREATE_ATTEMPT_ANNOTATION),
        Some(format!("{UID}/2/created"))
    );
}

#[tokio::test]
async fn a_replica_with_a_stale_object_never_creates_a_second_instance() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    let stale = Arc::new(w.obj("cache").unwrap());
    // The new leader creates; the old one, from its stale cache, tries to claim.
    w.step("cache").await;
    let old_leader = w.context(|b| b);
    let claimed_at_stale = reconcile(stale.clone(), old_leader.clone()).await;
    assert!(
        claimed_at_stale.is_err(),
        "the stale claim fails its precondition"
    );
    // Even a stale copy that already shows a claim cannot get to a POST.
    let mut claimed = (*stale).clone();
    claimed.meta_mut().annotations = Some(BTreeMap::from([(
        CREATE_ATTEMPT_ANNOTATION.to_string(),
        format!("{UID}/1/claimed"),
    )]));
    let _ = reconcile(Arc::new(claimed), old_leader).await;
    assert_eq!(w.create_requests(), 1);
    assert_eq!(w.instances().len(), 1);
}

#[tokio::test]
async fn a_refused_create_is_one_call_until_the_spec_changes() {
    let w = new_world().await;
    let mut obj = managed("cache", UID, DeletionPolicy::Orphan, &w.sim.base_url());
    obj.spec.instance.as_mut().unwrap().availability_zones = vec!["cn-north-4g".into()];
    w.api.insert(obj);
    w.run("cache", 6, 61).await;
    assert_eq!(w.create_requests(), 1);
    assert_eq!(w.creates(), 0);
    assert_eq!(
        w.reason("cache", "Synced").as_deref(),
        Some("RequestRefused")
    );
    assert_eq!(
        w.annotation("cache", CREATE_ATTEMPT_ANNOTATION),
        Some(format!("{UID}/1/refused"))
    );
    // Fixing the zone (allowed: no instance exists yet) makes one new attempt.
    w.edit(
        "cache",
        json!({"spec": {"instance": {"availabilityZones": ["cn-north-4a", "cn-north-4b"]}}}),
    )
    .await;
    w.run("cache", 3, 11).await;
    assert_eq!(w.create_requests(), 2);
    assert_eq!(w.creates(), 1);
}

#[tokio::test]
async fn create_failed_and_retry_create_delete_the_failed_instance_then_create_one() {
    let w = new_world().await;
    w.sim
        .state()
        .inject_fault(Fault::times(FaultKind::CreateFailed, 1));
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.run("cache", 3, 11).await;
    assert_eq!(
        w.obj("cache").unwrap().status.unwrap().status.as_deref(),
        Some("CREATEFAILED")
    );
    let failed = w.annotation("cache", INSTANCE_ID_ANNOTATION).unwrap();
    w.edit(
        "cache",
        json!({"metadata": {"annotations": {RETRY_CREATE_ANNOTATION: "1"}}}),
    )
    .await;
    w.run("cache", 8, 11).await;
    assert_eq!(w.deletes(), 1);
    assert_eq!(w.creates(), 2);
    let ids: Vec<String> = w
        .instances()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], failed);
    assert_eq!(
        w.annotation("cache", INSTANCE_ID_ANNOTATION),
        Some(ids[0].clone())
    );
    assert!(w.annotation("cache", RETRY_CREATE_ANNOTATION).is_none());
    assert_eq!(w.reason("cache", "Ready").as_deref(), Some("Running"));
}

#[tokio::test]
async fn a_name_taken_by_someone_else_is_name_in_use_and_nothing_is_created() {
    let mut fields = serde_json::Map::new();
    for (key, value) in [
        ("instance_id", json!("5e6f7a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5b")),
        ("name", json!(format!("{NS}-cache"))),
        ("engine", json!("Redis")),
        ("status", json!("RUNNING")),
    ] {
        fields.insert(key.into(), value);
    }
    let w = world(sim_config(
        WriteConfig::default(),
        vec![SimInstance::new(PROJECT, fields, Vec::new())],
    ))
    .await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.run("cache", 4, 61).await;
    assert_eq!(w.create_requests(), 0);
    assert_eq!(w.reason("cache", "Synced").as_deref(), Some("NameInUse"));
    assert_eq!(w.reason("cache", "Ready").as_deref(), Some("NameInUse"));
}

#[tokio::test]
async fn delete_policy_deletes_the_instance_then_releases() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Delete,
        &w.sim.base_url(),
    ));
    w.run("cache", 3, 11).await;
    let obj = w.obj("cache").unwrap();
    assert_eq!(
        obj.metadata.finalizers.as_deref(),
        Some(&[CLEANUP_FINALIZER.to_string()][..])
    );
    let creds = w.api.get_secret(NS, "creds").unwrap();
    assert_eq!(
        creds.metadata.finalizers.as_deref(),
        Some(&[IN_USE_FINALIZER.to_string()][..])
    );
    w.delete("cache").await;
    w.run("cache", 6, 11).await;
    assert!(w.obj("cache").is_none(), "released after the 404");
    assert_eq!(w.deletes(), 1);
    assert!(w.instances().is_empty());
    let creds = w.api.get_secret(NS, "creds").unwrap();
    assert!(creds.metadata.finalizers.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn orphan_policy_leaves_the_instance() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.run("cache", 3, 11).await;
    w.delete("cache").await;
    assert!(w.obj("cache").is_none(), "no finalizer: gone at once");
    assert_eq!(w.deletes(), 0);
    assert_eq!(w.instances().len(), 1);
}

#[tokio::test]
async fn deleting_the_namespace_deletes_the_instance_and_the_namespace_goes() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Delete,
        &w.sim.base_url(),
    ));
    w.run("cache", 3, 11).await;
    w.api.delete_namespace(NS);
    assert!(
        w.api.get_secret(NS, "creds").is_some(),
        "held by the in-use finalizer"
    );
    assert!(w.api.get_secret(NS, "pw").is_none());
    w.run("cache", 6, 11).await;
    assert!(w.obj("cache").is_none());
    assert!(w.instances().is_empty());
    assert!(
        w.api.get_secret(NS, "creds").is_none(),
        "released last, then gone"
    );
}

#[tokio::test]
async fn cleanup_blocked_by_refused_credentials_is_escaped_with_orphan() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Delete,
        &w.sim.base_url(),
    ));
    w.run("cache", 3, 11).await;
    let mut wrong = credentials_data();
    wrong.insert(
        "secretKey".into(),
        "WrongSecretKey0000000000000000000000000".into(),
    );
    let api: kube::Api<Secret> = kube::Api::namespaced(w.client.clone(), NS);
    api.patch(
        "creds",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            json!({"data": {"secretKey": ByteString(wrong["secretKey"].clone().into_bytes())}}),
        ),
    )
    .await
    .unwrap();
    w.delete("cache").await;
    w.run("cache", 3, 11).await;
    assert_eq!(
        w.reason("cache", "Synced").as_deref(),
        Some("CleanupBlocked")
    );
    assert!(w.obj("cache").is_some());
    w.edit("cache", json!({"spec": {"deletionPolicy": "Orphan"}}))
        .await;
    w.run("cache", 2, 1).await;
    assert!(
        w.obj("cache").is_none(),
        "Orphan releases the terminating object"
    );
    assert_eq!(w.deletes(), 0);
    assert_eq!(w.instances().len(), 1);
}

#[tokio::test]
async fn an_object_copied_with_its_annotations_is_an_ownership_mismatch() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Delete,
        &w.sim.base_url(),
    ));
    w.run("cache", 3, 11).await;
    let original = w.obj("cache").unwrap();
    let mut copy = managed(
        "copy",
        "4a1b2c3d-0000-4000-8000-00000000000c",
        DeletionPolicy::Delete,
        &w.sim.base_url(),
    );
    copy.meta_mut().annotations = original.metadata.annotations.clone();
    w.api.insert(copy);
    w.run("copy", 3, 61).await;
    assert_eq!(
        w.reason("copy", "Synced").as_deref(),
        Some("OwnershipMismatch")
    );
    assert_eq!(w.creates(), 1);
    assert_eq!(w.sim.state().counters().applied_for("tags_action"), 0);
    let copy = w.obj("copy").unwrap();
    assert!(
        copy.metadata.finalizers.unwrap_or_default().is_empty(),
        "a copy owns nothing and holds nothing up"
    );
    // Deleting the copy deletes nothing and is not held up.
    w.delete("copy").await;
    w.run("copy", 3, 11).await;
    assert!(w.obj("copy").is_none());
    assert_eq!(w.deletes(), 0);
    assert_eq!(w.instances().len(), 1);
}

#[tokio::test]
async fn adoption_needs_own_credentials_and_an_unclaimed_instance() {
    let w = new_world().await;
    // An instance created by another DcsInstance (its tag holds another uid).
    w.api.insert(managed(
        "owner",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.run("owner", 2, 11).await;
    let id = w.annotation("owner", INSTANCE_ID_ANNOTATION).unwrap();
    let other = "4a1b2c3d-0000-4000-8000-0000000000ad";
    let mut adopter = managed("adopter", other, DeletionPolicy::Orphan, &w.sim.base_url());
    adopter.spec.instance_id = Some(id.clone());
    w.api.insert(adopter);
    w.run("adopter", 2, 61).await;
    assert_eq!(
        w.reason("adopter", "Synced").as_deref(),
        Some("OwnershipMismatch")
    );
    assert_eq!(w.sim.state().counters().applied_for("tags_action"), 0);
    // An untagged instance is adopted with one tag write; never with default credentials.
    let (free_id, third) = (
        "5e6f7a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5c",
        "4a1b2c3d-0000-4000-8000-0000000000ae",
    );
    let mut fields = serde_json::Map::new();
    for (key, value) in [
        ("instance_id", json!(free_id)),
        ("name", json!("free")),
        ("engine", json!("Redis")),
        ("status", json!("RUNNING")),
        ("ip", json!("10.0.0.9")),
        ("port", json!(6379)),
    ] {
        fields.insert(key.into(), value);
    }
    w.sim
        .state()
        .upsert_instance(SimInstance::new(PROJECT, fields, Vec::new()));
    let mut by_default = managed(
        "by-default",
        third,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    );
    by_default.spec.instance_id = Some(free_id.into());
    by_default.spec.credentials_secret_ref = None;
    w.api.insert(by_default);
    w.run("by-default", 2, 61).await;
    assert_eq!(w.sim.state().counters().applied_for("tags_action"), 0);
    let mut own = managed("own", third, DeletionPolicy::Orphan, &w.sim.base_url());
    own.spec.instance_id = Some(free_id.into());
    w.api.insert(own);
    w.run("own", 3, 61).await;
    // One write for the ownership tag, one for spec.instance.tags (#13).
    assert_eq!(w.sim.state().counters().applied_for("tags_action"), 2);
    assert_eq!(
        w.obj("own").unwrap().status.unwrap().instance_id.as_deref(),
        Some(free_id)
    );
    assert_eq!(w.creates(), 1, "adoption never creates");
}

#[tokio::test]
async fn reclaim_after_a_restore_moves_the_tag_to_the_new_uid() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.run("cache", 2, 11).await;
    let saved = w.obj("cache").unwrap();
    w.delete("cache").await;
    // Restored with its annotations and a new uid.
    let new_uid = "4a1b2c3d-0000-4000-8000-0000000000ff";
    let mut restored = managed("cache", new_uid, DeletionPolicy::Orphan, &w.sim.base_url());
    restored.meta_mut().annotations = saved.metadata.annotations.clone();
    w.api.insert(restored);
    w.run("cache", 2, 61).await;
    assert_eq!(
        w.reason("cache", "Synced").as_deref(),
        Some("OwnershipMismatch")
    );
    w.edit(
        "cache",
        json!({"metadata": {"annotations": {RECLAIM_FROM_ANNOTATION: UID}}}),
    )
    .await;
    w.run("cache", 3, 61).await;
    let tags = w.instances()[0]["tags"].clone();
    assert!(
        tags.as_array()
            .unwrap()
            .contains(&json!({"key": OWNER_TAG_KEY, "value": new_uid}))
    );
    assert_eq!(
        w.annotation("cache", CREATE_ATTEMPT_ANNOTATION),
        Some(format!("{new_uid}/1/created"))
    );
    assert_eq!(w.creates(), 1);
}

#[tokio::test]
async fn observe_objects_make_no_lifecycle_calls_or_writes() {
    let w = new_world().await;
    w.api.insert(managed(
        "owner",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.run("owner", 2, 11).await;
    let id = w.annotation("owner", INSTANCE_ID_ANNOTATION).unwrap();
    let writes_before = w.sim.state().counters().applied_for("create");
    let mut observe = managed(
        "observer",
        "4a1b2c3d-0000-4000-8000-0000000000ab",
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    );
    observe.spec.management_policy = ManagementPolicy::Observe;
    observe.spec.instance_id = Some(id);
    w.api.insert(observe);
    w.api.clear_requests();
    let observer = w.context(|b| b);
    for _ in 0..4 {
        w.step_with(&observer, "observer").await;
        w.clock.advance(TimeDelta::seconds(61));
    }
    assert_eq!(
        w.sim.state().counters().applied_for("create"),
        writes_before
    );
    assert_eq!(observer.shared.metrics().dcs_writes_total(), 0);
    let meta_patches = w
        .api
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PATCH" && r.path.contains("/observer") && !r.path.ends_with("/status")
        })
        .count();
    assert_eq!(meta_patches, 0);
    assert_eq!(w.reason("observer", "Ready").as_deref(), Some("Running"));
}

#[tokio::test]
async fn an_immutable_change_that_slips_through_is_reported_and_never_written() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.run("cache", 3, 11).await;
    assert_eq!(w.reason("cache", "Ready").as_deref(), Some("Running"));
    // The fake API server has no CEL: the change the CRD refuses gets through here.
    w.edit(
        "cache",
        json!({"spec": {"instance": {"engineVersion": "7.0"}}}),
    )
    .await;
    w.run("cache", 3, 61).await;
    assert_eq!(
        w.reason("cache", "Synced").as_deref(),
        Some("ImmutableFieldChanged")
    );
    assert_eq!(w.reason("cache", "Ready").as_deref(), Some("Running"));
    assert_eq!(w.creates(), 1);
    assert_eq!(w.sim.state().counters().applied_for("update"), 0);
    assert_eq!(w.sim.state().counters().applied_for("resize"), 0);
}

impl World {
    /// Reconciles back to back without moving the clock, as the watch does after
    /// the operator's own writes (each patch wakes the object up again).
    async fn burst(&self, name: &str, times: usize) {
        for _ in 0..times {
            if !self.step(name).await {
                return;
            }
        }
    }
}

#[tokio::test]
async fn a_throttled_create_is_not_sent_again_before_its_wait() {
    let w = new_world().await;
    w.sim.state().inject_fault(
        Fault::times(
            FaultKind::Status {
                status: 429,
                error_code: "APIGW.0308".into(),
                error_msg: "throttled".into(),
                retry_after: Some(600),
            },
            1,
        )
        .on_route("create"),
    );
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.burst("cache", 6).await;
    assert_eq!(w.create_requests(), 1, "one POST, then the wait");
    w.clock.advance(TimeDelta::seconds(601));
    w.burst("cache", 3).await;
    assert_eq!(w.create_requests(), 2);
    assert_eq!(w.creates(), 1);
}

#[tokio::test]
async fn a_failing_lookup_does_not_claim_on_every_wake_up() {
    let w = new_world().await;
    w.sim.state().inject_fault(
        Fault::always(FaultKind::Status {
            status: 403,
            error_code: "DCS.0403".into(),
            error_msg: "no permission to list".into(),
            retry_after: None,
        })
        .on_route("list_v2"),
    );
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.burst("cache", 6).await;
    assert_eq!(w.attempt_history().len(), 1, "{:?}", w.attempt_history());
    assert_eq!(w.create_requests(), 0);
}

#[tokio::test]
async fn a_refused_delete_is_not_sent_again_on_every_wake_up() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Delete,
        &w.sim.base_url(),
    ));
    w.run("cache", 3, 11).await;
    w.sim.state().inject_fault(
        Fault::always(FaultKind::Status {
            status: 400,
            error_code: "DCS.4933".into(),
            error_msg: "not allowed".into(),
            retry_after: None,
        })
        .on_route("delete"),
    );
    w.delete("cache").await;
    w.burst("cache", 6).await;
    assert_eq!(w.sim.state().counters().requests_for("delete"), 1);
    assert_eq!(
        w.reason("cache", "Synced").as_deref(),
        Some("CleanupBlocked")
    );
    // The way out still works.
    w.edit("cache", json!({"spec": {"deletionPolicy": "Orphan"}}))
        .await;
    w.burst("cache", 2).await;
    assert!(w.obj("cache").is_none());
}

#[tokio::test]
async fn leaving_delete_lets_the_credentials_secret_go() {
    let w = new_world().await;
    w.api.insert(managed(
        "cache",
        UID,
        DeletionPolicy::Delete,
        &w.sim.base_url(),
    ));
    w.run("cache", 3, 11).await;
    let held = w.api.get_secret(NS, "creds").unwrap().metadata.finalizers;
    assert_eq!(held.as_deref(), Some(&[IN_USE_FINALIZER.to_string()][..]));
    w.edit("cache", json!({"spec": {"deletionPolicy": "Orphan"}}))
        .await;
    w.run("cache", 2, 11).await;
    let finalizers = w.obj("cache").unwrap().metadata.finalizers;
    assert!(finalizers.unwrap_or_default().is_empty());
    let creds = w.api.get_secret(NS, "creds").unwrap();
    assert!(creds.metadata.finalizers.unwrap_or_default().is_empty());
    // Nothing holds the namespace up any more.
    w.api.delete_namespace(NS);
    assert!(w.api.get_secret(NS, "creds").is_none());
}

#[tokio::test]
async fn an_instance_left_by_a_deleted_object_is_adopted_with_reclaim_from() {
    let w = new_world().await;
    w.api.insert(managed(
        "old",
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.run("old", 2, 11).await;
    let id = w.annotation("old", INSTANCE_ID_ANNOTATION).unwrap();
    w.delete("old").await;
    let new_uid = "4a1b2c3d-0000-4000-8000-0000000000bb";
    let mut adopter = managed("new", new_uid, DeletionPolicy::Orphan, &w.sim.base_url());
    adopter.spec.instance_id = Some(id.clone());
    w.api.insert(adopter);
    w.run("new", 2, 61).await;
    assert_eq!(
        w.reason("new", "Synced").as_deref(),
        Some("OwnershipMismatch")
    );
    w.edit(
        "new",
        json!({"metadata": {"annotations": {RECLAIM_FROM_ANNOTATION: UID}}}),
    )
    .await;
    w.run("new", 2, 61).await;
    let tags = w.instances()[0]["tags"].clone();
    let owner = json!({"key": OWNER_TAG_KEY, "value": new_uid});
    assert!(tags.as_array().unwrap().contains(&owner));
    assert!(w.annotation("new", RECLAIM_FROM_ANNOTATION).is_none());
    assert_eq!(w.obj("new").unwrap().status.unwrap().instance_id, Some(id));
}

// ---- Issue #13: converging a managed instance in place, one write per difference.

/// A managed instance created and RUNNING, with the requests cleared.
async fn running(name: &str) -> World {
    let w = new_world().await;
    w.api.insert(managed(
        name,
        UID,
        DeletionPolicy::Orphan,
        &w.sim.base_url(),
    ));
    w.run(name, 3, 11).await;
    assert_eq!(w.reason(name, "Ready").as_deref(), Some("Running"));
    w.api.clear_requests();
    w
}

impl World {
    fn applied(&self, route: &str) -> u64 {
        self.sim.state().counters().applied_for(route)
    }

    fn instance(&self) -> serde_json::Map<String, Value> {
        self.instances().into_iter().next().expect("one instance")
    }

    fn status_field(&self, name: &str, field: &str) -> Value {
        let obj = self.obj(name).unwrap();
        serde_json::to_value(obj.status.unwrap()).unwrap()[field].clone()
    }

    /// Writes to the connection Secret (PATCH or POST), from the recorded requests.
    fn secret_writes(&self, name: &str) -> usize {
        self.api
            .requests()
            .iter()
            .filter(|r| r.method != "GET" && r.path.contains(&format!("secrets/{name}-dcs")))
            .count()
    }
}

#[tokio::test]
async fn a_resize_is_one_call_then_extending_then_running_then_quiet() {
    let w = running("cache").await;
    w.edit(
        "cache",
        json!({"spec": {"instance": {"capacity": "4Gi", "specCode": "redis.ha.xu1.large.r2.4"}}}),
    )
    .await;
    w.step("cache").await;
    assert_eq!(w.applied("resize"), 1);
    w.clock.advance(TimeDelta::seconds(5));
    w.step("cache").await;
    assert_eq!(w.status_field("cache", "status"), json!("EXTENDING"));
    w.run("cache", 6, 11).await;
    assert_eq!(w.status_field("cache", "status"), json!("RUNNING"));
    assert_eq!(w.status_field("cache", "capacity"), json!("4Gi"));
    assert_eq!(w.reason("cache", "Synced").as_deref(), Some("Observed"));
    assert_eq!(w.applied("resize"), 1);
    // Unchanged from here on: no DCS write, no Kubernetes write.
    w.api.clear_requests();
    w.run("cache", 5, 61).await;
    assert_eq!(w.applied("resize"), 1);
    assert_eq!(w.api.writes(), 0, "{:?}", w.api.requests());
}

#[tokio::test]
async fn modify_and_port_are_one_call_each() {
    let w = running("cache").await;
    w.edit(
        "cache",
        json!({"spec": {"instance": {"description": "orders", "port": 6380}}}),
    )
    .await;
    w.run("cache", 8, 11).await;
    assert_eq!(w.applied("update"), 2, "one modify, one port change");
    assert_eq!(w.instance()["description"], json!("orders"));
    assert_eq!(w.instance()["port"], json!(6380));
    w.run("cache", 4, 61).await;
    assert_eq!(w.applied("update"), 2);
}

#[tokio::test]
async fn tags_change_only_what_the_operator_set() {
    let w = running("cache").await;
    // Someone else's tag, set in the console.
    let id = w.instance()["instance_id"].as_str().unwrap().to_string();
    let mut fields = w.instance();
    let mut tags = fields["tags"].as_array().unwrap().clone();
    tags.push(json!({"key": "billing", "value": "team-a"}));
    fields.insert("tags".into(), Value::Array(tags));
    w.sim
        .state()
        .upsert_instance(SimInstance::new(PROJECT, fields, Vec::new()));
    w.edit(
        "cache",
        json!({"spec": {"instance": {"tags": [{"key": "team", "value": "a"}]}}}),
    )
    .await;
    w.run("cache", 4, 11).await;
    let tags = w.sim.state().instance(PROJECT, &id).unwrap()["tags"].clone();
    let tags = tags.as_array().unwrap();
    assert!(tags.contains(&json!({"key": "team", "value": "a"})));
    assert!(
        tags.contains(&json!({"key": "billing", "value": "team-a"})),
        "foreign tag kept"
    );
    assert!(
        tags.contains(&json!({"key": OWNER_TAG_KEY, "value": UID})),
        "owner tag kept"
    );
    assert!(
        !tags.iter().any(|t| t["key"] == "env"),
        "the operator's old tag removed"
    );
    let after = w.applied("tags_action");
    assert!(after <= 2, "a delete and a create at most: {after}");
    w.run("cache", 4, 61).await;
    assert_eq!(w.applied("tags_action"), after);
}

#[tokio::test]
async fn a_refused_resize_is_one_call_until_the_spec_changes() {
    let w = running("cache").await;
    w.edit(
        "cache",
        json!({"spec": {"instance": {"capacity": "4Gi", "specCode": "redis.ha.xu9.huge.4"}}}),
    )
    .await;
    w.run("cache", 8, 61).await;
    assert_eq!(w.sim.state().counters().requests_for("resize"), 1);
    assert_eq!(
        w.reason("cache", "Synced").as_deref(),
        Some("RequestRefused")
    );
    assert_eq!(w.reason("cache", "Ready").as_deref(), Some("Running"));
    w.edit(
        "cache",
        json!({"spec": {"instance": {"specCode": "redis.ha.xu1.large.r2.4"}}}),
    )
    .await;
    w.run("cache", 2, 11).await;
    assert_eq!(w.sim.state().counters().requests_for("resize"), 2);
    assert_eq!(w.applied("resize"), 1);
}

#[tokio::test]
async fn a_resize_whose_result_differs_is_not_converged_and_not_sent_again() {
    let w = running("cache").await;
    w.edit(
        "cache",
        json!({"spec": {"instance": {"capacity": "4Gi", "specCode": "redis.ha.xu1.large.r2.4"}}}),
    )
    .await;
    w.run("cache", 8, 11).await;
    assert_eq!(w.applied("resize"), 1);
    // DCS ends up at another size than asked (rolled back, changed elsewhere).
    let mut fields = w.instance();
    fields.insert("capacity".into(), json!(2));
    fields.insert("spec_code".into(), json!("redis.ha.xu1.large.r2.2"));
    fields.insert(
        "resource_spec_code".into(),
        json!("redis.ha.xu1.large.r2.2"),
    );
    w.sim
        .state()
        .upsert_instance(SimInstance::new(PROJECT, fields, Vec::new()));
    w.run("cache", 6, 61).await;
    assert_eq!(w.reason("cache", "Synced").as_deref(), Some("NotConverged"));
    assert_eq!(w.sim.state().counters().requests_for("resize"), 1);
}

#[tokio::test]
async fn a_busy_refusal_waits_then_one_call() {
    let w = running("cache").await;
    w.sim.state().inject_fault(
        Fault::times(
            FaultKind::Status {
                status: 400,
                error_code: "DCS.4113".into(),
                error_msg: "The instance is being scaled.".into(),
                retry_after: None,
            },
            1,
        )
        .on_route("resize"),
    );
    w.edit(
        "cache",
        json!({"spec": {"instance": {"capacity": "4Gi", "specCode": "redis.ha.xu1.large.r2.4"}}}),
    )
    .await;
    w.step("cache").await;
    assert_eq!(w.reason("cache", "Synced").as_deref(), Some("Busy"));
    assert_eq!(w.applied("resize"), 0);
    w.run("cache", 8, 16).await;
    assert_eq!(w.sim.state().counters().requests_for("resize"), 2);
    assert_eq!(w.applied("resize"), 1);
}

#[tokio::test]
async fn password_rotation_is_one_reset_and_one_secret_patch() {
    let w = running("cache").await;
    let api: kube::Api<Secret> = kube::Api::namespaced(w.client.clone(), NS);
    // A metadata-only edit of the password Secret: nothing.
    api.patch(
        "pw",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    w.run("cache", 3, 61).await;
    assert_eq!(w.applied("reset_password"), 0);
    assert_eq!(w.secret_writes("cache"), 0);
    // A new value: one reset, then the connection Secret patched once.
    api.patch(
        "pw",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            json!({"data": {"password": ByteString(b"New-Passw0rd".to_vec())}}),
        ),
    )
    .await
    .unwrap();
    w.run("cache", 4, 61).await;
    assert_eq!(w.applied("reset_password"), 1);
    assert_eq!(w.secret_writes("cache"), 1);
    let data = w.api.get_secret(NS, "cache-dcs").unwrap().data.unwrap();
    assert_eq!(data["password"].0, b"New-Passw0rd");
    let status = serde_json::to_string(&w.obj("cache").unwrap().status).unwrap();
    assert!(!status.contains("New-Passw0rd") && !status.contains(PASSWORD));
}

#[tokio::test]
async fn an_adopted_instance_is_never_reset() {
    let w = new_world().await;
    let (free_id, uid) = (
        "5e6f7a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5c",
        "4a1b2c3d-0000-4000-8000-0000000000ae",
    );
    let mut fields = serde_json::Map::new();
    for (key, value) in [
        ("instance_id", json!(free_id)),
        ("name", json!(format!("{NS}-own"))),
        ("engine", json!("Redis")),
        ("engine_version", json!("6.0")),
        ("capacity", json!(2)),
        ("spec_code", json!("redis.ha.xu1.large.r2.2")),
        ("resource_spec_code", json!("redis.ha.xu1.large.r2.2")),
        ("status", json!("RUNNING")),
        ("ip", json!("10.0.0.9")),
        ("port", json!(6379)),
    ] {
        fields.insert(key.into(), value);
    }
    w.sim
        .state()
        .upsert_instance(SimInstance::new(PROJECT, fields, Vec::new()));
    let mut own = managed("own", uid, DeletionPolicy::Orphan, &w.sim.base_url());
    own.spec.instance_id = Some(free_id.into());
    w.api.insert(own);
    w.run("own", 4, 61).await;
    assert_eq!(w.applied("reset_password"), 0);
    assert_eq!(w.reason("own", "Ready").as_deref(), Some("Running"));
}

#[tokio::test]
async fn a_reset_answered_with_another_code_is_refused_and_the_secret_keeps_the_old_password() {
    let w = running("cache").await;
    w.sim
        .state()
        .inject_fault(Fault::times(FaultKind::reset_password_code("3"), 1));
    let api: kube::Api<Secret> = kube::Api::namespaced(w.client.clone(), NS);
    api.patch(
        "pw",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            json!({"data": {"password": ByteString(b"New-Passw0rd".to_vec())}}),
        ),
    )
    .await
    .unwrap();
    w.run("cache", 4, 61).await;
    assert_eq!(
        w.reason("cache", "Synced").as_deref(),
        Some("RequestRefused")
    );
    assert_eq!(w.reason("cache", "Ready").as_deref(), Some("Running"));
    assert_eq!(w.applied("reset_password"), 0);
    assert_eq!(
        w.sim.state().counters().requests_for("reset_password"),
        1,
        "not asked again for the same value"
    );
    let data = w.api.get_secret(NS, "cache-dcs").unwrap().data.unwrap();
    assert_eq!(
        data["password"].0,
        PASSWORD.as_bytes(),
        "applications keep the working one"
    );
}

#[tokio::test]
async fn a_password_rotated_with_a_resize_waits_for_its_reset_before_reaching_the_secret() {
    let w = running("cache").await;
    let api: kube::Api<Secret> = kube::Api::namespaced(w.client.clone(), NS);
    api.patch(
        "pw",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            json!({"data": {"password": ByteString(b"New-Passw0rd".to_vec())}}),
        ),
    )
    .await
    .unwrap();
    w.edit(
        "cache",
        json!({"spec": {"instance": {"capacity": "4Gi", "specCode": "redis.ha.xu1.large.r2.4"}}}),
    )
    .await;
    // The resize goes first; the connection Secret keeps the password DCS has.
    w.step("cache").await;
    assert_eq!(w.applied("resize"), 1);
    assert_eq!(w.applied("reset_password"), 0);
    let data = w.api.get_secret(NS, "cache-dcs").unwrap().data.unwrap();
    assert_eq!(data["password"].0, PASSWORD.as_bytes());
    // Once RUNNING again and settled: the reset, then the new password.
    w.run("cache", 12, 31).await;
    assert_eq!(w.applied("reset_password"), 1);
    let data = w.api.get_secret(NS, "cache-dcs").unwrap().data.unwrap();
    assert_eq!(data["password"].0, b"New-Passw0rd");
}

#[tokio::test]
async fn a_reset_with_an_unknown_outcome_keeps_the_old_password_and_is_sent_again_later() {
    let w = running("cache").await;
    w.sim.state().inject_fault(
        Fault::times(
            FaultKind::Status {
                status: 502,
                error_code: "DCS.5000".into(),
                error_msg: "bad gateway".into(),
                retry_after: None,
            },
            1,
        )
        .on_route("reset_password"),
    );
    let api: kube::Api<Secret> = kube::Api::namespaced(w.client.clone(), NS);
    api.patch(
        "pw",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            json!({"data": {"password": ByteString(b"New-Passw0rd".to_vec())}}),
        ),
    )
    .await
    .unwrap();
    w.run("cache", 4, 61).await;
    assert_eq!(w.sim.state().counters().requests_for("reset_password"), 1);
    let data = w.api.get_secret(NS, "cache-dcs").unwrap().data.unwrap();
    assert_eq!(
        data["password"].0,
        PASSWORD.as_bytes(),
        "not the unconfirmed one"
    );
    // After the backstop the same value is sent again, and then it is used.
    w.clock.advance(TimeDelta::minutes(31));
    w.run("cache", 2, 11).await;
    assert_eq!(w.applied("reset_password"), 1);
    let data = w.api.get_secret(NS, "cache-dcs").unwrap().data.unwrap();
    assert_eq!(data["password"].0, b"New-Passw0rd");
}
