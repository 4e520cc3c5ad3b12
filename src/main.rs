use std::io::{BufWriter, Write};

use prestop_wait::exit_codes::ExitCode;

fn main() -> std::process::ExitCode {
    // `check --json` at node scale is megabytes on one line; stdout's own
    // line buffer would flush it a kilobyte at a time.
    let mut out = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut err = std::io::stderr();
    let result = prestop_wait::run(std::env::args_os(), &mut out, &mut err);
    let flushed = out.flush();
    match result.and_then(|code| flushed.map(|()| code).map_err(Into::into)) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("prestop-wait: {e:#}");
            ExitCode::Error.into()
        }
    }
}
