//! The simulator's built-in catalogue: flavours (ListFlavors), availability zones
//! (ListAvailableZones) and maintenance windows, shaped like the SDK models
//! `FlavorsItems`, `AvailableZones` and `MaintainWindow`.
//!
//! The table is realistic, not a copy of any region: spec codes follow the observed
//! `redis.<mode>.<cpu>.<size>[.r<replicas>].<capacity>` pattern of LIFECYCLE.md §8.

use std::sync::OnceLock;

use serde_json::{Value, json};

/// The region the simulator pretends to be.
pub const REGION: &str = "cn-north-4";

/// One availability zone: the create/resize bodies name `code`, instances report `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub code: &'static str,
    pub id: &'static str,
    pub name: &'static str,
    /// False: sold out, so no flavour lists it and a create there is refused `DCS.4054`.
    pub has_stock: bool,
}

/// The zones; the first two IDs are the ones `examples/sim-instances.yaml` uses.
pub const ZONES: [Zone; 4] = [
    Zone {
        code: "cn-north-4a",
        id: "d539378ec1314c85b76fefa3f7071458",
        name: "AZ1",
        has_stock: true,
    },
    Zone {
        code: "cn-north-4b",
        id: "effdcbc7d4d64a02aa1fa26b42f56533",
        name: "AZ2",
        has_stock: true,
    },
    Zone {
        code: "cn-north-4c",
        id: "a0865121f83b41cbafce65930a22a6e8",
        name: "AZ3",
        has_stock: true,
    },
    Zone {
        code: "cn-north-4g",
        id: "9f1c3b2a7d6e4f5a8b0c1d2e3f4a5b6c",
        name: "AZ7",
        has_stock: false,
    },
];

pub fn zone_by_code(code: &str) -> Option<&'static Zone> {
    ZONES.iter().find(|zone| zone.code == code)
}

pub fn zone_by_id(id: &str) -> Option<&'static Zone> {
    ZONES.iter().find(|zone| zone.id == id)
}

/// The SDK's 4-hour windows (UTC), `(begin, end)`; the second is the default.
pub const MAINTAIN_WINDOWS: [(&str, &str); 6] = [
    ("22:00:00", "02:00:00"),
    ("02:00:00", "06:00:00"),
    ("06:00:00", "10:00:00"),
    ("10:00:00", "14:00:00"),
    ("14:00:00", "18:00:00"),
    ("18:00:00", "22:00:00"),
];
pub const DEFAULT_WINDOW: (&str, &str) = MAINTAIN_WINDOWS[1];

/// One flavour: one spec code, one capacity (`pricing_type: normal`).
#[derive(Debug, Clone, PartialEq)]
pub struct Flavor {
    pub spec_code: String,
    /// `Redis` or `Memcached`, as the create body spells it.
    pub engine: &'static str,
    pub versions: &'static [&'static str],
    /// `single`, `ha`, `cluster`, `proxy`.
    pub cache_mode: &'static str,
    pub cpu_type: &'static str,
    /// GB.
    pub capacity: f64,
    pub replica_count: u32,
    pub sharding_count: u32,
}

impl Flavor {
    pub fn supports_version(&self, version: &str) -> bool {
        self.versions.contains(&version)
    }

    /// Whether an existing instance of this engine version may move to this flavour.
    /// Memcached flavours carry no version, while instances may report one (`1.5`).
    pub fn fits_instance_version(&self, version: &str) -> bool {
        self.engine == "Memcached" || self.supports_version(version)
    }

    /// `0.125` → `"0.125"`, `8.0` → `"8"`.
    pub fn capacity_text(&self) -> String {
        capacity_text(self.capacity)
    }

    /// The AZs with stock for this flavour.
    pub fn zones(&self) -> impl Iterator<Item = &'static Zone> {
        ZONES.iter().filter(|zone| zone.has_stock)
    }

    /// How many AZ codes a create may list: one per node of a master/standby pair,
    /// any number for clusters, exactly one for a single node.
    pub fn max_az_codes(&self) -> usize {
        match self.cache_mode {
            "single" => 1,
            "ha" => self.replica_count.max(1) as usize,
            _ => ZONES.len(),
        }
    }

    pub fn max_memory_mb(&self) -> u64 {
        // Truncation is the intent: 0.125 GB is 128 MB exactly.
        (self.capacity * 1024.0) as u64
    }

    pub fn item(&self) -> Value {
        let capacity = self.capacity_text();
        let mut attrs = vec![
            json!({"capacity": capacity, "name": "max_memory", "value": self.max_memory_mb().to_string()}),
            json!({"capacity": capacity, "name": "max_connections", "value": max_connections(self.capacity).to_string()}),
            json!({"capacity": capacity, "name": "db_number", "value": if self.cache_mode == "cluster" { "1" } else { "256" }}),
        ];
        if self.sharding_count > 1 {
            attrs.push(json!({"capacity": capacity, "name": "sharding_num", "value": self.sharding_count.to_string()}));
        }
        let zones: Vec<&Zone> = self.zones().collect();
        json!({
            "spec_code": self.spec_code,
            "cloud_service_type_code": "hws.service.type.dcs",
            "cloud_resource_type_code": "hws.resource.type.dcs3",
            "cache_mode": self.cache_mode,
            "engine": self.engine.to_ascii_lowercase(),
            "engine_version": self.versions.join(";"),
            "product_type": "generic",
            "cpu_type": self.cpu_type,
            "storage_type": "DRAM",
            "capacity": [capacity],
            "billing_mode": ["Hourly", "Monthly", "Yearly"],
            "tenant_ip_count": self.tenant_ip_count(),
            "pricing_type": "normal",
            "is_dec": false,
            "attrs": attrs,
            "flavors_available_zones": [{
                "capacity": capacity,
                "unit": "GB",
                "available_zones": zones.iter().map(|z| z.id).collect::<Vec<_>>(),
                "az_codes": zones.iter().map(|z| z.code).collect::<Vec<_>>(),
            }],
        })
    }

    fn tenant_ip_count(&self) -> u32 {
        match self.cache_mode {
            "cluster" => self.sharding_count * self.replica_count.max(1),
            "proxy" => 2,
            _ => 1,
        }
    }
}

pub fn capacity_text(capacity: f64) -> String {
    if capacity.fract() == 0.0 {
        format!("{capacity:.0}")
    } else {
        format!("{capacity}")
    }
}

fn max_connections(capacity: f64) -> u32 {
    if capacity < 1.0 {
        10_000
    } else if capacity < 8.0 {
        20_000
    } else {
        50_000
    }
}

const REDIS_ALL: &[&str] = &["4.0", "5.0", "6.0", "7.0"];
/// Proxy clusters exist for 4.0/5.0 only (LIFECYCLE.md §4).
const REDIS_PROXY: &[&str] = &["4.0", "5.0"];
const MEMCACHED: &[&str] = &[""];

const SMALL: [f64; 12] = [
    0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 24.0, 32.0, 48.0, 64.0,
];
const CLUSTER: [f64; 15] = [
    4.0, 8.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0, 192.0, 256.0, 384.0, 512.0, 768.0, 1024.0,
];
const PROXY: [f64; 9] = [4.0, 8.0, 16.0, 24.0, 32.0, 48.0, 64.0, 128.0, 256.0];

fn size_and_suffix(capacity: f64) -> (&'static str, String) {
    if capacity < 1.0 {
        ("tiny", format!("{}", (capacity * 1024.0) as u32))
    } else {
        ("large", capacity_text(capacity))
    }
}

fn shards_for(capacity: f64) -> u32 {
    // Redis Cluster: 3 shards up to 24 GB, then roughly one shard per 8 GB, capped at 128.
    let shards = (capacity / 8.0).ceil() as u32;
    shards.clamp(3, 128)
}

fn build() -> Vec<Flavor> {
    // The table's order is ListFlavors' order: small Redis, Cluster, Proxy, Memcached.
    let mut flavors = Vec::new();
    push_small_redis(&mut flavors);
    push_cluster_redis(&mut flavors);
    push_proxy_redis(&mut flavors);
    push_memcached(&mut flavors);
    flavors
}

/// Adds, per small capacity: single-node, master/standby with 2 and 3 replicas
/// (x86), and from 1 GB master/standby on Arm.
fn push_small_redis(flavors: &mut Vec<Flavor>) {
    for &capacity in &SMALL {
        let (size, suffix) = size_and_suffix(capacity);
        flavors.push(Flavor {
            spec_code: format!("redis.single.xu1.{size}.{suffix}"),
            engine: "Redis",
            versions: REDIS_ALL,
            cache_mode: "single",
            cpu_type: "x86_64",
            capacity,
            replica_count: 1,
            sharding_count: 1,
        });
        for replicas in [2, 3] {
            flavors.push(Flavor {
                spec_code: format!("redis.ha.xu1.{size}.r{replicas}.{suffix}"),
                engine: "Redis",
                versions: REDIS_ALL,
                cache_mode: "ha",
                cpu_type: "x86_64",
                capacity,
                replica_count: replicas,
                sharding_count: 1,
            });
        }
        if capacity >= 1.0 {
            flavors.push(Flavor {
                spec_code: format!("redis.ha.au1.{size}.r2.{suffix}"),
                engine: "Redis",
                versions: REDIS_ALL,
                cache_mode: "ha",
                cpu_type: "aarch64",
                capacity,
                replica_count: 2,
                sharding_count: 1,
            });
        }
    }
}

/// Adds a Redis Cluster flavour (2 replicas per shard) per cluster capacity.
fn push_cluster_redis(flavors: &mut Vec<Flavor>) {
    for &capacity in &CLUSTER {
        let suffix = capacity_text(capacity);
        flavors.push(Flavor {
            spec_code: format!("redis.cluster.xu1.large.r2.{suffix}"),
            engine: "Redis",
            versions: REDIS_ALL,
            cache_mode: "cluster",
            cpu_type: "x86_64",
            capacity,
            replica_count: 2,
            sharding_count: shards_for(capacity),
        });
    }
}

/// Adds a Proxy Cluster flavour (Redis 4.0/5.0 only) per proxy capacity.
fn push_proxy_redis(flavors: &mut Vec<Flavor>) {
    for &capacity in &PROXY {
        flavors.push(Flavor {
            spec_code: format!("redis.proxy.xu1.large.{}", capacity_text(capacity)),
            engine: "Redis",
            versions: REDIS_PROXY,
            cache_mode: "proxy",
            cpu_type: "x86_64",
            capacity,
            replica_count: 2,
            sharding_count: shards_for(capacity),
        });
    }
}

/// Adds single-node and master/standby Memcached flavours, 1 to 64 GB.
fn push_memcached(flavors: &mut Vec<Flavor>) {
    for capacity in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0] {
        let suffix = capacity_text(capacity);
        for (mode, replicas) in [("single", 1), ("ha", 2)] {
            flavors.push(Flavor {
                spec_code: format!("memcached.{mode}.xu1.large.{suffix}"),
                engine: "Memcached",
                versions: MEMCACHED,
                cache_mode: mode,
                cpu_type: "x86_64",
                capacity,
                replica_count: replicas,
                sharding_count: 1,
            });
        }
    }
}

/// Every flavour, built once.
pub fn all() -> &'static [Flavor] {
    static TABLE: OnceLock<Vec<Flavor>> = OnceLock::new();
    TABLE.get_or_init(build)
}

pub fn by_spec_code(spec_code: &str) -> Option<&'static Flavor> {
    all().iter().find(|flavor| flavor.spec_code == spec_code)
}

/// The `cache_mode` a spec code names (`redis.ha.…` → `ha`), for instances whose
/// flavour is not in the table (loaded from a file).
pub fn cache_mode_of(spec_code: &str) -> Option<&str> {
    let mode = spec_code.split('.').nth(1)?;
    match mode {
        "single" | "ha" | "cluster" | "proxy" => Some(mode),
        _ => None,
    }
}

/// Whether a resize may move an instance from one cache mode to another with
/// `change_type: instanceType` (master/standby or r/w-split ↔ Proxy Cluster only).
pub fn type_change_allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("ha" | "ha_rw_split", "proxy") | ("proxy", "ha" | "ha_rw_split")
    )
}

/// Equal within a rounding error: capacities travel as JSON floats.
pub fn same_capacity(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_realistic_and_unique() {
        let table = all();
        let mut codes: Vec<&str> = table.iter().map(|f| f.spec_code.as_str()).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(before, codes.len(), "spec codes are unique");
        for code in [
            "redis.single.xu1.large.2",
            "redis.single.xu1.tiny.128",
            "redis.ha.xu1.large.r2.8",
            "redis.ha.xu1.large.r2.4",
            "redis.ha.xu1.large.r3.8",
            "redis.ha.au1.large.r2.8",
            "redis.cluster.xu1.large.r2.64",
            "redis.proxy.xu1.large.16",
            "memcached.single.xu1.large.2",
        ] {
            assert!(by_spec_code(code).is_some(), "{code}");
        }
        let tiny = by_spec_code("redis.single.xu1.tiny.128").unwrap();
        assert_eq!(tiny.capacity_text(), "0.125");
        assert_eq!(tiny.max_memory_mb(), 128);
        let proxy = by_spec_code("redis.proxy.xu1.large.16").unwrap();
        assert!(!proxy.supports_version("6.0"));
        let item = by_spec_code("redis.ha.xu1.large.r2.8").unwrap().item();
        assert_eq!(item["engine"], "redis");
        assert_eq!(item["capacity"], json!(["8"]));
        let zones = item["flavors_available_zones"][0]["az_codes"]
            .as_array()
            .unwrap();
        assert_eq!(zones.len(), 3, "the sold-out zone is not listed");
    }

    #[test]
    fn modes_and_type_changes() {
        assert_eq!(
            cache_mode_of("redis.cluster.xu1.large.shard.4.64"),
            Some("cluster")
        );
        assert_eq!(cache_mode_of("dcs.single_node"), None);
        assert!(type_change_allowed("ha", "proxy"));
        assert!(type_change_allowed("proxy", "ha"));
        assert!(!type_change_allowed("single", "ha"));
        assert!(!type_change_allowed("ha", "cluster"));
        assert_eq!(zone_by_code("cn-north-4b").unwrap().id, ZONES[1].id);
        assert!(zone_by_id("nope").is_none());
    }
}
