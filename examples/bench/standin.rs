//! A small in-memory stand-in for the Kubernetes API: just what dcs-operator uses
//! (discovery, list/watch/get/create/patch/delete of DcsInstances, Secrets, Events
//! and Leases, metadata-only lists and watches, status apply), counting every
//! request, so the benchmark and its smoke test need no cluster. In-process callers
//! can also delete objects and force every watch to relist ([`StandIn::expire_watches`]),
//! as after an etcd compaction.
//!
//! Shared by `examples/bench.rs` and `tests/integration/bench_smoke.rs` through
//! `#[path]`, so not every item is used by both.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Watch history kept for resuming watches; older resourceVersions get 410 Gone,
/// which makes the client relist, as a real API server does after compaction.
const HISTORY: usize = 200_000;
/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// One kind the stand-in serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub const DCS_INSTANCES: Kind = Kind {
    group: "dcs.operator.dev",
    version: "v1alpha1",
    plural: "dcsinstances",
    kind: "DcsInstance",
    namespaced: true,
};
pub const SECRETS: Kind = Kind {
    group: "",
    version: "v1",
    plural: "secrets",
    kind: "Secret",
    namespaced: true,
};
pub const NAMESPACES: Kind = Kind {
    group: "",
    version: "v1",
    plural: "namespaces",
    kind: "Namespace",
    namespaced: false,
};
pub const EVENTS: Kind = Kind {
    group: "events.k8s.io",
    version: "v1",
    plural: "events",
    kind: "Event",
    namespaced: true,
};
pub const LEASES: Kind = Kind {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    kind: "Lease",
    namespaced: true,
};
const KINDS: [Kind; 5] = [DCS_INSTANCES, SECRETS, NAMESPACES, EVENTS, LEASES];

/// What the stand-in has been asked, by verb and resource, and its writes by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// ("list", "secrets") -> n; the resource is `dcsinstances/status` for status.
    pub requests: BTreeMap<(String, String), u64>,
    /// `status_patch`, `secret_create`, `secret_patch`, `event`, `other`.
    pub writes: BTreeMap<String, u64>,
}

impl Counts {
    pub fn total_writes(&self) -> u64 {
        self.writes.values().sum()
    }

    pub fn write(&self, kind: &str) -> u64 {
        self.writes.get(kind).copied().unwrap_or(0)
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let diff = |now: u64, then: Option<&u64>| now - then.copied().unwrap_or(0);
        Counts {
            requests: self
                .requests
                .iter()
                .map(|(k, v)| (k.clone(), diff(*v, earlier.requests.get(k))))
                .filter(|(_, v)| *v > 0)
                .collect(),
            writes: self
                .writes
                .iter()
                .map(|(k, v)| (k.clone(), diff(*v, earlier.writes.get(k))))
                .filter(|(_, v)| *v > 0)
                .collect(),
        }
    }
}

type Key = (Kind, String, String);

struct Change {
    rv: u64,
    kind: Kind,
    namespace: String,
    kind_of_change: &'static str,
    object: Arc<Value>,
}

struct Watcher {
    kind: Kind,
    filter: Filter,
    metadata_only: bool,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    history: VecDeque<Change>,
    watchers: Vec<Watcher>,
    counts: Counts,
    /// Lists served to their last page, by resource: a relist has finished only
    /// then, whatever number of pages it took.
    lists_completed: BTreeMap<&'static str, u64>,
}

/// The stored world; handed to the HTTP handler and to in-process callers.
#[derive(Default)]
pub struct StandIn {
    inner: Mutex<Inner>,
}

impl StandIn {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    /// Stores an object directly (the benchmark's own setup: not counted as a
    /// request). Fills in apiVersion, kind, uid, resourceVersion and timestamps.
    pub fn insert(&self, kind: Kind, mut object: Value) {
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.kind);
        let namespace = str_at(&object, "/metadata/namespace");
        let name = str_at(&object, "/metadata/name");
        let mut inner = self.lock();
        prepare_new(&mut object);
        inner.commit(kind, namespace, name, object, "ADDED");
    }

    /// Deletes one object as the HTTP DELETE does (a DELETED watch event, not
    /// counted as a request); None when there was no such object. Finalizers are
    /// not modelled: the object goes at once whatever it carries.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.lock().delete(kind, namespace, name)
    }

    /// Deletes every object of `kind` that `which` selects; returns them.
    pub fn delete_where(&self, kind: Kind, which: impl Fn(&Value) -> bool) -> Vec<Arc<Value>> {
        let mut inner = self.lock();
        let keys: Vec<Key> = inner
            .objects
            .iter()
            .filter(|((k, _, _), object)| *k == kind && which(object))
            .map(|(key, _)| key.clone())
            .collect();
        keys.into_iter()
            .filter_map(|(kind, namespace, name)| inner.delete(kind, &namespace, &name))
            .collect()
    }

    /// Forces every client to relist, as after an etcd compaction: ends every open
    /// watch stream, forgets the watch history and moves the resourceVersion on, so
    /// a watch resumed from any version seen so far is answered 410 Gone.
    pub fn expire_watches(&self) {
        let mut inner = self.lock();
        // Dropping the senders ends the streams (their tasks see the channel close).
        inner.watchers.clear();
        inner.history.clear();
        // With no history, `since + 1 < oldest` holds for every `since` below the
        // new version: even a client that saw the last change before this (or a
        // bookmark with its version) cannot resume.
        inner.rv += 1;
    }

    /// Lists of `kind` served to their last page (every variant: selectors,
    /// metadata-only), since the start.
    pub fn lists_completed(&self, kind: Kind) -> u64 {
        self.lock()
            .lists_completed
            .get(kind.plural)
            .copied()
            .unwrap_or(0)
    }

    /// Every stored object of a kind.
    pub fn objects(&self, kind: Kind) -> Vec<Arc<Value>> {
        self.lock()
            .objects
            .iter()
            .filter(|((k, _, _), _)| *k == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// DcsInstances whose Ready condition is True.
    pub fn ready_count(&self) -> usize {
        self.objects(DCS_INSTANCES)
            .iter()
            .filter(|o| is_ready(o))
            .count()
    }
}

/// True when `status.conditions` holds Ready=True.
pub fn is_ready(object: &Value) -> bool {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn str_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn prepare_new(object: &mut Value) {
    let metadata = &mut object["metadata"];
    if metadata.get("uid").is_none() {
        metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
    }
    metadata["creationTimestamp"] =
        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    metadata["generation"] = json!(1);
}

impl Inner {
    fn count(&mut self, verb: &str, resource: String) {
        *self
            .counts
            .requests
            .entry((verb.to_string(), resource))
            .or_default() += 1;
    }

    fn write(&mut self, kind: &str) {
        *self.counts.writes.entry(kind.to_string()).or_default() += 1;
    }

    /// Removes an object with a DELETED event carrying the next resourceVersion,
    /// as a real server does.
    fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let key = (kind, namespace.to_string(), name.to_string());
        let object = (**self.objects.get(&key)?).clone();
        let deleted = self.commit(kind, key.1.clone(), key.2.clone(), object, "DELETED");
        self.objects.remove(&key);
        Some(deleted)
    }

    /// Stores `object` with the next resourceVersion and tells matching watchers.
    fn commit(
        &mut self,
        kind: Kind,
        namespace: String,
        name: String,
        mut object: Value,
        change: &'static str,
    ) -> Arc<Value> {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let object = Arc::new(object);
        self.objects
            .insert((kind, namespace.clone(), name), object.clone());
        self.watchers.retain(|w| {
            if w.kind != kind || !w.filter.matches(&namespace, &object) {
                return !w.tx.is_closed();
            }
            w.tx.send(event_line(change, &object, w.metadata_only))
                .is_ok()
        });
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Change {
            rv: self.rv,
            kind,
            namespace,
            kind_of_change: change,
            object: object.clone(),
        });
        object
    }
}

fn event_line(change: &str, object: &Value, metadata_only: bool) -> Bytes {
    let object = if metadata_only {
        partial(object)
    } else {
        object.clone()
    };
    let mut line = serde_json::to_vec(&json!({"type": change, "object": object})).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

/// The PartialObjectMetadata form of an object (what metadata-only requests get).
fn partial(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object["metadata"],
    })
}

/// Namespace, equality label selector and `metadata.name` field selector.
#[derive(Debug, Clone, Default)]
struct Filter {
    namespace: Option<String>,
    labels: Vec<(String, Option<String>, bool)>,
    name: Option<String>,
}

impl Filter {
    fn parse(namespace: Option<String>, query: &HashMap<String, String>) -> Self {
        let mut filter = Filter {
            namespace,
            ..Filter::default()
        };
        for term in query
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let term = term.trim();
            if let Some((k, v)) = term.split_once("!=") {
                filter.labels.push((k.into(), Some(v.into()), false));
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                filter.labels.push((k.into(), Some(v.into()), true));
            } else if let Some(k) = term.strip_prefix('!') {
                filter.labels.push((k.into(), None, false));
            } else {
                filter.labels.push((term.into(), None, true));
            }
        }
        for term in query
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
        {
            if let Some(name) = term
                .strip_prefix("metadata.name==")
                .or_else(|| term.strip_prefix("metadata.name="))
            {
                filter.name = Some(name.to_string());
            }
            if let Some(ns) = term
                .strip_prefix("metadata.namespace==")
                .or_else(|| term.strip_prefix("metadata.namespace="))
            {
                filter.namespace = Some(ns.to_string());
            }
        }
        filter
    }

    fn matches(&self, namespace: &str, object: &Value) -> bool {
        if self.namespace.as_deref().is_some_and(|ns| ns != namespace) {
            return false;
        }
        if let Some(name) = &self.name
            && object.pointer("/metadata/name").and_then(Value::as_str) != Some(name)
        {
            return false;
        }
        let labels = object.pointer("/metadata/labels");
        self.labels.iter().all(|(key, value, equal)| {
            let actual = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
            match value {
                Some(value) => (actual == Some(value.as_str())) == *equal,
                None => actual.is_some() == *equal,
            }
        })
    }
}

/// A running stand-in: its address and state; dropping it does not stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<StandIn>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start() -> std::io::Result<Server> {
        let state = Arc::new(StandIn::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Server { addr, state, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at the stand-in, without authentication.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\nusers:\n- name: standin\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: default\ncurrent-context: standin\n",
            self.url()
        )
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn ok(value: Value) -> Response {
    axum::Json(value).into_response()
}

fn discovery(path: &str) -> Option<Value> {
    let resources = |group: &str, version: &str| {
        let mut list = Vec::new();
        for kind in KINDS
            .iter()
            .filter(|k| k.group == group && k.version == version)
        {
            let verbs = json!([
                "create", "delete", "get", "list", "patch", "update", "watch"
            ]);
            list.push(
                json!({"name": kind.plural, "singularName": kind.kind.to_lowercase(),
                "namespaced": kind.namespaced, "kind": kind.kind, "verbs": verbs}),
            );
            if kind.plural == "dcsinstances" {
                list.push(json!({"name": "dcsinstances/status", "singularName": "",
                    "namespaced": true, "kind": kind.kind, "verbs": ["get", "patch", "update"]}));
            }
        }
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": group_version, "resources": list})
    };
    match path {
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
        "/apis" => {
            let groups: Vec<Value> = [
                "dcs.operator.dev/v1alpha1",
                "events.k8s.io/v1",
                "coordination.k8s.io/v1",
            ]
            .iter()
            .map(|gv| {
                let (group, version) = gv.split_once('/').unwrap();
                let v = json!({"groupVersion": gv, "version": version});
                json!({"name": group, "versions": [v.clone()], "preferredVersion": v})
            })
            .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        "/api/v1" => Some(resources("", "v1")),
        "/apis/dcs.operator.dev/v1alpha1" => Some(resources("dcs.operator.dev", "v1alpha1")),
        "/apis/events.k8s.io/v1" => Some(resources("events.k8s.io", "v1")),
        "/apis/coordination.k8s.io/v1" => Some(resources("coordination.k8s.io", "v1")),
        _ => None,
    }
}

/// A parsed resource path: kind, namespace, name and subresource.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] => (Some(ns.to_string()), {
            let mut v = vec![*plural];
            v.extend_from_slice(rest);
            v
        }),
        other => (None, other.to_vec()),
    };
    let kind = *KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && Some(&k.plural) == rest.first())?;
    // `/api/v1/namespaces/NAME` is the namespace itself.
    Some(Target {
        kind,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<StandIn>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if method == Method::GET
        && let Some(value) = discovery(path)
    {
        state
            .lock()
            .count("discovery", path.trim_start_matches('/').to_string());
        return ok(value);
    }
    // `/api/v1/namespaces/NAME`: the namespace kind, by name.
    let target = match path
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["api", "v1", "namespaces", name] => Some(Target {
            kind: NAMESPACES,
            namespace: None,
            name: Some(name.to_string()),
            subresource: None,
        }),
        _ => parse_path(path),
    };
    let Some(target) = target else {
        return status(404, "NotFound", format!("the server could not find {path}"));
    };
    let query = query_map(&uri);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let metadata_only = accept.contains("as=PartialObjectMetadata");
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let resource = match &target.subresource {
        Some(sub) => format!("{}/{sub}", target.kind.plural),
        None => target.kind.plural.to_string(),
    };
    match (method.clone(), &target.name) {
        (Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            state.lock().count("watch", resource);
            watch(&state, &target, &query, metadata_only)
        }
        (Method::GET, None) => {
            state.lock().count("list", resource);
            list(&state, &target, &query, metadata_only)
        }
        (Method::GET, Some(name)) => {
            let mut inner = state.lock();
            inner.count("get", resource);
            let key = (
                target.kind,
                target.namespace.clone().unwrap_or_default(),
                name.clone(),
            );
            match inner.objects.get(&key) {
                Some(object) if metadata_only => ok(partial(object)),
                Some(object) => ok((**object).clone()),
                None => not_found(&target, name),
            }
        }
        (Method::POST, None) => {
            state.lock().count("create", resource);
            create(&state, &target, &body)
        }
        (Method::PATCH, Some(name)) => {
            state.lock().count("patch", resource);
            patch(&state, &target, name, &content_type, &body)
        }
        (Method::PUT, Some(name)) => {
            state.lock().count("update", resource);
            replace(&state, &target, name, &body)
        }
        (Method::DELETE, Some(name)) => {
            let mut inner = state.lock();
            inner.count("delete", resource);
            let namespace = target.namespace.clone().unwrap_or_default();
            match inner.delete(target.kind, &namespace, name) {
                Some(object) => ok((*object).clone()),
                None => not_found(&target, name),
            }
        }
        _ => status(405, "MethodNotAllowed", format!("{method} {path}")),
    }
}

fn not_found(target: &Target, name: &str) -> Response {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", target.kind.plural),
    )
}

fn list(
    state: &StandIn,
    target: &Target,
    query: &HashMap<String, String>,
    metadata_only: bool,
) -> Response {
    let filter = Filter::parse(target.namespace.clone(), query);
    // Pages as a real server serves them (kube's watcher asks for 500 at a time),
    // so the operator never decodes one giant list the real thing would not send.
    // The token carries the first page's resourceVersion and the last key served.
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX);
    let after = query.get("continue").and_then(|token| {
        let mut parts = token.splitn(3, '|');
        Some((
            parts.next()?.to_string(),
            parts.next()?.to_string(),
            parts.next()?.to_string(),
        ))
    });
    let mut inner = state.lock();
    let start = match &after {
        Some((_, ns, name)) => Bound::Excluded((target.kind, ns.clone(), name.clone())),
        None => Bound::Included((target.kind, String::new(), String::new())),
    };
    let mut matching = inner
        .objects
        .range((start, Bound::Unbounded))
        .take_while(|((k, _, _), _)| *k == target.kind)
        .filter(|((_, ns, _), o)| filter.matches(ns, o));
    let mut items = Vec::new();
    let mut last = None;
    for ((_, ns, name), object) in matching.by_ref().take(limit) {
        items.push(if metadata_only {
            partial(object)
        } else {
            (**object).clone()
        });
        last = Some((ns.clone(), name.clone()));
    }
    let more = matching.next().is_some();
    let rv = match &after {
        Some((rv, _, _)) => rv.clone(),
        None => inner.rv.to_string(),
    };
    if !more {
        *inner.lists_completed.entry(target.kind.plural).or_default() += 1;
    }
    drop(inner);
    let mut metadata = json!({"resourceVersion": rv});
    if more && let Some((ns, name)) = last {
        metadata["continue"] = json!(format!("{rv}|{ns}|{name}"));
    }
    let (api_version, kind) = if metadata_only {
        (
            "meta.k8s.io/v1".to_string(),
            "PartialObjectMetadataList".to_string(),
        )
    } else {
        (
            target.kind.api_version(),
            format!("{}List", target.kind.kind),
        )
    };
    ok(json!({"apiVersion": api_version, "kind": kind,
        "metadata": metadata, "items": items}))
}

fn watch(
    state: &Arc<StandIn>,
    target: &Target,
    query: &HashMap<String, String>,
    metadata_only: bool,
) -> Response {
    let filter = Filter::parse(target.namespace.clone(), query);
    let since: u64 = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(300),
    );
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    {
        let mut inner = state.lock();
        let oldest = inner.history.front().map(|c| c.rv).unwrap_or(inner.rv + 1);
        if since > 0 && since + 1 < oldest {
            // Older than what we kept: the client must relist.
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                "status": "Failure", "reason": "Expired", "code": 410,
                "message": format!("too old resource version: {since} ({oldest})")}});
            let mut line = serde_json::to_vec(&gone).unwrap();
            line.push(b'\n');
            let _ = tx.send(Bytes::from(line));
        } else if since > 0 {
            for change in inner.history.iter().filter(|c| {
                c.rv > since && c.kind == target.kind && filter.matches(&c.namespace, &c.object)
            }) {
                let _ = tx.send(event_line(
                    change.kind_of_change,
                    &change.object,
                    metadata_only,
                ));
            }
        } else {
            // No resourceVersion: a watch from "now" starts with every object ADDED.
            for ((kind, ns, _), object) in inner.objects.iter() {
                if *kind == target.kind && filter.matches(ns, object) {
                    let _ = tx.send(event_line("ADDED", object, metadata_only));
                }
            }
        }
        inner.watchers.push(Watcher {
            kind: target.kind,
            filter,
            metadata_only,
            tx,
        });
    }
    let state = state.clone();
    let kind = target.kind;
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = async_stream(move |out: mpsc::Sender<Bytes>| async move {
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => if out.send(line).await.is_err() { return },
                    None => return,
                },
                _ = tokio::time::sleep(BOOKMARK_EVERY), if bookmarks => {
                    let rv = state.lock().rv.to_string();
                    let object = json!({"apiVersion": kind.api_version(), "kind": kind.kind,
                        "metadata": {"resourceVersion": rv}});
                    let mut line = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap();
                    line.push(b'\n');
                    if out.send(Bytes::from(line)).await.is_err() { return }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(stream)
        .unwrap()
}

/// A streaming body fed by a task; the task ends when the client goes away.
fn async_stream<F, Fut>(produce: F) -> Body
where
    F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (out, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(produce(out));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), rx))
    });
    Body::from_stream(stream)
}

/// Boxed: a Response is large, and the error path is the rare one.
fn parse_body(body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| {
            Box::new(status(
                400,
                "BadRequest",
                format!("cannot decode the body: {e}"),
            ))
        })
}

fn write_kind(kind: Kind, verb: &str) -> &'static str {
    match (kind.plural, verb) {
        ("secrets", "create") => "secret_create",
        ("secrets", _) => "secret_patch",
        ("events", _) => "event",
        ("dcsinstances", _) => "dcsinstance",
        _ => "other",
    }
}

fn create(state: &StandIn, target: &Target, body: &Bytes) -> Response {
    let mut object = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    let name = str_at(&object, "/metadata/name");
    if name.is_empty() {
        return status(422, "Invalid", "metadata.name is required".into());
    }
    let mut inner = state.lock();
    inner.write(write_kind(target.kind, "create"));
    let key = (target.kind, namespace.clone(), name.clone());
    if inner.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", target.kind.plural),
        );
    }
    object["apiVersion"] = json!(target.kind.api_version());
    object["kind"] = json!(target.kind.kind);
    if target.kind.namespaced {
        object["metadata"]["namespace"] = json!(namespace);
    }
    prepare_new(&mut object);
    let stored = inner.commit(target.kind, namespace, name, object, "ADDED");
    (StatusCode::CREATED, axum::Json((*stored).clone())).into_response()
}

/// RFC 7386: objects merge, null deletes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let map = target.as_object_mut().unwrap();
            for (key, value) in fields {
                if value.is_null() {
                    map.remove(key);
                } else {
                    merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn patch(
    state: &StandIn,
    target: &Target,
    name: &str,
    content_type: &str,
    body: &Bytes,
) -> Response {
    let mut patch = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    let mut inner = state.lock();
    let status_subresource = target.subresource.as_deref() == Some("status");
    inner.write(if status_subresource {
        "status_patch"
    } else {
        write_kind(target.kind, "patch")
    });
    let key = (target.kind, namespace.clone(), name.to_string());
    let Some(current) = inner.objects.get(&key).cloned() else {
        return not_found(target, name);
    };
    // Preconditions carried in the patch, as the API server honours them.
    for field in ["resourceVersion", "uid"] {
        if let Some(expected) = patch
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            && current["metadata"][field].as_str() != Some(expected)
        {
            return status(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    target.kind.plural
                ),
            );
        }
        if let Some(metadata) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove(field);
        }
    }
    let mut updated = (*current).clone();
    if status_subresource {
        // Server-side apply of the whole status by its only manager: the applied
        // status replaces the stored one.
        if content_type.starts_with("application/apply-patch") {
            updated["status"] = patch.get("status").cloned().unwrap_or(Value::Null);
        } else if let Some(status) = patch.get("status") {
            merge_patch(&mut updated["status"], status);
        }
    } else {
        if let Some(obj) = patch.as_object_mut() {
            obj.remove("status");
        }
        merge_patch(&mut updated, &patch);
        if target.kind == DCS_INSTANCES && updated.get("spec") != current.get("spec") {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
            updated["metadata"]["generation"] = json!(generation + 1);
        }
    }
    updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    if updated == *current {
        // A no-op keeps the resourceVersion and tells no watcher, as a real server does.
        return ok(updated);
    }
    let stored = inner.commit(
        target.kind,
        namespace,
        name.to_string(),
        updated,
        "MODIFIED",
    );
    ok((*stored).clone())
}

fn replace(state: &StandIn, target: &Target, name: &str, body: &Bytes) -> Response {
    let mut object = match parse_body(body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    let mut inner = state.lock();
    inner.write(write_kind(target.kind, "update"));
    let key = (target.kind, namespace.clone(), name.to_string());
    let Some(current) = inner.objects.get(&key).cloned() else {
        return not_found(target, name);
    };
    if let Some(expected) = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && current["metadata"]["resourceVersion"].as_str() != Some(expected)
    {
        return status(
            409,
            "Conflict",
            format!("{} \"{name}\" was modified", target.kind.plural),
        );
    }
    if target.subresource.as_deref() == Some("status") {
        let mut updated = (*current).clone();
        updated["status"] = object.get("status").cloned().unwrap_or(Value::Null);
        object = updated;
    } else {
        object["status"] = current.get("status").cloned().unwrap_or(Value::Null);
        for field in ["uid", "creationTimestamp", "generation"] {
            object["metadata"][field] = current["metadata"][field].clone();
        }
    }
    object["apiVersion"] = json!(target.kind.api_version());
    object["kind"] = json!(target.kind.kind);
    let stored = inner.commit(target.kind, namespace, name.to_string(), object, "MODIFIED");
    ok((*stored).clone())
}
