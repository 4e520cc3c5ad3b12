//! Command line: clap types, and the one [`Config`] built from them.
//!
//! Nothing past [`Config::from_cli`] sees a clap type.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::decide::Rules;
use crate::drain::{self, DrainTarget};
use crate::exit_codes;
use crate::hook::{Settings, Timing};
use crate::log::LogFile;
use crate::rhythm::Miss;
use crate::source;
use crate::time::MAX_DURATION;

mod parse;
pub use parse::{Parsed, parse};

/// `--version`: what a bug report needs, the version and the target it was
/// built for (`build.rs` passes the target triple on).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PRESTOP_WAIT_TARGET"),
    ")"
);

/// Holds a service-mesh proxy's shutdown until the application in the same pod
/// has closed its TCP sockets, or a deadline passes (`wait`); holds the
/// application until inbound traffic stops (`quiesce`).
///
/// Run `wait` as the proxy container's preStop exec hook, `quiesce` as the
/// app container's. Without a subcommand it runs `wait` (`prestop-wait
/// --timeout=20s` is `prestop-wait wait --timeout=20s`).
#[derive(Debug, Parser)]
#[command(name = "prestop-wait", version = VERSION, after_help = exit_codes::HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Poll until no socket of the app is left, or the deadline passes (the default).
    #[command(after_help = exit_codes::HELP)]
    Wait(WaitArgs),
    /// Look once and print which sockets block, and why the others do not.
    #[command(after_help = exit_codes::HELP)]
    Check(CheckArgs),
    /// The app container's preStop: hold until inbound traffic to the app's
    /// listening ports has stopped (a silence longer than its rhythm
    /// explains, or --idle), or the deadline passes.
    #[command(
        after_help = exit_codes::HELP,
        mut_arg("min_wait", |a| a.help("Never exit before this much time has passed, however idle: cover the fastest endpoint propagation you expect")),
        mut_arg("timeout", |a| a.help("Give up after this long with traffic still arriving (exit 1). Keep it below terminationGracePeriodSeconds minus the app's own shutdown")),
        mut_arg("interval", |a| a.help("Time between looks").default_value(QUIESCE_INTERVAL)),
        mut_arg("log_file", |a| a.help("Also append the log lines to this file. `auto`: the app container's own log, which `kubectl logs` shows (the stderr of PID 1 if it runs as this uid, else of the oldest other process that does)")),
    )]
    Quiesce(QuiesceArgs),
    /// Sleep for DURATION and exit 0: a `sleep` for distroless images, whose
    /// app containers have no sleep binary for the usual `sleep 5` preStop.
    Sleep {
        /// How long, in humantime syntax (`5s`, `1m30s`).
        #[arg(value_name = "DURATION", value_parser = parse_duration)]
        duration: Duration,
    },
    /// Copy this binary to DIR/prestop-wait (mode 0755, atomically) and print
    /// that path: the init-container step, for images without a shell or cp.
    Install {
        /// A directory this uid can write, such as an emptyDir volume.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Options that say where the pod's sockets are and whose they are: every
/// command that looks at the pod takes them.
#[derive(Debug, Args)]
struct PodArgs {
    /// procfs root: tables from DIR/net/tcp and DIR/net/tcp6, processes from DIR/<pid>/.
    #[arg(
        long = "proc",
        value_name = "DIR",
        env = "PRESTOP_WAIT_PROC",
        default_value = "/proc"
    )]
    proc_root: PathBuf,

    /// Sockets owned by these uids are the proxy's (repeatable or comma
    /// list). Where the kernel's cgroup ids tell containers apart, given
    /// uids add to them; the default, 1337 (Istio), counts only where they
    /// cannot [default: 1337]
    #[arg(
        long,
        value_name = "UID",
        env = "PRESTOP_WAIT_PROXY_UID",
        value_delimiter = ','
    )]
    proxy_uid: Vec<u32>,

    /// Sockets owned by these uids are other containers' of the pod, such
    /// as a log shipper or a native sidecar (repeatable or comma list):
    /// they never block, and their listeners are not the app's.
    #[arg(
        long,
        value_name = "UID",
        env = "PRESTOP_WAIT_IGNORE_UID",
        value_delimiter = ','
    )]
    ignore_uid: Vec<u32>,

    /// Sockets with this local port never block, nor count as traffic
    /// (repeatable or comma list).
    #[arg(
        long,
        value_name = "PORT",
        env = "PRESTOP_WAIT_IGNORE_PORT",
        value_delimiter = ','
    )]
    ignore_port: Vec<u16>,

    /// Where sockets are read from: the kernel's netlink dump, or the
    /// --proc tables. auto: netlink when --proc is a live procfs, the tables
    /// for a fixture tree or where netlink is denied.
    #[arg(
        long,
        value_name = "SOURCE",
        env = "PRESTOP_WAIT_SOURCE",
        value_enum,
        default_value = "auto"
    )]
    source: SourceArg,
}

/// Options that say what the proxy is and what blocks: `wait` and `check`.
#[derive(Debug, Args)]
struct CommonArgs {
    #[command(flatten)]
    pod: PodArgs,

    /// Processes whose comm or argv[0] basename is one of these are the
    /// proxy's (repeatable or comma list). Where the kernel's cgroup ids
    /// tell containers apart, given names add to them (and cost a scan of
    /// every visible process's fds); the defaults count only where they
    /// cannot [default: envoy,pilot-agent]
    #[arg(
        long,
        value_name = "NAME",
        env = "PRESTOP_WAIT_PROXY_NAME",
        value_delimiter = ','
    )]
    proxy_name: Vec<String>,

    /// Only LISTEN sockets block (the old `netstat -plunt` loop's rule).
    #[arg(long, env = "PRESTOP_WAIT_LISTEN_ONLY", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    listen_only: bool,
}

/// `--source` as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SourceArg {
    Auto,
    Netlink,
    Proc,
}

/// The flags every hook takes. Their defaults and help are `wait`'s;
/// `quiesce` sets its own where they differ (see [`Command::Quiesce`]).
#[derive(Debug, Args)]
struct HookArgs {
    /// Give up after this long and let the proxy stop (exit 1). Keep it at most
    /// terminationGracePeriodSeconds minus the proxy's terminationDrainDuration.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PRESTOP_WAIT_TIMEOUT",
        default_value = "25s",
        value_parser = parse_duration
    )]
    timeout: Duration,

    /// Time between polls.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PRESTOP_WAIT_INTERVAL",
        default_value = "250ms",
        value_parser = parse_duration
    )]
    interval: Duration,

    /// Never exit before this much time has passed, even if nothing blocks.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PRESTOP_WAIT_MIN_WAIT",
        default_value = "0s",
        value_parser = parse_duration
    )]
    min_wait: Duration,

    /// Also append the log lines to this file. `auto`: the proxy container's
    /// own log, which `kubectl logs` shows (the stderr of PID 1 if it runs as
    /// this uid, else of the oldest proxy process that does).
    #[arg(long, value_name = "PATH|auto", env = "PRESTOP_WAIT_LOG_FILE")]
    log_file: Option<PathBuf>,

    /// Print nothing but errors on stderr (--log-file still gets every line).
    #[arg(short, long, env = "PRESTOP_WAIT_QUIET", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    quiet: bool,
}

#[derive(Debug, Args)]
struct WaitArgs {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    hook: HookArgs,

    /// Hold an app that connects per call between two of its calls: once
    /// it has been seen opening three or more connections, exit only after
    /// a silence of them longer than their rhythm explains (--miss).
    #[arg(long, env = "PRESTOP_WAIT_BETWEEN_CALLS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    between_calls: bool,

    #[command(flatten)]
    rhythm: RhythmArgs,

    /// Exit only after nothing has blocked for this long, so an app that holds
    /// no socket for a moment between two calls keeps its proxy.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PRESTOP_WAIT_QUIET_PERIOD",
        default_value = "0s",
        value_parser = parse_duration
    )]
    quiet_period: Duration,

    /// At start, POST to the proxy's drain endpoint (plain HTTP, loopback only)
    /// so it drains inbound connections (each response closes its connection)
    /// while outbound calls work. Without =URL: Envoy admin on 127.0.0.1:15000,
    /// inbound only, listeners never closed (inboundonly&graceful&skip_exit).
    #[arg(
        long,
        value_name = "URL",
        env = "PRESTOP_WAIT_DRAIN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = drain::DEFAULT_URL
    )]
    drain: Option<String>,

    /// The pod's terminationGracePeriodSeconds, to check --timeout against
    /// (default: Kubernetes' 30s).
    #[arg(
        long,
        value_name = "DURATION",
        env = "PRESTOP_WAIT_GRACE_PERIOD",
        value_parser = parse_duration
    )]
    grace_period: Option<Duration>,
}

#[derive(Debug, Args)]
struct QuiesceArgs {
    #[command(flatten)]
    pod: PodArgs,

    /// Only these local ports are the app's (repeatable or comma list);
    /// without it, every port the app listens on (its LISTEN sockets not
    /// owned by a proxy or --ignore-uid uid).
    #[arg(
        long,
        value_name = "PORT",
        env = "PRESTOP_WAIT_PORT",
        value_delimiter = ','
    )]
    port: Vec<u16>,

    /// A fixed window instead of the learned one: exit 0 once no inbound
    /// traffic has arrived for this long. Keep it below the period of
    /// probes that reach the app's ports.
    #[arg(
        long,
        value_name = "DURATION",
        env = "PRESTOP_WAIT_IDLE",
        value_parser = parse_duration
    )]
    idle: Option<Duration>,

    #[command(flatten)]
    rhythm: RhythmArgs,

    #[command(flatten)]
    hook: HookArgs,
}

/// How a silence is judged by its rhythm: `quiesce` holds by it for the
/// app's inbound traffic, `wait` for the app's new connections between
/// two calls, `check` shows what `quiesce` would start from.
#[derive(Debug, Args)]
struct RhythmArgs {
    /// The chance, per hold, of letting go while traffic still comes, by
    /// its own rhythm: the window is the silence that unlikely (quiesce:
    /// inbound requests, unused with --idle; wait --between-calls: the app's new
    /// connections, once it has no socket left).
    #[arg(
        long,
        value_name = "P",
        env = "PRESTOP_WAIT_MISS",
        default_value = "0.001",
        value_parser = parse_miss
    )]
    miss: Miss,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// Print one JSON object: {"blocking": [...], "ignored": [...]}.
    #[arg(long, env = "PRESTOP_WAIT_JSON", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    json: bool,

    /// Also list the sockets that do not block, with the reason.
    #[arg(long, env = "PRESTOP_WAIT_ALL", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    all: bool,

    #[command(flatten)]
    rhythm: RhythmArgs,
}

/// humantime syntax: `500ms`, `25s`, `1m30s`. A unit is always needed, `0`
/// included (humantime alone takes a bare `0` but no other bare number);
/// values over [`MAX_DURATION`] saturate to it.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if !s.is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "a duration needs a unit, as in {}s or {}ms",
            s.trim(),
            s.trim()
        ));
    }
    humantime::parse_duration(s)
        .map(|d| d.min(MAX_DURATION))
        .map_err(|e| e.to_string())
}

/// A chance above 0 and at most 0.5: `0.001`, `1e-3`.
fn parse_miss(s: &str) -> Result<Miss, String> {
    match crate::decimal::parse(s.trim()) {
        Some(p) if p > 0.0 && p <= 0.5 => Ok(Miss(p)),
        Some(_) => Err(format!("--miss must be above 0 and at most 0.5, got {s}")),
        None => Err(format!(
            "--miss takes a chance such as 0.001 or 1e-3, got {s:?}"
        )),
    }
}

/// What to do, fully resolved from the command line and environment: one
/// config per command, each holding only what that command uses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one value per run: boxing would buy nothing
pub enum Config {
    /// `wait` (also the bare form).
    Wait(WaitConfig),
    /// `check`.
    Check(CheckConfig),
    /// `quiesce`.
    Quiesce(QuiesceConfig),
    /// `sleep DURATION`.
    Sleep(Duration),
    /// `install DIR`.
    Install(PathBuf),
}

/// Where the pod's `/proc` is, and what in it is the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// procfs root.
    pub proc_root: PathBuf,
    /// What counts as the proxy, and what is ignored.
    pub rules: Rules,
    /// Where the sockets are read from.
    pub source: source::Kind,
}

/// `wait`: poll until drained or the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitConfig {
    /// What every hook takes.
    pub hook: Settings,
    /// What counts as the proxy, and what is ignored.
    pub rules: Rules,
    /// Report drained only after nothing has blocked for this long.
    pub quiet_period: Duration,
    /// Where to POST at start, if anywhere.
    pub drain: Option<DrainTarget>,
    /// The pod's grace period, when stated.
    pub grace_period: Option<Duration>,
    /// `--between-calls`: for an app that opens connections as it calls,
    /// the chance of letting go between two of its calls, by their rhythm.
    pub calls: Option<Miss>,
}

/// `quiesce`: hold the app until its inbound traffic stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuiesceConfig {
    /// What every hook takes.
    pub hook: Settings,
    /// Whose sockets are whose: the same rule set as `wait`'s (the proxy's
    /// and ignored uids, ignored ports).
    pub rules: Rules,
    /// Only these local ports are the app's (`--port`); every port the app
    /// listens on when empty.
    pub ports: Vec<u16>,
    /// How long a silence ends the hold: fixed (`--idle`), or learned from
    /// the traffic with this chance of a miss.
    pub window: IdleWindow,
}

/// How `quiesce` ends a silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleWindow {
    /// `--idle`: this long.
    Fixed(Duration),
    /// Learned from the traffic's rhythm ([`crate::rhythm`]).
    Learned(Miss),
}

/// `quiesce --interval`'s default, as clap reads it.
const QUIESCE_INTERVAL: &str = "100ms";

/// The same, for `check`'s view of what `quiesce` would start from (a
/// test keeps the two one value).
pub const QUIESCE_DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

/// `check`: look once and print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// What to look at.
    pub pod: Pod,
    /// Table or JSON.
    pub format: Format,
    /// Also list the sockets that do not block.
    pub all: bool,
    /// `quiesce`'s `--miss`, for the window it would start from.
    pub miss: Miss,
}

/// How `check` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The aligned table, like `ss`.
    Text,
    /// One JSON object.
    Json,
}

/// Below this, polling is a busy loop that costs the node CPU for nothing.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

impl Config {
    /// Validates the arguments that clap cannot check on its own. An error
    /// about one flag is a [`FlagError`]. `config_errors` are the flags a
    /// hook already dropped (see [`parse`]).
    pub fn from_cli(cli: Cli, config_errors: &[String]) -> Result<Config> {
        Ok(match cli.command {
            Command::Wait(w) => Config::Wait(wait_config(w, config_errors)?),
            Command::Check(c) => Config::Check(CheckConfig {
                pod: pod(c.common)?,
                format: if c.json { Format::Json } else { Format::Text },
                all: c.all,
                miss: c.rhythm.miss,
            }),
            Command::Quiesce(q) => Config::Quiesce(quiesce_config(q, config_errors)?),
            Command::Sleep { duration } => Config::Sleep(duration),
            Command::Install { dir } => Config::Install(dir),
        })
    }
}

/// A value clap accepted that [`Config::from_cli`] does not: `id` is the
/// flag's clap id, so that `wait` can go on without it.
#[derive(Debug)]
pub struct FlagError {
    /// The clap id of the flag at fault.
    pub id: &'static str,
    /// One line saying what was wrong.
    pub message: String,
}

impl std::fmt::Display for FlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FlagError {}

fn flag_error(id: &'static str, message: String) -> anyhow::Error {
    FlagError { id, message }.into()
}

/// Whose socket is whose: the one rule set of every command. `quiesce`
/// takes no `--proxy-name` nor `--listen-only`.
fn rules(p: &PodArgs, proxy_names: Option<Vec<String>>, listen_only: bool) -> Rules {
    let proxy_uids_given = !p.proxy_uid.is_empty();
    let proxy_names_given = proxy_names.as_ref().is_some_and(|n| !n.is_empty());
    Rules {
        proxy_uids: if proxy_uids_given {
            p.proxy_uid.clone()
        } else {
            DEFAULT_PROXY_UIDS.to_vec()
        },
        proxy_names: match proxy_names {
            Some(n) if !n.is_empty() => n,
            Some(_) => DEFAULT_PROXY_NAMES.iter().map(|&n| n.to_owned()).collect(),
            None => Vec::new(),
        },
        proxy_uids_given,
        proxy_names_given,
        ignore_uids: p.ignore_uid.clone(),
        ignore_ports: p.ignore_port.clone(),
        listen_only,
        own_cgroup: None,
    }
}

/// Istio's proxy uid, the `--proxy-uid` not given.
pub const DEFAULT_PROXY_UIDS: [u32; 1] = [1337];
/// Istio's proxy processes, the `--proxy-name` not given.
pub const DEFAULT_PROXY_NAMES: [&str; 2] = ["envoy", "pilot-agent"];

fn pod(common: CommonArgs) -> Result<Pod> {
    if let Some(bad) = common.proxy_name.iter().find(|n| n.is_empty()) {
        return Err(flag_error(
            "proxy_name",
            format!("--proxy-name: empty name {bad:?} is not allowed"),
        ));
    }
    Ok(Pod {
        rules: rules(&common.pod, Some(common.proxy_name), common.listen_only),
        proc_root: common.pod.proc_root,
        source: source_kind(common.pod.source),
    })
}

fn source_kind(s: SourceArg) -> source::Kind {
    match s {
        SourceArg::Auto => source::Kind::Auto,
        SourceArg::Netlink => source::Kind::Netlink,
        SourceArg::Proc => source::Kind::Proc,
    }
}

/// What every hook takes, checked: a sane interval, and a minimum wait
/// within the deadline. `config_errors` are the flags already dropped.
fn settings(pod: &PodArgs, h: HookArgs, config_errors: &[String]) -> Result<Settings> {
    if h.interval < MIN_INTERVAL {
        return Err(flag_error(
            "interval",
            format!(
                "--interval must be at least {}, got {}",
                humantime::format_duration(MIN_INTERVAL),
                humantime::format_duration(h.interval)
            ),
        ));
    }
    if h.min_wait > h.timeout {
        return Err(flag_error(
            "min_wait",
            format!(
                "--min-wait ({}) must not be longer than --timeout ({})",
                humantime::format_duration(h.min_wait),
                humantime::format_duration(h.timeout)
            ),
        ));
    }
    Ok(Settings {
        proc_root: pod.proc_root.clone(),
        source: source_kind(pod.source),
        timing: Timing {
            timeout: h.timeout,
            interval: h.interval,
            min_wait: h.min_wait,
        },
        quiet: h.quiet,
        log_file: h.log_file.map(|p| {
            if p.as_os_str() == "auto" {
                LogFile::Auto
            } else {
                LogFile::Path(p)
            }
        }),
        config_errors: config_errors.to_vec(),
    })
}

fn quiesce_config(q: QuiesceArgs, config_errors: &[String]) -> Result<QuiesceConfig> {
    let hook = settings(&q.pod, q.hook, config_errors)?;
    if let Some(p) = q.port.iter().find(|p| q.pod.ignore_port.contains(p)) {
        return Err(flag_error(
            "port",
            format!("--port {p} is also an --ignore-port: it would never count"),
        ));
    }
    Ok(QuiesceConfig {
        hook,
        rules: rules(&q.pod, None, false),
        ports: q.port,
        window: match q.idle {
            Some(d) => IdleWindow::Fixed(d),
            None => IdleWindow::Learned(q.rhythm.miss),
        },
    })
}

fn wait_config(w: WaitArgs, config_errors: &[String]) -> Result<WaitConfig> {
    let hook = settings(&w.common.pod, w.hook, config_errors)?;
    let drain = w
        .drain
        .as_deref()
        .map(drain::parse_url)
        .transpose()
        .map_err(|e| flag_error("drain", format!("{e:#}")))?;
    let pod = pod(w.common)?;
    Ok(WaitConfig {
        hook,
        rules: pod.rules,
        quiet_period: w.quiet_period,
        drain,
        grace_period: w.grace_period,
        calls: w.between_calls.then_some(w.rhythm.miss),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn config(args: &[&str]) -> Result<Config> {
        let args = std::iter::once("prestop-wait").chain(args.iter().copied());
        let args = args.map(std::ffi::OsString::from).collect();
        let cli = Cli::try_parse_from(parse::default_command(args))?;
        Config::from_cli(cli, &[])
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        // Environment variables would change defaults: this checks that the
        // ones read here are not set in the environment the tests run in.
        for var in [
            "PRESTOP_WAIT_PROC",
            "PRESTOP_WAIT_PROXY_UID",
            "PRESTOP_WAIT_PROXY_NAME",
            "PRESTOP_WAIT_TIMEOUT",
        ] {
            assert!(std::env::var_os(var).is_none(), "{var} is set");
        }
        let bare = config(&[]).unwrap();
        let wait = config(&["wait"]).unwrap();
        assert_eq!(bare, wait);
        let pod = Pod {
            proc_root: PathBuf::from("/proc"),
            rules: Rules {
                proxy_uids: vec![1337],
                proxy_names: vec!["envoy".into(), "pilot-agent".into()],
                ..Rules::default()
            },
            source: source::Kind::Auto,
        };
        assert_eq!(
            bare,
            Config::Wait(WaitConfig {
                hook: Settings {
                    proc_root: pod.proc_root.clone(),
                    source: pod.source,
                    timing: Timing {
                        timeout: Duration::from_secs(25),
                        interval: Duration::from_millis(250),
                        min_wait: Duration::ZERO,
                    },
                    quiet: false,
                    log_file: None,
                    config_errors: Vec::new(),
                },
                rules: pod.rules.clone(),
                quiet_period: Duration::ZERO,
                drain: None,
                grace_period: None,
                calls: None,
            })
        );
        assert_eq!(
            config(&["check"]).unwrap(),
            Config::Check(CheckConfig {
                pod,
                format: Format::Text,
                all: false,
                miss: Miss(0.001),
            })
        );
    }

    #[test]
    fn quiesce_interval_default_is_one_value() {
        assert_eq!(
            parse_duration(QUIESCE_INTERVAL),
            Ok(QUIESCE_DEFAULT_INTERVAL)
        );
        let Config::Quiesce(q) = config(&["quiesce"]).unwrap() else {
            panic!()
        };
        assert_eq!(q.hook.timing.interval, QUIESCE_DEFAULT_INTERVAL);
    }

    #[test]
    fn lists_are_repeatable_and_comma_separated() {
        let c = config(&[
            "check",
            "--proxy-uid",
            "1337,2102",
            "--proxy-uid=0",
            "--proxy-name",
            "linkerd2-proxy",
            "--ignore-uid=65532,0",
            "--ignore-port",
            "9090,15020",
            "--ignore-port",
            "1",
            "--listen-only",
            "--json",
            "--all",
        ])
        .unwrap();
        let Config::Check(c) = c else { panic!("{c:?}") };
        assert_eq!(
            c.pod.rules,
            Rules {
                proxy_uids: vec![1337, 2102, 0],
                proxy_names: vec!["linkerd2-proxy".into()],
                ignore_uids: vec![65532, 0],
                ignore_ports: vec![9090, 15020, 1],
                listen_only: true,
                proxy_uids_given: true,
                proxy_names_given: true,
                own_cgroup: None,
            }
        );
        assert_eq!((c.format, c.all), (Format::Json, true));
    }

    #[test]
    fn top_level_takes_wait_options() {
        let c = config(&[
            "--timeout",
            "1m30s",
            "--interval=500ms",
            "--min-wait",
            "5s",
            "-q",
            "--quiet-period=2s",
            "--drain",
            "--log-file",
            "/proc/1/fd/2",
            "--grace-period=1m15s",
        ])
        .unwrap();
        let Config::Wait(w) = c else { panic!("{c:?}") };
        assert_eq!(
            w.hook.timing,
            Timing {
                timeout: Duration::from_secs(90),
                interval: Duration::from_millis(500),
                min_wait: Duration::from_secs(5),
            }
        );
        assert_eq!(w.quiet_period, Duration::from_secs(2));
        assert!(w.hook.quiet);
        assert_eq!(w.drain, Some(drain::parse_url(drain::DEFAULT_URL).unwrap()));
        assert_eq!(
            w.hook.log_file,
            Some(LogFile::Path(PathBuf::from("/proc/1/fd/2")))
        );
        assert_eq!(w.grace_period, Some(Duration::from_secs(75)));
        let c = config(&["wait", "--log-file=auto"]).unwrap();
        let Config::Wait(w) = c else { panic!("{c:?}") };
        assert_eq!(w.hook.log_file, Some(LogFile::Auto));
        // quiesce's own defaults where they differ from wait's.
        let c = config(&["quiesce"]).unwrap();
        let Config::Quiesce(q) = c else {
            panic!("{c:?}")
        };
        assert_eq!(q.hook.timing.interval, Duration::from_millis(100));
        assert_eq!(q.hook.timing.timeout, Duration::from_secs(25));
        assert_eq!(q.window, IdleWindow::Learned(Miss(0.001)));
        let c = config(&["quiesce", "--idle=2s", "--miss=1e-4"]).unwrap();
        let Config::Quiesce(q) = c else {
            panic!("{c:?}")
        };
        assert_eq!(q.window, IdleWindow::Fixed(Duration::from_secs(2)));
        // `check` takes the same --miss, for the window it shows.
        let Config::Check(c) = config(&["check", "--miss=1e-4"]).unwrap() else {
            panic!()
        };
        assert_eq!(c.miss, Miss(1e-4));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--timeout", "soon"], "--timeout"),
            (&["--timeout=-1s"], "--timeout"),
            (&["--interval", "0s"], "--interval must be at least 10ms"),
            (
                &["--min-wait", "30s"],
                "--min-wait (30s) must not be longer than --timeout (25s)",
            ),
            (&["check", "--proxy-uid=-1"], "--proxy-uid"),
            (&["check", "--proxy-uid", "4294967296"], "--proxy-uid"),
            (&["check", "--ignore-port", "65536"], "--ignore-port"),
            (&["check", "--proxy-name", ""], "--proxy-name"),
            (&["check", "--timeout", "1s"], "--timeout"),
            (&["wait", "--json"], "--json"),
            (&["--timeout", "1s", "check"], "check"),
            (&["frobnicate"], "frobnicate"),
            (
                &["--drain=http://10.0.0.1:15000/"],
                "not a loopback address",
            ),
            (&["--quiet-period", "x"], "--quiet-period"),
            (&["sleep"], "DURATION"),
            (&["sleep", "5 parsecs"], "DURATION"),
            (&["check", "--drain"], "--drain"),
            (&["check", "--miss", "1"], "--miss"),
            (&["check", "--ignore-uid", "x"], "--ignore-uid"),
            (&["--grace-period", "30"], "--grace-period"),
            (&["check", "--grace-period=30s"], "--grace-period"),
        ];
        for (args, want) in cases {
            let err = format!("{:#}", config(args).unwrap_err());
            assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn drain_takes_an_optional_url_only_with_equals() {
        let c = config(&["wait", "--drain=http://localhost:9901/drain_listeners"]).unwrap();
        let Config::Wait(WaitConfig { drain: Some(d), .. }) = c else {
            panic!("{c:?}")
        };
        assert_eq!(d.addr, "127.0.0.1:9901".parse().unwrap());
        // `--drain check` would be ambiguous; a bare --drain takes no value.
        assert!(config(&["--drain", "http://127.0.0.1:1/"]).is_err());
    }

    #[test]
    fn install_takes_a_directory() {
        let c = config(&["install", "/opt/prestop-wait"]).unwrap();
        assert_eq!(c, Config::Install(PathBuf::from("/opt/prestop-wait")));
        let err = format!("{:#}", config(&["install"]).unwrap_err());
        assert!(err.contains("DIR"), "{err}");
    }

    #[test]
    fn version_names_the_target() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
        assert!(
            VERSION.ends_with(&format!(
                "-{}-{})",
                std::env::consts::OS,
                if cfg!(target_env = "musl") {
                    "musl"
                } else {
                    "gnu"
                }
            )),
            "{VERSION}"
        );
    }

    #[test]
    fn durations_need_a_unit_and_saturate() {
        for bad in ["0", "30", " 5", ""] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("18446744073709551615s"), Ok(MAX_DURATION));
        assert_eq!(
            humantime::format_duration(MAX_DURATION).to_string(),
            "100years"
        );
    }

    #[test]
    fn sleep_takes_a_duration() {
        let c = config(&["sleep", "1m30s"]).unwrap();
        assert_eq!(c, Config::Sleep(Duration::from_secs(90)));
    }
}
