//! Leader election: a Lease decides the single writer (kube-lease-manager), and every
//! write goes through one gate with a local deadline (last confirmed renewal + lease
//! duration - a margin). A leader cut off from the API server keeps believing it
//! leads; past the deadline it stops writing by itself, before another replica may
//! take the Lease.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::clock::SharedClock;

/// How long a Lease is valid after a renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The holder renews this long before the Lease would expire.
pub const LEASE_GRACE: Duration = Duration::from_secs(5);
/// Writes stop this long before the Lease could be taken by another replica.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

pub struct LeaderGate {
    elected: bool,
    clock: SharedClock,
    deadline: Mutex<Option<DateTime<Utc>>>,
    leading: watch::Sender<bool>,
}

impl std::fmt::Debug for LeaderGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderGate")
            .field("elected", &self.elected)
            .finish_non_exhaustive()
    }
}

impl LeaderGate {
    /// No election: this process is the only writer.
    pub fn always(clock: SharedClock) -> Self {
        Self {
            elected: false,
            clock,
            deadline: Mutex::new(None),
            leading: watch::Sender::new(true),
        }
    }

    /// Writes only while a confirmed Lease renewal is recent enough.
    pub fn elected(clock: SharedClock) -> Self {
        Self {
            elected: true,
            clock,
            deadline: Mutex::new(None),
            leading: watch::Sender::new(false),
        }
    }

    pub fn may_write(&self) -> bool {
        if !self.elected {
            return true;
        }
        let now = self.clock.now();
        self.deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|deadline| now < deadline)
    }

    /// The API server holds a renewal of our Lease made at `renewed_at`.
    pub fn renewed(&self, renewed_at: DateTime<Utc>, lease_duration: Duration) {
        let valid = lease_duration.saturating_sub(DEADLINE_MARGIN);
        // The renewal time comes from the API server: saturate, never panic.
        let deadline = crate::clock::later(renewed_at, valid);
        let now = self.clock.now();
        let previous = self
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(deadline);
        // Regaining the gate after a lapse counts like becoming the leader: work
        // refused meanwhile is done once more for every object.
        let lapsed = previous.is_some_and(|before| before <= now) && deadline > now;
        self.leading
            .send_if_modified(|leading| !std::mem::replace(leading, true) || lapsed);
    }

    /// Another replica holds the Lease, or ours was released.
    pub fn lost(&self) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.leading
            .send_if_modified(|leading| std::mem::replace(leading, false));
    }

    /// True while this replica holds the Lease (even if a renewal is overdue and
    /// writes are paused).
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Tells when this replica became (true) or stopped being (false) the leader.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }
}

fn to_chrono(timestamp: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(
        timestamp.as_second(),
        timestamp.subsec_nanosecond().try_into().ok()?,
    )
}

/// Takes part in the election until the process ends: kube-lease-manager acquires
/// and renews the Lease; a watch on the Lease confirms each renewal to the gate.
pub async fn run_election(
    client: Client,
    lease_name: String,
    namespace: String,
    identity: String,
    gate: std::sync::Arc<LeaderGate>,
) -> anyhow::Result<()> {
    let manager = LeaseManagerBuilder::new(client.clone(), &lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(LEASE_DURATION.as_secs())
        .with_grace(LEASE_GRACE.as_secs())
        .with_create_mode(LeaseCreateMode::AutoCreate)
        .with_field_manager("dcs-operator")
        .build()
        .await?;
    let (mut leading, _task) = manager.watch().await;
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={lease_name}"));
    let mut confirmations = watcher(leases, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    info!(lease = %lease_name, namespace = %namespace, identity = %identity, "joined the leader election");
    loop {
        tokio::select! {
            changed = leading.changed() => {
                if changed.is_err() {
                    warn!("the lease manager stopped; this replica no longer writes");
                    gate.lost();
                    return Ok(());
                }
                if !*leading.borrow_and_update() {
                    info!("lost the leadership");
                    gate.lost();
                }
            }
            lease = confirmations.next() => match lease {
                Some(Ok(lease)) => {
                    let spec = lease.spec.unwrap_or_default();
                    let ours = spec.holder_identity.as_deref() == Some(identity.as_str());
                    let duration = spec
                        .lease_duration_seconds
                        .and_then(|s| u64::try_from(s).ok())
                        .map(Duration::from_secs)
                        // Never trust a longer Lease than the one we asked for.
                        .map_or(LEASE_DURATION, |d| d.min(LEASE_DURATION));
                    match (ours, spec.renew_time.as_ref().and_then(|t| to_chrono(&t.0))) {
                        (true, Some(renewed_at)) => gate.renewed(renewed_at, duration),
                        _ => gate.lost(),
                    }
                }
                Some(Err(error)) => warn!("watching the Lease failed: {error}"),
                None => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use chrono::TimeDelta;
    use std::sync::Arc;

    /// A Lease as the API server keeps it: a holder and the time of its last renewal.
    struct FakeLease {
        holder: Option<&'static str>,
        renewed_at: DateTime<Utc>,
    }

    impl FakeLease {
        /// What kube-lease-manager does each tick: renew our Lease, or take an expired one.
        fn try_renew(&mut self, who: &'static str, now: DateTime<Utc>) -> bool {
            let expired = now >= self.renewed_at + TimeDelta::from_std(LEASE_DURATION).unwrap();
            if self.holder == Some(who) || self.holder.is_none() || expired {
                self.holder = Some(who);
                self.renewed_at = now;
                true
            } else {
                false
            }
        }
    }

    #[test]
    fn two_replicas_never_both_write_when_renewals_fail() {
        let start = Utc::now();
        let clock = ManualClock::new(start);
        let a = LeaderGate::elected(Arc::new(clock.clone()));
        let b = LeaderGate::elected(Arc::new(clock.clone()));
        let mut lease = FakeLease {
            holder: None,
            renewed_at: start,
        };
        let (mut a_wrote, mut b_wrote) = (0, 0);
        for second in 0..120 {
            let now = clock.now();
            // A is cut off from the API server from second 30 on: its renewals fail
            // and it hears nothing, so its gate only has the clock to go by.
            if second < 30 && second % 10 == 0 && lease.try_renew("a", now) {
                a.renewed(now, LEASE_DURATION);
            }
            if second % 2 == 1 {
                if lease.try_renew("b", now) {
                    b.renewed(now, LEASE_DURATION);
                } else {
                    b.lost();
                }
            }
            assert!(
                !(a.may_write() && b.may_write()),
                "both write at second {second}"
            );
            a_wrote += usize::from(a.may_write());
            b_wrote += usize::from(b.may_write());
            clock.advance(TimeDelta::seconds(1));
        }
        assert!(a_wrote > 20, "A led before the cut");
        assert!(b_wrote > 50, "B took over after the Lease expired");
        assert!(!a.may_write(), "A stopped writing by itself");
    }

    #[test]
    fn no_election_always_writes_and_an_elected_gate_starts_closed() {
        let clock = ManualClock::new(Utc::now());
        assert!(LeaderGate::always(Arc::new(clock.clone())).may_write());
        let gate = LeaderGate::elected(Arc::new(clock.clone()));
        assert!(!gate.may_write());
        let mut leading = gate.subscribe();
        gate.renewed(clock.now(), LEASE_DURATION);
        assert!(gate.may_write());
        assert!(leading.has_changed().unwrap());
        assert!(*leading.borrow_and_update());
        clock.advance(TimeDelta::from_std(LEASE_DURATION - DEADLINE_MARGIN).unwrap());
        assert!(!gate.may_write(), "the deadline passed without a renewal");
        assert!(gate.is_leading(), "still the holder: a lapse, not a loss");
        // The renewal comes back: subscribers hear of it, as of a new leadership.
        gate.renewed(clock.now(), LEASE_DURATION);
        assert!(gate.may_write());
        assert!(
            leading.has_changed().unwrap(),
            "regaining the gate is announced"
        );
        assert!(*leading.borrow_and_update());
        // An ordinary renewal before the deadline is not announced.
        gate.renewed(clock.now(), LEASE_DURATION);
        assert!(!leading.has_changed().unwrap());
        clock.advance(TimeDelta::from_std(LEASE_DURATION - DEADLINE_MARGIN).unwrap());
        gate.lost();
        assert!(!*leading.borrow());
    }
}
