//! The lifecycle's decisions, as plain data.

use super::*;

const UID: &str = "11111111-2222-3333-4444-555555555555";
const OTHER: &str = "99999999-2222-3333-4444-555555555555";
const ID: &str = "68d5745e-6af2-40e4-945d-fe449be00148";
const ID2: &str = "78d5745e-6af2-40e4-945d-fe449be00148";

fn view<'a>(marks: &'a Marks) -> View<'a> {
    View {
        uid: UID,
        generation: Some(1),
        policy: ManagementPolicy::Manage,
        deletion_policy: DeletionPolicy::Orphan,
        spec_instance_id: None,
        marks,
        deleting: false,
        has_cleanup_finalizer: false,
        refused_generation: None,
        crd_deleting: false,
        lookup_window_over: false,
    }
}

fn attempt(uid: &str, number: u32, phase: Phase) -> Option<Attempt> {
    Some(Attempt::new(uid, number, phase))
}

fn marks(attempt: Option<Attempt>, recorded: Option<&str>) -> Marks {
    Marks {
        attempt,
        recorded_id: recorded.map(String::from),
        ..Marks::default()
    }
}

#[test]
fn attempts_round_trip_and_hostile_values_do_not_parse() {
    let made = Attempt::new(UID, 3, Phase::Sent);
    assert_eq!(made.to_string(), format!("{UID}/3/sent"));
    assert_eq!(Attempt::parse(&made.to_string()), Some(made));
    for bad in [
        "",
        "x",
        &format!("{UID}/0/sent"),
        &format!("{UID}/1/sent/extra"),
        &format!("{UID}/-1/sent"),
        &format!("{UID}/1/Sent"),
        &format!("{UID}/99999999999/sent"),
        &format!("{}/1/sent", "a".repeat(200)),
        "a b/1/sent",
        &"/".repeat(10_000),
    ] {
        assert_eq!(Attempt::parse(bad), None, "{bad:?}");
    }
    assert_eq!(
        Attempt::new(UID, u32::MAX, Phase::Refused).next(UID).number,
        u32::MAX
    );
}

#[test]
fn a_new_managed_object_claims_attempt_one() {
    let m = Marks::default();
    assert_eq!(
        decide(&view(&m)),
        Decision::Claim {
            attempt: Attempt::new(UID, 1, Phase::Claimed)
        }
    );
}

#[test]
fn a_claimed_attempt_is_superseded_by_the_next_number() {
    let m = marks(attempt(UID, 4, Phase::Claimed), None);
    assert_eq!(
        decide(&view(&m)),
        Decision::Claim {
            attempt: Attempt::new(UID, 5, Phase::Claimed)
        }
    );
}

#[test]
fn a_sent_attempt_is_only_ever_resolved_by_lookup() {
    let m = marks(attempt(UID, 2, Phase::Sent), None);
    let sent = Attempt::new(UID, 2, Phase::Sent);
    assert_eq!(
        decide(&view(&m)),
        Decision::Resolve {
            attempt: sent.clone()
        }
    );
    // Still inside the window, retry-create changes nothing.
    let mut retry = m.clone();
    retry.retry_create = true;
    assert_eq!(
        decide(&view(&retry)),
        Decision::Resolve {
            attempt: sent.clone()
        }
    );
    // After the window, nothing but the user's retry-create starts a new attempt.
    let mut v = view(&m);
    v.lookup_window_over = true;
    assert_eq!(decide(&v), Decision::Resolve { attempt: sent });
    let mut v = view(&retry);
    v.lookup_window_over = true;
    assert_eq!(
        decide(&v),
        Decision::Claim {
            attempt: Attempt::new(UID, 3, Phase::Claimed)
        }
    );
}

#[test]
fn a_refused_attempt_waits_for_a_spec_change_or_retry_create() {
    let m = marks(attempt(UID, 1, Phase::Refused), None);
    let mut v = view(&m);
    v.refused_generation = Some(1);
    assert_eq!(decide(&v), Decision::Blocked(Blocked::Refused));
    v.generation = Some(2);
    assert_eq!(
        decide(&v),
        Decision::Claim {
            attempt: Attempt::new(UID, 2, Phase::Claimed)
        }
    );
    let mut retry = m.clone();
    retry.retry_create = true;
    let mut v = view(&retry);
    v.refused_generation = Some(1);
    assert!(matches!(decide(&v), Decision::Claim { .. }));
}

#[test]
fn a_recorded_id_is_observed_and_retry_create_asks_about_it() {
    let m = marks(attempt(UID, 1, Phase::Created), Some(ID));
    assert_eq!(
        decide(&view(&m)),
        Decision::Observe {
            instance_id: ID.into()
        }
    );
    let mut retry = m.clone();
    retry.retry_create = true;
    assert_eq!(
        decide(&view(&retry)),
        Decision::RetryCreated {
            instance_id: ID.into()
        }
    );
}

#[test]
fn marks_of_another_uid_block_everything_but_a_matching_reclaim() {
    let m = marks(attempt(OTHER, 1, Phase::Created), Some(ID));
    assert_eq!(
        decide(&view(&m)),
        Decision::Blocked(Blocked::OwnershipMismatch {
            recorded_uid: OTHER.into()
        })
    );
    let mut reclaim = m.clone();
    reclaim.reclaim_from = Some(OTHER.into());
    assert_eq!(
        decide(&view(&reclaim)),
        Decision::Reclaim {
            instance_id: ID.into(),
            from_uid: OTHER.into()
        }
    );
    let mut wrong = m.clone();
    wrong.reclaim_from = Some(UID.into());
    assert!(matches!(
        decide(&view(&wrong)),
        Decision::Blocked(Blocked::OwnershipMismatch { .. })
    ));
    // A copied object that was still claiming does not create either.
    let m = marks(attempt(OTHER, 1, Phase::Claimed), None);
    assert!(matches!(
        decide(&view(&m)),
        Decision::Blocked(Blocked::OwnershipMismatch { .. })
    ));
    let m = marks(None, Some(ID));
    assert_eq!(
        decide(&view(&m)),
        Decision::Blocked(Blocked::IdWithoutAttempt)
    );
}

#[test]
fn adoption_and_instance_id_mismatches() {
    let none = Marks::default();
    let mut v = view(&none);
    v.spec_instance_id = Some(ID);
    assert_eq!(
        decide(&v),
        Decision::Adopt {
            instance_id: ID.into()
        }
    );
    let created = marks(attempt(UID, 1, Phase::Created), Some(ID));
    let mut v = view(&created);
    v.spec_instance_id = Some(ID);
    assert_eq!(
        decide(&v),
        Decision::Observe {
            instance_id: ID.into()
        }
    );
    v.spec_instance_id = Some(ID2);
    assert_eq!(
        decide(&v),
        Decision::Blocked(Blocked::InstanceIdMismatch {
            recorded: ID.into()
        })
    );
    // Switched to Observe with another id: the same refusal.
    v.policy = ManagementPolicy::Observe;
    assert!(matches!(
        decide(&v),
        Decision::Blocked(Blocked::InstanceIdMismatch { .. })
    ));
    v.spec_instance_id = Some(ID);
    assert!(matches!(decide(&v), Decision::Observe { .. }));
    // instanceId set while a create is unresolved: resolved first, adopted after the
    // window (never stuck).
    let sent = marks(attempt(UID, 1, Phase::Sent), None);
    let mut v = view(&sent);
    v.spec_instance_id = Some(ID);
    assert_eq!(
        decide(&v),
        Decision::Resolve {
            attempt: Attempt::new(UID, 1, Phase::Sent)
        }
    );
    v.lookup_window_over = true;
    assert_eq!(
        decide(&v),
        Decision::Adopt {
            instance_id: ID.into()
        }
    );
}

#[test]
fn malformed_annotations_are_reported_not_guessed() {
    let m = Marks {
        malformed: Some(CREATE_ATTEMPT_ANNOTATION),
        ..Marks::default()
    };
    assert_eq!(
        decide(&view(&m)),
        Decision::Blocked(Blocked::MalformedAnnotation(CREATE_ATTEMPT_ANNOTATION))
    );
}

fn deleting<'a>(m: &'a Marks, policy: DeletionPolicy) -> View<'a> {
    let mut v = view(m);
    v.deleting = true;
    v.has_cleanup_finalizer = true;
    v.deletion_policy = policy;
    v
}

#[test]
fn deletion_with_orphan_releases_and_names_an_unresolved_create() {
    let none = Marks::default();
    assert_eq!(
        decide(&deleting(&none, DeletionPolicy::Orphan)),
        Decision::Release {
            resolve_first: None
        }
    );
    let sent = marks(attempt(UID, 1, Phase::Sent), None);
    assert_eq!(
        decide(&deleting(&sent, DeletionPolicy::Orphan)),
        Decision::Release {
            resolve_first: attempt(UID, 1, Phase::Sent)
        }
    );
    let mut v = deleting(&none, DeletionPolicy::Orphan);
    v.has_cleanup_finalizer = false;
    assert_eq!(decide(&v), Decision::Nothing);
}

#[test]
fn deletion_with_delete_deletes_only_what_it_can_name() {
    let created = marks(attempt(UID, 1, Phase::Created), Some(ID));
    assert_eq!(
        decide(&deleting(&created, DeletionPolicy::Delete)),
        Decision::DeleteInstance {
            instance_id: ID.into()
        }
    );
    let empty = Marks::default();
    let mut adopted = deleting(&empty, DeletionPolicy::Delete);
    adopted.spec_instance_id = Some(ID2);
    assert_eq!(
        decide(&adopted),
        Decision::DeleteInstance {
            instance_id: ID2.into()
        }
    );
    let claimed = marks(attempt(UID, 1, Phase::Claimed), None);
    assert_eq!(
        decide(&deleting(&claimed, DeletionPolicy::Delete)),
        Decision::Release {
            resolve_first: None
        }
    );
    let sent = marks(attempt(UID, 1, Phase::Sent), None);
    assert_eq!(
        decide(&deleting(&sent, DeletionPolicy::Delete)),
        Decision::ResolveForDelete {
            attempt: Attempt::new(UID, 1, Phase::Sent)
        }
    );
    let mut over = deleting(&sent, DeletionPolicy::Delete);
    over.lookup_window_over = true;
    assert!(matches!(decide(&over), Decision::Release { .. }));
    // A copy deletes nothing and is never held up.
    let copied = marks(attempt(OTHER, 1, Phase::Created), Some(ID));
    assert_eq!(
        decide(&deleting(&copied, DeletionPolicy::Delete)),
        Decision::Release {
            resolve_first: None
        }
    );
    // The recorded id wins over a contradicting spec id.
    let mut both = deleting(&created, DeletionPolicy::Delete);
    both.spec_instance_id = Some(ID2);
    assert_eq!(
        decide(&both),
        Decision::DeleteInstance {
            instance_id: ID.into()
        }
    );
}

#[test]
fn while_the_crd_is_deleted_every_object_is_orphan() {
    let created = marks(attempt(UID, 1, Phase::Created), Some(ID));
    let mut v = deleting(&created, DeletionPolicy::Delete);
    v.crd_deleting = true;
    assert_eq!(
        decide(&v),
        Decision::Release {
            resolve_first: None
        }
    );
}

#[test]
fn the_cleanup_finalizer_is_wanted_while_a_create_is_unresolved_or_with_delete() {
    let none = Marks::default();
    assert!(!view(&none).wants_cleanup_finalizer());
    let mut v = view(&none);
    v.deletion_policy = DeletionPolicy::Delete;
    assert!(v.wants_cleanup_finalizer());
    for phase in [Phase::Claimed, Phase::Sent] {
        let m = marks(attempt(UID, 1, phase), None);
        assert!(view(&m).wants_cleanup_finalizer(), "{phase:?}");
    }
    for (phase, id) in [(Phase::Refused, None), (Phase::Created, Some(ID))] {
        let m = marks(attempt(UID, 1, phase), id);
        assert!(!view(&m).wants_cleanup_finalizer(), "{phase:?}");
    }
    let mut observe = view(&none);
    observe.policy = ManagementPolicy::Observe;
    observe.deletion_policy = DeletionPolicy::Delete;
    assert!(!observe.wants_cleanup_finalizer());
}

#[test]
fn marks_are_read_from_annotations() {
    let mut obj = DcsInstance::new("c", Default::default());
    let annotations = obj
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(CREATE_ATTEMPT_ANNOTATION.into(), format!("{UID}/2/sent"));
    annotations.insert(
        CREATE_SENT_AT_ANNOTATION.into(),
        "2026-11-30T10:00:00Z".into(),
    );
    annotations.insert(RETRY_CREATE_ANNOTATION.into(), "now".into());
    let m = Marks::of(&obj);
    assert_eq!(m.attempt, attempt(UID, 2, Phase::Sent));
    assert!(m.sent_at.is_some() && m.retry_create && m.malformed.is_none());
    let annotations = obj
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(INSTANCE_ID_ANNOTATION.into(), "not-an-id".into());
    assert_eq!(Marks::of(&obj).malformed, Some(INSTANCE_ID_ANNOTATION));
}
