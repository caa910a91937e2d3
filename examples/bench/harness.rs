//! What the benchmark and its smoke test share besides the API stand-in: the
//! simulated DCS world, the objects to create, and the operator as a child process
//! (its /metrics and its /proc figures).
//!
//! Included through `#[path]` by `examples/bench.rs` and
//! `tests/integration/bench_smoke.rs`, so not every item is used by both.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dcs_operator::clock::SystemClock;
use dcs_operator::dcs::sim::{Fault, FaultKind, SimConfig, SimHandle, SimInstance, Simulator};
use k8s_openapi::ByteString;
use serde_json::{Value, json};

/// The one project every simulated instance lives in.
pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";
/// The credentials Secret every namespace holds (same keys everywhere).
pub const CREDENTIALS_SECRET: &str = "dcs-credentials";
/// The shortest poll interval the CRD allows: steady state comes soonest.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

pub fn instance_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

pub fn namespace_name(prefix: &str, n: usize) -> String {
    format!("{prefix}-{n}")
}

/// The namespace DcsInstance `n` of `namespaces` lives in.
pub fn namespace_of(prefix: &str, n: usize, namespaces: usize) -> String {
    namespace_name(prefix, n % namespaces.max(1))
}

/// A RUNNING Redis instance the simulator serves.
pub fn sim_instance(n: usize) -> SimInstance {
    let fields = json!({
        "instance_id": instance_id(n),
        "name": format!("bench-{n}"),
        "engine": "Redis",
        "engine_version": "6.0",
        "status": "RUNNING",
        "ip": format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255),
        "port": 6379,
        "capacity": 2,
        "max_memory": 1536,
        "resource_spec_code": "redis.single.xu1.large.2",
        "available_zones": ["az1"],
    });
    let Value::Object(fields) = fields else {
        unreachable!("a JSON object")
    };
    SimInstance::new(PROJECT, fields, vec![])
}

/// Starts the DCS simulator with `n` instances and `latency_ms` added to every call.
pub async fn start_simulator(n: usize, latency_ms: u64) -> anyhow::Result<SimHandle> {
    let config = SimConfig {
        instances: (0..n).map(sim_instance).collect(),
        ..SimConfig::with_default_keys()
    };
    let sim = Simulator::start(config, "127.0.0.1:0".parse()?, Arc::new(SystemClock)).await?;
    if latency_ms > 0 {
        sim.state()
            .inject_fault(Fault::always(FaultKind::Latency { ms: latency_ms }));
    }
    Ok(sim)
}

/// DCS requests the simulator has answered, all routes together.
pub fn dcs_requests(sim: &SimHandle) -> u64 {
    sim.state().counters().requests.values().sum()
}

fn base64(text: &str) -> Value {
    serde_json::to_value(ByteString(text.as_bytes().to_vec())).expect("bytes serialize")
}

pub fn namespace_object(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// The simulator's default keys, as a credentials Secret.
pub fn credentials_secret(namespace: &str) -> Value {
    secret_with_keys(
        namespace,
        CREDENTIALS_SECRET,
        SimConfig::DEFAULT_ACCESS_KEY,
        SimConfig::DEFAULT_SECRET_KEY,
    )
}

/// A credentials Secret `name` holding these keys.
pub fn secret_with_keys(namespace: &str, name: &str, access_key: &str, secret_key: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {
            "accessKey": base64(access_key),
            "secretKey": base64(secret_key),
        },
    })
}

/// DcsInstance `n`, naming simulator instance `n`.
pub fn dcs_instance(namespace: &str, n: usize, endpoint: &str) -> Value {
    dcs_instance_named(
        namespace,
        &format!("bench-{n}"),
        &instance_id(n),
        endpoint,
        CREDENTIALS_SECRET,
    )
}

/// A DcsInstance polled every [`POLL_INTERVAL`] with the credentials in `secret`.
pub fn dcs_instance_named(
    namespace: &str,
    name: &str,
    id: &str,
    endpoint: &str,
    secret: &str,
) -> Value {
    json!({
        "apiVersion": "dcs.operator.dev/v1alpha1",
        "kind": "DcsInstance",
        "metadata": {"name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "dcs-bench"}},
        "spec": {
            "instanceId": id,
            "projectId": PROJECT,
            "endpoint": endpoint,
            "credentialsSecretRef": {"name": secret},
            "pollInterval": format!("{}s", POLL_INTERVAL.as_secs()),
        },
    })
}

/// Fills the stand-in with a healthy tenant: `namespaces` namespaces named
/// `<prefix>-<i>`, each with a credentials Secret, and `n` DcsInstances spread over
/// them, all reading from `endpoint`.
pub fn seed_healthy_tenant(
    state: &super::standin::StandIn,
    prefix: &str,
    n: usize,
    namespaces: usize,
    endpoint: &str,
) {
    use super::standin;
    for i in 0..namespaces {
        let ns = namespace_name(prefix, i);
        state.insert(standin::NAMESPACES, namespace_object(&ns));
        state.insert(standin::SECRETS, credentials_secret(&ns));
    }
    for i in 0..n {
        let ns = namespace_of(prefix, i, namespaces);
        state.insert(standin::DCS_INSTANCES, dcs_instance(&ns, i, endpoint));
    }
}

/// `count` Opaque Secrets spread evenly over the tenant's `namespaces` namespaces,
/// none referenced by any DcsInstance: the application Secrets a real cluster
/// holds beside the operator's own, which its metadata-only Secret watch sees
/// all the same. Each has two labels, an annotation and about 150 bytes of data,
/// so their metadata is what a real Secret's would be, not an empty shell.
pub fn seed_unrelated_secrets(
    state: &super::standin::StandIn,
    prefix: &str,
    count: usize,
    namespaces: usize,
) {
    for i in 0..count {
        let ns = namespace_of(prefix, i, namespaces);
        state.insert(super::standin::SECRETS, unrelated_secret(&ns, i));
    }
}

/// Unrelated Secret `i` (see [`seed_unrelated_secrets`]).
pub fn unrelated_secret(namespace: &str, i: usize) -> Value {
    let app = format!("app-{}", i % 97);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("{app}-config-{i}"),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": app,
                "app.kubernetes.io/component": "config",
            },
            "annotations": {
                "checksum/config": format!(
                    "sha256:{:032x}{:032x}",
                    (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                    (i as u128 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d_1b87_3593_cc9e_2d51),
                ),
            },
        },
        "type": "Opaque",
        "data": {
            "DATABASE_URL": base64(&format!("postgres://app{i}:s3cr3t-{i:08}@db-{}.example.internal:5432/app{i}", i % 7)),
            "API_TOKEN": base64(&format!("tok_{:048x}", (i as u128).wrapping_mul(0x2545_f491_4f6c_dd1d))),
            "LOG_LEVEL": base64("info"),
        },
    })
}

/// The connection Secrets the operator created (`managed-by=dcs-operator`).
pub fn is_connection_secret(secret: &Value) -> bool {
    secret.pointer("/metadata/labels/app.kubernetes.io~1managed-by") == Some(&json!("dcs-operator"))
}

/// Whether an object carries any finalizer.
pub fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// `10000` as `10 000`, as the tables write numbers.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A loopback port nobody listens on right now (for --metrics-addr).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The operator running as its own process.
pub struct OperatorProcess {
    child: Child,
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
}

/// CPU time and memory of one process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    pub cpu_seconds: f64,
    /// VmHWM: the largest resident set so far.
    pub peak_rss_kib: u64,
    /// VmRSS: the resident set now.
    pub rss_kib: u64,
}

impl OperatorProcess {
    /// `dcs-operator run` with `kubeconfig` (None: inherit the environment's) and
    /// `extra` flags; its output goes to `log`.
    pub fn spawn(
        binary: &Path,
        kubeconfig: Option<&Path>,
        extra: &[String],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let out = std::fs::File::create(log)?;
        let mut command = Command::new(binary);
        command
            .arg("--log-level")
            .arg("warn")
            .arg("run")
            .arg("--metrics-addr")
            .arg(metrics_addr.to_string())
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("HUAWEICLOUD_SDK_AK")
            .env_remove("HUAWEICLOUD_SDK_SK")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let Some(path) = kubeconfig {
            command.env("KUBECONFIG", path);
        }
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", binary.display()))?;
        Ok(Self {
            child,
            metrics_addr,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Some(exit status) once the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The /metrics text; empty while the server is not up yet.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        match reqwest::get(url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Whether `/readyz` answers 200 (every watch has listed; the operator's
    /// pruning pass runs only then).
    pub async fn ready(&self) -> bool {
        let url = format!("http://{}/readyz", self.metrics_addr);
        reqwest::get(url)
            .await
            .is_ok_and(|response| response.status().is_success())
    }

    /// The sum of every sample of a metric family (all label sets).
    pub async fn metric_sum(&self, name: &str) -> f64 {
        metric_sum(&self.metrics().await, name)
    }

    pub fn proc_stats(&self) -> ProcStats {
        proc_stats(self.pid())
    }

    /// Stops the process (SIGKILL: the figures are read before).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM, through `kill`: no libc dependency for
    /// one call) and waits up to `grace` for it to exit; then SIGKILLs it and
    /// returns None. Some(status) is how it ended on its own.
    pub async fn terminate(mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        let deadline = std::time::Instant::now() + grace;
        while sent && std::time::Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stop();
        None
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A test that fails midway must not leave the operator running.
impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sums `name` and `name{...}` samples in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            rest.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum()
}

/// The value of one sample in Prometheus text: `name` with exactly these labels
/// (`name{labels}`, or `name` alone when `labels` is empty). None when the metric
/// has no such sample (yet): a gauge never set is not a zero.
pub fn metric_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// How many samples of `name` (any labels) the text holds: for the per-instance
/// gauges, how many DcsInstances the operator still serves.
pub fn metric_samples(text: &str, name: &str) -> usize {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .count()
}

/// Scrapes the operator's /metrics in the background, as Prometheus would: every
/// scrape makes the operator build its per-instance series, which costs memory the
/// benchmark must see. Stops when dropped.
pub struct Scraper {
    stats: Arc<ScrapeStats>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct ScrapeStats {
    scrapes: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    last_bytes: std::sync::atomic::AtomicU64,
}

/// What a [`Scraper`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrapeSummary {
    /// Answered scrapes.
    pub scrapes: u64,
    /// Scrapes without an answer (the server was not up yet, or a timeout).
    pub failed: u64,
    /// Size of the last answered scrape.
    pub last_bytes: u64,
}

impl std::fmt::Display for ScrapeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} scrapes ({} unanswered), last {:.1} KiB",
            self.scrapes,
            self.failed,
            self.last_bytes as f64 / 1024.0
        )
    }
}

impl Scraper {
    /// Scrapes `http://{addr}/metrics` every `every`, the first time at once;
    /// `every` zero: never.
    pub fn start(addr: SocketAddr, every: Duration) -> Self {
        let stats = Arc::new(ScrapeStats::default());
        if every.is_zero() {
            return Self { stats, task: None };
        }
        let task = tokio::spawn({
            let stats = stats.clone();
            async move {
                use std::sync::atomic::Ordering::Relaxed;
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default();
                let url = format!("http://{addr}/metrics");
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let body = match client.get(&url).send().await {
                        Ok(response) if response.status().is_success() => {
                            response.bytes().await.ok()
                        }
                        _ => None,
                    };
                    match body {
                        Some(body) => {
                            stats.scrapes.fetch_add(1, Relaxed);
                            stats.last_bytes.store(body.len() as u64, Relaxed);
                        }
                        None => {
                            stats.failed.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
        });
        Self {
            stats,
            task: Some(task),
        }
    }

    pub fn summary(&self) -> ScrapeSummary {
        use std::sync::atomic::Ordering::Relaxed;
        ScrapeSummary {
            scrapes: self.stats.scrapes.load(Relaxed),
            failed: self.stats.failed.load(Relaxed),
            last_bytes: self.stats.last_bytes.load(Relaxed),
        }
    }

    /// Stops scraping; returns what it did.
    pub fn stop(mut self) -> ScrapeSummary {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.summary()
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Clock ticks per second for /proc/PID/stat: 100 on every Linux we know, asked of
/// getconf when it is there (no libc dependency for one number).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime+stime and VmHWM of one process (zeros when /proc cannot tell).
pub fn proc_stats(pid: u32) -> ProcStats {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may itself hold spaces: split after ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    ProcStats {
        cpu_seconds: ticks as f64 / clock_ticks(),
        peak_rss_kib: kib("VmHWM:"),
        rss_kib: kib("VmRSS:"),
    }
}

/// Where to find the operator binary next to this executable's target directory
/// (`target/<profile>/examples/bench` -> `target/<profile>/dcs-operator`).
pub fn sibling_operator_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let candidate = profile_dir.join("dcs-operator");
    candidate.exists().then_some(candidate)
}

/// A fresh scratch directory for kubeconfigs and logs.
pub fn scratch_dir(label: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "dcs-bench-{}-{label}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
