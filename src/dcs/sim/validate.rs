//! Request-body validation for the simulated write routes, with the API's refusal
//! codes (LIFECYCLE.md §10). Pure functions over JSON: no state, no HTTP.
//!
//! Where the real code is undocumented the simulator answers `DCS.4800` (its own
//! "invalid parameter" code, already used for bad list parameters); docs/simulator.md
//! lists which refusals those are.

use serde_json::{Map, Value};

use super::flavors::{self, Flavor, Zone};

/// Why a write was refused: the HTTP status and the DCS error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code,
            message: message.into(),
        }
    }

    pub fn not_found() -> Self {
        Self {
            status: 404,
            code: codes::NOT_FOUND,
            message: "This DCS instance does not exist.".into(),
        }
    }

    /// The simulator's own code, for conditions whose real code is undocumented.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::bad(
            codes::INVALID,
            format!("Invalid parameter: {}", message.into()),
        )
    }
}

/// The codes the write routes answer. Documented ones come from LIFECYCLE.md §10;
/// `EMPTY_BODY`/`BAD_JSON` are the `DCS.40NN` twins of the appendix's `1114000NN`.
pub mod codes {
    /// Simulator-chosen: any invalid parameter without a documented code.
    pub const INVALID: &str = "DCS.4800";
    pub const EMPTY_BODY: &str = "DCS.4004";
    pub const BAD_JSON: &str = "DCS.4005";
    pub const ENGINE: &str = "DCS.4007";
    pub const ENGINE_VERSION: &str = "DCS.4008";
    pub const NAME: &str = "DCS.4010";
    pub const DESCRIPTION: &str = "DCS.4011";
    pub const CAPACITY: &str = "DCS.4012";
    pub const VPC: &str = "DCS.4013";
    pub const SECURITY_GROUP: &str = "DCS.4014";
    pub const SUBNET: &str = "DCS.4016";
    pub const JOB_RUNNING: &str = "DCS.4017";
    pub const PASSWORD_COMPLEXITY: &str = "DCS.4019";
    pub const ENGINE_NOT_PRODUCT: &str = "DCS.4022";
    pub const WINDOW_ORDER: &str = "DCS.4025";
    pub const STATE: &str = "DCS.4026";
    pub const INSTANCE_QUOTA: &str = "DCS.4035";
    pub const MEMORY_QUOTA: &str = "DCS.4036";
    pub const AZ_MISSING: &str = "DCS.4042";
    pub const NOT_RUNNING: &str = "DCS.4049";
    pub const AZ_SOLD_OUT: &str = "DCS.4054";
    pub const BACKUP: &str = "DCS.4072";
    pub const DELETE_REFUSED: &str = "DCS.4099";
    pub const RESIZE_UNSUPPORTED: &str = "DCS.4103";
    pub const WINDOW: &str = "DCS.4106";
    pub const TYPE_CHANGE: &str = "DCS.4200";
    pub const NO_PASSWORD_ACCESS: &str = "DCS.4843";
    pub const PASSWORD: &str = "DCS.4845";
    pub const PASSWORD_MUST_BE_ABSENT: &str = "DCS.4849";
    pub const PASSWORD_FREE: &str = "DCS.4850";
    pub const TOO_MANY_REPLICAS: &str = "DCS.4875";
    pub const SPEC_CODE: &str = "DCS.4927";
    pub const BAD_ZONES: &str = "DCS.4933";
    pub const NOT_FOUND: &str = "DCS.3022";
    // Busy: the instance is in a task that forbids writes.
    pub const RESTARTING: &str = "DCS.4111";
    pub const EXTENDING: &str = "DCS.4113";
    pub const CONFIGURING: &str = "DCS.4114";
    pub const UPGRADING: &str = "DCS.4116";
    pub const CREATING: &str = "DCS.4118";
    pub const FREEZING: &str = "DCS.4120";
    pub const BACKING_UP: &str = "DCS.4096";
    pub const RESTORING: &str = "DCS.4097";
}

/// Parses a write body: JSON object, else `DCS.4004` (empty) / `DCS.4005` (not JSON).
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::bad(codes::EMPTY_BODY, "Empty request body."));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Refusal::bad(
            codes::BAD_JSON,
            "The message body contains invalid characters or is not in JSON format.",
        )),
    }
}

/// Refuses keys the SDK model does not have (strict: the real API's handling of
/// unknown keys is undocumented).
fn only_known(body: &Map<String, Value>, known: &[&str]) -> Result<(), Refusal> {
    match body.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(Refusal::invalid(format!("unknown field {key:?}"))),
        None => Ok(()),
    }
}

fn opt_str<'a>(
    body: &'a Map<String, Value>,
    key: &str,
    code: &'static str,
) -> Result<Option<&'a str>, Refusal> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Refusal::bad(code, format!("{key} must be a string"))),
    }
}

fn req_str<'a>(
    body: &'a Map<String, Value>,
    key: &str,
    code: &'static str,
) -> Result<&'a str, Refusal> {
    match opt_str(body, key, code)? {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(Refusal::bad(code, format!("{key} is required"))),
    }
}

fn opt_bool(
    body: &Map<String, Value>,
    key: &str,
    code: &'static str,
) -> Result<Option<bool>, Refusal> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(_) => Err(Refusal::bad(code, format!("{key} must be true or false"))),
    }
}

fn opt_number(
    body: &Map<String, Value>,
    key: &str,
    code: &'static str,
) -> Result<Option<f64>, Refusal> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| Refusal::bad(code, format!("{key} must be a number"))),
        Some(_) => Err(Refusal::bad(code, format!("{key} must be a number"))),
    }
}

/// 8-4-4-4-12 hex, as VPC, subnet and security group IDs are.
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// 4–64 characters: letters, digits, `_`, `-`, starting with a letter (the strict
/// reading: newer pages also allow a leading digit).
pub fn check_name(name: &str) -> Result<(), Refusal> {
    let count = name.chars().count();
    let ok = (4..=64).contains(&count)
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Refusal::bad(
            codes::NAME,
            "Invalid DCS instance name. The name must be 4 to 64 characters in length. Only letters (case-insensitive), digits, underscores (_) ,and hyphens (-) are allowed.",
        ))
    }
}

fn check_description(description: &str) -> Result<(), Refusal> {
    if description.chars().count() > 1024 {
        return Err(Refusal::bad(
            codes::DESCRIPTION,
            "DCS instance description cannot exceed 1024 characters.",
        ));
    }
    Ok(())
}

/// The special characters every documentation page accepts (LIFECYCLE.md §6).
const PASSWORD_SPECIALS: &str = "`~!@#$^&*()-_=+|{},<.>/?";

/// 8–32 characters from letters, digits and the safe special set, with at least
/// three of: lower case, upper case, digit, special.
pub fn check_password(password: &str) -> Result<(), Refusal> {
    let refuse = || {
        Refusal::bad(
            codes::PASSWORD_COMPLEXITY,
            "The password does not meet complexity requirements.",
        )
    };
    let count = password.chars().count();
    if !(8..=32).contains(&count) {
        return Err(refuse());
    }
    let mut classes = [false; 4];
    for c in password.chars() {
        let class = if c.is_ascii_lowercase() {
            0
        } else if c.is_ascii_uppercase() {
            1
        } else if c.is_ascii_digit() {
            2
        } else if PASSWORD_SPECIALS.contains(c) {
            3
        } else {
            return Err(refuse());
        };
        classes[class] = true;
    }
    if classes.iter().filter(|seen| **seen).count() < 3 {
        return Err(refuse());
    }
    Ok(())
}

pub const MAX_TAGS: usize = 20;
/// The API pages' limits (the guide allows 128/255; the stricter pair is used).
pub const MAX_TAG_KEY: usize = 36;
pub const MAX_TAG_VALUE: usize = 43;

fn tag_chars_ok(text: &str, allow_slash: bool) -> bool {
    text.chars().all(|c| {
        c.is_alphanumeric()
            || matches!(c, ' ' | '_' | '.' | ':' | '=' | '+' | '-' | '@')
            || (allow_slash && c == '/')
    })
}

pub fn check_tag_key(key: &str) -> Result<(), Refusal> {
    let count = key.chars().count();
    if count == 0 || count > MAX_TAG_KEY {
        return Err(Refusal::invalid(format!(
            "tag key must be 1 to {MAX_TAG_KEY} characters, got {count}"
        )));
    }
    if key.trim() != key {
        return Err(Refusal::invalid("tag key cannot start or end with a space"));
    }
    if key.starts_with("_sys_") {
        return Err(Refusal::invalid("tag key cannot start with _sys_"));
    }
    if !tag_chars_ok(key, false) {
        return Err(Refusal::invalid(format!(
            "tag key {key:?} may hold only letters, digits, spaces and _ . : = + - @"
        )));
    }
    Ok(())
}

pub fn check_tag_value(value: &str) -> Result<(), Refusal> {
    let count = value.chars().count();
    if count > MAX_TAG_VALUE {
        return Err(Refusal::invalid(format!(
            "tag value must be at most {MAX_TAG_VALUE} characters, got {count}"
        )));
    }
    if !tag_chars_ok(value, true) {
        return Err(Refusal::invalid(format!(
            "tag value {value:?} may hold only letters, digits, spaces and _ . : = + - @ /"
        )));
    }
    Ok(())
}

/// Tags as `(key, value)`; the value is optional when deleting.
pub type TagList = Vec<(String, Option<String>)>;

/// A `[{key, value}]` list. `value_required`: creating tags needs a value each;
/// deleting them does not. Keys must be unique within the list.
pub fn parse_tags(value: &Value, value_required: bool) -> Result<TagList, Refusal> {
    let Value::Array(items) = value else {
        return Err(Refusal::invalid("tags must be a list of {key, value}"));
    };
    let mut tags: Vec<(String, Option<String>)> = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(tag) = item else {
            return Err(Refusal::invalid("each tag must be an object {key, value}"));
        };
        only_known(tag, &["key", "value"])?;
        let key = req_str(tag, "key", codes::INVALID)?;
        check_tag_key(key)?;
        let value = opt_str(tag, "value", codes::INVALID)?;
        match value {
            Some(value) => check_tag_value(value)?,
            None if value_required => {
                return Err(Refusal::invalid(format!("tag {key:?} needs a value")));
            }
            None => {}
        }
        if tags.iter().any(|(seen, _)| seen == key) {
            return Err(Refusal::invalid(format!("tag key {key:?} appears twice")));
        }
        tags.push((key.to_string(), value.map(str::to_string)));
    }
    if tags.len() > MAX_TAGS {
        return Err(Refusal::invalid(format!(
            "at most {MAX_TAGS} tags per instance, got {}",
            tags.len()
        )));
    }
    Ok(tags)
}

/// `HH:mm:ss` begin/end: both or neither, and one of the listed windows.
fn check_window(body: &Map<String, Value>) -> Result<Option<(String, String)>, Refusal> {
    let begin = opt_str(body, "maintain_begin", codes::WINDOW)?;
    let end = opt_str(body, "maintain_end", codes::WINDOW)?;
    match (begin, end) {
        (None, None) => Ok(None),
        (Some(begin), Some(end)) => {
            if begin == end {
                return Err(Refusal::bad(
                    codes::WINDOW_ORDER,
                    "maintain_end must come after maintain_begin",
                ));
            }
            if flavors::MAINTAIN_WINDOWS.contains(&(begin, end)) {
                Ok(Some((begin.to_string(), end.to_string())))
            } else {
                Err(Refusal::bad(
                    codes::WINDOW,
                    format!(
                        "{begin}-{end} is not a maintenance window (see ListMaintenanceWindows)"
                    ),
                ))
            }
        }
        _ => Err(Refusal::bad(
            codes::WINDOW,
            "maintain_begin and maintain_end go together",
        )),
    }
}

/// `BackupPolicy`: `backup_type` auto|manual; auto needs `save_days` 1–7 and a
/// `periodical_backup_plan` with `backup_at` [1–7], `period_type` weekly and a
/// one-hour `begin_at` slot.
fn check_backup_policy(value: &Value, cache_mode: &str) -> Result<Value, Refusal> {
    let bad = |message: &str| Refusal::bad(codes::BACKUP, message.to_string());
    if !matches!(cache_mode, "ha" | "cluster") {
        return Err(bad(
            "instance_backup_policy is for master/standby and cluster instances only",
        ));
    }
    let Value::Object(policy) = value else {
        return Err(bad("instance_backup_policy must be an object"));
    };
    only_known(
        policy,
        &["backup_type", "save_days", "periodical_backup_plan"],
    )?;
    match opt_str(policy, "backup_type", codes::BACKUP)? {
        Some("manual") => {}
        Some("auto") => {
            let days = opt_number(policy, "save_days", codes::BACKUP)?;
            if !days.is_some_and(|d| d.fract() == 0.0 && (1.0..=7.0).contains(&d)) {
                return Err(bad("save_days must be 1 to 7 for automatic backups"));
            }
            let Some(Value::Object(plan)) = policy.get("periodical_backup_plan") else {
                return Err(bad(
                    "periodical_backup_plan is required for automatic backups",
                ));
            };
            only_known(
                plan,
                &["backup_at", "period_type", "begin_at", "timezone_offset"],
            )?;
            let days_ok = match plan.get("backup_at") {
                Some(Value::Array(days)) => {
                    !days.is_empty()
                        && days
                            .iter()
                            .all(|d| d.as_u64().is_some_and(|d| (1..=7).contains(&d)))
                }
                _ => false,
            };
            if !days_ok {
                return Err(bad("backup_at must list days 1 to 7"));
            }
            if opt_str(plan, "period_type", codes::BACKUP)? != Some("weekly") {
                return Err(bad("period_type must be weekly"));
            }
            let slot_ok = opt_str(plan, "begin_at", codes::BACKUP)?.is_some_and(one_hour_slot);
            if !slot_ok {
                return Err(bad("begin_at must be a one-hour slot like 00:00-01:00"));
            }
        }
        _ => return Err(bad("backup_type must be auto or manual")),
    }
    Ok(value.clone())
}

fn one_hour_slot(text: &str) -> bool {
    let hour = |part: &str| -> Option<u32> {
        let (h, m) = part.split_once(':')?;
        (m == "00" && h.len() == 2).then_some(())?;
        h.parse::<u32>().ok().filter(|h| *h < 24)
    };
    match text.split_once('-') {
        Some((begin, end)) => match (hour(begin), hour(end)) {
            (Some(b), Some(e)) => (b + 1) % 24 == e,
            _ => false,
        },
        None => false,
    }
}

/// The commands Redis ≥ 4.0 may rename.
pub const RENAMABLE: [&str; 9] = [
    "command", "keys", "flushdb", "flushall", "hgetall", "scan", "hscan", "sscan", "zscan",
];

fn check_rename_commands(value: &Value) -> Result<Map<String, Value>, Refusal> {
    let Value::Object(map) = value else {
        return Err(Refusal::invalid("rename_commands must be an object"));
    };
    for (command, new_name) in map {
        if !RENAMABLE.contains(&command.as_str()) {
            return Err(Refusal::invalid(format!(
                "command {command:?} cannot be renamed (only {})",
                RENAMABLE.join(", ")
            )));
        }
        let ok = new_name.as_str().is_some_and(|name| {
            (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !ok {
            return Err(Refusal::invalid(format!(
                "the new name of {command:?} must be 1 to 64 letters, digits, _ or -"
            )));
        }
    }
    Ok(map.clone())
}

fn check_port(
    body: &Map<String, Value>,
    engine: &str,
    version: &str,
) -> Result<Option<u16>, Refusal> {
    let Some(port) = opt_number(body, "port", codes::INVALID)? else {
        return Ok(None);
    };
    if engine != "Redis" || version == "3.0" {
        return Err(Refusal::invalid(
            "port can be set on Redis 4.0 and later only",
        ));
    }
    if port.fract() != 0.0 || !(1.0..=65535.0).contains(&port) {
        return Err(Refusal::invalid(format!(
            "port must be 1 to 65535, got {port}"
        )));
    }
    // In range and whole, checked just above.
    Ok(Some(port as u16))
}

/// A validated CreateInstanceBody.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub name: String,
    pub engine: &'static str,
    pub engine_version: String,
    pub flavor: &'static Flavor,
    pub az_codes: Vec<&'static Zone>,
    pub vpc_id: String,
    pub subnet_id: String,
    pub security_group_id: Option<String>,
    pub port: u16,
    pub password: Option<String>,
    pub no_password_access: bool,
    pub tags: Vec<(String, String)>,
    pub description: String,
    pub window: (String, String),
    pub enterprise_project_id: String,
    pub enterprise_project_name: Option<String>,
    pub backup_policy: Option<Value>,
    pub private_ip: Option<String>,
    pub rename_commands: Option<Map<String, Value>>,
    pub enable_ssl: bool,
    pub access_user: Option<String>,
    pub template_id: Option<String>,
}

const CREATE_FIELDS: [&str; 29] = [
    "name",
    "engine",
    "engine_version",
    "capacity",
    "spec_code",
    "az_codes",
    "vpc_id",
    "subnet_id",
    "security_group_id",
    "port",
    "password",
    "no_password_access",
    "tags",
    "description",
    "maintain_begin",
    "maintain_end",
    "enterprise_project_id",
    "enterprise_project_name",
    "instance_backup_policy",
    "private_ip",
    "rename_commands",
    "enable_ssl",
    "access_user",
    "template_id",
    "instance_num",
    "bss_param",
    "publicip_id",
    "enable_publicip",
    "spec_param",
];

/// Validates a CreateInstanceBody against the flavour table. Quota and stock are
/// the caller's (they depend on the project's state).
pub fn create(body: &Map<String, Value>) -> Result<CreateRequest, Refusal> {
    // Each step runs where its checks always ran: the first refusal wins, so the
    // order below is part of the API.
    only_known(body, &CREATE_FIELDS)?;
    let name = req_str(body, "name", codes::NAME)?;
    check_name(name)?;
    let (engine, engine_version) = check_engine(body)?;
    let flavor = check_flavor(body, engine, engine_version)?;
    let az_codes = parse_az_codes(body.get("az_codes"), flavor)?;
    let (vpc_id, subnet_id, security_group_id) = check_network(body, engine)?;
    let port = check_port(body, engine, engine_version)?.unwrap_or(if engine == "Redis" {
        6379
    } else {
        11211
    });
    let (password, no_password_access) = check_password_fields(body)?;
    let tags = create_tags(body)?;
    let description = opt_str(body, "description", codes::DESCRIPTION)?.unwrap_or("");
    check_description(description)?;
    let window = check_window(body)?.unwrap_or((
        flavors::DEFAULT_WINDOW.0.to_string(),
        flavors::DEFAULT_WINDOW.1.to_string(),
    ));
    let enterprise_project_id =
        opt_str(body, "enterprise_project_id", codes::INVALID)?.unwrap_or("0");
    let enterprise_project_name = opt_str(body, "enterprise_project_name", codes::INVALID)?;
    let backup_policy = match body.get("instance_backup_policy") {
        None | Some(Value::Null) => None,
        Some(value) => Some(check_backup_policy(value, flavor.cache_mode)?),
    };
    let private_ip = check_private_ip(body, flavor)?;
    let rename_commands = create_rename_commands(body, engine)?;
    let enable_ssl = opt_bool(body, "enable_ssl", codes::INVALID)?.unwrap_or(false);
    if enable_ssl && !["6.0", "7.0"].contains(&engine_version) {
        return Err(Refusal::invalid("enable_ssl needs Redis 6.0 or 7.0"));
    }
    let access_user = check_access_user(body, engine)?;
    let template_id = opt_str(body, "template_id", codes::INVALID)?.map(str::to_string);
    check_create_extras(body)?;
    Ok(CreateRequest {
        name: name.to_string(),
        engine,
        engine_version: engine_version.to_string(),
        flavor,
        az_codes,
        vpc_id: vpc_id.to_string(),
        subnet_id: subnet_id.to_string(),
        security_group_id,
        port,
        password,
        no_password_access,
        tags,
        description: description.to_string(),
        window,
        enterprise_project_id: enterprise_project_id.to_string(),
        enterprise_project_name: enterprise_project_name.map(str::to_string),
        backup_policy,
        private_ip,
        rename_commands,
        enable_ssl,
        access_user,
        template_id,
    })
}

/// Checks `engine` (Redis or Memcached) and `engine_version` (one Redis supports;
/// none for Memcached); returns both.
fn check_engine(body: &Map<String, Value>) -> Result<(&'static str, &str), Refusal> {
    let engine = match req_str(body, "engine", codes::ENGINE)? {
        "Redis" => "Redis",
        "Memcached" => "Memcached",
        other => {
            return Err(Refusal::bad(
                codes::ENGINE,
                format!(
                    "The selected cache engine type is not supported: {other:?} (Redis or Memcached)"
                ),
            ));
        }
    };
    let engine_version = opt_str(body, "engine_version", codes::ENGINE_VERSION)?.unwrap_or("");
    match engine {
        "Redis" if !["4.0", "5.0", "6.0", "7.0"].contains(&engine_version) => {
            return Err(Refusal::bad(
                codes::ENGINE_VERSION,
                format!(
                    "The selected cache engine version is not supported: {engine_version:?} (4.0, 5.0, 6.0 or 7.0)"
                ),
            ));
        }
        "Memcached" if !engine_version.is_empty() => {
            return Err(Refusal::bad(
                codes::ENGINE_VERSION,
                "Memcached takes no engine_version",
            ));
        }
        _ => {}
    }
    Ok((engine, engine_version))
}

/// Checks `spec_code` names a flavour of this engine and version, and that
/// `capacity` is that flavour's; returns the flavour.
fn check_flavor(
    body: &Map<String, Value>,
    engine: &str,
    engine_version: &str,
) -> Result<&'static Flavor, Refusal> {
    let spec_code = req_str(body, "spec_code", codes::SPEC_CODE)?;
    let flavor = flavors::by_spec_code(spec_code).ok_or_else(|| {
        Refusal::bad(
            codes::SPEC_CODE,
            format!("Invalid spec_code {spec_code:?} (see ListFlavors)"),
        )
    })?;
    if flavor.engine != engine {
        return Err(Refusal::bad(
            codes::ENGINE_NOT_PRODUCT,
            format!(
                "Engine does not match the product id: {spec_code} is a {} flavour",
                flavor.engine
            ),
        ));
    }
    if !flavor.supports_version(engine_version) {
        return Err(Refusal::bad(
            codes::ENGINE_VERSION,
            format!("{spec_code} does not support engine_version {engine_version:?}"),
        ));
    }
    let capacity = opt_number(body, "capacity", codes::CAPACITY)?
        .ok_or_else(|| Refusal::bad(codes::CAPACITY, "capacity is required"))?;
    if !flavors::same_capacity(capacity, flavor.capacity) {
        return Err(Refusal::bad(
            codes::CAPACITY,
            format!(
                "Invalid capacity parameter in the request: {spec_code} is {} GB, got {capacity}",
                flavor.capacity_text()
            ),
        ));
    }
    Ok(flavor)
}

/// The network IDs of a create.
type Network<'a> = (&'a str, &'a str, Option<String>);

/// Checks `vpc_id` and `subnet_id` are UUIDs, and `security_group_id` (a UUID,
/// Memcached only); returns the three.
fn check_network<'a>(body: &'a Map<String, Value>, engine: &str) -> Result<Network<'a>, Refusal> {
    let vpc_id = req_str(body, "vpc_id", codes::VPC)?;
    if !is_uuid(vpc_id) {
        return Err(Refusal::bad(codes::VPC, "Invalid vpc_id in the request."));
    }
    let subnet_id = req_str(body, "subnet_id", codes::SUBNET)?;
    if !is_uuid(subnet_id) {
        return Err(Refusal::bad(
            codes::SUBNET,
            "Invalid subnet_id in the request.",
        ));
    }
    let security_group_id = match opt_str(body, "security_group_id", codes::SECURITY_GROUP)? {
        None => None,
        Some(_) if engine == "Redis" => {
            // Redis ≥ 4.0 uses whitelists; strict: refuse what would be ignored.
            return Err(Refusal::bad(
                codes::SECURITY_GROUP,
                "security_group_id is for Redis 3.0 and Memcached only; Redis 4.0 and later use whitelists",
            ));
        }
        Some(id) if is_uuid(id) => Some(id.to_string()),
        Some(_) => {
            return Err(Refusal::bad(
                codes::SECURITY_GROUP,
                "Invalid security_group_id in the request.",
            ));
        }
    };
    Ok((vpc_id, subnet_id, security_group_id))
}

/// Checks `password` against `no_password_access` (exactly one of them) and the
/// password's complexity; returns the password and the flag.
fn check_password_fields(body: &Map<String, Value>) -> Result<(Option<String>, bool), Refusal> {
    // The flag is read first: a malformed flag is refused before the password.
    let no_password_access =
        opt_bool(body, "no_password_access", codes::NO_PASSWORD_ACCESS)?.unwrap_or(false);
    let password = opt_str(body, "password", codes::PASSWORD)?;
    let password = match (password, no_password_access) {
        (Some(_), true) => {
            return Err(Refusal::bad(
                codes::PASSWORD_MUST_BE_ABSENT,
                "password must be absent when no_password_access is true",
            ));
        }
        (None, false) | (Some(""), false) => {
            return Err(Refusal::bad(
                codes::PASSWORD,
                "password is required unless no_password_access is true",
            ));
        }
        (Some(password), false) => {
            check_password(password)?;
            Some(password.to_string())
        }
        (None, true) => None,
    };
    Ok((password, no_password_access))
}

/// Checks `tags` (each with a value, as a create needs); none is an empty list.
fn create_tags(body: &Map<String, Value>) -> Result<Vec<(String, String)>, Refusal> {
    Ok(match body.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => parse_tags(value, true)?
            .into_iter()
            .map(|(key, value)| (key, value.unwrap_or_default()))
            .collect(),
    })
}

/// Checks `private_ip` is a private IPv4 address, and not for Redis Cluster.
fn check_private_ip(body: &Map<String, Value>, flavor: &Flavor) -> Result<Option<String>, Refusal> {
    Ok(match opt_str(body, "private_ip", codes::INVALID)? {
        None => None,
        Some(_) if flavor.cache_mode == "cluster" => {
            return Err(Refusal::invalid(
                "private_ip cannot be chosen for Redis Cluster",
            ));
        }
        Some(ip) => match ip.parse::<std::net::Ipv4Addr>() {
            Ok(addr) if addr.is_private() => Some(ip.to_string()),
            _ => {
                return Err(Refusal::invalid(format!(
                    "private_ip {ip:?} is not a private IPv4 address"
                )));
            }
        },
    })
}

/// Checks `rename_commands` is only given for Redis, and each renaming in it.
fn create_rename_commands(
    body: &Map<String, Value>,
    engine: &str,
) -> Result<Option<Map<String, Value>>, Refusal> {
    Ok(match body.get("rename_commands") {
        None | Some(Value::Null) => None,
        Some(_) if engine != "Redis" => {
            return Err(Refusal::invalid(
                "rename_commands is for Redis 4.0 and later only",
            ));
        }
        Some(value) => Some(check_rename_commands(value)?),
    })
}

/// Checks `access_user` is only given for Memcached, and is 1 to 64 characters.
fn check_access_user(body: &Map<String, Value>, engine: &str) -> Result<Option<String>, Refusal> {
    Ok(match opt_str(body, "access_user", codes::INVALID)? {
        None => None,
        Some(_) if engine != "Memcached" => {
            return Err(Refusal::invalid("access_user is for Memcached only"));
        }
        Some(user) if (1..=64).contains(&user.chars().count()) => Some(user.to_string()),
        Some(_) => return Err(Refusal::invalid("access_user must be 1 to 64 characters")),
    })
}

/// Checks the fields the simulator only takes in their plain form: one instance,
/// pay-per-use, no public access, no `spec_param`.
fn check_create_extras(body: &Map<String, Value>) -> Result<(), Refusal> {
    // The simulator creates one instance per call (the operator omits instance_num).
    match opt_number(body, "instance_num", codes::INVALID)? {
        None => {}
        Some(1.0) => {}
        Some(n) => {
            return Err(Refusal::invalid(format!(
                "the simulator creates one instance per request; instance_num must be 1, got {n}"
            )));
        }
    }
    check_bss_param(body.get("bss_param"))?;
    if opt_bool(body, "enable_publicip", codes::INVALID)? == Some(true)
        || opt_str(body, "publicip_id", codes::INVALID)?.is_some()
    {
        return Err(Refusal::invalid(
            "public access (enable_publicip, publicip_id) is reserved for Redis 3.0",
        ));
    }
    if body.get("spec_param").is_some_and(|v| !v.is_null()) {
        return Err(Refusal::invalid(
            "spec_param is not part of the documented API",
        ));
    }
    Ok(())
}

fn parse_az_codes(value: Option<&Value>, flavor: &Flavor) -> Result<Vec<&'static Zone>, Refusal> {
    let items = match value {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            return Err(Refusal::bad(codes::AZ_MISSING, "az_codes is required"));
        }
        Some(_) => {
            return Err(Refusal::bad(
                codes::BAD_ZONES,
                "az_codes must be a list of AZ codes",
            ));
        }
    };
    if items.len() > flavor.max_az_codes() {
        return Err(Refusal::bad(
            codes::BAD_ZONES,
            format!(
                "{} takes at most {} AZ code(s), got {}",
                flavor.spec_code,
                flavor.max_az_codes(),
                items.len()
            ),
        ));
    }
    let mut zones = Vec::with_capacity(items.len());
    for item in items {
        let Some(code) = item.as_str() else {
            return Err(Refusal::bad(
                codes::BAD_ZONES,
                "az_codes must be a list of AZ codes",
            ));
        };
        let Some(zone) = flavors::zone_by_code(code) else {
            return Err(Refusal::bad(
                codes::AZ_MISSING,
                format!("This AZ does not exist: {code:?} (az_codes take AZ codes, not IDs)"),
            ));
        };
        if !zone.has_stock {
            return Err(Refusal::bad(
                codes::AZ_SOLD_OUT,
                format!("the selected available zone quota not enough: {code}"),
            ));
        }
        zones.push(zone);
    }
    Ok(zones)
}

/// Pay-per-use only: a `bss_param` is accepted only as `postPaid`.
fn check_bss_param(value: Option<&Value>) -> Result<(), Refusal> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let Value::Object(bss) = value else {
        return Err(Refusal::invalid("bss_param must be an object"));
    };
    only_known(
        bss,
        &[
            "charging_mode",
            "is_auto_pay",
            "is_auto_renew",
            "period_type",
            "period_num",
        ],
    )?;
    match opt_str(bss, "charging_mode", codes::INVALID)? {
        Some("postPaid") => Ok(()),
        Some("prePaid") => Err(Refusal::invalid(
            "the simulator is pay-per-use only: charging_mode prePaid (yearly/monthly) is refused",
        )),
        Some(other) => Err(Refusal::invalid(format!(
            "charging_mode must be postPaid or prePaid, got {other:?}"
        ))),
        None => Err(Refusal::invalid("bss_param.charging_mode is required")),
    }
}

/// A validated ResizeInstanceBody (the target flavour and capacity).
#[derive(Debug, Clone)]
pub struct ResizeRequest {
    pub flavor: &'static Flavor,
    pub capacity: f64,
    pub change_type: Option<String>,
}

/// Checks the body alone; the instance-dependent rules are in [`resize_against`].
pub fn resize(body: &Map<String, Value>) -> Result<ResizeRequest, Refusal> {
    only_known(
        body,
        &[
            "spec_code",
            "new_capacity",
            "change_type",
            "available_zones",
            "node_list",
            "reserved_ip",
            "execute_immediately",
            "bss_param",
        ],
    )?;
    let spec_code = req_str(body, "spec_code", codes::SPEC_CODE)?;
    let flavor = flavors::by_spec_code(spec_code).ok_or_else(|| {
        Refusal::bad(
            codes::SPEC_CODE,
            format!("Invalid spec_code {spec_code:?} (see ListFlavors)"),
        )
    })?;
    let capacity = opt_number(body, "new_capacity", codes::CAPACITY)?
        .ok_or_else(|| Refusal::bad(codes::CAPACITY, "new_capacity is required"))?;
    if !flavors::same_capacity(capacity, flavor.capacity) {
        return Err(Refusal::bad(
            codes::CAPACITY,
            format!(
                "Invalid capacity parameter in the request: {spec_code} is {} GB, got {capacity}",
                flavor.capacity_text()
            ),
        ));
    }
    let change_type = opt_str(body, "change_type", codes::INVALID)?;
    if let Some(kind) = change_type
        && ![
            "createReplication",
            "deleteReplication",
            "addSharding",
            "instanceType",
        ]
        .contains(&kind)
    {
        return Err(Refusal::invalid(format!("unknown change_type {kind:?}")));
    }
    opt_bool(body, "execute_immediately", codes::INVALID)?;
    if body.get("bss_param").is_some_and(|v| !v.is_null()) {
        return Err(Refusal::invalid(
            "bss_param is not for pay-per-use instances",
        ));
    }
    for key in ["available_zones", "node_list", "reserved_ip"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(_) => return Err(Refusal::invalid(format!("{key} must be a list of strings"))),
        }
    }
    Ok(ResizeRequest {
        flavor,
        capacity,
        change_type: change_type.map(str::to_string),
    })
}

/// What the instance is now, for the resize rules.
#[derive(Debug, Clone)]
pub struct Current<'a> {
    pub engine: &'a str,
    pub engine_version: &'a str,
    pub spec_code: &'a str,
    pub cache_mode: &'a str,
    pub cpu_type: &'a str,
    pub capacity: f64,
    pub replica_count: u32,
}

/// The resize rules of LIFECYCLE.md §4 against the current instance.
pub fn resize_against(request: &ResizeRequest, current: &Current<'_>) -> Result<(), Refusal> {
    let target = request.flavor;
    check_resize_keeps(target, current)?;
    let change = request.change_type.as_deref();
    let capacity_changes = !flavors::same_capacity(request.capacity, current.capacity);
    // A resize changes one thing at a time: the type, else the replicas, else the
    // capacity or shards; each branch settles the request.
    if target.cache_mode != current.cache_mode {
        return check_type_change(target, current, change);
    }
    if change == Some("instanceType") {
        return Err(Refusal::bad(
            codes::TYPE_CHANGE,
            "change_type instanceType needs a flavour of another type",
        ));
    }
    if target.replica_count != current.replica_count {
        return check_replica_change(target, current, change, capacity_changes);
    }
    if let Some(kind) = change
        && kind != "addSharding"
    {
        return Err(Refusal::invalid(format!(
            "change_type {kind} does not match this change"
        )));
    }
    if !capacity_changes && target.spec_code == current.spec_code {
        return Err(Refusal::bad(
            codes::RESIZE_UNSUPPORTED,
            "the instance already has this flavour and capacity",
        ));
    }
    Ok(())
}

/// Checks the target flavour keeps what a resize cannot change: the engine, the
/// engine version and the CPU type.
fn check_resize_keeps(target: &Flavor, current: &Current<'_>) -> Result<(), Refusal> {
    if target.engine != current.engine {
        return Err(Refusal::bad(
            codes::ENGINE_NOT_PRODUCT,
            format!(
                "{} is a {} flavour; the engine cannot change",
                target.spec_code, target.engine
            ),
        ));
    }
    if !target.fits_instance_version(current.engine_version) {
        return Err(Refusal::bad(
            codes::ENGINE_VERSION,
            format!(
                "{} does not support engine_version {:?}; the version cannot change",
                target.spec_code, current.engine_version
            ),
        ));
    }
    if target.cpu_type != current.cpu_type {
        return Err(Refusal::bad(
            codes::TYPE_CHANGE,
            format!(
                "the CPU type cannot change ({} → {})",
                current.cpu_type, target.cpu_type
            ),
        ));
    }
    Ok(())
}

/// Checks a change of instance type: it needs change_type instanceType and a
/// pair of types that may change into each other.
fn check_type_change(
    target: &Flavor,
    current: &Current<'_>,
    change: Option<&str>,
) -> Result<(), Refusal> {
    if change != Some("instanceType") {
        return Err(Refusal::bad(
            codes::TYPE_CHANGE,
            format!(
                "a change from {} to {} needs change_type instanceType",
                current.cache_mode, target.cache_mode
            ),
        ));
    }
    if !flavors::type_change_allowed(current.cache_mode, target.cache_mode) {
        return Err(Refusal::bad(
            codes::TYPE_CHANGE,
            format!(
                "{} cannot change to {} (only master/standby ↔ Proxy Cluster)",
                current.cache_mode, target.cache_mode
            ),
        ));
    }
    Ok(())
}

/// Checks a change of replica count: not for single-node instances, with the
/// matching change_type, and not together with a capacity change.
fn check_replica_change(
    target: &Flavor,
    current: &Current<'_>,
    change: Option<&str>,
    capacity_changes: bool,
) -> Result<(), Refusal> {
    if current.cache_mode == "single" {
        return Err(Refusal::bad(
            codes::RESIZE_UNSUPPORTED,
            "a single-node instance has no replicas to change",
        ));
    }
    let wanted = if target.replica_count > current.replica_count {
        "createReplication"
    } else {
        "deleteReplication"
    };
    if change != Some(wanted) {
        return Err(Refusal::bad(
            codes::TOO_MANY_REPLICAS,
            format!(
                "a replica change from {} to {} needs change_type {wanted}",
                current.replica_count, target.replica_count
            ),
        ));
    }
    if capacity_changes {
        return Err(Refusal::invalid(
            "change capacity and replica count in separate calls",
        ));
    }
    Ok(())
}

/// A validated ModifyInstanceBody: the fields to change.
#[derive(Debug, Clone, Default)]
pub struct ModifyRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub port: Option<u16>,
    pub rename_commands: Option<Map<String, Value>>,
    pub window: Option<(String, String)>,
    pub security_group_id: Option<String>,
    pub backup_policy: Option<Value>,
}

/// Fields that exist on an instance but no PUT may change (LIFECYCLE.md §11).
pub const IMMUTABLE: [&str; 16] = [
    "engine",
    "engine_version",
    "vpc_id",
    "subnet_id",
    "private_ip",
    "access_user",
    "template_id",
    "spec_code",
    "capacity",
    "az_codes",
    "available_zones",
    "cache_mode",
    "enterprise_project_id",
    "charging_mode",
    "no_password_access",
    "password",
];

pub fn modify(
    body: &Map<String, Value>,
    engine: &str,
    version: &str,
    cache_mode: &str,
) -> Result<ModifyRequest, Refusal> {
    if let Some(key) = body.keys().find(|key| IMMUTABLE.contains(&key.as_str())) {
        return Err(Refusal::invalid(format!(
            "{key} cannot be changed with UpdateInstance (immutable, or changed through resize / password reset)"
        )));
    }
    only_known(
        body,
        &[
            "name",
            "description",
            "port",
            "rename_commands",
            "maintain_begin",
            "maintain_end",
            "security_group_id",
            "instance_backup_policy",
        ],
    )?;
    let mut request = ModifyRequest::default();
    if let Some(name) = opt_str(body, "name", codes::NAME)? {
        check_name(name)?;
        request.name = Some(name.to_string());
    }
    if let Some(description) = opt_str(body, "description", codes::DESCRIPTION)? {
        check_description(description)?;
        request.description = Some(description.to_string());
    }
    request.port = check_port(body, engine, version)?;
    if let Some(value) = body.get("rename_commands").filter(|v| !v.is_null()) {
        if engine != "Redis" {
            return Err(Refusal::invalid(
                "rename_commands is for Redis 4.0 and later only",
            ));
        }
        request.rename_commands = Some(check_rename_commands(value)?);
    }
    request.window = check_window(body)?;
    if let Some(id) = opt_str(body, "security_group_id", codes::SECURITY_GROUP)? {
        if engine == "Redis" && version != "3.0" {
            return Err(Refusal::bad(
                codes::SECURITY_GROUP,
                "security_group_id can be changed on Redis 3.0 only",
            ));
        }
        if !is_uuid(id) {
            return Err(Refusal::bad(
                codes::SECURITY_GROUP,
                "Invalid security_group_id in the request.",
            ));
        }
        request.security_group_id = Some(id.to_string());
    }
    if let Some(value) = body.get("instance_backup_policy").filter(|v| !v.is_null()) {
        request.backup_policy = Some(check_backup_policy(value, cache_mode)?);
    }
    let empty = request.name.is_none()
        && request.description.is_none()
        && request.port.is_none()
        && request.rename_commands.is_none()
        && request.window.is_none()
        && request.security_group_id.is_none()
        && request.backup_policy.is_none();
    if empty {
        return Err(Refusal::invalid("the body changes nothing"));
    }
    Ok(request)
}

/// ModifyInstancePasswordBody: `(old, new)`.
pub fn update_password(body: &Map<String, Value>) -> Result<(String, String), Refusal> {
    only_known(body, &["old_password", "new_password"])?;
    let old = req_str(body, "old_password", codes::PASSWORD)?;
    let new = req_str(body, "new_password", codes::PASSWORD)?;
    if old == new {
        return Err(Refusal::invalid(
            "new_password must differ from old_password",
        ));
    }
    check_password(new)?;
    Ok((old.to_string(), new.to_string()))
}

/// ResetInstancePasswordBody: `Some(password)`, or `None` for password-free access.
pub fn reset_password(body: &Map<String, Value>) -> Result<Option<String>, Refusal> {
    only_known(body, &["new_password", "no_password_access"])?;
    let free = opt_bool(body, "no_password_access", codes::NO_PASSWORD_ACCESS)?.unwrap_or(false);
    let password = opt_str(body, "new_password", codes::PASSWORD)?;
    match (password, free) {
        (Some(_), true) => Err(Refusal::bad(
            codes::PASSWORD_MUST_BE_ABSENT,
            "new_password must be absent when no_password_access is true",
        )),
        (None, true) => Ok(None),
        (None, false) | (Some(""), false) => Err(Refusal::bad(
            codes::PASSWORD,
            "new_password is required unless no_password_access is true",
        )),
        (Some(password), false) => {
            check_password(password)?;
            Ok(Some(password.to_string()))
        }
    }
}

/// CreateOrDeleteInstanceTags: `(create?, tags)`.
pub fn tags_action(body: &Map<String, Value>) -> Result<(bool, TagList), Refusal> {
    only_known(body, &["action", "tags"])?;
    let create = match req_str(body, "action", codes::INVALID)? {
        "create" => true,
        "delete" => false,
        other => {
            return Err(Refusal::invalid(format!(
                "action must be create or delete, got {other:?}"
            )));
        }
    };
    let tags = match body.get("tags") {
        Some(value) => parse_tags(value, create)?,
        None => return Err(Refusal::invalid("tags is required")),
    };
    if tags.is_empty() {
        return Err(Refusal::invalid("tags must not be empty"));
    }
    Ok((create, tags))
}

/// The code refusing a write (other than delete) on an instance in this state, or
/// None when the instance may be changed: RUNNING with no background task.
pub fn busy_code(status: &str, task: Option<&str>) -> Option<&'static str> {
    let code = match status {
        "RUNNING" => return task.filter(|t| !t.is_empty()).map(|_| codes::JOB_RUNNING),
        "RESTARTING" => codes::RESTARTING,
        "EXTENDING" => codes::EXTENDING,
        "CREATING" => codes::CREATING,
        "UPGRADING" => codes::UPGRADING,
        "FREEZING" => codes::FREEZING,
        "RESTORING" => codes::RESTORING,
        "BACKUPING" | "BACKING_UP" => codes::BACKING_UP,
        "MIGRATING" | "FLUSHING" => codes::CONFIGURING,
        "DELETING" => codes::STATE,
        _ => codes::NOT_RUNNING,
    };
    Some(code)
}

/// Whether DeleteSingleInstance may start: RUNNING (no task), ERROR (faulty) or a
/// failed creation; anything else is `DCS.4099`.
pub fn delete_allowed(status: &str, task: Option<&str>) -> bool {
    match status {
        "RUNNING" => task.is_none_or(str::is_empty),
        "ERROR" | "CREATEFAILED" => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test bodies are objects"),
        }
    }

    fn base() -> Value {
        json!({
            "name": "orders-cache",
            "engine": "Redis",
            "engine_version": "6.0",
            "capacity": 2,
            "spec_code": "redis.ha.xu1.large.r2.2",
            "az_codes": ["cn-north-4a", "cn-north-4b"],
            "vpc_id": "3d5c1f1e-6a3b-4c2d-9e8f-0a1b2c3d4e5f",
            "subnet_id": "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
            "password": "Sim-Passw0rd",
        })
    }

    fn refused(patch: Value) -> &'static str {
        let mut body = base();
        for (key, value) in map(patch) {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(&key);
            } else {
                body[key] = value;
            }
        }
        create(&map(body)).unwrap_err().code
    }

    #[test]
    fn a_valid_create() {
        let request = create(&map(base())).unwrap();
        assert_eq!(request.port, 6379);
        assert_eq!(request.az_codes.len(), 2);
        assert_eq!(request.window, ("02:00:00".into(), "06:00:00".into()));
    }

    /// Checks each patch of the valid base body is refused with its code.
    fn assert_refusals(cases: &[(Value, &str)]) {
        for (patch, code) in cases {
            assert_eq!(refused(patch.clone()), *code, "{patch}");
        }
    }

    #[test]
    fn create_refusals_of_name_engine_and_flavour() {
        assert_refusals(&[
            (json!({"name": null}), codes::NAME),
            (json!({"name": "abc"}), codes::NAME),
            (json!({"name": "1abc"}), codes::NAME),
            (json!({"name": "has space"}), codes::NAME),
            (json!({"engine": "redis"}), codes::ENGINE),
            (json!({"engine_version": "3.0"}), codes::ENGINE_VERSION),
            (json!({"spec_code": "redis.ha.nope"}), codes::SPEC_CODE),
            (
                json!({"spec_code": "memcached.single.xu1.large.2"}),
                codes::ENGINE_NOT_PRODUCT,
            ),
            (
                json!({"spec_code": "redis.proxy.xu1.large.4", "capacity": 4, "az_codes": ["cn-north-4a"]}),
                codes::ENGINE_VERSION,
            ),
            (json!({"capacity": 4}), codes::CAPACITY),
            (json!({"capacity": "2"}), codes::CAPACITY),
        ]);
    }

    #[test]
    fn create_refusals_of_zones_and_network() {
        assert_refusals(&[
            (json!({"az_codes": null}), codes::AZ_MISSING),
            (
                json!({"az_codes": ["d539378ec1314c85b76fefa3f7071458"]}),
                codes::AZ_MISSING,
            ),
            (json!({"az_codes": ["cn-north-4g"]}), codes::AZ_SOLD_OUT),
            (
                json!({"az_codes": ["cn-north-4a", "cn-north-4b", "cn-north-4c"]}),
                codes::BAD_ZONES,
            ),
            (json!({"vpc_id": "vpc-1"}), codes::VPC),
            (json!({"subnet_id": null}), codes::SUBNET),
            (
                json!({"security_group_id": "3d5c1f1e-6a3b-4c2d-9e8f-0a1b2c3d4e5f"}),
                codes::SECURITY_GROUP,
            ),
        ]);
    }

    #[test]
    fn create_refusals_of_passwords() {
        assert_refusals(&[
            (json!({"password": null}), codes::PASSWORD),
            (json!({"password": "short1A"}), codes::PASSWORD_COMPLEXITY),
            (
                json!({"password": "alllowercase1"}),
                codes::PASSWORD_COMPLEXITY,
            ),
            (
                json!({"password": "Has:Colon1"}),
                codes::PASSWORD_COMPLEXITY,
            ),
            (
                json!({"no_password_access": true}),
                codes::PASSWORD_MUST_BE_ABSENT,
            ),
            (
                json!({"no_password_access": "true"}),
                codes::NO_PASSWORD_ACCESS,
            ),
        ]);
    }

    #[test]
    fn create_refusals_of_description_window_and_backup() {
        assert_refusals(&[
            (json!({"description": "x".repeat(1025)}), codes::DESCRIPTION),
            (json!({"maintain_begin": "02:00:00"}), codes::WINDOW),
            (
                json!({"maintain_begin": "03:00:00", "maintain_end": "07:00:00"}),
                codes::WINDOW,
            ),
            (
                json!({"maintain_begin": "02:00:00", "maintain_end": "02:00:00"}),
                codes::WINDOW_ORDER,
            ),
            (
                json!({"instance_backup_policy": {"backup_type": "auto"}}),
                codes::BACKUP,
            ),
        ]);
    }

    #[test]
    fn create_refusals_of_tags() {
        assert_refusals(&[
            (
                json!({"tags": [{"key": "a/b", "value": "x"}]}),
                codes::INVALID,
            ),
            (json!({"tags": [{"key": "k"}]}), codes::INVALID),
            (
                json!({"tags": [{"key": "k", "value": "1"}, {"key": "k", "value": "2"}]}),
                codes::INVALID,
            ),
            (
                json!({"tags": [{"key": "_sys_x", "value": "1"}]}),
                codes::INVALID,
            ),
            (
                json!({"tags": [{"key": "k".repeat(37), "value": "1"}]}),
                codes::INVALID,
            ),
        ]);
    }

    #[test]
    fn create_refusals_of_simulator_limits_and_unknown_fields() {
        assert_refusals(&[
            (json!({"instance_num": 2}), codes::INVALID),
            (
                json!({"bss_param": {"charging_mode": "prePaid"}}),
                codes::INVALID,
            ),
            (json!({"port": 70000}), codes::INVALID),
            (json!({"unknown_field": 1}), codes::INVALID),
            (json!({"rename_commands": {"get": "g"}}), codes::INVALID),
        ]);
    }

    #[test]
    fn create_accepts_optional_fields_done_right() {
        let ok = map(
            json!({"bss_param": {"charging_mode": "postPaid"}, "no_password_access": true, "password": null,
            "instance_backup_policy": {"backup_type": "auto", "save_days": 3,
                "periodical_backup_plan": {"backup_at": [1, 3], "period_type": "weekly", "begin_at": "00:00-01:00"}},
            "tags": [{"key": "dcs-operator-uid", "value": "2b7e9f3a-1c4d-4e5f-8a9b-0c1d2e3f4a5b"}]}),
        );
        let mut body = map(base());
        for (key, value) in ok {
            if value.is_null() {
                body.remove(&key);
            } else {
                body.insert(key, value);
            }
        }
        let request = create(&body).unwrap();
        assert!(request.no_password_access && request.password.is_none());
        assert_eq!(request.tags.len(), 1);
    }

    #[test]
    fn bodies_that_are_not_objects() {
        assert_eq!(parse_body(b"").unwrap_err().code, codes::EMPTY_BODY);
        assert_eq!(parse_body(b"  ").unwrap_err().code, codes::EMPTY_BODY);
        assert_eq!(parse_body(b"{").unwrap_err().code, codes::BAD_JSON);
        assert_eq!(parse_body(b"[1]").unwrap_err().code, codes::BAD_JSON);
        assert!(parse_body(b"{}").unwrap().is_empty());
    }

    #[test]
    fn passwords() {
        for good in ["Sim-Passw0rd", "abcDEF12", "ab1!ab1!", "Ab`~!@#$^&*()"] {
            assert!(check_password(good).is_ok(), "{good}");
        }
        for bad in [
            "abcdefgh",
            "ABCDEFG1",
            "Ab1!",
            &"Ab1!".repeat(9),
            "Abc 1234",
            "Abcé1234",
        ] {
            assert!(check_password(bad).is_err(), "{bad}");
        }
        let body = map(json!({"new_password": "Sim-Passw0rd", "no_password_access": true}));
        assert_eq!(
            reset_password(&body).unwrap_err().code,
            codes::PASSWORD_MUST_BE_ABSENT
        );
        assert_eq!(
            reset_password(&map(json!({}))).unwrap_err().code,
            codes::PASSWORD
        );
        assert_eq!(
            reset_password(&map(json!({"no_password_access": true}))).unwrap(),
            None
        );
        let same = map(json!({"old_password": "Sim-Passw0rd", "new_password": "Sim-Passw0rd"}));
        assert_eq!(update_password(&same).unwrap_err().code, codes::INVALID);
    }

    #[test]
    fn resize_rules() {
        let current = Current {
            engine: "Redis",
            engine_version: "5.0",
            spec_code: "redis.ha.xu1.large.r2.2",
            cache_mode: "ha",
            cpu_type: "x86_64",
            capacity: 2.0,
            replica_count: 2,
        };
        let check = |body: Value| {
            resize(&map(body))
                .and_then(|r| resize_against(&r, &current))
                .map_err(|r| r.code)
        };
        assert_eq!(
            check(json!({"spec_code": "redis.ha.xu1.large.r2.4", "new_capacity": 4})),
            Ok(())
        );
        assert_eq!(
            check(json!({"spec_code": "redis.ha.xu1.large.r2.4", "new_capacity": 8})),
            Err(codes::CAPACITY)
        );
        assert_eq!(
            check(json!({"spec_code": "redis.ha.xu1.large.r2.2", "new_capacity": 2})),
            Err(codes::RESIZE_UNSUPPORTED)
        );
        assert_eq!(
            check(json!({"spec_code": "redis.cluster.xu1.large.r2.4", "new_capacity": 4})),
            Err(codes::TYPE_CHANGE)
        );
        assert_eq!(
            check(
                json!({"spec_code": "redis.proxy.xu1.large.4", "new_capacity": 4, "change_type": "instanceType"})
            ),
            Ok(())
        );
        assert_eq!(
            check(json!({"spec_code": "redis.ha.au1.large.r2.4", "new_capacity": 4})),
            Err(codes::TYPE_CHANGE)
        );
        assert_eq!(
            check(json!({"spec_code": "redis.ha.xu1.large.r3.2", "new_capacity": 2})),
            Err(codes::TOO_MANY_REPLICAS)
        );
        assert_eq!(
            check(
                json!({"spec_code": "redis.ha.xu1.large.r3.2", "new_capacity": 2, "change_type": "createReplication"})
            ),
            Ok(())
        );
        assert_eq!(
            check(json!({"spec_code": "nope", "new_capacity": 2})),
            Err(codes::SPEC_CODE)
        );
        assert_eq!(
            check(json!({"spec_code": "redis.ha.xu1.large.r2.4"})),
            Err(codes::CAPACITY)
        );
        assert_eq!(
            check(
                json!({"spec_code": "redis.ha.xu1.large.r2.4", "new_capacity": 4, "bss_param": {"is_auto_pay": "true"}})
            ),
            Err(codes::INVALID)
        );
    }

    #[test]
    fn modify_rules() {
        let modify =
            |body: Value| super::modify(&map(body), "Redis", "6.0", "ha").map_err(|r| r.code);
        assert!(modify(json!({"name": "renamed-cache", "port": 6380})).is_ok());
        assert_eq!(modify(json!({})).unwrap_err(), codes::INVALID);
        assert_eq!(
            modify(json!({"engine_version": "7.0"})).unwrap_err(),
            codes::INVALID
        );
        assert_eq!(modify(json!({"capacity": 4})).unwrap_err(), codes::INVALID);
        assert_eq!(modify(json!({"name": "x"})).unwrap_err(), codes::NAME);
        assert_eq!(
            modify(json!({"security_group_id": "3d5c1f1e-6a3b-4c2d-9e8f-0a1b2c3d4e5f"}))
                .unwrap_err(),
            codes::SECURITY_GROUP
        );
    }

    #[test]
    fn busy_states() {
        assert_eq!(busy_code("RUNNING", None), None);
        assert_eq!(busy_code("RUNNING", Some("")), None);
        assert_eq!(
            busy_code("RUNNING", Some("UpdatePort")),
            Some(codes::JOB_RUNNING)
        );
        assert_eq!(busy_code("EXTENDING", None), Some(codes::EXTENDING));
        assert_eq!(busy_code("CREATING", None), Some(codes::CREATING));
        assert_eq!(busy_code("ERROR", None), Some(codes::NOT_RUNNING));
        assert!(delete_allowed("CREATEFAILED", None));
        assert!(!delete_allowed("CREATING", None));
        assert!(!delete_allowed("RUNNING", Some("UpdatePort")));
        assert!(is_uuid("3d5c1f1e-6a3b-4c2d-9e8f-0a1b2c3d4e5f"));
        assert!(!is_uuid("3d5c1f1e6a3b4c2d9e8f0a1b2c3d4e5f"));
        assert!(one_hour_slot("23:00-00:00"));
        assert!(!one_hour_slot("00:00-02:00"));
    }
}
