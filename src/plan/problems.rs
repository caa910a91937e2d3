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
    #[error("spec.instance is required with managementPolicy Manage")]
    NoDesiredInstance,
    #[error(
        "spec.passwordSecretRef is required to create an instance unless spec.instance.noPasswordAccess is true"
    )]
    NoPasswordSecret,
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
    /// Workload identity, Kubernetes side (opt-in, ServiceAccount, label, RBAC).
    #[error("spec.identity: {0}")]
    TokenRequestFailed(String),
    /// Workload identity, cloud side: the IAM/STS exchange failed (its code and
    /// message, never a token).
    #[error("the IAM/STS exchange failed: {0}")]
    IdentityExchangeFailed(String),
}

/// The password Secret or its key is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("the password Secret {name} does not exist in namespace {namespace}")]
    SecretMissing { name: String, namespace: String },
    #[error("the password Secret {name} has no key {key}")]
    KeyMissing { name: String, key: String },
}

/// The managed lifecycle is waiting, or cannot go on: each says what happened and
/// what to do (docs/managing.md has the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleProblem {
    /// The create's answer was lost; the operator is looking for the instance.
    CreatePending { attempt: u32 },
    /// The lookup window is over and the create was never found.
    CreateUnresolved { uid: String },
    /// DCS refused the create (or the credentials): its code and message.
    Refused { detail: String },
    /// An instance with this name exists and is not this object's.
    NameInUse { name: String },
    /// The recorded attempt, id or instance tag belongs to another DcsInstance.
    OwnershipMismatch { detail: String },
    /// spec.instanceId differs from the id the operator created.
    InstanceIdMismatch { recorded: String },
    /// The operator's own credentials may not create or adopt here.
    ManageNotAllowed { detail: String },
    /// A lifecycle annotation does not parse.
    AnnotationInvalid { name: &'static str },
    /// A DCS call the lifecycle needs failed (a lookup, a tag read): its reason.
    Dcs {
        step: &'static str,
        reason: &'static str,
        message: String,
    },
    /// retry-create: the CREATEFAILED instance is being deleted first.
    Replacing { instance_id: String },
    /// Deleting the DCS instance (waiting for a deletable state or for the 404).
    Deleting { detail: String },
    /// Deletion cannot go on: why, and the way out.
    CleanupBlocked { detail: String },
    /// A condition kept as the status already shows it (a refusal's DCS code and
    /// message are recorded nowhere else).
    Kept {
        reason: &'static str,
        message: String,
    },
}

impl LifecycleProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            LifecycleProblem::CreatePending { .. } => reasons::CREATE_PENDING,
            LifecycleProblem::CreateUnresolved { .. } => reasons::CREATE_UNRESOLVED,
            LifecycleProblem::Refused { .. } => reasons::REQUEST_REFUSED,
            LifecycleProblem::NameInUse { .. } => reasons::NAME_IN_USE,
            LifecycleProblem::OwnershipMismatch { .. } => reasons::OWNERSHIP_MISMATCH,
            LifecycleProblem::InstanceIdMismatch { .. } => reasons::INSTANCE_ID_MISMATCH,
            LifecycleProblem::ManageNotAllowed { .. } => reasons::MANAGE_NOT_ALLOWED,
            LifecycleProblem::AnnotationInvalid { .. } => reasons::ANNOTATION_INVALID,
            LifecycleProblem::Dcs { reason, .. } => reason,
            LifecycleProblem::Replacing { .. } => reasons::REPLACING,
            LifecycleProblem::Deleting { .. } => reasons::DELETING,
            LifecycleProblem::CleanupBlocked { .. } => reasons::CLEANUP_BLOCKED,
            LifecycleProblem::Kept { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> String {
        use crate::lifecycle::{OWNER_TAG_KEY, RETRY_CREATE_ANNOTATION};
        match self {
            LifecycleProblem::CreatePending { attempt } => format!(
                "create attempt {attempt} was sent but its answer was lost; looking for the instance by its ownership tag (nothing is sent again)"
            ),
            LifecycleProblem::CreateUnresolved { uid } => format!(
                "the create was sent but no instance tagged {OWNER_TAG_KEY}={uid} appeared within the lookup window; check the DCS console, then set the annotation {RETRY_CREATE_ANNOTATION} to create again (or adopt an instance with spec.instanceId)"
            ),
            LifecycleProblem::Refused { detail } => format!(
                "DCS refused the request: {detail}; fix the spec and the operator tries once more (after fixing the credentials instead, set the annotation {RETRY_CREATE_ANNOTATION})"
            ),
            LifecycleProblem::NameInUse { name } => format!(
                "a DCS instance named {name} exists and is not owned by this DcsInstance; set spec.instance.name to another name, or adopt it with spec.instanceId"
            ),
            LifecycleProblem::OwnershipMismatch { detail } => {
                format!("{detail}; nothing is written or created")
            }
            LifecycleProblem::InstanceIdMismatch { recorded } => format!(
                "spec.instanceId differs from the instance this DcsInstance created ({recorded}); nothing is written. spec.instanceId cannot change once set: delete this DcsInstance with deletionPolicy Orphan, then create one with spec.instanceId {recorded} and the annotation {} set to this object's uid",
                crate::lifecycle::RECLAIM_FROM_ANNOTATION
            ),
            LifecycleProblem::ManageNotAllowed { detail } => detail.clone(),
            LifecycleProblem::AnnotationInvalid { name } => format!(
                "the annotation {name} is not valid; it is written by the operator: restore its previous value or remove it"
            ),
            LifecycleProblem::Dcs { step, message, .. } => format!("{step}: {message}"),
            LifecycleProblem::Replacing { instance_id } => format!(
                "retry-create: deleting the failed instance {instance_id} before creating a new one"
            ),
            LifecycleProblem::Deleting { detail } => detail.clone(),
            LifecycleProblem::CleanupBlocked { detail } => format!(
                "{detail}; to let the DcsInstance go without deleting the DCS instance, set spec.deletionPolicy to Orphan"
            ),
            LifecycleProblem::Kept { message, .. } => message.clone(),
        }
    }
}

/// The fields of `desired` that differ from what DCS reports and cannot change in
/// place. Only what the answer carries is compared (engine case-insensitively).
pub fn immutable_differences(
    desired: &crate::crd::DesiredInstance,
    instance: &crate::dcs::model::Instance,
) -> Vec<&'static str> {
    let differs = |want: Option<&str>, have: Option<&str>, case: bool| match (want, have) {
        (Some(want), Some(have)) if case => !want.eq_ignore_ascii_case(have),
        (Some(want), Some(have)) => want != have,
        _ => false,
    };
    let mut fields = Vec::new();
    if differs(
        Some(desired.engine.as_str()),
        instance.engine.as_deref(),
        true,
    ) {
        fields.push("engine");
    }
    let version = desired.engine_version.as_deref();
    if differs(version, instance.engine_version.as_deref(), false) {
        fields.push("engineVersion");
    }
    if differs(Some(&desired.vpc_id), instance.vpc_id.as_deref(), false) {
        fields.push("vpcId");
    }
    if differs(
        Some(&desired.subnet_id),
        instance.subnet_id.as_deref(),
        false,
    ) {
        fields.push("subnetId");
    }
    fields
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
    /// The managed lifecycle is waiting or blocked: nothing is observed.
    Lifecycle(LifecycleProblem),
    /// spec.instance asks for a change DCS cannot make in place (the CRD's rule
    /// should have refused it): said in Synced, nothing is written for it.
    ImmutableFieldChanged { fields: Vec<&'static str> },
    /// The instance is observed, but the in-place changes are not done (Busy,
    /// NotConverged, RequestRefused): said in Synced; Ready follows the instance.
    NotSynced {
        reason: &'static str,
        message: String,
    },
}

impl Problem {
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::InvalidSpec(_) => reasons::INVALID_SPEC,
            Problem::Credentials(
                CredentialsProblem::InvalidAccessKey { .. }
                | CredentialsProblem::InvalidValue { .. },
            ) => reasons::CREDENTIALS_INVALID,
            Problem::Credentials(CredentialsProblem::TokenRequestFailed(_)) => {
                reasons::TOKEN_REQUEST_FAILED
            }
            Problem::Credentials(CredentialsProblem::IdentityExchangeFailed(_)) => {
                reasons::IDENTITY_EXCHANGE_FAILED
            }
            Problem::Credentials(_) => reasons::CREDENTIALS_NOT_FOUND,
            Problem::Password(_) => reasons::PASSWORD_SECRET_NOT_FOUND,
            Problem::SecretConflict { .. } => reasons::SECRET_CONFLICT,
            Problem::SecretTypeMismatch { .. } => reasons::SECRET_TYPE_MISMATCH,
            Problem::Lifecycle(problem) => problem.reason(),
            Problem::ImmutableFieldChanged { .. } => reasons::IMMUTABLE_FIELD_CHANGED,
            Problem::NotSynced { reason, .. } => reason,
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
            Problem::Lifecycle(problem) => problem.message(),
            Problem::NotSynced { message, .. } => message.clone(),
            Problem::ImmutableFieldChanged { fields } => format!(
                "spec.instance.{} differs from the instance, and DCS cannot change it in place; set it back (a different value needs a new DcsInstance)",
                fields.join(", spec.instance.")
            ),
        }
    }
}
