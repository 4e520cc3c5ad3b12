//! A pod built from real kernel objects, for the live tests.
//!
//! Kubernetes gives every container of a pod the same network namespace
//! (the pause container's) but, unless `shareProcessNamespace: true`, its own
//! PID namespace and its own /proc. So the preStop hook in the istio-proxy
//! container sees every TCP socket of the pod in /proc/net/tcp{,6}, yet none
//! of the application's processes. [`Pod`] rebuilds exactly that: one netns
//! made with `ip netns add`, and one `unshare --pid --fork --mount-proc` per
//! container inside it, with the actors of `actors.py` as real processes under
//! real uids. Hooks run through `nsenter` into the proxy container's net, pid
//! and mount namespaces, as uid 1337, which is how the kubelet runs an exec
//! hook (in the container's namespaces, as the container's user).
//!
//! Shared by tests/live_pod.rs and tests/live_real_pods.rs; each uses part.
#![allow(dead_code)]

use crate::common::{self, JsonSock, Report};
use rustix::process::{Pid, Signal};
use std::collections::BTreeSet;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub const PROXY_UID: u32 = 1337;
pub const APP_UID: u32 = 1000;
pub const PYTHON: &str = "/usr/bin/python3";
const ACTORS: &str = include_str!("actors.py");
const READY: Duration = Duration::from_secs(10);
/// How long a scenario waits for any one command or actor reply.
pub const RUN: Duration = Duration::from_secs(15);

/// Seconds on CLOCK_MONOTONIC: the clock of Python's `time.monotonic()` and of
/// Rust's `Instant`, one clock for the whole machine whatever the PID
/// namespace, so the actors' stamps and ours can be subtracted.
pub fn monotonic() -> f64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// SIGKILL to one process; false if it is already gone.
fn kill_pid(pid: i32) -> bool {
    Pid::from_raw(pid).is_some_and(|p| rustix::process::kill_process(p, Signal::KILL).is_ok())
}

/// SIGKILL to a whole process group; false if it is already empty.
fn kill_group(pgid: i32) -> bool {
    Pid::from_raw(pgid)
        .is_some_and(|p| rustix::process::kill_process_group(p, Signal::KILL).is_ok())
}

fn group_alive(pgid: u32) -> bool {
    i32::try_from(pgid)
        .ok()
        .and_then(Pid::from_raw)
        .is_some_and(|p| rustix::process::test_kill_process_group(p).is_ok())
}

/// Root, the namespace tools, and a kernel that lets us make namespaces.
fn probe() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root (namespaces, setpriv and netstat -p need it)".into());
    }
    for tool in [
        "ip", "nsenter", "unshare", "setpriv", "netstat", "ss", "timeout", "sh",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(format!("`{tool}` not found in PATH"));
        }
    }
    if !Path::new(PYTHON).is_file() {
        return Err(format!("{PYTHON} not found"));
    }
    let out = Command::new("unshare")
        .args(["--net", "--pid", "--fork", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot make namespaces: unshare --net --pid --fork --mount-proc: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Runs a command to completion, panicking with its output if it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Host pids whose parent is `ppid`. /proc/PID/task/PID/children would do,
/// but it depends on CONFIG_PROC_CHILDREN; the stat scan works everywhere.
fn children_of(ppid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm may hold spaces and parens: the fields after the last ')' are safe.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(&ppid.to_string()) {
            out.push(pid);
        }
    }
    out
}

/// A long-running actor: a container's first process, driven over stdin,
/// reporting over stdout (see actors.py). What it writes to stderr is seen
/// too, as lines `stderr LINE`: that is where `--log-file=auto` writes.
pub struct Actor {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    mark: usize,
    stopped: bool,
}

impl Drop for Actor {
    // Also covers a pod that panics half-built, before the Pod holds it.
    fn drop(&mut self) {
        self.stop();
    }
}

impl Actor {
    fn spawn(name: &'static str, mut cmd: Command) -> Actor {
        // Own process group: teardown can then reach every process the
        // launcher left behind with one kill(-pgid), whatever namespace
        // they ended up in (a PID namespace does not change the pgid seen
        // from the host).
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        let err_tx = tx.clone();
        // Actor tracebacks belong in the test output. util-linux 2.38's
        // unshare complains when its child dies of SIGKILL, which is how
        // every pod ends: that line is noise.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !line.contains("sigprocmask unblock failed") {
                    eprintln!("{name}: {line}");
                }
                let _ = err_tx.send(format!("stderr {line}"));
            }
        });
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Actor {
            name,
            stdin: child.stdin.take(),
            child,
            lines: rx,
            seen: Vec::new(),
            mark: 0,
            stopped: false,
        }
    }

    pub fn send(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{cmd}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: send {cmd:?}: {e}", self.name));
    }

    /// Waits until the lines seen so far satisfy `done`.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no {what} within {timeout:?}; saw {:#?}",
                    self.name, self.seen
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited before {what}; saw {:#?}", self.name, self.seen)
                }
            }
        }
    }

    /// The next line, after the last one `expect` returned, that starts with
    /// `prefix`.
    pub fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let mark = self.mark;
        self.wait_until(prefix, timeout, |seen| {
            seen[mark..].iter().any(|l| l.starts_with(prefix))
        });
        let idx = mark
            + self.seen[mark..]
                .iter()
                .position(|l| l.starts_with(prefix))
                .unwrap();
        self.mark = idx + 1;
        self.seen[idx].clone()
    }

    /// Sends `cmd`, then waits for the next line starting with `reply`.
    pub fn ask(&mut self, cmd: &str, reply: &str) -> String {
        self.send(cmd);
        self.expect(reply, RUN)
    }

    /// The CLOCK_MONOTONIC stamp of the next `event NAME STAMP` line.
    pub fn event(&mut self, name: &str) -> f64 {
        let line = self.expect(&format!("event {name} "), RUN);
        let stamp = line.split_whitespace().nth(2);
        stamp
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{}: no time stamp in {line:?}", self.name))
    }

    /// Host pid of the container's first process (the launcher's only child).
    fn init_pid(&self) -> u32 {
        let kids = children_of(self.child.id());
        assert_eq!(kids.len(), 1, "{}: launcher children {kids:?}", self.name);
        kids[0]
    }

    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        // Kill what the launcher (nsenter/unshare) started rather than the
        // launcher itself: the launcher then reaps its child and exits, and
        // we reap the launcher, so no zombie is left for the machine's init
        // (which, on some CI VMs, never reaps). Killing the first process
        // of a PID namespace makes the kernel kill the whole namespace.
        self.stdin.take();
        for pid in children_of(self.child.id()) {
            kill_pid(pid as i32);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        // Only while the launcher is unreaped is its pid, and so the group
        // id, certainly still ours.
        kill_group(self.child.id() as i32);
        let _ = self.child.wait();
    }
}

/// The result of one finished command.
#[derive(Debug)]
pub struct Done {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// `monotonic()` right after the process was reaped.
    pub exited_at: f64,
    /// `monotonic()` right before it was spawned.
    pub started_at: f64,
}

impl Done {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
    pub fn elapsed(&self) -> f64 {
        self.exited_at - self.started_at
    }
}

impl fmt::Display for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} after {:.3}s\n--- stdout\n{}--- stderr\n{}",
            self.status,
            self.elapsed(),
            self.stdout,
            self.stderr
        )
    }
}

/// A command running in the background; killed (whole group) if dropped
/// before `finish`.
pub struct Running {
    what: String,
    pgid: u32,
    started_at: f64,
    done: Option<JoinHandle<std::io::Result<(std::process::Output, f64)>>>,
    /// Its stderr as it comes ([`Running::wait_for_line`]), and all of it
    /// at the end.
    stderr: Option<common::Streamed>,
}

impl Running {
    pub fn spawn(what: impl Into<String>, mut cmd: Command) -> Running {
        let what = what.into();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let started_at = monotonic();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let pgid = child.id();
        let stderr = common::Streamed::read(child.stderr.take().expect("piped stderr"), "");
        // A thread blocked in wait() stamps the exit as it happens, instead
        // of a polling loop adding its period to every measurement.
        let done = thread::spawn(move || {
            let out = child.wait_with_output()?;
            Ok((out, monotonic()))
        });
        Running {
            what,
            pgid,
            started_at,
            done: Some(done),
            stderr: Some(stderr),
        }
    }

    /// Waits for a stderr line containing `what` (a hook's first look, so
    /// that a test acts only once it is on record); panics after `timeout`.
    pub fn wait_for_line(&mut self, what: &str, timeout: Duration) -> String {
        let stderr = self.stderr.as_mut().expect("not finished");
        stderr.wait_for(&self.what, what, timeout)
    }

    pub fn is_finished(&self) -> bool {
        self.done.as_ref().is_none_or(|h| h.is_finished())
    }

    pub fn finish(mut self, timeout: Duration) -> Done {
        let deadline = Instant::now() + timeout;
        while !self.is_finished() {
            if Instant::now() >= deadline {
                kill_group(self.pgid as i32);
                let out = self.done.take().unwrap().join().unwrap().ok();
                panic!(
                    "{} did not finish within {timeout:?}; killed. output: {out:?}",
                    self.what
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
        let (out, exited_at) = self
            .done
            .take()
            .unwrap()
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{}: {e}", self.what));
        let mut stderr = self.stderr.take().unwrap().all().join("\n");
        if !stderr.is_empty() {
            stderr.push('\n');
        }
        Done {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
            exited_at,
            started_at: self.started_at,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(h) = self.done.take() {
            if !h.is_finished() {
                kill_group(self.pgid as i32);
            }
            let _ = h.join();
        }
    }
}

/// Where the app container's processes live.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AppPidNs {
    /// The default: its own PID namespace and /proc.
    Own,
    /// The proxy container's PID namespace, whose PID 1 is pilot-agent.
    SharedWithProxy,
    /// `shareProcessNamespace: true` as the kubelet makes it: one PID
    /// namespace for the pod, whose PID 1 is the pause process (uid 65535);
    /// the proxy and the app containers join it.
    SharedWithPause,
}

/// The pause image's user.
pub const PAUSE_UID: u32 = 65535;

/// What the pod is made of beyond [`AppPidNs`]: the mesh's proxy, and
/// whether each container has a cgroup v2 group of its own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Shape {
    pub app_ns: AppPidNs,
    /// The proxy container's uid (its processes, the hook, the client).
    pub proxy_uid: u32,
    /// The names the proxy's two processes run under (comm and argv[0]):
    /// its PID 1, and the one that PID 1 starts.
    pub proxy_names: [&'static str; 2],
    /// Each container in a cgroup v2 group of its own with its own cgroup
    /// namespace and cgroup2 mounted at /sys/fs/cgroup inside, as on a
    /// cgroup v2 node; every hook joins its container's group first, as
    /// `runc exec` does. The groups are made under this machine's cgroup2
    /// mount (`/sys/fs/cgroup/unified` beside v1 controllers, or
    /// `/sys/fs/cgroup`). Only with [`AppPidNs::Own`].
    pub cgroups: bool,
}

impl Shape {
    /// Istio's sidecar pod: uid 1337, pilot-agent starting envoy, no
    /// cgroup of each container's own (the fallback).
    pub fn istio(app_ns: AppPidNs) -> Shape {
        Shape {
            app_ns,
            proxy_uid: PROXY_UID,
            proxy_names: ["pilot-agent", "envoy"],
            cgroups: false,
        }
    }
}

/// Where this machine's cgroup v2 hierarchy is mounted, if it is.
pub fn cgroup2_mount() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(w[1]))
        })
}

/// The cgroup v2 id of a group: its directory's inode on 64-bit kernels.
pub fn cgroup_id(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .ino()
}

/// One TCP socket as the tests compare them: /proc state name, local and
/// remote in the contract's text form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sock {
    pub state: String,
    pub local: String,
    pub remote: String,
}

impl Sock {
    pub fn new(state: &str, local: &str, remote: &str) -> Sock {
        Sock {
            state: state.into(),
            local: local.into(),
            remote: remote.into(),
        }
    }
}

impl fmt::Display for Sock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.state, self.local, self.remote)
    }
}

static POD_SEQ: AtomicUsize = AtomicUsize::new(0);

/// The pod. Dropping it kills every process it started and deletes its
/// network namespace, also when the test panicked half way.
pub struct Pod {
    pub netns: String,
    dir: tempfile::TempDir,
    netns_made: bool,
    proxy: Option<Actor>,
    app: Option<Actor>,
    /// The pause process, PID 1 of a shared PID namespace.
    pause: Option<Actor>,
    /// Containers added with [`Pod::add_container`].
    extras: Vec<Actor>,
    /// Host pid of the proxy container's PID 1 (pilot-agent, or the pause
    /// process when the PID namespace is shared): the target for every nsenter.
    pub proxy_init: u32,
    /// pids inside the proxy's PID namespace, as the hook sees them.
    pub envoy_pid: u32,
    pub pilot_agent_pid: u32,
    /// The app's pid in its own PID namespace (in the proxy's, when shared).
    pub app_pid: u32,
    /// Sockets the app holds, and those the proxy holds, once set up.
    pub app_socks: BTreeSet<Sock>,
    pub proxy_socks: BTreeSet<Sock>,
    /// Local address of the app's long-lived outbound connection.
    pub app_out_local: String,
    pub shape: Shape,
    /// The pod's cgroup v2 group, holding one group per container, when
    /// [`Shape::cgroups`].
    pub cgroups: Option<PathBuf>,
    torn_down: bool,
}

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|w| w.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_string()
}

impl Pod {
    /// The pod for the running test, built as [`Pod::build`] describes;
    /// `None` when the machine cannot run live tests (see
    /// [`common::runnable`]).
    pub fn start(app_ns: AppPidNs) -> Option<Pod> {
        Pod::start_shaped(Shape::istio(app_ns))
    }

    /// The pod of `shape` (see [`Pod::start`]).
    pub fn start_shaped(shape: Shape) -> Option<Pod> {
        let test = common::test_name();
        let probed = probe().and_then(|()| {
            if !shape.cgroups {
                return Ok(None);
            }
            assert_eq!(
                shape.app_ns,
                AppPidNs::Own,
                "cgroups with a shared PID namespace"
            );
            cgroup2_mount()
                .map(Some)
                .ok_or_else(|| "no cgroup v2 hierarchy mounted here".to_owned())
        });
        let mount = match probed {
            Ok(m) => m,
            Err(e) => {
                common::runnable(&test, Err(e));
                return None;
            }
        };
        let netns = format!(
            "prestop-live-{}-{}",
            std::process::id(),
            POD_SEQ.fetch_add(1, Ordering::SeqCst)
        );
        // Everything the actors and the hook execute is copied here: the
        // checkout and the cargo target dir may sit under a home that uid
        // 1337 and 1000 cannot traverse.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{netns}-"))
            .tempdir_in("/tmp")
            .expect("tempdir");
        let mut pod = Pod {
            netns,
            dir,
            netns_made: false,
            proxy: None,
            app: None,
            pause: None,
            extras: Vec::new(),
            proxy_init: 0,
            envoy_pid: 0,
            pilot_agent_pid: 0,
            app_pid: 0,
            app_socks: BTreeSet::new(),
            proxy_socks: BTreeSet::new(),
            app_out_local: String::new(),
            shape,
            cgroups: None,
            torn_down: false,
        };
        if let Some(mount) = mount {
            let dir = mount.join(&pod.netns);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            pod.cgroups = Some(dir);
        }
        eprintln!("{test}: pod {}", pod.netns);
        pod.build(shape.app_ns);
        Some(pod)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    fn build(&mut self, app_ns: AppPidNs) {
        let d = self.dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.join("actors.py"), ACTORS).unwrap();
        // exec through a link named envoy/pilot-agent sets both comm (what
        // ss and /proc/PID/comm show) and argv[0] (what netstat shows).
        for name in self.shape.proxy_names {
            symlink(PYTHON, d.join(name)).unwrap();
        }
        let bin = d.join("prestop-wait");
        std::fs::copy(common::BIN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

        sh("ip", &["netns", "add", &self.netns]);
        self.netns_made = true;
        sh("ip", &["-n", &self.netns, "link", "set", "lo", "up"]);

        // With shareProcessNamespace the pause process comes first and is
        // the PID namespace's PID 1; the containers join it.
        let pause_init = (app_ns == AppPidNs::SharedWithPause).then(|| {
            let mut cmd = self.new_container("pause");
            cmd.args(setpriv(PAUSE_UID));
            cmd.args([PYTHON.into(), self.p("actors.py"), "idle".into()]);
            let mut pause = Actor::spawn("pause", cmd);
            pause.expect("ready idle", READY);
            let init = pause.init_pid();
            self.pause = Some(pause);
            init
        });

        // Proxy container: pilot-agent is its PID 1 and starts envoy, as in
        // the istio-proxy image (or it joins the pause process's namespace).
        let mut cmd = match pause_init {
            Some(pid) => self.enter(pid),
            None => self.new_container("proxy"),
        };
        cmd.args(setpriv(self.shape.proxy_uid));
        cmd.env("PRESTOP_LIVE_PROXY_CHILD", self.shape.proxy_names[1]);
        cmd.args([
            self.p(self.shape.proxy_names[0]),
            self.p("actors.py"),
            "pilot-agent".into(),
        ]);
        let mut proxy = Actor::spawn("proxy", cmd);
        let pa = proxy.expect("ready pilot-agent", READY);
        let en = proxy.expect("ready envoy", READY);
        self.pilot_agent_pid = field(&pa, "pid").parse().unwrap();
        self.envoy_pid = field(&en, "pid").parse().unwrap();
        self.proxy_init = pause_init.unwrap_or_else(|| proxy.init_pid());
        self.proxy = Some(proxy);

        let mut cmd = match app_ns {
            AppPidNs::Own => self.new_container("app"),
            AppPidNs::SharedWithProxy | AppPidNs::SharedWithPause => self.in_proxy(),
        };
        cmd.args(setpriv(APP_UID));
        cmd.args([PYTHON.into(), self.p("actors.py"), "app".into()]);
        let mut app = Actor::spawn("app", cmd);
        let ready = app.expect("ready app", READY);
        self.app_pid = field(&ready, "pid").parse().unwrap();
        self.app = Some(app);

        // Inbound traffic as Istio delivers it: envoy connects from
        // 127.0.0.6 to the app's port. The second one lands on the
        // dual-stack IPv6 listener, so the app's side shows up in tcp6 as an
        // IPv4-mapped address.
        let mut inbound = Vec::new();
        for port in [8080, 9090] {
            self.proxy_mut()
                .send(&format!("envoy inbound 127.0.0.1 {port}"));
            let done = self.proxy_mut().expect("done inbound", READY);
            let w: Vec<&str> = done.split_whitespace().collect();
            inbound.push(Sock::new("ESTABLISHED", w[2], w[3]));
        }
        // An accepted connection has an inode only once accept() returned:
        // wait for the app to say so (one outbound + two inbound).
        self.app_mut()
            .wait_until("accepted inbound", READY, |seen| {
                seen.iter().filter(|l| l.starts_with("sock ")).count() == 3
            });
        let app_conns: Vec<Sock> = self
            .app()
            .seen
            .iter()
            .filter_map(|l| l.strip_prefix("sock "))
            .map(|l| {
                let (a, b) = l.split_once(' ').unwrap();
                Sock::new("ESTABLISHED", a, b)
            })
            .collect();
        self.app_out_local = app_conns[0].local.clone();
        self.app_socks = [
            Sock::new("LISTEN", "0.0.0.0:8080", "0.0.0.0:0"),
            Sock::new("LISTEN", "[::]:9090", "[::]:0"),
        ]
        .into_iter()
        .chain(app_conns.iter().cloned())
        .collect();
        self.proxy_socks = [
            ("127.0.0.1", 15000),
            ("0.0.0.0", 15001),
            ("0.0.0.0", 15006),
            ("0.0.0.0", 15021),
            ("0.0.0.0", 15090),
            ("0.0.0.0", 15020),
            ("127.0.0.1", 15004),
        ]
        .iter()
        .map(|(h, p)| Sock::new("LISTEN", &format!("{h}:{p}"), "0.0.0.0:0"))
        .chain([Sock::new(
            "ESTABLISHED",
            "127.0.0.1:15001",
            &self.app_out_local,
        )])
        .chain(inbound)
        .collect();
    }

    pub fn proxy_mut(&mut self) -> &mut Actor {
        self.proxy.as_mut().unwrap()
    }
    pub fn app_mut(&mut self) -> &mut Actor {
        self.app.as_mut().unwrap()
    }
    pub fn app(&self) -> &Actor {
        self.app.as_ref().unwrap()
    }

    /// `prestop-wait ARGS` inside the proxy container, as uid 1337: what the
    /// kubelet does for an exec preStop hook.
    pub fn hook(&self, args: &[&str]) -> Command {
        let mut cmd = self.in_proxy();
        cmd.args(setpriv(self.shape.proxy_uid))
            .arg(self.path("prestop-wait"))
            .args(args);
        cmd
    }

    /// The hook as [`Pod::hook`] runs it, but behind `wrapper` (a program
    /// and its arguments that execs the hook's path and arguments given
    /// last), such as a seccomp filter.
    pub fn run_wrapped_hook(&self, wrapper: &[&str], args: &[&str]) -> Done {
        let mut cmd = self.in_proxy();
        cmd.args(setpriv(self.shape.proxy_uid))
            .args(wrapper)
            .arg(self.path("prestop-wait"))
            .args(args);
        self.run(
            &format!("{wrapper:?} {args:?}"),
            cmd,
            Duration::from_secs(10),
        )
    }

    /// A command as the first process of a new container `name`: the pod's
    /// network namespace, its own PID namespace and /proc, and with
    /// [`Shape::cgroups`] its own cgroup v2 group, cgroup namespace and
    /// cgroup2 at /sys/fs/cgroup. `--kill-child` ends the command if the
    /// launcher dies.
    fn new_container(&self, name: &str) -> Command {
        let mut cmd = self.join_cgroup(name, true);
        cmd.arg(format!("--net=/run/netns/{}", self.netns));
        cmd.args(["--", "unshare", "--pid", "--fork", "--mount-proc"]);
        if self.cgroups.is_some() {
            cmd.args(["--cgroup", "--kill-child", "--"]);
            cmd.args([
                "sh",
                "-c",
                "mount -t cgroup2 none /sys/fs/cgroup && exec \"$@\"",
                "sh",
            ]);
        } else {
            cmd.args(["--kill-child", "--"]);
        }
        cmd
    }

    /// `nsenter`, run from container `name`'s cgroup v2 group (made when
    /// `make` and not there yet) when the pod has them: what `runc exec` does before it
    /// enters a container's namespaces.
    fn join_cgroup(&self, name: &str, make: bool) -> Command {
        let Some(pod) = &self.cgroups else {
            return Command::new("nsenter");
        };
        let dir = pod.join(name);
        if make && !dir.is_dir() {
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo $$ > \"$0/cgroup.procs\" && exec nsenter \"$@\""]);
        cmd.arg(&dir);
        cmd
    }

    /// The cgroup v2 id of container `name`'s group.
    pub fn cgroup_of(&self, name: &str) -> u64 {
        cgroup_id(
            &self
                .cgroups
                .as_ref()
                .expect("a pod with cgroups")
                .join(name),
        )
    }

    /// A command in the proxy container's namespaces, as root.
    pub fn in_proxy(&self) -> Command {
        self.enter_container(self.proxy_init, "proxy")
    }

    /// A command in the network, PID and mount namespaces of host pid `pid`.
    fn enter(&self, pid: u32) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid.to_string(), "--net", "--pid", "--mount", "--"]);
        cmd
    }

    /// A command in container `name`, whose PID 1 is host pid `pid`: its
    /// namespaces, and its cgroup (and cgroup namespace) where it has one.
    fn enter_container(&self, pid: u32, name: &str) -> Command {
        if self.cgroups.is_none() {
            return self.enter(pid);
        }
        let mut cmd = self.join_cgroup(name, false);
        cmd.args([
            "-t",
            &pid.to_string(),
            "--net",
            "--pid",
            "--mount",
            "--cgroup",
            "--",
        ]);
        cmd
    }

    /// Another container in the pod (a log shipper, a native sidecar): its
    /// own PID namespace, running as `uid`, listening on 0.0.0.0 at each of
    /// `ports` until the pod ends.
    pub fn add_container(&mut self, name: &'static str, uid: u32, ports: &[u16]) -> &mut Actor {
        let mut cmd = self.new_container(name);
        cmd.args(setpriv(uid));
        cmd.args([PYTHON.into(), self.p("actors.py"), "idle".into()]);
        cmd.args(ports.iter().map(u16::to_string));
        let mut actor = Actor::spawn(name, cmd);
        actor.expect("ready idle", READY);
        self.extras.push(actor);
        self.extras.last_mut().unwrap()
    }

    /// A client sending inbound traffic (`actors.py client ARGS`) from the
    /// pod's network namespace as the proxy's uid: in a sidecar pod, the
    /// app's inbound connections come from Envoy. Runs until the pod ends.
    pub fn add_client(&mut self, args: &[&str]) -> &mut Actor {
        // Envoy's connections: in the proxy's cgroup, where it has one.
        let mut cmd = self.new_container("proxy");
        cmd.args(setpriv(self.shape.proxy_uid));
        cmd.args([PYTHON.into(), self.p("actors.py"), "client".into()]);
        cmd.args(args);
        let mut actor = Actor::spawn("client", cmd);
        actor.expect("ready client", READY);
        self.extras.push(actor);
        self.extras.last_mut().unwrap()
    }

    /// `prestop-wait ARGS` inside the app container, as uid 1000: the app
    /// container's own preStop hook.
    pub fn app_hook(&self, args: &[&str]) -> Command {
        let mut cmd = self.enter_container(self.app().init_pid(), "app");
        cmd.args(setpriv(APP_UID))
            .arg(self.path("prestop-wait"))
            .args(args);
        cmd
    }

    /// A command in the app container's namespaces, as root, run to its end.
    pub fn run_in_app(&self, args: &[&str]) -> Done {
        let mut cmd = self.enter_container(self.app().init_pid(), "app");
        cmd.args(args);
        self.run(&args.join(" "), cmd, RUN)
    }

    pub fn run(&self, what: &str, cmd: Command, timeout: Duration) -> Done {
        Running::spawn(what, cmd).finish(timeout)
    }

    /// [`Pod::hook`] started in the background, named by its arguments.
    pub fn spawn_hook(&self, args: &[&str]) -> Running {
        Running::spawn(args.join(" "), self.hook(args))
    }

    /// [`Pod::hook`] run to its end.
    pub fn run_hook(&self, args: &[&str]) -> Done {
        self.spawn_hook(args).finish(RUN)
    }

    /// A command in the proxy container, as root, run to its end.
    pub fn run_in_proxy(&self, args: &[&str]) -> Done {
        let mut cmd = self.in_proxy();
        cmd.args(args);
        self.run(&args.join(" "), cmd, RUN)
    }

    /// Runs `check ARGS --json` (the caller passes --json) and parses it.
    pub fn check_json(&self, args: &[&str]) -> (Done, Report) {
        let done = self.run(
            &format!("check {args:?}"),
            self.hook(&[&["check"], args].concat()),
            Duration::from_secs(10),
        );
        assert!(
            done.code() == 0 || done.code() == 1,
            "check {args:?}: {done}"
        );
        let report =
            Report::parse(&done.stdout).unwrap_or_else(|e| panic!("check {args:?}: {e}\n{done}"));
        (done, report)
    }

    /// Waits until every TCP socket of the pod is LISTEN, ESTABLISHED or
    /// TIME_WAIT. Closing a loopback connection walks through FIN_WAIT,
    /// CLOSE_WAIT and LAST_ACK in microseconds, but the tools here each
    /// read /proc/net/tcp at their own instant; comparing them only makes
    /// sense once nothing is in flight.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let netns = format!("--net=/run/netns/{}", self.netns);
            let out = sh("nsenter", &[&netns, "ss", "-Htan"]);
            let busy: Vec<&str> = out
                .lines()
                .filter(|l| {
                    let st = l.split_whitespace().next().unwrap_or("");
                    !matches!(st, "LISTEN" | "ESTAB" | "TIME-WAIT")
                })
                .collect();
            if busy.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "pod never settled: {busy:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        // App first: in the shared-PID-namespace pod it lives under the
        // proxy's PID 1, and killing that first would orphan its launcher's
        // child mid-way.
        drop(self.app.take());
        self.extras.clear();
        drop(self.proxy.take());
        drop(self.pause.take());
        if self.netns_made {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns])
                .stdin(Stdio::null())
                .status();
        }
        if let Some(pod) = &self.cgroups {
            remove_cgroups(pod);
        }
    }

    /// Tears the pod down and checks that nothing of it is left: no process
    /// in its groups, no network namespace.
    pub fn close(mut self) {
        let groups: Vec<u32> = [self.app.as_ref(), self.proxy.as_ref(), self.pause.as_ref()]
            .into_iter()
            .flatten()
            .chain(&self.extras)
            .map(|a| a.child.id())
            .collect();
        self.teardown();
        for g in groups {
            assert!(
                !group_alive(g),
                "process group {g} still alive after teardown"
            );
        }
        let list = sh("ip", &["netns", "list"]);
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&self.netns)),
            "netns {} left behind: {list}",
            self.netns
        );
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Removes a pod's cgroup v2 groups, once their last processes have gone
/// (a killed process leaves its group a moment after its parent reaped
/// it); gives up after two seconds, saying what is left.
fn remove_cgroups(pod: &Path) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let children: Vec<PathBuf> = std::fs::read_dir(pod)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        let mut left = false;
        for c in children {
            left |= std::fs::remove_dir(&c).is_err();
        }
        if !left && (std::fs::remove_dir(pod).is_ok() || !pod.exists()) {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("cgroup {} left behind", pod.display());
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn setpriv(uid: u32) -> Vec<String> {
    vec![
        "setpriv".into(),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
        "--".into(),
    ]
}

impl From<&JsonSock> for Sock {
    fn from(s: &JsonSock) -> Sock {
        Sock::new(&s.state, &s.local, &s.remote)
    }
}

/// The blocking and ignored sockets of a `check --json` report, as sets.
pub trait SockSets {
    fn blocking_set(&self) -> BTreeSet<Sock>;
    fn ignored_set(&self) -> BTreeSet<Sock>;
}

impl SockSets for Report {
    fn blocking_set(&self) -> BTreeSet<Sock> {
        self.blocking.iter().map(Sock::from).collect()
    }
    fn ignored_set(&self) -> BTreeSet<Sock> {
        self.ignored().iter().map(Sock::from).collect()
    }
}

// ---- the other tools' views, normalised for comparison -------------------

/// An address as the contract prints it: "0.0.0.0:8080", "[::]:9090",
/// "[::ffff:127.0.0.1]:80". Parsed strictly: a wrong form is a finding.
pub fn contract_addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not the contract's address form: {e}"))
}

/// An address column of `ss -n`. ss prints the wildcard of a dual-stack
/// (IPV6_V6ONLY=0) listener as "*", and a listener's peer port as "*".
pub fn ss_addr(s: &str) -> SocketAddr {
    let (host, port) = s
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("ss addr {s:?}"));
    let port: u16 = if port == "*" {
        0
    } else {
        port.parse().unwrap()
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host == "*" {
        "::".parse().unwrap()
    } else {
        host.parse()
            .unwrap_or_else(|e| panic!("ss addr {s:?}: {e}"))
    };
    SocketAddr::new(ip, port)
}

/// An address column of `netstat -n`: no brackets, and on a tcp6 line an
/// IPv4-mapped address is printed as bare IPv4.
pub fn netstat_addr(proto: &str, s: &str) -> SocketAddr {
    let (host, port) = s
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("netstat addr {s:?}"));
    let port: u16 = if port == "*" {
        0
    } else {
        port.parse().unwrap()
    };
    let mut ip: IpAddr = host
        .parse()
        .unwrap_or_else(|e| panic!("netstat addr {s:?}: {e}"));
    if let (IpAddr::V4(v4), "tcp6") = (ip, proto) {
        ip = IpAddr::V6(v4.to_ipv6_mapped());
    }
    SocketAddr::new(ip, port)
}

/// /proc state names ("ESTABLISHED", "TIME_WAIT") from ss's ("ESTAB",
/// "TIME-WAIT").
pub fn ss_state(s: &str) -> String {
    match s {
        "ESTAB" => "ESTABLISHED".into(),
        "FIN-WAIT-1" => "FIN_WAIT1".into(),
        "FIN-WAIT-2" => "FIN_WAIT2".into(),
        "SYN-RECV" => "SYN_RECV".into(),
        other => other.replace('-', "_"),
    }
}

/// Process names in ss's `users:(("envoy",pid=2,fd=7),...)` column.
pub fn ss_users(col: &str) -> Vec<String> {
    col.split("(\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

/// A full-view line: state, local, remote, process names.
#[derive(Debug, Clone)]
pub struct ToolLine {
    pub state: String,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub procs: Vec<String>,
}

pub fn parse_ss(out: &str) -> Vec<ToolLine> {
    out.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("State"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            ToolLine {
                state: ss_state(w[0]),
                local: ss_addr(w[3]),
                remote: ss_addr(w[4]),
                procs: w.get(5).map(|c| ss_users(c)).unwrap_or_default(),
            }
        })
        .collect()
}

pub fn parse_netstat(out: &str) -> Vec<ToolLine> {
    out.lines()
        .filter(|l| l.starts_with("tcp"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let prog = w.last().unwrap();
            ToolLine {
                state: w[5].to_string(),
                local: netstat_addr(w[0], w[3]),
                remote: netstat_addr(w[0], w[4]),
                procs: prog
                    .split_once('/')
                    .map(|(_, name)| vec![name.to_string()])
                    .unwrap_or_default(),
            }
        })
        .collect()
}
