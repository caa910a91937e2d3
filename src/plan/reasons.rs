//! Every condition type, condition status, reason and Event reason the operator
//! writes or compares, in one place. Code compares against these constants, never
//! against string literals, so a renamed reason cannot silently break a comparison.

/// Condition types.
pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";

/// Condition statuses.
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";

/// Synced: the last observation worked.
pub const OBSERVED: &str = "Observed";
/// Synced (and Ready, before anything was observed): nothing observed yet.
pub const PENDING: &str = "Pending";
/// Synced: the last successful answer is older than three poll intervals.
pub const STALE: &str = "Stale";

/// Ready: RUNNING with the connection Secret written (also the DCS status reason).
pub const RUNNING: &str = "Running";
/// Ready: DCS says the instance does not exist.
pub const INSTANCE_NOT_FOUND: &str = "InstanceNotFound";
/// Ready: DCS gave no status at all.
pub const UNKNOWN_STATUS: &str = "UnknownStatus";

/// Problems found outside the observation (see `Problem::reason`).
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const CREDENTIALS_NOT_FOUND: &str = "CredentialsNotFound";
pub const CREDENTIALS_INVALID: &str = "CredentialsInvalid";
/// Workload identity: the Kubernetes side (namespace not opted in, ServiceAccount
/// missing or unlabelled, TokenRequest refused), and the cloud side.
pub const TOKEN_REQUEST_FAILED: &str = "TokenRequestFailed";
pub const IDENTITY_EXCHANGE_FAILED: &str = "IdentityExchangeFailed";
pub const PASSWORD_SECRET_NOT_FOUND: &str = "PasswordSecretNotFound";
pub const SECRET_CONFLICT: &str = "SecretConflict";
pub const SECRET_TYPE_MISMATCH: &str = "SecretTypeMismatch";

/// The managed lifecycle (see `LifecycleProblem::reason`).
pub const CREATE_PENDING: &str = "CreatePending";
pub const CREATE_UNRESOLVED: &str = "CreateUnresolved";
pub const REQUEST_REFUSED: &str = "RequestRefused";
pub const NAME_IN_USE: &str = "NameInUse";
pub const OWNERSHIP_MISMATCH: &str = "OwnershipMismatch";
pub const INSTANCE_ID_MISMATCH: &str = "InstanceIdMismatch";
pub const MANAGE_NOT_ALLOWED: &str = "ManageNotAllowed";
pub const ANNOTATION_INVALID: &str = "AnnotationInvalid";
pub const CLEANUP_BLOCKED: &str = "CleanupBlocked";
pub const DELETING: &str = "Deleting";
pub const REPLACING: &str = "Replacing";
pub const IMMUTABLE_FIELD_CHANGED: &str = "ImmutableFieldChanged";
/// In-place changes (issue #13): DCS is busy; a write was accepted and DCS still
/// differs.
pub const BUSY: &str = "Busy";
pub const NOT_CONVERGED: &str = "NotConverged";

/// Observation failures the plan compares (the full set is `DcsError::reason`).
pub const UNAUTHORIZED: &str = "Unauthorized";
pub const FORBIDDEN: &str = "Forbidden";

/// Event reasons.
pub const BECAME_READY: &str = "BecameReady";
pub const NOT_READY: &str = "NotReady";
pub const STATUS_CHANGED: &str = "StatusChanged";
pub const ENDPOINT_CHANGED: &str = "EndpointChanged";
pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
pub const INSTANCE_CREATED: &str = "InstanceCreated";
pub const INSTANCE_ADOPTED: &str = "InstanceAdopted";
pub const INSTANCE_DELETED: &str = "InstanceDeleted";
pub const INSTANCE_ORPHANED: &str = "InstanceOrphaned";
pub const RETRY_CREATE_IGNORED: &str = "RetryCreateIgnored";

/// The condition status for a boolean.
pub fn status_of(ok: bool) -> &'static str {
    if ok { TRUE } else { FALSE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::{ApiError, DcsError};

    #[test]
    fn the_dcs_layer_uses_the_same_reasons() {
        let api = ApiError::default();
        assert_eq!(DcsError::Unauthorized(api.clone()).reason(), UNAUTHORIZED);
        assert_eq!(DcsError::Forbidden(api).reason(), FORBIDDEN);
        assert_eq!(crate::dcs::DcsStatus::Running.reason(), RUNNING);
        assert_eq!(
            crate::dcs::DcsStatus::Unknown("X".into()).reason(),
            UNKNOWN_STATUS
        );
    }
}
