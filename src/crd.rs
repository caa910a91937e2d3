//! The DcsInstance custom resource: spec, status, conditions and printer columns.
//! `dcs-operator crd` prints the CRD generated from these types (crds/dcsinstance.yaml).

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::duration;

pub const GROUP: &str = "dcs.operator.dev";
pub const VERSION: &str = "v1alpha1";
/// The longest Kubernetes object name (a DNS subdomain).
pub const MAX_NAME_LENGTH: usize = 253;
/// A Kubernetes object name (DNS subdomain), for Secret references.
const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A Huawei Cloud DCS (Redis or Memcached) instance that already exists, mirrored
/// into this resource's status and into a connection Secret applications mount.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dcs.operator.dev",
    version = "v1alpha1",
    kind = "DcsInstance",
    plural = "dcsinstances",
    shortname = "dcs",
    namespaced,
    status = "DcsInstanceStatus",
    category = "all",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.status","description":"The DCS instance status"}"#,
    printcolumn = r#"{"name":"IP","type":"string","jsonPath":".status.ip","description":"Address clients connect to"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".status.port"}"#,
    printcolumn = r#"{"name":"Capacity","type":"string","jsonPath":".status.capacity"}"#,
    printcolumn = r#"{"name":"Error","type":"string","jsonPath":".status.errorCode","description":"DCS fault code"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".status.engine","priority":1}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.engineVersion","priority":1}"#,
    validation = Rule::new("has(self.spec.connectionSecret) || size(self.metadata.name) <= 249").message("metadata.name is too long for the default connection Secret name '<name>-dcs'; set spec.connectionSecret.name"),
)]
#[x_kube(
    validation = Rule::new("!(has(self.region) && has(self.endpoint))").message("set at most one of region and endpoint"),
    validation = Rule::new("has(self.connectionSecret) == has(oldSelf.connectionSecret) && (!has(self.connectionSecret) || self.connectionSecret == oldSelf.connectionSecret)").message("connectionSecret is immutable: it cannot be added, changed or removed after creation"),
)]
#[serde(rename_all = "camelCase")]
pub struct DcsInstanceSpec {
    /// ID of the existing DCS instance (a UUID, lower case). Immutable.
    #[schemars(
        length(max = 36),
        regex(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceId is immutable"))]
    pub instance_id: String,

    /// Project ID (32 hex characters) of the region. Optional when the credentials
    /// Secret carries a projectId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[0-9a-f]{32}$"))]
    pub project_id: Option<String>,

    /// Region of the instance, e.g. cn-north-4: the endpoint is
    /// https://dcs.REGION.myhuaweicloud.com. At most one of region and endpoint;
    /// neither means the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub region: Option<String>,

    /// Full DCS endpoint URL, for other partitions or a local simulator. Must be
    /// https:// except for loopback hosts (127.0.0.0/8, localhost, [::1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 256))]
    #[x_kube(validation = Rule::new(r"self.startsWith('https://') || self.matches('^http://(localhost|127\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|\\[::1\\])(:[0-9]{1,5})?(/.*)?$')").message("endpoint must use https:// (plain http:// only for loopback hosts)"))]
    pub endpoint: Option<String>,

    /// A Secret in this namespace with accessKey and secretKey (optional securityToken,
    /// optional projectId), or authToken. Without it the operator's own credentials
    /// are used where the cluster admin allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalSecretReference>,

    /// The cache password, copied into the connection Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyReference>,

    /// The connection Secret to write (default: <metadata.name>-dcs). Immutable once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret: Option<ConnectionSecretSpec>,

    /// How often to poll DCS while the instance is stable, e.g. 30s, 5m (minimum 10s).
    /// Default: the operator's --default-poll-interval (60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = duration::MAX_LENGTH), regex(pattern = duration::PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("pollInterval must be at least 10s"))]
    pub poll_interval: Option<String>,
}

/// A Secret in the same namespace, by name.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct LocalSecretReference {
    /// Name of the Secret (same namespace).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = NAME_PATTERN)
    )]
    pub name: String,
}

/// One key of a Secret in the same namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct SecretKeyReference {
    /// Name of the Secret (same namespace).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = NAME_PATTERN)
    )]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Where the connection details go.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct ConnectionSecretSpec {
    /// Name of the Secret to write in this namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = NAME_PATTERN)
    )]
    pub name: String,
}

/// What the operator last observed. Nothing here changes unless the instance,
/// the spec or the outcome of observing it changed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DcsInstanceStatus {
    /// Instance name in DCS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub name: Option<String>,
    /// Cache engine: Redis or Memcached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub engine: Option<String>,
    /// Cache engine version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub engine_version: Option<String>,
    /// Address clients connect to, as DCS gives it (a comma list for clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub ip: Option<String>,
    /// Port clients connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// The addresses in `ip`, one per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(length(max = 256)))]
    pub addresses: Option<Vec<String>>,
    /// The DCS instance status (RUNNING, CREATING, ERROR, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub status: Option<String>,
    /// Cache capacity as a quantity (2Gi, 128Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub capacity: Option<String>,
    /// Total memory as a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub max_memory: Option<String>,
    /// DCS instance fault code (dcs.xx.xxxx) while DCS reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub error_code: Option<String>,
    /// What the fault code means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub error_message: Option<String>,
    /// The instance flavour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub resource_spec_code: Option<String>,
    /// Availability zones hosting the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(max = 128)))]
    pub available_zones: Option<Vec<String>>,
    /// The connection Secret this operator writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub connection_secret_name: Option<String>,
    /// servicebinding.io: the Secret to project into workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready and Synced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// servicebinding.io provisioned-service reference.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct Binding {
    /// Name of the binding Secret.
    #[schemars(length(max = 253))]
    pub name: String,
}

/// A condition as the Kubernetes API conventions define it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready or Synced.
    #[schemars(length(max = 64))]
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    #[schemars(length(max = 16))]
    pub status: String,
    /// A PascalCase reason, one of the table in the README (constants in `plan::reasons`).
    #[schemars(length(max = 64))]
    pub reason: String,
    /// What happened, for people.
    #[schemars(length(max = 2048))]
    pub message: String,
    /// The spec generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When status last changed between True and False (RFC 3339, whole seconds).
    #[schemars(length(max = 32))]
    pub last_transition_time: String,
}

/// The CRD as YAML, as committed in crds/dcsinstance.yaml.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&DcsInstance::crd())
}
