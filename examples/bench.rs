//! Scale benchmark: N DcsInstances over the in-process DCS simulator, with the
//! operator binary as its own process against an in-memory Kubernetes API stand-in
//! (default) or the cluster of the current kubeconfig (`--cluster`); batch polling
//! against the per-object baseline, printed as a Markdown table.
//!
//! `cargo build --release && cargo run --release --example bench -- --scenarios 100,1000,10000`
//!
//! `--hostile`: each scenario with batch polling, once as is and once with a hostile
//! tenant beside it (every hostile endpoint mode and tarpits), then what a 16 MiB
//! hostile body costs above idle.

// A crate root resolves `mod x;` beside itself, hence the paths.
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
    /// Give up waiting for all Ready after this many seconds (the row says so).
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
        "   {ready_count}/{n} Ready after {:.1}s; steady state over {} ticks",
        started.elapsed().as_secs_f64(),
        args.ticks
    );

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
    operator.stop();
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
