//! Keeps the documentation honest: every relative link in README.md and docs/*.md
//! resolves (file and, for Markdown targets, heading anchor), every long flag of
//! `dcs-operator run` is documented in docs/configuration.md, and the README stays
//! short.

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
