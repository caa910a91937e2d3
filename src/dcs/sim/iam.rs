//! IAM, STS and CCE Pod Identity, simulated on the DCS simulator's listener, with the
//! SDK's field names, headers and status codes (CREDENTIALS.md §2):
//!
//! - `POST /v3.0/OS-AUTH/id-token/tokens` (`iam_id_token`): an OIDC ID token, verified
//!   (RS256 against the trusted JWKS, `iss`, `aud`, `exp`/`nbf` on the injected clock,
//!   `sub` against the IdP's mapping) → 201 with a federated token in `X-Subject-Token`;
//! - `POST /v3.0/OS-CREDENTIAL/securitytokens` (`iam_security_tokens`): that token →
//!   201 temporary AK/SK + security token;
//! - `POST /v5/agencies/assume-with-oidc` (`sts_assume_oidc`): an ID token checked
//!   against an OIDC provider and an agency's trusted subjects → 200 temporary keys;
//! - `POST /_sim/pod-identity/credentials` (`pod_identity`): a configured raw token in
//!   `Authorization` → 200 temporary keys (the CCE Pod Identity agent's answer).
//!
//! The DCS routes accept the temporary keys only with their security token, signed,
//! and only until they expire ([`check_security_token`]). Issued tokens and keys are
//! bounded ([`MAX_FEDERATED_TOKENS`], [`MAX_TEMPORARY_CREDENTIALS`]; the oldest go
//! first). Error codes are the simulator's own (the real ones are undocumented).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SimError;
use super::state::SimState;
use crate::dcs::iam::{ASSUME_AGENCY_DEFAULT_DURATION, SECURITY_TOKEN_DEFAULT_DURATION};
use crate::dcs::signer::Authorization;

/// Route labels of the identity routes (counters, fault scoping).
pub const ROUTE_LABELS: [&str; 4] = [
    "iam_id_token",
    "iam_security_tokens",
    "sts_assume_oidc",
    "pod_identity",
];
/// Where the simulated CCE Pod Identity agent answers (on the simulator's listener).
pub const POD_IDENTITY_PATH: &str = "/_sim/pod-identity/credentials";
/// Live temporary credentials kept at most; issuing one more forgets the oldest.
pub const MAX_TEMPORARY_CREDENTIALS: usize = 10_000;
/// Live federated tokens kept at most; issuing one more forgets the oldest.
pub const MAX_FEDERATED_TOKENS: usize = 10_000;
/// A federated token from the ID-token exchange lasts this long.
pub const FEDERATED_TOKEN_LIFETIME: TimeDelta = TimeDelta::hours(24);
/// Pod Identity credentials last this long.
pub const POD_IDENTITY_LIFETIME: TimeDelta = TimeDelta::hours(1);
/// Identity request bodies larger than this are refused (413) before being read.
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// An agency's maximum session when the configuration names none (1 h).
pub const DEFAULT_AGENCY_MAX_DURATION: u32 = 3600;
/// The range of an agency's maximum session (1–12 h).
const AGENCY_MAX_DURATION: std::ops::RangeInclusive<u32> = 3600..=43_200;
const SECURITY_TOKEN_DURATION: std::ops::RangeInclusive<u64> = 900..=86_400;
const ASSUME_DURATION_MIN: u64 = 900;
const ASSUME_DURATION_MAX: u64 = 43_200;
const MAX_JWT_CHARS: usize = 20_000;

/// What the simulated identity services trust and accept. `Default` is disabled:
/// no keys, no IdPs, no providers, no Pod Identity tokens (every exchange refused).
///
/// In an instance file it is the top-level `identity` block ([`parse_identity_config`]);
/// `jwks_file` there is read (relative to the file) into `jwks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// The trusted JWKS (`{"keys":[…]}`, e.g. the cluster's `/openid/v1/jwks`); RSA
    /// keys only are used. Also settable at run time ([`SimState::set_jwks`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// A file holding the JWKS (instance files only; relative to the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// IAM identity providers for the ID-token exchange.
    pub idps: Vec<IdpConfig>,
    /// IAM5 OIDC providers and their agencies for assume-with-OIDC.
    pub oidc_providers: Vec<OidcProviderConfig>,
    /// Tokens the simulated Pod Identity agent accepts.
    pub pod_identity: Vec<PodIdentityToken>,
}

/// An IAM identity provider with an OIDC protocol in program access mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpConfig {
    /// What `X-Idp-Id` names.
    pub id: String,
    /// The exact `iss` (the IdP's `idp_url`).
    pub issuer: String,
    /// Must be one of the token's `aud`.
    pub client_id: String,
    /// The mapping rule: exact `sub` values that map to a user (`any_one_of`).
    #[serde(default)]
    pub subjects: Vec<String>,
}

/// An IAM5 OIDC provider and the agencies that trust it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    pub provider_urn: String,
    /// The exact `iss`.
    pub issuer: String,
    /// One of these must be among the token's `aud`.
    pub client_ids: Vec<String>,
    #[serde(default)]
    pub agencies: Vec<AgencyConfig>,
}

/// A trust agency: who may assume it, and for how long at most.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyConfig {
    pub agency_urn: String,
    /// Exact `sub` values its trust policy allows.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// The agency's maximum session, 3600–43200 s (default 3600).
    #[serde(default = "default_agency_max_duration")]
    pub max_duration_seconds: u32,
}

fn default_agency_max_duration() -> u32 {
    DEFAULT_AGENCY_MAX_DURATION
}

/// A raw token the Pod Identity agent accepts in `Authorization`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodIdentityToken {
    pub token: String,
}

impl fmt::Debug for PodIdentityToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PodIdentityToken(<redacted>)")
    }
}

impl PodIdentityToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
        }
    }
}

impl IdentityConfig {
    /// True when any exchange can succeed.
    pub fn is_enabled(&self) -> bool {
        !self.idps.is_empty() || !self.oidc_providers.is_empty() || !self.pod_identity.is_empty()
    }

    /// Refuses what cannot work: a JWKS without an RSA key, empty or duplicate
    /// names, an agency's maximum outside 1–12 h, an unprintable Pod Identity token.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |message: String| Err(SimError::Identity(message));
        if let Some(jwks) = &self.jwks {
            trusted_keys(jwks)?;
        }
        let mut ids = std::collections::HashSet::new();
        for (index, idp) in self.idps.iter().enumerate() {
            if !printable(&idp.id) || !ids.insert(idp.id.as_str()) {
                return bad(format!(
                    "idps[{index}].id must be a unique, non-empty printable ASCII string"
                ));
            }
            if idp.issuer.is_empty() || idp.client_id.is_empty() {
                return bad(format!("idps[{index}] needs an issuer and a client_id"));
            }
        }
        let mut urns = std::collections::HashSet::new();
        for (index, provider) in self.oidc_providers.iter().enumerate() {
            if !printable(&provider.provider_urn) || !urns.insert(provider.provider_urn.as_str()) {
                return bad(format!(
                    "oidc_providers[{index}].provider_urn must be a unique, non-empty printable ASCII string"
                ));
            }
            if provider.issuer.is_empty()
                || provider.client_ids.is_empty()
                || provider.client_ids.len() > 100
                || provider.client_ids.iter().any(String::is_empty)
            {
                return bad(format!(
                    "oidc_providers[{index}] needs an issuer and 1 to 100 non-empty client_ids"
                ));
            }
            let mut agencies = std::collections::HashSet::new();
            for (at, agency) in provider.agencies.iter().enumerate() {
                if !printable(&agency.agency_urn) || !agencies.insert(agency.agency_urn.as_str()) {
                    return bad(format!(
                        "oidc_providers[{index}].agencies[{at}].agency_urn must be a unique, non-empty printable ASCII string"
                    ));
                }
                if !AGENCY_MAX_DURATION.contains(&agency.max_duration_seconds) {
                    return bad(format!(
                        "oidc_providers[{index}].agencies[{at}].max_duration_seconds must be 3600 to 43200, got {}",
                        agency.max_duration_seconds
                    ));
                }
            }
        }
        for (index, pod) in self.pod_identity.iter().enumerate() {
            if !printable(&pod.token) || pod.token.len() > 32 * 1024 {
                return bad(format!(
                    "pod_identity[{index}].token must be 1 to 32768 printable ASCII characters"
                ));
            }
        }
        Ok(())
    }
}

fn printable(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads the `identity` block of an instance file (see [`parse_identity_config`]).
pub fn load_identity_config(path: &Path) -> Result<IdentityConfig, SimError> {
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_identity_config(&text, path.parent())
}

/// The optional top-level `identity` object of an instance file (YAML or JSON); a
/// file without one (or a bare list) gives the disabled default. A relative
/// `jwks_file` is read from `base_dir` (the instance file's folder).
pub fn parse_identity_config(
    text: &str,
    base_dir: Option<&Path>,
) -> Result<IdentityConfig, SimError> {
    let document: Value =
        serde_yaml::from_str(text).map_err(|e| SimError::Syntax(e.to_string()))?;
    let block = match document {
        Value::Object(mut top) => match top.remove("identity") {
            None | Some(Value::Null) => return Ok(IdentityConfig::default()),
            Some(block) => block,
        },
        _ => return Ok(IdentityConfig::default()),
    };
    let mut config: IdentityConfig = serde_json::from_value(block)
        .map_err(|e| SimError::Identity(format!("the identity block: {e}")))?;
    if let Some(file) = config.jwks_file.clone() {
        if config.jwks.is_some() {
            return Err(SimError::Identity(
                "give jwks or jwks_file, not both".into(),
            ));
        }
        let path = match base_dir {
            Some(dir) if file.is_relative() => dir.join(&file),
            _ => file,
        };
        let text = std::fs::read_to_string(&path).map_err(|source| SimError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let jwks = serde_json::from_str(&text).map_err(|e| {
            SimError::Identity(format!("{} is not a JWKS JSON: {e}", path.display()))
        })?;
        config.jwks = Some(jwks);
        config.jwks_file = Some(path);
    }
    config.validate()?;
    Ok(config)
}

/// One RSA key of the trusted JWKS.
struct TrustedKey {
    kid: Option<String>,
    key: DecodingKey,
}

/// The RSA keys of a JWKS (other key types are skipped); at least one.
fn trusted_keys(jwks: &Value) -> Result<Vec<TrustedKey>, SimError> {
    let set: JwkSet = serde_json::from_value(jwks.clone())
        .map_err(|e| SimError::Identity(format!("the JWKS is not a JWK set: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) {
            continue;
        }
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| SimError::Identity(format!("a JWKS key is not usable: {e}")))?;
        keys.push(TrustedKey {
            kid: jwk.common.key_id.clone(),
            key,
        });
    }
    if keys.is_empty() {
        return Err(SimError::Identity("the JWKS holds no RSA key".into()));
    }
    Ok(keys)
}

/// What the DCS gateway needs to check a temporary access key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TemporaryKey {
    pub(crate) secret_key: String,
    pub(crate) security_token: String,
    pub(crate) expires_at: DateTime<Utc>,
}

/// Issued things, bounded: the oldest entry goes when a new one would exceed `cap`.
struct Ledger<T> {
    entries: HashMap<String, (u64, T)>,
    order: BTreeMap<u64, String>,
    next: u64,
    cap: usize,
}

impl<T> Ledger<T> {
    fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            cap,
        }
    }

    fn insert(&mut self, key: String, value: T) {
        if let Some((old, _)) = self.entries.remove(&key) {
            self.order.remove(&old);
        }
        while self.entries.len() >= self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let seq = self.next;
        self.next += 1;
        self.entries.insert(key.clone(), (seq, value));
        self.order.insert(seq, key);
    }

    fn get(&self, key: &str) -> Option<&T> {
        self.entries.get(key).map(|(_, value)| value)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

struct Live {
    config: IdentityConfig,
    keys: Vec<TrustedKey>,
    federated: Ledger<DateTime<Utc>>,
    temporary: Ledger<TemporaryKey>,
}

/// The identity services' state inside [`SimState`].
pub(crate) struct Identity {
    live: Mutex<Live>,
}

impl Identity {
    pub(crate) fn new(mut config: IdentityConfig) -> Self {
        let keys = match config.jwks.take() {
            Some(jwks) => trusted_keys(&jwks).unwrap_or_else(|error| {
                tracing::warn!(%error, "the simulator trusts no ID-token signing key");
                Vec::new()
            }),
            None => Vec::new(),
        };
        Self {
            live: Mutex::new(Live {
                config,
                keys,
                federated: Ledger::new(MAX_FEDERATED_TOKENS),
                temporary: Ledger::new(MAX_TEMPORARY_CREDENTIALS),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the trusted JWKS; returns the number of RSA keys now trusted.
    pub(crate) fn set_jwks(&self, jwks: &Value) -> Result<usize, SimError> {
        let keys = trusted_keys(jwks)?;
        let count = keys.len();
        self.lock().keys = keys;
        Ok(count)
    }

    /// Replaces the configuration (and the JWKS when it carries one); issued tokens
    /// and keys stay valid until they expire.
    pub(crate) fn set_config(&self, mut config: IdentityConfig) -> Result<(), SimError> {
        config.validate()?;
        let keys = config
            .jwks
            .take()
            .map(|jwks| trusted_keys(&jwks))
            .transpose()?;
        let mut live = self.lock();
        if let Some(keys) = keys {
            live.keys = keys;
        }
        live.config = config;
        Ok(())
    }

    pub(crate) fn temporary_key(&self, access_key: &str) -> Option<TemporaryKey> {
        self.lock().temporary.get(access_key).cloned()
    }

    pub(crate) fn counts(&self) -> (usize, usize) {
        let live = self.lock();
        (live.federated.len(), live.temporary.len())
    }

    /// Issues temporary keys valid until `expires_at`.
    fn issue(&self, expires_at: DateTime<Utc>) -> (String, TemporaryKey) {
        let access_key = random_text(20, UPPER_ALNUM);
        let key = TemporaryKey {
            secret_key: random_text(40, ALNUM),
            security_token: random_text(200, ALNUM),
            expires_at,
        };
        self.lock()
            .temporary
            .insert(access_key.clone(), key.clone());
        (access_key, key)
    }

    /// What `GET /_sim/identity` shows: names and counts, no token.
    pub(crate) fn view(&self) -> Value {
        let live = self.lock();
        json!({
            "enabled": live.config.is_enabled(),
            "jwks_keys": live.keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
            "idps": live.config.idps,
            "oidc_providers": live.config.oidc_providers,
            "pod_identity_tokens": live.config.pod_identity.len(),
            "federated_tokens": live.federated.len(),
            "temporary_credentials": live.temporary.len(),
        })
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn random_text(len: usize, charset: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(charset[rng.random_range(0..charset.len())]))
        .collect()
}

/// The DCS gateway's extra checks for a temporary access key: its security token
/// is present, is the one issued with it, is signed, and has not expired. `Err` is
/// the detail for the 401 `APIG.0301` message.
pub(crate) fn check_security_token(
    key: &TemporaryKey,
    authorization: &Authorization,
    security_token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), &'static str> {
    if key.expires_at <= now {
        return Err("the temporary access key and its security token have expired");
    }
    let Some(token) = security_token else {
        return Err("a temporary access key needs its X-Security-Token");
    };
    if !constant_time_eq(token.trim().as_bytes(), key.security_token.as_bytes()) {
        return Err("the X-Security-Token does not belong to the access key");
    }
    if !authorization
        .signed_headers
        .iter()
        .any(|name| name.eq_ignore_ascii_case("x-security-token"))
    {
        return Err("X-Security-Token must be among the signed headers");
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The identity routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    IdToken,
    SecurityTokens,
    AssumeOidc,
    PodIdentity,
}

impl Route {
    pub(crate) fn parse(method: &Method, path: &str) -> Option<Self> {
        if method != Method::POST {
            return None;
        }
        match path.trim_end_matches('/') {
            "/v3.0/OS-AUTH/id-token/tokens" => Some(Route::IdToken),
            "/v3.0/OS-CREDENTIAL/securitytokens" => Some(Route::SecurityTokens),
            "/v5/agencies/assume-with-oidc" => Some(Route::AssumeOidc),
            POD_IDENTITY_PATH => Some(Route::PodIdentity),
            _ => None,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Route::IdToken => ROUTE_LABELS[0],
            Route::SecurityTokens => ROUTE_LABELS[1],
            Route::AssumeOidc => ROUTE_LABELS[2],
            Route::PodIdentity => ROUTE_LABELS[3],
        }
    }

    fn style(self) -> Style {
        match self {
            Route::IdToken | Route::SecurityTokens => Style::Iam,
            Route::AssumeOidc => Style::Sts,
            Route::PodIdentity => Style::Pod,
        }
    }
}

/// Which error body a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `{"error":{"code","message","title"}}`
    Iam,
    /// `{"error_code","error_msg","request_id"}`
    Sts,
    /// `{"error_code","error_msg"}`
    Pod,
}

impl Style {
    fn prefix(self) -> &'static str {
        match self {
            Style::Iam => "IAM",
            Style::Sts => "STS",
            Style::Pod => "CCE",
        }
    }
}

/// An identity route's answer, turned into a response by the caller.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The exchange issued a token or credentials.
    pub(crate) applied: bool,
}

/// A refusal: status, the code's name after the service prefix, the message.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }
}

/// Answers an identity request (after faults and the body limit).
pub(crate) fn handle(
    state: &SimState,
    route: Route,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Answer {
    let now = state.now();
    let identity = state.identity();
    let outcome = match route {
        Route::IdToken => id_token(identity, headers, body, now),
        Route::SecurityTokens => security_tokens(identity, headers, body, now),
        Route::AssumeOidc => assume_oidc(identity, body, now),
        Route::PodIdentity => pod_identity(identity, headers, now),
    };
    let mut answer = match outcome {
        Ok(answer) => answer,
        Err(refusal) => refusal_answer(route.style(), refusal, request_id),
    };
    if route.style() != Style::Pod {
        answer
            .headers
            .push(("x-iam-trace-id", request_id.to_string()));
    }
    answer
}

/// The answer to a body over [`MAX_BODY_BYTES`].
pub(crate) fn too_large(route: Route, request_id: &str) -> Answer {
    refusal_answer(
        route.style(),
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "InvalidRequest",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        ),
        request_id,
    )
}

fn refusal_answer(style: Style, refusal: Refusal, request_id: &str) -> Answer {
    let code = format!("{}.{}", style.prefix(), refusal.code);
    let body = match style {
        Style::Iam => json!({"error": {
            "code": code,
            "message": refusal.message,
            "title": refusal.status.canonical_reason().unwrap_or("Error"),
        }}),
        Style::Sts => {
            json!({"error_code": code, "error_msg": refusal.message, "request_id": request_id})
        }
        Style::Pod => json!({"error_code": code, "error_msg": refusal.message}),
    };
    Answer {
        status: refusal.status,
        body,
        headers: Vec::new(),
        applied: false,
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

fn json_body(body: &[u8]) -> Result<serde_json::Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Refusal::bad_request(
            "the request body must be a JSON object",
        )),
    }
}

fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Why an ID token was refused (codes after the service prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenRefusal {
    Malformed,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    Subject,
}

impl TokenRefusal {
    fn refusal(self, detail: impl Into<String>) -> Refusal {
        let code = match self {
            TokenRefusal::Malformed => "IdTokenInvalid",
            TokenRefusal::Signature => "IdTokenSignatureInvalid",
            TokenRefusal::Expired => "IdTokenExpired",
            TokenRefusal::NotYetValid => "IdTokenNotYetValid",
            TokenRefusal::Issuer => "IdTokenIssuerMismatch",
            TokenRefusal::Audience => "IdTokenAudienceMismatch",
            TokenRefusal::Subject => "IdTokenSubjectNotMapped",
        };
        Refusal::new(StatusCode::UNAUTHORIZED, code, detail)
    }
}

/// Verifies an ID token's RS256 signature against the trusted keys (by `kid` when
/// the header names one, else every key) and its `exp`/`nbf` against `now` (the
/// injected clock: jsonwebtoken's own time checks are off). Returns the claims.
/// How far in the future a token's `nbf` may be (clock skew between the token's
/// issuer and the simulator).
const NBF_LEEWAY_SECONDS: f64 = 30.0;

fn verify_jwt(keys: &[TrustedKey], token: &str, now: DateTime<Utc>) -> Result<Value, Refusal> {
    if token.len() < 4 || token.len() > MAX_JWT_CHARS {
        return Err(TokenRefusal::Malformed.refusal(format!(
            "the ID token must be 4 to {MAX_JWT_CHARS} characters"
        )));
    }
    // A build with no (or two) jsonwebtoken crypto providers would panic on decode.
    if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
        return Err(TokenRefusal::Signature.refusal("no signature verifier is available"));
    }
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| TokenRefusal::Malformed.refusal("the ID token is not a JWT"))?;
    if header.alg != Algorithm::RS256 {
        return Err(TokenRefusal::Signature.refusal("the ID token must be signed with RS256"));
    }
    let candidates: Vec<&TrustedKey> = keys
        .iter()
        .filter(|key| header.kid.is_none() || key.kid == header.kid)
        .collect();
    if candidates.is_empty() {
        return Err(TokenRefusal::Signature.refusal(match &header.kid {
            Some(_) if !keys.is_empty() => "no trusted signing key has the ID token's kid",
            _ => "no trusted signing key (the JWKS is not configured)",
        }));
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    let mut claims = None;
    for candidate in candidates {
        match jsonwebtoken::decode::<Value>(token, &candidate.key, &validation) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(error)
                if matches!(
                    error.kind(),
                    jsonwebtoken::errors::ErrorKind::InvalidSignature
                ) =>
            {
                continue;
            }
            Err(_) => {
                return Err(TokenRefusal::Malformed.refusal("the ID token cannot be decoded"));
            }
        }
    }
    let claims = claims.ok_or_else(|| {
        TokenRefusal::Signature.refusal("the ID token's signature does not verify")
    })?;
    if !claims.is_object() {
        return Err(TokenRefusal::Malformed.refusal("the ID token's claims are not an object"));
    }
    let seconds = |name: &str| claims.get(name).and_then(Value::as_f64);
    let now_seconds = now.timestamp() as f64;
    match seconds("exp") {
        None => return Err(TokenRefusal::Expired.refusal("the ID token has no numeric exp")),
        Some(exp) if exp <= now_seconds => {
            return Err(TokenRefusal::Expired.refusal("the ID token has expired"));
        }
        Some(_) => {}
    }
    if claims.get("nbf").is_some() {
        match seconds("nbf") {
            // A little skew between the token issuer's clock (a remote API server)
            // and this one is tolerated for nbf, as identity providers do.
            Some(nbf) if nbf <= now_seconds + NBF_LEEWAY_SECONDS => {}
            _ => return Err(TokenRefusal::NotYetValid.refusal("the ID token is not valid yet")),
        }
    }
    Ok(claims)
}

fn check_issuer(claims: &Value, issuer: &str) -> Result<(), Refusal> {
    if claims.get("iss").and_then(Value::as_str) == Some(issuer) {
        return Ok(());
    }
    Err(TokenRefusal::Issuer.refusal("the ID token's iss is not the provider's issuer"))
}

/// The token's `aud` (a string or a list of strings) as a list.
fn audiences(claims: &Value) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn subject(claims: &Value) -> Option<&str> {
    claims.get("sub").and_then(Value::as_str)
}

/// `POST /v3.0/OS-AUTH/id-token/tokens`.
fn id_token(
    identity: &Identity,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Answer, Refusal> {
    let idp_id = header(headers, "x-idp-id")
        .ok_or_else(|| Refusal::bad_request("the X-Idp-Id header is required"))?;
    let body = json_body(body)?;
    let jwt = body
        .get("auth")
        .and_then(|auth| auth.get("id_token"))
        .and_then(|token| token.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::bad_request("auth.id_token.id is required"))?;
    let mut live = identity.lock();
    let idp = live
        .config
        .idps
        .iter()
        .find(|idp| idp.id == idp_id)
        .cloned()
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "IdpNotFound",
                "no identity provider has this X-Idp-Id",
            )
        })?;
    let claims = verify_jwt(&live.keys, jwt, now)?;
    check_issuer(&claims, &idp.issuer)?;
    if !audiences(&claims).contains(&idp.client_id.as_str()) {
        return Err(
            TokenRefusal::Audience.refusal("the ID token's aud does not hold the client ID")
        );
    }
    let sub = subject(&claims)
        .filter(|sub| idp.subjects.iter().any(|s| s == sub))
        .ok_or_else(|| {
            TokenRefusal::Subject
                .refusal("no mapping rule of the identity provider matches the ID token's sub")
        })?
        .to_string();
    let token = format!("MIIsim{}", random_text(250, ALNUM));
    let expires_at = now + FEDERATED_TOKEN_LIFETIME;
    live.federated.insert(token.clone(), expires_at);
    drop(live);
    let user_id = random_text(32, b"0123456789abcdef");
    Ok(Answer {
        status: StatusCode::CREATED,
        body: json!({"token": {
            "expires_at": time_text(expires_at),
            "issued_at": time_text(now),
            "methods": ["mapped"],
            "user": {
                "id": user_id,
                "name": format!("FederationUser-{}", idp.id),
                "domain": {"id": "0123456789abcdef0123456789abcdef", "name": "sim-domain"},
                "OS-FEDERATION": {
                    "identity_provider": {"id": idp.id},
                    "protocol": {"id": "oidc"},
                    "groups": [],
                },
                "subject": sub,
            },
            "roles": [],
            "catalog": [],
        }}),
        headers: vec![("x-subject-token", token)],
        applied: true,
    })
}

/// A duration field: absent means `default`; otherwise a whole number in `range`.
fn duration(
    value: Option<&Value>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, Refusal> {
    let seconds = match value {
        None | Some(Value::Null) => return Ok(default),
        Some(value) => value.as_u64(),
    };
    seconds.filter(|s| range.contains(s)).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "DurationOutOfRange",
            format!(
                "duration_seconds must be a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )
    })
}

/// `POST /v3.0/OS-CREDENTIAL/securitytokens`.
fn security_tokens(
    identity: &Identity,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Answer, Refusal> {
    let body = json_body(body)?;
    let id = body
        .get("auth")
        .and_then(|auth| auth.get("identity"))
        .ok_or_else(|| Refusal::bad_request("auth.identity is required"))?;
    let token_method = id
        .get("methods")
        .and_then(Value::as_array)
        .is_some_and(|methods| methods.iter().any(|m| m == "token"));
    if !token_method {
        return Err(Refusal::bad_request(
            "auth.identity.methods must be [\"token\"]",
        ));
    }
    let body_token = id
        .get("token")
        .and_then(|token| token.get("id"))
        .and_then(Value::as_str);
    // The header wins over the body.
    let token = header(headers, "x-auth-token")
        .or(body_token)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "TokenInvalid",
                "no token: send X-Auth-Token or auth.identity.token.id",
            )
        })?;
    let expires = identity.lock().federated.get(token).copied();
    match expires {
        None => {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "TokenInvalid",
                "the token is not valid",
            ));
        }
        Some(at) if at <= now => {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "TokenExpired",
                "the token has expired",
            ));
        }
        Some(_) => {}
    }
    let seconds = duration(
        id.get("token").and_then(|t| t.get("duration_seconds")),
        u64::from(SECURITY_TOKEN_DEFAULT_DURATION),
        SECURITY_TOKEN_DURATION,
    )?;
    let expires_at = now + TimeDelta::seconds(seconds as i64);
    let (access_key, key) = identity.issue(expires_at);
    Ok(Answer {
        status: StatusCode::CREATED,
        body: json!({"credential": {
            "access": access_key,
            "secret": key.secret_key,
            "securitytoken": key.security_token,
            "expires_at": time_text(expires_at),
        }}),
        headers: Vec::new(),
        applied: true,
    })
}

/// `POST /v5/agencies/assume-with-oidc`.
fn assume_oidc(identity: &Identity, body: &[u8], now: DateTime<Utc>) -> Result<Answer, Refusal> {
    let body = json_body(body)?;
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Refusal::bad_request(format!("{name} is required")))
    };
    let provider_urn = text("provider_urn")?;
    let agency_urn = text("agency_urn")?;
    let session_name = text("agency_session_name")?;
    let jwt = text("id_token")?;
    if provider_urn.len() > 1500 {
        return Err(Refusal::bad_request("provider_urn is longer than 1500"));
    }
    if !(2..=128).contains(&session_name.chars().count()) {
        return Err(Refusal::bad_request(
            "agency_session_name must be 2 to 128 characters",
        ));
    }
    let live = identity.lock();
    let (provider, agency) = agency_of(&live.config, provider_urn, agency_urn)?;
    let claims = verify_jwt(&live.keys, jwt, now)?;
    check_issuer(&claims, &provider.issuer)?;
    let audience = audiences(&claims)
        .into_iter()
        .find(|aud| provider.client_ids.iter().any(|c| c == aud))
        .ok_or_else(|| {
            TokenRefusal::Audience
                .refusal("the ID token's aud holds none of the provider's client IDs")
        })?
        .to_string();
    let sub = subject(&claims)
        .filter(|sub| agency.subjects.iter().any(|s| s == sub))
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::FORBIDDEN,
                "IdTokenSubjectNotAllowed",
                "the agency's trust policy does not allow the ID token's sub",
            )
        })?
        .to_string();
    let max = ASSUME_DURATION_MAX.min(u64::from(agency.max_duration_seconds));
    let seconds = duration(
        body.get("duration_seconds"),
        u64::from(ASSUME_AGENCY_DEFAULT_DURATION).min(max),
        ASSUME_DURATION_MIN..=max,
    )?;
    let provider_urn = provider.provider_urn.clone();
    drop(live);
    let expires_at = now + TimeDelta::seconds(seconds as i64);
    let (access_key, key) = identity.issue(expires_at);
    let assumed_urn = assumed_urn(agency_urn, session_name);
    Ok(Answer {
        status: StatusCode::OK,
        body: json!({
            "credentials": {
                "access_key_id": access_key,
                "secret_access_key": key.secret_key,
                "security_token": key.security_token,
                "expiration": time_text(expires_at),
            },
            "assumed_agency": {
                "urn": assumed_urn,
                "id": format!("{}:{session_name}", random_text(32, b"0123456789abcdef")),
            },
            "source_identity": Value::Null,
            "audience": audience,
            "provider": provider_urn,
            "subject_from_id_token": sub,
        }),
        headers: Vec::new(),
        applied: true,
    })
}

/// The URN of an assumed agency session: `sts::{account}:assumed-agency:{name}/{session}`.
fn assumed_urn(agency_urn: &str, session_name: &str) -> String {
    match agency_urn.split_once(":agency:") {
        Some((account, name)) => match account.strip_prefix("iam::") {
            Some(account) => format!("sts::{account}:assumed-agency:{name}/{session_name}"),
            None => format!("{agency_urn}/{session_name}"),
        },
        None => format!("{agency_urn}/{session_name}"),
    }
}

/// The agency of `agency_urn` trusting the OIDC provider `provider_urn`.
fn agency_of<'a>(
    config: &'a IdentityConfig,
    provider_urn: &str,
    agency_urn: &str,
) -> Result<(&'a OidcProviderConfig, &'a AgencyConfig), Refusal> {
    let provider = config
        .oidc_providers
        .iter()
        .find(|p| p.provider_urn == provider_urn)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "OidcProviderNotFound",
                "no OIDC provider has this provider_urn",
            )
        })?;
    let agency = provider
        .agencies
        .iter()
        .find(|a| a.agency_urn == agency_urn)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "AgencyNotFound",
                "no agency with this agency_urn trusts the OIDC provider",
            )
        })?;
    Ok((provider, agency))
}

/// `POST /_sim/pod-identity/credentials`.
fn pod_identity(
    identity: &Identity,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<Answer, Refusal> {
    let unauthorized = || {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "PodIdentityUnauthorized",
            "the Authorization token is not accepted",
        )
    };
    let token = header(headers, "authorization").ok_or_else(unauthorized)?;
    let accepted = identity
        .lock()
        .config
        .pod_identity
        .iter()
        .any(|pod| constant_time_eq(pod.token.as_bytes(), token.as_bytes()));
    if !accepted {
        return Err(unauthorized());
    }
    let expires_at = now + POD_IDENTITY_LIFETIME;
    let (access_key, key) = identity.issue(expires_at);
    Ok(Answer {
        status: StatusCode::OK,
        body: json!({"credentials": {
            "accessKeyId": access_key,
            "secretAccessKey": key.secret_key,
            "securityToken": key.security_token,
            "expiration": time_text(expires_at),
        }}),
        headers: Vec::new(),
        applied: true,
    })
}

/// `GET /_sim/identity` and `PUT /_sim/identity/jwks`.
pub(crate) fn admin_router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/_sim/identity", get(show_identity))
        .route("/_sim/identity/jwks", put(put_jwks))
}

async fn show_identity(State(state): State<Arc<SimState>>) -> Response {
    (StatusCode::OK, axum::Json(state.identity().view())).into_response()
}

async fn put_jwks(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let reply = |status: StatusCode, body: Value| (status, axum::Json(body)).into_response();
    let jwks: Value = match serde_json::from_slice(&body) {
        Ok(jwks) => jwks,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("the body is not JSON: {e}")}),
            );
        }
    };
    match state.set_jwks(&jwks) {
        Ok(keys) => reply(StatusCode::OK, json!({"keys": keys})),
        Err(error) => reply(StatusCode::BAD_REQUEST, json!({"error": error.to_string()})),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::dcs::iam::test_tokens;
    use crate::dcs::sim::SimConfig;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/iam");
    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
    const SUB: &str = "system:serviceaccount:tenant-a:cache";

    fn jwks() -> Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/jwks.json")).unwrap())
            .unwrap()
    }

    fn pem() -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/test-key.pem")).unwrap()
    }

    fn config() -> IdentityConfig {
        IdentityConfig {
            jwks: Some(jwks()),
            idps: vec![IdpConfig {
                id: "sim-idp".into(),
                issuer: ISSUER.into(),
                client_id: "dcs-operator".into(),
                subjects: vec![SUB.into()],
            }],
            ..Default::default()
        }
    }

    fn state() -> (SimState, ManualClock) {
        let clock = ManualClock::new(Utc::now());
        let state = SimState::new(
            SimConfig {
                identity: config(),
                ..SimConfig::with_default_keys()
            },
            Arc::new(clock.clone()),
        );
        (state, clock)
    }

    fn jwt(now: DateTime<Utc>, change: impl FnOnce(&mut Value)) -> String {
        let mut claims = test_tokens::service_account_claims(
            ISSUER,
            "dcs-operator",
            "tenant-a",
            "cache",
            now,
            600,
        );
        change(&mut claims);
        test_tokens::sign_test_jwt(&claims, &pem(), test_tokens::TEST_KEY_ID)
    }

    fn exchange(state: &SimState, token: &str) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert("x-idp-id", "sim-idp".parse().unwrap());
        let body = json!({"auth": {"id_token": {"id": token}}}).to_string();
        handle(state, Route::IdToken, &headers, body.as_bytes(), "req-1")
    }

    fn code(answer: &Answer) -> &str {
        answer.body["error"]["code"].as_str().unwrap_or("")
    }

    #[test]
    fn routes_and_labels() {
        assert_eq!(
            Route::parse(&Method::POST, "/v3.0/OS-AUTH/id-token/tokens"),
            Some(Route::IdToken)
        );
        assert_eq!(
            Route::parse(&Method::POST, "/v3.0/OS-CREDENTIAL/securitytokens/"),
            Some(Route::SecurityTokens)
        );
        assert_eq!(
            Route::parse(&Method::POST, "/v5/agencies/assume-with-oidc").map(Route::label),
            Some("sts_assume_oidc")
        );
        assert_eq!(
            Route::parse(&Method::POST, POD_IDENTITY_PATH).map(Route::label),
            Some("pod_identity")
        );
        assert_eq!(Route::parse(&Method::GET, POD_IDENTITY_PATH), None);
        assert_eq!(Route::parse(&Method::POST, "/v3/auth/tokens"), None);
    }

    #[test]
    fn verifies_signature_claims_and_clock() {
        let (state, clock) = state();
        let now = state.now();
        let ok = exchange(&state, &jwt(now, |_| {}));
        assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
        assert!(ok.applied);
        assert_eq!(ok.body["token"]["methods"], json!(["mapped"]));
        let (name, token) = &ok.headers[0];
        assert_eq!(*name, "x-subject-token");
        assert!(token.starts_with("MIIsim"));
        let cases: Vec<(String, &str)> = vec![
            (
                jwt(now, |c| c["aud"] = json!(["other"])),
                "IAM.IdTokenAudienceMismatch",
            ),
            (jwt(now, |c| c["aud"] = json!("dcs-operator")), ""),
            (
                jwt(now, |c| c["iss"] = json!("https://evil")),
                "IAM.IdTokenIssuerMismatch",
            ),
            (
                jwt(now, |c| {
                    c["sub"] = json!("system:serviceaccount:tenant-b:cache")
                }),
                "IAM.IdTokenSubjectNotMapped",
            ),
            (
                jwt(now, |c| c["exp"] = json!(now.timestamp())),
                "IAM.IdTokenExpired",
            ),
            (
                jwt(now, |c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
                "IAM.IdTokenExpired",
            ),
            (
                jwt(now, |c| c["nbf"] = json!(now.timestamp() + 60)),
                "IAM.IdTokenNotYetValid",
            ),
            (
                test_tokens::with_signature_of(
                    &jwt(now, |_| {}),
                    &jwt(now, |c| c["sub"] = json!("x")),
                ),
                "IAM.IdTokenSignatureInvalid",
            ),
            (
                test_tokens::sign_test_jwt(
                    &json!({"exp": now.timestamp() + 60}),
                    &pem(),
                    "unknown-kid",
                ),
                "IAM.IdTokenSignatureInvalid",
            ),
            ("not.a.jwt".to_string(), "IAM.IdTokenInvalid"),
            ("abc".to_string(), "IAM.IdTokenInvalid"),
        ];
        for (token, expected) in cases {
            let answer = exchange(&state, &token);
            if expected.is_empty() {
                assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
            } else {
                assert_eq!(code(&answer), expected, "{:?}", answer.body);
                assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
                assert!(!answer.applied);
            }
        }
        // The token's exp is judged by the simulator's clock, not the system's.
        let token = jwt(now, |_| {});
        clock.advance(TimeDelta::seconds(600));
        assert_eq!(code(&exchange(&state, &token)), "IAM.IdTokenExpired");
        clock.advance(TimeDelta::seconds(-1200));
        assert_eq!(code(&exchange(&state, &token)), "IAM.IdTokenNotYetValid");
    }

    #[test]
    fn without_a_jwks_nothing_verifies_until_one_is_set() {
        let clock = ManualClock::new(Utc::now());
        let mut identity = config();
        identity.jwks = None;
        let state = SimState::new(
            SimConfig {
                identity,
                ..SimConfig::default()
            },
            Arc::new(clock),
        );
        let token = jwt(state.now(), |_| {});
        assert_eq!(
            code(&exchange(&state, &token)),
            "IAM.IdTokenSignatureInvalid"
        );
        assert!(state.set_jwks(&json!({"keys": []})).is_err());
        assert!(state.set_jwks(&json!({"nope": 1})).is_err());
        assert_eq!(state.set_jwks(&jwks()).unwrap(), 1);
        assert_eq!(exchange(&state, &token).status, StatusCode::CREATED);
    }

    #[test]
    fn ledgers_are_bounded_oldest_first() {
        let mut ledger = Ledger::new(3);
        for n in 0..5 {
            ledger.insert(format!("k{n}"), n);
        }
        assert_eq!(ledger.len(), 3);
        assert!(ledger.get("k0").is_none() && ledger.get("k1").is_none());
        assert_eq!(ledger.get("k4"), Some(&4));
        ledger.insert("k4".into(), 40);
        assert_eq!(ledger.len(), 3);
        ledger.insert("k5".into(), 5);
        assert!(ledger.get("k2").is_none());
        assert_eq!(ledger.get("k4"), Some(&40));
        // The real bound: one more than the cap forgets the first.
        let (state, _) = state();
        let first = state.identity().issue(state.now() + TimeDelta::hours(1)).0;
        for _ in 0..MAX_TEMPORARY_CREDENTIALS {
            state.identity().issue(state.now() + TimeDelta::hours(1));
        }
        assert_eq!(state.identity().counts().1, MAX_TEMPORARY_CREDENTIALS);
        assert!(state.identity().temporary_key(&first).is_none());
    }

    #[test]
    fn security_token_checks() {
        let now = Utc::now();
        let key = TemporaryKey {
            secret_key: "sk".into(),
            security_token: "tok".into(),
            expires_at: now + TimeDelta::seconds(10),
        };
        let auth = |signed: &str| {
            Authorization::parse(&format!(
                "SDK-HMAC-SHA256 Access=AK, SignedHeaders={signed}, Signature=x"
            ))
            .unwrap()
        };
        let signed = auth("host;x-sdk-date;x-security-token");
        assert!(check_security_token(&key, &signed, Some("tok"), now).is_ok());
        assert!(check_security_token(&key, &signed, None, now).is_err());
        assert!(check_security_token(&key, &signed, Some("other"), now).is_err());
        assert!(check_security_token(&key, &auth("host;x-sdk-date"), Some("tok"), now).is_err());
        assert!(
            check_security_token(&key, &signed, Some("tok"), now + TimeDelta::seconds(10)).is_err()
        );
    }

    #[test]
    fn identity_block_of_an_instance_file() {
        let yaml = r#"
instances: []
identity:
  jwks_file: jwks.json
  idps:
    - {id: sim-idp, issuer: "https://issuer", client_id: dcs-operator, subjects: ["system:serviceaccount:a:b"]}
  oidc_providers:
    - provider_urn: "iam::0123:oidc-provider:cluster"
      issuer: "https://issuer"
      client_ids: [dcs-operator]
      agencies:
        - {agency_urn: "iam::0123:agency:tenant-a", subjects: ["system:serviceaccount:a:b"], max_duration_seconds: 7200}
        - {agency_urn: "iam::0123:agency:tenant-b"}
  pod_identity:
    - token: pod-token-1
"#;
        let config = parse_identity_config(yaml, Some(Path::new(FIXTURES))).unwrap();
        assert!(config.is_enabled());
        assert_eq!(config.jwks, Some(jwks()));
        assert_eq!(config.idps[0].client_id, "dcs-operator");
        let agencies = &config.oidc_providers[0].agencies;
        assert_eq!(agencies[0].max_duration_seconds, 7200);
        assert_eq!(agencies[1].max_duration_seconds, 3600);
        assert!(!format!("{config:?}").contains("pod-token-1"));
        assert_eq!(
            parse_identity_config("instances: []", None).unwrap(),
            IdentityConfig::default()
        );
        assert_eq!(
            parse_identity_config("[]", None).unwrap(),
            IdentityConfig::default()
        );
        for bad in [
            "identity: {idps: [{id: x, issuer: i}]}",
            "identity: {typo: 1}",
            "identity: {jwks: {keys: []}}",
            "identity: {idps: [{id: x, issuer: i, client_id: c}, {id: x, issuer: i, client_id: c}]}",
            "identity: {oidc_providers: [{provider_urn: p, issuer: i, client_ids: []}]}",
            "identity: {oidc_providers: [{provider_urn: p, issuer: i, client_ids: [c], agencies: [{agency_urn: a, max_duration_seconds: 60}]}]}",
            "identity: {pod_identity: [{token: 'with space'}]}",
            "identity: {jwks_file: /nonexistent/jwks.json}",
            "identity: {jwks_file: x.json, jwks: {keys: []}}",
        ] {
            assert!(parse_identity_config(bad, None).is_err(), "{bad}");
        }
    }
}
