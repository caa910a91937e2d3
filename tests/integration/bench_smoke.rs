//! Smoke test of the scale benchmark's small scenario: the operator binary, as a
//! child process, against the benchmark's Kubernetes API stand-in and the DCS
//! simulator. Asserts counts only (all Ready, no Kubernetes writes in steady
//! state), never wall time: the timeouts are outer bounds for a loaded machine.

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
async fn small_scenario_reaches_ready_then_writes_nothing() {
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
    let still_running = operator.exited().is_none();
    let log = operator.log_tail(30);
    operator.stop();
    server.stop();
    sim.shutdown().await;

    assert!(still_running, "the operator exited:\n{log}");
    assert_eq!(
        steady.total_writes(),
        0,
        "Kubernetes writes in steady state: {steady:?}\n{log}"
    );
    assert_eq!(server.state.ready_count(), N);
    // The operator kept polling: steady state is not a dead process.
    assert!(dcs_calls > 0, "no DCS call in {TICKS} ticks\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
