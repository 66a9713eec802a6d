//! The command line: every option parser in `vmm::config` on its own, and the whole
//! `vmm::cli::command()` + `vmm::cli::from_matches` on argument vectors.
//!
//! Properties: no panic; every error renders as one line naming its option; accepted values
//! obey the limits the parsers promise (sizes round-trip, 1..=254 vCPUs, guest memory (in
//! `--memory` or its zones),
//! disks/devices without duplicate paths or ids).
//!
//! Input (text, lossily decoded as UTF-8): when the first line names a parser (`memory`,
//! `cpus`, `serial`, `console`, `seccomp`, `size`, `disk`, `net`, `rng`, `device`), that
//! parser gets the rest of the input (after the newline); otherwise each line is one
//! argument of `vmm ARGS...`.
#![no_main]

use libfuzzer_sys::fuzz_target;

use vmm::config::{
    self, ConfigError, ConsoleConfig, CpusConfig, MemoryConfig, SeccompMode, SerialConfig,
};
use vmm_fuzz::trace;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    match first {
        "memory" => {
            // `size=0` parses: guest RAM may all be in memory zones (`--memory-zone`); the
            // whole command line refuses it without zones (below).
            if let Ok(m) = check(MemoryConfig::parse(rest)) {
                assert!(!m.hugepages || m.size % (2 << 20) == 0);
            }
        }
        "cpus" => {
            if let Ok(c) = check(CpusConfig::parse(rest)) {
                assert!((1..=254).contains(&c.boot), "{c:?}");
            }
        }
        "serial" => {
            let _ = check(SerialConfig::parse(rest));
        }
        "console" => {
            let _ = check(ConsoleConfig::parse(rest));
        }
        "seccomp" => {
            let _ = check(SeccompMode::parse(rest));
        }
        "size" => {
            if let Ok(n) = config::size::parse_size(rest) {
                assert_eq!(config::size::parse_size(&n.to_string()), Ok(n));
            }
        }
        "disk" => {
            if let Ok(d) = check(config::disk::parse(rest)) {
                assert!(!d.path.as_os_str().is_empty(), "{d:?}");
            }
        }
        "net" => {
            let _ = check(config::net::parse(rest));
        }
        "rng" => {
            let _ = check(config::rng::parse(rest));
        }
        "device" => {
            if let Ok(d) = check(config::device::parse(rest)) {
                let _ = config::device::check_duplicates(&[d.clone(), d]);
            }
        }
        _ => whole_command_line(&text),
    }
});

/// An error must render as one line that names the option (`--name: ...`).
fn check<T>(r: Result<T, ConfigError>) -> Result<T, ConfigError> {
    if let Err(e) = &r {
        trace!("{e}");
        let msg = e.to_string();
        assert!(msg.starts_with("--"), "{msg:?}");
        assert!(!msg.contains('\n') || has_newline_in_value(e), "{msg:?}");
    }
    r
}

/// Errors quote the offending text, which may itself hold a newline.
fn has_newline_in_value(e: &ConfigError) -> bool {
    match e {
        ConfigError::InvalidValue { value, .. } => value.contains('\n'),
        ConfigError::NotKeyValue { item, .. } => item.contains('\n'),
        ConfigError::UnknownParam { param, .. } | ConfigError::DuplicateParam { param, .. } => {
            param.contains('\n')
        }
        ConfigError::Missing { .. } => false,
        ConfigError::Option(msg) => msg.contains('\n'),
    }
}

fn whole_command_line(text: &str) {
    let args = std::iter::once("vmm").chain(text.split('\n'));
    // --help and --version come back as errors too (try_get_matches_from never exits).
    let m = match vmm::cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            trace!("clap: {}", e.kind());
            return;
        }
    };
    let Ok(cli) = check(vmm::cli::from_matches(&m)) else {
        return;
    };
    trace!("{:?}", cli.vm);
    let vm = &cli.vm;
    assert!((1..=254).contains(&vm.cpus.boot));
    let zones: u64 = vm.memory_zones.iter().map(|z| z.size).sum();
    assert!(vm.memory.size > 0 || zones > 0, "no guest memory: {vm:?}");
    for (i, a) in vm.disks.iter().enumerate() {
        for b in &vm.disks[..i] {
            assert_ne!(a.path, b.path, "one image given to two disks");
            assert!(a.id.is_none() || a.id != b.id, "one id given to two disks");
        }
    }
    assert!(config::device::check_duplicates(&vm.devices).is_ok());
}
