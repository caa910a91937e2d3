//! Workload identity (issue #14) end to end: a fake API server mints ServiceAccount
//! tokens signed by the test key, the simulator's IAM trusts that key, and the
//! operator exchanges, caches and refreshes, with one manual clock for all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use dcs_operator::clock::ManualClock;
use dcs_operator::controller::identity::{IDENTITY_LABEL, Identities, IdentityOptions};
use dcs_operator::controller::resolve::SpecDefaults;
use dcs_operator::controller::secrets::CredentialsResolver;
use dcs_operator::controller::{Context, Shared, reconcile};
use dcs_operator::crd::{DcsInstance, DcsInstanceSpec, WorkloadIdentity};
use dcs_operator::dcs::iam::IamClient;
use dcs_operator::dcs::iam::test_tokens::{
    TEST_KEY_ID, service_account_claims, sign_test_jwt, with_signature_of,
};
use dcs_operator::dcs::sim::{
    IdentityConfig, IdpConfig, SimConfig, SimHandle, SimInstance, Simulator,
};
use dcs_operator::dcs::{ClientConfig, DcsClient};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde_json::{Value, json};

use crate::fake_apiserver::{FakeApiServer, fake_api_server};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const INSTANCE: &str = "68d5745e-6af2-40e4-945d-fe449be00148";
const NS: &str = "team-a";
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const AUDIENCE: &str = "dcs-operator";
const IDP: &str = "idp-1";
const KEY: &[u8] = include_bytes!("../fixtures/iam/test-key.pem");

/// How the fake API server mints tokens (to make bad ones).
#[derive(Clone, Copy, PartialEq)]
enum Minting {
    Good,
    WrongSignature,
    WrongAudience,
    Expired,
}

struct World {
    api: FakeApiServer,
    sim: SimHandle,
    clock: ManualClock,
    ctx: Arc<Context>,
    mints: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
}

fn sim_config() -> SimConfig {
    let jwks: Value =
        serde_json::from_str(include_str!("../fixtures/iam/jwks.json")).expect("the test JWKS");
    let mut fields = serde_json::Map::new();
    for (key, value) in [
        ("instance_id", json!(INSTANCE)),
        ("name", json!("cache")),
        ("engine", json!("Redis")),
        ("engine_version", json!("6.0")),
        ("capacity", json!(2)),
        ("ip", json!("192.168.3.100")),
        ("port", json!(6379)),
        ("status", json!("RUNNING")),
    ] {
        fields.insert(key.into(), value);
    }
    SimConfig {
        instances: vec![SimInstance::new(PROJECT, fields, Vec::new())],
        identity: IdentityConfig {
            jwks: Some(jwks),
            idps: vec![IdpConfig {
                id: IDP.into(),
                issuer: ISSUER.into(),
                client_id: AUDIENCE.into(),
                subjects: vec![
                    format!("system:serviceaccount:{NS}:reader"),
                    format!("system:serviceaccount:{NS}:other-reader"),
                ],
            }],
            ..IdentityConfig::default()
        },
        ..SimConfig::with_default_keys()
    }
}

async fn world(minting: Minting, audience_accepted: bool) -> World {
    let clock = ManualClock::new(Utc::now());
    let sim = Simulator::start(
        sim_config(),
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let (client, api) = fake_api_server();
    let mints = Arc::new(AtomicUsize::new(0));
    let minter_clock = clock.clone();
    let minted = mints.clone();
    api.set_token_minter(Arc::new(move |namespace, name, audiences| {
        minted.fetch_add(1, Ordering::SeqCst);
        let now = dcs_operator::clock::Clock::now(&minter_clock);
        let audience = match minting {
            Minting::WrongAudience => "kubernetes".to_string(),
            _ => audiences.first().cloned().unwrap_or_default(),
        };
        let (issued, lifetime) = match minting {
            Minting::Expired => (now - TimeDelta::hours(2), 600),
            _ => (now, 600),
        };
        let claims = service_account_claims(ISSUER, &audience, namespace, name, issued, lifetime);
        let token = sign_test_jwt(&claims, KEY, TEST_KEY_ID);
        Some(match minting {
            Minting::WrongSignature => {
                let other = service_account_claims(ISSUER, &audience, namespace, "x", issued, 1);
                with_signature_of(&token, &sign_test_jwt(&other, KEY, TEST_KEY_ID))
            }
            _ => token,
        })
    }));
    for (name, labelled) in [
        ("reader", true),
        ("other-reader", true),
        ("unlabelled", false),
    ] {
        let labels =
            labelled.then(|| BTreeMap::from([(IDENTITY_LABEL.to_string(), "true".into())]));
        api.insert(ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NS.into()),
                labels,
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        });
    }
    let probes = Arc::new(AtomicUsize::new(0));
    let probed = probes.clone();
    let probe: dcs_operator::controller::identity::AudienceProbe = Arc::new(move |_token| {
        probed.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(audience_accepted) })
    });
    let shared_clock: dcs_operator::clock::SharedClock = Arc::new(clock.clone());
    let identities = Identities::new(
        IdentityOptions {
            namespaces: vec![NS.into()],
            audience: Some(AUDIENCE.into()),
            iam_endpoint: Some(sim.endpoint()),
            sts_endpoint: Some(sim.endpoint()),
            allowed_origins: vec![sim.endpoint().origin()],
        },
        IamClient::new(&ClientConfig::default()).unwrap(),
        probe,
        shared_clock.clone(),
    );
    let shared = Shared::builder(
        client.clone(),
        DcsClient::new(ClientConfig::default(), shared_clock.clone()).unwrap(),
        shared_clock,
        SpecDefaults {
            poll_interval: Duration::from_secs(60),
            ..SpecDefaults::default()
        },
        CredentialsResolver::new(None),
    )
    .identities(Arc::new(identities))
    .build();
    World {
        api,
        sim,
        clock,
        ctx: Arc::new(Context::new(Arc::new(shared))),
        mints,
        probes,
    }
}

fn with_identity(name: &str, uid: &str, service_account: &str, endpoint: &str) -> DcsInstance {
    let mut obj = DcsInstance::new(
        name,
        DcsInstanceSpec {
            instance_id: Some(INSTANCE.into()),
            project_id: Some(PROJECT.into()),
            endpoint: Some(endpoint.into()),
            identity: Some(Box::new(WorkloadIdentity {
                service_account_name: service_account.into(),
                idp_id: Some(IDP.into()),
                agency_urn: None,
                provider_urn: None,
                project_id: None,
                duration_seconds: None,
            })),
            ..DcsInstanceSpec::default()
        },
    );
    obj.meta_mut().namespace = Some(NS.into());
    obj.meta_mut().uid = Some(uid.into());
    obj
}

impl World {
    async fn step(&self, name: &str) {
        let obj = self.api.get_dcs(NS, name).expect("the object");
        let _ = reconcile(Arc::new(obj), self.ctx.clone()).await;
    }

    async fn step_owned(&self, name: String) {
        self.step(&name).await;
    }

    fn reason(&self, name: &str, type_: &str) -> Option<String> {
        let status = self.api.get_dcs(NS, name)?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.reason.to_string())
    }

    fn message(&self, name: &str) -> String {
        let status = self.api.get_dcs(NS, name).unwrap().status.unwrap();
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Synced")
            .map(|c| c.message.to_string())
            .unwrap_or_default()
    }

    fn exchanges(&self) -> u64 {
        self.sim.state().counters().requests_for("iam_id_token")
    }

    fn shows(&self) -> u64 {
        self.sim.state().counters().requests_for("show_v1")
    }
}

fn uid(n: u32) -> String {
    format!("5a1b2c3d-0000-4000-8000-{n:012}")
}

#[tokio::test]
async fn a_dcs_instance_with_an_identity_becomes_ready_without_a_key_in_any_secret() {
    let w = world(Minting::Good, false).await;
    w.api
        .insert(with_identity("cache", &uid(1), "reader", &w.sim.base_url()));
    w.step("cache").await;
    assert_eq!(
        w.reason("cache", "Ready").as_deref(),
        Some("Running"),
        "{}",
        w.message("cache")
    );
    assert_eq!(w.mints.load(Ordering::SeqCst), 1);
    assert_eq!(
        w.probes.load(Ordering::SeqCst),
        1,
        "the audience is checked once"
    );
    assert_eq!(w.exchanges(), 1);
    assert_eq!(
        w.sim.state().counters().requests_for("iam_security_tokens"),
        1
    );
    // No Secret holds keys: the only Secret is the connection Secret.
    let secrets = w.api.list_values("v1/secrets", Some(NS));
    assert!(
        secrets.iter().all(|s| s["metadata"]["name"] == "cache-dcs"),
        "{secrets:?}"
    );
    let status = serde_json::to_string(&w.api.get_dcs(NS, "cache").unwrap().status).unwrap();
    assert!(!status.to_lowercase().contains("token"), "{status}");
}

#[tokio::test]
async fn one_exchange_per_identity_and_a_refresh_adds_no_dcs_calls_or_status_writes() {
    let w = world(Minting::Good, false).await;
    for n in 1..=3 {
        let mut obj = with_identity(&format!("c{n}"), &uid(n), "reader", &w.sim.base_url());
        // Polled hourly: the refresh (at 48 minutes) comes while the stored answer is
        // still fresh, so any call then would be the refresh's doing.
        obj.spec.poll_interval = Some("1h".into());
        w.api.insert(obj);
    }
    // At once: single flight, the two that wait find the first one's result.
    futures::future::join_all((1..=3).map(|n| w.step_owned(format!("c{n}")))).await;
    // The gate lets one unproven call go at a time: the others observe next time.
    for n in 1..=3 {
        w.step(&format!("c{n}")).await;
    }
    for n in 1..=3 {
        let name = format!("c{n}");
        assert_eq!(
            w.reason(&name, "Ready").as_deref(),
            Some("Running"),
            "{name}"
        );
    }
    assert_eq!(
        w.exchanges(),
        1,
        "three DcsInstances, one identity, one exchange"
    );
    assert_eq!(w.mints.load(Ordering::SeqCst), 1);
    // Past 80 % of the hour: the next reconciles refresh once, and observe as usual.
    w.clock.advance(TimeDelta::minutes(49));
    w.api.clear_requests();
    let shows_before = w.shows();
    for n in 1..=3 {
        w.step(&format!("c{n}")).await;
    }
    assert_eq!(w.exchanges(), 2, "one refresh for the three");
    assert_eq!(
        w.shows() - shows_before,
        0,
        "observations are keyed by the identity, not by the rotated keys: still fresh"
    );
    let status_writes = w.api.count("PATCH", "/status");
    assert_eq!(
        status_writes,
        0,
        "the refresh changes no status: {:?}",
        w.api.requests()
    );
}

#[tokio::test]
async fn bad_tokens_fail_the_exchange_for_that_tenant_only() {
    for minting in [
        Minting::WrongSignature,
        Minting::WrongAudience,
        Minting::Expired,
    ] {
        let w = world(minting, false).await;
        w.api
            .insert(with_identity("cache", &uid(1), "reader", &w.sim.base_url()));
        w.step("cache").await;
        assert_eq!(
            w.reason("cache", "Synced").as_deref(),
            Some("IdentityExchangeFailed"),
            "{}",
            w.message("cache")
        );
        assert_eq!(
            w.sim.state().counters().requests_for("iam_security_tokens"),
            0
        );
    }
    // A subject outside the mapping fails; another tenant's identity still works.
    let w = world(Minting::Good, false).await;
    let mut outsider = with_identity("outsider", &uid(2), "unmapped", &w.sim.base_url());
    outsider
        .spec
        .identity
        .as_mut()
        .unwrap()
        .service_account_name = "unmapped".into();
    w.api.insert(ServiceAccount {
        metadata: ObjectMeta {
            name: Some("unmapped".into()),
            namespace: Some(NS.into()),
            labels: Some(BTreeMap::from([(
                IDENTITY_LABEL.to_string(),
                "true".into(),
            )])),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    });
    w.api.insert(outsider);
    w.api
        .insert(with_identity("good", &uid(3), "reader", &w.sim.base_url()));
    w.step("outsider").await;
    w.step("good").await;
    // Three objects of a failing identity at once: one exchange, then its backoff.
    let before = w.exchanges();
    for n in 4..=6 {
        let mut obj = with_identity(&format!("o{n}"), &uid(n), "unmapped", &w.sim.base_url());
        obj.spec.identity.as_mut().unwrap().duration_seconds = Some(1800);
        w.api.insert(obj);
    }
    futures::future::join_all((4..=6).map(|n| w.step_owned(format!("o{n}")))).await;
    assert_eq!(
        w.exchanges() - before,
        1,
        "one failed exchange for the three"
    );
    assert_eq!(
        w.reason("outsider", "Synced").as_deref(),
        Some("IdentityExchangeFailed")
    );
    assert_eq!(w.reason("good", "Ready").as_deref(), Some("Running"));
}

#[tokio::test]
async fn kubernetes_side_problems_send_no_token_request() {
    let w = world(Minting::Good, false).await;
    let mut elsewhere = with_identity("elsewhere", &uid(1), "reader", &w.sim.base_url());
    elsewhere.meta_mut().namespace = Some("team-b".into());
    w.api.insert(elsewhere);
    w.api.insert(with_identity(
        "missing",
        &uid(2),
        "nobody",
        &w.sim.base_url(),
    ));
    w.api.insert(with_identity(
        "unlabelled",
        &uid(3),
        "unlabelled",
        &w.sim.base_url(),
    ));
    let obj = w.api.get_dcs("team-b", "elsewhere").unwrap();
    let _ = reconcile(Arc::new(obj), w.ctx.clone()).await;
    w.step("missing").await;
    w.step("unlabelled").await;
    assert_eq!(w.mints.load(Ordering::SeqCst), 0);
    for name in ["missing", "unlabelled"] {
        assert_eq!(
            w.reason(name, "Synced").as_deref(),
            Some("TokenRequestFailed"),
            "{name}"
        );
    }
    let elsewhere = w
        .api
        .get_dcs("team-b", "elsewhere")
        .unwrap()
        .status
        .unwrap();
    assert!(
        elsewhere
            .conditions
            .iter()
            .any(|c| c.reason == "TokenRequestFailed")
    );
}

#[tokio::test]
async fn tokens_and_keys_never_reach_a_tenant_endpoint() {
    let w = world(Minting::Good, false).await;
    // A tenant endpoint that counts every connection it gets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    w.api.insert(with_identity(
        "cache",
        &uid(1),
        "reader",
        &format!("http://{address}"),
    ));
    w.step("cache").await;
    assert_eq!(
        w.reason("cache", "Synced").as_deref(),
        Some("TokenRequestFailed")
    );
    assert_eq!(w.mints.load(Ordering::SeqCst), 0, "nothing minted");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing sent there");
}

#[tokio::test]
async fn an_audience_the_api_server_accepts_disables_workload_identity() {
    let w = world(Minting::Good, true).await;
    w.api
        .insert(with_identity("cache", &uid(1), "reader", &w.sim.base_url()));
    w.step("cache").await;
    w.step("cache").await;
    assert_eq!(
        w.reason("cache", "Synced").as_deref(),
        Some("TokenRequestFailed")
    );
    assert!(
        w.message("cache").contains("disabled"),
        "{}",
        w.message("cache")
    );
    assert_eq!(w.exchanges(), 0, "nothing exchanged");
    assert_eq!(w.probes.load(Ordering::SeqCst), 1);
}
