//! The instance model against the documented example and the variants the real
//! API is known to send.

use dcs_operator::dcs::client::decode_json;
use dcs_operator::dcs::model::{
    DcsStatus, Instance, InstanceList, StatusClass, StringOrList, fault_description,
};

const EXAMPLE: &str = include_str!("../fixtures/query-instance-example.json");

#[test]
fn the_documented_example_decodes() {
    let instance: Instance = decode_json(EXAMPLE.as_bytes()).unwrap();
    assert_eq!(instance.name.as_deref(), Some("dcs-a11e"));
    assert_eq!(instance.engine.as_deref(), Some("Redis"));
    assert_eq!(instance.capacity, Some(2));
    assert_eq!(instance.capacity_bytes(), Some(2 << 30));
    assert_eq!(instance.ip.as_deref(), Some("192.168.3.100"));
    assert_eq!(instance.addresses(), vec!["192.168.3.100"]);
    assert_eq!(instance.port, Some(6379));
    assert_eq!(instance.status(), Some(DcsStatus::Running));
    assert_eq!(
        instance.instance_id.as_deref(),
        Some("68d5745e-6af2-40e4-945d-fe449be00148")
    );
    assert_eq!(instance.spec_code(), Some("dcs.single_node"));
    assert_eq!(instance.internal_version, None);
    assert_eq!(instance.error_code, None);
    assert_eq!(instance.max_memory_bytes(), Some(460 << 20));
    assert_eq!(instance.used_memory, Some(56));
    // Documented as an array, sent as a string in the example.
    assert_eq!(
        instance.available_zones,
        Some(StringOrList::One("XXXXXX".into()))
    );
    assert_eq!(instance.available_zones(), vec!["XXXXXX"]);
    assert_eq!(instance.maintain_begin.as_deref(), Some("22:00:00"));
}

#[test]
fn re_encoding_keeps_the_api_names_and_values_as_sent() {
    let instance: Instance = decode_json(EXAMPLE.as_bytes()).unwrap();
    let again = serde_json::to_value(&instance).unwrap();
    let original: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    for (key, value) in original.as_object().unwrap() {
        if value.is_null() {
            // Nulls are left out of what we print: absent and null mean the same.
            assert!(again.get(key).is_none(), "{key}");
        } else {
            assert_eq!(again.get(key), Some(value), "{key}");
        }
    }
}

#[test]
fn nulls_everywhere_and_missing_fields_are_fine() {
    let nulls = r#"{"name":null,"engine":null,"capacity":null,"ip":null,"port":null,"status":null,
        "available_zones":null,"max_memory":null,"capacity_minor":null,"instance_backup_policy":null}"#;
    let instance: Instance = decode_json(nulls.as_bytes()).unwrap();
    assert_eq!(instance, Instance::default());
    assert!(instance.addresses().is_empty());
    assert_eq!(instance.capacity_bytes(), None);
    let empty: Instance = decode_json(b"{}").unwrap();
    assert_eq!(empty, Instance::default());
}

#[test]
fn unknown_fields_are_ignored_and_arrays_accepted() {
    let text = r#"{"status":"RUNNING","available_zones":["az1","az2"],"brand_new_field":{"x":[1,2]},
        "features":{"support_acl":true},"tags":[{"key":"a","value":"b"}]}"#;
    let instance: Instance = decode_json(text.as_bytes()).unwrap();
    assert_eq!(instance.available_zones(), vec!["az1", "az2"]);
}

#[test]
fn sub_gb_capacity_from_capacity_minor() {
    let instance: Instance = decode_json(br#"{"capacity":0,"capacity_minor":".125"}"#).unwrap();
    assert_eq!(instance.capacity_bytes(), Some(128 << 20));
}

#[test]
fn cluster_ip_list() {
    let instance: Instance =
        decode_json(br#"{"ip":"192.168.0.1,192.168.0.2, 192.168.0.3","port":6379}"#).unwrap();
    assert_eq!(
        instance.addresses(),
        vec!["192.168.0.1", "192.168.0.2", "192.168.0.3"]
    );
    // `ip` itself stays the string the API gave.
    assert_eq!(
        instance.ip.as_deref(),
        Some("192.168.0.1,192.168.0.2, 192.168.0.3")
    );
}

#[test]
fn numeric_strings_are_accepted_like_the_sdk_and_others_are_clear_errors() {
    // Decision: like the official Python SDK (int(value)), a numeric string is accepted.
    let instance: Instance = decode_json(br#"{"port":"6379","capacity":" 2 "}"#).unwrap();
    assert_eq!(instance.port, Some(6379));
    assert_eq!(instance.capacity, Some(2));
    let error = decode_json::<Instance>(br#"{"port":"redis"}"#).unwrap_err();
    assert!(error.contains("port") && error.contains("redis"), "{error}");
    let error = decode_json::<Instance>(br#"{"port":6379.5}"#).unwrap_err();
    assert!(error.contains("port"), "{error}");
    let error = decode_json::<Instance>(br#"{"ip":42}"#).unwrap_err();
    assert!(error.contains("ip"), "{error}");
}

#[test]
fn list_answers() {
    let list: InstanceList = decode_json(
        br#"{"instance_num":2,"instances":[{"instance_id":"a","status":"CREATEFAILED"},{"instance_id":"b","sub_status":"normal"}]}"#,
    )
    .unwrap();
    assert_eq!(list.instance_num, Some(2));
    assert_eq!(list.instances.len(), 2);
    assert_eq!(
        list.instances[0].status().unwrap().class(),
        StatusClass::Failed
    );
    let nulls: InstanceList = decode_json(br#"{"instance_num":null,"instances":null}"#).unwrap();
    assert!(nulls.instances.is_empty());
}

#[test]
fn the_fault_table_has_human_text() {
    assert_eq!(
        fault_description("dcs.04.0003"),
        Some("Could not connect to the instance.")
    );
    assert!(fault_description("dcs.04.0004").unwrap().contains("master"));
}
