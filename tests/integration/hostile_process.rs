//! The real operator binary survives a hostile tenant: the operator as a child
//! process (as in bench_smoke.rs) against the API stand-in, a healthy tenant on the
//! DCS simulator, and a hostile tenant whose DcsInstances name one hostile endpoint
//! per mode plus tarpits, with the healthy tenant's access key and a wrong secret
//! key (also toward the simulator). Asserts counts and the exit status, never wall
//! time: the deadline is an outer bound for a loaded machine.

// The benchmark's files, loaded once in this test binary (bench_smoke.rs and
// hostile.rs load them); hostile_tenant.rs finds them through `super::`.
#[path = "../../examples/bench/hostile_tenant.rs"]
mod hostile_tenant;

use crate::bench_smoke::{harness, standin};
use crate::hostile::hostile_endpoint as hostile;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::OperatorProcess;
use hostile::Mode;
use hostile_tenant::{HOSTILE_NS, HostileTenant, ready_in};

const HEALTHY: usize = 5;
const HEALTHY_NS: &str = "healthy";
const TARPITS: usize = 10;
/// Requests every hostile endpoint must have received before the verdict.
const CALLS: u64 = 2;
/// Modes whose Retry-After (past the 15 min clamp) pauses their gate for 15
/// minutes: honoured, they are called exactly once within the test.
const PAUSED: [Mode; 2] = [Mode::RetryAfterHuge, Mode::RetryAfterDate];

/// Every endpoint called `CALLS` times, except the paused ones (once).
fn all_called(tenant: &HostileTenant) -> bool {
    tenant.endpoints.iter().all(|e| {
        let wanted = if PAUSED.contains(&e.mode) { 1 } else { CALLS };
        e.requests() >= wanted
    })
}

/// The simulator holding the healthy tenant's instances, and the stand-in.
struct World {
    sim: dcs_operator::dcs::sim::SimHandle,
    server: standin::Server,
    dir: std::path::PathBuf,
}

impl World {
    /// With the healthy namespace and Secret; its DcsInstances if `healthy_now`.
    async fn start(healthy_now: bool) -> World {
        let sim = harness::start_simulator(HEALTHY, 0).await.unwrap();
        let server = standin::Server::start().await.unwrap();
        let state = &server.state;
        state.insert(standin::NAMESPACES, harness::namespace_object(HEALTHY_NS));
        state.insert(standin::SECRETS, harness::credentials_secret(HEALTHY_NS));
        let world = World {
            sim,
            server,
            dir: harness::scratch_dir("hostile").unwrap(),
        };
        if healthy_now {
            world.insert_healthy();
        }
        world
    }

    fn insert_healthy(&self) {
        for i in 0..HEALTHY {
            self.server.state.insert(
                standin::DCS_INSTANCES,
                harness::dcs_instance(HEALTHY_NS, i, &self.sim.base_url()),
            );
        }
    }

    fn spawn_operator(&self) -> OperatorProcess {
        let kubeconfig = self.dir.join("kubeconfig");
        std::fs::write(&kubeconfig, self.server.kubeconfig()).unwrap();
        let flags = [
            "--dcs-timeout",
            "2s",
            "--dcs-connect-timeout",
            "1s",
            "--default-poll-interval",
            "10s",
        ];
        OperatorProcess::spawn(
            Path::new(env!("CARGO_BIN_EXE_dcs-operator")),
            Some(&kubeconfig),
            &flags.map(String::from),
            &self.dir.join("operator.log"),
        )
        .unwrap()
    }

    fn healthy_ready(&self) -> usize {
        ready_in(&self.server.state, HEALTHY_NS)
    }

    fn auth_failures(&self) -> u64 {
        self.sim.state().counters().auth_failures
    }

    async fn stop(self) {
        self.server.stop();
        self.sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `done` (outer bound `limit`), panicking with `what` if the operator
/// exits or time runs out.
async fn wait_for(
    operator: &mut OperatorProcess,
    limit: Duration,
    what: impl Fn() -> String,
    done: impl Fn() -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = operator.exited() {
            panic!(
                "the operator exited ({status}); {}:\n{}",
                what(),
                operator.log_tail(30)
            );
        }
        if done() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not within {limit:?}: {}; operator log:\n{}",
            what(),
            operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_survives_every_hostile_mode() {
    let world = World::start(true).await;
    let state = &world.server.state;
    let mut tenant = HostileTenant::full(state, TARPITS).await.unwrap();
    let mut operator = world.spawn_operator();
    wait_for(
        &mut operator,
        Duration::from_secs(40),
        || format!("{}/{HEALTHY} healthy Ready", world.healthy_ready()),
        || world.healthy_ready() == HEALTHY,
    )
    .await;
    // Once the healthy secret is proven: a DcsInstance naming the simulator with
    // the healthy access key and a wrong secret key.
    tenant.add_toward(state, &world.sim.base_url(), HOSTILE_NS);

    // Until every hostile endpoint has been called twice (the paused ones once)
    // and the wrong secret was tried (the pollInterval is 10 s: normally ~12 s).
    wait_for(
        &mut operator,
        Duration::from_secs(40),
        || {
            format!(
                "{} wrong signatures; hostile requests {}",
                world.auth_failures(),
                tenant.request_summary()
            )
        },
        || all_called(&tenant) && world.auth_failures() >= 1,
    )
    .await;
    println!("hostile requests: {}", tenant.request_summary());

    let metrics = operator.metrics().await;
    let running = operator.exited().is_none();
    let log_tail = operator.log_tail(30);
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    let status = operator.terminate(Duration::from_secs(20)).await;
    let counters = world.sim.state().counters();
    let healthy_ready = world.healthy_ready();
    let hostile_ready = ready_in(state, HOSTILE_NS);
    world.stop().await;

    assert!(running, "the operator exited:\n{log_tail}");
    assert_eq!(healthy_ready, HEALTHY);
    // A real scrape. The panics family is only encoded once a task has panicked
    // (prometheus-client leaves label-less empty families out): absent means 0.
    assert!(
        metrics.contains("# TYPE dcs_operator_reconciles counter"),
        "no scrape of /metrics:\n{metrics}"
    );
    let panics: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("dcs_operator_panics_total"))
        .collect();
    assert_eq!(
        harness::metric_sum(&metrics, "dcs_operator_panics_total"),
        0.0,
        "{panics:?}\n{log_tail}"
    );
    assert!(
        !log.contains("panicked"),
        "a panic in the operator log:\n{log_tail}"
    );
    // The clamped Retry-After was honoured: no second call within 15 minutes.
    for endpoint in tenant.endpoints.iter().filter(|e| PAUSED.contains(&e.mode)) {
        assert_eq!(endpoint.requests(), 1, "{:?}", endpoint.mode);
    }
    // The wrong secret toward the simulator never locked the healthy access key.
    assert_eq!(counters.lockouts, 0, "{counters:?}");
    // Sanity of the scene: the hostile objects are not all Ready (Fake200 may be).
    assert!(hostile_ready < tenant.instances);
    match status {
        Some(status) => assert!(status.success(), "SIGTERM: exited {status}\n{log_tail}"),
        None => panic!("the operator did not stop within 20 s of SIGTERM\n{log_tail}"),
    }
}

/// Known gap, left failing on purpose: at start-up no secret is proven yet, and
/// the first 401 toward a gate makes every unproven secret of that gate wait five
/// minutes (`AUTH_RETRY`). A tenant that names the healthy tenant's endpoint and
/// access key with a wrong secret key, and wins the race to the first call, keeps
/// the healthy tenant from Ready for five minutes after every operator restart.
/// Here the hostile DcsInstance is alone at first, so its 401 comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known gap: a wrong secret at start-up holds the healthy tenant back 5 minutes"]
async fn a_wrong_secret_first_does_not_hold_back_the_healthy_tenant() {
    let world = World::start(false).await;
    let mut tenant = HostileTenant::new(&world.server.state);
    tenant.add_toward(&world.server.state, &world.sim.base_url(), HOSTILE_NS);
    let mut operator = world.spawn_operator();
    wait_for(
        &mut operator,
        Duration::from_secs(30),
        || format!("{} wrong signatures", world.auth_failures()),
        || world.auth_failures() >= 1,
    )
    .await;
    world.insert_healthy();
    // Two poll intervals and then some: far less than the five minutes.
    wait_for(
        &mut operator,
        Duration::from_secs(30),
        || format!("{}/{HEALTHY} healthy Ready", world.healthy_ready()),
        || world.healthy_ready() == HEALTHY,
    )
    .await;
    let status = operator.terminate(Duration::from_secs(20)).await;
    world.stop().await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
