//! PURE: the Ready and Synced conditions: what each says (a [`ConditionDraft`]) and
//! how a draft becomes a condition (lastTransitionTime moves only on a flip).

use chrono::{DateTime, SecondsFormat, Utc};

use super::reasons::{self, status_of};
use crate::crd::{Condition, DcsInstanceStatus};
use crate::dcs::DcsError;
use crate::dcs::bounded::clip;
use crate::dcs::model::{DcsStatus, StatusClass};

const MAX_MESSAGE: usize = 1024;

/// What a condition should say, before it meets the stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionDraft {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl ConditionDraft {
    pub fn new(ok: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok,
            reason,
            message: message.into(),
        }
    }
}

/// The stored condition of this type, if any.
pub fn find<'a>(status: Option<&'a DcsInstanceStatus>, type_: &str) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

/// A condition from a draft. The time moves only when the status flips; a new
/// reason or message alone does not.
pub fn condition(
    current: Option<&DcsInstanceStatus>,
    type_: &str,
    draft: &ConditionDraft,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let status = status_of(draft.ok);
    let last_transition_time = match find(current, type_) {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => now.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: draft.reason.into(),
        message: truncate(&draft.message).into(),
        observed_generation: generation,
        last_transition_time,
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() > MAX_MESSAGE {
        clip(text, MAX_MESSAGE + 1)
    } else {
        text.to_string()
    }
}

/// Synced after a successful answer that is too old to stand for now.
pub fn stale(at: DateTime<Utc>) -> ConditionDraft {
    ConditionDraft::new(
        false,
        reasons::STALE,
        format!(
            "The last answer from DCS is from {}, more than three poll intervals ago; the values shown may be out of date (the operator keeps asking: check the operator's logs and the API budget metrics)",
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    )
}

/// Synced after an answer (a 404 for the instance is an answer too).
pub fn observed() -> ConditionDraft {
    ConditionDraft::new(true, reasons::OBSERVED, "The DCS API answered")
}

/// Synced before any observation.
pub fn pending() -> ConditionDraft {
    ConditionDraft::new(false, reasons::PENDING, "Waiting for the first observation")
}

/// Synced after a failed observation.
pub fn failed(error: &DcsError) -> ConditionDraft {
    ConditionDraft::new(false, error.reason(), error_message(error))
}

/// Ready when DCS says the instance does not exist.
pub fn instance_not_found(error: &DcsError) -> ConditionDraft {
    ConditionDraft::new(false, reasons::INSTANCE_NOT_FOUND, error_message(error))
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
        DcsError::Unsendable { message } => format!(
            "The request to DCS could not be built ({message}); check the credentials Secret (securityToken, authToken, projectId)"
        ),
        DcsError::Decode { message, .. } => {
            format!(
                "DCS sent an answer that could not be read ({message}); the last known values are kept"
            )
        }
    }
}

/// Ready from a successful answer: what its DCS status means for clients.
pub fn ready_from_status(
    dcs_status: Option<&DcsStatus>,
    facts: &DcsInstanceStatus,
    secret_written: bool,
) -> ConditionDraft {
    let endpoint = match (&facts.ip, facts.port) {
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        _ => "an unknown address".to_string(),
    };
    match dcs_status {
        Some(DcsStatus::Running) if secret_written => ConditionDraft::new(
            true,
            reasons::RUNNING,
            format!("The instance is RUNNING at {endpoint} and the connection Secret is written"),
        ),
        Some(DcsStatus::Running) => ConditionDraft::new(
            false,
            reasons::RUNNING,
            "The instance is RUNNING but DCS gave no address or port yet; the connection Secret is not written",
        ),
        Some(status) => {
            let mut message = match status.class() {
                StatusClass::Transitional => {
                    format!("The instance is {status}; waiting for RUNNING")
                }
                StatusClass::Degraded => {
                    format!("The instance is {status} and not serving traffic")
                }
                StatusClass::Failed => format!(
                    "Creating the instance failed ({status}); it will not become RUNNING: delete it in DCS and create it again"
                ),
                StatusClass::Unknown => {
                    format!("DCS reports status {status:?}, which this operator does not know")
                }
                StatusClass::Ready => format!("The instance is {status}"),
            };
            if let (Some(code), Some(text)) = (&facts.error_code, &facts.error_message) {
                message.push_str(&format!(": {code} {text}"));
            }
            ConditionDraft::new(false, status.reason(), message)
        }
        None => ConditionDraft::new(
            false,
            reasons::UNKNOWN_STATUS,
            "DCS reported no status for the instance",
        ),
    }
}
