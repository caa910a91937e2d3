//! Scale benchmark: N DcsInstances over the in-process DCS simulator, with the
//! operator binary as its own process against an in-memory Kubernetes API stand-in
//! (default) or the cluster of the current kubeconfig (`--cluster`); batch polling
//! against the per-object baseline, printed as a Markdown table.
//!
//! `cargo build --release && cargo run --release --example bench -- --scenarios 100,1000,10000`
//!
//! What production sees, on the stand-in: 10 000 unrelated Secrets beside the
//! DcsInstances (`--unrelated-secrets`, seen by the operator's metadata-only Secret
//! watch), /metrics scraped every 5 s from the operator's start to the end of the
//! row (`--scrape-every-secs`), and once everything is Ready one forced relist of
//! every watch (as after an etcd compaction: the streams end, resuming answers 410
//! Gone, the watchers list everything again page by page, when a cache that buffers
//! the new list beside the old one holds two copies) before the steady-state
//! window. The peak RSS is read at the end, so it includes the relist. With
//! `--cluster` these three are skipped.
//!
//! `--hostile`: each scenario with batch polling, once as is and once with a hostile
//! tenant beside it (every hostile endpoint mode and tarpits), then what a 16 MiB
//! hostile body costs above idle.
//!
//! `--churn K`: instead of the table, for each N one operator through K rounds of
//! creating all N DcsInstances, waiting for all Ready, deleting them (and their
//! connection Secrets, as the garbage collector would) and waiting until the
//! operator has forgotten them; RSS per round shows whether memory comes back.

// A crate root resolves `mod x;` beside itself, hence the paths.
#[path = "bench/churn.rs"]
mod churn;
#[path = "bench/cluster.rs"]
mod cluster;
#[path = "bench/harness.rs"]
mod harness;
#[path = "bench/hostile.rs"]
mod hostile;
#[path = "bench/hostile_tenant.rs"]
mod hostile_tenant;
#[path = "bench/standin.rs"]
mod standin;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use harness::{OperatorProcess, POLL_INTERVAL};

#[derive(Debug, Parser)]
#[command(about = "dcs-operator scale benchmark")]
struct Args {
    /// Extra flags for the operator (repeatable), e.g. `--operator-arg=--namespace-concurrency=64`.
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_args: Vec<String>,
    /// Numbers of DcsInstances, one scenario each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    scenarios: Vec<usize>,
    /// Use the cluster of the current kubeconfig instead of the stand-in (installs
    /// the CRD, creates and deletes its own namespaces).
    #[arg(long)]
    cluster: bool,
    /// Namespaces to spread the DcsInstances over.
    #[arg(long, default_value_t = 4)]
    namespaces: usize,
    /// Poll intervals (ticks) the steady-state window lasts.
    #[arg(long, default_value_t = 3)]
    ticks: u32,
    /// Latency the simulator adds to every DCS call, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Give up waiting for all Ready, and for the forced relist, after this many
    /// seconds (the row says so).
    #[arg(long, default_value_t = 600)]
    ready_timeout: u64,
    /// The operator binary (default: dcs-operator next to this example's target dir).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Skip the per-object baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Batch polling with and without a hostile tenant (instead of batch against
    /// per-object), then the cost of 16 MiB hostile bodies above idle.
    #[arg(long)]
    hostile: bool,
    /// Tarpits of the hostile tenant.
    #[arg(long, default_value_t = 10)]
    tarpits: usize,
    /// DcsInstances of the healthy tenant while 16 MiB bodies are measured.
    #[arg(long, default_value_t = 100)]
    body_cost_n: usize,
    /// Requests each 16 MiB endpoint must have received before the figure is read.
    #[arg(long, default_value_t = 3)]
    body_cost_polls: u64,
    /// The 16 MiB endpoints: list (HugeList), ip (HugeIp), error (HugeErrorBody).
    #[arg(long, value_delimiter = ',', default_value = "list,ip,error")]
    body_cost_modes: Vec<String>,
    /// Only the 16 MiB measurement (no scenario table).
    #[arg(long)]
    body_cost_only: bool,
    /// Opaque Secrets no DcsInstance references, spread over the namespaces and
    /// stored before the operator starts (the same number whatever N; stand-in only).
    #[arg(long, default_value_t = 10_000)]
    unrelated_secrets: usize,
    /// Scrape the operator's /metrics this often, from its start to the end of the
    /// row, as Prometheus would (0: never).
    #[arg(long, default_value_t = 5)]
    scrape_every_secs: u64,
    /// Instead of the table: for each N, K rounds of creating and deleting all N
    /// DcsInstances against one operator (batch polling, stand-in only; 0: off).
    #[arg(long, default_value_t = 0)]
    churn: u32,
    /// How long to wait, after a churn round's deletes, for the operator to forget
    /// the instances (its pruning pass runs every 60 s).
    #[arg(long, default_value_t = 180)]
    forget_timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Batch,
    Baseline,
    /// Batch polling with a hostile tenant beside the healthy one.
    Hostile,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::Baseline => "per-object",
            Mode::Hostile => "batch + hostile tenant",
        }
    }

    fn flags(self) -> Vec<String> {
        let flags: &[&str] = match self {
            Mode::Batch | Mode::Hostile => &["--batch-polling=true"],
            // Unthrottled, so the baseline shows what per-object polling costs
            // rather than how the rate limiter queues it. At N = 10 000 with 10 s
            // ticks and 50 ms per call it needs ~1 000 calls a second in flight: the
            // default 32 concurrent reconciles (~640 a second) could never keep up.
            Mode::Baseline => &[
                "--batch-polling=false",
                "--api-rate-limit",
                "100000",
                "--api-burst",
                "100000",
                "--concurrency",
                "256",
            ],
        };
        flags.iter().map(|f| f.to_string()).collect()
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Row {
    n: usize,
    mode: Mode,
    ready_seconds: Option<f64>,
    ready_count: usize,
    dcs_per_tick: f64,
    writes_per_tick: f64,
    write_breakdown: String,
    request_breakdown: String,
    peak_rss_mib: f64,
    cpu_ms_per_1000: f64,
    reconciles: f64,
    /// Unrelated Secrets stored beside the tenant (0 on a cluster).
    unrelated_secrets: usize,
    /// The forced relist (None on a cluster).
    relist: Option<Relist>,
    scrape: harness::ScrapeSummary,
}

/// What the forced relist did.
#[derive(Debug, Clone)]
struct Relist {
    /// Seconds from expiring the watches until every watch had listed again to its
    /// last page; None if that did not happen within the bound.
    seconds: Option<f64>,
    /// Seconds until the DcsInstances' list and until the second Secret list
    /// were complete.
    instances_seconds: Option<f64>,
    secrets_seconds: Option<f64>,
    /// List requests (pages) meanwhile, DcsInstances and Secrets.
    instance_pages: u64,
    secret_pages: u64,
    /// Complete lists meanwhile (1 of DcsInstances and 2 of Secrets expected: the
    /// owned-Secret watch and the metadata-only one).
    instance_lists: u64,
    secret_lists: u64,
}

impl std::fmt::Display for Relist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |seconds: Option<f64>| match seconds {
            Some(s) => format!("{s:.1} s"),
            None => "never".into(),
        };
        match self.seconds {
            Some(s) => write!(f, "re-listed in {s:.1} s")?,
            None => write!(f, "NOT re-listed within the bound")?,
        }
        write!(
            f,
            " ({} complete lists of DcsInstances in {} pages, done at {}; {} of Secrets in {} pages, done at {})",
            self.instance_lists,
            self.instance_pages,
            at(self.instances_seconds),
            self.secret_lists,
            self.secret_pages,
            at(self.secrets_seconds)
        )
    }
}

/// Ends every watch of the stand-in with 410 Gone for any resume, and waits (up to
/// `bound`) until the operator has listed DcsInstances once and Secrets twice again
/// to the last page.
async fn force_relist(
    state: &standin::StandIn,
    operator: &mut OperatorProcess,
    bound: Duration,
) -> anyhow::Result<Relist> {
    let pages = |counts: &standin::Counts, resource: &str| {
        counts
            .requests
            .get(&("list".to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let before = state.counts();
    let instances_before = state.lists_completed(standin::DCS_INSTANCES);
    let secrets_before = state.lists_completed(standin::SECRETS);
    let started = Instant::now();
    state.expire_watches();
    let (mut instances_seconds, mut secrets_seconds) = (None, None);
    while started.elapsed() < bound {
        if let Some(status) = operator.exited() {
            anyhow::bail!("the operator exited ({status}):\n{}", operator.log_tail(20));
        }
        let now = Some(started.elapsed().as_secs_f64());
        if instances_seconds.is_none()
            && state.lists_completed(standin::DCS_INSTANCES) > instances_before
        {
            instances_seconds = now;
        }
        if secrets_seconds.is_none()
            && state.lists_completed(standin::SECRETS) >= secrets_before + 2
        {
            secrets_seconds = now;
        }
        if instances_seconds.is_some() && secrets_seconds.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = instances_seconds
        .zip(secrets_seconds)
        .map(|(a, b)| a.max(b));
    let after = state.counts();
    Ok(Relist {
        seconds,
        instances_seconds,
        secrets_seconds,
        instance_pages: pages(&after, "dcsinstances") - pages(&before, "dcsinstances"),
        secret_pages: pages(&after, "secrets") - pages(&before, "secrets"),
        instance_lists: state.lists_completed(standin::DCS_INSTANCES) - instances_before,
        secret_lists: state.lists_completed(standin::SECRETS) - secrets_before,
    })
}

/// Where the Kubernetes side lives: the stand-in or a real cluster.
enum Backend {
    StandIn(standin::Server),
    Cluster(cluster::Cluster),
}

impl Backend {
    /// Ready DcsInstances of the healthy tenant (namespaces `bench-*`).
    async fn ready_count(&self) -> anyhow::Result<usize> {
        match self {
            Backend::StandIn(server) => Ok(server
                .state
                .objects(standin::DCS_INSTANCES)
                .iter()
                .filter(|o| {
                    o.pointer("/metadata/namespace")
                        .and_then(|v| v.as_str())
                        .is_some_and(|ns| ns.starts_with("bench-"))
                })
                .filter(|o| standin::is_ready(o))
                .count()),
            Backend::Cluster(cluster) => cluster.ready_count().await,
        }
    }
}

/// Kubernetes-side figures at one moment.
struct K8sSample {
    writes: u64,
    counts: Option<standin::Counts>,
}

async fn k8s_sample(backend: &Backend, operator: &OperatorProcess) -> K8sSample {
    match backend {
        Backend::StandIn(server) => {
            let counts = server.state.counts();
            K8sSample {
                writes: counts.total_writes(),
                counts: Some(counts),
            }
        }
        // A real API server does not tell us: the operator's own write counter.
        Backend::Cluster(_) => K8sSample {
            writes: operator.metric_sum("dcs_operator_kube_writes_total").await as u64,
            counts: None,
        },
    }
}

fn breakdown<K: std::fmt::Debug>(map: impl IntoIterator<Item = (K, u64)>, per: f64) -> String {
    let parts: Vec<String> = map
        .into_iter()
        .map(|(k, v)| format!("{k:?}: {:.1}", v as f64 / per))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

async fn run_one(
    args: &Args,
    binary: &std::path::Path,
    n: usize,
    mode: Mode,
) -> anyhow::Result<Row> {
    anyhow::ensure!(
        !(args.cluster && mode == Mode::Hostile),
        "--hostile runs against the stand-in only"
    );
    let dir = harness::scratch_dir(&format!("{n}-{}", mode.label().replace(' ', "")))?;
    eprintln!("== N = {n}, {} (logs in {})", mode.label(), dir.display());
    let sim = harness::start_simulator(n, args.latency_ms).await?;
    let endpoint = sim.base_url();
    let mut extra = mode.flags();
    extra.extend(["--default-poll-interval".into(), "10s".into()]);
    extra.extend(args.operator_args.iter().cloned());
    let mut hostile_tenant = None;
    let (backend, kubeconfig) = if args.cluster {
        let cluster = cluster::Cluster::setup(n, args.namespaces, &endpoint).await?;
        for ns in &cluster.namespaces {
            extra.extend(["--namespace".into(), ns.clone()]);
        }
        (Backend::Cluster(cluster), None)
    } else {
        let server = standin::Server::start().await?;
        harness::seed_healthy_tenant(&server.state, "bench", n, args.namespaces, &endpoint);
        harness::seed_unrelated_secrets(
            &server.state,
            "bench",
            args.unrelated_secrets,
            args.namespaces,
        );
        if mode == Mode::Hostile {
            hostile_tenant =
                Some(hostile_tenant::HostileTenant::full(&server.state, args.tarpits).await?);
        }
        let path = dir.join("kubeconfig");
        std::fs::write(&path, server.kubeconfig())?;
        (Backend::StandIn(server), Some(path))
    };

    let started = Instant::now();
    let mut operator = OperatorProcess::spawn(
        binary,
        kubeconfig.as_deref(),
        &extra,
        &dir.join("operator.log"),
    )?;
    let scraper = harness::Scraper::start(
        operator.metrics_addr,
        Duration::from_secs(args.scrape_every_secs),
    );
    let deadline = started + Duration::from_secs(args.ready_timeout);
    let mut ready_count = 0;
    let mut ready_seconds = None;
    let mut last_report = Instant::now();
    while Instant::now() < deadline {
        if let Some(status) = operator.exited() {
            anyhow::bail!("the operator exited ({status}):\n{}", operator.log_tail(20));
        }
        ready_count = backend.ready_count().await?;
        if ready_count >= n {
            ready_seconds = Some(started.elapsed().as_secs_f64());
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "   {ready_count}/{n} Ready after {:.0}s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        let pause = if args.cluster { 1000 } else { 100 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    eprintln!(
        "   {ready_count}/{n} Ready after {:.1}s; the operator's /readyz: {}",
        started.elapsed().as_secs_f64(),
        if operator.ready().await {
            "ready"
        } else {
            "NOT ready"
        }
    );
    let relist = match &backend {
        Backend::StandIn(server) => {
            let relist = force_relist(
                &server.state,
                &mut operator,
                Duration::from_secs(args.ready_timeout),
            )
            .await?;
            eprintln!(
                "   forced relist: {relist}; {}/{n} Ready after it",
                backend.ready_count().await?
            );
            Some(relist)
        }
        Backend::Cluster(_) => None,
    };
    eprintln!("   steady state over {} ticks", args.ticks);

    // One more tick first, so the first polls' stragglers are not counted as steady.
    tokio::time::sleep(POLL_INTERVAL + Duration::from_secs(2)).await;
    let dcs_before = harness::dcs_requests(&sim);
    let k8s_before = k8s_sample(&backend, &operator).await;
    let window = POLL_INTERVAL * args.ticks;
    tokio::time::sleep(window).await;
    let dcs_after = harness::dcs_requests(&sim);
    let k8s_after = k8s_sample(&backend, &operator).await;
    let reconciles = operator.metric_sum("dcs_operator_reconciles_total").await;
    let stats = operator.proc_stats();
    let scrape = scraper.stop();
    operator.stop();
    eprintln!("   /metrics: {scrape}");
    if let Some(tenant) = &hostile_tenant {
        eprintln!("   hostile requests: {}", tenant.request_summary());
    }
    drop(hostile_tenant);

    let ticks = f64::from(args.ticks);
    let (write_breakdown, request_breakdown) = match (&k8s_after.counts, &k8s_before.counts) {
        (Some(after), Some(before)) => {
            let delta = after.since(before);
            (
                breakdown(delta.writes, ticks),
                breakdown(delta.requests, ticks),
            )
        }
        _ => (
            "(operator metric)".into(),
            "(not counted on a cluster)".into(),
        ),
    };
    match backend {
        Backend::StandIn(server) => server.stop(),
        Backend::Cluster(cluster) => cluster.teardown().await,
    }
    sim.shutdown().await;
    Ok(Row {
        n,
        mode,
        ready_seconds,
        ready_count,
        dcs_per_tick: (dcs_after - dcs_before) as f64 / ticks,
        writes_per_tick: k8s_after.writes.saturating_sub(k8s_before.writes) as f64 / ticks,
        write_breakdown,
        request_breakdown,
        peak_rss_mib: stats.peak_rss_kib as f64 / 1024.0,
        cpu_ms_per_1000: if reconciles > 0.0 {
            stats.cpu_seconds * 1000.0 / reconciles * 1000.0
        } else {
            f64::NAN
        },
        reconciles,
        unrelated_secrets: if args.cluster {
            0
        } else {
            args.unrelated_secrets
        },
        relist,
        scrape,
    })
}

fn print_table(rows: &[Row], args: &Args) {
    println!(
        "| N | polling | all Ready | DCS calls/tick (target) | K8s writes/tick | peak RSS | CPU per 1 000 reconciles | reconciles |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let ready = match row.ready_seconds {
            Some(s) => format!("{s:.1} s"),
            None => format!(
                "not within {} s ({}/{})",
                args.ready_timeout, row.ready_count, row.n
            ),
        };
        let target = match row.mode {
            Mode::Batch | Mode::Hostile => format!(" ({})", row.n.div_ceil(1000)),
            Mode::Baseline => String::new(),
        };
        println!(
            "| {} | {} | {} | {:.1}{} | {:.1} | {:.1} MiB | {:.0} ms | {:.0} |",
            row.n,
            row.mode.label(),
            ready,
            row.dcs_per_tick,
            target,
            row.writes_per_tick,
            row.peak_rss_mib,
            row.cpu_ms_per_1000,
            row.reconciles
        );
    }
    println!();
    for n in rows
        .iter()
        .map(|r| r.n)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let per = |mode| rows.iter().find(|r| r.n == n && r.mode == mode);
        if let (Some(batch), Some(baseline)) = (per(Mode::Batch), per(Mode::Baseline)) {
            let ratio = baseline.dcs_per_tick / batch.dcs_per_tick.max(f64::MIN_POSITIVE);
            println!(
                "- N = {n}: per-object polling makes {ratio:.0}× the DCS calls of batch polling"
            );
        }
        if let (Some(batch), Some(hostile)) = (per(Mode::Batch), per(Mode::Hostile)) {
            println!(
                "- N = {n}: the hostile tenant adds {:+.1} MiB of peak RSS",
                hostile.peak_rss_mib - batch.peak_rss_mib
            );
        }
    }
    if let Some(line) = rss_per_instance(rows) {
        println!("{line}");
    }
    println!();
    for row in rows {
        let relist = match &row.relist {
            Some(relist) => format!("forced relist {relist}"),
            None => "no forced relist (cluster)".into(),
        };
        println!(
            "- N = {} {}: {} unrelated Secrets; {relist}; /metrics: {}",
            row.n,
            row.mode.label(),
            harness::grouped(row.unrelated_secrets as u64),
            row.scrape
        );
    }
    println!();
    println!("Steady-state Kubernetes traffic per tick:");
    println!();
    for row in rows {
        println!(
            "- N = {} {}: writes {}; requests {}",
            row.n,
            row.mode.label(),
            row.write_breakdown,
            row.request_breakdown
        );
    }
}

/// Peak RSS per additional DcsInstance between two batch rows: the smallest N of
/// at least 1 000 and the largest N (None unless both exist and differ).
fn rss_per_instance(rows: &[Row]) -> Option<String> {
    let batch: Vec<&Row> = rows.iter().filter(|r| r.mode == Mode::Batch).collect();
    let low = batch.iter().filter(|r| r.n >= 1000).min_by_key(|r| r.n)?;
    let high = batch.iter().max_by_key(|r| r.n)?;
    if high.n <= low.n {
        return None;
    }
    let kib = (high.peak_rss_mib - low.peak_rss_mib) * 1024.0 / (high.n - low.n) as f64;
    Some(format!(
        "- peak RSS per additional DcsInstance between N = {} and {}: {kib:.2} KiB (target < 4 KiB): {}",
        harness::grouped(low.n as u64),
        harness::grouped(high.n as u64),
        if kib < 4.0 { "met" } else { "missed" }
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = match &args.operator {
        Some(path) => path.clone(),
        None => harness::sibling_operator_binary().context(
            "no dcs-operator binary next to this example: run `cargo build --release` first, or pass --operator",
        )?,
    };
    eprintln!(
        "operator {}; {} namespaces; {} ms DCS latency; {}",
        binary.display(),
        args.namespaces,
        args.latency_ms,
        if args.cluster {
            "current kubeconfig's cluster"
        } else {
            "API stand-in"
        }
    );
    if args.body_cost_only {
        println!("{}", body_cost(&args, &binary).await?);
        return Ok(());
    }
    if args.cluster {
        eprintln!(
            "with --cluster: no unrelated Secrets, no forced relist{}",
            if args.churn > 0 {
                ", and --churn skipped (stand-in only)"
            } else {
                ""
            }
        );
    } else if args.churn > 0 {
        if args.hostile {
            eprintln!("--churn runs batch polling without the hostile tenant: --hostile ignored");
        }
        for &n in &args.scenarios {
            let mut extra = Mode::Batch.flags();
            extra.extend(["--default-poll-interval".into(), "10s".into()]);
            extra.extend(args.operator_args.iter().cloned());
            let config = churn::Config {
                n,
                namespaces: args.namespaces,
                latency_ms: args.latency_ms,
                unrelated_secrets: args.unrelated_secrets,
                scrape_every: Duration::from_secs(args.scrape_every_secs),
                rounds: args.churn,
                ready_timeout: Duration::from_secs(args.ready_timeout),
                forget_timeout: Duration::from_secs(args.forget_timeout),
                operator_flags: extra,
            };
            println!("{}", churn::run(&binary, &config).await?);
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for &n in &args.scenarios {
        let mut modes = vec![Mode::Batch];
        if args.hostile {
            modes.push(Mode::Hostile);
        } else if !args.no_baseline {
            modes.push(Mode::Baseline);
        }
        for mode in modes {
            let row = run_one(&args, &binary, n, mode).await?;
            eprintln!("   {row:?}");
            rows.push(row);
        }
    }
    print_table(&rows, &args);
    if args.hostile {
        let cost = body_cost(&args, &binary).await?;
        println!();
        println!("{cost}");
    }
    Ok(())
}

/// What 16 MiB hostile bodies cost: the operator with `--body-cost-n` healthy
/// DcsInstances, idle (all Ready and one more tick), then while a HugeList, a
/// HugeIp and a HugeErrorBody endpoint are each polled at least three times; the
/// difference of the peak RSS (VmHWM) is the cost above idle.
async fn body_cost(args: &Args, binary: &std::path::Path) -> anyhow::Result<String> {
    if args.cluster {
        anyhow::bail!("--hostile runs against the stand-in only");
    }
    let polls = args.body_cost_polls;
    let modes = args
        .body_cost_modes
        .iter()
        .map(|name| match name.as_str() {
            "list" => Ok(hostile::Mode::HugeList),
            "ip" => Ok(hostile::Mode::HugeIp),
            "error" => Ok(hostile::Mode::HugeErrorBody),
            other => Err(anyhow::anyhow!("unknown --body-cost-modes entry {other}")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let n = args.body_cost_n;
    let dir = harness::scratch_dir("body-cost")?;
    eprintln!(
        "== 16 MiB bodies above idle, N = {n} (logs in {})",
        dir.display()
    );
    let sim = harness::start_simulator(n, args.latency_ms).await?;
    let server = standin::Server::start().await?;
    harness::seed_healthy_tenant(&server.state, "bench", n, args.namespaces, &sim.base_url());
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig())?;
    let backend = Backend::StandIn(server);
    let mut operator = OperatorProcess::spawn(
        binary,
        Some(&kubeconfig),
        &Mode::Batch.flags(),
        &dir.join("operator.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(args.ready_timeout);
    while backend.ready_count().await? < n {
        if let Some(status) = operator.exited() {
            anyhow::bail!("the operator exited ({status}):\n{}", operator.log_tail(20));
        }
        anyhow::ensure!(Instant::now() < deadline, "not all Ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(POLL_INTERVAL + Duration::from_secs(2)).await;
    let idle = operator.proc_stats();

    let Backend::StandIn(server) = &backend else {
        unreachable!("the stand-in")
    };
    let mut tenant = hostile_tenant::HostileTenant::new(&server.state);
    for mode in modes {
        tenant.add(&server.state, mode).await?;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.ready_timeout);
    while tenant.min_requests() < polls {
        if let Some(status) = operator.exited() {
            anyhow::bail!("the operator exited ({status}):\n{}", operator.log_tail(20));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "hostile endpoints not polled {polls} times: {}",
            tenant.request_summary()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The last answers are read and dropped within the client timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hostile = operator.proc_stats();
    let summary = tenant.request_summary();
    let still_ready = backend.ready_count().await?;
    operator.stop();
    server.stop();
    drop(tenant);
    sim.shutdown().await;

    let mib = |kib: u64| kib as f64 / 1024.0;
    let cost = mib(hostile.peak_rss_kib) - mib(idle.peak_rss_kib);
    Ok(format!(
        "16 MiB hostile bodies at N = {n} (requests: {summary}; {:.0} s; {still_ready}/{n} healthy Ready after):\n\n\
         | | peak RSS (VmHWM) | RSS now (VmRSS) |\n\
         |---|---:|---:|\n\
         | idle (all Ready, one more tick) | {:.1} MiB | {:.1} MiB |\n\
         | after the 16 MiB bodies | {:.1} MiB | {:.1} MiB |\n\
         | difference | {cost:+.1} MiB | {:+.1} MiB |\n\n\
         target: under 32 MiB above idle: {}",
        started.elapsed().as_secs_f64(),
        mib(idle.peak_rss_kib),
        mib(idle.rss_kib),
        mib(hostile.peak_rss_kib),
        mib(hostile.rss_kib),
        mib(hostile.rss_kib) - mib(idle.rss_kib),
        if cost < 32.0 { "met" } else { "missed" },
    ))
}
