//! Workload identity for DcsInstances (`spec.identity`): mint a token for a
//! labelled ServiceAccount of the object's own namespace (TokenRequest), prove once
//! per audience that the API server rejects such a token (SelfSubjectReview),
//! exchange it with the configured IAM/STS endpoints, and cache the temporary
//! credentials per stable identity: single flight, refresh at 80 % of the
//! lifetime (at least 5 minutes before expiry), backoff after a failure, and one
//! rate limit for every IAM/STS call.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use crate::clock::{SharedClock, later};
use crate::crd::WorkloadIdentity;
use crate::dcs::client::Endpoint;
use crate::dcs::iam::{AssumeAgency, IamClient, IamError, TemporaryCredentials};
use crate::dcs::{Credentials, SecretString};
use crate::plan::CredentialsProblem;

/// The label a ServiceAccount needs before the operator acts as it.
pub const IDENTITY_LABEL: &str = "dcs.operator.dev/identity";
/// Minted tokens live this long (the API server's minimum): they are used at once.
const TOKEN_SECONDS: i64 = 600;
/// Default lifetime asked for temporary credentials.
const DEFAULT_DURATION_SECONDS: u32 = 3600;
/// IAM/STS calls at most this often on average across every identity…
const EXCHANGES_PER_SECOND: f64 = 2.0;
/// …with this burst.
const EXCHANGE_BURST: f64 = 10.0;
/// The most identities kept (each is one ServiceAccount and cloud identity).
const MAX_IDENTITIES: usize = 10_000;

/// Presents a token to the API server and says whether it authenticated
/// (SelfSubjectReview): injected, because it must run as the token, not as the
/// operator.
pub type AudienceProbe = Arc<
    dyn Fn(SecretString) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send>>
        + Send
        + Sync,
>;

/// The probe for a real cluster: a client built from the operator's own
/// configuration (API server address and CA) that authenticates with the token
/// alone, sending one SelfSubjectReview. 401 means rejected; any other answer
/// (201, 403, 404) means the token authenticated.
pub fn api_server_probe() -> AudienceProbe {
    Arc::new(|token: SecretString| {
        Box::pin(async move {
            let mut config = kube::Config::infer()
                .await
                .map_err(|e| format!("no Kubernetes configuration: {e}"))?;
            config.auth_info = kube::config::AuthInfo {
                token: Some(token.expose().to_string().into()),
                ..kube::config::AuthInfo::default()
            };
            let client = Client::try_from(config).map_err(|e| e.to_string())?;
            let body = br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
            let request = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec())
                .map_err(|e| e.to_string())?;
            match client.request_text(request).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 401 => Ok(false),
                Err(kube::Error::Api(_)) => Ok(true),
                Err(error) => Err(error.to_string()),
            }
        })
    })
}

/// `--identity-*`, `--iam-endpoint`, `--sts-endpoint`.
#[derive(Clone, Default)]
pub struct IdentityOptions {
    /// Namespaces whose DcsInstances may use spec.identity.
    pub namespaces: Vec<String>,
    /// The audience of minted tokens (the IdP's client id).
    pub audience: Option<String>,
    pub iam_endpoint: Option<Endpoint>,
    pub sts_endpoint: Option<Endpoint>,
    /// Origins besides region endpoints that may receive temporary credentials.
    pub allowed_origins: Vec<String>,
}

/// Where a token is exchanged, and for what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Idp {
        idp_id: String,
        iam: String,
    },
    Agency {
        agency_urn: String,
        provider_urn: String,
        sts: String,
    },
}

/// A stable identity: what the cache, observations, batch groups and gates are
/// keyed by (temporary keys rotate; this does not).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IdentityKey {
    namespace: String,
    service_account: String,
    target: Target,
    duration: u32,
}

impl IdentityKey {
    fn fingerprint(&self) -> String {
        let text = format!("{self:?}");
        format!(
            "identity:{}",
            hex::encode(&Sha256::digest(text.as_bytes())[..16])
        )
    }
}

/// One identity's cache entry.
#[derive(Default)]
struct Entry {
    credentials: Option<Arc<TemporaryCredentials>>,
    refresh_at: Option<DateTime<Utc>>,
    failures: u32,
    retry_at: Option<DateTime<Utc>>,
    last_error: Option<CredentialsProblem>,
    users: HashSet<String>,
    flight: Arc<tokio::sync::Mutex<()>>,
}

/// Whether minted tokens of the configured audience were proven unusable against
/// the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Audience {
    Unchecked,
    Rejected,
    /// The API server accepted it: workload identity is off for good.
    Accepted,
}

/// Credentials from a workload identity, and the stable key they are known by.
#[derive(Debug, Clone)]
pub struct IdentityCredentials {
    pub credentials: Credentials,
    pub fingerprint: String,
}

/// The identity cache and the exchanges behind it.
pub struct Identities {
    options: IdentityOptions,
    iam: IamClient,
    probe: AudienceProbe,
    clock: SharedClock,
    entries: Mutex<HashMap<IdentityKey, Entry>>,
    /// uid -> the identity it last used (locked after `entries`, never before).
    keys_by_uid: Mutex<HashMap<String, IdentityKey>>,
    audience: tokio::sync::Mutex<Audience>,
    bucket: Mutex<(f64, Option<DateTime<Utc>>)>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("namespaces", &self.options.namespaces)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

type Lookup = Result<IdentityCredentials, CredentialsProblem>;

impl Identities {
    pub fn new(
        options: IdentityOptions,
        iam: IamClient,
        probe: AudienceProbe,
        clock: SharedClock,
    ) -> Self {
        Self {
            options,
            iam,
            probe,
            clock,
            entries: Mutex::default(),
            keys_by_uid: Mutex::default(),
            audience: tokio::sync::Mutex::new(Audience::Unchecked),
            bucket: Mutex::new((EXCHANGE_BURST, None)),
        }
    }

    /// Temporary credentials for `uid`'s `identity` in `namespace`, to be sent to
    /// `endpoint`; or why there are none (nothing is minted or sent then).
    pub async fn credentials(
        &self,
        client: &Client,
        namespace: &str,
        uid: &str,
        identity: &WorkloadIdentity,
        endpoint: &Endpoint,
    ) -> Lookup {
        let key = self.key(namespace, identity, endpoint)?;
        let fingerprint = key.fingerprint();
        let now = self.clock.now();
        let flight = match self.cached(&key, uid, now) {
            Cached::Fresh(credentials) => return Ok(found(&credentials, fingerprint)),
            Cached::Failed(problem) => return Err(problem),
            Cached::Refresh(flight) => flight,
        };
        // Single flight: whoever holds the lock exchanges; the others find its
        // result when they get it.
        let _held = flight.lock().await;
        match self.cached(&key, uid, self.clock.now()) {
            Cached::Fresh(credentials) => return Ok(found(&credentials, fingerprint)),
            // The exchange this one waited for failed: its backoff holds for all.
            Cached::Failed(problem) => return Err(problem),
            Cached::Refresh(_) => {}
        }
        let result = self.exchange(client, &key, identity).await;
        self.remember(
            &key,
            result.as_ref().ok().cloned(),
            result.as_ref().err().cloned(),
        );
        match result {
            Ok(credentials) => Ok(found(&credentials, fingerprint)),
            // A failed refresh keeps using keys that still work (no condition flaps).
            Err(problem) => match self.unexpired(&key) {
                Some(credentials) => Ok(found(&credentials, fingerprint)),
                None => Err(problem),
            },
        }
    }

    /// The cached credentials of `key` while they have not expired.
    fn unexpired(&self, key: &IdentityKey) -> Option<Arc<TemporaryCredentials>> {
        let now = self.clock.now();
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)?
            .credentials
            .clone()
            .filter(|c| c.expires_at > now)
    }

    /// The stable key of an identity, after the rules on where tokens and keys
    /// may go.
    fn key(
        &self,
        namespace: &str,
        identity: &WorkloadIdentity,
        endpoint: &Endpoint,
    ) -> Result<IdentityKey, CredentialsProblem> {
        let options = &self.options;
        if !options.namespaces.iter().any(|n| n == namespace) {
            return Err(CredentialsProblem::TokenRequestFailed(format!(
                "namespace {namespace} is not opted in for workload identity (the cluster admin lists it in --identity-namespaces); nothing was minted"
            )));
        }
        let allowed =
            endpoint.is_region_host() || options.allowed_origins.contains(&endpoint.origin());
        if !allowed {
            return Err(CredentialsProblem::TokenRequestFailed(
                "temporary credentials are only sent to region endpoints (or those in --identity-endpoints), not to spec.endpoint; nothing was minted".into(),
            ));
        }
        let region = region_of(endpoint);
        let derived = |service: &str,
                       configured: &Option<Endpoint>|
         -> Result<String, CredentialsProblem> {
            configured
                .as_ref()
                .map(|e| e.as_str().to_string())
                .or_else(|| region.as_ref().map(|r| format!("https://{service}.{r}.myhuaweicloud.com")))
                .ok_or_else(|| {
                    CredentialsProblem::TokenRequestFailed(format!(
                        "no {service} endpoint: the DCS endpoint is not a region endpoint and the operator has no --{service}-endpoint"
                    ))
                })
        };
        let target = match (
            &identity.idp_id,
            &identity.agency_urn,
            &identity.provider_urn,
        ) {
            (Some(idp_id), None, None) => Target::Idp {
                idp_id: idp_id.clone(),
                iam: derived("iam", &options.iam_endpoint)?,
            },
            (None, Some(agency), Some(provider)) => Target::Agency {
                agency_urn: agency.clone(),
                provider_urn: provider.clone(),
                sts: derived("sts", &options.sts_endpoint)?,
            },
            _ => {
                return Err(CredentialsProblem::TokenRequestFailed(
                    "set exactly one of idpId, or agencyUrn with providerUrn".into(),
                ));
            }
        };
        let duration = identity
            .duration_seconds
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(DEFAULT_DURATION_SECONDS);
        Ok(IdentityKey {
            namespace: namespace.to_string(),
            service_account: identity.service_account_name.clone(),
            target,
            duration,
        })
    }

    /// What the cache holds for `key` now (registering `uid` as a user).
    fn cached(&self, key: &IdentityKey, uid: &str, now: DateTime<Utc>) -> Cached {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !entries.contains_key(key) && entries.len() >= MAX_IDENTITIES {
            return Cached::Failed(CredentialsProblem::IdentityExchangeFailed(
                "the operator holds the most workload identities it keeps; try again later".into(),
            ));
        }
        // An object whose spec now names another identity leaves its old one (a
        // tenant editing its spec must not pile up identities).
        let mut keys = self.keys_by_uid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = keys.insert(uid.to_string(), key.clone())
            && previous != *key
            && let Some(old) = entries.get_mut(&previous)
        {
            old.users.remove(uid);
            if old.users.is_empty() {
                entries.remove(&previous);
            }
        }
        drop(keys);
        let entry = entries.entry(key.clone()).or_default();
        entry.users.insert(uid.to_string());
        match (&entry.credentials, entry.refresh_at) {
            (Some(credentials), Some(refresh_at)) if now < refresh_at => {
                return Cached::Fresh(credentials.clone());
            }
            _ => {}
        }
        if entry.retry_at.is_some_and(|at| now < at) {
            if let Some(credentials) = entry.credentials.as_ref().filter(|c| c.expires_at > now) {
                // A failed refresh keeps using keys that still work.
                return Cached::Fresh(credentials.clone());
            }
            if let Some(problem) = &entry.last_error {
                return Cached::Failed(problem.clone());
            }
        }
        Cached::Refresh(entry.flight.clone())
    }

    /// Records an exchange's outcome.
    fn remember(
        &self,
        key: &IdentityKey,
        credentials: Option<Arc<TemporaryCredentials>>,
        problem: Option<CredentialsProblem>,
    ) {
        let now = self.clock.now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(key.clone()).or_default();
        match credentials {
            Some(credentials) => {
                entry.refresh_at = Some(refresh_at(now, credentials.expires_at));
                entry.credentials = Some(credentials);
                entry.failures = 0;
                entry.retry_at = None;
                entry.last_error = None;
            }
            None => {
                entry.failures = entry.failures.saturating_add(1);
                let backoff = Duration::from_secs(10)
                    .saturating_mul(1 << entry.failures.saturating_sub(1).min(5))
                    .min(Duration::from_secs(300));
                entry.retry_at = Some(later(now, backoff));
                entry.last_error = problem;
            }
        }
    }

    /// Mint, check the audience, exchange.
    async fn exchange(
        &self,
        client: &Client,
        key: &IdentityKey,
        identity: &WorkloadIdentity,
    ) -> Result<Arc<TemporaryCredentials>, CredentialsProblem> {
        let Some(audience) = self.options.audience.clone() else {
            return Err(CredentialsProblem::TokenRequestFailed(
                "the operator has no --identity-audience; nothing was minted".into(),
            ));
        };
        if *self.audience.lock().await == Audience::Accepted {
            return Err(audience_accepted());
        }
        self.take_budget()?;
        let token = mint(
            client,
            &key.namespace,
            &identity.service_account_name,
            &audience,
        )
        .await?;
        self.check_audience(&token).await?;
        let exchanged = match &key.target {
            Target::Idp { idp_id, iam } => {
                let iam = endpoint(iam)?;
                let (federated, _) = self
                    .iam
                    .federated_token(&iam, idp_id, &token)
                    .await
                    .map_err(exchange_problem)?;
                self.take_budget()?;
                self.iam
                    .temporary_credentials(&iam, &federated, key.duration)
                    .await
            }
            Target::Agency {
                agency_urn,
                provider_urn,
                sts,
            } => {
                let sts = endpoint(sts)?;
                let session = format!("dcs-op-{}", key.namespace);
                let session: String = session.chars().take(128).collect();
                let request = AssumeAgency {
                    provider_urn,
                    agency_urn,
                    session_name: &session,
                    id_token: &token,
                    duration_seconds: key.duration,
                };
                self.iam.assume_agency_with_oidc(&sts, &request).await
            }
        };
        let credentials = exchanged.map_err(exchange_problem)?;
        info!(namespace = key.namespace, service_account = key.service_account, expires_at = %credentials.expires_at, "workload identity exchanged");
        Ok(Arc::new(credentials))
    }

    /// The first token minted with the audience is presented to the API server: a
    /// 401 proves the audience is not one the API server accepts. Anything else
    /// turns workload identity off, loudly: such tokens would work against the
    /// cluster itself.
    async fn check_audience(&self, token: &SecretString) -> Result<(), CredentialsProblem> {
        let mut state = self.audience.lock().await;
        match *state {
            Audience::Rejected => return Ok(()),
            Audience::Accepted => return Err(audience_accepted()),
            Audience::Unchecked => {}
        }
        match (self.probe)(token.clone()).await {
            Ok(false) => {
                *state = Audience::Rejected;
                Ok(())
            }
            Ok(true) => {
                *state = Audience::Accepted;
                error!(
                    "the API server accepts tokens minted with --identity-audience: workload identity is disabled; choose a dedicated audience (the IdP's client id)"
                );
                Err(audience_accepted())
            }
            Err(message) => {
                warn!("could not check the identity audience: {message}");
                Err(CredentialsProblem::TokenRequestFailed(format!(
                    "the audience check (SelfSubjectReview) could not run: {message}; nothing was exchanged"
                )))
            }
        }
    }

    /// One IAM/STS call from the shared bucket.
    fn take_budget(&self) -> Result<(), CredentialsProblem> {
        let now = self.clock.now();
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *bucket;
        if let Some(last) = *last {
            let elapsed = (now - last).to_std().unwrap_or_default().as_secs_f64();
            *tokens = (*tokens + elapsed * EXCHANGES_PER_SECOND).min(EXCHANGE_BURST);
        }
        *last = Some(now);
        if *tokens < 1.0 {
            return Err(CredentialsProblem::IdentityExchangeFailed(
                "IAM/STS calls are rate limited; trying again shortly".into(),
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }

    /// Forgets the users that are gone and the identities nobody uses.
    pub fn retain(&self, uids: &HashSet<&str>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for entry in entries.values_mut() {
            entry.users.retain(|uid| uids.contains(uid.as_str()));
        }
        entries.retain(|_, entry| !entry.users.is_empty());
        self.keys_by_uid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|uid, _| uids.contains(uid.as_str()));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

enum Cached {
    Fresh(Arc<TemporaryCredentials>),
    Failed(CredentialsProblem),
    Refresh(Arc<tokio::sync::Mutex<()>>),
}

fn found(credentials: &TemporaryCredentials, fingerprint: String) -> IdentityCredentials {
    IdentityCredentials {
        credentials: credentials.credentials(),
        fingerprint,
    }
}

/// Refresh at 80 % of the lifetime, and at least 5 minutes before expiry.
pub fn refresh_at(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> DateTime<Utc> {
    let lifetime = (expires_at - now).to_std().unwrap_or_default();
    let at_80 = later(now, lifetime.mul_f64(0.8));
    let margin = expires_at - chrono::TimeDelta::minutes(5);
    at_80.min(margin).max(now)
}

/// The region of a region endpoint (`dcs.{region}.myhuaweicloud.com`).
fn region_of(endpoint: &Endpoint) -> Option<String> {
    if !endpoint.is_region_host() {
        return None;
    }
    let host = endpoint.as_str().trim_start_matches("https://");
    let host = host.split(['/', ':']).next().unwrap_or_default();
    host.strip_prefix("dcs.")
        .and_then(|rest| rest.strip_suffix(".myhuaweicloud.com"))
        .map(str::to_string)
}

fn endpoint(text: &str) -> Result<Endpoint, CredentialsProblem> {
    Endpoint::parse(text).map_err(|e| {
        CredentialsProblem::IdentityExchangeFailed(format!("the IAM/STS endpoint {text}: {e}"))
    })
}

fn audience_accepted() -> CredentialsProblem {
    CredentialsProblem::TokenRequestFailed(
        "workload identity is disabled: the API server accepts tokens of the configured --identity-audience (choose a dedicated audience)".into(),
    )
}

fn exchange_problem(error: IamError) -> CredentialsProblem {
    CredentialsProblem::IdentityExchangeFailed(error.code_and_message())
}

/// Mints a token for `service_account` (which must exist and carry the label).
async fn mint(
    client: &Client,
    namespace: &str,
    service_account: &str,
    audience: &str,
) -> Result<SecretString, CredentialsProblem> {
    let failed = |what: String| CredentialsProblem::TokenRequestFailed(what);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let account = accounts
        .get_opt(service_account)
        .await
        .map_err(|e| {
            failed(format!(
                "reading the ServiceAccount {service_account}: {}",
                kube_message(&e)
            ))
        })?
        .ok_or_else(|| {
            failed(format!(
                "the ServiceAccount {service_account} does not exist in namespace {namespace}"
            ))
        })?;
    if account.labels().get(IDENTITY_LABEL).map(String::as_str) != Some("true") {
        return Err(failed(format!(
            "the ServiceAccount {service_account} lacks the label {IDENTITY_LABEL}: \"true\" (whoever may label ServiceAccounts here decides which the operator may act as)"
        )));
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_string()],
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let minted = accounts
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            failed(format!(
                "the TokenRequest for {service_account} failed: {}",
                kube_message(&e)
            ))
        })?;
    let token = minted
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty() && t.len() <= 16 << 10);
    token
        .map(SecretString::new)
        .ok_or_else(|| failed("the TokenRequest answer holds no usable token".into()))
}

/// A Kubernetes error for a condition: its status and reason, never a body that
/// might echo a token.
fn kube_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} {}", status.code, status.reason),
        other => crate::dcs::bounded::clip(&other.to_string(), 256).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_at_80_percent_and_at_least_five_minutes_early() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let hour = now + chrono::TimeDelta::hours(1);
        assert_eq!(refresh_at(now, hour), now + chrono::TimeDelta::minutes(48));
        let short = now + chrono::TimeDelta::minutes(15);
        assert_eq!(refresh_at(now, short), now + chrono::TimeDelta::minutes(10));
        let past = now - chrono::TimeDelta::minutes(1);
        assert_eq!(refresh_at(now, past), now);
    }

    #[test]
    fn regions_come_only_from_region_endpoints() {
        let region = Endpoint::for_region("cn-north-4").unwrap();
        assert_eq!(region_of(&region).as_deref(), Some("cn-north-4"));
        let other = Endpoint::parse("https://dcs.example.com").unwrap();
        assert_eq!(region_of(&other), None);
    }
}
