//! The v2 write side of the simulator and its helper reads: CreateInstance,
//! ResizeInstance, UpdateInstance, UpdatePassword, ResetPassword,
//! DeleteSingleInstance, tag action and ShowTags, ListFlavors, ListAvailableZones,
//! ListMaintenanceWindows and the project quota. Runs after the gateway checks; each
//! write is one atomic step on the world, timed by the injected clock.

use std::time::Duration;

use axum::http::Method;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::flavors::{self, Flavor};
use super::state::{Inner, SimState, StoredInstance};
use super::validate::{self, Current, Refusal, codes};
use super::{Transition, WriteConfig};

/// Labels of the write routes: counted in `Counters::writes_applied` when they
/// take effect, and the only routes the `apply_then_drop` fault fires on.
pub const WRITE_LABELS: [&str; 7] = [
    "create",
    "resize",
    "update",
    "update_password",
    "reset_password",
    "delete",
    "tags_action",
];

/// Every label this module serves: the writes, then the helper reads.
pub const OP_LABELS: [&str; 12] = [
    "create",
    "resize",
    "update",
    "update_password",
    "reset_password",
    "delete",
    "tags_action",
    "show_tags",
    "list_flavors",
    "list_available_zones",
    "list_maintain_windows",
    "show_quota",
];

/// After this many wrong old passwords in a row, UpdatePassword locks…
const PASSWORD_ATTEMPTS: u32 = 5;
/// …for this long.
const PASSWORD_LOCK: TimeDelta = TimeDelta::minutes(5);

/// The simulated subnet the instance IPs come from.
const SUBNET_CIDR: &str = "192.168.0.0/16";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create,
    Resize(String),
    Update(String),
    UpdatePassword(String),
    ResetPassword(String),
    Delete(String),
    TagsAction(String),
    ShowTags(String),
    ListFlavors,
    ListAvailableZones,
    ListMaintainWindows,
    ShowQuota,
}

impl Op {
    pub fn label(&self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Resize(_) => "resize",
            Op::Update(_) => "update",
            Op::UpdatePassword(_) => "update_password",
            Op::ResetPassword(_) => "reset_password",
            Op::Delete(_) => "delete",
            Op::TagsAction(_) => "tags_action",
            Op::ShowTags(_) => "show_tags",
            Op::ListFlavors => "list_flavors",
            Op::ListAvailableZones => "list_available_zones",
            Op::ListMaintainWindows => "list_maintain_windows",
            Op::ShowQuota => "show_quota",
        }
    }
}

/// Matches a v2 write-side route: `(project_id, op)`. `segments` is the decoded path
/// split on `/` (so `segments[0]` is empty).
pub fn parse(method: &Method, segments: &[String]) -> Option<(Option<String>, Op)> {
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let id = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let with_project = |project: &str, op: Op| Some((Some(project.to_string()), op));
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["", "v2", "available-zones"]) => Some((None, Op::ListAvailableZones)),
        ("GET", ["", "v2", "instances", "maintain-windows"]) => {
            Some((None, Op::ListMaintainWindows))
        }
        ("POST", ["", "v2", project, "instances"]) => with_project(project, Op::Create),
        ("GET", ["", "v2", project, "flavors"]) => with_project(project, Op::ListFlavors),
        ("GET", ["", "v2", project, "quota"]) => with_project(project, Op::ShowQuota),
        ("PUT", ["", "v2", project, "instances", instance]) => {
            with_project(project, Op::Update(id(instance)?))
        }
        ("DELETE", ["", "v2", project, "instances", instance]) => {
            with_project(project, Op::Delete(id(instance)?))
        }
        ("POST", ["", "v2", project, "instances", instance, "resize"]) => {
            with_project(project, Op::Resize(id(instance)?))
        }
        ("PUT", ["", "v2", project, "instances", instance, "password"]) => {
            with_project(project, Op::UpdatePassword(id(instance)?))
        }
        (
            "POST",
            [
                "",
                "v2",
                project,
                "instances",
                instance,
                "password",
                "reset",
            ],
        ) => with_project(project, Op::ResetPassword(id(instance)?)),
        ("GET", ["", "v2", project, "instances", instance, "tags"]) => {
            with_project(project, Op::ShowTags(id(instance)?))
        }
        // Tag writes live under /dcs/, tag reads under /instances/ (LIFECYCLE.md §9).
        ("POST", ["", "v2", project, "dcs", instance, "tags", "action"]) => {
            with_project(project, Op::TagsAction(id(instance)?))
        }
        _ => None,
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Json(u16, Value),
    NoContent,
}

/// Runs one operation. `create_failed`: the CREATEFAILED fault hit this request.
pub fn handle(
    state: &SimState,
    op: Op,
    project_id: &str,
    query: &[(String, String)],
    body: &[u8],
    create_failed: bool,
) -> Result<Answer, Refusal> {
    match op {
        Op::Create => create(state, project_id, body, create_failed),
        Op::Resize(id) => resize(state, project_id, &id, body),
        Op::Update(id) => update(state, project_id, &id, body),
        Op::UpdatePassword(id) => update_password(state, project_id, &id, body),
        Op::ResetPassword(id) => reset_password(state, project_id, &id, body),
        Op::Delete(id) => delete(state, project_id, &id),
        Op::TagsAction(id) => tags_action(state, project_id, &id, body),
        Op::ShowTags(id) => show_tags(state, project_id, &id),
        Op::ListFlavors => list_flavors(state, project_id, query),
        Op::ListAvailableZones => Ok(Answer::Json(200, available_zones())),
        Op::ListMaintainWindows => Ok(Answer::Json(200, maintain_windows())),
        Op::ShowQuota => Ok(Answer::Json(200, quota(state, project_id))),
    }
}

fn text<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    fields.get(key).and_then(Value::as_str)
}

/// GB, from `capacity` or, for sub-GB flavours, `capacity_minor` (".125").
fn capacity_gb(fields: &Map<String, Value>) -> f64 {
    let whole = fields
        .get("capacity")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    if whole > 0.0 {
        return whole;
    }
    text(fields, "capacity_minor")
        .and_then(|minor| minor.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The spec code under either name (files use the v1.0 `resource_spec_code`).
fn spec_code(fields: &Map<String, Value>) -> Option<&str> {
    text(fields, "spec_code").or_else(|| text(fields, "resource_spec_code"))
}

/// The API's fields for a capacity: whole GB, or 0 plus `capacity_minor`.
fn capacity_fields(flavor: &Flavor) -> [(&'static str, Value); 3] {
    let (whole, minor) = if flavor.capacity >= 1.0 {
        // Whole GB in the table, so the cast is exact.
        (Value::from(flavor.capacity as u64), String::new())
    } else {
        let text = flavor.capacity_text();
        (Value::from(0), text.trim_start_matches('0').to_string())
    };
    [
        ("capacity", whole),
        ("capacity_minor", Value::from(minor)),
        ("max_memory", Value::from(flavor.max_memory_mb())),
    ]
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn instance_mut<'a>(
    inner: &'a mut Inner,
    project_id: &str,
    instance_id: &str,
    elapsed: Duration,
) -> Result<&'a mut StoredInstance, Refusal> {
    let stored = inner
        .instances
        .get_mut(&(project_id.to_string(), instance_id.to_string()))
        .ok_or_else(Refusal::not_found)?;
    stored.catch_up(elapsed);
    Ok(stored)
}

/// Refuses a write (other than delete) unless RUNNING with no background task.
fn ensure_idle(stored: &StoredInstance) -> Result<(), Refusal> {
    let status = text(&stored.fields, "status").unwrap_or("");
    match validate::busy_code(status, text(&stored.fields, "task")) {
        None => Ok(()),
        Some(code) => Err(Refusal::bad(
            code,
            format!(
                "This operation is not allowed when the DCS instance is {status}{}.",
                text(&stored.fields, "task")
                    .filter(|t| !t.is_empty())
                    .map(|t| format!(" with task {t}"))
                    .unwrap_or_default()
            ),
        )),
    }
}

/// Instances and GB the project holds (every instance counts until it is gone).
fn usage(inner: &Inner, project_id: &str) -> (u64, f64) {
    inner
        .instances
        .iter()
        .filter(|((project, _), _)| project == project_id)
        .fold((0, 0.0), |(count, memory), (_, stored)| {
            (count + 1, memory + capacity_gb(&stored.fields))
        })
}

fn set(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
}

fn tags_value(tags: &[(String, String)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect(),
    )
}

fn create(
    state: &SimState,
    project_id: &str,
    body: &[u8],
    create_failed: bool,
) -> Result<Answer, Refusal> {
    let map = validate::parse_body(body)?;
    let request = validate::create(&map)?;
    state.world(|inner, elapsed, now| {
        let config = inner.write.clone();
        check_create_quota(inner, project_id, &config, request.flavor)?;
        let instance_id = uuid::Uuid::new_v4().to_string();
        let mut fields = created_fields(&request, &instance_id, now);
        add_flavor_and_optional_fields(&mut fields, &request);
        let done = elapsed.saturating_add(config.create_delay);
        let finish = if create_failed {
            // "Instance deployment failed.", the v1.0 fault code of a failed creation.
            set(vec![
                ("status", Value::from("CREATEFAILED")),
                ("error_code", Value::from("dcs.04.0002")),
            ])
        } else {
            created_running(inner, &request, &instance_id, now, config.create_delay)
        };
        let mut stored = StoredInstance::new(fields, Vec::new());
        stored.schedule(Transition {
            after: done,
            set: finish,
        });
        stored.meta.created_by_api = true;
        stored.meta.listed_from = Some(elapsed.saturating_add(config.list_lag));
        stored.meta.password = request.password.clone();
        stored.meta.rename_commands = request.rename_commands.clone();
        inner
            .instances
            .insert((project_id.to_string(), instance_id.clone()), stored);
        inner.count_applied("create");
        Ok(Answer::Json(
            200,
            json!({"instances": [{"instance_id": instance_id, "instance_name": request.name}]}),
        ))
    })
}

/// Checks the project has room for one more instance of this flavour: the
/// instance quota first, then the memory quota.
fn check_create_quota(
    inner: &Inner,
    project_id: &str,
    config: &WriteConfig,
    flavor: &Flavor,
) -> Result<(), Refusal> {
    let (count, memory) = usage(inner, project_id);
    if count >= u64::from(config.instance_quota) {
        return Err(Refusal::bad(
            codes::INSTANCE_QUOTA,
            format!(
                "DCS instance quota of the tenant is insufficient ({count} of {}).",
                config.instance_quota
            ),
        ));
    }
    if memory + flavor.capacity > f64::from(config.memory_quota_gb) {
        return Err(Refusal::bad(
            codes::MEMORY_QUOTA,
            format!(
                "Memory quota of the tenant is insufficient ({memory} GB used of {} GB).",
                config.memory_quota_gb
            ),
        ));
    }
    Ok(())
}

/// The fields every new instance has while CREATING, from the validated request.
fn created_fields(
    request: &validate::CreateRequest,
    instance_id: &str,
    now: DateTime<Utc>,
) -> Map<String, Value> {
    let flavor = request.flavor;
    set(vec![
        ("instance_id", Value::from(instance_id)),
        ("name", Value::from(request.name.clone())),
        ("engine", Value::from(request.engine)),
        (
            "engine_version",
            Value::from(request.engine_version.clone()),
        ),
        ("spec_code", Value::from(flavor.spec_code.clone())),
        // The v1.0 name; the v2 answers drop it and keep `spec_code`.
        ("resource_spec_code", Value::from(flavor.spec_code.clone())),
        ("cache_mode", Value::from(flavor.cache_mode)),
        ("cpu_type", Value::from(flavor.cpu_type)),
        ("product_type", Value::from("generic")),
        ("storage_type", Value::from("DRAM")),
        ("replica_count", Value::from(flavor.replica_count)),
        ("sharding_count", Value::from(flavor.sharding_count)),
        (
            "db_number",
            Value::from(if flavor.cache_mode == "cluster" {
                1
            } else {
                256
            }),
        ),
        ("status", Value::from("CREATING")),
        ("port", Value::from(request.port)),
        ("used_memory", Value::from(0)),
        ("vpc_id", Value::from(request.vpc_id.clone())),
        ("vpc_name", Value::from("sim-vpc")),
        ("subnet_id", Value::from(request.subnet_id.clone())),
        ("subnet_name", Value::from("sim-subnet")),
        ("subnet_cidr", Value::from(SUBNET_CIDR)),
        (
            "az_codes",
            Value::from(request.az_codes.iter().map(|z| z.code).collect::<Vec<_>>()),
        ),
        (
            "available_zones",
            Value::from(request.az_codes.iter().map(|z| z.id).collect::<Vec<_>>()),
        ),
        ("description", Value::from(request.description.clone())),
        ("maintain_begin", Value::from(request.window.0.clone())),
        ("maintain_end", Value::from(request.window.1.clone())),
        (
            "no_password_access",
            Value::from(if request.no_password_access {
                "true"
            } else {
                "false"
            }),
        ),
        ("enable_ssl", Value::from(request.enable_ssl)),
        ("enable_publicip", Value::from(false)),
        ("charging_mode", Value::from(0)),
        (
            "enterprise_project_id",
            Value::from(request.enterprise_project_id.clone()),
        ),
        ("tags", tags_value(&request.tags)),
        ("created_at", Value::from(timestamp(now))),
        ("user_id", Value::from("0000000000000000000000000000000a")),
        ("user_name", Value::from("sim-user")),
    ])
}

/// Adds the flavour's capacity fields, then the optional fields the request set
/// (absent ones stay absent, as the real API omits them).
fn add_flavor_and_optional_fields(
    fields: &mut Map<String, Value>,
    request: &validate::CreateRequest,
) {
    for (key, value) in capacity_fields(request.flavor) {
        fields.insert(key.into(), value);
    }
    let optional = [
        ("security_group_id", request.security_group_id.clone()),
        ("access_user", request.access_user.clone()),
        ("template_id", request.template_id.clone()),
        (
            "enterprise_project_name",
            request.enterprise_project_name.clone(),
        ),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            fields.insert(key.into(), Value::from(value));
        }
    }
    if let Some(policy) = &request.backup_policy {
        fields.insert("instance_backup_policy".into(), json!({"policy": policy}));
    }
}

/// The fields a successful creation sets when it finishes: RUNNING, with the
/// requested private IP or the next free one, and a launch time `create_delay` on.
fn created_running(
    inner: &mut Inner,
    request: &validate::CreateRequest,
    instance_id: &str,
    now: DateTime<Utc>,
    create_delay: Duration,
) -> Map<String, Value> {
    let ip = request
        .private_ip
        .clone()
        .unwrap_or_else(|| allocate_ip(inner, request.flavor));
    set(vec![
        ("status", Value::from("RUNNING")),
        ("sub_status", Value::from("normal")),
        ("ip", Value::from(ip)),
        (
            "domain_name",
            Value::from(format!("redis-{instance_id}.dcs.huaweicloud.com")),
        ),
        (
            "launched_at",
            Value::from(timestamp(
                TimeDelta::from_std(create_delay)
                    .ok()
                    .and_then(|delay| now.checked_add_signed(delay))
                    .unwrap_or(now),
            )),
        ),
    ])
}

/// The next free address of the simulated subnet; a cluster gets one per shard
/// (comma-separated, as the real API reports cluster IPs), at most three.
fn allocate_ip(inner: &mut Inner, flavor: &Flavor) -> String {
    let count = if flavor.cache_mode == "cluster" {
        flavor.sharding_count.clamp(1, 3)
    } else {
        1
    };
    (0..count)
        .map(|_| {
            let n = inner.next_ip;
            inner.next_ip = inner.next_ip.wrapping_add(1);
            // 192.168.0.10 onwards, 240 per third octet, never .0 or .255.
            format!("192.168.{}.{}", (n / 240) % 256, n % 240 + 10)
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn resize(state: &SimState, project_id: &str, id: &str, body: &[u8]) -> Result<Answer, Refusal> {
    let map = validate::parse_body(body)?;
    state.world(|inner, elapsed, _| {
        let config = inner.write.clone();
        let (_, memory) = usage(inner, project_id);
        let stored = instance_mut(inner, project_id, id, elapsed)?;
        ensure_idle(stored)?;
        let request = validate::resize(&map)?;
        let fields = &stored.fields;
        let spec = spec_code(fields).unwrap_or("");
        let known = flavors::by_spec_code(spec);
        let current_capacity = capacity_gb(fields);
        let current = Current {
            engine: text(fields, "engine").unwrap_or("Redis"),
            engine_version: text(fields, "engine_version").unwrap_or(""),
            spec_code: spec,
            cache_mode: text(fields, "cache_mode")
                .or(known.map(|f| f.cache_mode))
                .or_else(|| flavors::cache_mode_of(spec))
                .unwrap_or("single"),
            cpu_type: text(fields, "cpu_type")
                .or(known.map(|f| f.cpu_type))
                .unwrap_or("x86_64"),
            capacity: current_capacity,
            replica_count: fields
                .get("replica_count")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .or(known.map(|f| f.replica_count))
                .unwrap_or(1),
        };
        validate::resize_against(&request, &current)?;
        let growth = request.flavor.capacity - current_capacity;
        if growth > 0.0 && memory + growth > f64::from(config.memory_quota_gb) {
            return Err(Refusal::bad(
                codes::MEMORY_QUOTA,
                format!(
                    "Memory quota of the tenant is insufficient ({memory} GB used of {} GB).",
                    config.memory_quota_gb
                ),
            ));
        }
        let target = request.flavor;
        let mut finish = set(vec![
            ("status", Value::from("RUNNING")),
            ("spec_code", Value::from(target.spec_code.clone())),
            ("cache_mode", Value::from(target.cache_mode)),
            ("replica_count", Value::from(target.replica_count)),
            ("sharding_count", Value::from(target.sharding_count)),
        ]);
        if stored.fields.contains_key("resource_spec_code") {
            finish.insert(
                "resource_spec_code".into(),
                Value::from(target.spec_code.clone()),
            );
        }
        for (key, value) in capacity_fields(target) {
            finish.insert(key.into(), value);
        }
        stored
            .fields
            .insert("status".into(), Value::from("EXTENDING"));
        stored.schedule(Transition {
            after: elapsed.saturating_add(config.resize_delay),
            set: finish,
        });
        inner.count_applied("resize");
        Ok(Answer::NoContent)
    })
}

fn update(state: &SimState, project_id: &str, id: &str, body: &[u8]) -> Result<Answer, Refusal> {
    let map = validate::parse_body(body)?;
    state.world(|inner, elapsed, _| {
        let delay = inner.write.modify_delay;
        let stored = instance_mut(inner, project_id, id, elapsed)?;
        ensure_idle(stored)?;
        let fields = &stored.fields;
        let spec = spec_code(fields).unwrap_or("");
        let cache_mode = text(fields, "cache_mode")
            .or_else(|| flavors::cache_mode_of(spec))
            .unwrap_or("single")
            .to_string();
        let request = validate::modify(
            &map,
            text(fields, "engine").unwrap_or("Redis"),
            text(fields, "engine_version").unwrap_or(""),
            &cache_mode,
        )?;
        let fields = &mut stored.fields;
        if let Some(name) = request.name {
            fields.insert("name".into(), Value::from(name));
        }
        if let Some(description) = request.description {
            fields.insert("description".into(), Value::from(description));
        }
        if let Some((begin, end)) = request.window {
            fields.insert("maintain_begin".into(), Value::from(begin));
            fields.insert("maintain_end".into(), Value::from(end));
        }
        if let Some(group) = request.security_group_id {
            fields.insert("security_group_id".into(), Value::from(group));
        }
        if let Some(policy) = request.backup_policy {
            fields.insert("instance_backup_policy".into(), json!({"policy": policy}));
        }
        // Port and command renaming run as a background task: `task` is set until
        // done, and the new port shows only then. ShowInstance has no field for the
        // renamed commands, so they are kept aside (visible in /_sim/writes).
        let background = request.port.is_some() || request.rename_commands.is_some();
        let mut finish = Map::new();
        if let Some(port) = request.port {
            finish.insert("port".into(), Value::from(port));
        }
        if let Some(commands) = request.rename_commands {
            stored.meta.rename_commands = Some(commands);
        }
        if background {
            // `UpdatePort` is the SDK's task name; the renaming one is undocumented.
            let task = if request.port.is_some() {
                "UpdatePort"
            } else {
                "RenameCommands"
            };
            stored.fields.insert("task".into(), Value::from(task));
            finish.insert("task".into(), Value::Null);
            stored.schedule(Transition {
                after: elapsed.saturating_add(delay),
                set: finish,
            });
        }
        inner.count_applied("update");
        Ok(Answer::NoContent)
    })
}

fn password_answer(result: &str, message: &str, extra: Vec<(&str, Value)>) -> Answer {
    let mut body = set(vec![
        ("result", Value::from(result)),
        ("message", Value::from(message)),
    ]);
    for (key, value) in extra {
        body.insert(key.into(), value);
    }
    Answer::Json(200, Value::Object(body))
}

/// The lock fields: `lock_time` in minutes, `lock_time_left` in seconds (the SDK
/// types both as strings without a unit; the units are the simulator's choice).
fn lock_fields(until: DateTime<Utc>, now: DateTime<Utc>) -> Vec<(&'static str, Value)> {
    vec![
        (
            "lock_time",
            Value::from(PASSWORD_LOCK.num_minutes().to_string()),
        ),
        (
            "lock_time_left",
            Value::from((until - now).num_seconds().max(0).to_string()),
        ),
        ("retry_times_left", Value::from("0")),
    ]
}

fn update_password(
    state: &SimState,
    project_id: &str,
    id: &str,
    body: &[u8],
) -> Result<Answer, Refusal> {
    let map = validate::parse_body(body)?;
    let (old, new) = validate::update_password(&map)?;
    state.world(|inner, elapsed, now| {
        let stored = instance_mut(inner, project_id, id, elapsed)?;
        ensure_idle(stored)?;
        if text(&stored.fields, "no_password_access") == Some("true") {
            return Err(Refusal::bad(
                codes::PASSWORD_FREE,
                "The instance is in password-free mode: use ResetPassword.",
            ));
        }
        let meta = &mut stored.meta;
        if let Some(until) = meta.password_locked_until.filter(|until| *until > now) {
            return Ok(password_answer(
                "locked",
                "The instance password is locked.",
                lock_fields(until, now),
            ));
        }
        if meta
            .password
            .as_ref()
            .is_some_and(|current| *current != old)
        {
            meta.password_failures += 1;
            if meta.password_failures >= PASSWORD_ATTEMPTS {
                let until = now + PASSWORD_LOCK;
                meta.password_failures = 0;
                meta.password_locked_until = Some(until);
                return Ok(password_answer(
                    "locked",
                    "The instance password is locked.",
                    lock_fields(until, now),
                ));
            }
            let left = PASSWORD_ATTEMPTS - meta.password_failures;
            return Ok(password_answer(
                "passwordFailed",
                "The old password is incorrect.",
                vec![
                    ("retry_times_left", Value::from(left.to_string())),
                    (
                        "lock_time",
                        Value::from(PASSWORD_LOCK.num_minutes().to_string()),
                    ),
                ],
            ));
        }
        meta.password = Some(new);
        meta.password_failures = 0;
        meta.password_locked_until = None;
        inner.count_applied("update_password");
        Ok(password_answer(
            "success",
            "Modify DCS instance password successfully.",
            vec![],
        ))
    })
}

fn reset_password(
    state: &SimState,
    project_id: &str,
    id: &str,
    body: &[u8],
) -> Result<Answer, Refusal> {
    let map = validate::parse_body(body)?;
    let password = validate::reset_password(&map)?;
    state.world(|inner, elapsed, now| {
        let stored = instance_mut(inner, project_id, id, elapsed)?;
        ensure_idle(stored)?;
        if let Some(until) = stored.meta.password_locked_until.filter(|until| *until > now) {
            let mut body = json!({"code": "3", "message": "The instance password is locked.", "ext_message": ""});
            for (key, value) in lock_fields(until, now) {
                body[key] = value;
            }
            return Ok(Answer::Json(200, body));
        }
        let free = password.is_none();
        stored.meta.password = password;
        stored.meta.password_failures = 0;
        stored
            .fields
            .insert("no_password_access".into(), Value::from(if free { "true" } else { "false" }));
        inner.count_applied("reset_password");
        Ok(Answer::Json(
            200,
            json!({"code": "1", "message": "Reset DCS instance password successfully.", "ext_message": ""}),
        ))
    })
}

fn delete(state: &SimState, project_id: &str, id: &str) -> Result<Answer, Refusal> {
    state.world(|inner, elapsed, _| {
        let delay = inner.write.delete_delay;
        let stored = instance_mut(inner, project_id, id, elapsed)?;
        let status = text(&stored.fields, "status").unwrap_or("");
        if !validate::delete_allowed(status, text(&stored.fields, "task")) {
            return Err(Refusal::bad(
                codes::DELETE_REFUSED,
                format!("The DCS instance cannot be deleted while {status}."),
            ));
        }
        // Whatever was scripted next no longer happens: the instance is going away.
        stored.pending.clear();
        stored
            .fields
            .insert("status".into(), Value::from("DELETING"));
        let at = elapsed.saturating_add(delay);
        stored.meta.delete_at = Some(at);
        inner
            .deleting
            .push((at, (project_id.to_string(), id.to_string())));
        inner.count_applied("delete");
        inner.purge(elapsed);
        Ok(Answer::NoContent)
    })
}

fn tags_action(
    state: &SimState,
    project_id: &str,
    id: &str,
    body: &[u8],
) -> Result<Answer, Refusal> {
    let map = validate::parse_body(body)?;
    let (create, changes) = validate::tags_action(&map)?;
    state.world(|inner, elapsed, _| {
        let stored = instance_mut(inner, project_id, id, elapsed)?;
        if text(&stored.fields, "status") == Some("DELETING") {
            return Err(Refusal::bad(
                codes::STATE,
                "This operation is not allowed when the DCS instance is DELETING.",
            ));
        }
        let mut tags: Vec<(String, String)> = match stored.fields.get("tags") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|tag| {
                    Some((
                        tag.get("key")?.as_str()?.to_string(),
                        tag.get("value")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ))
                })
                .collect(),
            _ => Vec::new(),
        };
        for (key, value) in changes {
            let at = tags.iter().position(|(k, _)| *k == key);
            match (create, at) {
                (true, Some(at)) => tags[at].1 = value.unwrap_or_default(),
                (true, None) => tags.push((key, value.unwrap_or_default())),
                // A value given with delete must match; without one the key goes.
                (false, Some(at)) if value.as_ref().is_none_or(|v| *v == tags[at].1) => {
                    tags.remove(at);
                }
                (false, _) => {}
            }
        }
        if tags.len() > validate::MAX_TAGS {
            return Err(Refusal::invalid(format!(
                "at most {} tags per instance, this would make {}",
                validate::MAX_TAGS,
                tags.len()
            )));
        }
        stored.fields.insert("tags".into(), tags_value(&tags));
        inner.count_applied("tags_action");
        Ok(Answer::NoContent)
    })
}

fn show_tags(state: &SimState, project_id: &str, id: &str) -> Result<Answer, Refusal> {
    let fields = state
        .instance(project_id, id)
        .ok_or_else(Refusal::not_found)?;
    let tags = match fields.get("tags") {
        Some(Value::Array(items)) => Value::Array(items.clone()),
        _ => Value::Array(Vec::new()),
    };
    Ok(Answer::Json(200, json!({"tags": tags})))
}

fn query_param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn list_flavors(
    state: &SimState,
    project_id: &str,
    query: &[(String, String)],
) -> Result<Answer, Refusal> {
    let param = |key: &str| query_param(query, key);
    // With instance_id: the flavours that instance can change to.
    let instance = match param("instance_id") {
        Some(id) => Some(
            state
                .instance(project_id, id)
                .ok_or_else(Refusal::not_found)?,
        ),
        None => None,
    };
    let capacity =
        match param("capacity") {
            Some(text) => Some(text.parse::<f64>().map_err(|_| {
                Refusal::invalid(format!("capacity must be a number, got {text:?}"))
            })?),
            None => None,
        };
    let flavors: Vec<Value> = flavors::all()
        .iter()
        .filter(|f| param("spec_code").is_none_or(|code| f.spec_code == code))
        .filter(|f| param("engine").is_none_or(|engine| f.engine.eq_ignore_ascii_case(engine)))
        .filter(|f| param("engine_version").is_none_or(|version| f.supports_version(version)))
        .filter(|f| param("cache_mode").is_none_or(|mode| f.cache_mode == mode))
        .filter(|f| param("cpu_type").is_none_or(|cpu| f.cpu_type == cpu))
        .filter(|f| capacity.is_none_or(|c| flavors::same_capacity(c, f.capacity)))
        .filter(|f| {
            instance.as_ref().is_none_or(|fields| {
                let spec = spec_code(fields).unwrap_or("");
                let mode = text(fields, "cache_mode")
                    .or_else(|| flavors::cache_mode_of(spec))
                    .unwrap_or("");
                f.engine == text(fields, "engine").unwrap_or("")
                    && f.fits_instance_version(text(fields, "engine_version").unwrap_or(""))
                    && f.cpu_type == text(fields, "cpu_type").unwrap_or("x86_64")
                    && (f.cache_mode == mode || flavors::type_change_allowed(mode, f.cache_mode))
            })
        })
        .map(Flavor::item)
        .collect();
    Ok(Answer::Json(200, json!({"flavors": flavors})))
}

fn available_zones() -> Value {
    let zones: Vec<Value> = flavors::ZONES
        .iter()
        .map(|zone| {
            json!({
                "code": zone.code,
                "id": zone.id,
                "name": zone.name,
                "port": "8002",
                "resource_availability": if zone.has_stock { "true" } else { "false" },
            })
        })
        .collect();
    json!({"region_id": flavors::REGION, "available_zones": zones})
}

fn maintain_windows() -> Value {
    let windows: Vec<Value> = flavors::MAINTAIN_WINDOWS
        .iter()
        .enumerate()
        .map(|(index, (begin, end))| {
            json!({
                "seq": index + 1,
                "default": (*begin, *end) == flavors::DEFAULT_WINDOW,
                "begin": &begin[..2],
                "end": &end[..2],
            })
        })
        .collect();
    json!({"maintain_windows": windows})
}

fn quota(state: &SimState, project_id: &str) -> Value {
    state.world(|inner, _, _| {
        let (count, memory) = usage(inner, project_id);
        let config = &inner.write;
        json!({"quotas": {"resources": [
            {"type": "instance", "quota": config.instance_quota, "used": count, "min": 1, "max": config.instance_quota.max(1000)},
            // Whole GB, as the SDK's int field: sub-GB instances round up.
            {"type": "ram", "unit": "GB", "quota": config.memory_quota_gb, "used": memory.ceil() as u64, "min": 1, "max": config.memory_quota_gb.max(51200)},
        ]}})
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::clock::ManualClock;
    use crate::dcs::sim::SimConfig;

    const PROJECT: &str = "0123456789abcdef0123456789abcdef";

    /// Field names the write bodies know, so random objects reach deep validation.
    const KEYS: [&str; 24] = [
        "name",
        "engine",
        "engine_version",
        "capacity",
        "spec_code",
        "az_codes",
        "vpc_id",
        "subnet_id",
        "password",
        "no_password_access",
        "tags",
        "key",
        "value",
        "action",
        "new_capacity",
        "change_type",
        "port",
        "rename_commands",
        "maintain_begin",
        "maintain_end",
        "instance_backup_policy",
        "bss_param",
        "old_password",
        "new_password",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-zA-Z0-9 ._:/=@-]{0,40}".prop_map(Value::from),
            prop::sample::select(vec![
                "Redis",
                "Memcached",
                "6.0",
                "redis.ha.xu1.large.r2.2",
                "redis.single.xu1.tiny.128",
                "cn-north-4a",
                "cn-north-4g",
                "create",
                "delete",
                "auto",
                "weekly",
                "postPaid",
                "prePaid",
                "instanceType",
                "Sim-Passw0rd",
                "3d5c1f1e-6a3b-4c2d-9e8f-0a1b2c3d4e5f",
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 48, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..10)
                    .prop_map(|pairs| {
                        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                    }),
            ]
        })
    }

    fn world_with_a_running_instance() -> (SimState, ManualClock, String) {
        let clock = ManualClock::new(Utc::now());
        let state = SimState::new(SimConfig::with_default_keys(), Arc::new(clock.clone()));
        let body = json!({
            "name": "fuzzed-cache", "engine": "Redis", "engine_version": "6.0", "capacity": 2,
            "spec_code": "redis.ha.xu1.large.r2.2", "az_codes": ["cn-north-4a"],
            "vpc_id": "3d5c1f1e-6a3b-4c2d-9e8f-0a1b2c3d4e5f",
            "subnet_id": "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", "password": "Sim-Passw0rd",
        });
        let answer = handle(
            &state,
            Op::Create,
            PROJECT,
            &[],
            body.to_string().as_bytes(),
            false,
        );
        let Ok(Answer::Json(200, body)) = answer else {
            panic!("the create succeeds: {answer:?}");
        };
        let id = body["instances"][0]["instance_id"]
            .as_str()
            .unwrap()
            .to_string();
        clock.advance(TimeDelta::seconds(10));
        (state, clock, id)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The simulator is a hostile-input surface: no body, query or order of calls
        /// makes a write route panic; every answer is a success or a refusal.
        #[test]
        fn no_input_makes_a_route_panic(
            body in json_value(),
            bytes in prop::collection::vec(any::<u8>(), 0..48),
            query in prop::collection::vec(
                (prop::sample::select(vec!["instance_id", "capacity", "engine", "engine_version", "cache_mode", "spec_code"]),
                 "[a-z0-9.;=-]{0,12}"),
                0..4,
            ),
        ) {
            let (state, clock, id) = world_with_a_running_instance();
            let query: Vec<(String, String)> =
                query.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let text = body.to_string();
            for raw in [text.as_bytes(), bytes.as_slice()] {
                for target in [id.as_str(), "missing"] {
                    let ops = [
                        Op::Create, Op::Resize(target.into()), Op::Update(target.into()),
                        Op::UpdatePassword(target.into()), Op::ResetPassword(target.into()),
                        Op::TagsAction(target.into()), Op::ShowTags(target.into()), Op::ListFlavors,
                        Op::ListAvailableZones, Op::ListMaintainWindows, Op::ShowQuota,
                        Op::Delete(target.into()),
                    ];
                    for op in ops {
                        match handle(&state, op, PROJECT, &query, raw, true) {
                            Ok(_) => {}
                            Err(refusal) => prop_assert!((400..500).contains(&refusal.status)),
                        }
                    }
                    clock.advance(TimeDelta::seconds(40));
                }
            }
            let counters = state.counters();
            prop_assert!(counters.applied_for("create") >= 1);
        }
    }

    fn segments(path: &str) -> Vec<String> {
        path.split('/').map(str::to_string).collect()
    }

    #[test]
    fn routes() {
        let p = "0123456789abcdef0123456789abcdef";
        let cases = [
            ("POST", format!("/v2/{p}/instances"), Some("create")),
            ("PUT", format!("/v2/{p}/instances/i"), Some("update")),
            ("DELETE", format!("/v2/{p}/instances/i"), Some("delete")),
            (
                "POST",
                format!("/v2/{p}/instances/i/resize"),
                Some("resize"),
            ),
            (
                "PUT",
                format!("/v2/{p}/instances/i/password"),
                Some("update_password"),
            ),
            (
                "POST",
                format!("/v2/{p}/instances/i/password/reset"),
                Some("reset_password"),
            ),
            (
                "POST",
                format!("/v2/{p}/dcs/i/tags/action"),
                Some("tags_action"),
            ),
            (
                "GET",
                format!("/v2/{p}/instances/i/tags"),
                Some("show_tags"),
            ),
            ("GET", format!("/v2/{p}/flavors"), Some("list_flavors")),
            ("GET", format!("/v2/{p}/quota"), Some("show_quota")),
            (
                "GET",
                "/v2/available-zones".to_string(),
                Some("list_available_zones"),
            ),
            (
                "GET",
                "/v2/instances/maintain-windows".to_string(),
                Some("list_maintain_windows"),
            ),
            ("GET", format!("/v2/{p}/instances/i"), None),
            ("DELETE", format!("/v2/{p}/instances/"), None),
            ("POST", format!("/v2/{p}/instances/i/tags/action"), None),
            ("POST", format!("/v1.0/{p}/instances"), None),
        ];
        for (method, path, label) in cases {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let parsed = parse(&method, &segments(&path)).map(|(_, op)| op.label());
            assert_eq!(parsed, label, "{method} {path}");
        }
        let (project, op) = parse(&Method::GET, &segments("/v2/available-zones")).unwrap();
        assert_eq!((project, op), (None, Op::ListAvailableZones));
    }

    #[test]
    fn capacities_and_windows() {
        let tiny = flavors::by_spec_code("redis.single.xu1.tiny.128").unwrap();
        let fields: Map<String, Value> = capacity_fields(tiny)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(fields["capacity"], 0);
        assert_eq!(fields["capacity_minor"], ".125");
        assert_eq!(capacity_gb(&fields), 0.125);
        let windows = maintain_windows();
        assert_eq!(windows["maintain_windows"][1]["default"], true);
        assert_eq!(windows["maintain_windows"][0]["begin"], "22");
        for label in WRITE_LABELS {
            assert!(OP_LABELS.contains(&label));
        }
    }
}
