//! Smoke test of the scale benchmark's small scenario: the operator binary, as a
//! child process, against the benchmark's Kubernetes API stand-in and the DCS
//! simulator. Asserts counts only (all Ready, /readyz ready, no Kubernetes writes
//! in steady state; after a restart, one Secret LIST per watch, no GET of a connection
//! Secret and no write; an edited connection Secret repaired with one write), never
//! wall time: the timeouts are outer bounds for a loaded machine.

// Also used by hostile_process.rs (a file loads as one module only).
#[path = "../../examples/bench/harness.rs"]
pub(crate) mod harness;
#[path = "../../examples/bench/standin.rs"]
pub(crate) mod standin;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::{OperatorProcess, POLL_INTERVAL};

const N: usize = 20;
const NAMESPACES: usize = 2;
/// Steady state is measured over this many poll intervals.
const TICKS: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_scenario_reaches_ready_writes_nothing_then_restarts_from_one_list() {
    let sim = harness::start_simulator(N, 0).await.unwrap();
    let server = standin::Server::start().await.unwrap();
    harness::seed_healthy_tenant(&server.state, "smoke", N, NAMESPACES, &sim.base_url());
    let dir = harness::scratch_dir("smoke").unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let mut operator = OperatorProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_dcs-operator")),
        Some(&kubeconfig),
        &["--batch-polling=true".to_string()],
        &dir.join("operator.log"),
    )
    .unwrap();

    // Generous: a debug build on a busy 2-core runner; Ready normally takes ~1 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = operator.exited() {
            panic!("the operator exited ({status}):\n{}", operator.log_tail(30));
        }
        if server.state.ready_count() == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}/{N} Ready; operator log:\n{}",
            server.state.ready_count(),
            operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every watch has listed: /readyz says so (and the pruning pass, gated on it,
    // runs). Its own bound: the watches listed long before all were Ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !operator.ready().await {
        assert!(
            Instant::now() < deadline,
            "/readyz never turned ready:\n{}",
            operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = server.state.counts();
    assert_eq!(counts.write("secret_create"), N as u64, "{counts:?}");
    assert!(counts.write("status_patch") >= N as u64, "{counts:?}");

    // Events follow the status write that made an instance Ready: let them land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = server.state.counts();
    let dcs_before = harness::dcs_requests(&sim);
    tokio::time::sleep(POLL_INTERVAL * TICKS).await;
    let steady = server.state.counts().since(&before);
    let dcs_calls = harness::dcs_requests(&sim) - dcs_before;
    // A tenant edits a connection Secret: it is written back, once. (The watch of
    // owned Secrets wakes the owner at once; a later poll would repair it too, so
    // which path did is told by the unit tests of runner::owners, not here.)
    let before_tamper = server.state.counts();
    let repaired = tamper_and_await_repair(&server.state).await;
    let repair_writes = server.state.counts().since(&before_tamper);
    let still_running = operator.exited().is_none();
    let log = operator.log_tail(30);
    operator.stop();
    assert!(
        repaired,
        "the edited connection Secret was not repaired:\n{log}"
    );
    assert_eq!(
        repair_writes.total_writes(),
        1,
        "writes to repair one Secret: {repair_writes:?}"
    );

    assert!(still_running, "the operator exited:\n{log}");
    assert_eq!(
        steady.total_writes(),
        0,
        "Kubernetes writes in steady state: {steady:?}\n{log}"
    );
    assert_eq!(server.state.ready_count(), N);
    // The operator kept polling: steady state is not a dead process.
    assert!(dcs_calls > 0, "no DCS call in {TICKS} ticks\n{log}");

    let restart = restart_counts(&server, &kubeconfig, &dir).await;
    server.stop();
    sim.shutdown().await;
    // A restart finds the N connection Secrets with one LIST (one page here) of
    // the owned-Secret watch, beside the metadata watch's LIST; it GETs only the
    // credentials Secrets (one per namespace), never a connection Secret, and
    // writes nothing: every Secret and status is already right.
    let secrets = |verb: &str| {
        restart
            .requests
            .get(&(verb.to_string(), "secrets".to_string()))
            .copied()
            .unwrap_or(0)
    };
    assert!(
        (1..=2).contains(&secrets("list")),
        "Secret LISTs at restart: {restart:?}"
    );
    assert!(
        secrets("get") <= NAMESPACES as u64,
        "Secret GETs at restart: {restart:?}"
    );
    assert_eq!(restart.total_writes(), 0, "writes at restart: {restart:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Overwrites one key of one connection Secret, as a tenant could, and waits (60 s
/// at most) until the operator has written the original data back.
async fn tamper_and_await_repair(state: &standin::StandIn) -> bool {
    let secret = state
        .objects(standin::SECRETS)
        .into_iter()
        .find(|secret| secret["metadata"]["ownerReferences"].is_array())
        .expect("a connection Secret");
    let original = secret["data"].clone();
    let key = original
        .as_object()
        .and_then(|data| data.keys().next().cloned())
        .expect("a key");
    let mut tampered = (*secret).clone();
    tampered["data"][&key] = serde_json::json!("dGFtcGVyZWQ=");
    let (namespace, name) = (
        secret["metadata"]["namespace"].clone(),
        secret["metadata"]["name"].clone(),
    );
    state.insert(standin::SECRETS, tampered);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let now = state
            .objects(standin::SECRETS)
            .into_iter()
            .find(|s| s["metadata"]["namespace"] == namespace && s["metadata"]["name"] == name);
        if now.is_some_and(|now| now["data"] == original) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Starts a second operator process over the same objects, lets it reconcile every
/// DcsInstance and one more poll interval, and returns the requests it made.
async fn restart_counts(
    server: &standin::Server,
    kubeconfig: &Path,
    dir: &Path,
) -> standin::Counts {
    let before = server.state.counts();
    let operator = OperatorProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_dcs-operator")),
        Some(kubeconfig),
        &["--batch-polling=true".to_string()],
        &dir.join("operator-restarted.log"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while operator.metric_sum("dcs_operator_reconciles_total").await < N as f64 {
        assert!(
            Instant::now() < deadline,
            "the restarted operator did not reconcile every DcsInstance:\n{}",
            operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(POLL_INTERVAL).await;
    let counts = server.state.counts().since(&before);
    operator.stop();
    counts
}
