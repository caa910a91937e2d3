//! Typed DCS API errors a controller can act on, and the lenient error-body parser.

use std::time::Duration;

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::bounded::Text;
use serde::{Deserialize, Deserializer};

/// What the API said about a failed request, as far as its body and headers tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub request_id: Option<String>,
}

impl ApiError {
    /// Parses an error body the way the official Python SDK does: `error_code` +
    /// `error_msg`, else `errorCode` + `errorMsg`, else `code` + `message`, else the
    /// same keys one level down (`{"error": {"code": …}}`). When nothing matches the
    /// code is the HTTP status and the message the body text (cut short).
    pub fn from_body(status: u16, body: &[u8], request_id_header: Option<String>) -> Self {
        // Decoded into a bounded shape, never a serde_json::Value: an error body is
        // as hostile as any answer, and a Value of megabytes of `[{}]` is gigabytes.
        let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
        let from_json = parsed.as_ref().and_then(|parsed| {
            parsed
                .top
                .code_and_message()
                .or_else(|| parsed.nested.as_ref().and_then(Fields::code_and_message))
        });
        let body_request_id = parsed.and_then(|parsed| parsed.request_id);
        let (error_code, error_msg) = match from_json {
            Some((code, message)) => (Some(code), message),
            None => {
                let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
                let text = super::bounded::clip(text.trim(), 513);
                (Some(status.to_string()), (!text.is_empty()).then_some(text))
            }
        };
        ApiError {
            status,
            error_code,
            error_msg,
            request_id: request_id_header.or(body_request_id),
        }
    }

    /// `code: message (request id …)` for people.
    pub fn describe(&self) -> String {
        let mut text = format!("HTTP {}", self.status);
        if let Some(code) = &self.error_code {
            text.push_str(&format!(" {code}"));
        }
        if let Some(message) = &self.error_msg {
            text.push_str(&format!(": {message}"));
        }
        if let Some(request_id) = &self.request_id {
            text.push_str(&format!(" (request id {request_id})"));
        }
        text
    }

    pub fn code_is(&self, codes: &[&str]) -> bool {
        self.error_code
            .as_deref()
            .is_some_and(|code| codes.iter().any(|c| c.eq_ignore_ascii_case(code)))
    }
}

/// The code and message keys the SDK looks for, each a bounded scalar.
#[derive(Debug, Default)]
struct Fields {
    error_code: Option<String>,
    error_msg: Option<String>,
    error_code_camel: Option<String>,
    error_msg_camel: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

impl Fields {
    fn set(&mut self, key: &str, value: Option<String>) -> bool {
        let slot = match key {
            "error_code" => &mut self.error_code,
            "error_msg" => &mut self.error_msg,
            "errorCode" => &mut self.error_code_camel,
            "errorMsg" => &mut self.error_msg_camel,
            "code" => &mut self.code,
            "message" => &mut self.message,
            _ => return false,
        };
        *slot = value;
        true
    }

    fn code_and_message(&self) -> Option<(String, Option<String>)> {
        [
            (&self.error_code, &self.error_msg),
            (&self.error_code_camel, &self.error_msg_camel),
            (&self.code, &self.message),
        ]
        .into_iter()
        .find_map(|(code, message)| Some((code.clone()?, message.clone())))
    }
}

/// An error body: the keys at the top, the first object one level down that has
/// them (`{"error": {"code": …}}`), and `request_id`. Everything else is skipped
/// without being built.
#[derive(Debug, Default)]
struct ErrorBody {
    top: Fields,
    nested: Option<Fields>,
    request_id: Option<String>,
}

/// A scalar as text (strings cut to 1024 characters and an ellipsis, numbers written
/// out), else None.
const SCALAR: Text = Text {
    max: 1025,
    numbers: true,
};

/// An object one level down: its code/message keys, or None when it is not an
/// object (skipped unbuilt).
struct Nested;

impl<'de> DeserializeSeed<'de> for Nested {
    type Value = Option<Fields>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested {
    type Value = Option<Fields>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let value = map.next_value_seed(SCALAR)?;
            fields.set(&key, value);
        }
        Ok(Some(fields))
    }
    crate::dcs::bounded::other_shapes_are!('de, None; scalars, unit, seq);
}

impl<'de> Deserialize<'de> for ErrorBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = ErrorBody;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorBody, A::Error> {
                let mut body = ErrorBody::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if Fields::default().set(&key, None) {
                        let value = map.next_value_seed(SCALAR)?;
                        body.top.set(&key, value);
                    } else if key == "request_id" {
                        body.request_id = map.next_value_seed(SCALAR)?;
                    } else if body
                        .nested
                        .as_ref()
                        .is_none_or(|n| n.code_and_message().is_none())
                    {
                        // The first nested object that names a code wins.
                        if let Some(fields) = map.next_value_seed(Nested)? {
                            body.nested = Some(fields);
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(body)
            }
        }
        d.deserialize_map(BodyVisitor)
    }
}

/// The codes that mean "this instance does not exist" (as opposed to a wrong URL).
pub const INSTANCE_NOT_FOUND_CODES: &[&str] = &["DCS.3022", "111404022"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcsError {
    #[error("not found: {}", .0.describe())]
    NotFound(ApiError),
    #[error("authentication failed: {}", .0.describe())]
    Unauthorized(ApiError),
    #[error("permission denied: {}", .0.describe())]
    Forbidden(ApiError),
    #[error("throttled by the API gateway{}: {}", retry_after_text(.retry_after), .api.describe())]
    Throttled {
        retry_after: Option<Duration>,
        api: ApiError,
    },
    #[error("DCS service error: {}", .0.describe())]
    Server(ApiError),
    #[error("request refused: {}", .0.describe())]
    Client(ApiError),
    #[error("could not reach DCS: {message}")]
    Transport { message: String, timeout: bool },
    /// The request could not even be built (a header value that is not text): it
    /// was never sent, so it tells nothing about the endpoint.
    #[error("could not build the request: {message}")]
    Unsendable { message: String },
    #[error("could not decode the DCS answer: {message}")]
    Decode {
        message: String,
        request_id: Option<String>,
    },
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|after| format!(" (retry after {}s)", after.as_secs()))
        .unwrap_or_default()
}

impl DcsError {
    /// Classifies a non-success HTTP answer.
    pub fn from_response(api: ApiError, retry_after: Option<Duration>) -> Self {
        match api.status {
            401 => DcsError::Unauthorized(api),
            403 => DcsError::Forbidden(api),
            404 => DcsError::NotFound(api),
            429 => DcsError::Throttled { retry_after, api },
            500..=599 => DcsError::Server(api),
            _ => DcsError::Client(api),
        }
    }

    /// A short, bounded, PascalCase label for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DcsError::NotFound(api) if api.code_is(INSTANCE_NOT_FOUND_CODES) => "InstanceNotFound",
            DcsError::NotFound(_) => "EndpointNotFound",
            DcsError::Unauthorized(_) => "Unauthorized",
            DcsError::Forbidden(_) => "Forbidden",
            DcsError::Throttled { .. } => "Throttled",
            DcsError::Server(_) | DcsError::Transport { .. } => "DcsUnavailable",
            DcsError::Client(_) => "RequestRefused",
            DcsError::Unsendable { .. } => "CredentialsInvalid",
            DcsError::Decode { .. } => "DecodeError",
        }
    }

    pub fn api(&self) -> Option<&ApiError> {
        match self {
            DcsError::NotFound(api)
            | DcsError::Unauthorized(api)
            | DcsError::Forbidden(api)
            | DcsError::Server(api)
            | DcsError::Client(api)
            | DcsError::Throttled { api, .. } => Some(api),
            DcsError::Transport { .. } | DcsError::Decode { .. } | DcsError::Unsendable { .. } => {
                None
            }
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            DcsError::Decode { request_id, .. } => request_id.as_deref(),
            other => other.api().and_then(|api| api.request_id.as_deref()),
        }
    }

    /// True for a 404 whose code says the instance itself does not exist.
    pub fn is_instance_not_found(&self) -> bool {
        matches!(self, DcsError::NotFound(api) if api.code_is(INSTANCE_NOT_FOUND_CODES))
    }

    /// Worth retrying later with the same request (as opposed to a configuration problem).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DcsError::Throttled { .. }
                | DcsError::Server(_)
                | DcsError::Transport { .. }
                | DcsError::Decode { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shapes() {
        let dcs = ApiError::from_body(
            404,
            br#"{"error_code":"DCS.3022","error_msg":"gone"}"#,
            None,
        );
        assert_eq!(dcs.error_code.as_deref(), Some("DCS.3022"));
        assert_eq!(dcs.error_msg.as_deref(), Some("gone"));
        let apig = ApiError::from_body(
            401,
            br#"{"error_code":"APIG.0301","error_msg":"bad","request_id":"r-1"}"#,
            None,
        );
        assert_eq!(apig.request_id.as_deref(), Some("r-1"));
        let header_wins = ApiError::from_body(
            401,
            br#"{"error_code":"APIG.0301","request_id":"body"}"#,
            Some("header".into()),
        );
        assert_eq!(header_wins.request_id.as_deref(), Some("header"));
        let camel = ApiError::from_body(400, br#"{"errorCode":"X","errorMsg":"y"}"#, None);
        assert_eq!(
            (camel.error_code.as_deref(), camel.error_msg.as_deref()),
            (Some("X"), Some("y"))
        );
        let plain = ApiError::from_body(400, br#"{"code":123,"message":"m"}"#, None);
        assert_eq!(plain.error_code.as_deref(), Some("123"));
        let nested = ApiError::from_body(500, br#"{"error":{"code":"E","message":"deep"}}"#, None);
        assert_eq!(
            (nested.error_code.as_deref(), nested.error_msg.as_deref()),
            (Some("E"), Some("deep"))
        );
    }

    #[test]
    fn unparseable_bodies_fall_back_to_status_and_text() {
        let html = ApiError::from_body(502, b"<html>Bad Gateway</html>", None);
        assert_eq!(html.error_code.as_deref(), Some("502"));
        assert_eq!(html.error_msg.as_deref(), Some("<html>Bad Gateway</html>"));
        let empty = ApiError::from_body(503, b"", None);
        assert_eq!(empty.error_msg, None);
        let long = ApiError::from_body(500, "x".repeat(10_000).as_bytes(), None);
        assert!(long.error_msg.unwrap().chars().count() <= 513);
    }

    #[test]
    fn classification_and_reasons() {
        let api = |status: u16, code: &str| ApiError {
            status,
            error_code: Some(code.into()),
            ..Default::default()
        };
        assert_eq!(
            DcsError::from_response(
                ApiError {
                    status: 404,
                    ..Default::default()
                },
                None
            )
            .reason(),
            "EndpointNotFound"
        );
        assert_eq!(
            DcsError::from_response(api(404, "DCS.3022"), None).reason(),
            "InstanceNotFound"
        );
        assert_eq!(
            DcsError::from_response(api(404, "111404022"), None).reason(),
            "InstanceNotFound"
        );
        assert_eq!(
            DcsError::from_response(api(404, "APIGW.0101"), None).reason(),
            "EndpointNotFound"
        );
        assert_eq!(
            DcsError::from_response(api(401, "APIG.0301"), None).reason(),
            "Unauthorized"
        );
        assert_eq!(
            DcsError::from_response(api(403, "DCS.2003"), None).reason(),
            "Forbidden"
        );
        let throttled =
            DcsError::from_response(api(429, "APIG.0308"), Some(Duration::from_secs(3)));
        assert_eq!(throttled.reason(), "Throttled");
        assert!(throttled.to_string().contains("retry after 3s"));
        assert_eq!(
            DcsError::from_response(api(503, "x"), None).reason(),
            "DcsUnavailable"
        );
        assert_eq!(
            DcsError::from_response(api(400, "111400002"), None).reason(),
            "RequestRefused"
        );
    }
}
