//! Serde types for DCS API answers: the instance (v1.0 ShowInstance, v2 list items),
//! the list response, instance statuses and the instance fault-code table.
//!
//! Everything is optional and unknown fields are ignored: the real API sends nulls
//! for typed fields, omits documented ones and adds undocumented ones. Integer
//! fields also accept a numeric string (`"port": "6379"`), as the official Python
//! SDK does with `int(value)`; a non-numeric string is a decode error naming the field.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::bounded;
use crate::intern::Atom;

/// One DCS instance as the API describes it. The field names are the API's own.
///
/// Which API carries what: v1.0 ShowInstance (the one the operator reads first)
/// is the only answer with `error_code`, `internal_version` and `product_id`, and
/// names the flavour `resource_spec_code`. v2 list items carry `ip`, `port`,
/// `status`, `capacity`, `capacity_minor`, `max_memory`, `used_memory`,
/// `engine`, `engine_version`, `spec_code`, `domain_name`, `az_codes` and more,
/// but no `error_code` and no `available_zones`. Either may carry `task` (the
/// background task running, undocumented in the SDK models).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Instance {
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::s64"
    )]
    pub instance_id: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub name: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::atom_s64"
    )]
    pub engine: Option<Atom>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::atom_s64"
    )]
    pub engine_version: Option<Atom>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_int"
    )]
    pub capacity: Option<i64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    pub capacity_minor: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::s4096"
    )]
    pub ip: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_int"
    )]
    pub port: Option<i64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::atom_s64"
    )]
    pub status: Option<Atom>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::s64"
    )]
    pub sub_status: Option<String>,
    /// The background task running on the instance (`UpdatePort`, `EXTEND`, …; the
    /// OTC show page's "current task", absent from the SDK models). Any value that
    /// is not null means busy, as Terraform reads it: a string is cut to 64
    /// characters, a number written out, and any other value (an object, a list,
    /// `true`) reads as [`UNREADABLE_TASK`]. See [`Instance::has_task`].
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_task"
    )]
    pub task: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub description: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_int"
    )]
    pub max_memory: Option<i64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_int"
    )]
    pub used_memory: Option<i64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::atom_s128"
    )]
    pub resource_spec_code: Option<Atom>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::atom_s128"
    )]
    pub spec_code: Option<Atom>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::s64"
    )]
    pub internal_version: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_int"
    )]
    pub charging_mode: Option<i64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::atom_short"
    )]
    pub vpc_id: Option<Atom>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub vpc_name: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::s64"
    )]
    pub created_at: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::s64"
    )]
    pub error_code: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub user_id: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub user_name: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::atom_s64"
    )]
    pub maintain_begin: Option<Atom>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::atom_s64"
    )]
    pub maintain_end: Option<Atom>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::string_or_list::<_, 128>"
    )]
    pub available_zones: Option<StringOrList>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::string_or_list::<_, 128>"
    )]
    pub az_codes: Option<StringOrList>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::atom_short"
    )]
    pub subnet_id: Option<Atom>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub subnet_name: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::s64"
    )]
    pub subnet_cidr: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::atom_short"
    )]
    pub security_group_id: Option<Atom>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub security_group_name: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::s4096"
    )]
    pub backend_addrs: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub product_id: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub order_id: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub domain_name: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded::short"
    )]
    pub readonly_domain_name: Option<String>,
}

/// `available_zones` is documented as an array but the documented example sends a
/// string; accept both and send back what came.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StringOrList::One(one) if one.is_empty() => Vec::new(),
            StringOrList::One(one) => vec![one.clone()],
            StringOrList::Many(many) => many.clone(),
        }
    }
}

/// An integer, a float with no fraction, or a numeric string; null or an empty
/// string is absent. A visitor, not an untagged enum: an untagged enum buffers
/// whatever value came (a hostile endpoint's megabytes of nested arrays) first.
fn lenient_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    struct IntVisitor;
    impl<'de> serde::de::Visitor<'de> for IntVisitor {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer, a numeric string or null")
        }
        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(value))
        }
        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
            i64::try_from(value)
                .map(Some)
                .map_err(|_| E::custom(format!("expected an integer, got {value} (too large)")))
        }
        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
            if value.fract() == 0.0 && value.abs() < 9.0e15 {
                Ok(Some(value as i64))
            } else {
                Err(E::custom(format!("expected an integer, got {value}")))
            }
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            let trimmed = text.trim();
            if trimmed.is_empty() {
                return Ok(None);
            }
            trimmed.parse().map(Some).map_err(|_| {
                E::custom(format!(
                    "expected an integer, got the string {:?}",
                    bounded::clip(text, 32)
                ))
            })
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    deserializer.deserialize_any(IntVisitor)
}

/// What a `task` that is neither text, a number nor null reads as: still a task.
pub const UNREADABLE_TASK: &str = "(unreadable task)";

/// `task`: text (cut to 64 characters), a number written out, null or `false` as
/// absent, anything else as [`UNREADABLE_TASK`] (skipped unbuilt). A visitor, so a
/// task of any shape never fails the whole answer.
fn lenient_task<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct TaskVisitor;
    impl<'de> serde::de::Visitor<'de> for TaskVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any value")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(bounded::clip(text, 64)))
        }
        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
            Ok(Some(
                serde_json::Number::from_f64(value)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| UNREADABLE_TASK.to_string()),
            ))
        }
        fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Self::Value, E> {
            Ok(value.then(|| UNREADABLE_TASK.to_string()))
        }
        bounded::other_shapes_are!('de, Some(UNREADABLE_TASK.to_string()); seq, map);
        bounded::other_shapes_are!('de, None; unit);
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    deserializer.deserialize_any(TaskVisitor)
}

/// `capacity_minor` is a string in the SDK model (".125"); accept a number too.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct TextVisitor;
    impl<'de> serde::de::Visitor<'de> for TextVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, a number or null")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(bounded::clip(text, 32)))
        }
        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
            Ok(Some(
                serde_json::Number::from_f64(value)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            ))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    deserializer.deserialize_any(TextVisitor)
}

const GIB: u128 = 1 << 30;

impl Instance {
    /// The addresses clients connect to: cluster instances send several, comma-separated.
    pub fn addresses(&self) -> Vec<String> {
        split_addresses(self.ip.as_deref().unwrap_or(""))
    }

    pub fn status(&self) -> Option<DcsStatus> {
        self.status.as_deref().map(DcsStatus::parse)
    }

    /// True while a background task runs (a `task` that is not blank): no write
    /// may be sent then, even when the status is RUNNING (LIFECYCLE.md §11).
    pub fn has_task(&self) -> bool {
        self.task
            .as_deref()
            .is_some_and(|task| !task.trim().is_empty())
    }

    /// Cache capacity in bytes: `capacity` GB, or for sub-GB flavours (capacity 0)
    /// the decimal GB string in `capacity_minor` (".125" → 128 MiB).
    pub fn capacity_bytes(&self) -> Option<u64> {
        match self.capacity {
            Some(gb) if gb > 0 => u64::try_from(gb).ok()?.checked_mul(GIB as u64),
            _ => self.capacity_minor.as_deref().and_then(decimal_gb_to_bytes),
        }
    }

    /// `max_memory` (MB) in bytes.
    pub fn max_memory_bytes(&self) -> Option<u64> {
        mb_to_bytes(self.max_memory?)
    }

    /// `used_memory` (MB) in bytes.
    pub fn used_memory_bytes(&self) -> Option<u64> {
        mb_to_bytes(self.used_memory?)
    }

    /// The flavour: v1.0 calls it `resource_spec_code`, v2 `spec_code`.
    pub fn spec_code(&self) -> Option<&str> {
        self.resource_spec_code
            .as_deref()
            .or(self.spec_code.as_deref())
    }

    pub fn available_zones(&self) -> Vec<String> {
        self.available_zones
            .as_ref()
            .map(StringOrList::to_vec)
            .unwrap_or_default()
    }

    /// Only what the operator mirrors (status, the Secret, metrics) and what gates a
    /// write (`task`): what the observation store keeps of thousands of answers.
    pub fn slim(self) -> Instance {
        Instance {
            instance_id: self.instance_id,
            name: self.name,
            engine: self.engine,
            engine_version: self.engine_version,
            capacity: self.capacity,
            capacity_minor: self.capacity_minor,
            ip: self.ip,
            port: self.port,
            status: self.status,
            task: self.task,
            max_memory: self.max_memory,
            used_memory: self.used_memory,
            resource_spec_code: self.resource_spec_code,
            spec_code: self.spec_code,
            error_code: self.error_code,
            available_zones: self.available_zones,
            // What a managed instance's spec is compared with (in-place changes,
            // fields fixed once created).
            description: self.description,
            maintain_begin: self.maintain_begin,
            maintain_end: self.maintain_end,
            security_group_id: self.security_group_id,
            vpc_id: self.vpc_id,
            subnet_id: self.subnet_id,
            ..Instance::default()
        }
    }

    /// Fills every field that `self` lacks from `older`. Used to merge a list item
    /// (which has no `error_code` or `available_zones`) over the last ShowInstance
    /// answer, so that fields the list does not carry keep their last value.
    pub fn merged_over(mut self, older: &Instance) -> Instance {
        macro_rules! keep {
            ($($field:ident),* $(,)?) => {
                $( if self.$field.is_none() { self.$field = older.$field.clone(); } )*
            };
        }
        keep!(
            instance_id,
            name,
            engine,
            engine_version,
            capacity,
            capacity_minor,
            ip,
            port,
            status,
            sub_status,
            description,
            max_memory,
            used_memory,
            resource_spec_code,
            spec_code,
            internal_version,
            charging_mode,
            vpc_id,
            vpc_name,
            created_at,
            user_id,
            user_name,
            maintain_begin,
            maintain_end,
            available_zones,
            az_codes,
            subnet_id,
            subnet_name,
            subnet_cidr,
            security_group_id,
            security_group_name,
            backend_addrs,
            product_id,
            order_id,
            domain_name,
            readonly_domain_name,
        );
        // `task` is never carried over: an answer without one says no task runs as
        // far as it knows, and a stale task would hold every write back for good (a
        // write sent during a task is refused busy, `DCS.4017`, and waits anyway).
        // A fault code describes one state: carried over only while the status is the
        // same, so an instance that recovered does not keep its old fault.
        if self.error_code.is_none() && self.status == older.status {
            self.error_code = older.error_code.clone();
        }
        self
    }
}

pub fn split_addresses(ip: &str) -> Vec<String> {
    ip.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn mb_to_bytes(mb: i64) -> Option<u64> {
    u64::try_from(mb).ok()?.checked_mul(1 << 20)
}

/// Exact decimal arithmetic: ".125" GB is exactly 128 MiB, which floats would not promise.
fn decimal_gb_to_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let (int_part, frac_part) = text.split_once('.').unwrap_or((text, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || frac_part.len() > 18
        || int_part.len() > 12
    {
        return None;
    }
    let scale = 10u128.pow(frac_part.len() as u32);
    let int_value: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let frac_value: u128 = if frac_part.is_empty() {
        0
    } else {
        frac_part.parse().ok()?
    };
    let bytes = (int_value * scale + frac_value) * GIB / scale;
    u64::try_from(bytes).ok().filter(|b| *b > 0)
}

/// The v2 list answer (`GET /v2/{project_id}/instances`); v1.0 has the same shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceList {
    #[serde(deserialize_with = "lenient_int")]
    pub instance_num: Option<i64>,
    #[serde(deserialize_with = "null_as_empty")]
    pub instances: Vec<Instance>,
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// What a status says about the instance, used for readiness and polling speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// RUNNING: serving traffic.
    Ready,
    /// In progress; poll fast, it will change soon.
    Transitional,
    /// Not serving and not about to change by itself (ERROR, FROZEN); poll slowly.
    Degraded,
    /// Creation failed; will not become RUNNING.
    Failed,
    /// A value this operator does not know; treated like a transitional state.
    Unknown,
}

/// An instance status as DCS reports it. Unknown strings are kept, never refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DcsStatus {
    Creating,
    CreateFailed,
    Running,
    Error,
    Restarting,
    Frozen,
    Extending,
    Restoring,
    Flushing,
    Paying,
    Freezing,
    Migrating,
    Upgrading,
    Deleting,
    Unknown(String),
}

impl DcsStatus {
    const KNOWN: [(&'static str, DcsStatus); 14] = [
        ("CREATING", DcsStatus::Creating),
        ("CREATEFAILED", DcsStatus::CreateFailed),
        ("RUNNING", DcsStatus::Running),
        ("ERROR", DcsStatus::Error),
        ("RESTARTING", DcsStatus::Restarting),
        ("FROZEN", DcsStatus::Frozen),
        ("EXTENDING", DcsStatus::Extending),
        ("RESTORING", DcsStatus::Restoring),
        ("FLUSHING", DcsStatus::Flushing),
        ("PAYING", DcsStatus::Paying),
        ("FREEZING", DcsStatus::Freezing),
        ("MIGRATING", DcsStatus::Migrating),
        ("UPGRADING", DcsStatus::Upgrading),
        ("DELETING", DcsStatus::Deleting),
    ];

    pub fn parse(value: &str) -> DcsStatus {
        Self::KNOWN
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, status)| status.clone())
            .unwrap_or_else(|| DcsStatus::Unknown(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            DcsStatus::Unknown(value) => value,
            known => Self::KNOWN
                .iter()
                .find(|(_, status)| status == known)
                .map(|(name, _)| *name)
                .unwrap_or_default(),
        }
    }

    pub fn class(&self) -> StatusClass {
        match self {
            DcsStatus::Running => StatusClass::Ready,
            DcsStatus::Creating
            | DcsStatus::Restarting
            | DcsStatus::Extending
            | DcsStatus::Restoring
            | DcsStatus::Flushing
            | DcsStatus::Paying
            | DcsStatus::Freezing
            | DcsStatus::Migrating
            | DcsStatus::Upgrading
            | DcsStatus::Deleting => StatusClass::Transitional,
            DcsStatus::Error | DcsStatus::Frozen => StatusClass::Degraded,
            DcsStatus::CreateFailed => StatusClass::Failed,
            DcsStatus::Unknown(_) => StatusClass::Unknown,
        }
    }

    /// A PascalCase label for conditions: `Creating`, `CreateFailed`, `UnknownStatus`.
    pub fn reason(&self) -> &'static str {
        match self {
            DcsStatus::Creating => "Creating",
            DcsStatus::CreateFailed => "CreateFailed",
            DcsStatus::Running => "Running",
            DcsStatus::Error => "Error",
            DcsStatus::Restarting => "Restarting",
            DcsStatus::Frozen => "Frozen",
            DcsStatus::Extending => "Extending",
            DcsStatus::Restoring => "Restoring",
            DcsStatus::Flushing => "Flushing",
            DcsStatus::Paying => "Paying",
            DcsStatus::Freezing => "Freezing",
            DcsStatus::Migrating => "Migrating",
            DcsStatus::Upgrading => "Upgrading",
            DcsStatus::Deleting => "Deleting",
            DcsStatus::Unknown(_) => "UnknownStatus",
        }
    }
}

impl fmt::Display for DcsStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DcsStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The instance fault codes (`error_code` of a successful answer; Table 3 of the
/// query-instance page) with their meaning.
pub const FAULT_CODES: &[(&str, &str)] = &[
    ("dcs.00.0007", "System error."),
    ("dcs.01.0001", "Internal service error."),
    ("dcs.01.0002", "Internal service error."),
    ("dcs.01.0003", "Internal service error."),
    ("dcs.02.0001", "VPC creation failed."),
    ("dcs.02.0002", "VPC creation failed."),
    ("dcs.02.0003", "Security group creation failed."),
    ("dcs.02.0004", "Subnet creation failed."),
    ("dcs.02.0005", "Subnet is in an abnormal state."),
    ("dcs.03.0001", "ECS creation failed."),
    ("dcs.03.0002", "ECS creation failed."),
    ("dcs.03.0003", "ECS creation failed."),
    ("dcs.03.0004", "ECS creation failed."),
    ("dcs.03.0005", "Binding a NIC to the ECS failed."),
    ("dcs.03.0007", "ECS start failed."),
    ("dcs.03.0008", "ECS start failed."),
    ("dcs.03.0009", "ECS stop failed."),
    ("dcs.03.0017", "Some nodes of the instance are faulty."),
    ("dcs.04.0002", "Instance deployment failed."),
    ("dcs.04.0003", "Could not connect to the instance."),
    (
        "dcs.04.0004",
        "Both cache nodes claim the master role (probable network problem between master and standby).",
    ),
];

/// The human text for an instance fault code, when the code is one DCS documents.
pub fn fault_description(code: &str) -> Option<&'static str> {
    let code = code.trim();
    FAULT_CODES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(code))
        .map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_classify() {
        for (name, status) in DcsStatus::KNOWN.iter() {
            assert_eq!(DcsStatus::parse(name), *status);
            assert_eq!(status.as_str(), *name);
        }
        assert_eq!(DcsStatus::parse("RUNNING").class(), StatusClass::Ready);
        assert_eq!(
            DcsStatus::parse("CREATING").class(),
            StatusClass::Transitional
        );
        assert_eq!(
            DcsStatus::parse("UPGRADING").class(),
            StatusClass::Transitional
        );
        assert_eq!(DcsStatus::parse("ERROR").class(), StatusClass::Degraded);
        assert_eq!(DcsStatus::parse("FROZEN").class(), StatusClass::Degraded);
        assert_eq!(
            DcsStatus::parse("CREATEFAILED").class(),
            StatusClass::Failed
        );
        let odd = DcsStatus::parse("HIBERNATING");
        assert_eq!(odd.class(), StatusClass::Unknown);
        assert_eq!(odd.as_str(), "HIBERNATING");
        assert_eq!(odd.reason(), "UnknownStatus");
        // Case matters: the API sends upper case; anything else is not a known value.
        assert_eq!(DcsStatus::parse("running").class(), StatusClass::Unknown);
    }

    #[test]
    fn capacity_from_gb_or_minor() {
        let mut instance = Instance {
            capacity: Some(2),
            ..Default::default()
        };
        assert_eq!(instance.capacity_bytes(), Some(2 << 30));
        instance.capacity = Some(0);
        instance.capacity_minor = Some(".125".into());
        assert_eq!(instance.capacity_bytes(), Some(128 << 20));
        instance.capacity_minor = Some("0.5".into());
        assert_eq!(instance.capacity_bytes(), Some(512 << 20));
        instance.capacity_minor = Some("abc".into());
        assert_eq!(instance.capacity_bytes(), None);
        instance.capacity_minor = Some(".".into());
        assert_eq!(instance.capacity_bytes(), None);
        instance.capacity_minor = None;
        assert_eq!(instance.capacity_bytes(), None);
        instance.capacity = Some(-1);
        assert_eq!(instance.capacity_bytes(), None);
    }

    #[test]
    fn addresses_split_and_trim() {
        assert_eq!(
            split_addresses("10.0.0.1, 10.0.0.2,,"),
            vec!["10.0.0.1", "10.0.0.2"]
        );
        assert!(split_addresses("").is_empty());
    }

    #[test]
    fn fault_codes_known_and_unknown() {
        assert_eq!(
            fault_description("dcs.02.0001"),
            Some("VPC creation failed.")
        );
        assert_eq!(fault_description("dcs.99.9999"), None);
        assert_eq!(FAULT_CODES.len(), 21);
    }

    #[test]
    fn merge_keeps_fields_the_list_lacks() {
        let show = Instance {
            status: Some("ERROR".into()),
            ip: Some("10.0.0.1".into()),
            error_code: Some("dcs.03.0017".into()),
            available_zones: Some(StringOrList::Many(vec!["az1".into()])),
            ..Default::default()
        };
        let item = Instance {
            status: Some("ERROR".into()),
            ip: Some("10.0.0.2".into()),
            ..Default::default()
        };
        let merged = item.merged_over(&show);
        assert_eq!(merged.ip.as_deref(), Some("10.0.0.2"));
        assert_eq!(merged.error_code.as_deref(), Some("dcs.03.0017"));
        assert_eq!(merged.available_zones(), vec!["az1"]);
        let recovered = Instance {
            status: Some("RUNNING".into()),
            ..Default::default()
        }
        .merged_over(&show);
        assert_eq!(recovered.error_code, None);
        // A task is never carried over, even while the status stays the same.
        let busy = Instance {
            status: Some("RUNNING".into()),
            task: Some("UpdatePort".into()),
            ..Default::default()
        };
        let item = Instance {
            status: Some("RUNNING".into()),
            ..Default::default()
        };
        assert!(busy.clone().slim().has_task(), "slim keeps the task");
        assert!(!item.merged_over(&busy).has_task());
    }

    #[test]
    fn any_task_that_is_not_null_means_busy() {
        let task = |json: &str| {
            serde_json::from_str::<Instance>(&format!(r#"{{"status":"RUNNING","task":{json}}}"#))
                .map(|instance| (instance.task.clone(), instance.has_task()))
                .unwrap()
        };
        assert_eq!(task(r#""UpdatePort""#), (Some("UpdatePort".into()), true));
        assert_eq!(task("null"), (None, false));
        assert_eq!(task(r#""""#), (Some(String::new()), false));
        assert!(!task(r#""  ""#).1);
        assert_eq!(task("false"), (None, false));
        assert_eq!(task("7"), (Some("7".into()), true));
        for odd in ["true", r#"{"name":"EXTEND","status":"RUNNING"}"#, "[1,[2]]"] {
            assert_eq!(task(odd), (Some(UNREADABLE_TASK.into()), true), "{odd}");
        }
        let long = task(&format!("\"{}\"", "t".repeat(1 << 20)));
        assert_eq!(long.0.unwrap().chars().count(), 64);
        let absent: Instance = serde_json::from_str(r#"{"status":"RUNNING"}"#).unwrap();
        assert!(!absent.has_task());
        // Re-encoded under its own name, and not at all when absent.
        let shown = serde_json::to_value(Instance {
            task: Some("UpdatePort".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(shown["task"], "UpdatePort");
        assert!(serde_json::to_value(absent).unwrap().get("task").is_none());
    }
}
