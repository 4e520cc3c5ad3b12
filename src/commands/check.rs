//! `check`: look once, print what blocks, exit 1 if anything does.

use std::io::Write;

use anyhow::Result;

use crate::cli::{CheckConfig, Format};
use crate::exit_codes::ExitCode;
use crate::poll::Poller;
use crate::render;

/// Runs `check`, printing to `out`.
pub fn run(config: CheckConfig, out: &mut impl Write) -> Result<ExitCode> {
    let mut poller = Poller::new(config.pod.proc_root, config.pod.rules, config.all);
    let verdict = poller.poll()?;
    match config.format {
        Format::Json => render::write_json(out, &verdict, config.all)?,
        Format::Text => render::write_text(out, &verdict, config.all)?,
    }
    out.flush()?;
    Ok(if verdict.blocking_count() == 0 {
        ExitCode::Success
    } else {
        ExitCode::Blocked
    })
}
