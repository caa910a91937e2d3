//! The DCS API budget per gate: a token bucket, a pause for everyone after a 429
//! with Retry-After, a circuit breaker after repeated 5xx or transport failures
//! (with half-open probes), and a cap on failed signatures.
//!
//! A gate is (scope, principal): the principal is the access key (or a token's
//! digest), which the API gateway counts and locks by; the scope is `Cloud` for
//! every Huawei Cloud region host (they share one gateway account per key) and the
//! endpoint's normalized origin for anything a tenant names in `spec.endpoint`.
//! Access keys are not secret, so a tenant may name another's key: keyed by origin,
//! its endpoint's 429s, Retry-After, 5xx and fake successes only ever touch its own
//! gate, never the cloud's.
//!
//! The gateway locks an access key after five failed signatures. So credentials not
//! yet proven (no success with that exact secret) go one call at a time per gate,
//! and at most [`MAX_AUTH_FAILURES`] of their attempts fail in any [`AUTH_WINDOW`],
//! Secret edits included; after a 401/403 every unproven secret waits five minutes,
//! unless the Secret whose credentials caused it changes. A proven secret keeps
//! working (if it is revoked, the calls it already had in flight may fail too).
//! The circuit breaker is kept per (origin, principal) in every scope.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::later;
use crate::dcs::{Credentials, DcsError, Endpoint};
use crate::plan::AUTH_RETRY;

/// Consecutive 5xx/transport failures that open the circuit.
pub const BREAKER_THRESHOLD: u32 = 5;
/// How long an open circuit first stays open; doubles on a failed probe.
pub const BREAKER_OPEN: Duration = Duration::from_secs(30);
/// At most one default poll interval: a healed service must be seen again within a
/// poll or two, whatever happened before.
const BREAKER_MAX_OPEN: Duration = Duration::from_secs(60);
/// Without a Retry-After, a 429 pauses callers this long.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(5);
/// Failed signatures allowed toward one gate in any [`AUTH_WINDOW`] (the gateway
/// locks a key at five).
pub const MAX_AUTH_FAILURES: usize = 3;
pub const AUTH_WINDOW: Duration = Duration::from_secs(300);
/// A gate nobody used for this long is forgotten.
pub const IDLE_GATE: Duration = Duration::from_secs(600);
/// Proven secrets remembered per gate (one is normal; a rotation makes two).
const MAX_PROVEN: usize = 8;

/// Where a gate's calls go: the Huawei Cloud regions, or one tenant-named origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GateScope {
    Cloud,
    Origin(String),
}

/// Whose budget a call spends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GateKey {
    pub scope: GateScope,
    /// `ak:<access key>` or `token:<digest>`: what the gateway counts failures by.
    pub principal: String,
    /// The endpoint's normalized origin. The circuit breaker is kept per origin
    /// even in the cloud scope: a tenant naming a region that does not resolve must
    /// not open the breaker of every region for that access key.
    pub origin: String,
}

impl GateKey {
    fn account(&self) -> (GateScope, String) {
        (self.scope.clone(), self.principal.clone())
    }

    fn breaker(&self) -> (String, String) {
        (self.origin.clone(), self.principal.clone())
    }
}

/// What the gateway counts failures by: the access key, or a token's digest.
pub fn principal(credentials: &Credentials) -> String {
    match credentials.access_key_id() {
        Some(ak) => format!("ak:{ak}"),
        None => format!("token:{}", credentials.fingerprint()),
    }
}

/// The gate for calls to `endpoint` with `credentials`. `cloud_origins` are extra
/// origins the operator's configuration treats as the cloud (the demo simulator).
pub fn gate_key(
    endpoint: &Endpoint,
    credentials: &Credentials,
    cloud_origins: &[String],
) -> GateKey {
    gate_key_for(endpoint, &principal(credentials), cloud_origins)
}

/// The gate for calls to `endpoint` as a stable principal (a workload identity,
/// whose temporary keys rotate: its budget must not restart at each refresh).
pub fn gate_key_for(endpoint: &Endpoint, principal: &str, cloud_origins: &[String]) -> GateKey {
    let origin = endpoint.origin();
    let scope = if endpoint.is_region_host() || cloud_origins.contains(&origin) {
        GateScope::Cloud
    } else {
        GateScope::Origin(origin.clone())
    };
    GateKey {
        scope,
        principal: principal.to_string(),
        origin,
    }
}

/// What one admission took: the half-open probe, or the one unproven call at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticket {
    probe: bool,
    unproven: bool,
}

/// Whether a call may go out now.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Go,
    /// Not now, for a reason the user should see (locked key, throttled, circuit
    /// open): report this error as the observation.
    Refused(DcsError),
    /// The local token bucket is empty: try again after this long; nothing to report.
    Wait(Duration),
}

#[derive(Debug, Clone)]
struct GateState {
    tokens: f64,
    refilled_at: DateTime<Utc>,
    last_used: DateTime<Utc>,
    /// Credential fingerprints that had a success through this gate (bounded).
    proven: VecDeque<String>,
    /// An unproven credential's call is under way: others wait for it.
    unproven_in_flight: bool,
    /// Until when unproven secrets wait, why, and whose failure it was.
    auth_blocked: Option<(DateTime<Utc>, DcsError, String)>,
    /// When the recent failed signatures happened (at most MAX_AUTH_FAILURES kept).
    auth_failures: VecDeque<DateTime<Utc>>,
    paused: Option<(DateTime<Utc>, DcsError)>,
}

/// A circuit breaker: per (origin, principal).
#[derive(Debug, Clone)]
struct Breaker {
    last_used: DateTime<Utc>,
    server_failures: u32,
    open: Option<(DateTime<Utc>, DcsError)>,
    open_for: Duration,
    probing: bool,
}

impl Breaker {
    fn new(now: DateTime<Utc>) -> Self {
        Self {
            last_used: now,
            server_failures: 0,
            open: None,
            open_for: BREAKER_OPEN,
            probing: false,
        }
    }

    fn is_idle(&self, now: DateTime<Utc>) -> bool {
        !self.probing
            && later(self.last_used, IDLE_GATE) <= now
            && self.open.as_ref().is_none_or(|(until, _)| *until <= now)
    }
}

/// Everything the budget remembers, under one lock.
#[derive(Debug, Default)]
struct Gates {
    accounts: HashMap<(GateScope, String), GateState>,
    breakers: HashMap<(String, String), Breaker>,
}

impl GateState {
    fn new(burst: f64, now: DateTime<Utc>) -> Self {
        Self {
            tokens: burst,
            refilled_at: now,
            last_used: now,
            proven: VecDeque::new(),
            unproven_in_flight: false,
            auth_blocked: None,
            auth_failures: VecDeque::new(),
            paused: None,
        }
    }

    fn is_proven(&self, fingerprint: &str) -> bool {
        self.proven.iter().any(|p| p == fingerprint)
    }

    /// Nothing remembered about this gate matters any more at `now`.
    fn is_idle(&self, now: DateTime<Utc>) -> bool {
        let over = |until: Option<DateTime<Utc>>| until.is_none_or(|until| until <= now);
        !self.unproven_in_flight
            && later(self.last_used, IDLE_GATE) <= now
            && over(self.paused.as_ref().map(|p| p.0))
            && over(self.auth_blocked.as_ref().map(|b| b.0))
            && self
                .auth_failures
                .back()
                .is_none_or(|at| later(*at, AUTH_WINDOW) <= now)
    }
}

#[derive(Debug)]
pub struct ApiBudget {
    rate_per_second: f64,
    burst: f64,
    gates: Mutex<Gates>,
}

impl Default for ApiBudget {
    fn default() -> Self {
        Self::new(20.0, 40)
    }
}

impl ApiBudget {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        Self {
            rate_per_second: if rate_per_second.is_finite() {
                rate_per_second.max(0.001)
            } else {
                0.001
            },
            burst: f64::from(burst.max(1)),
            gates: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gates> {
        self.gates
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// How many gates and breakers are remembered (for `dcs_operator_cache_entries`).
    pub fn len(&self) -> usize {
        let gates = self.lock();
        gates.accounts.len() + gates.breakers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets gates unused for [`IDLE_GATE`] whose pauses, blocks and windows are over.
    pub fn prune(&self, now: DateTime<Utc>) {
        let mut gates = self.lock();
        gates.accounts.retain(|_, state| !state.is_idle(now));
        gates.breakers.retain(|_, breaker| !breaker.is_idle(now));
    }

    /// Asks for one call through `gate` with credentials `fingerprint` at `now`; a
    /// `Go` spends a token.
    pub fn admit(&self, gate: &GateKey, fingerprint: &str, now: DateTime<Utc>) -> Admission {
        self.admit_ticket(gate, fingerprint, now).0
    }

    /// Like [`Self::admit`], with the [`Ticket`] of what this admission took: give
    /// it back to [`Self::release_ticket`] or [`Self::record_ticket`], so that one
    /// call never clears what another call in flight holds.
    pub fn admit_ticket(
        &self,
        gate: &GateKey,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> (Admission, Ticket) {
        let mut ticket = Ticket::default();
        let admission = self.admit_inner(gate, fingerprint, now, &mut ticket);
        if admission != Admission::Go {
            ticket = Ticket::default();
        }
        (admission, ticket)
    }

    fn admit_inner(
        &self,
        gate: &GateKey,
        fingerprint: &str,
        now: DateTime<Utc>,
        ticket: &mut Ticket,
    ) -> Admission {
        let mut gates = self.lock();
        let Gates { accounts, breakers } = &mut *gates;
        let state = accounts
            .entry(gate.account())
            .or_insert_with(|| GateState::new(self.burst, now));
        state.last_used = state.last_used.max(now);
        let proven = state.is_proven(fingerprint);
        if let Some((until, error, _)) = &state.auth_blocked {
            if now < *until && !proven {
                return Admission::Refused(error.clone());
            }
            if now >= *until {
                state.auth_blocked = None;
            }
        }
        // The hard cap: however often a Secret is edited, no more failed signatures
        // than this in any window (a proven secret is not expected to fail).
        while state
            .auth_failures
            .front()
            .is_some_and(|at| later(*at, AUTH_WINDOW) <= now)
        {
            state.auth_failures.pop_front();
        }
        if !proven && state.auth_failures.len() >= MAX_AUTH_FAILURES {
            let error = state
                .auth_blocked
                .as_ref()
                .map(|b| b.1.clone())
                .unwrap_or_else(|| auth_cap_error(state.auth_failures.len()));
            return Admission::Refused(error);
        }
        if !proven && state.unproven_in_flight {
            return Admission::Wait(Duration::from_millis(500));
        }
        if let Some((until, error)) = &state.paused {
            if now < *until {
                return Admission::Refused(error.clone());
            }
            state.paused = None;
        }
        let breaker = breakers
            .entry(gate.breaker())
            .or_insert_with(|| Breaker::new(now));
        breaker.last_used = breaker.last_used.max(now);
        if let Some((until, error)) = &breaker.open {
            // Half-open: after the open time one probe goes; the rest wait for it.
            if now < *until || breaker.probing {
                return Admission::Refused(error.clone());
            }
            breaker.probing = true;
            ticket.probe = true;
        }
        let elapsed = now
            .signed_duration_since(state.refilled_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        state.tokens =
            (state.tokens + elapsed.as_secs_f64() * self.rate_per_second).min(self.burst);
        state.refilled_at = now.max(state.refilled_at);
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            if !proven {
                state.unproven_in_flight = true;
                ticket.unproven = true;
            }
            Admission::Go
        } else {
            if ticket.probe {
                breaker.probing = false;
            }
            let wait = (1.0 - state.tokens) / self.rate_per_second;
            Admission::Wait(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(60)))
        }
    }

    /// Gives back an admission that was never used (no call went out): only what
    /// its ticket holds.
    pub fn release_ticket(&self, gate: &GateKey, ticket: Ticket) {
        let mut gates = self.lock();
        if ticket.unproven
            && let Some(state) = gates.accounts.get_mut(&gate.account())
        {
            state.unproven_in_flight = false;
        }
        if ticket.probe
            && let Some(breaker) = gates.breakers.get_mut(&gate.breaker())
        {
            breaker.probing = false;
        }
    }

    /// Learns from an answer to a call that `admit` let go, as if it held whatever
    /// flags the gate has set (for callers without a ticket).
    pub fn record<T>(
        &self,
        gate: &GateKey,
        fingerprint: &str,
        result: &Result<T, DcsError>,
        now: DateTime<Utc>,
    ) {
        let ticket = {
            let gates = self.lock();
            Ticket {
                probe: gates
                    .breakers
                    .get(&gate.breaker())
                    .is_some_and(|b| b.probing),
                unproven: gates
                    .accounts
                    .get(&gate.account())
                    .is_some_and(|s| !s.is_proven(fingerprint)),
            }
        };
        self.record_ticket(gate, fingerprint, ticket, result, now);
    }

    /// Learns from an answer to the call `ticket` admitted.
    pub fn record_ticket<T>(
        &self,
        gate: &GateKey,
        fingerprint: &str,
        ticket: Ticket,
        result: &Result<T, DcsError>,
        now: DateTime<Utc>,
    ) {
        let mut gates = self.lock();
        let Gates { accounts, breakers } = &mut *gates;
        let (Some(state), Some(breaker)) = (
            accounts.get_mut(&gate.account()),
            breakers.get_mut(&gate.breaker()),
        ) else {
            return;
        };
        let probing = ticket.probe;
        if probing {
            breaker.probing = false;
        }
        if ticket.unproven {
            state.unproven_in_flight = false;
        }
        match result {
            Ok(_) => {
                if !state.is_proven(fingerprint) {
                    if state.proven.len() >= MAX_PROVEN {
                        state.proven.pop_front();
                    }
                    state.proven.push_back(fingerprint.to_string());
                }
                breaker.server_failures = 0;
                breaker.open = None;
                breaker.open_for = BREAKER_OPEN;
            }
            Err(error @ (DcsError::Unauthorized(_) | DcsError::Forbidden(_))) => {
                // Revoked or wrong: this secret is no longer proven.
                state.proven.retain(|p| p != fingerprint);
                state.auth_blocked = Some((
                    later(now, AUTH_RETRY),
                    error.clone(),
                    fingerprint.to_string(),
                ));
                if state.auth_failures.len() >= MAX_AUTH_FAILURES {
                    state.auth_failures.pop_front();
                }
                state.auth_failures.push_back(now);
            }
            Err(error @ DcsError::Throttled { retry_after, .. }) => {
                let pause = retry_after
                    .unwrap_or(DEFAULT_THROTTLE_PAUSE)
                    .clamp(Duration::from_secs(1), crate::dcs::client::MAX_RETRY_AFTER);
                state.paused = Some((later(now, pause), error.clone()));
            }
            Err(error @ (DcsError::Server(_) | DcsError::Transport { .. })) => {
                breaker.server_failures = breaker.server_failures.saturating_add(1);
                if probing {
                    breaker.open_for = breaker.open_for.saturating_mul(2).min(BREAKER_MAX_OPEN);
                    breaker.open = Some((later(now, breaker.open_for), error.clone()));
                } else if breaker.server_failures >= BREAKER_THRESHOLD {
                    breaker.open = Some((later(now, breaker.open_for), error.clone()));
                }
            }
            Err(_) => {}
        }
    }

    /// A credentials Secret changed; its previous credentials had `previous`
    /// fingerprint and `principal`. A 401 block those very credentials caused is
    /// lifted, so the new content gets a try; a block someone else caused stays, and
    /// the cap on failures in a window always holds.
    pub fn credentials_changed(&self, principal: &str, previous: &str) {
        for ((_, gate_principal), state) in self.lock().accounts.iter_mut() {
            if gate_principal == principal
                && state
                    .auth_blocked
                    .as_ref()
                    .is_some_and(|(_, _, caused_by)| caused_by == previous)
            {
                state.auth_blocked = None;
            }
        }
    }
}

/// What a refusal says when the failure cap, not one 401, holds a key back.
fn auth_cap_error(failures: usize) -> DcsError {
    DcsError::Unauthorized(crate::dcs::ApiError {
        status: 401,
        error_code: None,
        error_msg: Some(format!(
            "{failures} signatures with this access key failed in the last 5 minutes; the operator waits so that the API gateway does not lock the key"
        )),
        request_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::ApiError;
    use chrono::TimeDelta;

    fn g(principal: &str) -> GateKey {
        GateKey {
            scope: GateScope::Cloud,
            principal: format!("ak:{principal}"),
            origin: "https://dcs.cn-north-4.myhuaweicloud.com:443".into(),
        }
    }

    fn api(status: u16) -> ApiError {
        ApiError {
            status,
            ..Default::default()
        }
    }

    /// A budget in which the credentials `fp` have already worked for `ak`.
    fn proven(rate: f64, burst: u32, now: DateTime<Utc>) -> ApiBudget {
        let budget = ApiBudget::new(rate, burst);
        assert_eq!(
            budget.admit(&g("ak"), "fp", now - TimeDelta::hours(1)),
            Admission::Go
        );
        budget.record::<()>(&g("ak"), "fp", &Ok(()), now - TimeDelta::hours(1));
        budget
    }

    #[test]
    fn token_bucket_limits_the_rate() {
        let now = Utc::now();
        let budget = proven(2.0, 3, now);
        let goes = (0..10)
            .filter(|_| budget.admit(&g("ak"), "fp", now) == Admission::Go)
            .count();
        assert_eq!(goes, 3, "the burst");
        assert!(matches!(
            budget.admit(&g("ak"), "fp", now),
            Admission::Wait(_)
        ));
        assert_eq!(
            budget.admit(&g("other"), "fp2", now),
            Admission::Go,
            "per key"
        );
        let later = now + TimeDelta::seconds(1);
        let goes = (0..10)
            .filter(|_| budget.admit(&g("ak"), "fp", later) == Admission::Go)
            .count();
        assert_eq!(goes, 2, "two a second");
    }

    #[test]
    fn auth_failure_blocks_the_key_for_five_minutes() {
        let budget = ApiBudget::new(100.0, 100);
        let now = Utc::now();
        assert_eq!(budget.admit(&g("ak"), "fp", now), Admission::Go);
        budget.record::<()>(&g("ak"), "fp", &Err(DcsError::Unauthorized(api(401))), now);
        assert!(matches!(
            budget.admit(&g("ak"), "fp", now + TimeDelta::seconds(299)),
            Admission::Refused(DcsError::Unauthorized(_))
        ));
        assert_eq!(
            budget.admit(&g("ak"), "fp", now + TimeDelta::seconds(300)),
            Admission::Go
        );
        budget.record::<()>(&g("ak"), "fp", &Err(DcsError::Forbidden(api(403))), now);
        budget.credentials_changed("ak:ak", "fp");
        assert_eq!(budget.admit(&g("ak"), "fp", now), Admission::Go);
    }

    #[test]
    fn unproven_secrets_go_one_at_a_time_and_a_failure_blocks_them_all() {
        let budget = ApiBudget::new(100.0, 100);
        let now = Utc::now();
        assert_eq!(budget.admit(&g("ak"), "wrong-1", now), Admission::Go);
        assert!(
            matches!(budget.admit(&g("ak"), "wrong-1", now), Admission::Wait(_)),
            "one at a time"
        );
        assert!(
            matches!(budget.admit(&g("ak"), "wrong-2", now), Admission::Wait(_)),
            "whatever the secret"
        );
        budget.record::<()>(
            &g("ak"),
            "wrong-1",
            &Err(DcsError::Unauthorized(api(401))),
            now,
        );
        assert!(matches!(
            budget.admit(&g("ak"), "wrong-2", now),
            Admission::Refused(_)
        ));
        // A proven secret for the same key keeps working (its successes also reset
        // the gateway's count of failures in a row).
        let budget = ApiBudget::new(100.0, 100);
        assert_eq!(budget.admit(&g("ak"), "right", now), Admission::Go);
        budget.record::<()>(&g("ak"), "right", &Ok(()), now);
        assert_eq!(budget.admit(&g("ak"), "right", now), Admission::Go);
        assert_eq!(
            budget.admit(&g("ak"), "right", now),
            Admission::Go,
            "proven: no longer one at a time"
        );
        assert_eq!(budget.admit(&g("ak"), "wrong", now), Admission::Go);
        budget.record::<()>(
            &g("ak"),
            "wrong",
            &Err(DcsError::Unauthorized(api(401))),
            now,
        );
        assert!(matches!(
            budget.admit(&g("ak"), "wrong", now),
            Admission::Refused(_)
        ));
        assert_eq!(budget.admit(&g("ak"), "right", now), Admission::Go);
    }

    #[test]
    fn throttling_pauses_every_caller_of_the_key() {
        let budget = ApiBudget::new(100.0, 100);
        let now = Utc::now();
        budget.admit(&g("ak"), "fp", now);
        let throttled = DcsError::Throttled {
            retry_after: Some(Duration::from_secs(7)),
            api: api(429),
        };
        budget.record::<()>(&g("ak"), "fp", &Err(throttled), now);
        assert!(matches!(
            budget.admit(&g("ak"), "fp", now + TimeDelta::seconds(6)),
            Admission::Refused(DcsError::Throttled { .. })
        ));
        assert_eq!(
            budget.admit(&g("ak"), "fp", now + TimeDelta::seconds(7)),
            Admission::Go
        );
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let mut now = Utc::now();
        let budget = proven(1000.0, 1000, now);
        let failure: Result<(), DcsError> = Err(DcsError::Server(api(503)));
        for _ in 0..BREAKER_THRESHOLD {
            assert_eq!(budget.admit(&g("ak"), "fp", now), Admission::Go);
            budget.record(&g("ak"), "fp", &failure, now);
        }
        assert!(matches!(
            budget.admit(&g("ak"), "fp", now),
            Admission::Refused(DcsError::Server(_))
        ));
        now += TimeDelta::seconds(30);
        assert_eq!(
            budget.admit(&g("ak"), "fp", now),
            Admission::Go,
            "one half-open probe"
        );
        assert!(
            matches!(budget.admit(&g("ak"), "fp", now), Admission::Refused(_)),
            "only one"
        );
        budget.record(&g("ak"), "fp", &failure, now);
        now += TimeDelta::seconds(30);
        assert!(
            matches!(budget.admit(&g("ak"), "fp", now), Admission::Refused(_)),
            "open twice as long"
        );
        now += TimeDelta::seconds(30);
        assert_eq!(budget.admit(&g("ak"), "fp", now), Admission::Go);
        budget.record::<()>(&g("ak"), "fp", &Ok(()), now);
        assert_eq!(
            budget.admit(&g("ak"), "fp", now),
            Admission::Go,
            "closed again"
        );
        assert_eq!(budget.admit(&g("ak"), "fp", now), Admission::Go);
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;
    use crate::dcs::ApiError;
    use chrono::TimeDelta;

    fn api(status: u16) -> ApiError {
        ApiError {
            status,
            ..Default::default()
        }
    }

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap()
    }

    #[test]
    fn region_hosts_share_a_gate_and_tenant_origins_get_their_own() {
        let creds = Credentials::access_key("AK", "SK", None);
        let a = gate_key(
            &endpoint("https://dcs.cn-north-4.myhuaweicloud.com"),
            &creds,
            &[],
        );
        let b = gate_key(
            &endpoint("https://DCS.ap-southeast-1.myhuaweicloud.com.:443"),
            &creds,
            &[],
        );
        assert_eq!(a.account(), b.account(), "one gate for every region");
        assert_ne!(a.breaker(), b.breaker(), "a breaker per region");
        assert_eq!(a.scope, GateScope::Cloud);
        let evil = gate_key(&endpoint("https://evil.example"), &creds, &[]);
        assert_eq!(
            evil.scope,
            GateScope::Origin("https://evil.example:443".into())
        );
        assert_ne!(evil, a);
        let sim = endpoint("http://127.0.0.1:9999");
        assert_eq!(
            gate_key(&sim, &creds, &["http://127.0.0.1:9999".into()]).scope,
            GateScope::Cloud
        );
    }

    #[test]
    fn a_hostile_origin_never_touches_the_cloud_gate() {
        let budget = ApiBudget::new(100.0, 100);
        let now = Utc::now();
        let cloud = GateKey {
            scope: GateScope::Cloud,
            principal: "ak:AK".into(),
            origin: "https://dcs.cn-north-4.myhuaweicloud.com:443".into(),
        };
        let hostile = GateKey {
            scope: GateScope::Origin("https://evil.example:443".into()),
            principal: "ak:AK".into(),
            origin: "https://evil.example:443".into(),
        };
        assert_eq!(budget.admit(&hostile, "evil", now), Admission::Go);
        budget.record::<()>(
            &hostile,
            "evil",
            &Err(DcsError::Throttled {
                retry_after: Some(Duration::from_secs(u64::MAX)),
                api: api(429),
            }),
            now,
        );
        for _ in 0..10 {
            if budget.admit(&hostile, "evil", now) == Admission::Go {
                budget.record::<()>(&hostile, "evil", &Err(DcsError::Server(api(503))), now);
            }
        }
        assert!(matches!(
            budget.admit(&hostile, "evil", now),
            Admission::Refused(_)
        ));
        assert_eq!(
            budget.admit(&cloud, "good", now),
            Admission::Go,
            "the cloud gate is untouched"
        );
        // The pause is clamped: 15 minutes at most, whatever the header said.
        assert!(matches!(
            budget.admit(&hostile, "evil", now + TimeDelta::minutes(15)),
            Admission::Go | Admission::Refused(DcsError::Server(_))
        ));
    }

    #[test]
    fn a_region_that_does_not_resolve_opens_only_its_own_breaker() {
        let budget = ApiBudget::new(100.0, 100);
        let now = Utc::now();
        let creds = Credentials::access_key("AK", "SK", None);
        let real = gate_key(
            &endpoint("https://dcs.cn-north-4.myhuaweicloud.com"),
            &creds,
            &[],
        );
        let bogus = gate_key(
            &endpoint("https://dcs.zz-none-1.myhuaweicloud.com"),
            &creds,
            &[],
        );
        assert_eq!(
            real.account(),
            bogus.account(),
            "one account at the gateway"
        );
        for _ in 0..10 {
            if budget.admit(&bogus, "other", now) == Admission::Go {
                let unreachable: Result<(), DcsError> = Err(DcsError::Transport {
                    message: "dns error".into(),
                    timeout: false,
                });
                budget.record(&bogus, "other", &unreachable, now);
            }
        }
        assert!(matches!(
            budget.admit(&bogus, "other", now),
            Admission::Refused(_)
        ));
        assert_eq!(
            budget.admit(&real, "good", now),
            Admission::Go,
            "the real region still goes"
        );
    }

    #[test]
    fn at_most_three_failed_signatures_in_five_minutes_whatever_the_edits() {
        let budget = ApiBudget::new(100.0, 100);
        let cloud = GateKey {
            scope: GateScope::Cloud,
            principal: "ak:AK".into(),
            origin: "https://dcs.cn-north-4.myhuaweicloud.com:443".into(),
        };
        let start = Utc::now();
        let mut failures = Vec::new();
        // A Secret edited every 10 seconds for 15 minutes, each content wrong.
        for i in 0..90 {
            let now = start + TimeDelta::seconds(10 * i);
            let fingerprint = format!("wrong-{i}");
            if i > 0 {
                budget.credentials_changed("ak:AK", &format!("wrong-{}", i - 1));
            }
            if budget.admit(&cloud, &fingerprint, now) == Admission::Go {
                budget.record::<()>(
                    &cloud,
                    &fingerprint,
                    &Err(DcsError::Unauthorized(api(401))),
                    now,
                );
                failures.push(now);
            }
        }
        assert!(!failures.is_empty());
        for (i, at) in failures.iter().enumerate() {
            let in_window = failures[i..]
                .iter()
                .filter(|later| **later < *at + TimeDelta::minutes(5))
                .count();
            assert!(
                in_window <= MAX_AUTH_FAILURES,
                "{in_window} failures within 5 minutes of {at}"
            );
        }
    }

    #[test]
    fn only_the_secret_that_caused_a_block_can_lift_it() {
        let budget = ApiBudget::new(100.0, 100);
        let cloud = GateKey {
            scope: GateScope::Cloud,
            principal: "ak:AK".into(),
            origin: "https://dcs.cn-north-4.myhuaweicloud.com:443".into(),
        };
        let now = Utc::now();
        assert_eq!(budget.admit(&cloud, "victim-old", now), Admission::Go);
        budget.record::<()>(
            &cloud,
            "victim-old",
            &Err(DcsError::Unauthorized(api(401))),
            now,
        );
        budget.credentials_changed("ak:AK", "attacker");
        assert!(matches!(
            budget.admit(&cloud, "attacker-new", now),
            Admission::Refused(_)
        ));
        budget.credentials_changed("ak:AK", "victim-old");
        assert_eq!(budget.admit(&cloud, "victim-new", now), Admission::Go);
    }

    #[test]
    fn idle_gates_are_forgotten() {
        let budget = ApiBudget::new(100.0, 100);
        let now = Utc::now();
        for i in 0..100 {
            let gate = GateKey {
                scope: GateScope::Origin(format!("https://h{i}.example:443")),
                principal: "ak:AK".into(),
                origin: format!("https://h{i}.example:443"),
            };
            budget.admit(&gate, "fp", now);
            budget.record::<()>(&gate, "fp", &Ok(()), now);
        }
        assert_eq!(budget.len(), 200, "a gate and a breaker each");
        budget.prune(now + TimeDelta::minutes(5));
        assert_eq!(budget.len(), 200, "recently used");
        budget.prune(now + TimeDelta::minutes(11));
        assert_eq!(budget.len(), 0);
    }

    #[test]
    fn a_call_gives_back_only_what_it_took() {
        let budget = ApiBudget::new(1000.0, 1000);
        let gate = GateKey {
            scope: GateScope::Origin("https://x.example:443".into()),
            principal: "ak:AK".into(),
            origin: "https://x.example:443".into(),
        };
        let now = Utc::now();
        // Open the breaker with a proven secret, then let the probe out.
        let (go, ticket) = budget.admit_ticket(&gate, "fp", now);
        assert_eq!(go, Admission::Go);
        budget.record_ticket::<()>(&gate, "fp", ticket, &Ok(()), now);
        for _ in 0..BREAKER_THRESHOLD {
            let (_, ticket) = budget.admit_ticket(&gate, "fp", now);
            budget.record_ticket::<()>(&gate, "fp", ticket, &Err(DcsError::Server(api(503))), now);
        }
        let later = now + TimeDelta::seconds(31);
        let (probe, probe_ticket) = budget.admit_ticket(&gate, "fp", later);
        assert_eq!(probe, Admission::Go);
        // Another call, refused while the probe is out, gives back nothing it holds.
        let (refused, nothing) = budget.admit_ticket(&gate, "fp", later);
        assert!(matches!(refused, Admission::Refused(_)));
        budget.release_ticket(&gate, nothing);
        assert!(
            matches!(budget.admit(&gate, "fp", later), Admission::Refused(_)),
            "still one probe at a time"
        );
        budget.record_ticket::<()>(&gate, "fp", probe_ticket, &Ok(()), later);
        assert_eq!(
            budget.admit(&gate, "fp", later),
            Admission::Go,
            "closed again"
        );
        // An unproven call in flight is not released by another one's answer.
        let (go, unproven) = budget.admit_ticket(&gate, "new-secret", later);
        assert_eq!(go, Admission::Go);
        let (_, proven_ticket) = budget.admit_ticket(&gate, "fp", later);
        budget.record_ticket::<()>(&gate, "fp", proven_ticket, &Ok(()), later);
        assert!(
            matches!(
                budget.admit(&gate, "other-secret", later),
                Admission::Wait(_)
            ),
            "the unproven call is still in flight"
        );
        budget.record_ticket::<()>(&gate, "new-secret", unproven, &Ok(()), later);
        assert_eq!(budget.admit(&gate, "other-secret", later), Admission::Go);
    }

    #[test]
    fn proven_secrets_are_bounded() {
        let budget = ApiBudget::new(1000.0, 1000);
        let gate = GateKey {
            scope: GateScope::Origin("https://fake.example:443".into()),
            principal: "ak:AK".into(),
            origin: "https://fake.example:443".into(),
        };
        let now = Utc::now();
        for i in 0..1000 {
            let fp = format!("fp-{i}");
            assert_eq!(budget.admit(&gate, &fp, now), Admission::Go);
            budget.record::<()>(&gate, &fp, &Ok(()), now);
        }
        assert!(budget.lock().accounts[&gate.account()].proven.len() <= MAX_PROVEN);
    }
}
