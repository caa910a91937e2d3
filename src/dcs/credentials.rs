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

/// The environment variables the official SDKs read, plus one for an IAM token.
pub const ENV_ACCESS_KEY: &str = "HUAWEICLOUD_SDK_AK";
pub const ENV_SECRET_KEY: &str = "HUAWEICLOUD_SDK_SK";
pub const ENV_SECURITY_TOKEN: &str = "HUAWEICLOUD_SDK_SECURITY_TOKEN";
pub const ENV_AUTH_TOKEN: &str = "HUAWEICLOUD_AUTH_TOKEN";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no credentials: set {ENV_ACCESS_KEY} and {ENV_SECRET_KEY} (and {ENV_SECURITY_TOKEN} for temporary keys), or {ENV_AUTH_TOKEN}"
    )]
    Missing,
    #[error("{present} is set but {missing} is not")]
    Incomplete {
        present: &'static str,
        missing: &'static str,
    },
}

impl Credentials {
    /// Reads credentials through `get` (the process environment in production).
    /// AK/SK wins over a token when both are present, as the SDK prefers signing.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, CredentialsError> {
        let read = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        match (read(ENV_ACCESS_KEY), read(ENV_SECRET_KEY)) {
            (Some(ak), Some(sk)) => Ok(Credentials::access_key(
                ak,
                sk,
                read(ENV_SECURITY_TOKEN).map(SecretString::new),
            )),
            (Some(_), None) => Err(CredentialsError::Incomplete {
                present: ENV_ACCESS_KEY,
                missing: ENV_SECRET_KEY,
            }),
            (None, Some(_)) => Err(CredentialsError::Incomplete {
                present: ENV_SECRET_KEY,
                missing: ENV_ACCESS_KEY,
            }),
            (None, None) => read(ENV_AUTH_TOKEN)
                .map(|token| Credentials::Token(SecretString::new(token)))
                .ok_or(CredentialsError::Missing),
        }
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn reads_sdk_variables() {
        let creds =
            Credentials::from_env(env(&[(ENV_ACCESS_KEY, "AK"), (ENV_SECRET_KEY, "SK")])).unwrap();
        assert_eq!(creds.access_key_id(), Some("AK"));
        let temp = Credentials::from_env(env(&[
            (ENV_ACCESS_KEY, "AK"),
            (ENV_SECRET_KEY, "SK"),
            (ENV_SECURITY_TOKEN, "T"),
        ]))
        .unwrap();
        assert!(matches!(
            temp,
            Credentials::AccessKey {
                security_token: Some(_),
                ..
            }
        ));
        let token = Credentials::from_env(env(&[(ENV_AUTH_TOKEN, "tok")])).unwrap();
        assert!(matches!(token, Credentials::Token(_)));
        assert_eq!(
            Credentials::from_env(env(&[])),
            Err(CredentialsError::Missing)
        );
        assert!(matches!(
            Credentials::from_env(env(&[(ENV_ACCESS_KEY, "AK")])),
            Err(CredentialsError::Incomplete { .. })
        ));
        assert_eq!(
            Credentials::from_env(env(&[(ENV_ACCESS_KEY, " "), (ENV_SECRET_KEY, "")])),
            Err(CredentialsError::Missing)
        );
    }
}
