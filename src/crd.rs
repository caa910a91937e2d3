//! The DcsInstance custom resource: spec, status, conditions and printer columns.
//! `dcs-operator crd` prints the CRD generated from these types (crds/dcsinstance.yaml).

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration;
use crate::intern::Atom;

pub const GROUP: &str = "dcs.operator.dev";
pub const VERSION: &str = "v1alpha1";
/// The longest Kubernetes object name (a DNS subdomain).
pub const MAX_NAME_LENGTH: usize = 253;
/// A Kubernetes object name (DNS subdomain), for Secret references.
const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A Huawei Cloud DCS (Redis or Memcached) instance, observed (`managementPolicy:
/// Observe`, the default) or created, adopted and deleted (`Manage`), mirrored into
/// this resource's status and into a connection Secret applications mount.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
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
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".spec.managementPolicy","priority":1,"description":"Observe or Manage"}"#,
    validation = Rule::new("has(self.spec.connectionSecret) || size(self.metadata.name) <= 249").message("metadata.name is too long for the default connection Secret name '<name>-dcs'; set spec.connectionSecret.name"),
    validation = Rule::new(IMMUTABLE_ONCE_CREATED).message("spec.instance.engine, engineVersion, vpcId, subnetId, availabilityZones and enterpriseProjectId cannot change once the instance exists (status.instanceId is set)"),
    validation = Rule::new(LOCATION_FIXED_ONCE_CREATED).message("spec.region, spec.endpoint and spec.projectId cannot change once a managed instance exists (status.instanceId is set)"),
)]
#[x_kube(
    validation = Rule::new("!(has(self.region) && has(self.endpoint))").message("set at most one of region and endpoint"),
    validation = Rule::new("has(self.connectionSecret) == has(oldSelf.connectionSecret) && (!has(self.connectionSecret) || self.connectionSecret == oldSelf.connectionSecret)").message("connectionSecret is immutable: it cannot be added, changed or removed after creation"),
    validation = Rule::new("(has(self.managementPolicy) && self.managementPolicy == 'Manage') || has(self.instanceId)").message("instanceId is required unless managementPolicy is Manage"),
    validation = Rule::new("!(has(self.identity) && has(self.credentialsSecretRef))").message("set at most one of identity and credentialsSecretRef"),
    validation = Rule::new("!has(oldSelf.instanceId) || has(self.instanceId)").message("instanceId cannot be removed once set"),
    validation = Rule::new("!has(self.deletionPolicy) || self.deletionPolicy == 'Orphan' || (has(self.managementPolicy) && self.managementPolicy == 'Manage')").message("deletionPolicy Delete requires managementPolicy Manage"),
    validation = Rule::new("!(has(self.managementPolicy) && self.managementPolicy == 'Manage') || has(self.instance)").message("instance is required when managementPolicy is Manage"),
    validation = Rule::new("!(has(self.managementPolicy) && self.managementPolicy == 'Manage') || has(self.instanceId) || !has(self.instance) || has(self.passwordSecretRef) || (has(self.instance.noPasswordAccess) && self.instance.noPasswordAccess)").message("passwordSecretRef is required to create an instance unless instance.noPasswordAccess is true"),
)]
#[serde(rename_all = "camelCase")]
pub struct DcsInstanceSpec {
    /// Observe (the default) only reads an existing instance and never writes to
    /// DCS. Manage creates the instance (or adopts `instanceId`) and may delete it.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// ID of the DCS instance (a UUID, lower case). Required unless
    /// managementPolicy is Manage; with Manage it adopts that instance. Once set it
    /// cannot change or be removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 36),
        regex(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceId is immutable"))]
    pub instance_id: Option<String>,

    /// What happens to the DCS instance when this resource is deleted: Orphan (the
    /// default) leaves it; Delete deletes it (Manage only, and only an instance
    /// carrying this resource's ownership tag).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// The desired instance. Required with Manage; allowed (and ignored) with
    /// Observe, so switching policies never drops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Box<DesiredInstance>>,

    /// Project ID (32 hex characters) of the region. Optional when the credentials
    /// Secret carries a projectId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[0-9a-f]{32}$"))]
    pub project_id: Option<Atom>,

    /// Region of the instance, e.g. cn-north-4: the endpoint is
    /// https://dcs.REGION.myhuaweicloud.com. At most one of region and endpoint;
    /// neither means the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub region: Option<Atom>,

    /// Full DCS endpoint URL, for other partitions or a local simulator. Must be
    /// https:// except for loopback hosts (127.0.0.0/8, localhost, [::1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 256))]
    #[x_kube(validation = Rule::new(r"self.startsWith('https://') || self.matches('^http://(localhost|127\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|\\[::1\\])(:[0-9]{1,5})?(/.*)?$')").message("endpoint must use https:// (plain http:// only for loopback hosts)"))]
    pub endpoint: Option<Atom>,

    /// A Secret in this namespace with accessKey and secretKey (optional securityToken,
    /// optional projectId), or authToken. Without it the operator's own credentials
    /// are used where the cluster admin allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalSecretReference>,

    /// Keyless access through a ServiceAccount of this namespace (workload
    /// identity): the operator mints its token and exchanges it with IAM/STS for
    /// short-lived credentials. Exclusive with credentialsSecretRef; counts as the
    /// DcsInstance's own credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Box<WorkloadIdentity>>,

    /// The cache password, copied into the connection Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<Box<SecretKeyReference>>,

    /// The connection Secret to write (default: <metadata.name>-dcs). Immutable once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret: Option<ConnectionSecretSpec>,

    /// How often to poll DCS while the instance is stable, e.g. 30s, 5m (minimum 10s).
    /// Default: the operator's --default-poll-interval (60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = duration::MAX_LENGTH), regex(pattern = duration::PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("pollInterval must be at least 10s"))]
    pub poll_interval: Option<Atom>,
}

/// Workload identity: a ServiceAccount of the DcsInstance's namespace, and the
/// cloud identity its token is exchanged for (exactly one of idpId, or agencyUrn
/// with providerUrn).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.idpId) != (has(self.agencyUrn) || has(self.providerUrn))").message("set exactly one of idpId, or agencyUrn with providerUrn"),
    validation = Rule::new("has(self.agencyUrn) == has(self.providerUrn)").message("agencyUrn and providerUrn go together"),
)]
pub struct WorkloadIdentity {
    /// The ServiceAccount (in this namespace) whose token is exchanged; it must
    /// carry the label dcs.operator.dev/identity: "true".
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub service_account_name: String,
    /// IAM identity provider (federation with an OIDC ID token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub idp_id: Option<String>,
    /// IAM5 trust agency, e.g. iam::<account id>:agency:<name>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[\x21-\x7e]+$"))]
    pub agency_urn: Option<String>,
    /// IAM5 OIDC provider, e.g. iam::<account id>:oidc-provider:<name>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1500), regex(pattern = r"^[\x21-\x7e]+$"))]
    pub provider_urn: Option<String>,
    /// Project ID (32 hex characters), when spec.projectId is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[0-9a-f]{32}$"))]
    pub project_id: Option<String>,
    /// Lifetime asked for the temporary credentials (900 to 43200 s; default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 900, max = 43200))]
    pub duration_seconds: Option<i32>,
}

/// A Secret in the same namespace, by name.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct LocalSecretReference {
    /// Name of the Secret (same namespace).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = NAME_PATTERN)
    )]
    pub name: Atom,
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

/// Whether the operator only reads the DCS instance, or owns its lifecycle.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Read an existing instance (`instanceId`); never a DCS write.
    #[default]
    Observe,
    /// Create the instance from `instance` (or adopt `instanceId`), and delete it
    /// when `deletionPolicy` is Delete.
    Manage,
}

/// What happens to the DCS instance when the DcsInstance is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the DCS instance as it is.
    #[default]
    Orphan,
    /// Delete the DCS instance (only one carrying this resource's ownership tag).
    Delete,
}

/// Fields DCS cannot change in place: fixed once an instance exists, free to fix
/// before (a create refused for a sold-out zone or a full subnet).
const IMMUTABLE_ONCE_CREATED: &str = concat!(
    "!has(oldSelf.status) || !has(oldSelf.status.instanceId) || !has(oldSelf.spec.instance) || (has(self.spec.instance)",
    " && self.spec.instance.engine == oldSelf.spec.instance.engine",
    " && (has(self.spec.instance.engineVersion) ? self.spec.instance.engineVersion : '') == (has(oldSelf.spec.instance.engineVersion) ? oldSelf.spec.instance.engineVersion : '')",
    " && self.spec.instance.vpcId == oldSelf.spec.instance.vpcId",
    " && self.spec.instance.subnetId == oldSelf.spec.instance.subnetId",
    " && self.spec.instance.availabilityZones == oldSelf.spec.instance.availabilityZones",
    " && (has(self.spec.instance.enterpriseProjectId) ? self.spec.instance.enterpriseProjectId : '') == (has(oldSelf.spec.instance.enterpriseProjectId) ? oldSelf.spec.instance.enterpriseProjectId : ''))"
);

/// Under Manage the instance's location is fixed once it exists: another region,
/// endpoint or project would be another instance.
const LOCATION_FIXED_ONCE_CREATED: &str = concat!(
    "!has(oldSelf.status) || !has(oldSelf.status.instanceId)",
    // Manage before or after the update: leaving Manage in the same update that
    // moves the instance would let the next update adopt it elsewhere.
    " || ((!has(self.spec.managementPolicy) || self.spec.managementPolicy != 'Manage') && (!has(oldSelf.spec.managementPolicy) || oldSelf.spec.managementPolicy != 'Manage')) || (",
    "(has(self.spec.region) ? self.spec.region : '') == (has(oldSelf.spec.region) ? oldSelf.spec.region : '')",
    " && (has(self.spec.endpoint) ? self.spec.endpoint : '') == (has(oldSelf.spec.endpoint) ? oldSelf.spec.endpoint : '')",
    " && (has(self.spec.projectId) ? self.spec.projectId : '') == (has(oldSelf.spec.projectId) ? oldSelf.spec.projectId : ''))"
);

/// The desired DCS instance, for `managementPolicy: Manage`. Pay-per-use only.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.engine != 'Redis' || has(self.engineVersion)").message("engineVersion is required for Redis"),
    validation = Rule::new("!has(self.securityGroupId) || self.engine == 'Memcached' || (has(self.engineVersion) && self.engineVersion == '3.0')").message("securityGroupId is accepted only for Memcached and Redis 3.0 (Redis 4.0 and later use whitelists)"),
    validation = Rule::new("!has(self.port) || (self.engine == 'Redis' && has(self.engineVersion) && self.engineVersion != '3.0')").message("port can be set only for Redis 4.0 and later"),
)]
pub struct DesiredInstance {
    /// Instance name in DCS: 4 to 64 letters, digits, '-' and '_', a letter first.
    /// Default: <namespace>-<metadata.name>, sanitised (a short hash when cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 4, max = 64),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9_-]{3,63}$")
    )]
    pub name: Option<String>,
    /// Redis or Memcached. Fixed once the instance exists.
    pub engine: Engine,
    /// Engine version (Redis: 4.0, 5.0, 6.0, 7.0; 3.0 in older regions). Fixed once
    /// the instance exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), regex(pattern = r"^[0-9]{1,2}\.[0-9]{1,2}$"))]
    pub engine_version: Option<String>,
    /// Cache size, one of the documented sizes; it must fit specCode.
    pub capacity: Capacity,
    /// The flavour (from ListFlavors), e.g. redis.ha.xu1.large.r2.2.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-z0-9][a-z0-9._-]*$"))]
    pub spec_code: String,
    /// Availability zone codes (one per node for cross-AZ types). Fixed once the
    /// instance exists.
    #[schemars(
        length(min = 1, max = 8),
        inner(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))
    )]
    pub availability_zones: Vec<String>,
    /// VPC ID. Fixed once the instance exists.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9-]+$"))]
    pub vpc_id: String,
    /// Subnet (network) ID in that VPC. Fixed once the instance exists.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9-]+$"))]
    pub subnet_id: String,
    /// Security group ID: Memcached and Redis 3.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9-]+$"))]
    pub security_group_id: Option<String>,
    /// Port (Redis 4.0 and later; default 6379).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Password-free access (no passwordSecretRef needed). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_password_access: Option<bool>,
    /// Tags to set (the ownership tag is added by the operator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 19))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["key"]))]
    pub tags: Vec<InstanceTag>,
    /// Description, at most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Maintenance window (UTC), one of the pairs DCS offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,
    /// Enterprise project ID ("0" is the default project). Fixed once the instance
    /// exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[0-9a-z-]+$"))]
    pub enterprise_project_id: Option<String>,
}

/// The cache engine.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Engine {
    Redis,
    Memcached,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Redis => "Redis",
            Engine::Memcached => "Memcached",
        }
    }
}

/// The documented DCS sizes, as canonical quantities (the same as status.capacity).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Capacity {
    #[serde(rename = "128Mi")]
    Mi128,
    #[serde(rename = "256Mi")]
    Mi256,
    #[serde(rename = "512Mi")]
    Mi512,
    #[serde(rename = "1Gi")]
    Gi1,
    #[serde(rename = "2Gi")]
    Gi2,
    #[serde(rename = "4Gi")]
    Gi4,
    #[serde(rename = "8Gi")]
    Gi8,
    #[serde(rename = "16Gi")]
    Gi16,
    #[serde(rename = "24Gi")]
    Gi24,
    #[serde(rename = "32Gi")]
    Gi32,
    #[serde(rename = "48Gi")]
    Gi48,
    #[serde(rename = "64Gi")]
    Gi64,
    #[serde(rename = "96Gi")]
    Gi96,
    #[serde(rename = "128Gi")]
    Gi128,
    #[serde(rename = "192Gi")]
    Gi192,
    #[serde(rename = "256Gi")]
    Gi256,
    #[serde(rename = "384Gi")]
    Gi384,
    #[serde(rename = "512Gi")]
    Gi512,
    #[serde(rename = "768Gi")]
    Gi768,
    #[serde(rename = "1Ti")]
    Ti1,
}

impl Capacity {
    /// Every size, smallest first.
    pub const ALL: [Capacity; 20] = [
        Capacity::Mi128,
        Capacity::Mi256,
        Capacity::Mi512,
        Capacity::Gi1,
        Capacity::Gi2,
        Capacity::Gi4,
        Capacity::Gi8,
        Capacity::Gi16,
        Capacity::Gi24,
        Capacity::Gi32,
        Capacity::Gi48,
        Capacity::Gi64,
        Capacity::Gi96,
        Capacity::Gi128,
        Capacity::Gi192,
        Capacity::Gi256,
        Capacity::Gi384,
        Capacity::Gi512,
        Capacity::Gi768,
        Capacity::Ti1,
    ];

    /// The size in MiB.
    pub fn mebibytes(self) -> u64 {
        match self {
            Capacity::Mi128 => 128,
            Capacity::Mi256 => 256,
            Capacity::Mi512 => 512,
            Capacity::Gi1 => 1 << 10,
            Capacity::Gi2 => 2 << 10,
            Capacity::Gi4 => 4 << 10,
            Capacity::Gi8 => 8 << 10,
            Capacity::Gi16 => 16 << 10,
            Capacity::Gi24 => 24 << 10,
            Capacity::Gi32 => 32 << 10,
            Capacity::Gi48 => 48 << 10,
            Capacity::Gi64 => 64 << 10,
            Capacity::Gi96 => 96 << 10,
            Capacity::Gi128 => 128 << 10,
            Capacity::Gi192 => 192 << 10,
            Capacity::Gi256 => 256 << 10,
            Capacity::Gi384 => 384 << 10,
            Capacity::Gi512 => 512 << 10,
            Capacity::Gi768 => 768 << 10,
            Capacity::Ti1 => 1 << 20,
        }
    }

    /// The size in GB as DCS takes it (`capacity`, `new_capacity`): 0.125 for 128Mi.
    pub fn gigabytes(self) -> f64 {
        self.mebibytes() as f64 / 1024.0
    }
}

/// One tag of the DCS instance.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct InstanceTag {
    /// 1 to 36 letters, digits, spaces and _ . : = + - @ (no spaces at the ends);
    /// not starting with _sys_ or dcs-operator (reserved).
    #[schemars(
        length(min = 1, max = 36),
        regex(pattern = r"^[A-Za-z0-9_.:=+@-]([A-Za-z0-9 _.:=+@-]*[A-Za-z0-9_.:=+@-])?$")
    )]
    #[x_kube(validation = Rule::new("!self.startsWith('_sys_') && !self.startsWith('dcs-operator')").message("tag keys starting with _sys_ or dcs-operator are reserved"))]
    pub key: String,
    /// At most 43 characters (letters, digits, spaces and _ . : = + - @ /).
    #[serde(default)]
    #[schemars(length(max = 43), regex(pattern = r"^[A-Za-z0-9 _.:=+@/-]*$"))]
    pub value: String,
}

/// A maintenance window in UTC, `HH:00:00` to `HH:00:00`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("self.begin != self.end").message("maintenanceWindow.begin and end must differ"))]
pub struct MaintenanceWindow {
    #[schemars(length(max = 8), regex(pattern = r"^([01][0-9]|2[0-3]):00:00$"))]
    pub begin: String,
    #[schemars(length(max = 8), regex(pattern = r"^([01][0-9]|2[0-3]):00:00$"))]
    pub end: String,
}

/// What the operator last observed. Nothing here changes unless the instance,
/// the spec or the outcome of observing it changed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DcsInstanceStatus {
    /// The managed instance's ID (managementPolicy Manage): set once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    pub instance_id: Option<String>,
    /// Instance name in DCS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub name: Option<String>,
    /// Cache engine: Redis or Memcached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub engine: Option<Atom>,
    /// Cache engine version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub engine_version: Option<Atom>,
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
    pub status: Option<Atom>,
    /// Cache capacity as a quantity (2Gi, 128Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub capacity: Option<Atom>,
    /// Total memory as a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub max_memory: Option<Atom>,
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
    pub resource_spec_code: Option<Atom>,
    /// Availability zones hosting the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(max = 128)))]
    pub available_zones: Option<Vec<Atom>>,
    /// The connection Secret this operator writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub connection_secret_name: Option<String>,
    /// servicebinding.io: the Secret to project into workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// What the operator last wrote to a managed instance (Manage only), so each
    /// change is written once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<Box<ManagedStatus>>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready and Synced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The operator's record of its in-place writes to a managed instance.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStatus {
    /// The tags the operator set (besides the ownership tag): only these are ever
    /// changed or removed; tags set by others are left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 19))]
    pub tags: Vec<AppliedTag>,
    /// A salted SHA-256 prefix of the password last set (never the password): the
    /// password Secret's value is reset only when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub password_digest: Option<String>,
    /// The last write of each kind (resize, modify, port, tags, password).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["operation"]))]
    pub operations: Vec<OperationRecord>,
}

/// A tag the operator set.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct AppliedTag {
    #[schemars(length(max = 36))]
    pub key: String,
    #[serde(default)]
    #[schemars(length(max = 43))]
    pub value: String,
}

/// One in-place write: for which desired value, when, and what DCS said.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationRecord {
    /// resize, modify, port, tags or password.
    #[schemars(length(max = 16))]
    pub operation: String,
    /// A digest of the desired values written: the same values are never written
    /// twice (a refusal is asked again at most every 30 minutes).
    #[schemars(length(max = 32))]
    pub desired: String,
    /// Accepted or Refused.
    #[schemars(length(max = 16))]
    pub result: String,
    /// When (RFC 3339, whole seconds).
    #[schemars(length(max = 32))]
    pub at: String,
    /// DCS's code and message, for a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub message: Option<String>,
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
    pub type_: Atom,
    /// True, False or Unknown.
    #[schemars(length(max = 16))]
    pub status: Atom,
    /// A PascalCase reason, one of the table in the README (constants in `plan::reasons`).
    #[schemars(length(max = 64))]
    pub reason: Atom,
    /// What happened, for people.
    #[schemars(length(max = 2048))]
    pub message: Atom,
    /// The spec generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When status last changed between True and False (RFC 3339, whole seconds).
    #[schemars(length(max = 32))]
    pub last_transition_time: Atom,
}

/// The CRD as YAML, as committed in crds/dcsinstance.yaml.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&DcsInstance::crd())
}
