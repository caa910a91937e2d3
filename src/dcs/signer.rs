//! SDK-HMAC-SHA256 request signing and verification, exactly as Huawei Cloud's SDKs do it.
//!
//! The canonicalisation functions are shared by [`sign`] and [`verify`]: the
//! simulator's verifier therefore cannot prove the signer right on its own; the
//! 23 vectors produced by the official SDK signer (tests/fixtures) do that.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
pub const HEADER_DATE: &str = "X-Sdk-Date";
pub const HEADER_CONTENT_SHA256: &str = "X-Sdk-Content-Sha256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The gateway refuses requests whose X-Sdk-Date is further than this from its clock.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(15);
const DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";
const EMPTY_BODY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// RFC 3986 unreserved characters stay; everything else becomes `%XX` (upper-case hex).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment, query key or query value.
pub fn encode(raw: &str) -> String {
    utf8_percent_encode(raw, RFC3986).to_string()
}

fn decode(encoded: &str) -> String {
    percent_decode_str(encoded).decode_utf8_lossy().into_owned()
}

/// Formats a time the way `X-Sdk-Date` carries it (`20240115T083000Z`).
pub fn format_date(at: DateTime<Utc>) -> String {
    at.format(DATE_FORMAT).to_string()
}

pub fn parse_date(value: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(value, DATE_FORMAT)
        .ok()
        .map(|naive| naive.and_utc())
}

/// The canonical URI: decode, split on `/`, encode each segment, always end with `/`.
/// An encoded slash (`%2F`) becomes a real separator, as the SDK does it.
pub fn canonical_uri(path: &str) -> String {
    let decoded = decode(path);
    let mut uri = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    if !uri.starts_with('/') {
        uri.insert(0, '/');
    }
    uri
}

/// The canonical query string from raw (unencoded) pairs: sorted by key, then value,
/// on the raw strings as the Python SDK sorts them; encoded with the RFC 3986 rule.
/// The client sends exactly this string as the URL query.
pub fn canonical_query(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Splits a query string as received on the wire into raw pairs (`k` alone means `k=`).
/// `+` is kept literally: the SDK never sends it for a space, and a client that
/// does (a form encoder) signed something else, which the signature check exposes.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((key, value)) => (decode(key), decode(value)),
            None => (decode(part), String::new()),
        })
        .collect()
}

/// Lower-case hex SHA-256 of the body, as the payload line of the canonical request.
pub fn payload_hash(body: &[u8]) -> String {
    if body.is_empty() {
        return EMPTY_BODY_SHA256.to_string();
    }
    hex::encode(Sha256::digest(body))
}

/// The headers of a request as the signer and verifier see them: names as given,
/// values as given. Order does not matter.
pub type Headers = Vec<(String, String)>;

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Every header whose name has no `_`, lower-cased and sorted.
pub fn signed_header_names(headers: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .filter(|name| !name.contains('_'))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Everything that goes into a signature, in the order the algorithm uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    pub canonical_request: String,
    pub string_to_sign: String,
}

/// The parts of a request that are signed. `path` is the path as sent (already
/// percent-encoded); `query` the raw pairs; `headers` must include Host and X-Sdk-Date.
#[derive(Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Builds the canonical request and string to sign for the named signed headers.
/// Returns `None` when a named header is missing or X-Sdk-Date is absent.
pub fn canonicalize(parts: RequestParts<'_>, signed_headers: &[String]) -> Option<Canonical> {
    let date = header_value(parts.headers, HEADER_DATE)?;
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let value = header_value(parts.headers, name)?;
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(value.trim());
        canonical_headers.push('\n');
    }
    let payload = match header_value(parts.headers, HEADER_CONTENT_SHA256) {
        Some(value) => value.to_string(),
        None => payload_hash(parts.body),
    };
    let canonical_request = [
        parts.method.to_ascii_uppercase(),
        canonical_uri(parts.path),
        canonical_query(parts.query),
        canonical_headers,
        signed_headers.join(";"),
        payload,
    ]
    .join("\n");
    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    Some(Canonical {
        canonical_request,
        string_to_sign,
    })
}

/// Lower-case hex HMAC-SHA256 of the string to sign, keyed with the secret key.
pub fn signature(secret_key: &str, string_to_sign: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The result of signing: headers to add to the request (X-Sdk-Date, and the
/// Authorization header) plus the intermediate strings for tests and debugging.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    pub date: String,
    pub signed_headers: String,
    pub canonical: Canonical,
    pub signature: String,
    pub authorization: String,
}

impl fmt::Debug for Signed {
    // The authorization carries only the access key and a signature, never the
    // secret, but keep debug output short and safe anyway.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("date", &self.date)
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

/// Signs a request. `headers` must already hold every header that will be sent and
/// signed (Host, X-Project-Id, X-Security-Token, Content-Type, …); X-Sdk-Date is
/// added from `at` unless the caller set one, in which case that value is signed.
/// A non-JSON body is signed as UNSIGNED-PAYLOAD, as the Python SDK does.
pub fn sign(
    access_key: &str,
    secret_key: &str,
    parts: RequestParts<'_>,
    at: DateTime<Utc>,
) -> (Headers, Signed) {
    let mut headers: Headers = parts
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.trim().to_string()))
        .collect();
    if header_value(&headers, HEADER_DATE).is_none() {
        headers.push((HEADER_DATE.to_string(), format_date(at)));
    }
    let content_type = header_value(&headers, "Content-Type").unwrap_or("");
    let json_like = content_type.starts_with("application/json")
        || content_type.starts_with("application/bson");
    if !content_type.is_empty()
        && !json_like
        && header_value(&headers, HEADER_CONTENT_SHA256).is_none()
    {
        headers.push((
            HEADER_CONTENT_SHA256.to_string(),
            UNSIGNED_PAYLOAD.to_string(),
        ));
    }
    let names = signed_header_names(&headers);
    let canonical = canonicalize(
        RequestParts {
            headers: &headers,
            ..parts
        },
        &names,
    )
    .unwrap_or_else(|| unreachable!("every signed header name was taken from the headers"));
    let date = header_value(&headers, HEADER_DATE)
        .unwrap_or_default()
        .to_string();
    let signature = signature(secret_key, &canonical.string_to_sign);
    let signed_headers = names.join(";");
    let authorization = format!(
        "{ALGORITHM} Access={access_key}, SignedHeaders={signed_headers}, Signature={signature}"
    );
    headers.push(("Authorization".to_string(), authorization.clone()));
    (
        headers,
        Signed {
            date,
            signed_headers,
            canonical,
            signature,
            authorization,
        },
    )
}

/// The three parts of an `Authorization: SDK-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.trim().strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
        let (mut access_key, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, val) = part.trim().split_once('=')?;
            match key {
                "Access" => access_key = Some(val.to_string()),
                "SignedHeaders" => {
                    signed_headers = Some(val.split(';').map(str::to_string).collect::<Vec<_>>())
                }
                "Signature" => signature = Some(val.to_string()),
                _ => return None,
            }
        }
        let signed_headers = signed_headers?;
        if signed_headers.iter().any(|name| name.is_empty()) {
            return None;
        }
        Some(Self {
            access_key: access_key.filter(|ak| !ak.is_empty())?,
            signed_headers,
            signature: signature?,
        })
    }
}

/// Why a signed request was refused. The gateway answers every one of these with
/// 401 APIG.0301; the variants exist so the simulator can say which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no Authorization header")]
    MissingAuthorization,
    #[error(
        "the Authorization header is not of the form 'SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…'"
    )]
    MalformedAuthorization,
    #[error("the access key is unknown")]
    UnknownAccessKey,
    #[error("X-Sdk-Date is missing or not of the form YYYYMMDDTHHMMSSZ")]
    BadDate,
    #[error("X-Sdk-Date is more than 15 minutes away from the server's clock")]
    DateSkew,
    #[error(
        "SignedHeaders must include host and x-sdk-date, and name only headers the request carries"
    )]
    BadSignedHeaders,
    #[error("the signature does not match")]
    SignatureMismatch,
}

/// Checks a signed request as the API gateway does. `secret_for` maps an access
/// key to its secret key. Only the headers named in SignedHeaders are checked.
/// On success returns the access key.
pub fn verify(
    parts: RequestParts<'_>,
    secret_for: impl FnOnce(&str) -> Option<String>,
    now: DateTime<Utc>,
) -> Result<String, VerifyError> {
    let raw =
        header_value(parts.headers, "Authorization").ok_or(VerifyError::MissingAuthorization)?;
    let auth = Authorization::parse(raw).ok_or(VerifyError::MalformedAuthorization)?;
    let date = header_value(parts.headers, HEADER_DATE)
        .and_then(parse_date)
        .ok_or(VerifyError::BadDate)?;
    if (now - date).abs() > MAX_CLOCK_SKEW {
        return Err(VerifyError::DateSkew);
    }
    let names: Vec<String> = auth
        .signed_headers
        .iter()
        .map(|name| name.to_ascii_lowercase())
        .collect();
    if !names.iter().any(|n| n == "host") || !names.iter().any(|n| n == "x-sdk-date") {
        return Err(VerifyError::BadSignedHeaders);
    }
    let secret = secret_for(&auth.access_key).ok_or(VerifyError::UnknownAccessKey)?;
    let canonical = canonicalize(parts, &names).ok_or(VerifyError::BadSignedHeaders)?;
    let expected = signature(&secret, &canonical.string_to_sign);
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(VerifyError::SignatureMismatch);
    }
    Ok(auth.access_key)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uri_rules() {
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a/b"), "/a/b/");
        assert_eq!(canonical_uri("/a/b/"), "/a/b/");
        assert_eq!(canonical_uri("/a%2Fb"), "/a/b/");
        assert_eq!(
            canonical_uri("/inst%2001%20%C3%BC~x"),
            "/inst%2001%20%C3%BC~x/"
        );
    }

    #[test]
    fn canonical_query_encodes_space_as_percent_20_and_sorts() {
        let pairs = vec![
            ("name".to_string(), "redis cache".to_string()),
            ("limit".to_string(), "10".to_string()),
            ("a".to_string(), "x+y/z=".to_string()),
        ];
        assert_eq!(
            canonical_query(&pairs),
            "a=x%2By%2Fz%3D&limit=10&name=redis%20cache"
        );
        assert_eq!(
            canonical_query(&parse_query(&canonical_query(&pairs))),
            canonical_query(&pairs)
        );
    }

    #[test]
    fn parse_query_keeps_empty_values_and_bare_keys() {
        assert_eq!(
            parse_query("a=&b&c=1"),
            vec![
                ("a".into(), "".into()),
                ("b".into(), "".into()),
                ("c".into(), "1".into())
            ]
        );
    }

    #[test]
    fn authorization_parse_round_trip() {
        let auth = Authorization::parse(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=abc",
        )
        .unwrap();
        assert_eq!(auth.access_key, "AK");
        assert_eq!(auth.signed_headers, vec!["host", "x-sdk-date"]);
        assert_eq!(auth.signature, "abc");
        assert!(Authorization::parse("SDK-HMAC-SHA256 Access=AK").is_none());
        assert!(Authorization::parse("Bearer x").is_none());
        assert!(
            Authorization::parse("SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature=a")
                .is_none()
        );
    }

    #[test]
    fn dates_round_trip() {
        let at = parse_date("20240115T083000Z").unwrap();
        assert_eq!(format_date(at), "20240115T083000Z");
        assert!(parse_date("2024-01-15T08:30:00Z").is_none());
    }
}
