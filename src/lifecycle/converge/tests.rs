//! Converging in place, as plain data.

use super::*;
use crate::crd::{Capacity, Engine, InstanceTag, MaintenanceWindow};

fn desired() -> DesiredInstance {
    DesiredInstance {
        name: None,
        engine: Engine::Redis,
        engine_version: Some("6.0".into()),
        capacity: Capacity::Gi2,
        spec_code: "redis.ha.xu1.large.r2.2".into(),
        availability_zones: vec!["cn-north-4a".into()],
        vpc_id: "vpc".into(),
        subnet_id: "subnet".into(),
        security_group_id: None,
        port: None,
        no_password_access: None,
        tags: vec![InstanceTag {
            key: "env".into(),
            value: "prod".into(),
        }],
        description: None,
        maintenance_window: None,
        enterprise_project_id: None,
    }
}

fn observed() -> Instance {
    serde_json::from_value(serde_json::json!({
        "instance_id": "68d5745e-6af2-40e4-945d-fe449be00148",
        "name": "team-a-cache",
        "capacity": 2,
        "resource_spec_code": "redis.ha.xu1.large.r2.2",
        "port": 6379,
        "status": "RUNNING",
        "maintain_begin": "02:00:00",
        "maintain_end": "06:00:00",
    }))
    .unwrap()
}

fn managed() -> ManagedStatus {
    ManagedStatus {
        tags: applied_tags(&desired()),
        password_digest: Some(password_digest("uid", "old")),
        operations: Vec::new(),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn an_unset_name_is_not_managed() {
    let mut other = observed();
    other.name = Some("someone-elses-name".into());
    assert_eq!(changes(&desired(), &other, &managed(), None), []);
}

#[test]
fn nothing_differs_when_unmanaged_fields_are_absent() {
    let old = password_digest("uid", "old");
    let found = changes(&desired(), &observed(), &managed(), Some(&old));
    assert_eq!(found, []);
    assert_eq!(
        next_step(found, &[], Some(&DcsStatus::Running), false, now()),
        Step::Converged
    );
}

#[test]
fn capacity_compares_after_normalisation() {
    let mut small = desired();
    small.capacity = Capacity::Mi128;
    let mut sub_gb = observed();
    sub_gb.capacity = Some(0);
    sub_gb.capacity_minor = Some("0.125".into());
    assert_eq!(sub_gb.capacity_bytes(), Some(128 << 20));
    assert_eq!(changes(&small, &sub_gb, &managed(), None), []);
    let mut bigger = desired();
    bigger.capacity = Capacity::Gi4;
    bigger.spec_code = "redis.ha.xu1.large.r2.4".into();
    assert_eq!(
        changes(&bigger, &observed(), &managed(), None),
        [Change::Resize {
            spec_code: "redis.ha.xu1.large.r2.4".into(),
            gigabytes: 4.0
        }]
    );
}

#[test]
fn one_modify_carries_only_what_differs() {
    let mut want = desired();
    want.name = Some("renamed".into());
    want.description = Some("orders".into());
    want.maintenance_window = Some(MaintenanceWindow {
        begin: "02:00:00".into(),
        end: "06:00:00".into(),
    });
    let found = changes(&want, &observed(), &managed(), None);
    assert_eq!(
        found,
        [Change::Modify {
            name: Some("renamed".into()),
            description: Some("orders".into()),
            window: None,
            security_group_id: None,
        }]
    );
}

#[test]
fn port_is_its_own_change_and_tags_touch_only_what_the_operator_set() {
    let mut want = desired();
    want.port = Some(6380);
    want.tags = vec![InstanceTag {
        key: "team".into(),
        value: "a".into(),
    }];
    let found = changes(&want, &observed(), &managed(), None);
    assert_eq!(found[0], Change::Port(6380));
    match &found[1] {
        Change::Tags { create, delete, .. } => {
            assert_eq!(create.len(), 1);
            assert_eq!(create[0].key, "team");
            assert_eq!(delete.len(), 1);
            assert_eq!(delete[0].key, "env");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_password_resets_only_when_its_digest_changes_and_never_without_a_record() {
    let new = password_digest("uid", "new");
    let found = changes(&desired(), &observed(), &managed(), Some(&new));
    assert_eq!(
        found,
        [Change::Password {
            digest: new.clone()
        }]
    );
    let mut adopted = managed();
    adopted.password_digest = None;
    assert_eq!(
        changes(&desired(), &observed(), &adopted, Some(&new)),
        [],
        "without a record (adopted, status lost) the value is recorded, never reset"
    );
    assert_ne!(password_digest("uid", "x"), password_digest("other", "x"));
    assert!(!password_digest("uid", "hunter2").contains("hunter2"));
}

fn resize() -> Change {
    Change::Resize {
        spec_code: "redis.ha.xu1.large.r2.4".into(),
        gigabytes: 4.0,
    }
}

#[test]
fn a_write_is_made_once_per_desired_value() {
    let running = Some(&DcsStatus::Running);
    assert_eq!(
        next_step(vec![resize()], &[], running, false, now()),
        Step::Write(resize())
    );
    let accepted = record(&resize(), ACCEPTED, now(), None);
    // Just accepted: settling, nothing else is written meanwhile.
    let step = next_step(
        vec![resize(), Change::Port(1)],
        std::slice::from_ref(&accepted),
        running,
        false,
        now(),
    );
    assert!(matches!(step, Step::Busy(_)), "{step:?}");
    // Long after, still different: NotConverged, and no second write.
    let later_now = now() + chrono::TimeDelta::minutes(10);
    assert_eq!(
        next_step(
            vec![resize()],
            std::slice::from_ref(&accepted),
            running,
            false,
            later_now
        ),
        Step::Report {
            not_converged: vec![Operation::Resize],
            refused: None
        }
    );
    // Another desired value is a new write.
    let other = Change::Resize {
        spec_code: "redis.ha.xu1.large.r2.8".into(),
        gigabytes: 8.0,
    };
    assert_eq!(
        next_step(vec![other.clone()], &[accepted], running, false, later_now),
        Step::Write(other)
    );
}

#[test]
fn a_refusal_is_asked_again_only_after_the_backstop() {
    let running = Some(&DcsStatus::Running);
    let refused = record(
        &resize(),
        REFUSED,
        now(),
        Some(("DCS.4012".into(), "bad capacity".into())),
    );
    let step = next_step(
        vec![resize()],
        std::slice::from_ref(&refused),
        running,
        false,
        now(),
    );
    assert_eq!(
        step,
        Step::Report {
            not_converged: vec![],
            refused: Some(refused.clone())
        }
    );
    let after = now() + chrono::TimeDelta::minutes(31);
    assert_eq!(
        next_step(vec![resize()], &[refused], running, false, after),
        Step::Write(resize())
    );
}

#[test]
fn nothing_is_written_while_dcs_is_busy() {
    for (status, task) in [
        (Some(&DcsStatus::Extending), false),
        (Some(&DcsStatus::Running), true),
        (None, false),
    ] {
        let step = next_step(vec![resize()], &[], status, task, now());
        assert!(matches!(step, Step::Busy(_)), "{status:?} {task}: {step:?}");
    }
}

#[test]
fn records_replace_their_operation_and_are_bounded() {
    let first = record(
        &resize(),
        REFUSED,
        now(),
        Some(("C".repeat(500), "m".repeat(5000))),
    );
    // Schema maxLength counts characters.
    assert!(first.code.as_ref().unwrap().chars().count() <= 64);
    assert!(first.message.as_ref().unwrap().chars().count() <= 512);
    let managed = with_record(ManagedStatus::default(), first);
    let managed = with_record(managed, record(&resize(), ACCEPTED, now(), None));
    let managed = with_record(managed, record(&Change::Port(1), ACCEPTED, now(), None));
    assert_eq!(managed.operations.len(), 2);
}
