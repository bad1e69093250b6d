//! The `gcse` binary: parse the command line, run it, report errors as one
//! message (exit status 1).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = gcse::cli::Cli::parse();
    match gcse::commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
