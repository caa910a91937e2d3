//! Keyless credentials end to end over loopback HTTP, on the simulator's injected
//! clock: the operator's `IamClient` against the simulated IAM, STS and Pod Identity,
//! and the temporary keys they issue against the simulated DCS gateway. ID tokens are
//! signed with the test key of `tests/fixtures/iam/` (test-only), which the simulator
//! trusts through its JWKS.

use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use dcs_operator::dcs::iam::{AssumeAgency, IamClient, IamError, test_tokens};
use dcs_operator::dcs::sim::iam::POD_IDENTITY_PATH;
use dcs_operator::dcs::sim::{
    AgencyConfig, Fault, FaultKind, IdentityConfig, IdpConfig, OidcProviderConfig,
    PodIdentityToken, SimConfig,
};
use dcs_operator::dcs::{ClientConfig, Credentials, DcsError, Endpoint, SecretString};
use serde_json::{Value, json};

use crate::sim_support::{Harness, PROJECT, code, example_instances, start_with};

const INSTANCE: &str = "3f7a1c2e-5b8d-4e6f-9a0b-1c2d3e4f5a6b";
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const AUDIENCE: &str = "dcs-operator";
const IDP: &str = "sim-idp";
const PROVIDER: &str = "iam::0123456789:oidc-provider:cluster";
const AGENCY: &str = "iam::0123456789:agency:tenant-a";
const POD_TOKEN: &str = "pod-identity-token-1";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/iam")
        .join(name)
}

fn jwks() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("jwks.json")).unwrap()).unwrap()
}

fn subject(namespace: &str) -> String {
    format!("system:serviceaccount:{namespace}:cache")
}

fn identity() -> IdentityConfig {
    IdentityConfig {
        jwks: Some(jwks()),
        idps: vec![IdpConfig {
            id: IDP.into(),
            issuer: ISSUER.into(),
            client_id: AUDIENCE.into(),
            subjects: vec![subject("tenant-a")],
        }],
        oidc_providers: vec![OidcProviderConfig {
            provider_urn: PROVIDER.into(),
            issuer: ISSUER.into(),
            client_ids: vec!["other-client".into(), AUDIENCE.into()],
            agencies: vec![AgencyConfig {
                agency_urn: AGENCY.into(),
                subjects: vec![subject("tenant-a")],
                max_duration_seconds: 7200,
            }],
        }],
        pod_identity: vec![PodIdentityToken::new(POD_TOKEN)],
        ..Default::default()
    }
}

struct Iam {
    h: Harness,
    iam: IamClient,
    pem: Vec<u8>,
}

async fn start_identity(identity: IdentityConfig) -> Iam {
    let config = SimConfig {
        identity,
        instances: example_instances(),
        ..SimConfig::with_default_keys()
    };
    let h = start_with(config, ClientConfig::default()).await;
    Iam {
        h,
        iam: IamClient::new(&ClientConfig::default()).unwrap(),
        pem: std::fs::read(fixture("test-key.pem")).unwrap(),
    }
}

async fn start() -> Iam {
    start_identity(identity()).await
}

impl Iam {
    fn now(&self) -> DateTime<Utc> {
        self.h.sim.state().now()
    }

    fn endpoint(&self) -> Endpoint {
        self.h.sim.endpoint()
    }

    /// A tenant-a ServiceAccount token issued now (sim clock), valid 600 s, changed by `edit`.
    fn jwt(&self, edit: impl FnOnce(&mut Value)) -> SecretString {
        let mut claims = test_tokens::service_account_claims(
            ISSUER,
            AUDIENCE,
            "tenant-a",
            "cache",
            self.now(),
            600,
        );
        edit(&mut claims);
        SecretString::new(test_tokens::sign_test_jwt(
            &claims,
            &self.pem,
            test_tokens::TEST_KEY_ID,
        ))
    }

    async fn show(&self, creds: &Credentials) -> Result<Value, DcsError> {
        self.h
            .get_as(creds, &format!("/v1.0/{PROJECT}/instances/{INSTANCE}"), &[])
            .await
    }

    async fn federated(&self, token: &SecretString) -> Result<SecretString, IamError> {
        self.iam
            .federated_token(&self.endpoint(), IDP, token)
            .await
            .map(|(token, _)| token)
    }

    async fn assume(
        &self,
        token: &SecretString,
        duration_seconds: u32,
    ) -> Result<Credentials, IamError> {
        self.assume_as(AGENCY, token, duration_seconds)
            .await
            .map(|creds| creds.credentials())
    }

    async fn assume_as(
        &self,
        agency_urn: &str,
        token: &SecretString,
        duration_seconds: u32,
    ) -> Result<dcs_operator::dcs::TemporaryCredentials, IamError> {
        let request = AssumeAgency {
            provider_urn: PROVIDER,
            agency_urn,
            session_name: "dcs-op-tenant-a",
            id_token: token,
            duration_seconds,
        };
        self.iam
            .assume_agency_with_oidc(&self.endpoint(), &request)
            .await
    }

    fn counts(&self, label: &str) -> (u64, u64) {
        let counters = self.h.sim.state().counters();
        (counters.requests_for(label), counters.applied_for(label))
    }

    /// A raw POST to the simulator (for what the client refuses to send).
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.h.sim.base_url()))
            .header("content-type", "application/json;charset=UTF-8")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn refused(error: &IamError) -> (u16, &str) {
    match error {
        IamError::Refused { status, code, .. } => (*status, code.as_deref().unwrap_or("")),
        other => panic!("not a refusal: {other:?}"),
    }
}

fn assert_unauthorized(result: Result<Value, DcsError>, detail: &str) {
    let error = result.expect_err("the gateway must refuse");
    assert_eq!(code(&error), Some("APIG.0301"), "{error:?}");
    let message = error
        .api()
        .and_then(|api| api.error_msg.clone())
        .unwrap_or_default();
    assert!(message.contains(detail), "{message:?} lacks {detail:?}");
}

fn close(at: DateTime<Utc>, expected: DateTime<Utc>) -> bool {
    (at - expected).num_seconds().abs() <= 1
}

#[tokio::test]
async fn iam_federated_flow_signs_dcs_calls_until_expiry() {
    let t = start().await;
    let now = t.now();
    let (token, expires_at) = t
        .iam
        .federated_token(&t.endpoint(), IDP, &t.jwt(|_| {}))
        .await
        .unwrap();
    assert!(
        close(expires_at, now + TimeDelta::hours(24)),
        "{expires_at}"
    );
    let temporary = t
        .iam
        .temporary_credentials(&t.endpoint(), &token, 3600)
        .await
        .unwrap();
    assert!(close(temporary.expires_at, now + TimeDelta::hours(1)));
    assert_eq!(temporary.access_key.len(), 20);
    assert!(!format!("{temporary:?}").contains(temporary.secret_key.expose()));
    let creds = temporary.credentials();
    let shown = t.show(&creds).await.unwrap();
    assert_eq!(shown["instance_id"], INSTANCE);

    // The pair alone, without its security token: refused.
    let bare = Credentials::access_key(
        temporary.access_key.clone(),
        temporary.secret_key.clone(),
        None,
    );
    assert_unauthorized(t.show(&bare).await, "X-Security-Token");
    // Another key's security token: refused.
    let other = t
        .iam
        .temporary_credentials(&t.endpoint(), &token, 900)
        .await
        .unwrap();
    let mixed = Credentials::access_key(
        temporary.access_key.clone(),
        temporary.secret_key.clone(),
        Some(other.security_token.clone()),
    );
    assert_unauthorized(t.show(&mixed).await, "does not belong");
    // The right token, sent but not signed: refused.
    let spec = dcs_operator::dcs::client::RequestSpec {
        method: "GET".into(),
        path: format!("/v1.0/{PROJECT}/instances/{INSTANCE}"),
        project_id: Some(PROJECT.into()),
        ..Default::default()
    };
    let mut request =
        t.h.client
            .build_request(&t.endpoint(), &bare, &spec)
            .unwrap();
    request.headers_mut().insert(
        "x-security-token",
        temporary.security_token.expose().parse().unwrap(),
    );
    let response = reqwest::Client::new().execute(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error_msg"]
            .as_str()
            .unwrap()
            .contains("signed headers"),
        "{body}"
    );

    // Good until the last second, refused from the expiry on (the injected clock).
    t.h.clock.advance(TimeDelta::seconds(3599));
    t.show(&creds).await.unwrap();
    t.h.clock.advance(TimeDelta::seconds(1));
    assert_unauthorized(t.show(&creds).await, "expired");
    // The shorter-lived pair expired earlier.
    assert_unauthorized(t.show(&other.credentials()).await, "expired");
    // The simulator's own permanent keys still work.
    t.show(&t.h.creds).await.unwrap();

    assert_eq!(t.counts("iam_id_token"), (1, 1));
    assert_eq!(t.counts("iam_security_tokens"), (2, 2));
    assert_eq!(t.h.sim.state().identity_counts(), (1, 2));
    t.h.sim.shutdown().await;
}

#[tokio::test]
async fn iam_id_token_refusals_carry_the_simulators_codes() {
    let t = start().await;
    let now = t.now().timestamp();
    let good = t.jwt(|_| {});
    let other_sub = t.jwt(|c| c["sub"] = json!("system:serviceaccount:tenant-a:other"));
    let cases: Vec<(&str, SecretString, u16, &str)> = vec![
        (
            "wrongly signed",
            SecretString::new(test_tokens::with_signature_of(
                good.expose(),
                other_sub.expose(),
            )),
            401,
            "IAM.IdTokenSignatureInvalid",
        ),
        (
            "wrong aud",
            t.jwt(|c| c["aud"] = json!(["kubernetes.default.svc"])),
            401,
            "IAM.IdTokenAudienceMismatch",
        ),
        (
            "expired exp",
            t.jwt(|c| c["exp"] = json!(now - 1)),
            401,
            "IAM.IdTokenExpired",
        ),
        (
            "sub outside the mapping",
            t.jwt(|c| c["sub"] = json!(subject("tenant-b"))),
            401,
            "IAM.IdTokenSubjectNotMapped",
        ),
        (
            "wrong iss",
            t.jwt(|c| c["iss"] = json!("https://attacker.example")),
            401,
            "IAM.IdTokenIssuerMismatch",
        ),
    ];
    for (what, token, status, expected) in &cases {
        let error = t.federated(token).await.expect_err(what);
        assert_eq!(refused(&error), (*status, *expected), "{what}: {error:?}");
        assert_eq!(error.reason(), "IamRefused");
        let shown = format!("{error} {error:?} {}", error.code_and_message());
        assert!(!shown.contains(token.expose()), "{what}: {shown}");
        assert!(shown.contains(expected), "{what}: {shown}");
    }
    let error = t
        .iam
        .federated_token(&t.endpoint(), "no-such-idp", &good)
        .await
        .unwrap_err();
    assert_eq!(refused(&error), (400, "IAM.IdpNotFound"));
    // A token valid now is refused once the simulator's clock passes its exp.
    t.h.clock.advance(TimeDelta::seconds(600));
    let error = t.federated(&good).await.unwrap_err();
    assert_eq!(refused(&error), (401, "IAM.IdTokenExpired"));
    assert_eq!(t.counts("iam_id_token"), (cases.len() as u64 + 2, 0));
    t.h.sim.shutdown().await;
}

#[tokio::test]
async fn iam_federated_token_lasts_a_day_and_unknown_tokens_are_refused() {
    let t = start().await;
    let token = t.federated(&t.jwt(|_| {})).await.unwrap();
    let error = t
        .iam
        .temporary_credentials(&t.endpoint(), &SecretString::new("MIIforged"), 900)
        .await
        .unwrap_err();
    assert_eq!(refused(&error), (401, "IAM.TokenInvalid"));
    assert!(!error.code_and_message().contains("MIIforged"));
    t.h.clock
        .advance(TimeDelta::hours(24) - TimeDelta::seconds(1));
    t.iam
        .temporary_credentials(&t.endpoint(), &token, 900)
        .await
        .unwrap();
    t.h.clock.advance(TimeDelta::seconds(1));
    let error = t
        .iam
        .temporary_credentials(&t.endpoint(), &token, 900)
        .await
        .unwrap_err();
    assert_eq!(refused(&error), (401, "IAM.TokenExpired"));
    assert_eq!(t.counts("iam_security_tokens"), (3, 1));
    t.h.sim.shutdown().await;
}

#[tokio::test]
async fn iam_durations_out_of_range_are_refused() {
    let t = start().await;
    let token = t.federated(&t.jwt(|_| {})).await.unwrap();
    // The client never sends what the limits refuse…
    for duration in [0, 899, 86_401] {
        let error = t
            .iam
            .temporary_credentials(&t.endpoint(), &token, duration)
            .await
            .unwrap_err();
        assert!(matches!(error, IamError::Unsendable { .. }), "{error:?}");
    }
    let error = t.assume(&t.jwt(|_| {}), 43_201).await.unwrap_err();
    assert!(matches!(error, IamError::Unsendable { .. }), "{error:?}");
    assert_eq!(t.counts("iam_security_tokens").0, 0);
    assert_eq!(t.counts("sts_assume_oidc").0, 0);
    // …and the simulator refuses it anyway.
    let body = |duration: Value| json!({"auth": {"identity": {"methods": ["token"], "token": {"id": token.expose(), "duration_seconds": duration}}}});
    for duration in [json!(100), json!(86_401), json!("3600"), json!(-5)] {
        let (status, answer) = t
            .post(
                "/v3.0/OS-CREDENTIAL/securitytokens",
                &[],
                &body(duration.clone()),
            )
            .await;
        assert_eq!(status, 400, "{duration}: {answer}");
        assert_eq!(answer["error"]["code"], "IAM.DurationOutOfRange");
    }
    // Without a duration: 900 s; the token in the body alone is enough.
    let (status, answer) = t
        .post(
            "/v3.0/OS-CREDENTIAL/securitytokens",
            &[],
            &json!({"auth": {"identity": {"methods": ["token"], "token": {"id": token.expose()}}}}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let expires: DateTime<Utc> = answer["credential"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(close(expires, t.now() + TimeDelta::seconds(900)));
    // The agency allows at most 7200 s; the STS default is 3600 s.
    let error = t.assume(&t.jwt(|_| {}), 7201).await.unwrap_err();
    assert_eq!(refused(&error), (400, "STS.DurationOutOfRange"));
    t.assume(&t.jwt(|_| {}), 7200).await.unwrap();
    let (status, answer) = t
        .post(
            "/v5/agencies/assume-with-oidc",
            &[],
            &json!({"provider_urn": PROVIDER, "agency_urn": AGENCY, "agency_session_name": "s1", "id_token": t.jwt(|_| {}).expose()}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let expires: DateTime<Utc> = answer["credentials"]["expiration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(close(expires, t.now() + TimeDelta::seconds(3600)));
    t.h.sim.shutdown().await;
}

#[tokio::test]
async fn iam_assume_agency_with_oidc_gives_working_credentials() {
    let t = start().await;
    let now = t.now();
    let temporary = t.assume_as(AGENCY, &t.jwt(|_| {}), 3600).await.unwrap();
    assert!(close(temporary.expires_at, now + TimeDelta::hours(1)));
    let creds = temporary.credentials();
    t.show(&creds).await.unwrap();
    t.h.clock.advance(TimeDelta::hours(1));
    assert_unauthorized(t.show(&creds).await, "expired");

    // Refusals, in STS's error shape.
    let error = t
        .assume(&t.jwt(|c| c["sub"] = json!(subject("tenant-b"))), 3600)
        .await
        .unwrap_err();
    assert_eq!(refused(&error), (403, "STS.IdTokenSubjectNotAllowed"));
    let error = t
        .assume(&t.jwt(|c| c["aud"] = json!("someone-else")), 3600)
        .await
        .unwrap_err();
    assert_eq!(refused(&error), (401, "STS.IdTokenAudienceMismatch"));
    let error = t
        .assume(&t.jwt(|c| c["exp"] = json!(0)), 3600)
        .await
        .unwrap_err();
    assert_eq!(refused(&error), (401, "STS.IdTokenExpired"));
    let error = t
        .assume_as("iam::0123456789:agency:tenant-b", &t.jwt(|_| {}), 3600)
        .await
        .unwrap_err();
    assert_eq!(refused(&error), (400, "STS.AgencyNotFound"));
    assert_eq!(t.counts("sts_assume_oidc"), (5, 1));
    t.h.sim.shutdown().await;
}

#[tokio::test]
async fn iam_pod_identity_gives_working_credentials() {
    let t = start().await;
    let uri = format!("{}{POD_IDENTITY_PATH}", t.h.sim.base_url());
    // A token file's trailing newline is not sent.
    let temporary = t
        .iam
        .pod_identity(&uri, &SecretString::new(format!("{POD_TOKEN}\n")))
        .await
        .unwrap();
    assert!(close(temporary.expires_at, t.now() + TimeDelta::hours(1)));
    t.show(&temporary.credentials()).await.unwrap();
    let error = t
        .iam
        .pod_identity(&uri, &SecretString::new("wrong-token"))
        .await
        .unwrap_err();
    assert_eq!(refused(&error), (401, "CCE.PodIdentityUnauthorized"));
    assert!(!error.code_and_message().contains("wrong-token"));
    assert_eq!(t.counts("pod_identity"), (2, 1));
    // Other methods on the agent's path are not routes.
    let response = reqwest::get(&uri).await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    t.h.sim.shutdown().await;
}

#[tokio::test]
async fn iam_jwks_set_at_run_time_and_admin_view() {
    let mut config = identity();
    config.jwks = None;
    let t = start_identity(config).await;
    let token = t.jwt(|_| {});
    let error = t.federated(&token).await.unwrap_err();
    assert_eq!(refused(&error), (401, "IAM.IdTokenSignatureInvalid"));
    let admin = reqwest::Client::new();
    let url = format!("{}/_sim/identity/jwks", t.h.sim.base_url());
    let response = admin.put(&url).body("{\"keys\": []}").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = admin
        .put(&url)
        .body(jwks().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["keys"], 1);
    t.federated(&token).await.unwrap();
    let view: Value = admin
        .get(format!("{}/_sim/identity", t.h.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["jwks_keys"], json!(["test-key-1"]));
    assert_eq!(view["federated_tokens"], 1);
    assert_eq!(view["pod_identity_tokens"], 1);
    assert!(!view.to_string().contains(POD_TOKEN));
    // In-process, as demo mode does it.
    assert!(t.h.sim.state().set_jwks(&json!({"keys": "x"})).is_err());
    assert_eq!(t.h.sim.state().set_jwks(&jwks()).unwrap(), 1);
    t.h.sim.shutdown().await;
}

#[tokio::test]
async fn iam_faults_hit_identity_routes() {
    let t = start().await;
    let state = t.h.sim.state();
    state.inject_fault(
        Fault::times(
            FaultKind::Status {
                status: 503,
                error_code: "IAM.0503".into(),
                error_msg: "busy".into(),
                retry_after: None,
            },
            1,
        )
        .on_route("iam_id_token"),
    );
    let error = t.federated(&t.jwt(|_| {})).await.unwrap_err();
    assert_eq!(refused(&error), (503, "IAM.0503"));
    assert_eq!(error.reason(), "IamUnavailable");
    let token = t.federated(&t.jwt(|_| {})).await.unwrap();
    state.inject_fault(Fault::times(FaultKind::Malformed, 1).on_route("iam_security_tokens"));
    let error = t
        .iam
        .temporary_credentials(&t.endpoint(), &token, 900)
        .await
        .unwrap_err();
    assert!(matches!(error, IamError::Decode { .. }), "{error:?}");
    state.inject_fault(Fault::times(FaultKind::Reset, 1).on_route("sts_assume_oidc"));
    let error = t.assume(&t.jwt(|_| {}), 3600).await.unwrap_err();
    assert!(
        matches!(error, IamError::Transport { .. } | IamError::Decode { .. }),
        "{error:?}"
    );
    assert!(
        Fault::times(FaultKind::ApplyThenDrop, 1)
            .on_route("pod_identity")
            .validate()
            .is_err()
    );
    assert_eq!(state.counters().faults_injected, 3);
    t.h.sim.shutdown().await;
}

/// An IAM endpoint that misbehaves in one way per path.
async fn hostile_iam() -> (Endpoint, tokio::task::JoinHandle<()>) {
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::post;

    async fn huge() -> impl IntoResponse {
        (StatusCode::CREATED, "x".repeat(1 << 20))
    }
    async fn no_subject_token() -> impl IntoResponse {
        (
            StatusCode::CREATED,
            r#"{"token":{"expires_at":"2030-01-01T00:00:00Z"}}"#,
        )
    }
    async fn redirect() -> impl IntoResponse {
        (
            StatusCode::FOUND,
            [("location", "http://127.0.0.1:9/steal")],
            "",
        )
    }
    async fn echo(headers: HeaderMap, body: String) -> impl IntoResponse {
        let auth = headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (
            StatusCode::UNAUTHORIZED,
            [("x-iam-trace-id", format!("trace {auth}"))],
            json!({"error": {"code": "IAM.0001", "message": format!("bad request {body} {auth}"), "title": "Unauthorized"}})
                .to_string(),
        )
    }
    async fn wrong_types() -> impl IntoResponse {
        (
            StatusCode::CREATED,
            r#"{"credential":{"access":["A"],"secret":{"s":1},"securitytoken":7,"expires_at":true}}"#,
        )
    }
    let router = Router::new()
        .route("/huge/v3.0/OS-CREDENTIAL/securitytokens", post(huge))
        .route(
            "/nosubject/v3.0/OS-AUTH/id-token/tokens",
            post(no_subject_token),
        )
        .route("/redirect/v3.0/OS-AUTH/id-token/tokens", post(redirect))
        .route("/echo/v3.0/OS-AUTH/id-token/tokens", post(echo))
        .route("/echo/v3.0/OS-CREDENTIAL/securitytokens", post(echo))
        .route(
            "/types/v3.0/OS-CREDENTIAL/securitytokens",
            post(wrong_types),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (Endpoint::parse(&format!("http://{addr}")).unwrap(), server)
}

#[tokio::test]
async fn iam_client_survives_hostile_answers() {
    let (base, server) = hostile_iam().await;
    let at = |prefix: &str| Endpoint::parse(&format!("{base}/{prefix}")).unwrap();
    let client = IamClient::new(&ClientConfig::default()).unwrap();
    let jwt =
        SecretString::new("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJlLXNlY3JldA");
    let token = SecretString::new("MIIsecret-federated-token");
    let error = client
        .temporary_credentials(&at("huge"), &token, 900)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, IamError::Decode { message } if message.contains("larger than")),
        "{error:?}"
    );
    let error = client
        .federated_token(&at("nosubject"), IDP, &jwt)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, IamError::Decode { message } if message.contains("X-Subject-Token")),
        "{error:?}"
    );
    let error = client
        .federated_token(&at("redirect"), IDP, &jwt)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, IamError::Decode { message } if message.contains("302")),
        "{error:?}"
    );
    for result in [
        client
            .federated_token(&at("echo"), IDP, &jwt)
            .await
            .map(|_| ()),
        client
            .temporary_credentials(&at("echo"), &token, 900)
            .await
            .map(|_| ()),
    ] {
        let error = result.unwrap_err();
        assert_eq!(refused(&error), (401, "IAM.0001"));
        let shown = format!("{error} {error:?} {}", error.code_and_message());
        assert!(!shown.contains(jwt.expose()), "{shown}");
        assert!(!shown.contains("c2lnbmF0dXJlLXNlY3JldA"), "{shown}");
        assert!(!shown.contains(token.expose()), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    let error = client
        .temporary_credentials(&at("types"), &token, 900)
        .await
        .unwrap_err();
    assert!(matches!(error, IamError::Decode { .. }), "{error:?}");
    // Nothing listens on port 9: a transport error, without the URL's query.
    let error = client
        .pod_identity("http://127.0.0.1:9/creds?secret=q", &SecretString::new("t"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, IamError::Transport { message } if !message.contains("secret=q")),
        "{error:?}"
    );
    assert_eq!(error.reason(), "IamUnreachable");
    server.abort();
}
