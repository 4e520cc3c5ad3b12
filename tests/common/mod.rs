//! What the integration tests share: the binary and its output
//! ([`bin`], [`run`], [`stdout`], [`stderr`], [`code`]), `check --json`
//! parsed ([`Report`]), skipping a test that cannot run here
//! ([`runnable`]), and fixture `/proc` trees built in a tempdir: `net/tcp`,
//! `net/tcp6`, and `<pid>/{comm,cmdline,fd/N -> socket:[INODE]}`, the files
//! prestop-wait reads; a running hook's stderr read as it comes ([`Watched`]).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::Value;

/// The binary under test, as cargo built it for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_prestop-wait");

/// The binary with no `PRESTOP_WAIT_*` variable leaking in from the caller.
pub fn bin() -> Command {
    let mut c = Command::new(BIN);
    without_our_env(&mut c);
    c
}

/// Keeps the caller's `PRESTOP_WAIT_*` variables from reaching `c`.
pub fn without_our_env(c: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PRESTOP_WAIT_") {
            c.env_remove(k);
        }
    }
    c
}

/// `prestop-wait ARGS --proc FIXTURE`, run to completion.
pub fn run(f: &Fixture, args: &[&str]) -> Output {
    bin()
        .args(args)
        .arg("--proc")
        .arg(f.path())
        .output()
        .expect("run binary")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

/// A hook's log file once its last line satisfies `done`, or as it is
/// after `timeout`. A hook at its deadline gives its writer process only a
/// moment for the last lines and exits without waiting for it (logging
/// never holds the hook): the lines land in the file a moment after.
pub fn log_file_when(
    path: &Path,
    timeout: std::time::Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let until = std::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let last = text.trim_end().lines().last().unwrap_or("");
        if done(last) || std::time::Instant::now() >= until {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The duration a deadline line gives as "(at D)" or "(at D;", parsed:
/// a bound on it is a number, not a prefix matched to the millisecond.
pub fn said_at(line: &str) -> std::time::Duration {
    let rest = line
        .split_once("(at ")
        .unwrap_or_else(|| panic!("no '(at ' in {line:?}"))
        .1;
    let d = rest.split([')', ';']).next().unwrap_or_default();
    humantime::parse_duration(d).unwrap_or_else(|e| panic!("{d:?} in {line:?}: {e}"))
}

/// A line's `[D]` stamp (the time since the hook's start), parsed.
pub fn stamp(line: &str) -> Option<std::time::Duration> {
    let inner = line.strip_prefix('[')?.split_once(']')?.0;
    humantime::parse_duration(inner).ok()
}

/// Whether a test whose prerequisite is `probe` runs. Outside CI a missing
/// prerequisite skips it with `skipped: TEST: REASON …` on stderr, seen
/// past the harness's capture and counted at the run's end
/// (`tests/zz_skipped.rs`); with `CI=true` it fails, so that CI cannot go
/// green by skipping.
pub fn runnable(test: &str, probe: Result<(), String>) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let reason = probe.as_ref().err().cloned();
    let run = runnable_in(ci, test, probe);
    if let Some(reason) = reason.filter(|_| !run) {
        prestop_wait::fixture::skipped(&reason);
    }
    run
}

/// [`runnable`]'s verdict with CI given, so the tests can check both ways:
/// it panics under CI, and says nothing (saying is `runnable`'s).
pub fn runnable_in(ci: bool, test: &str, probe: Result<(), String>) -> bool {
    match probe {
        Ok(()) => true,
        Err(reason) if ci => panic!("{test}: cannot run under CI=true: {reason}"),
        Err(_) => false,
    }
}

/// The running test's name: libtest names each test's thread after it.
pub fn test_name() -> String {
    let t = std::thread::current();
    match t.name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "test".to_string(),
    }
}

/// Keys of a `check --json` socket, in the documented order.
pub const SOCKET_KEYS: [&str; 11] = [
    "state",
    "local",
    "remote",
    "uid",
    "inode",
    "cgroup",
    "this_container",
    "pid",
    "process",
    "direction",
    "to_proxy",
];

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct JsonSock {
    pub state: String,
    pub local: String,
    pub remote: String,
    pub uid: u32,
    pub inode: u64,
    /// The socket's cgroup id, where the cgroup tells containers apart.
    pub cgroup: Option<u64>,
    /// Whether it is in the container `check` runs in.
    pub this_container: Option<bool>,
    pub pid: Option<u32>,
    pub process: Option<String>,
    pub direction: String,
    pub to_proxy: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `check --json`'s `containers`: `by` is `cgroup` (with this container's
/// id) or `uid` (with why not by cgroup).
#[derive(Debug, Deserialize)]
pub struct JsonContainers {
    pub by: String,
    pub cgroup: Option<u64>,
    pub why: Option<String>,
}

/// `check --json`'s `quiesce`: what `quiesce` would start from, or why
/// `check` could not tell. Exact: an unknown key fails the parse.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum JsonQuiesce {
    View(QuiesceView),
    Error {
        #[allow(dead_code)] // read through `value` by the tests that want it
        error: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuiesceView {
    pub ports: Vec<u16>,
    pub window_ms: u64,
    pub basis: String,
    pub rate: f64,
    pub arrivals: u64,
    pub over_ms: u64,
    pub history: bool,
    pub history_error: Option<String>,
    pub miss: f64,
}

/// `check --json`, typed: a missing field or a wrong type fails the parse.
#[derive(Debug, Deserialize)]
pub struct Report {
    pub blocking: Vec<JsonSock>,
    /// Present only with `--all`.
    pub ignored: Option<Vec<JsonSock>>,
    pub uninspected_processes: u64,
    pub unreadable_fds: u64,
    /// The tables are the node's (hostNetwork).
    pub host_network: bool,
    /// Where the rows came from: `netlink` or `proc`.
    pub source: String,
    /// How containers are told apart.
    pub containers: JsonContainers,
    /// What `quiesce` would start from.
    pub quiesce: JsonQuiesce,
    /// The document itself, for asserting on whole entries.
    #[serde(skip)]
    pub value: Value,
}

impl Report {
    /// `check --json` output held to the documented shape: one line of
    /// compact JSON, one object whose keys, and every socket's keys, are
    /// exactly the documented ones in the documented order. Panics otherwise.
    pub fn exact(stdout: &str) -> Report {
        assert!(
            stdout.ends_with('\n') && stdout.lines().count() == 1,
            "not one line: {stdout:?}"
        );
        let r = Report::parse(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        // Compact, as documented: no space between tokens.
        assert!(
            compact(stdout.trim_end_matches('\n')),
            "not compact JSON: {stdout}"
        );
        let mut top = vec!["blocking"];
        if r.ignored.is_some() {
            top.push("ignored");
        }
        top.extend([
            "uninspected_processes",
            "unreadable_fds",
            "host_network",
            "source",
            "containers",
            "quiesce",
        ]);
        assert_eq!(keys(&r.value), top, "top-level keys: {stdout}");
        if let JsonQuiesce::View(_) = r.quiesce {
            assert_eq!(
                keys(&r.value["quiesce"]),
                [
                    "ports",
                    "window_ms",
                    "basis",
                    "rate",
                    "arrivals",
                    "over_ms",
                    "history",
                    "history_error",
                    "miss"
                ],
                "quiesce's keys: {stdout}"
            );
        }
        let netlink = r.value["source"] == "netlink";
        for (list, s) in entries(&r.value) {
            // `idle_ms` follows `inode` exactly where the source has
            // tcp_info: every netlink socket but a listener.
            let mut want = socket_keys(list);
            if netlink && s["state"] != "LISTEN" {
                want.insert(5, "idle_ms");
                assert!(s["idle_ms"].is_u64(), "{list} entry {s}");
            }
            assert_eq!(keys(s), want, "{list} entry {s}");
        }
        r
    }

    /// `check --json` output with the contract's keys present (`pid` and
    /// `process` even when null, `reason` on ignored sockets); keys beyond
    /// them are additions, tolerated here and listed by [`Report::extra_keys`].
    pub fn parse(stdout: &str) -> Result<Report, String> {
        let value: Value = serde_json::from_str(stdout).map_err(|e| format!("not JSON: {e}"))?;
        for (list, s) in entries(&value) {
            let have = keys(s);
            let mut missing = socket_keys(list);
            missing.retain(|k| !have.contains(k));
            if !missing.is_empty() {
                return Err(format!("{list} entry lacks {missing:?}: {s}"));
            }
        }
        let mut r =
            Report::deserialize(&value).map_err(|e| format!("not the contract's shape: {e}"))?;
        r.value = value;
        Ok(r)
    }

    /// Top-level keys, then socket keys, beyond the contract's (sorted).
    pub fn extra_keys(&self) -> (Vec<&str>, Vec<&str>) {
        let known = [
            "blocking",
            "ignored",
            "uninspected_processes",
            "unreadable_fds",
            "host_network",
            "source",
            "containers",
            "quiesce",
        ];
        let mut top: Vec<&str> = keys(&self.value)
            .into_iter()
            .filter(|k| !known.contains(k))
            .collect();
        top.sort();
        let mut socket: Vec<&str> = entries(&self.value)
            .flat_map(|(list, s)| {
                let want = socket_keys(list);
                keys(s).into_iter().filter(move |k| !want.contains(k))
            })
            .collect();
        socket.sort();
        socket.dedup();
        (top, socket)
    }

    /// The ignored sockets; none without `--all`.
    pub fn ignored(&self) -> &[JsonSock] {
        self.ignored.as_deref().unwrap_or_default()
    }

    /// What `quiesce` would start from; panics where `check` said why not.
    pub fn quiesce(&self) -> &QuiesceView {
        match &self.quiesce {
            JsonQuiesce::View(v) => v,
            JsonQuiesce::Error { .. } => panic!("no quiesce view: {}", self.value),
        }
    }

    /// `local` of every blocking socket, in output order.
    pub fn blocking_locals(&self) -> Vec<&str> {
        self.blocking.iter().map(|s| s.local.as_str()).collect()
    }

    /// The blocking or ignored entry whose `local` is `local`, as JSON.
    pub fn entry(&self, list: &str, local: &str) -> &Value {
        self.value[list]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["local"] == local))
            .unwrap_or_else(|| panic!("no {list} socket {local}: {}", self.value))
    }
}

/// The keys a socket of `list` has, in order: ignored ones add `reason`.
fn socket_keys(list: &str) -> Vec<&'static str> {
    let mut want = SOCKET_KEYS.to_vec();
    if list == "ignored" {
        want.push("reason");
    }
    want
}

/// Every socket entry of a `check --json` document, with its list's name.
fn entries(doc: &Value) -> impl Iterator<Item = (&'static str, &Value)> {
    ["blocking", "ignored"].into_iter().flat_map(move |list| {
        doc.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(move |s| (list, s))
    })
}

/// Whether a JSON text has no whitespace outside its strings.
fn compact(text: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') | (false, _, '"') => in_string = !in_string,
            (false, _, c) if c.is_whitespace() => return false,
            _ => {}
        }
    }
    !in_string
}

/// An object's keys in document order; none for anything else.
pub fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// `prestop-wait check --json ARGS --proc FIXTURE`, its output held to the
/// documented shape.
pub fn check_json(f: &Fixture, args: &[&str]) -> (Output, Report) {
    let o = run(f, &[&["check", "--json"], args].concat());
    let r = Report::exact(&stdout(&o));
    (o, r)
}

use prestop_wait::fixture::{self, Process};
#[allow(unused_imports)] // not every test binary writes raw tables
pub use prestop_wait::fixture::{TCP_HEADER, TCP6_HEADER};
use prestop_wait::procread::{Socket, Table, TcpState};

/// TCP states as the fixtures name them.
pub const ESTABLISHED: TcpState = TcpState::Established;
pub const SYN_SENT: TcpState = TcpState::SynSent;
pub const TIME_WAIT: TcpState = TcpState::TimeWait;
pub const CLOSE_WAIT: TcpState = TcpState::CloseWait;
pub const LISTEN: TcpState = TcpState::Listen;

/// A fixture tree; removed on drop.
pub struct Fixture {
    dir: tempfile::TempDir,
    rows: Vec<Socket>,
}

/// One table row in the kernel's layout (the lib's one encoder).
pub fn row(sl: usize, local: &str, remote: &str, state: TcpState, uid: u32, inode: u64) -> String {
    fixture::kernel_row(sl, &fixture::socket(local, remote, state, uid, inode))
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = Fixture {
            dir,
            rows: Vec::new(),
        };
        f.flush();
        f
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Adds a socket to `tcp` or `tcp6`, by the address family of `local`.
    pub fn socket(
        &mut self,
        local: &str,
        remote: &str,
        state: TcpState,
        uid: u32,
        inode: u64,
    ) -> &mut Self {
        self.rows
            .push(fixture::socket(local, remote, state, uid, inode));
        self.flush();
        self
    }

    /// Removes every row whose inode is `inode`, as the kernel does when the
    /// last fd is closed (the row leaves, or stays with inode 0).
    pub fn remove_inode(&mut self, inode: u64) -> &mut Self {
        self.rows.retain(|s| s.inode != inode);
        self.flush();
        self
    }

    /// Sets the queues of the rows whose inode is `inode`, as the kernel's
    /// `tx_queue:rx_queue` column shows them.
    pub fn set_queues(&mut self, inode: u64, tx: u32, rx: u32) -> &mut Self {
        for s in self.rows.iter_mut().filter(|s| s.inode == inode) {
            (s.tx_queue, s.rx_queue) = (tx, rx);
        }
        self.flush();
        self
    }

    /// The pod's history as `quiesce` reads it: `opens` connections
    /// accepted (`net/snmp`'s PassiveOpens) over `age` seconds, PID 1's
    /// start against `uptime` (at 100 ticks a second, Linux's USER_HZ).
    pub fn history(&mut self, opens: u64, age: u64) -> &mut Self {
        let root = self.dir.path();
        std::fs::write(
            root.join("net/snmp"),
            format!(
                "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
                 Tcp: 1 200 120000 -1 7 {opens} 0 0 1 0 0 0 0 0 0\n"
            ),
        )
        .expect("snmp");
        std::fs::write(root.join("uptime"), format!("{}.00 1.00\n", 1000 + age)).expect("uptime");
        Process::new(1, "pause")
            .start(1000 * 100)
            .write(root)
            .expect("pid 1");
        self
    }

    /// A process with `comm`, `cmdline` (NUL-separated argv) and socket fds.
    pub fn process(&mut self, pid: u32, comm: &str, argv: &[&str], inodes: &[u64]) -> &mut Self {
        Process::new(pid as i32, comm)
            .argv(argv)
            .sockets(inodes)
            .write(self.dir.path())
            .expect("process");
        self
    }

    /// Writes both tables, each whole.
    fn flush(&self) {
        fixture::write_tables(self.dir.path(), &self.rows).expect("write tables");
    }

    pub fn table_path(&self, name: &str) -> PathBuf {
        let table = if name == "tcp6" {
            Table::Tcp6
        } else {
            Table::Tcp
        };
        table.path(self.dir.path())
    }
}

/// The pod the integration tests look at: Istio's proxy and a small app.
///
/// - envoy (uid 1337) listens on 15001, 15006, 15021, 15090, 127.0.0.1:15000;
/// - pilot-agent (uid 1337) on 15020 and 127.0.0.1:15004;
/// - the app (uid 1000, invisible: another PID namespace) listens on 8080 and
///   [::]:9090, has an outbound call through 15001, and an inbound connection
///   accepted from 127.0.0.6 (Istio's inbound passthrough source).
/// - A TIME_WAIT leftover (inode 0).
pub fn istio_pod() -> Fixture {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:15001", "0.0.0.0:0", LISTEN, 1337, 101)
        .socket("0.0.0.0:15006", "0.0.0.0:0", LISTEN, 1337, 102)
        .socket("0.0.0.0:15021", "0.0.0.0:0", LISTEN, 1337, 103)
        .socket("0.0.0.0:15090", "0.0.0.0:0", LISTEN, 1337, 104)
        .socket("127.0.0.1:15000", "0.0.0.0:0", LISTEN, 1337, 105)
        .socket("127.0.0.1:15004", "0.0.0.0:0", LISTEN, 1337, 106)
        .socket("[::]:15020", "[::]:0", LISTEN, 1337, 107)
        .socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 201)
        .socket("[::]:9090", "[::]:0", LISTEN, 1000, 202)
        .socket("10.1.2.3:45000", "10.9.8.7:443", ESTABLISHED, 1000, 203)
        // iptables REDIRECT: envoy accepts the call on 15001, the app sees 443.
        .socket("127.0.0.1:15001", "10.1.2.3:45000", ESTABLISHED, 1337, 108)
        .socket("10.1.2.3:8080", "127.0.0.6:51000", ESTABLISHED, 1000, 204)
        .socket("127.0.0.6:51000", "10.1.2.3:8080", ESTABLISHED, 1337, 109)
        .socket("10.1.2.3:8080", "127.0.0.6:50000", TIME_WAIT, 0, 0);
    f.process(
        1,
        "pilot-agent",
        &["/usr/local/bin/pilot-agent", "proxy", "sidecar"],
        &[106, 107],
    )
    .process(
        15,
        "envoy",
        &[
            "/usr/local/bin/envoy",
            "-c",
            "etc/istio/proxy/envoy-rev.json",
        ],
        &[101, 102, 103, 104, 105, 108, 109],
    );
    f
}

/// `Err(reason)` unless the active toolchain has the standard library for
/// `target`. Asks the `rustc` that cargo runs here (rustup picks the
/// toolchain by directory) for its sysroot.
pub fn target_installed(target: &str) -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "rustc --print sysroot failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let lib = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("lib");
    if lib.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "the {target} standard library is not installed ({} is missing); \
             `rustup target add {target}` or .ci/install-deps.sh installs it",
            lib.display()
        ))
    }
}

/// `cargo build ARGS` with the cargo, environment and target directory of
/// this test run; the path of the executable named `name`, from cargo's
/// JSON messages. A no-op when it is built already.
pub fn cargo_build(args: &[&str], name: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("build")
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .output()
        .expect("run cargo build");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo build {} failed:\n{}\n{stdout}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
    );
    executable(&stdout, name)
        .unwrap_or_else(|| panic!("no executable {name} in cargo's output:\n{stdout}"))
}

/// The `executable` of `name`'s `compiler-artifact` message in cargo's JSON
/// output (one message a line).
pub fn executable(cargo_stdout: &str, name: &str) -> Option<PathBuf> {
    cargo_stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// A pipe's lines as they come, read on a thread of their own: a test can
/// wait for one (a hook's first look) instead of sleeping and hoping it
/// came, and still has them all at the end.
pub struct Streamed {
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Streamed {
    /// Reads `from` to its end; `strip` comes off the start of each line.
    pub fn read(from: impl std::io::Read + Send + 'static, strip: &'static str) -> Streamed {
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(from).lines().map_while(Result::ok) {
                let l = l.strip_prefix(strip).unwrap_or(&l).to_owned();
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Streamed {
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line containing `what`, waiting for it up to `timeout`;
    /// panics, naming `who` and the lines so far, when none comes.
    pub fn wait_for(&mut self, who: &str, what: &str, timeout: std::time::Duration) -> String {
        let until = std::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.contains(what)) {
                return l.clone();
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "{who}: no line with {what:?} within {timeout:?}: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Every line, once the pipe has ended.
    pub fn all(mut self) -> Vec<String> {
        self.seen.extend(self.lines.iter());
        self.seen
    }
}

/// A hook whose stderr (less its `prestop-wait: ` prefix) is [`Streamed`].
pub struct Watched {
    child: std::process::Child,
    err: Streamed,
}

impl Watched {
    pub fn new(mut child: std::process::Child) -> Watched {
        let err = Streamed::read(child.stderr.take().unwrap(), "prestop-wait: ");
        Watched { child, err }
    }

    /// Waits (10s at most) for a line containing `what`.
    pub fn wait_for(&mut self, what: &str) {
        self.err
            .wait_for("the hook", what, std::time::Duration::from_secs(10));
    }

    /// The exit code and every line.
    pub fn finish(mut self) -> (i32, Vec<String>) {
        let status = self.child.wait().unwrap();
        (status.code().expect("exited"), self.err.all())
    }
}

/// Waits (20 s at most) for `path` to exist: a client touches one once its
/// first request was answered, so a hook starts only once traffic flows.
pub fn wait_for_file(path: &Path) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !path.exists() {
        assert!(std::time::Instant::now() < until, "no {}", path.display());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
