//! The DCS API client: endpoints, signed requests on the wire, bounded answers,
//! typed errors. It never retries by itself: five failed signatures lock an access
//! key for five minutes, and retry policy belongs to the caller.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::bounded;
use super::credentials::Credentials;
use super::error::{ApiError, DcsError};
use super::model::Instance;
use super::signer::{self, RequestParts};
use crate::clock::SharedClock;

/// The v2 list API returns at most this many records a page.
pub const MAX_LIST_PAGE: u32 = 1000;
/// Stop paging after this many pages even if the server keeps answering full pages
/// (200 000 instances: far above any project's quota).
const MAX_LIST_PAGES: usize = 200;

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

    /// `scheme://host:port`, normalized: lower case (the URL parser does that), no
    /// trailing dot, the port always written. Two spellings of one server are one origin.
    pub fn origin(&self) -> String {
        let host = self
            .url
            .host_str()
            .unwrap_or_default()
            .trim_end_matches('.');
        let port = self.url.port_or_known_default().unwrap_or(0);
        format!("{}://{host}:{port}", self.url.scheme())
    }

    /// True for a Huawei Cloud DCS region host (`https://dcs.{region}.myhuaweicloud.com`,
    /// however spelled): every region shares one API gateway account per access key.
    pub fn is_region_host(&self) -> bool {
        let host = self
            .url
            .host_str()
            .unwrap_or_default()
            .trim_end_matches('.');
        let Some(region) = host
            .strip_prefix("dcs.")
            .and_then(|rest| rest.strip_suffix(".myhuaweicloud.com"))
        else {
            return false;
        };
        self.url.scheme() == "https"
            && self.url.port_or_known_default() == Some(443)
            && Self::for_region(region).is_ok()
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

/// The HTTP client every cloud call uses (DCS, IAM, STS): system roots plus the
/// configured extra roots with verification always on, the configured timeouts,
/// and no redirects (one would re-send a signature or a token to another URL).
pub(crate) fn http_client(config: &ClientConfig) -> Result<reqwest::Client, ClientBuildError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.timeout)
        .pool_idle_timeout(Duration::from_secs(90))
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
    builder
        .build()
        .map_err(|e| ClientBuildError::Http(e.to_string()))
}

impl DcsClient {
    pub fn new(config: ClientConfig, clock: SharedClock) -> Result<Self, ClientBuildError> {
        Ok(Self {
            http: http_client(&config)?,
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
    /// Items whose id is not a DCS instance id (a lower-case UUID) are skipped.
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
            .list_instances_with(
                endpoint,
                credentials,
                project_id,
                page_size,
                |_| true,
                |instance| instances.push(instance),
            )
            .await?;
        Ok(Answer {
            value: instances,
            request_id: listed.request_id,
            pages: listed.pages,
        })
    }

    /// Like [`Self::list_instances`], handing each instance whose id `wanted` accepts
    /// to `sink` as it is decoded. Nothing else is kept: a page is decoded item by
    /// item, items past the requested `limit` and ids nobody wants are dropped at
    /// once, so a hostile page of millions of `{}` costs its body and one item.
    pub async fn list_instances_with(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        project_id: &str,
        page_size: u32,
        wanted: impl Fn(&str) -> bool,
        mut sink: impl FnMut(Instance),
    ) -> Result<Answer<()>, DcsError> {
        let limit = page_size.clamp(1, MAX_LIST_PAGE);
        // Only ids handed to the sink are remembered (at most the caller's own).
        let mut seen = HashSet::new();
        let mut page_digests = HashSet::new();
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
            let (body, page_request_id) = self.send_raw(endpoint, credentials, spec).await?;
            pages += 1;
            request_id = page_request_id.clone().or(request_id);
            let mut page = PageReader {
                limit: limit as usize,
                received: 0,
                digest: std::hash::DefaultHasher::new(),
                on_item: &mut |instance: Instance| {
                    let Some(id) = instance.instance_id.as_deref() else {
                        return;
                    };
                    if bounded::is_instance_id(id) && wanted(id) && seen.insert(id.to_string()) {
                        sink(instance);
                    }
                },
            };
            decode_page(&body, &mut page).map_err(|message| DcsError::Decode {
                message,
                request_id: page_request_id,
            })?;
            let received = page.received;
            let digest = std::hash::Hasher::finish(&page.digest);
            drop(body);
            // A short page ends the listing; so does a page seen before, which a
            // server that ignores `offset` would send forever, and a page longer than
            // asked for, from a server that ignores `limit` (its offsets mean nothing).
            if received != limit as usize || !page_digests.insert(digest) {
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

    /// The headers every request carries (JSON Content-Type, the User-Agent).
    pub(crate) fn default_spec(&self) -> RequestSpec {
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
        let invalid = |what: &str| DcsError::Unsendable {
            message: what.to_string(),
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
        let (body, request_id) = self.send_raw(endpoint, credentials, spec).await?;
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

    /// Sends a request and returns a successful answer's body (at most
    /// `max_body_bytes`), or classifies the failure.
    pub(crate) async fn send_raw(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
        spec: RequestSpec,
    ) -> Result<(Vec<u8>, Option<String>), DcsError> {
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
        Ok((body, request_id))
    }
}

/// Ends the decoding of a page that holds more items than asked for.
const OVERLONG_PAGE: &str = "the page holds more items than the requested limit";

/// One list page as it is decoded: counts items, digests their ids, and hands each
/// to `on_item` without collecting them.
struct PageReader<'a> {
    limit: usize,
    received: usize,
    digest: std::hash::DefaultHasher,
    on_item: &'a mut dyn FnMut(Instance),
}

/// The `instances` array of a page, one item at a time.
struct Items<'p, 'a>(&'p mut PageReader<'a>);
impl<'de> Visitor<'de> for Items<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of instances")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(instance) = seq.next_element::<Instance>()? {
            self.0.received += 1;
            if self.0.received > self.0.limit {
                // More than asked for: the server ignores `limit`, the page is
                // the last one, and the rest is not even parsed.
                return Err(serde::de::Error::custom(OVERLONG_PAGE));
            }
            if let Some(id) = &instance.instance_id {
                std::hash::Hash::hash(id, &mut self.0.digest);
            }
            (self.0.on_item)(instance);
        }
        Ok(())
    }
}
impl<'de> DeserializeSeed<'de> for Items<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A whole list page: `instances`, and the rest skipped.
struct Page<'p, 'a>(&'p mut PageReader<'a>);
impl<'de> Visitor<'de> for Page<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list answer (an object with instances)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "instances" {
                map.next_value_seed(Items(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}
impl<'de> DeserializeSeed<'de> for Page<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// Decodes `{"instances": [...], ...}` item by item (other keys are skipped unbuilt).
fn decode_page(body: &[u8], page: &mut PageReader<'_>) -> Result<(), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the answer has an empty body".into());
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let result = Page(&mut *page).deserialize(serde_path_to_error::Deserializer::new(
        &mut json, &mut track,
    ));
    let result = result.and_then(|()| json.end());
    if page.received > page.limit {
        return Ok(());
    }
    result.map_err(|error| {
        let path = track.path().to_string();
        if path == "." || path.is_empty() {
            format!("{error}")
        } else {
            format!("field {path}: {error}")
        }
    })
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

/// The longest pause a Retry-After may ask for: an endpoint, hostile or broken,
/// must not be able to silence an access key for longer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// `Retry-After` is either delta-seconds or an HTTP date; either is clamped to
/// [0, [`MAX_RETRY_AFTER`]]. Anything else (negative, fractional, garbage) is
/// ignored. Never panics, whatever the value.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.len() > 64 {
        return None;
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: too many for a u64 still means "a very long time".
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    let wait = at
        .signed_duration_since(now)
        .to_std()
        .unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
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
        for same in [
            "https://dcs.cn-north-4.myhuaweicloud.com",
            "https://DCS.cn-north-4.MyHuaweiCloud.com.",
            "https://dcs.cn-north-4.myhuaweicloud.com:443/",
        ] {
            let endpoint = Endpoint::parse(same).unwrap();
            assert!(endpoint.is_region_host(), "{same}");
            assert_eq!(
                endpoint.origin(),
                "https://dcs.cn-north-4.myhuaweicloud.com:443"
            );
        }
        for other in [
            "https://dcs.cn-north-4.myhuaweicloud.com:8443",
            "http://dcs.cn-north-4.myhuaweicloud.com",
            "https://dcs.cn-north-4.myhuaweicloud.com.evil.example",
            "https://evil.myhuaweicloud.com",
            "https://dcs.x_y.myhuaweicloud.com",
        ] {
            assert!(!Endpoint::parse(other).unwrap().is_region_host(), "{other}");
        }
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8443/x").unwrap().origin(),
            "http://127.0.0.1:8443"
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
        let max = Some(MAX_RETRY_AFTER);
        assert_eq!(parse_retry_after("9999999999999", now), max);
        assert_eq!(parse_retry_after(&"9".repeat(40), now), max);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT", now), max);
        assert_eq!(
            parse_retry_after("Mon, 15 Jan 2001 08:30:10 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn decode_names_the_field() {
        let err = decode_json::<Instance>(br#"{"port":"abc"}"#).unwrap_err();
        assert!(err.contains("port"), "{err}");
        assert!(decode_json::<Instance>(b"").unwrap_err().contains("empty"));
        assert!(decode_json::<Instance>(b"[1]").is_err());
    }
}
