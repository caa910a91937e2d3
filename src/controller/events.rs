//! Publishing Kubernetes Events (events.k8s.io/v1) directly, with a small bounded
//! memory of recent ones so that a repeat becomes a series count on the first
//! Event instead of a new object.
//!
//! Why not kube's `Recorder`: it keeps every Event it published, whole, for six
//! minutes. At start-up that is one BecameReady Event per DcsInstance, about 2 KiB
//! each, 20 MiB at 10 000 objects, for nothing: Events are published on transitions
//! only, so a repeat within minutes is rare. Here the memory is a fixed number of
//! small entries; when it is full the oldest is forgotten, and a repeat of a
//! forgotten Event is simply a new Event.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::dcs::bounded::clip_bytes;

/// Recent Events remembered for series counting.
pub const RECENT_CAPACITY: usize = 256;
/// A repeat within this long of the last one counts into its series (as kube's
/// Recorder does).
pub const SERIES_WINDOW: TimeDelta = TimeDelta::minutes(6);
/// The API server refuses longer notes.
pub const MAX_NOTE_BYTES: usize = 1024;
/// The API server refuses longer reasons and actions.
const MAX_REASON_BYTES: usize = 128;
/// Object names are at most 253 bytes; the Event's name adds `.` and 16 hex digits.
const MAX_NAME_PREFIX_BYTES: usize = 253 - 17;

/// One Event to publish about one object.
#[derive(Debug, Clone, Copy)]
pub struct EventSpec<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub note: &'a str,
    /// What the operator was doing (`Observe`, `Manage`).
    pub action: &'a str,
}

/// What publishing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A new Event object.
    Created,
    /// The repeat of a recent Event: its series count went up.
    Repeated,
}

/// A recent Event: enough to patch its series, and to tell a hash collision from a
/// repeat (the regarding object must match, so one object's input can never touch
/// another object's Events).
#[derive(Debug)]
struct Recent {
    namespace: Box<str>,
    regarding_uid: Box<str>,
    event_name: Box<str>,
    count: i32,
    last: DateTime<Utc>,
}

/// Publishes Events for one operator replica.
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
    /// Keyed per process: which notes collide cannot be worked out from outside.
    hasher: RandomState,
    recent: Mutex<HashMap<u64, Recent>>,
}

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisher")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl EventPublisher {
    /// `controller` names the operator (reportingController); `instance` this
    /// replica (reportingInstance, the controller's name when unknown).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            hasher: RandomState::new(),
            recent: Mutex::default(),
        }
    }

    /// Entries remembered now (for the cache-size metric and tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Recent>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes `event` about `regarding` at `now`: a new Event, or the series
    /// count of the same Event published within [`SERIES_WINDOW`].
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        event: EventSpec<'_>,
        now: DateTime<Utc>,
    ) -> Result<Published, kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let uid = regarding.uid.as_deref().unwrap_or_default();
        let note = clip_bytes(event.note, MAX_NOTE_BYTES);
        let key = self.key(namespace, uid, &event, note);
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        if let Some((name, count)) = self.repeat_of(key, namespace, uid, now) {
            let patch = json!({"series": {"count": count, "lastObservedTime": micro_time(now)}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.remember(key, namespace, uid, name, count, now);
                    return Ok(Published::Repeated);
                }
                // Gone meanwhile (Events expire): publish it anew.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let body = self.new_event(regarding, &event, note, now);
        let name = body.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &body).await?;
        self.remember(key, namespace, uid, name.into(), 1, now);
        Ok(Published::Created)
    }

    fn key(&self, namespace: &str, uid: &str, event: &EventSpec<'_>, note: &str) -> u64 {
        self.hasher.hash_one((
            namespace,
            uid,
            event.warning,
            event.reason,
            event.action,
            note,
        ))
    }

    /// The name and next series count of the recent Event this one repeats.
    fn repeat_of(
        &self,
        key: u64,
        namespace: &str,
        uid: &str,
        now: DateTime<Utc>,
    ) -> Option<(Box<str>, i32)> {
        let recent = self.lock();
        let entry = recent.get(&key)?;
        let same_object = &*entry.namespace == namespace && &*entry.regarding_uid == uid;
        let in_window = now - entry.last < SERIES_WINDOW;
        (same_object && in_window)
            .then(|| (entry.event_name.clone(), entry.count.saturating_add(1)))
    }

    /// Remembers a published Event, forgetting expired entries and, when full, the
    /// one published longest ago.
    fn remember(
        &self,
        key: u64,
        namespace: &str,
        uid: &str,
        event_name: Box<str>,
        count: i32,
        now: DateTime<Utc>,
    ) {
        let mut recent = self.lock();
        recent.retain(|_, entry| now - entry.last < SERIES_WINDOW);
        if recent.len() >= RECENT_CAPACITY && !recent.contains_key(&key) {
            let oldest = recent
                .iter()
                .min_by_key(|(_, entry)| entry.last)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                recent.remove(&oldest);
            }
        }
        recent.insert(
            key,
            Recent {
                namespace: namespace.into(),
                regarding_uid: uid.into(),
                event_name,
                count,
                last: now,
            },
        );
    }

    fn new_event(
        &self,
        regarding: &ObjectReference,
        event: &EventSpec<'_>,
        note: &str,
        now: DateTime<Utc>,
    ) -> Event {
        let object_name = regarding.name.as_deref().unwrap_or(&self.controller);
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:016x}",
                    clip_bytes(object_name, MAX_NAME_PREFIX_BYTES),
                    nanos
                )),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(micro_time(now)),
            action: Some(clip_bytes(event.action, MAX_REASON_BYTES).to_string()),
            reason: Some(clip_bytes(event.reason, MAX_REASON_BYTES).to_string()),
            note: Some(note.to_string()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.to_string()),
            ..Event::default()
        }
    }
}

fn micro_time(at: DateTime<Utc>) -> MicroTime {
    let nanos = at.timestamp_nanos_opt().unwrap_or_default();
    MicroTime(Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> EventPublisher {
        // Never called: these tests exercise the memory, not the API.
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        EventPublisher::new(Client::new(service, "default"), "dcs-operator", None)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn spec(note: &str) -> EventSpec<'_> {
        EventSpec {
            warning: false,
            reason: "BecameReady",
            note,
            action: "Observe",
        }
    }

    #[tokio::test]
    async fn a_repeat_within_the_window_of_the_same_object_continues_its_series() {
        let p = publisher();
        let key = p.key("ns", "uid-1", &spec("n"), "n");
        p.remember(key, "ns", "uid-1", "cache.1".into(), 1, at(0));
        assert_eq!(
            p.repeat_of(key, "ns", "uid-1", at(60)),
            Some(("cache.1".into(), 2))
        );
        // Another object that happens to share the key is never matched.
        assert_eq!(p.repeat_of(key, "ns", "uid-2", at(60)), None);
        assert_eq!(p.repeat_of(key, "other", "uid-1", at(60)), None);
        // After the window it is a new Event.
        assert_eq!(p.repeat_of(key, "ns", "uid-1", at(6 * 60)), None);
    }

    #[tokio::test]
    async fn the_memory_is_bounded_and_forgets_the_oldest_first() {
        let p = publisher();
        for i in 0..(RECENT_CAPACITY as i64 + 100) {
            let uid = format!("uid-{i}");
            let key = p.key("ns", &uid, &spec("n"), "n");
            p.remember(key, "ns", &uid, "e".into(), 1, at(i));
        }
        assert_eq!(p.len(), RECENT_CAPACITY);
        let first = p.key("ns", "uid-0", &spec("n"), "n");
        assert_eq!(p.repeat_of(first, "ns", "uid-0", at(400)), None);
        let last_uid = format!("uid-{}", RECENT_CAPACITY + 99);
        let last = p.key("ns", &last_uid, &spec("n"), "n");
        assert!(p.repeat_of(last, "ns", &last_uid, at(400)).is_some());
    }

    #[tokio::test]
    async fn expired_entries_are_dropped_on_the_next_publish() {
        let p = publisher();
        let key = p.key("ns", "a", &spec("n"), "n");
        p.remember(key, "ns", "a", "e".into(), 1, at(0));
        let other = p.key("ns", "b", &spec("n"), "n");
        p.remember(other, "ns", "b", "e".into(), 1, at(600));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn names_and_fields_stay_within_the_api_servers_limits() {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let p = EventPublisher::new(Client::new(service, "default"), "dcs-operator", None);
        let regarding = ObjectReference {
            name: Some("a".repeat(253)),
            namespace: Some("ns".into()),
            ..ObjectReference::default()
        };
        let long = "é".repeat(2000);
        let event = p.new_event(
            &regarding,
            &EventSpec {
                warning: true,
                reason: &long,
                note: &long,
                action: &long,
            },
            clip_bytes(&long, MAX_NOTE_BYTES),
            at(0),
        );
        assert!(event.metadata.name.as_ref().unwrap().len() <= 253);
        assert!(event.note.as_ref().unwrap().len() <= MAX_NOTE_BYTES);
        assert!(event.reason.as_ref().unwrap().len() <= MAX_REASON_BYTES);
        assert!(event.action.as_ref().unwrap().len() <= MAX_REASON_BYTES);
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.reporting_instance.as_deref(), Some("dcs-operator"));
    }
}
