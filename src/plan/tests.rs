//! Exhaustive tests of the pure plan.

use super::*;
use crate::crd::Condition;
use crate::dcs::ApiError;
use chrono::TimeDelta;

const NOW: &str = "2026-01-01T00:00:00Z";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

fn owner() -> Owner {
    Owner {
        api_version: "dcs.operator.dev/v1alpha1".into(),
        kind: "DcsInstance".into(),
        name: "cache".into(),
        uid: "uid-1".into(),
    }
}

fn running() -> Instance {
    Instance {
        name: Some("dcs-a11e".into()),
        engine: Some("Redis".into()),
        engine_version: Some("6.0".into()),
        capacity: Some(2),
        ip: Some("10.0.0.1".into()),
        port: Some(6379),
        status: Some("RUNNING".into()),
        max_memory: Some(1638),
        resource_spec_code: Some("redis.ha.xu1.large.r2.2".into()),
        ..Instance::default()
    }
}

fn with_status(status: &str) -> Instance {
    Instance {
        status: Some(status.into()),
        ..running()
    }
}

fn ok(instance: Instance, at: DateTime<Utc>) -> Observation {
    Observation {
        at,
        result: Ok(Arc::new(instance)),
        consecutive_failures: 0,
    }
}

fn failed(error: DcsError, failures: u32) -> Observation {
    Observation {
        at: now(),
        result: Err(error),
        consecutive_failures: failures,
    }
}

fn api(status: u16, code: &str) -> ApiError {
    ApiError {
        status,
        error_code: Some(code.into()),
        error_msg: Some("message".into()),
        request_id: Some("req-1".into()),
    }
}

fn unavailable() -> DcsError {
    DcsError::Server(api(503, "DCS.5000"))
}

struct Case {
    current: Option<DcsInstanceStatus>,
    observation: Option<Observation>,
    problems: Vec<Problem>,
    password: Option<&'static str>,
    batched: bool,
    now: DateTime<Utc>,
}

impl Case {
    fn new(observation: Option<Observation>) -> Self {
        Case {
            current: None,
            observation,
            problems: Vec::new(),
            password: None,
            batched: false,
            now: now(),
        }
    }

    fn plan(&self) -> Plan {
        let owner = owner();
        plan(&PlanInput {
            namespace: "ns",
            owner: &owner,
            generation: Some(3),
            current: self.current.as_ref(),
            observation: self.observation.as_ref(),
            problems: &self.problems,
            connection_secret_name: "cache-dcs",
            password: self.password,
            existing_secret_type: None,
            poll_interval: Duration::from_secs(60),
            batched: self.batched,
            managed_instance_id: None,
            managed: None,
            now: self.now,
        })
    }
}

fn cond<'a>(status: &'a DcsInstanceStatus, type_: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

#[test]
fn running_instance_is_ready_with_secret() {
    let plan = Case::new(Some(ok(running(), now()))).plan();
    let s = &plan.status;
    assert_eq!(s.ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(s.port, Some(6379));
    assert_eq!(s.addresses, Some(vec!["10.0.0.1".to_string()]));
    assert_eq!(s.capacity.as_deref(), Some("2Gi"));
    assert_eq!(s.max_memory.as_deref(), Some("1638Mi"));
    assert_eq!(s.status.as_deref(), Some("RUNNING"));
    assert_eq!(
        s.resource_spec_code.as_deref(),
        Some("redis.ha.xu1.large.r2.2")
    );
    assert_eq!(s.connection_secret_name.as_deref(), Some("cache-dcs"));
    assert_eq!(s.binding.as_ref().unwrap().name, "cache-dcs");
    assert_eq!(s.observed_generation, Some(3));
    let ready = cond(s, READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Running")
    );
    assert_eq!(ready.last_transition_time, "2026-01-01T00:00:00Z");
    assert_eq!(ready.observed_generation, Some(3));
    let synced = cond(s, SYNCED);
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("True", "Observed")
    );
    assert!(plan.secret.is_some());
    // Stable: next poll at the interval plus a jitter of at most 10 %.
    let after = plan.requeue_after.unwrap();
    assert!(
        after >= Duration::from_secs(60) && after <= Duration::from_secs(66),
        "{after:?}"
    );
}

#[test]
fn every_status_class_maps_to_its_reason() {
    for (status, reason, poll_fast) in [
        ("CREATING", "Creating", true),
        ("RESTARTING", "Restarting", true),
        ("EXTENDING", "Extending", true),
        ("RESTORING", "Restoring", true),
        ("FLUSHING", "Flushing", true),
        ("UPGRADING", "Upgrading", true),
        ("ERROR", "Error", false),
        ("FROZEN", "Frozen", false),
        ("CREATEFAILED", "CreateFailed", false),
        ("SOMETHING_NEW", "UnknownStatus", true),
    ] {
        let plan = Case::new(Some(ok(with_status(status), now()))).plan();
        let ready = cond(&plan.status, READY);
        assert_eq!(ready.status, "False", "{status}");
        assert_eq!(ready.reason, reason, "{status}");
        assert_eq!(plan.status.status.as_deref(), Some(status));
        assert_eq!(cond(&plan.status, SYNCED).status, "True");
        let after = plan.requeue_after.unwrap();
        if poll_fast {
            assert_eq!(after, TRANSITIONAL_POLL, "{status}");
        } else {
            assert!(after >= Duration::from_secs(60), "{status}");
        }
    }
    let unknown = Case::new(Some(ok(with_status("SOMETHING_NEW"), now()))).plan();
    assert!(
        cond(&unknown.status, READY)
            .message
            .contains("SOMETHING_NEW")
    );
}

#[test]
fn fault_code_is_explained() {
    let instance = Instance {
        error_code: Some("dcs.04.0002".into()),
        ..with_status("CREATEFAILED")
    };
    let plan = Case::new(Some(ok(instance, now()))).plan();
    assert_eq!(plan.status.error_code.as_deref(), Some("dcs.04.0002"));
    assert_eq!(
        plan.status.error_message.as_deref(),
        Some("Instance deployment failed.")
    );
    assert!(
        cond(&plan.status, READY)
            .message
            .contains("Instance deployment failed.")
    );
    let odd = Instance {
        error_code: Some("dcs.99.0001".into()),
        ..with_status("ERROR")
    };
    let plan = Case::new(Some(ok(odd, now()))).plan();
    assert!(plan.status.error_message.unwrap().contains("dcs.99.0001"));
}

#[test]
fn sub_gb_capacity_and_cluster_addresses() {
    let instance = Instance {
        capacity: Some(0),
        capacity_minor: Some(".125".into()),
        ip: Some("10.0.0.1,10.0.0.2".into()),
        ..running()
    };
    let plan = Case::new(Some(ok(instance, now()))).plan();
    assert_eq!(plan.status.capacity.as_deref(), Some("128Mi"));
    assert_eq!(plan.status.ip.as_deref(), Some("10.0.0.1,10.0.0.2"));
    assert_eq!(plan.status.addresses.as_ref().unwrap().len(), 2);
}

#[test]
fn last_known_values_survive_a_transient_error() {
    let first = Case::new(Some(ok(running(), now()))).plan();
    for error in [
        unavailable(),
        DcsError::Transport {
            message: "connection refused".into(),
            timeout: false,
        },
        DcsError::Transport {
            message: "timed out".into(),
            timeout: true,
        },
        DcsError::Decode {
            message: "bad".into(),
            request_id: None,
        },
        DcsError::Throttled {
            retry_after: Some(Duration::from_secs(30)),
            api: api(429, "APIG.0308"),
        },
        DcsError::Unauthorized(api(401, "APIG.0301")),
        DcsError::Forbidden(api(403, "DCS.2003")),
        DcsError::NotFound(api(404, "APIGW.0101")),
    ] {
        let reason = error.reason();
        // The second failure in a row: a first transient one is not reported yet.
        let mut case = Case::new(Some(failed(error, 2)));
        case.current = Some(first.status.clone());
        case.now = now() + TimeDelta::seconds(90);
        let plan = case.plan();
        assert_eq!(plan.status.ip, first.status.ip, "{reason}");
        assert_eq!(plan.status.port, first.status.port, "{reason}");
        assert_eq!(plan.status.status, first.status.status, "{reason}");
        assert_eq!(plan.status.capacity, first.status.capacity, "{reason}");
        assert_eq!(
            plan.status.connection_secret_name,
            first.status.connection_secret_name
        );
        assert!(
            plan.secret.is_none(),
            "{reason}: no Secret write on an error"
        );
        // An outage after a success leaves Ready alone, byte for byte.
        assert_eq!(
            cond(&plan.status, READY),
            cond(&first.status, READY),
            "{reason}"
        );
        let synced = cond(&plan.status, SYNCED);
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            ("False", reason)
        );
        assert_eq!(synced.last_transition_time, "2026-01-01T00:01:30Z");
        assert!(
            !synced.message.contains("req-1"),
            "request ids would churn status"
        );
    }
}

#[test]
fn before_the_first_success_ready_carries_the_observation_problem() {
    let plan = Case::new(Some(failed(unavailable(), 1))).plan();
    let ready = cond(&plan.status, READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "DcsUnavailable")
    );
    assert_eq!(plan.status.ip, None);
    assert!(plan.secret.is_none());
}

#[test]
fn instance_not_found_only_for_its_codes() {
    for code in ["DCS.3022", "111404022"] {
        let plan = Case::new(Some(failed(DcsError::NotFound(api(404, code)), 1))).plan();
        let ready = cond(&plan.status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InstanceNotFound")
        );
        assert_eq!(cond(&plan.status, SYNCED).status, "True");
    }
    let plan = Case::new(Some(failed(DcsError::NotFound(api(404, "APIGW.0101")), 1))).plan();
    assert_eq!(cond(&plan.status, READY).reason, "EndpointNotFound");
    assert_eq!(cond(&plan.status, SYNCED).reason, "EndpointNotFound");
}

#[test]
fn instance_deleted_after_success_flips_ready_but_keeps_values() {
    let first = Case::new(Some(ok(running(), now()))).plan();
    let mut case = Case::new(Some(failed(DcsError::NotFound(api(404, "DCS.3022")), 1)));
    case.current = Some(first.status.clone());
    let plan = case.plan();
    assert_eq!(cond(&plan.status, READY).reason, "InstanceNotFound");
    assert_eq!(plan.status.ip.as_deref(), Some("10.0.0.1"));
    assert!(plan.secret.is_none());
}

#[test]
fn last_transition_time_moves_only_on_a_flip() {
    let first = Case::new(Some(ok(running(), now()))).plan();
    // Same truth later: nothing moves, the whole status is identical.
    let mut later = Case::new(Some(ok(running(), now() + TimeDelta::seconds(600))));
    later.current = Some(first.status.clone());
    later.now = now() + TimeDelta::seconds(600);
    let again = later.plan();
    assert_eq!(again.status, first.status);
    // RUNNING -> RESTARTING flips Ready: its time moves, Synced's does not.
    let mut flip = Case::new(Some(ok(
        with_status("RESTARTING"),
        now() + TimeDelta::seconds(700),
    )));
    flip.current = Some(first.status.clone());
    flip.now = now() + TimeDelta::seconds(700);
    let flipped = flip.plan();
    assert_eq!(
        cond(&flipped.status, READY).last_transition_time,
        "2026-01-01T00:11:40Z"
    );
    assert_eq!(
        cond(&flipped.status, SYNCED).last_transition_time,
        "2026-01-01T00:00:00Z"
    );
    // RESTARTING -> EXTENDING: still False, new reason, same time.
    let mut reason_only = Case::new(Some(ok(
        with_status("EXTENDING"),
        now() + TimeDelta::seconds(800),
    )));
    reason_only.current = Some(flipped.status.clone());
    reason_only.now = now() + TimeDelta::seconds(800);
    let changed = reason_only.plan();
    assert_eq!(cond(&changed.status, READY).reason, "Extending");
    assert_eq!(
        cond(&changed.status, READY).last_transition_time,
        "2026-01-01T00:11:40Z"
    );
}

#[test]
fn an_answer_without_address_keeps_the_last_endpoint() {
    let first = Case::new(Some(ok(running(), now()))).plan();
    let mut case = Case::new(Some(ok(
        Instance {
            ip: None,
            port: None,
            ..with_status("EXTENDING")
        },
        now(),
    )));
    case.current = Some(first.status.clone());
    let plan = case.plan();
    assert_eq!(plan.status.ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(plan.status.port, Some(6379));
    let secret = plan
        .secret
        .expect("the Secret keeps the last good endpoint");
    assert_eq!(secret.data.unwrap()["host"].0, b"10.0.0.1");
}

#[test]
fn no_address_ever_means_no_secret() {
    let creating = Instance {
        ip: None,
        port: None,
        ..with_status("CREATING")
    };
    let plan = Case::new(Some(ok(creating, now()))).plan();
    assert!(plan.secret.is_none());
    assert_eq!(plan.status.connection_secret_name, None);
    let blank = Instance {
        ip: Some(" , ".into()),
        ..running()
    };
    let plan = Case::new(Some(ok(blank, now()))).plan();
    assert!(plan.secret.is_none());
    assert_eq!(cond(&plan.status, READY).status, "False");
}

#[test]
fn invalid_spec_wins_and_waits_for_a_change() {
    let mut case = Case::new(Some(ok(running(), now())));
    case.problems = vec![Problem::InvalidSpec(SpecProblem::PlainHttp)];
    let plan = case.plan();
    let ready = cond(&plan.status, READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(ready.message.contains("spec.endpoint"));
    assert_eq!(cond(&plan.status, SYNCED).reason, "InvalidSpec");
    assert!(plan.secret.is_none());
    assert_eq!(plan.requeue_after, None);
}

#[test]
fn credentials_not_found_leaves_ready_alone_after_a_success() {
    let first = Case::new(Some(ok(running(), now()))).plan();
    let mut case = Case::new(None);
    case.current = Some(first.status.clone());
    case.problems = vec![Problem::Credentials(CredentialsProblem::SecretMissing {
        name: "creds".into(),
        namespace: "ns".into(),
    })];
    let plan = case.plan();
    assert_eq!(cond(&plan.status, READY), cond(&first.status, READY));
    assert_eq!(cond(&plan.status, SYNCED).reason, "CredentialsNotFound");
    assert_eq!(plan.status.ip.as_deref(), Some("10.0.0.1"));
    // Before any success it is what Ready says too.
    let mut fresh = Case::new(None);
    fresh.problems = vec![Problem::Credentials(CredentialsProblem::SecretMissing {
        name: "creds".into(),
        namespace: "ns".into(),
    })];
    assert_eq!(
        cond(&fresh.plan().status, READY).reason,
        "CredentialsNotFound"
    );
}

#[test]
fn password_and_conflict_block_ready_and_the_secret() {
    for problem in [
        Problem::Password(PasswordProblem::KeyMissing {
            name: "pw".into(),
            key: "password".into(),
        }),
        Problem::SecretConflict {
            name: "cache-dcs".into(),
        },
    ] {
        let reason = problem.reason();
        let mut case = Case::new(Some(ok(running(), now())));
        case.problems = vec![problem.clone()];
        let plan = case.plan();
        assert_eq!(cond(&plan.status, READY).reason, reason);
        assert_eq!(cond(&plan.status, READY).status, "False");
        assert!(plan.secret.is_none());
        assert_eq!(plan.status.ip.as_deref(), Some("10.0.0.1"));
    }
    let mut conflict = Case::new(Some(ok(running(), now())));
    conflict.problems = vec![Problem::SecretConflict { name: "x".into() }];
    assert_eq!(conflict.plan().status.connection_secret_name, None);
}

#[test]
fn password_goes_into_the_secret() {
    let mut case = Case::new(Some(ok(running(), now())));
    case.password = Some("s3cret");
    let secret = case.plan().secret.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"s3cret");
    // ...and never into status.
    let status = serde_json::to_string(&case.plan().status).unwrap();
    assert!(!status.contains("s3cret"));
}

#[test]
fn backoff_doubles_up_to_the_poll_interval() {
    let delays: Vec<u64> = (1..=6)
        .map(|n| {
            poll_delay(
                &failed(unavailable(), n),
                Duration::from_secs(60),
                "u",
                false,
            )
            .as_secs()
        })
        .collect();
    assert_eq!(delays, vec![10, 20, 40, 60, 60, 60]);
    let throttled = DcsError::Throttled {
        retry_after: Some(Duration::from_secs(45)),
        api: api(429, "APIG.0308"),
    };
    assert_eq!(
        poll_delay(&failed(throttled, 1), Duration::from_secs(60), "u", false).as_secs(),
        45
    );
    let unauthorized = DcsError::Unauthorized(api(401, "APIG.0301"));
    assert_eq!(
        poll_delay(
            &failed(unauthorized, 1),
            Duration::from_secs(60),
            "u",
            false
        ),
        AUTH_RETRY
    );
}

#[test]
fn jitter_is_stable_and_bounded() {
    let interval = Duration::from_secs(100);
    for uid in ["a", "b", "c", "0b1f4f0e-1", "zzz"] {
        let j = jitter(interval, uid);
        assert_eq!(j, jitter(interval, uid));
        assert!(j <= Duration::from_secs(10));
    }
    assert_ne!(jitter(interval, "a"), jitter(interval, "b"));
}

#[test]
fn requeue_counts_from_the_observation_time() {
    let mut case = Case::new(Some(ok(running(), now())));
    case.now = now() + TimeDelta::seconds(30);
    let after = case.plan().requeue_after.unwrap();
    assert!(
        after >= Duration::from_secs(30) && after <= Duration::from_secs(36),
        "{after:?}"
    );
    case.now = now() + TimeDelta::seconds(3600);
    assert_eq!(case.plan().requeue_after, Some(Duration::from_secs(1)));
}

#[test]
fn quantities() {
    assert_eq!(quantity(2 << 30), "2Gi");
    assert_eq!(quantity(128 << 20), "128Mi");
    assert_eq!(quantity(1 << 40), "1Ti");
    assert_eq!(quantity(1536 << 20), "1536Mi");
    assert_eq!(quantity(1000), "1000");
}

#[test]
fn messages_are_bounded() {
    let long = DcsError::Decode {
        message: "x".repeat(5000),
        request_id: None,
    };
    let plan = Case::new(Some(failed(long, 1))).plan();
    assert!(cond(&plan.status, SYNCED).message.chars().count() <= 1025);
}

#[test]
fn events_only_on_transitions() {
    let first = Case::new(Some(ok(running(), now()))).plan();
    let events = transition_events(None, &first.status);
    assert_eq!(
        events.iter().map(|e| e.reason).collect::<Vec<_>>(),
        vec!["BecameReady"]
    );
    // The same truth again: nothing to say.
    assert!(transition_events(Some(&first.status), &first.status).is_empty());
    // RUNNING -> RESTARTING with a new address.
    let mut case = Case::new(Some(ok(
        Instance {
            ip: Some("10.0.0.9".into()),
            ..with_status("RESTARTING")
        },
        now(),
    )));
    case.current = Some(first.status.clone());
    let second = case.plan();
    let reasons: Vec<_> = transition_events(Some(&first.status), &second.status)
        .iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons,
        vec!["NotReady", "StatusChanged", "EndpointChanged"]
    );
    // An outage after success: no Ready event (Ready is untouched), no status change.
    let mut outage = Case::new(Some(failed(unavailable(), 1)));
    outage.current = Some(first.status.clone());
    assert!(transition_events(Some(&first.status), &outage.plan().status).is_empty());
    // Authentication failing is worth one warning, not one per poll.
    let mut auth = Case::new(Some(failed(
        DcsError::Unauthorized(api(401, "APIG.0301")),
        1,
    )));
    auth.current = Some(first.status.clone());
    let denied = auth.plan();
    let events = transition_events(Some(&first.status), &denied.status);
    assert_eq!(
        events.iter().map(|e| e.reason).collect::<Vec<_>>(),
        vec!["AuthenticationFailed"]
    );
    assert!(events[0].warning);
    assert!(transition_events(Some(&denied.status), &denied.status).is_empty());
}

#[test]
fn secret_conflict_is_an_event() {
    let mut case = Case::new(Some(ok(running(), now())));
    case.problems = vec![Problem::SecretConflict {
        name: "taken".into(),
    }];
    let events = transition_events(None, &case.plan().status);
    assert_eq!(
        events.iter().map(|e| e.reason).collect::<Vec<_>>(),
        vec!["SecretConflict"]
    );
}

#[test]
fn adaptive_polling_by_class_and_batching() {
    let interval = Duration::from_secs(60);
    let delay = |status: &str, batched: bool| {
        poll_delay(&ok(with_status(status), now()), interval, "u", batched)
    };
    let j = jitter(interval, "u");
    assert_eq!(delay("RUNNING", false), interval + j);
    assert_eq!(
        delay("ERROR", false),
        interval * 2 + j,
        "degraded polls slower"
    );
    assert_eq!(delay("CREATEFAILED", false), interval * 2 + j);
    assert_eq!(delay("CREATING", false), TRANSITIONAL_POLL);
    // Batched: the group's list keeps stable answers fresh; transitional ones poll alone.
    assert_eq!(delay("RUNNING", true), interval * 3 + j);
    assert_eq!(delay("CREATING", true), TRANSITIONAL_POLL);
    assert_eq!(
        poll_delay(&failed(unavailable(), 1), interval, "u", true),
        interval * 3 + j,
        "a failing list is retried by the group, not by each object"
    );
    let mut case = Case::new(Some(ok(running(), now())));
    case.batched = true;
    let owner_jitter = jitter(interval, &owner().uid);
    assert_eq!(case.plan().requeue_after, Some(interval * 3 + owner_jitter));
}

#[test]
fn a_single_transient_failure_is_retried_before_it_is_reported() {
    let first = Case::new(Some(ok(running(), now()))).plan();
    let mut blip = Case::new(Some(failed(unavailable(), 1)));
    blip.current = Some(first.status.clone());
    assert_eq!(
        blip.plan().status,
        first.status,
        "nothing written for one blip"
    );
    let mut again = Case::new(Some(failed(unavailable(), 2)));
    again.current = Some(first.status.clone());
    assert_eq!(cond(&again.plan().status, SYNCED).reason, "DcsUnavailable");
    // Authentication failures are not transient: reported at once.
    let mut denied = Case::new(Some(failed(
        DcsError::Unauthorized(api(401, "APIG.0301")),
        1,
    )));
    denied.current = Some(first.status.clone());
    assert_eq!(cond(&denied.plan().status, SYNCED).reason, "Unauthorized");
}

#[test]
fn an_answer_older_than_three_poll_intervals_is_stale() {
    let mut case = Case::new(Some(ok(running(), now())));
    case.batched = true;
    let fresh = case.plan();
    assert_eq!(cond(&fresh.status, SYNCED).status, "True");
    // Three intervals and the largest jitter (60 s each: 186 s) is not yet stale.
    case.current = Some(fresh.status.clone());
    case.now = now() + TimeDelta::seconds(186);
    assert_eq!(cond(&case.plan().status, SYNCED).reason, "Observed");
    case.now = now() + TimeDelta::seconds(187);
    let stale = case.plan();
    let synced = cond(&stale.status, SYNCED);
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", "Stale")
    );
    assert!(
        synced.message.contains("2026-01-01T00:00:00Z"),
        "{}",
        synced.message
    );
    // Ready is not flipped by staleness alone; the values are kept.
    assert_eq!(cond(&stale.status, READY).status, "True");
    assert_eq!(stale.status.ip.as_deref(), Some("10.0.0.1"));
    // Deterministic: planning again later changes nothing.
    case.current = Some(stale.status.clone());
    case.now = now() + TimeDelta::seconds(900);
    assert_eq!(case.plan().status, stale.status);
}

#[test]
fn status_always_fits_the_schema() {
    let long = "界".repeat(10_000);
    let mut instance = running();
    instance.name = Some(long.clone());
    instance.engine = Some(long.as_str().into());
    instance.status = Some(long.as_str().into());
    instance.ip = Some(format!("{long},{long}"));
    instance.error_code = Some(long.clone());
    let planned = Case::new(Some(ok(instance, now()))).plan();
    let s = &planned.status;
    let chars = |v: Option<&str>| v.map_or(0, |t| t.chars().count());
    assert_eq!(chars(s.name.as_deref()), 256);
    assert_eq!(chars(s.engine.as_deref()), 64);
    assert_eq!(chars(s.status.as_deref()), 64);
    assert!(chars(s.ip.as_deref()) <= 4096);
    assert_eq!(chars(s.error_code.as_deref()), 64);
    assert!(
        s.addresses
            .iter()
            .flatten()
            .all(|a| a.chars().count() <= 256)
    );
    assert!(chars(s.error_message.as_deref()) <= 1024);
    for c in &s.conditions {
        assert!(c.message.chars().count() <= 2048 && c.reason.chars().count() <= 64);
    }
    // Clipping is idempotent: planning over the clipped status changes nothing.
    let mut again = Case::new(Some(ok(running(), now())));
    again.current = Some(s.clone());
    let mut clipped = s.clone();
    clip_to_schema(&mut clipped);
    assert_eq!(&clipped, s);
}

#[test]
fn debug_never_shows_the_password_or_secret_data() {
    let mut case = Case::new(Some(ok(running(), now())));
    case.password = Some("hunter2-secret");
    let owner = owner();
    let input = PlanInput {
        namespace: "ns",
        owner: &owner,
        generation: Some(3),
        current: None,
        observation: case.observation.as_ref(),
        problems: &[],
        connection_secret_name: "cache-dcs",
        password: case.password,
        existing_secret_type: None,
        poll_interval: Duration::from_secs(60),
        batched: false,
        managed_instance_id: None,
        managed: None,
        now: now(),
    };
    let planned = plan(&input);
    assert!(planned.secret.is_some());
    for shown in [
        format!("{input:?}"),
        format!("{planned:?}"),
        format!("{planned:#?}"),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("104, 117, 110"), "no bytes either");
    }
    assert!(format!("{planned:?}").contains("password=<redacted>"));
}

#[test]
fn a_secret_type_mismatch_is_a_note_on_ready() {
    let case = Case::new(Some(ok(running(), now())));
    let owner = owner();
    let mut input = PlanInput {
        namespace: "ns",
        owner: &owner,
        generation: Some(3),
        current: None,
        observation: case.observation.as_ref(),
        problems: &[],
        connection_secret_name: "cache-dcs",
        password: None,
        existing_secret_type: Some("Opaque"),
        poll_interval: Duration::from_secs(60),
        batched: false,
        managed_instance_id: None,
        managed: None,
        now: now(),
    };
    let planned = plan(&input);
    let ready = cond(&planned.status, READY);
    assert_eq!(ready.status, "True");
    assert!(ready.message.contains("type Opaque"), "{}", ready.message);
    assert!(planned.secret.is_some());
    input.existing_secret_type = Some("servicebinding.io/redis");
    assert!(!cond(&plan(&input).status, READY).message.contains("note"));
}
