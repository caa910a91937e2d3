//! A stateful fake Kubernetes API server for controller tests: objects kept as JSON in
//! memory, answering a `kube::Client` built on a `tower_test` mock pair, so a test can
//! reconcile many times and then assert the objects and the requests made.
//!
//! What it models, and how far:
//! - GET, LIST (label selectors `k=v`, `k==v`, `k!=v`, `k`, `!k`; field selectors on
//!   `metadata.name`/`metadata.namespace`; `limit`/`continue` paging), POST, PUT,
//!   PATCH (merge, JSON patch, strategic merge, apply) and DELETE, for any resource
//!   under `/api/v1/...` and `/apis/{group}/{version}/...`.
//! - One global resourceVersion counter. A write that changes nothing is not stored
//!   and does not bump it, as on the real server (which skips writing an unchanged
//!   object); it is still recorded, with `changed: false`.
//! - Optimistic concurrency: a patch or PUT whose object carries a resourceVersion
//!   other than the stored one is refused with 409 Conflict. A PUT carrying another
//!   uid is 409 too (a precondition); a patch that changes the uid is 422, as the
//!   real server validates uid as immutable after the resourceVersion check.
//! - Status subresource (DcsInstance, CRDs, Namespaces, unknown custom resources):
//!   writes to `/status` change only `.status`, writes to the object never change it,
//!   and `metadata.generation` counts changes outside metadata and status.
//! - Finalizers: DELETE of an object holding finalizers only sets deletionTimestamp;
//!   the write that leaves it without finalizers removes it; adding one while it is
//!   being deleted is 422.
//!
//! Approximations (differences from the real API server):
//! - Server-side apply is a JSON merge of the applied fields, plus removal of the fields
//!   the same field manager applied last time and omits now. No conflicts between
//!   managers (`force` is ignored), no managedFields, lists are atomic (not merged by
//!   key), and fields taken over by non-apply writes stay owned by the applier.
//! - Strategic merge patch is a JSON merge patch (lists replaced, never merged by
//!   key, no `$patch` directives); for custom resources it is refused with 415 as on
//!   the real server.
//! - LIST pages read the current state, not a snapshot at the first page's version;
//!   the `resourceVersion`/`resourceVersionMatch` query parameters are ignored.
//! - No admission, no schema validation or defaulting, no garbage collection through
//!   ownerReferences, no propagationPolicy finalizers, no grace periods.
//! - POST keeps a uid the object already carries (the real server always sets a new one).
//! - Watches are answered 405: tests call reconcile directly. `dryRun` is refused with
//!   400 rather than half-honoured.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{SecondsFormat, Utc};
use dcs_operator::crd::DcsInstance;
use http::{HeaderValue, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// One request the fake answered, with how it answered.
#[derive(Clone, Debug)]
pub(crate) struct RecordedRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    /// The raw query string (percent-encoded, as sent).
    pub(crate) query: String,
    pub(crate) content_type: Option<String>,
    /// The body as JSON (apply bodies parsed as YAML when not JSON), if any.
    pub(crate) body: Option<Value>,
    /// The HTTP status answered.
    pub(crate) status: u16,
    /// Whether the request changed a stored object.
    pub(crate) changed: bool,
}

/// The in-memory API server; clones share one state.
#[derive(Clone, Default)]
pub(crate) struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

/// A client answered by a new fake API server, served on the current tokio runtime
/// until every clone of the client is dropped. Its default namespace is `default`.
pub(crate) fn fake_api_server() -> (Client, FakeApiServer) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let fake = FakeApiServer::default();
    let server = fake.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            send.send_response(server.serve(request).await);
        }
    });
    (client, fake)
}

/// The store key prefix of `K`: its apiVersion and plural, e.g. `v1/secrets`.
pub(crate) fn resource_of<K: Resource<DynamicType = ()>>() -> String {
    format!("{}/{}", K::api_version(&()), K::plural(&()))
}

impl FakeApiServer {
    /// Stores `obj` as is (no request recorded), filling in what the server would have
    /// set: uid, resourceVersion, creationTimestamp, and generation where it is kept.
    /// The key comes from its apiVersion, kind, namespace and name. Returns it stored.
    pub(crate) fn insert(&self, obj: impl Serialize) -> Value {
        let mut obj = serde_json::to_value(obj).expect("a serializable object");
        let api_version = obj["apiVersion"].as_str().expect("apiVersion").to_string();
        let kind = obj["kind"].as_str().expect("kind").to_string();
        let plural = plural_for_kind(&kind);
        let info = info(&api_version, &plural);
        let key = Key {
            resource: format!("{api_version}/{plural}"),
            namespace: obj["metadata"]["namespace"].as_str().map(str::to_string),
            name: obj["metadata"]["name"]
                .as_str()
                .expect("metadata.name")
                .to_string(),
        };
        let mut state = self.lock();
        let given_version = obj["metadata"]["resourceVersion"]
            .as_str()
            .map(|v| v.parse::<u64>().expect("a numeric resourceVersion"));
        let version = match given_version {
            // Later writes must still get larger versions.
            Some(version) => {
                state.resource_version = state.resource_version.max(version);
                version
            }
            None => state.bump(),
        };
        let meta = metadata_mut(&mut obj);
        meta.entry("uid").or_insert_with(|| json!(new_uid()));
        meta.entry("creationTimestamp")
            .or_insert_with(|| json!(now()));
        if info.generation {
            meta.entry("generation").or_insert(json!(1));
        }
        meta.insert("resourceVersion".into(), json!(version.to_string()));
        state.applied.remove(&key);
        state.objects.insert(key, obj.clone());
        obj
    }

    /// The stored object of type `K`, if any (`namespace` None for cluster-scoped).
    pub(crate) fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<K> {
        let value = self.get_value(&resource_of::<K>(), namespace, name)?;
        Some(serde_json::from_value(value).unwrap_or_else(|error| {
            panic!(
                "the stored {} {name} does not deserialize: {error}",
                K::kind(&())
            )
        }))
    }

    pub(crate) fn get_dcs(&self, namespace: &str, name: &str) -> Option<DcsInstance> {
        self.get(Some(namespace), name)
    }

    pub(crate) fn get_secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.get(Some(namespace), name)
    }

    /// The stored object under `resource` (e.g. `v1/secrets`,
    /// `dcs.operator.dev/v1alpha1/dcsinstances`), as JSON.
    pub(crate) fn get_value(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = Key {
            resource: resource.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        };
        self.lock().objects.get(&key).cloned()
    }

    /// Every stored object under `resource`, in `namespace` or (None) in all.
    pub(crate) fn list_values(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|(key, _)| {
                key.resource == resource
                    && namespace.is_none_or(|ns| key.namespace.as_deref() == Some(ns))
            })
            .map(|(_, obj)| obj.clone())
            .collect()
    }

    /// Deletes every object in `namespace` (and the Namespace object, if stored) the way
    /// DELETE does: objects holding finalizers get a deletionTimestamp, the rest go.
    /// Returns how many objects it touched.
    pub(crate) fn delete_namespace(&self, namespace: &str) -> usize {
        let mut state = self.lock();
        let keys: Vec<Key> = state
            .objects
            .keys()
            .filter(|key| {
                key.namespace.as_deref() == Some(namespace)
                    || (key.resource == "v1/namespaces" && key.name == namespace)
            })
            .cloned()
            .collect();
        for key in &keys {
            state.mark_deleted(key);
        }
        keys.len()
    }

    /// Marks the object as being deleted (deletionTimestamp now, as a DELETE of an
    /// object holding finalizers does, e.g. a CRD held by the API server's own cleanup
    /// finalizer) and keeps it whatever its finalizers, until a write leaves it
    /// without any. False when there is no such object.
    pub(crate) fn set_deletion_timestamp<K: Resource<DynamicType = ()>>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let key = Key {
            resource: resource_of::<K>(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        };
        let mut state = self.lock();
        let version = state.bump();
        let Some(obj) = state.objects.get_mut(&key) else {
            return false;
        };
        let meta = metadata_mut(obj);
        meta.insert("deletionTimestamp".into(), json!(now()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        meta.insert("resourceVersion".into(), json!(version.to_string()));
        true
    }

    /// Every request answered so far, in order.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// How many requests had `method` and a path containing `path_contains`.
    pub(crate) fn count(&self, method: &str, path_contains: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.contains(path_contains))
            .count()
    }

    /// How many requests were not GETs (whether or not they succeeded or changed anything).
    pub(crate) fn writes(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method != "GET")
            .count()
    }

    /// Answers TokenRequests with `minter` (without one, they are refused).
    pub(crate) fn set_token_minter(&self, minter: TokenMinter) {
        self.lock().token_minter = Some(minter);
    }

    pub(crate) fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// A panicking test thread must not wedge the server for the others.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request; never panics on what the client sent.
    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(http::header::CONTENT_TYPE);
        let call = Call {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: content_type.clone(),
            partial_metadata: header(http::header::ACCEPT)
                .is_some_and(|accept| accept.contains("as=PartialObjectMetadata")),
        };
        let body = match body.collect_bytes().await {
            Ok(bytes) if bytes.is_empty() => Ok(None),
            Ok(bytes) => parse_body(&bytes, content_type.as_deref()).map(Some),
            Err(error) => Err(Failure::bad_request(format!("unreadable body: {error}"))),
        };
        let mut state = self.lock();
        let outcome = match &body {
            Ok(body) => state.handle(&call, body.as_ref()),
            Err(failure) => Err(failure.clone()),
        };
        let (status, answer, changed) = match outcome {
            Ok(done) => done,
            Err(failure) => (failure.code, failure.body(), false),
        };
        state.requests.push(RecordedRequest {
            method: call.method,
            path: call.path,
            query: call.query,
            content_type,
            body: body.ok().flatten(),
            status,
            changed,
        });
        drop(state);
        respond(status, &answer)
    }
}

/// Where an object is kept: `resource` is apiVersion/plural (`v1/secrets`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    resource: String,
    namespace: Option<String>,
    name: String,
}

/// Mints the token of a TokenRequest: (namespace, ServiceAccount, audiences) ->
/// the token, or None to refuse (403).
pub(crate) type TokenMinter = Arc<dyn Fn(&str, &str, &[String]) -> Option<String> + Send + Sync>;

#[derive(Default)]
struct State {
    /// TokenRequests (`serviceaccounts/{name}/token`) answered by this, if set.
    token_minter: Option<TokenMinter>,
    objects: BTreeMap<Key, Value>,
    /// The fields each server-side-apply manager set last (per object, per main
    /// resource or status): what its next apply removes when it omits them.
    applied: HashMap<Key, HashMap<Applier, BTreeSet<FieldPath>>>,
    resource_version: u64,
    requests: Vec<RecordedRequest>,
}

/// A server-side-apply field manager, on the object (false) or its status (true).
type Applier = (String, bool);

/// A field, as the keys leading to it.
type FieldPath = Vec<String>;

/// What serving one request needs besides the state.
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    partial_metadata: bool,
}

/// (HTTP status, body, whether a stored object changed).
type Answer = Result<(u16, Value, bool), Failure>;

/// A refusal, answered as a `Status` body.
#[derive(Clone, Debug)]
struct Failure {
    code: u16,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl Failure {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn no_such_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    fn body(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// A request path, parsed.
struct Target {
    /// `v1` or `group/version`.
    api_version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn resource(&self) -> String {
        format!("{}/{}", self.api_version, self.plural)
    }

    fn key(&self, name: &str) -> Key {
        Key {
            resource: self.resource(),
            namespace: self.namespace.clone(),
            name: name.to_string(),
        }
    }

    fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// `secrets`, `dcsinstances.dcs.operator.dev`: how the server names the resource
    /// in messages.
    fn qualified(&self) -> String {
        match self.group() {
            "" => self.plural.clone(),
            group => format!("{}.{group}", self.plural),
        }
    }

    fn failure(&self, name: &str, code: u16, reason: &'static str, why: &str) -> Failure {
        Failure {
            details: Some(json!({"name": name, "group": self.group(), "kind": self.plural})),
            ..Failure::new(
                code,
                reason,
                format!("{} \"{name}\" {why}", self.qualified()),
            )
        }
    }

    fn not_found(&self, name: &str) -> Failure {
        self.failure(name, 404, "NotFound", "not found")
    }

    fn conflict(&self, name: &str, why: &str) -> Failure {
        self.failure(
            name,
            409,
            "Conflict",
            &format!("Operation cannot be fulfilled: {why}"),
        )
    }

    fn invalid(&self, name: &str, why: &str) -> Failure {
        self.failure(name, 422, "Invalid", &format!("is invalid: {why}"))
    }
}

/// `/api/v1/namespaces/{ns}/{plural}[/{name}[/{sub}]]`, `/api/v1/{plural}[/{name}[/{sub}]]`
/// and the same under `/apis/{group}/{version}`.
fn parse_path(path: &str) -> Option<Target> {
    let segments = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect::<Option<Vec<String>>>()?;
    if segments.iter().any(String::is_empty) {
        return None;
    }
    let (api_version, rest) = match segments.as_slice() {
        [api, version, rest @ ..] if api == "api" => (version.clone(), rest),
        [apis, group, version, rest @ ..] if apis == "apis" => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    // `namespaces/{name}/status` and `/finalize` are the Namespace's own subresources.
    let namespaced =
        rest.len() >= 3 && rest[0] == "namespaces" && rest[2] != "status" && rest[2] != "finalize";
    let (namespace, rest) = if namespaced {
        (Some(rest[1].clone()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name), None),
        [plural, name, sub] => (plural, Some(name), Some(sub)),
        _ => return None,
    };
    Some(Target {
        api_version,
        plural: plural.clone(),
        namespace,
        name: name.cloned(),
        subresource: subresource.cloned(),
    })
}

/// What the fake knows of a resource.
#[derive(Clone, Copy)]
struct Info {
    kind: Option<&'static str>,
    status_subresource: bool,
    /// Whether metadata.generation is kept.
    generation: bool,
}

/// (kind, plural, status subresource, generation) for the kinds tests use.
const KNOWN: &[(&str, &str, bool, bool)] = &[
    ("DcsInstance", "dcsinstances", true, true),
    (
        "CustomResourceDefinition",
        "customresourcedefinitions",
        true,
        true,
    ),
    ("Namespace", "namespaces", true, false),
    ("Secret", "secrets", false, false),
    ("ConfigMap", "configmaps", false, false),
    ("ServiceAccount", "serviceaccounts", false, false),
    ("Event", "events", false, false),
    ("Lease", "leases", false, false),
];

/// Unknown resources of a custom (non-Kubernetes) group are taken for custom
/// resources with a status subresource, as most CRDs declare.
fn info(api_version: &str, plural: &str) -> Info {
    match KNOWN.iter().find(|(_, known, ..)| *known == plural) {
        Some(&(kind, _, status_subresource, generation)) => Info {
            kind: Some(kind),
            status_subresource,
            generation,
        },
        None => {
            let custom = is_custom(api_version);
            Info {
                kind: None,
                status_subresource: custom,
                generation: custom,
            }
        }
    }
}

fn is_custom(api_version: &str) -> bool {
    api_version
        .rsplit_once('/')
        .is_some_and(|(group, _)| group.contains('.') && !group.ends_with(".k8s.io"))
}

fn plural_for_kind(kind: &str) -> String {
    KNOWN.iter().find(|(known, ..)| *known == kind).map_or_else(
        || format!("{}s", kind.to_lowercase()),
        |(_, plural, ..)| plural.to_string(),
    )
}

/// The patch flavours, by content type.
#[derive(Clone, Copy, PartialEq)]
enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    fn from_content_type(content_type: Option<&str>) -> Option<Self> {
        let base = content_type?.split(';').next()?.trim();
        match base {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" => Some(Self::Apply),
            _ => None,
        }
    }
}

fn parse_body(bytes: &[u8], content_type: Option<&str>) -> Result<Value, Failure> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        // Apply bodies are YAML on the wire (kube sends JSON, which is YAML too).
        Err(_) if PatchKind::from_content_type(content_type) == Some(PatchKind::Apply) => {
            serde_yaml::from_slice(bytes)
                .map_err(|error| Failure::bad_request(format!("error decoding YAML: {error}")))
        }
        Err(error) => Err(Failure::bad_request(format!(
            "error decoding the body: {error}"
        ))),
    }
}

fn respond(status: u16, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl State {
    fn bump(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn handle(&mut self, call: &Call, body: Option<&Value>) -> Answer {
        let target = parse_path(&call.path).ok_or_else(Failure::no_such_path)?;
        let query: HashMap<String, String> = url::form_urlencoded::parse(call.query.as_bytes())
            .into_owned()
            .collect();
        if query.contains_key("dryRun")
            || body.is_some_and(|b| call.method == "DELETE" && b.get("dryRun").is_some())
        {
            return Err(Failure::bad_request(
                "dryRun is not supported by the fake API server",
            ));
        }
        let info = info(&target.api_version, &target.plural);
        match target.subresource.as_deref() {
            None => {}
            Some("status") if info.status_subresource => {}
            Some("token") if target.plural == "serviceaccounts" && call.method == "POST" => {
                return self.token_request(&target, body);
            }
            Some(_) => return Err(Failure::no_such_path()),
        }
        let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        match (call.method.as_str(), target.name.as_deref()) {
            ("GET", None) if watch => Err(Failure::new(
                405,
                "MethodNotAllowed",
                "watches are not supported by the fake API server; call reconcile directly",
            )),
            ("GET", None) => self.list(&target, info, &query, call.partial_metadata),
            ("GET", Some(name)) => {
                let obj = self
                    .objects
                    .get(&target.key(name))
                    .ok_or_else(|| target.not_found(name))?;
                let obj = if call.partial_metadata {
                    partial_metadata(obj)
                } else {
                    obj.clone()
                };
                Ok((200, obj, false))
            }
            ("POST", None) if target.subresource.is_none() => {
                let obj = body
                    .ok_or_else(|| Failure::bad_request("a create needs a body"))?
                    .clone();
                self.create(&target, info, obj)
            }
            ("PATCH", Some(name)) => {
                let patch = body.ok_or_else(|| Failure::bad_request("a patch needs a body"))?;
                let kind = PatchKind::from_content_type(call.content_type.as_deref()).ok_or_else(
                    || {
                        Failure::new(
                            415,
                            "UnsupportedMediaType",
                            format!("unsupported patch type {:?}", call.content_type),
                        )
                    },
                )?;
                let manager = query.get("fieldManager").map(String::as_str);
                self.patch(&target, info, name, kind, patch, manager)
            }
            ("PUT", Some(name)) => {
                let obj = body.ok_or_else(|| Failure::bad_request("a replace needs a body"))?;
                self.replace(&target, info, name, obj.clone())
            }
            ("DELETE", Some(name)) if target.subresource.is_none() => {
                self.delete(&target, name, body)
            }
            (method, _) => Err(Failure::new(
                405,
                "MethodNotAllowed",
                format!(
                    "{method} {} is not supported by the fake API server",
                    call.path
                ),
            )),
        }
    }

    /// A TokenRequest: the ServiceAccount must exist; the minter decides.
    fn token_request(&mut self, target: &Target, body: Option<&Value>) -> Answer {
        let name = target.name.clone().unwrap_or_default();
        let namespace = target.namespace.clone().unwrap_or_default();
        if !self.objects.contains_key(&target.key(&name)) {
            return Err(target.not_found(&name));
        }
        let audiences: Vec<String> = body
            .and_then(|b| b["spec"]["audiences"].as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let minted = self
            .token_minter
            .as_ref()
            .and_then(|mint| mint(&namespace, &name, &audiences));
        let Some(token) = minted else {
            return Err(Failure::new(
                403,
                "Forbidden",
                "the TokenRequest is refused",
            ));
        };
        let seconds = body
            .and_then(|b| b["spec"]["expirationSeconds"].as_i64())
            .unwrap_or(3600);
        let expires = Utc::now() + chrono::TimeDelta::seconds(seconds);
        let answer = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": body.map(|b| b["spec"].clone()).unwrap_or(Value::Null),
            "status": {"token": token, "expirationTimestamp": expires.to_rfc3339_opts(SecondsFormat::Secs, true)},
        });
        Ok((201, answer, false))
    }

    fn list(
        &self,
        target: &Target,
        info: Info,
        query: &HashMap<String, String>,
        partial: bool,
    ) -> Answer {
        let labels = parse_selector(query.get("labelSelector").map_or("", String::as_str))?;
        let fields = parse_selector(query.get("fieldSelector").map_or("", String::as_str))?;
        if let Some(term) = fields.iter().find(|term| !term.is_supported_field()) {
            return Err(Failure::bad_request(format!(
                "field selector {:?} is not supported by the fake API server",
                term.key()
            )));
        }
        let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
            None | Some(Ok(0)) => usize::MAX,
            Some(Ok(limit)) => limit,
            Some(Err(_)) => return Err(Failure::bad_request("limit is not a number")),
        };
        // The continue token is the namespace/name of the last item served.
        let after = match query.get("continue").filter(|c| !c.is_empty()) {
            None => None,
            Some(token) => Some(
                token
                    .split_once('/')
                    .map(|(ns, name)| (ns.to_string(), name.to_string()))
                    .ok_or_else(|| Failure::bad_request("continue key is not valid"))?,
            ),
        };
        let resource = target.resource();
        let matching: Vec<(&Key, &Value)> = self
            .objects
            .iter()
            .filter(|(key, obj)| {
                key.resource == resource
                    && (target.namespace.is_none() || key.namespace == target.namespace)
                    && labels.iter().all(|term| term.matches_labels(obj))
                    && fields.iter().all(|term| term.matches_fields(key))
                    && after.as_ref().is_none_or(|(ns, name)| {
                        (key.namespace.as_deref().unwrap_or(""), key.name.as_str())
                            > (ns.as_str(), name.as_str())
                    })
            })
            .collect();
        let remaining = matching.len().saturating_sub(limit);
        let page = &matching[..matching.len().min(limit)];
        let mut metadata = json!({"resourceVersion": self.resource_version.to_string()});
        if let Some((last, _)) = page.last().filter(|_| remaining > 0) {
            let token = format!("{}/{}", last.namespace.as_deref().unwrap_or(""), last.name);
            metadata["continue"] = json!(token);
            // The real server counts what is left only without selectors.
            if labels.is_empty() && fields.is_empty() {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        let items: Vec<Value> = page
            .iter()
            .map(|(_, obj)| {
                if partial {
                    partial_metadata(obj)
                } else {
                    (*obj).clone()
                }
            })
            .collect();
        let (api_version, kind) = if partial {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadata".to_string(),
            )
        } else {
            let kind = info
                .kind
                .map(str::to_string)
                .or_else(|| {
                    items
                        .first()
                        .and_then(|i| i["kind"].as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            (target.api_version.clone(), kind)
        };
        Ok((
            200,
            json!({
                "kind": format!("{kind}List"),
                "apiVersion": api_version,
                "metadata": metadata,
                "items": items,
            }),
            false,
        ))
    }

    fn create(&mut self, target: &Target, info: Info, mut obj: Value) -> Answer {
        if !obj.is_object() {
            return Err(Failure::bad_request("the body is not an object"));
        }
        let meta = metadata_mut(&mut obj);
        let name = match (meta.get("name"), meta.get("generateName")) {
            (Some(Value::String(name)), _) if !name.is_empty() => name.clone(),
            (_, Some(Value::String(prefix))) if !prefix.is_empty() => {
                let suffix: String = new_uid()
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(5)
                    .collect();
                format!("{prefix}{suffix}")
            }
            _ => {
                return Err(Failure::new(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
        {
            // What the real server's storage answers.
            return Err(Failure::new(
                500,
                "InternalError",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        check_namespace(target, meta)?;
        meta.insert("name".into(), json!(name));
        let key = target.key(&name);
        if self.objects.contains_key(&key) {
            return Err(target.failure(&name, 409, "AlreadyExists", "already exists"));
        }
        self.store_new(target, info, key, obj)
    }

    /// Stores a new object at `key` with the fields the server sets on creation.
    fn store_new(&mut self, target: &Target, info: Info, key: Key, mut obj: Value) -> Answer {
        let version = self.bump();
        if let Some(fields) = obj.as_object_mut() {
            fields
                .entry("apiVersion")
                .or_insert_with(|| json!(target.api_version));
            if let Some(kind) = info.kind {
                fields.entry("kind").or_insert_with(|| json!(kind));
            }
            if info.status_subresource {
                // Status is written through its subresource only, even on creation.
                fields.remove("status");
            }
        }
        let meta = metadata_mut(&mut obj);
        if let Some(namespace) = &key.namespace {
            meta.insert("namespace".into(), json!(namespace));
        }
        meta.entry("uid").or_insert_with(|| json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("resourceVersion".into(), json!(version.to_string()));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        if info.generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        self.applied.remove(&key);
        self.objects.insert(key, obj.clone());
        Ok((201, obj, true))
    }

    fn patch(
        &mut self,
        target: &Target,
        info: Info,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        manager: Option<&str>,
    ) -> Answer {
        let key = target.key(name);
        let status = target.subresource.is_some();
        if kind == PatchKind::Strategic && is_custom(&target.api_version) {
            return Err(Failure::new(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not supported for custom resources",
            ));
        }
        if kind != PatchKind::Json && !patch.is_object() {
            return Err(Failure::bad_request(
                "a merge or apply patch must be an object",
            ));
        }
        let manager = match (kind, manager) {
            (PatchKind::Apply, None) => {
                return Err(Failure::new(
                    422,
                    "Invalid",
                    "fieldManager: Required value: is required for apply patch",
                ));
            }
            (_, manager) => manager.unwrap_or_default().to_string(),
        };
        let Some(old) = self.objects.get(&key).cloned() else {
            // Server-side apply creates what is missing; other patches do not.
            if kind == PatchKind::Apply && !status {
                let mut obj = json!({"metadata": {"name": name}});
                merge_patch(&mut obj, patch);
                check_namespace(target, metadata_mut(&mut obj))?;
                let answer = self.store_new(target, info, key.clone(), obj)?;
                self.record_applied(&key, &manager, status, patch);
                return Ok(answer);
            }
            return Err(target.not_found(name));
        };
        let mut candidate = old.clone();
        match kind {
            PatchKind::Merge | PatchKind::Strategic => merge_patch(&mut candidate, patch),
            PatchKind::Apply => {
                let now_applied = applied_paths(patch);
                let owners = self.applied.get(&key);
                let mine = owners.and_then(|o| o.get(&(manager.clone(), status)));
                for path in mine.into_iter().flatten() {
                    let owned_by_another = owners.into_iter().flatten().any(|(owner, paths)| {
                        *owner != (manager.clone(), status) && paths.contains(path)
                    });
                    if !now_applied.contains(path) && !owned_by_another {
                        remove_path(&mut candidate, path);
                    }
                }
                merge_patch(&mut candidate, patch);
            }
            PatchKind::Json => apply_json_patch(&mut candidate, patch)?,
        }
        let answer = self.update(target, info, &key, &old, candidate)?;
        if kind == PatchKind::Apply {
            self.record_applied(&key, &manager, status, patch);
        }
        Ok(answer)
    }

    fn record_applied(&mut self, key: &Key, manager: &str, status: bool, patch: &Value) {
        if self.objects.contains_key(key) {
            self.applied
                .entry(key.clone())
                .or_default()
                .insert((manager.to_string(), status), applied_paths(patch));
        }
    }

    fn replace(&mut self, target: &Target, info: Info, name: &str, candidate: Value) -> Answer {
        let key = target.key(name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| target.not_found(name))?;
        let given = |obj: &Value, field: &str| {
            obj["metadata"][field]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        // A PUT's uid is a precondition, checked before anything else.
        if let Some(uid) = given(&candidate, "uid")
            && Some(&uid) != given(&old, "uid").as_ref()
        {
            return Err(target.conflict(
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    given(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        if given(&candidate, "resourceVersion").is_none() && is_custom(&target.api_version) {
            // Custom resources refuse unconditional updates; built-in kinds allow them.
            return Err(target.invalid(
                name,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            ));
        }
        self.update(target, info, &key, &old, candidate)
    }

    /// Stores `candidate` (the patched or replacing object) over `old` as the real
    /// server would: concurrency checks, system fields kept, subresource filtering,
    /// finalizer rules, generation, and removal once the last finalizer is gone.
    fn update(
        &mut self,
        target: &Target,
        info: Info,
        key: &Key,
        old: &Value,
        candidate: Value,
    ) -> Answer {
        let name = key.name.as_str();
        if !candidate.is_object() {
            return Err(target.invalid(name, "the patched object is not an object"));
        }
        let stored_version = old["metadata"]["resourceVersion"].clone();
        if let Some(version) = candidate["metadata"]["resourceVersion"].as_str()
            && !version.is_empty()
            && Some(version) != stored_version.as_str()
        {
            return Err(target.conflict(
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if let Some(uid) = candidate["metadata"]["uid"].as_str()
            && !uid.is_empty()
            && Some(uid) != old["metadata"]["uid"].as_str()
        {
            return Err(target.invalid(
                name,
                &format!("metadata.uid: Invalid value: \"{uid}\": field is immutable"),
            ));
        }
        if let Some(given) = candidate["metadata"]["name"].as_str()
            && given != name
        {
            return Err(Failure::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        let mut candidate = candidate;
        check_namespace(target, metadata_mut(&mut candidate))?;

        let mut new = if target.subresource.is_some() {
            // Status writes change the status and nothing else.
            let mut new = old.clone();
            set_or_remove(&mut new, "status", candidate.get("status"));
            new
        } else {
            let mut new = candidate;
            if info.status_subresource {
                set_or_remove(&mut new, "status", old.get("status"));
            }
            for field in ["apiVersion", "kind"] {
                set_or_remove(&mut new, field, old.get(field));
            }
            let old_meta = &old["metadata"];
            let meta = metadata_mut(&mut new);
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(field) {
                    Some(value) => meta.insert(field.into(), value.clone()),
                    None => meta.remove(field),
                };
            }
            new
        };
        metadata_mut(&mut new).insert("resourceVersion".into(), stored_version);

        let deleting = old["metadata"].get("deletionTimestamp").is_some();
        let old_finalizers = finalizers(old);
        let new_finalizers = finalizers(&new);
        if deleting {
            let added: Vec<&String> = new_finalizers.difference(&old_finalizers).collect();
            if !added.is_empty() {
                return Err(target.invalid(
                    name,
                    &format!("metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
                ));
            }
        }
        if info.generation && spec_part(&new) != spec_part(old) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            metadata_mut(&mut new).insert("generation".into(), json!(generation));
        }
        let changed = new != *old;
        if !changed {
            return Ok((200, new, false));
        }
        let version = self.bump();
        metadata_mut(&mut new).insert("resourceVersion".into(), json!(version.to_string()));
        if deleting && new_finalizers.is_empty() {
            self.objects.remove(key);
            self.applied.remove(key);
        } else {
            self.objects.insert(key.clone(), new.clone());
        }
        Ok((200, new, true))
    }

    fn delete(&mut self, target: &Target, name: &str, options: Option<&Value>) -> Answer {
        let key = target.key(name);
        let obj = self
            .objects
            .get(&key)
            .ok_or_else(|| target.not_found(name))?;
        let preconditions = options.map_or(&Value::Null, |o| &o["preconditions"]);
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(wanted) = preconditions[field].as_str() {
                let actual = obj["metadata"][field].as_str().unwrap_or_default();
                if wanted != actual {
                    return Err(target.conflict(
                        name,
                        &format!("Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"),
                    ));
                }
            }
        }
        self.mark_deleted(&key)
            .ok_or_else(|| target.not_found(name))
    }

    /// DELETE's effect: a deletionTimestamp while finalizers remain, else removal.
    fn mark_deleted(&mut self, key: &Key) -> Option<(u16, Value, bool)> {
        let obj = self.objects.get(key)?;
        if !finalizers(obj).is_empty() {
            if obj["metadata"].get("deletionTimestamp").is_some() {
                return Some((200, obj.clone(), false));
            }
            let version = self.bump();
            let obj = self.objects.get_mut(key)?;
            let meta = metadata_mut(obj);
            meta.insert("deletionTimestamp".into(), json!(now()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            meta.insert("resourceVersion".into(), json!(version.to_string()));
            return Some((200, obj.clone(), true));
        }
        let obj = self.objects.remove(key)?;
        self.applied.remove(key);
        self.bump();
        let mut parts = key.resource.rsplitn(3, '/');
        let plural = parts.next().unwrap_or_default();
        let group = parts.nth(1).unwrap_or_default();
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": key.name,
                "group": group,
                "kind": plural,
                "uid": obj["metadata"]["uid"],
            },
        });
        Some((200, status, true))
    }
}

/// The object's `metadata` map, created if missing (or not a map).
fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let meta = &mut obj["metadata"];
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

/// An object's namespace must be the request's; a missing one is the request's.
fn check_namespace(target: &Target, meta: &mut Map<String, Value>) -> Result<(), Failure> {
    match (
        meta.get("namespace").and_then(Value::as_str),
        &target.namespace,
    ) {
        (Some(given), Some(expected)) if given != expected && !given.is_empty() => {
            Err(Failure::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ))
        }
        (_, Some(expected)) => {
            meta.insert("namespace".into(), json!(expected));
            Ok(())
        }
        (_, None) => {
            meta.remove("namespace");
            Ok(())
        }
    }
}

fn set_or_remove(obj: &mut Value, field: &str, value: Option<&Value>) {
    if let Some(fields) = obj.as_object_mut() {
        match value {
            Some(value) => fields.insert(field.to_string(), value.clone()),
            None => fields.remove(field),
        };
    }
}

fn finalizers(obj: &Value) -> BTreeSet<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

/// What metadata.generation counts: everything but metadata and status.
fn spec_part(obj: &Value) -> Value {
    let mut part = obj.clone();
    if let Some(fields) = part.as_object_mut() {
        fields.remove("metadata");
        fields.remove("status");
    }
    part
}

/// `{"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadata","metadata":...}`,
/// what a client asking `as=PartialObjectMetadata` gets.
fn partial_metadata(obj: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj["metadata"],
    })
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(fields) = target {
        for (key, value) in patch {
            if value.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The leaf fields an apply body sets (objects recursed into, lists atomic), less
/// the object's identity, which no apply can drop.
fn applied_paths(patch: &Value) -> BTreeSet<FieldPath> {
    fn walk(value: &Value, at: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match value {
            Value::Object(fields) if !fields.is_empty() => {
                for (key, child) in fields {
                    at.push(key.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => {
                out.insert(at.clone());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(patch, &mut Vec::new(), &mut out);
    out.retain(|path| {
        !matches!(
            path.iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice(),
            [] | ["apiVersion"]
                | ["kind"]
                | ["metadata", "name" | "namespace" | "uid" | "resourceVersion"]
        )
    });
    out
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = &mut *obj;
    for key in parents {
        match at.get_mut(key) {
            Some(child) => at = child,
            None => return,
        }
    }
    if let Some(fields) = at.as_object_mut() {
        fields.remove(last);
    }
    // A map left empty by the removal was owned through its fields only: the real
    // server drops it with them (status.binding without binding.name).
    let emptied = parents.len() > 1
        && path_value(obj, parents).is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()));
    if emptied {
        remove_path(obj, parents);
    }
}

fn path_value<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |at, key| at.get(key))
}

/// RFC 6902 JSON patch (add, remove, replace, move, copy, test), all or nothing:
/// the caller patches a copy. A malformed patch is 400; one that does not apply, 422.
fn apply_json_patch(doc: &mut Value, ops: &Value) -> Result<(), Failure> {
    let ops = ops
        .as_array()
        .ok_or_else(|| Failure::bad_request("a JSON patch must be a list of operations"))?;
    for op in ops {
        let field = |name: &str| {
            op.get(name).ok_or_else(|| {
                Failure::bad_request(format!("a JSON patch operation lacks {name}: {op}"))
            })
        };
        let text = |name: &str| {
            field(name)?
                .as_str()
                .ok_or_else(|| Failure::bad_request(format!("{name} is not a string: {op}")))
        };
        let path = text("path")?;
        let unapplied = |why: String| Failure::new(422, "Invalid", format!("{op}: {why}"));
        match text("op")? {
            "add" => pointer_add(doc, path, field("value")?.clone()).map_err(unapplied)?,
            "remove" => drop(pointer_remove(doc, path).map_err(unapplied)?),
            "replace" => {
                let value = field("value")?.clone();
                *doc.pointer_mut(path)
                    .ok_or_else(|| unapplied(format!("no value at {path}")))? = value;
            }
            "test" => {
                if doc.pointer(path) != Some(field("value")?) {
                    return Err(unapplied("test failed".into()));
                }
            }
            "move" => {
                let value = pointer_remove(doc, text("from")?).map_err(unapplied)?;
                pointer_add(doc, path, value).map_err(unapplied)?;
            }
            "copy" => {
                let from = text("from")?;
                let value = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| unapplied(format!("no value at {from}")))?;
                pointer_add(doc, path, value).map_err(unapplied)?;
            }
            other => {
                return Err(Failure::bad_request(format!(
                    "unknown JSON patch op {other}"
                )));
            }
        }
    }
    Ok(())
}

/// A pointer's parent pointer and last token (unescaped); None for the root.
fn split_pointer(path: &str) -> Result<Option<(&str, String)>, String> {
    if path.is_empty() {
        return Ok(None);
    }
    let at = path
        .rfind('/')
        .filter(|_| path.starts_with('/'))
        .ok_or_else(|| format!("{path:?} is not a JSON pointer"))?;
    let last = path[at + 1..].replace("~1", "/").replace("~0", "~");
    Ok(Some((&path[..at], last)))
}

fn array_index(token: &str, len: usize) -> Result<usize, String> {
    token
        .parse::<usize>()
        .ok()
        .filter(|i| token.chars().all(|c| c.is_ascii_digit()) && *i < len)
        .ok_or_else(|| format!("index {token} out of range"))
}

fn pointer_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let Some((parent, last)) = split_pointer(path)? else {
        *doc = value;
        return Ok(());
    };
    match doc.pointer_mut(parent) {
        Some(Value::Object(fields)) => {
            fields.insert(last, value);
        }
        Some(Value::Array(items)) if last == "-" => items.push(value),
        Some(Value::Array(items)) => {
            let at = array_index(&last, items.len() + 1)?;
            items.insert(at, value);
        }
        _ => return Err(format!("no object or list at {parent}")),
    }
    Ok(())
}

fn pointer_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?.ok_or("cannot remove the whole document")?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(fields)) => fields
            .remove(&last)
            .ok_or_else(|| format!("no value at {path}")),
        Some(Value::Array(items)) => {
            let at = array_index(&last, items.len())?;
            Ok(items.remove(at))
        }
        _ => Err(format!("no value at {path}")),
    }
}

/// One term of an equality-based selector.
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// `k=v`, `k==v`, `k!=v`, `k` and `!k`, comma-separated; set-based terms are 400.
fn parse_selector(selector: &str) -> Result<Vec<Term>, Failure> {
    if selector.contains('(') {
        return Err(Failure::bad_request(format!(
            "set-based selectors are not supported by the fake API server: {selector}"
        )));
    }
    Ok(selector
        .split(',')
        .map(str::trim)
        .filter(|term| !term.is_empty())
        .map(|term| {
            if let Some((key, value)) = term.split_once("!=") {
                Term::NotEquals(key.trim().into(), value.trim().into())
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Term::Equals(key.trim().into(), value.trim().into())
            } else if let Some(key) = term.strip_prefix('!') {
                Term::NotExists(key.trim().into())
            } else {
                Term::Exists(term.into())
            }
        })
        .collect())
}

impl Term {
    fn matches(&self, value_of: impl Fn(&str) -> Option<String>) -> bool {
        match self {
            Term::Equals(key, value) => value_of(key).as_deref() == Some(value),
            Term::NotEquals(key, value) => value_of(key).as_deref() != Some(value),
            Term::Exists(key) => value_of(key).is_some(),
            Term::NotExists(key) => value_of(key).is_none(),
        }
    }

    fn matches_labels(&self, obj: &Value) -> bool {
        self.matches(|key| obj["metadata"]["labels"][key].as_str().map(str::to_string))
    }

    fn key(&self) -> &str {
        match self {
            Term::Equals(key, _)
            | Term::NotEquals(key, _)
            | Term::Exists(key)
            | Term::NotExists(key) => key,
        }
    }

    /// Field selectors compare values: `metadata.name` or `metadata.namespace`.
    fn is_supported_field(&self) -> bool {
        matches!(self, Term::Equals(..) | Term::NotEquals(..))
            && matches!(self.key(), "metadata.name" | "metadata.namespace")
    }

    /// Field selectors on what the key holds: metadata.name and metadata.namespace.
    fn matches_fields(&self, key: &Key) -> bool {
        self.matches(|field| match field {
            "metadata.name" => Some(key.name.clone()),
            "metadata.namespace" => Some(key.namespace.clone().unwrap_or_default()),
            _ => None,
        })
    }
}

/// Tests of the fake itself, through `kube::Api` as the operator uses it.
mod tests {
    use super::*;
    use std::time::Duration;

    use dcs_operator::clock::SystemClock;
    use dcs_operator::controller::resolve::SpecDefaults;
    use dcs_operator::controller::secrets::CredentialsResolver;
    use dcs_operator::controller::{Context, Shared, reconcile};
    use dcs_operator::crd::DcsInstanceSpec;
    use dcs_operator::dcs::{ClientConfig, DcsClient};
    use k8s_openapi::ByteString;
    use k8s_openapi::api::events::v1::Event as EventV1;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    use kube::{CustomResourceExt, ResourceExt};

    use crate::controller::{INSTANCE, NS, UID, credentials_secret, new_dcs_instance, simulator};

    const DCS: &str = "dcs.operator.dev/v1alpha1/dcsinstances";

    fn secret(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.into());
        secret.metadata.namespace = Some(namespace.into());
        secret.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        secret.data = Some([("key".to_string(), ByteString(b"value".to_vec()))].into());
        secret
    }

    fn dcs(namespace: &str, name: &str) -> DcsInstance {
        let mut obj = DcsInstance::new(
            name,
            DcsInstanceSpec {
                instance_id: Some(INSTANCE.into()),
                ..DcsInstanceSpec::default()
            },
        );
        obj.metadata.namespace = Some(namespace.into());
        obj
    }

    /// The HTTP status of a refused call.
    fn refused<T: std::fmt::Debug>(result: kube::Result<T>) -> u16 {
        match result {
            Err(kube::Error::Api(status)) => status.code,
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    fn version(value: &Value) -> u64 {
        value["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("a resourceVersion")
    }

    #[tokio::test]
    async fn missing_objects_and_unknown_paths_are_404() {
        let (client, fake) = fake_api_server();
        let secrets: Api<Secret> = Api::default_namespaced(client.clone());
        assert!(secrets.get_opt("absent").await.unwrap().is_none());
        let instances: Api<DcsInstance> = Api::namespaced(client.clone(), "team-a");
        assert!(instances.get_opt("absent").await.unwrap().is_none());
        let unknown = client
            .request_text(http::Request::get("/version").body(Vec::new()).unwrap())
            .await;
        assert_eq!(refused(unknown), 404);
        // No status subresource on a Secret.
        let status = client
            .request_text(
                http::Request::get("/api/v1/namespaces/default/secrets/absent/status")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await;
        assert_eq!(refused(status), 404);

        let requests = fake.requests();
        assert_eq!(requests.len(), 4);
        assert!(requests.iter().all(|r| r.status == 404 && !r.changed));
        assert_eq!(fake.count("GET", "/secrets/absent"), 2);
        assert_eq!(
            fake.count("GET", "/namespaces/team-a/dcsinstances/absent"),
            1
        );
        assert_eq!(fake.writes(), 0);
    }

    #[tokio::test]
    async fn create_sets_server_fields_and_refuses_a_second_create() {
        let (client, fake) = fake_api_server();
        let secrets: Api<Secret> = Api::default_namespaced(client.clone());
        let created = secrets
            .create(&PostParams::default(), &secret(NS, "a", &[]))
            .await
            .unwrap();
        assert!(created.uid().is_some());
        assert!(created.metadata.creation_timestamp.is_some());
        assert!(
            created.metadata.generation.is_none(),
            "Secrets keep no generation"
        );
        assert_eq!(secrets.get("a").await.unwrap(), created);
        assert_eq!(fake.get_secret(NS, "a"), Some(created.clone()));

        let again = secrets
            .create(&PostParams::default(), &secret(NS, "a", &[]))
            .await;
        assert!(matches!(&again, Err(kube::Error::Api(s)) if s.is_already_exists()));
        // The real server refuses a create that names a resourceVersion.
        let mut versioned = secret(NS, "b", &[]);
        versioned.metadata.resource_version = Some("5".into());
        assert_eq!(
            refused(secrets.create(&PostParams::default(), &versioned).await),
            500
        );
        let elsewhere = secrets
            .create(&PostParams::default(), &secret("other", "c", &[]))
            .await;
        assert_eq!(refused(elsewhere), 400);

        // A custom resource starts at generation 1, without the status it was posted with.
        let instances: Api<DcsInstance> = Api::default_namespaced(client);
        let mut posted = dcs(NS, "cache");
        posted.status = Some(Default::default());
        posted.status.as_mut().unwrap().status = Some("RUNNING".into());
        let created = instances
            .create(&PostParams::default(), &posted)
            .await
            .unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        assert_eq!(created.status, None);

        let posts: Vec<RecordedRequest> = fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        assert_eq!(
            posts.iter().map(|r| r.status).collect::<Vec<_>>(),
            [201, 409, 500, 400, 201]
        );
        assert_eq!(posts[0].path, "/api/v1/namespaces/default/secrets");
        assert_eq!(posts[0].content_type.as_deref(), Some("application/json"));
        assert_eq!(posts[0].body.as_ref().unwrap()["metadata"]["name"], "a");
        assert!(posts[0].changed && !posts[1].changed);
    }

    #[tokio::test]
    async fn merge_patches_carrying_a_stale_resource_version_conflict() {
        let (client, fake) = fake_api_server();
        let stored = fake.insert(secret(NS, "a", &[]));
        let secrets: Api<Secret> = Api::default_namespaced(client);
        let based_on = |value: &Value, data: &str| {
            json!({
                "metadata": {
                    "uid": value["metadata"]["uid"],
                    "resourceVersion": value["metadata"]["resourceVersion"],
                },
                "data": {"key": data},
            })
        };
        let params = PatchParams::default();
        let patched = secrets
            .patch("a", &params, &Patch::Merge(based_on(&stored, "bmV3")))
            .await
            .unwrap();
        let patched = serde_json::to_value(patched).unwrap();
        assert!(version(&patched) > version(&stored));

        // Based on the version before that patch: someone else wrote meanwhile.
        let stale = secrets
            .patch("a", &params, &Patch::Merge(based_on(&stored, "c3RhbGU=")))
            .await;
        assert!(matches!(&stale, Err(kube::Error::Api(s)) if s.code == 409 && s.is_conflict()));
        assert_eq!(
            fake.get_secret(NS, "a").unwrap().data.unwrap()["key"],
            ByteString(b"new".to_vec())
        );

        // Another uid at the current version: uid is immutable (422 on the real server too).
        let mut other_uid = based_on(&patched, "bmV3");
        other_uid["metadata"]["uid"] = json!("not-the-uid");
        assert_eq!(
            refused(secrets.patch("a", &params, &Patch::Merge(other_uid)).await),
            422
        );

        // A patch that changes nothing stores nothing and keeps the version.
        secrets
            .patch("a", &params, &Patch::Merge(based_on(&patched, "bmV3")))
            .await
            .unwrap();
        let last = fake.requests().pop().unwrap();
        assert_eq!(
            (last.method.as_str(), last.status, last.changed),
            ("PATCH", 200, false)
        );
        assert_eq!(
            last.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert_eq!(
            version(&fake.get_value("v1/secrets", Some(NS), "a").unwrap()),
            version(&patched)
        );
        assert_eq!(fake.writes(), 4);
    }

    #[tokio::test]
    async fn status_writes_touch_only_status_and_object_writes_never_status() {
        let (client, fake) = fake_api_server();
        let mut seeded = dcs(NS, "cache");
        seeded.status = Some(Default::default());
        fake.insert(&seeded);
        let instances: Api<DcsInstance> = Api::default_namespaced(client);
        let apply = PatchParams::apply("dcs-operator").force();

        let body = json!({
            "apiVersion": DcsInstance::api_version(&()),
            "kind": DcsInstance::kind(&()),
            "spec": {"instanceId": "ignored"},
            "status": {"status": "RUNNING", "errorCode": "dcs.4000"},
        });
        let applied = instances
            .patch_status("cache", &apply, &Patch::Apply(&body))
            .await
            .unwrap();
        assert_eq!(applied.spec.instance_id.as_deref(), Some(INSTANCE));
        assert_eq!(
            applied.status.as_ref().unwrap().status.as_deref(),
            Some("RUNNING")
        );
        assert_eq!(applied.metadata.generation, Some(1));
        let request = fake.requests().pop().unwrap();
        assert!(request.path.ends_with("/dcsinstances/cache/status"));
        assert!(
            request.query.contains("fieldManager=dcs-operator"),
            "{}",
            request.query
        );
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );

        // The object's own patch cannot change status.
        let patched = instances
            .patch(
                "cache",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"status": "ERROR"}, "metadata": {"labels": {"a": "b"}}}),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            patched.status.as_ref().unwrap().status.as_deref(),
            Some("RUNNING")
        );
        assert_eq!(patched.labels()["a"], "b");

        // Applying again without errorCode removes it (the manager set it last time);
        // a field another writer set stays.
        instances
            .patch_status(
                "cache",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"name": "set-by-someone-else"}})),
            )
            .await
            .unwrap();
        let body = json!({
            "apiVersion": DcsInstance::api_version(&()),
            "kind": DcsInstance::kind(&()),
            "status": {"status": "RUNNING"},
        });
        instances
            .patch_status("cache", &apply, &Patch::Apply(&body))
            .await
            .unwrap();
        let status = fake.get_dcs(NS, "cache").unwrap().status.unwrap();
        assert_eq!(status.error_code, None);
        assert_eq!(status.name.as_deref(), Some("set-by-someone-else"));
        assert_eq!(status.status.as_deref(), Some("RUNNING"));
    }

    #[tokio::test]
    async fn generation_counts_spec_changes_only() {
        let (client, fake) = fake_api_server();
        fake.insert(dcs(NS, "cache"));
        let instances: Api<DcsInstance> = Api::default_namespaced(client);
        let merge = |patch: Value| Patch::Merge(patch);
        let params = PatchParams::default();
        let generation = |obj: DcsInstance| obj.metadata.generation;

        let labelled = instances
            .patch(
                "cache",
                &params,
                &merge(json!({"metadata": {"labels": {"a": "b"}}})),
            )
            .await
            .unwrap();
        assert_eq!(generation(labelled), Some(1));
        let status = instances
            .patch_status(
                "cache",
                &params,
                &merge(json!({"status": {"status": "RUNNING"}})),
            )
            .await
            .unwrap();
        assert_eq!(generation(status), Some(1));
        let spec = instances
            .patch(
                "cache",
                &params,
                &merge(json!({"spec": {"pollInterval": "30s"}})),
            )
            .await
            .unwrap();
        assert_eq!(generation(spec.clone()), Some(2));

        // PUT: the same rules, and the resourceVersion it carries is a precondition.
        let mut replacing = spec.clone();
        replacing.spec.poll_interval = Some("45s".into());
        let replaced = instances
            .replace("cache", &PostParams::default(), &replacing)
            .await
            .unwrap();
        assert_eq!(generation(replaced.clone()), Some(3));
        assert_eq!(
            replaced.status, spec.status,
            "PUT on the object keeps status"
        );
        assert_eq!(
            refused(
                instances
                    .replace("cache", &PostParams::default(), &replacing)
                    .await
            ),
            409
        );
        replacing.metadata.resource_version = None;
        assert_eq!(
            refused(
                instances
                    .replace("cache", &PostParams::default(), &replacing)
                    .await
            ),
            422,
            "custom resources refuse unconditional updates"
        );
        assert_eq!(fake.count("PUT", "/dcsinstances/cache"), 3);
    }

    #[tokio::test]
    async fn delete_waits_for_finalizers_and_refuses_new_ones() {
        let (client, fake) = fake_api_server();
        let mut held = dcs(NS, "cache");
        held.metadata.finalizers = Some(vec!["dcs.operator.dev/cleanup".into()]);
        fake.insert(&held);
        let instances: Api<DcsInstance> = Api::default_namespaced(client);

        let deleting = instances
            .delete("cache", &DeleteParams::default())
            .await
            .unwrap()
            .left()
            .expect("the object, still there");
        assert!(deleting.metadata.deletion_timestamp.is_some());
        assert!(
            fake.get_dcs(NS, "cache")
                .unwrap()
                .metadata
                .deletion_timestamp
                .is_some()
        );
        // Deleting again changes nothing.
        instances
            .delete("cache", &DeleteParams::default())
            .await
            .unwrap();
        assert!(!fake.requests().pop().unwrap().changed);

        let add = json!({"metadata": {"finalizers": ["dcs.operator.dev/cleanup", "another"]}});
        let refused_add = instances
            .patch("cache", &PatchParams::default(), &Patch::Merge(add))
            .await;
        assert!(
            matches!(&refused_add, Err(kube::Error::Api(s)) if s.code == 422 && s.is_invalid())
        );

        // The last finalizer removed (by a JSON patch guarded by a test): the object goes.
        let stored = fake.get_value(DCS, Some(NS), "cache").unwrap();
        let release: Patch<()> = Patch::Json(
        serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": stored["metadata"]["resourceVersion"]},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]))
        .unwrap(),
    );
        instances
            .patch("cache", &PatchParams::default(), &release)
            .await
            .unwrap();
        assert!(fake.get_dcs(NS, "cache").is_none());
        assert!(instances.get_opt("cache").await.unwrap().is_none());
        let jsonpatch = fake.requests().into_iter().rev().nth(1).unwrap();
        assert_eq!(
            jsonpatch.content_type.as_deref(),
            Some("application/json-patch+json")
        );
        assert!(jsonpatch.changed);

        // Nothing holding it: gone at once, answered with a Status.
        fake.insert(dcs(NS, "free"));
        let gone = instances
            .delete("free", &DeleteParams::default())
            .await
            .unwrap();
        assert!(gone.right().expect("a Status").is_success());
        assert_eq!(
            refused(instances.delete("free", &DeleteParams::default()).await),
            404
        );
        // Preconditions on delete.
        fake.insert(dcs(NS, "guarded"));
        let wrong_uid = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some("not-the-uid".into()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        assert_eq!(refused(instances.delete("guarded", &wrong_uid).await), 409);
    }

    #[tokio::test]
    async fn json_patch_operations_apply_all_or_nothing() {
        let (client, fake) = fake_api_server();
        fake.insert(secret(NS, "a", &[("app", "a")]));
        let secrets: Api<Secret> = Api::default_namespaced(client.clone());
        let json_patch =
            |ops: Value| -> Patch<()> { Patch::Json(serde_json::from_value(ops).unwrap()) };
        let params = PatchParams::default();
        let patched = secrets
            .patch(
                "a",
                &params,
                &json_patch(json!([
                    {"op": "add", "path": "/metadata/labels/tier~1x", "value": "1"},
                    {"op": "replace", "path": "/metadata/labels/app", "value": "b"},
                    {"op": "copy", "from": "/data/key", "path": "/data/copy"},
                    {"op": "move", "from": "/data/key", "path": "/data/moved"},
                ])),
            )
            .await
            .unwrap();
        assert_eq!(patched.labels()["tier/x"], "1");
        assert_eq!(patched.labels()["app"], "b");
        let keys: Vec<&String> = patched.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["copy", "moved"]);

        // A failing test leaves the object untouched.
        let failing = json_patch(json!([
            {"op": "remove", "path": "/metadata/labels/app"},
            {"op": "test", "path": "/data/copy", "value": "wrong"},
        ]));
        assert_eq!(refused(secrets.patch("a", &params, &failing).await), 422);
        assert_eq!(fake.get_secret(NS, "a").unwrap().labels()["app"], "b");
        // kube cannot send an unknown op; a raw request can.
        let malformed = http::Request::patch("/api/v1/namespaces/default/secrets/a")
            .header(http::header::CONTENT_TYPE, "application/json-patch+json")
            .body(br#"[{"op": "frobnicate", "path": "/data"}]"#.to_vec())
            .unwrap();
        assert_eq!(refused(client.request_text(malformed).await), 400);
    }

    #[tokio::test]
    async fn list_filters_by_labels_and_pages() {
        let (client, fake) = fake_api_server();
        for (name, app) in [
            ("s1", "a"),
            ("s2", "b"),
            ("s3", "a"),
            ("s4", "b"),
            ("s5", "a"),
        ] {
            fake.insert(secret(NS, name, &[("app", app)]));
        }
        fake.insert(secret("other", "s6", &[]));
        let secrets: Api<Secret> = Api::default_namespaced(client.clone());
        let names = |list: kube::core::ObjectList<Secret>| -> Vec<String> {
            list.items.iter().map(ResourceExt::name_any).collect()
        };
        let listed = secrets
            .list(&ListParams::default().labels("app=a"))
            .await
            .unwrap();
        assert_eq!(listed.types.kind, "SecretList");
        assert_eq!(names(listed), ["s1", "s3", "s5"]);
        let listed = secrets
            .list(&ListParams::default().labels("app!=a"))
            .await
            .unwrap();
        assert_eq!(names(listed), ["s2", "s4"]);
        let listed = secrets
            .list(&ListParams::default().labels("app,app==b"))
            .await
            .unwrap();
        assert_eq!(names(listed), ["s2", "s4"]);
        let listed = secrets
            .list(&ListParams::default().labels("!app"))
            .await
            .unwrap();
        assert!(listed.items.is_empty());
        let listed = secrets
            .list(&ListParams::default().fields("metadata.name=s4"))
            .await
            .unwrap();
        assert_eq!(names(listed), ["s4"]);
        let set_based = secrets
            .list(&ListParams::default().labels("app in (a)"))
            .await;
        assert_eq!(refused(set_based), 400);
        let all: Api<Secret> = Api::all(client);
        assert_eq!(
            all.list(&ListParams::default()).await.unwrap().items.len(),
            6
        );

        fake.clear_requests();
        let mut seen = Vec::new();
        let mut params = ListParams::default().limit(2);
        loop {
            let page = secrets.list(&params).await.unwrap();
            assert!(page.items.len() <= 2);
            seen.extend(page.items.iter().map(ResourceExt::name_any));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        assert_eq!(seen, ["s1", "s2", "s3", "s4", "s5"]);
        assert_eq!(fake.count("GET", "/namespaces/default/secrets"), 3);
        assert!(fake.requests().iter().all(|r| r.query.contains("limit=2")));
    }

    #[tokio::test]
    async fn delete_namespace_deletes_what_it_holds() {
        let (_client, fake) = fake_api_server();
        fake.insert(secret("team-a", "plain", &[]));
        let mut held = dcs("team-a", "cache");
        held.metadata.finalizers = Some(vec!["dcs.operator.dev/cleanup".into()]);
        fake.insert(&held);
        fake.insert(secret(NS, "elsewhere", &[]));

        assert_eq!(fake.delete_namespace("team-a"), 2);
        assert!(fake.get_secret("team-a", "plain").is_none());
        let cache = fake
            .get_dcs("team-a", "cache")
            .expect("held by its finalizer");
        assert!(cache.metadata.deletion_timestamp.is_some());
        assert!(fake.get_secret(NS, "elsewhere").is_some());
        assert_eq!(fake.list_values(DCS, Some("team-a")).len(), 1);
        assert_eq!(fake.list_values("v1/secrets", None).len(), 1);
    }

    #[tokio::test]
    async fn cluster_scoped_crd_can_be_marked_deleting() {
        let (client, fake) = fake_api_server();
        let crd = DcsInstance::crd();
        let name = crd.name_any();
        fake.insert(&crd);
        assert!(fake.set_deletion_timestamp::<CustomResourceDefinition>(None, &name));
        assert!(!fake.set_deletion_timestamp::<CustomResourceDefinition>(None, "absent"));

        let crds: Api<CustomResourceDefinition> = Api::all(client);
        let read = crds.get(&name).await.unwrap();
        assert!(read.metadata.deletion_timestamp.is_some());
        assert_eq!(read.metadata.generation, Some(1));
        assert_eq!(
            crds.list(&ListParams::default()).await.unwrap().items.len(),
            1
        );
        let typed = fake.get::<CustomResourceDefinition>(None, &name).unwrap();
        assert_eq!(typed.spec.group, "dcs.operator.dev");
        assert_eq!(
            fake.count(
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            ),
            2
        );
    }

    #[tokio::test]
    async fn events_are_stored_and_metadata_is_served_alone() {
        let (client, fake) = fake_api_server();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "dcs-operator".into(),
                instance: None,
            },
        );
        let regarding = serde_json::from_value::<DcsInstance>(fake.insert(dcs(NS, "cache")))
            .unwrap()
            .object_ref(&());
        let event = Event {
            type_: EventType::Normal,
            reason: "Ready".into(),
            note: Some("ready".into()),
            action: "Observe".into(),
            secondary: None,
        };
        recorder.publish(&event, &regarding).await.unwrap();
        recorder.publish(&event, &regarding).await.unwrap();
        assert_eq!(
            fake.count("POST", "/apis/events.k8s.io/v1/namespaces/default/events"),
            1
        );
        assert_eq!(
            fake.count("PATCH", "/apis/events.k8s.io/v1/namespaces/default/events/"),
            1
        );
        let stored = fake.list_values(&resource_of::<EventV1>(), Some(NS));
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0]["series"]["count"], 2);

        fake.insert(secret(NS, "a", &[("app", "a")]));
        let secrets: Api<Secret> = Api::default_namespaced(client);
        let meta = secrets.get_metadata("a").await.unwrap();
        assert_eq!(meta.labels()["app"], "a");
        assert_eq!(meta.types.unwrap().kind, "PartialObjectMetadata");
        let metas = secrets.list_metadata(&ListParams::default()).await.unwrap();
        assert_eq!(metas.items.len(), 1);
    }

    #[tokio::test]
    async fn watches_dry_runs_and_malformed_bodies_are_refused() {
        let (client, fake) = fake_api_server();
        let send = |request: http::Request<Vec<u8>>| client.request_text(request);
        let watch = http::Request::get("/api/v1/namespaces/default/secrets?watch=true")
            .body(Vec::new())
            .unwrap();
        assert_eq!(refused(send(watch).await), 405);
        let garbage = http::Request::post("/api/v1/namespaces/default/secrets")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(b"{not json".to_vec())
            .unwrap();
        assert_eq!(refused(send(garbage).await), 400);
        let secrets: Api<Secret> = Api::default_namespaced(client.clone());
        let dry = secrets
            .create(
                &PostParams {
                    dry_run: true,
                    ..PostParams::default()
                },
                &secret(NS, "a", &[]),
            )
            .await;
        assert_eq!(refused(dry), 400);
        assert!(fake.get_secret(NS, "a").is_none());
        let last = fake.requests().pop().unwrap();
        assert!(last.query.contains("dryRun=All"), "{}", last.query);
        assert_eq!(
            fake.requests()[1].body,
            None,
            "an unparsable body is not recorded"
        );
    }

    /// The reason for the fake: reconcile runs as many times as a test likes, against
    /// state that keeps what earlier runs wrote.
    #[tokio::test]
    async fn reconcile_creates_the_secret_then_writes_nothing_until_it_drifts() {
        let (client, fake) = fake_api_server();
        let sim = simulator().await;
        fake.insert(credentials_secret());
        fake.insert(new_dcs_instance("cache", UID, INSTANCE, &sim.base_url()));
        let clock: dcs_operator::clock::SharedClock = Arc::new(SystemClock);
        let shared = Shared::builder(
            client.clone(),
            DcsClient::new(ClientConfig::default(), clock.clone()).unwrap(),
            clock,
            SpecDefaults {
                poll_interval: Duration::from_secs(60),
                ..SpecDefaults::default()
            },
            CredentialsResolver::new(None),
        )
        .build();
        let ctx = Arc::new(Context::new(Arc::new(shared)));
        let run = || async {
            let obj = fake.get_dcs(NS, "cache").expect("the DcsInstance");
            reconcile(Arc::new(obj), ctx.clone()).await.unwrap();
        };

        run().await;
        let written = fake
            .get_secret(NS, "cache-dcs")
            .expect("the connection Secret");
        let owner = &written.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.uid, UID);
        let status = fake.get_dcs(NS, "cache").unwrap().status.expect("a status");
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(fake.count("POST", "/secrets"), 1);
        assert_eq!(fake.count("PATCH", "/dcsinstances/cache/status"), 1);
        assert_eq!(fake.writes(), 2);

        fake.clear_requests();
        for _ in 0..3 {
            run().await;
        }
        assert_eq!(fake.writes(), 0, "{:?}", fake.requests());

        // Someone edits the Secret: the next reconcile patches it back, based on the
        // version it read (the fake would refuse a stale one).
        let secrets: Api<Secret> = Api::default_namespaced(client);
        secrets
            .patch(
                "cache-dcs",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"host": "ZXZpbA=="}})),
            )
            .await
            .unwrap();
        fake.clear_requests();
        run().await;
        assert_eq!(fake.writes(), 1);
        let patch = fake.requests().pop().unwrap();
        assert_eq!((patch.method.as_str(), patch.status), ("PATCH", 200));
        assert_eq!(fake.get_secret(NS, "cache-dcs").unwrap().data, written.data);
    }
}
