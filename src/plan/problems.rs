//! What stops reconcile from acting as it should, as typed values: a spec it cannot
//! act on, credentials or a password it cannot read, a connection Secret it may not
//! write. `Display` is the sentence a user reads in a condition; `reason` the
//! bounded PascalCase label.

use crate::dcs::client::EndpointError;
use crate::duration::DurationError;

use super::reasons;

/// The spec (with the operator's defaults) cannot be acted on; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecProblem {
    #[error("spec.region and spec.endpoint are both set; set at most one")]
    RegionAndEndpoint,
    #[error("spec.region: {0}")]
    Region(EndpointError),
    #[error("spec.endpoint: {0}")]
    Endpoint(EndpointError),
    #[error("spec.endpoint: must use https:// (plain http:// only for loopback hosts)")]
    PlainHttp,
    #[error("spec.region or spec.endpoint is required: this operator has no --default-region")]
    NoRegion,
    #[error("--default-region: {0}")]
    DefaultRegion(EndpointError),
    #[error("spec.pollInterval: {0}")]
    PollInterval(DurationError),
    #[error("spec.pollInterval: {0} is shorter than the minimum of 10s")]
    PollIntervalTooShort(String),
    #[error(
        "the connection Secret name {0:?} is longer than 253 characters; set spec.connectionSecret.name"
    )]
    SecretNameTooLong(String),
    #[error("spec.projectId is required: the credentials carry no projectId")]
    NoProjectId,
}

/// No usable credentials for a DcsInstance. `origin` names where they were looked
/// for ("the credentials Secret creds", "the operator's credentials directory …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsProblem {
    #[error("the credentials Secret {name} does not exist in namespace {namespace}")]
    SecretMissing { name: String, namespace: String },
    #[error("{origin} has {present} but no {missing}")]
    KeyMissing {
        origin: String,
        present: &'static str,
        missing: &'static str,
    },
    #[error("{origin} has neither accessKey and secretKey nor authToken")]
    NoKeys { origin: String },
    /// Never the value: it may be a secret pasted into the wrong key.
    #[error("{origin}: accessKey must be 1 to {max} letters and digits")]
    InvalidAccessKey { origin: String, max: usize },
    /// A token or project id that cannot go into a request; never the value.
    #[error(
        "{origin}: {key} is not valid (tokens are printable ASCII, a projectId is 32 lower-case hex digits)"
    )]
    InvalidValue { origin: String, key: &'static str },
    #[error("spec.credentialsSecretRef is required: this operator has no default credentials")]
    NoDefaults,
    #[error(
        "spec.credentialsSecretRef is required with spec.endpoint: the operator's own credentials are only sent to region endpoints"
    )]
    DefaultsNotForEndpoint,
    #[error(
        "spec.credentialsSecretRef is required: the operator's default credentials are not allowed in namespace {0}"
    )]
    DefaultsNotInNamespace(String),
}

/// The password Secret or its key is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("the password Secret {name} does not exist in namespace {namespace}")]
    SecretMissing { name: String, namespace: String },
    #[error("the password Secret {name} has no key {key}")]
    KeyMissing { name: String, key: String },
}

/// A problem found outside the observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The spec cannot be acted on.
    InvalidSpec(SpecProblem),
    /// No usable credentials (or malformed ones, refused before any call).
    Credentials(CredentialsProblem),
    /// The password Secret or key is missing.
    Password(PasswordProblem),
    /// The connection Secret exists and belongs to someone else.
    SecretConflict { name: String },
    /// The connection Secret holds the right data but a `type` Kubernetes will not
    /// let the operator change: said in Ready's message, nothing else changes.
    SecretTypeMismatch { have: String, want: String },
}

impl Problem {
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::InvalidSpec(_) => reasons::INVALID_SPEC,
            Problem::Credentials(
                CredentialsProblem::InvalidAccessKey { .. }
                | CredentialsProblem::InvalidValue { .. },
            ) => reasons::CREDENTIALS_INVALID,
            Problem::Credentials(_) => reasons::CREDENTIALS_NOT_FOUND,
            Problem::Password(_) => reasons::PASSWORD_SECRET_NOT_FOUND,
            Problem::SecretConflict { .. } => reasons::SECRET_CONFLICT,
            Problem::SecretTypeMismatch { .. } => reasons::SECRET_TYPE_MISMATCH,
        }
    }

    /// The sentence for people.
    pub fn message(&self) -> String {
        match self {
            Problem::InvalidSpec(problem) => problem.to_string(),
            Problem::Credentials(problem) => problem.to_string(),
            Problem::Password(problem) => problem.to_string(),
            Problem::SecretConflict { name } => format!(
                "the Secret {name} already exists and is not controlled by this DcsInstance; it is left untouched (choose another spec.connectionSecret.name or delete it)"
            ),
            Problem::SecretTypeMismatch { have, want } => format!(
                "the connection Secret has type {have}, not {want}; Kubernetes cannot change a Secret's type: delete the Secret and the operator recreates it"
            ),
        }
    }
}
