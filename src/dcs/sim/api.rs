//! The simulated DCS routes, checked in the gateway's order: route match, fault
//! injection, body size, authentication (with lock-out), throttling, project ID,
//! then the route itself (reads here, the write side in `write`). The identity
//! routes (`iam`) are matched first and skip the gateway: they are unsigned.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

use super::FaultKind;
use super::file::is_project_id;
use super::iam;
use super::state::{SimState, Throttle};
use super::write::{self, Op};
use crate::dcs::signer::{self, Authorization, RequestParts};

/// Read route labels used by counters and fault scoping.
pub const ROUTE_LABELS: [&str; 4] = ["show_v1", "show_v2", "list_v1", "list_v2"];
pub const UNKNOWN_ROUTE: &str = "unknown";

/// Every route label: the reads, then the write side's, then the identity routes'.
pub fn route_labels() -> impl Iterator<Item = &'static str> {
    ROUTE_LABELS
        .into_iter()
        .chain(write::OP_LABELS)
        .chain(iam::ROUTE_LABELS)
}

/// The gateway's limit on a signed body.
const MAX_BODY_BYTES: usize = 12 << 20;
/// The write side's bodies are small JSON objects; anything bigger is refused before
/// it is buffered (413 with the simulator's own code).
const MAX_WRITE_BODY_BYTES: usize = 64 << 10;
/// The simulator's own code for bad paging and filter parameters (the real API's
/// code for this is not documented).
pub const INVALID_PARAMETER_CODE: &str = "DCS.4800";
const AUTH_CODE: &str = "APIG.0301";
const AUTH_PREFIX: &str = "Incorrect IAM authentication information";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Show {
        v2: bool,
        project_id: String,
        instance_id: String,
    },
    List {
        v2: bool,
        project_id: String,
    },
    /// The v2 write side and its helper reads; `project_id` is None on the two
    /// routes without one (available zones, maintenance windows).
    Op {
        project_id: Option<String>,
        op: Op,
    },
    Unknown,
}

impl Route {
    fn parse(method: &Method, path: &str) -> Self {
        let segments: Vec<String> = path
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        if let Some((project_id, op)) = write::parse(method, &segments) {
            return Route::Op { project_id, op };
        }
        if method != Method::GET {
            return Route::Unknown;
        }
        let v2 = match segments.get(1).map(String::as_str) {
            Some("v1.0") => false,
            Some("v2") => true,
            _ => return Route::Unknown,
        };
        match segments.as_slice() {
            [_, _, project, instances] if instances == "instances" => Route::List {
                v2,
                project_id: project.clone(),
            },
            [_, _, project, instances, instance]
                if instances == "instances" && !instance.is_empty() =>
            {
                Route::Show {
                    v2,
                    project_id: project.clone(),
                    instance_id: instance.clone(),
                }
            }
            _ => Route::Unknown,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Route::Show { v2: false, .. } => "show_v1",
            Route::Show { v2: true, .. } => "show_v2",
            Route::List { v2: false, .. } => "list_v1",
            Route::List { v2: true, .. } => "list_v2",
            Route::Op { op, .. } => op.label(),
            Route::Unknown => UNKNOWN_ROUTE,
        }
    }

    /// None for the routes without a project in the path.
    fn project_id(&self) -> Option<&str> {
        match self {
            Route::Show { project_id, .. } | Route::List { project_id, .. } => Some(project_id),
            Route::Op { project_id, .. } => project_id.as_deref(),
            Route::Unknown => Some(""),
        }
    }
}

/// Every request that is not an admin route lands here.
pub async fn handle(State(state): State<Arc<SimState>>, request: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let path = request.uri().path().to_string();
    if let Some(route) = iam::Route::parse(request.method(), &path) {
        state.count_request(route.label());
        let response = respond_identity(&state, route, request, &request_id).await;
        state.count_response(response.status().as_u16());
        tracing::debug!(%path, status = response.status().as_u16(), %request_id, "simulated identity request");
        return response;
    }
    if path == "/_sim" || path.starts_with("/_sim/") {
        return admin_not_found(&request_id);
    }
    let route = Route::parse(request.method(), &path);
    state.count_request(route.label());
    let response = respond(&state, route, request, &request_id).await;
    state.count_response(response.status().as_u16());
    tracing::debug!(%path, status = response.status().as_u16(), %request_id, "simulated DCS request");
    response
}

async fn respond(state: &SimState, route: Route, request: Request, request_id: &str) -> Response {
    if route == Route::Unknown {
        return gateway_error(
            StatusCode::NOT_FOUND,
            "APIGW.0101",
            "The API does not exist or has not been published in the environment",
            request_id,
        );
    }
    let mut drop_answer = false;
    let mut create_failed = false;
    if let Some(kind) = state.take_fault(route.label()) {
        match kind {
            // Latency delays, then the request goes on as if nothing happened.
            FaultKind::Latency { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            // The write-only kinds let the request run, then change its outcome.
            FaultKind::ApplyThenDrop => drop_answer = true,
            FaultKind::CreateFailed => create_failed = true,
            other => return fault_response(other, request_id),
        }
    }
    let limit = match route {
        Route::Op { .. } => MAX_WRITE_BODY_BYTES,
        _ => MAX_BODY_BYTES,
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return dcs_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_PARAMETER_CODE,
            &format!("Invalid parameter: the request body is larger than {limit} bytes"),
            request_id,
        );
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let query = signer::parse_query(parts.uri.query().unwrap_or(""));
    if let Some(refused) = gateway(state, &route, &parts, &query, &headers, &body, request_id) {
        return refused;
    }
    dispatch(
        state,
        route,
        &query,
        &body,
        (drop_answer, create_failed),
        request_id,
    )
}

/// An identity route: faults as on the DCS routes, then the body limit, then the
/// exchange. No gateway authentication: these requests are unsigned.
async fn respond_identity(
    state: &SimState,
    route: iam::Route,
    request: Request,
    request_id: &str,
) -> Response {
    if let Some(kind) = state.take_fault(route.label()) {
        match kind {
            FaultKind::Latency { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            other => return fault_response(other, request_id),
        }
    }
    let (parts, body) = request.into_parts();
    let answer = match axum::body::to_bytes(body, iam::MAX_BODY_BYTES).await {
        Ok(body) => iam::handle(state, route, &parts.headers, &body, request_id),
        Err(_) => iam::too_large(route, request_id),
    };
    if answer.applied {
        state.count_applied(route.label());
    }
    let mut response = json_response(answer.status, &answer.body, request_id);
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The gateway's checks after any fault: the signature (or token), the throttle,
/// the project id's form. `Some` is the answer that refuses the request.
fn gateway(
    state: &SimState,
    route: &Route,
    parts: &axum::http::request::Parts,
    query: &[(String, String)],
    headers: &[(String, String)],
    body: &[u8],
    request_id: &str,
) -> Option<Response> {
    let throttle_key =
        match authenticate(state, &parts.method, parts.uri.path(), query, headers, body) {
            Ok(key) => key,
            Err(message) => {
                return Some(gateway_error(
                    StatusCode::UNAUTHORIZED,
                    AUTH_CODE,
                    &format!("{AUTH_PREFIX}: {message}"),
                    request_id,
                ));
            }
        };
    if let Throttle::Refused {
        limit,
        retry_after_secs,
    } = state.throttle(&throttle_key)
    {
        let mut response = gateway_error(
            StatusCode::TOO_MANY_REQUESTS,
            "APIG.0308",
            &format!(
                "The throttling threshold has been reached: policy user, limit {limit}, time 1 second"
            ),
            request_id,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        return Some(response);
    }
    if route
        .project_id()
        .is_some_and(|project| !is_project_id(project))
    {
        return Some(dcs_error(
            StatusCode::BAD_REQUEST,
            "111400002",
            "Invalid project ID format",
            request_id,
        ));
    }
    None
}

/// The route's own answer, once the gateway let the request through. `faults`:
/// (drop the answer after applying, make the created instance fail).
fn dispatch(
    state: &SimState,
    route: Route,
    query: &[(String, String)],
    body: &[u8],
    (drop_answer, create_failed): (bool, bool),
    request_id: &str,
) -> Response {
    match route {
        Route::Show {
            v2,
            project_id,
            instance_id,
        } => match state.instance(&project_id, &instance_id) {
            Some(fields) => {
                let body = if v2 {
                    v2_item(fields, false)
                } else {
                    v1_item(fields)
                };
                json_response(StatusCode::OK, &body, request_id)
            }
            None => dcs_error(
                StatusCode::NOT_FOUND,
                "DCS.3022",
                "This DCS instance does not exist.",
                request_id,
            ),
        },
        Route::Op { project_id, op } => {
            let outcome = write::handle(
                state,
                op,
                project_id.as_deref().unwrap_or(""),
                query,
                body,
                create_failed,
            );
            if drop_answer {
                return dropped_response();
            }
            match outcome {
                Ok(write::Answer::Json(status, body)) => json_response(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    &body,
                    request_id,
                ),
                Ok(write::Answer::NoContent) => no_content(request_id),
                Err(refusal) => dcs_error(
                    StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
                    refusal.code,
                    &refusal.message,
                    request_id,
                ),
            }
        }
        Route::List { v2, project_id } => {
            match list(&state.listed_instances(&project_id), query, v2) {
                Ok(body) => json_response(StatusCode::OK, &body, request_id),
                Err(message) => dcs_error(
                    StatusCode::BAD_REQUEST,
                    INVALID_PARAMETER_CODE,
                    &format!("Invalid parameter: {message}"),
                    request_id,
                ),
            }
        }
        Route::Unknown => unreachable!("unknown routes were answered first"),
    }
}

/// Token first, as the gateway does; otherwise an AK/SK signature. Returns the
/// throttling key, or the detail for the APIG.0301 message.
fn authenticate(
    state: &SimState,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    body: &[u8],
) -> Result<String, String> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    if let Some(token) = header("x-auth-token") {
        if state.token_matches(token) {
            return Ok(format!("token:{token}"));
        }
        state.auth_failed(None);
        return Err("decrypt token fail".into());
    }
    // The gateway locks by the access key the request names, known or not.
    let authorization = header("authorization").and_then(Authorization::parse);
    let access_key = authorization.as_ref().map(|auth| auth.access_key.clone());
    if let Some(ak) = &access_key
        && state.is_locked(ak)
    {
        state.auth_failed(None);
        return Err(
            "the access key is locked for 5 minutes after 5 consecutive authentication failures"
                .into(),
        );
    }
    // Temporary keys (from the identity routes) need their own security token,
    // signed, and only until they expire.
    let temporary = access_key
        .as_deref()
        .and_then(|ak| state.identity().temporary_key(ak));
    if let (Some(key), Some(authorization)) = (&temporary, &authorization)
        && let Err(message) =
            iam::check_security_token(key, authorization, header("x-security-token"), state.now())
    {
        state.auth_failed(None);
        return Err(message.into());
    }
    let parts = RequestParts {
        method: method.as_str(),
        path,
        query,
        headers,
        body,
    };
    let secret_for = |ak: &str| match &temporary {
        Some(key) => Some(key.secret_key.clone()),
        None => state.secret_for(ak),
    };
    match signer::verify(parts, secret_for, state.now()) {
        Ok(ak) => {
            state.auth_succeeded(&ak);
            Ok(format!("ak:{ak}"))
        }
        Err(error) => {
            state.auth_failed(access_key.as_deref());
            Err(format!("verify aksk signature fail ({error})"))
        }
    }
}

/// The v1.0 answer: every field, `error_code` always present (null when healthy).
fn v1_item(mut fields: Map<String, Value>) -> Value {
    fields.entry("error_code").or_insert(Value::Null);
    Value::Object(fields)
}

/// v1.0 list items carry the flavour under both names, as the real list does.
fn v1_list_item(mut fields: Map<String, Value>) -> Value {
    if let Some(code) = fields.get("resource_spec_code").cloned() {
        fields.entry("spec_code").or_insert(code);
    }
    v1_item(fields)
}

/// The v2 answer: no v1.0-only fields, the flavour named `spec_code`; list items
/// also lack `available_zones`.
fn v2_item(mut fields: Map<String, Value>, list_item: bool) -> Value {
    for key in ["error_code", "internal_version", "product_id"] {
        fields.remove(key);
    }
    if let Some(code) = fields.remove("resource_spec_code")
        && !fields.contains_key("spec_code")
    {
        fields.insert("spec_code".into(), code);
    }
    if list_item {
        fields.remove("available_zones");
    }
    Value::Object(fields)
}

#[derive(Debug, Default)]
struct Filter {
    name: Option<String>,
    exact_name: bool,
    instance_id: Option<String>,
    status: Option<String>,
    ip: Option<String>,
    include_failure: bool,
    tags: Vec<(String, Option<String>)>,
}

impl Filter {
    fn matches(&self, fields: &Map<String, Value>) -> bool {
        let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or("");
        let status = text("status");
        // A failed creation is listed only when asked for, one way or the other.
        if status == "CREATEFAILED"
            && !self.include_failure
            && self.status.as_deref() != Some("CREATEFAILED")
        {
            return false;
        }
        if let Some(name) = &self.name {
            let hit = if self.exact_name {
                text("name") == name
            } else {
                text("name").contains(name.as_str())
            };
            if !hit {
                return false;
            }
        }
        if self
            .instance_id
            .as_ref()
            .is_some_and(|id| text("instance_id") != id)
        {
            return false;
        }
        if self.status.as_ref().is_some_and(|s| status != s) {
            return false;
        }
        if self
            .ip
            .as_ref()
            .is_some_and(|ip| !text("ip").contains(ip.as_str()))
        {
            return false;
        }
        self.tags
            .iter()
            .all(|(key, value)| has_tag(fields, key, value.as_deref()))
    }
}

fn has_tag(fields: &Map<String, Value>, key: &str, value: Option<&str>) -> bool {
    let Some(Value::Array(tags)) = fields.get("tags") else {
        return false;
    };
    tags.iter().any(|tag| {
        tag.get("key").and_then(Value::as_str) == Some(key)
            && value.is_none_or(|v| tag.get("value").and_then(Value::as_str) == Some(v))
    })
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn int_param(
    query: &[(String, String)],
    key: &str,
    min: u64,
    max: u64,
    default: u64,
) -> Result<u64, String> {
    match param(query, key) {
        None => Ok(default),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("{key} must be an integer from {min} to {max}, got {text:?}")),
    }
}

fn bool_param(query: &[(String, String)], key: &str) -> Result<bool, String> {
    match param(query, key) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(format!("{key} must be true or false, got {other:?}")),
    }
}

fn tags_param(query: &[(String, String)]) -> Vec<(String, Option<String>)> {
    param(query, "tags")
        .map(|text| {
            text.split(',')
                .filter(|pair| !pair.trim().is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((key, value)) => (key.trim().to_string(), Some(value.trim().to_string())),
                    None => (pair.trim().to_string(), None),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One list page: v1.0 pages by page number (`start`), v2 by record (`offset`).
fn list(
    instances: &[Map<String, Value>],
    query: &[(String, String)],
    v2: bool,
) -> Result<Value, String> {
    let owned = |key: &str| param(query, key).map(str::to_string);
    let filter = Filter {
        name: owned("name"),
        exact_name: bool_param(query, if v2 { "name_equal" } else { "isExactMatchName" })?,
        instance_id: owned(if v2 { "instance_id" } else { "id" }),
        status: owned("status"),
        ip: owned("ip"),
        include_failure: bool_param(query, "include_failure")?,
        tags: tags_param(query),
    };
    let (skip, limit) = if v2 {
        let limit = int_param(query, "limit", 1, 1000, 10)?;
        (
            int_param(query, "offset", 0, u64::from(u32::MAX), 0)?,
            limit,
        )
    } else {
        let limit = int_param(query, "limit", 1, 1000, 1000)?;
        let start = int_param(query, "start", 1, u64::from(u32::MAX), 1)?;
        ((start - 1).saturating_mul(limit), limit)
    };
    let matching: Vec<&Map<String, Value>> =
        instances.iter().filter(|f| filter.matches(f)).collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|fields| {
            let fields = (*fields).clone();
            if v2 {
                v2_item(fields, true)
            } else {
                v1_list_item(fields)
            }
        })
        .collect();
    Ok(json!({"instance_num": matching.len(), "instances": page}))
}

fn fault_response(kind: FaultKind, request_id: &str) -> Response {
    let canned = json!({
        "instance_num": 1,
        "instances": [{"instance_id": "00000000-0000-0000-0000-000000000000", "name": "truncated", "status": "RUNNING", "port": 6379}],
    })
    .to_string();
    match kind {
        FaultKind::Status {
            status,
            error_code,
            error_msg,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut body = json!({"error_code": error_code, "error_msg": error_msg});
            if error_code.starts_with("APIG") {
                body["request_id"] = Value::from(request_id);
            }
            let mut response = json_response(status, &body, request_id);
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        FaultKind::ResetPasswordCode { code, message } => json_response(
            StatusCode::OK,
            &json!({"code": code, "message": message, "ext_message": ""}),
            request_id,
        ),
        FaultKind::Malformed => raw_response(
            StatusCode::OK,
            Body::from("<html><body>upstream answered garbage</body></html>"),
            request_id,
        ),
        FaultKind::Truncated => {
            let half = canned.len() / 2;
            raw_response(
                StatusCode::OK,
                Body::from(canned[..half].to_string()),
                request_id,
            )
        }
        FaultKind::Reset => {
            // The stream errors after the first chunk; hyper then aborts the
            // connection, so the client never sees a complete answer.
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from(canned[..canned.len() / 2].to_string())),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected reset",
                )),
            ];
            raw_response(
                StatusCode::OK,
                Body::from_stream(futures::stream::iter(chunks)),
                request_id,
            )
        }
        // Not answers of their own: the caller handles these before asking.
        FaultKind::Latency { .. } | FaultKind::ApplyThenDrop | FaultKind::CreateFailed => {
            dcs_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SIM.0002",
                "this fault kind is not an answer",
                request_id,
            )
        }
    }
}

/// No answer at all: the body fails before its first byte, so hyper aborts the
/// connection without flushing the head, and the caller sees the request fail
/// without a status (it cannot know whether the write happened).
fn dropped_response() -> Response {
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "injected drop after apply",
    ))];
    let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    // If a head ever escapes, it must not read as success.
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// 204: no body, as the real write routes answer.
fn no_content(request_id: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn raw_response(status: StatusCode, body: Body, request_id: &str) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    response
}

pub(crate) fn json_response(status: StatusCode, body: &Value, request_id: &str) -> Response {
    raw_response(status, Body::from(body.to_string()), request_id)
}

fn dcs_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    json_response(
        status,
        &json!({"error_code": code, "error_msg": message}),
        request_id,
    )
}

fn gateway_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    json_response(
        status,
        &json!({"error_code": code, "error_msg": message, "request_id": request_id}),
        request_id,
    )
}

fn admin_not_found(request_id: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "no such simulator admin route"}),
        request_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test fields are objects"),
        }
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn routes() {
        let p = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            Route::parse(&Method::GET, &format!("/v1.0/{p}/instances/x")).label(),
            "show_v1"
        );
        assert_eq!(
            Route::parse(&Method::GET, &format!("/v2/{p}/instances/x")).label(),
            "show_v2"
        );
        assert_eq!(
            Route::parse(&Method::GET, &format!("/v1.0/{p}/instances")).label(),
            "list_v1"
        );
        assert_eq!(
            Route::parse(&Method::GET, &format!("/v2/{p}/instances")).label(),
            "list_v2"
        );
        for path in [
            "/",
            "/v3/p/instances",
            "/v2/p/instances/x/y",
            "/v2/p/instances/",
            "/v2/p/other",
        ] {
            assert_eq!(Route::parse(&Method::GET, path), Route::Unknown, "{path}");
        }
        assert_eq!(
            Route::parse(&Method::POST, &format!("/v1.0/{p}/instances")),
            Route::Unknown
        );
        assert_eq!(
            Route::parse(&Method::POST, &format!("/v2/{p}/instances")).label(),
            "create"
        );
        assert_eq!(
            Route::parse(&Method::PATCH, &format!("/v2/{p}/instances/x")),
            Route::Unknown
        );
        match Route::parse(&Method::GET, "/v2/p/instances/a%20b") {
            Route::Show { instance_id, .. } => assert_eq!(instance_id, "a b"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn field_sets_per_version() {
        let full = fields(
            json!({"instance_id": "a", "resource_spec_code": "redis.single.xu1.large.2",
            "internal_version": null, "product_id": "p", "available_zones": ["az1"], "error_code": "dcs.04.0002"}),
        );
        let v1 = v1_item(fields(json!({"instance_id": "a"})));
        assert_eq!(v1, json!({"instance_id": "a", "error_code": null}));
        let v2 = v2_item(full.clone(), false);
        assert_eq!(
            v2,
            json!({"instance_id": "a", "spec_code": "redis.single.xu1.large.2", "available_zones": ["az1"]})
        );
        let item = v2_item(full, true);
        assert_eq!(
            item,
            json!({"instance_id": "a", "spec_code": "redis.single.xu1.large.2"})
        );
    }

    #[test]
    fn list_filters_and_paging() {
        let instances: Vec<Map<String, Value>> = (0..5)
            .map(|n| {
                fields(json!({
                    "instance_id": format!("id-{n}"),
                    "name": format!("cache-{n}"),
                    "status": if n == 4 { "CREATEFAILED" } else { "RUNNING" },
                    "ip": format!("10.0.0.{n}"),
                    "tags": [{"key": "env", "value": if n % 2 == 0 { "prod" } else { "dev" }}],
                }))
            })
            .collect();
        let count = |query: &[(&str, &str)], v2: bool| {
            list(&instances, &q(query), v2).unwrap()["instance_num"].clone()
        };
        assert_eq!(count(&[], true), 4);
        assert_eq!(count(&[("include_failure", "true")], true), 5);
        assert_eq!(count(&[("status", "CREATEFAILED")], true), 1);
        assert_eq!(count(&[("name", "cache")], true), 4);
        assert_eq!(count(&[("name", "cache"), ("name_equal", "true")], true), 0);
        assert_eq!(
            count(&[("name", "cache-1"), ("name_equal", "true")], true),
            1
        );
        assert_eq!(
            count(&[("name", "cache-1"), ("isExactMatchName", "true")], false),
            1
        );
        assert_eq!(count(&[("instance_id", "id-2")], true), 1);
        assert_eq!(count(&[("id", "id-2")], false), 1);
        assert_eq!(count(&[("ip", "10.0.0.3")], true), 1);
        assert_eq!(count(&[("tags", "env=prod")], true), 2);
        assert_eq!(
            count(&[("tags", "env=prod"), ("include_failure", "true")], true),
            3
        );
        assert_eq!(count(&[("tags", "env")], true), 4);
        assert_eq!(count(&[("tags", "env=prod,team=x")], true), 0);
        let page = list(&instances, &q(&[("offset", "3"), ("limit", "2")]), true).unwrap();
        assert_eq!(page["instances"].as_array().unwrap().len(), 1);
        assert_eq!(page["instances"][0]["instance_id"], "id-3");
        let page = list(&instances, &q(&[("start", "2"), ("limit", "3")]), false).unwrap();
        assert_eq!(page["instances"][0]["instance_id"], "id-3");
        assert_eq!(page["instances"][0]["error_code"], Value::Null);
        for bad in [
            ("limit", "0"),
            ("limit", "1001"),
            ("offset", "-1"),
            ("limit", "x"),
            ("include_failure", "yes"),
        ] {
            assert!(list(&instances, &q(&[bad]), true).is_err(), "{bad:?}");
        }
        assert!(list(&instances, &q(&[("start", "0")]), false).is_err());
    }
}
