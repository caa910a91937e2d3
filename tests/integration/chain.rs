//! The operator's own credential chain against the simulator's IAM, STS and Pod
//! Identity over loopback, on the simulator's injected clock: the federal flow with a
//! token file rewritten between exchanges (re-read on every exchange), OIDC STS, Pod
//! Identity, the cache and backoff through real exchanges, the controller's view of a
//! failed exchange, and `dcs-operator query` with each of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::TimeDelta;
use clap::Parser;
use dcs_operator::cli::{Cli, Command};
use dcs_operator::controller::secrets::{DefaultCredentials, DefaultCredentialsSource};
use dcs_operator::dcs::chain::{
    self, ChainCredentials, ChainError, ChainOptions, ENV_IAM_ENDPOINT, ENV_ID_TOKEN_FILE,
    ENV_IDP_ID, ENV_OIDC_AGENCY_URN, ENV_OIDC_PROVIDER_URN, ENV_OIDC_TOKEN_FILE,
    ENV_POD_IDENTITY_TOKEN_FILE, ENV_POD_IDENTITY_URI, ENV_PROJECT_ID, HttpExchanges, Provider,
    RefreshPolicy,
};
use dcs_operator::dcs::iam::test_tokens;
use dcs_operator::dcs::sim::iam::POD_IDENTITY_PATH;
use dcs_operator::dcs::sim::{
    AgencyConfig, IdentityConfig, IdpConfig, OidcProviderConfig, PodIdentityToken, SimConfig,
};
use dcs_operator::dcs::{ClientConfig, Credentials};
use dcs_operator::plan::CredentialsProblem;
use dcs_operator::query::{exit, run};
use serde_json::Value;

use crate::sim_support::{Harness, PROJECT, example_instances, start_with};

const INSTANCE: &str = "3f7a1c2e-5b8d-4e6f-9a0b-1c2d3e4f5a6b";
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const AUDIENCE: &str = "dcs-operator";
const IDP: &str = "operator-idp";
const PROVIDER: &str = "iam::0123456789:oidc-provider:cluster";
const AGENCY: &str = "iam::0123456789:agency:dcs-operator";
const POD_TOKEN: &str = "operator-pod-identity-token";
const NAMESPACE: &str = "dcs-system";
const ACCOUNT: &str = "dcs-operator";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/iam")
        .join(name)
}

fn identity() -> IdentityConfig {
    let jwks = serde_json::from_slice(&std::fs::read(fixture("jwks.json")).unwrap()).unwrap();
    let subject = format!("system:serviceaccount:{NAMESPACE}:{ACCOUNT}");
    IdentityConfig {
        jwks: Some(jwks),
        idps: vec![IdpConfig {
            id: IDP.into(),
            issuer: ISSUER.into(),
            client_id: AUDIENCE.into(),
            subjects: vec![subject.clone()],
        }],
        oidc_providers: vec![OidcProviderConfig {
            provider_urn: PROVIDER.into(),
            issuer: ISSUER.into(),
            client_ids: vec![AUDIENCE.into()],
            agencies: vec![AgencyConfig {
                agency_urn: AGENCY.into(),
                subjects: vec![subject],
                max_duration_seconds: 7200,
            }],
        }],
        pod_identity: vec![PodIdentityToken::new(POD_TOKEN)],
        ..Default::default()
    }
}

struct Setup {
    h: Harness,
    pem: Vec<u8>,
    dir: PathBuf,
    _cleanup: Cleanup,
}

/// Removes the test's directory (token files, keys) however the test ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start() -> Setup {
    let config = SimConfig {
        identity: identity(),
        instances: example_instances(),
        ..SimConfig::with_default_keys()
    };
    let dir = std::env::temp_dir().join(format!("dcs-chain-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    Setup {
        h: start_with(config, ClientConfig::default()).await,
        pem: std::fs::read(fixture("test-key.pem")).unwrap(),
        _cleanup: Cleanup(dir.clone()),
        dir,
    }
}

impl Setup {
    fn base(&self) -> String {
        self.h.sim.base_url().trim_end_matches('/').to_string()
    }

    /// The operator's projected token as kubelet writes it: issued now (simulator
    /// clock), valid 600 s, for `account`.
    fn write_token(&self, file: &str, account: &str) -> PathBuf {
        let claims = test_tokens::service_account_claims(
            ISSUER,
            AUDIENCE,
            NAMESPACE,
            account,
            self.h.sim.state().now(),
            600,
        );
        let jwt = test_tokens::sign_test_jwt(&claims, &self.pem, test_tokens::TEST_KEY_ID);
        let path = self.dir.join(file);
        std::fs::write(&path, format!("{jwt}\n")).unwrap();
        path
    }

    fn chain(&self, vars: &[(&str, &str)], options: &ChainOptions) -> ChainCredentials {
        let provider = chain::select(env(vars), |p| chain::read_bounded(p).ok(), options)
            .unwrap()
            .expect("configured");
        ChainCredentials::new(
            provider,
            Arc::new(HttpExchanges::new(&ClientConfig::default()).unwrap()),
            Arc::new(self.h.clock.clone()),
            RefreshPolicy::default(),
        )
    }

    async fn show(&self, creds: &Credentials) -> Value {
        self.h
            .get_as(creds, &format!("/v1.0/{PROJECT}/instances/{INSTANCE}"), &[])
            .await
            .unwrap()
    }

    fn counts(&self, label: &str) -> (u64, u64) {
        let counters = self.h.sim.state().counters();
        (counters.requests_for(label), counters.applied_for(label))
    }

    fn advance(&self, seconds: i64) {
        self.h.clock.advance(TimeDelta::seconds(seconds));
    }
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn ak(creds: &Credentials) -> String {
    creds.access_key_id().unwrap().to_string()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn chain_federal_flow_rereads_the_token_file_for_every_exchange() {
    let t = start().await;
    let token = t.write_token("idp-token", ACCOUNT);
    let base = t.base();
    let vars = [
        (ENV_IDP_ID, IDP),
        (ENV_ID_TOKEN_FILE, path(&token)),
        (ENV_IAM_ENDPOINT, base.as_str()),
        (ENV_PROJECT_ID, PROJECT),
    ];
    let chain = t.chain(&vars, &ChainOptions::default());
    assert!(matches!(chain.provider(), Provider::Env(_)));
    let first = chain.get().await.unwrap();
    assert_eq!(first.project_id.as_deref(), Some(PROJECT));
    assert_eq!(t.show(&first.credentials).await["instance_id"], INSTANCE);
    // Cached: more uses, no more exchanges.
    for _ in 0..5 {
        assert_eq!(chain.get().await.unwrap().credentials, first.credentials);
    }
    assert_eq!(t.counts("iam_id_token"), (1, 1));
    assert_eq!(t.counts("iam_security_tokens"), (1, 1));

    // 80 % of the hour later the refresh is due. The file still holds the first
    // token, expired by now: the exchange fails, the current keys keep working, and
    // no exchange is tried again during the backoff.
    t.advance(2880);
    assert_eq!(chain.get().await.unwrap().credentials, first.credentials);
    assert_eq!(t.counts("iam_id_token"), (2, 1));
    assert_eq!(chain.get().await.unwrap().credentials, first.credentials);
    assert_eq!(t.counts("iam_id_token"), (2, 1));
    // kubelet rotates the file; after the backoff the new token is read and used.
    t.write_token("idp-token", ACCOUNT);
    t.advance(10);
    let second = chain.get().await.unwrap();
    assert_ne!(ak(&second.credentials), ak(&first.credentials));
    assert_eq!(t.counts("iam_id_token"), (3, 2));
    assert_eq!(t.counts("iam_security_tokens"), (2, 2));
    assert_eq!(t.show(&second.credentials).await["instance_id"], INSTANCE);

    // A token for an identity the mapping does not allow: once the current keys are
    // gone, the error is the cloud's code and message, never the token.
    t.advance(3600);
    t.write_token("idp-token", "someone-else");
    let error = chain.get().await.unwrap_err();
    let ChainError::Exchange {
        detail,
        unavailable,
        ..
    } = &error
    else {
        panic!("{error}")
    };
    assert!(!unavailable);
    assert!(detail.contains("HTTP 4"), "{detail}");
    let token_text = std::fs::read_to_string(&token).unwrap();
    assert!(!error.to_string().contains(token_text.trim()));
    t.h.sim.shutdown().await;
}

#[tokio::test]
async fn chain_oidc_sts_assumes_the_agency_and_refreshes_with_a_fresh_token() {
    let t = start().await;
    let token = t.write_token("oidc-token", ACCOUNT);
    let vars = [
        (ENV_OIDC_PROVIDER_URN, PROVIDER),
        (ENV_OIDC_AGENCY_URN, AGENCY),
        (ENV_OIDC_TOKEN_FILE, path(&token)),
    ];
    let options = ChainOptions {
        sts_endpoint: Some(t.base()),
        ..ChainOptions::default()
    };
    let chain = t.chain(&vars, &options);
    assert!(matches!(chain.provider(), Provider::OidcSts(_)));
    let first = chain.get().await.unwrap();
    assert_eq!(first.project_id, None);
    assert_eq!(t.show(&first.credentials).await["instance_id"], INSTANCE);
    assert_eq!(t.counts("sts_assume_oidc"), (1, 1));
    // Unlike the SDK's OIDC provider, the file is read again at the refresh: the
    // first JWT expired 40 minutes ago, the rotated one works.
    t.advance(2880);
    t.write_token("oidc-token", ACCOUNT);
    let second = chain.get().await.unwrap();
    assert_ne!(ak(&second.credentials), ak(&first.credentials));
    assert_eq!(t.counts("sts_assume_oidc"), (2, 2));
    t.show(&second.credentials).await;
    t.h.sim.shutdown().await;
}

#[tokio::test]
async fn chain_pod_identity_and_the_controllers_view_of_a_failure() {
    let t = start().await;
    let token = t.dir.join("pod-token");
    std::fs::write(&token, format!("{POD_TOKEN}\n")).unwrap();
    let uri = format!("{}{POD_IDENTITY_PATH}", t.base());
    let vars = [
        (ENV_POD_IDENTITY_URI, uri.as_str()),
        (ENV_POD_IDENTITY_TOKEN_FILE, path(&token)),
    ];
    let defaults = DefaultCredentials {
        source: DefaultCredentialsSource::Chain(Arc::new(t.chain(&vars, &ChainOptions::default()))),
        namespaces: Some(vec!["team-a".into()]),
        for_operator_default_endpoint: false,
    };
    let found = defaults.load().await.unwrap();
    t.show(&found.credentials).await;
    assert_eq!(t.counts("pod_identity"), (1, 1));

    // A wrong token: the DcsInstance would say IdentityExchangeFailed with the
    // agent's code, and never the token.
    std::fs::write(&token, "wrong-pod-token").unwrap();
    let broken = DefaultCredentials {
        source: DefaultCredentialsSource::Chain(Arc::new(t.chain(&vars, &ChainOptions::default()))),
        ..defaults.clone()
    };
    let problem = broken.load().await.unwrap_err();
    let CredentialsProblem::IdentityExchangeFailed(message) = &problem else {
        panic!("{problem:?}")
    };
    assert!(message.contains("CCE.PodIdentityUnauthorized"), "{message}");
    assert!(!message.contains("wrong-pod-token"));
    let reason = dcs_operator::plan::Problem::Credentials(problem.clone()).reason();
    assert_eq!(
        reason,
        dcs_operator::plan::reasons::IDENTITY_EXCHANGE_FAILED
    );
    // Backing off: the same answer without another call.
    assert_eq!(broken.load().await.unwrap_err(), problem);
    assert_eq!(t.counts("pod_identity"), (2, 1));
    t.h.sim.shutdown().await;
}

async fn query(t: &Setup, vars: &[(&str, &str)], extra: &[&str]) -> (i32, String, String) {
    let endpoint = t.base();
    let mut argv = vec![
        "dcs-operator",
        "query",
        "--endpoint",
        &endpoint,
        "--project-id",
        PROJECT,
        "--instance-id",
        INSTANCE,
    ];
    argv.extend_from_slice(extra);
    let Command::Query(args) = Cli::parse_from(argv).command else {
        panic!("not a query")
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&args, env(vars), &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn query_checks_a_keyless_setup_from_a_shell() {
    let t = start().await;
    let base = t.base();

    let idp_token = t.write_token("idp-token", ACCOUNT);
    let federal = [(ENV_IDP_ID, IDP), (ENV_ID_TOKEN_FILE, path(&idp_token))];
    let (code, out, err) = query(&t, &federal, &["--iam-endpoint", &base]).await;
    assert_eq!(code, exit::OK, "{err}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["instance_id"], INSTANCE);
    assert_eq!(t.counts("iam_id_token"), (1, 1));

    let oidc_token = t.write_token("oidc-token", ACCOUNT);
    let oidc = [
        (ENV_OIDC_PROVIDER_URN, PROVIDER),
        (ENV_OIDC_AGENCY_URN, AGENCY),
        (ENV_OIDC_TOKEN_FILE, path(&oidc_token)),
    ];
    let (code, _, err) = query(&t, &oidc, &["--sts-endpoint", &base]).await;
    assert_eq!(code, exit::OK, "{err}");
    assert_eq!(t.counts("sts_assume_oidc"), (1, 1));

    let pod_token = t.dir.join("pod-token");
    std::fs::write(&pod_token, POD_TOKEN).unwrap();
    let uri = format!("{base}{POD_IDENTITY_PATH}");
    let pod = [
        (ENV_POD_IDENTITY_URI, uri.as_str()),
        (ENV_POD_IDENTITY_TOKEN_FILE, path(&pod_token)),
    ];
    let (code, _, err) = query(&t, &pod, &[]).await;
    assert_eq!(code, exit::OK, "{err}");

    // A refused exchange is an authentication failure; its code is shown, the token
    // never.
    let stranger = t.write_token("stranger-token", "someone-else");
    let refused = [(ENV_IDP_ID, IDP), (ENV_ID_TOKEN_FILE, path(&stranger))];
    let (code, out, err) = query(&t, &refused, &["--iam-endpoint", &base]).await;
    assert_eq!(code, exit::AUTH, "{err}");
    assert!(out.is_empty());
    let jwt = std::fs::read_to_string(&stranger).unwrap();
    assert!(!err.contains(jwt.trim()));
    assert!(err.contains("HTTP 4"), "{err}");
    // IAM not answering is "unavailable".
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (code, _, err) = query(&t, &federal, &["--iam-endpoint", &closed]).await;
    assert_eq!(code, exit::UNAVAILABLE, "{err}");
    // Half a configuration stops the chain (exit 2), naming what is missing.
    let (code, _, err) = query(&t, &federal[..1], &["--iam-endpoint", &base]).await;
    assert_eq!(code, exit::USAGE);
    assert!(err.contains(ENV_ID_TOKEN_FILE), "{err}");
    // Nothing configured: the message names the SDK variables.
    let (code, _, err) = query(&t, &[], &[]).await;
    assert_eq!(code, exit::USAGE);
    assert!(err.contains("HUAWEICLOUD_SDK_AK"), "{err}");
    // The project id may come from the credentials (a credentials directory's).
    let dir = t.dir.join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("accessKey"), SimConfig::DEFAULT_ACCESS_KEY).unwrap();
    std::fs::write(dir.join("secretKey"), SimConfig::DEFAULT_SECRET_KEY).unwrap();
    std::fs::write(dir.join("projectId"), PROJECT).unwrap();
    let endpoint = t.base();
    let Command::Query(args) = Cli::parse_from([
        "dcs-operator",
        "query",
        "--endpoint",
        &endpoint,
        "--instance-id",
        INSTANCE,
        "--credentials-dir",
        path(&dir),
    ])
    .command
    else {
        panic!()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    // The directory comes first, whatever else is set.
    let code = run(&args, env(&pod), &mut out, &mut err).await;
    assert_eq!(code, exit::OK, "{}", String::from_utf8_lossy(&err));
    assert_eq!(t.counts("pod_identity"), (1, 1));
    t.h.sim.shutdown().await;
}
