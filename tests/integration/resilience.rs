//! Faults survived with nothing lost: a DCS fault soak checked on every write,
//! Kubernetes API faults, an operator killed mid-reconcile, credentials rotated or
//! deleted, and no secret material in status, events, logs or metrics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcs_operator::controller::{Context, reconcile};
use dcs_operator::dcs::ClientConfig;
use dcs_operator::dcs::sim::{Fault, FaultKind};
use futures::StreamExt;
use serde_json::Value;

use crate::scale::{Fleet, fleet_with, ready_count};

/// What the simulator says is true of instance i (it does not change during the soak).
fn truth(i: usize) -> (String, i64) {
    (format!("10.0.{}.{}", i / 250, i % 250 + 1), 6379)
}

#[derive(Debug, Default, Clone)]
struct Audit {
    status_writes: usize,
    secret_writes: usize,
    wrong_status_writes: usize,
    wrong_secret_writes: usize,
}

fn index_of(name: &str) -> usize {
    name.trim_start_matches("cache-")
        .trim_end_matches("-dcs")
        .parse()
        .unwrap()
}

/// Checks every status and Secret write the operator makes against the truth.
fn audit(fleet: &Fleet) -> Arc<Mutex<Audit>> {
    let audit = Arc::new(Mutex::new(Audit::default()));
    let (on_status, on_secret) = (audit.clone(), audit.clone());
    let mut api = fleet.api.lock().unwrap();
    api.on_status = Some(Box::new(move |name: &str, status: &Value| {
        let mut audit = on_status.lock().unwrap();
        audit.status_writes += 1;
        let (ip, port) = truth(index_of(name));
        // Once known, ip, port and status must never be lost or wrong.
        let wrong = status
            .get("ip")
            .is_some_and(|v| v != &Value::from(ip.clone()))
            || status.get("port").is_some_and(|v| v != &Value::from(port))
            || status.get("status").is_some_and(|v| v != "RUNNING");
        if wrong {
            audit.wrong_status_writes += 1;
        }
    }));
    api.on_secret = Some(Box::new(move |name: &str, secret: &Value| {
        let mut audit = on_secret.lock().unwrap();
        audit.secret_writes += 1;
        let (ip, _) = truth(index_of(name));
        let host = secret["data"]["host"]
            .as_str()
            .map(|b64| {
                let bytes: k8s_openapi::ByteString =
                    serde_json::from_value(Value::from(b64)).unwrap();
                String::from_utf8(bytes.0).unwrap()
            })
            .unwrap_or_default();
        if host.is_empty() || host != ip {
            audit.wrong_secret_writes += 1;
        }
    }));
    drop(api);
    audit
}

/// Checks that no status already holding ip/port/status is written without them.
fn statuses_keep_their_values(fleet: &Fleet) -> usize {
    let api = fleet.api.lock().unwrap();
    api.statuses
        .iter()
        .filter(|(name, status)| {
            let (ip, _) = truth(index_of(name));
            status["ip"] != ip.as_str() || status["status"] != "RUNNING"
        })
        .count()
}

/// Reconciles every object (16 at a time), tolerating errors as the controller's
/// error policy would; returns how many failed.
async fn reconcile_all_tolerant(fleet: &Fleet) -> usize {
    let objects: Vec<_> = (0..fleet.objects.len())
        .map(|i| Arc::new(fleet.current(i)))
        .collect();
    let ctx = fleet.ctx.clone();
    futures::stream::iter(objects)
        .map(|obj| reconcile(obj, ctx.clone()))
        .buffer_unordered(16)
        .filter(|result| futures::future::ready(result.is_err()))
        .count()
        .await
}

async fn drain_tolerant(fleet: &mut Fleet) {
    while let Ok(Some(object)) =
        tokio::time::timeout(Duration::from_millis(300), fleet.requests.next()).await
    {
        let i = index_of(&object.name);
        let _ = reconcile(Arc::new(fleet.current(i)), fleet.ctx.clone()).await;
    }
}

/// One poll tick: time moves a poll interval, each group lists once (the test waits
/// for that request to be answered), then every object's own timer fires.
async fn tick(fleet: &mut Fleet) -> usize {
    fleet.clock.advance(chrono::TimeDelta::seconds(67));
    if fleet.ctx.shared.is_batching() {
        let responses = || fleet.sim.state().counters().requests_for("list_v2");
        let before = responses();
        fleet.ctx.shared.batch().refresh_all();
        for _ in 0..100 {
            if responses() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The answer may still be on its way (latency, timeout): let it land.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drain_tolerant(fleet).await;
    reconcile_all_tolerant(fleet).await
}

fn all_converged(fleet: &Fleet) -> bool {
    let api = fleet.api.lock().unwrap();
    (0..fleet.objects.len()).all(|i| {
        let Some(status) = api.statuses.get(&format!("cache-{i}")) else {
            return false;
        };
        let (ip, port) = truth(i);
        let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
        let is = |t: &str, s: &str| {
            conditions
                .iter()
                .any(|c| c["type"] == t && c["status"] == s)
        };
        status["ip"] == ip.as_str()
            && status["port"] == port
            && is("Ready", "True")
            && is("Synced", "True")
    })
}

fn inject_soak_faults(fleet: &Fleet) {
    let state = fleet.sim.state();
    let status = |status: u16, code: &str, retry_after| FaultKind::Status {
        status,
        error_code: code.into(),
        error_msg: "injected by the soak".into(),
        retry_after,
    };
    // Order matters: the first matching fault wins, so rarer kinds go first.
    state.inject_fault(Fault {
        fraction: Some(0.05),
        ..Fault::always(FaultKind::Latency { ms: 1500 })
    });
    state.inject_fault(Fault {
        fraction: Some(0.05),
        ..Fault::always(FaultKind::Reset)
    });
    state.inject_fault(Fault {
        fraction: Some(0.05),
        ..Fault::always(FaultKind::Malformed)
    });
    state.inject_fault(Fault {
        fraction: Some(0.05),
        ..Fault::always(FaultKind::Truncated)
    });
    state.inject_fault(Fault::times(status(429, "APIG.0308", Some(2)), 3));
    state.inject_fault(Fault {
        fraction: Some(0.3),
        ..Fault::always(status(503, "DCS.5000", None))
    });
}

async fn soak(batching: bool) {
    const N: usize = 200;
    // A batched tick is one list call; per object it is N calls: about the same
    // number of faults either way, in CI-sized time.
    let fault_ticks = if batching { 30 } else { 6 };
    let client = ClientConfig {
        timeout: Duration::from_millis(800),
        connect_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let mut fleet = fleet_with(N, batching, client).await;
    let audit = audit(&fleet);
    // Healthy start: everything Ready.
    reconcile_all_tolerant(&fleet).await;
    drain_tolerant(&mut fleet).await;
    reconcile_all_tolerant(&fleet).await;
    assert_eq!(ready_count(&fleet), N, "healthy start");

    inject_soak_faults(&fleet);
    let mut failed_reconciles = 0;
    for _ in 0..fault_ticks {
        failed_reconciles += tick(&mut fleet).await;
        assert_eq!(
            statuses_keep_their_values(&fleet),
            0,
            "a last known value was lost"
        );
    }
    let faults = fleet.sim.state().counters().faults_injected;
    fleet.sim.state().clear_faults();

    // Healed: converged within two poll ticks.
    let mut ticks = 0;
    while !all_converged(&fleet) {
        assert!(
            ticks < 2,
            "not converged within two poll ticks after healing"
        );
        tick(&mut fleet).await;
        ticks += 1;
    }
    let audit = audit.lock().unwrap().clone();
    println!(
        "soak (batching {batching}): {N} DcsInstances, {fault_ticks} fault ticks, {faults} faults injected, \
         {} status writes, {} Secret writes, {} wrong writes, {failed_reconciles} failed reconciles, \
         converged {ticks} tick(s) after healing",
        audit.status_writes,
        audit.secret_writes,
        audit.wrong_status_writes + audit.wrong_secret_writes
    );
    assert!(faults > 0, "the soak injected no fault");
    assert_eq!(audit.wrong_status_writes, 0);
    assert_eq!(audit.wrong_secret_writes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcs_fault_soak_with_batch_polling() {
    soak(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcs_fault_soak_per_object() {
    soak(false).await;
}

#[tokio::test]
async fn kubernetes_api_conflicts_and_errors_are_retried() {
    let mut fleet = crate::scale::fleet(3, false).await;
    // New credentials go one call at a time: the first object proves them.
    reconcile_all_tolerant(&fleet).await;
    assert_eq!(ready_count(&fleet), 1);
    // The next writes fail: a 409 conflict, then a 500.
    fleet.api.lock().unwrap().fail_writes.extend([409, 500]);
    let failures = reconcile_all_tolerant(&fleet).await;
    assert_eq!(failures, 2, "the two other objects' first writes failed");
    // The error policy requeues; the next attempt converges, with no duplicate Secret.
    let failures = reconcile_all_tolerant(&fleet).await;
    assert_eq!(failures, 0);
    assert_eq!(ready_count(&fleet), 3);
    let seen = fleet.seen();
    assert_eq!(seen.secret_creates, 3);
    assert_eq!(fleet.api.lock().unwrap().secrets.len(), 3);
    drain_tolerant(&mut fleet).await;
}

#[tokio::test]
async fn killed_mid_reconcile_and_restarted_converges_without_duplicates_or_flapping() {
    let fleet = crate::scale::fleet(1, false).await;
    // The process dies between the Secret write and the status write.
    {
        let ctx = fleet.ctx.clone();
        let obj = Arc::new(fleet.current(0));
        let running = tokio::spawn(async move { reconcile(obj, ctx).await });
        // Let it create the Secret, then kill it.
        for _ in 0..200 {
            if fleet.seen().secret_creates == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        running.abort();
        let _ = running.await;
    }
    assert_eq!(fleet.seen().secret_creates, 1);
    // A new process: fresh caches and observation store, same cluster state.
    let restarted = fleet.ctx.shared.rebuild().build();
    let ctx = Arc::new(Context::new(Arc::new(restarted)));
    for _ in 0..3 {
        reconcile(Arc::new(fleet.current(0)), ctx.clone())
            .await
            .unwrap();
    }
    let seen = fleet.seen();
    assert_eq!(seen.secret_creates, 1, "no duplicate Secret");
    assert_eq!(
        seen.secret_patches, 0,
        "the Secret it found was already right"
    );
    assert!(seen.status_patches >= 1);
    let status = fleet.api.lock().unwrap().statuses["cache-0"].clone();
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    let writes_after_convergence = seen.status_patches;
    reconcile(Arc::new(fleet.current(0)), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        fleet.seen().status_patches,
        writes_after_convergence,
        "no flapping"
    );
}

#[tokio::test]
async fn secrets_never_reach_status_events_or_metrics() {
    let fleet = crate::scale::fleet(2, false).await;
    reconcile_all_tolerant(&fleet).await;
    let metrics = fleet.ctx.shared.metrics().encode().unwrap();
    let api = fleet.api.lock().unwrap();
    let statuses = serde_json::to_string(&api.statuses).unwrap();
    let secret_key = dcs_operator::dcs::sim::SimConfig::DEFAULT_SECRET_KEY;
    for (what, text) in [("status", &statuses), ("metrics", &metrics)] {
        assert!(!text.contains(secret_key), "secret key in {what}");
    }
    // Events carry condition messages and DCS fault texts only; the planned events for
    // these transitions hold no credential material either.
    let events: Vec<_> = api
        .statuses
        .values()
        .flat_map(|s| {
            let status = serde_json::from_value(s.clone()).unwrap();
            dcs_operator::plan::transition_events(None, &status)
        })
        .collect();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| !e.note.contains(secret_key)));
}

fn credentials_with(secret_key: &str, version: &str) -> Value {
    let mut secret = serde_json::to_value(crate::controller::credentials_secret()).unwrap();
    secret["data"]["secretKey"] =
        serde_json::to_value(k8s_openapi::ByteString(secret_key.as_bytes().to_vec())).unwrap();
    secret["metadata"]["resourceVersion"] = Value::from(version);
    secret
}

fn condition(fleet: &Fleet, i: usize, type_: &str) -> (String, String) {
    let api = fleet.api.lock().unwrap();
    let c = api.statuses[&format!("cache-{i}")]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
        .clone();
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn credentials_rotated_deleted_and_restored_without_restart() {
    const N: usize = 6;
    let fleet = crate::scale::fleet(N, false).await;
    let sim = fleet.sim.state();
    // A wrong secret key, for six DcsInstances sharing one access key.
    fleet.api.lock().unwrap().credentials = Some(credentials_with("wrong-one", "10"));
    reconcile_all_tolerant(&fleet).await;
    for _ in 0..4 {
        fleet.clock.advance(chrono::TimeDelta::seconds(60));
        reconcile_all_tolerant(&fleet).await;
    }
    let counters = sim.counters();
    assert_eq!(
        counters.requests_for("show_v1"),
        1,
        "one signed attempt in 4 minutes for {N} objects"
    );
    assert_eq!(counters.lockouts, 0, "the access key was never locked");
    assert_eq!(
        condition(&fleet, 0, "Synced"),
        ("False".into(), "Unauthorized".into())
    );
    // Another wrong secret key (another Secret content) is no rotation to the right key,
    // but it is a change: it gets exactly one attempt.
    fleet.api.lock().unwrap().credentials = Some(credentials_with("wrong-two", "11"));
    reconcile_all_tolerant(&fleet).await;
    assert_eq!(sim.counters().requests_for("show_v1"), 2);
    assert_eq!(sim.counters().lockouts, 0);
    // A third wrong content: its one attempt is the third failure in five minutes.
    fleet.api.lock().unwrap().credentials = Some(credentials_with("wrong-three", "12"));
    reconcile_all_tolerant(&fleet).await;
    assert_eq!(sim.counters().requests_for("show_v1"), 3);
    // A fourth gets none: at most three failed signatures per access key in any five
    // minutes, Secret edits included (the gateway locks at five).
    fleet.api.lock().unwrap().credentials = Some(credentials_with("wrong-four", "13"));
    reconcile_all_tolerant(&fleet).await;
    assert_eq!(sim.counters().requests_for("show_v1"), 3);
    // Even the right key waits: the first failure is not five minutes old yet.
    fleet.api.lock().unwrap().credentials = Some(credentials_with(
        dcs_operator::dcs::sim::SimConfig::DEFAULT_SECRET_KEY,
        "14",
    ));
    reconcile_all_tolerant(&fleet).await;
    assert_eq!(sim.counters().requests_for("show_v1"), 3);
    assert_eq!(sim.counters().lockouts, 0);
    // Its next attempt comes five minutes after that refusal (AUTH_RETRY).
    fleet.clock.advance(chrono::TimeDelta::seconds(301));
    // Rotated to the right key: picked up without a restart.
    // Unproven credentials go one call at a time; once one works, the rest follow
    // (the controller requeues the others half a second later).
    reconcile_all_tolerant(&fleet).await;
    assert_eq!(ready_count(&fleet), 1);
    reconcile_all_tolerant(&fleet).await;
    assert_eq!(ready_count(&fleet), N);
    assert_eq!(
        condition(&fleet, 0, "Synced"),
        ("True".into(), "Observed".into())
    );
    // Deleted: Synced says so, Ready is untouched.
    fleet.api.lock().unwrap().credentials = None;
    fleet.clock.advance(chrono::TimeDelta::seconds(67));
    reconcile_all_tolerant(&fleet).await;
    assert_eq!(
        condition(&fleet, 0, "Synced"),
        ("False".into(), "CredentialsNotFound".into())
    );
    assert_eq!(
        condition(&fleet, 0, "Ready"),
        ("True".into(), "Running".into())
    );
    assert_eq!(ready_count(&fleet), N);
    // Back again: recovers.
    fleet.api.lock().unwrap().credentials = Some(credentials_with(
        dcs_operator::dcs::sim::SimConfig::DEFAULT_SECRET_KEY,
        "15",
    ));
    fleet.clock.advance(chrono::TimeDelta::seconds(67));
    reconcile_all_tolerant(&fleet).await;
    assert_eq!(
        condition(&fleet, 0, "Synced"),
        ("True".into(), "Observed".into())
    );
}
