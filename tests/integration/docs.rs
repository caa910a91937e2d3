//! Keeps the documentation honest: every relative link in README.md and docs/*.md
//! resolves (file and, for Markdown targets, heading anchor), every long flag of
//! `dcs-operator run` is documented in docs/configuration.md, the README stays
//! short, and examples/managed-dcsinstance.yaml is what docs/managing.md says: a
//! DcsInstance the API server admits (schema and CEL rules, offline) whose create
//! the demo simulator accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{ArgAction, CommandFactory};

use dcs_operator::cli::Cli;

const README_MAX_LINES: usize = 180;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every docs/*.md.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The lines of a Markdown text outside fenced code blocks (``` or ~~~), with their
/// 1-based line numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match fence {
            Some(marker) => {
                if trimmed.starts_with(marker) {
                    fence = None;
                }
            }
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => out.push((index + 1, line)),
        }
    }
    out
}

/// The line without its inline code spans (`` `[a](b)` `` is not a link).
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The targets of every inline link `[text](target)` and image `![alt](target)` in
/// the prose of a Markdown text, with their line numbers.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    for (number, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            // `[text](target "title")`: the target is the first word.
            let target = after[..end].split_whitespace().next().unwrap_or_default();
            let target = target.trim_start_matches('<').trim_end_matches('>');
            targets.push((number, target.to_string()));
            rest = &after[end..];
        }
    }
    targets
}

/// The anchor GitHub gives a heading: its text lower-cased, every character but
/// letters, digits, spaces, `-` and `_` dropped, spaces turned into `-`. Inline code
/// keeps its text, a link keeps its text.
fn github_slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // [text](url) → text
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor the headings of a Markdown text produce (a repeated heading gets
/// `-1`, `-2`, … as on GitHub).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let trimmed = line.trim_start();
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !trimmed[hashes..].starts_with(' ') {
            continue;
        }
        let heading = trimmed[hashes..].trim().trim_end_matches('#').trim();
        let slug = github_slug(heading);
        let count = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    out
}

/// What is wrong with every relative link of one Markdown file (empty: nothing).
fn broken_links(file: &Path) -> Vec<String> {
    let text = read(file);
    let dir = file.parent().unwrap();
    let mut problems = Vec::new();
    for (line, target) in link_targets(&text) {
        if target.starts_with("http://")
            || target.starts_with("https://")
            || target.starts_with("mailto:")
        {
            continue;
        }
        let where_ = format!("{}:{line}: ({target})", file.display());
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !resolved.exists() {
            problems.push(format!("{where_}: {} does not exist", resolved.display()));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if resolved.extension().is_none_or(|ext| ext != "md") {
            problems.push(format!(
                "{where_}: an anchor into a file that is not Markdown"
            ));
            continue;
        }
        let known = anchors(&read(&resolved));
        if !known.contains(anchor) {
            problems.push(format!(
                "{where_}: no heading in {} has the anchor #{anchor} (known: {})",
                resolved.display(),
                known.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    problems
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let files = markdown_files();
    assert!(files.len() > 2, "README.md and docs/*.md: {files:?}");
    let problems: Vec<String> = files.iter().flat_map(|f| broken_links(f)).collect();
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// The long flags of `dcs-operator run`, straight from clap: the `run` subcommand's
/// own arguments and the global ones it inherits (`--log-format`, `--log-level`).
fn run_flags() -> BTreeSet<String> {
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("a `run` subcommand");
    let is_flag_to_document = |arg: &&clap::Arg| {
        !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
    };
    let own = run.get_arguments().filter(is_flag_to_document);
    let global = cli
        .get_arguments()
        .filter(|arg| arg.is_global_set())
        .filter(is_flag_to_document);
    own.chain(global)
        .filter_map(|arg| arg.get_long().map(str::to_string))
        .collect()
}

/// Whether `--flag` appears in the text as a whole flag (not as the start of a
/// longer one: `--namespace` is not found in `--namespace-concurrency`).
fn mentions_flag(text: &str, long: &str) -> bool {
    let flag = format!("--{long}");
    text.match_indices(&flag).any(|(at, _)| {
        let next = text[at + flag.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn every_run_flag_is_in_configuration_md() {
    let flags = run_flags();
    for expected in [
        "namespace",
        "namespace-concurrency",
        "dcs-connect-timeout",
        "metrics-instance-series",
        "log-format",
        "log-level",
    ] {
        assert!(
            flags.contains(expected),
            "clap lost --{expected}: {flags:?}"
        );
    }
    let configuration = read(&root().join("docs/configuration.md"));
    let missing: Vec<&String> = flags
        .iter()
        .filter(|long| !mentions_flag(&configuration, long))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not mention these `dcs-operator run` flags: {missing:?}"
    );
}

#[test]
fn the_readme_is_short() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, at most {README_MAX_LINES}: move details to docs/"
    );
}

#[test]
fn the_checks_themselves_work() {
    assert_eq!(
        github_slug("Check your credentials first: `dcs-operator query`"),
        "check-your-credentials-first-dcs-operator-query"
    );
    assert_eq!(
        github_slug("Admin API (`/_sim/`, no authentication, loopback only)"),
        "admin-api-_sim-no-authentication-loopback-only"
    );
    assert_eq!(
        github_slug("Several replicas: leader election"),
        "several-replicas-leader-election"
    );
    assert_eq!(github_slug("See [the docs](x.md) now"), "see-the-docs-now");

    let text = "# Title\n\n## Twice\n\n## Twice\n\n```sh\n# not a heading\n[no](link.md)\n```\n\
                See [a](b.md#c), ![img](d.png) and `[code](e.md)`.\n";
    assert_eq!(
        anchors(text),
        ["title", "twice", "twice-1"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let targets: Vec<String> = link_targets(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["b.md#c", "d.png"]);

    assert!(mentions_flag("`--namespace NS`", "namespace"));
    assert!(!mentions_flag("`--namespace-concurrency N`", "namespace"));
}

/// The documents of an example manifest.
fn example_documents(name: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize as _;
    let text = read(&root().join("examples").join(name));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_json::Value::deserialize(document).expect(name))
        .filter(|document| !document.is_null())
        .collect()
}

/// The structural part of admission for the keywords the CRD uses: type, required,
/// unknown fields, enum, pattern, lengths, item counts and ranges. A keyword this
/// does not know fails the test rather than being skipped (the full validator, with
/// the API server's wording, is tests/integration/admission.rs).
fn structural_problems(
    schema: &serde_json::Value,
    value: &serde_json::Value,
    path: &str,
) -> Vec<String> {
    use serde_json::Value;
    const KNOWN: &[&str] = &[
        "type",
        "properties",
        "required",
        "items",
        "enum",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "nullable",
        "default",
        "format",
        "description",
        "title",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
    ];
    let mut problems = Vec::new();
    for key in schema.as_object().into_iter().flat_map(|map| map.keys()) {
        assert!(
            KNOWN.contains(&key.as_str()),
            "{path}: schema keyword {key} is not checked here"
        );
    }
    if value.is_null() && schema["nullable"] == Value::Bool(true) {
        return problems;
    }
    let type_ok = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some(other) => panic!("{path}: type {other} is not checked here"),
    };
    if !type_ok {
        problems.push(format!("{path}: not of type {}", schema["type"]));
        return problems;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::String(text) => {
            let length = text.chars().count() as u64;
            if schema["maxLength"].as_u64().is_some_and(|max| length > max)
                || schema["minLength"].as_u64().is_some_and(|min| length < min)
            {
                problems.push(format!("{path}: length {length} out of bounds"));
            }
            if let Some(pattern) = schema["pattern"].as_str()
                && !regex::Regex::new(pattern).unwrap().is_match(text)
            {
                problems.push(format!("{path}: {text:?} does not match {pattern}"));
            }
        }
        Value::Number(number) => {
            let number = number.as_f64().unwrap();
            if schema["minimum"].as_f64().is_some_and(|min| number < min)
                || schema["maximum"].as_f64().is_some_and(|max| number > max)
            {
                problems.push(format!("{path}: {number} out of range"));
            }
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            if schema["maxItems"].as_u64().is_some_and(|max| count > max)
                || schema["minItems"].as_u64().is_some_and(|min| count < min)
            {
                problems.push(format!("{path}: {count} items out of bounds"));
            }
            for (index, item) in items.iter().enumerate() {
                problems.extend(structural_problems(
                    &schema["items"],
                    item,
                    &format!("{path}[{index}]"),
                ));
            }
        }
        Value::Object(map) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap();
                if !map.contains_key(key) {
                    problems.push(format!("{path}.{key}: required"));
                }
            }
            for (key, child) in map {
                // The API server checks apiVersion, kind and metadata itself.
                if path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
                    continue;
                }
                match schema["properties"].get(key) {
                    Some(child_schema) => problems.extend(structural_problems(
                        child_schema,
                        child,
                        &format!("{path}.{key}"),
                    )),
                    None => problems.push(format!("{path}.{key}: unknown field")),
                }
            }
        }
        _ => {}
    }
    problems
}

#[test]
fn the_managed_example_is_admitted_and_the_simulator_accepts_its_create() {
    use dcs_operator::crd::{DcsInstance, DeletionPolicy, ManagementPolicy, crd_yaml};
    use dcs_operator::lifecycle::{OWNER_TAG_KEY, naming::default_instance_name};
    use serde_json::{Value, json};

    let documents = example_documents("managed-dcsinstance.yaml");
    let of_kind =
        |kind: &str| -> Vec<&Value> { documents.iter().filter(|d| d["kind"] == kind).collect() };
    let (secrets, objects) = (of_kind("Secret"), of_kind("DcsInstance"));
    assert_eq!((secrets.len(), objects.len(), documents.len()), (1, 1, 2));
    let manifest = objects[0];

    // It reads as a DcsInstance, and nothing in it is dropped on the way (a
    // misspelt field would be ignored by serde and pruned by the API server).
    let object: DcsInstance = serde_json::from_value(manifest.clone()).expect("a DcsInstance");
    assert_eq!(
        &serde_json::to_value(&object).unwrap(),
        manifest,
        "examples/managed-dcsinstance.yaml does not round-trip through DcsInstance"
    );

    // Admission, offline: the structural schema, then the CEL rules (with defaults).
    let crd: Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let problems = structural_problems(schema, manifest, "");
    assert!(
        problems.is_empty(),
        "the schema refuses the example: {problems:?}"
    );
    let compiled = kube_cel::compile_schema(schema);
    assert!(
        !compiled.has_errors(),
        "{:?}",
        compiled.compilation_errors()
    );
    let cel = kube_cel::Validator::new();
    if let Err(errors) = cel.validate_compiled(&compiled, manifest, None) {
        panic!("a CEL rule refuses the example: {errors:?}");
    }
    // Once the instance exists, its zones are fixed; before, they may be fixed.
    let mut created = manifest.clone();
    created["status"] = json!({"instanceId": "5e6f7a8b-2c3d-4e5f-8a9b-0c1d2e3f4a5b"});
    let mut moved = created.clone();
    moved["spec"]["instance"]["availabilityZones"] = json!(["cn-north-4c"]);
    assert!(
        cel.validate_compiled(&compiled, &moved, Some(&created))
            .is_err(),
        "changing the zones of a created instance must be refused"
    );
    let mut unmoved = manifest.clone();
    unmoved["spec"]["instance"]["availabilityZones"] = json!(["cn-north-4c"]);
    if let Err(errors) = cel.validate_compiled(&compiled, &unmoved, Some(manifest)) {
        panic!("zones must stay editable before the instance exists: {errors:?}");
    }

    // What docs/managing.md's demo relies on.
    let spec = &object.spec;
    assert_eq!(spec.management_policy, ManagementPolicy::Manage);
    assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
    assert!(
        spec.instance_id.is_none(),
        "the example creates its instance"
    );
    assert!(
        spec.region.is_none() && spec.endpoint.is_none() && spec.credentials_secret_ref.is_none(),
        "demo mode: the simulator is the default endpoint, with its own keys"
    );
    let sim = dcs_operator::dcs::sim::load_instances(&root().join("examples/sim-instances.yaml"))
        .expect("examples/sim-instances.yaml");
    assert_eq!(
        spec.project_id.as_deref(),
        Some(sim[0].project_id.as_str()),
        "the project of examples/sim-instances.yaml"
    );
    let reference = spec
        .password_secret_ref
        .as_ref()
        .expect("passwordSecretRef");
    let secret = secrets[0];
    assert_eq!(secret["metadata"]["name"], reference.name.as_str());
    let password = secret["stringData"][reference.key.as_str()]
        .as_str()
        .expect("the password Secret holds the key passwordSecretRef names");

    // The create the operator would send, as the simulator validates it: the default
    // name, the user's tags plus the ownership tag, no bss_param (pay-per-use).
    let desired = spec.instance.as_ref().expect("spec.instance");
    let name = default_instance_name("default", object.metadata.name.as_deref().unwrap());
    assert_eq!(
        name, "default-managed-cache",
        "as the example's comment says"
    );
    let mut tags: Vec<Value> = desired
        .tags
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value}))
        .collect();
    tags.push(json!({"key": OWNER_TAG_KEY, "value": "0c3a9b1e-8f7d-4c2b-a1e0-5d6f7a8b9c0d"}));
    let window = desired.maintenance_window.as_ref();
    let body = json!({
        "name": name,
        "engine": desired.engine.as_str(),
        "engine_version": desired.engine_version,
        "capacity": desired.capacity.gigabytes(),
        "spec_code": desired.spec_code,
        "az_codes": desired.availability_zones,
        "vpc_id": desired.vpc_id,
        "subnet_id": desired.subnet_id,
        "password": password,
        "tags": tags,
        "description": desired.description,
        "maintain_begin": window.map(|w| w.begin.as_str()),
        "maintain_end": window.map(|w| w.end.as_str()),
    });
    let body = body.as_object().unwrap().clone();
    if let Err(refusal) = dcs_operator::dcs::sim::validate::create(&body) {
        panic!("the simulator refuses the example's create: {refusal}");
    }

    // The demo command in the docs grants managing in the example's namespace.
    let managing = read(&root().join("docs/managing.md"));
    assert!(
        managing.contains("--default-credentials-manage-namespaces default")
            && managing.contains("examples/managed-dcsinstance.yaml"),
        "docs/managing.md's demo must run the example with the manage grant"
    );
}
