//! Efficiency, counted: batch polling costs one list call per credentials group and
//! tick; over many ticks with an unchanged DCS there are zero Kubernetes writes; one
//! change in DCS gives exactly one status patch (and one Secret patch when the
//! endpoint moved); the per-object baseline costs N calls per tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcs_operator::clock::{ManualClock, SharedClock};
use dcs_operator::controller::resolve::SpecDefaults;
use dcs_operator::controller::secrets::CredentialsResolver;
use dcs_operator::controller::{Context, Shared, SharedBuilder, reconcile};
use dcs_operator::crd::{DcsInstance, DcsInstanceStatus};
use dcs_operator::dcs::sim::{SimConfig, SimHandle, SimInstance, Simulator};
use dcs_operator::dcs::{ClientConfig, DcsClient};
use futures::StreamExt;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use crate::controller::credentials_secret;

pub(crate) const PROJECT: &str = "0123456789abcdef0123456789abcdef";

pub(crate) fn instance_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

/// Kubernetes writes and reads the fake API server saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    pub(crate) status_patches: usize,
    pub(crate) secret_creates: usize,
    pub(crate) secret_patches: usize,
    pub(crate) reads: usize,
    /// Writes refused by an injected fault.
    pub(crate) refused: usize,
}

/// Sees every write of one kind: (object name, what is written).
pub(crate) type WriteHook = Box<dyn FnMut(&str, &Value) + Send>;

/// A small stateful stand-in for the API server: Secrets and statuses by name.
#[derive(Default)]
pub(crate) struct FakeApi {
    pub(crate) secrets: HashMap<String, Value>,
    pub(crate) statuses: HashMap<String, Value>,
    pub(crate) seen: Seen,
    /// The credentials Secret `creds` as GET returns it (None: 404).
    pub(crate) credentials: Option<Value>,
    /// HTTP statuses to answer the next writes with, instead of doing them.
    pub(crate) fail_writes: std::collections::VecDeque<u16>,
    /// Called with (object name, status) on every status write before it is stored.
    pub(crate) on_status: Option<WriteHook>,
    /// Called with (Secret name, Secret) on every Secret write.
    pub(crate) on_secret: Option<WriteHook>,
}

fn reply(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn spawn_fake_api(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
) -> Arc<Mutex<FakeApi>> {
    let state = Arc::new(Mutex::new(FakeApi {
        credentials: Some(serde_json::to_value(credentials_secret()).unwrap()),
        ..FakeApi::default()
    }));
    let shared = state.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let body = request.into_body().collect_bytes().await.unwrap();
            let mut api = shared.lock().unwrap();
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            if method != "GET"
                && let Some(code) = api.fail_writes.pop_front()
            {
                api.seen.refused += 1;
                let reason = if code == 409 {
                    "Conflict"
                } else {
                    "InternalError"
                };
                let body = json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":reason,"code":code,"message":"injected"});
                drop(api);
                send.send_response(reply(code, &body));
                continue;
            }
            let response = match (method.as_str(), path.as_str()) {
                ("GET", p) if p.ends_with("/secrets/creds") => {
                    api.seen.reads += 1;
                    match &api.credentials {
                        Some(secret) => reply(200, secret),
                        None => reply(
                            404,
                            &json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}),
                        ),
                    }
                }
                ("GET", p) if p.contains("/secrets/") => {
                    api.seen.reads += 1;
                    match api.secrets.get(&name) {
                        Some(secret) => reply(200, secret),
                        None => reply(
                            404,
                            &json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}),
                        ),
                    }
                }
                ("POST", p) if p.ends_with("/secrets") => {
                    api.seen.secret_creates += 1;
                    let mut secret: Value = serde_json::from_slice(&body).unwrap();
                    secret["metadata"]["resourceVersion"] = json!("1");
                    secret["metadata"]["uid"] =
                        json!(format!("secret-{}", api.seen.secret_creates));
                    let key = secret["metadata"]["name"].as_str().unwrap().to_string();
                    if api.secrets.contains_key(&key) {
                        drop(api);
                        send.send_response(reply(409, &json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"AlreadyExists","code":409})));
                        continue;
                    }
                    if let Some(hook) = api.on_secret.as_mut() {
                        hook(&key, &secret);
                    }
                    api.secrets.insert(key, secret.clone());
                    reply(201, &secret)
                }
                ("PATCH", p) if p.contains("/secrets/") => {
                    api.seen.secret_patches += 1;
                    let patch: Value = serde_json::from_slice(&body).unwrap();
                    let secret = api.secrets.get_mut(&name).unwrap();
                    for (key, value) in patch["data"].as_object().unwrap() {
                        if value.is_null() {
                            if let Some(data) =
                                secret.get_mut("data").and_then(Value::as_object_mut)
                            {
                                data.remove(key);
                            }
                        } else {
                            secret["data"][key] = value.clone();
                        }
                    }
                    let version: u64 = secret["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    secret["metadata"]["resourceVersion"] = json!((version + 1).to_string());
                    let secret = secret.clone();
                    if let Some(hook) = api.on_secret.as_mut() {
                        hook(&name, &secret);
                    }
                    reply(200, &secret)
                }
                ("PATCH", p) if p.ends_with("/status") => {
                    api.seen.status_patches += 1;
                    let applied: Value = serde_json::from_slice(&body).unwrap();
                    let object = p
                        .trim_end_matches("/status")
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_string();
                    if let Some(hook) = api.on_status.as_mut() {
                        hook(&object, &applied["status"]);
                    }
                    api.statuses
                        .insert(object.clone(), applied["status"].clone());
                    reply(
                        200,
                        &json!({
                            "apiVersion": "dcs.operator.dev/v1alpha1",
                            "kind": "DcsInstance",
                            "metadata": {"name": object, "namespace": "default"},
                            "spec": {"instanceId": instance_id(0)},
                            "status": applied["status"],
                        }),
                    )
                }
                _ => panic!("unexpected request {method} {path}"),
            };
            drop(api);
            send.send_response(response);
        }
    });
    state
}

pub(crate) struct Fleet {
    pub(crate) ctx: Arc<Context>,
    pub(crate) api: Arc<Mutex<FakeApi>>,
    pub(crate) sim: SimHandle,
    pub(crate) clock: ManualClock,
    pub(crate) objects: Vec<DcsInstance>,
    pub(crate) requests: dcs_operator::controller::RequestReceiver,
}

pub(crate) async fn fleet(n: usize, batching: bool) -> Fleet {
    fleet_with(n, batching, ClientConfig::default()).await
}

pub(crate) async fn fleet_with(n: usize, batching: bool, client: ClientConfig) -> Fleet {
    fleet_configured(n, batching, client, |builder, _| builder).await
}

/// A fleet whose Shared is adjusted by `configure` (given the simulator) before use.
pub(crate) async fn fleet_configured(
    n: usize,
    batching: bool,
    client: ClientConfig,
    configure: impl FnOnce(SharedBuilder, &SimHandle) -> SharedBuilder,
) -> Fleet {
    let instances = (0..n)
        .map(|i| {
            let mut fields = serde_json::Map::new();
            fields.insert("instance_id".into(), json!(instance_id(i)));
            fields.insert("engine".into(), json!("Redis"));
            fields.insert("status".into(), json!("RUNNING"));
            fields.insert(
                "ip".into(),
                json!(format!("10.0.{}.{}", i / 250, i % 250 + 1)),
            );
            fields.insert("port".into(), json!(6379));
            fields.insert("capacity".into(), json!(1));
            fields.insert("used_memory".into(), json!(i));
            SimInstance::new(PROJECT, fields, Vec::new())
        })
        .collect();
    let clock = ManualClock::new(chrono::Utc::now());
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::start(
        SimConfig {
            instances,
            ..SimConfig::with_default_keys()
        },
        "127.0.0.1:0".parse().unwrap(),
        shared_clock.clone(),
    )
    .await
    .unwrap();
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = spawn_fake_api(handle);
    let builder = Shared::builder(
        Client::new(service, "default"),
        DcsClient::new(client, shared_clock.clone()).unwrap(),
        shared_clock,
        SpecDefaults {
            poll_interval: Duration::from_secs(60),
            ..SpecDefaults::default()
        },
        CredentialsResolver::new(None),
    )
    .batching(batching)
    .budget(dcs_operator::controller::budget::ApiBudget::new(
        100_000.0, 100_000,
    ))
    // The harness runs up to 16 reconciles at once and, unlike the controller, does
    // not honour the short requeue of a reconcile whose namespace share is busy.
    .namespace_limits(dcs_operator::controller::dcs_call::NamespaceLimits::new(16));
    let shared = Arc::new(configure(builder, &sim).build());
    let requests = shared.reconcile_requests(None);
    let objects = (0..n)
        .map(|i| {
            crate::controller::new_dcs_instance(
                &format!("cache-{i}"),
                &format!("uid-{i}"),
                &instance_id(i),
                &sim.base_url(),
            )
        })
        .collect();
    Fleet {
        ctx: Arc::new(Context::new(shared)),
        api,
        sim,
        clock,
        objects,
        requests,
    }
}

impl Fleet {
    /// The object as the watch would deliver it: with the status last written.
    pub(crate) fn current(&self, i: usize) -> DcsInstance {
        let mut obj = self.objects[i].clone();
        let name = format!("cache-{i}");
        obj.status = self
            .api
            .lock()
            .unwrap()
            .statuses
            .get(&name)
            .map(|s| serde_json::from_value::<DcsInstanceStatus>(s.clone()).unwrap());
        obj
    }

    pub(crate) async fn reconcile_all(&self) {
        for i in 0..self.objects.len() {
            reconcile(Arc::new(self.current(i)), self.ctx.clone())
                .await
                .unwrap();
        }
    }

    /// Reconciles whatever the batch poller asked for, until it is quiet.
    pub(crate) async fn drain_requests(&mut self) -> usize {
        let mut handled = 0;
        while let Ok(Some(object)) =
            tokio::time::timeout(Duration::from_millis(700), self.requests.next()).await
        {
            let i: usize = object.name.trim_start_matches("cache-").parse().unwrap();
            reconcile(Arc::new(self.current(i)), self.ctx.clone())
                .await
                .unwrap();
            handled += 1;
        }
        handled
    }

    pub(crate) fn dcs_calls(&self) -> (u64, u64) {
        let counters = self.sim.state().counters();
        (
            counters.requests_for("list_v2"),
            counters.requests_for("show_v1"),
        )
    }

    pub(crate) fn seen(&self) -> Seen {
        self.api.lock().unwrap().seen.clone()
    }

    /// One poll tick: time moves a poll interval, the groups list, and every
    /// object's own timer fires.
    pub(crate) async fn tick(&mut self) {
        // 60 s plus the largest jitter (10 %): every object's own timer is due.
        self.clock.advance(chrono::TimeDelta::seconds(67));
        self.ctx.shared.batch().refresh_all();
        self.drain_requests().await;
        self.reconcile_all().await;
    }
}

pub(crate) fn ready_count(fleet: &Fleet) -> usize {
    let api = fleet.api.lock().unwrap();
    api.statuses
        .values()
        .filter(|s| {
            s["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count()
}

#[tokio::test]
async fn batch_polling_one_list_per_tick_and_zero_churn() {
    const N: usize = 60;
    let mut fleet = fleet(N, true).await;
    // First reconciles register with the group and write nothing: the list is coming.
    fleet.reconcile_all().await;
    assert_eq!(fleet.seen().status_patches, 0);
    let woken = fleet.drain_requests().await;
    assert_eq!(woken, N, "the first list observed every instance");
    assert_eq!(ready_count(&fleet), N);
    // Registrations arrive over time; each debounce window may add a list call.
    let (lists, shows) = fleet.dcs_calls();
    assert!((1..=3).contains(&lists), "{lists} list calls at start");
    assert_eq!(shows, 0, "no ShowInstance");
    let start = fleet.seen();
    assert_eq!((start.status_patches, start.secret_creates), (N, N));

    // Steady state: ten ticks, one list call each, not one Kubernetes write.
    for _ in 0..10 {
        fleet.tick().await;
    }
    assert_eq!(fleet.dcs_calls(), (lists + 10, 0));
    let steady = fleet.seen();
    assert_eq!(
        steady.status_patches, start.status_patches,
        "no status churn"
    );
    assert_eq!(
        steady.secret_creates + steady.secret_patches,
        N,
        "no Secret churn"
    );

    // One change in DCS: exactly one status patch and one Secret patch.
    let mut set = serde_json::Map::new();
    set.insert("ip".into(), json!("10.9.9.9"));
    assert!(
        fleet
            .sim
            .state()
            .update_instance(PROJECT, &instance_id(7), set)
    );
    fleet.tick().await;
    let after = fleet.seen();
    assert_eq!(after.status_patches, steady.status_patches + 1);
    assert_eq!(after.secret_patches, steady.secret_patches + 1);
    assert_eq!(fleet.dcs_calls(), (lists + 11, 0));
    let api = fleet.api.lock().unwrap();
    assert_eq!(api.statuses["cache-7"]["ip"], "10.9.9.9");
}

#[tokio::test]
async fn a_new_fault_costs_one_show_instance_and_a_missing_instance_one_more() {
    let mut fleet = fleet(5, true).await;
    fleet.reconcile_all().await;
    fleet.drain_requests().await;
    let (lists, _) = fleet.dcs_calls();
    let mut set = serde_json::Map::new();
    set.insert("status".into(), json!("ERROR"));
    set.insert("error_code".into(), json!("dcs.03.0017"));
    fleet
        .sim
        .state()
        .update_instance(PROJECT, &instance_id(2), set);
    assert!(fleet.sim.state().delete_instance(PROJECT, &instance_id(3)));
    fleet.tick().await;
    // The list says ERROR without a code, and lacks instance 3: one ShowInstance each.
    assert_eq!(fleet.dcs_calls(), (lists + 1, 2));
    {
        let api = fleet.api.lock().unwrap();
        assert_eq!(api.statuses["cache-2"]["errorCode"], "dcs.03.0017");
        let ready = |name: &str| {
            api.statuses[name]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()["reason"]
                .clone()
        };
        assert_eq!(ready("cache-2"), "Error");
        assert_eq!(ready("cache-3"), "InstanceNotFound");
    }
    // The same fault on the next ticks is explained already: no more ShowInstance for it.
    let before = fleet.seen();
    fleet.tick().await;
    fleet.tick().await;
    let (after, shows) = fleet.dcs_calls();
    assert_eq!(after, lists + 3);
    assert_eq!(
        fleet.seen().status_patches,
        before.status_patches,
        "no churn"
    );
    // Instance 3 is still missing: its 404 is re-checked at the poll interval only.
    assert!(shows <= 4, "{shows}");
}

#[tokio::test]
async fn batching_is_n_times_cheaper_than_the_per_object_baseline() {
    const N: usize = 40;
    let mut batched = fleet(N, true).await;
    batched.reconcile_all().await;
    batched.drain_requests().await;
    let mut baseline = fleet(N, false).await;
    baseline.reconcile_all().await;
    assert_eq!(ready_count(&baseline), N);
    let (b0, s0) = (batched.dcs_calls(), baseline.dcs_calls());
    for _ in 0..5 {
        batched.tick().await;
        baseline.tick().await;
    }
    let batched_calls = batched.dcs_calls().0 - b0.0 + batched.dcs_calls().1 - b0.1;
    let baseline_calls = baseline.dcs_calls().1 - s0.1;
    assert_eq!(batched_calls, 5, "one list per tick");
    assert_eq!(
        baseline_calls,
        5 * N as u64,
        "one ShowInstance per object per tick"
    );
    // Neither writes anything while nothing changes.
    assert_eq!(baseline.seen().status_patches, N);
    assert_eq!(batched.seen().status_patches, N);
}
