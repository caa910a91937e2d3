//! The DCS API client: endpoints, signed requests on the wire, bounded answers,
//! typed errors. It never retries by itself: five failed signatures lock an access
//! key for five minutes, and retry policy belongs to the caller.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::credentials::Credentials;
use super::error::{ApiError, DcsError};
use super::model::{Instance, InstanceList};
use super::signer::{self, RequestParts};
use crate::clock::SharedClock;

/// The v2 list API returns at most this many records a page.
pub const MAX_LIST_PAGE: u32 = 1000;
/// Stop paging after this many pages even if the server keeps answering full pages.
const MAX_LIST_PAGES: usize = 1000;

/// Where the DCS API lives: `https://dcs.{region}.myhuaweicloud.com`, or an explicit
/// URL (another partition, a private endpoint, or a local simulator over http).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Scheme, host, port and an optional path prefix, without a trailing slash.
    base: String,
    url: Url,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("region {0:?} is not a region name (lower-case letters, digits and '-')")]
    BadRegion(String),
    #[error("endpoint {0:?} is not a URL: {1}")]
    NotAUrl(String, String),
    #[error("endpoint {0:?} must use http:// or https://")]
    BadScheme(String),
    #[error("endpoint {0:?} has no host")]
    NoHost(String),
    #[error("endpoint {0:?} must not carry a user, password, query or fragment")]
    ExtraParts(String),
}

impl Endpoint {
    pub fn for_region(region: &str) -> Result<Self, EndpointError> {
        let valid = !region.is_empty()
            && region.len() <= 63
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !region.starts_with('-')
            && !region.ends_with('-');
        if !valid {
            return Err(EndpointError::BadRegion(region.to_string()));
        }
        Self::parse(&format!("https://dcs.{region}.myhuaweicloud.com"))
    }

    /// Parses an endpoint URL; a trailing slash is harmless.
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        let url = Url::parse(text.trim())
            .map_err(|e| EndpointError::NotAUrl(text.to_string(), e.to_string()))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(EndpointError::BadScheme(text.to_string()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(EndpointError::NoHost(text.to_string()));
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(EndpointError::ExtraParts(text.to_string()));
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        Ok(Self { base, url })
    }

    pub fn as_str(&self) -> &str {
        &self.base
    }

    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// True for 127.0.0.0/8, `localhost` and `[::1]`: the only hosts plain http is
    /// accepted for in a DcsInstance.
    pub fn is_loopback(&self) -> bool {
        match self.url.host() {
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
    }

    /// `host[:port]` as the Host header carries it (a default port is not written).
    fn host_header(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    fn path_prefix(&self) -> &str {
        self.url.path().trim_end_matches('/')
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({})", self.base)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    /// The whole request, from connecting to the last byte of the body.
    pub timeout: Duration,
    /// Answers larger than this are refused (a full 1000-item list page is ~2-3 MiB).
    pub max_body_bytes: usize,
    pub user_agent: String,
    /// Extra trusted roots (PEM) for endpoints behind a private CA. Verification is
    /// always on; there is deliberately no switch to turn it off.
    pub extra_root_certificates_pem: Option<Vec<u8>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(20),
            max_body_bytes: 16 << 20,
            user_agent: format!("dcs-operator/{}", env!("CARGO_PKG_VERSION")),
            extra_root_certificates_pem: None,
        }
    }
}

/// One request before signing. `path` is relative to the endpoint and already
/// percent-encoded; `query` holds raw pairs, sent as the canonical query string.
#[derive(Debug, Clone, Default)]
pub struct RequestSpec {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sent, and signed, as X-Project-Id, as the official SDKs do.
    pub project_id: Option<String>,
}

/// A successful answer and the request id the gateway gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    pub value: T,
    pub request_id: Option<String>,
    /// HTTP requests it took (pages of a list).
    pub pages: u32,
}

#[derive(Clone)]
pub struct DcsClient {
    http: reqwest::Client,
    config: ClientConfig,
    clock: SharedClock,
}

impl fmt::Debug for DcsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DcsClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("the CA file is not a PEM certificate bundle: {0}")]
    BadCaBundle(String),
    #[error("could not build the HTTP client: {0}")]
    Http(String),
}

impl DcsClient {
    pub fn new(config: ClientConfig, clock: SharedClock) -> Result<Self, ClientBuildError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // Redirects would re-send a signature computed for another URL.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &config.extra_root_certificates_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientBuildError::BadCaBundle(e.to_string()))?;
            if certs.is_empty() {
                return Err(ClientBuildError::BadCaBundle(
                    "no certificate in the file".into(),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ClientBuildError::Http(e.to_string()))?;
        Ok(Self {
            http,
            config,
            clock,
        })
    }

    /// The v1.0 ShowInstance: the only answer that carries `error_code`.
    pub async fn show_instance(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        instance_id: &str,
    ) -> Result<Answer<Instance>, DcsError> {
        let spec = RequestSpec {
            method: "GET".into(),
            path: format!(
                "/v1.0/{}/instances/{}",
                signer::encode(project_id),
                signer::encode(instance_id)
            ),
            project_id: Some(project_id.to_string()),
            ..self.default_spec()
        };
        self.send_json(endpoint, credentials, spec).await
    }

    /// Every instance of a project through the v2 list (`offset`/`limit`), failed
    /// creations included, paged until a short page, de-duplicated by instance id.
    ///
    /// A page of exactly `page_size` items costs one more (empty) page: the API does
    /// not document whether `instance_num` is the total or the page size, and
    /// trusting the wrong one would drop instances.
    pub async fn list_instances(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        page_size: u32,
    ) -> Result<Answer<Vec<Instance>>, DcsError> {
        let mut instances = Vec::new();
        let listed = self
            .list_instances_with(endpoint, credentials, project_id, page_size, |instance| {
                instances.push(instance)
            })
            .await?;
        Ok(Answer {
            value: instances,
            request_id: listed.request_id,
            pages: listed.pages,
        })
    }

    /// Like [`Self::list_instances`], handing each instance to `sink` as its page
    /// arrives, so a caller with thousands need not hold them all at once.
    pub async fn list_instances_with(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        page_size: u32,
        mut sink: impl FnMut(Instance),
    ) -> Result<Answer<()>, DcsError> {
        let limit = page_size.clamp(1, MAX_LIST_PAGE);
        let mut seen = HashSet::new();
        let mut offset: u64 = 0;
        let mut request_id = None;
        let mut pages = 0;
        for _ in 0..MAX_LIST_PAGES {
            let spec = RequestSpec {
                method: "GET".into(),
                path: format!("/v2/{}/instances", signer::encode(project_id)),
                query: vec![
                    ("include_failure".into(), "true".into()),
                    ("limit".into(), limit.to_string()),
                    ("offset".into(), offset.to_string()),
                ],
                project_id: Some(project_id.to_string()),
                ..self.default_spec()
            };
            let page: Answer<InstanceList> = self.send_json(endpoint, credentials, spec).await?;
            pages += 1;
            request_id = page.request_id.or(request_id);
            let received = page.value.instances.len();
            let mut new = 0;
            for instance in page.value.instances {
                let Some(id) = instance.instance_id.clone() else {
                    continue;
                };
                if seen.insert(id) {
                    new += 1;
                    sink(instance);
                }
            }
            // A short page ends the listing; so does a page with nothing new, which a
            // server that ignores `offset` would send forever.
            if received < limit as usize || new == 0 {
                break;
            }
            offset += received as u64;
        }
        Ok(Answer {
            value: (),
            request_id,
            pages,
        })
    }

    fn default_spec(&self) -> RequestSpec {
        RequestSpec {
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("User-Agent".into(), self.config.user_agent.clone()),
            ],
            ..Default::default()
        }
    }

    /// Builds the request exactly as it goes on the wire: the URL carries the
    /// canonical query string as built (never a form encoding), and the signed
    /// headers carry what was signed.
    pub fn build_request(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        spec: &RequestSpec,
    ) -> Result<reqwest::Request, DcsError> {
        self.build_request_at(endpoint, credentials, spec, self.clock.now())
    }

    fn build_request_at(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        spec: &RequestSpec,
        at: DateTime<Utc>,
    ) -> Result<reqwest::Request, DcsError> {
        let invalid = |what: &str| DcsError::Transport {
            message: format!("could not build the request: {what}"),
            timeout: false,
        };
        let path = format!("{}{}", endpoint.path_prefix(), spec.path);
        let query = signer::canonical_query(&spec.query);
        let mut url_text = format!("{}{}", endpoint.as_str(), spec.path);
        if !query.is_empty() {
            url_text.push('?');
            url_text.push_str(&query);
        }
        let url = Url::parse(&url_text).map_err(|_| invalid("bad URL"))?;
        let method =
            Method::from_bytes(spec.method.as_bytes()).map_err(|_| invalid("bad method"))?;

        let mut headers = spec.headers.clone();
        if let Some(project_id) = &spec.project_id {
            headers.push(("X-Project-Id".into(), project_id.clone()));
        }
        let headers = match credentials {
            Credentials::AccessKey {
                access_key,
                secret_key,
                security_token,
            } => {
                if let Some(token) = security_token {
                    headers.push(("X-Security-Token".into(), token.expose().to_string()));
                }
                headers.push(("Host".into(), endpoint.host_header()));
                let (signed, _) = signer::sign(
                    access_key,
                    secret_key.expose(),
                    RequestParts {
                        method: &spec.method,
                        path: &path,
                        query: &spec.query,
                        headers: &headers,
                        body: &spec.body,
                    },
                    at,
                );
                signed
            }
            Credentials::Token(token) => {
                headers.push(("X-Auth-Token".into(), token.expose().to_string()));
                headers
            }
        };
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            // The HTTP stack writes Host from the URL, byte for byte what was signed.
            if name.eq_ignore_ascii_case("host") {
                continue;
            }
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("bad header name"))?;
            let mut value =
                HeaderValue::from_str(&value).map_err(|_| invalid("bad header value"))?;
            if matches!(
                name.as_str(),
                "authorization" | "x-security-token" | "x-auth-token"
            ) {
                value.set_sensitive(true);
            }
            header_map.append(name, value);
        }
        let mut request = reqwest::Request::new(method, url);
        *request.headers_mut() = header_map;
        if !spec.body.is_empty() {
            *request.body_mut() = Some(spec.body.clone().into());
        }
        Ok(request)
    }

    /// Sends a request and decodes a JSON answer, or classifies the failure.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        spec: RequestSpec,
    ) -> Result<Answer<T>, DcsError> {
        let request = self.build_request(endpoint, credentials, &spec)?;
        let response = self.http.execute(request).await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let request_id = header_text(response.headers(), "x-request-id");
        let retry_after = header_text(response.headers(), "retry-after")
            .and_then(|value| parse_retry_after(&value, self.clock.now()));
        let body = read_capped(response, self.config.max_body_bytes, &request_id).await?;
        if !(200..300).contains(&status) {
            let api = ApiError::from_body(status, &body, request_id);
            return Err(DcsError::from_response(api, retry_after));
        }
        let value = decode_json(&body).map_err(|message| DcsError::Decode {
            message,
            request_id: request_id.clone(),
        })?;
        Ok(Answer {
            value,
            request_id,
            pages: 1,
        })
    }
}

/// Decodes a successful answer, naming the field that failed.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the answer has an empty body".into());
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path.is_empty() {
            format!("{inner}")
        } else {
            format!("field {path}: {inner}")
        }
    })
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// `Retry-After` is either delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value.trim())
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    request_id: &Option<String>,
) -> Result<Vec<u8>, DcsError> {
    if response
        .content_length()
        .is_some_and(|length| length > cap as u64)
    {
        return Err(DcsError::Decode {
            message: format!("the answer is larger than the {cap}-byte limit"),
            request_id: request_id.clone(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > cap {
            return Err(DcsError::Decode {
                message: format!("the answer is larger than the {cap}-byte limit"),
                request_id: request_id.clone(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport_error(error: reqwest::Error) -> DcsError {
    let timeout = error.is_timeout();
    // The source chain says what actually happened (refused, reset, TLS).
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    DcsError::Transport { message, timeout }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let region = Endpoint::for_region("cn-north-4").unwrap();
        assert_eq!(region.as_str(), "https://dcs.cn-north-4.myhuaweicloud.com");
        assert!(Endpoint::for_region("cn north").is_err());
        assert!(Endpoint::for_region("evil.com/x").is_err());
        let sim = Endpoint::parse("http://127.0.0.1:8443/").unwrap();
        assert_eq!(sim.as_str(), "http://127.0.0.1:8443");
        assert_eq!(sim.host_header(), "127.0.0.1:8443");
        assert!(sim.is_loopback());
        assert!(Endpoint::parse("http://localhost:1").unwrap().is_loopback());
        assert!(Endpoint::parse("http://[::1]:1").unwrap().is_loopback());
        assert!(Endpoint::parse("http://127.9.9.9").unwrap().is_loopback());
        assert!(!Endpoint::parse("http://10.0.0.1").unwrap().is_loopback());
        assert!(
            !Endpoint::parse("http://localhost.evil.com")
                .unwrap()
                .is_loopback()
        );
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("https://u:p@x").is_err());
        assert!(Endpoint::parse("https://x/?a=b").is_err());
        assert!(Endpoint::parse("not a url").is_err());
        assert_eq!(
            Endpoint::parse("https://x.example:443/")
                .unwrap()
                .host_header(),
            "x.example"
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2024-01-15T08:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Mon, 15 Jan 2024 08:30:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn decode_names_the_field() {
        let err = decode_json::<Instance>(br#"{"port":"abc"}"#).unwrap_err();
        assert!(err.contains("port"), "{err}");
        assert!(decode_json::<Instance>(b"").unwrap_err().contains("empty"));
        assert!(decode_json::<Instance>(b"[1]").is_err());
    }
}
