//! `check`: look once, print what blocks, exit 1 if anything does.

use std::io::Write;

use anyhow::Result;

use crate::cli::{CheckConfig, Format};
use crate::exit_codes::ExitCode;
use crate::poll::Poller;
use crate::render;

/// Runs `check`, printing to `out`.
///
/// `--json` alone streams: each blocking socket is written as it is read,
/// in memory that does not grow with the table. The table (its columns are
/// as wide as their widest cell) and `--all` (ignored sockets follow the
/// blocking ones) hold the rows they print.
pub fn run(config: CheckConfig, out: &mut impl Write) -> Result<ExitCode> {
    if config.format == Format::Json && !config.all {
        let mut poller = Poller::new(config.pod.proc_root, config.pod.rules, false);
        let mut json = render::JsonStream::begin(out)?;
        let end = poller.poll_each(|e| json.entry(out, e))?;
        json.end(
            out,
            None::<std::iter::Empty<_>>,
            end.uninspected_processes,
            end.unreadable_fds,
            end.host_network,
        )?;
        out.flush()?;
        return Ok(exit_code(end.blocking));
    }
    let mut poller = Poller::new(config.pod.proc_root, config.pod.rules, config.all);
    let verdict = poller.poll()?;
    match config.format {
        Format::Json => render::write_json(out, &verdict, config.all)?,
        Format::Text => render::write_text(out, &verdict, config.all)?,
    }
    out.flush()?;
    Ok(exit_code(verdict.blocking_count()))
}

fn exit_code(blocking: usize) -> ExitCode {
    if blocking == 0 {
        ExitCode::Success
    } else {
        ExitCode::Blocked
    }
}
