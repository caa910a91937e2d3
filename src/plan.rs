//! PURE: (resource, DCS answer or error, now) -> desired status, Secret and next poll.
//! No I/O here; every decision about conditions, retention and polling is made
//! in this module and tested exhaustively.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Secret;

use crate::clock::later;
use crate::crd::{Binding, Condition, DcsInstanceStatus};
use crate::dcs::DcsError;
use crate::dcs::bounded::clip;
use crate::dcs::model::{DcsStatus, Instance, StatusClass, fault_description};
use crate::secret::{self, ConnectionDetails, Owner};

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
/// Transitional states are polled this often, whatever the poll interval.
pub const TRANSITIONAL_POLL: Duration = Duration::from_secs(10);
/// Failed authentication is retried at most this often per access key: five failed
/// signatures lock the key at the gateway.
pub const AUTH_RETRY: Duration = Duration::from_secs(300);
/// First retry after a failure; doubles up to the poll interval.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_MESSAGE: usize = 1024;

/// One attempt to observe an instance, as kept in the observation store.
#[derive(Debug, Clone)]
pub struct Observation {
    /// When the answer (or error) came back.
    pub at: DateTime<Utc>,
    pub result: Result<Arc<Instance>, DcsError>,
    /// Failed attempts in a row, this one included (0 after a success).
    pub consecutive_failures: u32,
}

/// Problems found before or after talking to DCS, outside the observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The spec cannot be acted on; the message names the field.
    InvalidSpec(String),
    /// No usable credentials for this DcsInstance.
    CredentialsNotFound(String),
    /// The credentials are there but malformed (refused before any call).
    CredentialsInvalid(String),
    /// The password Secret or key is missing.
    PasswordSecretNotFound(String),
    /// The connection Secret exists and belongs to someone else.
    SecretConflict(String),
    /// The connection Secret holds the right data but a `type` Kubernetes will not
    /// let the operator change: said in Ready's message, nothing else changes.
    SecretTypeMismatch(String),
}

impl Problem {
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::InvalidSpec(_) => "InvalidSpec",
            Problem::CredentialsNotFound(_) => "CredentialsNotFound",
            Problem::CredentialsInvalid(_) => "CredentialsInvalid",
            Problem::PasswordSecretNotFound(_) => "PasswordSecretNotFound",
            Problem::SecretConflict(_) => "SecretConflict",
            Problem::SecretTypeMismatch(_) => "SecretTypeMismatch",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Problem::InvalidSpec(m)
            | Problem::CredentialsNotFound(m)
            | Problem::CredentialsInvalid(m)
            | Problem::PasswordSecretNotFound(m)
            | Problem::SecretConflict(m)
            | Problem::SecretTypeMismatch(m) => m,
        }
    }
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
    pub poll_interval: Duration,
    /// Whether a batch list call keeps this instance's answer fresh.
    pub batched: bool,
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
            .field("poll_interval", &self.poll_interval)
            .field("batched", &self.batched)
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

/// A stable per-object jitter of 0-10 % of the poll interval, so objects created
/// together do not poll together, and one object's due time never drifts.
pub fn jitter(poll_interval: Duration, uid: &str) -> Duration {
    let hash = uid.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    poll_interval.mul_f64((hash % 1000) as f64 / 10_000.0)
}

/// How much longer than the poll interval a degraded or failed instance waits:
/// it is not about to change by itself.
pub const DEGRADED_FACTOR: u32 = 2;
/// With batch polling, a group's list call refreshes stable instances every tick;
/// a DcsInstance calls DCS alone only when its answer is this many intervals old
/// (the list stopped covering it).
pub const BATCH_FALLBACK_FACTOR: u32 = 3;

/// How long after an observation the next one is due. `batched`: a list call per
/// credentials group keeps stable answers fresh, so only transitional states (and
/// a list that stopped covering the instance) call DCS alone.
pub fn poll_delay(
    observation: &Observation,
    poll_interval: Duration,
    uid: &str,
    batched: bool,
) -> Duration {
    let stable = |factor: u32| {
        poll_interval
            .saturating_mul(factor)
            .saturating_add(jitter(poll_interval, uid))
    };
    match &observation.result {
        Ok(instance) => match instance.status().map(|s| s.class()) {
            Some(StatusClass::Transitional | StatusClass::Unknown) | None => TRANSITIONAL_POLL,
            _ if batched => stable(BATCH_FALLBACK_FACTOR),
            Some(StatusClass::Ready) => stable(1),
            Some(StatusClass::Degraded | StatusClass::Failed) => stable(DEGRADED_FACTOR),
        },
        Err(error) if error.is_instance_not_found() => stable(1),
        Err(DcsError::Unauthorized(_) | DcsError::Forbidden(_)) => AUTH_RETRY,
        Err(_) if batched => stable(BATCH_FALLBACK_FACTOR),
        Err(error) => {
            let exponent = observation.consecutive_failures.saturating_sub(1).min(16);
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << exponent)
                .min(poll_interval.max(FIRST_BACKOFF));
            match error {
                DcsError::Throttled {
                    retry_after: Some(after),
                    ..
                } => backoff.max(*after),
                _ => backoff,
            }
        }
    }
}

/// When the next observation is due.
pub fn next_poll_at(
    observation: &Observation,
    poll_interval: Duration,
    uid: &str,
    batched: bool,
) -> DateTime<Utc> {
    later(
        observation.at,
        poll_delay(observation, poll_interval, uid, batched),
    )
}

/// A successful answer older than this is `Stale`: three poll intervals plus the
/// largest jitter, past the point where the batch fallback would have asked again.
pub fn stale_after(poll_interval: Duration) -> Duration {
    poll_interval
        .saturating_mul(BATCH_FALLBACK_FACTOR)
        .saturating_add(poll_interval / 10)
}

/// `2Gi`, `128Mi`, or plain bytes when nothing divides evenly.
pub fn quantity(bytes: u64) -> String {
    for (suffix, unit) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn condition(
    current: Option<&DcsInstanceStatus>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let previous = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    // The time moves only when the status flips; a new reason or message alone does not.
    let last_transition_time = match previous {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => now.to_rfc3339_opts(SecondsFormat::Secs, true),
    };
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: truncate(message),
        observed_generation: generation,
        last_transition_time,
    }
}

/// A sentence about an observation error that stays the same from one failed poll
/// to the next (no request ids, no retry times), so failures do not churn status.
pub fn error_message(error: &DcsError) -> String {
    let code = |e: &DcsError| {
        e.api()
            .and_then(|api| api.error_code.clone())
            .map(|code| format!(" ({code})"))
            .unwrap_or_default()
    };
    let detail = |e: &DcsError| {
        e.api()
            .and_then(|api| api.error_msg.clone())
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    };
    match error {
        e if e.is_instance_not_found() => format!(
            "DCS says this instance does not exist{}; check spec.instanceId, spec.projectId and the region",
            code(e)
        ),
        DcsError::NotFound(_) => format!(
            "The DCS endpoint answered 404{}{}: the endpoint or region is probably wrong",
            code(error),
            detail(error)
        ),
        DcsError::Unauthorized(_) => format!(
            "DCS refused the credentials{}{}; check the access key and secret key (retried at most every 5 minutes: five failures lock the key)",
            code(error),
            detail(error)
        ),
        DcsError::Forbidden(_) => format!(
            "The credentials may not read this instance{}{}; check the IAM policy",
            code(error),
            detail(error)
        ),
        DcsError::Throttled { .. } => {
            format!("DCS is throttling requests{}; retrying later", code(error))
        }
        DcsError::Server(api) => format!(
            "DCS is unavailable (HTTP {}{}); the last known values are kept",
            api.status,
            code(error)
        ),
        DcsError::Client(_) => format!("DCS refused the request{}{}", code(error), detail(error)),
        DcsError::Transport { timeout: true, .. } => {
            "DCS did not answer in time; the last known values are kept".to_string()
        }
        DcsError::Transport { message, .. } => {
            format!("Could not reach DCS ({message}); the last known values are kept")
        }
        DcsError::Decode { message, .. } => {
            format!(
                "DCS sent an answer that could not be read ({message}); the last known values are kept"
            )
        }
    }
}

/// The instance facts that status mirrors, from a successful answer. Addresses
/// and port missing from an answer keep their last known values: an answer
/// without an endpoint never erases a good one.
fn observed_fields(instance: &Instance, previous: Option<&DcsInstanceStatus>) -> DcsInstanceStatus {
    let addresses = instance.addresses();
    let (ip, addresses) = if addresses.is_empty() {
        (
            previous.and_then(|p| p.ip.clone()),
            previous.and_then(|p| p.addresses.clone()),
        )
    } else {
        (instance.ip.clone(), Some(addresses))
    };
    let port = instance
        .port
        .filter(|port| (1..=65535).contains(port))
        .or_else(|| previous.and_then(|p| p.port));
    let error_code = instance
        .error_code
        .clone()
        .filter(|code| !code.trim().is_empty());
    let error_message = error_code.as_ref().map(|code| {
        fault_description(code)
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!("DCS reported fault code {code}, which is not in the documented table")
            })
    });
    let zones = instance.available_zones();
    DcsInstanceStatus {
        name: instance.name.clone(),
        engine: instance.engine.clone(),
        engine_version: instance.engine_version.clone(),
        ip,
        port,
        addresses,
        status: instance.status.clone(),
        capacity: instance.capacity_bytes().map(quantity),
        max_memory: instance.max_memory_bytes().filter(|b| *b > 0).map(quantity),
        error_code,
        error_message,
        resource_spec_code: instance.spec_code().map(str::to_string),
        available_zones: (!zones.is_empty()).then_some(zones),
        ..DcsInstanceStatus::default()
    }
}

/// The mirrored facts of a status, without conditions and bookkeeping.
fn facts_of(status: &DcsInstanceStatus) -> DcsInstanceStatus {
    DcsInstanceStatus {
        connection_secret_name: None,
        binding: None,
        observed_generation: None,
        conditions: Vec::new(),
        ..status.clone()
    }
}

fn connection_details(
    facts: &DcsInstanceStatus,
    password: Option<&str>,
) -> Option<ConnectionDetails> {
    let addresses = facts.addresses.clone().filter(|a| !a.is_empty())?;
    Some(ConnectionDetails {
        engine: facts.engine.clone().unwrap_or_else(|| "Redis".to_string()),
        engine_version: facts.engine_version.clone(),
        addresses,
        port: facts.port?,
        password: password.map(str::to_string),
    })
}

pub fn plan(input: &PlanInput<'_>) -> Plan {
    let current = input.current;
    let observed_before = current.is_some_and(|s| s.status.is_some());
    let invalid = input
        .problems
        .iter()
        .find(|p| matches!(p, Problem::InvalidSpec(_)));
    let credentials = input.problems.iter().find(|p| {
        matches!(
            p,
            Problem::CredentialsNotFound(_) | Problem::CredentialsInvalid(_)
        )
    });
    let ready_blocker = input.problems.iter().find(|p| {
        matches!(
            p,
            Problem::PasswordSecretNotFound(_) | Problem::SecretConflict(_)
        )
    });
    let conflict = input
        .problems
        .iter()
        .any(|p| matches!(p, Problem::SecretConflict(_)));

    // What the latest attempt tells, if it is usable.
    let (success, failure) = match (invalid.or(credentials), input.observation) {
        (Some(_), _) | (None, None) => (None, None),
        (None, Some(observation)) => match &observation.result {
            Ok(instance) => (Some(instance.as_ref()), None),
            Err(error) => (None, Some(error)),
        },
    };
    let not_found = failure.is_some_and(DcsError::is_instance_not_found);

    let mut status = match success {
        Some(instance) => observed_fields(instance, current),
        None => current.map(facts_of).unwrap_or_default(),
    };

    // The Secret: only from a successful observation with a full endpoint, never on
    // a problem that makes its content uncertain.
    let details = connection_details(&status, input.password);
    let secret_wanted = invalid.is_none() && ready_blocker.is_none() && !not_found;
    let secret = match (&details, secret_wanted, success.is_some()) {
        (Some(details), true, true) => Some(secret::connection_secret(
            input.namespace,
            input.connection_secret_name,
            input.owner,
            details,
        )),
        _ => None,
    };
    let secret_in_place = !conflict
        && invalid.is_none()
        && (secret.is_some()
            || current.is_some_and(|s| {
                s.connection_secret_name.as_deref() == Some(input.connection_secret_name)
            }));
    if secret_in_place {
        status.connection_secret_name = Some(input.connection_secret_name.to_string());
        status.binding = Some(Binding {
            name: input.connection_secret_name.to_string(),
        });
    }

    // A working answer that nobody refreshed for too long (a paused key, a stuck
    // poller) must not hide behind an old Ready.
    let stale = success.is_some()
        && input.observation.is_some_and(|o| {
            input
                .now
                .signed_duration_since(o.at)
                .to_std()
                .unwrap_or(Duration::ZERO)
                > stale_after(input.poll_interval)
        });

    // Synced: did the last observation work?
    let (synced_ok, synced_reason, synced_message) = match (
        invalid.or(credentials),
        success,
        failure,
    ) {
        (Some(problem), _, _) => (false, problem.reason(), problem.message().to_string()),
        (None, Some(_), _) if stale => (
            false,
            "Stale",
            format!(
                "The last answer from DCS is from {}, more than three poll intervals ago; the values shown may be out of date (the operator keeps asking: check the operator's logs and the API budget metrics)",
                input
                    .observation
                    .map(|o| o.at.to_rfc3339_opts(SecondsFormat::Secs, true))
                    .unwrap_or_default()
            ),
        ),
        (None, Some(_), _) => (true, "Observed", "The DCS API answered".to_string()),
        (None, None, Some(error)) if error.is_instance_not_found() => {
            (true, "Observed", "The DCS API answered".to_string())
        }
        (None, None, Some(error)) => (false, error.reason(), error_message(error)),
        (None, None, None) => (
            false,
            "Pending",
            "Waiting for the first observation".to_string(),
        ),
    };

    // Ready: what is true of the instance and its Secret.
    let dcs_status = status.status.as_deref().map(DcsStatus::parse);
    let ready = if let Some(problem) = invalid.or(ready_blocker) {
        Some((
            false,
            problem.reason().to_string(),
            problem.message().to_string(),
        ))
    } else if let Some(error) = failure.filter(|e| e.is_instance_not_found()) {
        Some((false, "InstanceNotFound".to_string(), error_message(error)))
    } else if success.is_some() {
        Some(ready_from_status(
            dcs_status.as_ref(),
            &status,
            secret.is_some() || secret_in_place,
        ))
    } else if observed_before {
        // An observation problem never flips Ready by itself once the instance has
        // been seen: a DCS outage must not turn every dashboard red.
        None
    } else {
        Some((false, synced_reason.to_string(), synced_message.clone()))
    };

    // A note that changes nothing else (the Secret works): appended to Ready's message.
    let ready = ready.map(|(ok, reason, mut message)| {
        for note in input
            .problems
            .iter()
            .filter(|p| matches!(p, Problem::SecretTypeMismatch(_)))
        {
            message.push_str("; note: ");
            message.push_str(note.message());
        }
        (ok, reason, message)
    });
    let mut conditions = Vec::new();
    match ready {
        Some((ok, reason, message)) => conditions.push(condition(
            current,
            READY,
            ok,
            &reason,
            &message,
            input.generation,
            input.now,
        )),
        None => {
            if let Some(previous) =
                current.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
            {
                conditions.push(previous.clone());
            }
        }
    }
    // One transient failure after a working observation is retried (10 s later, or
    // at the group's next list) before it is reported: a lone 503 or reset must not
    // rewrite every DcsInstance's status twice.
    let first_transient_blip = failure.is_some_and(|e| e.is_transient())
        && input
            .observation
            .is_some_and(|o| o.consecutive_failures == 1)
        && invalid.or(credentials).is_none();
    let previous_synced = current
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == SYNCED))
        .filter(|c| c.status == "True");
    match previous_synced {
        Some(previous) if first_transient_blip => conditions.push(previous.clone()),
        _ => conditions.push(condition(
            current,
            SYNCED,
            synced_ok,
            synced_reason,
            &synced_message,
            input.generation,
            input.now,
        )),
    }
    status.conditions = conditions;
    status.observed_generation = input.generation;
    // Whatever DCS sent, status fits the CRD: a write the API server refuses would
    // be retried forever.
    clip_to_schema(&mut status);

    let requeue_after = if invalid.is_some() {
        None
    } else {
        let due = match input.observation {
            Some(observation) if credentials.is_none() => next_poll_at(
                observation,
                input.poll_interval,
                &input.owner.uid,
                input.batched,
            ),
            _ => later(input.now, input.poll_interval),
        };
        Some(
            due.signed_duration_since(input.now)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_secs(1)),
        )
    };

    Plan {
        status,
        secret,
        requeue_after,
    }
}

/// Cuts every string of status to the CRD's maxLength (characters, ending in `…`)
/// and every list to its maxItems. Idempotent, so it never causes churn.
pub fn clip_to_schema(status: &mut DcsInstanceStatus) {
    fn field(value: &mut Option<String>, max: usize) {
        if let Some(text) = value.as_mut()
            && text.chars().count() > max
        {
            *text = clip(text, max);
        }
    }
    fn list(value: &mut Option<Vec<String>>, max_items: usize, max: usize) {
        if let Some(items) = value.as_mut() {
            items.truncate(max_items);
            for item in items.iter_mut() {
                if item.chars().count() > max {
                    *item = clip(item, max);
                }
            }
        }
    }
    field(&mut status.name, 256);
    field(&mut status.engine, 64);
    field(&mut status.engine_version, 64);
    field(&mut status.ip, 4096);
    list(&mut status.addresses, 256, 256);
    field(&mut status.status, 64);
    field(&mut status.capacity, 32);
    field(&mut status.max_memory, 32);
    field(&mut status.error_code, 64);
    field(&mut status.error_message, 1024);
    field(&mut status.resource_spec_code, 128);
    list(&mut status.available_zones, 16, 128);
    field(&mut status.connection_secret_name, 253);
    for condition in status.conditions.iter_mut() {
        if condition.reason.chars().count() > 64 {
            condition.reason = clip(&condition.reason, 64);
        }
        if condition.message.chars().count() > 2048 {
            condition.message = clip(&condition.message, 2048);
        }
    }
}

fn ready_from_status(
    dcs_status: Option<&DcsStatus>,
    facts: &DcsInstanceStatus,
    secret_written: bool,
) -> (bool, String, String) {
    let endpoint = match (&facts.ip, facts.port) {
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        _ => "an unknown address".to_string(),
    };
    match dcs_status {
        Some(DcsStatus::Running) if secret_written => (
            true,
            "Running".into(),
            format!("The instance is RUNNING at {endpoint} and the connection Secret is written"),
        ),
        Some(DcsStatus::Running) => (
            false,
            "Running".into(),
            "The instance is RUNNING but DCS gave no address or port yet; the connection Secret is not written".into(),
        ),
        Some(status) => {
            let mut message = match status.class() {
                StatusClass::Transitional => format!("The instance is {status}; waiting for RUNNING"),
                StatusClass::Degraded => format!("The instance is {status} and not serving traffic"),
                StatusClass::Failed => format!("Creating the instance failed ({status}); it will not become RUNNING: delete it in DCS and create it again"),
                StatusClass::Unknown => format!("DCS reports status {status:?}, which this operator does not know"),
                StatusClass::Ready => format!("The instance is {status}"),
            };
            if let (Some(code), Some(text)) = (&facts.error_code, &facts.error_message) {
                message.push_str(&format!(": {code} {text}"));
            }
            (false, status.reason().to_string(), message)
        }
        None => (
            false,
            "UnknownStatus".into(),
            "DCS reported no status for the instance".into(),
        ),
    }
}

/// A Kubernetes Event to publish: only on transitions, never once per poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

fn condition_of<'a>(status: Option<&'a DcsInstanceStatus>, type_: &str) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

/// The events a status change deserves: became Ready / not Ready, DCS status changed,
/// endpoint changed, Secret conflict, authentication failed.
pub fn transition_events(
    old: Option<&DcsInstanceStatus>,
    new: &DcsInstanceStatus,
) -> Vec<PlannedEvent> {
    let mut events = Vec::new();
    let old_ready = condition_of(old, READY);
    let new_ready = condition_of(Some(new), READY);
    if let Some(ready) = new_ready {
        let flipped = old_ready.is_none_or(|o| o.status != ready.status);
        if flipped && ready.status == "True" {
            events.push(PlannedEvent {
                warning: false,
                reason: "BecameReady",
                note: ready.message.clone(),
            });
        } else if flipped
            || old_ready.is_some_and(|o| o.reason != ready.reason) && ready.status != "True"
        {
            if ready.reason == "SecretConflict" {
                events.push(PlannedEvent {
                    warning: true,
                    reason: "SecretConflict",
                    note: ready.message.clone(),
                });
            } else {
                events.push(PlannedEvent {
                    warning: true,
                    reason: "NotReady",
                    note: format!("{}: {}", ready.reason, ready.message),
                });
            }
        }
    }
    let old_dcs = old.and_then(|o| o.status.as_deref());
    if let (Some(before), Some(after)) = (old_dcs, new.status.as_deref())
        && before != after
    {
        events.push(PlannedEvent {
            warning: false,
            reason: "StatusChanged",
            note: format!("DCS status changed from {before} to {after}"),
        });
    }
    let endpoint = |s: &DcsInstanceStatus| (s.ip.clone(), s.port);
    if let Some(old) = old
        && old.ip.is_some()
        && endpoint(old) != endpoint(new)
    {
        events.push(PlannedEvent {
            warning: false,
            reason: "EndpointChanged",
            note: format!(
                "Endpoint changed from {}:{} to {}:{}",
                old.ip.as_deref().unwrap_or("?"),
                old.port
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into()),
                new.ip.as_deref().unwrap_or("?"),
                new.port
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into()),
            ),
        });
    }
    let auth = |c: Option<&Condition>| {
        c.is_some_and(|c| c.reason == "Unauthorized" || c.reason == "Forbidden")
    };
    let new_synced = condition_of(Some(new), SYNCED);
    if auth(new_synced) && !auth(condition_of(old, SYNCED)) {
        events.push(PlannedEvent {
            warning: true,
            reason: "AuthenticationFailed",
            note: new_synced.map(|c| c.message.clone()).unwrap_or_default(),
        });
    }
    events
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
