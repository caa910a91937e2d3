//! PURE: (resource, DCS answer or error, now) -> desired status, Secret and next poll.
//! No I/O here; every decision about conditions, retention and polling is made in
//! this module and its parts, and tested exhaustively as plain data:
//!
//! - [`problems`]: what stops reconcile (typed, with the sentence users read);
//! - [`status`]: the facts status mirrors, last known values kept, clipped to the schema;
//! - [`conditions`]: what Ready and Synced say;
//! - [`schedule`]: when to look again;
//! - [`events`]: which transitions deserve an Event;
//! - [`reasons`]: every type, status and reason string, in one place.

pub mod conditions;
pub mod events;
pub mod problems;
pub mod reasons;
pub mod schedule;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;

use crate::connection_secret::{self, Owner};
use crate::crd::{Binding, DcsInstanceStatus};
use crate::dcs::DcsError;
use crate::dcs::model::{DcsStatus, Instance};
use conditions::{ConditionDraft, condition, find};

pub use conditions::error_message;
pub use events::{PlannedEvent, transition_events};
pub use problems::{CredentialsProblem, LifecycleProblem, PasswordProblem, Problem, SpecProblem};
pub use reasons::{READY, SYNCED};
pub use schedule::{
    BATCH_FALLBACK_FACTOR, DEGRADED_FACTOR, jitter, next_poll_at, poll_delay, stale_after,
};
pub use status::{clip_to_schema, quantity};

/// Transitional states are polled this often, whatever the poll interval.
pub const TRANSITIONAL_POLL: Duration = Duration::from_secs(10);
/// Failed authentication is retried at most this often per access key: five failed
/// signatures lock the key at the gateway.
pub const AUTH_RETRY: Duration = Duration::from_secs(300);
/// First retry after a failure; doubles up to the poll interval.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);

/// One attempt to observe an instance, as kept in the observation store.
#[derive(Debug, Clone)]
pub struct Observation {
    /// When the answer (or error) came back.
    pub at: DateTime<Utc>,
    pub result: Result<Arc<Instance>, DcsError>,
    /// Failed attempts in a row, this one included (0 after a success).
    pub consecutive_failures: u32,
}

/// Everything the plan depends on. Its Debug leaves the password out.
#[derive(Clone)]
pub struct PlanInput<'a> {
    pub namespace: &'a str,
    pub owner: &'a Owner,
    pub generation: Option<i64>,
    /// The status as stored now (the last known good values live here).
    pub current: Option<&'a DcsInstanceStatus>,
    pub observation: Option<&'a Observation>,
    pub problems: &'a [Problem],
    pub connection_secret_name: &'a str,
    pub password: Option<&'a str>,
    /// The `type` of the connection Secret this DcsInstance controls, when it exists.
    pub existing_secret_type: Option<&'a str>,
    pub poll_interval: Duration,
    /// Whether a batch list call keeps this instance's answer fresh.
    pub batched: bool,
    /// The managed instance's id, for status.instanceId (Manage only).
    pub managed_instance_id: Option<&'a str>,
    /// The record of in-place writes, for status.managed (None keeps the stored one).
    pub managed: Option<&'a crate::crd::ManagedStatus>,
    pub now: DateTime<Utc>,
}

impl std::fmt::Debug for PlanInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanInput")
            .field("namespace", &self.namespace)
            .field("owner", &self.owner)
            .field("generation", &self.generation)
            .field("current", &self.current)
            .field("observation", &self.observation)
            .field("problems", &self.problems)
            .field("connection_secret_name", &self.connection_secret_name)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("existing_secret_type", &self.existing_secret_type)
            .field("poll_interval", &self.poll_interval)
            .field("batched", &self.batched)
            .field("managed_instance_id", &self.managed_instance_id)
            .field("managed", &self.managed)
            .field("now", &self.now)
            .finish()
    }
}

/// What reconcile should make true. Its Debug shows the Secret's keys, never its data.
#[derive(Clone, PartialEq)]
pub struct Plan {
    pub status: DcsInstanceStatus,
    /// The connection Secret to write, when there is something right to write.
    pub secret: Option<Secret>,
    /// When to look again; None waits for a change of the resource.
    pub requeue_after: Option<Duration>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = self.secret.as_ref().map(|secret| {
            (
                secret.metadata.name.clone(),
                secret
                    .data
                    .iter()
                    .flatten()
                    .map(|(key, _)| format!("{key}=<redacted>"))
                    .collect::<Vec<_>>(),
            )
        });
        f.debug_struct("Plan")
            .field("status", &self.status)
            .field("secret", &secret)
            .field("requeue_after", &self.requeue_after)
            .finish()
    }
}

/// The problems sorted by what they block.
struct Found<'a> {
    /// The spec cannot be acted on: nothing is observed, nothing written but status.
    invalid: Option<&'a Problem>,
    /// No usable credentials: the observation does not count.
    credentials: Option<&'a Problem>,
    /// Ready cannot be true (password missing, Secret conflict).
    ready_blocker: Option<&'a Problem>,
    conflict: bool,
}

impl<'a> Found<'a> {
    fn sort(problems: &'a [Problem]) -> Self {
        let find = |wanted: fn(&Problem) -> bool| problems.iter().find(|p| wanted(p));
        Found {
            // A lifecycle that is waiting or blocked has nothing to observe yet.
            invalid: find(|p| matches!(p, Problem::InvalidSpec(_) | Problem::Lifecycle(_))),
            credentials: find(|p| matches!(p, Problem::Credentials(_))),
            ready_blocker: find(|p| {
                matches!(p, Problem::Password(_) | Problem::SecretConflict { .. })
            }),
            conflict: problems
                .iter()
                .any(|p| matches!(p, Problem::SecretConflict { .. })),
        }
    }

    /// A problem that makes the observation meaningless.
    fn before_observing(&self) -> Option<&'a Problem> {
        self.invalid.or(self.credentials)
    }
}

/// What the latest attempt tells, if it is usable: a success or a failure.
type Outcome<'a> = (Option<&'a Instance>, Option<&'a DcsError>);

fn outcome<'a>(found: &Found<'_>, observation: Option<&'a Observation>) -> Outcome<'a> {
    match (found.before_observing(), observation) {
        (Some(_), _) | (None, None) => (None, None),
        (None, Some(observation)) => match &observation.result {
            Ok(instance) => (Some(instance.as_ref()), None),
            Err(error) => (None, Some(error)),
        },
    }
}

pub fn plan(input: &PlanInput<'_>) -> Plan {
    let found = Found::sort(input.problems);
    let (success, failure) = outcome(&found, input.observation);
    let mut status = match success {
        Some(instance) => status::observed_fields(instance, input.current),
        None => input.current.map(status::facts_of).unwrap_or_default(),
    };
    // The Secret: only from a successful observation with a full endpoint, never on
    // a problem that makes its content uncertain.
    let not_found = failure.is_some_and(DcsError::is_instance_not_found);
    let secret_wanted = found.invalid.is_none() && found.ready_blocker.is_none() && !not_found;
    let secret = status::connection_details(&status, input.password)
        .filter(|_| secret_wanted && success.is_some())
        .map(|details| {
            connection_secret::connection_secret(
                input.namespace,
                input.connection_secret_name,
                input.owner,
                &details,
            )
        });
    let secret_in_place = place_secret(input, &found, &mut status, secret.is_some());
    // `type` cannot change in place: a different one is kept, and said once.
    let type_note = secret
        .as_ref()
        .zip(input.existing_secret_type)
        .and_then(|(desired, have)| {
            let want = desired.type_.as_deref().unwrap_or("Opaque");
            (have != want).then(|| Problem::SecretTypeMismatch {
                have: have.to_string(),
                want: want.to_string(),
            })
        });
    let synced = synced_draft(input, &found, success, failure);
    let ready = ready_draft(
        input,
        &found,
        &status,
        (success, failure),
        &synced,
        secret.is_some() || secret_in_place,
    )
    .map(|mut draft| {
        if let Some(note) = &type_note {
            draft.message.push_str("; note: ");
            draft.message.push_str(&note.message());
        }
        draft
    });
    status.conditions = conditions_for(input, &found, ready, synced, failure);
    status.observed_generation = input.generation;
    status.instance_id = input.managed_instance_id.map(str::to_string);
    status.managed = input
        .managed
        .cloned()
        .map(Box::new)
        .or_else(|| input.current.and_then(|c| c.managed.clone()))
        .filter(|_| status.instance_id.is_some());
    // Whatever DCS sent, status fits the CRD: a write the API server refuses would
    // be retried forever.
    clip_to_schema(&mut status);
    let requeue_after = schedule::requeue_after(
        input.observation,
        found.credentials.is_some(),
        found.invalid.is_some(),
        input.poll_interval,
        &input.owner.uid,
        input.batched,
        input.now,
    );
    Plan {
        status,
        secret,
        requeue_after,
    }
}

/// Names the connection Secret in status (and the servicebinding.io binding) while
/// it is, or is about to be, in place; returns whether it is.
fn place_secret(
    input: &PlanInput<'_>,
    found: &Found<'_>,
    status: &mut DcsInstanceStatus,
    writing: bool,
) -> bool {
    let name = input.connection_secret_name;
    let in_place = !found.conflict
        && found.invalid.is_none()
        && (writing
            || input
                .current
                .is_some_and(|s| s.connection_secret_name.as_deref() == Some(name)));
    if in_place {
        status.connection_secret_name = Some(name.to_string());
        status.binding = Some(Binding {
            name: name.to_string(),
        });
    }
    in_place
}

/// Synced: did the last observation work, and is it recent enough?
fn synced_draft(
    input: &PlanInput<'_>,
    found: &Found<'_>,
    success: Option<&Instance>,
    failure: Option<&DcsError>,
) -> ConditionDraft {
    if let Some(problem) = found.before_observing() {
        return ConditionDraft::new(false, problem.reason(), problem.message());
    }
    let immutable = input
        .problems
        .iter()
        .find(|p| matches!(p, Problem::ImmutableFieldChanged { .. }))
        .or_else(|| {
            input
                .problems
                .iter()
                .find(|p| matches!(p, Problem::NotSynced { .. }))
        });
    if let Some(problem) = immutable.filter(|_| success.is_some()) {
        return ConditionDraft::new(false, problem.reason(), problem.message());
    }
    match (success, failure, input.observation) {
        // A working answer that nobody refreshed for too long (a paused key, a stuck
        // poller) must not hide behind an old Ready.
        (Some(_), _, Some(observation))
            if schedule::is_stale(observation.at, input.poll_interval, input.now) =>
        {
            conditions::stale(observation.at)
        }
        (Some(_), _, _) => conditions::observed(),
        (None, Some(error), _) if error.is_instance_not_found() => conditions::observed(),
        (None, Some(error), _) => conditions::failed(error),
        (None, None, _) => conditions::pending(),
    }
}

/// Ready: what is true of the instance and its Secret; None keeps the stored one.
fn ready_draft(
    input: &PlanInput<'_>,
    found: &Found<'_>,
    status: &DcsInstanceStatus,
    (success, failure): Outcome<'_>,
    synced: &ConditionDraft,
    secret_in_place: bool,
) -> Option<ConditionDraft> {
    let observed_before = input.current.is_some_and(|s| s.status.is_some());
    let draft = if let Some(problem) = found.invalid.or(found.ready_blocker) {
        ConditionDraft::new(false, problem.reason(), problem.message())
    } else if let Some(error) = failure.filter(|e| e.is_instance_not_found()) {
        conditions::instance_not_found(error)
    } else if success.is_some() {
        let dcs_status = status.status.as_deref().map(DcsStatus::parse);
        conditions::ready_from_status(dcs_status.as_ref(), status, secret_in_place)
    } else if observed_before {
        // An observation problem never flips Ready by itself once the instance has
        // been seen: a DCS outage must not turn every dashboard red.
        return None;
    } else {
        synced.clone()
    };
    Some(draft)
}

/// Ready and Synced as stored conditions.
fn conditions_for(
    input: &PlanInput<'_>,
    found: &Found<'_>,
    ready: Option<ConditionDraft>,
    synced: ConditionDraft,
    failure: Option<&DcsError>,
) -> Vec<crate::crd::Condition> {
    let current = input.current;
    let mut conditions = Vec::new();
    match ready {
        Some(ready) => conditions.push(condition(
            current,
            READY,
            &ready,
            input.generation,
            input.now,
        )),
        None => conditions.extend(find(current, READY).cloned()),
    }
    // One transient failure after a working observation is retried (10 s later, or
    // at the group's next list) before it is reported: a lone 503 or reset must not
    // rewrite every DcsInstance's status twice.
    let first_transient_blip = failure.is_some_and(|e| e.is_transient())
        && input
            .observation
            .is_some_and(|o| o.consecutive_failures == 1)
        && found.before_observing().is_none();
    match find(current, SYNCED).filter(|c| c.status == reasons::TRUE) {
        Some(previous) if first_transient_blip => conditions.push(previous.clone()),
        _ => conditions.push(condition(
            current,
            SYNCED,
            &synced,
            input.generation,
            input.now,
        )),
    }
    conditions
}

#[cfg(test)]
mod tests;
