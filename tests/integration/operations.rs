//! What a platform team relies on in production: metrics computed at scrape time,
//! health endpoints, a standby that neither polls nor writes, Events on transitions
//! only, and logs that never carry secret material.

use std::sync::{Arc, Mutex};

use dcs_operator::clock::{ManualClock, SystemClock};
use dcs_operator::controller::{Context, EventPublisher, reconcile};
use dcs_operator::leader::LEASE_DURATION;
use dcs_operator::metrics::MetricsOptions;
use dcs_operator::server::{Readiness, router};
use kube::runtime::{reflector, watcher};

use crate::controller::*;

async fn get(base: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn serve(ctx: &Context) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(ctx.shared.metrics().clone(), ctx.shared.readiness().clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn line_value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find(|line| line.starts_with(series))
        .map(|line| line[series.len()..].trim().to_string())
}

#[tokio::test]
async fn metrics_are_scraped_with_their_values_and_vanish_with_the_instance() {
    let mut h = harness().await;
    let (status, _) = first_reconcile(&mut h).await;
    let (store, mut writer) = reflector::store();
    let mut obj = dcs_instance(&h.sim, Some(status));
    obj.metadata.uid = Some(UID.into());
    writer.apply_watcher_event(&watcher::Event::Apply(obj.clone()));
    h.ctx.shared.instances().add_store(store);
    let base = serve(&h.ctx).await;

    let (code, text) = get(&base, "/metrics").await;
    assert_eq!(code, 200);
    for (series, value) in [
        (r#"dcs_operator_reconciles_total{result="ok"}"#, "1"),
        (
            r#"dcs_operator_dcs_requests_total{operation="show_instance",status="200",error_code=""}"#,
            "1",
        ),
        (r#"dcs_operator_kube_writes_total{kind="status"}"#, "1"),
        (
            r#"dcs_operator_kube_writes_total{kind="secret_create"}"#,
            "1",
        ),
        (
            r#"dcs_operator_instance_ready{namespace="default",name="cache",dcs_status="RUNNING"}"#,
            "1",
        ),
        (
            r#"dcs_operator_instance_capacity_bytes{namespace="default",name="cache"}"#,
            "2147483648",
        ),
        (
            r#"dcs_operator_instance_max_memory_bytes{namespace="default",name="cache"}"#,
            "1610612736",
        ),
        (
            r#"dcs_operator_instance_used_memory_bytes{namespace="default",name="cache"}"#,
            "58720256",
        ),
    ] {
        assert_eq!(
            line_value(&text, series).as_deref(),
            Some(value),
            "{series}\n{text}"
        );
    }
    assert!(text.contains("dcs_operator_reconcile_duration_seconds_bucket"));
    assert!(text.contains(
        "dcs_operator_dcs_request_duration_seconds_count{operation=\"show_instance\"} 1"
    ));
    assert!(text.contains("dcs_operator_dcs_throttled_total 0"));

    // Deleted from the watch cache: its series are gone at the next scrape.
    writer.apply_watcher_event(&watcher::Event::Delete(obj));
    let (_, text) = get(&base, "/metrics").await;
    assert!(!text.contains("name=\"cache\""), "stale series:\n{text}");
    expect_nothing_more(&mut h.handle).await;
}

/// `--metrics-instance-series=false`: whoever reaches the metrics port learns no
/// tenant's namespace or DcsInstance name, and the operator's own series remain.
#[tokio::test]
async fn without_instance_series_metrics_name_no_tenant() {
    let mut h = harness_with(Arc::new(SystemClock), |builder| {
        builder.metrics(MetricsOptions {
            instance_series: false,
        })
    })
    .await;
    let (status, _) = first_reconcile(&mut h).await;
    let (store, mut writer) = reflector::store();
    let mut obj = dcs_instance(&h.sim, Some(status));
    obj.metadata.uid = Some(UID.into());
    writer.apply_watcher_event(&watcher::Event::Apply(obj));
    h.ctx.shared.instances().add_store(store);
    let base = serve(&h.ctx).await;

    let (code, text) = get(&base, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(
        line_value(&text, r#"dcs_operator_reconciles_total{result="ok"}"#).as_deref(),
        Some("1"),
        "{text}"
    );
    assert!(!text.contains("dcs_operator_instance_"), "{text}");
    assert!(!text.contains("namespace="), "{text}");
    assert!(!text.contains("\"cache\""), "{text}");
    expect_nothing_more(&mut h.handle).await;
}

#[tokio::test]
async fn health_and_readiness() {
    let h = harness().await;
    let readiness = Arc::new(Readiness::default());
    readiness.expect(2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(h.ctx.shared.metrics().clone(), readiness.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    assert_eq!(get(&base, "/healthz").await.0, 200);
    assert_eq!(get(&base, "/readyz").await.0, 503);
    readiness.synced();
    assert_eq!(get(&base, "/readyz").await.0, 503);
    readiness.synced();
    assert_eq!(get(&base, "/readyz").await.0, 200);
}

#[tokio::test]
async fn a_standby_neither_polls_nor_writes_until_it_leads() {
    let clock = ManualClock::new(chrono::Utc::now());
    let (mut h, gate) = harness_with_elected_leader(&clock).await;
    for _ in 0..5 {
        reconcile(Arc::new(dcs_instance(&h.sim, None)), h.ctx.clone())
            .await
            .unwrap();
    }
    expect_nothing_more(&mut h.handle).await;
    assert_eq!(h.sim.state().counters().requests_for("show_v1"), 0);
    // Elected: it works as usual.
    gate.renewed(dcs_operator::clock::Clock::now(&clock), LEASE_DURATION);
    let (status, _) = first_reconcile(&mut h).await;
    assert_eq!(status.status.as_deref(), Some("RUNNING"));
    // Its renewal is overdue (cut off from the API server): it stops by itself.
    clock.advance(chrono::TimeDelta::from_std(LEASE_DURATION).unwrap());
    reconcile(Arc::new(dcs_instance(&h.sim, None)), h.ctx.clone())
        .await
        .unwrap();
    expect_nothing_more(&mut h.handle).await;
    assert_eq!(h.sim.state().counters().requests_for("show_v1"), 1);
}

#[tokio::test]
async fn events_are_published_on_transitions_only() {
    let mut h = harness().await;
    // A recorder on the same mocked API server.
    let events = EventPublisher::new(
        h.ctx.shared.client().clone(),
        "dcs-operator",
        Some("pod-1".into()),
    );
    h.ctx = h.fresh_context(|builder| builder.events(events));
    let task = h.start(dcs_instance(&h.sim, None));
    let server = h
        .server()
        .credentials_read()
        .await
        .secret_absent()
        .await
        .secret_created()
        .await
        .status_applied()
        .await;
    let (created, applied) = (server.secret(), server.applied.clone().unwrap());
    let (request, send) = expect(
        &mut h.handle,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
    )
    .await;
    let event = body_json(request).await;
    assert_eq!(event["reason"], "BecameReady");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["regarding"]["name"], "cache");
    assert_eq!(event["reportingController"], "dcs-operator");
    respond(send, 201, event);
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut h.handle).await;

    // Unchanged afterwards: no status write, so no event either.
    let status: dcs_operator::crd::DcsInstanceStatus =
        serde_json::from_value(applied["status"].clone()).unwrap();
    let task = h.start(dcs_instance(&h.sim, Some(status)));
    h.server()
        .credentials_read()
        .await
        .secret_read(&created)
        .await;
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut h.handle).await;
}

/// A writer the test can read back after tracing wrote to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    /// Where this thread's log lines go, while a test captures them.
    static CAPTURE: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// Captures every log line emitted on this thread from now on (a current-thread
/// test runtime runs all its tasks here). One global subscriber serves every test:
/// with a per-thread default instead, a span first met on another test's thread
/// (with no subscriber) can be cached as never interesting, and lines lose their
/// span fields. Its filter is dynamic, so no callsite is ever cached as never.
fn capture_this_thread() -> Captured {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{Layer, filter};
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let capturing = filter::dynamic_filter_fn(|_, _| CAPTURE.with(|c| c.borrow().is_some()));
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(|| CAPTURE.with(|c| c.borrow().clone()).unwrap_or_default())
            .with_filter(capturing);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
    let captured = Captured::default();
    CAPTURE.with(|c| *c.borrow_mut() = Some(captured.clone()));
    captured
}

#[tokio::test]
async fn logs_carry_instance_fields_and_no_secret_material() {
    let captured = capture_this_thread();

    let mut h = harness().await;
    let mut wrong = credentials_secret();
    wrong.data.as_mut().unwrap().insert(
        "secretKey".into(),
        k8s_openapi::ByteString(b"WRONG-secret-key-never-logged".to_vec()),
    );
    let task = h.start(dcs_instance(&h.sim, None));
    h.server()
        .credentials_read_as(&wrong)
        .await
        .status_applied()
        .await;
    task.await.unwrap().unwrap();
    // And a good reconcile, whose logs include the status write.
    let mut good = harness().await;
    first_reconcile(&mut good).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("DCS observation failed"), "{logs}");
    assert!(logs.contains("status updated"), "{logs}");
    for line in logs
        .lines()
        .filter(|l| l.contains("status updated") || l.contains("DCS observation failed"))
    {
        for field in ["\"namespace\":\"default\"", "\"name\":\"cache\"", INSTANCE] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }
    for secret in [
        "WRONG-secret-key-never-logged",
        dcs_operator::dcs::sim::SimConfig::DEFAULT_SECRET_KEY,
    ] {
        assert!(!logs.contains(secret), "secret material in the logs");
    }
}
