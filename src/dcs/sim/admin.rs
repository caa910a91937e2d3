//! The `/_sim/` admin routes: instances, the write side (created instances, pending
//! changes, write counts, timings), faults, counters and the throttle, for tests and
//! people driving a running simulator. Unauthenticated by design, so the
//! simulator belongs on loopback.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::file::{parse_entry, parse_write_config};
use super::state::SimState;
use super::{Fault, WRITE_LABELS, WriteConfig};
use crate::duration;

type Shared = State<Arc<SimState>>;

pub fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route(
            "/_sim/healthz",
            get(|| async { reply(StatusCode::OK, json!({"status": "ok"})) }),
        )
        .route("/_sim/instances", get(list_instances).post(upsert_instance))
        .route(
            "/_sim/instances/{project_id}/{instance_id}",
            patch(update_instance)
                .delete(delete_instance)
                .get(show_instance),
        )
        .route(
            "/_sim/faults",
            get(list_faults).post(inject_fault).delete(clear_faults),
        )
        .route("/_sim/counters", get(counters).delete(reset_counters))
        .route("/_sim/rate-limit", put(set_rate_limit).get(rate_limit))
        .route("/_sim/writes", get(writes))
        .route(
            "/_sim/write-config",
            get(write_config).put(set_write_config),
        )
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    reply(StatusCode::BAD_REQUEST, json!({"error": message.into()}))
}

fn not_found(project_id: &str, instance_id: &str) -> Response {
    reply(
        StatusCode::NOT_FOUND,
        json!({"error": format!("no instance {instance_id:?} in project {project_id:?}")}),
    )
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("the body is not valid JSON for this route: {e}"))
}

async fn list_instances(State(state): Shared) -> Response {
    reply(StatusCode::OK, json!({"instances": state.entries()}))
}

async fn upsert_instance(State(state): Shared, body: Bytes) -> Response {
    let entry: Value = match parse_json(&body) {
        Ok(entry) => entry,
        Err(message) => return bad_request(message),
    };
    match parse_entry(entry) {
        Ok(instance) => {
            state.upsert_instance(instance);
            reply(StatusCode::OK, json!({"status": "ok"}))
        }
        Err(error) => bad_request(error.message()),
    }
}

async fn show_instance(
    State(state): Shared,
    Path((project_id, instance_id)): Path<(String, String)>,
) -> Response {
    match state.instance(&project_id, &instance_id) {
        Some(fields) => reply(StatusCode::OK, Value::Object(fields)),
        None => not_found(&project_id, &instance_id),
    }
}

async fn update_instance(
    State(state): Shared,
    Path((project_id, instance_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let set: Map<String, Value> = match parse_json(&body) {
        Ok(set) => set,
        Err(message) => return bad_request(message),
    };
    if state.update_instance(&project_id, &instance_id, set) {
        match state.instance(&project_id, &instance_id) {
            Some(fields) => reply(StatusCode::OK, Value::Object(fields)),
            None => not_found(&project_id, &instance_id),
        }
    } else {
        not_found(&project_id, &instance_id)
    }
}

async fn delete_instance(
    State(state): Shared,
    Path((project_id, instance_id)): Path<(String, String)>,
) -> Response {
    if state.delete_instance(&project_id, &instance_id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(&project_id, &instance_id)
    }
}

async fn list_faults(State(state): Shared) -> Response {
    reply(StatusCode::OK, json!({"faults": state.faults()}))
}

async fn inject_fault(State(state): Shared, body: Bytes) -> Response {
    let fault: Fault = match parse_json(&body) {
        Ok(fault) => fault,
        Err(message) => return bad_request(message),
    };
    if let Err(error) = fault.validate() {
        return bad_request(error.to_string());
    }
    state.inject_fault(fault);
    reply(StatusCode::OK, json!({"faults": state.faults()}))
}

async fn clear_faults(State(state): Shared) -> Response {
    state.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

async fn counters(State(state): Shared) -> Response {
    reply(StatusCode::OK, json!(state.counters()))
}

async fn reset_counters(State(state): Shared) -> Response {
    state.reset_counters();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimit {
    per_second: Option<u32>,
}

async fn set_rate_limit(State(state): Shared, body: Bytes) -> Response {
    let limit: RateLimit = match parse_json(&body) {
        Ok(limit) => limit,
        Err(message) => return bad_request(message),
    };
    state.set_rate_limit(limit.per_second);
    reply(StatusCode::OK, json!({"per_second": limit.per_second}))
}

async fn rate_limit(State(state): Shared) -> Response {
    reply(StatusCode::OK, json!({"per_second": state.rate_limit()}))
}

/// Created instances (tags, pending changes, list visibility, deletion) and, per
/// write route, the calls received and the calls that took effect.
async fn writes(State(state): Shared) -> Response {
    let counters = state.counters();
    let per_route: serde_json::Map<String, Value> = WRITE_LABELS
        .iter()
        .map(|label| {
            (
                label.to_string(),
                json!({"requests": counters.requests_for(label), "applied": counters.applied_for(label)}),
            )
        })
        .collect();
    reply(
        StatusCode::OK,
        json!({"instances": state.write_view(), "routes": per_route}),
    )
}

fn config_value(config: &WriteConfig) -> Value {
    json!({
        "create_delay": duration::format(config.create_delay),
        "resize_delay": duration::format(config.resize_delay),
        "delete_delay": duration::format(config.delete_delay),
        "modify_delay": duration::format(config.modify_delay),
        "list_lag": duration::format(config.list_lag),
        "instance_quota": config.instance_quota,
        "memory_quota_gb": config.memory_quota_gb,
    })
}

async fn write_config(State(state): Shared) -> Response {
    reply(StatusCode::OK, config_value(&state.write_config()))
}

/// Changes some settings (same keys as the instance file's `settings`).
async fn set_write_config(State(state): Shared, body: Bytes) -> Response {
    let settings: serde_json::Map<String, Value> = match parse_json(&body) {
        Ok(settings) => settings,
        Err(message) => return bad_request(message),
    };
    let text = json!({"settings": settings}).to_string();
    match parse_write_config(&text, state.write_config()) {
        Ok(config) => {
            state.set_write_config(config.clone());
            reply(StatusCode::OK, config_value(&config))
        }
        Err(error) => bad_request(error.to_string()),
    }
}
