//! PURE: converging a managed instance in place. [`changes`] compares the desired
//! instance with what DCS reports (normalised: capacity in bytes, absent strings as
//! unmanaged, tags as sets against what the operator set), and [`next_step`] picks
//! at most one write, never the same desired value twice, never while DCS is busy.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::clock::later;
use crate::crd::{AppliedTag, DesiredInstance, ManagedStatus, OperationRecord};
use crate::dcs::DcsStatus;
use crate::dcs::model::Instance;

/// A refused write is asked again at most this often with the same values.
pub const REFUSAL_BACKSTOP: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// After an accepted write, DCS may still show the old value for a while: it is
/// waited for, not reported as NotConverged, for this long.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(120);

pub const ACCEPTED: &str = "Accepted";
pub const REFUSED: &str = "Refused";

/// The kinds of in-place write, in the order they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Resize,
    Modify,
    Port,
    Tags,
    Password,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Resize => "resize",
            Operation::Modify => "modify",
            Operation::Port => "port",
            Operation::Tags => "tags",
            Operation::Password => "password",
        }
    }
}

/// One difference, as the write that would remove it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Resize {
        spec_code: String,
        gigabytes: f64,
    },
    Modify {
        name: Option<String>,
        description: Option<String>,
        window: Option<(String, String)>,
        security_group_id: Option<String>,
    },
    Port(u16),
    Tags {
        create: Vec<AppliedTag>,
        delete: Vec<AppliedTag>,
        /// The record after the change: the desired tags.
        desired: Vec<AppliedTag>,
    },
    /// The password Secret's value differs from the one last set.
    Password {
        digest: String,
    },
}

impl Change {
    pub fn operation(&self) -> Operation {
        match self {
            Change::Resize { .. } => Operation::Resize,
            Change::Modify { .. } => Operation::Modify,
            Change::Port(_) => Operation::Port,
            Change::Tags { .. } => Operation::Tags,
            Change::Password { .. } => Operation::Password,
        }
    }

    /// A digest of the desired values: the key of "written once".
    pub fn digest(&self) -> String {
        let text = match self {
            Change::Resize {
                spec_code,
                gigabytes,
            } => format!("{spec_code}|{gigabytes}"),
            Change::Modify {
                name,
                description,
                window,
                security_group_id,
            } => format!("{name:?}|{description:?}|{window:?}|{security_group_id:?}"),
            Change::Port(port) => port.to_string(),
            Change::Tags { desired, .. } => format!("{desired:?}"),
            Change::Password { digest } => digest.clone(),
        };
        short_digest(&text)
    }
}

fn short_digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// A salted digest of a password (never the password): salted with the object's
/// uid so equal passwords of two objects do not show as equal.
pub fn password_digest(uid: &str, password: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(uid.as_bytes());
    hasher.update([0]);
    hasher.update(password.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// The tags as the operator records them.
pub fn applied_tags(desired: &DesiredInstance) -> Vec<AppliedTag> {
    let mut tags: Vec<AppliedTag> = desired
        .tags
        .iter()
        .map(|t| AppliedTag {
            key: t.key.clone(),
            value: t.value.clone(),
        })
        .collect();
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    tags
}

/// Every difference between `desired` and `observed`, in write order. A field the
/// spec leaves out is not managed (an unset `name` keeps whatever name the
/// instance has: an adopted instance is never renamed to the default). `password`:
/// the digest of the password Secret's value, when there is one.
pub fn changes(
    desired: &DesiredInstance,
    observed: &Instance,
    managed: &ManagedStatus,
    password: Option<&str>,
) -> Vec<Change> {
    let mut found = Vec::new();
    let spec_code = observed
        .resource_spec_code
        .as_deref()
        .or(observed.spec_code.as_deref());
    let bytes = desired.capacity.mebibytes() << 20;
    let capacity_differs = observed.capacity_bytes().is_some_and(|have| have != bytes);
    let spec_differs = spec_code.is_some_and(|have| have != desired.spec_code);
    if capacity_differs || spec_differs {
        found.push(Change::Resize {
            spec_code: desired.spec_code.clone(),
            gigabytes: desired.capacity.gigabytes(),
        });
    }
    if let Some(modify) = modify_change(desired, observed) {
        found.push(modify);
    }
    let port = desired.port.and_then(|p| u16::try_from(p).ok());
    if let (Some(want), Some(have)) = (port, observed.port)
        && i64::from(want) != have
    {
        found.push(Change::Port(want));
    }
    let wanted = applied_tags(desired);
    if wanted != managed.tags {
        let create = wanted
            .iter()
            .filter(|t| !managed.tags.contains(t))
            .cloned()
            .collect();
        let delete = managed
            .tags
            .iter()
            .filter(|t| !wanted.iter().any(|w| w.key == t.key))
            .cloned()
            .collect();
        found.push(Change::Tags {
            create,
            delete,
            desired: wanted,
        });
    }
    if let (Some(want), Some(have)) = (password, managed.password_digest.as_deref())
        && want != have
    {
        found.push(Change::Password {
            digest: want.to_string(),
        });
    }
    found
}

/// The one modify (name, description, window, security group) that removes every
/// difference among them; None when none differs.
fn modify_change(desired: &DesiredInstance, observed: &Instance) -> Option<Change> {
    let differs = |want: Option<&str>, have: Option<&str>| {
        want.is_some_and(|want| have.unwrap_or_default() != want)
    };
    let window = desired
        .maintenance_window
        .as_ref()
        .map(|w| (w.begin.clone(), w.end.clone()));
    let window_differs = window.as_ref().is_some_and(|(begin, end)| {
        observed.maintain_begin.as_deref() != Some(begin.as_str())
            || observed.maintain_end.as_deref() != Some(end.as_str())
    });
    let name = desired.name.as_deref();
    let name_differs = differs(name, observed.name.as_deref());
    let description_differs = differs(
        desired.description.as_deref(),
        observed.description.as_deref(),
    );
    let group = desired.security_group_id.as_deref();
    let group_differs = differs(group, observed.security_group_id.as_deref());
    (name_differs || description_differs || window_differs || group_differs).then(|| {
        Change::Modify {
            name: name.map(str::to_string).filter(|_| name_differs),
            description: desired.description.clone().filter(|_| description_differs),
            window: window.filter(|_| window_differs),
            security_group_id: group.map(str::to_string).filter(|_| group_differs),
        }
    })
}

/// What to do about the differences now.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing differs.
    Converged,
    /// Write this (after the ownership check).
    Write(Change),
    /// DCS is busy (not RUNNING, a task running, a write just accepted): look again.
    Busy(String),
    /// Nothing to write now: these were written and still differ, or were refused.
    Report {
        not_converged: Vec<Operation>,
        refused: Option<OperationRecord>,
    },
}

/// At most one write: the first difference whose desired values were not written
/// yet (or were refused more than [`REFUSAL_BACKSTOP`] ago), and only while the
/// instance is RUNNING with no task.
pub fn next_step(
    changes: Vec<Change>,
    records: &[OperationRecord],
    status: Option<&DcsStatus>,
    task_running: bool,
    now: DateTime<Utc>,
) -> Step {
    if changes.is_empty() {
        return Step::Converged;
    }
    let mut not_converged = Vec::new();
    let mut refused = None;
    let mut settling = false;
    let mut writable = None;
    for change in changes {
        let record = records
            .iter()
            .find(|r| r.operation == change.operation().as_str() && r.desired == change.digest());
        let at = record.and_then(|r| DateTime::parse_from_rfc3339(&r.at).ok());
        match record {
            Some(r) if r.result == ACCEPTED => {
                if at.is_some_and(|at| later(at.with_timezone(&Utc), SETTLE) > now) {
                    settling = true;
                } else {
                    not_converged.push(change.operation());
                }
            }
            Some(r)
                if at.is_some_and(|at| later(at.with_timezone(&Utc), REFUSAL_BACKSTOP) > now) =>
            {
                refused.get_or_insert_with(|| r.clone());
            }
            _ => {
                writable.get_or_insert(change);
            }
        }
    }
    let busy = status != Some(&DcsStatus::Running) || task_running;
    // Nothing is written on top of a write still settling, nor while DCS is busy;
    // and a change still being applied (EXTENDING, a task) is not "not converged".
    if settling || (busy && (writable.is_some() || !not_converged.is_empty())) {
        let state = status.map_or("unknown", |s| s.as_str());
        return Step::Busy(if settling {
            "waiting for DCS to apply the last change".to_string()
        } else if task_running {
            "DCS is running a task on the instance; the change waits for it".to_string()
        } else {
            format!("the instance is {state}; the change waits for RUNNING")
        });
    }
    match writable {
        Some(change) => Step::Write(change),
        None => Step::Report {
            not_converged,
            refused,
        },
    }
}

/// The record of `change`'s write.
pub fn record(
    change: &Change,
    result: &str,
    at: DateTime<Utc>,
    refusal: Option<(String, String)>,
) -> OperationRecord {
    let (code, message) = match refusal {
        Some((code, message)) => (
            Some(crate::dcs::bounded::clip(&code, 64).to_string()),
            Some(crate::dcs::bounded::clip(&message, 512).to_string()),
        ),
        None => (None, None),
    };
    OperationRecord {
        operation: change.operation().as_str().to_string(),
        desired: change.digest(),
        result: result.to_string(),
        at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        code,
        message,
    }
}

/// `managed` with `record` replacing the previous record of its operation.
pub fn with_record(mut managed: ManagedStatus, record: OperationRecord) -> ManagedStatus {
    managed
        .operations
        .retain(|r| r.operation != record.operation);
    managed.operations.push(record);
    managed
        .operations
        .sort_by(|a, b| a.operation.cmp(&b.operation));
    managed
}

#[cfg(test)]
mod tests;
