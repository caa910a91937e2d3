//! The operator's own credentials: the official SDKs' credential provider chain
//! (huaweicloudsdkcore 3.1.219), in the SDK's order and with its environment names,
//! preceded by `--credentials-dir` when given.
//!
//! 1. `--credentials-dir`: a mounted Secret, one file per key, re-read on every use.
//! 2. OIDC STS (`HUAWEICLOUD_OIDC_*`): an ID token exchanged for trust-agency
//!    credentials (STS AssumeAgencyWithOIDC).
//! 3. Environment (`HUAWEICLOUD_SDK_*`): IdP federation (`HUAWEICLOUD_SDK_IDP_ID` +
//!    `HUAWEICLOUD_SDK_ID_TOKEN_FILE`, which wins), else static keys.
//! 4. Profile: the INI file at `HUAWEICLOUD_SDK_CREDENTIALS_FILE`, else
//!    `~/.huaweicloud/credentials`, re-read on every use.
//! 5. ECS metadata, only with `--credentials-from-metadata` (the node's identity,
//!    shared by every pod on the node).
//! 6. CCE Pod Identity (`HC_CONTAINER_CREDENTIALS_FULL_URI` +
//!    `HC_CONTAINER_AUTHORIZATION_TOKEN_FILE`).
//!
//! The first provider that is configured is the one used. A provider that is
//! configured but incomplete or failing is an error, never a fall-through to the
//! next one (the SDK stops its chain the same way). Token files are re-read on every
//! exchange (kubelet rotates them). Exchanged credentials are cached until shortly
//! before they expire, refreshed one exchange at a time, and a failed exchange backs
//! off instead of being repeated on every use.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use tracing::{info, warn};

use super::client::{ClientConfig, Endpoint};
use super::credentials::{Credentials, SecretString};
use super::iam::{
    AssumeAgency, IamClient, IamError, TemporaryCredentials, parse_temporary_credentials,
};
use crate::clock::SharedClock;
use crate::controller::secrets::{
    FoundCredentials, KEY_ACCESS_KEY, KEY_AUTH_TOKEN, KEY_SECRET_KEY, KEY_SECURITY_TOKEN,
    parse_credentials, valid_project_id,
};
use crate::plan::CredentialsProblem;

// OIDC STS (provider 1 of the SDK).
pub const ENV_OIDC_PROVIDER_URN: &str = "HUAWEICLOUD_OIDC_PROVIDER_URN";
pub const ENV_OIDC_AGENCY_URN: &str = "HUAWEICLOUD_OIDC_AGENCY_URN";
pub const ENV_OIDC_ID_TOKEN: &str = "HUAWEICLOUD_OIDC_ID_TOKEN";
pub const ENV_OIDC_TOKEN_FILE: &str = "HUAWEICLOUD_OIDC_TOKEN_FILE";
pub const ENV_OIDC_SESSION_NAME: &str = "HUAWEICLOUD_OIDC_SESSION_NAME";
pub const ENV_OIDC_DURATION_SECONDS: &str = "HUAWEICLOUD_OIDC_DURATION_SECONDS";
pub const ENV_OIDC_POLICY: &str = "HUAWEICLOUD_OIDC_POLICY";
pub const ENV_OIDC_POLICY_IDS: &str = "HUAWEICLOUD_OIDC_POLICY_IDS";
// Environment (provider 2).
pub const ENV_ACCESS_KEY: &str = super::credentials::ENV_ACCESS_KEY;
pub const ENV_SECRET_KEY: &str = super::credentials::ENV_SECRET_KEY;
pub const ENV_SECURITY_TOKEN: &str = super::credentials::ENV_SECURITY_TOKEN;
/// Not the SDK's: an IAM token, which `dcs-operator query` has always accepted.
pub const ENV_AUTH_TOKEN: &str = super::credentials::ENV_AUTH_TOKEN;
pub const ENV_PROJECT_ID: &str = "HUAWEICLOUD_SDK_PROJECT_ID";
pub const ENV_IDP_ID: &str = "HUAWEICLOUD_SDK_IDP_ID";
pub const ENV_ID_TOKEN_FILE: &str = "HUAWEICLOUD_SDK_ID_TOKEN_FILE";
pub const ENV_IAM_ENDPOINT: &str = "HUAWEICLOUD_SDK_IAM_ENDPOINT";
pub const ENV_STS_ENDPOINT: &str = "HUAWEICLOUD_SDK_STS_ENDPOINT";
// Profile (provider 3).
pub const ENV_CREDENTIALS_FILE: &str = "HUAWEICLOUD_SDK_CREDENTIALS_FILE";
/// Relative to `HOME`.
pub const DEFAULT_PROFILE: &str = ".huaweicloud/credentials";
// CCE Pod Identity (provider 5 of the SDK).
pub const ENV_POD_IDENTITY_URI: &str = "HC_CONTAINER_CREDENTIALS_FULL_URI";
pub const ENV_POD_IDENTITY_TOKEN_FILE: &str = "HC_CONTAINER_AUTHORIZATION_TOKEN_FILE";

/// The SDK's default `agency_session_name`.
pub const DEFAULT_SESSION_NAME: &str = "oidc-sts-session";
/// The SDK's default (and STS's) assume-with-OIDC lifetime.
pub const DEFAULT_OIDC_DURATION_SECONDS: u32 = 3600;
/// What STS accepts for assume-with-OIDC.
pub const OIDC_DURATION_RANGE: std::ops::RangeInclusive<u32> = 900..=43200;
/// The lifetime asked of IAM for federated temporary keys. The SDK asks for 6 h;
/// short-lived credentials are the point of keyless, so one hour (refreshed after
/// about 48 minutes).
pub const FEDERAL_DURATION_SECONDS: u32 = 3600;
/// The ECS metadata service.
pub const DEFAULT_METADATA_URL: &str = "http://169.254.169.254";
/// Files read by the chain (tokens, profiles, the credentials directory) are read
/// up to this size; a larger file is refused rather than read.
pub const MAX_FILE_BYTES: u64 = 64 << 10;

/// Reads a file of at most [`MAX_FILE_BYTES`] as UTF-8.
pub fn read_bounded(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

/// What the command line adds to the environment.
#[derive(Debug, Clone)]
pub struct ChainOptions {
    /// `--credentials-dir`: first in the chain when given.
    pub credentials_dir: Option<PathBuf>,
    /// `--iam-endpoint`.
    pub iam_endpoint: Option<String>,
    /// `--sts-endpoint`.
    pub sts_endpoint: Option<String>,
    /// `--default-region` (or `query --region`): IAM and STS hosts of that region.
    pub region: Option<String>,
    /// `--credentials-from-metadata`: ECS metadata is tried only when set.
    pub from_metadata: bool,
    /// The ECS metadata service (tests point it elsewhere).
    pub metadata_url: String,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            credentials_dir: None,
            iam_endpoint: None,
            sts_endpoint: None,
            region: None,
            from_metadata: false,
            metadata_url: DEFAULT_METADATA_URL.to_string(),
        }
    }
}

/// Why the chain gives no credentials. Never holds secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("{provider}: {present} is set but {missing} is not")]
    Incomplete {
        provider: &'static str,
        present: String,
        missing: String,
    },
    #[error("{provider}: {name} is not valid: {why}")]
    Invalid {
        provider: &'static str,
        name: String,
        why: String,
    },
    #[error("{provider}: cannot read {path}: {why}")]
    Unreadable {
        provider: &'static str,
        path: String,
        why: String,
    },
    /// Keys that parse into nothing usable (the same rules as a Secret's).
    #[error("{0}")]
    Credentials(CredentialsProblem),
    /// The exchange for temporary credentials failed; `detail` is the cloud's error
    /// code and message, or the transport error.
    #[error("{provider}: the exchange with {endpoint} failed: {detail}")]
    Exchange {
        provider: &'static str,
        endpoint: String,
        detail: String,
        /// The other side could not be reached or failed (transport, 5xx), rather
        /// than refusing.
        unavailable: bool,
    },
}

/// An ID token given inline or as a file (re-read on every exchange).
#[derive(Clone, PartialEq, Eq)]
pub enum IdToken {
    Inline(SecretString),
    File(PathBuf),
}

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdToken::Inline(_) => f.write_str("Inline(<redacted>)"),
            IdToken::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// STS AssumeAgencyWithOIDC (`HUAWEICLOUD_OIDC_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSts {
    pub provider_urn: String,
    pub agency_urn: String,
    pub id_token: IdToken,
    pub session_name: String,
    pub duration_seconds: u32,
    pub project_id: Option<String>,
    pub sts_endpoint: Endpoint,
}

/// IAM identity-provider federation: ID token -> federated token -> temporary keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federal {
    /// Which provider configured it (the environment or the profile), for errors.
    pub provider: &'static str,
    pub idp_id: String,
    pub id_token_file: PathBuf,
    pub project_id: Option<String>,
    pub iam_endpoint: Endpoint,
    pub duration_seconds: u32,
}

/// What the environment or a profile holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysOrFederal {
    Keys(FoundCredentials),
    Federal(Federal),
}

/// Where IAM is when a profile does not say: resolved at selection, so a profile
/// re-read later resolves it the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamFallback {
    /// `HUAWEICLOUD_SDK_IAM_ENDPOINT`, else `--iam-endpoint`, else the region's, else
    /// the global one.
    pub endpoint: Endpoint,
}

/// The profile file, re-read on every use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub path: PathBuf,
    pub iam_fallback: IamFallback,
}

/// CCE Pod Identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub uri: String,
    pub token_file: PathBuf,
    pub project_id: Option<String>,
}

/// ECS metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub base_url: String,
    pub project_id: Option<String>,
}

/// The provider the chain selected, with everything it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    CredentialsDir(PathBuf),
    OidcSts(OidcSts),
    Env(KeysOrFederal),
    Profile(Profile),
    Metadata(Metadata),
    PodIdentity(PodIdentity),
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::CredentialsDir(_) => PROVIDER_DIR,
            Provider::OidcSts(_) => PROVIDER_OIDC,
            Provider::Env(_) => PROVIDER_ENV,
            Provider::Profile(_) => PROVIDER_PROFILE,
            Provider::Metadata(_) => PROVIDER_METADATA,
            Provider::PodIdentity(_) => PROVIDER_POD_IDENTITY,
        }
    }

    /// One line for the start-up log: which provider, and where (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Provider::CredentialsDir(dir) => format!("{PROVIDER_DIR} {}", dir.display()),
            Provider::OidcSts(oidc) => format!(
                "{PROVIDER_OIDC}: agency {} through {}",
                oidc.agency_urn, oidc.sts_endpoint
            ),
            Provider::Env(KeysOrFederal::Keys(found)) => format!(
                "{PROVIDER_ENV}: static keys{}",
                match found.credentials.access_key_id() {
                    Some(ak) => format!(" {ak}"),
                    None => " (IAM token)".to_string(),
                }
            ),
            Provider::Env(KeysOrFederal::Federal(federal)) => format!(
                "{PROVIDER_ENV}: identity provider {} through {}",
                federal.idp_id, federal.iam_endpoint
            ),
            Provider::Profile(profile) => {
                format!("{PROVIDER_PROFILE} {}", profile.path.display())
            }
            Provider::Metadata(metadata) => format!("{PROVIDER_METADATA} {}", metadata.base_url),
            Provider::PodIdentity(pod) => format!("{PROVIDER_POD_IDENTITY} {}", pod.uri),
        }
    }
}

pub const PROVIDER_DIR: &str = "the credentials directory";
pub const PROVIDER_OIDC: &str = "OIDC STS (HUAWEICLOUD_OIDC_*)";
pub const PROVIDER_ENV: &str = "the environment (HUAWEICLOUD_SDK_*)";
pub const PROVIDER_PROFILE: &str = "the credentials profile";
pub const PROVIDER_METADATA: &str = "ECS metadata";
pub const PROVIDER_POD_IDENTITY: &str = "CCE Pod Identity (HC_CONTAINER_*)";

/// The message when nothing is configured.
pub const NOTHING_CONFIGURED: &str = "no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (and HUAWEICLOUD_SDK_SECURITY_TOKEN for temporary keys), HUAWEICLOUD_AUTH_TOKEN, HUAWEICLOUD_SDK_IDP_ID + HUAWEICLOUD_SDK_ID_TOKEN_FILE, HUAWEICLOUD_OIDC_*, a profile (HUAWEICLOUD_SDK_CREDENTIALS_FILE or ~/.huaweicloud/credentials), HC_CONTAINER_CREDENTIALS_FULL_URI + HC_CONTAINER_AUTHORIZATION_TOKEN_FILE, or --credentials-dir";

/// A variable's value, trimmed; empty counts as unset.
fn read_env(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name)
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

fn incomplete(provider: &'static str, present: &str, missing: &str) -> ChainError {
    ChainError::Incomplete {
        provider,
        present: present.to_string(),
        missing: missing.to_string(),
    }
}

fn invalid(provider: &'static str, name: &str, why: impl Into<String>) -> ChainError {
    ChainError::Invalid {
        provider,
        name: name.to_string(),
        why: why.into(),
    }
}

/// A project id from the environment or a profile: 32 lower-case hex digits.
fn project_id(
    provider: &'static str,
    name: &str,
    value: Option<String>,
) -> Result<Option<String>, ChainError> {
    match value {
        Some(id) if !valid_project_id(&id) => {
            Err(invalid(provider, name, "not 32 lower-case hex digits"))
        }
        other => Ok(other),
    }
}

/// An IAM or STS endpoint: https, or http to a loopback host (a local simulator).
/// ID tokens go there, so nothing else is accepted.
fn token_endpoint(provider: &'static str, name: &str, url: &str) -> Result<Endpoint, ChainError> {
    let endpoint = Endpoint::parse(url).map_err(|e| invalid(provider, name, e.to_string()))?;
    if !endpoint.is_https() && !endpoint.is_loopback() {
        return Err(invalid(
            provider,
            name,
            "must be https:// (plain http only to a loopback host)",
        ));
    }
    Ok(endpoint)
}

fn region_host(
    provider: &'static str,
    service: &str,
    region: &str,
) -> Result<Endpoint, ChainError> {
    // The same rule as a DcsInstance's region.
    Endpoint::for_region(region)
        .map_err(|e| invalid(provider, "--default-region", e.to_string()))?;
    token_endpoint(
        provider,
        "--default-region",
        &format!("https://{service}.{region}.myhuaweicloud.com"),
    )
}

/// IAM, when the credential itself names none: `HUAWEICLOUD_SDK_IAM_ENDPOINT`, else
/// `--iam-endpoint`, else the region's, else the SDK's global endpoint.
fn iam_fallback(
    provider: &'static str,
    env: &impl Fn(&str) -> Option<String>,
    options: &ChainOptions,
) -> Result<Endpoint, ChainError> {
    if let Some(url) = read_env(env, ENV_IAM_ENDPOINT) {
        return token_endpoint(provider, ENV_IAM_ENDPOINT, &url);
    }
    if let Some(url) = options.iam_endpoint.as_deref().filter(|u| !u.is_empty()) {
        return token_endpoint(provider, "--iam-endpoint", url);
    }
    match options.region.as_deref().filter(|r| !r.is_empty()) {
        Some(region) => region_host(provider, "iam", region),
        None => token_endpoint(
            provider,
            "the IAM endpoint",
            "https://iam.myhuaweicloud.com",
        ),
    }
}

/// STS: `--sts-endpoint`, else `HUAWEICLOUD_SDK_STS_ENDPOINT`, else the region's,
/// else the SDK's fixed cn-north-4.
fn sts_endpoint(
    env: &impl Fn(&str) -> Option<String>,
    options: &ChainOptions,
) -> Result<Endpoint, ChainError> {
    let provider = PROVIDER_OIDC;
    if let Some(url) = options.sts_endpoint.as_deref().filter(|u| !u.is_empty()) {
        return token_endpoint(provider, "--sts-endpoint", url);
    }
    if let Some(url) = read_env(env, ENV_STS_ENDPOINT) {
        return token_endpoint(provider, ENV_STS_ENDPOINT, &url);
    }
    match options.region.as_deref().filter(|r| !r.is_empty()) {
        Some(region) => region_host(provider, "sts", region),
        None => token_endpoint(
            provider,
            "the STS endpoint",
            "https://sts.cn-north-4.myhuaweicloud.com",
        ),
    }
}

/// The first configured provider, in the SDK's order after `--credentials-dir`.
/// `env` reads environment variables, `files` reads a file (None: missing or
/// unreadable). A provider that is configured but incomplete is an error; `Ok(None)`
/// means nothing at all is configured.
pub fn select(
    env: impl Fn(&str) -> Option<String>,
    files: impl Fn(&Path) -> Option<String>,
    options: &ChainOptions,
) -> Result<Option<Provider>, ChainError> {
    if let Some(dir) = &options.credentials_dir {
        return Ok(Some(Provider::CredentialsDir(dir.clone())));
    }
    if let Some(oidc) = select_oidc(&env, options)? {
        return Ok(Some(Provider::OidcSts(oidc)));
    }
    if let Some(found) = select_env(&env, options)? {
        return Ok(Some(Provider::Env(found)));
    }
    if let Some(profile) = select_profile(&env, &files, options)? {
        return Ok(Some(Provider::Profile(profile)));
    }
    let project = || project_id(PROVIDER_ENV, ENV_PROJECT_ID, read_env(&env, ENV_PROJECT_ID));
    if options.from_metadata {
        let base_url = options.metadata_url.trim_end_matches('/').to_string();
        url::Url::parse(&base_url)
            .map_err(|e| invalid(PROVIDER_METADATA, "the metadata URL", e.to_string()))?;
        return Ok(Some(Provider::Metadata(Metadata {
            base_url,
            project_id: project()?,
        })));
    }
    match (
        read_env(&env, ENV_POD_IDENTITY_URI),
        read_env(&env, ENV_POD_IDENTITY_TOKEN_FILE),
    ) {
        (Some(uri), Some(token_file)) => {
            let parsed = url::Url::parse(&uri)
                .map_err(|e| invalid(PROVIDER_POD_IDENTITY, ENV_POD_IDENTITY_URI, e.to_string()))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(
                    PROVIDER_POD_IDENTITY,
                    ENV_POD_IDENTITY_URI,
                    "must be an http:// or https:// URL",
                ));
            }
            Ok(Some(Provider::PodIdentity(PodIdentity {
                uri,
                token_file: PathBuf::from(token_file),
                project_id: project()?,
            })))
        }
        (Some(_), None) => Err(incomplete(
            PROVIDER_POD_IDENTITY,
            ENV_POD_IDENTITY_URI,
            ENV_POD_IDENTITY_TOKEN_FILE,
        )),
        (None, Some(_)) => Err(incomplete(
            PROVIDER_POD_IDENTITY,
            ENV_POD_IDENTITY_TOKEN_FILE,
            ENV_POD_IDENTITY_URI,
        )),
        (None, None) => Ok(None),
    }
}

const OIDC_VARIABLES: [&str; 8] = [
    ENV_OIDC_PROVIDER_URN,
    ENV_OIDC_AGENCY_URN,
    ENV_OIDC_ID_TOKEN,
    ENV_OIDC_TOKEN_FILE,
    ENV_OIDC_SESSION_NAME,
    ENV_OIDC_DURATION_SECONDS,
    ENV_OIDC_POLICY,
    ENV_OIDC_POLICY_IDS,
];

fn select_oidc(
    env: &impl Fn(&str) -> Option<String>,
    options: &ChainOptions,
) -> Result<Option<OidcSts>, ChainError> {
    let p = PROVIDER_OIDC;
    let Some(present) = OIDC_VARIABLES
        .iter()
        .find(|name| read_env(env, name).is_some())
    else {
        return Ok(None);
    };
    // A policy narrows the agency's rights; ignoring it would grant more than asked.
    for name in [ENV_OIDC_POLICY, ENV_OIDC_POLICY_IDS] {
        if read_env(env, name).is_some() {
            return Err(invalid(
                p,
                name,
                "session policies are not supported by dcs-operator; narrow the agency's own policy instead",
            ));
        }
    }
    let required = |name: &str| read_env(env, name).ok_or_else(|| incomplete(p, present, name));
    let provider_urn = required(ENV_OIDC_PROVIDER_URN)?;
    let agency_urn = required(ENV_OIDC_AGENCY_URN)?;
    if provider_urn.len() > 1500 {
        return Err(invalid(
            p,
            ENV_OIDC_PROVIDER_URN,
            "longer than 1500 characters",
        ));
    }
    let id_token = match (
        read_env(env, ENV_OIDC_ID_TOKEN),
        read_env(env, ENV_OIDC_TOKEN_FILE),
    ) {
        (Some(token), _) => IdToken::Inline(SecretString::new(token)),
        (None, Some(file)) => IdToken::File(PathBuf::from(file)),
        (None, None) => {
            return Err(incomplete(
                p,
                present,
                &format!("{ENV_OIDC_ID_TOKEN} or {ENV_OIDC_TOKEN_FILE}"),
            ));
        }
    };
    let session_name =
        read_env(env, ENV_OIDC_SESSION_NAME).unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
    if !(2..=128).contains(&session_name.chars().count()) {
        return Err(invalid(
            p,
            ENV_OIDC_SESSION_NAME,
            "must be 2 to 128 characters",
        ));
    }
    let duration_seconds = match read_env(env, ENV_OIDC_DURATION_SECONDS) {
        None => DEFAULT_OIDC_DURATION_SECONDS,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|d| OIDC_DURATION_RANGE.contains(d))
            .ok_or_else(|| {
                invalid(
                    p,
                    ENV_OIDC_DURATION_SECONDS,
                    format!(
                        "must be whole seconds from {} to {}",
                        OIDC_DURATION_RANGE.start(),
                        OIDC_DURATION_RANGE.end()
                    ),
                )
            })?,
    };
    Ok(Some(OidcSts {
        provider_urn,
        agency_urn,
        id_token,
        session_name,
        duration_seconds,
        project_id: project_id(p, ENV_PROJECT_ID, read_env(env, ENV_PROJECT_ID))?,
        sts_endpoint: sts_endpoint(env, options)?,
    }))
}

fn select_env(
    env: &impl Fn(&str) -> Option<String>,
    options: &ChainOptions,
) -> Result<Option<KeysOrFederal>, ChainError> {
    let p = PROVIDER_ENV;
    let project = || project_id(p, ENV_PROJECT_ID, read_env(env, ENV_PROJECT_ID));
    match (read_env(env, ENV_IDP_ID), read_env(env, ENV_ID_TOKEN_FILE)) {
        (Some(idp_id), Some(file)) => {
            return Ok(Some(KeysOrFederal::Federal(Federal {
                provider: p,
                idp_id,
                id_token_file: PathBuf::from(file),
                project_id: project()?,
                iam_endpoint: iam_fallback(p, env, options)?,
                duration_seconds: FEDERAL_DURATION_SECONDS,
            })));
        }
        (Some(_), None) => return Err(incomplete(p, ENV_IDP_ID, ENV_ID_TOKEN_FILE)),
        (None, Some(_)) => return Err(incomplete(p, ENV_ID_TOKEN_FILE, ENV_IDP_ID)),
        (None, None) => {}
    }
    let keys = [
        ENV_ACCESS_KEY,
        ENV_SECRET_KEY,
        ENV_SECURITY_TOKEN,
        ENV_AUTH_TOKEN,
    ];
    if !keys.iter().any(|name| read_env(env, name).is_some()) {
        return Ok(None);
    }
    let name_of = |key: &str| match key {
        KEY_ACCESS_KEY => Some(ENV_ACCESS_KEY),
        KEY_SECRET_KEY => Some(ENV_SECRET_KEY),
        KEY_SECURITY_TOKEN => Some(ENV_SECURITY_TOKEN),
        KEY_AUTH_TOKEN => Some(ENV_AUTH_TOKEN),
        _ => None,
    };
    let found = parse_credentials(
        |key| name_of(key).and_then(|name| read_env(env, name)),
        "the environment (HUAWEICLOUD_SDK_AK, _SK, _SECURITY_TOKEN)",
    )
    .map_err(ChainError::Credentials)?;
    Ok(Some(KeysOrFederal::Keys(FoundCredentials {
        project_id: project()?,
        ..found
    })))
}

fn select_profile(
    env: &impl Fn(&str) -> Option<String>,
    files: &impl Fn(&Path) -> Option<String>,
    options: &ChainOptions,
) -> Result<Option<Profile>, ChainError> {
    let p = PROVIDER_PROFILE;
    let (path, named) = match read_env(env, ENV_CREDENTIALS_FILE) {
        Some(path) => (PathBuf::from(path), true),
        None => match read_env(env, "HOME") {
            Some(home) => (Path::new(&home).join(DEFAULT_PROFILE), false),
            None => return Ok(None),
        },
    };
    let Some(text) = files(&path) else {
        if named {
            return Err(ChainError::Unreadable {
                provider: p,
                path: path.display().to_string(),
                why: format!("named by {ENV_CREDENTIALS_FILE}, but missing or unreadable"),
            });
        }
        return Ok(None);
    };
    let profile = Profile {
        path,
        iam_fallback: IamFallback {
            endpoint: iam_fallback(p, env, options)?,
        },
    };
    // Checked now, so a broken profile stops the start; re-read on every use.
    parse_profile(&text, &profile)?;
    Ok(Some(profile))
}

/// An INI file as Python's configparser reads the SDK's profile: `[section]`
/// headers, `key = value` or `key: value`, whole-line comments (`#`, `;`), keys
/// case-insensitive. A duplicate section or key is an error (configparser's strict
/// mode), so a profile never means two things.
pub fn parse_ini(text: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(format!("line {number}: a section header without ']'"));
            };
            let name = name.trim().to_string();
            if sections.contains_key(&name) {
                return Err(format!("line {number}: section [{name}] appears twice"));
            }
            sections.insert(name.clone(), BTreeMap::new());
            current = Some(name);
            continue;
        }
        let Some(at) = line.find(['=', ':']) else {
            return Err(format!(
                "line {number}: neither a section, a key = value nor a comment"
            ));
        };
        let Some(section) = &current else {
            return Err(format!("line {number}: a key before any [section]"));
        };
        let key = line[..at].trim().to_ascii_lowercase();
        let value = line[at + 1..].trim().to_string();
        if key.is_empty() {
            return Err(format!("line {number}: an empty key"));
        }
        let entries = sections.entry(section.clone()).or_default();
        if entries.insert(key.clone(), value).is_some() {
            return Err(format!(
                "line {number}: key {key} appears twice in [{section}]"
            ));
        }
    }
    Ok(sections)
}

/// What a profile holds: its `[basic]` section, else `[global]`, with the keys `ak`,
/// `sk`, `security_token`, `project_id`, `domain_id`, `iam_endpoint`, `idp_id`,
/// `id_token_file` (`idp_id` + `id_token_file` win over `ak`/`sk`, as in the SDK).
pub fn parse_profile(text: &str, profile: &Profile) -> Result<KeysOrFederal, ChainError> {
    let p = PROVIDER_PROFILE;
    let origin = format!("the credentials profile {}", profile.path.display());
    let sections = parse_ini(text).map_err(|why| invalid(p, &origin, why))?;
    let Some((name, section)) = ["basic", "global"]
        .into_iter()
        .find_map(|name| sections.get(name).map(|section| (name, section)))
    else {
        return Err(invalid(
            p,
            &origin,
            "has neither a [basic] nor a [global] section",
        ));
    };
    let origin = format!("{origin} [{name}]");
    let read = |key: &str| {
        section
            .get(key)
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
    };
    let project = project_id(p, &format!("{origin} project_id"), read("project_id"))?;
    match (read("idp_id"), read("id_token_file")) {
        (Some(idp_id), Some(file)) => {
            let iam_endpoint = match read("iam_endpoint") {
                Some(url) => token_endpoint(p, &format!("{origin} iam_endpoint"), &url)?,
                None => profile.iam_fallback.endpoint.clone(),
            };
            return Ok(KeysOrFederal::Federal(Federal {
                provider: p,
                idp_id,
                id_token_file: PathBuf::from(file),
                project_id: project,
                iam_endpoint,
                duration_seconds: FEDERAL_DURATION_SECONDS,
            }));
        }
        (Some(_), None) => {
            return Err(incomplete(p, &format!("{origin} idp_id"), "id_token_file"));
        }
        (None, Some(_)) => {
            return Err(incomplete(p, &format!("{origin} id_token_file"), "idp_id"));
        }
        (None, None) => {}
    }
    let key_of = |key: &str| match key {
        KEY_ACCESS_KEY => Some("ak"),
        KEY_SECRET_KEY => Some("sk"),
        KEY_SECURITY_TOKEN => Some("security_token"),
        _ => None,
    };
    let found = parse_credentials(|key| key_of(key).and_then(read), &origin)
        .map_err(ChainError::Credentials)?;
    Ok(KeysOrFederal::Keys(FoundCredentials {
        project_id: project,
        ..found
    }))
}

// ---------------------------------------------------------------------------
// Exchanged credentials: cache, refresh, single flight, backoff.

/// Temporary credentials and when they expire.
#[derive(Clone, PartialEq, Eq)]
pub struct Temporary {
    pub credentials: Credentials,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for Temporary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Temporary")
            .field("credentials", &self.credentials)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One exchange for temporary credentials (IAM, STS, Pod Identity, ECS metadata),
/// behind a trait so the refresh policy is testable without HTTP.
pub trait Exchange: Send + Sync + 'static {
    fn exchange(&self) -> BoxFuture<'_, Result<Temporary, ChainError>>;
}

/// When to refresh and how to back off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh once this share of the lifetime (per mille) has passed…
    pub refresh_after_per_mille: u32,
    /// …and at least this long before expiry.
    pub min_margin: Duration,
    /// Credentials are not handed out this close to their expiry (a request signed
    /// with them must still arrive in time).
    pub use_margin: Duration,
    /// The first wait after a failed exchange; doubled on every further failure…
    pub backoff_initial: Duration,
    /// …up to this.
    pub backoff_max: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            refresh_after_per_mille: 800,
            min_margin: Duration::from_secs(5 * 60),
            use_margin: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(5 * 60),
        }
    }
}

impl RefreshPolicy {
    /// When credentials obtained at `obtained` and expiring at `expires_at` are
    /// refreshed: at 80 % of the lifetime and at least 5 minutes before expiry. A
    /// lifetime too short for both is refreshed half-way, not on every use.
    pub fn refresh_at(&self, obtained: DateTime<Utc>, expires_at: DateTime<Utc>) -> DateTime<Utc> {
        let lifetime = (expires_at - obtained).max(TimeDelta::zero());
        let by_share = lifetime * self.refresh_after_per_mille as i32 / 1000;
        let by_margin = lifetime - delta(self.min_margin);
        let at = by_share.min(by_margin);
        if at <= TimeDelta::zero() {
            obtained + lifetime / 2
        } else {
            obtained + at
        }
    }

    /// The wait after `failures` failed exchanges in a row (1 = the first).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .backoff_initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(self.backoff_max)
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[derive(Default)]
struct CacheState {
    current: Option<Temporary>,
    refresh_at: Option<DateTime<Utc>>,
    failures: u32,
    retry_at: Option<DateTime<Utc>>,
    last_error: Option<ChainError>,
    exchanges: u64,
}

/// What `Refreshing` decided without exchanging.
enum Decision {
    Ready(Credentials),
    Failed(ChainError),
    Exchange,
}

/// Exchanged credentials, cached until their refresh time. One exchange at a time
/// (callers arriving meanwhile wait for it, or keep using the current credentials
/// while they are still good); a failed exchange is not repeated before its backoff
/// is over, and callers get the current credentials (while still good) or the last
/// error meanwhile.
pub struct Refreshing {
    exchange: Box<dyn Exchange>,
    clock: SharedClock,
    policy: RefreshPolicy,
    state: Mutex<CacheState>,
    flight: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Refreshing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Refreshing")
            .field("expires_at", &state.current.as_ref().map(|c| c.expires_at))
            .field("refresh_at", &state.refresh_at)
            .field("failures", &state.failures)
            .finish_non_exhaustive()
    }
}

impl Refreshing {
    pub fn new(exchange: Box<dyn Exchange>, clock: SharedClock, policy: RefreshPolicy) -> Self {
        Self {
            exchange,
            clock,
            policy,
            state: Mutex::default(),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    /// Exchanges made so far (successful or not).
    pub fn exchanges(&self) -> u64 {
        self.lock().exchanges
    }

    /// When the current credentials will be refreshed, if there are any.
    pub fn refresh_at(&self) -> Option<DateTime<Utc>> {
        self.lock().refresh_at
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn usable(&self, state: &CacheState, now: DateTime<Utc>) -> Option<Credentials> {
        state
            .current
            .as_ref()
            .filter(|c| now < c.expires_at - delta(self.policy.use_margin))
            .map(|c| c.credentials.clone())
    }

    fn decide(&self, busy: bool) -> Decision {
        let now = self.clock.now();
        let state = self.lock();
        let usable = self.usable(&state, now);
        if let Some(credentials) = &usable
            && state.refresh_at.is_some_and(|at| now < at)
        {
            return Decision::Ready(credentials.clone());
        }
        if state.retry_at.is_some_and(|at| now < at) {
            return match (usable, &state.last_error) {
                (Some(credentials), _) => Decision::Ready(credentials),
                (None, Some(error)) => Decision::Failed(error.clone()),
                (None, None) => Decision::Exchange,
            };
        }
        match usable {
            // Another caller is refreshing: the current credentials are still good.
            Some(credentials) if busy => Decision::Ready(credentials),
            _ => Decision::Exchange,
        }
    }

    /// Credentials to sign with now.
    pub async fn get(&self) -> Result<Credentials, ChainError> {
        let busy = match self.decide(false) {
            Decision::Ready(credentials) => return Ok(credentials),
            Decision::Failed(error) => return Err(error),
            Decision::Exchange => self.flight.try_lock().is_err(),
        };
        if busy && let Decision::Ready(credentials) = self.decide(true) {
            return Ok(credentials);
        }
        let _flight = self.flight.lock().await;
        // Whoever held the flight may have refreshed (or failed) meanwhile.
        match self.decide(false) {
            Decision::Ready(credentials) => return Ok(credentials),
            Decision::Failed(error) => return Err(error),
            Decision::Exchange => {}
        }
        self.lock().exchanges += 1;
        let outcome = self.exchange.exchange().await;
        let now = self.clock.now();
        let mut state = self.lock();
        match outcome {
            Ok(temporary) => {
                state.refresh_at = Some(self.policy.refresh_at(now, temporary.expires_at));
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
                let credentials = temporary.credentials.clone();
                if now >= temporary.expires_at - delta(self.policy.use_margin) {
                    // Expired on arrival (a clock skew or a misconfigured lifetime).
                    warn!(expires_at = %temporary.expires_at, "the exchanged credentials expire at once");
                }
                state.current = Some(temporary);
                Ok(credentials)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let wait = self.policy.backoff(state.failures);
                state.retry_at = Some(crate::clock::later(now, wait));
                state.last_error = Some(error.clone());
                warn!(error = %error, retry_in_seconds = wait.as_secs(), "exchanging for temporary credentials failed");
                match self.usable(&state, now) {
                    Some(credentials) => Ok(credentials),
                    None => Err(error),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The chain's credentials, as the controller and `query` use them.

/// The selected provider with its cache: credentials to sign with, on demand.
pub struct ChainCredentials {
    provider: Provider,
    source: Source,
}

enum Source {
    /// Fixed at start (static keys from the environment).
    Fixed(FoundCredentials),
    /// Re-read on every use.
    Dir(PathBuf),
    /// Re-read on every use; a federal profile keeps its cache while its
    /// configuration is unchanged.
    Profile {
        profile: Profile,
        exchanger: Arc<dyn MakeExchange>,
        clock: SharedClock,
        policy: RefreshPolicy,
        federal: tokio::sync::Mutex<Option<(Federal, Arc<Refreshing>)>>,
    },
    Exchanged {
        refreshing: Refreshing,
        project_id: Option<String>,
    },
}

impl fmt::Debug for ChainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainCredentials")
            .field("provider", &self.provider.describe())
            .finish_non_exhaustive()
    }
}

/// Builds the exchange of an exchanged provider (the IAM/STS client in production, a
/// fake in tests).
pub trait MakeExchange: Send + Sync + 'static {
    fn oidc_sts(&self, config: &OidcSts) -> Box<dyn Exchange>;
    fn federal(&self, config: &Federal) -> Box<dyn Exchange>;
    fn pod_identity(&self, config: &PodIdentity) -> Box<dyn Exchange>;
    fn metadata(&self, config: &Metadata) -> Box<dyn Exchange>;
}

impl ChainCredentials {
    pub fn new(
        provider: Provider,
        exchanger: Arc<dyn MakeExchange>,
        clock: SharedClock,
        policy: RefreshPolicy,
    ) -> Self {
        let exchanged =
            |exchange: Box<dyn Exchange>, project_id: &Option<String>| Source::Exchanged {
                refreshing: Refreshing::new(exchange, clock.clone(), policy),
                project_id: project_id.clone(),
            };
        let source = match &provider {
            Provider::CredentialsDir(dir) => Source::Dir(dir.clone()),
            Provider::Env(KeysOrFederal::Keys(found)) => Source::Fixed(found.clone()),
            Provider::Env(KeysOrFederal::Federal(federal)) => {
                exchanged(exchanger.federal(federal), &federal.project_id)
            }
            Provider::OidcSts(oidc) => exchanged(exchanger.oidc_sts(oidc), &oidc.project_id),
            Provider::PodIdentity(pod) => exchanged(exchanger.pod_identity(pod), &pod.project_id),
            Provider::Metadata(metadata) => {
                exchanged(exchanger.metadata(metadata), &metadata.project_id)
            }
            Provider::Profile(profile) => Source::Profile {
                profile: profile.clone(),
                exchanger: exchanger.clone(),
                clock: clock.clone(),
                policy,
                federal: tokio::sync::Mutex::new(None),
            },
        };
        Self { provider, source }
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// A stable name for these credentials that does not change when temporary keys
    /// are refreshed (no secret in it): for keying state that must survive a refresh.
    pub fn identity(&self) -> String {
        format!("default:{}", self.provider.describe())
    }

    /// The key to know these credentials by when they are exchanged (their
    /// temporary keys rotate at every refresh; observations, batch groups and
    /// gates must not start over each time); None for keys that do not rotate.
    pub fn stable_key(&self) -> Option<String> {
        matches!(self.source, Source::Exchanged { .. }).then(|| {
            let digest = <sha2::Sha256 as sha2::Digest>::digest(self.identity().as_bytes());
            format!("identity:{}", hex::encode(&digest[..16]))
        })
    }

    /// Credentials to sign with now, and the project id the provider names.
    pub async fn get(&self) -> Result<FoundCredentials, ChainError> {
        match &self.source {
            Source::Fixed(found) => Ok(found.clone()),
            Source::Dir(dir) => parse_credentials(
                |key| read_bounded(&dir.join(key)).ok(),
                &format!("the operator's credentials directory {}", dir.display()),
            )
            .map_err(ChainError::Credentials),
            Source::Exchanged {
                refreshing,
                project_id,
            } => Ok(FoundCredentials {
                credentials: refreshing.get().await?,
                project_id: project_id.clone(),
            }),
            Source::Profile {
                profile,
                exchanger,
                clock,
                policy,
                federal,
            } => {
                let text = read_bounded(&profile.path).map_err(|e| ChainError::Unreadable {
                    provider: PROVIDER_PROFILE,
                    path: profile.path.display().to_string(),
                    why: e.to_string(),
                })?;
                match parse_profile(&text, profile)? {
                    KeysOrFederal::Keys(found) => Ok(found),
                    KeysOrFederal::Federal(config) => {
                        let refreshing = {
                            let mut slot = federal.lock().await;
                            match &*slot {
                                Some((cached, refreshing)) if *cached == config => {
                                    refreshing.clone()
                                }
                                _ => {
                                    let refreshing = Arc::new(Refreshing::new(
                                        exchanger.federal(&config),
                                        clock.clone(),
                                        *policy,
                                    ));
                                    *slot = Some((config.clone(), refreshing.clone()));
                                    refreshing
                                }
                            }
                        };
                        Ok(FoundCredentials {
                            credentials: refreshing.get().await?,
                            project_id: config.project_id,
                        })
                    }
                }
            }
        }
    }
}

/// Selects from the process environment and the real file system, and logs which
/// provider was chosen.
pub fn from_process(
    options: &ChainOptions,
    exchanger: Arc<dyn MakeExchange>,
    clock: SharedClock,
) -> Result<Option<ChainCredentials>, ChainError> {
    let Some(provider) = select(
        |name| std::env::var(name).ok(),
        |path| read_bounded(path).ok(),
        options,
    )?
    else {
        return Ok(None);
    };
    info!(provider = %provider.describe(), "the operator's own credentials");
    Ok(Some(ChainCredentials::new(
        provider,
        exchanger,
        clock,
        RefreshPolicy::default(),
    )))
}

// ---------------------------------------------------------------------------
// ECS metadata (CREDENTIALS.md §2.5).

impl From<TemporaryCredentials> for Temporary {
    fn from(temporary: TemporaryCredentials) -> Self {
        Self {
            credentials: temporary.credentials(),
            expires_at: temporary.expires_at,
        }
    }
}

/// The ECS metadata exchange: a session token (PUT), then the agency's security
/// key (GET), retried once with a new session token on a 401.
pub struct MetadataExchange {
    http: reqwest::Client,
    base_url: String,
}

const METADATA_TOKEN_TTL: &str = "21600";
const NO_AGENCY: &str = "Please configure Cloud Service Agency first";

impl MetadataExchange {
    pub fn new(config: &Metadata, user_agent: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(6))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(user_agent)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            base_url: config.base_url.clone(),
        })
    }

    fn failed(&self, detail: impl Into<String>) -> ChainError {
        ChainError::Exchange {
            provider: PROVIDER_METADATA,
            endpoint: self.base_url.clone(),
            detail: detail.into(),
            unavailable: false,
        }
    }

    fn unreachable(&self, detail: impl Into<String>) -> ChainError {
        ChainError::Exchange {
            provider: PROVIDER_METADATA,
            endpoint: self.base_url.clone(),
            detail: detail.into(),
            unavailable: true,
        }
    }

    async fn session_token(&self) -> Result<Option<SecretString>, ChainError> {
        let answer = self
            .http
            .put(format!("{}/meta-data/latest/api/token", self.base_url))
            .header("X-Metadata-Token-Ttl-Seconds", METADATA_TOKEN_TTL)
            .send()
            .await
            .map_err(|e| self.unreachable(format!("session token: {}", transport(&e))))?;
        let status = answer.status().as_u16();
        if matches!(status, 404 | 405 | 503) {
            return Ok(None);
        }
        let body = bounded_body(answer)
            .await
            .map_err(|e| self.unreachable(e))?;
        if status >= 500 {
            return Err(self.unreachable(format!("session token: HTTP {status}")));
        }
        if status >= 400 {
            return Err(self.failed(format!("session token: HTTP {status}")));
        }
        let token = String::from_utf8_lossy(&body).trim().to_string();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.failed("session token: not a token"));
        }
        Ok(Some(SecretString::new(token)))
    }

    async fn security_key(
        &self,
        token: Option<&SecretString>,
    ) -> Result<(u16, Vec<u8>), ChainError> {
        let mut request = self
            .http
            .get(format!("{}/openstack/latest/securitykey", self.base_url));
        if let Some(token) = token {
            request = request.header("X-Metadata-Token", token.expose());
        }
        let answer = request
            .send()
            .await
            .map_err(|e| self.unreachable(format!("security key: {}", transport(&e))))?;
        let status = answer.status().as_u16();
        let body = bounded_body(answer)
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok((status, body))
    }

    async fn fetch(&self) -> Result<Temporary, ChainError> {
        let mut token = self.session_token().await?;
        let (mut status, mut body) = self.security_key(token.as_ref()).await?;
        if status == 401 && !String::from_utf8_lossy(&body).contains(NO_AGENCY) {
            token = self.session_token().await?;
            (status, body) = self.security_key(token.as_ref()).await?;
        }
        if status >= 500 {
            return Err(self.unreachable(format!("security key: HTTP {status}")));
        }
        if status >= 400 {
            let agency = String::from_utf8_lossy(&body).contains(NO_AGENCY);
            return Err(self.failed(if agency {
                format!("HTTP {status}: the ECS has no agency ({NO_AGENCY})")
            } else {
                format!("security key: HTTP {status}")
            }));
        }
        parse_temporary_credentials(&body)
            .map(Temporary::from)
            .map_err(|e| self.failed(e.code_and_message()))
    }
}

impl Exchange for MetadataExchange {
    fn exchange(&self) -> BoxFuture<'_, Result<Temporary, ChainError>> {
        Box::pin(self.fetch())
    }
}

fn transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "the request failed".to_string()
    }
}

async fn bounded_body(mut answer: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", transport(&e)))?
    {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_FILE_BYTES {
            return Err(format!("the answer is larger than {MAX_FILE_BYTES} bytes"));
        }
    }
    Ok(body)
}

/// Reads a token file for an exchange (every exchange: kubelet rotates it).
pub fn read_token_file(provider: &'static str, path: &Path) -> Result<SecretString, ChainError> {
    let text = read_bounded(path).map_err(|e| ChainError::Unreadable {
        provider,
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ChainError::Unreadable {
            provider,
            path: path.display().to_string(),
            why: "the token file is empty".to_string(),
        });
    }
    Ok(SecretString::new(token))
}

// ---------------------------------------------------------------------------
// The production exchanges.

/// The exchanges over HTTP: IAM and STS through the IAM client, Pod Identity, ECS
/// metadata. `config` is the DCS client's (timeouts, extra CAs, User-Agent).
pub struct HttpExchanges {
    iam: Arc<IamClient>,
    user_agent: String,
}

impl HttpExchanges {
    pub fn new(config: &ClientConfig) -> Result<Self, String> {
        let iam = IamClient::new(config).map_err(|e| e.to_string())?;
        Ok(Self {
            iam: Arc::new(iam),
            user_agent: config.user_agent.clone(),
        })
    }
}

/// An exchange that cannot be made (its client could not be built).
struct Unavailable {
    provider: &'static str,
    endpoint: String,
    detail: String,
}

impl Exchange for Unavailable {
    fn exchange(&self) -> BoxFuture<'_, Result<Temporary, ChainError>> {
        Box::pin(async move {
            Err(ChainError::Exchange {
                provider: self.provider,
                endpoint: self.endpoint.clone(),
                detail: self.detail.clone(),
                unavailable: false,
            })
        })
    }
}

/// A failed IAM/STS/Pod Identity call: its code and message (never a token).
fn iam_failed(provider: &'static str, endpoint: &str, error: &IamError) -> ChainError {
    let unavailable = match error {
        IamError::Transport { .. } => true,
        IamError::Refused { status, .. } => *status >= 500,
        IamError::Decode { .. } | IamError::Unsendable { .. } => false,
    };
    ChainError::Exchange {
        provider,
        endpoint: endpoint.to_string(),
        detail: error.code_and_message(),
        unavailable,
    }
}

/// STS AssumeAgencyWithOIDC; a token file is re-read for every exchange.
struct OidcStsExchange {
    iam: Arc<IamClient>,
    config: OidcSts,
}

impl Exchange for OidcStsExchange {
    fn exchange(&self) -> BoxFuture<'_, Result<Temporary, ChainError>> {
        Box::pin(async move {
            let config = &self.config;
            let id_token = match &config.id_token {
                IdToken::Inline(token) => token.clone(),
                IdToken::File(path) => read_token_file(PROVIDER_OIDC, path)?,
            };
            let request = AssumeAgency {
                provider_urn: &config.provider_urn,
                agency_urn: &config.agency_urn,
                session_name: &config.session_name,
                id_token: &id_token,
                duration_seconds: config.duration_seconds,
            };
            self.iam
                .assume_agency_with_oidc(&config.sts_endpoint, &request)
                .await
                .map(Temporary::from)
                .map_err(|e| iam_failed(PROVIDER_OIDC, config.sts_endpoint.as_str(), &e))
        })
    }
}

/// IdP federation: the ID token (re-read from its file for every exchange) for a
/// federated token, then the federated token for temporary keys.
struct FederalExchange {
    iam: Arc<IamClient>,
    config: Federal,
}

impl Exchange for FederalExchange {
    fn exchange(&self) -> BoxFuture<'_, Result<Temporary, ChainError>> {
        Box::pin(async move {
            let config = &self.config;
            let endpoint = config.iam_endpoint.as_str();
            let id_token = read_token_file(config.provider, &config.id_token_file)?;
            let (token, _) = self
                .iam
                .federated_token(&config.iam_endpoint, &config.idp_id, &id_token)
                .await
                .map_err(|e| iam_failed(config.provider, endpoint, &e))?;
            self.iam
                .temporary_credentials(&config.iam_endpoint, &token, config.duration_seconds)
                .await
                .map(Temporary::from)
                .map_err(|e| iam_failed(config.provider, endpoint, &e))
        })
    }
}

/// CCE Pod Identity; the token file is re-read for every exchange.
struct PodIdentityExchange {
    iam: Arc<IamClient>,
    config: PodIdentity,
}

impl Exchange for PodIdentityExchange {
    fn exchange(&self) -> BoxFuture<'_, Result<Temporary, ChainError>> {
        Box::pin(async move {
            let config = &self.config;
            let token = read_token_file(PROVIDER_POD_IDENTITY, &config.token_file)?;
            self.iam
                .pod_identity(&config.uri, &token)
                .await
                .map(Temporary::from)
                .map_err(|e| iam_failed(PROVIDER_POD_IDENTITY, &config.uri, &e))
        })
    }
}

impl MakeExchange for HttpExchanges {
    fn oidc_sts(&self, config: &OidcSts) -> Box<dyn Exchange> {
        Box::new(OidcStsExchange {
            iam: self.iam.clone(),
            config: config.clone(),
        })
    }

    fn federal(&self, config: &Federal) -> Box<dyn Exchange> {
        Box::new(FederalExchange {
            iam: self.iam.clone(),
            config: config.clone(),
        })
    }

    fn pod_identity(&self, config: &PodIdentity) -> Box<dyn Exchange> {
        Box::new(PodIdentityExchange {
            iam: self.iam.clone(),
            config: config.clone(),
        })
    }

    fn metadata(&self, config: &Metadata) -> Box<dyn Exchange> {
        match MetadataExchange::new(config, &self.user_agent) {
            Ok(exchange) => Box::new(exchange),
            Err(detail) => Box::new(Unavailable {
                provider: PROVIDER_METADATA,
                endpoint: config.base_url.clone(),
                detail,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
