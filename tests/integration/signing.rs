//! The 23 SDK-HMAC-SHA256 vectors made by the official Huawei Cloud SDK signer:
//! the signer reproduces each byte for byte, the client puts each vector's URL on
//! the wire, and the verifier accepts each request and refuses any one-byte change.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use dcs_operator::clock::ManualClock;
use dcs_operator::dcs::client::RequestSpec;
use dcs_operator::dcs::signer::{self, RequestParts, VerifyError};
use dcs_operator::dcs::{ClientConfig, Credentials, DcsClient, Endpoint, SecretString};
use serde_json::Value;

struct Vector {
    name: String,
    method: String,
    scheme: String,
    host: String,
    path: String,
    query: Vec<(String, String)>,
    url: String,
    headers_in: Vec<(String, String)>,
    body: Vec<u8>,
    ak: String,
    sk: String,
    project_id: Option<String>,
    security_token: Option<String>,
    date: String,
    canonical_request: String,
    string_to_sign: String,
    signature: String,
    authorization: String,
    headers_out: Vec<(String, String)>,
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

fn headers(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// The headers the caller set before signing: `headers_in`, plus those the SDK
/// client itself adds (its User-Agent, in the captured wire vector) that the
/// signer does not.
fn caller_headers(v: &Value) -> Vec<(String, String)> {
    const SIGNER_ADDED: [&str; 6] = [
        "x-sdk-date",
        "authorization",
        "host",
        "x-project-id",
        "x-security-token",
        "x-sdk-content-sha256",
    ];
    let mut caller = headers(&v["headers_in"]);
    for (name, value) in headers(&v["headers_out"]) {
        let lower = name.to_ascii_lowercase();
        if !SIGNER_ADDED.contains(&lower.as_str())
            && !caller.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            caller.push((name, value));
        }
    }
    caller
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("../fixtures/signing-vectors.json");
    let root: Value = serde_json::from_str(text).unwrap();
    let text_of = |v: &Value, key: &str| v[key].as_str().unwrap().to_string();
    root["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let mut query = Vec::new();
            for pair in v["query"].as_array().unwrap() {
                let key = scalar(&pair[0]);
                match &pair[1] {
                    Value::Array(items) => {
                        query.extend(items.iter().map(|i| (key.clone(), scalar(i))))
                    }
                    other => query.push((key, scalar(other))),
                }
            }
            Vector {
                name: text_of(v, "name"),
                method: text_of(v, "method"),
                scheme: text_of(v, "scheme"),
                host: text_of(v, "host"),
                path: text_of(v, "path"),
                query,
                url: text_of(v, "url"),
                headers_in: caller_headers(v),
                body: v["body"].as_str().unwrap_or("").as_bytes().to_vec(),
                ak: text_of(v, "ak"),
                sk: text_of(v, "sk"),
                project_id: v["project_id"].as_str().map(str::to_string),
                security_token: v["security_token"].as_str().map(str::to_string),
                date: text_of(v, "x_sdk_date"),
                canonical_request: text_of(v, "canonical_request"),
                string_to_sign: text_of(v, "string_to_sign"),
                signature: text_of(v, "signature"),
                authorization: text_of(v, "authorization"),
                headers_out: headers(&v["headers_out"]),
            }
        })
        .collect()
}

/// The headers the SDK hands to its signer: the caller's, then X-Project-Id,
/// X-Security-Token and Host.
fn signer_input_headers(v: &Vector) -> Vec<(String, String)> {
    let mut headers = v.headers_in.clone();
    if let Some(project) = &v.project_id {
        headers.push(("X-Project-Id".into(), project.clone()));
    }
    if let Some(token) = &v.security_token {
        headers.push(("X-Security-Token".into(), token.clone()));
    }
    headers.push(("Host".into(), v.host.clone()));
    headers
}

#[test]
fn there_are_23_vectors() {
    assert_eq!(vectors().len(), 23);
}

#[test]
fn signer_reproduces_every_vector_byte_for_byte() {
    for v in vectors() {
        let at = signer::parse_date(&v.date).unwrap();
        let (out, signed) = signer::sign(
            &v.ak,
            &v.sk,
            RequestParts {
                method: &v.method,
                path: &v.path,
                query: &v.query,
                headers: &signer_input_headers(&v),
                body: &v.body,
            },
            at,
        );
        assert_eq!(
            signed.canonical.canonical_request, v.canonical_request,
            "{}",
            v.name
        );
        assert_eq!(
            signed.canonical.string_to_sign, v.string_to_sign,
            "{}",
            v.name
        );
        assert_eq!(signed.signature, v.signature, "{}", v.name);
        assert_eq!(signed.authorization, v.authorization, "{}", v.name);
        // Every header the SDK sets, with the value it sets.
        for (name, value) in &v.headers_out {
            let ours = out
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .unwrap_or_else(|| panic!("{}: header {name} missing", v.name));
            assert_eq!(&ours.1, value, "{}: header {name}", v.name);
        }
    }
}

#[test]
fn client_puts_each_vector_on_the_wire() {
    for v in vectors() {
        let at = signer::parse_date(&v.date).unwrap();
        let clock = ManualClock::new(at);
        let client = DcsClient::new(ClientConfig::default(), Arc::new(clock)).unwrap();
        let endpoint = Endpoint::parse(&format!("{}://{}", v.scheme, v.host)).unwrap();
        let credentials = Credentials::access_key(
            v.ak.clone(),
            v.sk.clone(),
            v.security_token.clone().map(SecretString::new),
        );
        let spec = RequestSpec {
            method: v.method.clone(),
            path: v.path.clone(),
            query: v.query.clone(),
            headers: v.headers_in.clone(),
            body: v.body.clone(),
            project_id: v.project_id.clone(),
        };
        let request = client
            .build_request(&endpoint, &credentials, &spec)
            .unwrap();
        assert_eq!(request.url().as_str(), v.url, "{}", v.name);
        assert_eq!(request.method().as_str(), v.method, "{}", v.name);
        for (name, value) in &v.headers_out {
            if name.eq_ignore_ascii_case("host") {
                // The HTTP stack writes Host from the URL; the URL matched above.
                continue;
            }
            let sent = request
                .headers()
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{}: header {name} not sent", v.name));
            assert_eq!(sent.to_str().unwrap(), value, "{}: header {name}", v.name);
        }
        let body = request.body().and_then(|b| b.as_bytes()).unwrap_or(b"");
        assert_eq!(body, v.body.as_slice(), "{}", v.name);
    }
}

/// A request as the server receives it: the path and query from the URL as sent.
struct Wire {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    fn from_vector(v: &Vector) -> Wire {
        let after_host = &v.url[v.url.find(&v.host).unwrap() + v.host.len()..];
        let (path, query) = after_host.split_once('?').unwrap_or((after_host, ""));
        Wire {
            method: v.method.clone(),
            path: path.to_string(),
            query: query.to_string(),
            headers: v.headers_out.clone(),
            body: v.body.clone(),
        }
    }

    fn verify(&self, v: &Vector, now: chrono::DateTime<Utc>) -> Result<String, VerifyError> {
        let query = signer::parse_query(&self.query);
        let (ak, sk) = (v.ak.clone(), v.sk.clone());
        signer::verify(
            RequestParts {
                method: &self.method,
                path: &self.path,
                query: &query,
                headers: &self.headers,
                body: &self.body,
            },
            move |key| (key == ak).then_some(sk),
            now,
        )
    }
}

/// Every variant of `text` with one alphanumeric byte replaced by another.
fn one_byte_changes(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    (0..bytes.len())
        .filter(|&i| bytes[i].is_ascii_alphanumeric())
        .map(|i| {
            let mut changed = bytes.to_vec();
            changed[i] = match bytes[i] {
                b'z' => b'a',
                b'Z' => b'A',
                b'9' => b'0',
                other => other + 1,
            };
            String::from_utf8(changed).unwrap()
        })
        .collect()
}

#[test]
fn verifier_accepts_every_vector() {
    for v in vectors() {
        let now = signer::parse_date(&v.date).unwrap();
        assert_eq!(
            Wire::from_vector(&v).verify(&v, now),
            Ok(v.ak.clone()),
            "{}",
            v.name
        );
    }
}

#[test]
fn verifier_refuses_any_one_byte_change() {
    let mut checked = 0usize;
    for v in vectors() {
        let now = signer::parse_date(&v.date).unwrap();
        let wire = Wire::from_vector(&v);
        let refuse = |changed: Wire, what: &str| {
            assert!(
                changed.verify(&v, now).is_err(),
                "{}: change of {what} accepted",
                v.name
            );
        };
        refuse(
            Wire {
                method: if v.method == "GET" {
                    "PUT".into()
                } else {
                    "GET".into()
                },
                ..Wire::from_vector(&v)
            },
            "method",
        );
        for path in one_byte_changes(&wire.path) {
            refuse(
                Wire {
                    path,
                    ..Wire::from_vector(&v)
                },
                "path",
            );
            checked += 1;
        }
        for query in one_byte_changes(&wire.query) {
            refuse(
                Wire {
                    query,
                    ..Wire::from_vector(&v)
                },
                "query",
            );
            checked += 1;
        }
        let signed: Vec<String> = v
            .authorization
            .split("SignedHeaders=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .split(';')
            .map(str::to_string)
            .collect();
        for (index, (name, value)) in wire.headers.iter().enumerate() {
            if name.eq_ignore_ascii_case("authorization") {
                let signature_at = value.find("Signature=").unwrap() + "Signature=".len();
                for changed in one_byte_changes(&value[signature_at..]) {
                    let mut headers = wire.headers.clone();
                    headers[index].1 = format!("{}{changed}", &value[..signature_at]);
                    refuse(
                        Wire {
                            headers,
                            ..Wire::from_vector(&v)
                        },
                        "signature",
                    );
                    checked += 1;
                }
                continue;
            }
            if !signed.contains(&name.to_ascii_lowercase()) {
                continue;
            }
            for changed in one_byte_changes(value) {
                let mut headers = wire.headers.clone();
                headers[index].1 = changed;
                refuse(
                    Wire {
                        headers,
                        ..Wire::from_vector(&v)
                    },
                    name,
                );
                checked += 1;
            }
        }
        // A body signed as UNSIGNED-PAYLOAD is, by the algorithm's design, not covered.
        let payload_signed = !v.canonical_request.ends_with("UNSIGNED-PAYLOAD");
        if payload_signed && !v.body.is_empty() {
            for body in one_byte_changes(std::str::from_utf8(&v.body).unwrap()) {
                refuse(
                    Wire {
                        body: body.into_bytes(),
                        ..Wire::from_vector(&v)
                    },
                    "body",
                );
                checked += 1;
            }
        }
        if payload_signed {
            let mut body = v.body.clone();
            body.push(b' ');
            refuse(
                Wire {
                    body,
                    ..Wire::from_vector(&v)
                },
                "appended body byte",
            );
        }
    }
    assert!(checked > 2000, "only {checked} changes checked");
}

#[test]
fn verifier_refuses_a_date_16_minutes_off_and_accepts_14() {
    for v in vectors() {
        let at = signer::parse_date(&v.date).unwrap();
        let wire = Wire::from_vector(&v);
        for minutes in [16, -16] {
            assert_eq!(
                wire.verify(&v, at + TimeDelta::minutes(minutes)),
                Err(VerifyError::DateSkew),
                "{}",
                v.name
            );
        }
        for minutes in [14, -14] {
            assert!(
                wire.verify(&v, at + TimeDelta::minutes(minutes)).is_ok(),
                "{}",
                v.name
            );
        }
    }
}

#[test]
fn verifier_checks_only_the_named_headers() {
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "header_canonicalization")
        .unwrap();
    let now = signer::parse_date(&v.date).unwrap();
    let mut wire = Wire::from_vector(&v);
    // Unsigned header (has '_'), and a header added in transit: both ignored.
    for (name, value) in wire.headers.iter_mut() {
        if name == "X_Underscore_Header" {
            *value = "changed in transit".into();
        }
    }
    wire.headers.push(("Accept-Encoding".into(), "gzip".into()));
    assert!(wire.verify(&v, now).is_ok());
    // A wrong secret key for the same access key is a mismatch, not a success.
    let wrong = Vector {
        sk: "not-the-key".into(),
        ..v
    };
    assert_eq!(
        wire.verify(&wrong, now),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn form_encoded_space_breaks_the_signature() {
    // reqwest's .query() would send `+` for a space; the gateway reads `+` literally.
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "list_instances_v2_space_in_value")
        .unwrap();
    let now = signer::parse_date(&v.date).unwrap();
    let mut wire = Wire::from_vector(&v);
    assert!(wire.query.contains("%20"));
    wire.query = wire.query.replace("%20", "+");
    assert_eq!(wire.verify(&v, now), Err(VerifyError::SignatureMismatch));
}
