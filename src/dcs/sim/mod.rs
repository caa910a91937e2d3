//! A DCS API simulator on loopback: the v1.0 and v2 ShowInstance and list routes and
//! the v2 write side (create, resize, modify, passwords, delete, tags, flavours,
//! zones, quota) behind gateway-style authentication, lock-out and throttling, with
//! scripted and clock-driven instance transitions, injectable faults and an
//! unauthenticated `/_sim/` admin API; and, on the same listener, the IAM, STS and
//! CCE Pod Identity exchanges that issue temporary credentials (`iam`).
//!
//! The admin API has no authentication at all: bind the simulator to loopback only.

mod admin;
mod api;
mod file;
pub mod flavors;
pub mod iam;
mod state;
pub mod validate;
mod write;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use file::{
    is_project_id, load_instances, load_write_config, parse_instances, parse_write_config,
};
pub use iam::{
    AgencyConfig, IdentityConfig, IdpConfig, OidcProviderConfig, PodIdentityToken,
    load_identity_config, parse_identity_config,
};
pub use state::{Counters, SimState};
pub use write::{OP_LABELS, WRITE_LABELS};

use crate::clock::SharedClock;
use crate::dcs::Endpoint;

/// How long `shutdown` waits for in-flight requests (a latency fault may hold one).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the simulator accepts and starts with.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// The one AK/SK pair it accepts.
    pub access_key: Option<(String, String)>,
    /// Accept `X-Auth-Token` equal to this.
    pub auth_token: Option<String>,
    /// APIG-style throttle per access key (or per token), requests per clock second.
    pub rate_limit_per_second: Option<u32>,
    pub instances: Vec<SimInstance>,
    /// Timings and quotas of the write routes.
    pub writes: WriteConfig,
    /// The simulated IAM, STS and Pod Identity (disabled by default).
    pub identity: IdentityConfig,
}

/// How the write side behaves in simulated time (all durations on the injected clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteConfig {
    /// CREATING → RUNNING (or CREATEFAILED under that fault).
    pub create_delay: Duration,
    /// EXTENDING → RUNNING at the new flavour.
    pub resize_delay: Duration,
    /// DELETING → gone (404 `DCS.3022`).
    pub delete_delay: Duration,
    /// The background task of a port change or command renaming (`task` set meanwhile).
    pub modify_delay: Duration,
    /// A created instance shows in list answers only this long after the create
    /// (ShowInstance finds it at once), as an eventually consistent API may do.
    pub list_lag: Duration,
    /// The project's instance quota (`DCS.4035` beyond it).
    pub instance_quota: u32,
    /// The project's memory quota in GB (`DCS.4036` beyond it).
    pub memory_quota_gb: u32,
}

impl Default for WriteConfig {
    fn default() -> Self {
        Self {
            create_delay: Duration::from_secs(10),
            resize_delay: Duration::from_secs(30),
            delete_delay: Duration::from_secs(10),
            modify_delay: Duration::from_secs(5),
            list_lag: Duration::ZERO,
            instance_quota: 100,
            memory_quota_gb: 800,
        }
    }
}

impl SimConfig {
    pub const DEFAULT_ACCESS_KEY: &str = "SIMAK0000000000000001";
    pub const DEFAULT_SECRET_KEY: &str = "SimSecretKey00000000000000000000000000001";

    /// The default key pair, no token, no throttle, no instances.
    pub fn with_default_keys() -> Self {
        Self {
            access_key: Some((
                Self::DEFAULT_ACCESS_KEY.to_string(),
                Self::DEFAULT_SECRET_KEY.to_string(),
            )),
            ..Default::default()
        }
    }
}

/// One simulated instance: its project, its API fields, and a script of changes.
#[derive(Debug, Clone, PartialEq)]
pub struct SimInstance {
    pub project_id: String,
    /// API field names; `instance_id` is required.
    pub fields: Map<String, Value>,
    /// Sorted by `after` when built through [`SimInstance::new`] or the file loader.
    pub transitions: Vec<Transition>,
}

impl SimInstance {
    pub fn new(
        project_id: impl Into<String>,
        fields: Map<String, Value>,
        mut transitions: Vec<Transition>,
    ) -> Self {
        // Stable, so two changes scripted for the same time apply in file order.
        transitions.sort_by_key(|t| t.after);
        Self {
            project_id: project_id.into(),
            fields,
            transitions,
        }
    }

    pub fn instance_id(&self) -> Option<&str> {
        self.fields.get("instance_id").and_then(Value::as_str)
    }
}

/// Set these fields once `after` has passed since the simulator started.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub after: Duration,
    pub set: Map<String, Value>,
}

/// A misbehaviour to inject into DCS and identity routes (never into the `/_sim/`
/// admin routes; the Pod Identity agent's route is not an admin route). Checked after
/// route matching and before authentication, so it never counts as an auth failure.
///
/// JSON shape: the kind's fields and the scope side by side, e.g.
/// `{"kind":"status","status":503,"count":3}` or `{"kind":"latency","ms":200,"fraction":0.5}`.
/// With neither `count` nor `fraction` the fault hits every matching request until cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// The next N matching requests, then the fault is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// That share (0..=1) of matching requests, chosen at random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// Only requests of this route label (`show_v1`, `show_v2`, `list_v1`, `list_v2`,
    /// one of [`OP_LABELS`], e.g. `create`, `delete`, or an identity route's
    /// ([`iam::ROUTE_LABELS`], e.g. `iam_id_token`)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

impl Fault {
    /// A fault hitting every matching request until cleared.
    pub fn always(kind: FaultKind) -> Self {
        Self {
            kind,
            count: None,
            fraction: None,
            route: None,
        }
    }

    /// A fault hitting the next `count` matching requests.
    pub fn times(kind: FaultKind, count: u32) -> Self {
        Self {
            count: Some(count),
            ..Self::always(kind)
        }
    }

    pub fn on_route(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }

    /// Refuses what cannot mean anything (a fraction outside 0..=1, a non-HTTP status).
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |message: String| Err(SimError::BadFault(message));
        if let Some(fraction) = self.fraction
            && !(0.0..=1.0).contains(&fraction)
        {
            return bad(format!("fraction must be between 0 and 1, got {fraction}"));
        }
        if let FaultKind::Status { status, .. } = &self.kind
            && !(200..=599).contains(status)
        {
            return bad(format!(
                "status must be an HTTP status 200..=599, got {status}"
            ));
        }
        if let Some(route) = &self.route {
            if !api::route_labels().any(|label| label == route) {
                return bad(format!(
                    "route must be one of {}, got {route:?}",
                    api::route_labels().collect::<Vec<_>>().join(", ")
                ));
            }
            if !self.kind.applies_to(route) {
                return bad(format!(
                    "a {} fault never fires on route {route:?}",
                    self.kind.name()
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Sleep this long in real time, then answer normally: network behaviour, not sim time.
    Latency { ms: u64 },
    /// Answer this status with a JSON error body.
    Status {
        status: u16,
        #[serde(default = "default_fault_code")]
        error_code: String,
        #[serde(default = "default_fault_message")]
        error_msg: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u32>,
    },
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with a JSON body cut in half.
    Truncated,
    /// Headers, then the connection is dropped mid-body.
    Reset,
    /// Write routes only: carry the request out (or refuse it) as usual, then drop
    /// the connection instead of answering, so the caller cannot know what happened.
    ApplyThenDrop,
    /// `create` only: accept the create (200), then end in CREATEFAILED instead of
    /// RUNNING once the create delay has passed.
    CreateFailed,
    /// `reset_password` only: answer 200 `{"code", "message", "ext_message"}` with
    /// this code (`"3"`: locked) without resetting anything, like `status` before
    /// authentication. Code `"1"` would claim a reset that did not happen.
    ResetPasswordCode {
        code: String,
        #[serde(default = "default_reset_message")]
        message: String,
    },
}

impl FaultKind {
    /// A `reset_password_code` fault with the default message.
    pub fn reset_password_code(code: impl Into<String>) -> Self {
        FaultKind::ResetPasswordCode {
            code: code.into(),
            message: default_reset_message(),
        }
    }

    /// Whether this kind can fire on a route label: every kind fires on every route,
    /// except the write-only ones.
    pub fn applies_to(&self, route: &str) -> bool {
        match self {
            FaultKind::ApplyThenDrop => WRITE_LABELS.contains(&route),
            FaultKind::CreateFailed => route == "create",
            FaultKind::ResetPasswordCode { .. } => route == "reset_password",
            _ => true,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Latency { .. } => "latency",
            FaultKind::Status { .. } => "status",
            FaultKind::Malformed => "malformed",
            FaultKind::Truncated => "truncated",
            FaultKind::Reset => "reset",
            FaultKind::ApplyThenDrop => "apply_then_drop",
            FaultKind::CreateFailed => "create_failed",
            FaultKind::ResetPasswordCode { .. } => "reset_password_code",
        }
    }
}

fn default_fault_code() -> String {
    "SIM.0001".into()
}

fn default_fault_message() -> String {
    "Injected fault".into()
}

fn default_reset_message() -> String {
    "Injected fault: the password was not reset.".into()
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read instance file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("instance file is not valid YAML/JSON: {0}")]
    Syntax(String),
    #[error("instance file entry {index}{}: {message}", .instance_id.as_ref().map(|id| format!(" (instance_id {id:?})")).unwrap_or_default())]
    Entry {
        index: usize,
        instance_id: Option<String>,
        message: String,
    },
    #[error("invalid fault: {0}")]
    BadFault(String),
    #[error("invalid identity configuration: {0}")]
    Identity(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the simulator's own address does not make an endpoint: {0}")]
    Endpoint(String),
}

pub struct Simulator;

impl Simulator {
    /// Binds `listen` (use `127.0.0.1:0` for a free port) and serves until shutdown.
    /// Transition times count from now, by `clock`.
    pub async fn start(
        config: SimConfig,
        listen: SocketAddr,
        clock: SharedClock,
    ) -> Result<SimHandle, SimError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;
        // A wildcard bind is still reached over loopback by the tests and the CLI.
        let reachable = if addr.ip().is_unspecified() {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        let base_url = format!("http://{reachable}");
        let endpoint = Endpoint::parse(&base_url).map_err(|e| SimError::Endpoint(e.to_string()))?;
        let state = Arc::new(SimState::new(config, clock));
        let router = admin::router()
            .merge(iam::admin_router())
            .fallback(api::handle)
            .with_state(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = result {
                tracing::warn!(%error, "DCS simulator stopped with an error");
            }
        });
        tracing::info!(%base_url, "DCS simulator listening");
        Ok(SimHandle {
            addr,
            base_url,
            endpoint,
            state,
            stop: Some(stop),
            server: Some(server),
        })
    }
}

/// A running simulator. Dropping it without `shutdown` stops the server abruptly.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    base_url: String,
    endpoint: Endpoint,
    state: Arc<SimState>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, loopback even when bound to a wildcard address.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    pub fn state(&self) -> &SimState {
        &self.state
    }

    /// A shared handle on the state, for code that outlives a borrow of the handle.
    pub fn shared_state(&self) -> Arc<SimState> {
        self.state.clone()
    }

    /// Stops accepting, lets in-flight requests finish (for a few seconds at most).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
