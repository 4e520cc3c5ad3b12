//! `check`: look once, print what blocks, exit 1 if anything does; and say
//! what `quiesce` would start from here (its ports, its first window).

use std::io::Write;

use anyhow::Result;

use crate::cli::{CheckConfig, Format};
use crate::commands::quiesce::{self, Preview};
use crate::exit_codes::ExitCode;
use crate::pass::Pass;
use crate::render::{self, JsonSink};
use crate::sink::Collect;
use crate::source::Chosen;
use crate::time::{Clock, SystemClock};

fn preview_json(p: &Result<Preview>) -> Vec<u8> {
    match p {
        Ok(p) => p.json(),
        Err(e) => quiesce::json_error(e),
    }
}

/// Runs `check`, printing to `out`.
///
/// `--json` alone streams: each blocking socket is written as it is decided,
/// in memory that does not grow with the table. The table (its columns are
/// as wide as their widest cell) and `--all` (ignored sockets follow the
/// blocking ones) hold the rows they print.
pub fn run(config: CheckConfig, out: &mut impl Write) -> Result<ExitCode> {
    // JSON carries each connection's `idle_ms`, from `tcp_info`: asked for
    // only there, since it costs the kernel a third more per socket.
    let json = config.format == Format::Json;
    let mut source = Chosen::open_with(config.pod.source, &config.pod.proc_root, |d| {
        if json { d.with_info() } else { d }
    })?;
    let containers = source.containers();
    // What `quiesce` would start from, before the pass takes the rules.
    let preview = quiesce::preview(&config.pod, &containers, config.miss, SystemClock.now());
    let mut pass = Pass::new(config.pod.proc_root, config.pod.rules);
    pass.attribute(&containers);
    let never = || false;
    let blocking = match (config.format, config.all) {
        (Format::Json, false) => {
            let sink = JsonSink::new(out, &containers)?.ending_with(preview_json(&preview));
            pass.run(&mut source, sink, &never)??
        }
        (format, all) => {
            let verdict = pass.run(&mut source, Collect::new(all), &never)?;
            match format {
                Format::Json => {
                    render::write_json(out, &verdict, all, &containers, preview_json(&preview))?
                }
                Format::Text => {
                    render::write_text(out, &verdict, all)?;
                    // Silent but visible: the tables where netlink was
                    // expected (a seccomp profile, gVisor).
                    if let Some(why) = source.fallback() {
                        writeln!(out, "note: sockets read from the tables: {why}")?;
                    }
                    // Tables by choice (a fixture, --source proc) carry
                    // no cgroup: nothing to say that was not asked for.
                    if !source.is_tables() || source.fallback().is_some() {
                        writeln!(out, "note: {containers}")?;
                    }
                    match &preview {
                        Ok(p) => writeln!(out, "note: {}", p.said())?,
                        Err(e) => {
                            writeln!(out, "note: no view of what quiesce would start from: {e:#}")?
                        }
                    }
                }
            }
            verdict.blocking_count()
        }
    };
    out.flush()?;
    Ok(if blocking == 0 {
        ExitCode::Success
    } else {
        ExitCode::Blocked
    })
}
