//! Keyless credentials on the wire: the IAM and STS exchanges that turn an OIDC ID
//! token (or a CCE Pod Identity token) into temporary AK/SK + security token, as the
//! official SDKs' credential providers do them (CREDENTIALS.md §2).
//!
//! Every answer is hostile until proven otherwise: bodies are capped at
//! [`MAX_ANSWER_BYTES`], nothing panics, and no token, secret key or security token
//! reaches a Debug, Display, log line or error message (what an IAM endpoint echoes
//! back is scrubbed of the tokens that were sent, and of anything that looks like a JWT).
//!
//! The requests are unsigned (no AK/SK; Pod Identity alone carries an `Authorization`
//! header, the raw token), with `Content-Type: application/json;charset=UTF-8` and
//! the operator's User-Agent, as the SDK sends them. Inputs are checked against the
//! documented limits before anything is sent ([`IamError::Unsendable`]).

use std::fmt;
use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::bounded::clip;
use super::client::{ClientBuildError, ClientConfig, Endpoint};
use super::credentials::{Credentials, SecretString};

/// IAM and STS answers are small JSON objects; anything larger is refused.
pub const MAX_ANSWER_BYTES: usize = 64 << 10;
/// IAM `securitytokens` (§2.2): 900–86400 s, 900 s when not given.
pub const SECURITY_TOKEN_DURATION: RangeInclusive<u32> = 900..=86_400;
pub const SECURITY_TOKEN_DEFAULT_DURATION: u32 = 900;
/// STS assume-with-OIDC (§2.3): 900–43200 s (and no more than the agency's maximum),
/// 3600 s when not given.
pub const ASSUME_AGENCY_DURATION: RangeInclusive<u32> = 900..=43_200;
pub const ASSUME_AGENCY_DEFAULT_DURATION: u32 = 3600;
/// An ID token (JWT) as IAM5 accepts it: 4–20000 characters.
pub const ID_TOKEN_LENGTH: RangeInclusive<usize> = 4..=20_000;
/// `provider_urn`: at most 1500 characters.
pub const PROVIDER_URN_LENGTH: RangeInclusive<usize> = 1..=1500;
/// `agency_urn` (`iam::{account_id}:agency:{name}`): bounded like the provider URN.
pub const AGENCY_URN_LENGTH: RangeInclusive<usize> = 1..=1500;
/// `agency_session_name`: 2–128 characters.
pub const SESSION_NAME_LENGTH: RangeInclusive<usize> = 2..=128;
/// An IAM identity provider ID (`X-Idp-Id`).
pub const IDP_ID_LENGTH: RangeInclusive<usize> = 1..=128;
/// A federated (IAM) token or a Pod Identity token, as sent in a header.
pub const HEADER_TOKEN_LENGTH: RangeInclusive<usize> = 1..=32_768;
/// The Pod Identity agent's URI (`HC_CONTAINER_CREDENTIALS_FULL_URI`).
pub const POD_IDENTITY_URI_LENGTH: RangeInclusive<usize> = 1..=2048;

const CONTENT_TYPE: &str = "application/json;charset=UTF-8";
const TRACE_HEADER: &str = "x-iam-trace-id";
const SUBJECT_TOKEN_HEADER: &str = "x-subject-token";
/// What a code, a message and a trace id from an answer are cut to.
const MAX_CODE_CHARS: usize = 64;
const MAX_MESSAGE_CHARS: usize = 512;
const MAX_TRACE_CHARS: usize = 128;

/// Temporary AK/SK with their security token and expiry, from any of the exchanges.
#[derive(Clone, PartialEq, Eq)]
pub struct TemporaryCredentials {
    pub access_key: String,
    pub secret_key: SecretString,
    pub security_token: SecretString,
    pub expires_at: DateTime<Utc>,
}

impl TemporaryCredentials {
    /// What requests are signed with: the pair, and the token sent (and signed) as
    /// `X-Security-Token`.
    pub fn credentials(&self) -> Credentials {
        Credentials::access_key(
            self.access_key.clone(),
            self.secret_key.clone(),
            Some(self.security_token.clone()),
        )
    }
}

impl fmt::Debug for TemporaryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporaryCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("security_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One STS AssumeAgencyWithOIDC request (§2.3). `id_token` is a [`SecretString`], so
/// the derived Debug never shows it.
#[derive(Debug, Clone, Copy)]
pub struct AssumeAgency<'a> {
    pub provider_urn: &'a str,
    pub agency_urn: &'a str,
    pub session_name: &'a str,
    pub id_token: &'a SecretString,
    pub duration_seconds: u32,
}

/// Why an exchange failed. Every text in it is bounded and free of tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    /// The IAM/STS endpoint answered with a status >= 400.
    #[error("the IAM/STS endpoint refused the request with HTTP {status}{}", detail(.code, .message))]
    Refused {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// No answer: connection refused or reset, TLS, timeout.
    #[error("the IAM/STS endpoint could not be reached: {message}")]
    Transport { message: String },
    /// An answer that is not what the API sends (too large, not JSON, fields missing).
    #[error("the IAM/STS answer is not usable: {message}")]
    Decode { message: String },
    /// The request was never sent: an input is outside the documented limits.
    #[error("the IAM/STS request was not sent: {message}")]
    Unsendable { message: String },
}

fn detail(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(code), Some(message)) => format!(": {code}: {message}"),
        (Some(text), None) | (None, Some(text)) => format!(": {text}"),
        (None, None) => String::new(),
    }
}

impl IamError {
    /// A bounded PascalCase word for metrics labels and event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            IamError::Refused { status: 429, .. } => "IamThrottled",
            IamError::Refused { status, .. } if *status >= 500 => "IamUnavailable",
            IamError::Refused { .. } => "IamRefused",
            IamError::Transport { .. } => "IamUnreachable",
            IamError::Decode { .. } => "IamBadAnswer",
            IamError::Unsendable { .. } => "IamRequestInvalid",
        }
    }

    /// For a condition message: the IAM/STS error code and message (no tokens, at
    /// most about 600 characters).
    pub fn code_and_message(&self) -> String {
        let text = match self {
            IamError::Refused {
                status,
                code,
                message,
            } => format!("HTTP {status}{}", detail(code, message)),
            IamError::Transport { message } => format!("unreachable: {message}"),
            IamError::Decode { message } => format!("unusable answer: {message}"),
            IamError::Unsendable { message } => format!("not sent: {message}"),
        };
        clip(&text, MAX_MESSAGE_CHARS + MAX_CODE_CHARS + 32)
    }

    fn unsendable(message: impl Into<String>) -> Self {
        IamError::Unsendable {
            message: message.into(),
        }
    }

    fn decode(message: impl Into<String>) -> Self {
        IamError::Decode {
            message: message.into(),
        }
    }
}

/// The HTTP client for IAM, STS and the Pod Identity agent.
#[derive(Clone)]
pub struct IamClient {
    http: reqwest::Client,
    user_agent: String,
    max_body_bytes: usize,
}

impl fmt::Debug for IamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamClient")
            .field("user_agent", &self.user_agent)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// A successful (2xx) answer.
struct Reply {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl IamClient {
    /// The same TLS setup (system roots plus the configured extra roots, verification
    /// always on), timeouts and User-Agent as [`super::DcsClient`]; redirects are not
    /// followed (a redirect would carry a token to another URL). Answers are capped at
    /// the smaller of `max_body_bytes` and [`MAX_ANSWER_BYTES`].
    pub fn new(config: &ClientConfig) -> Result<Self, ClientBuildError> {
        let http = super::client::http_client(config)?;
        Ok(Self {
            http,
            user_agent: config.user_agent.clone(),
            max_body_bytes: config.max_body_bytes.min(MAX_ANSWER_BYTES),
        })
    }

    /// §2.1 CreateTokenWithIdToken: `POST {iam}/v3.0/OS-AUTH/id-token/tokens` with
    /// `X-Idp-Id` and `{"auth":{"id_token":{"id":JWT}}}`. Returns the federated
    /// (unscoped) token from `X-Subject-Token` and its `token.expires_at`.
    pub async fn federated_token(
        &self,
        iam: &Endpoint,
        idp_id: &str,
        id_token: &SecretString,
    ) -> Result<(SecretString, DateTime<Utc>), IamError> {
        check_text("the identity provider ID", idp_id, IDP_ID_LENGTH)?;
        check_text("the ID token", id_token.expose(), ID_TOKEN_LENGTH)?;
        let body = json!({"auth": {"id_token": {"id": id_token.expose()}}});
        let reply = self
            .post(
                &endpoint_url(iam, "/v3.0/OS-AUTH/id-token/tokens")?,
                vec![("x-idp-id", header_value(idp_id, false)?)],
                &body,
                &[id_token.expose()],
                "iam_id_token",
            )
            .await?;
        let token = reply
            .headers
            .get(SUBJECT_TOKEN_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|token| HEADER_TOKEN_LENGTH.contains(&token.len()) && is_visible_ascii(token))
            .ok_or_else(|| IamError::decode("the answer has no usable X-Subject-Token header"))?;
        let value = parse_json(&reply.body)?;
        let expires_at = value
            .get("token")
            .and_then(|token| token.get("expires_at"))
            .ok_or_else(|| IamError::decode("the answer has no token.expires_at"))?;
        let expires_at = parse_time(expires_at, "token.expires_at")?;
        Ok((SecretString::new(token), expires_at))
    }

    /// §2.2 CreateTemporaryAccessKeyByToken: `POST {iam}/v3.0/OS-CREDENTIAL/securitytokens`
    /// with the token in `X-Auth-Token` and in the body (`token.id`), and
    /// `duration_seconds` (900–86400).
    pub async fn temporary_credentials(
        &self,
        iam: &Endpoint,
        token: &SecretString,
        duration_seconds: u32,
    ) -> Result<TemporaryCredentials, IamError> {
        check_text("the IAM token", token.expose(), HEADER_TOKEN_LENGTH)?;
        check_duration(duration_seconds, SECURITY_TOKEN_DURATION)?;
        let body = json!({"auth": {"identity": {
            "methods": ["token"],
            "token": {"id": token.expose(), "duration_seconds": duration_seconds},
        }}});
        let reply = self
            .post(
                &endpoint_url(iam, "/v3.0/OS-CREDENTIAL/securitytokens")?,
                vec![("x-auth-token", header_value(token.expose(), true)?)],
                &body,
                &[token.expose()],
                "iam_security_tokens",
            )
            .await?;
        parse_temporary_credentials(&reply.body)
    }

    /// §2.3 AssumeAgencyWithOIDC: `POST {sts}/v5/agencies/assume-with-oidc`; any 2xx
    /// is success, as the SDK has it.
    pub async fn assume_agency_with_oidc(
        &self,
        sts: &Endpoint,
        request: &AssumeAgency<'_>,
    ) -> Result<TemporaryCredentials, IamError> {
        check_text(
            "the OIDC provider URN",
            request.provider_urn,
            PROVIDER_URN_LENGTH,
        )?;
        check_text("the agency URN", request.agency_urn, AGENCY_URN_LENGTH)?;
        check_text(
            "the agency session name",
            request.session_name,
            SESSION_NAME_LENGTH,
        )?;
        check_text("the ID token", request.id_token.expose(), ID_TOKEN_LENGTH)?;
        check_duration(request.duration_seconds, ASSUME_AGENCY_DURATION)?;
        let body = json!({
            "provider_urn": request.provider_urn,
            "agency_urn": request.agency_urn,
            "agency_session_name": request.session_name,
            "id_token": request.id_token.expose(),
            "duration_seconds": request.duration_seconds,
        });
        let reply = self
            .post(
                &endpoint_url(sts, "/v5/agencies/assume-with-oidc")?,
                Vec::new(),
                &body,
                &[request.id_token.expose()],
                "sts_assume_oidc",
            )
            .await?;
        parse_temporary_credentials(&reply.body)
    }

    /// §2.4a CCE Pod Identity, inside the pod: `POST {uri}` with body `{}` and the raw
    /// token (no `Bearer`) as `Authorization`. Surrounding whitespace of the token (a
    /// trailing newline in the token file) is not sent.
    pub async fn pod_identity(
        &self,
        uri: &str,
        token: &SecretString,
    ) -> Result<TemporaryCredentials, IamError> {
        let url = pod_identity_url(uri)?;
        let raw = token.expose().trim();
        check_text("the Pod Identity token", raw, HEADER_TOKEN_LENGTH)?;
        let reply = self
            .post(
                &url,
                vec![("authorization", header_value(raw, true)?)],
                &json!({}),
                &[raw],
                "pod_identity",
            )
            .await?;
        parse_temporary_credentials(&reply.body)
    }

    /// Sends one exchange and returns a 2xx answer, or classifies the failure with
    /// the `secrets` it carried scrubbed from anything the endpoint sends back.
    async fn post(
        &self,
        url: &Url,
        extra_headers: Vec<(&'static str, HeaderValue)>,
        body: &Value,
        secrets: &[&str],
        exchange: &'static str,
    ) -> Result<Reply, IamError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE),
        );
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_str(&self.user_agent)
                .unwrap_or_else(|_| HeaderValue::from_static("dcs-operator")),
        );
        for (name, value) in extra_headers {
            headers.insert(HeaderName::from_static(name), value);
        }
        let origin = url.origin().ascii_serialization();
        let response = self
            .http
            .post(url.clone())
            .headers(headers)
            .body(body.to_string())
            .send()
            .await
            .map_err(|error| transport_error(error, secrets))?;
        let status = response.status().as_u16();
        let response_headers = response.headers().clone();
        let trace_id = response_headers
            .get(TRACE_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(|value| scrub(value, secrets, MAX_TRACE_CHARS));
        let body = read_capped(response, self.max_body_bytes, secrets).await;
        tracing::debug!(
            exchange,
            endpoint = %origin,
            status,
            iam_trace_id = trace_id.as_deref().unwrap_or(""),
            "IAM/STS exchange answered"
        );
        let body = body?;
        if status >= 400 {
            let error = refusal(status, &body, secrets);
            tracing::info!(
                exchange,
                endpoint = %origin,
                status,
                iam_trace_id = trace_id.as_deref().unwrap_or(""),
                error = %error.code_and_message(),
                "IAM/STS exchange refused"
            );
            return Err(error);
        }
        if !(200..300).contains(&status) {
            return Err(IamError::decode(format!(
                "unexpected HTTP status {status} (redirects are not followed)"
            )));
        }
        Ok(Reply {
            headers: response_headers,
            body,
        })
    }
}

fn endpoint_url(endpoint: &Endpoint, path: &str) -> Result<Url, IamError> {
    Url::parse(&format!("{}{path}", endpoint.as_str()))
        .map_err(|_| IamError::unsendable(format!("{endpoint} does not make a URL")))
}

/// The Pod Identity URI: http(s), a host, no user, password or fragment.
fn pod_identity_url(uri: &str) -> Result<Url, IamError> {
    let uri = uri.trim();
    if !POD_IDENTITY_URI_LENGTH.contains(&uri.len()) {
        return Err(IamError::unsendable(format!(
            "the Pod Identity URI must be {} to {} characters",
            POD_IDENTITY_URI_LENGTH.start(),
            POD_IDENTITY_URI_LENGTH.end()
        )));
    }
    let url = Url::parse(uri)
        .map_err(|e| IamError::unsendable(format!("the Pod Identity URI is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(IamError::unsendable(
            "the Pod Identity URI must be http:// or https:// with a host",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(IamError::unsendable(
            "the Pod Identity URI must not carry a user, password or fragment",
        ));
    }
    Ok(url)
}

/// Visible ASCII only (no spaces or controls), within `length` bytes.
fn check_text(what: &str, text: &str, length: RangeInclusive<usize>) -> Result<(), IamError> {
    if !length.contains(&text.len()) {
        return Err(IamError::unsendable(format!(
            "{what} must be {} to {} characters, got {}",
            length.start(),
            length.end(),
            text.len()
        )));
    }
    if !is_visible_ascii(text) {
        return Err(IamError::unsendable(format!(
            "{what} must be printable ASCII without spaces"
        )));
    }
    Ok(())
}

fn check_duration(seconds: u32, range: RangeInclusive<u32>) -> Result<(), IamError> {
    if range.contains(&seconds) {
        return Ok(());
    }
    Err(IamError::unsendable(format!(
        "duration_seconds must be {} to {}, got {seconds}",
        range.start(),
        range.end()
    )))
}

fn is_visible_ascii(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_graphic())
}

fn header_value(text: &str, sensitive: bool) -> Result<HeaderValue, IamError> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| IamError::unsendable("a header value is not valid"))?;
    value.set_sensitive(sensitive);
    Ok(value)
}

async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    secrets: &[&str],
) -> Result<Vec<u8>, IamError> {
    let too_large = || IamError::decode(format!("the answer is larger than {cap} bytes"));
    if response
        .content_length()
        .is_some_and(|length| length > cap as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| transport_error(error, secrets))?
    {
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport_error(error: reqwest::Error, secrets: &[&str]) -> IamError {
    let timeout = error.is_timeout();
    // Without the URL (a Pod Identity URI may carry a query); the chain says what
    // actually happened.
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if timeout {
        message.push_str(" (timed out)");
    }
    IamError::Transport {
        message: scrub(&message, secrets, MAX_MESSAGE_CHARS),
    }
}

/// A refusal's code and message, from whichever error shape the service uses:
/// IAM's `{"error":{"code","message","title"}}`, the gateway's and IAM5's
/// `{"error_code","error_msg"}`, or a flat `{"code","message"}`.
fn refusal(status: u16, body: &[u8], secrets: &[&str]) -> IamError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let text = |value: Option<&Value>| -> Option<String> {
        match value? {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    };
    let (code, message) = match &value {
        Some(Value::Object(top)) => {
            let nested = top.get("error").filter(|e| e.is_object());
            let code = text(nested.and_then(|e| e.get("code")))
                .or_else(|| text(top.get("error_code")))
                .or_else(|| text(top.get("code")));
            let message = text(nested.and_then(|e| e.get("message")))
                .or_else(|| text(top.get("error_msg")))
                .or_else(|| text(top.get("message")))
                .or_else(|| text(nested.and_then(|e| e.get("title"))));
            (code, message)
        }
        _ => (None, None),
    };
    IamError::Refused {
        status,
        code: code
            .map(|code| scrub(&code, secrets, MAX_CODE_CHARS))
            .filter(|code| !code.is_empty()),
        message: message
            .map(|message| scrub(&message, secrets, MAX_MESSAGE_CHARS))
            .filter(|message| !message.is_empty()),
    }
}

/// Text from an answer made safe to show: the tokens that were sent and anything
/// shaped like a JWT replaced by `<redacted>`, control characters dropped, cut to
/// `max_chars`.
fn scrub(text: &str, secrets: &[&str], max_chars: usize) -> String {
    // Never process more than a bounded prefix (the body is capped anyway).
    let mut text: String = clip(text, 16 * 1024)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    for secret in secrets {
        if secret.len() >= 4 && text.contains(secret) {
            text = text.replace(secret, "<redacted>");
        }
    }
    let words: Vec<String> = text
        .split(' ')
        .map(|word| {
            if looks_like_jwt(word) {
                "<redacted>".to_string()
            } else {
                word.to_string()
            }
        })
        .collect();
    clip(words.join(" ").trim(), max_chars)
}

/// `eyJ…` (a base64url JSON header) with two dots somewhere after it.
fn looks_like_jwt(word: &str) -> bool {
    word.find("eyJ")
        .is_some_and(|at| word[at..].matches('.').count() >= 2)
}

fn parse_json(body: &[u8]) -> Result<Value, IamError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(IamError::decode(format!(
            "the answer is larger than {MAX_ANSWER_BYTES} bytes"
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(IamError::decode("the answer has an empty body"));
    }
    // Into a Value, so a parse error is about syntax and never quotes a field's value.
    serde_json::from_slice(body)
        .map_err(|e| IamError::decode(format!("the answer is not JSON: {e}")))
}

/// Parses a credential answer the way the SDK's parser does: the `credential` or
/// `credentials` object, each field under any of its aliases (`access`, `accessKeyId`,
/// `access_key_id`; `secret`, `secretAccessKey`, `secret_access_key`; `securitytoken`,
/// `securityToken`, `security_token`; `expires_at`, `expiration`), the expiry in RFC
/// 3339 with or without fractional seconds. Error messages name fields, never values.
pub fn parse_temporary_credentials(body: &[u8]) -> Result<TemporaryCredentials, IamError> {
    let value = parse_json(body)?;
    let Some(top) = value.as_object() else {
        return Err(IamError::decode("the answer is not a JSON object"));
    };
    let inner = ["credential", "credentials"]
        .iter()
        .find_map(|key| top.get(*key).filter(|v| !v.is_null()))
        .ok_or_else(|| IamError::decode("the answer has no credential object"))?;
    let Some(inner) = inner.as_object() else {
        return Err(IamError::decode("the credential field is not an object"));
    };
    let field = |aliases: &[&str], max: usize| -> Result<String, IamError> {
        let name = aliases.join("|");
        let value = aliases
            .iter()
            .find_map(|key| inner.get(*key).filter(|v| !v.is_null()))
            .ok_or_else(|| IamError::decode(format!("the credential has no {name}")))?;
        let text = value
            .as_str()
            .ok_or_else(|| IamError::decode(format!("the credential's {name} is not a string")))?
            .trim();
        if text.is_empty() || text.len() > max || !is_visible_ascii(text) {
            return Err(IamError::decode(format!(
                "the credential's {name} is not 1 to {max} printable ASCII characters"
            )));
        }
        Ok(text.to_string())
    };
    let access_key = field(&["access", "accessKeyId", "access_key_id"], 128)?;
    let secret_key = field(&["secret", "secretAccessKey", "secret_access_key"], 1024)?;
    let security_token = field(
        &["securitytoken", "securityToken", "security_token"],
        MAX_ANSWER_BYTES,
    )?;
    let expires_at = ["expires_at", "expiration"]
        .iter()
        .find_map(|key| inner.get(*key).filter(|v| !v.is_null()))
        .ok_or_else(|| IamError::decode("the credential has no expires_at|expiration"))?;
    let expires_at = parse_time(expires_at, "expires_at|expiration")?;
    Ok(TemporaryCredentials {
        access_key,
        secret_key: SecretString::new(secret_key),
        security_token: SecretString::new(security_token),
        expires_at,
    })
}

/// RFC 3339, fractional seconds optional (`2020-01-08T03:50:07.574000Z`,
/// `2020-01-08T03:50:07Z`, `…+08:00`).
fn parse_time(value: &Value, name: &str) -> Result<DateTime<Utc>, IamError> {
    value
        .as_str()
        .filter(|text| text.len() <= 64)
        .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| IamError::decode(format!("{name} is not an RFC 3339 time")))
}

/// Signing JWTs for tests (the operator's, the simulator's, other engineers'
/// controller tests). It signs only with a key the caller passes; no key is built in.
/// The repository's test key is `tests/fixtures/iam/test-key.pem`, trusted through
/// `tests/fixtures/iam/jwks.json` under kid [`test_tokens::TEST_KEY_ID`].
pub mod test_tokens {
    use chrono::{DateTime, Utc};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};

    /// The kid of `tests/fixtures/iam/jwks.json`.
    pub const TEST_KEY_ID: &str = "test-key-1";

    /// An RS256 JWT with these claims and `kid` in its header.
    ///
    /// Panics when `private_key_pem` is not an RSA private key (PKCS#1 or PKCS#8 PEM)
    /// or the claims cannot be signed: it is a test helper.
    pub fn sign_test_jwt(claims: &Value, private_key_pem: &[u8], kid: &str) -> String {
        let key = EncodingKey::from_rsa_pem(private_key_pem)
            .unwrap_or_else(|e| panic!("not an RSA private key in PEM: {e}"));
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &key)
            .unwrap_or_else(|e| panic!("cannot sign the test JWT: {e}"))
    }

    /// The claims of a Kubernetes ServiceAccount token as the TokenRequest API mints
    /// them: `sub` `system:serviceaccount:{namespace}:{name}`, `aud` a list, `iat` and
    /// `nbf` = `issued_at`, `exp` = `issued_at + lifetime_seconds`.
    pub fn service_account_claims(
        issuer: &str,
        audience: &str,
        namespace: &str,
        name: &str,
        issued_at: DateTime<Utc>,
        lifetime_seconds: i64,
    ) -> Value {
        let iat = issued_at.timestamp();
        json!({
            "iss": issuer,
            "aud": [audience],
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "iat": iat,
            "nbf": iat,
            "exp": iat.saturating_add(lifetime_seconds),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": "00000000-0000-4000-8000-000000000001"},
            },
        })
    }

    /// `token` with the signature of `other`: both signed by a trusted key, so only
    /// the signature check can tell (a wrongly signed token without a second key).
    pub fn with_signature_of(token: &str, other: &str) -> String {
        let body = token.rsplit_once('.').map_or(token, |(body, _)| body);
        let signature = other.rsplit_once('.').map_or("", |(_, sig)| sig);
        format!("{body}.{signature}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds_body(inner: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({ "credential": inner })).unwrap()
    }

    #[test]
    fn parses_every_alias_and_wrapper() {
        let iam = br#"{"credential":{"access":"AK1","secret":"SK1","securitytoken":"T1","expires_at":"2020-01-08T03:50:07.574000Z"}}"#;
        let parsed = parse_temporary_credentials(iam).unwrap();
        assert_eq!(parsed.access_key, "AK1");
        assert_eq!(parsed.secret_key.expose(), "SK1");
        assert_eq!(parsed.security_token.expose(), "T1");
        assert_eq!(
            parsed.expires_at,
            DateTime::parse_from_rfc3339("2020-01-08T03:50:07.574Z").unwrap()
        );
        let sts = br#"{"credentials":{"access_key_id":"AK2","secret_access_key":"SK2","security_token":"T2","expiration":"2030-01-01T00:00:00Z"},"assumed_agency":{"urn":"u","id":"i"}}"#;
        let parsed = parse_temporary_credentials(sts).unwrap();
        assert_eq!(
            (parsed.access_key.as_str(), parsed.secret_key.expose()),
            ("AK2", "SK2")
        );
        let pod = br#"{"credentials":{"accessKeyId":"AK3","secretAccessKey":"SK3","securityToken":"T3","expiration":"2030-01-01T08:00:00.1+08:00"}}"#;
        let parsed = parse_temporary_credentials(pod).unwrap();
        assert_eq!(parsed.security_token.expose(), "T3");
        assert_eq!(
            parsed.expires_at,
            DateTime::parse_from_rfc3339("2030-01-01T00:00:00.1Z").unwrap()
        );
        let creds = parsed.credentials();
        assert_eq!(creds.access_key_id(), Some("AK3"));
        assert!(matches!(
            creds,
            Credentials::AccessKey { security_token: Some(ref t), .. } if t.expose() == "T3"
        ));
    }

    #[test]
    fn fractions_are_optional_and_other_formats_refused() {
        for (text, ok) in [
            ("2020-01-08T03:50:07Z", true),
            ("2020-01-08T03:50:07.5Z", true),
            ("2020-01-08T03:50:07.574000Z", true),
            ("2020-01-08T03:50:07.123456789+00:00", true),
            ("2020-01-08 03:50:07", false),
            ("1578455407", false),
            ("", false),
        ] {
            let body = creds_body(
                json!({"access": "A", "secret": "S", "securitytoken": "T", "expires_at": text}),
            );
            assert_eq!(parse_temporary_credentials(&body).is_ok(), ok, "{text}");
        }
    }

    #[test]
    fn hostile_bodies_are_refused_without_quoting_values() {
        let secret = "VERYSECRETVALUE";
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"   ".to_vec(),
            b"<html>nope</html>".to_vec(),
            b"[1,2]".to_vec(),
            br#"{"credential": null}"#.to_vec(),
            br#"{"credential": "x"}"#.to_vec(),
            br#"{"other": {}}"#.to_vec(),
            creds_body(json!({"access": "A", "secret": secret, "securitytoken": "T"})),
            creds_body(
                json!({"access": 5, "secret": secret, "securitytoken": "T", "expires_at": "2030-01-01T00:00:00Z"}),
            ),
            creds_body(
                json!({"access": "A", "secret": [secret], "securitytoken": "T", "expires_at": "2030-01-01T00:00:00Z"}),
            ),
            creds_body(
                json!({"access": "A", "secret": secret, "securitytoken": "T", "expires_at": 1_900_000_000}),
            ),
            creds_body(
                json!({"access": "A B", "secret": secret, "securitytoken": "T", "expires_at": "2030-01-01T00:00:00Z"}),
            ),
            creds_body(
                json!({"access": "A", "secret": format!("{secret}\n"), "securitytoken": "T\u{7f}", "expires_at": "2030-01-01T00:00:00Z"}),
            ),
            creds_body(
                json!({"access": "A".repeat(129), "secret": secret, "securitytoken": "T", "expires_at": "2030-01-01T00:00:00Z"}),
            ),
            // Larger than the cap.
            creds_body(
                json!({"access": "A", "secret": secret, "securitytoken": "T".repeat(MAX_ANSWER_BYTES), "expires_at": "2030-01-01T00:00:00Z"}),
            ),
            // Deeply nested: the JSON parser's depth limit answers, no stack overflow.
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ];
        for body in cases {
            let error = parse_temporary_credentials(&body).unwrap_err();
            assert!(matches!(error, IamError::Decode { .. }), "{error:?}");
            assert!(!error.to_string().contains(secret), "{error}");
            assert_eq!(error.reason(), "IamBadAnswer");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let creds = TemporaryCredentials {
            access_key: "AKTEMP".into(),
            secret_key: SecretString::new("sk-very-secret"),
            security_token: SecretString::new("token-very-secret"),
            expires_at: Utc::now(),
        };
        let shown = format!("{creds:?} {:?}", creds.credentials());
        assert!(shown.contains("AKTEMP"));
        assert!(!shown.contains("very-secret"), "{shown}");
        let id_token = SecretString::new("eyJhbGciOi.jwt-body.signature");
        let request = AssumeAgency {
            provider_urn: "iam::1:oidc-provider:p",
            agency_urn: "iam::1:agency:a",
            session_name: "s1",
            id_token: &id_token,
            duration_seconds: 3600,
        };
        assert!(!format!("{request:?}").contains("jwt-body"));
        let client = IamClient::new(&ClientConfig::default()).unwrap();
        assert!(format!("{client:?}").contains("IamClient"));
    }

    #[test]
    fn refusals_read_every_error_shape_and_scrub_tokens() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let iam = json!({"error": {"code": "IAM.0001", "message": format!("bad token {jwt}"), "title": "Unauthorized"}});
        let error = refusal(401, iam.to_string().as_bytes(), &[]);
        assert_eq!(
            error,
            IamError::Refused {
                status: 401,
                code: Some("IAM.0001".into()),
                message: Some("bad token <redacted>".into())
            }
        );
        assert_eq!(error.reason(), "IamRefused");
        assert_eq!(
            error.code_and_message(),
            "HTTP 401: IAM.0001: bad token <redacted>"
        );
        let gateway = json!({"error_code": "APIG.0308", "error_msg": "throttled"});
        let error = refusal(429, gateway.to_string().as_bytes(), &[]);
        assert_eq!(error.reason(), "IamThrottled");
        assert!(error.to_string().contains("APIG.0308: throttled"));
        let echoed =
            json!({"code": 1234, "message": "raw-opaque-token-1234 is not valid\n\u{1b}[31m"});
        let error = refusal(
            403,
            echoed.to_string().as_bytes(),
            &["raw-opaque-token-1234"],
        );
        assert!(
            matches!(&error, IamError::Refused { code: Some(c), message: Some(m), .. }
                if c == "1234" && m == "<redacted> is not valid  [31m"),
            "{error:?}"
        );
        let error = refusal(503, b"<html>busy</html>", &[]);
        assert_eq!(
            error,
            IamError::Refused {
                status: 503,
                code: None,
                message: None
            }
        );
        assert_eq!(error.reason(), "IamUnavailable");
        assert_eq!(error.code_and_message(), "HTTP 503");
        let long = json!({"error_code": "C".repeat(1000), "error_msg": "m".repeat(10_0000)});
        let error = refusal(400, long.to_string().as_bytes(), &[]);
        assert!(error.code_and_message().chars().count() <= 620);
    }

    #[test]
    fn inputs_are_checked_before_sending() {
        assert!(check_duration(900, SECURITY_TOKEN_DURATION).is_ok());
        assert!(check_duration(86_400, SECURITY_TOKEN_DURATION).is_ok());
        assert!(check_duration(899, SECURITY_TOKEN_DURATION).is_err());
        assert!(check_duration(86_401, SECURITY_TOKEN_DURATION).is_err());
        assert!(check_duration(43_200, ASSUME_AGENCY_DURATION).is_ok());
        assert!(check_duration(43_201, ASSUME_AGENCY_DURATION).is_err());
        assert!(check_duration(0, ASSUME_AGENCY_DURATION).is_err());
        assert!(check_text("x", "abc", ID_TOKEN_LENGTH).is_err());
        assert!(check_text("x", "abcd", ID_TOKEN_LENGTH).is_ok());
        assert!(check_text("x", &"a".repeat(20_001), ID_TOKEN_LENGTH).is_err());
        assert!(check_text("x", "a b", IDP_ID_LENGTH).is_err());
        assert!(check_text("x", "idp\n", IDP_ID_LENGTH).is_err());
        assert!(check_text("x", "idé", IDP_ID_LENGTH).is_err());
        assert!(check_text("x", "s", SESSION_NAME_LENGTH).is_err());
        let error = check_text("the ID token", "a b c d", ID_TOKEN_LENGTH).unwrap_err();
        assert_eq!(error.reason(), "IamRequestInvalid");
        assert!(!error.to_string().contains("a b c d"));
        assert!(pod_identity_url("http://127.0.0.1:8080/v1/credentials").is_ok());
        assert!(pod_identity_url("https://agent.local/creds?x=1").is_ok());
        for bad in [
            "",
            "ftp://x/y",
            "http://user:pw@x/",
            "http://x/#frag",
            "not a url",
            "unix:/run/agent.sock",
        ] {
            assert!(pod_identity_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn out_of_range_requests_are_never_sent() {
        // Port 9 on loopback: anything sent would fail as Transport, not Unsendable.
        let client = IamClient::new(&ClientConfig::default()).unwrap();
        let iam = Endpoint::parse("http://127.0.0.1:9").unwrap();
        let token = SecretString::new("token-value");
        for duration in [0, 899, 86_401, u32::MAX] {
            let error = client
                .temporary_credentials(&iam, &token, duration)
                .await
                .unwrap_err();
            assert!(
                matches!(error, IamError::Unsendable { .. }),
                "{duration}: {error:?}"
            );
        }
        let jwt = SecretString::new("a.b.c");
        let request = AssumeAgency {
            provider_urn: "iam::1:oidc-provider:p",
            agency_urn: "iam::1:agency:a",
            session_name: "session",
            id_token: &jwt,
            duration_seconds: 43_201,
        };
        let error = client
            .assume_agency_with_oidc(&iam, &request)
            .await
            .unwrap_err();
        assert!(matches!(error, IamError::Unsendable { .. }), "{error:?}");
        let error = client
            .federated_token(&iam, "idp id", &jwt)
            .await
            .unwrap_err();
        assert!(matches!(error, IamError::Unsendable { .. }), "{error:?}");
        let error = client
            .pod_identity("http://127.0.0.1:9/x", &SecretString::new("  \n"))
            .await
            .unwrap_err();
        assert!(matches!(error, IamError::Unsendable { .. }), "{error:?}");
    }

    #[test]
    fn test_tokens_sign_with_the_fixture_key() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/iam/test-key.pem"
        ))
        .unwrap();
        let claims = test_tokens::service_account_claims(
            "https://issuer.example",
            "dcs-operator",
            "ns",
            "sa",
            Utc::now(),
            600,
        );
        let token = test_tokens::sign_test_jwt(&claims, &pem, test_tokens::TEST_KEY_ID);
        assert_eq!(token.matches('.').count(), 2);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("test-key-1"));
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/iam/jwks.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["dcs-operator"]);
        let decoded = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert_eq!(decoded.claims["sub"], "system:serviceaccount:ns:sa");
        let other = test_tokens::sign_test_jwt(&json!({"sub": "x"}), &pem, "k");
        let forged = test_tokens::with_signature_of(&token, &other);
        assert!(jsonwebtoken::decode::<Value>(&forged, &key, &validation).is_err());
        assert!(looks_like_jwt(&token));
        assert_eq!(scrub(&format!("got {token}."), &[], 100), "got <redacted>");
    }
}
