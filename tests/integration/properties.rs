//! Property tests: whatever bytes the network hands us, decoding never panics.

use dcs_operator::dcs::ApiError;
use dcs_operator::dcs::client::decode_json;
use dcs_operator::dcs::model::{Instance, InstanceList};
use dcs_operator::dcs::signer;
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
