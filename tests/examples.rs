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

const SUBCOMMANDS: [&str; 3] = ["wait", "check", "quiesce"];

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
        [None, Some("wait"), Some("check"), Some("quiesce")]
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
        Yaml::String(s) => match render_template(s) {
            Some(docs) => docs.iter().for_each(|d| yaml_commands(d, file, out)),
            None => out.extend(text_commands(s, file)),
        },
        _ => {}
    }
}

/// An Istio injection template (a Go template of YAML, kept in a string)
/// as istiod would render it for a classic sidecar: the first branch of its
/// `if`, `{{ X | default "V" }}` as V. `None` for any other string. Only
/// the forms the examples use are understood; anything else fails the test.
fn render_template(s: &str) -> Option<Vec<Yaml>> {
    if !s.contains("{{") || !s.contains("spec:") {
        return None;
    }
    let mut out = String::new();
    for line in s.lines() {
        let t = line.trim();
        if t.starts_with("{{- else") || t.starts_with("{{ else") {
            break;
        }
        if t.starts_with("{{") && t.ends_with("}}") && !t.contains(':') {
            continue;
        }
        let mut line = line.to_string();
        while let Some(start) = line.find("{{") {
            let end = start + line[start..].find("}}").expect("unclosed {{") + 2;
            let expr = line[start..end].to_string();
            let value = expr
                .split("default \"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or_else(|| panic!("cannot render {expr:?} in {s}"))
                .to_string();
            line.replace_range(start..end, &value);
        }
        out.push_str(&line);
        out.push('\n');
    }
    Some(
        YamlLoader::load_from_str(&out).unwrap_or_else(|e| panic!("rendered template: {e}\n{out}")),
    )
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
        "{}{}{}{}",
        help(None),
        help(Some("wait")),
        help(Some("check")),
        help(Some("quiesce"))
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

/// Every object in `y` that is a pod spec (has `containers`), templates
/// rendered.
fn pod_specs(y: &Yaml, out: &mut Vec<Yaml>) {
    match y {
        Yaml::Hash(h) => {
            if h.contains_key(&Yaml::String("containers".into())) {
                out.push(y.clone());
            }
            h.values().for_each(|v| pod_specs(v, out));
        }
        Yaml::Array(a) => a.iter().for_each(|v| pod_specs(v, out)),
        Yaml::String(s) => {
            if let Some(docs) = render_template(s) {
                docs.iter().for_each(|d| pod_specs(d, out));
            }
        }
        _ => {}
    }
}

fn list<'a>(y: &'a Yaml, key: &str) -> &'a [Yaml] {
    y[key].as_vec().map_or(&[], Vec::as_slice)
}

/// A container's `volumeMounts` as (volume name, mount path).
fn mounts(c: &Yaml) -> Vec<(String, String)> {
    list(c, "volumeMounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().expect("mount name").to_string(),
                m["mountPath"].as_str().expect("mountPath").to_string(),
            )
        })
        .collect()
}

/// Where the binary is in a volume: `install DIR` run by an init container
/// that mounts the volume at DIR puts it at `prestop-wait` in the volume;
/// an image volume of the `bin` image has it there too (`/prestop-wait`).
#[test]
fn installed_or_mounted_binaries_are_where_the_hooks_run_them() {
    let mut checked = 0;
    for path in yaml_files() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for doc in load_yaml(&path) {
            let mut specs = Vec::new();
            pod_specs(&doc, &mut specs);
            for spec in specs {
                let volumes: Vec<&Yaml> = list(&spec, "volumes").iter().collect();
                let volume = |v: &str| {
                    volumes
                        .iter()
                        .find(|y| y["name"].as_str() == Some(v))
                        .unwrap_or_else(|| panic!("{name}: no volume {v:?}"))
                };
                for c in list(&spec, "containers") {
                    let mut cmds = Vec::new();
                    yaml_commands(&c["lifecycle"], &name, &mut cmds);
                    let Some(program) = c["lifecycle"]["preStop"]["exec"]["command"][0].as_str()
                    else {
                        continue;
                    };
                    if !is_program(program) || program == "/usr/local/bin/prestop-wait" {
                        continue;
                    }
                    let dir = program.strip_suffix("/prestop-wait").unwrap();
                    let (vol, _) = mounts(c)
                        .into_iter()
                        .find(|(_, m)| m == dir)
                        .unwrap_or_else(|| {
                            panic!("{name}: {program} is on no mount of its container")
                        });
                    let v = volume(&vol);
                    if let Some(image) = v["image"]["reference"].as_str() {
                        assert!(image.ends_with(":bin"), "{name}: volume {vol} is {image}");
                    } else {
                        assert!(!v["emptyDir"].is_badvalue(), "{name}: volume {vol}: {v:?}");
                        let installs = list(&spec, "initContainers").iter().any(|i| {
                            let args: Vec<&str> =
                                list(i, "args").iter().filter_map(Yaml::as_str).collect();
                            mounts(i)
                                .iter()
                                .any(|(n, m)| *n == vol && args == ["install", m.as_str()])
                        });
                        assert!(
                            installs,
                            "{name}: no init container runs install into {vol}"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 3, "only {checked} hooks from a volume checked");
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
            // The app's `quiesce` runs beside the proxy's `wait`, which
            // must outlast it (and the app's shutdown after it).
            let quiesce = cmds
                .iter()
                .filter(|c| c.subcommand() == Some("quiesce"))
                .map(|c| seconds(c.value_of("--timeout").unwrap_or("25s")))
                .fold(0.0, f64::max);
            for cmd in cmds
                .iter()
                .filter(|c| c.subcommand() != Some("check") && c.subcommand() != Some("quiesce"))
            {
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
                assert!(
                    quiesce == 0.0 || timeout >= quiesce + 10.0,
                    "{name}: wait --timeout {timeout}s does not outlast quiesce's {quiesce}s \
                     and the app's shutdown"
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
