use std::io::{BufWriter, Write as _};

use prestop_wait::exit_codes::ExitCode;
use prestop_wait::{log, stdout};

fn main() -> std::process::ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    // A hook's log file is written by a process of its own (see log::Spec).
    if args.get(1).is_some_and(|a| a == log::WRITER_COMMAND) {
        return (log::writer_main(&args[2..]) as u8).into();
    }
    log::use_writer_process("/proc/self/exe".into());
    // `check --json` at node scale is megabytes on one line; stdout's own
    // line buffer would flush it a kilobyte at a time.
    let mut out = BufWriter::with_capacity(64 * 1024, stdout::PipeEnd::new(std::io::stdout()));
    let mut err = log::Stderr::new();
    let result = prestop_wait::run(args, &mut out, &mut err);
    let flushed = out.flush();
    match result.and_then(|code| flushed.map(|()| code).map_err(Into::into)) {
        Ok(code) => code.into(),
        Err(e) => {
            // Not eprintln!: it panics (an abort) when stderr is a closed pipe.
            log::say(&mut err, format_args!("{e:#}"));
            ExitCode::Error.into()
        }
    }
}
