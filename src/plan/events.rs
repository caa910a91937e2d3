//! PURE: the Kubernetes Events a status change deserves: only on transitions,
//! never once per poll.

use super::conditions::find;
use super::reasons::{self, READY, SYNCED, TRUE};
use crate::crd::{Condition, DcsInstanceStatus};

/// A Kubernetes Event to publish: only on transitions, never once per poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The events a status change deserves: became Ready / not Ready, DCS status changed,
/// endpoint changed, Secret conflict, authentication failed.
pub fn transition_events(
    old: Option<&DcsInstanceStatus>,
    new: &DcsInstanceStatus,
) -> Vec<PlannedEvent> {
    let mut events = Vec::new();
    let old_ready = find(old, READY);
    let new_ready = find(Some(new), READY);
    if let Some(ready) = new_ready {
        let flipped = old_ready.is_none_or(|o| o.status != ready.status);
        if flipped && ready.status == TRUE {
            events.push(PlannedEvent {
                warning: false,
                reason: reasons::BECAME_READY,
                note: ready.message.to_string(),
            });
        } else if flipped
            || old_ready.is_some_and(|o| o.reason != ready.reason) && ready.status != TRUE
        {
            if ready.reason == reasons::SECRET_CONFLICT {
                events.push(PlannedEvent {
                    warning: true,
                    reason: reasons::SECRET_CONFLICT,
                    note: ready.message.to_string(),
                });
            } else {
                events.push(PlannedEvent {
                    warning: true,
                    reason: reasons::NOT_READY,
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
            reason: reasons::STATUS_CHANGED,
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
            reason: reasons::ENDPOINT_CHANGED,
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
        c.is_some_and(|c| c.reason == reasons::UNAUTHORIZED || c.reason == reasons::FORBIDDEN)
    };
    let new_synced = find(Some(new), SYNCED);
    if auth(new_synced) && !auth(find(old, SYNCED)) {
        events.push(PlannedEvent {
            warning: true,
            reason: reasons::AUTHENTICATION_FAILED,
            note: new_synced
                .map(|c| c.message.to_string())
                .unwrap_or_default(),
        });
    }
    events
}
