//! The committed CRD is what the Rust types generate, and it holds the rules the
//! API server relies on.

use dcs_operator::crd::crd_yaml;
use serde_json::{Value, json};

#[test]
fn committed_crd_matches_the_generated_one() {
    let committed = include_str!("../../crds/dcsinstance.yaml");
    let generated = crd_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/dcsinstance.yaml is stale: run `cargo run -- crd > crds/dcsinstance.yaml`"
    );
}

fn root_schema() -> Value {
    let crd: Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn walk<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) => {
            if map.get("type").and_then(|t| t.as_str()) == Some("string") {
                out.push((path.clone(), value));
            }
            for (key, child) in map {
                walk(child, format!("{path}.{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// An enum of strings bounds a string as well as maxLength does: the API server
/// refuses any other value, and its CEL cost estimator takes the longest value as
/// the string's size (`estimateMaxStringEnumLength` in k8s.io/apiserver/pkg/cel).
fn is_string_enum(node: &Value) -> bool {
    node["enum"]
        .as_array()
        .is_some_and(|values| !values.is_empty() && values.iter().all(Value::is_string))
}

#[test]
fn every_string_in_the_schema_has_a_max_length() {
    let schema = root_schema();
    let mut strings = Vec::new();
    walk(&schema, String::new(), &mut strings);
    assert!(strings.len() > 20);
    let mut enums = 0;
    for (path, node) in strings {
        // metadata is validated by the API server itself.
        if path.contains(".metadata")
            || node.get("format").and_then(|f| f.as_str()) == Some("date-time")
        {
            continue;
        }
        if is_string_enum(node) {
            enums += 1;
            continue;
        }
        assert!(node.get("maxLength").is_some(), "{path} has no maxLength");
    }
    // managementPolicy, deletionPolicy, instance.engine, instance.capacity.
    assert_eq!(enums, 4);
}

#[test]
fn names_columns_and_rules() {
    let crd: Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
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
            ("Version", 1),
            ("Policy", 1),
        ]
    );
    let policy = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Policy")
        .unwrap();
    assert_eq!(policy["jsonPath"], ".spec.managementPolicy");
    assert_eq!(policy["type"], "string");
    let text = crd_yaml().unwrap();
    for rule in [
        "self == oldSelf",
        "!(has(self.region) && has(self.endpoint))",
        "duration(self) >= duration('10s')",
        "has(self.connectionSecret) == has(oldSelf.connectionSecret)",
        "(has(self.managementPolicy) && self.managementPolicy == 'Manage') || has(self.instanceId)",
        "!has(oldSelf.instanceId) || has(self.instanceId)",
        "!has(oldSelf.status) || !has(oldSelf.status.instanceId)",
    ] {
        let in_yaml = rule.replace('\'', "''");
        assert!(
            text.contains(rule) || text.contains(&in_yaml),
            "missing rule {rule}"
        );
    }
    // No schema default for pollInterval: the operator's flag must be able to apply.
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(spec["properties"]["pollInterval"].get("default").is_none());
    // instanceId is required unless Manage: a CEL rule, not the schema's `required`.
    assert!(spec.get("required").is_none(), "{}", spec["required"]);
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"];
    assert_eq!(status["properties"]["instanceId"]["type"], "string");
    assert_eq!(status["properties"]["instanceId"]["maxLength"], 36);
}

/// The two policies are enums with the safe choice as the schema default: an
/// existing manifest that names neither is Observe + Orphan, as before.
#[test]
fn policies_are_enums_with_safe_defaults() {
    let schema = root_schema();
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["managementPolicy"]["type"], "string");
    assert_eq!(spec["managementPolicy"]["default"], "Observe");
    assert_eq!(
        spec["managementPolicy"]["enum"],
        json!(["Observe", "Manage"])
    );
    assert_eq!(spec["deletionPolicy"]["type"], "string");
    assert_eq!(spec["deletionPolicy"]["default"], "Orphan");
    assert_eq!(spec["deletionPolicy"]["enum"], json!(["Orphan", "Delete"]));
    let instance = &spec["instance"]["properties"];
    assert_eq!(instance["engine"]["enum"], json!(["Redis", "Memcached"]));
    let capacities = instance["capacity"]["enum"].as_array().unwrap();
    assert_eq!(capacities.len(), dcs_operator::crd::Capacity::ALL.len());
    for (value, capacity) in capacities.iter().zip(dcs_operator::crd::Capacity::ALL) {
        assert_eq!(value, &serde_json::to_value(capacity).unwrap());
    }
}

/// spec.instance.tags is a list-type map keyed by `key`: the API server refuses a
/// duplicate key and server-side apply merges tags by key.
#[test]
fn instance_tags_are_a_list_map_keyed_by_key() {
    let schema = root_schema();
    let tags = &schema["properties"]["spec"]["properties"]["instance"]["properties"]["tags"];
    assert_eq!(tags["type"], "array");
    assert_eq!(tags["x-kubernetes-list-type"], "map");
    assert_eq!(tags["x-kubernetes-list-map-keys"], json!(["key"]));
    assert_eq!(tags["maxItems"], 19);
    // A list-map key must be required (or defaulted) in the items.
    assert_eq!(tags["items"]["required"], json!(["key"]));
    assert_eq!(tags["items"]["properties"]["key"]["maxLength"], 36);
    assert_eq!(tags["items"]["properties"]["value"]["maxLength"], 43);
}

// ---------------------------------------------------------------------------------
// The CEL cost estimate. The API server prices every string and list a rule reads at
// its schema bound, and an unbounded one at the size of a whole request (3 MiB); a
// rule over an unbounded input can exceed the per-rule cost limit and the whole CRD
// is then refused at install. Offline evaluation of the rules cannot notice. Two
// analyses run over every rule at its scope:
//
// * kube-cel's static analysis (`analyze_rule`): `MissingBounds` (a comprehension
//   over a list without maxItems), `CostExceeded` (estimate over the 1M budget) and
//   `WrongScope` (a variable a CRD rule does not have). Its estimate takes a string
//   without maxLength as 1000 characters, so it does not flag unbounded strings.
// * Therefore also: every value the rule consumes (a select chain from `self` or
//   `oldSelf`, or either one alone), resolved in the schema, must be bounded: a
//   string by maxLength (or an enum, as the API server counts it), a list by
//   maxItems and bounded items, an object by bounded properties. A presence test
//   (`has(...)`) and `size(...)` read no content and cost the same whatever the
//   length, so they need no bound: that is what lets the root rule read
//   `size(self.metadata.name)` (metadata strings are unbounded for the estimator).

use kube_cel::cel::common::ast::{EntryExpr, Expr};
use kube_cel::{ScopeContext, WarningKind};

/// One problem with one rule.
#[derive(Debug)]
struct Finding {
    path: String,
    rule: String,
    /// kube-cel's kind of warning; None for an unbounded input found here.
    kind: Option<WarningKind>,
    problem: String,
}

/// Every `x-kubernetes-validations` rule of a schema, with its scope's JSON path and
/// its scope's schema node.
fn rules_of<'a>(schema: &'a Value, path: String, out: &mut Vec<(String, &'a Value, String)>) {
    let Some(map) = schema.as_object() else {
        return;
    };
    for rule in map
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push((
            path.clone(),
            schema,
            rule["rule"].as_str().unwrap().to_string(),
        ));
    }
    for (key, child) in map
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        rules_of(child, format!("{path}.{key}"), out);
    }
    if let Some(items) = map.get("items") {
        rules_of(items, format!("{path}[]"), out);
    }
}

/// What a rule consumes: the field paths (from its scope) of the values it reads,
/// each with whether it is read for its content (false: only its size is taken).
fn consumed(expr: &Expr, out: &mut Vec<(Vec<String>, bool)>) {
    match expr {
        Expr::Ident(name) if name == "self" || name == "oldSelf" => out.push((Vec::new(), true)),
        Expr::Select(select) => match reference(expr) {
            // A presence test reads nothing; an unresolvable chain (a field of a
            // comprehension variable) is checked through its iteration range.
            Some(_) if select.test => {}
            Some(path) => out.push((path, true)),
            None => consumed(&select.operand.expr, out),
        },
        Expr::Call(call) if call.func_name == "size" => {
            let operands = call
                .target
                .iter()
                .map(|t| &t.expr)
                .chain(call.args.iter().map(|a| &a.expr));
            for operand in operands {
                match reference(operand) {
                    Some(path) => out.push((path, false)),
                    None => consumed(operand, out),
                }
            }
        }
        Expr::Call(call) => {
            for operand in call
                .target
                .iter()
                .map(|t| &t.expr)
                .chain(call.args.iter().map(|a| &a.expr))
            {
                consumed(operand, out);
            }
        }
        Expr::Comprehension(comprehension) => {
            consumed(&comprehension.iter_range.expr, out);
            consumed(&comprehension.accu_init.expr, out);
            consumed(&comprehension.loop_cond.expr, out);
            consumed(&comprehension.loop_step.expr, out);
            consumed(&comprehension.result.expr, out);
        }
        Expr::List(list) => list.elements.iter().for_each(|e| consumed(&e.expr, out)),
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(entry) = &entry.expr {
                    consumed(&entry.key.expr, out);
                    consumed(&entry.value.expr, out);
                }
            }
        }
        Expr::Struct(object) => {
            for entry in &object.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    consumed(&field.value.expr, out);
                }
            }
        }
        _ => {}
    }
}

/// The field path of `self.a.b` or `oldSelf.a.b` (empty for `self` alone).
fn reference(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Ident(name) if name == "self" || name == "oldSelf" => Some(Vec::new()),
        Expr::Select(select) => {
            let mut path = reference(&select.operand.expr)?;
            path.push(select.field.clone());
            Some(path)
        }
        _ => None,
    }
}

/// Why a schema node is not bounded, if it is not.
fn unbounded(node: &Value, path: &str) -> Option<String> {
    match node["type"].as_str() {
        Some("string") => {
            let bounded = node.get("maxLength").is_some()
                || is_string_enum(node)
                || matches!(
                    node["format"].as_str(),
                    Some("date" | "date-time" | "duration")
                );
            (!bounded).then(|| format!("{path}: a string without maxLength"))
        }
        Some("array") => {
            if node.get("maxItems").is_none() {
                return Some(format!("{path}: a list without maxItems"));
            }
            unbounded(&node["items"], &format!("{path}[]"))
        }
        Some("object") => {
            if node.get("additionalProperties").is_some() && node.get("maxProperties").is_none() {
                return Some(format!("{path}: a map without maxProperties"));
            }
            node["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .find_map(|(key, child)| unbounded(child, &format!("{path}.{key}")))
        }
        _ => None,
    }
}

/// Resolves a field path from a scope node. `metadata` at the root is the API
/// server's own: name and generateName, strings without a bound.
fn resolve<'a>(
    scope: &'a Value,
    is_root: bool,
    fields: &[String],
    metadata: &'a Value,
) -> Option<&'a Value> {
    let mut node = scope;
    for (i, field) in fields.iter().enumerate() {
        node = match node["properties"].get(field.as_str()) {
            Some(child) => child,
            None if is_root && i == 0 && field == "metadata" => metadata,
            None => return None,
        };
    }
    Some(node)
}

/// Everything wrong with the rules of a schema: kube-cel's warnings and the
/// unbounded inputs.
fn cost_findings(schema: &Value) -> Vec<Finding> {
    cost_findings_counted(schema).0
}

/// Also how many values the rules read for their content (all found bounded or not).
fn cost_findings_counted(schema: &Value) -> (Vec<Finding>, usize) {
    let mut content_reads = 0;
    let metadata = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "generateName": {"type": "string"}},
    });
    let mut rules = Vec::new();
    rules_of(schema, String::new(), &mut rules);
    let mut findings = Vec::new();
    for (path, scope, rule) in rules {
        let mut report = |kind: Option<WarningKind>, problem: String| {
            findings.push(Finding {
                path: path.clone(),
                rule: rule.clone(),
                kind,
                problem,
            })
        };
        let compiled = kube_cel::compile_schema(scope);
        // MissingBounds, CostExceeded or WrongScope: each one is a finding.
        for warning in kube_cel::analyze_rule(&rule, &compiled, ScopeContext::CrdValidation) {
            let problem = format!("kube-cel {:?}: {}", warning.kind, warning.message);
            report(Some(warning.kind), problem);
        }
        let program = kube_cel::cel::Program::compile(&rule)
            .unwrap_or_else(|e| panic!("{path}: {rule:?} does not parse: {e:?}"));
        let mut reads = Vec::new();
        consumed(&program.expression().expr, &mut reads);
        for (fields, content) in reads {
            let shown = if fields.is_empty() {
                "self".to_string()
            } else {
                fields.join(".")
            };
            match resolve(scope, path.is_empty(), &fields, &metadata) {
                None => report(
                    None,
                    format!("reads {shown}, which the schema does not declare"),
                ),
                Some(node) if content => {
                    content_reads += 1;
                    if let Some(why) = unbounded(node, &shown) {
                        report(None, format!("reads an unbounded input: {why}"));
                    }
                }
                Some(_) => {}
            }
        }
    }
    (findings, content_reads)
}

#[test]
fn the_cel_cost_estimate_reports_no_unbounded_input() {
    let schema = root_schema();
    let mut rules = Vec::new();
    rules_of(&schema, String::new(), &mut rules);
    assert_eq!(rules.len(), 21, "every rule is analysed");
    let (findings, content_reads) = cost_findings_counted(&schema);
    // Not vacuous: the root rules alone compare 16 fields of self and oldSelf.
    assert!(content_reads >= 40, "only {content_reads} reads seen");
    assert!(
        findings.is_empty(),
        "{}",
        findings
            .iter()
            .map(|f| format!("{} {:?}: {}", f.path, f.rule, f.problem))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The analysis can fail: unbounded inputs are found, bounded ones are not.
#[test]
fn the_cost_analysis_finds_unbounded_inputs() {
    // An unbounded string read by a rule; with maxLength the same rule is fine.
    let mut string = json!({
        "type": "object",
        "properties": {"endpoint": {
            "type": "string",
            "x-kubernetes-validations": [{"rule": "self.startsWith('https://')", "message": "m"}],
        }},
    });
    let findings = cost_findings(&string);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0]
            .problem
            .contains("self: a string without maxLength"),
        "{findings:?}"
    );
    string["properties"]["endpoint"]["maxLength"] = json!(256);
    assert!(cost_findings(&string).is_empty());

    // kube-cel's own check: a comprehension over a list without maxItems.
    let list = json!({
        "type": "object",
        "properties": {"zones": {"type": "array", "items": {"type": "string", "maxLength": 8}}},
        "x-kubernetes-validations": [{"rule": "self.zones.all(z, z != 'x')", "message": "m"}],
    });
    let findings = cost_findings(&list);
    assert!(
        findings
            .iter()
            .any(|f| f.kind == Some(WarningKind::MissingBounds)),
        "{findings:?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f.problem.contains("zones: a list without maxItems")),
        "{findings:?}"
    );

    // size() and has() need no bound; reading the content does.
    let sized = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "other": {"type": "string"}},
        "x-kubernetes-validations": [
            {"rule": "!has(self.other) || size(self.name) <= 10", "message": "m"},
        ],
    });
    assert!(cost_findings(&sized).is_empty());

    // The real CRD with one bound removed: the rules reading it are found.
    let mut crd = root_schema();
    let spec = &mut crd["properties"]["spec"]["properties"];
    spec["endpoint"]
        .as_object_mut()
        .unwrap()
        .remove("maxLength");
    spec["instance"]["properties"]["availabilityZones"]
        .as_object_mut()
        .unwrap()
        .remove("maxItems");
    spec["managementPolicy"]
        .as_object_mut()
        .unwrap()
        .remove("enum");
    let findings = cost_findings(&crd);
    let found = |path: &str, what: &str| {
        findings
            .iter()
            .any(|f| f.path == path && f.problem.contains(what))
    };
    // The endpoint rule itself, and the root rule fixing the location under Manage.
    assert!(
        found(".spec.endpoint", "self: a string without maxLength"),
        "{findings:?}"
    );
    assert!(
        found("", "spec.endpoint: a string without maxLength"),
        "{findings:?}"
    );
    assert!(
        found(
            "",
            "spec.instance.availabilityZones: a list without maxItems"
        ),
        "{findings:?}"
    );
    assert!(
        found(".spec", "managementPolicy: a string without maxLength"),
        "{findings:?}"
    );
}
