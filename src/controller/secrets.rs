//! The Secrets reconcile reads: credentials (a tenant's Secret, or the operator's
//! own where the admin allows them) and the cache password, each cached by
//! resourceVersion so data is read only when the metadata watch says it changed.
//! Every Secret read is in the DcsInstance's namespace.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::budget::ApiBudget;
use super::resolve::EndpointSource;
use super::secret_cache::SecretVersions;
use super::{Error, Result};
use crate::crd::DcsInstanceSpec;
use crate::dcs::chain::{ChainCredentials, ChainError};
use crate::dcs::{Credentials, SecretString};
use crate::plan::{CredentialsProblem, PasswordProblem};

pub const KEY_ACCESS_KEY: &str = "accessKey";
pub const KEY_SECRET_KEY: &str = "secretKey";
pub const KEY_SECURITY_TOKEN: &str = "securityToken";
pub const KEY_PROJECT_ID: &str = "projectId";
pub const KEY_AUTH_TOKEN: &str = "authToken";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCredentials {
    pub credentials: Credentials,
    pub project_id: Option<String>,
}

/// The longest access key accepted (Huawei Cloud's are 20 characters).
pub const MAX_ACCESS_KEY_LENGTH: usize = 128;

/// The longest security or IAM token accepted (real ones are a few KiB).
pub const MAX_TOKEN_LENGTH: usize = 32 << 10;

/// A token goes into a header: visible ASCII only, bounded.
fn valid_token(token: &str) -> bool {
    (1..=MAX_TOKEN_LENGTH).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

/// A project id as the CRD accepts it in `spec.projectId`: 32 lower-case hex digits.
pub fn valid_project_id(project_id: &str) -> bool {
    project_id.len() == 32
        && project_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An access key is 1 to 128 ASCII letters and digits; anything else is refused
/// before any call (it would only ever fail, and it is tenant data that ends up in
/// gate keys and headers).
pub fn valid_access_key(access_key: &str) -> bool {
    (1..=MAX_ACCESS_KEY_LENGTH).contains(&access_key.len())
        && access_key.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parses credentials from Secret-style key/value pairs (a Secret's data, or the
/// files of --credentials-dir).
pub fn parse_credentials(
    get: impl Fn(&str) -> Option<String>,
    origin: &str,
) -> Result<FoundCredentials, CredentialsProblem> {
    let read = |key: &str| {
        get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let origin = origin.to_string();
    let project_id = read(KEY_PROJECT_ID);
    let invalid = |key: &'static str| {
        Err(CredentialsProblem::InvalidValue {
            origin: origin.clone(),
            key,
        })
    };
    if project_id.as_deref().is_some_and(|p| !valid_project_id(p)) {
        return invalid(KEY_PROJECT_ID);
    }
    for key in [KEY_SECURITY_TOKEN, KEY_AUTH_TOKEN] {
        if read(key).is_some_and(|token| !valid_token(&token)) {
            return invalid(key);
        }
    }
    let credentials = match (
        read(KEY_ACCESS_KEY),
        read(KEY_SECRET_KEY),
        read(KEY_AUTH_TOKEN),
    ) {
        (Some(ak), Some(_), _) if !valid_access_key(&ak) => {
            return Err(CredentialsProblem::InvalidAccessKey {
                origin,
                max: MAX_ACCESS_KEY_LENGTH,
            });
        }
        (Some(ak), Some(sk), _) => {
            Credentials::access_key(ak, sk, read(KEY_SECURITY_TOKEN).map(SecretString::new))
        }
        (None, None, Some(token)) => Credentials::Token(SecretString::new(token)),
        (Some(_), None, _) => {
            return Err(CredentialsProblem::KeyMissing {
                origin,
                present: KEY_ACCESS_KEY,
                missing: KEY_SECRET_KEY,
            });
        }
        (None, Some(_), _) => {
            return Err(CredentialsProblem::KeyMissing {
                origin,
                present: KEY_SECRET_KEY,
                missing: KEY_ACCESS_KEY,
            });
        }
        (None, None, None) => return Err(CredentialsProblem::NoKeys { origin }),
    };
    Ok(FoundCredentials {
        credentials,
        project_id,
    })
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    if let Some(value) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(value.0.clone()).ok();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
}

/// The operator's own credentials, for DcsInstances without credentialsSecretRef.
#[derive(Debug, Clone)]
pub enum DefaultCredentialsSource {
    /// Fixed at start (the demo simulator's keys).
    Static(FoundCredentials),
    /// A mounted Secret, one file per key, re-read on use so a rotation is picked up.
    Directory(PathBuf),
    /// The SDK's credential chain (`crate::dcs::chain`): `--credentials-dir`, OIDC
    /// STS, the environment, the profile, ECS metadata, CCE Pod Identity; exchanged
    /// credentials are cached and refreshed before they expire.
    Chain(Arc<ChainCredentials>),
}

#[derive(Debug, Clone)]
pub struct DefaultCredentials {
    pub source: DefaultCredentialsSource,
    /// Namespaces allowed to use them; None means every namespace (demo mode only).
    pub namespaces: Option<Vec<String>>,
    /// Whether they may go to the operator's default endpoint (the demo simulator).
    pub for_operator_default_endpoint: bool,
}

impl DefaultCredentials {
    /// The stable key of exchanged default credentials (see
    /// [`ChainCredentials::stable_key`]).
    pub fn stable_key(&self) -> Option<String> {
        match &self.source {
            DefaultCredentialsSource::Chain(chain) => chain.stable_key(),
            _ => None,
        }
    }

    /// The credentials to sign with now. The chain's exchanges are cached, one at a
    /// time, and back off after a failure, so this is cheap however often it runs.
    pub async fn load(&self) -> Result<FoundCredentials, CredentialsProblem> {
        match &self.source {
            DefaultCredentialsSource::Static(found) => Ok(found.clone()),
            DefaultCredentialsSource::Directory(dir) => parse_credentials(
                |key| crate::dcs::chain::read_bounded(&dir.join(key)).ok(),
                &format!("the operator's credentials directory {}", dir.display()),
            ),
            DefaultCredentialsSource::Chain(chain) => chain.get().await.map_err(chain_problem),
        }
    }
}

/// Why the chain gave nothing, as a credentials problem on the DcsInstance. Keys that
/// do not parse keep their own problem (and reason); a failed exchange is
/// IdentityExchangeFailed with the cloud's code and message; an incomplete source or
/// an unreadable file is CredentialsNotFound naming it. Never a secret.
fn chain_problem(error: ChainError) -> CredentialsProblem {
    match error {
        ChainError::Credentials(problem) => problem,
        ChainError::Exchange {
            provider,
            endpoint,
            detail,
            ..
        } => CredentialsProblem::IdentityExchangeFailed(format!(
            "the operator's own credentials ({provider}) at {endpoint}: {detail}"
        )),
        other => CredentialsProblem::NoKeys {
            origin: format!("the operator's own credentials ({other}), so it"),
        },
    }
}

/// What a credentials lookup found: credentials, or why there are none.
pub type CredentialsLookup = Result<FoundCredentials, CredentialsProblem>;

/// (namespace, Secret name) -> (resourceVersion, what its data parsed into).
type CredentialsCache = HashMap<(String, String), (String, CredentialsLookup)>;

/// Reads credentials for a DcsInstance, caching each Secret's parsed data by its
/// resourceVersion (the metadata watch tells when it changed, so data is read only
/// then).
#[derive(Default)]
pub struct CredentialsResolver {
    pub defaults: Option<DefaultCredentials>,
    cache: Mutex<CredentialsCache>,
    reads: ReadLocks,
}

impl CredentialsResolver {
    pub fn new(defaults: Option<DefaultCredentials>) -> Self {
        Self {
            defaults,
            cache: Mutex::default(),
            reads: ReadLocks::default(),
        }
    }

    pub async fn resolve(
        &self,
        client: &Client,
        namespace: &str,
        spec: &DcsInstanceSpec,
        endpoint_source: &EndpointSource,
        budget: &ApiBudget,
        metadata: Option<&SecretVersions>,
    ) -> Result<CredentialsLookup> {
        let Some(reference) = &spec.credentials_secret_ref else {
            return Ok(self.defaults_for(namespace, endpoint_source).await);
        };
        let cache_key = (namespace.to_string(), reference.name.to_string());
        let known_version = known_version(metadata, namespace, &reference.name).await;
        let fresh = |cached: &Option<(String, CredentialsLookup)>| match (&known_version, cached) {
            (Some(version), Some((cached_version, parsed))) if version == cached_version => {
                Some(parsed.clone())
            }
            _ => None,
        };
        if let Some(parsed) = fresh(&self.lock().get(&cache_key).cloned()) {
            return Ok(parsed);
        }
        // Many DcsInstances name the same Secret: one of them reads it, the others
        // wait and take what it read.
        let _reading = self
            .reads
            .hold(known_version.is_some(), namespace, &reference.name)
            .await;
        let cached = self.lock().get(&cache_key).cloned();
        if let Some(parsed) = fresh(&cached) {
            return Ok(parsed);
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret =
            api.get_opt(&reference.name)
                .await
                .map_err(|source| Error::ReadCredentials {
                    name: reference.name.to_string(),
                    source,
                })?;
        let Some(secret) = secret else {
            self.lock().remove(&cache_key);
            return Ok(Err(CredentialsProblem::SecretMissing {
                name: reference.name.to_string(),
                namespace: namespace.to_string(),
            }));
        };
        let parsed = parse_credentials(
            |key| secret_text(&secret, key),
            &format!("the credentials Secret {}", reference.name),
        );
        if let (Some((_, Ok(before))), Ok(now)) = (&cached, &parsed)
            && before.credentials != now.credentials
        {
            // A rotation: the new credentials get one attempt even if a 401 of the
            // previous content blocks the key (the cap on failures still holds).
            budget.credentials_changed(
                &super::budget::principal(&before.credentials),
                &before.credentials.fingerprint(),
            );
        }
        self.lock().insert(
            cache_key,
            (
                secret.resource_version().unwrap_or_default(),
                parsed.clone(),
            ),
        );
        Ok(parsed)
    }

    async fn defaults_for(
        &self,
        namespace: &str,
        endpoint_source: &EndpointSource,
    ) -> CredentialsLookup {
        let Some(defaults) = &self.defaults else {
            return Err(CredentialsProblem::NoDefaults);
        };
        let endpoint_allowed = match endpoint_source {
            EndpointSource::Region => true,
            EndpointSource::OperatorDefault => defaults.for_operator_default_endpoint,
            EndpointSource::UserSupplied => false,
        };
        if !endpoint_allowed {
            return Err(CredentialsProblem::DefaultsNotForEndpoint);
        }
        if let Some(allowed) = &defaults.namespaces
            && !allowed.iter().any(|ns| ns == namespace)
        {
            return Err(CredentialsProblem::DefaultsNotInNamespace(
                namespace.to_string(),
            ));
        }
        defaults.load().await
    }

    /// Forgets (and drops the secret material of) every cached Secret no live
    /// DcsInstance references: `referenced` holds (namespace, Secret name).
    pub fn retain(&self, referenced: &HashSet<(String, String)>) {
        self.lock().retain(|key, _| referenced.contains(key));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CredentialsCache> {
        self.cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// How long a read waits for the metadata watch's first list (right after a start)
/// before reading the Secret without knowing its version.
const METADATA_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The resourceVersion the metadata watch holds for a Secret, if it has seen it.
/// Right after a start it waits (bounded) for the watch's first list: without it,
/// every DcsInstance would read its Secret itself.
async fn known_version(
    metadata: Option<&SecretVersions>,
    namespace: &str,
    name: &str,
) -> Option<String> {
    let versions = metadata?;
    if !versions.is_listed() {
        let _ = tokio::time::timeout(METADATA_LIST_WAIT, versions.listed()).await;
    }
    versions.resource_version(namespace, name)
}

/// One read at a time per Secret (namespace, name), so that a Secret many
/// DcsInstances name is read once, not once each. Keyed per Secret: a slow read
/// of one tenant's Secret never holds up another's.
#[derive(Default)]
struct ReadLocks {
    locks: Mutex<HashMap<(String, String), std::sync::Weak<ReadLock>>>,
}

type ReadLock = tokio::sync::Mutex<()>;

impl ReadLocks {
    /// Holds this Secret's read lock until the guard is dropped; nothing when
    /// `wanted` is false (without a version from the metadata watch nothing read
    /// can be reused, so nothing is gained by waiting).
    async fn hold(
        &self,
        wanted: bool,
        namespace: &str,
        name: &str,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        if !wanted {
            return None;
        }
        Some(self.for_secret(namespace, name).lock_owned().await)
    }

    fn for_secret(&self, namespace: &str, name: &str) -> Arc<ReadLock> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Only reads in flight hold a lock: the map stays as small as they are.
        locks.retain(|_, lock| lock.strong_count() > 0);
        let key = (namespace.to_string(), name.to_string());
        if let Some(lock) = locks.get(&key).and_then(std::sync::Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(ReadLock::new(()));
        locks.insert(key, Arc::downgrade(&lock));
        lock
    }
}

/// What a password lookup found: the value, or why there is none.
pub type PasswordLookup = Result<SecretString, PasswordProblem>;

/// (namespace, Secret name, key) -> (resourceVersion, the value or why there is none).
type PasswordCache = HashMap<(String, String, String), (String, PasswordLookup)>;

/// Reads passwords (one key of a Secret in the DcsInstance's namespace), re-reading a
/// Secret only when the metadata watch says it changed.
#[derive(Default)]
pub struct PasswordReader {
    cache: Mutex<PasswordCache>,
    reads: ReadLocks,
}

impl PasswordReader {
    fn lock(&self) -> std::sync::MutexGuard<'_, PasswordCache> {
        self.cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Forgets cached passwords of Secrets no live DcsInstance references.
    pub fn retain(&self, referenced: &HashSet<(String, String)>) {
        self.lock().retain(|(namespace, name, _), _| {
            referenced.contains(&(namespace.clone(), name.clone()))
        });
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Ok(Err(problem))` when the Secret or the key is missing.
    pub async fn read(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        key: &str,
        metadata: Option<&SecretVersions>,
    ) -> Result<PasswordLookup> {
        let cache_key = (namespace.to_string(), name.to_string(), key.to_string());
        let known_version = known_version(metadata, namespace, name).await;
        let fresh = || match (&known_version, self.lock().get(&cache_key)) {
            (Some(version), Some((cached_version, value))) if version == cached_version => {
                Some(value.clone())
            }
            _ => None,
        };
        if let Some(value) = fresh() {
            return Ok(value);
        }
        let _reading = self
            .reads
            .hold(known_version.is_some(), namespace, name)
            .await;
        if let Some(value) = fresh() {
            return Ok(value);
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|source| Error::ReadPassword {
                name: name.to_string(),
                source,
            })?;
        let Some(secret) = secret else {
            self.lock().remove(&cache_key);
            return Ok(Err(PasswordProblem::SecretMissing {
                name: name.to_string(),
                namespace: namespace.to_string(),
            }));
        };
        let value = secret_text(&secret, key)
            .map(SecretString::new)
            .ok_or_else(|| PasswordProblem::KeyMissing {
                name: name.to_string(),
                key: key.to_string(),
            });
        self.lock().insert(
            cache_key,
            (secret.resource_version().unwrap_or_default(), value.clone()),
        );
        Ok(value)
    }
}

/// True when the spec names this Secret (credentials or password).
pub fn references(spec: &DcsInstanceSpec, secret_name: &str) -> bool {
    spec.credentials_secret_ref
        .as_ref()
        .is_some_and(|r| r.name == secret_name)
        || spec
            .password_secret_ref
            .as_ref()
            .is_some_and(|r| r.name == secret_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn parses_every_form() {
        let ak = parse_credentials(
            map(&[
                ("accessKey", "AK"),
                ("secretKey", "SK"),
                ("projectId", "0123456789abcdef0123456789abcdef"),
            ]),
            "s",
        )
        .unwrap();
        assert_eq!(ak.credentials.access_key_id(), Some("AK"));
        assert_eq!(
            ak.project_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        let token = parse_credentials(map(&[("authToken", "T")]), "s").unwrap();
        assert!(matches!(token.credentials, Credentials::Token(_)));
        let message = |problem: CredentialsProblem| problem.to_string();
        assert!(
            message(parse_credentials(map(&[("accessKey", "AK")]), "s").unwrap_err())
                .contains("secretKey")
        );
        assert!(
            message(parse_credentials(map(&[]), "the Secret x").unwrap_err())
                .contains("the Secret x")
        );
        for bad in ["AK-1", "AK 1", "ÄK", &"A".repeat(129), "AK\nX"] {
            let refused =
                parse_credentials(map(&[("accessKey", bad), ("secretKey", "S")]), "s").unwrap_err();
            let problem = crate::plan::Problem::Credentials(refused.clone());
            assert_eq!(problem.reason(), crate::plan::reasons::CREDENTIALS_INVALID);
            assert!(refused.to_string().contains("accessKey"));
            assert!(!refused.to_string().contains(bad), "never the value");
        }
        assert!(
            parse_credentials(
                map(&[("accessKey", &"A".repeat(128)), ("secretKey", "S")]),
                "s"
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn defaults_only_where_allowed() {
        let found = FoundCredentials {
            credentials: Credentials::access_key("AK", "SK", None),
            project_id: None,
        };
        let resolver = CredentialsResolver::new(Some(DefaultCredentials {
            source: DefaultCredentialsSource::Static(found),
            namespaces: Some(vec!["team-a".into()]),
            for_operator_default_endpoint: false,
        }));
        assert!(
            resolver
                .defaults_for("team-a", &EndpointSource::Region)
                .await
                .is_ok()
        );
        assert!(
            resolver
                .defaults_for("team-b", &EndpointSource::Region)
                .await
                .is_err()
        );
        assert!(
            resolver
                .defaults_for("team-a", &EndpointSource::UserSupplied)
                .await
                .is_err()
        );
        assert!(
            resolver
                .defaults_for("team-a", &EndpointSource::OperatorDefault)
                .await
                .is_err()
        );
        assert!(
            CredentialsResolver::new(None)
                .defaults_for("team-a", &EndpointSource::Region)
                .await
                .is_err()
        );
    }
}
