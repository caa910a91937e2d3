//! The wake-up queue in front of kube's Controller, one per served scope: which
//! DcsInstances are due a reconcile (now, or at a later time), handed to the
//! Controller a few at a time.
//!
//! kube's Controller keeps every queued request and every requeue timer in its
//! scheduler, each twice (a map and a delay queue) with the object's reference, and
//! never gives the room back: at 10 000 DcsInstances, all queued at start-up and
//! each holding a timer afterwards, about 600 bytes an object. Here an object due
//! costs one shared "namespace/name" string and a set entry, a timer about the
//! same, and the Controller holds at most `limit` requests.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::crd::DcsInstance;

/// A request handed to the Controller that has not started after this long is
/// taken as dropped (its object vanished from the watch cache before its turn), so
/// a later wake-up of the same name is handed again. A request the Controller
/// still holds then is merged with the new one there: one reconcile, not two.
const HANDED_EXPIRY: Duration = Duration::from_secs(60);
/// How often timers of deleted objects are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Whether an object is still in the watch cache.
type Alive<'a> = &'a (dyn Fn(&ObjectRef<DcsInstance>) -> bool + Sync);

/// An object by "namespace/name" (neither may contain a slash), shared by the
/// queue's sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key(Arc<str>);

impl Key {
    fn of(object: &ObjectRef<DcsInstance>) -> Self {
        let namespace = object.namespace.as_deref().unwrap_or_default();
        Key(format!("{namespace}/{}", object.name).into())
    }

    fn object(&self) -> ObjectRef<DcsInstance> {
        match self.0.split_once('/') {
            Some(("", name)) => ObjectRef::new(name),
            Some((namespace, name)) => ObjectRef::new(name).within(namespace),
            None => ObjectRef::new(&self.0),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Due now, oldest first; `queued` holds the same keys.
    due: VecDeque<Key>,
    queued: HashSet<Key>,
    /// Handed to the Controller and not started yet, with when.
    handed: HashMap<Key, Instant>,
    /// Later wake-ups, the earliest per object; `timer_of` indexes them.
    timers: BTreeSet<(Instant, Key)>,
    timer_of: HashMap<Key, Instant>,
    /// When timers of objects gone from the watch cache were last dropped.
    pruned_at: Option<Instant>,
}

impl State {
    fn wake(&mut self, key: Key) {
        if self.queued.insert(key.clone()) {
            self.due.push_back(key);
        }
    }

    fn cancel_timer(&mut self, key: &Key) {
        if let Some(at) = self.timer_of.remove(key) {
            self.timers.remove(&(at, key.clone()));
        }
    }

    /// Moves the timers that are due by `now` to the queue.
    fn fire_timers(&mut self, now: Instant) {
        while let Some((at, _)) = self.timers.first()
            && *at <= now
        {
            if let Some((_, key)) = self.timers.pop_first() {
                self.timer_of.remove(&key);
                self.wake(key);
            }
        }
    }

    /// Drops, once every [`PRUNE_EVERY`], the timers of objects gone from the watch
    /// cache: a deleted object's timer would otherwise stay until it fires (up to
    /// three poll intervals).
    fn prune(&mut self, now: Instant, alive: Alive<'_>) {
        if self
            .pruned_at
            .is_some_and(|at| now.saturating_duration_since(at) < PRUNE_EVERY)
        {
            return;
        }
        self.pruned_at = Some(now);
        let gone: Vec<Key> = self
            .timer_of
            .keys()
            .filter(|key| !alive(&key.object()))
            .cloned()
            .collect();
        for key in &gone {
            self.cancel_timer(key);
        }
    }

    /// The next object to hand over: the oldest due one not already handed (those
    /// wait their turn in the queue). Objects `alive` denies are dropped: they
    /// left the watch cache, and a watch event wakes them if they come back.
    fn take(&mut self, alive: Alive<'_>) -> Option<Key> {
        let mut index = 0;
        while let Some(key) = self.due.get(index) {
            if self.handed.contains_key(key) {
                index += 1;
                continue;
            }
            let key = self.due.remove(index)?;
            self.queued.remove(&key);
            if alive(&key.object()) {
                return Some(key);
            }
        }
        None
    }
}

/// The queue; see the module documentation.
#[derive(Debug)]
pub struct WakeQueue {
    state: Mutex<State>,
    changed: Notify,
    limit: usize,
}

impl WakeQueue {
    /// A queue that lets the Controller hold at most `limit` requests (at least 1).
    pub fn new(limit: usize) -> Self {
        Self {
            state: Mutex::default(),
            changed: Notify::new(),
            limit: limit.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Due now (once, however often it is asked before its turn).
    pub fn wake(&self, object: &ObjectRef<DcsInstance>) {
        self.lock().wake(Key::of(object));
        self.changed.notify_one();
    }

    /// Due `after` from now, unless an earlier wake-up is set already.
    pub fn wake_after(&self, object: &ObjectRef<DcsInstance>, after: Duration) {
        let key = Key::of(object);
        let at = Instant::now() + after;
        let mut state = self.lock();
        match state.timer_of.get(&key) {
            Some(earlier) if *earlier <= at => return,
            _ => {}
        }
        state.cancel_timer(&key);
        state.timers.insert((at, key.clone()));
        state.timer_of.insert(key, at);
        drop(state);
        self.changed.notify_one();
    }

    /// Its reconcile has started: it no longer counts against the limit, and a
    /// timer it had is spent (the reconcile sets the next one).
    pub fn started(&self, object: &ObjectRef<DcsInstance>) {
        let key = Key::of(object);
        let mut state = self.lock();
        state.handed.remove(&key);
        state.cancel_timer(&key);
        drop(state);
        self.changed.notify_one();
    }

    /// Objects due now, objects with a timer, objects handed over.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let state = self.lock();
        (state.due.len(), state.timers.len(), state.handed.len())
    }

    /// The next object for the Controller, when one is due and the Controller
    /// holds fewer than the limit.
    pub async fn next(&self, alive: Alive<'_>) -> ObjectRef<DcsInstance> {
        loop {
            // Registered before looking, so a change made meanwhile is not missed.
            let changed = self.changed.notified();
            let now = Instant::now();
            let next_timer = {
                let mut state = self.lock();
                state.prune(now, alive);
                state.fire_timers(now);
                state
                    .handed
                    .retain(|_, at| now.saturating_duration_since(*at) < HANDED_EXPIRY);
                if state.handed.len() < self.limit
                    && let Some(key) = state.take(alive)
                {
                    state.handed.insert(key.clone(), now);
                    return key.object();
                }
                let first_timer = state.timers.first().map(|(at, _)| *at);
                // Handed requests expire: look again then, whatever else happens.
                let first_expiry = state.handed.values().min().map(|at| *at + HANDED_EXPIRY);
                first_timer.into_iter().chain(first_expiry).min()
            };
            match next_timer {
                Some(at) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// The Controller's trigger: [`WakeQueue::next`] as a stream.
    pub fn stream(
        self: Arc<Self>,
        alive: impl Fn(&ObjectRef<DcsInstance>) -> bool + Send + Sync + 'static,
    ) -> impl futures::Stream<Item = ObjectRef<DcsInstance>> + Send + 'static {
        let alive = Arc::new(alive);
        futures::stream::unfold(self, move |queue| {
            let alive = alive.clone();
            async move {
                let object = queue.next(alive.as_ref()).await;
                Some((object, queue))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectRef<DcsInstance> {
        ObjectRef::new(name).within("tenant")
    }

    fn always(_: &ObjectRef<DcsInstance>) -> bool {
        true
    }

    async fn next_now(queue: &WakeQueue) -> Option<ObjectRef<DcsInstance>> {
        tokio::time::timeout(Duration::from_millis(1), queue.next(&always))
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn wake_ups_are_handed_once_in_order_and_at_most_limit_at_a_time() {
        let queue = WakeQueue::new(2);
        for name in ["a", "b", "a", "c", "b"] {
            queue.wake(&object(name));
        }
        assert_eq!(queue.sizes(), (3, 0, 0), "asked twice, queued once");
        assert_eq!(next_now(&queue).await, Some(object("a")));
        assert_eq!(next_now(&queue).await, Some(object("b")));
        assert_eq!(next_now(&queue).await, None, "the Controller holds two");
        queue.started(&object("a"));
        assert_eq!(next_now(&queue).await, Some(object("c")));
        assert_eq!(queue.sizes(), (0, 0, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_while_handed_waits_for_the_start_then_is_handed_again() {
        let queue = WakeQueue::new(4);
        queue.wake(&object("a"));
        assert_eq!(next_now(&queue).await, Some(object("a")));
        queue.wake(&object("a"));
        assert_eq!(
            next_now(&queue).await,
            None,
            "not twice into the Controller"
        );
        queue.started(&object("a"));
        assert_eq!(next_now(&queue).await, Some(object("a")), "not lost either");
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_at_their_time_the_earliest_wins_and_a_start_spends_them() {
        let queue = WakeQueue::new(4);
        queue.wake_after(&object("a"), Duration::from_secs(30));
        queue.wake_after(&object("a"), Duration::from_secs(60));
        queue.wake_after(&object("b"), Duration::from_secs(10));
        queue.wake_after(&object("b"), Duration::from_secs(5));
        assert_eq!(queue.sizes(), (0, 2, 0));
        assert_eq!(next_now(&queue).await, None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(next_now(&queue).await, Some(object("b")));
        // A reconcile that started for another reason spends the timer.
        queue.started(&object("a"));
        assert_eq!(queue.sizes(), (0, 0, 1));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(next_now(&queue).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleeping_taker_wakes_for_the_first_timer() {
        let queue = Arc::new(WakeQueue::new(4));
        queue.wake_after(&object("a"), Duration::from_secs(30));
        let taker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next(&always).await }
        });
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(taker.await.unwrap(), object("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn objects_gone_from_the_cache_are_dropped_and_lost_hand_overs_expire() {
        let queue = WakeQueue::new(1);
        let alive = |object: &ObjectRef<DcsInstance>| object.name != "gone";
        queue.wake(&object("gone"));
        queue.wake(&object("a"));
        let taken = tokio::time::timeout(Duration::from_millis(1), queue.next(&alive)).await;
        assert_eq!(taken.ok(), Some(object("a")));
        assert_eq!(queue.sizes(), (0, 0, 1), "gone is dropped");
        // "a" never starts (the Controller dropped it): the slot comes back.
        queue.wake(&object("b"));
        assert_eq!(next_now(&queue).await, None);
        tokio::time::advance(HANDED_EXPIRY).await;
        assert_eq!(next_now(&queue).await, Some(object("b")));
    }

    #[tokio::test(start_paused = true)]
    async fn timers_of_deleted_objects_are_dropped_within_a_minute() {
        let queue = WakeQueue::new(4);
        let alive = |object: &ObjectRef<DcsInstance>| object.name != "deleted";
        queue.wake_after(&object("deleted"), Duration::from_secs(3600));
        queue.wake_after(&object("kept"), Duration::from_secs(3600));
        let take = || tokio::time::timeout(Duration::from_millis(1), queue.next(&alive));
        assert!(take().await.is_err());
        assert_eq!(queue.sizes(), (0, 1, 0), "the first look prunes");
        queue.wake_after(&object("deleted"), Duration::from_secs(3600));
        assert!(take().await.is_err());
        assert_eq!(queue.sizes(), (0, 2, 0), "then not again for a minute");
        tokio::time::advance(PRUNE_EVERY).await;
        assert!(take().await.is_err());
        assert_eq!(queue.sizes(), (0, 1, 0));
    }

    #[test]
    fn keys_round_trip() {
        for object in [object("cache"), ObjectRef::new("cluster-wide")] {
            assert_eq!(Key::of(&object).object(), object);
        }
    }
}
