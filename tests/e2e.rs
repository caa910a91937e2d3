//! End-to-end test against a real Kubernetes API server.
//!
//! Ignored by default: it needs the cluster the current kubeconfig names (or the
//! in-cluster configuration). With kind:
//!
//! ```text
//! kind create cluster && cargo test --test e2e -- --ignored --nocapture
//! ```
//!
//! What it does, all in-process (no kubectl, no helm):
//!
//! 1. installs the DcsInstance CRD from `DcsInstance::crd()` with server-side apply
//!    (field manager `dcs-operator-e2e`, forced) and waits until it is Established
//!    and API discovery serves it. The CRD is LEFT INSTALLED afterwards: deleting it
//!    would delete every DcsInstance in the cluster, including ones this test did
//!    not create. Remove it by hand (`kubectl delete crd dcsinstances.dcs.operator.dev`).
//! 2. creates a fresh namespace `dcs-e2e-<random>` and checks the API server refuses
//!    a DcsInstance naming both region and endpoint (the CEL rule, 422 Invalid);
//! 3. applies the chart's RBAC exactly as committed in `tests/fixtures/rbac.yaml`
//!    (the default rendering: ServiceAccount, ClusterRole, Role and bindings), with
//!    the ServiceAccount and Roles moved from `dcs-system` into the test namespace and
//!    the cluster-scoped names suffixed with it (so a real install is never touched),
//!    and gives the operator a client that impersonates that ServiceAccount: a verb
//!    the chart forgot fails the test. The test's own setup and checks use the
//!    kubeconfig's (admin) identity;
//! 4. starts the operator in demo mode (the DCS simulator in-process, with its own
//!    instance file written to the temp directory) watching only that namespace,
//!    with a 10s default poll interval, allowed to create and delete instances
//!    there with the simulator's keys (`--default-credentials-manage-namespaces`),
//!    and with workload identity for that namespace (`--identity-namespaces`,
//!    `--identity-audience`, `--iam-endpoint`, `--identity-endpoints`);
//! 5. applies DcsInstances and checks their status, conditions, connection Secrets,
//!    printer columns (the server-side Table), a CREATING -> RUNNING transition, an
//!    IP change made in the simulator, and that nothing is rewritten while nothing
//!    changes (resourceVersions stay put over three poll intervals);
//! 6. the managed path (docs/managing.md): a `Manage` DcsInstance with
//!    `deletionPolicy: Delete` is created in the simulator exactly once (annotations,
//!    cleanup finalizer, ownership tag, status.instanceId), goes CREATING -> RUNNING
//!    with its password in the connection Secret; deleting it deletes the instance
//!    (the simulator answers 404) before the DcsInstance goes;
//! 7. workload identity (docs/keyless.md, Option A): copies the cluster's JWKS
//!    (`/openid/v1/jwks`) into a file and its issuer
//!    (`/.well-known/openid-configuration`) into the simulator's IAM as an identity
//!    provider — the static-copy steps a real IdP setup needs — applies the Role and
//!    RoleBinding the chart renders for an identity namespace (committed in
//!    `tests/fixtures/chart/identity.yaml`; nothing else is added to the chart's
//!    default RBAC), and checks that a DcsInstance with `spec.identity` and no
//!    credentials Secret becomes Ready through a real ServiceAccount token minted by
//!    the API server (TokenRequest → IAM exchange → signed DCS calls), that no Secret
//!    holds keys, and that an unlabelled ServiceAccount gives `TokenRequestFailed`
//!    without any exchange. The operator reaches the simulator's IAM and the
//!    identity's DCS endpoint through a loopback forwarder whose address is known
//!    before the operator starts (the simulator's own port is not: see
//!    [`Forwarder`]);
//! 8. cleans up whatever happens: deletes the DcsInstances while the operator still
//!    runs (so its finalizers do their work), stops the operator, the simulator and
//!    the forwarder, removes the operator's finalizers from whatever is left (an
//!    operator that stopped early would otherwise strand them and the namespace),
//!    then deletes the namespace (and with it the Secrets, ServiceAccounts, Roles and
//!    RoleBindings), the ClusterRole and ClusterRoleBinding it created, and the temp
//!    files.
//!
//! Set RUST_LOG (e.g. `RUST_LOG=dcs_operator=debug`) to see the operator's logs.
//!
//! Small tests here need no cluster and run with plain `cargo test`: the instance
//! file this test writes parses as the scenario expects, the operator's command
//! line parses, the manifests in `examples/` agree with each other and with
//! `examples/sim-instances.yaml`, the chart's RBAC (default and identity) moves into
//! a test namespace intact, and the cloud half of the identity path works through
//! the forwarder with a test-signed token (the simulator's identity configuration,
//! the ID-token and security-token exchanges, a DCS call signed with the temporary
//! keys).

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde::Deserialize as _;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use clap::Parser as _;
use dcs_operator::cli::{Cli, Command, RunArgs};
use dcs_operator::clock::SystemClock;
use dcs_operator::controller;
use dcs_operator::crd::{Condition, DcsInstance, GROUP, VERSION};
use dcs_operator::dcs::sim::{SimConfig, SimHandle, WriteConfig, parse_identity_config};
use dcs_operator::dcs::{ClientConfig, Credentials, DcsClient, SecretString};
use dcs_operator::lifecycle::{
    CLEANUP_FINALIZER, CREATE_ATTEMPT_ANNOTATION, IN_USE_FINALIZER, INSTANCE_ID_ANNOTATION,
    OWNER_TAG_KEY,
};
use dcs_operator::run::{build, check_api_served};

const FIELD_MANAGER: &str = "dcs-operator-e2e";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The chart's RBAC as `helm template` renders it with the default values (kept in
/// step with the chart by .ci/run and tests/integration/chart.rs).
const CHART_RBAC: &str = include_str!("fixtures/rbac.yaml");
/// The release namespace that rendering was made for.
const CHART_NAMESPACE: &str = "dcs-system";
/// The chart rendered with workload identity on
/// (charts/dcs-operator/ci/identity-values.yaml), kept in step the same way.
const CHART_IDENTITY: &str = include_str!("fixtures/chart/identity.yaml");
/// The first identity namespace of that rendering: its Role and RoleBinding are
/// what the chart gives every namespace listed in `identity.namespaces`.
const CHART_IDENTITY_NAMESPACE: &str = "team-a";

/// The simulated instances, one per scenario.
const RUNNING_ID: &str = "e2e00001-0000-4000-8000-000000000001";
const CREATING_ID: &str = "e2e00002-0000-4000-8000-000000000002";
const CLUSTER_ID: &str = "e2e00003-0000-4000-8000-000000000003";
const IDENTITY_ID: &str = "e2e00004-0000-4000-8000-000000000004";

/// The DcsInstance names that point at them.
const RUNNING: &str = "running";
const CREATING: &str = "creating";
const CLUSTER: &str = "cluster";

const INSTANCES_FILE: &str = r#"# Written by tests/e2e.rs for the in-process simulator.
instances:
  - project_id: 0123456789abcdef0123456789abcdef
    instance_id: e2e00001-0000-4000-8000-000000000001
    name: e2e-running
    engine: Redis
    engine_version: "6.0"
    capacity: 2
    capacity_minor: ""
    ip: 10.0.0.10
    port: 6379
    status: RUNNING
    sub_status: normal
    max_memory: 1536
    used_memory: 10
    resource_spec_code: redis.single.xu1.large.2
    cache_mode: single
    charging_mode: 0
    available_zones: [d539378ec1314c85b76fefa3f7071458]
    created_at: "2024-01-15T08:30:00.000Z"

  - project_id: 0123456789abcdef0123456789abcdef
    instance_id: e2e00002-0000-4000-8000-000000000002
    name: e2e-creating
    engine: Redis
    engine_version: "6.0"
    capacity: 4
    capacity_minor: ""
    ip: ""
    port: 6379
    status: CREATING
    max_memory: 3277
    used_memory: 0
    resource_spec_code: redis.ha.xu1.large.r2.4
    cache_mode: ha
    charging_mode: 0
    available_zones: [d539378ec1314c85b76fefa3f7071458]
    created_at: "2024-03-01T09:00:00.000Z"
    transitions:
      - after: 15s
        set: {status: RUNNING, sub_status: normal, ip: 10.0.0.40, used_memory: 3}

  - project_id: 0123456789abcdef0123456789abcdef
    instance_id: e2e00003-0000-4000-8000-000000000003
    name: e2e-cluster
    engine: Redis
    engine_version: "5.0"
    capacity: 64
    capacity_minor: ""
    ip: 10.0.1.1,10.0.1.2,10.0.1.3
    port: 6379
    status: RUNNING
    sub_status: normal
    max_memory: 65536
    used_memory: 20480
    resource_spec_code: redis.cluster.xu1.large.shard.4.64
    cache_mode: cluster
    sharding_count: 4
    charging_mode: 0
    available_zones: [d539378ec1314c85b76fefa3f7071458]
    created_at: "2023-11-20T02:00:10.500Z"

  - project_id: 0123456789abcdef0123456789abcdef
    instance_id: e2e00004-0000-4000-8000-000000000004
    name: e2e-identity
    engine: Redis
    engine_version: "6.0"
    capacity: 2
    capacity_minor: ""
    ip: 10.0.0.50
    port: 6379
    status: RUNNING
    sub_status: normal
    max_memory: 1536
    used_memory: 5
    resource_spec_code: redis.single.xu1.large.2
    cache_mode: single
    charging_mode: 0
    available_zones: [d539378ec1314c85b76fefa3f7071458]
    created_at: "2024-04-02T10:00:00.000Z"
"#;

/// The managed path: a DcsInstance the operator creates and deletes.
const MANAGED: &str = "managed";
const MANAGED_PASSWORD_SECRET: &str = "managed-password";
/// Passes the simulator's password rules (8 to 32 characters, three classes) and
/// needs no percent-encoding in the connection Secret's uri.
const MANAGED_PASSWORD: &str = "E2ePassw0rd2024";
/// The simulator's CREATING -> RUNNING delay while the managed path runs: long
/// enough to see CREATING in status on a slow cluster.
const MANAGED_CREATE_DELAY: Duration = Duration::from_secs(30);
/// How long cleanup waits for the operator to delete the DcsInstances (and their
/// managed instances) before it stops the operator.
const CLEANUP_DELETE_WAIT: Duration = Duration::from_secs(90);

/// What each Ready instance must end up looking like.
struct Expected {
    name: &'static str,
    ip: &'static str,
    addresses: &'static [&'static str],
    capacity: &'static str,
    engine_version: &'static str,
}

const EXPECTED: &[Expected] = &[
    Expected {
        name: RUNNING,
        ip: "10.0.0.10",
        addresses: &["10.0.0.10"],
        capacity: "2Gi",
        engine_version: "6.0",
    },
    Expected {
        name: CREATING,
        ip: "10.0.0.40",
        addresses: &["10.0.0.40"],
        capacity: "4Gi",
        engine_version: "6.0",
    },
    Expected {
        name: CLUSTER,
        ip: "10.0.1.1,10.0.1.2,10.0.1.3",
        addresses: &["10.0.1.1", "10.0.1.2", "10.0.1.3"],
        capacity: "64Gi",
        engine_version: "5.0",
    },
];

// The identity path (docs/keyless.md, Option A).

/// The audience of the tokens the operator mints, and the simulated IdP's client
/// id: a dedicated one, never the API server's.
const IDENTITY_AUDIENCE: &str = "dcs-operator-e2e";
/// The simulated IAM identity provider (`spec.identity.idpId`).
const IDP_ID: &str = "e2e-idp";
/// The ServiceAccount the IdP maps (labelled for the operator).
const READER_SA: &str = "e2e-reader";
/// A ServiceAccount without the label: the operator must not mint for it.
const UNLABELLED_SA: &str = "e2e-unlabelled";
/// The label that lets the operator act as a ServiceAccount.
const IDENTITY_LABEL: &str = "dcs.operator.dev/identity";
/// The DcsInstances of the identity path.
const IDENTITY: &str = "identity";
const IDENTITY_UNLABELLED: &str = "identity-unlabelled";
/// What the identity DcsInstance must end up looking like.
const IDENTITY_EXPECTED: Expected = Expected {
    name: IDENTITY,
    ip: "10.0.0.50",
    addresses: &["10.0.0.50"],
    capacity: "2Gi",
    engine_version: "6.0",
};
/// How long the identity DcsInstance may take to become Ready: a first exchange
/// that fails is retried after a backoff (10s, 20s, 40s, …).
const IDENTITY_READY_WAIT: Duration = Duration::from_secs(120);
/// Secret keys that would hold cloud credentials (compared in lower case, without
/// `-` and `_`): with workload identity none may exist in the namespace.
const CREDENTIAL_KEYS: &[&str] = &["accesskey", "secretkey", "securitytoken", "authtoken"];

/// Tests in this file share one cluster: never run two at once.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: cargo test --test e2e -- --ignored"]
async fn operator_against_a_real_cluster() {
    let _serial = SERIAL.lock().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();

    let client = Client::try_default()
        .await
        .expect("no Kubernetes configuration: point the current kubeconfig at a test cluster");
    install_crd(&client).await;

    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let namespace = format!("dcs-e2e-{}", &suffix[..8]);
    let mut env = Env {
        client: client.clone(),
        instances_file: std::env::temp_dir().join(format!("{namespace}-instances.yaml")),
        jwks_file: std::env::temp_dir().join(format!("{namespace}-jwks.json")),
        namespace,
        stop: None,
        controller: None,
        simulator: None,
        forwarder: None,
        cluster_rbac: Vec::new(),
    };
    step(&format!("creating namespace {}", env.namespace));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {
                    "name": env.namespace,
                    "labels": {"app.kubernetes.io/created-by": FIELD_MANAGER},
                },
            }))
            .expect("a Namespace"),
        )
        .await
        .expect("cannot create the test namespace");

    // Whatever happens in the scenario, clean up before reporting it.
    let outcome = AssertUnwindSafe(scenario(&mut env)).catch_unwind().await;
    env.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// What the scenario started, so cleanup can stop it even after a failed assertion.
struct Env {
    client: Client,
    namespace: String,
    instances_file: PathBuf,
    /// The copy of the cluster's JWKS the simulator's IAM trusts.
    jwks_file: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    controller: Option<JoinHandle<()>>,
    simulator: Option<SimHandle>,
    /// Stands in front of the simulator for the identity path.
    forwarder: Option<Forwarder>,
    /// Cluster-scoped RBAC objects applied for the operator: (kind, name).
    cluster_rbac: Vec<(&'static str, String)>,
}

impl Env {
    async fn cleanup(&mut self) {
        // DcsInstances first, while the operator runs: a `Delete` one holds the
        // cleanup finalizer until the operator has deleted its instance.
        if self.controller.is_some() {
            self.delete_dcs_instances().await;
        }
        step("cleanup: stopping the operator and the simulator");
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut controller) = self.controller.take()
            && tokio::time::timeout(Duration::from_secs(15), &mut controller)
                .await
                .is_err()
        {
            eprintln!("e2e: the controller did not stop within 15s; aborting it");
            controller.abort();
        }
        if let Some(simulator) = self.simulator.take() {
            simulator.shutdown().await;
        }
        // Only now: the operator reaches the identity DcsInstances' endpoint through
        // it while it deletes them.
        drop(self.forwarder.take());
        let _ = std::fs::remove_file(&self.instances_file);
        let _ = std::fs::remove_file(&self.jwks_file);
        // With the operator gone nobody removes its finalizers: without this the
        // DcsInstances (and the namespace) would wait forever.
        self.release_finalizers().await;

        // Namespaced RBAC goes with the namespace; the cluster-scoped part does not.
        for (kind, name) in std::mem::take(&mut self.cluster_rbac) {
            step(&format!("cleanup: deleting {kind} {name}"));
            let deleted = match kind {
                "ClusterRole" => Api::<ClusterRole>::all(self.client.clone())
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
                _ => Api::<ClusterRoleBinding>::all(self.client.clone())
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            };
            match deleted {
                Ok(()) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => eprintln!("e2e: cannot delete {kind} {name}: {error}"),
            }
        }

        step(&format!("cleanup: deleting namespace {}", self.namespace));
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        match namespaces
            .delete(&self.namespace, &DeleteParams::background())
            .await
        {
            Ok(_) => {
                // Best effort: wait a while so back-to-back runs do not pile up.
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    match namespaces.get_opt(&self.namespace).await {
                        Ok(None) => return,
                        Ok(Some(_)) | Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                    }
                }
                eprintln!(
                    "e2e: namespace {} is still terminating; it will go on its own",
                    self.namespace
                );
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => eprintln!("e2e: cannot delete namespace {}: {error}", self.namespace),
        }
    }
}

impl Env {
    /// Deletes every DcsInstance of the namespace and waits (a while) until they are
    /// gone: the operator deletes the managed instances and releases the objects.
    async fn delete_dcs_instances(&self) {
        step("cleanup: deleting the DcsInstances while the operator still runs");
        let instances: Api<DcsInstance> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Err(error) = instances
            .delete_collection(&DeleteParams::background(), &ListParams::default())
            .await
        {
            eprintln!("e2e: cannot delete the DcsInstances: {error}");
            return;
        }
        let deadline = Instant::now() + CLEANUP_DELETE_WAIT;
        loop {
            match instances.list_metadata(&ListParams::default()).await {
                Ok(list) if list.items.is_empty() => return,
                Ok(list) if Instant::now() >= deadline => {
                    let left: Vec<String> = list.items.iter().map(|o| o.name_any()).collect();
                    eprintln!(
                        "e2e: DcsInstances still there after {CLEANUP_DELETE_WAIT:?}: {left:?}; their finalizers are removed below"
                    );
                    return;
                }
                Err(error) if Instant::now() >= deadline => {
                    eprintln!("e2e: cannot list the DcsInstances: {error}");
                    return;
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    /// Removes the operator's finalizers (DcsInstances: cleanup; Secrets: in-use)
    /// from whatever still carries them. Runs after the operator stopped. The
    /// simulator's instances go with it; on a real cloud this would orphan them,
    /// which is why the DcsInstances are deleted first.
    async fn release_finalizers(&self) {
        let instances: Api<DcsInstance> = Api::namespaced(self.client.clone(), &self.namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let held = |finalizers: &[String], ours: &str| finalizers.iter().any(|f| f == ours);
        let without = |finalizers: &[String], ours: &str| -> Vec<String> {
            finalizers.iter().filter(|f| *f != ours).cloned().collect()
        };
        match instances.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                for object in list.items {
                    let finalizers = object.finalizers();
                    if !held(finalizers, CLEANUP_FINALIZER) {
                        continue;
                    }
                    let name = object.name_any();
                    step(&format!(
                        "cleanup: removing {CLEANUP_FINALIZER} from DcsInstance {name}"
                    ));
                    let patch = json!({"metadata": {
                        "finalizers": without(finalizers, CLEANUP_FINALIZER),
                        "resourceVersion": object.resource_version(),
                    }});
                    if let Err(error) = instances
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        eprintln!("e2e: cannot release DcsInstance {name}: {error}");
                    }
                }
            }
            Err(error) => eprintln!("e2e: cannot list the DcsInstances: {error}"),
        }
        match secrets.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                for object in list.items {
                    let finalizers = object.finalizers();
                    if !held(finalizers, IN_USE_FINALIZER) {
                        continue;
                    }
                    let name = object.name_any();
                    step(&format!(
                        "cleanup: removing {IN_USE_FINALIZER} from Secret {name}"
                    ));
                    let patch = json!({"metadata": {
                        "finalizers": without(finalizers, IN_USE_FINALIZER),
                        "resourceVersion": object.resource_version(),
                    }});
                    if let Err(error) = secrets
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        eprintln!("e2e: cannot release Secret {name}: {error}");
                    }
                }
            }
            Err(error) => eprintln!("e2e: cannot list the Secrets: {error}"),
        }
    }
}

fn step(what: &str) {
    eprintln!("e2e: {what}");
}

/// Installs (or updates) the CRD and waits until it is Established and discovered.
async fn install_crd(client: &Client) {
    step("installing the DcsInstance CRD (server-side apply)");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = DcsInstance::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("cannot apply the DcsInstance CRD (does the kubeconfig user have cluster-admin?)");
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("the CRD was not Established within 60s")
    .expect("watching the CRD failed");
    eventually(
        "API discovery serves dcsinstances",
        Duration::from_secs(60),
        || async {
            check_api_served(client)
                .await
                .map_err(|error| format!("{error:#}"))
        },
    )
    .await;
}

/// The chart's RBAC, moved into the test namespace: what the ServiceAccount may do
/// is exactly what the committed rendering grants.
fn chart_rbac_for(namespace: &str) -> Vec<Value> {
    let rename = |name: &Value| format!("{}-{namespace}", name.as_str().expect("a name"));
    serde_yaml::Deserializer::from_str(CHART_RBAC)
        .map(|document| Value::deserialize(document).expect("tests/fixtures/rbac.yaml"))
        .filter(|object| !object.is_null())
        .map(|mut object| {
            let kind = object["kind"].as_str().expect("a kind").to_string();
            if object["metadata"]["namespace"] == CHART_NAMESPACE {
                object["metadata"]["namespace"] = Value::from(namespace);
            }
            // Cluster-scoped: a name of its own, so a real install is never changed.
            if kind.starts_with("Cluster") {
                object["metadata"]["name"] = Value::from(rename(&object["metadata"]["name"]));
            }
            if kind == "ClusterRoleBinding" {
                object["roleRef"]["name"] = Value::from(rename(&object["roleRef"]["name"]));
            }
            // `get_mut`, not `object["subjects"]`: indexing a Value mutably inserts
            // `"subjects": null` into objects that have none (a ServiceAccount), which
            // the API server refuses as a field not declared in the schema.
            let subjects = object.get_mut("subjects").and_then(Value::as_array_mut);
            for subject in subjects.into_iter().flatten() {
                assert_eq!(subject["namespace"], CHART_NAMESPACE, "{subject}");
                subject["namespace"] = Value::from(namespace);
            }
            object
        })
        .collect()
}

/// Server-side applies one object of a kind known to `apply_chart_rbac`.
async fn apply_typed<K>(api: Api<K>, object: &Value)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let name = object["metadata"]["name"].as_str().expect("a name");
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap_or_else(|error| panic!("cannot apply {} {name}: {error}", object["kind"]));
}

/// Applies the chart's RBAC and returns a client acting as its ServiceAccount
/// (impersonated), for the operator alone.
async fn operator_client(env: &mut Env) -> Client {
    let ns = env.namespace.clone();
    step("applying the chart's RBAC (tests/fixtures/rbac.yaml) in the test namespace");
    let objects = chart_rbac_for(&ns);
    let mut service_account = None;
    for object in &objects {
        let client = env.client.clone();
        let kind = object["kind"].as_str().expect("a kind");
        let name = object["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_string();
        match kind {
            "ServiceAccount" => {
                service_account = Some(name);
                apply_typed(Api::<ServiceAccount>::namespaced(client, &ns), object).await;
            }
            "Role" => apply_typed(Api::<Role>::namespaced(client, &ns), object).await,
            "RoleBinding" => apply_typed(Api::<RoleBinding>::namespaced(client, &ns), object).await,
            "ClusterRole" => {
                // Recorded first: cleanup deletes it even if applying fails halfway.
                env.cluster_rbac.push(("ClusterRole", name));
                apply_typed(Api::<ClusterRole>::all(client), object).await;
            }
            "ClusterRoleBinding" => {
                env.cluster_rbac.push(("ClusterRoleBinding", name));
                apply_typed(Api::<ClusterRoleBinding>::all(client), object).await;
            }
            other => {
                panic!("tests/fixtures/rbac.yaml holds a {other}; teach the e2e test to apply it")
            }
        }
    }
    let service_account =
        service_account.expect("tests/fixtures/rbac.yaml holds no ServiceAccount");

    // The identity and groups a token of that ServiceAccount would carry.
    let mut config = kube::Config::infer()
        .await
        .expect("no Kubernetes configuration");
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:{service_account}"));
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_string(),
    ]);
    let client = Client::try_from(config).expect("cannot build the impersonating client");

    // RBAC reaches the authorizer's cache within moments; wait for it.
    let instances: Api<DcsInstance> = Api::namespaced(client.clone(), &ns);
    eventually(
        "the chart's RBAC to let the ServiceAccount list DcsInstances",
        Duration::from_secs(30),
        || async {
            instances
                .list(&Default::default())
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        },
    )
    .await;
    // The impersonation holds: what the chart does not grant is refused.
    match Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("the operator's ServiceAccount should not list ConfigMaps: {other:?}"),
    }
    // The operator's start-up check, under the chart's RBAC (API discovery).
    check_api_served(&client)
        .await
        .expect("the start-up check fails under the chart's RBAC");
    client
}

async fn scenario(env: &mut Env) {
    let client = env.client.clone();
    let ns = env.namespace.clone();
    let instances: Api<DcsInstance> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    invalid_spec_is_refused(&instances).await;

    step("starting the operator in demo mode");
    std::fs::write(&env.instances_file, INSTANCES_FILE).expect("cannot write the instances file");
    // The identity flags need the simulator's address before the operator (and with
    // it the simulator) starts: the forwarder's stands in for it.
    let forwarder = Forwarder::start().await;
    let identity_url = forwarder.url.clone();
    env.forwarder = Some(forwarder);
    let args = run_args(&ns, &env.instances_file, &identity_url);
    let operator_client = operator_client(env).await;
    let operator = build(operator_client.clone(), &args, Arc::new(SystemClock))
        .await
        .expect("cannot build the operator");
    let simulator = operator
        .simulator
        .expect("demo mode starts a simulator (RunArgs.simulator is set)");
    env.forwarder
        .as_ref()
        .expect("the forwarder")
        .forward_to(simulator.addr());
    env.simulator = Some(simulator);
    let (stop, stopped) = oneshot::channel::<()>();
    env.stop = Some(stop);
    env.controller = Some(tokio::spawn(controller::run(
        operator.shared.clone(),
        vec![ns.clone()],
        async move {
            let _ = stopped.await;
        },
    )));

    step("applying DcsInstances");
    for (name, id) in [
        (RUNNING, RUNNING_ID),
        (CREATING, CREATING_ID),
        (CLUSTER, CLUSTER_ID),
    ] {
        apply_instance(&instances, name, id).await;
    }

    // The simulator flips CREATING to RUNNING 15s after it started: look now.
    step("CREATING instance: Ready=False reason Creating");
    eventually(
        "the CREATING instance to report Creating",
        Duration::from_secs(14),
        || {
            let instances = instances.clone();
            async move {
                let object = instances.get(CREATING).await.map_err(|e| e.to_string())?;
                let status = object.status.clone().unwrap_or_default();
                expect_eq("status.status", status.status.as_deref(), Some("CREATING"))?;
                let ready = condition(&object, "Ready")?;
                expect_eq("Ready.status", ready.status.as_str(), "False")?;
                expect_eq("Ready.reason", ready.reason.as_str(), "Creating")?;
                let synced = condition(&object, "Synced")?;
                expect_eq("Synced.status", synced.status.as_str(), "True")?;
                Ok(())
            }
        },
    )
    .await;

    step("every instance becomes Ready with its status and connection Secret");
    for expected in EXPECTED {
        eventually(
            &format!("{} to be Ready", expected.name),
            Duration::from_secs(60),
            || check_ready(&instances, &secrets, expected, expected.ip),
        )
        .await;
    }

    step("printer columns (server-side Table)");
    check_table(&client, &ns).await;

    step("an IP change in DCS reaches status.ip and the Secret's host");
    let mut set = serde_json::Map::new();
    set.insert("ip".into(), Value::from("10.9.9.9"));
    assert!(
        env.simulator
            .as_ref()
            .expect("simulator")
            .state()
            .update_instance(PROJECT, RUNNING_ID, set),
        "the simulator does not know {RUNNING_ID}"
    );
    let moved = Expected {
        name: RUNNING,
        ip: "10.9.9.9",
        addresses: &["10.9.9.9"],
        capacity: "2Gi",
        engine_version: "6.0",
    };
    eventually("the new IP in status and Secret", POLL_INTERVAL * 3, || {
        check_ready(&instances, &secrets, &moved, moved.ip)
    })
    .await;

    step("no churn: nothing is rewritten over three poll intervals");
    let before = resource_versions(&instances, &secrets).await;
    // Poll intervals carry up to 10% jitter; add a margin on top.
    tokio::time::sleep(POLL_INTERVAL * 3 + POLL_INTERVAL / 2 + Duration::from_secs(3)).await;
    let after = resource_versions(&instances, &secrets).await;
    assert_eq!(
        before, after,
        "resourceVersions changed although nothing in DCS did (left: before, right: after)"
    );
    // The operator kept polling meanwhile (else the no-churn check proves nothing).
    for expected in [&moved, &EXPECTED[1], &EXPECTED[2]] {
        check_ready(&instances, &secrets, expected, expected.ip)
            .await
            .unwrap_or_else(|error| panic!("{} after the quiet period: {error}", expected.name));
    }

    managed_path(env).await;
    identity_path(env, &operator_client, &identity_url).await;
    step("all checks passed");
}

/// The managed path: create in the simulator exactly once, CREATING -> RUNNING with
/// the connection Secret, then delete: the instance goes (404) before the object.
async fn managed_path(env: &mut Env) {
    let client = env.client.clone();
    let ns = env.namespace.clone();
    let instances: Api<DcsInstance> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let simulator = env.simulator.as_ref().expect("simulator");
    let sim = simulator.shared_state();
    sim.set_write_config(WriteConfig {
        create_delay: MANAGED_CREATE_DELAY,
        ..sim.write_config()
    });
    let before = sim.counters();

    step("managed: a password Secret and a Manage DcsInstance with deletionPolicy Delete");
    let password_secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": MANAGED_PASSWORD_SECRET},
        "type": "Opaque",
        "stringData": {"password": MANAGED_PASSWORD},
    });
    secrets
        .patch(
            MANAGED_PASSWORD_SECRET,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&password_secret),
        )
        .await
        .expect("cannot apply the password Secret");
    let manifest = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "DcsInstance",
        "metadata": {"name": MANAGED},
        "spec": {
            "managementPolicy": "Manage",
            "deletionPolicy": "Delete",
            "projectId": PROJECT,
            "passwordSecretRef": {"name": MANAGED_PASSWORD_SECRET, "key": "password"},
            "instance": {
                "engine": "Redis",
                "engineVersion": "6.0",
                "capacity": "2Gi",
                "specCode": "redis.ha.xu1.large.r2.2",
                "availabilityZones": ["cn-north-4a", "cn-north-4b"],
                "vpcId": "27d99e17-42f2-4751-818f-5c8c6c03ff15",
                "subnetId": "ec2f34b9-20eb-4872-85bd-bea9fc943128",
                "tags": [{"key": "suite", "value": "e2e"}],
            },
        },
    });
    instances
        .patch(
            MANAGED,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap_or_else(|error| panic!("cannot apply DcsInstance {MANAGED}: {error}"));

    step("managed: the create is recorded (annotations, cleanup finalizer, status.instanceId)");
    eventually(
        "the managed instance's id to be recorded (the operator's ServiceAccount needs `patch` on dcsinstances; the complaint quotes Synced)",
        Duration::from_secs(60),
        || check_recorded(&instances),
    )
    .await;
    let object = instances
        .get(MANAGED)
        .await
        .expect("the managed DcsInstance");
    let uid = object.metadata.uid.clone().expect("a uid");
    let id = object
        .status
        .as_ref()
        .and_then(|s| s.instance_id.clone())
        .expect("status.instanceId");

    step("managed: the simulator holds one instance, with the ownership tag and the default name");
    let fields = sim
        .instance(PROJECT, &id)
        .unwrap_or_else(|| panic!("the simulator does not know the recorded id {id}"));
    assert_eq!(
        fields.get("name").and_then(Value::as_str),
        Some(format!("{ns}-{MANAGED}").as_str()),
        "the default instance name is <namespace>-<name>: {fields:?}"
    );
    for (key, value) in [(OWNER_TAG_KEY, uid.as_str()), ("suite", "e2e")] {
        assert!(
            has_tag(&fields, key, value),
            "the instance lacks the tag {key}={value}: {fields:?}"
        );
    }
    let owned: Vec<_> = sim
        .project_instances(PROJECT)
        .into_iter()
        .filter(|instance| has_tag(instance, OWNER_TAG_KEY, &uid))
        .collect();
    assert_eq!(owned.len(), 1, "instances tagged with this uid: {owned:?}");

    step("managed: CREATING in status (Ready=False, Creating)");
    eventually(
        "the managed instance to report CREATING",
        MANAGED_CREATE_DELAY - Duration::from_secs(5),
        || {
            let instances = instances.clone();
            async move {
                let object = instances.get(MANAGED).await.map_err(|e| e.to_string())?;
                let status = object.status.clone().unwrap_or_default();
                expect_eq("status.status", status.status.as_deref(), Some("CREATING"))?;
                let ready = condition(&object, "Ready")?;
                expect_eq("Ready.status", ready.status.as_str(), "False")?;
                expect_eq("Ready.reason", ready.reason.as_str(), "Creating")
            }
        },
    )
    .await;

    step("managed: RUNNING, Ready, and the connection Secret with the password");
    eventually(
        "the managed instance to be Ready with its Secret",
        MANAGED_CREATE_DELAY + POLL_INTERVAL * 3,
        || check_managed_ready(&instances, &secrets, &id),
    )
    .await;
    let after = sim.counters();
    assert_eq!(
        after.requests_for("create") - before.requests_for("create"),
        1,
        "exactly one CreateInstance request"
    );
    assert_eq!(
        after.applied_for("create") - before.applied_for("create"),
        1,
        "exactly one instance created"
    );

    step("managed: a resize is one call, then EXTENDING, then RUNNING at 4Gi");
    let resize =
        json!({"spec": {"instance": {"capacity": "4Gi", "specCode": "redis.ha.xu1.large.r2.4"}}});
    instances
        .patch(MANAGED, &PatchParams::default(), &Patch::Merge(&resize))
        .await
        .unwrap_or_else(|error| panic!("cannot resize DcsInstance {MANAGED}: {error}"));
    let resize_delay = sim.write_config().resize_delay;
    eventually(
        "the managed instance to report EXTENDING",
        resize_delay,
        || {
            let instances = instances.clone();
            async move {
                let object = instances.get(MANAGED).await.map_err(|e| e.to_string())?;
                let status = object.status.clone().unwrap_or_default();
                expect_eq("status.status", status.status.as_deref(), Some("EXTENDING"))
            }
        },
    )
    .await;
    eventually(
        "the managed instance to be RUNNING at 4Gi",
        resize_delay + POLL_INTERVAL * 3,
        || {
            let instances = instances.clone();
            async move {
                let object = instances.get(MANAGED).await.map_err(|e| e.to_string())?;
                let status = object.status.clone().unwrap_or_default();
                expect_eq("status.status", status.status.as_deref(), Some("RUNNING"))?;
                expect_eq("status.capacity", status.capacity.as_deref(), Some("4Gi"))
            }
        },
    )
    .await;
    let resized = sim.counters();
    assert_eq!(
        resized.requests_for("resize") - before.requests_for("resize"),
        1,
        "exactly one ResizeInstance request"
    );

    step("managed: deleting the DcsInstance deletes the instance first");
    instances
        .delete(MANAGED, &DeleteParams::default())
        .await
        .expect("cannot delete the managed DcsInstance");
    eventually(
        "the managed DcsInstance to be gone",
        Duration::from_secs(120),
        || {
            let instances = instances.clone();
            async move {
                match instances
                    .get_opt(MANAGED)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    None => Ok(()),
                    Some(object) => Err(format!(
                        "still there (finalizers {:?}); conditions: {:?}",
                        object.metadata.finalizers,
                        object.status.map(|s| s.conditions)
                    )),
                }
            }
        },
    )
    .await;
    assert!(
        sim.instance(PROJECT, &id).is_none(),
        "the DcsInstance is gone but the simulator still has the instance {id}"
    );
    // As DCS says it: ShowInstance answers 404 DCS.3022.
    let dcs = DcsClient::new(ClientConfig::default(), Arc::new(SystemClock)).expect("a DCS client");
    let keys = Credentials::access_key(
        SimConfig::DEFAULT_ACCESS_KEY,
        SecretString::new(SimConfig::DEFAULT_SECRET_KEY),
        None,
    );
    match dcs
        .show_instance(&simulator.endpoint(), &keys, PROJECT, &id)
        .await
    {
        Err(error) if error.is_instance_not_found() => {}
        other => {
            panic!("ShowInstance of the deleted instance: expected 404 DCS.3022, got {other:?}")
        }
    }
    let after = sim.counters();
    assert_eq!(
        after.applied_for("delete") - before.applied_for("delete"),
        1,
        "exactly one DELETE applied"
    );
    assert_eq!(
        after.requests_for("create") - before.requests_for("create"),
        1,
        "no create after the first"
    );
    sim.set_write_config(WriteConfig::default());
}

/// The operator's `run` arguments, parsed like the command line so the defaults are
/// the binary's own.
fn run_args(namespace: &str, instances_file: &Path, identity_url: &str) -> RunArgs {
    let instances_file = instances_file.display().to_string();
    let poll = format!("{}s", POLL_INTERVAL.as_secs());
    let cli = Cli::try_parse_from([
        "dcs-operator",
        "run",
        "--namespace",
        namespace,
        "--default-poll-interval",
        poll.as_str(),
        "--simulator",
        instances_file.as_str(),
        // The simulator's keys are the operator's default credentials in demo mode:
        // creating and deleting with them needs this grant (docs/managing.md).
        "--default-credentials-manage-namespaces",
        namespace,
        // Workload identity (docs/keyless.md): minting only in this namespace, with
        // a dedicated audience; ID and federated tokens only to the simulator's IAM,
        // temporary keys only to it (it is no region endpoint).
        "--identity-namespaces",
        namespace,
        "--identity-audience",
        IDENTITY_AUDIENCE,
        "--iam-endpoint",
        identity_url,
        "--identity-endpoints",
        identity_url,
    ])
    .unwrap_or_else(|error| panic!("the operator's command line does not parse: {error}"));
    let Command::Run(args) = cli.command else {
        panic!("not the run command")
    };
    args
}

/// Workload identity, Option A of docs/keyless.md, end to end: a real ServiceAccount
/// token minted by the API server (TokenRequest, as the operator under the chart's
/// RBAC), checked against the cluster's own signing keys by the simulator's IAM,
/// exchanged for temporary keys that sign the DCS calls. No key is ever written to
/// the cluster.
async fn identity_path(env: &mut Env, operator: &Client, identity_url: &str) {
    let client = env.client.clone();
    let ns = env.namespace.clone();
    let instances: Api<DcsInstance> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let sim = env.simulator.as_ref().expect("simulator").shared_state();

    // The static copies a real IdP setup makes (docs/keyless.md, Option A, steps 1,
    // 2 and 6): IAM does not fetch the cluster's signing keys, it is given a copy of
    // them and of the issuer. When the cluster's signing key rotates, that copy must
    // be uploaded again. Read with the test's own kubeconfig, as `kubectl get --raw`.
    step("identity: copying the cluster's issuer and JWKS (the static copy an IdP needs)");
    let discovery = raw_get(&client, "/.well-known/openid-configuration")
        .await
        .unwrap_or_else(|error| panic!("{ISSUER_DISCOVERY_HINT}: {error}"));
    let issuer = serde_json::from_str::<Value>(&discovery)
        .ok()
        .and_then(|document| document["issuer"].as_str().map(str::to_string))
        .filter(|issuer| !issuer.is_empty())
        .unwrap_or_else(|| panic!("the OpenID configuration names no issuer: {discovery}"));
    let jwks = raw_get(&client, "/openid/v1/jwks")
        .await
        .unwrap_or_else(|error| panic!("{ISSUER_DISCOVERY_HINT}: {error}"));
    std::fs::write(&env.jwks_file, &jwks).expect("cannot write the JWKS copy");

    step(&format!(
        "identity: the simulator's IAM gets IdP {IDP_ID} (issuer {issuer}, client id {IDENTITY_AUDIENCE}, sub system:serviceaccount:{ns}:{READER_SA}) and the JWKS copy"
    ));
    let document = sim_identity_document(&env.jwks_file, &issuer, &ns);
    let config = parse_identity_config(&document, None).unwrap_or_else(|error| {
        panic!(
            "the simulator refuses the cluster's JWKS or the IdP (it trusts RSA keys only, as IAM verifies RS256): {error}"
        )
    });
    sim.set_identity(config).unwrap_or_else(|error| {
        panic!("the simulator refuses the identity configuration: {error}")
    });
    let view = sim.identity_view();
    assert!(
        view["jwks_keys"]
            .as_array()
            .is_some_and(|keys| !keys.is_empty()),
        "the simulator trusts no key of the cluster's JWKS: {view}"
    );

    // The chart grants minting only in the namespaces listed in identity.namespaces;
    // its default rendering (what the operator runs under so far) grants none.
    step("identity: under the chart's default RBAC the operator may not mint tokens");
    for (verb, resource, subresource) in IDENTITY_GRANTS {
        let allowed = may(operator, &ns, verb, resource, subresource)
            .await
            .unwrap_or_else(|error| panic!("SelfSubjectAccessReview: {error}"));
        assert!(
            !allowed,
            "the chart's default RBAC already allows {verb} {resource}{}{subresource}: the identity Role would prove nothing",
            if subresource.is_empty() { "" } else { "/" }
        );
    }
    step("identity: applying the Role and RoleBinding the chart renders for an identity namespace");
    for object in chart_identity_rbac_for(&ns) {
        match object["kind"].as_str() {
            Some("Role") => {
                apply_typed(Api::<Role>::namespaced(client.clone(), &ns), &object).await
            }
            Some("RoleBinding") => {
                apply_typed(Api::<RoleBinding>::namespaced(client.clone(), &ns), &object).await
            }
            other => panic!("the chart's identity RBAC holds a {other:?}"),
        }
    }
    eventually(
        "the identity Role to let the operator mint tokens and read ServiceAccounts",
        Duration::from_secs(30),
        || async {
            for (verb, resource, subresource) in IDENTITY_GRANTS {
                if !may(operator, &ns, verb, resource, subresource).await? {
                    return Err(format!("not allowed yet: {verb} {resource} {subresource}"));
                }
            }
            Ok(())
        },
    )
    .await;

    step(&format!(
        "identity: ServiceAccounts {READER_SA} (labelled {IDENTITY_LABEL}) and {UNLABELLED_SA} (not)"
    ));
    for (name, labelled) in [(READER_SA, true), (UNLABELLED_SA, false)] {
        let mut account = json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name},
            // The operator mints its tokens; no pod needs one (docs/keyless.md).
            "automountServiceAccountToken": false,
        });
        if labelled {
            account["metadata"]["labels"] = json!({IDENTITY_LABEL: "true"});
        }
        apply_typed(accounts.clone(), &account).await;
    }

    let before = sim.counters();
    step("identity: a DcsInstance with spec.identity and no credentials Secret becomes Ready");
    apply_identity_instance(&instances, IDENTITY, READER_SA, identity_url).await;
    eventually(
        "the identity DcsInstance to be Ready (TokenRequest, audience check, IAM exchange, signed DCS calls; the complaint quotes Synced)",
        IDENTITY_READY_WAIT,
        || check_identity_ready(&instances, &secrets),
    )
    .await;
    let after = sim.counters();
    for label in ["iam_id_token", "iam_security_tokens"] {
        let requests = after.requests_for(label) - before.requests_for(label);
        let issued = after.applied_for(label) - before.applied_for(label);
        assert!(
            requests >= 1 && issued >= 1,
            "the simulator's IAM saw {requests} {label} request(s), {issued} issuing: the DcsInstance is Ready without the exchange?"
        );
    }

    step("identity: no Secret in the namespace holds cloud credentials");
    let object = instances
        .get(IDENTITY)
        .await
        .expect("the identity DcsInstance");
    let uid = object.metadata.uid.clone().expect("a uid");
    let mut held = Vec::new();
    let mut owned = Vec::new();
    for secret in secrets
        .list(&Default::default())
        .await
        .expect("cannot list Secrets")
    {
        let name = secret.name_any();
        for key in secret.data.iter().flat_map(|data| data.keys()) {
            let plain: String = key
                .chars()
                .filter(|c| *c != '-' && *c != '_')
                .collect::<String>()
                .to_ascii_lowercase();
            if CREDENTIAL_KEYS.contains(&plain.as_str()) {
                held.push(format!("Secret {name} key {key}"));
            }
        }
        if secret
            .owner_references()
            .iter()
            .any(|owner| owner.uid == uid)
        {
            owned.push(name);
        }
    }
    assert!(held.is_empty(), "keys in the namespace: {held:?}");
    assert_eq!(
        owned,
        [format!("{IDENTITY}-dcs")],
        "the identity DcsInstance owns only its connection Secret"
    );

    step(
        "identity: an unlabelled ServiceAccount gives TokenRequestFailed, and nothing is exchanged",
    );
    let before = sim.counters();
    apply_identity_instance(&instances, IDENTITY_UNLABELLED, UNLABELLED_SA, identity_url).await;
    eventually(
        "the DcsInstance naming an unlabelled ServiceAccount to report TokenRequestFailed",
        Duration::from_secs(60),
        || {
            let instances = instances.clone();
            async move {
                let object = instances
                    .get(IDENTITY_UNLABELLED)
                    .await
                    .map_err(|e| e.to_string())?;
                let synced = condition(&object, "Synced")?;
                expect_eq("Synced.status", synced.status.as_str(), "False")?;
                expect_eq(
                    "Synced.reason",
                    synced.reason.as_str(),
                    "TokenRequestFailed",
                )?;
                if !synced.message.contains(IDENTITY_LABEL) {
                    return Err(format!(
                        "Synced.message does not name the label {IDENTITY_LABEL}: {}",
                        synced.message
                    ));
                }
                let ready = condition(&object, "Ready")?;
                expect_eq("Ready.status", ready.status.as_str(), "False")
            }
        },
    )
    .await;
    let after = sim.counters();
    for label in ["iam_id_token", "iam_security_tokens"] {
        assert_eq!(
            after.requests_for(label),
            before.requests_for(label),
            "{label} requests while the only new identity is refused before minting"
        );
    }
    let secret_name = format!("{IDENTITY_UNLABELLED}-dcs");
    assert!(
        secrets
            .get_opt(&secret_name)
            .await
            .expect("cannot read Secrets")
            .is_none(),
        "Secret {secret_name} exists although its DcsInstance never observed anything"
    );
    // The refusal touched no one else.
    check_identity_ready(&instances, &secrets)
        .await
        .unwrap_or_else(|error| panic!("{IDENTITY} after the refusal: {error}"));
}

/// What the identity Role grants, as SelfSubjectAccessReview asks it:
/// (verb, resource, subresource).
const IDENTITY_GRANTS: [(&str, &str, &str); 2] = [
    ("create", "serviceaccounts", "token"),
    ("get", "serviceaccounts", ""),
];

/// Where ServiceAccount issuer discovery is missing.
const ISSUER_DISCOVERY_HINT: &str = "the API server does not serve ServiceAccount issuer discovery (/.well-known/openid-configuration and /openid/v1/jwks; its --service-account-issuer must be a URL)";

/// A DcsInstance observing the identity instance through `service_account`, with no
/// credentials Secret, at the simulator (through the forwarder).
async fn apply_identity_instance(
    instances: &Api<DcsInstance>,
    name: &str,
    service_account: &str,
    endpoint: &str,
) {
    let manifest = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "DcsInstance",
        "metadata": {"name": name},
        "spec": {
            "managementPolicy": "Observe",
            "instanceId": IDENTITY_ID,
            "projectId": PROJECT,
            "endpoint": endpoint,
            "identity": {"serviceAccountName": service_account, "idpId": IDP_ID},
        },
    });
    instances
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap_or_else(|error| panic!("cannot apply DcsInstance {name}: {error}"));
}

/// The identity DcsInstance is Ready with its connection Secret; a complaint quotes
/// its Synced condition (TokenRequestFailed or IdentityExchangeFailed say why).
async fn check_identity_ready(
    instances: &Api<DcsInstance>,
    secrets: &Api<Secret>,
) -> Result<(), String> {
    let expected = &IDENTITY_EXPECTED;
    match check_ready(instances, secrets, expected, expected.ip).await {
        Ok(()) => Ok(()),
        Err(complaint) => {
            let synced = match instances.get(IDENTITY).await {
                Ok(object) => condition(&object, "Synced")
                    .map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
                    .unwrap_or_else(|none| none),
                Err(error) => error.to_string(),
            };
            Err(format!("{complaint} (Synced: {synced})"))
        }
    }
}

/// GET a path of the API server as the test's own identity (`kubectl get --raw`).
async fn raw_get(client: &Client, path: &str) -> Result<String, String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))
}

/// Whether `client` may do `verb` on `resource` (and `subresource`) of the
/// ServiceAccount READER_SA in `namespace` (a SelfSubjectAccessReview, which any
/// authenticated identity may create).
async fn may(
    client: &Client,
    namespace: &str,
    verb: &str,
    resource: &str,
    subresource: &str,
) -> Result<bool, String> {
    let mut attributes = json!({
        "namespace": namespace,
        "verb": verb,
        "group": "",
        "resource": resource,
        "name": READER_SA,
    });
    if !subresource.is_empty() {
        attributes["subresource"] = Value::from(subresource);
    }
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }))
    .expect("a SelfSubjectAccessReview");
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer.status.is_some_and(|status| status.allowed))
}

/// The simulator's identity configuration (the `identity` block of an instance
/// file, as `dcs-operator simulate --instances` reads it): the JWKS copy and one
/// IdP whose mapping admits exactly the labelled ServiceAccount.
fn sim_identity_document(jwks_file: &Path, issuer: &str, namespace: &str) -> String {
    json!({"identity": {
        "jwks_file": jwks_file.display().to_string(),
        "idps": [{
            "id": IDP_ID,
            "issuer": issuer,
            "client_id": IDENTITY_AUDIENCE,
            "subjects": [format!("system:serviceaccount:{namespace}:{READER_SA}")],
        }],
    }})
    .to_string()
}

/// The Role and RoleBinding the chart renders for an identity namespace, moved into
/// the test namespace and bound to the operator's ServiceAccount there (the
/// identity the operator's client impersonates).
fn chart_identity_rbac_for(namespace: &str) -> Vec<Value> {
    let objects: Vec<Value> = serde_yaml::Deserializer::from_str(CHART_IDENTITY)
        .map(|document| Value::deserialize(document).expect("tests/fixtures/chart/identity.yaml"))
        .filter(|object| object["metadata"]["namespace"] == CHART_IDENTITY_NAMESPACE)
        .map(|mut object| {
            object["metadata"]["namespace"] = Value::from(namespace);
            let subjects = object.get_mut("subjects").and_then(Value::as_array_mut);
            for subject in subjects.into_iter().flatten() {
                assert_eq!(subject["namespace"], CHART_NAMESPACE, "{subject}");
                subject["namespace"] = Value::from(namespace);
            }
            object
        })
        .collect();
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["Role", "RoleBinding"],
        "tests/fixtures/chart/identity.yaml in namespace {CHART_IDENTITY_NAMESPACE}"
    );
    objects
}

/// A loopback TCP forwarder in front of the demo simulator, for the identity path.
///
/// In demo mode `run::build` would default the IAM endpoint to the simulator and
/// allow it temporary keys; the e2e passes `--iam-endpoint` and
/// `--identity-endpoints` explicitly instead, as a real install does, so that those
/// flags are what is tested. They are parsed before `run::build` starts the
/// simulator on a free port of its own choosing, so they name this forwarder, which
/// is pointed at the simulator once that runs (the DcsInstances' `spec.endpoint`
/// names it too: only `--identity-endpoints` lets keys go there). It copies bytes
/// both ways unchanged (the Host header the requests were signed with included):
/// to the operator it is the simulator at another address. Connections made
/// before it has a target are closed. Dropping it closes everything.
struct Forwarder {
    /// `http://127.0.0.1:PORT`.
    url: String,
    target: Arc<OnceLock<SocketAddr>>,
    task: JoinHandle<()>,
}

impl Forwarder {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot listen on loopback for the forwarder");
        let addr = listener.local_addr().expect("the forwarder's address");
        let target: Arc<OnceLock<SocketAddr>> = Arc::default();
        let task = tokio::spawn({
            let target = target.clone();
            async move {
                // Owned here: aborting the task drops it, which aborts every
                // connection it still copies.
                let mut connections = tokio::task::JoinSet::new();
                loop {
                    while connections.try_join_next().is_some() {}
                    let mut inbound = match listener.accept().await {
                        Ok((inbound, _)) => inbound,
                        Err(error) => {
                            eprintln!("e2e: the forwarder cannot accept: {error}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Some(to) = target.get().copied() else {
                        continue;
                    };
                    connections.spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Self {
            url: format!("http://{addr}"),
            target,
            task,
        }
    }

    fn forward_to(&self, target: SocketAddr) {
        self.target
            .set(target)
            .expect("the forwarder is pointed at the simulator once");
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The managed object's create is recorded: `create-attempt` says this uid's
/// attempt was created, `instance-id` and status.instanceId agree, and the cleanup
/// finalizer is held (deletionPolicy Delete).
async fn check_recorded(instances: &Api<DcsInstance>) -> Result<(), String> {
    let object = instances.get(MANAGED).await.map_err(|e| e.to_string())?;
    let why = || {
        condition(&object, "Synced")
            .map(|c| format!(" (Synced: {} {}: {})", c.status, c.reason, c.message))
            .unwrap_or_default()
    };
    let uid = object.metadata.uid.clone().unwrap_or_default();
    let annotations = object.annotations();
    let attempt = annotations
        .get(CREATE_ATTEMPT_ANNOTATION)
        .ok_or_else(|| format!("no {CREATE_ATTEMPT_ANNOTATION} yet{}", why()))?;
    // `<uid>/<n>/created`: n is 1 unless an attempt was superseded or throttled.
    let created = attempt
        .strip_prefix(&format!("{uid}/"))
        .and_then(|rest| rest.strip_suffix("/created"))
        .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 1));
    if !created {
        return Err(format!(
            "{CREATE_ATTEMPT_ANNOTATION} is {attempt:?}{}",
            why()
        ));
    }
    let recorded = annotations.get(INSTANCE_ID_ANNOTATION).cloned();
    let status_id = object.status.as_ref().and_then(|s| s.instance_id.clone());
    expect_eq("status.instanceId", status_id.as_ref(), recorded.as_ref())?;
    if recorded.is_none() {
        return Err(format!("no {INSTANCE_ID_ANNOTATION} yet{}", why()));
    }
    if !object.finalizers().iter().any(|f| f == CLEANUP_FINALIZER) {
        return Err(format!(
            "no {CLEANUP_FINALIZER} finalizer: {:?}",
            object.finalizers()
        ));
    }
    Ok(())
}

/// The managed instance is RUNNING and Ready, and its connection Secret carries the
/// address the simulator gave it and the password of the password Secret.
async fn check_managed_ready(
    instances: &Api<DcsInstance>,
    secrets: &Api<Secret>,
    id: &str,
) -> Result<(), String> {
    let object = instances.get(MANAGED).await.map_err(|e| e.to_string())?;
    let status = object.status.clone().unwrap_or_default();
    expect_eq("status.instanceId", status.instance_id.as_deref(), Some(id))?;
    expect_eq("status.status", status.status.as_deref(), Some("RUNNING"))?;
    expect_eq("status.capacity", status.capacity.as_deref(), Some("2Gi"))?;
    expect_eq(
        "status.engineVersion",
        status.engine_version.as_deref(),
        Some("6.0"),
    )?;
    let ready = condition(&object, "Ready")?;
    expect_eq("Ready.status", ready.status.as_str(), "True")?;
    expect_eq("Ready.reason", ready.reason.as_str(), "Running")?;
    let synced = condition(&object, "Synced")?;
    expect_eq("Synced.status", synced.status.as_str(), "True")?;
    let host = status
        .addresses
        .as_ref()
        .and_then(|a| a.first().cloned())
        .ok_or_else(|| "no address in status yet".to_string())?;
    let secret_name = format!("{MANAGED}-dcs");
    let secret = secrets
        .get_opt(&secret_name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("Secret {secret_name} does not exist"))?;
    for (key, value) in [
        ("host", host.clone()),
        ("port", "6379".to_string()),
        ("password", MANAGED_PASSWORD.to_string()),
        ("uri", format!("redis://:{MANAGED_PASSWORD}@{host}:6379")),
    ] {
        let found = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned());
        expect_eq(&format!("Secret data[{key}]"), found, Some(value))?;
    }
    Ok(())
}

/// Whether a simulator instance carries the tag `key=value`.
fn has_tag(fields: &serde_json::Map<String, Value>, key: &str, value: &str) -> bool {
    fields
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|tag| tag["key"] == key && tag["value"] == value)
}

/// The CEL rule `!(has(self.region) && has(self.endpoint))` is enforced by the API server.
async fn invalid_spec_is_refused(instances: &Api<DcsInstance>) {
    step("a DcsInstance with both region and endpoint is refused (CEL)");
    let object: DcsInstance = serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "DcsInstance",
        "metadata": {"name": "both-region-and-endpoint"},
        "spec": {
            "instanceId": RUNNING_ID,
            "projectId": PROJECT,
            "region": "cn-north-4",
            "endpoint": "https://dcs.cn-north-4.example.com",
        },
    }))
    .expect("a DcsInstance");
    match instances.create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            assert!(
                status
                    .message
                    .contains("at most one of region and endpoint"),
                "the refusal should quote the CEL rule's message: {status:?}"
            );
        }
        Err(error) => panic!("expected 422 Invalid, got {error}"),
        Ok(created) => panic!(
            "the API server accepted a DcsInstance with both region and endpoint: {:?}",
            created.spec
        ),
    }
}

async fn apply_instance(instances: &Api<DcsInstance>, name: &str, instance_id: &str) {
    let manifest = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "DcsInstance",
        "metadata": {"name": name},
        "spec": {"instanceId": instance_id, "projectId": PROJECT},
    });
    instances
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap_or_else(|error| panic!("cannot apply DcsInstance {name}: {error}"));
}

/// Everything a Ready instance and its connection Secret must show.
async fn check_ready(
    instances: &Api<DcsInstance>,
    secrets: &Api<Secret>,
    expected: &Expected,
    ip: &str,
) -> Result<(), String> {
    let name = expected.name;
    let object = instances.get(name).await.map_err(|e| e.to_string())?;
    let status = object
        .status
        .clone()
        .ok_or_else(|| "no status yet".to_string())?;
    expect_eq("status.status", status.status.as_deref(), Some("RUNNING"))?;
    expect_eq("status.ip", status.ip.as_deref(), Some(ip))?;
    expect_eq("status.port", status.port, Some(6379))?;
    let addresses: Vec<String> = expected.addresses.iter().map(|a| a.to_string()).collect();
    expect_eq(
        "status.addresses",
        status.addresses.as_ref(),
        Some(&addresses),
    )?;
    expect_eq(
        "status.capacity",
        status.capacity.as_deref(),
        Some(expected.capacity),
    )?;
    expect_eq("status.engine", status.engine.as_deref(), Some("Redis"))?;
    expect_eq(
        "status.engineVersion",
        status.engine_version.as_deref(),
        Some(expected.engine_version),
    )?;
    expect_eq("status.errorCode", status.error_code.as_deref(), None)?;
    expect_eq(
        "status.observedGeneration",
        status.observed_generation,
        object.metadata.generation,
    )?;
    let secret_name = format!("{name}-dcs");
    expect_eq(
        "status.connectionSecretName",
        status.connection_secret_name.as_deref(),
        Some(secret_name.as_str()),
    )?;
    expect_eq(
        "status.binding.name",
        status.binding.as_ref().map(|b| b.name.as_str()),
        Some(secret_name.as_str()),
    )?;
    let ready = condition(&object, "Ready")?;
    expect_eq("Ready.status", ready.status.as_str(), "True")?;
    expect_eq("Ready.reason", ready.reason.as_str(), "Running")?;
    let synced = condition(&object, "Synced")?;
    expect_eq("Synced.status", synced.status.as_str(), "True")?;

    let secret = secrets
        .get_opt(&secret_name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("Secret {secret_name} does not exist"))?;
    expect_eq(
        "Secret type",
        secret.type_.as_deref(),
        Some("servicebinding.io/redis"),
    )?;
    let host = expected.addresses[0];
    let port = "6379";
    for (key, value) in [
        ("type", "redis".to_string()),
        ("provider", "huaweicloud-dcs".to_string()),
        ("host", host.to_string()),
        ("port", port.to_string()),
        ("uri", format!("redis://{host}:{port}")),
        ("addresses", expected.addresses.join(",")),
        ("engine", "Redis".to_string()),
        ("engine-version", expected.engine_version.to_string()),
    ] {
        let found = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned());
        expect_eq(&format!("Secret data[{key}]"), found, Some(value))?;
    }
    expect_eq(
        "Secret data[password] (no passwordSecretRef)",
        secret.data.as_ref().and_then(|data| data.get("password")),
        None,
    )?;
    let owner = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .ok_or_else(|| "the Secret has no controller ownerReference".to_string())?;
    expect_eq("owner kind", owner.kind.as_str(), "DcsInstance")?;
    expect_eq(
        "owner apiVersion",
        owner.api_version.clone(),
        format!("{GROUP}/{VERSION}"),
    )?;
    expect_eq("owner name", owner.name.as_str(), name)?;
    expect_eq(
        "owner uid",
        Some(owner.uid.as_str()),
        object.metadata.uid.as_deref(),
    )?;
    expect_eq(
        "Secret label app.kubernetes.io/managed-by",
        secret
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("dcs-operator"),
    )?;
    Ok(())
}

/// The Table form `kubectl get` shows: column names and filled cells.
async fn check_table(client: &Client, ns: &str) {
    let request = http::Request::get(format!(
        "/apis/{GROUP}/{VERSION}/namespaces/{ns}/dcsinstances"
    ))
    .header(
        http::header::ACCEPT,
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .body(Vec::new())
    .expect("a request");
    let text = client
        .request_text(request)
        .await
        .expect("cannot list DcsInstances as a Table");
    let table: Value = serde_json::from_str(&text).expect("the Table is JSON");
    assert_eq!(table["kind"], "Table", "not a Table: {text}");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    let wanted = ["Status", "IP", "Port", "Capacity", "Error", "Ready", "Age"];
    // Name comes first, then the default columns in order (priority 1 ones may follow).
    assert_eq!(
        columns.get(1..1 + wanted.len()),
        Some(&wanted[..]),
        "printer columns: {columns:?}"
    );
    let index = |name: &str| columns.iter().position(|c| *c == name).unwrap();
    let rows = table["rows"].as_array().expect("rows");
    let row = rows
        .iter()
        .find(|row| row["object"]["metadata"]["name"] == RUNNING)
        .unwrap_or_else(|| panic!("no row for {RUNNING}: {text}"));
    let cells = row["cells"].as_array().expect("cells");
    let cell = |name: &str| &cells[index(name)];
    assert_eq!(cells[0], RUNNING, "Name cell: {cells:?}");
    assert_eq!(cell("Status"), "RUNNING", "cells: {cells:?}");
    assert_eq!(cell("IP"), "10.0.0.10", "cells: {cells:?}");
    assert_eq!(cell("Port"), 6379, "cells: {cells:?}");
    assert_eq!(cell("Capacity"), "2Gi", "cells: {cells:?}");
    assert_eq!(cell("Ready"), "True", "cells: {cells:?}");
    assert!(
        cell("Age").as_str().is_some_and(|age| !age.is_empty()),
        "Age cell: {cells:?}"
    );
    // No fault code: the cell is empty (null or "").
    assert!(
        cell("Error").is_null() || cell("Error") == "",
        "Error cell: {cells:?}"
    );
}

/// resourceVersion of every DcsInstance and Secret in the namespace, by kind/name.
async fn resource_versions(
    instances: &Api<DcsInstance>,
    secrets: &Api<Secret>,
) -> Vec<(String, String)> {
    let mut versions = Vec::new();
    for object in instances
        .list(&Default::default())
        .await
        .expect("cannot list DcsInstances")
    {
        versions.push((
            format!("DcsInstance/{}", object.name_any()),
            object.resource_version().unwrap_or_default(),
        ));
    }
    for object in secrets
        .list(&Default::default())
        .await
        .expect("cannot list Secrets")
    {
        versions.push((
            format!("Secret/{}", object.name_any()),
            object.resource_version().unwrap_or_default(),
        ));
    }
    versions.sort();
    versions
}

fn condition(object: &DcsInstance, type_: &str) -> Result<Condition, String> {
    object
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .find(|c| c.type_ == type_)
        .cloned()
        .ok_or_else(|| format!("no {type_} condition yet"))
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(
    what: &str,
    found: T,
    wanted: T,
) -> Result<(), String> {
    if found == wanted {
        Ok(())
    } else {
        Err(format!("{what}: found {found:?}, want {wanted:?}"))
    }
}

/// Polls every second until `check` passes; fails with its last complaint on timeout.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(()) => return,
            Err(complaint) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {complaint}")
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Runs without a cluster: the simulator accepts the instance file the e2e test writes.
#[test]
fn instances_file_matches_the_scenario() {
    let instances = dcs_operator::dcs::sim::parse_instances(INSTANCES_FILE)
        .expect("the e2e instance file parses");
    let ids: Vec<&str> = instances.iter().filter_map(|i| i.instance_id()).collect();
    assert_eq!(ids, [RUNNING_ID, CREATING_ID, CLUSTER_ID, IDENTITY_ID]);
    assert!(instances.iter().all(|i| i.project_id == PROJECT));
    let creating = &instances[1];
    assert_eq!(creating.fields["status"], "CREATING");
    assert_eq!(creating.transitions.len(), 1);
    assert_eq!(creating.transitions[0].after, Duration::from_secs(15));
    assert_eq!(creating.transitions[0].set["status"], "RUNNING");
    assert_eq!(instances[2].fields["ip"], EXPECTED[2].ip);
    assert_eq!(instances[3].fields["ip"], IDENTITY_EXPECTED.ip);
    assert_eq!(instances[3].fields["status"], "RUNNING");
    // The instance IDs must pass the CRD's pattern (lower-case UUIDs).
    for id in ids {
        assert!(
            id.len() == 36
                && id.chars().enumerate().all(|(n, c)| match n {
                    8 | 13 | 18 | 23 => c == '-',
                    _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
                }),
            "{id} is not a lower-case UUID"
        );
    }
}

/// Runs without a cluster: the example DcsInstances read as DcsInstances, and the demo
/// ones name instances of examples/sim-instances.yaml in the right project.
#[test]
fn examples_are_consistent() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let read = |name: &str| -> Vec<Value> {
        let text = std::fs::read_to_string(root.join(name)).expect(name);
        serde_yaml::Deserializer::from_str(&text)
            .map(|document| Value::deserialize(document).expect(name))
            .collect()
    };
    let sim = dcs_operator::dcs::sim::load_instances(&root.join("sim-instances.yaml"))
        .expect("examples/sim-instances.yaml");
    let demo: Vec<DcsInstance> = read("demo-dcsinstance.yaml")
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("a DcsInstance"))
        .collect();
    let mut statuses = Vec::new();
    for instance in &demo {
        let spec = &instance.spec;
        assert!(spec.region.is_none() && spec.endpoint.is_none());
        assert!(spec.credentials_secret_ref.is_none());
        let found = sim
            .iter()
            .find(|s| s.instance_id() == spec.instance_id.as_deref())
            .unwrap_or_else(|| panic!("{:?} is not in sim-instances.yaml", spec.instance_id));
        assert_eq!(spec.project_id.as_deref(), Some(found.project_id.as_str()));
        statuses.push(found.fields["status"].clone());
    }
    assert_eq!(statuses, ["RUNNING", "CREATING"]);

    let real: Vec<DcsInstance> = read("dcsinstance.yaml")
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("a DcsInstance"))
        .collect();
    let spec = &real[0].spec;
    assert!(spec.region.is_some() && spec.credentials_secret_ref.is_some());
    assert!(spec.password_secret_ref.is_some());
    assert_eq!(spec.poll_interval.as_deref(), Some("60s"));

    let secrets = read("credentials-secret.yaml");
    let credentials = &secrets[0]["stringData"];
    for key in ["accessKey", "secretKey", "projectId"] {
        assert!(
            credentials[key].is_string(),
            "credentials Secret lacks {key}"
        );
    }
    let password = spec.password_secret_ref.as_ref().unwrap();
    assert!(
        secrets
            .iter()
            .any(|s| s["metadata"]["name"] == password.name.as_str()
                && s["stringData"][password.key.as_str()].is_string()),
        "examples/credentials-secret.yaml lacks the password Secret dcsinstance.yaml names"
    );

    let deployment = read("app-deployment.yaml").remove(0);
    let secret_name = format!("{}-dcs", demo[0].metadata.name.as_deref().unwrap());
    let text = serde_json::to_string(&deployment).unwrap();
    assert!(text.contains(&secret_name) && text.contains("/bindings/dcs"));
}

/// Runs without a cluster: the chart's RBAC, moved into a test namespace, keeps its
/// rules and bindings and names nothing in `dcs-system` or of a real install.
#[test]
fn chart_rbac_moves_into_the_test_namespace() {
    let objects = chart_rbac_for("dcs-e2e-x");
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert!(kinds.contains(&"ServiceAccount") && kinds.contains(&"ClusterRole"));
    let text = serde_json::to_string(&objects).unwrap();
    assert!(!text.contains(CHART_NAMESPACE), "{text}");
    for object in &objects {
        let name = object["metadata"]["name"].as_str().unwrap();
        match object["kind"].as_str().unwrap() {
            "ClusterRole" => assert!(name.ends_with("-dcs-e2e-x")),
            "ClusterRoleBinding" => {
                assert!(name.ends_with("-dcs-e2e-x"));
                let role = object["roleRef"]["name"].as_str().unwrap();
                assert!(
                    objects
                        .iter()
                        .any(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == role)
                );
            }
            _ => assert_eq!(object["metadata"]["namespace"], "dcs-e2e-x"),
        }
    }
    let original: Vec<Value> = serde_yaml::Deserializer::from_str(CHART_RBAC)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|o| !o.is_null())
        .collect();
    for (moved, original) in objects.iter().zip(&original) {
        assert_eq!(
            moved["rules"], original["rules"],
            "the rules are the chart's own"
        );
    }
}

/// Runs without a cluster: the identity Role and RoleBinding are the chart's, moved
/// into the test namespace, hold exactly the two rules the identity path proves
/// enough, and bind the ServiceAccount the operator's client impersonates.
#[test]
fn chart_identity_rbac_moves_into_the_test_namespace() {
    let objects = chart_identity_rbac_for("dcs-e2e-x");
    let (role, binding) = (&objects[0], &objects[1]);
    for object in &objects {
        assert_eq!(object["metadata"]["namespace"], "dcs-e2e-x");
    }
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]},
        ]),
        "the identity Role's rules"
    );
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let impersonated: Vec<Value> = chart_rbac_for("dcs-e2e-x")
        .into_iter()
        .filter(|o| o["kind"] == "ServiceAccount")
        .map(|o| json!({"kind": "ServiceAccount", "name": o["metadata"]["name"], "namespace": "dcs-e2e-x"}))
        .collect();
    assert_eq!(binding["subjects"], Value::from(impersonated));
    // IDENTITY_GRANTS asks the API server about exactly these rules.
    let rules = role["rules"].as_array().unwrap();
    for (verb, resource, subresource) in IDENTITY_GRANTS {
        let resource = match subresource {
            "" => resource.to_string(),
            sub => format!("{resource}/{sub}"),
        };
        assert!(
            rules
                .iter()
                .any(|r| r["resources"] == json!([resource]) && r["verbs"] == json!([verb])),
            "{verb} {resource}"
        );
    }
}

/// Runs without a cluster: the simulator takes the identity configuration the
/// identity path gives it (here with the test JWKS of tests/fixtures/iam).
#[test]
fn sim_identity_document_is_accepted() {
    let jwks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iam/jwks.json");
    let document = sim_identity_document(&jwks, "https://kubernetes.default.svc", "dcs-e2e-x");
    let config = parse_identity_config(&document, None).expect("the identity block");
    assert!(config.jwks.is_some(), "the JWKS file is read");
    assert_eq!(config.idps.len(), 1);
    let idp = &config.idps[0];
    assert_eq!(idp.id, IDP_ID);
    assert_eq!(idp.issuer, "https://kubernetes.default.svc");
    assert_eq!(idp.client_id, IDENTITY_AUDIENCE);
    assert_eq!(idp.subjects, ["system:serviceaccount:dcs-e2e-x:e2e-reader"]);
    assert!(config.is_enabled());
}

/// Runs without a cluster: the cloud half of the identity path, rehearsed with a
/// token signed by the repository's test key instead of the API server's. The
/// simulator, as demo mode starts it with this file's instances and given the
/// identity configuration the identity path writes, exchanges a ServiceAccount-shaped
/// token at the forwarder's address for temporary keys that sign a DCS call through
/// it (the signature covers the Host header, which the forwarder leaves alone); the
/// unlabelled ServiceAccount's `sub` is not mapped.
#[tokio::test]
async fn identity_exchange_through_the_forwarder() {
    use dcs_operator::dcs::iam::test_tokens::{TEST_KEY_ID, service_account_claims, sign_test_jwt};
    use dcs_operator::dcs::sim::{Simulator, parse_instances};
    use dcs_operator::dcs::{Endpoint, IamClient};

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iam");
    let key = std::fs::read(fixtures.join("test-key.pem")).expect("the test key");
    let clock = Arc::new(SystemClock);
    let simulator = Simulator::start(
        SimConfig {
            instances: parse_instances(INSTANCES_FILE).expect("the instance file"),
            ..SimConfig::with_default_keys()
        },
        "127.0.0.1:0".parse().unwrap(),
        clock.clone(),
    )
    .await
    .expect("the simulator");
    let forwarder = Forwarder::start().await;

    // Before it has a target, the forwarder closes what it accepts.
    let mut early = tokio::net::TcpStream::connect(forwarder.url.trim_start_matches("http://"))
        .await
        .expect("the forwarder listens");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut early, &mut byte),
    )
    .await
    .expect("the forwarder closes a connection it cannot forward");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    forwarder.forward_to(simulator.addr());

    let sim = simulator.state();
    let document = sim_identity_document(&fixtures.join("jwks.json"), ISSUER, "dcs-e2e-x");
    sim.set_identity(parse_identity_config(&document, None).expect("the identity block"))
        .expect("the simulator takes it");

    let at = Endpoint::parse(&forwarder.url).expect("the forwarder's URL is an endpoint");
    let iam = IamClient::new(&ClientConfig::default()).expect("an IAM client");
    let token = |account: &str| {
        let claims = service_account_claims(
            ISSUER,
            IDENTITY_AUDIENCE,
            "dcs-e2e-x",
            account,
            chrono::Utc::now() - chrono::TimeDelta::seconds(5),
            600,
        );
        SecretString::new(sign_test_jwt(&claims, &key, TEST_KEY_ID))
    };
    let refused = iam
        .federated_token(&at, IDP_ID, &token(UNLABELLED_SA))
        .await
        .expect_err("only the reader's sub is mapped");
    assert!(
        refused
            .code_and_message()
            .contains("IdTokenSubjectNotMapped"),
        "{}",
        refused.code_and_message()
    );
    let (federated, _) = iam
        .federated_token(&at, IDP_ID, &token(READER_SA))
        .await
        .unwrap_or_else(|e| panic!("the ID-token exchange: {}", e.code_and_message()));
    let temporary = iam
        .temporary_credentials(&at, &federated, 3600)
        .await
        .unwrap_or_else(|e| panic!("the security-token exchange: {}", e.code_and_message()));

    let dcs = DcsClient::new(ClientConfig::default(), clock).expect("a DCS client");
    let shown = dcs
        .show_instance(&at, &temporary.credentials(), PROJECT, IDENTITY_ID)
        .await
        .expect("ShowInstance with the temporary keys, through the forwarder");
    assert_eq!(shown.value.ip.as_deref(), Some(IDENTITY_EXPECTED.ip));
    let counters = sim.counters();
    assert_eq!(counters.applied_for("iam_id_token"), 1);
    assert_eq!(counters.applied_for("iam_security_tokens"), 1);

    drop(forwarder);
    simulator.shutdown().await;
}

/// Runs without a cluster: the operator's command line parses into what the
/// scenario needs (a renamed flag fails here rather than on a cluster).
#[test]
fn run_args_parse() {
    let url = "http://127.0.0.1:40000";
    let args = run_args("dcs-e2e-x", Path::new("/tmp/instances.yaml"), url);
    assert_eq!(args.namespaces, ["dcs-e2e-x"]);
    assert_eq!(args.default_poll_interval, POLL_INTERVAL);
    assert_eq!(
        args.simulator.as_deref(),
        Some(Path::new("/tmp/instances.yaml"))
    );
    assert_eq!(args.default_credentials_manage_namespaces, ["dcs-e2e-x"]);
    assert_eq!(args.identity_namespaces, ["dcs-e2e-x"]);
    assert_eq!(args.identity_audience.as_deref(), Some(IDENTITY_AUDIENCE));
    assert_eq!(args.iam_endpoint.as_deref(), Some(url));
    assert_eq!(args.identity_endpoints, [url]);
}
