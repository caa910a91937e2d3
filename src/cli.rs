//! The command line: `run`, `crd`, `simulate` and `query`, with their flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "dcs-operator",
    version,
    about = "Kubernetes operator for Huawei Cloud Distributed Cache Service (DCS) instances"
)]
pub struct Cli {
    #[command(flatten)]
    pub logging: LoggingArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct LoggingArgs {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "DCS_OPERATOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter in RUST_LOG syntax (RUST_LOG itself wins when set).
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "DCS_OPERATOR_LOG_LEVEL"
    )]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Query one DCS instance and print what the API says about it: the first thing to
    /// run to check credentials. Credentials come from the same chain as the
    /// operator's own: --credentials-dir, then HUAWEICLOUD_OIDC_*, HUAWEICLOUD_SDK_AK/SK
    /// (or HUAWEICLOUD_SDK_IDP_ID + HUAWEICLOUD_SDK_ID_TOKEN_FILE, or
    /// HUAWEICLOUD_AUTH_TOKEN), the profile file, ECS metadata
    /// (--credentials-from-metadata), CCE Pod Identity (HC_CONTAINER_*).
    Query(QueryArgs),
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster).
    Run(RunArgs),
    /// Print the DcsInstance CustomResourceDefinition (YAML) for `kubectl apply -f -`.
    Crd,
    /// Serve a DCS API simulator on loopback for tests, demos and SDK checks.
    Simulate(SimulateArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["region", "endpoint"])))]
pub struct QueryArgs {
    /// Region, e.g. cn-north-4; the endpoint is https://dcs.REGION.myhuaweicloud.com.
    #[arg(long)]
    pub region: Option<String>,
    /// Full endpoint URL instead of a region (another partition or a simulator).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Project ID (32 hex characters) of the region; default: the one the
    /// credentials name (a credentials directory's or profile's project id).
    #[arg(long, env = "HUAWEICLOUD_SDK_PROJECT_ID")]
    pub project_id: Option<String>,
    /// The DCS instance ID.
    #[arg(long)]
    pub instance_id: String,
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,
    /// Extra trusted CA certificates (PEM) for an endpoint behind a private CA.
    #[arg(long)]
    pub dcs_ca_file: Option<PathBuf>,
    /// Give up on a request after this long (h, m, s units).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Credentials from a directory, one file per key (as `run --credentials-dir`);
    /// first in the chain when given.
    #[arg(long)]
    pub credentials_dir: Option<PathBuf>,
    /// IAM endpoint for the identity-provider exchange (default: the region's).
    #[arg(long)]
    pub iam_endpoint: Option<String>,
    /// STS endpoint for assume-agency-with-OIDC (default: the region's).
    #[arg(long)]
    pub sts_endpoint: Option<String>,
    /// Also try ECS metadata (the node's agency) in the chain.
    #[arg(long, default_value_t = false)]
    pub credentials_from_metadata: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Serve only this namespace (repeatable); default: all namespaces.
    #[arg(long = "namespace", short = 'n')]
    pub namespaces: Vec<String>,
    /// Region for DcsInstances that name neither region nor endpoint.
    #[arg(long, env = "DCS_OPERATOR_DEFAULT_REGION")]
    pub default_region: Option<String>,
    /// Poll interval for DcsInstances without spec.pollInterval (minimum 10s).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub default_poll_interval: std::time::Duration,
    /// The operator's own credentials: a mounted Secret, one file per key
    /// (accessKey, secretKey, securityToken, projectId or authToken), re-read on use.
    /// Without it, the Huawei Cloud SDK's chain: HUAWEICLOUD_OIDC_*, then
    /// HUAWEICLOUD_SDK_IDP_ID + HUAWEICLOUD_SDK_ID_TOKEN_FILE or
    /// HUAWEICLOUD_SDK_AK/SK/SECURITY_TOKEN/PROJECT_ID, then the profile file, then
    /// ECS metadata (--credentials-from-metadata), then CCE Pod Identity.
    #[arg(long)]
    pub credentials_dir: Option<PathBuf>,
    /// IAM endpoint the operator's own ID token is exchanged at (identity-provider
    /// federation), when neither the profile's iam_endpoint nor
    /// HUAWEICLOUD_SDK_IAM_ENDPOINT names one. Default: https://iam.REGION.myhuaweicloud.com
    /// of --default-region.
    #[arg(long)]
    pub iam_endpoint: Option<String>,
    /// STS endpoint for assume-agency-with-OIDC (wins over
    /// HUAWEICLOUD_SDK_STS_ENDPOINT). Default: https://sts.REGION.myhuaweicloud.com of
    /// --default-region.
    #[arg(long)]
    pub sts_endpoint: Option<String>,
    /// Let the chain use ECS metadata (the node's agency, shared by every pod on the
    /// node) for the operator's own credentials. Off: metadata is never asked.
    #[arg(long, default_value_t = false)]
    pub credentials_from_metadata: bool,
    /// Namespaces whose DcsInstances may use spec.identity (workload identity): the
    /// operator mints ServiceAccount tokens only there (comma-separated or repeated).
    /// Empty: none.
    #[arg(long, value_delimiter = ',')]
    pub identity_namespaces: Vec<String>,
    /// The audience of the ServiceAccount tokens minted for spec.identity (the IdP's
    /// client id); never the API server's own.
    #[arg(long)]
    pub identity_audience: Option<String>,
    /// Endpoints besides the region endpoints that may receive temporary credentials
    /// obtained through spec.identity (comma-separated or repeated; e.g. a simulator).
    #[arg(long, value_delimiter = ',')]
    pub identity_endpoints: Vec<String>,
    /// Namespaces whose DcsInstances may use the operator's own credentials
    /// (comma-separated or repeated). Empty: none.
    #[arg(long, value_delimiter = ',')]
    pub default_credentials_namespaces: Vec<String>,
    /// Namespaces where DcsInstances without their own credentials may use the
    /// operator's to create and delete instances (managementPolicy Manage): spending
    /// money is a separate grant from reading. Adoption always needs the
    /// DcsInstance's own credentials.
    #[arg(long, value_delimiter = ',')]
    pub default_credentials_manage_namespaces: Vec<String>,
    /// How long a create whose answer was lost is looked up (by its ownership tag)
    /// before the operator waits for the user's `dcs.operator.dev/retry-create`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub create_lookup_window: std::time::Duration,
    /// Demo mode: start the DCS simulator in-process with these instances and make it
    /// the default endpoint (with its own keys) for DcsInstances naming neither
    /// region nor endpoint.
    #[arg(long)]
    pub simulator: Option<PathBuf>,
    /// Extra trusted CA certificates (PEM) for DCS endpoints behind a private CA.
    #[arg(long)]
    pub dcs_ca_file: Option<PathBuf>,
    /// Give up on one DCS request after this long.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub dcs_timeout: std::time::Duration,
    /// Poll DCS with one list call per credentials group and tick instead of one
    /// ShowInstance per DcsInstance (`--batch-polling=false` for the per-object baseline).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub batch_polling: bool,
    /// DCS requests a second allowed per access key (a token bucket; the gateway's
    /// own limit is about 200 a second per API).
    #[arg(long, default_value_t = 20.0)]
    pub api_rate_limit: f64,
    /// Requests a bucket may hold for bursts.
    #[arg(long, default_value_t = 40)]
    pub api_burst: u32,
    /// Give up connecting to a DCS endpoint after this long (short: an endpoint that
    /// does not answer must not hold a slot).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub dcs_connect_timeout: std::time::Duration,
    /// DCS calls in flight at once per namespace, besides the global --concurrency:
    /// many slow endpoints named in one namespace cannot take every slot.
    #[arg(long, default_value_t = 8)]
    pub namespace_concurrency: u16,
    /// DCS calls in flight at once to tenant-named endpoints (`spec.endpoint`), across
    /// all namespaces: leaves reconcile slots for calls to the cloud.
    #[arg(long, default_value_t = 16)]
    pub tenant_origin_concurrency: u16,
    /// Reconciles running at once. Unbounded, a start-up with thousands of
    /// DcsInstances would open as many API requests (and connections) at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u16,
    /// Serve only DcsInstances matching this label selector (e.g. `shard=a`), so
    /// several deployments can split a cluster.
    #[arg(long)]
    pub selector: Option<String>,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Expose the per-instance gauges (`dcs_operator_instance_*`), labelled with
    /// every DcsInstance's namespace and name. Anyone who can reach the metrics port
    /// reads them: `--metrics-instance-series=false` leaves them out, so /metrics
    /// names no tenant.
    #[arg(
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        env = "DCS_OPERATOR_METRICS_INSTANCE_SERIES"
    )]
    pub metrics_instance_series: bool,
    /// Elect a single writer among replicas through a Lease.
    #[arg(long, default_value_t = false)]
    pub leader_elect: bool,
    /// Name of the Lease; give each sharded deployment its own.
    #[arg(long, default_value = "dcs-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease (default: POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub lease_holder: Option<String>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Instances to serve, YAML or JSON (see examples/sim-instances.yaml).
    #[arg(long)]
    pub instances: Option<PathBuf>,
    /// The access key the simulator accepts (default printed at start-up).
    #[arg(long, env = "DCS_SIM_ACCESS_KEY")]
    pub access_key: Option<String>,
    /// The secret key that goes with --access-key.
    #[arg(long, env = "DCS_SIM_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Accept this X-Auth-Token instead of AK/SK signatures.
    #[arg(long, env = "DCS_SIM_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Answer 429 APIG.0308 above this many requests a second per credential.
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// CREATING → RUNNING after this long (default 10s, or the instance file's
    /// `settings.create_delay`).
    #[arg(long, value_parser = parse_duration)]
    pub create_delay: Option<std::time::Duration>,
    /// EXTENDING → RUNNING after a resize (default 30s).
    #[arg(long, value_parser = parse_duration)]
    pub resize_delay: Option<std::time::Duration>,
    /// DELETING → gone (404 DCS.3022) after this long (default 10s).
    #[arg(long, value_parser = parse_duration)]
    pub delete_delay: Option<std::time::Duration>,
    /// How long a port change or command renaming keeps `task` set (default 5s).
    #[arg(long, value_parser = parse_duration)]
    pub modify_delay: Option<std::time::Duration>,
    /// A created instance shows in list answers only after this long (default 0s).
    #[arg(long, value_parser = parse_duration)]
    pub list_lag: Option<std::time::Duration>,
    /// The project's instance quota (default 100).
    #[arg(long)]
    pub instance_quota: Option<u32>,
    /// The project's memory quota in GB (default 800).
    #[arg(long)]
    pub memory_quota_gb: Option<u32>,
}

pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(text).map_err(|e| e.to_string())
}
