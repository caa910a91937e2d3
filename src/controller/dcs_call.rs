//! One budgeted DCS call, the only way the controller talks to DCS: a per-namespace
//! permit → the gate's admission → the call → metrics → what the gate learns.
//! ShowInstance (in reconcile) and the batch list (in a group's poller) both go
//! through [`call`], so the keying of budgets and fair shares is written once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use super::Shared;
use super::budget::{Admission, GateKey, GateScope, Ticket};
use crate::dcs::DcsError;
use crate::dcs::client::Answer;

/// DCS calls in flight at once per namespace, by default: many slow origins named
/// in one namespace (wildcard DNS, many ports) must not hold every slot.
pub const DEFAULT_NAMESPACE_CONCURRENCY: usize = 8;

/// DCS calls in flight at once to tenant-named origins (`spec.endpoint`), across
/// every namespace: a tenant with many namespaces of slow endpoints must still leave
/// reconcile slots for the calls to the cloud.
pub const DEFAULT_TENANT_ORIGIN_CONCURRENCY: usize = 16;

/// Per-namespace semaphores, created on first use and forgotten when idle, and one
/// semaphore for every call to a tenant-named origin.
#[derive(Debug)]
pub struct NamespaceLimits {
    per_namespace: usize,
    semaphores: Mutex<HashMap<String, Arc<Semaphore>>>,
    tenant_origins: Arc<Semaphore>,
}

impl Default for NamespaceLimits {
    fn default() -> Self {
        Self::new(DEFAULT_NAMESPACE_CONCURRENCY)
    }
}

impl NamespaceLimits {
    pub fn new(per_namespace: usize) -> Self {
        Self::with_tenant_origins(per_namespace, DEFAULT_TENANT_ORIGIN_CONCURRENCY)
    }

    pub fn with_tenant_origins(per_namespace: usize, tenant_origins: usize) -> Self {
        Self {
            per_namespace: per_namespace.max(1),
            semaphores: Mutex::default(),
            tenant_origins: Arc::new(Semaphore::new(tenant_origins.max(1))),
        }
    }

    /// A permit for a call to a tenant-named origin now, or None when all are busy.
    pub fn try_acquire_tenant_origin(&self) -> Option<OwnedSemaphorePermit> {
        self.tenant_origins.clone().try_acquire_owned().ok()
    }

    /// Waits for a permit for a call to a tenant-named origin.
    pub async fn acquire_tenant_origin(&self) -> Option<OwnedSemaphorePermit> {
        self.tenant_origins.clone().acquire_owned().await.ok()
    }

    fn semaphore(&self, namespace: &str) -> Arc<Semaphore> {
        let mut semaphores = self
            .semaphores
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(semaphore) = semaphores.get(namespace) {
            return semaphore.clone();
        }
        let semaphore = Arc::new(Semaphore::new(self.per_namespace));
        semaphores.insert(namespace.to_string(), semaphore.clone());
        semaphore
    }

    /// A permit now, or None when the namespace has every slot busy.
    pub fn try_acquire(&self, namespace: &str) -> Option<OwnedSemaphorePermit> {
        self.semaphore(namespace).try_acquire_owned().ok()
    }

    /// Waits for a permit (a group's own poller may wait; a reconcile may not).
    pub async fn acquire(&self, namespace: &str) -> Option<OwnedSemaphorePermit> {
        self.semaphore(namespace).acquire_owned().await.ok()
    }

    /// Forgets namespaces with no call in flight.
    pub fn prune(&self) {
        let per_namespace = self.per_namespace;
        self.semaphores
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .retain(|_, semaphore| {
                Arc::strong_count(semaphore) > 1 || semaphore.available_permits() < per_namespace
            });
    }

    pub fn len(&self) -> usize {
        self.semaphores
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whose budget and which namespace's share a call spends.
#[derive(Debug, Clone, Copy)]
pub struct CallTarget<'a> {
    pub gate: &'a GateKey,
    /// The credentials' digest: which secret a success proves.
    pub fingerprint: &'a str,
    pub namespace: &'a str,
    /// Metric label: `show_instance`, `list_instances`.
    pub operation: &'static str,
}

/// How to take the namespace's permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitMode {
    /// Take one now or give up (reconcile: a busy namespace requeues instead of
    /// holding a global reconcile slot).
    TryNow,
    /// Wait for one (a group's own poller task: it delays only its own group).
    Wait,
}

/// What became of a call.
#[derive(Debug)]
pub enum CallOutcome<T> {
    /// It went out; this is what came back.
    Answered(Result<Answer<T>, DcsError>),
    /// The gate refuses for a reason the user should see (throttled, circuit open,
    /// credentials failing).
    Refused(DcsError),
    /// Not now, nothing to report: the bucket is empty or the namespace busy.
    Wait(Duration),
}

/// A short requeue for a reconcile whose namespace was busy: jittered up to 1 s so
/// a burst of objects does not come back in lockstep.
fn busy_requeue() -> Duration {
    Duration::from_millis(rand::random_range(100..=1000))
}

/// Runs `send` if the namespace's share and the gate allow it, counting it in the
/// metrics and teaching the gate what came back.
pub async fn call<T, F, Fut>(
    shared: &Shared,
    target: CallTarget<'_>,
    mode: PermitMode,
    send: F,
) -> CallOutcome<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Answer<T>, DcsError>>,
{
    let permit = match mode {
        PermitMode::TryNow => shared.namespace_limits.try_acquire(target.namespace),
        PermitMode::Wait => shared.namespace_limits.acquire(target.namespace).await,
    };
    let Some(_permit) = permit else {
        debug!(
            namespace = target.namespace,
            "namespace has every DCS slot busy"
        );
        return CallOutcome::Wait(busy_requeue());
    };
    // Calls to a tenant's own endpoint also share one cap across namespaces.
    let _origin_permit = if matches!(target.gate.scope, GateScope::Origin(_)) {
        let limits = &shared.namespace_limits;
        let permit = match mode {
            PermitMode::TryNow => limits.try_acquire_tenant_origin(),
            PermitMode::Wait => limits.acquire_tenant_origin().await,
        };
        let Some(permit) = permit else {
            debug!("every slot for tenant-named endpoints is busy");
            return CallOutcome::Wait(busy_requeue());
        };
        Some(permit)
    } else {
        None
    };
    let now = shared.clock.now();
    let (admission, ticket) = shared
        .budget
        .admit_ticket(target.gate, target.fingerprint, now);
    match admission {
        Admission::Go => {}
        Admission::Wait(after) => return CallOutcome::Wait(after),
        Admission::Refused(refusal) => {
            debug!(reason = refusal.reason(), "not calling DCS: {refusal}");
            return CallOutcome::Refused(refusal);
        }
    }
    // Cancelled or panicking before the answer is recorded: give the admission
    // back, or unproven credentials of this gate would wait for it forever.
    let mut admitted = Admitted {
        shared,
        target,
        ticket,
        recorded: false,
    };
    let started = std::time::Instant::now();
    let result = send().await;
    let pages = result.as_ref().map(|answer| answer.pages).unwrap_or(1);
    shared
        .metrics
        .dcs_request(target.operation, &result, started.elapsed(), pages);
    shared.budget.record_ticket(
        target.gate,
        target.fingerprint,
        ticket,
        &result,
        shared.clock.now(),
    );
    admitted.recorded = true;
    CallOutcome::Answered(result)
}

struct Admitted<'a> {
    shared: &'a Shared,
    target: CallTarget<'a>,
    ticket: Ticket,
    recorded: bool,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.shared
                .budget
                .release_ticket(self.target.gate, self.ticket);
        }
    }
}
