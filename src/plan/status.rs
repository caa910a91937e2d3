//! PURE: the facts status mirrors from a DCS answer, the last known values kept
//! when an answer lacks them, the connection details, and status clipped to the
//! schema.

use crate::connection_secret::ConnectionDetails;
use crate::crd::DcsInstanceStatus;
use crate::dcs::bounded::clip;
use crate::dcs::model::{Instance, fault_description};
use crate::intern::Atom;

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

/// The instance facts that status mirrors, from a successful answer. Addresses
/// and port missing from an answer keep their last known values: an answer
/// without an endpoint never erases a good one.
pub fn observed_fields(
    instance: &Instance,
    previous: Option<&DcsInstanceStatus>,
) -> DcsInstanceStatus {
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
        engine: instance.engine.as_deref().map(Atom::from),
        engine_version: instance.engine_version.as_deref().map(Atom::from),
        ip,
        port,
        addresses,
        status: instance.status.as_deref().map(Atom::from),
        capacity: instance.capacity_bytes().map(quantity).map(Atom::from),
        max_memory: instance
            .max_memory_bytes()
            .filter(|b| *b > 0)
            .map(quantity)
            .map(Atom::from),
        error_code,
        error_message,
        resource_spec_code: instance.spec_code().map(Atom::from),
        available_zones: (!zones.is_empty()).then(|| zones.iter().map(Atom::from).collect()),
        ..DcsInstanceStatus::default()
    }
}

/// The mirrored facts of a status, without conditions and bookkeeping.
pub fn facts_of(status: &DcsInstanceStatus) -> DcsInstanceStatus {
    DcsInstanceStatus {
        connection_secret_name: None,
        binding: None,
        observed_generation: None,
        conditions: Vec::new(),
        ..status.clone()
    }
}

/// Whether an answer, merged over the stored status as the plan merges it, gives a
/// connection Secret something to hold (an address and a port). Gather asks this to
/// know whether the Secret is about to be written, with the plan's own rule.
pub fn has_connection_details(instance: &Instance, current: Option<&DcsInstanceStatus>) -> bool {
    connection_details(&observed_fields(instance, current), None).is_some()
}

pub fn connection_details(
    facts: &DcsInstanceStatus,
    password: Option<&str>,
) -> Option<ConnectionDetails> {
    let addresses = facts.addresses.clone().filter(|a| !a.is_empty())?;
    Some(ConnectionDetails {
        engine: facts.engine.as_deref().unwrap_or("Redis").to_string(),
        engine_version: facts.engine_version.as_deref().map(str::to_string),
        addresses,
        port: facts.port?,
        password: password.map(str::to_string),
    })
}

/// Cuts every string of status to the CRD's maxLength (characters, ending in `…`)
/// and every list to its maxItems. Idempotent, so it never causes churn.
pub fn clip_to_schema(status: &mut DcsInstanceStatus) {
    fn field<T: std::ops::Deref<Target = str> + From<String>>(value: &mut Option<T>, max: usize) {
        if let Some(text) = value.as_mut()
            && text.chars().count() > max
        {
            *text = clip(text, max).into();
        }
    }
    fn list<T: std::ops::Deref<Target = str> + From<String>>(
        value: &mut Option<Vec<T>>,
        max_items: usize,
        max: usize,
    ) {
        if let Some(items) = value.as_mut() {
            items.truncate(max_items);
            for item in items.iter_mut() {
                if item.chars().count() > max {
                    *item = clip(item, max).into();
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
            condition.reason = clip(&condition.reason, 64).into();
        }
        if condition.message.chars().count() > 2048 {
            condition.message = clip(&condition.message, 2048).into();
        }
    }
}
