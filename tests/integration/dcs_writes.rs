//! The operator's own write client (`dcs::writes`) against the simulator over real
//! loopback HTTP: create and its recovery lookups (owner tag, exact name, with and
//! without list lag), tags, delete, the in-place changes (resize, modify, port as a
//! background task, password reset), and how each kind of failure is classified.

use std::time::Duration;

use chrono::TimeDelta;
use dcs_operator::dcs::ClientConfig;
use dcs_operator::dcs::model::DcsStatus;
use dcs_operator::dcs::sim::{Fault, FaultKind, SimConfig, SimInstance, WriteConfig};
use dcs_operator::dcs::writes::{
    CreateInstanceBody, FIND_LIMIT, FoundInstances, InstanceFilter, ModifyInstanceBody,
    OWNER_TAG_KEY, ResizeInstanceBody, ResourceTag, TagAction, WriteOutcome, is_busy,
    reset_refusal_code, write_outcome,
};
use dcs_operator::dcs::{DcsError, SecretString};
use serde_json::json;

use crate::sim_support::{Harness, PROJECT, code, object, start_with};

const VPC: &str = "3d5c1f1e-6a3b-4c2d-9e8f-0a1b2c3d4e5f";
const SUBNET: &str = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d";
const UID: &str = "2b7e9f3a-1c4d-4e5f-8a9b-0c1d2e3f4a5b";

async fn start(writes: WriteConfig) -> Harness {
    let config = SimConfig {
        writes,
        ..SimConfig::with_default_keys()
    };
    start_with(config, ClientConfig::default()).await
}

/// A create the simulator accepts, owned by `UID`.
fn body(name: &str) -> CreateInstanceBody {
    CreateInstanceBody {
        name: name.into(),
        engine: "Redis".into(),
        engine_version: Some("6.0".into()),
        capacity: 2.0,
        spec_code: "redis.ha.xu1.large.r2.2".into(),
        az_codes: vec!["cn-north-4a".into(), "cn-north-4b".into()],
        vpc_id: VPC.into(),
        subnet_id: SUBNET.into(),
        port: Some(6379),
        password: Some(SecretString::new("Sim-Passw0rd")),
        no_password_access: Some(false),
        tags: vec![ResourceTag::owner(UID), ResourceTag::new("env", "test")],
        description: Some("made by dcs_writes".into()),
        maintain_begin: Some("22:00:00".into()),
        maintain_end: Some("02:00:00".into()),
        enterprise_project_id: Some("0".into()),
        ..Default::default()
    }
}

async fn create(h: &Harness, body: &CreateInstanceBody) -> Result<String, DcsError> {
    h.client
        .create_instance(&h.sim.endpoint(), &h.creds, PROJECT, body)
        .await
        .map(|answer| answer.value.instance_id)
}

async fn status(h: &Harness, id: &str) -> Option<DcsStatus> {
    h.client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, id)
        .await
        .unwrap()
        .value
        .status()
}

async fn find(h: &Harness, filter: &InstanceFilter) -> FoundInstances {
    h.client
        .find_instances(&h.sim.endpoint(), &h.creds, PROJECT, filter)
        .await
        .unwrap()
        .value
}

async fn found_ids(h: &Harness, filter: &InstanceFilter) -> Vec<String> {
    find(h, filter)
        .await
        .instances
        .into_iter()
        .map(|found| found.instance_id)
        .collect()
}

async fn tags(h: &Harness, id: &str) -> Vec<ResourceTag> {
    h.client
        .show_tags(&h.sim.endpoint(), &h.creds, PROJECT, id)
        .await
        .unwrap()
        .value
}

/// Every instance of the project, failed creations included.
async fn every_instance(h: &Harness) -> Vec<String> {
    h.client
        .list_instances(&h.sim.endpoint(), &h.creds, PROJECT, 100)
        .await
        .unwrap()
        .value
        .into_iter()
        .filter_map(|instance| instance.instance_id)
        .collect()
}

fn advance(h: &Harness, seconds: i64) {
    h.clock.advance(TimeDelta::seconds(seconds));
}

#[tokio::test]
async fn dcs_writes_create_runs_and_is_found_by_owner_tag_and_exact_name() {
    let h = start(WriteConfig::default()).await;
    let result = h
        .client
        .create_instance(&h.sim.endpoint(), &h.creds, PROJECT, &body("orders-cache"))
        .await;
    assert_eq!(write_outcome(&result), WriteOutcome::Accepted);
    let created = result.unwrap();
    assert!(created.request_id.is_some());
    assert_eq!(created.value.instance_name.as_deref(), Some("orders-cache"));
    assert_eq!(created.value.order_id, None, "pay-per-use has no order");
    let id = created.value.instance_id;

    assert_eq!(status(&h, &id).await, Some(DcsStatus::Creating));
    advance(&h, 9);
    assert_eq!(status(&h, &id).await, Some(DcsStatus::Creating));
    advance(&h, 1);
    assert_eq!(status(&h, &id).await, Some(DcsStatus::Running));
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.requests_for("create"),
            counters.applied_for("create")
        ),
        (1, 1)
    );
    // What went over the wire: the simulator kept the body's fields.
    let view = h.sim.state().write_view();
    assert_eq!(view.len(), 1);
    assert_eq!(
        view[0]["tags"][0],
        json!({"key": OWNER_TAG_KEY, "value": UID})
    );

    let by_owner = find(&h, &InstanceFilter::owner(UID)).await;
    assert_eq!(by_owner.instances.len(), 1);
    assert_eq!(
        (by_owner.truncated, by_owner.dropped),
        (false, 0),
        "{by_owner:?}"
    );
    let found = &by_owner.instances[0];
    assert_eq!(found.instance_id, id);
    assert_eq!(found.name.as_deref(), Some("orders-cache"));
    assert_eq!(found.status.as_deref(), Some("RUNNING"));
    assert!(found.has_tag(OWNER_TAG_KEY, UID));
    assert_eq!(
        found_ids(&h, &InstanceFilter::ExactName("orders-cache".into())).await,
        vec![id.clone()]
    );
    // Exact means exact, and another owner finds nothing.
    assert!(
        found_ids(&h, &InstanceFilter::ExactName("orders".into()))
            .await
            .is_empty()
    );
    assert!(
        found_ids(
            &h,
            &InstanceFilter::owner("00000000-0000-4000-8000-000000000000")
        )
        .await
        .is_empty()
    );
    let counters = h.sim.state().counters();
    assert_eq!(counters.requests_for("list_v2"), 4);
    assert_eq!(counters.applied_for("create"), 1, "lookups create nothing");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_list_lag_hides_a_new_instance_from_the_owner_lookup_only() {
    let h = start(WriteConfig {
        list_lag: Duration::from_secs(30),
        ..WriteConfig::default()
    })
    .await;
    let id = create(&h, &body("lagging-cache")).await.unwrap();
    // The id the create returned is the only proof until the list catches up.
    assert_eq!(status(&h, &id).await, Some(DcsStatus::Creating));
    let owner = InstanceFilter::owner(UID);
    let early = find(&h, &owner).await;
    assert!(early.instances.is_empty() && !early.truncated && early.dropped == 0);
    assert!(
        found_ids(&h, &InstanceFilter::ExactName("lagging-cache".into()))
            .await
            .is_empty()
    );
    advance(&h, 29);
    assert!(found_ids(&h, &owner).await.is_empty());
    advance(&h, 1);
    assert_eq!(found_ids(&h, &owner).await, vec![id.clone()]);
    assert_eq!(
        found_ids(&h, &InstanceFilter::ExactName("lagging-cache".into())).await,
        vec![id]
    );
    assert_eq!(h.sim.state().counters().applied_for("create"), 1);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_a_failed_creation_is_found_by_name_and_tag_and_can_be_deleted() {
    let h = start(WriteConfig::default()).await;
    h.sim
        .state()
        .inject_fault(Fault::times(FaultKind::CreateFailed, 1).on_route("create"));
    let result = h
        .client
        .create_instance(&h.sim.endpoint(), &h.creds, PROJECT, &body("doomed-cache"))
        .await;
    assert_eq!(write_outcome(&result), WriteOutcome::Accepted);
    let id = result.unwrap().value.instance_id;
    advance(&h, 10);
    assert_eq!(status(&h, &id).await, Some(DcsStatus::CreateFailed));

    // include_failure=true is always sent: the failed creation is still found.
    let by_name = find(&h, &InstanceFilter::ExactName("doomed-cache".into())).await;
    assert_eq!(by_name.instances.len(), 1);
    assert_eq!(by_name.instances[0].instance_id, id);
    assert_eq!(by_name.instances[0].status.as_deref(), Some("CREATEFAILED"));
    assert_eq!(
        found_ids(&h, &InstanceFilter::owner(UID)).await,
        vec![id.clone()]
    );

    // Clean up (LIFECYCLE.md §3): a failed creation can be deleted.
    let deleted = h
        .client
        .delete_instance(&h.sim.endpoint(), &h.creds, PROJECT, &id)
        .await;
    assert_eq!(write_outcome(&deleted), WriteOutcome::Accepted);
    advance(&h, 10);
    let gone = h
        .client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, &id)
        .await
        .unwrap_err();
    assert!(gone.is_instance_not_found(), "{gone}");
    assert!(found_ids(&h, &InstanceFilter::owner(UID)).await.is_empty());
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_show_tags_and_tag_actions() {
    let h = start(WriteConfig::default()).await;
    let id = create(&h, &body("tagged-cache")).await.unwrap();
    let endpoint = h.sim.endpoint();
    assert_eq!(
        tags(&h, &id).await,
        vec![ResourceTag::owner(UID), ResourceTag::new("env", "test")]
    );
    assert!(tags(&h, &id).await[0].is_owner(UID));

    // Terraform's update: delete the old value, create the new ones.
    let delete = h
        .client
        .tag_action(
            &endpoint,
            &h.creds,
            PROJECT,
            &id,
            TagAction::Delete,
            &[ResourceTag::new("env", "test")],
        )
        .await;
    assert_eq!(write_outcome(&delete), WriteOutcome::Accepted);
    assert_eq!(delete.unwrap().pages, 1);
    h.client
        .tag_action(
            &endpoint,
            &h.creds,
            PROJECT,
            &id,
            TagAction::Create,
            &[
                ResourceTag::new("env", "prod"),
                ResourceTag::new("team", "orders/payments"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        tags(&h, &id).await,
        vec![
            ResourceTag::owner(UID),
            ResourceTag::new("env", "prod"),
            ResourceTag::new("team", "orders/payments"),
        ]
    );
    let by_tag = InstanceFilter::Tag {
        key: "team".into(),
        value: "orders/payments".into(),
    };
    assert_eq!(found_ids(&h, &by_tag).await, vec![id.clone()]);

    // Nothing to change sends nothing.
    let before = h.sim.state().counters().requests_for("tags_action");
    let empty = h
        .client
        .tag_action(&endpoint, &h.creds, PROJECT, &id, TagAction::Create, &[])
        .await
        .unwrap();
    assert_eq!(empty.pages, 0);
    assert_eq!(h.sim.state().counters().requests_for("tags_action"), before);

    // A tag the API refuses (no '/' in keys): refused, nothing changed.
    let refused = h
        .client
        .tag_action(
            &endpoint,
            &h.creds,
            PROJECT,
            &id,
            TagAction::Create,
            &[ResourceTag::new("owner/team", "x")],
        )
        .await;
    assert_eq!(write_outcome(&refused), WriteOutcome::Refused);
    assert_eq!(tags(&h, &id).await.len(), 3);

    // An id that is not an instance id is never sent.
    let missing = "00000000-0000-4000-8000-000000000000";
    let not_found = h
        .client
        .show_tags(&endpoint, &h.creds, PROJECT, missing)
        .await
        .unwrap_err();
    assert!(not_found.is_instance_not_found(), "{not_found}");
    let shown = h.sim.state().counters().requests_for("show_tags");
    let bad = h
        .client
        .show_tags(&endpoint, &h.creds, PROJECT, "not-an-id")
        .await
        .unwrap_err();
    assert!(matches!(bad, DcsError::Unsendable { .. }), "{bad}");
    assert_eq!(h.sim.state().counters().requests_for("show_tags"), shown);
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.applied_for("tags_action"),
            counters.requests_for("tags_action")
        ),
        (2, 3)
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_delete_is_busy_while_creating_then_ends_in_404() {
    let h = start(WriteConfig::default()).await;
    let endpoint = h.sim.endpoint();
    let id = create(&h, &body("doomed-cache")).await.unwrap();
    let early = h
        .client
        .delete_instance(&endpoint, &h.creds, PROJECT, &id)
        .await;
    assert_eq!(write_outcome(&early), WriteOutcome::Refused);
    let early = early.unwrap_err();
    assert_eq!(code(&early), Some("DCS.4099"));
    assert!(is_busy(&early), "{early}");

    advance(&h, 10);
    let accepted = h
        .client
        .delete_instance(&endpoint, &h.creds, PROJECT, &id)
        .await
        .unwrap();
    assert!(accepted.request_id.is_some());
    assert_eq!(status(&h, &id).await, Some(DcsStatus::Deleting));
    advance(&h, 10);
    let gone = h
        .client
        .show_instance(&endpoint, &h.creds, PROJECT, &id)
        .await
        .unwrap_err();
    assert!(gone.is_instance_not_found(), "{gone}");
    // A repeated delete: 404 DCS.3022, which the caller may read as done.
    let again = h
        .client
        .delete_instance(&endpoint, &h.creds, PROJECT, &id)
        .await;
    assert_eq!(write_outcome(&again), WriteOutcome::Refused);
    assert!(again.unwrap_err().is_instance_not_found());
    // Never the batch delete, whatever the id.
    let before = h.sim.state().counters().requests_for("delete");
    for bad in ["", "not-an-id"] {
        let refused = h
            .client
            .delete_instance(&endpoint, &h.creds, PROJECT, bad)
            .await;
        assert_eq!(write_outcome(&refused), WriteOutcome::NotSent);
    }
    let counters = h.sim.state().counters();
    assert_eq!(counters.requests_for("delete"), before);
    assert_eq!(
        (
            counters.applied_for("delete"),
            counters.requests_for("delete")
        ),
        (1, 3)
    );
    assert!(every_instance(&h).await.is_empty());
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_a_refused_create_creates_nothing() {
    let h = start(WriteConfig::default()).await;
    let cases = [
        (
            CreateInstanceBody {
                spec_code: "redis.ha.xu9.huge.2".into(),
                ..body("refused-cache")
            },
            "DCS.4927",
        ),
        (
            CreateInstanceBody {
                capacity: 4.0,
                ..body("refused-cache")
            },
            "DCS.4012",
        ),
        (
            CreateInstanceBody {
                password: Some(SecretString::new("password")),
                ..body("refused-cache")
            },
            "DCS.4019",
        ),
    ];
    let total = cases.len() as u64;
    for (request, expected) in cases {
        let result = h
            .client
            .create_instance(&h.sim.endpoint(), &h.creds, PROJECT, &request)
            .await;
        assert_eq!(write_outcome(&result), WriteOutcome::Refused);
        let error = result.unwrap_err();
        assert_eq!(code(&error), Some(expected), "{error}");
        assert!(!is_busy(&error));
    }
    // A capacity that cannot be written is never sent.
    let unsendable = h
        .client
        .create_instance(
            &h.sim.endpoint(),
            &h.creds,
            PROJECT,
            &CreateInstanceBody {
                capacity: f64::NAN,
                ..body("nan-cache")
            },
        )
        .await;
    assert_eq!(write_outcome(&unsendable), WriteOutcome::NotSent);
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.requests_for("create"),
            counters.applied_for("create")
        ),
        (total, 0)
    );
    assert!(found_ids(&h, &InstanceFilter::owner(UID)).await.is_empty());
    assert!(every_instance(&h).await.is_empty());
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_a_dropped_create_answer_is_unknown_and_recovered_by_the_owner_tag() {
    let h = start(WriteConfig::default()).await;
    h.sim
        .state()
        .inject_fault(Fault::times(FaultKind::ApplyThenDrop, 1).on_route("create"));
    let result = h
        .client
        .create_instance(&h.sim.endpoint(), &h.creds, PROJECT, &body("dropped-cache"))
        .await;
    assert_eq!(write_outcome(&result), WriteOutcome::Unknown);
    assert!(
        matches!(result, Err(DcsError::Transport { .. })),
        "{result:?}"
    );
    // It was applied: exactly one instance, found by its owner tag.
    assert_eq!(h.sim.state().counters().applied_for("create"), 1);
    let found = find(&h, &InstanceFilter::owner(UID)).await;
    assert_eq!(found.instances.len(), 1, "{found:?}");
    assert!(!found.truncated);
    assert_eq!(
        every_instance(&h).await,
        vec![found.instances[0].instance_id.clone()]
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_gateway_and_service_failures_are_classified() {
    let h = start(WriteConfig::default()).await;
    let state = h.sim.state();
    // A 503 before the service acted: still Unknown, since a 5xx cannot say.
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
    let server = create(&h, &body("faulted-cache")).await;
    assert_eq!(write_outcome(&server), WriteOutcome::Unknown);
    // A throttled request never reached the service.
    state.set_rate_limit(Some(1));
    let first = create(&h, &body("first-cache")).await;
    assert_eq!(write_outcome(&first), WriteOutcome::Accepted);
    let throttled = create(&h, &body("second-cache")).await;
    assert_eq!(write_outcome(&throttled), WriteOutcome::NotSent);
    assert!(matches!(throttled, Err(DcsError::Throttled { .. })));
    state.set_rate_limit(None);
    // Wrong keys: the gateway refused it.
    let stranger = dcs_operator::dcs::Credentials::access_key(
        "SIMAK0000000000000009",
        "WrongSecret0000000000000000000000000000".to_string(),
        None,
    );
    let unauthorized = h
        .client
        .create_instance(
            &h.sim.endpoint(),
            &stranger,
            PROJECT,
            &body("stranger-cache"),
        )
        .await;
    assert_eq!(write_outcome(&unauthorized), WriteOutcome::Refused);
    // A truncated 200: accepted, but what was made is unknown.
    state.inject_fault(Fault::times(FaultKind::Truncated, 1).on_route("create"));
    let truncated = create(&h, &body("truncated-cache")).await;
    assert_eq!(write_outcome(&truncated), WriteOutcome::Unknown);
    assert!(matches!(truncated, Err(DcsError::Decode { .. })));
    assert_eq!(state.counters().applied_for("create"), 1);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_the_owner_lookup_drops_foreign_ids_and_says_when_a_page_is_full() {
    let h = start(WriteConfig::default()).await;
    let state = h.sim.state();
    let owned = json!([{"key": OWNER_TAG_KEY, "value": UID}]);
    // An id no DcsInstance could name, carrying the owner tag.
    state.upsert_instance(SimInstance::new(
        PROJECT,
        object(json!({"instance_id": "ORDERS-CACHE", "name": "odd", "status": "RUNNING", "tags": owned})),
        vec![],
    ));
    let found = find(&h, &InstanceFilter::owner(UID)).await;
    assert!(found.instances.is_empty());
    assert_eq!(found.dropped, 1);
    // More owners than a page holds: what fit, and said so.
    for n in 0..12 {
        state.upsert_instance(SimInstance::new(
            PROJECT,
            object(json!({
                "instance_id": format!("00000000-0000-4000-8000-{n:012}"),
                "name": format!("copy-{n}"),
                "status": "RUNNING",
                "tags": owned,
            })),
            vec![],
        ));
    }
    let found = find(&h, &InstanceFilter::owner(UID)).await;
    assert!(found.truncated);
    assert!(found.instances.len() + found.dropped as usize <= FIND_LIMIT as usize);
    assert!(!found.instances.is_empty());
    h.sim.shutdown().await;
}

/// A created instance, RUNNING (the create delay has passed).
async fn running(h: &Harness, name: &str) -> String {
    let id = create(h, &body(name)).await.unwrap();
    advance(h, 10);
    assert_eq!(status(h, &id).await, Some(DcsStatus::Running));
    id
}

async fn show(h: &Harness, id: &str) -> dcs_operator::dcs::model::Instance {
    h.client
        .show_instance(&h.sim.endpoint(), &h.creds, PROJECT, id)
        .await
        .unwrap()
        .value
}

fn resize_to(spec_code: &str, new_capacity: f64) -> ResizeInstanceBody {
    ResizeInstanceBody {
        spec_code: spec_code.into(),
        new_capacity,
        ..Default::default()
    }
}

async fn resize(h: &Harness, id: &str, body: &ResizeInstanceBody) -> Result<(), DcsError> {
    h.client
        .resize_instance(&h.sim.endpoint(), &h.creds, PROJECT, id, body)
        .await
        .map(|answer| answer.value)
}

async fn update(h: &Harness, id: &str, body: &ModifyInstanceBody) -> Result<(), DcsError> {
    h.client
        .update_instance(&h.sim.endpoint(), &h.creds, PROJECT, id, body)
        .await
        .map(|answer| answer.value)
}

#[tokio::test]
async fn dcs_writes_resize_extends_then_runs_at_the_new_flavour_once() {
    let h = start(WriteConfig::default()).await;
    let id = running(&h, "growing-cache").await;
    let before = show(&h, &id).await;
    assert_eq!(before.capacity, Some(2));
    assert_eq!(before.spec_code(), Some("redis.ha.xu1.large.r2.2"));

    let result = h
        .client
        .resize_instance(
            &h.sim.endpoint(),
            &h.creds,
            PROJECT,
            &id,
            &resize_to("redis.ha.xu1.large.r2.4", 4.0),
        )
        .await;
    assert_eq!(write_outcome(&result), WriteOutcome::Accepted);
    assert!(result.unwrap().request_id.is_some());
    assert_eq!(status(&h, &id).await, Some(DcsStatus::Extending));

    // While EXTENDING another resize is refused as busy, and nothing is queued.
    let busy = resize(&h, &id, &resize_to("redis.ha.xu1.large.r2.8", 8.0)).await;
    assert_eq!(write_outcome(&busy), WriteOutcome::Refused);
    let busy = busy.unwrap_err();
    assert_eq!(code(&busy), Some("DCS.4113"), "{busy}");
    assert!(is_busy(&busy));

    advance(&h, 29);
    assert_eq!(status(&h, &id).await, Some(DcsStatus::Extending));
    advance(&h, 1);
    let after = show(&h, &id).await;
    assert_eq!(after.status(), Some(DcsStatus::Running));
    assert_eq!(after.capacity, Some(4));
    assert_eq!(after.spec_code(), Some("redis.ha.xu1.large.r2.4"));
    assert_eq!(after.max_memory, Some(4096));
    assert_eq!(after.port, Some(6379), "the address is kept");
    assert!(!after.has_task());
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.applied_for("resize"),
            counters.requests_for("resize")
        ),
        (1, 2)
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_a_refused_resize_changes_nothing_and_a_bad_one_is_never_sent() {
    let h = start(WriteConfig::default()).await;
    let id = running(&h, "refused-cache").await;
    for (request, expected) in [
        // No such flavour.
        (resize_to("redis.ha.xu9.huge.8", 8.0), "DCS.4927"),
        // A capacity the flavour does not have.
        (resize_to("redis.ha.xu1.large.r2.8", 4.0), "DCS.4012"),
        // The same flavour: nothing to change.
        (resize_to("redis.ha.xu1.large.r2.2", 2.0), "DCS.4103"),
        // Another cache mode without change_type instanceType.
        (resize_to("redis.cluster.xu1.large.r2.8", 8.0), "DCS.4200"),
    ] {
        let result = resize(&h, &id, &request).await;
        assert_eq!(write_outcome(&result), WriteOutcome::Refused, "{request:?}");
        let error = result.unwrap_err();
        assert_eq!(code(&error), Some(expected), "{error}");
        assert!(!is_busy(&error), "{error}");
        assert_eq!(error.reason(), "RequestRefused");
    }
    assert_eq!(status(&h, &id).await, Some(DcsStatus::Running));
    assert_eq!(show(&h, &id).await.capacity, Some(2));
    let sent = h.sim.state().counters().requests_for("resize");
    assert_eq!(sent, 4);
    // What cannot be a request is not sent: no capacity, no flavour, no id.
    for (target, request) in [
        (id.as_str(), resize_to("redis.ha.xu1.large.r2.4", f64::NAN)),
        (id.as_str(), resize_to("redis.ha.xu1.large.r2.4", 0.0)),
        (id.as_str(), resize_to(" ", 4.0)),
        ("not-an-id", resize_to("redis.ha.xu1.large.r2.4", 4.0)),
        ("", resize_to("redis.ha.xu1.large.r2.4", 4.0)),
    ] {
        let result = resize(&h, target, &request).await;
        assert_eq!(write_outcome(&result), WriteOutcome::NotSent, "{request:?}");
    }
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.requests_for("resize"),
            counters.applied_for("resize")
        ),
        (sent, 0)
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_a_dropped_resize_answer_is_unknown_but_applied() {
    let h = start(WriteConfig::default()).await;
    let id = running(&h, "dropped-cache").await;
    h.sim
        .state()
        .inject_fault(Fault::times(FaultKind::ApplyThenDrop, 1).on_route("resize"));
    let result = resize(&h, &id, &resize_to("redis.ha.xu1.large.r2.4", 4.0)).await;
    assert_eq!(write_outcome(&result), WriteOutcome::Unknown);
    // Re-reading tells: it is extending, and a resend would be refused as busy.
    assert_eq!(status(&h, &id).await, Some(DcsStatus::Extending));
    assert_eq!(h.sim.state().counters().applied_for("resize"), 1);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_update_changes_name_description_and_window_in_one_call() {
    let h = start(WriteConfig::default()).await;
    let id = running(&h, "modified-cache").await;
    let change = ModifyInstanceBody {
        name: Some("renamed-cache".into()),
        description: Some("new words".into()),
        maintain_begin: Some("02:00:00".into()),
        maintain_end: Some("06:00:00".into()),
        ..Default::default()
    };
    let result = h
        .client
        .update_instance(&h.sim.endpoint(), &h.creds, PROJECT, &id, &change)
        .await;
    assert_eq!(write_outcome(&result), WriteOutcome::Accepted);
    let shown = show(&h, &id).await;
    assert_eq!(shown.name.as_deref(), Some("renamed-cache"));
    assert_eq!(shown.description.as_deref(), Some("new words"));
    assert_eq!(
        (
            shown.maintain_begin.as_deref(),
            shown.maintain_end.as_deref()
        ),
        (Some("02:00:00"), Some("06:00:00"))
    );
    assert_eq!(shown.status(), Some(DcsStatus::Running));
    assert!(!shown.has_task(), "no background task for these fields");
    assert_eq!(
        found_ids(&h, &InstanceFilter::ExactName("renamed-cache".into())).await,
        vec![id.clone()]
    );

    // Nothing set: nothing sent. Half a window: the API refuses it.
    let empty = update(&h, &id, &ModifyInstanceBody::default()).await;
    assert_eq!(write_outcome(&empty), WriteOutcome::NotSent);
    let half = update(
        &h,
        &id,
        &ModifyInstanceBody {
            maintain_begin: Some("22:00:00".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(write_outcome(&half), WriteOutcome::Refused);
    assert_eq!(code(&half.unwrap_err()), Some("DCS.4106"));
    let bad_id = update(&h, "not-an-id", &change).await;
    assert_eq!(write_outcome(&bad_id), WriteOutcome::NotSent);
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.applied_for("update"),
            counters.requests_for("update")
        ),
        (1, 2)
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_a_port_change_runs_as_a_task_that_show_instance_reports() {
    let h = start(WriteConfig::default()).await;
    let id = running(&h, "port-cache").await;
    update(
        &h,
        &id,
        &ModifyInstanceBody {
            port: Some(6380),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // The v1.0 ShowInstance the operator reads: RUNNING, but with a task.
    let busy = show(&h, &id).await;
    assert_eq!(busy.status(), Some(DcsStatus::Running));
    assert_eq!(busy.task.as_deref(), Some("UpdatePort"));
    assert!(busy.has_task());
    assert_eq!(
        busy.port,
        Some(6379),
        "the new port shows when the task ends"
    );
    // Any write meanwhile is refused as busy.
    let meanwhile = update(
        &h,
        &id,
        &ModifyInstanceBody {
            description: Some("x".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&meanwhile), Some("DCS.4017"));
    assert!(is_busy(&meanwhile));
    let resize_meanwhile = resize(&h, &id, &resize_to("redis.ha.xu1.large.r2.4", 4.0))
        .await
        .unwrap_err();
    assert!(is_busy(&resize_meanwhile), "{resize_meanwhile}");

    advance(&h, 4);
    assert!(show(&h, &id).await.has_task());
    advance(&h, 1);
    let done = show(&h, &id).await;
    assert_eq!((done.port, done.task.clone()), (Some(6380), None));
    assert!(!done.has_task());
    let counters = h.sim.state().counters();
    assert_eq!(
        (
            counters.applied_for("update"),
            counters.requests_for("update"),
            counters.applied_for("resize"),
        ),
        (1, 2, 0)
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_reset_password_answers_code_1_and_applies_once() {
    let h = start(WriteConfig::default()).await;
    let id = running(&h, "secret-cache").await;
    let endpoint = h.sim.endpoint();
    let secret = SecretString::new("New-Passw0rd!");
    let result = h
        .client
        .reset_password(&endpoint, &h.creds, PROJECT, &id, Some(&secret), None)
        .await;
    assert_eq!(write_outcome(&result), WriteOutcome::Accepted);
    let answer = result.unwrap();
    assert_eq!(answer.value.code, "1");
    assert!(answer.value.message.is_some());
    assert!(answer.request_id.is_some());
    assert_eq!(h.sim.state().counters().applied_for("reset_password"), 1);

    // Password-free, then back.
    h.client
        .reset_password(&endpoint, &h.creds, PROJECT, &id, None, Some(true))
        .await
        .unwrap();
    assert_eq!(h.sim.state().write_view()[0]["password_free"], true);
    h.client
        .reset_password(
            &endpoint,
            &h.creds,
            PROJECT,
            &id,
            Some(&secret),
            Some(false),
        )
        .await
        .unwrap();
    assert_eq!(h.sim.state().write_view()[0]["password_free"], false);

    // Refusals by the API: a weak password, a password with password-free access.
    let weak = h
        .client
        .reset_password(
            &endpoint,
            &h.creds,
            PROJECT,
            &id,
            Some(&SecretString::new("weakpassword")),
            None,
        )
        .await;
    assert_eq!(write_outcome(&weak), WriteOutcome::Refused);
    let weak = weak.unwrap_err();
    assert_eq!(code(&weak), Some("DCS.4019"));
    assert!(
        !format!("{weak} {weak:?}").contains("weakpassword"),
        "{weak}"
    );
    let both = h
        .client
        .reset_password(&endpoint, &h.creds, PROJECT, &id, Some(&secret), Some(true))
        .await
        .unwrap_err();
    assert_eq!(code(&both), Some("DCS.4849"));
    // Never sent to an id that is not one.
    let before = h.sim.state().counters().requests_for("reset_password");
    let bad = h
        .client
        .reset_password(&endpoint, &h.creds, PROJECT, "", Some(&secret), None)
        .await;
    assert_eq!(write_outcome(&bad), WriteOutcome::NotSent);
    let counters = h.sim.state().counters();
    assert_eq!(counters.requests_for("reset_password"), before);
    assert_eq!(counters.applied_for("reset_password"), 3);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn dcs_writes_a_reset_answered_with_another_code_is_a_refusal() {
    let h = start(WriteConfig::default()).await;
    let id = running(&h, "locked-cache").await;
    let endpoint = h.sim.endpoint();
    let secret = SecretString::new("New-Passw0rd!");
    h.sim
        .state()
        .inject_fault(Fault::times(FaultKind::reset_password_code("3"), 1));
    let result = h
        .client
        .reset_password(&endpoint, &h.creds, PROJECT, &id, Some(&secret), None)
        .await;
    assert_eq!(write_outcome(&result), WriteOutcome::Refused);
    let refused = result.unwrap_err();
    assert_eq!(reset_refusal_code(&refused), Some("3"));
    assert_eq!(code(&refused), Some("ResetPassword.code.3"));
    assert_eq!(refused.api().map(|api| api.status), Some(200));
    assert_eq!(refused.reason(), "RequestRefused");
    assert!(!is_busy(&refused));
    assert!(refused.to_string().contains("not reset"), "{refused}");
    assert_eq!(h.sim.state().counters().applied_for("reset_password"), 0);
    // The fault is spent: the next reset goes through.
    h.client
        .reset_password(&endpoint, &h.creds, PROJECT, &id, Some(&secret), None)
        .await
        .unwrap();
    assert_eq!(h.sim.state().counters().applied_for("reset_password"), 1);

    // From its JSON shape (as `POST /_sim/faults` takes it), with a message of its
    // own; scoped to a route it never fires on, it is refused.
    let state = h.sim.state();
    let fault: Fault = serde_json::from_value(json!({
        "kind": "reset_password_code", "code": "5", "message": "Reset failed.", "count": 1,
    }))
    .unwrap();
    assert!(fault.validate().is_ok());
    assert!(fault.clone().on_route("resize").validate().is_err());
    state.inject_fault(fault);
    let failed = h
        .client
        .reset_password(&endpoint, &h.creds, PROJECT, &id, Some(&secret), None)
        .await
        .unwrap_err();
    assert_eq!(reset_refusal_code(&failed), Some("5"));
    assert_eq!(
        failed.api().and_then(|api| api.error_msg.as_deref()),
        Some("Reset failed.")
    );
    assert_eq!(state.counters().applied_for("reset_password"), 1);
    h.sim.shutdown().await;
}
