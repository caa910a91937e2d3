//! The simulator's write side over real loopback HTTP: create, resize, modify,
//! passwords, delete, tags, flavours, zones, quota, their refusals, the clock-driven
//! states, the write faults and the list lag. Bodies use exactly the field names and
//! JSON types of the SDK models (huaweicloudsdkdcs 3.1.219).

use std::time::Duration;

use chrono::TimeDelta;
use dcs_operator::dcs::ClientConfig;
use dcs_operator::dcs::sim::{Fault, FaultKind, SimConfig, WriteConfig};
use serde_json::{Value, json};

use crate::sim_support::{Harness, PROJECT, Raw, example_instances, object, start_with};

const VPC: &str = "3d5c1f1e-6a3b-4c2d-9e8f-0a1b2c3d4e5f";
const SUBNET: &str = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d";
const UID: &str = "2b7e9f3a-1c4d-4e5f-8a9b-0c1d2e3f4a5b";
const PASSWORD: &str = "Sim-Passw0rd";
/// In examples/sim-instances.yaml.
const FAILED: &str = "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
const SCRIPTED: &str = "5e6f7a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5b";

async fn start_empty(writes: WriteConfig) -> Harness {
    let config = SimConfig {
        writes,
        ..SimConfig::with_default_keys()
    };
    start_with(config, ClientConfig::default()).await
}

async fn start_examples() -> Harness {
    let config = SimConfig {
        instances: example_instances(),
        ..SimConfig::with_default_keys()
    };
    start_with(config, ClientConfig::default()).await
}

/// A CreateInstanceBody as the operator will send it: the SDK's field names and types.
fn create_body(name: &str) -> Value {
    json!({
        "name": name,
        "engine": "Redis",
        "engine_version": "6.0",
        "capacity": 2.0,
        "spec_code": "redis.ha.xu1.large.r2.2",
        "az_codes": ["cn-north-4a", "cn-north-4b"],
        "vpc_id": VPC,
        "subnet_id": SUBNET,
        "port": 6379,
        "password": PASSWORD,
        "no_password_access": false,
        "description": "made by a test",
        "maintain_begin": "22:00:00",
        "maintain_end": "02:00:00",
        "enterprise_project_id": "0",
        "tags": [
            {"key": "dcs-operator-uid", "value": UID},
            {"key": "env", "value": "test"},
        ],
    })
}

fn with(mut body: Value, patch: Value) -> Value {
    if let (Some(target), Value::Object(patch)) = (body.as_object_mut(), patch) {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(&key);
            } else {
                target.insert(key, value);
            }
        }
    }
    body
}

fn instances_path() -> String {
    format!("/v2/{PROJECT}/instances")
}

fn instance_path(id: &str) -> String {
    format!("/v2/{PROJECT}/instances/{id}")
}

impl Harness {
    async fn create(&self, body: &Value) -> Raw {
        self.send("POST", &instances_path(), &[], Some(body))
            .await
            .expect("an answer")
    }

    /// Creates and returns the new instance's id.
    async fn create_ok(&self, name: &str) -> String {
        let answer = self.create(&create_body(name)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.body.unwrap()["instances"][0]["instance_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn show(&self, id: &str) -> Raw {
        self.send("GET", &instance_path(id), &[], None)
            .await
            .expect("an answer")
    }

    async fn status_of(&self, id: &str) -> String {
        let shown = self.show(id).await;
        assert_eq!(shown.status, 200, "{}", shown.text);
        shown.body.unwrap()["status"].as_str().unwrap().to_string()
    }

    async fn write(&self, method: &str, path: &str, body: Option<&Value>) -> Raw {
        self.send(method, path, &[], body).await.expect("an answer")
    }

    async fn listed(&self, query: &[(&str, &str)]) -> Vec<String> {
        let page = self
            .send("GET", &instances_path(), query, None)
            .await
            .unwrap();
        assert_eq!(page.status, 200, "{}", page.text);
        page.body.unwrap()["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["instance_id"].as_str().unwrap().to_string())
            .collect()
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(TimeDelta::seconds(seconds));
    }
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .map(|map| map.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn sim_create_runs_after_the_delay_and_is_found_by_tag_and_name() {
    let h = start_empty(WriteConfig::default()).await;
    let answer = h.create(&create_body("orders-cache")).await;
    assert_eq!(answer.status, 200);
    let body = answer.body.unwrap();
    assert_eq!(keys(&body), vec!["instances"], "pay-per-use: no order_id");
    assert_eq!(
        keys(&body["instances"][0]),
        vec!["instance_id", "instance_name"]
    );
    assert_eq!(body["instances"][0]["instance_name"], "orders-cache");
    let id = body["instances"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();

    let creating = h.show(&id).await.body.unwrap();
    assert_eq!(creating["status"], "CREATING");
    assert!(creating.get("ip").is_none() && creating.get("domain_name").is_none());
    assert_eq!(creating["capacity"], 2);
    assert_eq!(creating["spec_code"], "redis.ha.xu1.large.r2.2");
    assert_eq!(creating["az_codes"], json!(["cn-north-4a", "cn-north-4b"]));
    assert_eq!(creating["no_password_access"], "false");
    assert!(
        creating.get("password").is_none(),
        "the password is never shown"
    );
    h.advance(9);
    assert_eq!(h.status_of(&id).await, "CREATING");
    h.advance(1);
    let running = h.show(&id).await.body.unwrap();
    assert_eq!(running["status"], "RUNNING");
    assert!(running["ip"].as_str().unwrap().starts_with("192.168."));
    assert_eq!(running["port"], 6379);
    assert_eq!(
        running["domain_name"],
        format!("redis-{id}.dcs.huaweicloud.com")
    );
    assert_eq!(
        running["tags"][0],
        json!({"key": "dcs-operator-uid", "value": UID})
    );

    // The operator's lookup: by ownership tag, and by exact name, failures included.
    let owner = format!("dcs-operator-uid={UID}");
    assert_eq!(
        h.listed(&[("tags", &owner), ("include_failure", "true")])
            .await,
        vec![id.clone()]
    );
    assert!(
        h.listed(&[("tags", "dcs-operator-uid=someone-else")])
            .await
            .is_empty()
    );
    assert_eq!(
        h.listed(&[
            ("name", "orders-cache"),
            ("name_equal", "true"),
            ("include_failure", "true")
        ])
        .await,
        vec![id.clone()]
    );
    assert!(
        h.listed(&[("name", "orders"), ("name_equal", "true")])
            .await
            .is_empty()
    );
    assert_eq!(h.listed(&[("name", "orders")]).await, vec![id.clone()]);
    // The operator's own client reads it too.
    let shown = h
        .client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, &id)
        .await
        .unwrap()
        .value;
    assert_eq!(shown.port, Some(6379));

    // Create is not idempotent: a second identical POST makes a second instance.
    let second = h.create_ok("orders-cache").await;
    assert_ne!(second, id);
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.requests_for("create"),
            counters.applied_for("create")
        ),
        (2, 2)
    );
    let view = h.sim.state().write_view();
    assert_eq!(view.len(), 2);
    let pending = view
        .iter()
        .find(|v| v["instance_id"] == second.as_str())
        .unwrap();
    assert_eq!(pending["status"], "CREATING");
    assert_eq!(pending["pending"][0]["in_seconds"], 10.0);
    assert_eq!(pending["pending"][0]["set"]["status"], "RUNNING");
    assert_eq!(pending["tags"][1], json!({"key": "env", "value": "test"}));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_create_refusals_carry_the_documented_codes() {
    let h = start_empty(WriteConfig::default()).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": null}), "DCS.4010"),
        (json!({"name": "ab"}), "DCS.4010"),
        (json!({"name": "9lives"}), "DCS.4010"),
        (json!({"engine": "MongoDB"}), "DCS.4007"),
        (json!({"engine_version": "3.0"}), "DCS.4008"),
        (json!({"engine_version": null}), "DCS.4008"),
        (json!({"spec_code": "redis.ha.xu9.huge.2"}), "DCS.4927"),
        (json!({"spec_code": "memcached.ha.xu1.large.2"}), "DCS.4022"),
        (json!({"capacity": 4}), "DCS.4012"),
        (json!({"az_codes": []}), "DCS.4042"),
        (
            json!({"az_codes": ["d539378ec1314c85b76fefa3f7071458"]}),
            "DCS.4042",
        ),
        (json!({"az_codes": ["cn-north-4g"]}), "DCS.4054"),
        (
            json!({"az_codes": ["cn-north-4a", "cn-north-4b", "cn-north-4c"]}),
            "DCS.4933",
        ),
        (json!({"vpc_id": "vpc-123"}), "DCS.4013"),
        (json!({"subnet_id": null}), "DCS.4016"),
        (json!({"password": null}), "DCS.4845"),
        (json!({"password": "password"}), "DCS.4019"),
        (json!({"password": "Short1!"}), "DCS.4019"),
        (json!({"no_password_access": true}), "DCS.4849"),
        (json!({"no_password_access": "false"}), "DCS.4843"),
        (json!({"description": "d".repeat(1025)}), "DCS.4011"),
        (json!({"maintain_end": null}), "DCS.4106"),
        (
            json!({"maintain_begin": "01:00:00", "maintain_end": "05:00:00"}),
            "DCS.4106",
        ),
        (
            json!({"tags": [{"key": "owner/team", "value": "x"}]}),
            "DCS.4800",
        ),
        (
            json!({"tags": [{"key": "k", "value": "v".repeat(44)}]}),
            "DCS.4800",
        ),
        (json!({"tags": [{"key": "k"}]}), "DCS.4800"),
        (json!({"instance_num": 2}), "DCS.4800"),
        (
            json!({"bss_param": {"charging_mode": "prePaid", "period_type": "month", "period_num": 1}}),
            "DCS.4800",
        ),
        (json!({"port": 0}), "DCS.4800"),
        (json!({"security_group_id": VPC}), "DCS.4014"),
        (
            json!({"instance_backup_policy": {"backup_type": "auto"}}),
            "DCS.4072",
        ),
        (json!({"unknown": true}), "DCS.4800"),
    ];
    let total = cases.len() as u64;
    for (patch, code) in cases {
        let answer = h
            .create(&with(create_body("refused-cache"), patch.clone()))
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, Some(code)),
            "{patch}: {}",
            answer.text
        );
        assert!(answer.body.unwrap()["error_msg"].is_string());
    }
    // Bodies that are not a JSON object.
    for (bytes, code) in [
        (b"".to_vec(), "DCS.4004"),
        (b"{not json".to_vec(), "DCS.4005"),
        (b"[]".to_vec(), "DCS.4005"),
    ] {
        let answer = h
            .send_bytes("POST", &instances_path(), &[], bytes)
            .await
            .unwrap();
        assert_eq!(
            (answer.status, answer.code()),
            (400, Some(code)),
            "{}",
            answer.text
        );
    }
    // Over 64 KiB is refused before it is read.
    let huge = with(
        create_body("huge-cache"),
        json!({"description": "x".repeat(70 * 1024)}),
    );
    let answer = h.create(&huge).await;
    assert_eq!((answer.status, answer.code()), (413, Some("DCS.4800")));
    let counters = h.sim.state().counters();
    assert_eq!(counters.requests_for("create"), total + 4);
    assert_eq!(counters.applied_for("create"), 0, "nothing was created");
    assert!(h.listed(&[("include_failure", "true")]).await.is_empty());
    // Pay-per-use spelled out is fine, as is password-free access.
    let post_paid = with(
        create_body("free-cache"),
        json!({"bss_param": {"charging_mode": "postPaid"}, "password": null, "no_password_access": true}),
    );
    assert_eq!(h.create(&post_paid).await.status, 200);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_quota_refuses_beyond_the_limits_and_reports_usage() {
    let h = start_empty(WriteConfig {
        instance_quota: 2,
        memory_quota_gb: 6,
        ..WriteConfig::default()
    })
    .await;
    h.create_ok("first-cache").await;
    let big = with(
        create_body("big-cache"),
        json!({"spec_code": "redis.ha.xu1.large.r2.8", "capacity": 8}),
    );
    let answer = h.create(&big).await;
    assert_eq!(answer.code(), Some("DCS.4036"), "{}", answer.text);
    h.create_ok("second-cache").await;
    let answer = h.create(&create_body("third-cache")).await;
    assert_eq!((answer.status, answer.code()), (400, Some("DCS.4035")));
    let quota = h
        .send("GET", &format!("/v2/{PROJECT}/quota"), &[], None)
        .await
        .unwrap();
    assert_eq!(quota.status, 200);
    let resources = quota.body.unwrap()["quotas"]["resources"].clone();
    assert_eq!(resources[0]["type"], "instance");
    assert_eq!(
        (resources[0]["quota"].clone(), resources[0]["used"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(resources[1]["type"], "ram");
    assert_eq!(resources[1]["unit"], "GB");
    assert_eq!(
        (resources[1]["quota"].clone(), resources[1]["used"].clone()),
        (json!(6), json!(4))
    );
    for resource in resources.as_array().unwrap() {
        for key in ["type", "quota", "used", "min", "max"] {
            assert!(resource.get(key).is_some(), "{key}");
        }
    }
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_resize_extends_refuses_busy_writes_then_runs_at_the_new_flavour() {
    let h = start_empty(WriteConfig::default()).await;
    let id = h.create_ok("resized-cache").await;
    let resize_path = format!("{}/resize", instance_path(&id));
    // ResizeInstanceBody: new_capacity is an int in the SDK.
    let grow = json!({"spec_code": "redis.ha.xu1.large.r2.4", "new_capacity": 4, "execute_immediately": true});
    let early = h.write("POST", &resize_path, Some(&grow)).await;
    assert_eq!(
        (early.status, early.code()),
        (400, Some("DCS.4118")),
        "creating"
    );
    h.advance(10);
    let accepted = h.write("POST", &resize_path, Some(&grow)).await;
    assert_eq!(accepted.status, 204, "{}", accepted.text);
    assert!(accepted.text.is_empty());
    assert_eq!(h.status_of(&id).await, "EXTENDING");

    // Busy: every write refused with the "extending" code, delete with DCS.4099.
    let again = h.write("POST", &resize_path, Some(&grow)).await;
    assert_eq!(again.code(), Some("DCS.4113"));
    let rename = h
        .write(
            "PUT",
            &instance_path(&id),
            Some(&json!({"name": "other-name"})),
        )
        .await;
    assert_eq!(rename.code(), Some("DCS.4113"));
    let reset_path = format!("{}/password/reset", instance_path(&id));
    let reset = h
        .write(
            "POST",
            &reset_path,
            Some(&json!({"new_password": "Other-Passw0rd"})),
        )
        .await;
    assert_eq!(reset.code(), Some("DCS.4113"));
    let delete = h.write("DELETE", &instance_path(&id), None).await;
    assert_eq!(delete.code(), Some("DCS.4099"));

    h.advance(29);
    assert_eq!(h.status_of(&id).await, "EXTENDING");
    h.advance(1);
    let done = h.show(&id).await.body.unwrap();
    assert_eq!(done["status"], "RUNNING");
    assert_eq!(done["capacity"], 4);
    assert_eq!(done["max_memory"], 4096);
    assert_eq!(done["spec_code"], "redis.ha.xu1.large.r2.4");
    assert_eq!(done["port"], 6379, "the address is kept");

    let refusals = [
        (
            json!({"spec_code": "redis.ha.xu1.large.r2.4", "new_capacity": 4}),
            "DCS.4103",
        ),
        (
            json!({"spec_code": "redis.ha.xu1.large.r2.8", "new_capacity": 4}),
            "DCS.4012",
        ),
        (
            json!({"spec_code": "redis.cluster.xu1.large.r2.8", "new_capacity": 8}),
            "DCS.4200",
        ),
        (
            json!({"spec_code": "redis.ha.au1.large.r2.8", "new_capacity": 8}),
            "DCS.4200",
        ),
        (
            json!({"spec_code": "memcached.ha.xu1.large.8", "new_capacity": 8}),
            "DCS.4022",
        ),
        (
            json!({"spec_code": "redis.ha.xu1.large.r3.4", "new_capacity": 4}),
            "DCS.4875",
        ),
        (json!({"spec_code": "redis.ha.xu1.large.r2.8"}), "DCS.4012"),
        (
            json!({"spec_code": "no.such.flavour", "new_capacity": 8}),
            "DCS.4927",
        ),
        (
            json!({"spec_code": "redis.ha.xu1.large.r2.8", "new_capacity": 8, "bss_param": {"is_auto_pay": "true"}}),
            "DCS.4800",
        ),
    ];
    for (body, code) in refusals {
        let answer = h.write("POST", &resize_path, Some(&body)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, Some(code)),
            "{body}: {}",
            answer.text
        );
    }
    // Shrinking works too, and a replica change with its change_type.
    let shrink = json!({"spec_code": "redis.ha.xu1.large.r2.1", "new_capacity": 1});
    assert_eq!(
        h.write("POST", &resize_path, Some(&shrink)).await.status,
        204
    );
    h.advance(30);
    let replicas = json!({"spec_code": "redis.ha.xu1.large.r3.1", "new_capacity": 1, "change_type": "createReplication", "available_zones": ["cn-north-4c"]});
    assert_eq!(
        h.write("POST", &resize_path, Some(&replicas)).await.status,
        204
    );
    h.advance(30);
    let shown = h.show(&id).await.body.unwrap();
    assert_eq!(
        (shown["capacity"].clone(), shown["replica_count"].clone()),
        (json!(1), json!(3))
    );
    let missing = h
        .write(
            "POST",
            &format!("{}/resize", instance_path("nope")),
            Some(&shrink),
        )
        .await;
    assert_eq!((missing.status, missing.code()), (404, Some("DCS.3022")));
    assert_eq!(h.sim.state().counters().applied_for("resize"), 3);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_update_instance_changes_now_or_as_a_background_task() {
    let h = start_empty(WriteConfig::default()).await;
    let id = h.create_ok("modified-cache").await;
    h.advance(10);
    // ModifyInstanceBody as Terraform splits it: name/description/window first…
    let first = json!({"name": "renamed-cache", "description": "new words", "maintain_begin": "02:00:00", "maintain_end": "06:00:00"});
    assert_eq!(
        h.write("PUT", &instance_path(&id), Some(&first))
            .await
            .status,
        204
    );
    let shown = h.show(&id).await.body.unwrap();
    assert_eq!(
        (shown["name"].clone(), shown["description"].clone()),
        (json!("renamed-cache"), json!("new words"))
    );
    assert_eq!(shown["maintain_begin"], "02:00:00");
    assert_eq!(
        h.listed(&[("name", "renamed-cache"), ("name_equal", "true")])
            .await,
        vec![id.clone()]
    );
    // …then the port alone: a background task, `task` set until it is done.
    assert_eq!(
        h.write("PUT", &instance_path(&id), Some(&json!({"port": 6380})))
            .await
            .status,
        204
    );
    let busy = h.show(&id).await.body.unwrap();
    assert_eq!(
        (
            busy["status"].clone(),
            busy["task"].clone(),
            busy["port"].clone()
        ),
        (json!("RUNNING"), json!("UpdatePort"), json!(6379))
    );
    let refused = h
        .write(
            "PUT",
            &instance_path(&id),
            Some(&json!({"description": "x"})),
        )
        .await;
    assert_eq!(refused.code(), Some("DCS.4017"));
    let delete = h.write("DELETE", &instance_path(&id), None).await;
    assert_eq!(delete.code(), Some("DCS.4099"));
    h.advance(5);
    let done = h.show(&id).await.body.unwrap();
    assert_eq!(
        (done["port"].clone(), done["task"].clone()),
        (json!(6380), Value::Null)
    );
    // …then rename_commands alone.
    let rename = json!({"rename_commands": {"command": "cmd1", "keys": "keys1", "flushdb": "fdb1", "flushall": "fall1", "hgetall": "hgall1"}});
    assert_eq!(
        h.write("PUT", &instance_path(&id), Some(&rename))
            .await
            .status,
        204
    );
    assert_eq!(h.show(&id).await.body.unwrap()["task"], "RenameCommands");
    h.advance(5);

    let refusals = [
        (json!({"engine_version": "7.0"}), "DCS.4800"),
        (json!({"vpc_id": VPC}), "DCS.4800"),
        (json!({"capacity": 8}), "DCS.4800"),
        (json!({"spec_code": "redis.ha.xu1.large.r2.8"}), "DCS.4800"),
        (json!({}), "DCS.4800"),
        (json!({"name": "no"}), "DCS.4010"),
        (json!({"port": 70000}), "DCS.4800"),
        (json!({"rename_commands": {"get": "g1"}}), "DCS.4800"),
        (json!({"maintain_begin": "02:00:00"}), "DCS.4106"),
        (json!({"security_group_id": VPC}), "DCS.4014"),
    ];
    for (body, code) in refusals {
        let answer = h.write("PUT", &instance_path(&id), Some(&body)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, Some(code)),
            "{body}: {}",
            answer.text
        );
    }
    let missing = h.write("PUT", &instance_path("nope"), Some(&first)).await;
    assert_eq!(missing.code(), Some("DCS.3022"));
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.applied_for("update"),
            counters.requests_for("update")
        ),
        (3, 15)
    );
    let view = h.sim.state().write_view();
    assert_eq!(view[0]["rename_commands"]["keys"], "keys1");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_passwords_reset_update_lock_and_password_free_mode() {
    let h = start_empty(WriteConfig::default()).await;
    let id = h.create_ok("password-cache").await;
    h.advance(10);
    let reset_path = format!("{}/password/reset", instance_path(&id));
    let update_path = format!("{}/password", instance_path(&id));

    // ResetInstancePasswordBody: new_password, or no_password_access.
    let reset = h
        .write(
            "POST",
            &reset_path,
            Some(&json!({"new_password": "Reset-Passw0rd"})),
        )
        .await;
    assert_eq!(reset.status, 200);
    let body = reset.body.unwrap();
    assert_eq!(body["code"], "1");
    assert!(body["message"].is_string());
    for (payload, code) in [
        (json!({}), "DCS.4845"),
        (json!({"new_password": "weak"}), "DCS.4019"),
        (
            json!({"new_password": "Reset-Passw0rd", "no_password_access": true}),
            "DCS.4849",
        ),
        (json!({"no_password_access": "yes"}), "DCS.4843"),
    ] {
        let answer = h.write("POST", &reset_path, Some(&payload)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, Some(code)),
            "{payload}"
        );
    }

    // UpdatePassword: 200 whatever happens; check `result`.
    let wrong = json!({"old_password": "Wrong-Passw0rd", "new_password": "Next-Passw0rd"});
    for left in ["4", "3", "2", "1"] {
        let answer = h.write("PUT", &update_path, Some(&wrong)).await;
        assert_eq!(answer.status, 200);
        let body = answer.body.unwrap();
        assert_eq!(
            (body["result"].clone(), body["retry_times_left"].clone()),
            (json!("passwordFailed"), json!(left))
        );
    }
    let locked = h
        .write("PUT", &update_path, Some(&wrong))
        .await
        .body
        .unwrap();
    assert_eq!(locked["result"], "locked");
    assert_eq!(locked["lock_time_left"], "300");
    let right = json!({"old_password": "Reset-Passw0rd", "new_password": "Next-Passw0rd"});
    assert_eq!(
        h.write("PUT", &update_path, Some(&right))
            .await
            .body
            .unwrap()["result"],
        "locked"
    );
    let while_locked = h
        .write(
            "POST",
            &reset_path,
            Some(&json!({"new_password": "Other-Passw0rd"})),
        )
        .await;
    assert_eq!(
        (
            while_locked.status,
            while_locked.body.unwrap()["code"].clone()
        ),
        (200, json!("3"))
    );
    h.advance(300);
    let ok = h
        .write("PUT", &update_path, Some(&right))
        .await
        .body
        .unwrap();
    assert_eq!(ok["result"], "success");
    let same = json!({"old_password": "Next-Passw0rd", "new_password": "Next-Passw0rd"});
    assert_eq!(
        h.write("PUT", &update_path, Some(&same)).await.code(),
        Some("DCS.4800")
    );
    let weak = json!({"old_password": "Next-Passw0rd", "new_password": "weakweak"});
    assert_eq!(
        h.write("PUT", &update_path, Some(&weak)).await.code(),
        Some("DCS.4019")
    );

    // Password-free mode through ResetPassword; UpdatePassword is then refused.
    let free = h
        .write(
            "POST",
            &reset_path,
            Some(&json!({"no_password_access": true})),
        )
        .await;
    assert_eq!(free.body.unwrap()["code"], "1");
    assert_eq!(
        h.show(&id).await.body.unwrap()["no_password_access"],
        "true"
    );
    let refused = h.write("PUT", &update_path, Some(&right)).await;
    assert_eq!((refused.status, refused.code()), (400, Some("DCS.4850")));
    let back = h
        .write(
            "POST",
            &reset_path,
            Some(&json!({"new_password": "Back-Passw0rd", "no_password_access": false})),
        )
        .await;
    assert_eq!(back.body.unwrap()["code"], "1");
    assert_eq!(
        h.show(&id).await.body.unwrap()["no_password_access"],
        "false"
    );
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.applied_for("reset_password"),
            counters.applied_for("update_password")
        ),
        (3, 1)
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_delete_goes_through_deleting_to_404() {
    let h = start_examples().await;
    let id = h.create_ok("doomed-cache").await;
    let early = h.write("DELETE", &instance_path(&id), None).await;
    assert_eq!(
        (early.status, early.code()),
        (400, Some("DCS.4099")),
        "still creating"
    );
    h.advance(10);
    let accepted = h.write("DELETE", &instance_path(&id), None).await;
    assert_eq!(accepted.status, 204);
    assert!(accepted.text.is_empty());
    assert_eq!(h.status_of(&id).await, "DELETING");
    let twice = h.write("DELETE", &instance_path(&id), None).await;
    assert_eq!(twice.code(), Some("DCS.4099"));
    let tag = json!({"action": "create", "tags": [{"key": "k", "value": "v"}]});
    let tagged = h
        .write(
            "POST",
            &format!("/v2/{PROJECT}/dcs/{id}/tags/action"),
            Some(&tag),
        )
        .await;
    assert_eq!(tagged.code(), Some("DCS.4026"));
    h.advance(9);
    assert_eq!(h.status_of(&id).await, "DELETING");
    h.advance(1);
    let gone = h
        .client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, &id)
        .await
        .unwrap_err();
    assert!(gone.is_instance_not_found(), "{gone}");
    let again = h.write("DELETE", &instance_path(&id), None).await;
    assert_eq!((again.status, again.code()), (404, Some("DCS.3022")));
    assert!(
        !h.listed(&[("include_failure", "true"), ("limit", "100")])
            .await
            .contains(&id)
    );

    // A failed creation can be deleted; a restarting instance cannot.
    assert_eq!(
        h.write("DELETE", &instance_path(FAILED), None).await.status,
        204
    );
    let restarting = object(json!({"status": "RESTARTING"}));
    assert!(h.sim.state().update_instance(PROJECT, SCRIPTED, restarting));
    let refused = h.write("DELETE", &instance_path(SCRIPTED), None).await;
    assert_eq!(refused.code(), Some("DCS.4099"));
    h.advance(10);
    assert_eq!(h.show(FAILED).await.status, 404);
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.applied_for("delete"),
            counters.requests_for("delete")
        ),
        (2, 6)
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_tags_action_show_tags_and_the_list_filter() {
    let h = start_empty(WriteConfig::default()).await;
    let id = h.create_ok("tagged-cache").await;
    let action = format!("/v2/{PROJECT}/dcs/{id}/tags/action");
    let tags_path = format!("{}/tags", instance_path(&id));
    let shown = h.send("GET", &tags_path, &[], None).await.unwrap();
    assert_eq!(shown.status, 200);
    assert_eq!(
        shown.body.unwrap(),
        json!({"tags": [{"key": "dcs-operator-uid", "value": UID}, {"key": "env", "value": "test"}]})
    );
    // Terraform's update: delete the old, create the new (tags work while CREATING).
    let delete = json!({"action": "delete", "tags": [{"key": "env", "value": "test"}]});
    assert_eq!(h.write("POST", &action, Some(&delete)).await.status, 204);
    let create = json!({"action": "create", "tags": [{"key": "env", "value": "prod"}, {"key": "team", "value": "orders/payments"}]});
    assert_eq!(h.write("POST", &action, Some(&create)).await.status, 204);
    let tags = h
        .send("GET", &tags_path, &[], None)
        .await
        .unwrap()
        .body
        .unwrap()["tags"]
        .clone();
    assert_eq!(tags.as_array().unwrap().len(), 3);
    assert_eq!(
        h.listed(&[("tags", "env=prod,team=orders/payments")]).await,
        vec![id.clone()]
    );
    assert!(h.listed(&[("tags", "env=test")]).await.is_empty());
    // Create on an existing key replaces its value; delete without value drops the key.
    let overwrite = json!({"action": "create", "tags": [{"key": "env", "value": "staging"}]});
    assert_eq!(h.write("POST", &action, Some(&overwrite)).await.status, 204);
    let by_key = json!({"action": "delete", "tags": [{"key": "team"}]});
    assert_eq!(h.write("POST", &action, Some(&by_key)).await.status, 204);
    assert_eq!(h.listed(&[("tags", "env=staging")]).await, vec![id.clone()]);
    assert!(h.listed(&[("tags", "team")]).await.is_empty());

    let too_many: Vec<Value> = (0..19)
        .map(|n| json!({"key": format!("k{n}"), "value": "v"}))
        .collect();
    let refusals = [
        (
            json!({"action": "create", "tags": [{"key": "a/b", "value": "v"}]}),
            "DCS.4800",
        ),
        (
            json!({"action": "create", "tags": [{"key": "_sys_x", "value": "v"}]}),
            "DCS.4800",
        ),
        (
            json!({"action": "create", "tags": [{"key": " lead", "value": "v"}]}),
            "DCS.4800",
        ),
        (
            json!({"action": "create", "tags": [{"key": "k"}]}),
            "DCS.4800",
        ),
        (json!({"action": "create", "tags": []}), "DCS.4800"),
        (
            json!({"action": "update", "tags": [{"key": "k", "value": "v"}]}),
            "DCS.4800",
        ),
        (json!({"action": "create", "tags": too_many}), "DCS.4800"),
    ];
    for (body, code) in refusals {
        let answer = h.write("POST", &action, Some(&body)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, Some(code)),
            "{body}: {}",
            answer.text
        );
    }
    let missing = h
        .send("GET", &format!("{}/tags", instance_path("nope")), &[], None)
        .await
        .unwrap();
    assert_eq!((missing.status, missing.code()), (404, Some("DCS.3022")));
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.applied_for("tags_action"),
            counters.requests_for("show_tags")
        ),
        (4, 3)
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_flavors_zones_and_windows_match_the_sdk_models() {
    let h = start_examples().await;
    let all = h
        .send("GET", &format!("/v2/{PROJECT}/flavors"), &[], None)
        .await
        .unwrap();
    assert_eq!(all.status, 200);
    let flavors = all.body.unwrap()["flavors"].as_array().unwrap().clone();
    assert!(flavors.len() > 50);
    let item = flavors
        .iter()
        .find(|f| f["spec_code"] == "redis.ha.xu1.large.r2.8")
        .unwrap();
    for key in [
        "spec_code",
        "cloud_service_type_code",
        "cloud_resource_type_code",
        "cache_mode",
        "engine",
        "engine_version",
        "product_type",
        "cpu_type",
        "storage_type",
        "capacity",
        "billing_mode",
        "tenant_ip_count",
        "pricing_type",
        "is_dec",
        "attrs",
        "flavors_available_zones",
    ] {
        assert!(item.get(key).is_some(), "FlavorsItems.{key}");
    }
    assert_eq!(item["capacity"], json!(["8"]));
    assert_eq!(item["engine_version"], "4.0;5.0;6.0;7.0");
    let zones = &item["flavors_available_zones"][0];
    assert_eq!(
        keys(zones),
        vec!["available_zones", "az_codes", "capacity", "unit"]
    );
    assert!(
        !zones["az_codes"]
            .as_array()
            .unwrap()
            .contains(&json!("cn-north-4g"))
    );

    let count = |query: Vec<(&'static str, &'static str)>| {
        let h = &h;
        async move {
            let answer = h
                .send("GET", &format!("/v2/{PROJECT}/flavors"), &query, None)
                .await
                .unwrap();
            answer.body.unwrap()["flavors"].as_array().unwrap().len()
        }
    };
    assert_eq!(
        count(vec![("engine_version", "6.0"), ("cache_mode", "proxy")]).await,
        0
    );
    assert_eq!(
        count(vec![("cache_mode", "cluster"), ("capacity", "64")]).await,
        1
    );
    assert_eq!(
        count(vec![("spec_code", "redis.single.xu1.tiny.128")]).await,
        1
    );
    assert_eq!(count(vec![("engine", "memcached")]).await, 14);
    assert_eq!(
        count(vec![("cpu_type", "aarch64"), ("capacity", "8")]).await,
        1
    );
    // instance_id: the flavours the HA 6.0 example instance may change to.
    let targets = h
        .send(
            "GET",
            &format!("/v2/{PROJECT}/flavors"),
            &[("instance_id", "8b2e4d6f-1a3c-4b5d-8e7f-9a0b1c2d3e4f")],
            None,
        )
        .await
        .unwrap()
        .body
        .unwrap();
    let targets = targets["flavors"].as_array().unwrap();
    assert!(!targets.is_empty());
    assert!(
        targets
            .iter()
            .all(|f| f["cache_mode"] == "ha" && f["cpu_type"] == "x86_64")
    );
    let missing = h
        .send(
            "GET",
            &format!("/v2/{PROJECT}/flavors"),
            &[("instance_id", "nope")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(missing.code(), Some("DCS.3022"));

    // No project in these two paths.
    let zones = h
        .send("GET", "/v2/available-zones", &[], None)
        .await
        .unwrap();
    assert_eq!(zones.status, 200);
    let zones = zones.body.unwrap();
    assert_eq!(zones["region_id"], "cn-north-4");
    let first = &zones["available_zones"][0];
    assert_eq!(
        keys(first),
        vec!["code", "id", "name", "port", "resource_availability"]
    );
    assert_eq!(
        (
            first["code"].clone(),
            first["resource_availability"].clone()
        ),
        (json!("cn-north-4a"), json!("true"))
    );
    assert_eq!(
        first["id"], "d539378ec1314c85b76fefa3f7071458",
        "the example file's AZ id"
    );
    let windows = h
        .send("GET", "/v2/instances/maintain-windows", &[], None)
        .await
        .unwrap()
        .body
        .unwrap();
    let windows = windows["maintain_windows"].as_array().unwrap();
    assert_eq!(windows.len(), 6);
    assert_eq!(keys(&windows[0]), vec!["begin", "default", "end", "seq"]);
    assert_eq!(windows.iter().filter(|w| w["default"] == true).count(), 1);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_write_faults_status_apply_then_drop_and_create_failed() {
    let h = start_empty(WriteConfig::default()).await;
    let state = h.sim.state();
    // The existing kinds on a write route: nothing happens, the caller sees the fault.
    state.inject_fault(
        Fault::times(
            FaultKind::Status {
                status: 503,
                error_code: "DCS.5000".into(),
                error_msg: "Internal service error.".into(),
                retry_after: None,
            },
            1,
        )
        .on_route("create"),
    );
    let failed = h.create(&create_body("faulted-cache")).await;
    assert_eq!((failed.status, failed.code()), (503, Some("DCS.5000")));
    assert!(h.listed(&[("include_failure", "true")]).await.is_empty());

    // Apply, then drop: no answer, yet the instance exists.
    state.inject_fault(Fault::times(FaultKind::ApplyThenDrop, 1).on_route("create"));
    let dropped = h
        .send(
            "POST",
            &instances_path(),
            &[],
            Some(&create_body("dropped-cache")),
        )
        .await;
    assert!(dropped.is_err(), "the answer was dropped: {dropped:?}");
    let found = h
        .listed(&[
            ("name", "dropped-cache"),
            ("name_equal", "true"),
            ("include_failure", "true"),
        ])
        .await;
    assert_eq!(found.len(), 1);
    let id = found[0].clone();

    // CREATEFAILED after create: 200 now, failed once the create delay has passed.
    state.inject_fault(Fault::times(FaultKind::CreateFailed, 1));
    // A create-only fault waits for a create: reads pass untouched.
    assert!(h.listed(&[]).await.len() == 1);
    let doomed = h.create_ok("doomed-cache").await;
    h.advance(10);
    let shown = h.show(&doomed).await.body.unwrap();
    assert_eq!(shown["status"], "CREATEFAILED");
    assert!(shown.get("ip").is_none());
    assert_eq!(
        h.listed(&[]).await,
        vec![id.clone()],
        "failed creations need include_failure"
    );
    assert_eq!(h.listed(&[("include_failure", "true")]).await.len(), 2);
    let v1 = h
        .send(
            "GET",
            &format!("/v1.0/{PROJECT}/instances/{doomed}"),
            &[],
            None,
        )
        .await
        .unwrap();
    let v1 = v1.body.unwrap();
    assert_eq!(v1["error_code"], "dcs.04.0002");
    assert_eq!(v1["resource_spec_code"], "redis.ha.xu1.large.r2.2");
    assert!(
        shown.get("resource_spec_code").is_none(),
        "v2 names it spec_code only"
    );

    // Apply-then-drop on delete: the caller retries and learns it is already going.
    state.inject_fault(Fault::times(FaultKind::ApplyThenDrop, 1).on_route("delete"));
    assert!(
        h.send("DELETE", &instance_path(&id), &[], None)
            .await
            .is_err()
    );
    assert_eq!(h.status_of(&id).await, "DELETING");
    assert_eq!(
        h.write("DELETE", &instance_path(&id), None).await.code(),
        Some("DCS.4099")
    );
    // Reset and latency fire on writes too.
    state.inject_fault(Fault::times(FaultKind::Reset, 1).on_route("delete"));
    assert!(
        h.send("DELETE", &instance_path(&doomed), &[], None)
            .await
            .is_err()
    );
    assert_eq!(
        h.status_of(&doomed).await,
        "CREATEFAILED",
        "a reset happens before the write"
    );
    state.inject_fault(Fault::times(FaultKind::Latency { ms: 10 }, 1).on_route("delete"));
    assert_eq!(
        h.write("DELETE", &instance_path(&doomed), None)
            .await
            .status,
        204
    );

    let counters = state.counters();
    assert_eq!(
        (
            counters.requests_for("create"),
            counters.applied_for("create")
        ),
        (3, 2)
    );
    assert_eq!(
        (
            counters.requests_for("delete"),
            counters.applied_for("delete")
        ),
        (4, 2)
    );
    assert_eq!(counters.faults_injected, 6);
    // Write-only kinds on a route they can never fire on are refused.
    assert!(
        Fault::always(FaultKind::CreateFailed)
            .on_route("delete")
            .validate()
            .is_err()
    );
    assert!(
        Fault::always(FaultKind::ApplyThenDrop)
            .on_route("show_v2")
            .validate()
            .is_err()
    );
    assert!(
        Fault::always(FaultKind::ApplyThenDrop)
            .on_route("tags_action")
            .validate()
            .is_ok()
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_list_lag_hides_new_instances_from_lists_only() {
    let h = start_empty(WriteConfig {
        list_lag: Duration::from_secs(30),
        ..WriteConfig::default()
    })
    .await;
    let id = h.create_ok("lagging-cache").await;
    assert_eq!(
        h.show(&id).await.status,
        200,
        "ShowInstance finds it at once"
    );
    let owner = format!("dcs-operator-uid={UID}");
    assert!(
        h.listed(&[("tags", &owner), ("include_failure", "true")])
            .await
            .is_empty()
    );
    let v1 = h
        .send("GET", &format!("/v1.0/{PROJECT}/instances"), &[], None)
        .await
        .unwrap();
    assert_eq!(v1.body.unwrap()["instance_num"], 0);
    h.advance(29);
    assert!(h.listed(&[("tags", &owner)]).await.is_empty());
    h.advance(1);
    assert_eq!(h.listed(&[("tags", &owner)]).await, vec![id.clone()]);
    let view = h.sim.state().write_view();
    assert_eq!(view[0]["listed_in_seconds"], 0.0);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sim_gateway_guards_the_write_routes_and_the_admin_api_shows_them() {
    let h = start_empty(WriteConfig::default()).await;
    // No signature at all.
    let http = reqwest::Client::new();
    let unsigned = http
        .post(format!("{}{}", h.sim.base_url(), instances_path()))
        .json(&create_body("unsigned-cache"))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let body: Value = unsigned.json().await.unwrap();
    assert_eq!(body["error_code"], "APIG.0301");
    // Bad project ID, unknown method on a known path.
    let bad_project = h
        .send(
            "POST",
            "/v2/NOT-A-PROJECT/instances",
            &[],
            Some(&create_body("x-cache")),
        )
        .await
        .unwrap();
    assert_eq!(bad_project.code(), Some("111400002"));
    let patch = h
        .send("PATCH", &instance_path("x"), &[], Some(&json!({})))
        .await
        .unwrap();
    assert_eq!((patch.status, patch.code()), (404, Some("APIGW.0101")));
    // Throttling counts writes like reads.
    h.sim.state().set_rate_limit(Some(1));
    let id = h.create_ok("throttled-cache").await;
    let throttled = h.write("DELETE", &instance_path(&id), None).await;
    assert_eq!(
        (throttled.status, throttled.code()),
        (429, Some("APIG.0308"))
    );
    h.sim.state().set_rate_limit(None);
    assert_eq!(h.sim.state().counters().applied_for("create"), 1);

    // The admin API: created instances, pending changes, write counts, timings.
    let base = h.sim.base_url();
    let writes: Value = http
        .get(format!("{base}/_sim/writes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(writes["instances"][0]["instance_id"], id.as_str());
    assert_eq!(writes["instances"][0]["tags"][0]["key"], "dcs-operator-uid");
    assert_eq!(
        writes["instances"][0]["pending"][0]["set"]["status"],
        "RUNNING"
    );
    assert_eq!(
        writes["routes"]["create"],
        json!({"requests": 3, "applied": 1})
    );
    assert_eq!(
        writes["routes"]["delete"],
        json!({"requests": 1, "applied": 0})
    );
    let config: Value = http
        .get(format!("{base}/_sim/write-config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["create_delay"], "10s");
    let changed = http
        .put(format!("{base}/_sim/write-config"))
        .json(&json!({"create_delay": "1m", "list_lag": "5s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(
        h.sim.state().write_config().create_delay,
        Duration::from_secs(60)
    );
    let refused = http
        .put(format!("{base}/_sim/write-config"))
        .json(&json!({"create_delay": "soon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let fault = http
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"kind": "apply_then_drop", "route": "create", "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 200);
    let bad_fault = http
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"kind": "create_failed", "route": "list_v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_fault.status(), 400);
    h.sim.shutdown().await;
}

/// The SDK models are the contract: every field of CreateInstanceBody the operator
/// may send, with the SDK's JSON types, is accepted, and each answer has the
/// response model's shape and status.
#[tokio::test]
async fn sim_sdk_request_models_are_accepted_with_their_types() {
    let h = start_empty(WriteConfig::default()).await;
    let full = json!({
        "name": "sdk-cache",
        "engine": "Redis",
        "engine_version": "5.0",
        "capacity": 8.0,
        "spec_code": "redis.ha.xu1.large.r2.8",
        "az_codes": ["cn-north-4a", "cn-north-4b"],
        "vpc_id": VPC,
        "subnet_id": SUBNET,
        "port": 6390,
        "password": PASSWORD,
        "no_password_access": false,
        "tags": [{"key": "dcs-operator-uid", "value": UID}],
        "description": "every field",
        "maintain_begin": "18:00:00",
        "maintain_end": "22:00:00",
        "enterprise_project_id": "0",
        "enterprise_project_name": "default",
        "instance_backup_policy": {
            "backup_type": "auto",
            "save_days": 3,
            "periodical_backup_plan": {"backup_at": [1, 2, 3, 4, 5, 6, 7], "period_type": "weekly", "begin_at": "00:00-01:00", "timezone_offset": "+0800"}
        },
        "private_ip": "192.168.7.7",
        "rename_commands": {"command": "c1", "keys": "k1", "flushdb": "f1", "flushall": "fa1", "hgetall": "h1"},
        "enable_ssl": false,
        "template_id": "tmpl-1",
        "instance_num": 1,
        "bss_param": {"charging_mode": "postPaid"},
    });
    let created = h.create(&full).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.body.unwrap()["instances"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    h.advance(10);
    let shown = h.show(&id).await.body.unwrap();
    assert_eq!(
        (shown["ip"].clone(), shown["port"].clone()),
        (json!("192.168.7.7"), json!(6390))
    );
    assert_eq!(shown["maintain_begin"], "18:00:00");
    assert_eq!(shown["charging_mode"], 0);
    // ShowInstanceResponse types the operator relies on.
    assert!(shown["capacity"].is_u64() && shown["max_memory"].is_u64() && shown["port"].is_u64());
    assert!(shown["no_password_access"].is_string() && shown["az_codes"].is_array());
    assert!(shown["available_zones"].is_array() && shown["tags"].is_array());

    // Memcached: no engine_version, access_user allowed, default port 11211.
    let memcached = json!({
        "name": "memcached-cache", "engine": "Memcached", "capacity": 2, "spec_code": "memcached.single.xu1.large.2",
        "az_codes": ["cn-north-4c"], "vpc_id": VPC, "subnet_id": SUBNET, "security_group_id": SUBNET,
        "access_user": "memuser", "password": PASSWORD,
    });
    let created = h.create(&memcached).await;
    assert_eq!(created.status, 200, "{}", created.text);

    // ResizeInstanceBody, ModifyInstanceBody, ResetInstancePasswordBody,
    // ModifyInstancePasswordBody: status codes and answer shapes.
    let resize = json!({"spec_code": "redis.ha.xu1.large.r2.16", "new_capacity": 16, "execute_immediately": true});
    let answer = h
        .write(
            "POST",
            &format!("{}/resize", instance_path(&id)),
            Some(&resize),
        )
        .await;
    assert_eq!((answer.status, answer.text.as_str()), (204, ""));
    h.advance(30);
    let modify = json!({"name": "sdk-cache-2", "description": "", "maintain_begin": "22:00:00", "maintain_end": "02:00:00",
        "instance_backup_policy": {"backup_type": "manual"}});
    let answer = h.write("PUT", &instance_path(&id), Some(&modify)).await;
    assert_eq!((answer.status, answer.text.as_str()), (204, ""));
    let reset = h
        .write(
            "POST",
            &format!("{}/password/reset", instance_path(&id)),
            Some(&json!({"new_password": "Reset-Passw0rd", "no_password_access": false})),
        )
        .await;
    assert_eq!(reset.status, 200);
    assert_eq!(
        keys(reset.body.as_ref().unwrap()),
        vec!["code", "ext_message", "message"]
    );
    let update = h
        .write(
            "PUT",
            &format!("{}/password", instance_path(&id)),
            Some(&json!({"old_password": "Reset-Passw0rd", "new_password": "Update-Passw0rd"})),
        )
        .await;
    assert_eq!(update.status, 200);
    let update = update.body.unwrap();
    assert_eq!(update["result"], "success");
    for key in keys(&update) {
        assert!(
            [
                "lock_time",
                "result",
                "lock_time_left",
                "retry_times_left",
                "message"
            ]
            .contains(&key),
            "{key}"
        );
    }
    let delete = h.write("DELETE", &instance_path(&id), None).await;
    assert_eq!((delete.status, delete.text.as_str()), (204, ""));
    h.sim.shutdown().await;
}
