//! A hostile tenant cannot crash, starve or bloat the operator. A healthy tenant
//! (namespace `default`, the simulator standing in for the region) shares the
//! operator with a hostile one (namespace `evil`) that reuses the healthy tenant's
//! access key against endpoints it controls: absurd Retry-After values, 16 MiB
//! bodies, deep nesting, wrong ids, a 503 flapper, fake successes, wild numbers,
//! 40 tarpit origins, and wrong secrets toward the region with a Secret edited on
//! every tick. Counts under the injected clock, never wall time.

// Also used by hostile_process.rs (a file loads as one module only).
#[path = "../../examples/bench/hostile.rs"]
pub(crate) mod hostile_endpoint;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dcs_operator::controller::reconcile;
use dcs_operator::crd::{DcsInstance, DcsInstanceStatus, LocalSecretReference};
use dcs_operator::dcs::ClientConfig;
use dcs_operator::dcs::sim::SimConfig;
use futures::StreamExt;
use hostile_endpoint::{HostileEndpoint, Mode};
use k8s_openapi::ByteString;
use serde_json::{Value, json};

use crate::scale::{Fleet, PROJECT, fleet_configured, instance_id, ready_count};

const HEALTHY: usize = 20;
const TARPITS: usize = 40;
const EVIL_NS: &str = "evil";
const TARPIT_NS: &str = "tarpit";

struct Scene {
    fleet: Fleet,
    /// Hostile DcsInstances, named `evil-<i>`.
    hostile: Vec<DcsInstance>,
    endpoints: Vec<HostileEndpoint>,
    /// The evil credentials Secret's content changes on every tick (a new wrong key).
    edits: u64,
}

fn evil_credentials(secret_key: &str, version: u64) -> Value {
    let mut data = BTreeMap::new();
    // The healthy tenant's access key: access keys are not secret.
    data.insert(
        "accessKey".to_string(),
        ByteString(SimConfig::DEFAULT_ACCESS_KEY.into()),
    );
    data.insert("secretKey".to_string(), ByteString(secret_key.into()));
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "evil-creds", "namespace": EVIL_NS, "resourceVersion": version.to_string()},
        "data": serde_json::to_value(data).unwrap(),
    })
}

fn evil_object(i: usize, endpoint: &str, namespace: &str) -> DcsInstance {
    let mut obj = crate::controller::new_dcs_instance(
        &format!("evil-{i}"),
        &format!("evil-uid-{i}"),
        &instance_id(100_000 + i),
        endpoint,
    );
    obj.metadata.namespace = Some(namespace.into());
    obj.spec.credentials_secret_ref = Some(LocalSecretReference {
        name: "evil-creds".into(),
    });
    obj
}

impl Scene {
    fn current_hostile(&self, i: usize) -> DcsInstance {
        let mut obj = self.hostile[i].clone();
        obj.status = self
            .fleet
            .api
            .lock()
            .unwrap()
            .statuses
            .get(&format!("evil-{i}"))
            .and_then(|s| serde_json::from_value::<DcsInstanceStatus>(s.clone()).ok());
        obj
    }

    /// Every object once, 32 at a time, errors tolerated (as error_policy would).
    async fn reconcile_everything(&self) {
        let mut objects: Vec<Arc<DcsInstance>> = (0..HEALTHY)
            .map(|i| Arc::new(self.fleet.current(i)))
            .collect();
        objects.extend((0..self.hostile.len()).map(|i| Arc::new(self.current_hostile(i))));
        let ctx = self.fleet.ctx.clone();
        futures::stream::iter(objects)
            .map(|obj| {
                let ctx = ctx.clone();
                async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), reconcile(obj, ctx)).await;
                }
            })
            .buffer_unordered(32)
            .count()
            .await;
    }

    async fn drain(&mut self) {
        while let Ok(Some(object)) =
            tokio::time::timeout(Duration::from_millis(300), self.fleet.requests.next()).await
        {
            let obj = match object.name.strip_prefix("evil-") {
                // Deleted: the watch would not deliver it any more.
                Some(i) if i.parse::<usize>().unwrap() >= self.hostile.len() => continue,
                Some(i) => self.current_hostile(i.parse().unwrap()),
                None => self
                    .fleet
                    .current(object.name.trim_start_matches("cache-").parse().unwrap()),
            };
            let _ = reconcile(Arc::new(obj), self.fleet.ctx.clone()).await;
        }
    }

    fn successes(&self) -> u64 {
        self.fleet.sim.state().counters().responses_for(200)
    }

    /// One poll tick: the clock moves a poll interval, the evil Secret is edited
    /// (when asked), every group lists, then every object's own timer fires.
    /// Returns the healthy tenant's successful DCS calls this tick.
    async fn tick(&mut self, edit: bool) -> u64 {
        if edit && !self.hostile.is_empty() {
            self.edits += 1;
            let secret = evil_credentials(&format!("wrong-{}", self.edits), 1000 + self.edits);
            self.fleet
                .api
                .lock()
                .unwrap()
                .secrets
                .insert("evil-creds".into(), secret);
        }
        let before = self.successes();
        self.fleet.clock.advance(chrono::TimeDelta::seconds(67));
        self.fleet.ctx.shared.batch().refresh_all();
        for _ in 0..200 {
            if self.successes() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.drain().await;
        self.reconcile_everything().await;
        self.drain().await;
        self.successes() - before
    }

    fn healthy_ready(&self) -> usize {
        let api = self.fleet.api.lock().unwrap();
        (0..HEALTHY)
            .filter(|i| {
                api.statuses[&format!("cache-{i}")]["conditions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count()
    }

    fn healthy_all_synced(&self) -> bool {
        let api = self.fleet.api.lock().unwrap();
        (0..HEALTHY).all(|i| {
            api.statuses[&format!("cache-{i}")]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Synced" && c["status"] == "True")
        })
    }
}

fn client() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_millis(300),
        timeout: Duration::from_millis(700),
        ..ClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_cannot_crash_starve_or_bloat_the_operator() {
    let fleet = fleet_configured(HEALTHY, true, client(), |builder, sim| {
        builder
            // The simulator plays the region: its gates are the cloud's.
            .cloud_origins(vec![sim.endpoint().origin()])
            // The production default (the scale harness raises it for its own reasons).
            .namespace_limits(dcs_operator::controller::dcs_call::NamespaceLimits::new(8))
    })
    .await;
    let mut scene = Scene {
        fleet,
        hostile: Vec::new(),
        endpoints: Vec::new(),
        edits: 0,
    };
    // Healthy start.
    scene.reconcile_everything().await;
    scene.drain().await;
    scene.reconcile_everything().await;
    assert_eq!(ready_count(&scene.fleet), HEALTHY);
    let healthy_per_tick = scene.tick(false).await;
    assert_eq!(healthy_per_tick, 1, "one list call per tick");
    let shared = scene.fleet.ctx.shared.clone();
    let healthy: Vec<Arc<DcsInstance>> = (0..HEALTHY)
        .map(|i| Arc::new(scene.fleet.current(i)))
        .collect();
    shared.prune(&healthy);
    let baseline = shared.cache_sizes();

    // The hostile tenant arrives: every mode, 40 tarpits, and wrong secrets toward
    // the region, all with the healthy tenant's access key.
    scene
        .fleet
        .api
        .lock()
        .unwrap()
        .secrets
        .insert("evil-creds".into(), evil_credentials("wrong-0", 1000));
    for (i, mode) in Mode::ALL_BUT_TARPIT.into_iter().enumerate() {
        let endpoint = HostileEndpoint::start(mode, &instance_id(100_000 + i))
            .await
            .unwrap();
        scene
            .hostile
            .push(evil_object(i, &endpoint.base_url, EVIL_NS));
        scene.endpoints.push(endpoint);
    }
    // The tarpits in a namespace of their own: they take all of its DCS slots (and
    // only its), so the other hostile modes above still get answers to check.
    for _ in 0..TARPITS {
        let i = scene.hostile.len();
        let endpoint = HostileEndpoint::start(Mode::Tarpit, &instance_id(100_000 + i))
            .await
            .unwrap();
        scene
            .hostile
            .push(evil_object(i, &endpoint.base_url, TARPIT_NS));
        scene.endpoints.push(endpoint);
    }
    let region = scene.fleet.sim.base_url();
    for _ in 0..3 {
        let i = scene.hostile.len();
        scene.hostile.push(evil_object(i, &region, EVIL_NS));
    }

    // Ten ticks (over 11 minutes) of hostility, the evil Secret edited every tick.
    let mut failures_at = Vec::new();
    let mut auth_failures = scene.fleet.sim.state().counters().auth_failures;
    for tick in 0..10 {
        if tick == 5 {
            // The healthy tenant's instance moves: written within one tick.
            let mut set = serde_json::Map::new();
            set.insert("ip".into(), json!("10.9.9.9"));
            assert!(
                scene
                    .fleet
                    .sim
                    .state()
                    .update_instance(PROJECT, &instance_id(3), set)
            );
        }
        let calls = scene.tick(true).await;
        assert_eq!(
            calls, healthy_per_tick,
            "tick {tick}: the healthy tenant's calls are unchanged"
        );
        assert!(
            scene.healthy_all_synced(),
            "tick {tick}: a healthy DcsInstance was refused or paused"
        );
        if tick == 5 {
            let api = scene.fleet.api.lock().unwrap();
            assert_eq!(api.statuses["cache-3"]["ip"], "10.9.9.9");
        }
        let now = scene.fleet.sim.state().counters().auth_failures;
        failures_at.push((
            dcs_operator::clock::Clock::now(&scene.fleet.clock),
            now - auth_failures,
        ));
        auth_failures = now;
    }
    assert_eq!(scene.healthy_ready(), HEALTHY);
    assert_eq!(
        scene.fleet.sim.state().counters().lockouts,
        0,
        "the access key was never locked"
    );
    assert_eq!(scene.fleet.sim.state().counters().throttled, 0);
    // At most three failed signatures toward the region in any five minutes.
    for (i, (start, _)) in failures_at.iter().enumerate() {
        let in_window: u64 = failures_at[i..]
            .iter()
            .take_while(|(at, _)| *at < *start + chrono::TimeDelta::minutes(5))
            .map(|(_, n)| n)
            .sum();
        assert!(
            in_window <= 3,
            "{in_window} failed signatures within 5 minutes: {failures_at:?}"
        );
    }
    println!(
        "failed signatures toward the region per tick (67 s apart): {:?}",
        failures_at.iter().map(|(_, n)| n).collect::<Vec<_>>()
    );
    assert!(
        failures_at.iter().map(|(_, n)| n).sum::<u64>() >= 1,
        "the wrong secrets were tried at all"
    );
    // Every hostile endpoint was called, and none crashed anything.
    for endpoint in &scene.endpoints {
        assert!(
            endpoint.requests() > 0,
            "{:?} was never called",
            endpoint.mode
        );
    }
    assert_eq!(shared.metrics().panics_total(), 0, "panics caught");
    // The hostile objects got clear conditions, not a crash: the throttled ones
    // say so, the huge ones say the answer was too large or unreadable.
    {
        let api = scene.fleet.api.lock().unwrap();
        let synced = |name: &str| -> String {
            api.statuses
                .get(name)
                .and_then(|s| s["conditions"].as_array().cloned())
                .and_then(|c| c.into_iter().find(|c| c["type"] == "Synced"))
                .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
                .unwrap_or_default()
        };
        for (i, mode) in Mode::ALL_BUT_TARPIT.iter().enumerate() {
            println!("{mode:?}: Synced reason {}", synced(&format!("evil-{i}")));
        }
        println!("tarpit: Synced reason {}", synced("evil-20"));
        println!("region, wrong secret: Synced reason {}", synced("evil-52"));
        let expected = [
            (Mode::RetryAfterHuge, "Throttled"),
            (Mode::RetryAfterNegative, "Throttled"),
            (Mode::RetryAfterDate, "Throttled"),
            (Mode::RetryAfterGarbage, "Throttled"),
            (Mode::HugeList, "Observed"),
            (Mode::HugeIp, "Observed"),
            (Mode::DeepJson, "DecodeError"),
            (Mode::WrongIds, "Observed"),
            (Mode::Flapper, "DcsUnavailable"),
            (Mode::Fake200, "Observed"),
            (Mode::HugeErrorBody, "DcsUnavailable"),
            (Mode::WildNumbers, "Observed"),
        ];
        for (i, (mode, reason)) in expected.iter().enumerate() {
            assert_eq!(Mode::ALL_BUT_TARPIT[i], *mode);
            assert_eq!(synced(&format!("evil-{i}")), *reason, "{mode:?}");
        }
        assert_eq!(
            synced("evil-52"),
            "Unauthorized",
            "wrong secret toward the region"
        );
        // The 16 MiB ip is kept as 4 KiB: the status fits the schema.
        assert_eq!(
            api.statuses["evil-5"]["ip"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            4096
        );
        for (name, status) in api.statuses.iter().filter(|(n, _)| n.starts_with("evil-")) {
            let text = status.to_string();
            assert!(
                text.len() < 64 << 10,
                "{name}: status of {} bytes",
                text.len()
            );
        }
    }

    // The hostile tenant leaves; after the pauses and windows have run out, every
    // cache is back to its baseline.
    scene.hostile.clear();
    scene.endpoints.clear();
    for _ in 0..16 {
        // What the operator's pruning pass does every minute.
        shared.prune(&healthy);
        scene.tick(false).await;
    }
    shared.prune(&healthy);
    assert_eq!(shared.cache_sizes(), baseline);
    let scraped = shared.metrics().encode().unwrap();
    assert!(
        scraped.contains("dcs_operator_cache_entries{cache=\"api_gates\"} 2"),
        "{scraped}"
    );
    assert_eq!(shared.metrics().panics_total(), 0);
}
