//! The `gcse` binary: parse the command line, run it, report errors as one
//! message (exit status 1). A run a signal stopped cleanly exits with 128 +
//! the signal's number, as shells report a process the signal ended.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = gcse::cli::Cli::parse();
    match gcse::commands::run(cli) {
        Ok(()) => match gcse::signals::received() {
            Some(signal) => std::process::ExitCode::from((128 + signal) as u8),
            None => std::process::ExitCode::SUCCESS,
        },
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
