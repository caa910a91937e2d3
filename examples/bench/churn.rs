//! `--churn K`: whether the operator's memory comes back when DcsInstances come and
//! go. One operator (batch polling, against the stand-in, with the unrelated
//! Secrets and the /metrics scrapes of the scenario rows) goes through K rounds:
//! create all N DcsInstances, wait for all Ready, delete them and their connection
//! Secrets, wait until the operator has forgotten them, then two more poll intervals
//! (the round's end, the plateau). Each round's VmRSS at the end should be where the
//! first round's was.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{self, OperatorProcess, POLL_INTERVAL};
use crate::standin::{self, StandIn};

/// The namespace prefix of the churned tenant.
const PREFIX: &str = "bench";
/// A later round's end may differ from the first's by this much (issue #15).
const TARGET_PERCENT: f64 = 10.0;

/// One churn run: N, the world around it, and the bounds of each wait.
#[derive(Debug, Clone)]
pub struct Config {
    pub n: usize,
    pub namespaces: usize,
    pub latency_ms: u64,
    pub unrelated_secrets: usize,
    pub scrape_every: Duration,
    pub rounds: u32,
    pub ready_timeout: Duration,
    pub forget_timeout: Duration,
    /// Every flag after `run` but `--metrics-addr` (the harness picks it).
    pub operator_flags: Vec<String>,
}

/// What one round measured.
#[derive(Debug, Clone)]
struct Round {
    /// Seconds from the creates (round 1: the operator's start) to all Ready.
    ready_seconds: Option<f64>,
    ready_count: usize,
    rss_ready_kib: u64,
    rss_end_kib: u64,
    hwm_end_kib: u64,
    /// Seconds from the deletes until the operator showed no trace of them.
    forgotten_seconds: Option<f64>,
}

/// Runs the rounds and returns the Markdown (table and verdict).
pub async fn run(binary: &Path, config: &Config) -> anyhow::Result<String> {
    let n = config.n;
    let dir = harness::scratch_dir(&format!("churn-{n}"))?;
    eprintln!(
        "== churn, N = {n}, {} rounds (logs in {})",
        config.rounds,
        dir.display()
    );
    let sim = harness::start_simulator(n, config.latency_ms).await?;
    let endpoint = sim.base_url();
    let server = standin::Server::start().await?;
    let state = &server.state;
    harness::seed_healthy_tenant(state, PREFIX, n, config.namespaces, &endpoint);
    harness::seed_unrelated_secrets(state, PREFIX, config.unrelated_secrets, config.namespaces);
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig())?;
    let started = Instant::now();
    let mut operator = OperatorProcess::spawn(
        binary,
        Some(&kubeconfig),
        &config.operator_flags,
        &dir.join("operator.log"),
    )?;
    let scraper = harness::Scraper::start(operator.metrics_addr, config.scrape_every);

    let mut rounds = Vec::new();
    // The operator prunes what it keeps for deleted objects only once /readyz is
    // ready: if it never is, nothing is ever forgotten, and the table says so.
    let mut operator_not_ready = false;
    for round in 1..=config.rounds {
        let created = if round == 1 {
            // The seeded ones: the round starts with the operator.
            started
        } else {
            for i in 0..n {
                let ns = harness::namespace_of(PREFIX, i, config.namespaces);
                // Fresh objects without a uid: the stand-in gives each a new one, as a
                // real server gives a recreated object of the same name.
                state.insert(
                    standin::DCS_INSTANCES,
                    harness::dcs_instance(&ns, i, &endpoint),
                );
            }
            Instant::now()
        };
        let (ready_seconds, ready_count) =
            wait_ready(state, &mut operator, n, created, config.ready_timeout).await?;
        let at_ready = operator.proc_stats();
        let readyz = operator.ready().await;
        eprintln!(
            "   round {round}: {ready_count}/{n} Ready after {:.1} s; VmRSS {:.1} MiB, VmHWM {:.1} MiB; /readyz {}",
            created.elapsed().as_secs_f64(),
            mib(at_ready.rss_kib),
            mib(at_ready.peak_rss_kib),
            if readyz { "ready" } else { "NOT ready" }
        );
        operator_not_ready |= !readyz;

        let deleted_at = Instant::now();
        let forgotten_seconds = delete_and_wait(state, &mut operator, config).await?;
        match forgotten_seconds {
            Some(s) => eprintln!("   round {round}: forgotten {s:.1} s after the deletes"),
            None => eprintln!(
                "   round {round}: NOT forgotten within {} s of the deletes: {}",
                config.forget_timeout.as_secs(),
                traces(&operator.metrics().await)
            ),
        }
        // The plateau: two more poll intervals, in which nothing should be left to do.
        tokio::time::sleep(POLL_INTERVAL * 2).await;
        // A reconcile still running at the deletes may have written a connection
        // Secret again; the garbage collector would take it.
        let late = state.delete_where(standin::SECRETS, harness::is_connection_secret);
        if !late.is_empty() {
            eprintln!(
                "   round {round}: {} connection Secrets written after the deletes (deleted again)",
                late.len()
            );
        }
        let at_end = operator.proc_stats();
        let metrics = operator.metrics().await;
        eprintln!(
            "   round {round} end ({:.0} s after the deletes): VmRSS {:.1} MiB, VmHWM {:.1} MiB; caches: {}",
            deleted_at.elapsed().as_secs_f64(),
            mib(at_end.rss_kib),
            mib(at_end.peak_rss_kib),
            cache_entries(&metrics)
        );
        rounds.push(Round {
            ready_seconds,
            ready_count,
            rss_ready_kib: at_ready.rss_kib,
            rss_end_kib: at_end.rss_kib,
            hwm_end_kib: at_end.peak_rss_kib,
            forgotten_seconds,
        });
    }
    let counts = state.counts();
    let scrape = scraper.stop();
    let still_running = operator.exited().is_none();
    operator.stop();
    server.stop();
    sim.shutdown().await;
    eprintln!("   /metrics: {scrape}");
    eprintln!(
        "   stand-in writes over the run: {:?}",
        counts.writes.iter().collect::<Vec<_>>()
    );
    anyhow::ensure!(still_running, "the operator exited during the churn");
    let mut out = table(config, &rounds, scrape);
    if operator_not_ready {
        out.push_str(
            "\n\nThe operator's /readyz was not ready when all were Ready (in at least one \
             round); its pruning pass, which forgets deleted instances, runs only when it is.",
        );
    }
    Ok(out)
}

/// Waits until all `n` are Ready (bounded): (seconds since `since`, Ready count).
async fn wait_ready(
    state: &StandIn,
    operator: &mut OperatorProcess,
    n: usize,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<(Option<f64>, usize)> {
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    loop {
        if let Some(status) = operator.exited() {
            anyhow::bail!("the operator exited ({status}):\n{}", operator.log_tail(20));
        }
        let ready = state.ready_count();
        if ready >= n {
            return Ok((Some(since.elapsed().as_secs_f64()), ready));
        }
        if Instant::now() >= deadline {
            return Ok((None, ready));
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "   {ready}/{n} Ready after {:.0} s",
                since.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes every DcsInstance, then (once the operator no longer serves them, so it
/// does not write them again) their connection Secrets, the garbage collector's
/// part; then waits until the operator shows no trace of them: no per-instance
/// series and an empty observation store. Seconds from the deletes to that, or
/// None when it did not happen within `config.forget_timeout`.
async fn delete_and_wait(
    state: &StandIn,
    operator: &mut OperatorProcess,
    config: &Config,
) -> anyhow::Result<Option<f64>> {
    let started = Instant::now();
    let deadline = started + config.forget_timeout;
    let instances = state.delete_where(standin::DCS_INSTANCES, |_| true);
    let held = instances
        .iter()
        .filter(|o| harness::has_finalizers(o))
        .count();
    if held > 0 {
        // Observe-mode objects carry none (the cleanup finalizer is for Manage);
        // the stand-in does not model finalizers, so say so if that changes.
        eprintln!(
            "   {held} of {} deleted DcsInstances carried finalizers (not modelled: removed at once)",
            instances.len()
        );
    }
    let mut secrets_deleted = false;
    loop {
        if let Some(status) = operator.exited() {
            anyhow::bail!("the operator exited ({status}):\n{}", operator.log_tail(20));
        }
        let metrics = operator.metrics().await;
        let served = harness::metric_samples(&metrics, "dcs_operator_instance_ready");
        if served == 0 && !secrets_deleted {
            let secrets = state.delete_where(standin::SECRETS, harness::is_connection_secret);
            eprintln!(
                "   deleted {} DcsInstances, then {} connection Secrets after {:.1} s",
                instances.len(),
                secrets.len(),
                started.elapsed().as_secs_f64()
            );
            secrets_deleted = true;
        }
        let observations = harness::metric_value(
            &metrics,
            "dcs_operator_cache_entries",
            "cache=\"observations\"",
        );
        // The gauge is set by the pruning pass (every 60 s): absent means not yet.
        if secrets_deleted && observations == Some(0.0) {
            return Ok(Some(started.elapsed().as_secs_f64()));
        }
        if Instant::now() >= deadline {
            if !secrets_deleted {
                let secrets = state.delete_where(standin::SECRETS, harness::is_connection_secret);
                eprintln!(
                    "   the operator still served {served} instances; deleted {} connection Secrets anyway",
                    secrets.len()
                );
            }
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What still shows the deleted instances: per-instance series and cache sizes.
fn traces(metrics: &str) -> String {
    format!(
        "{} instance_ready series; caches: {}",
        harness::metric_samples(metrics, "dcs_operator_instance_ready"),
        cache_entries(metrics)
    )
}

/// `dcs_operator_cache_entries` as `name=value` pairs, the non-zero ones.
fn cache_entries(metrics: &str) -> String {
    let samples: Vec<(&str, &str)> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("dcs_operator_cache_entries{cache=\""))
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            Some((name, rest.rsplit(' ').next()?))
        })
        .collect();
    let non_zero: Vec<String> = samples
        .iter()
        .filter(|(_, value)| *value != "0")
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if samples.is_empty() {
        // The gauges are set by the pruning pass only.
        "none published (no pruning pass yet)".into()
    } else if non_zero.is_empty() {
        "all empty".into()
    } else {
        non_zero.join(", ")
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn table(config: &Config, rounds: &[Round], scrape: harness::ScrapeSummary) -> String {
    let mut out = format!(
        "Churn at N = {} ({} unrelated Secrets, /metrics {}; one operator, batch polling):\n\n\
         | round | all Ready | VmRSS when all Ready | VmRSS at round end | VmHWM so far |\n\
         |---:|---:|---:|---:|---:|\n",
        harness::grouped(config.n as u64),
        harness::grouped(config.unrelated_secrets as u64),
        if config.scrape_every.is_zero() {
            "not scraped".to_string()
        } else {
            format!(
                "scraped every {} s: {scrape}",
                config.scrape_every.as_secs()
            )
        },
    );
    for (i, round) in rounds.iter().enumerate() {
        let ready = match round.ready_seconds {
            Some(s) => format!("{s:.1} s"),
            None => format!(
                "not within {} s ({}/{})",
                config.ready_timeout.as_secs(),
                round.ready_count,
                config.n
            ),
        };
        let forgotten = if round.forgotten_seconds.is_some() {
            ""
        } else {
            " ¹"
        };
        out.push_str(&format!(
            "| {} | {ready} | {:.1} MiB | {:.1} MiB{forgotten} | {:.1} MiB |\n",
            i + 1,
            mib(round.rss_ready_kib),
            mib(round.rss_end_kib),
            mib(round.hwm_end_kib),
        ));
    }
    out.push('\n');
    if rounds.iter().any(|r| r.forgotten_seconds.is_none()) {
        out.push_str(&format!(
            "¹ the operator had not forgotten the deleted instances within {} s.\n\n",
            config.forget_timeout.as_secs()
        ));
    }
    out.push_str("Round 1's all Ready counts from the operator's start.\n\n");
    match rounds.split_first() {
        Some((first, later)) if !later.is_empty() => {
            let base = first.rss_end_kib.max(1) as f64;
            let worst = later
                .iter()
                .map(|r| (r.rss_end_kib as f64 - base).abs() / base * 100.0)
                .fold(0.0, f64::max);
            let unforgotten = rounds
                .iter()
                .filter(|r| r.forgotten_seconds.is_none())
                .count();
            out.push_str(&format!(
                "rounds after the first end within {worst:.1} % of the first round's end (target {TARGET_PERCENT:.0} %): {}",
                if worst <= TARGET_PERCENT { "met" } else { "missed" }
            ));
            if unforgotten > 0 {
                // Ends compared while the operator still keeps the deleted
                // instances compare growth, not a return to a plateau.
                out.push_str(&format!(
                    " (but in {unforgotten} of {} rounds the operator had not forgotten the deleted instances at the round's end)",
                    rounds.len()
                ));
            }
        }
        _ => out.push_str("one round only: nothing to compare the first round's end with"),
    }
    out
}
