//! From argv (and `PRESTOP_WAIT_*`) to a [`Config`]: the bare form as
//! `wait`, `--help` and `--version`, and the hooks (`wait`, `quiesce`) failing safe on bad values.

use std::ffi::OsString;

use anyhow::{Result, bail};
use clap::error::{ContextKind, ContextValue, ErrorKind};

use super::{Cli, Config, FlagError};

/// What the command line asks for.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one value per run, as Config
pub enum Parsed {
    /// Run this.
    Run(Config),
    /// Print this on stdout and exit 0 (`--help`, `--version`).
    Print(String),
}

/// How many dropped flags a hook names; it drops more without a word each.
const MAX_DROPPED: usize = 32;

/// Parses arguments and `PRESTOP_WAIT_*` variables into a [`Parsed`].
///
/// Without a subcommand (or with options first) it is `wait`'s command line.
/// Any command but the two hooks fails on the first bad value. `wait` and
/// `quiesce` fail safe: a hook exists to hold a shutdown, and a hook that
/// exits at once on a typo in a mesh-wide variable lets every proxy stop
/// under its app (or every app stop while requests still arrive). So each flag whose value (from the command line or the environment)
/// is wrong, and each argument it does not know, is dropped, as if not
/// given, and its error kept in the config's `config_errors`: the hook logs
/// them, waits with the defaults in their place, and exits 2 at the end.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed> {
    let mut args = default_command(args.into_iter().collect());
    // The hooks fail safe; the other commands are run by hand.
    let hook = args
        .get(1)
        .and_then(|a| a.to_str())
        .filter(|a| ["wait", "quiesce"].contains(a))
        .map(str::to_owned);
    let mut no_env: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    loop {
        let hook_name = hook.as_deref().unwrap_or("wait");
        let (failure, cmd) = match attempt(&args, hook_name, &no_env, &errors)? {
            Ok(parsed) => return Ok(parsed),
            Err(failed) => failed,
        };
        let message = failure.message();
        let Some(hook_name) = hook.as_deref() else {
            bail!("{message}");
        };
        // Looked up only now: a command line that parses never pays for it.
        let hook_cmd = cmd
            .find_subcommand(hook_name)
            .expect("the hook is a subcommand");
        let dropped = match &failure {
            Failure::Flag(f) => Some(f.id.to_owned()),
            Failure::Clap(e) => offending_arg(e, hook_cmd),
        };
        let before = args.clone();
        let mut progress = false;
        if let Some(id) = dropped {
            let arg = hook_cmd
                .get_arguments()
                .find(|a| a.get_id() == id.as_str())
                .expect("the id comes from this command");
            drop_arg(&mut args, arg);
            if !no_env.contains(&id) {
                no_env.push(id);
                progress = true;
            }
        } else if let Some(token) = invalid_token(&failure) {
            drop_token(&mut args, &token);
        }
        if args == before && !progress {
            // Not one flag clap can name (`-qx`, `-q=yes`, `-qq`, a value
            // that is not UTF-8): drop the argument whose going changes
            // what is wrong, or, failing that, hold with every default.
            match culprit(&args, hook_name, &no_env, &errors, &message) {
                Some(i) => {
                    args.remove(i);
                }
                None => {
                    errors.push(format!(
                        "{message} (no one argument to drop: every flag at its default)"
                    ));
                    return every_default(hook_name, errors);
                }
            }
        }
        match errors.len().cmp(&MAX_DROPPED) {
            std::cmp::Ordering::Less => errors.push(message),
            std::cmp::Ordering::Equal => errors.push(format!(
                "{message} (and more wrong arguments, dropped unsaid)"
            )),
            std::cmp::Ordering::Greater => {}
        }
    }
}

/// One try at parsing `args` with the environment read for every flag but
/// those in `no_env`: what to run or print, or why not and the command it
/// failed on. An error that is no flag's (a non-hook's) ends the parse.
#[allow(clippy::type_complexity)]
fn attempt(
    args: &[OsString],
    hook_name: &str,
    no_env: &[String],
    errors: &[String],
) -> Result<Result<Parsed, (Failure, clap::Command)>> {
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command();
    for id in no_env {
        cmd = cmd.mut_subcommand(hook_name, |w| w.mut_arg(id, |a| a.env(None::<&str>)));
    }
    let failure = match cmd.try_get_matches_from_mut(args) {
        Ok(m) => match Cli::from_arg_matches(&m)
            .map_err(Into::into)
            .and_then(|cli| Config::from_cli(cli, errors))
        {
            Ok(config) => return Ok(Ok(Parsed::Run(config))),
            Err(e) => match e.downcast::<FlagError>() {
                Ok(f) => Failure::Flag(f),
                Err(e) => return Err(e),
            },
        },
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                return Ok(Ok(Parsed::Print(e.render().to_string())));
            }
            _ => Failure::Clap(e),
        },
    };
    Ok(Err((failure, cmd)))
}

/// The argument (index into `args`, after the subcommand) whose removal
/// makes the command line parse or fail otherwise than with `message`.
fn culprit(
    args: &[OsString],
    hook_name: &str,
    no_env: &[String],
    errors: &[String],
    message: &str,
) -> Option<usize> {
    (2..args.len()).find(|&i| {
        let mut fewer = args.to_vec();
        fewer.remove(i);
        match attempt(&fewer, hook_name, no_env, errors) {
            Ok(Ok(_)) => true,
            Ok(Err((failure, _))) => failure.message() != message,
            Err(_) => false,
        }
    })
}

/// The hook with every flag at its default, the environment unread: for a
/// command line nothing else could make sense of. Its errors say why.
fn every_default(hook_name: &str, errors: Vec<String>) -> Result<Parsed> {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Cli::command().mut_subcommand(hook_name, |mut w| {
        let ids: Vec<_> = w.get_arguments().map(|a| a.get_id().clone()).collect();
        for id in ids {
            w = w.mut_arg(id, |a| a.env(None::<&str>));
        }
        w
    });
    let m = cmd.try_get_matches_from(["prestop-wait", hook_name])?;
    let config = Config::from_cli(Cli::from_arg_matches(&m)?, &errors)?;
    Ok(Parsed::Run(config))
}

/// Why one parse failed.
enum Failure {
    Clap(clap::Error),
    Flag(FlagError),
}

impl Failure {
    /// One line: clap's first line without its `error: ` (its usage block
    /// and tips are for a terminal), or ours.
    fn message(&self) -> String {
        match self {
            Failure::Flag(f) => f.message.clone(),
            Failure::Clap(e) => {
                // The first paragraph, on one line: "the following required
                // arguments were not provided:" continues on the next.
                let text = e.render().to_string();
                let first: Vec<&str> = text
                    .lines()
                    .skip_while(|l| l.trim().is_empty())
                    .take_while(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect();
                let first = first.join(" ");
                let first = first.strip_prefix("error: ").unwrap_or(&first);
                if first.is_empty() {
                    "invalid arguments (see --help)".to_owned()
                } else {
                    format!("{first} (see --help)")
                }
            }
        }
    }
}

/// Puts `wait` in front of a bare command line: `prestop-wait` and
/// `prestop-wait --timeout=20s` are `wait`'s, `--help` and `--version` stay
/// the program's own.
pub(super) fn default_command(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.is_empty() {
        args.push("prestop-wait".into());
    }
    let bare = match args.get(1).and_then(|a| a.to_str()) {
        None => args.len() == 1,
        Some(first) => {
            first.starts_with('-') && !["-h", "--help", "-V", "--version"].contains(&first)
        }
    };
    if bare {
        args.insert(1, "wait".into());
    }
    args
}

/// The clap id of the `wait` flag a clap error is about, if it names one.
fn offending_arg(e: &clap::Error, wait: &clap::Command) -> Option<String> {
    let shown = match e.get(ContextKind::InvalidArg)? {
        ContextValue::String(s) => s.clone(),
        _ => return None,
    };
    let name = shown.split([' ', '=']).next()?;
    // `--help=x`: clap's own flags are not ours to drop (and the command
    // built so far does not hold them yet).
    wait.get_arguments()
        .filter(|a| !["help", "version"].contains(&a.get_id().as_str()))
        .find(|a| {
            name.strip_prefix("--")
                .is_some_and(|l| a.get_long() == Some(l))
                || name
                    .strip_prefix('-')
                    .and_then(|s| s.chars().next())
                    .is_some_and(|c| a.get_short() == Some(c) && name.len() == 2)
        })
        .map(|a| a.get_id().as_str().to_owned())
}

/// The argument an unknown-argument error is about, as typed.
fn invalid_token(failure: &Failure) -> Option<String> {
    let Failure::Clap(e) = failure else {
        return None;
    };
    match e.get(ContextKind::InvalidArg)? {
        ContextValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Removes every occurrence of `arg` from `args` (after the subcommand),
/// with its value when that is the next argument.
fn drop_arg(args: &mut Vec<OsString>, arg: &clap::Arg) {
    let takes_value = arg.get_action().takes_values();
    let separate_value = takes_value && !arg.is_require_equals_set();
    let long = arg.get_long().map(|l| format!("--{l}"));
    let short = arg.get_short().map(|c| format!("-{c}"));
    let mut i = 2;
    while i < args.len() {
        let Some(a) = args[i].to_str() else {
            i += 1;
            continue;
        };
        if a == "--" {
            break;
        }
        let exact = long.as_deref() == Some(a) || short.as_deref() == Some(a);
        let attached = long
            .as_deref()
            .is_some_and(|l| a.strip_prefix(l).is_some_and(|r| r.starts_with('=')))
            || (takes_value
                && short
                    .as_deref()
                    .is_some_and(|s| a.starts_with(s) && a.len() > 2));
        if exact {
            let n = if separate_value && i + 1 < args.len() {
                2
            } else {
                1
            };
            args.drain(i..i + n);
        } else if attached {
            args.remove(i);
        } else {
            i += 1;
        }
    }
}

/// Removes an argument clap does not know (`--bogus`, `--bogus=1`, a stray word).
fn drop_token(args: &mut Vec<OsString>, token: &str) {
    let mut i = 2;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == token || (token.starts_with("--") && a.starts_with(&format!("{token}="))) {
            args.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::time::Duration;

    /// [`parse`] of a command line (the environment's own variables are
    /// tested through the binary, in tests/cli.rs).
    fn parsed(args: &[&str]) -> Result<Parsed> {
        parse(
            std::iter::once("prestop-wait")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn the_bare_form_is_wait_and_help_stays_the_programs() {
        let args = |a: &[&str]| -> Vec<String> {
            default_command(
                std::iter::once("prestop-wait")
                    .chain(a.iter().copied())
                    .map(OsString::from)
                    .collect(),
            )
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
        };
        assert_eq!(args(&[]), ["prestop-wait", "wait"]);
        assert_eq!(args(&["-q"]), ["prestop-wait", "wait", "-q"]);
        assert_eq!(
            args(&["--timeout=1s"]),
            ["prestop-wait", "wait", "--timeout=1s"]
        );
        for keep in [&["--help"][..], &["-V"], &["check"], &["help"]] {
            assert_eq!(args(keep)[1..], *keep);
        }
    }

    #[test]
    fn wait_drops_each_bad_flag_and_keeps_the_rest() {
        let Ok(Parsed::Run(Config::Wait(w))) = parsed(&[
            "--proxy-uid=2102",
            "--timeout",
            "soon",
            "--interval=5ms",
            "-q",
            "--bogus",
            "--min-wait",
            "2s",
        ]) else {
            panic!("wait must fail safe")
        };
        assert_eq!(w.rules.proxy_uids, [2102], "a good flag stays");
        assert!(w.hook.quiet);
        assert_eq!(w.hook.timing.timeout, Duration::from_secs(25), "default");
        assert_eq!(
            w.hook.timing.interval,
            Duration::from_millis(250),
            "default"
        );
        assert_eq!(w.hook.timing.min_wait, Duration::from_secs(2));
        assert_eq!(w.hook.config_errors.len(), 3, "{:?}", w.hook.config_errors);
        assert!(w.hook.config_errors[0].contains("'--timeout <DURATION>'"));
        assert!(w.hook.config_errors[1].contains("--bogus"));
        assert!(w.hook.config_errors[2].starts_with("--interval must be at least 10ms"));
        // Any other command fails at once, one line.
        let err = parsed(&["check", "--proxy-uid=x"]).unwrap_err();
        assert!(format!("{err:#}").contains("--proxy-uid"), "{err:#}");
        // Help is help.
        assert!(matches!(parsed(&["wait", "--help"]), Ok(Parsed::Print(_))));
    }

    #[test]
    fn dropping_a_flag_takes_its_value_in_every_form() {
        let wait = Cli::command().find_subcommand("wait").unwrap().clone();
        let arg = |id: &str| {
            wait.get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap()
                .clone()
        };
        let mut args: Vec<OsString> = [
            "prestop-wait",
            "wait",
            "--timeout",
            "x",
            "-q",
            "--timeout=y",
            "--interval",
            "1s",
            "--drain",
            "--quiet",
        ]
        .map(OsString::from)
        .to_vec();
        drop_arg(&mut args, &arg("timeout"));
        drop_arg(&mut args, &arg("quiet"));
        // --drain takes its value only with '=': the next word is not its.
        drop_arg(&mut args, &arg("drain"));
        assert_eq!(args, ["prestop-wait", "wait", "--interval", "1s"]);
        let mut args: Vec<OsString> = ["prestop-wait", "wait", "--bogus=1", "x", "--bogus"]
            .map(OsString::from)
            .to_vec();
        drop_token(&mut args, "--bogus");
        assert_eq!(args, ["prestop-wait", "wait", "x"]);
    }
}
