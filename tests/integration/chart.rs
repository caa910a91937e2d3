//! The Helm chart's committed renderings (tests/fixtures/chart, made by
//! `bash .ci/render-chart` and compared with Helm's output by .ci/run) checked
//! against the Kubernetes types: no unknown field, a restricted pod, only flags
//! `dcs-operator run` accepts, and exactly the RBAC the operator needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{CommandFactory as _, Parser as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use dcs_operator::cli::{Cli, Command, RunArgs};

const RELEASE_NAMESPACE: &str = "dcs-system";
const SERVICE_ACCOUNT: &str = "dcs-operator";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The objects of a multi-document YAML file, as JSON (empty documents skipped).
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// Every rendering: (value-set name, objects).
fn fixtures() -> Vec<(String, Vec<Value>)> {
    let dir = root().join("tests/fixtures/chart");
    let mut found: Vec<(String, Vec<Value>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, documents(&path))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn of_kind<T: DeserializeOwned>(objects: &[Value], kind: &str) -> Vec<T> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .collect()
}

/// The Prometheus Operator's ServiceMonitor, as much of it as the chart uses.
/// Refuses unknown fields outright (no k8s-openapi type exists for it).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    selector: LabelSelector,
    endpoints: Vec<ServiceMonitorEndpoint>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorEndpoint {
    port: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
}

/// Deserializes into `T` and serializes again: k8s-openapi drops keys it does not
/// know, so a misspelt field comes back missing and the two differ.
fn round_trip_as<T: DeserializeOwned + Serialize>(object: &Value) -> Result<(), String> {
    let typed: T = serde_path_to_error::deserialize(object.clone())
        .map_err(|e| format!("does not deserialize: {e}"))?;
    let again = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut differences = Vec::new();
    diff("", object, &again, &mut differences);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "does not survive a round trip through its type: {}",
            differences.join("; ")
        ))
    }
}

/// Checks one rendered object against the type of its kind.
fn round_trip(object: &Value) -> Result<(), String> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    match (api_version, kind) {
        ("apps/v1", "Deployment") => round_trip_as::<Deployment>(object),
        ("v1", "ServiceAccount") => round_trip_as::<ServiceAccount>(object),
        ("v1", "Service") => round_trip_as::<Service>(object),
        ("v1", "ConfigMap") => round_trip_as::<ConfigMap>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip_as::<ClusterRole>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip_as::<ClusterRoleBinding>(object)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip_as::<Role>(object),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip_as::<RoleBinding>(object),
        ("networking.k8s.io/v1", "NetworkPolicy") => round_trip_as::<NetworkPolicy>(object),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => round_trip_as::<ServiceMonitor>(object),
        _ => Err(format!(
            "unknown kind {api_version}/{kind}: add its type to tests/integration/chart.rs"
        )),
    }
}

/// Paths where `before` and `after` differ ("<missing>" where a key was dropped).
fn diff(path: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let here = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff(&here, x, y, out),
                    (Some(x), None) => out.push(format!("{here}: {x} was dropped")),
                    (None, Some(y)) => out.push(format!("{here}: {y} was added")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (n, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{n}]"), x, y, out);
            }
        }
        _ if before == after => {}
        _ => out.push(format!("{path}: {before} became {after}")),
    }
}

fn describe(object: &Value) -> String {
    format!(
        "{} {}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The keyless-credentials flags the chart renders (docs/keyless.md). Until
/// src/cli.rs defines one, `run_args` sets it aside and `identity_args` reads it;
/// from then on it is parsed strictly like every other flag.
const IDENTITY_FLAGS: &[&str] = &[
    "identity-namespaces",
    "identity-audience",
    "iam-endpoint",
    "sts-endpoint",
    "identity-endpoints",
    "credentials-from-metadata",
];

/// Whether `dcs-operator run` defines `--<long>`.
fn run_defines(long: &str) -> bool {
    Cli::command()
        .find_subcommand("run")
        .expect("a `run` subcommand")
        .get_arguments()
        .any(|arg| arg.get_long() == Some(long))
}

/// The long flag an argument names (`--flag=value` or `--flag`), if any.
fn flag_of(arg: &str) -> Option<&str> {
    let long = arg.strip_prefix("--")?;
    Some(long.split_once('=').map_or(long, |(flag, _)| flag))
}

/// The container's arguments parsed as `dcs-operator run` parses them, without the
/// keyless flags src/cli.rs does not define yet.
fn run_args(name: &str, args: &[String]) -> RunArgs {
    let args = args.iter().filter(|arg| {
        flag_of(arg).is_none_or(|flag| !IDENTITY_FLAGS.contains(&flag) || run_defines(flag))
    });
    let cli = Cli::try_parse_from(std::iter::once("dcs-operator").chain(args.map(String::as_str)))
        .unwrap_or_else(|e| panic!("{name}.yaml: dcs-operator refuses the args: {e}"));
    let Command::Run(run) = cli.command else {
        panic!("{name}: not the run command");
    };
    run
}

/// What the keyless flags among the container's arguments say.
#[derive(Debug, Default, PartialEq, Eq)]
struct IdentityArgs {
    namespaces: Vec<String>,
    audience: Option<String>,
    iam_endpoint: Option<String>,
    sts_endpoint: Option<String>,
    endpoints: Vec<String>,
    metadata: bool,
}

fn identity_args(name: &str, args: &[String]) -> IdentityArgs {
    let mut out = IdentityArgs::default();
    let list = |value: &str| -> Vec<String> { value.split(',').map(str::to_string).collect() };
    for arg in args {
        let Some(flag) = flag_of(arg).filter(|flag| IDENTITY_FLAGS.contains(flag)) else {
            continue;
        };
        let value = arg.split_once('=').map(|(_, value)| value);
        let once = |slot: &Option<String>| {
            assert!(slot.is_none(), "{name}: --{flag} twice");
            Some(
                value
                    .unwrap_or_else(|| panic!("{name}: --{flag} without =value"))
                    .to_string(),
            )
        };
        match flag {
            "identity-namespaces" => out.namespaces.extend(list(value.unwrap())),
            "identity-audience" => out.audience = once(&out.audience),
            "iam-endpoint" => out.iam_endpoint = once(&out.iam_endpoint),
            "sts-endpoint" => out.sts_endpoint = once(&out.sts_endpoint),
            "identity-endpoints" => out.endpoints.extend(list(value.unwrap())),
            "credentials-from-metadata" => {
                assert!(value.is_none(), "{name}: {arg}: a bare switch");
                out.metadata = true;
            }
            _ => unreachable!(),
        }
    }
    out
}

/// The Deployment's pod and its container's arguments.
fn pod_and_args(objects: &[Value]) -> (k8s_openapi::api::core::v1::PodSpec, Vec<String>) {
    let deployment: Deployment = of_kind(objects, "Deployment").remove(0);
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap_or_default();
    (pod, args)
}

#[test]
fn every_value_set_has_a_rendering() {
    let mut wanted = BTreeSet::from(["default".to_string()]);
    for entry in std::fs::read_dir(root().join("charts/dcs-operator/ci")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(set) = name.strip_suffix("-values.yaml") {
            wanted.insert(set.to_string());
        }
    }
    let found: BTreeSet<String> = fixtures().into_iter().map(|(name, _)| name).collect();
    assert_eq!(found, wanted, "run: bash .ci/render-chart");
    assert!(found.len() >= 4, "default plus at least three value sets");
}

#[test]
fn every_rendered_object_matches_its_schema() {
    let mut checked = 0;
    for (name, objects) in fixtures() {
        assert!(!objects.is_empty(), "{name}.yaml renders nothing");
        for object in &objects {
            round_trip(object).unwrap_or_else(|e| panic!("{name}.yaml: {}: {e}", describe(object)));
            checked += 1;
        }
    }
    for object in documents(&root().join("tests/fixtures/rbac.yaml")) {
        round_trip(&object).unwrap_or_else(|e| panic!("rbac.yaml: {}: {e}", describe(&object)));
    }
    assert!(checked > 20, "only {checked} objects checked");
}

#[test]
fn a_misspelt_field_is_caught() {
    let (_, objects) = fixtures()
        .into_iter()
        .find(|(name, _)| name == "default")
        .unwrap();
    let mut deployment = objects
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    let spec = deployment
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
        .unwrap();
    let containers = spec.remove("containers").unwrap();
    spec.insert("containrs".into(), containers);
    let error = round_trip(&deployment).unwrap_err();
    assert!(error.contains("containrs"), "{error}");

    // A misspelt key in a nested map (the pod's securityContext) as well.
    let mut deployment = fixtures().remove(0).1;
    let deployment = deployment
        .iter_mut()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    let context = deployment
        .pointer_mut("/spec/template/spec/securityContext")
        .and_then(Value::as_object_mut)
        .unwrap();
    let value = context.remove("runAsNonRoot").unwrap();
    context.insert("runAsNonroot".into(), value);
    let error = round_trip(deployment).unwrap_err();
    assert!(error.contains("runAsNonroot"), "{error}");

    // The ServiceMonitor type refuses unknown keys.
    let monitor = serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "metrics", "intervall": "30s"}]},
    });
    let error = round_trip(&monitor).unwrap_err();
    assert!(error.contains("intervall"), "{error}");

    let unknown = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}});
    assert!(round_trip(&unknown).unwrap_err().contains("unknown kind"));
}

#[test]
fn the_chart_crd_is_the_committed_crd() {
    let chart = std::fs::read(root().join("charts/dcs-operator/crds/dcsinstance.yaml")).unwrap();
    let committed = std::fs::read(root().join("crds/dcsinstance.yaml")).unwrap();
    assert!(
        chart == committed,
        "charts/dcs-operator/crds/dcsinstance.yaml differs from crds/dcsinstance.yaml: \
         cp crds/dcsinstance.yaml charts/dcs-operator/crds/"
    );
}

#[test]
fn the_pod_meets_the_restricted_pod_security_standard() {
    for (name, objects) in fixtures() {
        let deployments: Vec<Deployment> = of_kind(&objects, "Deployment");
        assert_eq!(deployments.len(), 1, "{name}.yaml");
        let pod = deployments[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .unwrap();
        let context = pod.security_context.as_ref().unwrap();
        assert_eq!(context.run_as_non_root, Some(true), "{name}");
        assert_eq!(context.run_as_user, Some(65532), "{name}");
        assert_eq!(context.run_as_group, Some(65532), "{name}");
        assert_eq!(
            context.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault"),
            "{name}"
        );
        assert_eq!(pod.automount_service_account_token, Some(true), "{name}");
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some(SERVICE_ACCOUNT),
            "{name}"
        );
        for flag in [pod.host_network, pod.host_pid, pod.host_ipc] {
            assert_ne!(flag, Some(true), "{name}: host namespaces");
        }
        // The restricted standard allows these volume types (and a few more the
        // chart does not use); a projected volume holds only a ServiceAccount token.
        for volume in pod.volumes.iter().flatten() {
            let token_only = volume.projected.as_ref().is_some_and(|projected| {
                let sources = projected.sources.as_deref().unwrap_or_default();
                !sources.is_empty()
                    && sources.iter().all(|source| {
                        let keys: Vec<String> = serde_json::to_value(source)
                            .unwrap()
                            .as_object()
                            .unwrap()
                            .keys()
                            .cloned()
                            .collect();
                        keys == ["serviceAccountToken"]
                    })
            });
            assert!(
                volume.secret.is_some() || volume.config_map.is_some() || token_only,
                "{name}: volume {} is neither a Secret, a ConfigMap nor a projected token",
                volume.name
            );
        }
        assert!(pod.init_containers.is_none() && pod.ephemeral_containers.is_none());
        for container in &pod.containers {
            let context = container.security_context.as_ref().unwrap();
            assert_eq!(context.allow_privilege_escalation, Some(false), "{name}");
            assert_eq!(context.read_only_root_filesystem, Some(true), "{name}");
            assert_ne!(context.privileged, Some(true), "{name}");
            assert_ne!(context.run_as_non_root, Some(false), "{name}");
            let capabilities = context.capabilities.as_ref().unwrap();
            assert_eq!(capabilities.drop, Some(vec!["ALL".to_string()]), "{name}");
            assert!(capabilities.add.is_none(), "{name}: added capabilities");
            let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
                let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap();
                let port = match &get.port {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(p) => {
                        p.clone()
                    }
                    other => panic!("{name}: probe on a port number {other:?}"),
                };
                (get.path.clone().unwrap_or_default(), port)
            };
            assert_eq!(
                probe_path(&container.liveness_probe),
                ("/healthz".to_string(), "metrics".to_string()),
                "{name}"
            );
            assert_eq!(
                probe_path(&container.readiness_probe),
                ("/readyz".to_string(), "metrics".to_string()),
                "{name}"
            );
        }
    }
}

/// Every container argument is one `dcs-operator run` accepts, and the paths and
/// port it names are the ones the pod provides.
#[test]
fn container_args_are_run_flags() {
    for (name, objects) in fixtures() {
        let deployments: Vec<Deployment> = of_kind(&objects, "Deployment");
        let pod = deployments[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .unwrap();
        let container = &pod.containers[0];
        assert!(
            container.command.is_none(),
            "{name}: the image's ENTRYPOINT runs"
        );
        let args = container.args.clone().unwrap_or_default();
        assert_eq!(
            args.first().map(String::as_str),
            Some("run"),
            "{name}: {args:?}"
        );
        let run = run_args(&name, &args);

        let port = container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("metrics"))
            .unwrap()
            .container_port;
        assert_eq!(i32::from(run.metrics_addr.port()), port, "{name}");
        assert!(run.metrics_addr.ip().is_unspecified(), "{name}: reachable");

        let mounts: BTreeMap<String, String> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.mount_path.clone(), m.name.clone()))
            .collect();
        if let Some(dir) = &run.credentials_dir {
            let volume = &mounts[&dir.display().to_string()];
            let source = pod.volumes.iter().flatten().find(|v| &v.name == volume);
            assert!(source.and_then(|v| v.secret.as_ref()).is_some(), "{name}");
        }
        if let Some(file) = &run.simulator {
            let dir = file.parent().unwrap().display().to_string();
            let volume = &mounts[&dir];
            let config_map = pod
                .volumes
                .iter()
                .flatten()
                .find(|v| &v.name == volume)
                .and_then(|v| v.config_map.as_ref())
                .map(|c| c.name.clone())
                .unwrap();
            let maps: Vec<ConfigMap> = of_kind(&objects, "ConfigMap");
            let map = maps
                .iter()
                .find(|m| m.metadata.name.as_deref() == Some(config_map.as_str()))
                .unwrap();
            let key = file.file_name().unwrap().to_string_lossy().into_owned();
            let text = &map.data.as_ref().unwrap()[&key];
            let instances = dcs_operator::dcs::sim::parse_instances(text)
                .unwrap_or_else(|e| panic!("{name}: the demo instances do not parse: {e}"));
            assert!(!instances.is_empty(), "{name}");
        }
        let env: BTreeSet<&str> = container
            .env
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        assert!(env.contains("POD_NAME") && env.contains("POD_NAMESPACE"));
    }
}

/// (apiGroup, resource, resourceNames) -> verbs, for comparing rule sets.
type Rules = BTreeMap<(String, String, Vec<String>), BTreeSet<String>>;

fn rules(list: &[PolicyRule]) -> Rules {
    let mut out = Rules::new();
    for rule in list {
        assert!(rule.non_resource_urls.is_none());
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let names = rule.resource_names.clone().unwrap_or_default();
                let verbs = out
                    .entry((group.clone(), resource.clone(), names))
                    .or_default();
                for verb in &rule.verbs {
                    assert!(verbs.insert(verb.clone()), "{verb} twice on {resource}");
                }
            }
        }
    }
    out
}

fn expected(entries: &[(&str, &str, &[&str], &[&str])]) -> Rules {
    entries
        .iter()
        .map(|(group, resource, names, verbs)| {
            (
                (
                    group.to_string(),
                    resource.to_string(),
                    names.iter().map(|n| n.to_string()).collect(),
                ),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

/// What the controller does in a namespace it serves: watch DcsInstances and list
/// them (also to release a credentials Secret's in-use finalizer), patch their
/// metadata (the cleanup finalizer, the lifecycle annotations; never spec) and
/// status, read and write Secrets (connection Secrets, and the in-use finalizer on
/// credentials Secrets), record Events.
fn operator_rules() -> Rules {
    expected(&[
        (
            "dcs.operator.dev",
            "dcsinstances",
            &[],
            &["get", "list", "watch", "patch"],
        ),
        ("dcs.operator.dev", "dcsinstances/status", &[], &["patch"]),
        (
            "",
            "secrets",
            &[],
            &["get", "list", "watch", "create", "patch"],
        ),
        ("events.k8s.io", "events", &[], &["create", "patch"]),
    ])
}

/// Cluster-wide whatever the install: `get` on the DcsInstance CRD alone, by name,
/// to see it being deleted (every DcsInstance is then treated as Orphan).
fn crd_rules() -> Rules {
    expected(&[(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["dcsinstances.dcs.operator.dev"],
        &["get"],
    )])
}

/// Leader election (src/leader.rs with kube-lease-manager): create the Lease, then
/// get, patch and watch only this release's Lease, by name.
fn lease_rules(lease: &str) -> Rules {
    expected(&[
        ("coordination.k8s.io", "leases", &[], &["create"]),
        (
            "coordination.k8s.io",
            "leases",
            &[lease],
            &["get", "list", "watch", "patch"],
        ),
    ])
}

/// Keyless credentials in a namespace the admin opted in (`--identity-namespaces`):
/// mint tokens for its ServiceAccounts (TokenRequest) and read a ServiceAccount
/// first (its `dcs.operator.dev/identity` label). Nothing else, no list or watch.
fn identity_rules() -> Rules {
    expected(&[
        ("", "serviceaccounts/token", &[], &["create"]),
        ("", "serviceaccounts", &[], &["get"]),
    ])
}

/// The operator's own projected ServiceAccount token, if the pod has one: (the
/// projection, the file's path in the container).
fn projected_token(
    pod: &k8s_openapi::api::core::v1::PodSpec,
) -> Option<(
    k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
    String,
)> {
    let mut found = None;
    for volume in pod.volumes.iter().flatten() {
        let sources = volume.projected.as_ref().and_then(|p| p.sources.clone());
        for source in sources.into_iter().flatten() {
            let Some(token) = source.service_account_token else {
                continue;
            };
            let mount = pod.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == volume.name)
                .unwrap_or_else(|| panic!("the token volume {} is not mounted", volume.name));
            assert_eq!(mount.read_only, Some(true), "{}", volume.name);
            assert!(mount.sub_path.is_none(), "a subPath mount is never rotated");
            let path = format!("{}/{}", mount.mount_path, token.path);
            assert!(
                found.replace((token, path)).is_none(),
                "two projected tokens"
            );
        }
    }
    found
}

#[test]
fn rbac_is_exactly_what_the_operator_uses() {
    for (name, objects) in fixtures() {
        let (_, args) = pod_and_args(&objects);
        let run = run_args(&name, &args);
        let identity = identity_args(&name, &args);

        // Every role, by (namespace or "" for cluster-wide, name).
        let mut granted: BTreeMap<(String, String), Rules> = BTreeMap::new();
        for role in of_kind::<ClusterRole>(&objects, "ClusterRole") {
            let rules = rules(role.rules.as_deref().unwrap_or_default());
            granted.insert((String::new(), role.metadata.name.unwrap()), rules);
        }
        for role in of_kind::<Role>(&objects, "Role") {
            let rules = rules(role.rules.as_deref().unwrap_or_default());
            let key = (
                role.metadata.namespace.unwrap(),
                role.metadata.name.unwrap(),
            );
            granted.insert(key, rules);
        }

        // Bound to the chart's ServiceAccount, each role exactly once.
        let mut bound: BTreeMap<(String, String), Rules> = BTreeMap::new();
        let mut bind = |namespace: String,
                        binding_ns: Option<String>,
                        role_ref: &k8s_openapi::api::rbac::v1::RoleRef,
                        subjects: &[k8s_openapi::api::rbac::v1::Subject]| {
            assert_eq!(subjects.len(), 1, "{name}");
            assert_eq!(subjects[0].kind, "ServiceAccount");
            assert_eq!(subjects[0].name, SERVICE_ACCOUNT);
            assert_eq!(subjects[0].namespace.as_deref(), Some(RELEASE_NAMESPACE));
            let key = match role_ref.kind.as_str() {
                "ClusterRole" => (String::new(), role_ref.name.clone()),
                _ => (binding_ns.clone().unwrap(), role_ref.name.clone()),
            };
            let rules = granted
                .get(&key)
                .unwrap_or_else(|| panic!("{name}: binding to a missing role {key:?}"))
                .clone();
            assert!(
                bound
                    .insert((namespace, role_ref.name.clone()), rules)
                    .is_none()
            );
        };
        for binding in of_kind::<ClusterRoleBinding>(&objects, "ClusterRoleBinding") {
            bind(
                String::new(),
                None,
                &binding.role_ref,
                binding.subjects.as_deref().unwrap(),
            );
        }
        for binding in of_kind::<RoleBinding>(&objects, "RoleBinding") {
            let ns = binding.metadata.namespace.clone().unwrap();
            bind(
                ns.clone(),
                Some(ns),
                &binding.role_ref,
                binding.subjects.as_deref().unwrap(),
            );
        }
        assert_eq!(granted.len(), bound.len(), "{name}: an unbound role");

        // What each scope must grant, from the operator's own flags.
        let mut wanted: BTreeMap<String, Rules> = BTreeMap::new();
        if run.namespaces.is_empty() {
            wanted.insert(String::new(), operator_rules());
        } else {
            for ns in &run.namespaces {
                wanted.insert(ns.clone(), operator_rules());
            }
        }
        for ns in &identity.namespaces {
            let scope = wanted.entry(ns.clone()).or_default();
            for (rule, verbs) in identity_rules() {
                scope.entry(rule).or_default().extend(verbs);
            }
        }
        let cluster = wanted.entry(String::new()).or_default();
        for (rule, verbs) in crd_rules() {
            cluster.entry(rule).or_default().extend(verbs);
        }
        // No grant for the audience check: a SelfSubjectReview is made as the token
        // it presents, never as the operator.
        if run.leader_elect {
            let ns = run
                .lease_namespace
                .clone()
                .unwrap_or_else(|| RELEASE_NAMESPACE.to_string());
            let scope = wanted.entry(ns).or_default();
            for (rule, verbs) in lease_rules(&run.lease_name) {
                scope.entry(rule).or_default().extend(verbs);
            }
        }
        let mut found: BTreeMap<String, Rules> = BTreeMap::new();
        for ((scope, _), rules) in bound {
            let scope_rules = found.entry(scope).or_default();
            for (rule, verbs) in rules {
                scope_rules.entry(rule).or_default().extend(verbs);
            }
        }
        assert_eq!(found, wanted, "{name}.yaml: RBAC");
    }
}

/// tests/fixtures/rbac.yaml (which the e2e test runs the operator under) is the
/// default rendering's RBAC, object for object.
#[test]
fn rbac_fixture_is_the_default_renderings_rbac() {
    let (_, default) = fixtures()
        .into_iter()
        .find(|(name, _)| name == "default")
        .unwrap();
    let rbac_kinds = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let from_default: Vec<Value> = default
        .into_iter()
        .filter(|o| rbac_kinds.contains(&o["kind"].as_str().unwrap_or_default()))
        .collect();
    let fixture = documents(&root().join("tests/fixtures/rbac.yaml"));
    assert_eq!(fixture, from_default, "run: bash .ci/render-chart");
}

/// The values a rendering was made with: the chart's values.yaml with the value
/// set's file (charts/dcs-operator/ci/<name>-values.yaml) merged over it, as Helm does.
fn values_of(set: &str) -> Value {
    fn merge(base: &mut Value, over: Value) {
        match (base, over) {
            (Value::Object(base), Value::Object(over)) => {
                for (key, value) in over {
                    merge(base.entry(key).or_insert(Value::Null), value);
                }
            }
            (base, over) => *base = over,
        }
    }
    let chart = root().join("charts/dcs-operator");
    let mut values = documents(&chart.join("values.yaml")).remove(0);
    if set != "default" {
        let file = chart.join(format!("ci/{set}-values.yaml"));
        for over in documents(&file) {
            merge(&mut values, over);
        }
    }
    values
}

/// (protocol, port) of every egress rule.
fn egress_ports(policy: &NetworkPolicy) -> BTreeSet<(String, String)> {
    let spec = policy.spec.as_ref().unwrap();
    spec.egress
        .iter()
        .flatten()
        .flat_map(|rule| rule.ports.iter().flatten())
        .map(|port| {
            let number = match port.port.as_ref().unwrap() {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
            };
            (port.protocol.clone().unwrap(), number)
        })
        .collect()
}

fn tcp_udp(entries: &[(&str, u16)]) -> BTreeSet<(String, String)> {
    entries
        .iter()
        .map(|(protocol, port)| (protocol.to_string(), port.to_string()))
        .collect()
}

/// Installed with its defaults, the operator may reach DNS, HTTPS (DCS, IAM) and
/// the API server ports (5443 on CCE, 6443 elsewhere), and be reached on its
/// metrics port only.
#[test]
fn the_default_rendering_has_a_network_policy_with_exactly_those_ports() {
    let (_, objects) = fixtures()
        .into_iter()
        .find(|(name, _)| name == "default")
        .unwrap();
    let policies: Vec<NetworkPolicy> = of_kind(&objects, "NetworkPolicy");
    assert_eq!(policies.len(), 1, "default: one NetworkPolicy");
    let policy = &policies[0];
    assert_eq!(
        egress_ports(policy),
        tcp_udp(&[
            ("UDP", 53),
            ("TCP", 53),
            ("TCP", 443),
            ("TCP", 5443),
            ("TCP", 6443)
        ])
    );
    let spec = policy.spec.as_ref().unwrap();
    assert_eq!(
        spec.policy_types.clone().unwrap(),
        vec!["Ingress".to_string(), "Egress".to_string()],
        "both directions are restricted"
    );
    // One ingress rule: the metrics port, from anyone unless metricsFrom says.
    let ingress = spec.ingress.clone().unwrap();
    assert_eq!(ingress.len(), 1);
    let ports: Vec<_> = ingress[0]
        .ports
        .iter()
        .flatten()
        .map(|p| (p.protocol.clone().unwrap(), p.port.clone().unwrap()))
        .collect();
    assert_eq!(
        ports,
        vec![(
            "TCP".to_string(),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into())
        )]
    );
    // It selects the operator's pods.
    let deployment: Deployment = of_kind(&objects, "Deployment").remove(0);
    let pod_labels = deployment
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    let selector = spec
        .pod_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap();
    assert!(!selector.is_empty());
    for (key, value) in &selector {
        assert_eq!(pod_labels.get(key), Some(value), "{key}");
    }
}

/// Every value set renders the NetworkPolicy its values ask for: none with
/// `networkPolicy.enabled=false`, else egress to DNS plus `egressTcpPorts`, and
/// scrapes from `metricsFrom`.
#[test]
fn the_network_policy_follows_its_values() {
    let mut disabled = 0;
    for (name, objects) in fixtures() {
        let values = values_of(&name);
        let wanted = &values["networkPolicy"];
        let policies: Vec<NetworkPolicy> = of_kind(&objects, "NetworkPolicy");
        if wanted["enabled"] == Value::Bool(false) {
            assert!(policies.is_empty(), "{name}: disabled yet rendered");
            disabled += 1;
            continue;
        }
        assert_eq!(policies.len(), 1, "{name}");
        let mut ports = tcp_udp(&[("UDP", 53), ("TCP", 53)]);
        for port in wanted["egressTcpPorts"].as_array().unwrap() {
            ports.insert(("TCP".to_string(), port.as_u64().unwrap().to_string()));
        }
        // The ECS metadata service (operatorIdentity.metadata): port 80 to its
        // address alone; every other rule reaches its ports anywhere.
        let metadata = values["operatorIdentity"]["metadata"] == Value::Bool(true);
        if metadata {
            ports.insert(("TCP".to_string(), "80".to_string()));
        }
        assert_eq!(egress_ports(&policies[0]), ports, "{name}");
        let egress = policies[0].spec.clone().unwrap().egress.unwrap();
        let restricted: Vec<Value> = egress
            .iter()
            .filter(|rule| rule.to.is_some())
            .map(|rule| serde_json::to_value(rule).unwrap())
            .collect();
        let metadata_rule = serde_json::json!({
            "to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}],
            "ports": [{"port": 80, "protocol": "TCP"}],
        });
        let wanted_restricted = if metadata {
            vec![metadata_rule]
        } else {
            vec![]
        };
        assert_eq!(restricted, wanted_restricted, "{name}: egress with a `to`");
        let ingress = policies[0].spec.clone().unwrap().ingress.unwrap();
        let from = serde_json::to_value(ingress[0].from.clone().unwrap_or_default()).unwrap();
        assert_eq!(from, wanted["metricsFrom"], "{name}: metricsFrom");
    }
    assert!(
        disabled >= 1,
        "a value set with networkPolicy.enabled=false"
    );
}

/// `metrics.instanceSeries` becomes `--metrics-instance-series`.
#[test]
fn instance_series_follow_their_value() {
    let mut off = 0;
    for (name, objects) in fixtures() {
        let wanted = values_of(&name)["metrics"]["instanceSeries"]
            .as_bool()
            .unwrap();
        let (_, args) = pod_and_args(&objects);
        let run = run_args(&name, &args);
        assert_eq!(run.metrics_instance_series, wanted, "{name}");
        off += usize::from(!wanted);
    }
    assert!(off >= 1, "a value set with metrics.instanceSeries=false");
}

/// Each rule the chart grants says why, in a comment right above it (the RBAC
/// templates are the only place an admin reads that).
#[test]
fn every_rbac_rule_has_a_comment() {
    // Every rendering (the keyless Roles appear only with identity.namespaces),
    // and the RBAC fixture.
    let mut files = vec![root().join("tests/fixtures/rbac.yaml")];
    let dir = root().join("tests/fixtures/chart");
    for entry in std::fs::read_dir(&dir).unwrap() {
        files.push(entry.unwrap().path());
    }
    files.sort();
    let mut identity_comments = String::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut rules = 0;
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("- apiGroups:") {
                rules += 1;
                assert!(
                    i > 0 && lines[i - 1].trim_start().starts_with('#'),
                    "{}:{}: a rule without a comment above it",
                    file.display(),
                    i + 1
                );
                // The comment block above a keyless rule.
                let keyless = lines[i..]
                    .iter()
                    .take(3)
                    .any(|l| l.contains("serviceaccounts") || l.contains("selfsubjectreviews"));
                if keyless {
                    let start = lines[..i]
                        .iter()
                        .rposition(|l| !l.trim_start().starts_with('#'))
                        .map_or(0, |p| p + 1);
                    identity_comments.push_str(&lines[start..i].join("\n"));
                }
            }
        }
        assert!(rules >= 6, "{}: only {rules} rules", file.display());
    }
    for why in [
        "ANY audience",
        "EVERY ServiceAccount in this namespace",
        "RBAC cannot limit the audience",
        "dcs.operator.dev/identity: \"true\"",
        "never with the API server's",
        "rejects its audience",
    ] {
        assert!(
            identity_comments.contains(why),
            "the keyless RBAC comments do not mention {why:?}"
        );
    }
    let fixture = std::fs::read_to_string(root().join("tests/fixtures/rbac.yaml")).unwrap();
    let rules = fixture
        .lines()
        .filter(|line| line.trim_start().starts_with("- apiGroups:"))
        .count();
    assert!(rules >= 8, "only {rules} rules");
    for why in [
        "dcs.operator.dev/cleanup",
        "dcs.operator.dev/create-attempt",
        "never edits spec",
        "dcs.operator.dev/in-use",
        "treated as deletionPolicy Orphan",
    ] {
        assert!(
            fixture.contains(why),
            "the RBAC comments do not mention {why:?}"
        );
    }
}

/// `defaultCredentials.manageNamespaces` becomes
/// `--default-credentials-manage-namespaces` (absent when empty) and
/// `createLookupWindow` `--create-lookup-window` (absent: the operator's 10m).
#[test]
fn manage_namespaces_and_lookup_window_follow_their_values() {
    let mut set = 0;
    for (name, objects) in fixtures() {
        let values = values_of(&name);
        let deployment: Deployment = of_kind(&objects, "Deployment").remove(0);
        let args = deployment.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        let manage: Vec<String> = values["defaultCredentials"]["manageNamespaces"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: defaultCredentials.manageNamespaces is a list"))
            .iter()
            .map(|ns| ns.as_str().unwrap().to_string())
            .collect();
        let window = values["createLookupWindow"].as_str().unwrap_or_default();
        assert_eq!(
            args.iter()
                .any(|a| a.starts_with("--default-credentials-manage-namespaces")),
            !manage.is_empty(),
            "{name}: {args:?}"
        );
        assert_eq!(
            args.iter().any(|a| a.starts_with("--create-lookup-window")),
            !window.is_empty(),
            "{name}: {args:?}"
        );
        let run = run_args(&name, &args);
        assert_eq!(run.default_credentials_manage_namespaces, manage, "{name}");
        let wanted = if window.is_empty() {
            std::time::Duration::from_secs(600)
        } else {
            dcs_operator::cli::parse_duration(window).unwrap()
        };
        assert_eq!(run.create_lookup_window, wanted, "{name}");
        set += usize::from(!manage.is_empty() && !window.is_empty());
    }
    assert!(
        set >= 1,
        "a value set with defaultCredentials.manageNamespaces and createLookupWindow"
    );
}

/// Strings of a list value (empty when absent).
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| item.as_str().unwrap().to_string())
        .collect()
}

/// A string value, `None` when empty.
fn non_empty(value: &Value) -> Option<String> {
    value
        .as_str()
        .filter(|text| !text.is_empty())
        .map(str::to_string)
}

/// The API server's usual audiences: a token minted for one of them is a Kubernetes
/// credential, so neither the tenants' nor the operator's own audience may be one.
const API_SERVER_AUDIENCES: &[&str] = &[
    "https://kubernetes.default.svc.cluster.local",
    "https://kubernetes.default.svc",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// `identity.*` become the keyless flags, each only when set, and the grant to mint
/// tokens (a Role + RoleBinding `<release>-identity`) exists in exactly the
/// namespaces of `identity.namespaces`: none without, and no ClusterRole ever
/// touches ServiceAccounts.
#[test]
fn identity_values_become_flags_and_per_namespace_rbac() {
    let (mut with, mut without) = (0, 0);
    for (name, objects) in fixtures() {
        let values = values_of(&name);
        let identity = &values["identity"];
        let wanted = IdentityArgs {
            namespaces: strings(&identity["namespaces"]),
            audience: non_empty(&identity["audience"]),
            iam_endpoint: non_empty(&identity["iamEndpoint"]),
            sts_endpoint: non_empty(&identity["stsEndpoint"]),
            endpoints: strings(&identity["endpoints"]),
            metadata: values["operatorIdentity"]["metadata"].as_bool().unwrap(),
        };
        let (_, args) = pod_and_args(&objects);
        assert_eq!(identity_args(&name, &args), wanted, "{name}: {args:?}");

        let touches_service_accounts = |list: &[PolicyRule]| {
            rules(list).keys().any(|(group, resource, _)| {
                group.is_empty() && resource.starts_with("serviceaccounts")
            })
        };
        for role in of_kind::<ClusterRole>(&objects, "ClusterRole") {
            assert!(
                !touches_service_accounts(role.rules.as_deref().unwrap_or_default()),
                "{name}: ClusterRole {:?} grants on ServiceAccounts",
                role.metadata.name
            );
        }
        let minting: BTreeSet<(String, String)> = of_kind::<Role>(&objects, "Role")
            .into_iter()
            .filter(|role| touches_service_accounts(role.rules.as_deref().unwrap_or_default()))
            .map(|role| {
                assert_eq!(
                    rules(role.rules.as_deref().unwrap_or_default()),
                    identity_rules(),
                    "{name}: {:?} grants more than minting",
                    role.metadata.name
                );
                (
                    role.metadata.namespace.unwrap(),
                    role.metadata.name.unwrap(),
                )
            })
            .collect();
        let expected: BTreeSet<(String, String)> = wanted
            .namespaces
            .iter()
            .map(|ns| (ns.clone(), "dcs-operator-identity".to_string()))
            .collect();
        assert_eq!(minting, expected, "{name}: the Roles that mint tokens");
        let bindings: BTreeSet<(String, String)> = of_kind::<RoleBinding>(&objects, "RoleBinding")
            .into_iter()
            .filter(|binding| binding.role_ref.name == "dcs-operator-identity")
            .map(|binding| {
                assert_eq!(binding.role_ref.kind, "Role", "{name}");
                (
                    binding.metadata.namespace.unwrap(),
                    binding.metadata.name.unwrap(),
                )
            })
            .collect();
        assert_eq!(bindings, expected, "{name}: their RoleBindings");

        if wanted.namespaces.is_empty() {
            without += 1;
        } else {
            with += 1;
            let audience = wanted
                .audience
                .as_deref()
                .expect("an audience with namespaces");
            assert!(
                !API_SERVER_AUDIENCES.contains(&audience),
                "{name}: {audience}"
            );
            // A namespaced install opts in only namespaces it serves.
            let served = strings(&values["watchNamespaces"]);
            if !served.is_empty() {
                for ns in &wanted.namespaces {
                    assert!(served.contains(ns), "{name}: {ns} is not served");
                }
            }
        }
    }
    assert!(with >= 1, "a value set with identity.namespaces");
    assert!(without >= 1, "a value set without identity.namespaces");
}

/// `operatorIdentity.projectedToken` becomes a projected ServiceAccount token with
/// its audience, lifetime and path, mounted read-only and not by subPath (a subPath
/// mount is never rotated); `operatorIdentity.env` becomes the container's
/// environment, and every `*_TOKEN_FILE` there names the projected token.
#[test]
fn operator_identity_values_become_a_projected_token_and_env() {
    let (mut enabled, mut disabled) = (0, 0);
    for (name, objects) in fixtures() {
        let values = values_of(&name);
        let operator = &values["operatorIdentity"];
        let (pod, _) = pod_and_args(&objects);
        let token = projected_token(&pod);
        let wanted = &operator["projectedToken"];
        if wanted["enabled"] == Value::Bool(true) {
            enabled += 1;
            let (projection, path) = token.unwrap_or_else(|| panic!("{name}: no projected token"));
            let audience = projection.audience.clone().unwrap();
            assert_eq!(
                Some(audience.as_str()),
                wanted["audience"].as_str(),
                "{name}"
            );
            assert!(!API_SERVER_AUDIENCES.contains(&audience.as_str()), "{name}");
            assert_eq!(
                projection.expiration_seconds,
                wanted["expirationSeconds"].as_i64(),
                "{name}"
            );
            assert!(projection.expiration_seconds.unwrap() >= 600, "{name}");
            assert_eq!(Some(path.as_str()), wanted["path"].as_str(), "{name}");
        } else {
            disabled += 1;
            assert!(
                token.is_none(),
                "{name}: a projected token nobody asked for"
            );
        }

        let env: BTreeMap<String, Option<String>> = pod.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        let wanted_env = operator["env"].as_object().unwrap();
        for (key, value) in wanted_env {
            assert_eq!(
                env.get(key).cloned().flatten().as_deref(),
                value.as_str(),
                "{name}: {key}"
            );
        }
        for (key, value) in &env {
            if key.ends_with("_TOKEN_FILE") {
                let (_, path) = projected_token(&pod)
                    .unwrap_or_else(|| panic!("{name}: {key} without a projected token"));
                assert_eq!(value.as_deref(), Some(path.as_str()), "{name}: {key}");
            }
        }
    }
    assert!(
        enabled >= 1,
        "a value set with operatorIdentity.projectedToken"
    );
    assert!(disabled >= 1, "a value set without it");
}
