//! `dcs-operator run`: connect to Kubernetes, check the DcsInstance API is served,
//! optionally start the demo simulator, and run the controller until SIGTERM.

use std::sync::Arc;

use anyhow::Context as _;
use kube::Client;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::clock::{SharedClock, SystemClock};
use crate::controller::budget::ApiBudget;
use crate::controller::dcs_call::NamespaceLimits;
use crate::controller::identity::{self, Identities, IdentityOptions};
use crate::controller::resolve::SpecDefaults;
use crate::controller::secrets::{
    CredentialsResolver, DefaultCredentials, DefaultCredentialsSource, FoundCredentials,
};
use crate::controller::shared::LifecycleOptions;
use crate::controller::{self, Shared};
use crate::crd::{GROUP, VERSION};
use crate::dcs::chain::{self, ChainOptions};
use crate::dcs::client::Endpoint;
use crate::dcs::iam::IamClient;
use crate::dcs::sim::{SimConfig, SimHandle, Simulator, load_identity_config, load_instances};
use crate::dcs::{ClientConfig, Credentials, DcsClient, SecretString};
use crate::leader::{self, LeaderGate};
use crate::metrics::MetricsOptions;
use crate::server;
use crate::supervise::supervised;

/// How often caches keyed by tenant data are pruned.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Fails with a one-line hint when the cluster does not serve DcsInstances. Uses
/// API discovery, which a namespaced install may read (it cannot read CRDs).
pub async fn check_api_served(client: &Client) -> anyhow::Result<()> {
    let group_version = format!("{GROUP}/{VERSION}");
    match client.list_api_group_resources(&group_version).await {
        Ok(list) if list.resources.iter().any(|r| r.name == "dcsinstances") => Ok(()),
        Ok(_) | Err(kube::Error::Api(_)) => anyhow::bail!(
            "the cluster does not serve {group_version} dcsinstances: install the CRD first (kubectl apply -f crds/)"
        ),
        Err(error) => Err(error).context("cannot reach the Kubernetes API server"),
    }
}

/// What the command line adds to the chain.
pub fn chain_options(args: &RunArgs) -> ChainOptions {
    ChainOptions {
        credentials_dir: args.credentials_dir.clone(),
        iam_endpoint: args.iam_endpoint.clone(),
        sts_endpoint: args.sts_endpoint.clone(),
        region: args.default_region.clone(),
        from_metadata: args.credentials_from_metadata,
        ..ChainOptions::default()
    }
}

/// The operator's own credentials: the SDK's chain, `--credentials-dir` first. A
/// provider that is configured but incomplete stops the start.
fn default_credentials(
    args: &RunArgs,
    config: &ClientConfig,
    clock: SharedClock,
) -> anyhow::Result<Option<DefaultCredentials>> {
    let exchanges = chain::HttpExchanges::new(config)
        .map_err(|e| anyhow::anyhow!("cannot build the IAM client: {e}"))?;
    let chain = chain::from_process(&chain_options(args), Arc::new(exchanges), clock)
        .context("the operator's own credentials")?;
    Ok(chain.map(|chain| DefaultCredentials {
        source: DefaultCredentialsSource::Chain(Arc::new(chain)),
        namespaces: Some(args.default_credentials_namespaces.clone()),
        for_operator_default_endpoint: false,
    }))
}

/// Everything `run` starts, for the binary and for in-process tests (e2e).
pub struct Operator {
    pub shared: Arc<Shared>,
    pub simulator: Option<SimHandle>,
}

pub async fn build(client: Client, args: &RunArgs, clock: SharedClock) -> anyhow::Result<Operator> {
    let mut config = ClientConfig {
        timeout: args.dcs_timeout,
        connect_timeout: args.dcs_connect_timeout.min(args.dcs_timeout),
        ..ClientConfig::default()
    };
    if let Some(path) = &args.dcs_ca_file {
        config.extra_root_certificates_pem =
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?);
    }
    // Demo mode uses the simulator's keys: the chain is not consulted.
    let mut default_credentials = match &args.simulator {
        Some(_) => None,
        None => default_credentials(args, &config, clock.clone())?,
    };
    let iam_config = config.clone();
    let dcs = DcsClient::new(config, clock.clone())?;
    let mut defaults = SpecDefaults {
        region: args.default_region.clone(),
        endpoint: None,
        poll_interval: args.default_poll_interval,
    };
    let mut cloud_origins = Vec::new();
    let mut manage_namespaces = Some(args.default_credentials_manage_namespaces.clone());
    let simulator = match &args.simulator {
        Some(path) => {
            // The simulator's money is not real: its keys may manage everywhere.
            manage_namespaces = None;
            let handle = start_demo_simulator(path, clock.clone()).await?;
            defaults.endpoint = Some(handle.endpoint());
            default_credentials = Some(demo_credentials());
            // The simulator stands in for a region: its gates are the cloud's.
            cloud_origins.push(handle.endpoint().origin());
            Some(handle)
        }
        None => None,
    };
    let identity = args.lease_holder.clone().or_else(host_name);
    let mut builder = Shared::builder(
        client.clone(),
        dcs,
        clock.clone(),
        defaults,
        CredentialsResolver::new(default_credentials),
    )
    .selector(args.selector.clone())
    .batching(args.batch_polling)
    .concurrency(args.concurrency)
    .budget(ApiBudget::new(args.api_rate_limit, args.api_burst))
    .namespace_limits(NamespaceLimits::with_tenant_origins(
        usize::from(args.namespace_concurrency),
        usize::from(args.tenant_origin_concurrency),
    ))
    .cloud_origins(cloud_origins)
    .events(controller::EventPublisher::new(
        client.clone(),
        controller::FIELD_MANAGER,
        identity,
    ))
    .metrics(MetricsOptions {
        instance_series: args.metrics_instance_series,
    })
    .lifecycle(LifecycleOptions {
        manage_namespaces,
        lookup_window: args.create_lookup_window,
    });
    if let Some(identities) =
        identities(args, &iam_config, simulator.as_ref(), &client, &clock).await?
    {
        builder = builder.identities(identities);
    }
    if args.leader_elect {
        builder = builder.leader(Arc::new(LeaderGate::elected(clock)));
    }
    Ok(Operator {
        shared: Arc::new(builder.build()),
        simulator,
    })
}

/// Demo mode: the DCS simulator in-process, serving the instances of `path`.
async fn start_demo_simulator(
    path: &std::path::Path,
    clock: SharedClock,
) -> anyhow::Result<SimHandle> {
    let sim_config = SimConfig {
        instances: load_instances(path)?,
        ..SimConfig::with_default_keys()
    };
    let handle = Simulator::start(sim_config, "127.0.0.1:0".parse()?, clock).await?;
    info!(endpoint = %handle.base_url(), "demo mode: DCS simulator started in-process");
    Ok(handle)
}

/// Workload identity (spec.identity), when `--identity-namespaces` names any. In
/// demo mode the simulator plays IAM: its identity settings come from the
/// `--simulator` file, and it trusts the cluster's own signing keys
/// (`/openid/v1/jwks`, the static copy a real IdP setup also needs).
async fn identities(
    args: &RunArgs,
    config: &ClientConfig,
    simulator: Option<&SimHandle>,
    client: &Client,
    clock: &SharedClock,
) -> anyhow::Result<Option<Arc<Identities>>> {
    if args.identity_namespaces.is_empty() {
        return Ok(None);
    }
    let endpoint = |flag: &str, value: &Option<String>| -> anyhow::Result<Option<Endpoint>> {
        value
            .as_deref()
            .map(|text| Endpoint::parse(text).with_context(|| format!("--{flag} {text}")))
            .transpose()
    };
    let mut options = IdentityOptions {
        namespaces: args.identity_namespaces.clone(),
        audience: args.identity_audience.clone(),
        iam_endpoint: endpoint("iam-endpoint", &args.iam_endpoint)?,
        sts_endpoint: endpoint("sts-endpoint", &args.sts_endpoint)?,
        allowed_origins: Vec::new(),
    };
    for text in &args.identity_endpoints {
        let parsed =
            Endpoint::parse(text).with_context(|| format!("--identity-endpoints {text}"))?;
        options.allowed_origins.push(parsed.origin());
    }
    if let (Some(handle), Some(path)) = (simulator, &args.simulator) {
        demo_identity(handle, path, client).await;
        options.allowed_origins.push(handle.endpoint().origin());
        options
            .iam_endpoint
            .get_or_insert_with(|| handle.endpoint());
        options
            .sts_endpoint
            .get_or_insert_with(|| handle.endpoint());
    }
    let iam = IamClient::new(config).context("the IAM/STS client")?;
    let identities = Identities::new(options, iam, identity::api_server_probe(), clock.clone());
    Ok(Some(Arc::new(identities)))
}

/// The demo simulator's IAM: the `identity` block of the instances file, and the
/// cluster's JWKS (a failure to read it is logged: the file's JWKS, if any, stays).
async fn demo_identity(handle: &SimHandle, path: &std::path::Path, client: &Client) {
    match load_identity_config(path) {
        Ok(config) => {
            if let Err(error) = handle.state().set_identity(config) {
                warn!("demo mode: the identity settings were not accepted: {error}");
            }
        }
        Err(error) => warn!(
            "demo mode: no identity settings from {}: {error}",
            path.display()
        ),
    }
    let request = http::Request::get("/openid/v1/jwks").body(Vec::new());
    let jwks = match request {
        Ok(request) => client.request::<serde_json::Value>(request).await,
        Err(error) => {
            warn!("demo mode: cannot build the JWKS request: {error}");
            return;
        }
    };
    match jwks.map(|jwks| handle.state().set_jwks(&jwks)) {
        Ok(Ok(keys)) => info!(
            keys,
            "demo mode: the simulator trusts the cluster's signing keys"
        ),
        Ok(Err(error)) => warn!("demo mode: the cluster's JWKS was not accepted: {error}"),
        Err(error) => warn!("demo mode: cannot read the cluster's /openid/v1/jwks: {error}"),
    }
}

/// The simulator's keys are fake: any namespace may use them, only towards it.
fn demo_credentials() -> DefaultCredentials {
    DefaultCredentials {
        source: DefaultCredentialsSource::Static(FoundCredentials {
            credentials: Credentials::access_key(
                SimConfig::DEFAULT_ACCESS_KEY,
                SecretString::new(SimConfig::DEFAULT_SECRET_KEY),
                None,
            ),
            project_id: None,
        }),
        namespaces: None,
        for_operator_default_endpoint: true,
    }
}

fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (kubeconfig or in-cluster)")?;
    check_api_served(&client).await?;
    let operator = build(client.clone(), &args, Arc::new(SystemClock)).await?;
    let shared = operator.shared.clone();
    let server = tokio::spawn(supervised("metrics_server", shared.metrics().clone(), {
        let (addr, metrics, readiness) = (
            args.metrics_addr,
            shared.metrics().clone(),
            shared.readiness().clone(),
        );
        move || {
            let (metrics, readiness) = (metrics.clone(), readiness.clone());
            async move {
                if let Err(error) = server::serve(addr, metrics, readiness).await {
                    warn!("the metrics server stopped: {error:#}");
                }
            }
        }
    }));
    // Forget what is kept for DcsInstances and Secrets that are gone, so memory
    // stays flat however many objects come and go.
    let pruning = tokio::spawn(supervised("pruning", shared.metrics().clone(), {
        let shared = shared.clone();
        move || {
            let shared = shared.clone();
            async move {
                let mut every = tokio::time::interval(PRUNE_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    // Before the watches have listed, "nothing is live" is not true yet.
                    if shared.readiness().is_ready() {
                        shared.prune(&shared.instances().instances());
                    }
                }
            }
        }
    }));
    if args.leader_elect {
        let identity = args
            .lease_holder
            .clone()
            .or_else(host_name)
            .unwrap_or_else(|| format!("dcs-operator-{}", uuid::Uuid::new_v4()));
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let election = leader::run_election(
            client,
            args.lease_name.clone(),
            namespace,
            identity,
            shared.leader().clone(),
        );
        tokio::spawn(async move {
            if let Err(error) = election.await {
                // Without a working election this replica must not write at all.
                warn!("leader election failed: {error:#}");
            }
        });
    }
    info!(namespaces = ?args.namespaces, metrics = %args.metrics_addr, instance_series = args.metrics_instance_series, leader_election = args.leader_elect, "dcs-operator running");
    controller::run(
        operator.shared.clone(),
        args.namespaces.clone(),
        shutdown_signal(),
    )
    .await;
    if let Some(simulator) = operator.simulator {
        simulator.shutdown().await;
    }
    server.abort();
    pruning.abort();
    info!("dcs-operator stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
