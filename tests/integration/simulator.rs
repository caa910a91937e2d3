//! The DCS simulator over real loopback HTTP, driven by the operator's own client.

use std::time::Duration;

use chrono::TimeDelta;
use dcs_operator::dcs::sim::{Counters, Fault, FaultKind, SimConfig, SimInstance};
use dcs_operator::dcs::{ClientConfig, Credentials, DcsError};
use serde_json::{Value, json};

use crate::sim_support::{Harness, PROJECT, code, example_instances, object, start_with};

const OTHER_PROJECT: &str = "fedcba9876543210fedcba9876543210";
const TOKEN: &str = "MIIsimulated-iam-token";

/// 25 instances in another project, ids sorted by number; #7 failed, odd ones tagged dev.
fn many_instances() -> Vec<SimInstance> {
    (0..25)
        .map(|n| {
            let fields = json!({
                "instance_id": format!("00000000-0000-4000-8000-{n:012}"),
                "name": format!("cache-{n:02}"),
                "status": if n == 7 { "CREATEFAILED" } else { "RUNNING" },
                "ip": format!("10.1.0.{n}"),
                "port": 6379,
                "capacity": 2,
                "resource_spec_code": "redis.single.xu1.large.2",
                "available_zones": ["az1"],
                "tags": [{"key": "env", "value": if n % 2 == 1 { "dev" } else { "prod" }}],
            });
            SimInstance::new(OTHER_PROJECT, object(fields), vec![])
        })
        .collect()
}

async fn start() -> Harness {
    let mut instances = example_instances();
    instances.extend(many_instances());
    let config = SimConfig {
        auth_token: Some(TOKEN.into()),
        instances,
        ..SimConfig::with_default_keys()
    };
    start_with(config, ClientConfig::default()).await
}

const HA: &str = "8b2e4d6f-1a3c-4b5d-8e7f-9a0b1c2d3e4f";
const FAILED: &str = "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
const CREATING: &str = "5e6f7a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5b";

#[tokio::test]
async fn show_instance_v1_and_v2_field_sets() {
    let h = start().await;
    let shown = h
        .client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, HA)
        .await
        .unwrap();
    let instance = shown.value;
    assert!(shown.request_id.is_some());
    assert_eq!(instance.instance_id.as_deref(), Some(HA));
    assert_eq!(instance.capacity, Some(8));
    assert_eq!(instance.port, Some(6379));
    assert_eq!(instance.status.as_deref(), Some("RUNNING"));
    assert_eq!(instance.spec_code(), Some("redis.ha.xu1.large.r2.8"));
    assert_eq!(instance.available_zones().len(), 2);

    let v1 = h
        .get(&format!("/v1.0/{PROJECT}/instances/{HA}"), &[])
        .await
        .unwrap();
    assert_eq!(
        v1.get("error_code"),
        Some(&Value::Null),
        "v1 sends error_code: null"
    );
    assert_eq!(v1["resource_spec_code"], "redis.ha.xu1.large.r2.8");
    let failed = h
        .get(&format!("/v1.0/{PROJECT}/instances/{FAILED}"), &[])
        .await
        .unwrap();
    assert_eq!(failed["error_code"], "dcs.04.0002");

    let v2 = h
        .get(&format!("/v2/{PROJECT}/instances/{FAILED}"), &[])
        .await
        .unwrap();
    assert!(v2.get("error_code").is_none());
    assert!(v2.get("resource_spec_code").is_none());
    assert_eq!(v2["spec_code"], "redis.single.xu1.large.2");
    assert_eq!(
        v2["available_zones"],
        json!(["d539378ec1314c85b76fefa3f7071458"])
    );
    assert_eq!(v2["status"], "CREATEFAILED");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn list_paging_v2_v1_and_the_client() {
    let h = start().await;
    let path = format!("/v2/{OTHER_PROJECT}/instances");
    let mut all = Vec::new();
    for (offset, expected) in [("0", 10), ("10", 10), ("20", 5)] {
        let (total, ids) = h
            .ids(
                &path,
                &[
                    ("include_failure", "true"),
                    ("limit", "10"),
                    ("offset", offset),
                ],
            )
            .await;
        assert_eq!((total, ids.len()), (25, expected));
        all.extend(ids);
    }
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(all, sorted, "stable order by instance_id, no repeats");
    // Default v2 limit is 10, and failed creations are left out by default.
    let (total, ids) = h.ids(&path, &[]).await;
    assert_eq!((total, ids.len()), (24, 10));

    let listed = h
        .client
        .list_instances(&h.sim.endpoint(), &h.creds, OTHER_PROJECT, 10)
        .await
        .unwrap()
        .value;
    assert_eq!(listed.len(), 25);
    let item = &listed[3];
    assert_eq!(item.spec_code(), Some("redis.single.xu1.large.2"));
    assert!(item.error_code.is_none() && item.available_zones.is_none());

    let v1 = format!("/v1.0/{OTHER_PROJECT}/instances");
    let (total, ids) = h
        .ids(
            &v1,
            &[("start", "3"), ("limit", "10"), ("include_failure", "true")],
        )
        .await;
    assert_eq!((total, ids.len()), (25, 5));
    assert_eq!(ids[0], all[20]);
    let (total, ids) = h.ids(&v1, &[]).await;
    assert_eq!((total, ids.len()), (24, 24));
    let page = h.get(&v1, &[("id", &all[0])]).await.unwrap();
    assert_eq!(page["instances"][0].get("error_code"), Some(&Value::Null));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn list_filters_agree_with_show_instance() {
    let h = start().await;
    let v2 = format!("/v2/{PROJECT}/instances");
    let v1 = format!("/v1.0/{PROJECT}/instances");
    let ha = h
        .get(&format!("/v2/{PROJECT}/instances/{HA}"), &[])
        .await
        .unwrap();
    let (_, ids) = h.ids(&v2, &[("instance_id", HA)]).await;
    assert_eq!(ids, vec![HA]);
    let item = &h.get(&v2, &[("instance_id", HA)]).await.unwrap()["instances"][0];
    for key in ["ip", "port", "status", "capacity", "spec_code", "name"] {
        assert_eq!(item[key], ha[key], "{key}");
    }
    assert!(item.get("available_zones").is_none());
    assert_eq!(h.ids(&v1, &[("id", HA)]).await.1, vec![HA]);

    assert_eq!(
        h.ids(&v2, &[("name", "dcs-orders"), ("limit", "100")])
            .await
            .1,
        vec![HA]
    );
    assert!(
        h.ids(&v2, &[("name", "dcs-orders"), ("name_equal", "true")])
            .await
            .1
            .is_empty()
    );
    assert_eq!(
        h.ids(&v2, &[("name", "dcs-orders-ha"), ("name_equal", "true")])
            .await
            .1,
        vec![HA]
    );
    assert_eq!(
        h.ids(
            &v1,
            &[("name", "dcs-orders-ha"), ("isExactMatchName", "true")]
        )
        .await
        .1,
        vec![HA]
    );
    assert_eq!(h.ids(&v1, &[("name", "orders")]).await.1, vec![HA]);

    let (cluster_total, cluster) = h.ids(&v2, &[("ip", "192.168.0.32")]).await;
    assert_eq!(cluster_total, 1);
    let shown = h
        .get(&format!("/v1.0/{PROJECT}/instances/{}", cluster[0]), &[])
        .await
        .unwrap();
    assert!(shown["ip"].as_str().unwrap().contains(','));
    assert_eq!(h.ids(&v1, &[("ip", "192.168.0.20")]).await.1, vec![HA]);

    assert_eq!(
        h.ids(&v2, &[("status", "CREATING")]).await.1,
        vec![CREATING]
    );
    assert_eq!(
        h.ids(&v1, &[("status", "CREATEFAILED")]).await.1,
        vec![FAILED]
    );
    assert_eq!(
        h.ids(&v2, &[("tags", "env=prod,team=orders")]).await.1,
        vec![HA]
    );
    assert_eq!(h.ids(&v1, &[("tags", "env=prod")]).await.0, 2);

    let (without, _) = h.ids(&v2, &[]).await;
    let (with, ids) = h.ids(&v2, &[("include_failure", "true")]).await;
    assert_eq!((without, with), (6, 7));
    assert!(ids.contains(&FAILED.to_string()));
    assert!(!h.ids(&v1, &[]).await.1.contains(&FAILED.to_string()));
    assert!(
        h.ids(&v1, &[("include_failure", "true")])
            .await
            .1
            .contains(&FAILED.to_string())
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn error_answers() {
    let h = start().await;
    let missing = h
        .client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, "no-such-instance")
        .await
        .unwrap_err();
    assert!(missing.is_instance_not_found(), "{missing}");
    assert!(missing.request_id().is_some());

    let unknown = h
        .get(&format!("/v3/{PROJECT}/instances"), &[])
        .await
        .unwrap_err();
    assert_eq!(unknown.reason(), "EndpointNotFound");
    assert_eq!(code(&unknown), Some("APIGW.0101"));
    assert!(unknown.api().unwrap().request_id.is_some());

    let bad_project = h
        .client
        .show_instance(&h.sim.endpoint(), &h.creds, "NOT-A-PROJECT", HA)
        .await
        .unwrap_err();
    assert!(matches!(bad_project, DcsError::Client(ref api) if api.status == 400));
    assert_eq!(code(&bad_project), Some("111400002"));

    for query in [[("limit", "0")], [("limit", "1001")], [("offset", "-3")]] {
        let bad = h
            .get(&format!("/v2/{PROJECT}/instances"), &query)
            .await
            .unwrap_err();
        assert_eq!(code(&bad), Some("DCS.4800"), "{query:?}");
        assert!(
            bad.api()
                .unwrap()
                .error_msg
                .as_deref()
                .unwrap()
                .starts_with("Invalid parameter")
        );
    }
    let bad_start = h
        .get(&format!("/v1.0/{PROJECT}/instances"), &[("start", "0")])
        .await
        .unwrap_err();
    assert_eq!(code(&bad_start), Some("DCS.4800"));

    // No credentials at all.
    let raw = reqwest::get(format!(
        "{}/v1.0/{PROJECT}/instances/{HA}",
        h.sim.base_url()
    ))
    .await
    .unwrap();
    assert_eq!(raw.status(), 401);
    assert!(raw.headers().contains_key("x-request-id"));
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error_code"], "APIG.0301");
    assert!(body["request_id"].is_string());
    h.sim.shutdown().await;
}

#[tokio::test]
async fn token_authentication() {
    let h = start().await;
    let good = Credentials::Token(TOKEN.to_string().into());
    let shown = h
        .client
        .show_instance(&h.sim.endpoint(), &good, PROJECT, HA)
        .await
        .unwrap();
    assert_eq!(shown.value.instance_id.as_deref(), Some(HA));
    let bad = Credentials::Token("wrong".to_string().into());
    let refused = h
        .client
        .show_instance(&h.sim.endpoint(), &bad, PROJECT, HA)
        .await
        .unwrap_err();
    assert!(matches!(refused, DcsError::Unauthorized(_)));
    assert_eq!(code(&refused), Some("APIG.0301"));
    assert!(
        refused
            .api()
            .unwrap()
            .error_msg
            .as_deref()
            .unwrap()
            .contains("decrypt token fail")
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_locks_the_access_key_for_five_minutes() {
    let h = start().await;
    let endpoint = h.sim.endpoint();
    let wrong = Credentials::access_key(
        SimConfig::DEFAULT_ACCESS_KEY,
        "not-the-secret".to_string(),
        None,
    );
    for _ in 0..5 {
        let refused = h
            .client
            .show_instance(&endpoint, &wrong, PROJECT, HA)
            .await
            .unwrap_err();
        assert!(matches!(refused, DcsError::Unauthorized(_)));
        assert_eq!(code(&refused), Some("APIG.0301"));
        assert!(
            refused
                .api()
                .unwrap()
                .error_msg
                .as_deref()
                .unwrap()
                .contains("verify aksk signature fail")
        );
    }
    let locked = h
        .client
        .show_instance(&endpoint, &h.creds, PROJECT, HA)
        .await
        .unwrap_err();
    assert_eq!(code(&locked), Some("APIG.0301"));
    assert!(
        locked
            .api()
            .unwrap()
            .error_msg
            .as_deref()
            .unwrap()
            .contains("locked for 5 minutes"),
        "{locked}"
    );
    h.clock.advance(TimeDelta::minutes(4));
    assert!(
        h.client
            .show_instance(&endpoint, &h.creds, PROJECT, HA)
            .await
            .is_err()
    );
    h.clock.advance(TimeDelta::minutes(1));
    h.client
        .show_instance(&endpoint, &h.creds, PROJECT, HA)
        .await
        .unwrap();
    let counters = h.sim.state().counters();
    assert_eq!(counters.lockouts, 1);
    assert_eq!(counters.auth_failures, 7);
    assert_eq!(counters.responses_for(401), 7);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_throttles_with_retry_after() {
    let h = start().await;
    h.sim.state().set_rate_limit(Some(2));
    let endpoint = h.sim.endpoint();
    // The manual clock does not move, so every request falls in one window.
    h.client
        .show_instance(&endpoint, &h.creds, PROJECT, HA)
        .await
        .unwrap();
    h.client
        .show_instance(&endpoint, &h.creds, PROJECT, HA)
        .await
        .unwrap();
    let throttled = h
        .client
        .show_instance(&endpoint, &h.creds, PROJECT, HA)
        .await
        .unwrap_err();
    match &throttled {
        DcsError::Throttled { retry_after, api } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(1)));
            assert_eq!(api.error_code.as_deref(), Some("APIG.0308"));
            assert!(
                api.error_msg
                    .as_deref()
                    .unwrap()
                    .contains("limit 2, time 1 second")
            );
        }
        other => panic!("expected throttling, got {other}"),
    }
    // The token is throttled on its own budget.
    let token = Credentials::Token(TOKEN.to_string().into());
    h.client
        .show_instance(&endpoint, &token, PROJECT, HA)
        .await
        .unwrap();
    h.clock.advance(TimeDelta::seconds(1));
    h.client
        .show_instance(&endpoint, &h.creds, PROJECT, HA)
        .await
        .unwrap();
    assert_eq!(h.sim.state().counters().throttled, 1);
    h.sim.state().set_rate_limit(None);
    for _ in 0..5 {
        h.client
            .show_instance(&endpoint, &h.creds, PROJECT, HA)
            .await
            .unwrap();
    }
    h.sim.shutdown().await;
}

#[tokio::test]
async fn each_fault_kind_maps_to_its_error_class() {
    let config = SimConfig {
        instances: example_instances(),
        ..SimConfig::with_default_keys()
    };
    let client_config = ClientConfig {
        timeout: Duration::from_millis(1000),
        ..ClientConfig::default()
    };
    let h = start_with(config, client_config).await;
    let endpoint = h.sim.endpoint();
    let state = h.sim.state();
    let show = || h.client.show_instance(&endpoint, &h.creds, PROJECT, HA);

    state.inject_fault(Fault::times(
        FaultKind::Status {
            status: 503,
            error_code: "DCS.5000".into(),
            error_msg: "Internal service error.".into(),
            retry_after: Some(4),
        },
        1,
    ));
    let server = show().await.unwrap_err();
    assert!(
        matches!(server, DcsError::Server(ref api) if api.status == 503),
        "{server}"
    );
    assert_eq!(code(&server), Some("DCS.5000"));
    show().await.unwrap();

    state.inject_fault(Fault::times(FaultKind::Malformed, 1));
    assert!(matches!(show().await.unwrap_err(), DcsError::Decode { .. }));
    state.inject_fault(Fault::times(FaultKind::Truncated, 1));
    assert!(matches!(show().await.unwrap_err(), DcsError::Decode { .. }));
    state.inject_fault(Fault::times(FaultKind::Reset, 1));
    let reset = show().await.unwrap_err();
    assert!(
        matches!(reset, DcsError::Transport { timeout: false, .. }),
        "{reset}"
    );
    state.inject_fault(Fault::times(FaultKind::Latency { ms: 3000 }, 1));
    let slow = show().await.unwrap_err();
    assert!(
        matches!(slow, DcsError::Transport { timeout: true, .. }),
        "{slow}"
    );
    state.inject_fault(Fault::times(FaultKind::Latency { ms: 20 }, 1));
    show().await.unwrap();

    // Route-scoped: a list fault leaves ShowInstance alone. A 429 fault carries Retry-After.
    state.inject_fault(
        Fault::times(
            FaultKind::Status {
                status: 429,
                error_code: "APIG.0308".into(),
                error_msg: "throttled".into(),
                retry_after: Some(3),
            },
            1,
        )
        .on_route("list_v2"),
    );
    show().await.unwrap();
    let listed = h
        .client
        .list_instances(&endpoint, &h.creds, PROJECT, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(listed, DcsError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(3))
    );

    // Faults come before authentication: a faulted bad signature is not an auth failure.
    state.inject_fault(Fault::times(FaultKind::Malformed, 1));
    let wrong = Credentials::access_key(SimConfig::DEFAULT_ACCESS_KEY, "nope".to_string(), None);
    assert!(matches!(
        h.client
            .show_instance(&endpoint, &wrong, PROJECT, HA)
            .await
            .unwrap_err(),
        DcsError::Decode { .. }
    ));
    let counters = state.counters();
    assert_eq!(counters.auth_failures, 0);
    assert_eq!(counters.faults_injected, 8);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn scripted_transition_follows_the_manual_clock() {
    let h = start().await;
    let endpoint = h.sim.endpoint();
    let status = || async {
        h.client
            .show_instance(&endpoint, &h.creds, PROJECT, CREATING)
            .await
            .unwrap()
            .value
    };
    let before = status().await;
    assert_eq!(before.status.as_deref(), Some("CREATING"));
    h.clock.advance(TimeDelta::seconds(9));
    assert_eq!(status().await.status.as_deref(), Some("CREATING"));
    h.clock.advance(TimeDelta::seconds(1));
    let after = status().await;
    assert_eq!(after.status.as_deref(), Some("RUNNING"));
    assert_eq!(after.ip.as_deref(), Some("192.168.0.40"));
    // A runtime update wins over a transition that already applied.
    let set = object(json!({"status": "RESTARTING"}));
    assert!(h.sim.state().update_instance(PROJECT, CREATING, set));
    assert_eq!(status().await.status.as_deref(), Some("RESTARTING"));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn counters_and_admin_api_over_http() {
    let h = start().await;
    let base = h.sim.base_url();
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/_sim/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    h.client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, HA)
        .await
        .unwrap();
    let _ = h
        .get(&format!("/v2/{PROJECT}/instances"), &[])
        .await
        .unwrap();
    let _ = h.get("/nowhere", &[]).await.unwrap_err();
    let counters: Counters = http
        .get(format!("{base}/_sim/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters.requests_for("show_v1"), 1);
    assert_eq!(counters.requests_for("list_v2"), 1);
    assert_eq!(counters.requests_for("unknown"), 1);
    assert_eq!(counters.requests_for("show_v2"), 0);
    assert_eq!(
        (counters.responses_for(200), counters.responses_for(404)),
        (2, 1)
    );
    assert_eq!(
        http.delete(format!("{base}/_sim/counters"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(h.sim.state().counters().requests_for("show_v1"), 0);

    // Upsert, patch, read back through the DCS API, delete.
    let entry = json!({"project_id": PROJECT, "instance_id": "added-1", "name": "added", "status": "CREATING",
        "transitions": [{"after": "30s", "set": {"status": "RUNNING"}}]});
    let posted = http
        .post(format!("{base}/_sim/instances"))
        .json(&entry)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let bad = http
        .post(format!("{base}/_sim/instances"))
        .json(&json!({"instance_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("project_id"));
    let patched = http
        .patch(format!("{base}/_sim/instances/{PROJECT}/added-1"))
        .json(&json!({"port": 6380}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let missing = http
        .patch(format!("{base}/_sim/instances/{PROJECT}/nope"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let shown = h
        .client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, "added-1")
        .await
        .unwrap()
        .value;
    assert_eq!(
        (shown.port, shown.status.as_deref()),
        (Some(6380), Some("CREATING"))
    );
    h.clock.advance(TimeDelta::seconds(30));
    let all: Value = http
        .get(format!("{base}/_sim/instances"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let added = all["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["instance_id"] == "added-1")
        .unwrap();
    assert_eq!(
        (added["status"].clone(), added["project_id"].clone()),
        (json!("RUNNING"), json!(PROJECT))
    );
    assert_eq!(all["instances"].as_array().unwrap().len(), 7 + 25 + 1);
    let deleted = http
        .delete(format!("{base}/_sim/instances/{PROJECT}/added-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(
        h.client
            .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, "added-1")
            .await
            .unwrap_err()
            .is_instance_not_found()
    );

    // Faults and the throttle through the admin API.
    let fault = http
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"kind": "status", "status": 502, "error_code": "APIG.0201", "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 200);
    let bad_fault = http
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"kind": "latency", "ms": 5, "fraction": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_fault.status(), 400);
    let failed = h
        .client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, HA)
        .await
        .unwrap_err();
    assert!(
        matches!(failed, DcsError::Server(ref api) if api.status == 502 && api.request_id.is_some())
    );
    http.post(format!("{base}/_sim/faults"))
        .json(&json!({"kind": "malformed"}))
        .send()
        .await
        .unwrap();
    assert!(
        h.client
            .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, HA)
            .await
            .is_err()
    );
    assert_eq!(
        http.delete(format!("{base}/_sim/faults"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    h.client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, HA)
        .await
        .unwrap();

    let limited = http
        .put(format!("{base}/_sim/rate-limit"))
        .json(&json!({"per_second": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 200);
    assert!(matches!(
        h.client
            .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, HA)
            .await
            .unwrap_err(),
        DcsError::Throttled { .. }
    ));
    http.put(format!("{base}/_sim/rate-limit"))
        .json(&json!({"per_second": null}))
        .send()
        .await
        .unwrap();
    h.client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, HA)
        .await
        .unwrap();
    h.sim.shutdown().await;
}
