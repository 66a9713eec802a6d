//! `vmm`: boot a Linux guest on KVM in milliseconds.
//!
//! `no_main`: the C `main` below is the entry point, so Rust's runtime start-up is skipped. On
//! Linux it probes the main thread's stack (glibc reads /proc/self/maps for that), sets up a
//! signal stack for stack-overflow reports and polls fds 0–2: about twenty system calls that
//! do nothing for a VMM and sit on the first-light path. What the vmm needs of it is done
//! here: SIGPIPE ignored (a closed stdout is an EPIPE, not a silent death) and stdout flushed
//! at the end. `std::env::args` works as before (glibc hands argv to std's init hook).
#![no_main]

use std::io::Write;
use std::time::Instant;

use vmm::vcpu::VmExitReason;
use vmm::{cli, logger, vm};

#[no_mangle]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: changes this process's SIGPIPE disposition only, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // One malloc arena for every thread: a thread's first allocation would otherwise map
    // (and trim) an arena of its own, and unmapping memory in a multi-threaded process
    // interrupts the CPUs running its other threads (TLB shootdown), the vCPU among them.
    // SAFETY: a glibc tunable, set before any thread exists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1)
    };
    // SAFETY: the C runtime passes `argc` valid, NUL-terminated strings in `argv`.
    let args = unsafe { args(argc, argv) };
    let code = run(args);
    let _ = std::io::stdout().flush();
    code.into()
}

/// The command line as the C runtime passed it (musl, unlike glibc, does not hand it to std's
/// `env::args` in a binary with its own C `main`).
///
/// # Safety
/// `argv` holds `argc` valid pointers to NUL-terminated strings.
unsafe fn args(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    (0..argc.max(0) as usize)
        .map(|i| {
            // SAFETY: the caller's guarantee, for every i < argc.
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            std::ffi::OsStr::from_bytes(arg.to_bytes()).to_owned()
        })
        .collect()
}

fn run(args: Vec<std::ffi::OsString>) -> u8 {
    let start = Instant::now();
    let matches = match cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            // --help/--version print and exit 0; usage errors exit 2 with clap's message.
            let _ = e.print();
            return e.exit_code() as u8;
        }
    };
    let cli = match cli::from_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vmm: error: {e}");
            return 2;
        }
    };
    if let Err(e) = logger::init(start, cli.verbosity, cli.log_file.as_deref()) {
        eprintln!("vmm: error: cannot open the log file: {e}");
        return 2;
    }
    let logs_to_file = cli.log_file.is_some();
    if let Some(socket) = cli.api_socket {
        use vmm::control::serve::{serve, ServeOptions, Start};
        let seccomp = cli.vm.seccomp;
        let start_vm = match cli.restore {
            // Cloud Hypervisor's default: paused, for the API to resume.
            Some(r) => Some(Start::Restore(vmm::api::RestoreRequest {
                source_url: r.source_url,
                prefault: r.prefault,
                resume: r.resume.unwrap_or(false),
                seccomp,
                overrides: r.overrides,
            })),
            None => cli.boot.then(|| Start::Boot(Box::new(cli.vm))),
        };
        let opts = ServeOptions {
            socket,
            events: cli.event_monitor,
            seccomp,
            start: start_vm,
        };
        return match serve(opts, start) {
            Ok(()) => 0,
            Err(e) => fail(&e.to_string(), logs_to_file),
        };
    }
    if cli.event_monitor.is_some() {
        log::warn!("--event-monitor: events are written by a VMM serving --api-socket only");
    }
    let ended = match &cli.restore {
        Some(r) => restore_and_run(r, cli.vm.seccomp, start),
        None => vm::run(&cli.vm, start).map_err(|e| e.to_string()),
    };
    match ended {
        Ok(VmExitReason::Reset) => {
            log::info!("guest requested a reset: exiting");
            0
        }
        Ok(VmExitReason::PowerOff) => {
            log::info!("guest powered off");
            0
        }
        Ok(VmExitReason::Stopped) => 0,
        Ok(VmExitReason::Fatal(m)) => fail(&format!("guest failed: {m}"), logs_to_file),
        Err(e) => fail(&e, logs_to_file),
    }
}

/// `vmm --restore …` alone: the snapshot's VM, run to its end as `vmm --kernel …` runs one
/// (SIGTERM/SIGINT press its power button, a second one stops it).
fn restore_and_run(
    r: &vmm::config::restore::RestoreOptions,
    seccomp: vmm::config::SeccompMode,
    start: Instant,
) -> Result<VmExitReason, String> {
    let restoring = |e: String| format!("cannot restore {}: {e}", r.source_url);
    let vmm::snapshot::Loaded {
        dir, state, cfg, ..
    } = vmm::snapshot::load(&r.source_url, seccomp, &r.overrides).map_err(|e| match e {
        vmm::snapshot::LoadError::Snapshot(e) => e.to_string(),
        other => restoring(other.to_string()),
    })?;
    let restore = vm::Restore {
        state: &state,
        dir: &dir,
        prefault: r.prefault,
    };
    vm::run_restored(&cfg, restore, start).map_err(|e| restoring(e.to_string()))
}

/// One line on stderr for the operator; the log file (if any) gets it too.
fn fail(msg: &str, logs_to_file: bool) -> u8 {
    if logs_to_file {
        log::error!("{msg}");
    }
    eprintln!("vmm: error: {msg}");
    1
}
