use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::TimeZone;

use super::*;
use crate::clock::{Clock, ManualClock};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn files(pairs: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> + use<> {
    let map: HashMap<PathBuf, String> = pairs
        .iter()
        .map(|(k, v)| (PathBuf::from(k), v.to_string()))
        .collect();
    move |path| map.get(path).cloned()
}

fn no_files() -> impl Fn(&Path) -> Option<String> {
    |_| None
}

const OIDC: [(&str, &str); 3] = [
    (ENV_OIDC_PROVIDER_URN, "iam::0123:oidc-provider:cluster"),
    (ENV_OIDC_AGENCY_URN, "iam::0123:agency:dcs-operator"),
    (ENV_OIDC_TOKEN_FILE, "/var/run/secrets/tokens/oidc"),
];
const FEDERAL: [(&str, &str); 2] = [
    (ENV_IDP_ID, "cce-cluster"),
    (ENV_ID_TOKEN_FILE, "/var/run/secrets/tokens/idp"),
];
const KEYS: [(&str, &str); 2] = [(ENV_ACCESS_KEY, "ENVAK"), (ENV_SECRET_KEY, "ENVSK")];
const PROFILE: [(&str, &str); 1] = [(ENV_CREDENTIALS_FILE, "/etc/hc/credentials")];
const POD: [(&str, &str); 2] = [
    (ENV_POD_IDENTITY_URI, "http://169.254.170.2/v1/credentials"),
    (ENV_POD_IDENTITY_TOKEN_FILE, "/var/run/secrets/tokens/pod"),
];
const PROFILE_TEXT: &str = "[basic]\nak = PROFILEAK\nsk = PROFILESK\n";

fn all_files() -> impl Fn(&Path) -> Option<String> {
    files(&[("/etc/hc/credentials", PROFILE_TEXT)])
}

fn metadata_on() -> ChainOptions {
    ChainOptions {
        from_metadata: true,
        ..ChainOptions::default()
    }
}

fn selected(
    vars: &[(&str, &str)],
    files: impl Fn(&Path) -> Option<String>,
    options: &ChainOptions,
) -> Option<&'static str> {
    select(env(vars), files, options)
        .unwrap_or_else(|e| panic!("{vars:?}: {e}"))
        .map(|provider| match provider {
            Provider::CredentialsDir(_) => "dir",
            Provider::OidcSts(_) => "oidc",
            Provider::Env(KeysOrFederal::Federal(_)) => "env-federal",
            Provider::Env(KeysOrFederal::Keys(_)) => "env-keys",
            Provider::Profile(_) => "profile",
            Provider::Metadata(_) => "metadata",
            Provider::PodIdentity(_) => "pod-identity",
        })
}

/// The SDK's order (3.1.219): OIDC STS, environment (federal before keys), profile,
/// metadata, Pod Identity; `--credentials-dir` before all of them.
#[test]
fn the_first_configured_provider_wins_in_the_sdks_order() {
    let dir = ChainOptions {
        credentials_dir: Some("/var/run/secrets/dcs-operator/credentials".into()),
        from_metadata: true,
        ..ChainOptions::default()
    };
    let everything: Vec<(&str, &str)> = [&OIDC[..], &FEDERAL, &KEYS, &PROFILE, &POD].concat();
    type Row<'a> = (Vec<(&'a str, &'a str)>, ChainOptions, Option<&'a str>);
    let table: Vec<Row> = vec![
        (everything.clone(), dir.clone(), Some("dir")),
        (everything.clone(), metadata_on(), Some("oidc")),
        (
            [&FEDERAL[..], &KEYS, &PROFILE, &POD].concat(),
            metadata_on(),
            Some("env-federal"),
        ),
        (
            [&KEYS[..], &PROFILE, &POD].concat(),
            metadata_on(),
            Some("env-keys"),
        ),
        (
            [&PROFILE[..], &POD].concat(),
            metadata_on(),
            Some("profile"),
        ),
        (POD.to_vec(), metadata_on(), Some("metadata")),
        (POD.to_vec(), ChainOptions::default(), Some("pod-identity")),
        (vec![], metadata_on(), Some("metadata")),
        (vec![], ChainOptions::default(), None),
        // A HOME without a profile is nothing configured.
        (vec![("HOME", "/home/op")], ChainOptions::default(), None),
        // Only a project id is nothing configured either.
        (
            vec![(ENV_PROJECT_ID, PROJECT)],
            ChainOptions::default(),
            None,
        ),
    ];
    for (vars, options, want) in table {
        assert_eq!(selected(&vars, all_files(), &options), want, "{vars:?}");
    }
    // The profile under HOME when no file is named.
    assert_eq!(
        selected(
            &[("HOME", "/home/op")],
            files(&[("/home/op/.huaweicloud/credentials", PROFILE_TEXT)]),
            &ChainOptions::default()
        ),
        Some("profile")
    );
    // An IAM token, which `query` has always accepted, counts as environment keys.
    assert_eq!(
        selected(
            &[(ENV_AUTH_TOKEN, "MIIT")],
            no_files(),
            &ChainOptions::default()
        ),
        Some("env-keys")
    );
}

#[test]
fn every_partial_configuration_is_an_error_not_a_fall_through() {
    // Each is incomplete while a complete later provider (Pod Identity) is present:
    // the SDK stops there too, it never falls through.
    let partials: Vec<Vec<(&str, &str)>> = vec![
        vec![(ENV_OIDC_PROVIDER_URN, "iam::0123:oidc-provider:cluster")],
        vec![(ENV_OIDC_AGENCY_URN, "iam::0123:agency:x")],
        vec![(ENV_OIDC_TOKEN_FILE, "/t")],
        vec![(ENV_OIDC_ID_TOKEN, JWT)],
        vec![(ENV_OIDC_SESSION_NAME, "s")],
        OIDC[..2].to_vec(),
        [&OIDC[..], &[(ENV_OIDC_POLICY, "{}")]].concat(),
        [&OIDC[..], &[(ENV_OIDC_POLICY_IDS, "a,b")]].concat(),
        [&OIDC[..], &[(ENV_OIDC_DURATION_SECONDS, "60")]].concat(),
        [&OIDC[..], &[(ENV_OIDC_DURATION_SECONDS, "1h")]].concat(),
        [&OIDC[..], &[(ENV_OIDC_SESSION_NAME, "x")]].concat(),
        vec![(ENV_IDP_ID, "idp")],
        vec![(ENV_ID_TOKEN_FILE, "/t")],
        [&[(ENV_IDP_ID, "idp")][..], &KEYS].concat(),
        vec![(ENV_ACCESS_KEY, "AK")],
        vec![(ENV_SECRET_KEY, "SECRETSK")],
        vec![(ENV_SECURITY_TOKEN, "SECTOKEN")],
        vec![(ENV_ACCESS_KEY, "AK-1"), (ENV_SECRET_KEY, "SECRETSK")],
        [&KEYS[..], &[(ENV_PROJECT_ID, "not-hex")]].concat(),
        [
            &FEDERAL[..],
            &[(ENV_IAM_ENDPOINT, "http://iam.example.com")],
        ]
        .concat(),
        [&FEDERAL[..], &[(ENV_IAM_ENDPOINT, "not a url")]].concat(),
        [&OIDC[..], &[(ENV_STS_ENDPOINT, "http://sts.example.com")]].concat(),
        vec![(ENV_CREDENTIALS_FILE, "/missing")],
    ];
    for vars in partials {
        let with_later = [&vars[..], &POD].concat();
        let error = select(env(&with_later), all_files(), &ChainOptions::default())
            .expect_err(&format!("{vars:?} must be an error"));
        let text = error.to_string();
        for (name, value) in &vars {
            if [ENV_SECRET_KEY, ENV_SECURITY_TOKEN, ENV_OIDC_ID_TOKEN].contains(name) {
                // Names appear, secret values never.
                assert!(!text.contains(value), "{text} shows {value}");
            }
        }
    }
    for pod in [&POD[..1], &POD[1..]] {
        assert!(matches!(
            select(env(pod), no_files(), &ChainOptions::default()),
            Err(ChainError::Incomplete { .. })
        ));
    }
    let bad_profiles = [
        "",
        "[other]\nak = A\nsk = S\n",
        "[basic]\nak = A\n",
        "[basic]\nsk = S\n",
        "[basic]\nidp_id = idp\n",
        "[basic]\nid_token_file = /t\n",
        "[basic]\nak = A\nsk = S\nproject_id = nope\n",
        "[basic]\nak = A\nak = B\nsk = S\n",
        "ak = A\n[basic]\n",
        "[basic]\nidp_id = idp\nid_token_file = /t\niam_endpoint = http://iam.example.com\n",
    ];
    for text in bad_profiles {
        let result = select(
            env(&[("HOME", "/h")]),
            files(&[("/h/.huaweicloud/credentials", text)]),
            &ChainOptions::default(),
        );
        assert!(result.is_err(), "{text:?} must be an error");
    }
    let bad_region = ChainOptions {
        region: Some("Not A Region".into()),
        ..ChainOptions::default()
    };
    assert!(select(env(&FEDERAL), no_files(), &bad_region).is_err());
    let bad_flag = ChainOptions {
        iam_endpoint: Some("ftp://iam".into()),
        ..ChainOptions::default()
    };
    assert!(select(env(&FEDERAL), no_files(), &bad_flag).is_err());
    let bad_pod = [
        (ENV_POD_IDENTITY_URI, "file:///etc/passwd"),
        (ENV_POD_IDENTITY_TOKEN_FILE, "/t"),
    ];
    assert!(select(env(&bad_pod), no_files(), &ChainOptions::default()).is_err());
}

#[test]
fn oidc_sts_reads_the_sdks_variables() {
    let Some(Provider::OidcSts(oidc)) =
        select(env(&OIDC), no_files(), &ChainOptions::default()).unwrap()
    else {
        panic!("not OIDC")
    };
    assert_eq!(oidc.provider_urn, "iam::0123:oidc-provider:cluster");
    assert_eq!(oidc.agency_urn, "iam::0123:agency:dcs-operator");
    assert_eq!(
        oidc.id_token,
        IdToken::File("/var/run/secrets/tokens/oidc".into())
    );
    assert_eq!(oidc.session_name, "oidc-sts-session");
    assert_eq!(oidc.duration_seconds, 3600);
    assert_eq!(oidc.project_id, None);
    assert_eq!(
        oidc.sts_endpoint.as_str(),
        "https://sts.cn-north-4.myhuaweicloud.com"
    );
    let vars = [
        &OIDC[..],
        &[
            (ENV_OIDC_ID_TOKEN, JWT),
            (ENV_OIDC_SESSION_NAME, "dcs-operator"),
            (ENV_OIDC_DURATION_SECONDS, "7200"),
            (ENV_PROJECT_ID, PROJECT),
        ],
    ]
    .concat();
    let options = ChainOptions {
        region: Some("ap-southeast-1".into()),
        ..ChainOptions::default()
    };
    let Some(Provider::OidcSts(oidc)) = select(env(&vars), no_files(), &options).unwrap() else {
        panic!("not OIDC")
    };
    // The inline token wins over the file.
    assert_eq!(oidc.id_token, IdToken::Inline(SecretString::new(JWT)));
    assert_eq!(oidc.session_name, "dcs-operator");
    assert_eq!(oidc.duration_seconds, 7200);
    assert_eq!(oidc.project_id.as_deref(), Some(PROJECT));
    assert_eq!(
        oidc.sts_endpoint.as_str(),
        "https://sts.ap-southeast-1.myhuaweicloud.com"
    );
    let shown = format!("{oidc:?} {}", Provider::OidcSts(oidc.clone()).describe());
    assert!(!shown.contains(JWT), "{shown}");
}

#[test]
fn endpoints_first_match_wins() {
    let iam = |vars: &[(&str, &str)], options: &ChainOptions| -> String {
        match select(env(&[&FEDERAL[..], vars].concat()), no_files(), options).unwrap() {
            Some(Provider::Env(KeysOrFederal::Federal(federal))) => {
                federal.iam_endpoint.as_str().to_string()
            }
            other => panic!("{other:?}"),
        }
    };
    let flag = ChainOptions {
        iam_endpoint: Some("https://iam.flag.example.com".into()),
        region: Some("cn-south-1".into()),
        ..ChainOptions::default()
    };
    let region = ChainOptions {
        region: Some("cn-south-1".into()),
        ..ChainOptions::default()
    };
    let from_env = [(ENV_IAM_ENDPOINT, "https://iam.env.example.com")];
    assert_eq!(iam(&from_env, &flag), "https://iam.env.example.com");
    assert_eq!(iam(&[], &flag), "https://iam.flag.example.com");
    assert_eq!(
        iam(&[], &region),
        "https://iam.cn-south-1.myhuaweicloud.com"
    );
    assert_eq!(
        iam(&[], &ChainOptions::default()),
        "https://iam.myhuaweicloud.com"
    );
    // Plain http only to loopback (a local simulator).
    assert_eq!(
        iam(&[(ENV_IAM_ENDPOINT, "http://127.0.0.1:8443")], &region),
        "http://127.0.0.1:8443"
    );

    let sts = |vars: &[(&str, &str)], options: &ChainOptions| -> String {
        match select(env(&[&OIDC[..], vars].concat()), no_files(), options).unwrap() {
            Some(Provider::OidcSts(oidc)) => oidc.sts_endpoint.as_str().to_string(),
            other => panic!("{other:?}"),
        }
    };
    let flag = ChainOptions {
        sts_endpoint: Some("https://sts.flag.example.com".into()),
        region: Some("cn-south-1".into()),
        ..ChainOptions::default()
    };
    let from_env = [(ENV_STS_ENDPOINT, "https://sts.env.example.com")];
    assert_eq!(sts(&from_env, &flag), "https://sts.flag.example.com");
    assert_eq!(sts(&from_env, &region), "https://sts.env.example.com");
    assert_eq!(
        sts(&[], &region),
        "https://sts.cn-south-1.myhuaweicloud.com"
    );

    // A profile's own iam_endpoint comes first (the SDK: the credential's own).
    let profile = "[basic]\nidp_id = idp\nid_token_file = /t\niam_endpoint = https://iam.profile.example.com\n";
    let Some(Provider::Profile(selected)) = select(
        env(&[
            (ENV_CREDENTIALS_FILE, "/p"),
            (ENV_IAM_ENDPOINT, "https://iam.env.example.com"),
        ]),
        files(&[("/p", profile)]),
        &ChainOptions::default(),
    )
    .unwrap() else {
        panic!("not a profile")
    };
    let KeysOrFederal::Federal(federal) = parse_profile(profile, &selected).unwrap() else {
        panic!("not federal")
    };
    assert_eq!(
        federal.iam_endpoint.as_str(),
        "https://iam.profile.example.com"
    );
    let without = "[basic]\nidp_id = idp\nid_token_file = /t\n";
    let KeysOrFederal::Federal(federal) = parse_profile(without, &selected).unwrap() else {
        panic!("not federal")
    };
    assert_eq!(federal.iam_endpoint.as_str(), "https://iam.env.example.com");
}

fn profile_at(path: &str) -> Profile {
    Profile {
        path: path.into(),
        iam_fallback: IamFallback {
            endpoint: Endpoint::parse("https://iam.myhuaweicloud.com").unwrap(),
        },
    }
}

#[test]
fn profile_ini_parsing() {
    let profile = profile_at("/p");
    let text = "\u{feff}# the SDK's profile\n; another comment\n\n  [global]  \nak=GLOBALAK\nsk=GLOBALSK\n\n[basic]\n  AK =  BASICAK  \nsk: BASICSK\nsecurity_token = TOKEN\nproject_id = 0123456789abcdef0123456789abcdef\ndomain_id = ignored\n";
    let KeysOrFederal::Keys(found) = parse_profile(text, &profile).unwrap() else {
        panic!("not keys")
    };
    // [basic] wins over [global]; keys are case-insensitive, values trimmed.
    assert_eq!(found.credentials.access_key_id(), Some("BASICAK"));
    assert!(matches!(
        &found.credentials,
        Credentials::AccessKey { secret_key, security_token: Some(token), .. }
            if secret_key.expose() == "BASICSK" && token.expose() == "TOKEN"
    ));
    assert_eq!(found.project_id.as_deref(), Some(PROJECT));

    let global = "[global]\nak = GLOBALAK\nsk = GLOBALSK\n";
    let KeysOrFederal::Keys(found) = parse_profile(global, &profile).unwrap() else {
        panic!("not keys")
    };
    assert_eq!(found.credentials.access_key_id(), Some("GLOBALAK"));
    assert_eq!(found.project_id, None);

    // idp_id + id_token_file win over ak/sk.
    let both = "[basic]\nak = A\nsk = S\nidp_id = cce\nid_token_file = /var/run/token\n";
    let KeysOrFederal::Federal(federal) = parse_profile(both, &profile).unwrap() else {
        panic!("not federal")
    };
    assert_eq!(federal.idp_id, "cce");
    assert_eq!(federal.id_token_file, PathBuf::from("/var/run/token"));
    assert_eq!(
        federal.iam_endpoint.as_str(),
        "https://iam.myhuaweicloud.com"
    );

    // Empty values count as missing.
    let empty = "[basic]\nak = A\nsk =\n";
    assert!(matches!(
        parse_profile(empty, &profile),
        Err(ChainError::Credentials(
            CredentialsProblem::KeyMissing { .. }
        ))
    ));
    let ini = parse_ini("[a]\nx = 1 = 2\n[b]\n").unwrap();
    assert_eq!(ini["a"]["x"], "1 = 2");
    assert!(ini["b"].is_empty());
    for bad in ["[a\nx=1", "[a]\njust words", "[a]\n= 1", "[a]\n[a]\n"] {
        assert!(parse_ini(bad).is_err(), "{bad:?}");
    }
    // The error names the file and the line, never a value.
    let error = parse_profile("[basic]\nak = SECRETISH\nak = X\nsk = S\n", &profile)
        .unwrap_err()
        .to_string();
    assert!(error.contains("/p") && error.contains("line 3"), "{error}");
    assert!(!error.contains("SECRETISH"));
}

#[test]
fn refresh_at_80_percent_and_at_least_five_minutes_before_expiry() {
    let policy = RefreshPolicy::default();
    let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let at = |lifetime_secs: i64| {
        (policy.refresh_at(t0, t0 + TimeDelta::seconds(lifetime_secs)) - t0).num_seconds()
    };
    assert_eq!(at(3600), 2880); // 80 %
    assert_eq!(at(21600), 17280);
    assert_eq!(at(900), 600); // 5 min before expiry comes first
    assert_eq!(at(1500), 1200); // both the same
    assert_eq!(at(240), 120); // too short for both: half-way
    assert_eq!(at(0), 0);
    assert_eq!(at(-60), 0);
    let waits: Vec<u64> = (1..=8).map(|n| policy.backoff(n).as_secs()).collect();
    assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(policy.backoff(u32::MAX).as_secs(), 300);
}

/// A fake exchange: counts calls, answers from a script, and can be held until
/// released.
struct Fake {
    calls: Arc<AtomicU64>,
    clock: ManualClock,
    lifetime: TimeDelta,
    fail: Arc<std::sync::atomic::AtomicBool>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Exchange for Fake {
    fn exchange(&self) -> BoxFuture<'_, Result<Temporary, ChainError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.gate.acquire().await.unwrap().forget();
            if self.fail.load(Ordering::SeqCst) {
                return Err(ChainError::Exchange {
                    provider: PROVIDER_OIDC,
                    endpoint: "https://sts.example.com".into(),
                    detail: format!("refused (call {n})"),
                    unavailable: false,
                });
            }
            Ok(Temporary {
                credentials: Credentials::access_key(
                    format!("TEMP{n}"),
                    SecretString::new(format!("secret{n}")),
                    Some(SecretString::new(format!("token{n}"))),
                ),
                expires_at: self.clock.now() + self.lifetime,
            })
        })
    }
}

struct Harness {
    clock: ManualClock,
    calls: Arc<AtomicU64>,
    fail: Arc<std::sync::atomic::AtomicBool>,
    gate: Arc<tokio::sync::Semaphore>,
    refreshing: Arc<Refreshing>,
}

fn harness(lifetime_secs: i64, open: bool) -> Harness {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap());
    let calls = Arc::new(AtomicU64::new(0));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = Arc::new(tokio::sync::Semaphore::new(if open {
        tokio::sync::Semaphore::MAX_PERMITS
    } else {
        0
    }));
    let fake = Fake {
        calls: calls.clone(),
        clock: clock.clone(),
        lifetime: TimeDelta::seconds(lifetime_secs),
        fail: fail.clone(),
        gate: gate.clone(),
    };
    let refreshing = Arc::new(Refreshing::new(
        Box::new(fake),
        Arc::new(clock.clone()),
        RefreshPolicy::default(),
    ));
    Harness {
        clock,
        calls,
        fail,
        gate,
        refreshing,
    }
}

fn ak(credentials: &Credentials) -> String {
    credentials.access_key_id().unwrap().to_string()
}

#[tokio::test]
async fn cached_until_the_refresh_time() {
    let h = harness(3600, true);
    for _ in 0..5 {
        assert_eq!(ak(&h.refreshing.get().await.unwrap()), "TEMP1");
    }
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
    h.clock.advance(TimeDelta::seconds(2879));
    assert_eq!(ak(&h.refreshing.get().await.unwrap()), "TEMP1");
    h.clock.advance(TimeDelta::seconds(1));
    assert_eq!(ak(&h.refreshing.get().await.unwrap()), "TEMP2");
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
    assert_eq!(h.refreshing.exchanges(), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_exchange() {
    let h = harness(3600, false);
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let refreshing = h.refreshing.clone();
            tokio::spawn(async move { refreshing.get().await })
        })
        .collect();
    // Every caller is waiting on the one exchange in flight.
    while h.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    h.gate.add_permits(tokio::sync::Semaphore::MAX_PERMITS);
    for caller in callers {
        assert_eq!(ak(&caller.await.unwrap().unwrap()), "TEMP1");
    }
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);

    // A refresh in flight does not hold up callers while the current credentials
    // are still good; once it lands everyone gets the new ones.
    let h = harness(3600, false);
    h.gate.add_permits(1);
    assert_eq!(ak(&h.refreshing.get().await.unwrap()), "TEMP1");
    h.clock.advance(TimeDelta::seconds(3000));
    let refresher = {
        let refreshing = h.refreshing.clone();
        tokio::spawn(async move { refreshing.get().await })
    };
    while h.calls.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    for _ in 0..10 {
        assert_eq!(ak(&h.refreshing.get().await.unwrap()), "TEMP1");
    }
    h.gate.add_permits(1);
    assert_eq!(ak(&refresher.await.unwrap().unwrap()), "TEMP2");
    assert_eq!(ak(&h.refreshing.get().await.unwrap()), "TEMP2");
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_exchange_backs_off() {
    let h = harness(3600, true);
    h.fail.store(true, Ordering::SeqCst);
    let first = h.refreshing.get().await.unwrap_err();
    assert!(first.to_string().contains("call 1"), "{first}");
    // Meanwhile the last error, without calling again.
    for _ in 0..10 {
        assert_eq!(h.refreshing.get().await.unwrap_err(), first);
    }
    h.clock.advance(TimeDelta::seconds(9));
    assert_eq!(h.refreshing.get().await.unwrap_err(), first);
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
    h.clock.advance(TimeDelta::seconds(1));
    let second = h.refreshing.get().await.unwrap_err();
    assert!(second.to_string().contains("call 2"));
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
    // Doubled: 20 s now.
    h.clock.advance(TimeDelta::seconds(19));
    assert_eq!(h.refreshing.get().await.unwrap_err(), second);
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
    h.clock.advance(TimeDelta::seconds(1));
    h.fail.store(false, Ordering::SeqCst);
    assert_eq!(ak(&h.refreshing.get().await.unwrap()), "TEMP3");
    assert_eq!(h.calls.load(Ordering::SeqCst), 3);

    // A failed refresh keeps the current credentials while they are good, and backs
    // off; once they expire the error shows.
    h.clock.advance(TimeDelta::seconds(2880));
    h.fail.store(true, Ordering::SeqCst);
    assert_eq!(ak(&h.refreshing.get().await.unwrap()), "TEMP3");
    assert_eq!(h.calls.load(Ordering::SeqCst), 4);
    assert_eq!(ak(&h.refreshing.get().await.unwrap()), "TEMP3");
    assert_eq!(h.calls.load(Ordering::SeqCst), 4);
    h.clock.advance(TimeDelta::seconds(10));
    assert_eq!(ak(&h.refreshing.get().await.unwrap()), "TEMP3");
    assert_eq!(h.calls.load(Ordering::SeqCst), 5);
    // 3600 - 2890 - 30 (the use margin) seconds later they are no longer handed out.
    h.clock.advance(TimeDelta::seconds(680));
    assert!(h.refreshing.get().await.is_err());
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dcs-chain-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Counts what the chain asked to be built; every exchange is a fake.
#[derive(Default)]
struct FakeMaker {
    built: Mutex<Vec<String>>,
    clock: Option<ManualClock>,
}

impl MakeExchange for FakeMaker {
    fn oidc_sts(&self, _: &OidcSts) -> Box<dyn Exchange> {
        self.fake("oidc")
    }
    fn federal(&self, config: &Federal) -> Box<dyn Exchange> {
        self.fake(&format!("federal {}", config.idp_id))
    }
    fn pod_identity(&self, _: &PodIdentity) -> Box<dyn Exchange> {
        self.fake("pod")
    }
    fn metadata(&self, _: &Metadata) -> Box<dyn Exchange> {
        self.fake("metadata")
    }
}

impl FakeMaker {
    fn fake(&self, what: &str) -> Box<dyn Exchange> {
        self.built.lock().unwrap().push(what.to_string());
        Box::new(Fake {
            calls: Arc::new(AtomicU64::new(0)),
            clock: self.clock.clone().unwrap(),
            lifetime: TimeDelta::seconds(3600),
            fail: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            gate: Arc::new(tokio::sync::Semaphore::new(
                tokio::sync::Semaphore::MAX_PERMITS,
            )),
        })
    }
}

#[tokio::test]
async fn files_are_re_read_on_every_use() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap());
    let maker = Arc::new(FakeMaker {
        clock: Some(clock.clone()),
        ..FakeMaker::default()
    });
    let dir = temp_dir("dir");
    std::fs::write(dir.join("accessKey"), "DIRAK1").unwrap();
    std::fs::write(dir.join("secretKey"), "DIRSK1").unwrap();
    let chain = ChainCredentials::new(
        Provider::CredentialsDir(dir.clone()),
        maker.clone(),
        Arc::new(clock.clone()),
        RefreshPolicy::default(),
    );
    assert_eq!(ak(&chain.get().await.unwrap().credentials), "DIRAK1");
    std::fs::write(dir.join("accessKey"), "DIRAK2").unwrap();
    assert_eq!(ak(&chain.get().await.unwrap().credentials), "DIRAK2");
    std::fs::remove_file(dir.join("secretKey")).unwrap();
    assert!(matches!(
        chain.get().await,
        Err(ChainError::Credentials(
            CredentialsProblem::KeyMissing { .. }
        ))
    ));
    // A file above the bound is not read.
    std::fs::write(
        dir.join("secretKey"),
        "x".repeat(MAX_FILE_BYTES as usize + 1),
    )
    .unwrap();
    assert!(chain.get().await.is_err());

    let path = dir.join("credentials");
    std::fs::write(&path, "[basic]\nak = PROF1\nsk = S\n").unwrap();
    let chain = ChainCredentials::new(
        Provider::Profile(profile_at(path.to_str().unwrap())),
        maker.clone(),
        Arc::new(clock.clone()),
        RefreshPolicy::default(),
    );
    assert_eq!(ak(&chain.get().await.unwrap().credentials), "PROF1");
    std::fs::write(&path, "[basic]\nak = PROF2\nsk = S\n").unwrap();
    assert_eq!(ak(&chain.get().await.unwrap().credentials), "PROF2");
    // A federal profile exchanges, and keeps its cache while unchanged.
    std::fs::write(&path, "[basic]\nidp_id = one\nid_token_file = /t\n").unwrap();
    assert_eq!(ak(&chain.get().await.unwrap().credentials), "TEMP1");
    assert_eq!(ak(&chain.get().await.unwrap().credentials), "TEMP1");
    std::fs::write(
        &path,
        format!("[basic]\nidp_id = two\nid_token_file = /t\nproject_id = {PROJECT}\n"),
    )
    .unwrap();
    let found = chain.get().await.unwrap();
    assert_eq!(found.project_id.as_deref(), Some(PROJECT));
    assert_eq!(
        *maker.built.lock().unwrap(),
        ["federal one".to_string(), "federal two".to_string()]
    );
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        chain.get().await,
        Err(ChainError::Unreadable { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn exchanged_providers_build_their_exchange_once() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap());
    let maker = Arc::new(FakeMaker {
        clock: Some(clock.clone()),
        ..FakeMaker::default()
    });
    for vars in [&OIDC[..], &FEDERAL, &POD] {
        let provider = select(env(vars), no_files(), &ChainOptions::default())
            .unwrap()
            .unwrap();
        let chain = ChainCredentials::new(
            provider,
            maker.clone(),
            Arc::new(clock.clone()),
            RefreshPolicy::default(),
        );
        assert_eq!(ak(&chain.get().await.unwrap().credentials), "TEMP1");
        assert_eq!(ak(&chain.get().await.unwrap().credentials), "TEMP1");
    }
    let provider = select(env(&[]), no_files(), &metadata_on())
        .unwrap()
        .unwrap();
    let chain = ChainCredentials::new(
        provider,
        maker.clone(),
        Arc::new(clock.clone()),
        RefreshPolicy::default(),
    );
    assert_eq!(ak(&chain.get().await.unwrap().credentials), "TEMP1");
    assert_eq!(
        *maker.built.lock().unwrap(),
        ["oidc", "federal cce-cluster", "pod", "metadata"]
    );
}

#[test]
fn token_files_are_bounded_and_trimmed() {
    let dir = temp_dir("token");
    let path = dir.join("token");
    std::fs::write(&path, format!("  {JWT}\n")).unwrap();
    assert_eq!(read_token_file(PROVIDER_ENV, &path).unwrap().expose(), JWT);
    std::fs::write(&path, "\n").unwrap();
    assert!(read_token_file(PROVIDER_ENV, &path).is_err());
    std::fs::write(&path, "x".repeat(MAX_FILE_BYTES as usize + 1)).unwrap();
    let error = read_token_file(PROVIDER_ENV, &path)
        .unwrap_err()
        .to_string();
    assert!(error.contains("larger than"), "{error}");
    assert!(read_token_file(PROVIDER_ENV, &dir.join("missing")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

mod metadata {
    use std::sync::atomic::AtomicU32;

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, put};

    use super::*;

    #[derive(Clone, Default)]
    struct Script {
        token_status: u16,
        unauthorized_first: u32,
        no_agency: bool,
        puts: Arc<AtomicU32>,
        gets: Arc<AtomicU32>,
        seen_tokens: Arc<Mutex<Vec<Option<String>>>>,
    }

    async fn serve(script: Script) -> String {
        let put_script = script.clone();
        let app = Router::new()
            .route(
                "/meta-data/latest/api/token",
                put(move |headers: HeaderMap| {
                    let script = put_script.clone();
                    async move {
                        let n = script.puts.fetch_add(1, Ordering::SeqCst) + 1;
                        assert_eq!(headers["x-metadata-token-ttl-seconds"], "21600");
                        let status = StatusCode::from_u16(script.token_status).unwrap();
                        (status, format!("session-{n}"))
                    }
                }),
            )
            .route(
                "/openstack/latest/securitykey",
                get(move |headers: HeaderMap| {
                    let script = script.clone();
                    async move {
                        let n = script.gets.fetch_add(1, Ordering::SeqCst) + 1;
                        script.seen_tokens.lock().unwrap().push(
                            headers
                                .get("x-metadata-token")
                                .map(|v| v.to_str().unwrap().to_string()),
                        );
                        if script.no_agency {
                            return (
                                StatusCode::UNAUTHORIZED,
                                "Please configure Cloud Service Agency first".to_string(),
                            );
                        }
                        if n <= script.unauthorized_first {
                            return (StatusCode::UNAUTHORIZED, "expired".to_string());
                        }
                        (
                            StatusCode::OK,
                            r#"{"credential":{"access":"ECSAK","secret":"S","securitytoken":"T","expires_at":"2099-01-01T00:00:00.000000Z"}}"#.to_string(),
                        )
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn exchange(base_url: String) -> MetadataExchange {
        MetadataExchange::new(
            &Metadata {
                base_url,
                project_id: None,
            },
            "dcs-operator-test",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn session_token_then_security_key() {
        let script = Script {
            token_status: 200,
            ..Script::default()
        };
        let got = exchange(serve(script.clone()).await)
            .exchange()
            .await
            .unwrap();
        assert_eq!(ak(&got.credentials), "ECSAK");
        assert_eq!(
            *script.seen_tokens.lock().unwrap(),
            [Some("session-1".to_string())]
        );
    }

    #[tokio::test]
    async fn a_401_gets_a_new_session_token_once() {
        let script = Script {
            token_status: 200,
            unauthorized_first: 1,
            ..Script::default()
        };
        let got = exchange(serve(script.clone()).await)
            .exchange()
            .await
            .unwrap();
        assert_eq!(ak(&got.credentials), "ECSAK");
        assert_eq!(script.puts.load(Ordering::SeqCst), 2);
        let script = Script {
            token_status: 200,
            unauthorized_first: 2,
            ..Script::default()
        };
        assert!(
            exchange(serve(script.clone()).await)
                .exchange()
                .await
                .is_err()
        );
        assert_eq!(script.gets.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_agency_is_not_retried() {
        let script = Script {
            token_status: 200,
            no_agency: true,
            ..Script::default()
        };
        let error = exchange(serve(script.clone()).await)
            .exchange()
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("no agency"), "{error}");
        assert_eq!(script.gets.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn without_a_session_token_service() {
        for status in [404, 405, 503] {
            let script = Script {
                token_status: status,
                ..Script::default()
            };
            let got = exchange(serve(script.clone()).await)
                .exchange()
                .await
                .unwrap();
            assert_eq!(ak(&got.credentials), "ECSAK");
            assert_eq!(*script.seen_tokens.lock().unwrap(), [None]);
        }
        let script = Script {
            token_status: 500,
            ..Script::default()
        };
        assert!(exchange(serve(script).await).exchange().await.is_err());
    }
}

#[test]
fn no_secret_in_debug_or_describe() {
    let vars = [
        (ENV_ACCESS_KEY, "ENVAK"),
        (ENV_SECRET_KEY, "VERYSECRETSK"),
        (ENV_SECURITY_TOKEN, "VERYSECRETTOKEN"),
    ];
    let provider = select(env(&vars), no_files(), &ChainOptions::default())
        .unwrap()
        .unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap());
    let chain = ChainCredentials::new(
        provider.clone(),
        Arc::new(FakeMaker::default()),
        Arc::new(clock),
        RefreshPolicy::default(),
    );
    let shown = format!(
        "{provider:?} {} {chain:?} {}",
        provider.describe(),
        chain.identity()
    );
    assert!(shown.contains("ENVAK"), "{shown}");
    for secret in ["VERYSECRETSK", "VERYSECRETTOKEN"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let inline = [&OIDC[..2], &[(ENV_OIDC_ID_TOKEN, JWT)]].concat();
    let provider = select(env(&inline), no_files(), &ChainOptions::default())
        .unwrap()
        .unwrap();
    let shown = format!("{provider:?} {}", provider.describe());
    assert!(!shown.contains(JWT), "{shown}");
}
