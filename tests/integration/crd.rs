//! The committed CRD is what the Rust types generate, and it holds the rules the
//! API server relies on.

use dcs_operator::crd::crd_yaml;

#[test]
fn committed_crd_matches_the_generated_one() {
    let committed = include_str!("../../crds/dcsinstance.yaml");
    let generated = crd_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/dcsinstance.yaml is stale: run `cargo run -- crd > crds/dcsinstance.yaml`"
    );
}

fn walk<'a>(
    value: &'a serde_json::Value,
    path: String,
    out: &mut Vec<(String, &'a serde_json::Value)>,
) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("type").and_then(|t| t.as_str()) == Some("string") {
                out.push((path.clone(), value));
            }
            for (key, child) in map {
                walk(child, format!("{path}.{key}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_string_in_the_schema_has_a_max_length() {
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut strings = Vec::new();
    walk(schema, String::new(), &mut strings);
    assert!(strings.len() > 20);
    for (path, node) in strings {
        // metadata is validated by the API server itself.
        if path.contains(".metadata")
            || node.get("format").and_then(|f| f.as_str()) == Some("date-time")
        {
            continue;
        }
        assert!(node.get("maxLength").is_some(), "{path} has no maxLength");
    }
}

#[test]
fn names_columns_and_rules() {
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
    assert_eq!(crd["metadata"]["name"], "dcsinstances.dcs.operator.dev");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "dcs");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<(&str, i64)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        columns,
        vec![
            ("Status", 0),
            ("IP", 0),
            ("Port", 0),
            ("Capacity", 0),
            ("Error", 0),
            ("Ready", 0),
            ("Age", 0),
            ("Engine", 1),
            ("Version", 1)
        ]
    );
    let text = crd_yaml().unwrap();
    for rule in [
        "self == oldSelf",
        "!(has(self.region) && has(self.endpoint))",
        "duration(self) >= duration('10s')",
        "has(self.connectionSecret) == has(oldSelf.connectionSecret)",
    ] {
        assert!(text.contains(rule), "missing rule {rule}");
    }
    // No schema default for pollInterval: the operator's flag must be able to apply.
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(spec["properties"]["pollInterval"].get("default").is_none());
    assert_eq!(spec["required"], serde_json::json!(["instanceId"]));
}
