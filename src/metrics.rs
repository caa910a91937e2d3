//! Prometheus metrics (prefix `dcs_operator_`): reconciles, DCS API calls and
//! Kubernetes writes as counters and histograms, and per-instance gauges computed
//! at scrape time from the watch caches and the observation store, so a deleted
//! DcsInstance or a changed status leaves no stale series behind.
//!
//! Every label value comes from a closed set (operations, results, reasons,
//! [`bounded_status`], [`bounded_code`]) except the per-instance gauges' namespace
//! and name, which `--metrics-instance-series=false` turns off
//! ([`MetricsOptions::instance_series`]).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::controller::store::InstanceView;
use crate::dcs::DcsError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DcsRequestLabels {
    pub operation: &'static str,
    /// A known HTTP status, `other`, or `transport` / `decode` when there was
    /// none: see [`bounded_status`].
    pub status: &'static str,
    /// A known DCS or gateway code, `other`, or empty.
    pub error_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DcsWriteLabels {
    /// create_instance, delete_instance, tag_action.
    pub operation: &'static str,
    /// accepted, refused, not_sent, unknown.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: &'static str,
}

/// Error codes that may become label values; anything else is `other`, so a
/// misbehaving server cannot blow up the label set.
const KNOWN_CODES: &[&str] = &[
    "APIG.0301",
    "APIGW.0301",
    "APIG.0308",
    "APIGW.0308",
    "APIGW.0101",
    "APIGW.0302",
    "DCS.3022",
    "111404022",
    "DCS.4001",
    "111404001",
    "DCS.1001",
    "DCS.1002",
    "DCS.1003",
    "DCS.1004",
    "DCS.2003",
    "DCS.3003",
    "DCS.3002",
    "DCS.2007",
    "DCS.5000",
    "111400002",
    "DCS.5001",
];

pub fn bounded_code(code: Option<&str>) -> &'static str {
    match code {
        None => "",
        Some(code) => KNOWN_CODES
            .iter()
            .find(|known| known.eq_ignore_ascii_case(code))
            .copied()
            .unwrap_or("other"),
    }
}

/// Every value the `status` label of `dcs_requests_total` may take.
pub const STATUS_LABELS: &[&str] = &[
    "200",
    "201",
    "204",
    "400",
    "401",
    "403",
    "404",
    "409",
    "413",
    "429",
    "500",
    "502",
    "503",
    "504",
    "transport",
    "decode",
    "other",
];

/// An HTTP status as a label value: the codes the DCS API and its gateway answer
/// with, `other` for anything else, so an endpoint (spec.endpoint is chosen by a
/// tenant) cannot create a series per status it invents.
pub fn bounded_status(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

/// Choices about what `/metrics` exposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsOptions {
    /// The per-instance gauges (`dcs_operator_instance_*`), labelled with every
    /// DcsInstance's namespace and name. Off, `/metrics` names no tenant.
    pub instance_series: bool,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        Self {
            instance_series: true,
        }
    }
}

pub struct Metrics {
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_failures: Family<ReasonLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub dcs_requests: Family<DcsRequestLabels, Counter>,
    pub dcs_request_duration: Family<OperationLabels, Histogram>,
    pub dcs_throttled: Counter,
    pub kube_writes: Family<WriteLabels, Counter>,
    /// DCS writes (create, delete, tags) by operation and outcome.
    pub dcs_writes: Family<DcsWriteLabels, Counter>,
    /// Panics caught, by task (reconcile, batch_poller, metrics_server, pruning).
    pub panics: Family<TaskLabels, Counter>,
    /// Entries of each map keyed by tenant data, set by the pruning pass.
    pub cache_entries: Family<CacheLabels, Gauge>,
    registry: Registry,
    /// What the per-instance series read, when they are on.
    instance_series: Option<Arc<InstanceView>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn register_dcs_writes(registry: &mut Registry) -> Family<DcsWriteLabels, Counter> {
    let dcs_writes = Family::<DcsWriteLabels, Counter>::default();
    registry.register(
        "dcs_writes",
        "DCS writes (create, delete, tags) by operation and outcome",
        dcs_writes.clone(),
    );
    dcs_writes
}

impl Metrics {
    /// Registers everything, with the per-instance collector reading `instances`.
    pub fn new(instances: Arc<InstanceView>) -> Self {
        Self::with_options(instances, MetricsOptions::default())
    }

    /// Registers everything; the per-instance collector (reading `instances`) only
    /// when `options.instance_series` is on.
    pub fn with_options(instances: Arc<InstanceView>, options: MetricsOptions) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (ok, error)",
            reconciles.clone(),
        );
        let reconcile_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Failed reconciles by reason",
            reconcile_failures.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile takes",
            reconcile_duration.clone(),
        );
        let dcs_requests = Family::<DcsRequestLabels, Counter>::default();
        registry.register(
            "dcs_requests",
            "DCS API requests by operation, HTTP status and error code",
            dcs_requests.clone(),
        );
        let dcs_request_duration =
            Family::<OperationLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 12))
            });
        registry.register(
            "dcs_request_duration_seconds",
            "DCS API latency",
            dcs_request_duration.clone(),
        );
        let dcs_throttled = Counter::default();
        registry.register(
            "dcs_throttled",
            "DCS API answers that said 429 (throttled)",
            dcs_throttled.clone(),
        );
        let kube_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "kube_writes",
            "Kubernetes writes by kind (status, secret_create, secret_patch, event)",
            kube_writes.clone(),
        );
        let panics = Family::<TaskLabels, Counter>::default();
        registry.register(
            "panics",
            "Panics caught and survived, by task",
            panics.clone(),
        );
        let cache_entries = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "cache_entries",
            "Entries in each in-memory cache keyed by tenant data (updated by every pruning pass)",
            cache_entries.clone(),
        );
        let dcs_writes = register_dcs_writes(&mut registry);
        Self {
            dcs_writes,
            panics,
            cache_entries,
            reconciles,
            reconcile_failures,
            reconcile_duration,
            dcs_requests,
            dcs_request_duration,
            dcs_throttled,
            kube_writes,
            registry,
            instance_series: options.instance_series.then_some(instances),
        }
    }

    /// Counts one DCS API call (`requests` HTTP requests: the pages of a list).
    pub fn dcs_request<T>(
        &self,
        operation: &'static str,
        result: &Result<T, DcsError>,
        took: Duration,
        requests: u32,
    ) {
        let (status, code) = match result {
            Ok(_) => ("200", ""),
            Err(error) => {
                let status = match error {
                    DcsError::Transport { .. } => "transport",
                    DcsError::Decode { .. } => "decode",
                    other => other.api().map_or("other", |a| bounded_status(a.status)),
                };
                (
                    status,
                    bounded_code(error.api().and_then(|a| a.error_code.as_deref())),
                )
            }
        };
        if matches!(result, Err(DcsError::Throttled { .. })) {
            self.dcs_throttled.inc();
        }
        self.dcs_requests
            .get_or_create(&DcsRequestLabels {
                operation,
                status,
                error_code: code,
            })
            .inc_by(u64::from(requests.max(1)));
        self.dcs_request_duration
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    /// Counts one DCS write by what became of it.
    pub fn dcs_write(&self, operation: &'static str, outcome: crate::dcs::writes::WriteOutcome) {
        use crate::dcs::writes::WriteOutcome;
        let outcome = match outcome {
            WriteOutcome::Accepted => "accepted",
            WriteOutcome::Refused => "refused",
            WriteOutcome::NotSent => "not_sent",
            WriteOutcome::Unknown => "unknown",
        };
        self.dcs_writes
            .get_or_create(&DcsWriteLabels { operation, outcome })
            .inc();
    }

    /// DCS writes so far, every operation and outcome (for tests and benchmarks).
    pub fn dcs_writes_total(&self) -> u64 {
        let mut total = 0;
        for operation in ["create_instance", "delete_instance", "tag_action"] {
            for outcome in ["accepted", "refused", "not_sent", "unknown"] {
                total += self
                    .dcs_writes
                    .get_or_create(&DcsWriteLabels { operation, outcome })
                    .get();
            }
        }
        total
    }

    pub fn panicked(&self, task: &'static str) {
        self.panics.get_or_create(&TaskLabels { task }).inc();
    }

    /// Total panics caught so far, every task.
    pub fn panics_total(&self) -> u64 {
        ["reconcile", "batch_poller", "metrics_server", "pruning"]
            .iter()
            .map(|task| self.panics.get_or_create(&TaskLabels { task }).get())
            .sum()
    }

    pub fn set_cache_entries(&self, cache: &'static str, entries: usize) {
        self.cache_entries
            .get_or_create(&CacheLabels { cache })
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    pub fn write(&self, kind: &'static str) {
        self.kube_writes.get_or_create(&WriteLabels { kind }).inc();
    }

    /// The OpenMetrics text of every metric, in pieces: the registry's metrics
    /// first (encoded now), then the per-instance series (encoded as the pieces are
    /// taken), then the end marker. A response streams them, so a scrape never
    /// holds the whole text.
    pub fn scrape(
        &self,
    ) -> Result<
        impl Iterator<Item = Result<String, std::fmt::Error>> + Send + 'static,
        std::fmt::Error,
    > {
        let mut head = String::new();
        prometheus_client::encoding::text::encode_registry(&mut head, &self.registry)?;
        let series = self.instance_series.clone().map(|view| InstanceChunks {
            instances: view.instances().into(),
            view,
            family: 0,
            offset: 0,
        });
        let mut eof = String::new();
        prometheus_client::encoding::text::encode_eof(&mut eof)?;
        Ok(std::iter::once(Ok(head))
            .chain(series.into_iter().flatten())
            .chain(std::iter::once(Ok(eof))))
    }

    /// The OpenMetrics text of every metric, whole (for tests and tools; the server
    /// streams [`Metrics::scrape`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        self.scrape()?.collect()
    }
}

/// The per-instance families, in the order they are scraped.
#[derive(Debug, Clone, Copy)]
enum InstanceFamily {
    UsedMemory,
    MaxMemory,
    Capacity,
    Ready,
}

const INSTANCE_FAMILIES: [InstanceFamily; 4] = [
    InstanceFamily::UsedMemory,
    InstanceFamily::MaxMemory,
    InstanceFamily::Capacity,
    InstanceFamily::Ready,
];

/// DcsInstances per piece of the streamed `/metrics` text (about 40 KiB of text).
const SCRAPE_CHUNK: usize = 500;

/// The registry's prefix, also that of the per-instance families.
const PREFIX: &str = "dcs_operator";

/// The per-instance series of a scrape, a piece at a time: at 10 000 DcsInstances
/// the whole text is 2.6 MB, and building it in one string raised the peak memory
/// by that much at every scrape. Each piece is one family's series for up to
/// [`SCRAPE_CHUNK`] objects of the snapshot taken when the scrape began.
struct InstanceChunks {
    view: Arc<InstanceView>,
    instances: Arc<[Arc<DcsInstance>]>,
    family: usize,
    offset: usize,
}

impl Iterator for InstanceChunks {
    type Item = Result<String, std::fmt::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let family = *INSTANCE_FAMILIES.get(self.family)?;
        let end = (self.offset + SCRAPE_CHUNK).min(self.instances.len());
        let piece = InstanceSeries {
            view: self.view.clone(),
            instances: self.instances.clone(),
            range: self.offset..end,
            family,
        };
        let first = self.offset == 0;
        if end >= self.instances.len() {
            self.family += 1;
            self.offset = 0;
        } else {
            self.offset = end;
        }
        Some(piece.encode_text(first))
    }
}

/// One family's series for a range of a scrape's snapshot.
#[derive(Debug)]
struct InstanceSeries {
    view: Arc<InstanceView>,
    instances: Arc<[Arc<DcsInstance>]>,
    range: std::ops::Range<usize>,
    family: InstanceFamily,
}

impl InstanceSeries {
    /// The OpenMetrics text of this piece, encoded by prometheus-client (names,
    /// label escaping, values). A family is described once: its HELP and TYPE lines
    /// are kept only in its `first` piece (series lines never start with `#`).
    fn encode_text(self, first: bool) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &registry)?;
        if !first {
            text = text
                .split_inclusive('\n')
                .filter(|line| !line.starts_with('#'))
                .collect();
        }
        Ok(text)
    }

    fn describe(&self) -> (&'static str, &'static str) {
        match self.family {
            InstanceFamily::UsedMemory => (
                "instance_used_memory_bytes",
                "Memory in use, from the last DCS answer",
            ),
            InstanceFamily::MaxMemory => {
                ("instance_max_memory_bytes", "Total memory of the instance")
            }
            InstanceFamily::Capacity => {
                ("instance_capacity_bytes", "Cache capacity of the instance")
            }
            InstanceFamily::Ready => (
                "instance_ready",
                "1 when the DcsInstance is Ready, by DCS status",
            ),
        }
    }

    /// An instance's value in a byte gauge family, if it has one.
    fn bytes(&self, obj: &DcsInstance) -> Option<i64> {
        let status = || obj.status.as_ref();
        match self.family {
            InstanceFamily::UsedMemory => obj
                .metadata
                .uid
                .as_deref()
                .and_then(|uid| self.view.observations.used_memory_bytes_for(uid))
                .and_then(|bytes| i64::try_from(bytes).ok()),
            InstanceFamily::MaxMemory => quantity_bytes(status()?.max_memory.as_deref()?),
            InstanceFamily::Capacity => quantity_bytes(status()?.capacity.as_deref()?),
            InstanceFamily::Ready => None,
        }
    }
}

use crate::crd::DcsInstance;
use prometheus_client::metrics::MetricType;

fn quantity_bytes(text: &str) -> Option<i64> {
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: i64 = digits.parse().ok()?;
    let scale: i64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    value.checked_mul(scale)
}

/// The labels of an instance's series: its namespace and name.
fn instance_labels(obj: &DcsInstance) -> [(&'static str, &str); 2] {
    [
        (
            "namespace",
            obj.metadata.namespace.as_deref().unwrap_or_default(),
        ),
        ("name", obj.metadata.name.as_deref().unwrap_or_default()),
    ]
}

impl Collector for InstanceSeries {
    /// Encodes each series straight from the watch cache and the observation store,
    /// without building metric families first: at 10 000 DcsInstances those were
    /// four maps of owned label strings per scrape, several MiB each time.
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let instances = &self.instances[self.range.clone()];
        let (name, help) = self.describe();
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        if !matches!(self.family, InstanceFamily::Ready) {
            for obj in instances {
                if let Some(value) = self.bytes(obj) {
                    metric
                        .encode_family(&instance_labels(obj))?
                        .encode_gauge(&value)?;
                }
            }
            return Ok(());
        }
        for obj in instances {
            let status = obj.status.as_ref();
            let is_ready = status.is_some_and(|status| {
                status.conditions.iter().any(|c| {
                    c.type_ == crate::plan::READY && c.status == crate::plan::reasons::TRUE
                })
            });
            let [namespace, name] = instance_labels(obj);
            let labels = [
                namespace,
                name,
                (
                    "dcs_status",
                    status.and_then(|s| s.status.as_deref()).unwrap_or_default(),
                ),
            ];
            metric
                .encode_family(&labels)?
                .encode_gauge(&i64::from(is_ready))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_bounded() {
        assert_eq!(bounded_code(Some("APIG.0308")), "APIG.0308");
        assert_eq!(bounded_code(Some("dcs.3022")), "DCS.3022");
        assert_eq!(bounded_code(Some("anything the server invents")), "other");
        assert_eq!(bounded_code(None), "");
    }

    #[test]
    fn every_status_maps_into_the_closed_set() {
        for status in 0..=u16::MAX {
            let label = bounded_status(status);
            assert!(STATUS_LABELS.contains(&label), "{status} -> {label}");
            assert!(label == "other" || label == status.to_string(), "{status}");
        }
        for label in STATUS_LABELS {
            if let Ok(status) = label.parse::<u16>() {
                assert_eq!(bounded_status(status), *label);
            }
        }
    }

    fn api_error(status: u16) -> DcsError {
        DcsError::from_response(crate::dcs::ApiError::from_body(status, b"{}", None), None)
    }

    #[test]
    fn an_invented_status_is_scraped_as_other() {
        let metrics = Metrics::new(Arc::new(InstanceView::default()));
        for status in [599, 777, 404, 599] {
            metrics.dcs_request::<()>(
                "show_instance",
                &Err(api_error(status)),
                Duration::from_millis(5),
                1,
            );
        }
        let transport = DcsError::Transport {
            message: "refused".into(),
            timeout: false,
        };
        metrics.dcs_request::<()>("show_instance", &Err(transport), Duration::ZERO, 1);
        let text = metrics.encode().unwrap();
        let requests: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("dcs_operator_dcs_requests_total{"))
            .collect();
        let count = |status: &str| -> u64 {
            requests
                .iter()
                .filter(|line| line.contains(&format!(",status=\"{status}\",")))
                .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum()
        };
        assert_eq!(count("other"), 3, "{text}");
        assert_eq!(count("404"), 1, "{text}");
        assert_eq!(count("transport"), 1, "{text}");
        assert_eq!(requests.len(), 3, "one series per status: {requests:?}");
        assert!(
            requests
                .iter()
                .all(|line| !line.contains("599") && !line.contains("777")),
            "{text}"
        );
    }

    #[test]
    fn instance_series_can_be_left_out() {
        let on = Metrics::new(Arc::new(InstanceView::default()))
            .encode()
            .unwrap();
        assert!(on.contains("dcs_operator_instance_ready"), "{on}");
        let off = Metrics::with_options(
            Arc::new(InstanceView::default()),
            MetricsOptions {
                instance_series: false,
            },
        )
        .encode()
        .unwrap();
        assert!(!off.contains("dcs_operator_instance_"), "{off}");
        assert!(
            off.contains("dcs_operator_reconcile_duration_seconds"),
            "{off}"
        );
    }

    /// An object in the watch cache, with the status the gauges read.
    fn cached(name: &str, ready: bool) -> DcsInstance {
        let mut obj = DcsInstance::new(name, crate::crd::DcsInstanceSpec::default());
        obj.metadata.namespace = Some("tenant".into());
        obj.status = Some(crate::crd::DcsInstanceStatus {
            capacity: Some("1Gi".into()),
            max_memory: Some("512Mi".into()),
            status: Some("RUNNING".into()),
            conditions: vec![crate::crd::Condition {
                type_: crate::plan::READY.into(),
                status: if ready { "True" } else { "False" }.into(),
                reason: "Available".into(),
                message: "".into(),
                observed_generation: None,
                last_transition_time: "".into(),
            }],
            ..Default::default()
        });
        obj
    }

    #[test]
    fn a_scrape_in_pieces_describes_each_family_once_with_every_series() {
        use kube::runtime::{reflector, watcher};
        let count = SCRAPE_CHUNK * 2 + 3;
        let (store, mut writer) = reflector::store();
        for i in 0..count {
            let obj = cached(&format!("cache-{i}"), i % 2 == 0);
            writer.apply_watcher_event(&watcher::Event::Apply(obj));
        }
        let view = Arc::new(InstanceView::default());
        view.add_store(store);
        let metrics = Metrics::new(view);
        // One piece for the registry, three per family, one for the end.
        assert_eq!(metrics.scrape().unwrap().count(), 1 + 4 * 3 + 1);
        let text = metrics.encode().unwrap();
        assert!(text.ends_with("# EOF\n") && text.matches("# EOF").count() == 1);
        for family in ["max_memory_bytes", "capacity_bytes", "ready"] {
            let name = format!("dcs_operator_instance_{family}");
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}"
            );
            let series: Vec<usize> = text
                .lines()
                .enumerate()
                .filter(|(_, line)| line.starts_with(&format!("{name}{{")))
                .map(|(at, _)| at)
                .collect();
            assert_eq!(series.len(), count, "{name}");
            // A family's lines are together, right after its description.
            assert_eq!(series.last().unwrap() - series[0] + 1, count, "{name}");
        }
        let ready = r#"dcs_operator_instance_ready{namespace="tenant",name="cache-1000",dcs_status="RUNNING"} 1"#;
        assert!(text.lines().any(|line| line == ready), "{text}");
        let capacity = r#"dcs_operator_instance_capacity_bytes{namespace="tenant",name="cache-1002"} 1073741824"#;
        assert!(text.lines().any(|line| line == capacity));
    }

    #[test]
    fn quantities_parse_back() {
        assert_eq!(quantity_bytes("2Gi"), Some(2 << 30));
        assert_eq!(quantity_bytes("128Mi"), Some(128 << 20));
        assert_eq!(quantity_bytes("1000"), Some(1000));
        assert_eq!(quantity_bytes("2G"), None);
    }
}
