//! Shared strings for the short values that repeat across thousands of cached
//! objects (engine, version, DCS status, spec codes, zones, condition types and
//! reasons): one allocation per distinct value instead of one per object.
//!
//! The table is process-wide because values are interned while they are
//! deserialized, where no context can be passed in. It changes no behaviour, only
//! where the bytes live, and it is bounded: values longer than [`MAX_INTERNED_BYTES`]
//! are never interned; values no object uses any more are dropped by the pruning
//! pass and whenever [`MAX_ENTRIES`] distinct values are held; if most are still in
//! use then, new values get their own allocation until the next pruning pass. So a tenant or an endpoint that sends endless distinct values costs
//! at most a fixed table, and only the sharing for values that came later.

use std::collections::HashSet;
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex};

/// Longer values are never shared (they are rarely repeated).
pub const MAX_INTERNED_BYTES: usize = 64;
/// Distinct values held at most.
pub const MAX_ENTRIES: usize = 4096;

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

#[derive(Default)]
struct Table {
    values: HashSet<Arc<str>>,
    /// Full of values in use: nothing new is added until the next pruning pass,
    /// so endless distinct values never make every lookup sweep the table.
    saturated: bool,
}

fn table() -> std::sync::MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A string whose value is shared with every equal [`Atom`] made while the table
/// had room. Compares, hashes, orders, prints and serializes as the text it holds.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom(Arc<str>);

impl Atom {
    pub fn new(text: &str) -> Self {
        if text.len() > MAX_INTERNED_BYTES {
            return Self(Arc::from(text));
        }
        let mut table = table();
        if let Some(shared) = table.values.get(text) {
            return Self(shared.clone());
        }
        let value: Arc<str> = Arc::from(text);
        if table.saturated {
            return Self(value);
        }
        if table.values.len() >= MAX_ENTRIES {
            // Only the table itself holds these.
            table.values.retain(|value| Arc::strong_count(value) > 1);
            table.saturated = table.values.len() >= MAX_ENTRIES / 2;
        }
        if !table.saturated {
            table.values.insert(value.clone());
        }
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The shared copy of `text` (see [`Atom::new`]), for keys that hold `Arc<str>`.
pub fn shared(text: &str) -> Arc<str> {
    Atom::new(text).0
}

/// Forgets values no object uses any more (the pruning pass calls this).
pub fn prune() {
    let mut table = table();
    table.values.retain(|value| Arc::strong_count(value) > 1);
    table.saturated = false;
}

/// Distinct values the table holds now (for tests and the cache-size metric).
pub fn table_len() -> usize {
    table().values.len()
}

impl Deref for Atom {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Atom {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Default for Atom {
    fn default() -> Self {
        Self::new("")
    }
}

impl std::fmt::Debug for Atom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Atom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Atom {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Atom {
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

impl From<&String> for Atom {
    fn from(text: &String) -> Self {
        Self::new(text)
    }
}

impl PartialEq<str> for Atom {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Atom {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl serde::Serialize for Atom {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Atom {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Atom;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Atom, E> {
                Ok(Atom::new(text))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl schemars::JsonSchema for Atom {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        String::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_short_values_share_one_allocation() {
        let a = Atom::new("redis.single.xu1.large.2-intern-test");
        let b: Atom = serde_json::from_str("\"redis.single.xu1.large.2-intern-test\"").unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, "redis.single.xu1.large.2-intern-test");
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            "\"redis.single.xu1.large.2-intern-test\""
        );
        let long = "x".repeat(MAX_INTERNED_BYTES + 1);
        assert!(!Arc::ptr_eq(&Atom::new(&long).0, &Atom::new(&long).0));
    }

    #[test]
    fn the_table_stays_bounded_under_endless_distinct_values() {
        let held: Vec<Atom> = (0..100).map(|i| Atom::new(&format!("held-{i}"))).collect();
        for i in 0..(MAX_ENTRIES * 3) {
            let _ = Atom::new(&format!("passing-{i}"));
            assert!(table_len() <= MAX_ENTRIES);
        }
        // Values still in use keep being shared.
        assert!(Arc::ptr_eq(&held[7].0, &Atom::new("held-7").0));
        // Endless distinct values that stay in use: the table fills, then stops
        // taking new ones (every lookup stays one hash probe) until pruned.
        let kept: Vec<Atom> = (0..MAX_ENTRIES * 2)
            .map(|i| Atom::new(&format!("kept-{i}")))
            .collect();
        assert!(table_len() <= MAX_ENTRIES);
        assert_eq!(kept[MAX_ENTRIES * 2 - 1], "kept-8191");
        drop(kept);
        prune();
        assert!(table_len() < MAX_ENTRIES / 2);
    }
}
