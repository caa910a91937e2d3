//! PURE: the managed lifecycle (`managementPolicy: Manage`) as plain data: the
//! annotations that record a create attempt, the instance name, and [`decide`],
//! which says what one reconcile should do next. The I/O that carries it out is
//! `controller::lifecycle`; nothing here reads a clock or the network.
//!
//! The rules (docs/managing.md): a create is attempted at most once per attempt
//! number, and an attempt is never ambiguous. Each step is recorded in metadata
//! before the next is taken (`claimed` before the lookup, `sent` before the POST,
//! then the id), each with the previous resourceVersion as precondition, so two
//! replicas, a crash or a restore can never both send a create.

pub mod converge;
pub mod naming;

use std::fmt;

use chrono::{DateTime, Utc};

use crate::crd::{DcsInstance, DeletionPolicy, ManagementPolicy};
use crate::dcs::bounded::is_instance_id;

/// `<uid>/<n>/<phase>`: the create attempt in progress or last made.
pub const CREATE_ATTEMPT_ANNOTATION: &str = "dcs.operator.dev/create-attempt";
/// When the attempt's POST was about to be sent (RFC 3339): the lookup window
/// starts here.
pub const CREATE_SENT_AT_ANNOTATION: &str = "dcs.operator.dev/create-sent-at";
/// The created instance's id: metadata survives a restore that drops status.
pub const INSTANCE_ID_ANNOTATION: &str = "dcs.operator.dev/instance-id";
/// Set by a user (any value) to start a new attempt after a refusal, an
/// unresolved create or a CREATEFAILED instance.
pub const RETRY_CREATE_ANNOTATION: &str = "dcs.operator.dev/retry-create";
/// Set by a user after a restore changed the uid: `<old uid>`.
pub const RECLAIM_FROM_ANNOTATION: &str = "dcs.operator.dev/reclaim-from";

/// Held while a create is unresolved and whenever `deletionPolicy: Delete`.
pub const CLEANUP_FINALIZER: &str = "dcs.operator.dev/cleanup";
/// Held on a credentials Secret while a `Delete` DcsInstance needs it to clean up.
pub const IN_USE_FINALIZER: &str = "dcs.operator.dev/in-use";

/// The ownership tag on every instance the operator creates or adopts; its value
/// is the DcsInstance's uid.
pub const OWNER_TAG_KEY: &str = "dcs-operator-uid";

/// The longest annotation value read (a uid, a number and a phase fit in 64).
const MAX_ANNOTATION_VALUE: usize = 128;

/// Where a create attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taken, before the lookup: nothing was sent. Any replica may supersede it.
    Claimed,
    /// The POST may have been sent: only a lookup resolves it, never a new POST.
    Sent,
    /// DCS refused it, or the name is taken: nothing was created.
    Refused,
    /// The id is recorded in `instance-id`.
    Created,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Claimed => "claimed",
            Phase::Sent => "sent",
            Phase::Refused => "refused",
            Phase::Created => "created",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "claimed" => Phase::Claimed,
            "sent" => Phase::Sent,
            "refused" => Phase::Refused,
            "created" => Phase::Created,
            _ => return None,
        })
    }
}

/// One create attempt, as its annotation records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The uid of the DcsInstance that made it.
    pub uid: String,
    /// 1, 2, …: a new attempt (after a refusal, a superseded claim, retry-create)
    /// takes the next number.
    pub number: u32,
    pub phase: Phase,
}

impl Attempt {
    pub fn new(uid: &str, number: u32, phase: Phase) -> Self {
        Self {
            uid: uid.to_string(),
            number,
            phase,
        }
    }

    /// Parses `<uid>/<n>/<phase>`; None for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_ANNOTATION_VALUE {
            return None;
        }
        let mut parts = text.split('/');
        let (uid, number, phase) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !valid_uid(uid) {
            return None;
        }
        Some(Self {
            uid: uid.to_string(),
            number: number.parse().ok().filter(|n| *n > 0)?,
            phase: Phase::parse(phase)?,
        })
    }

    /// The same attempt in another phase.
    pub fn at(&self, phase: Phase) -> Self {
        Self {
            phase,
            ..self.clone()
        }
    }

    /// The next attempt, claimed.
    pub fn next(&self, uid: &str) -> Self {
        Self::new(uid, self.number.saturating_add(1), Phase::Claimed)
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.uid, self.number, self.phase.as_str())
    }
}

/// A Kubernetes uid as the API server makes them: at most 64 characters of
/// letters, digits and '-' (it is also a tag value, which takes at most 43).
pub fn valid_uid(uid: &str) -> bool {
    (1..=43).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The lifecycle annotations of one object, parsed. A value that does not parse is
/// kept as the annotation's name in `malformed`: it is reported, never guessed at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    pub attempt: Option<Attempt>,
    pub recorded_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub retry_create: bool,
    pub reclaim_from: Option<String>,
    pub malformed: Option<&'static str>,
}

impl Marks {
    pub fn of(obj: &DcsInstance) -> Self {
        let mut marks = Marks::default();
        let Some(annotations) = obj.metadata.annotations.as_ref() else {
            return marks;
        };
        let get = |key: &str| annotations.get(key).map(String::as_str);
        if let Some(text) = get(CREATE_ATTEMPT_ANNOTATION) {
            marks.attempt = Attempt::parse(text);
            if marks.attempt.is_none() {
                marks.malformed = Some(CREATE_ATTEMPT_ANNOTATION);
            }
        }
        if let Some(text) = get(INSTANCE_ID_ANNOTATION) {
            if is_instance_id(text) {
                marks.recorded_id = Some(text.to_string());
            } else {
                marks.malformed = Some(INSTANCE_ID_ANNOTATION);
            }
        }
        if let Some(text) = get(CREATE_SENT_AT_ANNOTATION) {
            // Unreadable: the window counts as over. Lookups go on (every 5 min) and
            // never a POST: only the user's retry-create starts a new attempt.
            marks.sent_at = (text.len() <= MAX_ANNOTATION_VALUE)
                .then(|| DateTime::parse_from_rfc3339(text).ok())
                .flatten()
                .map(|at| at.with_timezone(&Utc));
        }
        marks.retry_create = get(RETRY_CREATE_ANNOTATION).is_some();
        if let Some(text) = get(RECLAIM_FROM_ANNOTATION) {
            if valid_uid(text) {
                marks.reclaim_from = Some(text.to_string());
            } else {
                marks.malformed = Some(RECLAIM_FROM_ANNOTATION);
            }
        }
        marks
    }
}

/// What [`decide`] reads: the object's policies, marks and deletion state.
#[derive(Debug, Clone)]
pub struct View<'a> {
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub policy: ManagementPolicy,
    pub deletion_policy: DeletionPolicy,
    pub spec_instance_id: Option<&'a str>,
    pub marks: &'a Marks,
    pub deleting: bool,
    pub has_cleanup_finalizer: bool,
    /// The generation whose create was refused (the Synced condition says so).
    pub refused_generation: Option<i64>,
    /// The DcsInstance CRD is being deleted: every object is treated as Orphan.
    pub crd_deleting: bool,
    /// The lookup window of a `sent` attempt is over (`--create-lookup-window`).
    pub lookup_window_over: bool,
}

impl<'a> View<'a> {
    pub fn of(obj: &'a DcsInstance, marks: &'a Marks) -> Self {
        let finalizers = obj.metadata.finalizers.as_deref().unwrap_or_default();
        View {
            uid: obj.metadata.uid.as_deref().unwrap_or_default(),
            generation: obj.metadata.generation,
            policy: obj.spec.management_policy,
            deletion_policy: obj.spec.deletion_policy,
            spec_instance_id: obj.spec.instance_id.as_deref(),
            marks,
            deleting: obj.metadata.deletion_timestamp.is_some(),
            has_cleanup_finalizer: finalizers.iter().any(|f| f == CLEANUP_FINALIZER),
            refused_generation: None,
            crd_deleting: false,
            lookup_window_over: false,
        }
    }

    /// A create attempt of this object that may have sent a POST nobody resolved.
    fn unresolved_sent(&self) -> Option<&'a Attempt> {
        let attempt = self.marks.attempt.as_ref()?;
        let ours = attempt.uid == self.uid;
        let resolved = self.marks.recorded_id.is_some();
        (ours && !resolved && matches!(attempt.phase, Phase::Sent | Phase::Created))
            .then_some(attempt)
    }

    /// Whether deleting this object deletes the DCS instance.
    pub fn deletes_instance(&self) -> bool {
        self.policy == ManagementPolicy::Manage
            && self.deletion_policy == DeletionPolicy::Delete
            && !self.crd_deleting
    }

    /// Whether the cleanup finalizer belongs on the object now.
    pub fn wants_cleanup_finalizer(&self) -> bool {
        self.policy == ManagementPolicy::Manage
            && (self.deletion_policy == DeletionPolicy::Delete
                || self.unresolved_sent().is_some()
                || self
                    .marks
                    .attempt
                    .as_ref()
                    .is_some_and(|a| a.uid == self.uid && a.phase == Phase::Claimed))
    }
}

/// Why nothing can be done for now; each says what to do (docs/managing.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// An annotation of the lifecycle does not parse.
    MalformedAnnotation(&'static str),
    /// The recorded attempt or id belongs to another uid (a copy, a restore).
    OwnershipMismatch { recorded_uid: String },
    /// `instance-id` is set but no `create-attempt` says which uid recorded it.
    IdWithoutAttempt,
    /// `spec.instanceId` differs from the id the operator created.
    InstanceIdMismatch { recorded: String },
    /// The last attempt was refused for this generation: the stored condition
    /// says why; a spec change or retry-create starts the next.
    Refused,
    /// The lookup window is over and nothing was found: the user decides.
    CreateUnresolved,
}

/// What one reconcile does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Observe this instance, as today (Observe, or a managed instance that exists).
    Observe { instance_id: String },
    /// Make sure the instance carries this object's ownership tag, then observe it.
    Adopt { instance_id: String },
    /// A recorded instance and a user's retry-create: replace it if CREATEFAILED.
    RetryCreated { instance_id: String },
    /// Start attempt `attempt` (claimed): look up, then create.
    Claim { attempt: Attempt },
    /// A `sent` attempt: look it up (never a second POST).
    Resolve { attempt: Attempt },
    /// A restore changed the uid: move the ownership tag to this uid.
    Reclaim {
        instance_id: String,
        from_uid: String,
    },
    /// Nothing can be done now.
    Blocked(Blocked),
    /// Deleting: remove the cleanup finalizer (nothing to delete, or Orphan).
    Release { resolve_first: Option<Attempt> },
    /// Deleting with `Delete`: delete this instance (after the ownership check).
    DeleteInstance { instance_id: String },
    /// Deleting with `Delete` and a `sent` attempt: find what it created first.
    ResolveForDelete { attempt: Attempt },
    /// Deleting, and not ours to hold up (no finalizer): nothing to do.
    Nothing,
}

/// What one reconcile should do for a `Manage` object, or an object holding the
/// cleanup finalizer. Observe objects without it never come here.
pub fn decide(view: &View<'_>) -> Decision {
    if view.deleting {
        return decide_deletion(view);
    }
    if let Some(name) = view.marks.malformed {
        return Decision::Blocked(Blocked::MalformedAnnotation(name));
    }
    if view.policy == ManagementPolicy::Observe {
        return decide_observe(view);
    }
    let marks = view.marks;
    if let Some(attempt) = marks.attempt.as_ref().filter(|a| a.uid != view.uid) {
        return match (&marks.reclaim_from, &marks.recorded_id) {
            (Some(from), Some(id)) if *from == attempt.uid => Decision::Reclaim {
                instance_id: id.clone(),
                from_uid: from.clone(),
            },
            _ => Decision::Blocked(Blocked::OwnershipMismatch {
                recorded_uid: attempt.uid.clone(),
            }),
        };
    }
    if let Some(id) = view.spec_instance_id {
        return match &marks.recorded_id {
            Some(recorded) if recorded != id => Decision::Blocked(Blocked::InstanceIdMismatch {
                recorded: recorded.clone(),
            }),
            Some(_) => Decision::Observe {
                instance_id: id.to_string(),
            },
            // A create may still appear: resolve it first (then the recorded id and
            // the spec's are compared); once the window is over, adopt.
            None => match view.unresolved_sent() {
                Some(attempt) if !view.lookup_window_over => Decision::Resolve {
                    attempt: attempt.clone(),
                },
                _ => Decision::Adopt {
                    instance_id: id.to_string(),
                },
            },
        };
    }
    decide_create(view)
}

/// Observe: the spec's id, unless it contradicts the id the operator created.
fn decide_observe(view: &View<'_>) -> Decision {
    let ours = view
        .marks
        .attempt
        .as_ref()
        .is_some_and(|a| a.uid == view.uid);
    match (&view.marks.recorded_id, view.spec_instance_id) {
        (Some(recorded), Some(id)) if ours && recorded != id => {
            Decision::Blocked(Blocked::InstanceIdMismatch {
                recorded: recorded.clone(),
            })
        }
        (_, Some(id)) => Decision::Observe {
            instance_id: id.to_string(),
        },
        // The CRD requires instanceId with Observe; an object from before that
        // rule, or a server without it, waits for one.
        (_, None) => Decision::Nothing,
    }
}

/// Manage without `spec.instanceId`: the attempt's next step.
fn decide_create(view: &View<'_>) -> Decision {
    let marks = view.marks;
    let Some(attempt) = &marks.attempt else {
        if marks.recorded_id.is_some() {
            // An id with no attempt naming a uid: not provably this object's.
            return Decision::Blocked(Blocked::IdWithoutAttempt);
        }
        return Decision::Claim {
            attempt: Attempt::new(view.uid, 1, Phase::Claimed),
        };
    };
    if let Some(id) = &marks.recorded_id {
        return if marks.retry_create {
            Decision::RetryCreated {
                instance_id: id.clone(),
            }
        } else {
            Decision::Observe {
                instance_id: id.clone(),
            }
        };
    }
    match attempt.phase {
        // Superseded: whoever claimed it crashed or lost the lease before sending.
        Phase::Claimed => Decision::Claim {
            attempt: attempt.next(view.uid),
        },
        Phase::Sent | Phase::Created if view.lookup_window_over && marks.retry_create => {
            Decision::Claim {
                attempt: attempt.next(view.uid),
            }
        }
        Phase::Sent | Phase::Created => Decision::Resolve {
            attempt: attempt.clone(),
        },
        Phase::Refused if marks.retry_create || view.refused_generation != view.generation => {
            Decision::Claim {
                attempt: attempt.next(view.uid),
            }
        }
        Phase::Refused => Decision::Blocked(Blocked::Refused),
    }
}

/// Deleting: release at once unless a `Delete` instance (or a `sent` attempt that
/// may have made one) must go first.
fn decide_deletion(view: &View<'_>) -> Decision {
    if !view.has_cleanup_finalizer {
        return Decision::Nothing;
    }
    let marks = view.marks;
    let foreign = marks.attempt.as_ref().filter(|a| a.uid != view.uid);
    if !view.deletes_instance() || marks.malformed.is_some() {
        // Orphan: an unresolved create is still looked up once, so its id can be
        // named in an Event for whoever pays for it.
        return Decision::Release {
            resolve_first: view.unresolved_sent().cloned(),
        };
    }
    if foreign.is_some() {
        // A copy, or a restore not reclaimed: nothing here is this object's to
        // delete, and nothing may hold its deletion up.
        return Decision::Release {
            resolve_first: None,
        };
    }
    // The id this object created comes first: a spec id that contradicts it was
    // never tagged for this object.
    if let Some(id) = marks.recorded_id.as_deref().or(view.spec_instance_id) {
        return Decision::DeleteInstance {
            instance_id: id.to_string(),
        };
    }
    match view.unresolved_sent() {
        Some(attempt) if !view.lookup_window_over => Decision::ResolveForDelete {
            attempt: attempt.clone(),
        },
        // Claimed (nothing sent), refused, or a window that found nothing.
        _ => Decision::Release {
            resolve_first: view.unresolved_sent().cloned(),
        },
    }
}

#[cfg(test)]
mod tests;
