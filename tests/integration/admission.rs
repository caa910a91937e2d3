//! Bad input is refused clearly: every manifest in `tests/fixtures/invalid/` is
//! refused with the message its `# expect:` line names, offline, by the structural
//! schema and the CEL rules of the generated CRD; every one in
//! `tests/fixtures/invalid/accepted/` passes. What no schema can express is refused
//! in reconcile, naming the field. The fixture format is in docs/bad-input.md.
//!
//! Offline the structural part is a small validator of exactly the OpenAPI subset the
//! CRD uses (type, properties, required, pattern, maxLength/minLength, enum, items,
//! maxItems/minItems, minimum/maximum, nullable, list-type map keys), after the
//! schema defaults, with the API server's message wording; the CEL rules run in
//! kube-cel, the evaluator behind kube's `cel` feature. An update keeps the stored
//! status, as a write to the main resource does (status is a subresource), so the
//! transition rules keyed on `oldSelf.status.instanceId` see it on both sides. An
//! ignored test sends the same manifests to a real API server as dry-run requests
//! with strict field validation (an update's stored status written through the
//! status subresource first): `cargo test --test integration admission -- --ignored`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dcs_operator::controller::resolve::{SpecDefaults, resolve};
use dcs_operator::crd::{DcsInstanceSpec, crd_yaml};
use serde::Deserialize as _;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/invalid");

/// One fixture file: its header and its documents.
struct Fixture {
    path: PathBuf,
    /// What a user must see (substring of one of the refusals).
    expect: Option<String>,
    /// Only strict field validation refuses it (an unknown field is pruned otherwise).
    strict_only: bool,
    /// `# update:`: the first document is the object as stored, the second the update.
    update: bool,
    documents: Vec<Value>,
}

impl Fixture {
    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// (old, new) pairs: one per document, or the one update.
    fn requests(&self) -> Vec<(Option<&Value>, &Value)> {
        if self.update {
            assert_eq!(
                self.documents.len(),
                2,
                "{}: an update has two documents",
                self.name()
            );
            vec![(Some(&self.documents[0]), &self.documents[1])]
        } else {
            self.documents.iter().map(|doc| (None, doc)).collect()
        }
    }
}

fn load(dir: &Path) -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let header: Vec<&str> = text
                .lines()
                .take_while(|line| line.starts_with('#'))
                .collect();
            let field = |key: &str| {
                header
                    .iter()
                    .find_map(|line| line.strip_prefix(&format!("# {key}:")))
                    .map(|value| value.trim().to_string())
            };
            let documents = serde_yaml::Deserializer::from_str(&text)
                .map(|doc| Value::deserialize(doc).unwrap())
                .collect();
            Fixture {
                expect: field("expect"),
                strict_only: field("strict-only").as_deref() == Some("true"),
                update: field("update").is_some(),
                documents,
                path,
            }
        })
        .collect()
}

fn root_schema() -> Value {
    let crd: Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// What admission makes of one request.
#[derive(Debug, Default)]
struct Verdict {
    /// Refusals, in the API server's wording (structural) or the rule's message (CEL).
    refused: Vec<String>,
    /// Unknown fields: pruned by default, refused with fieldValidation=Strict.
    pruned: Vec<String>,
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The structural checks the API server runs (kube-openapi's validator), worded as it
/// words them, for the keywords the CRD uses. A keyword this does not know fails the
/// test rather than being skipped, so a schema change cannot silently outgrow it.
fn structural(schema: &Value, value: &Value, path: &str, verdict: &mut Verdict) {
    const KNOWN: &[&str] = &[
        "type",
        "properties",
        "required",
        "pattern",
        "maxLength",
        "minLength",
        "items",
        "maxItems",
        "minItems",
        "minimum",
        "maximum",
        "enum",
        "default",
        "nullable",
        "format",
        "description",
        "title",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
    ];
    if let Some(map) = schema.as_object() {
        for key in map.keys() {
            assert!(
                KNOWN.contains(&key.as_str()),
                "{path}: schema keyword {key} is not checked offline"
            );
        }
    }
    let actual = type_name(value);
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) {
            verdict.refused.push(format!(
                "{path}: Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                schema["type"].as_str().unwrap_or("object")
            ));
        }
        return;
    }
    if let Some(expected) = schema["type"].as_str() {
        let matches = expected == actual || (expected == "number" && actual == "integer");
        if !matches {
            verdict.refused.push(format!(
                "{path}: Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
            ));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(Value::to_string).collect();
        verdict.refused.push(format!(
            "{path}: Unsupported value: {value}: supported values: {}",
            supported.join(", ")
        ));
    }
    match value {
        Value::Number(number) => {
            let number = number.as_f64().unwrap();
            if let Some(max) = schema["maximum"].as_f64()
                && number > max
            {
                verdict.refused.push(format!(
                    "{path}: Invalid value: {number}: {path} in body should be less than or equal to {max}"
                ));
            }
            if let Some(min) = schema["minimum"].as_f64()
                && number < min
            {
                verdict.refused.push(format!(
                    "{path}: Invalid value: {number}: {path} in body should be greater than or equal to {min}"
                ));
            }
        }
        Value::String(text) => {
            // OpenAPI counts characters, not bytes.
            let length = text.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && length > max
            {
                verdict.refused.push(format!(
                    "{path}: Too long: may not be more than {max} bytes"
                ));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && length < min
            {
                verdict.refused.push(format!(
                    "{path}: Invalid value: {text:?}: {path} in body should be at least {min} chars long"
                ));
            }
            if let Some(pattern) = schema["pattern"].as_str()
                && !regex::Regex::new(pattern).unwrap().is_match(text)
            {
                verdict.refused.push(format!(
                    "{path}: Invalid value: {text:?}: {path} in body should match '{pattern}'"
                ));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                verdict.refused.push(format!(
                    "{path}: Too many: {}: must have at most {max} items",
                    items.len()
                ));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                verdict.refused.push(format!(
                    "{path}: Invalid value: {}: {path} in body should have at least {min} items",
                    items.len()
                ));
            }
            if schema["x-kubernetes-list-type"] == "map" {
                list_map_duplicates(schema, items, path, verdict);
            }
            for (i, item) in items.iter().enumerate() {
                structural(&schema["items"], item, &format!("{path}[{i}]"), verdict);
            }
        }
        Value::Object(map) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap();
                if !map.contains_key(key) {
                    verdict
                        .refused
                        .push(format!("{}: Required value", join(path, key)));
                }
            }
            let properties = schema["properties"].as_object();
            for (key, child) in map {
                // The API server validates apiVersion, kind and metadata itself.
                if path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
                    continue;
                }
                match properties.and_then(|p| p.get(key)) {
                    Some(child_schema) => {
                        structural(child_schema, child, &join(path, key), verdict)
                    }
                    None => verdict
                        .pruned
                        .push(format!("unknown field \"{}\"", join(path, key))),
                }
            }
        }
        _ => {}
    }
}

/// `x-kubernetes-list-type: map`: the second and later items with the same key values
/// are refused as the API server words it (`field.Duplicate` with the keys as a map).
fn list_map_duplicates(schema: &Value, items: &[Value], path: &str, verdict: &mut Verdict) {
    let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
        .as_array()
        .expect("a list-type map names its keys")
        .iter()
        .map(|key| key.as_str().unwrap())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let key: Vec<String> = keys.iter().map(|k| item[*k].to_string()).collect();
        if !seen.insert(key.clone()) {
            let shown: Vec<String> = keys
                .iter()
                .zip(&key)
                .map(|(name, value)| format!("{name:?}:{value}"))
                .collect();
            verdict.refused.push(format!(
                "{path}[{i}]: Duplicate value: map[string]interface {{}}{{{}}}",
                shown.join(", ")
            ));
        }
    }
}

/// The offline admission check: structural schema, then the CEL rules (with oldSelf
/// for an update). Both run, as in the API server, so both kinds of message show.
struct Admission {
    schema: Value,
    compiled: kube_cel::CompiledSchema,
    cel: kube_cel::Validator,
}

impl Admission {
    fn new() -> Self {
        let schema = root_schema();
        let compiled = kube_cel::compile_schema(&schema);
        assert!(
            !compiled.has_errors(),
            "a CEL rule does not compile: {:?}",
            compiled.compilation_errors()
        );
        Self {
            schema,
            compiled,
            cel: kube_cel::Validator::new(),
        }
    }

    fn check(&self, old: Option<&Value>, new: &Value) -> Verdict {
        let mut verdict = Verdict::default();
        // A write to the main resource keeps the stored status (a subresource).
        let mut new = new.clone();
        if let Some(old) = old {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    new.as_object_mut().unwrap().remove("status");
                }
            }
        }
        // The API server fills in schema defaults while decoding, before validating.
        let new = &kube_cel::apply_defaults(&self.schema, &new);
        structural(&self.schema, new, "", &mut verdict);
        // The API server prunes unknown fields before the CEL rules see the object.
        let pruned = prune(&self.schema, new);
        let old = old.map(|old| prune(&self.schema, &kube_cel::apply_defaults(&self.schema, old)));
        if let Err(errors) = self
            .cel
            .validate_compiled(&self.compiled, &pruned, old.as_ref())
        {
            verdict.refused.extend(errors.iter().map(|e| e.to_string()));
        }
        verdict
    }
}

fn prune(schema: &Value, value: &Value) -> Value {
    match (value, schema["properties"].as_object()) {
        (Value::Object(map), Some(properties)) => Value::Object(
            map.iter()
                .filter_map(|(key, child)| match properties.get(key) {
                    Some(child_schema) => Some((key.clone(), prune(child_schema, child))),
                    None if ["apiVersion", "kind", "metadata"].contains(&key.as_str()) => {
                        Some((key.clone(), child.clone()))
                    }
                    None => None,
                })
                .collect(),
        ),
        _ => value.clone(),
    }
}

#[test]
fn invalid_manifests_are_refused_with_their_message() {
    let admission = Admission::new();
    let fixtures = load(Path::new(FIXTURES));
    assert!(
        fixtures.len() >= 20,
        "only {} invalid fixtures",
        fixtures.len()
    );
    let mut refused = 0;
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let name = fixture.name();
        let expect = fixture
            .expect
            .clone()
            .unwrap_or_else(|| panic!("{name}: no `# expect:` line"));
        if let (Some(old), _) = fixture.requests()[0] {
            let before = admission.check(None, old);
            assert!(
                before.refused.is_empty() && before.pruned.is_empty(),
                "{name}: the stored object must itself be valid: {before:?}"
            );
        }
        let ok = fixture.requests().into_iter().all(|(old, new)| {
            let verdict = admission.check(old, new);
            let seen = if fixture.strict_only {
                // Offline (like a non-strict API server) the field is pruned, not refused.
                verdict.refused.is_empty() && verdict.pruned.iter().any(|p| p.contains(&expect))
            } else {
                verdict.refused.iter().any(|r| r.contains(&expect))
            };
            if !seen {
                failures.push(format!("{name}: expected {expect:?}, got {verdict:?}"));
            }
            seen
        });
        refused += usize::from(ok);
    }
    println!("invalid manifests refused {refused} of {}", fixtures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(refused, fixtures.len());
}

#[test]
fn valid_manifests_are_accepted_and_resolve() {
    let admission = Admission::new();
    let fixtures = load(&Path::new(FIXTURES).join("accepted"));
    assert!(fixtures.len() >= 5);
    let defaults = SpecDefaults {
        region: Some("cn-north-4".into()),
        poll_interval: Duration::from_secs(60),
        ..SpecDefaults::default()
    };
    let mut accepted = 0;
    for fixture in &fixtures {
        let name = fixture.name();
        assert!(
            fixture.expect.is_none(),
            "{name}: an accepted fixture expects nothing"
        );
        for (old, new) in fixture.requests() {
            for request in old.into_iter().chain([new]) {
                let verdict = admission.check(None, request);
                assert!(
                    verdict.refused.is_empty() && verdict.pruned.is_empty(),
                    "{name}: {verdict:?}"
                );
            }
            let verdict = admission.check(old, new);
            assert!(verdict.refused.is_empty(), "{name}: {verdict:?}");
            // What admission lets through, reconcile accepts too (given a default region).
            let spec = DcsInstanceSpec::deserialize(&new["spec"]).unwrap();
            let object_name = new["metadata"]["name"].as_str().unwrap();
            resolve(&spec, object_name, &defaults)
                .unwrap_or_else(|e| panic!("{name}: admitted but reconcile refuses: {e}"));
            accepted += 1;
        }
    }
    println!("valid manifests accepted {accepted} of {accepted}");
}

/// Every DcsInstance in examples/ is admitted as it stands: an existing (Observe)
/// manifest keeps working, and a new example cannot be one the API server refuses.
#[test]
fn the_examples_are_admitted() {
    let admission = Admission::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    let mut admitted = 0;
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let object = Value::deserialize(document).unwrap();
            if object["kind"] != "DcsInstance" {
                continue;
            }
            let verdict = admission.check(None, &object);
            assert!(
                verdict.refused.is_empty() && verdict.pruned.is_empty(),
                "{}: {verdict:?}",
                path.display()
            );
            admitted += 1;
        }
    }
    assert!(admitted >= 2, "only {admitted} DcsInstances in examples/");
}

#[test]
fn every_cel_rule_has_a_fixture() {
    let fixtures = load(Path::new(FIXTURES));
    let expects: Vec<String> = fixtures.iter().filter_map(|f| f.expect.clone()).collect();
    let mut messages = Vec::new();
    collect_rule_messages(&root_schema(), &mut messages);
    assert_eq!(messages.len(), 21, "{messages:?}");
    for message in messages {
        assert!(
            expects.iter().any(|e| message.contains(e.as_str())),
            "no fixture refused by the rule {message:?}"
        );
    }
}

fn collect_rule_messages(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for rule in map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push(rule["message"].as_str().unwrap().to_string());
            }
            for (key, child) in map {
                if key != "x-kubernetes-validations" {
                    collect_rule_messages(child, out);
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_rule_messages(item, out)),
        _ => {}
    }
}

/// What no schema can express is refused in reconcile (InvalidSpec), naming the field.
#[test]
fn reconcile_refuses_what_admission_lets_through() {
    let admission = Admission::new();
    let defaults = SpecDefaults {
        poll_interval: Duration::from_secs(60),
        ..SpecDefaults::default()
    };
    let cases = [
        // https:// passes the CEL rule; the URL parser finds the rest.
        (
            r#"{"endpoint": "https://user:secret@dcs.example.com"}"#,
            "spec.endpoint",
        ),
        (
            r#"{"endpoint": "https://dcs.example.com/?region=x"}"#,
            "spec.endpoint",
        ),
        (
            r#"{"endpoint": "https://dcs.example.com/#top"}"#,
            "spec.endpoint",
        ),
        (
            r#"{"endpoint": "https://dcs example.com"}"#,
            "spec.endpoint",
        ),
        // Whether the operator has a default region is not the schema's to know.
        (r#"{}"#, "spec.region or spec.endpoint is required"),
    ];
    for (fields, field) in cases {
        let mut spec: Value = serde_json::from_str(fields).unwrap();
        spec["instanceId"] = "68d5745e-6af2-40e4-945d-fe449be00148".into();
        let object = serde_json::json!({
            "apiVersion": "dcs.operator.dev/v1alpha1",
            "kind": "DcsInstance",
            "metadata": {"name": "cache"},
            "spec": spec,
        });
        let verdict = admission.check(None, &object);
        assert!(
            verdict.refused.is_empty(),
            "{fields}: admission refuses it: {verdict:?}"
        );
        let spec = DcsInstanceSpec::deserialize(&object["spec"]).unwrap();
        let error = resolve(&spec, "cache", &defaults).unwrap_err();
        assert!(
            error.to_string().contains(field),
            "{fields}: {error:?} does not name {field}"
        );
    }
}

/// Against a real API server: every invalid fixture is refused by a dry-run create
/// (or, for an update, a dry-run replace of an object created first) with strict
/// field validation, with the expected message; every accepted one is admitted.
#[tokio::test]
#[ignore = "needs a Kubernetes cluster: cargo test --test integration admission -- --ignored"]
async fn real_api_server_refuses_the_same_manifests() {
    let client = kube::Client::try_default()
        .await
        .expect("no Kubernetes configuration: point the current kubeconfig at a test cluster");
    e2e::install_crd(&client).await;
    let namespace = e2e::create_namespace(&client).await;
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        e2e::send_fixtures(&client, &namespace),
    ))
    .await;
    e2e::delete_namespace(&client, &namespace).await;
    match outcome {
        Ok(failures) => assert!(failures.is_empty(), "{}", failures.join("\n")),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

mod e2e {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    use kube::runtime::wait::{await_condition, conditions};
    use kube::{Client, CustomResourceExt};
    use serde_json::{Value, json};

    use super::{FIXTURES, load};

    const FIELD_MANAGER: &str = "dcs-operator-admission-test";

    /// Left installed afterwards, as tests/e2e.rs does: deleting the CRD deletes every
    /// DcsInstance in the cluster.
    pub async fn install_crd(client: &Client) {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd = dcs_operator::crd::DcsInstance::crd();
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("cannot apply the CRD");
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds, &name, conditions::is_crd_established()),
        )
        .await
        .expect("the CRD is not Established after 30s")
        .expect("cannot watch the CRD");
    }

    pub async fn create_namespace(client: &Client) -> String {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("dcs-admission-{}", &suffix[..8]);
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("cannot create the test namespace");
        name
    }

    pub async fn delete_namespace(client: &Client, name: &str) {
        if let Err(error) = Api::<Namespace>::all(client.clone())
            .delete(name, &DeleteParams::background())
            .await
        {
            eprintln!("admission e2e: cannot delete namespace {name}: {error}");
        }
    }

    /// `POST` (create) or `PUT` (replace) with dryRun=All and fieldValidation=Strict:
    /// kube's PostParams has no field validation, so the request is built by hand.
    async fn send(
        client: &Client,
        namespace: &str,
        method: &str,
        object: &Value,
    ) -> Result<(), String> {
        let base = format!("/apis/dcs.operator.dev/v1alpha1/namespaces/{namespace}/dcsinstances");
        let uri = match method {
            "PUT" => format!("{base}/{}", object["metadata"]["name"].as_str().unwrap()),
            _ => base,
        };
        let request = http::Request::builder()
            .method(method)
            .uri(format!(
                "{uri}?dryRun=All&fieldValidation=Strict&fieldManager={FIELD_MANAGER}"
            ))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(object).unwrap())
            .unwrap();
        match client.request::<Value>(request).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) => Err(status.message),
            Err(error) => panic!("the API server did not answer: {error}"),
        }
    }

    /// The failures, one line each; empty when every fixture behaved.
    pub async fn send_fixtures(client: &Client, namespace: &str) -> Vec<String> {
        let mut failures = Vec::new();
        let mut refused = 0;
        let invalid = load(std::path::Path::new(FIXTURES));
        let accepted = load(&std::path::Path::new(FIXTURES).join("accepted"));
        for (fixture, expect) in invalid
            .iter()
            .map(|f| (f, f.expect.clone()))
            .chain(accepted.iter().map(|f| (f, None)))
        {
            for (old, new) in fixture.requests() {
                let outcome = match old {
                    None => send(client, namespace, "POST", new).await,
                    Some(old) => update(client, namespace, old, new).await,
                };
                match (&expect, outcome) {
                    (Some(expect), Err(message)) if message.contains(expect.as_str()) => {
                        refused += 1
                    }
                    (None, Ok(())) => {}
                    (expect, outcome) => failures.push(format!(
                        "{}: expected {}, got {outcome:?}",
                        fixture.name(),
                        expect
                            .as_deref()
                            .map_or("acceptance".into(), |e| format!("{e:?}"))
                    )),
                }
            }
        }
        println!(
            "invalid manifests refused {refused} of {} by the API server",
            invalid.len()
        );
        failures
    }

    /// Creates the stored object for real (and writes its status through the status
    /// subresource, which a create ignores), then sends the update as a dry run.
    async fn update(
        client: &Client,
        namespace: &str,
        old: &Value,
        new: &Value,
    ) -> Result<(), String> {
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &kube::api::ApiResource::erase::<dcs_operator::crd::DcsInstance>(&()),
        );
        let stored: kube::api::DynamicObject = serde_json::from_value(old.clone()).unwrap();
        let mut created = api
            .create(&PostParams::default(), &stored)
            .await
            .expect("cannot create the stored object of an update fixture");
        if let Some(status) = old.get("status") {
            let name = old["metadata"]["name"].as_str().unwrap();
            let mut with_status = created.clone();
            with_status.data["status"] = status.clone();
            created = api
                .replace_status(name, &PostParams::default(), &with_status)
                .await
                .expect("cannot write the stored status of an update fixture");
        }
        let mut new = new.clone();
        new["metadata"]["resourceVersion"] = created.metadata.resource_version.clone().into();
        let outcome = send(client, namespace, "PUT", &new).await;
        let name = old["metadata"]["name"].as_str().unwrap();
        let _ = api.delete(name, &DeleteParams::default()).await;
        outcome
    }
}

/// The simulator's verifier, given requests nobody signed with the key: refused, never
/// a panic. A signed request stays accepted whatever unsigned headers ride along.
mod verifier {
    use chrono::{TimeZone, Utc};
    use dcs_operator::dcs::signer;
    use proptest::prelude::*;

    const ACCESS_KEY: &str = "EXAMPLEAKDCS00000001";
    const SECRET_KEY: &str = "ExampleSecretKeyDcs000000000000000000001";
    const PATH: &str =
        "/v1.0/0123456789abcdef0123456789abcdef/instances/68d5745e-6af2-40e4-945d-fe449be00148";
    const HOST: &str = "dcs.cn-north-4.myhuaweicloud.com";
    const DATE: &str = "20240115T083000Z";
    /// show_instance_v1_minimal of tests/fixtures/signing-vectors.json.
    const SIGNATURE: &str = "517aae9cff1dbd91946726089c76d55213b8bace0626e5e93473af6998eabb9e";

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("Host".to_string()),
            Just("X-Sdk-Date".to_string()),
            Just("Authorization".to_string()),
            Just("Content-Type".to_string()),
            Just("X-Project-Id".to_string()),
            "[A-Za-z][-_A-Za-z0-9]{0,15}",
        ]
    }

    fn verify(headers: &[(String, String)]) -> Result<String, signer::VerifyError> {
        let now = Utc.with_ymd_and_hms(2024, 1, 15, 8, 30, 0).unwrap();
        signer::verify(
            signer::RequestParts {
                method: "GET",
                path: PATH,
                query: &[],
                headers,
                body: b"",
            },
            |ak| (ak == ACCESS_KEY).then(|| SECRET_KEY.to_string()),
            now,
        )
    }

    fn signed() -> Vec<(String, String)> {
        vec![
            ("X-Sdk-Date".into(), DATE.into()),
            ("Host".into(), HOST.into()),
            (
                "Authorization".into(),
                format!(
                    "SDK-HMAC-SHA256 Access={ACCESS_KEY}, SignedHeaders=host;x-sdk-date, Signature={SIGNATURE}"
                ),
            ),
        ]
    }

    #[test]
    fn the_vector_verifies() {
        assert_eq!(verify(&signed()).unwrap(), ACCESS_KEY);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_header_sets_with_a_forged_signature_are_refused(
            signature in "[0-9a-f]{64}",
            signed_headers in prop::collection::vec("[a-z-]{1,12}", 0..4),
            extra in prop::collection::vec((header_name(), ".{0,24}"), 0..6),
        ) {
            prop_assume!(signature != SIGNATURE);
            let mut names = signed_headers;
            names.extend(["host".to_string(), "x-sdk-date".to_string()]);
            let mut headers = vec![
                ("X-Sdk-Date".to_string(), DATE.to_string()),
                ("Host".to_string(), HOST.to_string()),
                ("Authorization".to_string(), format!(
                    "SDK-HMAC-SHA256 Access={ACCESS_KEY}, SignedHeaders={}, Signature={signature}",
                    names.join(";")
                )),
            ];
            headers.extend(extra);
            prop_assert!(verify(&headers).is_err());
        }

        #[test]
        fn unsigned_headers_do_not_matter_and_signed_ones_do(
            extra in prop::collection::vec(("X-[A-Z][a-z]{0,10}", ".{0,24}"), 0..6),
            host in "[a-z0-9.-]{1,40}",
        ) {
            let mut headers = signed();
            headers.extend(extra);
            let accepted = verify(&headers).ok();
            prop_assert_eq!(accepted.as_deref(), Some(ACCESS_KEY));
            prop_assume!(host != HOST);
            for header in headers.iter_mut().filter(|(name, _)| name == "Host") {
                header.1 = host.clone();
            }
            prop_assert!(verify(&headers).is_err());
        }
    }
}
