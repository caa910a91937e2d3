//! The connection Secret (servicebinding.io) built from what DCS reported: pure,
//! deterministic, so comparing bytes tells whether a write is needed.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "dcs-operator";
/// Names the DcsInstance a Secret belongs to (the ownerReference is the proof).
pub const INSTANCE_LABEL: &str = "dcs.operator.dev/instance";
pub const PROVIDER: &str = "huaweicloud-dcs";

/// Characters that must be escaped inside the userinfo of a URI (RFC 3986).
const USERINFO: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// What an application needs to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionDetails {
    pub engine: String,
    pub engine_version: Option<String>,
    pub addresses: Vec<String>,
    pub port: i64,
    pub password: Option<String>,
}

impl std::fmt::Debug for ConnectionDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionDetails")
            .field("engine", &self.engine)
            .field("addresses", &self.addresses)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The servicebinding.io type for an engine name as DCS spells it.
pub fn binding_type(engine: &str) -> &'static str {
    if engine.eq_ignore_ascii_case("memcached") {
        "memcached"
    } else {
        "redis"
    }
}

/// The owner of a connection Secret: the DcsInstance's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// The full Secret to write. Only called with at least one address and a port.
pub fn connection_secret(
    namespace: &str,
    name: &str,
    owner: &Owner,
    details: &ConnectionDetails,
) -> Secret {
    let kind = binding_type(&details.engine);
    let host = details.addresses.first().cloned().unwrap_or_default();
    let port = details.port.to_string();
    let uri = match (&details.password, kind) {
        (Some(password), "redis") => format!(
            "redis://:{}@{host}:{port}",
            utf8_percent_encode(password, USERINFO)
        ),
        _ => format!("{kind}://{host}:{port}"),
    };
    let mut data = BTreeMap::new();
    let mut put = |key: &str, value: &str| {
        data.insert(key.to_string(), ByteString(value.as_bytes().to_vec()));
    };
    put("type", kind);
    put("provider", PROVIDER);
    put("host", &host);
    put("port", &port);
    put("uri", &uri);
    put("addresses", &details.addresses.join(","));
    put("engine", &details.engine);
    if let Some(version) = &details.engine_version {
        put("engine-version", version);
    }
    if let Some(password) = &details.password {
        put("password", password);
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(managed_labels(&owner.name)),
            owner_references: Some(vec![OwnerReference {
                api_version: owner.api_version.clone(),
                kind: owner.kind.clone(),
                name: owner.name.clone(),
                uid: owner.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        type_: Some(format!("servicebinding.io/{kind}")),
        data: Some(data),
        ..Secret::default()
    }
}

pub fn managed_labels(instance_name: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
    // Label values are at most 63 characters; the ownerReference carries the full name.
    let value: String = instance_name.chars().take(63).collect();
    let value = value.trim_end_matches(['-', '.', '_']).to_string();
    labels.insert(INSTANCE_LABEL.to_string(), value);
    labels
}

/// The UID of the Secret's controller, if it has one.
pub fn controller_uid(secret: &Secret) -> Option<&str> {
    secret
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| owner.uid.as_str())
}

/// Set on the watch cache's copy of a connection Secret, never on the Secret
/// itself: a SHA-256 of the data the watch delivered, which the cache keeps instead
/// of the data. Computed locally from the data the watch delivered: an annotation of
/// that name on the Secret itself is overwritten, never trusted.
pub const DATA_DIGEST_ANNOTATION: &str = "dcs.operator.dev/cached-data-digest";

/// A digest of a Secret's data (keys and values, length-prefixed, in key order),
/// in hex.
pub fn data_digest(secret: &Secret) -> String {
    hex::encode(data_digest_bytes(secret))
}

/// [`data_digest`] as bytes (what the owned-Secret cache keeps).
pub fn data_digest_bytes(secret: &Secret) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (key, value) in secret.data.iter().flatten() {
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key.as_bytes());
        hasher.update((value.0.len() as u64).to_be_bytes());
        hasher.update(&value.0);
    }
    hasher.finalize().into()
}

/// True when `existing` (a Secret as read, or the cache's slim copy) already holds
/// what `desired` would write: same data, our labels and our controller reference.
/// Other labels and annotations that someone added are left alone and do not count
/// as a difference; nor does `type`, which the API server never lets change (the
/// plan reports a mismatch).
pub fn is_up_to_date(existing: &Secret, desired: &Secret) -> bool {
    let labels_present = desired
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| existing.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    let cached_digest = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DATA_DIGEST_ANNOTATION));
    let same_data = match (&existing.data, cached_digest) {
        (None, Some(digest)) => *digest == data_digest(desired),
        _ => existing.data.clone().unwrap_or_default() == desired.data.clone().unwrap_or_default(),
    };
    same_data && labels_present && controller_uid(existing) == controller_uid(desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            api_version: "dcs.operator.dev/v1alpha1".into(),
            kind: "DcsInstance".into(),
            name: "cache".into(),
            uid: "uid-1".into(),
        }
    }

    fn details(password: Option<&str>) -> ConnectionDetails {
        ConnectionDetails {
            engine: "Redis".into(),
            engine_version: Some("6.0".into()),
            addresses: vec!["10.0.0.1".into(), "10.0.0.2".into()],
            port: 6379,
            password: password.map(str::to_string),
        }
    }

    fn text(secret: &Secret, key: &str) -> Option<String> {
        secret
            .data
            .as_ref()?
            .get(key)
            .map(|v| String::from_utf8(v.0.clone()).unwrap())
    }

    #[test]
    fn binding_keys() {
        let secret = connection_secret("ns", "cache-dcs", &owner(), &details(Some("p@ss:w/rd")));
        assert_eq!(secret.type_.as_deref(), Some("servicebinding.io/redis"));
        assert_eq!(text(&secret, "type").as_deref(), Some("redis"));
        assert_eq!(
            text(&secret, "provider").as_deref(),
            Some("huaweicloud-dcs")
        );
        assert_eq!(text(&secret, "host").as_deref(), Some("10.0.0.1"));
        assert_eq!(text(&secret, "port").as_deref(), Some("6379"));
        assert_eq!(
            text(&secret, "addresses").as_deref(),
            Some("10.0.0.1,10.0.0.2")
        );
        assert_eq!(text(&secret, "engine").as_deref(), Some("Redis"));
        assert_eq!(text(&secret, "engine-version").as_deref(), Some("6.0"));
        assert_eq!(text(&secret, "password").as_deref(), Some("p@ss:w/rd"));
        assert_eq!(
            text(&secret, "uri").as_deref(),
            Some("redis://:p%40ss%3Aw%2Frd@10.0.0.1:6379")
        );
        assert_eq!(controller_uid(&secret), Some("uid-1"));
        assert_eq!(
            secret
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .get(MANAGED_BY_LABEL)
                .map(String::as_str),
            Some("dcs-operator")
        );
    }

    #[test]
    fn no_password_no_password_key() {
        let secret = connection_secret("ns", "cache-dcs", &owner(), &details(None));
        assert_eq!(text(&secret, "password"), None);
        assert_eq!(
            text(&secret, "uri").as_deref(),
            Some("redis://10.0.0.1:6379")
        );
    }

    #[test]
    fn memcached_type() {
        let mut d = details(None);
        d.engine = "Memcached".into();
        let secret = connection_secret("ns", "m", &owner(), &d);
        assert_eq!(secret.type_.as_deref(), Some("servicebinding.io/memcached"));
        assert_eq!(
            text(&secret, "uri").as_deref(),
            Some("memcached://10.0.0.1:6379")
        );
    }

    #[test]
    fn up_to_date_ignores_foreign_labels_but_not_data() {
        let desired = connection_secret("ns", "cache-dcs", &owner(), &details(None));
        let mut existing = desired.clone();
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "a".into());
        existing.metadata.resource_version = Some("7".into());
        assert!(is_up_to_date(&existing, &desired));
        let changed = connection_secret("ns", "cache-dcs", &owner(), &details(Some("x")));
        assert!(!is_up_to_date(&existing, &changed));
        let mut foreign = desired.clone();
        foreign.metadata.owner_references = None;
        assert!(!is_up_to_date(&foreign, &desired));
    }

    #[test]
    fn debug_hides_the_password() {
        assert!(!format!("{:?}", details(Some("hunter2"))).contains("hunter2"));
    }
}
