//! A hostile tenant in the API stand-in, for the benchmark's `--hostile` scenario
//! and `tests/integration/hostile_process.rs`: DcsInstances naming endpoints it
//! controls (one [`HostileEndpoint`] each), with a credentials Secret that reuses
//! the healthy tenant's access key (access keys are not secret) and a wrong secret
//! key.
//!
//! Included through `#[path]` beside `harness`, `hostile` and `standin` (it names
//! them through `super::`), so not every item is used by both.
#![allow(dead_code)]

use dcs_operator::dcs::sim::SimConfig;

use super::harness;
use super::hostile::{HostileEndpoint, Mode};
use super::standin::{self, StandIn};

/// The namespace of every hostile mode but the tarpits.
pub const HOSTILE_NS: &str = "evil";
/// The tarpits live in a namespace of their own: they take all of its DCS slots
/// (`--namespace-concurrency`), and only its, so the other modes still get answers.
pub const TARPIT_NS: &str = "tarpit";
/// The hostile credentials Secret, the same in both namespaces.
pub const HOSTILE_SECRET: &str = "evil-credentials";
pub const WRONG_SECRET_KEY: &str = "not-the-secret-key";

/// The hostile tenant: its endpoints, and how many DcsInstances it has stored.
pub struct HostileTenant {
    pub endpoints: Vec<HostileEndpoint>,
    /// DcsInstances stored so far, named `evil-<i>` (the next index).
    pub instances: usize,
}

impl HostileTenant {
    /// Stores the hostile namespaces and their credentials Secrets; no DcsInstance yet.
    pub fn new(state: &StandIn) -> Self {
        for ns in [HOSTILE_NS, TARPIT_NS] {
            state.insert(standin::NAMESPACES, harness::namespace_object(ns));
            state.insert(
                standin::SECRETS,
                harness::secret_with_keys(
                    ns,
                    HOSTILE_SECRET,
                    SimConfig::DEFAULT_ACCESS_KEY,
                    WRONG_SECRET_KEY,
                ),
            );
        }
        Self {
            endpoints: Vec::new(),
            instances: 0,
        }
    }

    /// Every mode but the tarpit in [`HOSTILE_NS`], and `tarpits` tarpits in
    /// [`TARPIT_NS`].
    pub async fn full(state: &StandIn, tarpits: usize) -> std::io::Result<Self> {
        let mut tenant = Self::new(state);
        for mode in Mode::ALL_BUT_TARPIT {
            tenant.add(state, mode).await?;
        }
        for _ in 0..tarpits {
            tenant.add(state, Mode::Tarpit).await?;
        }
        Ok(tenant)
    }

    /// Starts one endpoint serving `mode` and stores a DcsInstance naming it.
    pub async fn add(&mut self, state: &StandIn, mode: Mode) -> std::io::Result<()> {
        let id = harness::instance_id(100_000 + self.instances);
        let endpoint = HostileEndpoint::start(mode, &id).await?;
        let ns = if mode == Mode::Tarpit {
            TARPIT_NS
        } else {
            HOSTILE_NS
        };
        self.add_toward(state, &endpoint.base_url, ns);
        self.endpoints.push(endpoint);
        Ok(())
    }

    /// Stores a DcsInstance naming `endpoint` with the hostile credentials.
    pub fn add_toward(&mut self, state: &StandIn, endpoint: &str, namespace: &str) {
        let i = self.instances;
        self.instances += 1;
        state.insert(
            standin::DCS_INSTANCES,
            harness::dcs_instance_named(
                namespace,
                &format!("evil-{i}"),
                &harness::instance_id(100_000 + i),
                endpoint,
                HOSTILE_SECRET,
            ),
        );
    }

    /// The fewest requests any of its endpoints has received.
    pub fn min_requests(&self) -> u64 {
        self.endpoints
            .iter()
            .map(HostileEndpoint::requests)
            .min()
            .unwrap_or(0)
    }

    /// `mode: requests` for every endpoint, tarpits summed.
    pub fn request_summary(&self) -> String {
        let mut parts: Vec<String> = self
            .endpoints
            .iter()
            .filter(|e| e.mode != Mode::Tarpit)
            .map(|e| format!("{:?}: {}", e.mode, e.requests()))
            .collect();
        let tarpits: Vec<u64> = self
            .endpoints
            .iter()
            .filter(|e| e.mode == Mode::Tarpit)
            .map(HostileEndpoint::requests)
            .collect();
        if !tarpits.is_empty() {
            parts.push(format!(
                "{} tarpits: {} (min {})",
                tarpits.len(),
                tarpits.iter().sum::<u64>(),
                tarpits.iter().min().unwrap_or(&0)
            ));
        }
        parts.join(", ")
    }
}

/// DcsInstances of `namespace` whose Ready condition is True.
pub fn ready_in(state: &StandIn, namespace: &str) -> usize {
    state
        .objects(standin::DCS_INSTANCES)
        .iter()
        .filter(|o| o.pointer("/metadata/namespace").and_then(|v| v.as_str()) == Some(namespace))
        .filter(|o| standin::is_ready(o))
        .count()
}
