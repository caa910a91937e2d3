//! Scale benchmark: N DcsInstances over the in-process DCS simulator, with the
//! operator binary as its own process against an in-memory Kubernetes API stand-in
//! (default) or the cluster of the current kubeconfig (`--cluster`); batch polling
//! against the per-object baseline, printed as a Markdown table.
//!
//! `cargo build --release && cargo run --release --example bench -- --scenarios 100,1000,10000`

// A crate root resolves `mod x;` beside itself, hence the paths.
#[path = "bench/cluster.rs"]
mod cluster;
#[path = "bench/harness.rs"]
mod harness;
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Batch,
    Baseline,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::Baseline => "per-object",
        }
    }

    fn flags(self) -> Vec<String> {
        let flags: &[&str] = match self {
            Mode::Batch => &["--batch-polling=true"],
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
    async fn ready_count(&self) -> anyhow::Result<usize> {
        match self {
            Backend::StandIn(server) => Ok(server.state.ready_count()),
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
    let dir = harness::scratch_dir(&format!("{n}-{}", mode.label()))?;
    eprintln!("== N = {n}, {} (logs in {})", mode.label(), dir.display());
    let sim = harness::start_simulator(n, args.latency_ms).await?;
    let endpoint = sim.base_url();
    let mut extra = mode.flags();
    extra.extend(["--default-poll-interval".into(), "10s".into()]);
    let (backend, kubeconfig) = if args.cluster {
        let cluster = cluster::Cluster::setup(n, args.namespaces, &endpoint).await?;
        for ns in &cluster.namespaces {
            extra.extend(["--namespace".into(), ns.clone()]);
        }
        (Backend::Cluster(cluster), None)
    } else {
        let server = standin::Server::start().await?;
        for i in 0..args.namespaces {
            let ns = harness::namespace_name("bench", i);
            server
                .state
                .insert(standin::NAMESPACES, harness::namespace_object(&ns));
            server
                .state
                .insert(standin::SECRETS, harness::credentials_secret(&ns));
        }
        for i in 0..n {
            let ns = harness::namespace_of("bench", i, args.namespaces);
            server.state.insert(
                standin::DCS_INSTANCES,
                harness::dcs_instance(&ns, i, &endpoint),
            );
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
            Mode::Batch => format!(" ({})", row.n.div_ceil(1000)),
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
    let mut rows = Vec::new();
    for &n in &args.scenarios {
        let mut modes = vec![Mode::Batch];
        if !args.no_baseline {
            modes.push(Mode::Baseline);
        }
        for mode in modes {
            let row = run_one(&args, &binary, n, mode).await?;
            eprintln!("   {row:?}");
            rows.push(row);
        }
    }
    print_table(&rows, &args);
    Ok(())
}
