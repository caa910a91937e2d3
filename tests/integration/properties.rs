//! Property tests: whatever bytes the network hands us, decoding never panics.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dcs_operator::connection_secret::Owner;
use dcs_operator::controller::budget::{ApiBudget, GateKey, GateScope};
use dcs_operator::dcs::client::{MAX_RETRY_AFTER, decode_json, parse_retry_after};
use dcs_operator::dcs::model::{Instance, InstanceList};
use dcs_operator::dcs::signer;
use dcs_operator::dcs::{ApiError, ClientConfig, Credentials, DcsClient, DcsError, Endpoint};
use dcs_operator::plan::{self, Observation, PlanInput};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("ip".to_string()),
                    Just("port".to_string()),
                    Just("status".to_string()),
                    Just("capacity".to_string()),
                    Just("capacity_minor".to_string()),
                    Just("available_zones".to_string()),
                    Just("instances".to_string()),
                    Just("error_code".to_string()),
                    Just("error_msg".to_string()),
                    Just("code".to_string()),
                    ".{0,8}",
                ],
                inner,
                0..8
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_json::<Instance>(&bytes);
        let _ = decode_json::<InstanceList>(&bytes);
        let api = ApiError::from_body(500, &bytes, None);
        prop_assert!(api.error_code.is_some());
    }

    #[test]
    fn arbitrary_json_never_panics_the_decoders(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if let Ok(instance) = decode_json::<Instance>(&bytes) {
            let _ = instance.addresses();
            let _ = instance.capacity_bytes();
            let _ = instance.max_memory_bytes();
            let _ = instance.status().map(|s| s.class());
        }
        let _ = decode_json::<InstanceList>(&bytes);
        let _ = ApiError::from_body(400, &bytes, Some("r".into()));
    }

    #[test]
    fn canonical_query_round_trips_through_the_wire(pairs in prop::collection::vec(("[a-z_]{1,6}", ".{0,10}"), 0..6)) {
        let pairs: Vec<(String, String)> = pairs;
        let wire = signer::canonical_query(&pairs);
        prop_assert_eq!(signer::canonical_query(&signer::parse_query(&wire)), wire);
    }

    #[test]
    fn verifier_never_panics_on_arbitrary_headers(auth in ".{0,80}", date in ".{0,20}", path in ".{0,30}", query in ".{0,30}") {
        let headers = vec![
            ("Authorization".to_string(), auth),
            ("X-Sdk-Date".to_string(), date),
            ("Host".to_string(), "h".to_string()),
        ];
        let query = signer::parse_query(&query);
        let result = signer::verify(
            signer::RequestParts { method: "GET", path: &path, query: &query, headers: &headers, body: b"" },
            |_| Some("sk".to_string()),
            chrono::Utc::now(),
        );
        prop_assert!(result.is_err());
    }
}

/// A Retry-After header value as an endpoint might send it: digits of any length,
/// signs, fractions, dates in any year, or any visible text.
fn retry_after_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,40}",
        "-[0-9]{1,20}",
        "[0-9]{1,5}\\.[0-9]{1,5}",
        (1u32..9999, 0u32..28, 0u32..24).prop_map(|(year, day, hour)| {
            format!("Mon, {:02} Jan {year:04} {hour:02}:00:00 GMT", day + 1)
        }),
        "[ -~]{0,64}",
    ]
}

/// Any instant chrono can represent, the extremes included.
fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::MAX_UTC),
        (-8_000_000_000_000i64..8_000_000_000_000i64)
            .prop_map(|secs| DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)),
    ]
}

fn any_number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        Just(serde_json::json!(i64::MIN)),
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(1e308)),
        "-?[0-9]{1,30}".prop_map(serde_json::Value::from),
    ]
}

/// A tiny server answering every request with 429 and `header` as Retry-After.
fn throttling_server(header: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut socket, _)) = listener.accept() {
            use std::io::{Read, Write};
            let mut buffer = [0u8; 8192];
            let _ = socket.read(&mut buffer);
            let body = r#"{"error_code":"APIG.0308","error_msg":"throttled"}"#;
            let _ = write!(
                socket,
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {header}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever Retry-After says and whenever it arrives, the pause is at most 15
    /// minutes and nothing panics: not the parser, not the budget, not the plan.
    #[test]
    fn retry_after_never_panics_and_is_clamped(value in retry_after_value(), now in any_instant()) {
        let parsed = parse_retry_after(&value, now);
        prop_assert!(parsed.is_none_or(|d| d <= MAX_RETRY_AFTER));
        let budget = ApiBudget::new(10.0, 10);
        let gate = GateKey {
            scope: GateScope::Origin("https://evil.example:443".into()),
            principal: "ak:AK".into(),
            origin: "https://evil.example:443".into(),
        };
        let _ = budget.admit(&gate, "fp", now);
        let error = DcsError::Throttled { retry_after: parsed, api: ApiError { status: 429, ..Default::default() } };
        budget.record::<()>(&gate, "fp", &Err(error.clone()), now);
        let _ = budget.admit(&gate, "fp", now);
        let _ = budget.admit(&gate, "fp", dcs_operator::clock::later(now, Duration::from_secs(901)));
        budget.prune(now);
        let observation = Observation { at: now, result: Err(error), consecutive_failures: 7 };
        for batched in [false, true] {
            let _ = plan::next_poll_at(&observation, Duration::MAX, "uid", batched);
            let _ = plan::next_poll_at(&observation, Duration::from_secs(10), "uid", batched);
        }
    }

    /// Any number in any numeric field of an answer, planned at any time with any
    /// poll interval: no panic, and the status fits the schema.
    #[test]
    fn wild_numbers_never_panic_the_plan(
        numbers in prop::collection::vec(any_number(), 6),
        now in any_instant(),
        at in any_instant(),
        poll in prop_oneof![Just(Duration::MAX), (0u64..u64::MAX).prop_map(Duration::from_secs)],
    ) {
        let body = serde_json::json!({
            "instance_id": "68d5745e-6af2-40e4-945d-fe449be00148",
            "status": "RUNNING",
            "ip": "10.0.0.1",
            "port": numbers[0],
            "capacity": numbers[1],
            "max_memory": numbers[2],
            "used_memory": numbers[3],
            "capacity_minor": numbers[4],
            "charging_mode": numbers[5],
        });
        let Ok(instance) = decode_json::<Instance>(&serde_json::to_vec(&body).unwrap()) else {
            return Ok(());
        };
        let owner = Owner { api_version: "v".into(), kind: "DcsInstance".into(), name: "n".into(), uid: "u".into() };
        let observation = Observation { at, result: Ok(std::sync::Arc::new(instance)), consecutive_failures: 0 };
        for batched in [false, true] {
            let planned = plan::plan(&PlanInput {
                namespace: "ns",
                owner: &owner,
                generation: Some(1),
                current: None,
                observation: Some(&observation),
                problems: &[],
                connection_secret_name: "n-dcs",
                password: None,
                existing_secret_type: None,
                poll_interval: poll,
                batched,
                managed_instance_id: None,
                managed: None,
                now,
            });
            let status = serde_json::to_value(&planned.status).unwrap().to_string();
            prop_assert!(status.len() < 64 << 10);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The same over real HTTP: whatever Retry-After header an endpoint sends, the
    /// client reports a throttle of at most 15 minutes.
    #[test]
    fn the_client_clamps_any_retry_after_header(value in retry_after_value()) {
        let url = throttling_server(value);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let result = runtime.block_on(async {
            let client = DcsClient::new(ClientConfig::default(), std::sync::Arc::new(dcs_operator::clock::SystemClock)).unwrap();
            client
                .show_instance(
                    &Endpoint::parse(&url).unwrap(),
                    &Credentials::access_key("AK", "SK", None),
                    "0123456789abcdef0123456789abcdef",
                    "68d5745e-6af2-40e4-945d-fe449be00148",
                )
                .await
        });
        match result {
            Err(DcsError::Throttled { retry_after, .. }) => {
                prop_assert!(retry_after.is_none_or(|d| d <= MAX_RETRY_AFTER));
            }
            other => prop_assert!(false, "expected a throttle, got {other:?}"),
        }
    }
}
