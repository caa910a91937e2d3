//! The instance file format (YAML or JSON): parsing entries into [`SimInstance`]s,
//! and the optional `settings` block (write-side timings and quotas).

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{SimError, SimInstance, Transition, WriteConfig};
use crate::duration;

/// Reads an instance file. YAML is a superset of JSON, so one parser takes both.
pub fn load_instances(path: &Path) -> Result<Vec<SimInstance>, SimError> {
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_instances(&text)
}

/// Parses the text of an instance file: a top-level list, or `{instances: [...]}`.
pub fn parse_instances(text: &str) -> Result<Vec<SimInstance>, SimError> {
    let document: Value =
        serde_yaml::from_str(text).map_err(|e| SimError::Syntax(e.to_string()))?;
    let entries = match document {
        Value::Array(entries) => entries,
        Value::Object(mut top) => match top.remove("instances") {
            Some(Value::Array(entries)) => entries,
            Some(Value::Null) => Vec::new(),
            _ => {
                return Err(SimError::Syntax(
                    "expected a list of instances, or an object with an `instances` list".into(),
                ));
            }
        },
        // An empty file is an empty simulator, not a mistake worth refusing.
        Value::Null => Vec::new(),
        _ => {
            return Err(SimError::Syntax(
                "expected a list of instances, or an object with an `instances` list".into(),
            ));
        }
    };
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| parse_entry(entry).map_err(|e| e.at(index)))
        .collect()
}

/// Reads the `settings` block of an instance file onto `base` (see
/// [`parse_write_config`]).
pub fn load_write_config(path: &Path, base: WriteConfig) -> Result<WriteConfig, SimError> {
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_write_config(&text, base)
}

/// Applies the optional top-level `settings` object of an instance file onto
/// `base`: `create_delay`, `resize_delay`, `delete_delay`, `modify_delay`, `list_lag`
/// (durations) and `instance_quota`, `memory_quota_gb` (whole numbers). A file that
/// is a bare list has no settings.
pub fn parse_write_config(text: &str, base: WriteConfig) -> Result<WriteConfig, SimError> {
    let document: Value =
        serde_yaml::from_str(text).map_err(|e| SimError::Syntax(e.to_string()))?;
    let settings = match document {
        Value::Object(mut top) => match top.remove("settings") {
            None | Some(Value::Null) => return Ok(base),
            Some(Value::Object(settings)) => settings,
            Some(_) => return Err(SimError::Syntax("`settings` must be an object".into())),
        },
        _ => return Ok(base),
    };
    let bad = |key: &str, message: String| SimError::Syntax(format!("settings.{key}: {message}"));
    let mut config = base;
    for (key, value) in settings {
        let as_duration = || match &value {
            Value::String(text) => duration::parse(text).map_err(|e| bad(&key, e.to_string())),
            Value::Number(n) => n
                .as_u64()
                .map(Duration::from_secs)
                .ok_or_else(|| bad(&key, format!("must be a duration like 10s, got {n}"))),
            other => Err(bad(
                &key,
                format!("must be a duration like 10s, got {other}"),
            )),
        };
        let as_count = || {
            value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(&key, format!("must be a whole number, got {value}")))
        };
        match key.as_str() {
            "create_delay" => config.create_delay = as_duration()?,
            "resize_delay" => config.resize_delay = as_duration()?,
            "delete_delay" => config.delete_delay = as_duration()?,
            "modify_delay" => config.modify_delay = as_duration()?,
            "list_lag" => config.list_lag = as_duration()?,
            "instance_quota" => config.instance_quota = as_count()?,
            "memory_quota_gb" => config.memory_quota_gb = as_count()?,
            other => {
                return Err(SimError::Syntax(format!(
                    "unknown setting {other:?} (create_delay, resize_delay, delete_delay, modify_delay, list_lag, instance_quota, memory_quota_gb)"
                )));
            }
        }
    }
    Ok(config)
}

/// Why one entry was refused, before it is told which entry it was.
pub(crate) struct EntryError {
    instance_id: Option<String>,
    message: String,
}

impl EntryError {
    fn new(instance_id: Option<String>, message: impl Into<String>) -> Self {
        Self {
            instance_id,
            message: message.into(),
        }
    }

    pub(crate) fn at(self, index: usize) -> SimError {
        SimError::Entry {
            index,
            instance_id: self.instance_id,
            message: self.message,
        }
    }

    pub(crate) fn message(&self) -> String {
        match &self.instance_id {
            Some(id) => format!("instance {id:?}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// True for a project ID as the API issues them: 32 lower-case hex characters.
pub fn is_project_id(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One entry: a flat object of API fields plus `project_id` and `transitions`.
pub(crate) fn parse_entry(entry: Value) -> Result<SimInstance, EntryError> {
    let Value::Object(mut fields) = entry else {
        return Err(EntryError::new(
            None,
            "an entry must be an object of fields",
        ));
    };
    let instance_id = match fields.get("instance_id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(_) => {
            return Err(EntryError::new(
                None,
                "`instance_id` must be a non-empty string",
            ));
        }
        None => return Err(EntryError::new(None, "`instance_id` is required")),
    };
    let fail = |message: String| EntryError::new(Some(instance_id.clone()), message);
    let project_id = match fields.remove("project_id") {
        Some(Value::String(id)) if is_project_id(&id) => id,
        Some(other) => {
            return Err(fail(format!(
                "`project_id` must be 32 lower-case hex characters, got {other}"
            )));
        }
        None => return Err(fail("`project_id` is required".into())),
    };
    let transitions = match fields.remove("transitions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(n, item)| {
                parse_transition(item).map_err(|m| fail(format!("transition {n}: {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(fail("`transitions` must be a list".into())),
    };
    Ok(SimInstance::new(project_id, fields, transitions))
}

fn parse_transition(item: Value) -> Result<Transition, String> {
    let Value::Object(mut item) = item else {
        return Err("must be an object with `after` and `set`".into());
    };
    let after = match item.remove("after") {
        Some(Value::String(text)) => duration::parse(&text).map_err(|e| e.to_string())?,
        // A bare number reads naturally as seconds in YAML (`after: 10`).
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`after` must be a duration like 10s, got {n}"))?,
        Some(other) => return Err(format!("`after` must be a duration like 10s, got {other}")),
        None => return Err("`after` is required".into()),
    };
    let set = match item.remove("set") {
        Some(Value::Object(set)) => set,
        Some(_) => return Err("`set` must be an object of fields".into()),
        None => return Err("`set` is required".into()),
    };
    if let Some(key) = item.keys().next() {
        return Err(format!("unknown key {key:?} (expected `after` and `set`)"));
    }
    if set.contains_key("instance_id") || set.contains_key("project_id") {
        return Err("`set` cannot change `instance_id` or `project_id`".into());
    }
    Ok(Transition { after, set })
}

/// An instance entry as the file (and the admin API) writes it.
pub(crate) fn entry_value(
    project_id: &str,
    fields: &Map<String, Value>,
    pending: &[Transition],
) -> Value {
    let mut entry = Map::new();
    entry.insert("project_id".into(), Value::String(project_id.to_string()));
    for (key, value) in fields {
        entry.insert(key.clone(), value.clone());
    }
    if !pending.is_empty() {
        let transitions = pending
            .iter()
            .map(|t| {
                serde_json::json!({
                    "after": duration::format(t.after),
                    "set": Value::Object(t.set.clone()),
                })
            })
            .collect();
        entry.insert("transitions".into(), Value::Array(transitions));
    }
    Value::Object(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECT: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn both_top_level_shapes_and_json() {
        let list = format!("- project_id: {PROJECT}\n  instance_id: a\n  status: RUNNING\n");
        let wrapped = format!("instances:\n  - project_id: {PROJECT}\n    instance_id: a\n");
        let json = format!(
            r#"{{"instances":[{{"project_id":"{PROJECT}","instance_id":"a","port":6379}}]}}"#
        );
        for text in [list, wrapped, json] {
            let parsed = parse_instances(&text).unwrap();
            assert_eq!(parsed.len(), 1);
            assert_eq!(parsed[0].project_id, PROJECT);
            assert_eq!(parsed[0].fields["instance_id"], "a");
            assert!(!parsed[0].fields.contains_key("project_id"));
        }
        assert!(parse_instances("").unwrap().is_empty());
    }

    #[test]
    fn transitions_are_sorted_by_time() {
        let text = format!(
            "- project_id: {PROJECT}\n  instance_id: a\n  transitions:\n    - {{after: 2m, set: {{status: ERROR, error_code: dcs.03.0017}}}}\n    - {{after: 10s, set: {{status: RUNNING}}}}\n"
        );
        let parsed = parse_instances(&text).unwrap();
        let afters: Vec<u64> = parsed[0]
            .transitions
            .iter()
            .map(|t| t.after.as_secs())
            .collect();
        assert_eq!(afters, vec![10, 120]);
        assert_eq!(parsed[0].transitions[1].set["error_code"], "dcs.03.0017");
    }

    #[test]
    fn errors_name_the_entry() {
        let cases = [
            (format!("- {{project_id: {PROJECT}}}"), "instance_id"),
            ("- {instance_id: a}".to_string(), "project_id"),
            (
                "- {instance_id: a, project_id: ABC}".to_string(),
                "32 lower-case hex",
            ),
            (
                format!(
                    "- {{instance_id: a, project_id: {PROJECT}, transitions: [{{after: soon, set: {{}}}}]}}"
                ),
                "not a duration",
            ),
            (
                format!(
                    "- {{instance_id: a, project_id: {PROJECT}, transitions: [{{after: 1s}}]}}"
                ),
                "`set` is required",
            ),
            ("- 3".to_string(), "object"),
            ("hello".to_string(), "expected a list"),
        ];
        for (text, needle) in cases {
            let message = parse_instances(&format!("{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(message.contains(needle), "{text}: {message}");
        }
        let second = format!(
            "- {{project_id: {PROJECT}, instance_id: ok}}\n- {{project_id: {PROJECT}, instance_id: bad, transitions: 3}}\n"
        );
        let message = parse_instances(&second).unwrap_err().to_string();
        assert!(
            message.contains("entry 1") && message.contains("\"bad\""),
            "{message}"
        );
    }

    #[test]
    fn settings_block() {
        let text =
            "settings:\n  create_delay: 30s\n  list_lag: 5\n  instance_quota: 3\ninstances: []\n";
        let config = parse_write_config(text, WriteConfig::default()).unwrap();
        assert_eq!(config.create_delay, Duration::from_secs(30));
        assert_eq!(config.list_lag, Duration::from_secs(5));
        assert_eq!(config.instance_quota, 3);
        assert_eq!(config.resize_delay, WriteConfig::default().resize_delay);
        assert!(parse_instances(text).unwrap().is_empty());
        let list = format!("- {{project_id: {PROJECT}, instance_id: a}}\n");
        assert_eq!(
            parse_write_config(&list, WriteConfig::default()).unwrap(),
            WriteConfig::default()
        );
        for bad in [
            "settings: {bogus: 1}",
            "settings: {create_delay: soon}",
            "settings: {instance_quota: -1}",
            "settings: 3",
        ] {
            assert!(
                parse_write_config(bad, WriteConfig::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sim-instances.yaml");
        let instances = load_instances(&path).unwrap();
        assert!(instances.len() >= 7);
        assert!(instances.iter().all(|i| i.project_id == PROJECT));
        assert!(instances.iter().any(|i| !i.transitions.is_empty()));
        assert!(
            instances
                .iter()
                .any(|i| i.fields.get("status") == Some(&Value::from("CREATEFAILED")))
        );
    }
}
