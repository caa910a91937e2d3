//! DCS credentials (AK/SK with an optional security token, or an IAM token) and
//! a redacting wrapper that keeps secret material out of Debug and Display.

use std::fmt;

use sha2::{Digest, Sha256};

/// A secret string: its Debug and Display say `<redacted>`, so it cannot leak
/// through a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; every call site is a place where it leaves this wrapper.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// How requests to DCS are authenticated.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// Permanent or temporary access keys; a temporary pair comes with a security
    /// token that is sent (and signed) as X-Security-Token.
    AccessKey {
        access_key: String,
        secret_key: SecretString,
        security_token: Option<SecretString>,
    },
    /// A project-scoped IAM token, sent as X-Auth-Token without signing.
    Token(SecretString),
}

impl Credentials {
    pub fn access_key(
        access_key: impl Into<String>,
        secret_key: impl Into<SecretString>,
        security_token: Option<SecretString>,
    ) -> Self {
        Credentials::AccessKey {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            security_token,
        }
    }

    /// The access key, which the API gateway counts and locks requests by. Not secret:
    /// it appears in every Authorization header.
    pub fn access_key_id(&self) -> Option<&str> {
        match self {
            Credentials::AccessKey { access_key, .. } => Some(access_key),
            Credentials::Token(_) => None,
        }
    }

    /// A stable, one-way digest of all the credential material. Two DcsInstances
    /// share cached DCS answers only when their fingerprints are equal, so a
    /// namespace holding a wrong secret key never sees another namespace's answers.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        match self {
            Credentials::AccessKey {
                access_key,
                secret_key,
                security_token,
            } => {
                hasher.update(b"aksk\0");
                hasher.update(access_key.as_bytes());
                hasher.update(b"\0");
                hasher.update(secret_key.expose().as_bytes());
                hasher.update(b"\0");
                if let Some(token) = security_token {
                    hasher.update(token.expose().as_bytes());
                }
            }
            Credentials::Token(token) => {
                hasher.update(b"token\0");
                hasher.update(token.expose().as_bytes());
            }
        }
        hex::encode(&hasher.finalize()[..16])
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::AccessKey {
                access_key,
                security_token,
                ..
            } => f
                .debug_struct("AccessKey")
                .field("access_key", access_key)
                .field("secret_key", &"<redacted>")
                .field("temporary", &security_token.is_some())
                .finish(),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let creds = Credentials::access_key("AKID", "very-secret-key", Some("tok-secret".into()));
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("very-secret-key"));
        assert!(!shown.contains("tok-secret"));
        let token = Credentials::Token("iam-token-secret".into());
        assert!(!format!("{token:?}").contains("iam-token-secret"));
        assert_eq!(format!("{}", SecretString::new("x")), "<redacted>");
    }

    #[test]
    fn fingerprint_depends_on_every_part() {
        let base = Credentials::access_key("AK", "SK", None);
        let other_sk = Credentials::access_key("AK", "SK2", None);
        let with_token = Credentials::access_key("AK", "SK", Some("T".into()));
        assert_eq!(
            base.fingerprint(),
            Credentials::access_key("AK", "SK", None).fingerprint()
        );
        assert_ne!(base.fingerprint(), other_sk.fingerprint());
        assert_ne!(base.fingerprint(), with_token.fingerprint());
        assert!(!base.fingerprint().contains("SK"));
    }
}
