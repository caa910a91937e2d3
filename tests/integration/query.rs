//! `dcs-operator query` against the simulator over loopback: the printed object and
//! the documented exit code for every error class.

use std::sync::Arc;

use clap::Parser;
use dcs_operator::cli::{Cli, Command};
use dcs_operator::clock::SystemClock;
use dcs_operator::dcs::sim::{Fault, FaultKind, SimConfig, SimHandle, Simulator, load_instances};
use dcs_operator::query::{exit, run};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const SESSION_CACHE: &str = "3f7a1c2e-5b8d-4e6f-9a0b-1c2d3e4f5a6b";

async fn simulator() -> SimHandle {
    let instances = load_instances(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/sim-instances.yaml"
    )))
    .unwrap();
    let config = SimConfig {
        instances,
        ..SimConfig::with_default_keys()
    };
    Simulator::start(
        config,
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn good_keys() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HUAWEICLOUD_SDK_AK", SimConfig::DEFAULT_ACCESS_KEY),
        ("HUAWEICLOUD_SDK_SK", SimConfig::DEFAULT_SECRET_KEY),
    ]
}

async fn query(
    sim: &SimHandle,
    instance: &str,
    keys: &[(&str, &str)],
    extra: &[&str],
) -> (i32, String, String) {
    // A trailing slash on the endpoint is harmless.
    let endpoint = format!("{}/", sim.base_url());
    let mut argv = vec![
        "dcs-operator",
        "query",
        "--endpoint",
        &endpoint,
        "--project-id",
        PROJECT,
        "--instance-id",
        instance,
    ];
    argv.extend_from_slice(extra);
    let Command::Query(args) = Cli::parse_from(argv).command else {
        panic!("not a query")
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&args, env(keys), &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn prints_the_instance_with_the_api_names() {
    let sim = simulator().await;
    let (code, out, _) = query(&sim, SESSION_CACHE, &good_keys(), &[]).await;
    assert_eq!(code, exit::OK);
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(printed.is_object());
    assert_eq!(printed["instance_id"], SESSION_CACHE);
    assert_eq!(printed["ip"], "192.168.0.10");
    assert_eq!(printed["port"], 6379);
    assert_eq!(printed["status"], "RUNNING");
    let (code, out, _) = query(&sim, SESSION_CACHE, &good_keys(), &["--output", "yaml"]).await;
    assert_eq!(code, exit::OK);
    let printed: serde_json::Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(printed["ip"], "192.168.0.10");
}

#[tokio::test]
async fn cluster_ip_stays_the_string_the_api_gave() {
    let sim = simulator().await;
    let cluster = sim
        .state()
        .entries()
        .into_iter()
        .find(|e| e["ip"].as_str().is_some_and(|ip| ip.contains(',')))
        .expect("the example file has a cluster");
    let id = cluster["instance_id"].as_str().unwrap().to_string();
    let (code, out, _) = query(&sim, &id, &good_keys(), &[]).await;
    assert_eq!(code, exit::OK);
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["ip"], cluster["ip"]);
}

#[tokio::test]
async fn exit_codes_per_error_class() {
    let sim = simulator().await;
    let (code, out, err) = query(
        &sim,
        "00000000-0000-0000-0000-000000000000",
        &good_keys(),
        &[],
    )
    .await;
    assert_eq!(code, exit::INSTANCE_NOT_FOUND);
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["error"]["error_code"], "DCS.3022");
    assert_eq!(printed["error"]["http_status"], 404);
    assert!(printed["error"]["request_id"].is_string());
    assert!(err.contains("DCS.3022"));

    let wrong = [
        ("HUAWEICLOUD_SDK_AK", SimConfig::DEFAULT_ACCESS_KEY),
        ("HUAWEICLOUD_SDK_SK", "wrong"),
    ];
    let (code, out, _) = query(&sim, SESSION_CACHE, &wrong, &[]).await;
    assert_eq!(code, exit::AUTH);
    assert!(out.contains("APIG.0301"));
    assert!(!out.contains("wrong") || !out.contains("HUAWEICLOUD_SDK_SK"));

    let (code, _, err) = query(&sim, SESSION_CACHE, &[], &[]).await;
    assert_eq!(code, exit::USAGE);
    assert!(err.contains("HUAWEICLOUD_SDK_AK"));

    sim.state().inject_fault(Fault::times(
        FaultKind::Status {
            status: 429,
            error_code: "APIG.0308".into(),
            error_msg: "The throttling threshold has been reached".into(),
            retry_after: Some(2),
        },
        1,
    ));
    assert_eq!(
        query(&sim, SESSION_CACHE, &good_keys(), &[]).await.0,
        exit::THROTTLED
    );
    sim.state().inject_fault(Fault::times(
        FaultKind::Status {
            status: 503,
            error_code: "DCS.5000".into(),
            error_msg: "unavailable".into(),
            retry_after: None,
        },
        1,
    ));
    assert_eq!(
        query(&sim, SESSION_CACHE, &good_keys(), &[]).await.0,
        exit::UNAVAILABLE
    );
    sim.state()
        .inject_fault(Fault::times(FaultKind::Malformed, 1));
    assert_eq!(
        query(&sim, SESSION_CACHE, &good_keys(), &[]).await.0,
        exit::DECODE
    );
    // The simulator is healthy again afterwards.
    assert_eq!(
        query(&sim, SESSION_CACHE, &good_keys(), &[]).await.0,
        exit::OK
    );

    let endpoint_missing = Cli::parse_from([
        "dcs-operator",
        "query",
        "--endpoint",
        "ftp://x",
        "--project-id",
        PROJECT,
        "--instance-id",
        SESSION_CACHE,
    ]);
    let Command::Query(args) = endpoint_missing.command else {
        panic!()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        run(&args, env(&good_keys()), &mut out, &mut err).await,
        exit::USAGE
    );
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let endpoint = format!("http://{addr}");
    let Command::Query(args) = Cli::parse_from([
        "dcs-operator",
        "query",
        "--endpoint",
        &endpoint,
        "--project-id",
        PROJECT,
        "--instance-id",
        SESSION_CACHE,
    ])
    .command
    else {
        panic!()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        run(&args, env(&good_keys()), &mut out, &mut err).await,
        exit::UNAVAILABLE
    );
}

#[test]
fn the_binary_exits_with_the_documented_code() {
    // Credentials missing: the binary itself says so and exits 2, without the network.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dcs-operator"))
        .args([
            "query",
            "--region",
            "cn-north-4",
            "--project-id",
            PROJECT,
            "--instance-id",
            SESSION_CACHE,
        ])
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .env_remove("HUAWEICLOUD_AUTH_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(exit::USAGE));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HUAWEICLOUD_SDK_AK"));
}
