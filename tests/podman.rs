//! prestop-wait in a real container runtime: podman pods under runc, with
//! the images built by podman from the repository's Dockerfile, offline.
//!
//! What a real runtime adds to the namespaces of tests/live_pod.rs: an
//! infra container holding the pod's network namespace, an exec'd hook with
//! no capabilities, `no_new_privs`, a seccomp filter and a read-only root,
//! and container stdio handed to the container's user.
//!
//! Images, all local: a stand-in for istio/proxyv2 (`pilot-agent` and
//! `envoy` from tests/podman/actor, uid 1337, pilot-agent as the
//! entrypoint), the Dockerfile's `istio-proxy` target built on it and its
//! `bin` target, both with `--build-context builder=DIR` (DIR holding the
//! static release binary) so that no registry is needed.
//!
//! Needs root, podman and runc (Debian: podman runc). Without them the test
//! prints `skipped: <reason>` and passes, except under CI=true, where it
//! fails. Everything lives in one private podman store under /tmp, removed
//! at the end, after a failure, and at the start of the next run if a run
//! was killed.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use prestop_wait::procread::{self, Socket};

/// The private store, fixed so a killed run's leftovers are found again.
const ROOT: &str = "/tmp/prestop-wait-podman";
const TARGET: &str = "x86_64-unknown-linux-musl";
const APP_UID: u32 = 1000;
const SHIPPER_UID: u32 = 65532;

/// Root, podman, runc and the static target; `Err(reason)` otherwise.
fn probe() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("podman pods with other uids need root".into());
    }
    for tool in ["podman", "runc"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!("no {tool} (Debian: apt-get install podman runc)"));
        }
    }
    target_installed(TARGET)
}

/// A podman of our own: private store, runc, cgroupfs, low ulimits (the
/// defaults fail here: "setrlimit RLIMIT_NOFILE: Operation not permitted").
/// Dropping it removes every pod, container and image, the store, and the
/// cgroup directories and /run/containers that podman made.
struct Podman {
    root: PathBuf,
    cgroups_before: BTreeSet<PathBuf>,
    run_containers_existed: bool,
}

/// Directories under each cgroup controller's `libpod_parent`.
fn libpod_cgroups() -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("libpod_parent"))
        .chain([PathBuf::from("/sys/fs/cgroup/libpod_parent")])
        .filter(|p| p.is_dir())
        .collect();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        found.insert(dir);
    }
    found
}

impl Podman {
    fn new() -> Podman {
        let root = PathBuf::from(ROOT);
        // A killed run leaves its store, and its cgroup directories, which
        // this run then removes as if it had made them.
        let killed_run = root.exists();
        if killed_run {
            eprintln!("podman: removing what a killed run left in {ROOT}");
            Podman::clean(&root);
        }
        for d in ["store", "run", "tmp", "ctx"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(
            root.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n",
        )
        .unwrap();
        Podman {
            root,
            cgroups_before: if killed_run {
                BTreeSet::new()
            } else {
                libpod_cgroups()
            },
            run_containers_existed: Path::new("/run/containers").exists(),
        }
    }

    fn command_in(root: &Path) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", root.join("containers.conf"))
            .arg("--root")
            .arg(root.join("store"))
            .arg("--runroot")
            .arg(root.join("run"))
            .arg("--tmpdir")
            .arg(root.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
            ])
            .stdin(Stdio::null());
        c
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Podman::command_in(&self.root);
        c.args(args);
        c
    }

    /// Runs podman ARGS, which must succeed; its stdout, trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run podman");
        assert!(
            out.status.success(),
            "podman {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn output(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run podman")
    }

    /// Everything in a store at `root`, then the store.
    fn clean(root: &Path) {
        for args in [
            &["pod", "rm", "--all", "--force", "--time", "0"][..],
            &["rm", "--all", "--force", "--time", "0"],
            &["rmi", "--all", "--force"],
        ] {
            let _ = Podman::command_in(root)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // vfs and runc leave no mounts here; should one appear, unmount it
        // rather than delete through it.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(ROOT))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = std::fs::remove_dir_all(root);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        Podman::clean(&self.root);
        // Deepest first: a cgroup directory goes only when it is empty.
        let mut made: Vec<PathBuf> = libpod_cgroups()
            .difference(&self.cgroups_before)
            .cloned()
            .collect();
        made.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for dir in made {
            let _ = std::fs::remove_dir(&dir);
        }
        if !self.run_containers_existed {
            let _ = std::fs::remove_dir_all("/run/containers");
        }
    }
}

/// A directory tree as an image: `podman import` with Dockerfile changes.
fn import(pm: &Podman, dir: &Path, tag: &str, changes: &[&str]) {
    let tar = pm
        .root
        .join("tmp")
        .join(format!("{}.tar", tag.replace([':', '/'], "_")));
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar {}", dir.display());
    let mut args = vec!["import".to_string()];
    for c in changes {
        args.push("--change".into());
        args.push(c.to_string());
    }
    args.push(tar.to_string_lossy().into());
    args.push(tag.into());
    pm.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The files of an image, relative, with the bytes of the one at `read`.
fn image_files(pm: &Podman, image: &str, read: &str) -> (BTreeSet<String>, Vec<u8>) {
    let mount = PathBuf::from(pm.ok(&["image", "mount", image]));
    let mut files = BTreeSet::new();
    let mut stack = vec![mount.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                files.insert(
                    p.strip_prefix(&mount)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let bytes = std::fs::read(mount.join(read)).unwrap_or_default();
    pm.ok(&["image", "unmount", image]);
    (files, bytes)
}

/// The images: the proxy stand-in, `istio-proxy` and `bin` from the
/// Dockerfile, an app image. Returns the static prestop-wait's bytes.
fn build_images(pm: &Podman, hook: &Path, actor: &Path) -> Vec<u8> {
    let standin = pm.root.join("ctx/standin");
    let bin_dir = standin.join("usr/local/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(actor, bin_dir.join("pod-actor")).unwrap();
    for name in ["pilot-agent", "envoy", "app"] {
        std::os::unix::fs::symlink("pod-actor", bin_dir.join(name)).unwrap();
    }
    import(
        pm,
        &standin,
        "localhost/proxyv2-standin:test",
        &[
            "ENTRYPOINT [\"/usr/local/bin/pilot-agent\"]",
            "USER 1337:1337",
        ],
    );
    import(
        pm,
        &standin,
        "localhost/app:test",
        &["ENTRYPOINT [\"/usr/local/bin/app\"]"],
    );
    // The builder stage, replaced by a directory with the static binary.
    let builder = pm.root.join("ctx/builder");
    std::fs::create_dir_all(&builder).unwrap();
    std::fs::copy(hook, builder.join("prestop-wait")).unwrap();
    let repo = env!("CARGO_MANIFEST_DIR");
    let builder_ctx = format!("builder={}", builder.display());
    let dockerfile = format!("{repo}/Dockerfile");
    for (target, tag, extra) in [
        (
            "istio-proxy",
            "localhost/istio-proxy:test",
            &["--build-arg", "PROXY_IMAGE=localhost/proxyv2-standin:test"][..],
        ),
        ("bin", "localhost/prestop-wait:bin", &[][..]),
    ] {
        let mut args = vec![
            "build",
            "--build-context",
            &builder_ctx,
            "--target",
            target,
            "-t",
            tag,
            "-f",
            &dockerfile,
        ];
        args.extend(extra);
        args.push(repo);
        pm.ok(&args);
    }
    std::fs::read(hook).unwrap()
}

/// The host's view of the pod's sockets: /proc/<infra pid>/net/tcp{,6}.
fn pod_sockets(infra_pid: &str) -> Vec<Socket> {
    let root = PathBuf::from(format!("/proc/{infra_pid}"));
    let mut rows = Vec::new();
    let mut buf = Vec::new();
    for t in [procread::Table::Tcp, procread::Table::Tcp6] {
        procread::read_table(&root, t, &mut buf, |s| rows.push(s)).expect("read the pod's table");
    }
    rows
}

/// (state, local, remote) of held sockets of `uid`, as `check --json`
/// prints them.
fn held_by(rows: &[Socket], uid: u32) -> BTreeSet<(String, String, String)> {
    rows.iter()
        .filter(|s| s.uid == uid && s.inode != 0)
        .map(|s| {
            (
                prestop_wait::render::StateName::as_str(&s.state).to_string(),
                prestop_wait::render::Addr(&s.local).to_string(),
                prestop_wait::render::Addr(&s.remote).to_string(),
            )
        })
        .collect()
}

/// A pod: infra, the proxy (from `proxy_image`, hardened as Istio runs it),
/// the app, and a log shipper of another uid that never exits.
struct Pod<'a> {
    pm: &'a Podman,
    name: String,
    infra_pid: String,
}

impl<'a> Pod<'a> {
    fn start(
        pm: &'a Podman,
        name: &str,
        share_pid: bool,
        proxy: &[&str],
        app: &[&str],
        app_close: &str,
    ) -> Pod<'a> {
        let mut create = vec!["pod", "create", "--name", name, "--network", "none"];
        if share_pid {
            create.extend(["--share", "net,ipc,uts,pid"]);
        }
        pm.ok(&create);
        // Removes the pod however this function ends.
        let mut pod = Pod {
            pm,
            name: name.into(),
            infra_pid: String::new(),
        };
        let c = |n: &str| format!("{name}-{n}");
        let (proxy_c, app_c, shipper_c) = (c("proxy"), c("app"), c("shipper"));
        let mut run = vec![
            "run",
            "-d",
            "--pod",
            name,
            "--name",
            &proxy_c,
            "--user",
            "1337",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
        ];
        run.extend(proxy);
        pm.ok(&run);
        let env = format!("APP_CLOSE_AFTER={app_close}");
        let mut run = vec![
            "run", "-d", "--pod", name, "--name", &app_c, "--user", "1000", "-e", &env,
        ];
        run.extend(app);
        run.push("localhost/app:test");
        pm.ok(&run);
        pm.ok(&[
            "run",
            "-d",
            "--pod",
            name,
            "--name",
            &shipper_c,
            "--user",
            "65532",
            "--entrypoint",
            "/usr/local/bin/pod-actor",
            "localhost/app:test",
            "idle",
            "5432",
        ]);
        let infra = pm.ok(&["pod", "inspect", name, "--format", "{{.InfraContainerID}}"]);
        pod.infra_pid = pm.ok(&["inspect", &infra, "--format", "{{.State.Pid}}"]);
        // Ready: the app's four sockets (two listeners, its call to 15001,
        // envoy's inbound connection) and the shipper's listener.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rows = pod_sockets(&pod.infra_pid);
            if held_by(&rows, APP_UID).len() == 4 && held_by(&rows, SHIPPER_UID).len() == 1 {
                break pod;
            }
            assert!(Instant::now() < deadline, "pod {name} not ready: {rows:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn container(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    /// The hook, as the kubelet runs an exec hook: in the proxy container,
    /// as its user.
    fn hook(&self, program: &str, args: &[&str]) -> Command {
        self.exec("proxy", "1337", program, args)
    }

    /// `program ARGS` exec'd in container `role` as `user`.
    fn exec(&self, role: &str, user: &str, program: &str, args: &[&str]) -> Command {
        let c = self.container(role);
        let mut cmd = self.pm.cmd(&["exec", "--user", user, &c, program]);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    fn logs(&self, role: &str) -> String {
        let out = self.pm.output(&["logs", &self.container(role)]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        let _ = self
            .pm
            .output(&["pod", "rm", "--force", "--time", "0", &self.name]);
    }
}

/// Seconds on CLOCK_BOOTTIME.
fn boottime() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// The host pid of a process whose argv is `argv`, once it is there.
fn find_process(argv: &[&str], timeout: Duration) -> Option<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want) {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn wait_child(child: &mut Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "hook still running after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut out = Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_end(&mut out.stdout);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_end(&mut out.stderr);
    }
    out
}

/// The kubelet's stop: the hook starts, and at the same moment the app gets
/// SIGTERM. The hook must exit 0 within 1 s of the app's last socket
/// leaving the pod's table (the host's reading); returns its output.
fn stop_like_the_kubelet(pod: &Pod, what: &str, program: &str, args: &[&str]) -> Output {
    let mut hook = pod.hook(program, args).spawn().unwrap();
    pod.pm
        .ok(&["kill", "--signal", "TERM", &pod.container("app")]);
    let mut closed_at = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while hook.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "hook never exited");
        if closed_at.is_none() && held_by(&pod_sockets(&pod.infra_pid), APP_UID).is_empty() {
            closed_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let exited = Instant::now();
    let out = wait_child(&mut hook, Duration::from_secs(1));
    // The app's last socket and the hook may both go between two 5 ms
    // turns: then the close is as late as the exit, if it happened at all.
    if closed_at.is_none() && held_by(&pod_sockets(&pod.infra_pid), APP_UID).is_empty() {
        closed_at = Some(exited);
    }
    let closed =
        closed_at.unwrap_or_else(|| panic!("the hook exited before the app closed: {out:?}"));
    let after = (exited - closed).as_secs_f64();
    eprintln!("podman: {what}: exit {after:.3}s after the app's last socket left");
    assert_eq!(code(&out), 0, "{what}: {}", stderr(&out));
    // The hook reacts within its interval; podman exec's teardown (conmon,
    // then the client) comes on top of it.
    assert!(
        after <= 1.0,
        "{what}: exit {after:.3}s after the app's last close"
    );
    out
}

#[test]
fn podman_pods() {
    if !runnable(&test_name(), probe()) {
        return;
    }
    let started = Instant::now();
    let hook_bin = cargo_build(
        &["--release", "--target", TARGET, "--bin", "prestop-wait"],
        "prestop-wait",
    );
    // The actor is a package of its own (tests/podman/actor), built into
    // this run's target directory.
    let target_dir = Path::new(BIN)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("pod-actor");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/podman/actor/Cargo.toml");
    let actor = cargo_build(
        &[
            "--manifest-path",
            manifest,
            "--target",
            TARGET,
            "--target-dir",
            &target_dir.to_string_lossy(),
        ],
        "pod-actor",
    );
    let pm = Podman::new();
    eprintln!(
        "podman: {}; runc: {}",
        pm.ok(&["--version"]),
        first_line(Command::new("runc").arg("--version"))
    );

    // 1. The images, from the Dockerfile, offline.
    let hook_bytes = build_images(&pm, &hook_bin, &actor);
    let (files, bytes) = image_files(
        &pm,
        "localhost/istio-proxy:test",
        "usr/local/bin/prestop-wait",
    );
    assert!(
        bytes == hook_bytes,
        "istio-proxy: /usr/local/bin/prestop-wait is not the built binary"
    );
    assert!(files.contains("usr/local/bin/pilot-agent"), "{files:?}");
    let config = |image: &str| {
        pm.ok(&[
            "image",
            "inspect",
            image,
            "--format",
            "{{.Config.User}} {{.Config.Entrypoint}}",
        ])
    };
    assert_eq!(
        config("localhost/istio-proxy:test"),
        "1337:1337 [/usr/local/bin/pilot-agent]"
    );
    let (files, bytes) = image_files(&pm, "localhost/prestop-wait:bin", "prestop-wait");
    assert_eq!(
        files,
        BTreeSet::from(["prestop-wait".to_string()]),
        "bin holds only /prestop-wait"
    );
    assert!(bytes == hook_bytes);
    assert_eq!(
        config("localhost/prestop-wait:bin"),
        "65532:65532 [/prestop-wait]"
    );
    eprintln!(
        "podman: images built in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // 2. A pod, each container its own PID namespace.
    let hook = "/usr/local/bin/prestop-wait";
    let pod = Pod::start(
        &pm,
        "prestop-own",
        false,
        &["localhost/istio-proxy:test"],
        &[],
        "2",
    );
    let out = pod
        .hook(hook, &["check", "--json", "--ignore-uid", "65532"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = Report::exact(&stdout(&out));
    // A real runtime's default seccomp profile lets the proxy use netlink.
    assert_eq!(report.source, "netlink", "auto in a real container");
    let seen: BTreeSet<(String, String, String)> = report
        .blocking
        .iter()
        .map(|s| (s.state.clone(), s.local.clone(), s.remote.clone()))
        .collect();
    let truth = held_by(&pod_sockets(&pod.infra_pid), APP_UID);
    assert_eq!(
        seen, truth,
        "check --json in the proxy against the host's reading"
    );
    assert!(
        report
            .blocking
            .iter()
            .any(|s| s.remote.starts_with("127.0.0.6:") && s.direction == "inbound")
    );
    assert!(report.blocking.iter().any(|s| s.to_proxy));

    stop_like_the_kubelet(
        &pod,
        "own PID namespaces",
        hook,
        &[
            "wait",
            "--ignore-uid=65532",
            "--log-file=auto",
            "--interval=100ms",
            "--timeout=20s",
        ],
    );
    // Then the kubelet stops the proxy: SIGTERM to pilot-agent.
    pm.ok(&["stop", "--time", "5", &pod.container("proxy")]);
    let logs = pod.logs("proxy");
    assert!(
        logs.contains("pilot-agent: SIGTERM, stopping envoy"),
        "{logs}"
    );
    assert!(
        logs.contains("prestop-wait: waiting up to 20s"),
        "podman logs proxy: {logs}"
    );
    assert!(
        logs.contains("prestop-wait: log: also to /proc/1/fd/2"),
        "{logs}"
    );
    assert!(logs.contains("prestop-wait: drained after"), "{logs}");
    drop(pod);

    // 3. An app that never closes: exit 1 at the deadline, the hook's own
    // lifetime measured from the host.
    let pod = Pod::start(
        &pm,
        "prestop-stuck",
        false,
        &["localhost/istio-proxy:test"],
        &[],
        "never",
    );
    let args = ["wait", "--timeout=2s", "--interval=250ms"];
    let mut child = pod.hook(hook, &args).spawn().unwrap();
    pod.pm
        .ok(&["kill", "--signal", "TERM", &pod.container("app")]);
    let argv: Vec<&str> = [hook].iter().chain(&args).copied().collect();
    // Its lifetime from its exec: `starttime` in /proc/<pid>/stat is when
    // runc forked the process, tens of milliseconds before it became the
    // hook, so the start is when its argv first shows (polled every 2 ms).
    let pid = find_process(&argv, Duration::from_secs(10)).expect("the hook's process");
    let start = boottime();
    while Path::new(&format!("/proc/{pid}/cmdline")).exists()
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let lifetime = boottime() - start;
    let out = wait_child(&mut child, Duration::from_secs(5));
    eprintln!(
        "podman: never-closing app: exit {} after a lifetime of {lifetime:.3}s",
        code(&out)
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    // Never early is the promise, by the hook's own clock from its start;
    // late only by a look and an exit, well short of another 250 ms poll
    // interval plus what a loaded machine adds.
    let deadline = err
        .lines()
        .find(|l| l.contains("deadline 2s passed (at "))
        .unwrap_or_else(|| panic!("no deadline line: {err}"));
    let at = said_at(deadline).as_secs_f64();
    assert!((2.0..=2.3).contains(&at), "{deadline}");
    // Seen from outside, the same within what finding it costs: its start
    // is the scan of the host's /proc that first shows its argv, which
    // takes tens of milliseconds under load (measured: 65 ms late).
    assert!(
        (1.8..=2.3).contains(&lifetime),
        "lifetime {lifetime:.3}s for --timeout 2s"
    );
    // runc puts each container in a cgroup of its own, which the hook finds
    // from the kernel though /sys/fs/cgroup inside shows the v1
    // controllers: the summary is by container, the app's and the
    // database's apart.
    assert!(
        err.lines().next().is_some_and(
            |l| l.contains("; sockets from netlink; containers by cgroup (this one's: ")
        ),
        "{err}"
    );
    let owners = err
        .lines()
        .find_map(|l| l.strip_prefix("prestop-wait: still blocking by container: "))
        .unwrap_or_else(|| panic!("no container summary: {err}"));
    let mut groups: Vec<(u64, &str)> = owners
        .split("; ")
        .map(|g| {
            let (cgroup, rest) = g
                .strip_prefix("cgroup ")
                .and_then(|g| g.split_once(" (uid "))
                .unwrap_or_else(|| panic!("{g}: {err}"));
            (cgroup.parse().unwrap(), rest)
        })
        .collect();
    groups.sort_by_key(|(_, rest)| rest.to_string());
    assert_eq!(groups.len(), 2, "{err}");
    assert_ne!(groups[0].0, groups[1].0, "{err}");
    assert!(
        groups[0]
            .1
            .starts_with("1000): 4 sockets (local ports 8080, 9090, ")
            && groups[1].1 == "65532): 1 socket (local port 5432)",
        "{err}"
    );
    drop(pod);

    // 4. shareProcessNamespace: PID 1 is the infra's pause process, of
    // another uid; --log-file=auto finds pilot-agent's stderr.
    let pod = Pod::start(
        &pm,
        "prestop-shared",
        true,
        &["localhost/istio-proxy:test"],
        &[],
        "1",
    );
    let out = stop_like_the_kubelet(
        &pod,
        "shared PID namespace",
        hook,
        &[
            "wait",
            "--ignore-uid=65532",
            "--log-file=auto",
            "--interval=100ms",
            "--timeout=20s",
            "--quiet",
        ],
    );
    assert!(out.stderr.is_empty(), "--quiet: {}", stderr(&out));
    let logs = pod.logs("proxy");
    assert!(
        logs.contains("(pilot-agent) is the oldest proxy process of uid 1337"),
        "{logs}"
    );
    assert!(logs.contains("prestop-wait: drained after"), "{logs}");
    drop(pod);

    // 5. No custom proxy image: an init container from `bin` installs into
    // an emptyDir (a 0777 directory), the stand-in proxy mounts it.
    let empty_dir = pm.root.join("ctx/emptydir");
    std::fs::create_dir_all(&empty_dir).unwrap();
    std::fs::set_permissions(&empty_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let volume = format!("{}:/opt/prestop-wait", empty_dir.display());
    let installed = pm.ok(&[
        "run",
        "--rm",
        "--user",
        "65532",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "-v",
        &volume,
        "localhost/prestop-wait:bin",
        "install",
        "/opt/prestop-wait",
    ]);
    assert_eq!(installed, "/opt/prestop-wait/prestop-wait");
    let ro = format!("{volume}:ro");
    let pod = Pod::start(
        &pm,
        "prestop-init",
        false,
        &["-v", &ro, "localhost/proxyv2-standin:test"],
        &[],
        "1",
    );
    let missing = pod.hook(hook, &["--version"]).output().unwrap();
    assert!(
        !missing.status.success(),
        "the stand-in proxy image has no prestop-wait"
    );
    stop_like_the_kubelet(
        &pod,
        "installed by an init container",
        "/opt/prestop-wait/prestop-wait",
        &[
            "wait",
            "--ignore-uid=65532",
            "--interval=100ms",
            "--timeout=20s",
        ],
    );
    drop(pod);

    // 6. The app's half: its preStop runs `quiesce` (installed by the same
    // init step into the same volume), the proxy's runs `wait`, while a
    // client keeps sending requests until the endpoint's removal has
    // propagated; compared with the fixed sleeps people configure.
    compare_app_prestops(&pm, &ro);
    eprintln!("podman: all in {:.1}s", started.elapsed().as_secs_f64());
}

/// One pod deletion, as the kubelet runs it.
struct Deletion {
    /// Seconds from the deletion to the app's SIGTERM (its hook's end).
    held: f64,
    ok: u32,
    failed: u32,
}

/// Deletes a pod while a client (in the proxy container, as Envoy's uid:
/// a kept-alive pool, a request every 50 ms) keeps sending to the app's
/// 8080 until `propagation` seconds after the deletion, when the removal of
/// the endpoint has reached it. The kubelet's order: both preStop hooks
/// start at the deletion; the app gets SIGTERM when its hook ends (it exits
/// at once: every later request fails); the proxy's `wait` must then end 0.
fn delete_with_traffic(
    pm: &Podman,
    name: &str,
    volume: &str,
    app_prestop: &[&str],
    propagation: f64,
) -> Deletion {
    let pod = Pod::start(
        pm,
        name,
        false,
        &["-v", volume, "localhost/istio-proxy:test"],
        &["-v", volume],
        "0",
    );
    let lead = 0.3;
    let mut client = pod
        .exec(
            "proxy",
            "1337",
            "/usr/local/bin/pod-actor",
            &[
                "client",
                "127.0.0.1:8080",
                "50",
                &format!("{}", lead + propagation),
            ],
        )
        .spawn()
        .unwrap();
    // The deletion comes `lead` after the first answer, however long
    // podman exec took to start the client.
    let mut said = std::io::BufReader::new(client.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut said, &mut first).unwrap();
    assert_eq!(
        first.trim(),
        "client: first",
        "{name}: the client never got an answer"
    );
    std::thread::sleep(Duration::from_secs_f64(lead));
    let deleted = Instant::now();
    let mut app_hook = pod
        .exec("app", "1000", "/opt/prestop-wait/prestop-wait", app_prestop)
        .spawn()
        .unwrap();
    let mut proxy_hook = pod
        .hook(
            "/usr/local/bin/prestop-wait",
            &[
                "wait",
                "--ignore-uid=65532",
                "--interval=100ms",
                "--timeout=25s",
            ],
        )
        .spawn()
        .unwrap();
    let app_out = wait_child(&mut app_hook, Duration::from_secs(30));
    let held = deleted.elapsed().as_secs_f64();
    pm.ok(&["kill", "--signal", "TERM", &pod.container("app")]);
    let proxy_out = wait_child(&mut proxy_hook, Duration::from_secs(30));
    let client_out = wait_child(&mut client, Duration::from_secs(30));
    assert_eq!(
        code(&app_out),
        0,
        "{name}: app preStop: {}",
        stderr(&app_out)
    );
    assert_eq!(
        code(&proxy_out),
        0,
        "{name}: proxy preStop: {}",
        stderr(&proxy_out)
    );
    let mut report = stdout(&client_out);
    std::io::Read::read_to_string(&mut said, &mut report).unwrap();
    let counts: Vec<u32> = report
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [ok, failed] = counts[..] else {
        panic!("{name}: client said {report:?}");
    };
    if app_prestop[0] == "quiesce" {
        let logs = pod.logs("app");
        assert!(
            logs.contains("prestop-wait: no inbound traffic for 2s (the last: "),
            "{name}: the app container's log (--log-file=auto): {logs}"
        );
    }
    Deletion { held, ok, failed }
}

fn compare_app_prestops(pm: &Podman, volume: &str) {
    let quiesce = [
        "quiesce",
        "--idle=2s",
        "--min-wait=3s",
        "--timeout=20s",
        "--log-file=auto",
    ];
    let strategies: [(&str, &[&str]); 3] = [
        ("quiesce", &quiesce),
        ("sleep 5", &["sleep", "5s"]),
        ("sleep 15", &["sleep", "15s"]),
    ];
    let mut table = Vec::new();
    for propagation in [2.0, 8.0] {
        for (i, (what, prestop)) in strategies.iter().enumerate() {
            let name = format!("prestop-app-{i}-{propagation}");
            let d = delete_with_traffic(pm, &name, volume, prestop, propagation);
            eprintln!(
                "podman: app preStop {what:9} propagation {propagation:.0}s: held {:5.2}s, {} of {} requests failed",
                d.held,
                d.failed,
                d.ok + d.failed
            );
            table.push((*what, propagation, d));
        }
    }
    let get = |what: &str, p: f64| {
        &table
            .iter()
            .find(|(w, q, _)| *w == what && *q == p)
            .unwrap()
            .2
    };
    for p in [2.0, 8.0] {
        let q = get("quiesce", p);
        // No request lost, and held only as long as traffic came (and
        // --idle after it), never less than --min-wait.
        assert_eq!(q.failed, 0, "quiesce at {p}s lost requests");
        assert!(q.ok > 0);
        assert!(
            // the traffic's end, --idle, and a second and a half for the
            // looks, the exec and a loaded machine
            q.held >= p.max(3.0) && q.held <= p.max(1.0) + 2.0 + 1.5,
            "quiesce at {p}s held {:.2}s",
            q.held
        );
        assert!(q.held < get("sleep 15", p).held, "quiesce at {p}s");
        assert_eq!(get("sleep 15", p).failed, 0);
    }
    // The comparison can see a loss: a guess shorter than the propagation.
    assert!(
        get("sleep 5", 8.0).failed > 0,
        "sleep 5 at 8s lost nothing?"
    );
}

fn first_line(c: &mut Command) -> String {
    let out = c
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines().next().unwrap_or_default().to_string()
}
