//! `vmm`: boot a Linux guest on KVM in milliseconds.

use std::process::ExitCode;
use std::time::Instant;

use vmm::vcpu::VmExitReason;
use vmm::{cli, logger, vm};

fn main() -> ExitCode {
    let start = Instant::now();
    let matches = match cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            // --help/--version print and exit 0; usage errors exit 2 with clap's message.
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let cli = match cli::from_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vmm: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logger::init(start, cli.verbosity, cli.log_file.as_deref()) {
        eprintln!("vmm: error: cannot open the log file: {e}");
        return ExitCode::from(2);
    }
    let logs_to_file = cli.log_file.is_some();
    match vm::run(&cli.vm, start) {
        Ok(VmExitReason::Reset) => {
            log::info!("guest requested a reset: exiting");
            ExitCode::SUCCESS
        }
        Ok(VmExitReason::PowerOff) => {
            log::info!("guest powered off");
            ExitCode::SUCCESS
        }
        Ok(VmExitReason::Fatal(m)) => fail(&format!("guest failed: {m}"), logs_to_file),
        Err(e) => fail(&e.to_string(), logs_to_file),
    }
}

/// One line on stderr for the operator; the log file (if any) gets it too.
fn fail(msg: &str, logs_to_file: bool) -> ExitCode {
    if logs_to_file {
        log::error!("{msg}");
    }
    eprintln!("vmm: error: {msg}");
    ExitCode::FAILURE
}
