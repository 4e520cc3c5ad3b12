#![forbid(unsafe_code)]

use prestop_wait::exit_codes::ExitCode;

fn main() -> std::process::ExitCode {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    match prestop_wait::run(std::env::args_os(), &mut out, &mut err) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("prestop-wait: {e:#}");
            ExitCode::Error.into()
        }
    }
}
