//! The snippets in examples/ are meant to be copied as they are, so they are
//! checked like code: every YAML file parses, every prestop-wait command line
//! in them uses flags and environment variables that the real binary has (as
//! its `--help` shows) with values it accepts, and the Istio examples keep the
//! shutdown time budget within the pod's grace period.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::bin;
use yaml_rust2::{Yaml, YamlLoader};

const SUBCOMMANDS: [&str; 2] = ["wait", "check"];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Files in examples/ whose names end with one of `exts`, sorted.
fn example_files(exts: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            exts.iter().any(|ext| name.ends_with(ext))
        })
        .collect();
    files.sort();
    files
}

fn yaml_files() -> Vec<PathBuf> {
    let files = example_files(&[".yaml", ".yml"]);
    assert!(!files.is_empty(), "no YAML files in examples/");
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_yaml(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} does not parse as YAML: {e}", path.display()))
}

/// `prestop-wait [SUBCOMMAND] --help`, once per subcommand.
fn help(sub: Option<&str>) -> &'static str {
    static HELP: OnceLock<Vec<(Option<&'static str>, String)>> = OnceLock::new();
    let all = HELP.get_or_init(|| {
        [None, Some("wait"), Some("check")]
            .into_iter()
            .map(|sub| {
                let out = bin()
                    .args(sub)
                    .arg("--help")
                    .output()
                    .expect("run prestop-wait --help");
                assert!(
                    out.status.success(),
                    "prestop-wait {} --help failed: {}",
                    sub.unwrap_or(""),
                    String::from_utf8_lossy(&out.stderr)
                );
                (sub, String::from_utf8(out.stdout).unwrap())
            })
            .collect()
    });
    &all.iter().find(|(s, _)| *s == sub).unwrap().1
}

/// Whether `word` occurs in `text` on its own (not inside a longer flag or
/// name: `--all` must not match `--all-namespaces`).
fn contains_word(text: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

/// A prestop-wait command line found in an example.
#[derive(Debug)]
struct CommandLine {
    file: String,
    /// Arguments after the program name.
    args: Vec<String>,
}

impl CommandLine {
    fn subcommand(&self) -> Option<&str> {
        self.args
            .first()
            .map(String::as_str)
            .filter(|a| SUBCOMMANDS.contains(a))
    }

    /// Flag names (`--timeout` from `--timeout=25s`).
    fn flags(&self) -> Vec<&str> {
        self.args
            .iter()
            .take_while(|a| *a != "--")
            .filter(|a| a.starts_with('-') && a.len() > 1)
            .map(|a| a.split('=').next().unwrap())
            .collect()
    }

    /// The value of `--name=V` or `--name V`.
    fn value_of(&self, name: &str) -> Option<&str> {
        let mut args = self.args.iter();
        while let Some(a) = args.next() {
            if a == name {
                return args.next().map(String::as_str);
            }
            if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
        }
        None
    }
}

fn is_program(s: &str) -> bool {
    s.rsplit('/').next() == Some("prestop-wait")
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Exec-form command lines (`["/usr/local/bin/prestop-wait", "wait", ...]`)
/// anywhere in a YAML document, and shell strings that run prestop-wait.
fn yaml_commands(y: &Yaml, file: &str, out: &mut Vec<CommandLine>) {
    match y {
        Yaml::Array(items) => {
            let words: Vec<Option<String>> = items.iter().map(scalar).collect();
            if let Some(Some(first)) = words.first()
                && is_program(first)
            {
                out.push(CommandLine {
                    file: file.to_string(),
                    args: words[1..].iter().flatten().cloned().collect(),
                });
            }
            items.iter().for_each(|i| yaml_commands(i, file, out));
        }
        Yaml::Hash(h) => h.values().for_each(|v| yaml_commands(v, file, out)),
        Yaml::String(s) => out.extend(text_commands(s, file)),
        _ => {}
    }
}

/// Command lines written as text: shell scripts, Markdown, YAML comments and
/// shell strings. Takes the words after a `prestop-wait` that stands as a
/// command word (not `proxyv2-prestop-wait:1.30`), up to the end of the
/// line, a shell operator, a comment or the end of inline code.
fn text_commands(text: &str, file: &str) -> Vec<CommandLine> {
    let mut found = Vec::new();
    for line in text.lines() {
        for (i, _) in line.match_indices("prestop-wait") {
            let before = line[..i].chars().next_back();
            let rest = &line[i + "prestop-wait".len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                || !rest.starts_with(char::is_whitespace)
            {
                continue;
            }
            let mut args = Vec::new();
            for word in rest.split_whitespace() {
                if ["|", "||", "&&", ";", ">", "<", "2>&1"].contains(&word) || word.starts_with('#')
                {
                    break;
                }
                let ends_code = word.contains('`') || word.contains(')');
                let w = word
                    .trim_matches(|c| matches!(c, '`' | '"' | '\'' | ',' | '[' | ']' | '(' | ')'));
                if !w.is_empty() {
                    args.push(w.to_string());
                }
                if ends_code {
                    break;
                }
            }
            found.push(CommandLine {
                file: file.to_string(),
                args,
            });
        }
    }
    found
}

/// Every prestop-wait command line in examples/ (YAML values, YAML comments,
/// scripts and Markdown).
fn all_commands() -> (Vec<CommandLine>, Vec<CommandLine>) {
    let mut structured = Vec::new();
    let mut textual = Vec::new();
    for path in example_files(&[".yaml", ".yml", ".sh", ".md"]) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = read(&path);
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            for doc in load_yaml(&path) {
                yaml_commands(&doc, &name, &mut structured);
            }
            // Comments (and anything else) written as shell command lines.
            let comments: String = text
                .lines()
                .filter_map(|l| l.trim_start().strip_prefix('#'))
                .collect::<Vec<_>>()
                .join("\n");
            textual.extend(text_commands(&comments, &name));
        } else {
            textual.extend(text_commands(&text, &name));
        }
    }
    (structured, textual)
}

#[test]
fn every_yaml_example_parses() {
    for path in yaml_files() {
        let docs = load_yaml(&path);
        assert!(!docs.is_empty(), "{}: no YAML document", path.display());
        for (i, doc) in docs.iter().enumerate() {
            assert!(
                matches!(doc, Yaml::Hash(h) if !h.is_empty()),
                "{} document {i}: expected a non-empty mapping, got {doc:?}",
                path.display()
            );
            if let Some(kind) = doc["kind"].as_str() {
                assert!(
                    doc["apiVersion"].as_str().is_some(),
                    "{} document {i}: kind {kind} without apiVersion",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn every_yaml_example_runs_prestop_wait() {
    let (structured, _) = all_commands();
    for path in yaml_files() {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            structured.iter().any(|c| c.file == name),
            "{name} has no prestop-wait command"
        );
    }
}

#[test]
fn example_flags_exist_in_help() {
    let (structured, textual) = all_commands();
    assert!(
        !structured.is_empty(),
        "no command lines found in examples/"
    );
    let mut missing = BTreeSet::new();
    for cmd in structured.iter().chain(&textual) {
        let text = help(cmd.subcommand());
        for flag in cmd.flags() {
            if !contains_word(text, flag) {
                missing.insert(format!(
                    "{}: `prestop-wait {}` uses {flag}, not in `prestop-wait {}--help`",
                    cmd.file,
                    cmd.args.join(" "),
                    cmd.subcommand()
                        .map(|s| format!("{s} "))
                        .unwrap_or_default(),
                ));
            }
        }
    }
    assert!(missing.is_empty(), "unknown flags:\n{missing:#?}");
}

#[test]
fn example_command_lines_are_accepted() {
    // Appending --help makes clap parse (and validate the values of)
    // everything before it, then print help and exit 0 instead of running.
    let (structured, textual) = all_commands();
    for cmd in structured.iter().chain(
        textual
            .iter()
            .filter(|c| c.args.iter().any(|a| a.starts_with('-'))),
    ) {
        let out = bin().args(&cmd.args).arg("--help").output().unwrap();
        assert!(
            out.status.success(),
            "{}: `prestop-wait {}` is rejected: {}",
            cmd.file,
            cmd.args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn example_environment_variables_exist_in_help() {
    let all_help = format!(
        "{}{}{}",
        help(None),
        help(Some("wait")),
        help(Some("check"))
    );
    let mut used = BTreeSet::new();
    for path in example_files(&[".yaml", ".yml", ".sh", ".md"]) {
        let text = read(&path);
        for (i, _) in text.match_indices("PRESTOP_WAIT_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    let missing: Vec<_> = used
        .iter()
        .filter(|v| !contains_word(&all_help, v))
        .collect();
    assert!(
        missing.is_empty(),
        "environment variables used in examples/ but not in --help: {missing:?}"
    );
}

/// Parses `25s`, `1m30s`, `500ms`, `2h`.
fn seconds(s: &str) -> f64 {
    let s = s.trim().trim_matches('"');
    let (mut total, mut num) = (0.0, String::new());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().unwrap_or_else(|_| panic!("bad duration {s:?}"));
        num.clear();
        total += n * match unit.as_str() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => panic!("unknown unit {u:?} in {s:?}"),
        };
    }
    assert!(num.is_empty(), "duration {s:?} without a unit");
    total
}

/// The first value of `key` anywhere in the document, looking inside the
/// `proxy.istio.io/config` annotation (YAML in a string) too.
fn find_key(y: &Yaml, key: &str) -> Option<Yaml> {
    match y {
        Yaml::Hash(h) => {
            for (k, v) in h {
                if k.as_str() == Some(key) {
                    return Some(v.clone());
                }
                if k.as_str() == Some("proxy.istio.io/config")
                    && let Some(found) = v
                        .as_str()
                        .and_then(|s| YamlLoader::load_from_str(s).ok())
                        .and_then(|docs| docs.iter().find_map(|d| find_key(d, key)))
                {
                    return Some(found);
                }
            }
            h.values().find_map(|v| find_key(v, key))
        }
        Yaml::Array(a) => a.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}

#[test]
fn istio_examples_fit_the_grace_period() {
    // kubelet runs the hook, then SIGTERM; pilot-agent drains for
    // terminationDrainDuration; all within terminationGracePeriodSeconds.
    let mut checked = 0;
    for path in yaml_files() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("istio") {
            continue;
        }
        for doc in load_yaml(&path) {
            let mut cmds = Vec::new();
            yaml_commands(&doc, &name, &mut cmds);
            for cmd in cmds.iter().filter(|c| c.subcommand() != Some("check")) {
                let timeout = seconds(cmd.value_of("--timeout").unwrap_or("25s"));
                let min_wait = seconds(cmd.value_of("--min-wait").unwrap_or("0s"));
                let drain = find_key(&doc, "terminationDrainDuration")
                    .and_then(|v| scalar(&v))
                    .map_or(5.0, |v| seconds(&v));
                let grace = find_key(&doc, "terminationGracePeriodSeconds")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(30) as f64;
                assert!(
                    timeout.max(min_wait) + drain <= grace,
                    "{name}: --timeout {timeout}s + terminationDrainDuration {drain}s > \
                     terminationGracePeriodSeconds {grace}s"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no Istio example checked");
}

#[test]
fn every_example_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for path in example_files(&[".yaml", ".yml", ".sh"]) {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            docs.contains(&format!("examples/{name}")),
            "examples/{name} is not explained in README.md"
        );
    }
}

#[test]
fn example_scripts_are_valid_shell() {
    for path in example_files(&[".sh"]) {
        let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn text_command_extraction() {
    let cmds = text_commands(
        "run `prestop-wait check --all` here\n\
         image proxyv2-prestop-wait:1.30 and `prestop-wait`\n\
         kubectl exec p -- prestop-wait wait --timeout 5s | tee x # --nope",
        "t",
    );
    let args: Vec<_> = cmds.iter().map(|c| c.args.join(" ")).collect();
    assert_eq!(args, ["check --all", "wait --timeout 5s"]);
    assert_eq!(cmds[1].value_of("--timeout"), Some("5s"));
    assert_eq!(cmds[1].flags(), ["--timeout"]);
    assert!(contains_word("  --all  Show", "--all"));
    assert!(!contains_word("--all-namespaces", "--all"));
    assert_eq!(seconds("1m30s"), 90.0);
    assert_eq!(seconds("250ms"), 0.25);
}
