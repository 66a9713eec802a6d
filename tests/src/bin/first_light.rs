//! First-light benchmark: wall time from exec of `vmm` to the first byte the guest writes to
//! its serial port, at several guest memory sizes, beside a bare-KVM floor measured the same
//! way in the same run: a C program (`tests/floor/floor.c`, built by this crate's build script)
//! that opens /dev/kvm, creates the VM, maps and registers guest RAM, creates the irqchip and
//! one vCPU, sets its registers and runs 7 bytes of real-mode code that write a byte.
//!
//! Runs are interleaved (floor, vmm0, vmm1, ..., floor, ...) so that machine noise hits every
//! program alike. `ratio` is the median vmm time over the median floor time; `paired` is the
//! median of each run's ratio to the floor run just before it. A per-phase table (medians, ms
//! since exec) puts the floor's phases beside the vmm's.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

const USAGE: &str = "\
first_light: time from exec to the guest's first serial byte, vmm against a bare-KVM floor

usage: first_light [--vmm PATH]... [--runs N] [--sizes 128M,4G,32G] [--vmm-arg ARG]...
       first_light --write-guest PATH | --write-halt-guest PATH

  --vmm PATH       a vmm binary to measure (repeatable; default target/release/vmm). Several
                   binaries run interleaved with the same floor runs, one row each: the way
                   to compare two builds on a noisy machine
  --runs N         runs per program and size (default 15)
  --sizes LIST     guest memory sizes (default 128M,4G,32G)
  --vmm-arg ARG    an extra argument for every vmm run (repeatable)
  --no-api         skip the warm-API measurement
  --settle-ms N    sleep N ms before each run (default 0), so that the previous program's exit
                   has finished its work (comparing two different builds on 2026-12-06, the
                   one run right after the floor was ~2.3 ms slower at 128 MiB without it)
  --write-guest P  write the tiny PVH guest the benchmark boots to P, to profile a run by hand
  --write-halt-guest P  the same guest halting instead of resetting (the one the API runs boot)
  -h, --help       this text

The warm-API rows come from one `vmm --api-socket` process (the last --vmm) started before the
runs: each run is vm.create + vm.boot -> the guest's first serial byte on that process's stdout,
then vm.delete; they are interleaved with the floor and CLI runs. Then the round-trip latency of
vmm.ping and vm.info over the socket.

The floor is tests/floor/floor.c, compiled into this binary by the crate's build script.
";

/// The floor program, compiled by build.rs.
const FLOOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/floor"));

/// Phases in the order both programs reach them ("first_serial_byte" is measured here).
const PHASES: &[&str] = &[
    "vm_created",
    "memory_mapped",
    "irqchip_created",
    "kernel_loaded",
    "vcpus_configured",
    "first_kvm_run",
];

struct Options {
    vmms: Vec<String>,
    runs: usize,
    sizes: Vec<String>,
    extra: Vec<String>,
    api: bool,
    /// Idle time before each run, so the previous program's exit has finished its work.
    settle_ms: u64,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        vmms: Vec::new(),
        runs: 15,
        sizes: vec!["128M".into(), "4G".into(), "32G".into()],
        extra: Vec::new(),
        api: true,
        settle_ms: 0,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--vmm" => o.vmms.push(value("--vmm")?),
            "--runs" => {
                o.runs = value("--runs")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--runs needs a positive number")?
            }
            "--sizes" => o.sizes = value("--sizes")?.split(',').map(String::from).collect(),
            "--vmm-arg" => o.extra.push(value("--vmm-arg")?),
            "--no-api" => o.api = false,
            "--settle-ms" => {
                o.settle_ms = value("--settle-ms")?
                    .parse()
                    .map_err(|_| "--settle-ms needs a number of milliseconds")?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.vmms.is_empty() {
        o.vmms.push("target/release/vmm".into());
    }
    Ok(o)
}

struct Sample {
    first_byte_ms: f64,
    phases: Vec<(String, f64)>,
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes only the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Spawn `cmd`, return ms until the first stdout byte, plus any `boot-phase NAME ... mono_ns=N`
/// lines (as ms since the spawn).
fn measure(mut cmd: Command, settle_ms: u64) -> Result<Sample, String> {
    if settle_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(settle_ms));
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let t0 = mono_ns();
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut b = [0u8; 1];
    let n = out.read(&mut b).unwrap_or(0);
    let first_byte_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut rest = Vec::new();
    let _ = out.read_to_end(&mut rest);
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut err);
    let status = child.wait().map_err(|e| e.to_string())?;
    if n != 1 || !status.success() {
        return Err(format!(
            "{cmd:?}: {} ({status})\n{err}",
            if n != 1 { "no serial output" } else { "failed" }
        ));
    }
    let phases = err
        .lines()
        .filter_map(|l| {
            let rest = l.split("boot-phase ").nth(1)?;
            let name = rest.split_whitespace().next()?.to_string();
            let ns: u64 = rest.split("mono_ns=").nth(1)?.trim().parse().ok()?;
            Some((name, ns.saturating_sub(t0) as f64 / 1e6))
        })
        .collect();
    Ok(Sample {
        first_byte_ms,
        phases,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// One program's runs at one size: first-byte times, each run's ratio to the floor run just
/// before it, and its phases.
#[derive(Default)]
struct Runs {
    times: Vec<f64>,
    ratios: Vec<f64>,
    phases: Vec<(String, Vec<f64>)>,
}

impl Runs {
    fn add(&mut self, s: Sample, floor_ms: Option<f64>) {
        self.times.push(s.first_byte_ms);
        if let Some(f) = floor_ms {
            self.ratios.push(s.first_byte_ms / f);
        }
        for (name, ms) in s.phases {
            match self.phases.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(ms),
                None => self.phases.push((name, vec![ms])),
            }
        }
    }

    /// The median of each phase in PHASES order ("-" where the program has no such phase),
    /// then the first byte.
    fn phase_row(&self) -> String {
        let mut row = String::new();
        for p in PHASES {
            match self.phases.iter().find(|(n, _)| n == p) {
                Some((_, v)) => row += &format!(" {:>9.2}", median(v)),
                None => row += &format!(" {:>9}", "-"),
            }
        }
        row + &format!(" {:>9.2}", median(&self.times))
    }
}

/// A `vmm --api-socket` process kept running across runs, its stdout (the guests' serial
/// output) piped here.
struct WarmVmm {
    child: std::process::Child,
    out: std::process::ChildStdout,
    sock: PathBuf,
}

/// One HTTP request on a new connection; the status code.
fn http(sock: &Path, method: &str, endpoint: &str, body: &str) -> Result<u16, String> {
    let body = (!body.is_empty()).then_some(body);
    match vmm_tests::http::call(sock, method, endpoint, body) {
        Ok((0, _)) => Err(format!("{endpoint}: no HTTP response")),
        Ok((code, _)) => Ok(code),
        Err(e) => Err(format!("{}: {e}", sock.display())),
    }
}

impl WarmVmm {
    fn start(vmm: &str, dir: &Path, extra: &[String]) -> Result<Self, String> {
        let sock = dir.join("api.sock");
        let mut child = Command::new(vmm)
            .arg("--api-socket")
            .arg(format!("path={}", sock.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{vmm}: {e}"))?;
        let out = child.stdout.take().expect("piped stdout");
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while http(&sock, "GET", "vmm.ping", "") != Ok(200) {
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("{vmm} --api-socket: no answer to vmm.ping"));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(WarmVmm { child, out, sock })
    }

    fn expect(&self, method: &str, endpoint: &str, body: &str, want: u16) -> Result<(), String> {
        match http(&self.sock, method, endpoint, body)? {
            code if code == want => Ok(()),
            code => Err(format!("{endpoint}: HTTP {code}, expected {want}")),
        }
    }

    /// vm.create + vm.boot -> the guest's first serial byte (ms); then vm.delete.
    fn first_light(&mut self, guest: &Path, size: &str) -> Result<f64, String> {
        let bytes = parse_size(size)?;
        let body = format!(
            r#"{{"memory":{{"size":{bytes}}},"payload":{{"kernel":"{}"}},"serial":{{"mode":"Tty"}}}}"#,
            guest.display()
        );
        let start = Instant::now();
        self.expect("PUT", "vm.create", &body, 204)?;
        self.expect("PUT", "vm.boot", "", 204)?;
        let mut b = [0u8; 2];
        self.out
            .read_exact(&mut b[..1])
            .map_err(|e| format!("no serial output from the API VM: {e}"))?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        // The guest prints "X\n" and halts.
        self.out
            .read_exact(&mut b[1..])
            .map_err(|e| e.to_string())?;
        self.expect("PUT", "vm.delete", "", 204)?;
        Ok(ms)
    }

    /// Median and 99th percentile round trip (µs) of `n` requests, each on a new connection.
    fn latency(&self, method: &str, endpoint: &str, n: usize) -> Result<(f64, f64), String> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            self.expect(method, endpoint, "", 200)?;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Ok((median(&v), v[(v.len() * 99 / 100).min(v.len() - 1)]))
    }

    fn stop(mut self) {
        let _ = self.expect("PUT", "vmm.shutdown", "", 204);
        let _ = self.child.wait();
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('T') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("bad size {s}"))
}

fn write_executable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let write = args.first().map(String::as_str);
    if write == Some("--write-guest") || write == Some("--write-halt-guest") {
        let Some(path) = args.get(1) else {
            eprintln!("first_light: {} needs a path\n\n{USAGE}", args[0]);
            return ExitCode::from(2);
        };
        let code = if write == Some("--write-guest") {
            vmm_tests::serial_hello_code(b"X\n")
        } else {
            vmm_tests::serial_hello_then_halt_code(b"X\n")
        };
        let bytes = vmm_tests::pvh_guest_elf(&code);
        if let Err(e) = std::fs::write(path, bytes) {
            eprintln!("first_light: {path}: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    let o = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("first_light: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("first_light: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: &Options) -> Result<(), String> {
    for v in &o.vmms {
        if !Path::new(v).is_file() {
            return Err(format!(
                "{v}: no such file (build it first: cargo build --release)"
            ));
        }
    }
    let dir = std::env::temp_dir().join(format!("first-light-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(o, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(o: &Options, dir: &Path) -> Result<(), String> {
    let guest = dir.join("guest.elf");
    std::fs::write(
        &guest,
        vmm_tests::pvh_guest_elf(&vmm_tests::serial_hello_code(b"X\n")),
    )
    .map_err(|e| e.to_string())?;
    let floor: PathBuf = dir.join("floor");
    write_executable(&floor, FLOOR).map_err(|e| e.to_string())?;

    println!(
        "first light: exec -> first guest serial byte, median of {} interleaved runs (ms)",
        o.runs
    );
    println!("floor: bare-KVM C program (tests/floor/floor.c)");
    for (n, vmm) in o.vmms.iter().enumerate() {
        println!("vmm{n}: {vmm} {}", o.extra.join(" "));
    }
    let halt_guest = dir.join("halt-api.elf");
    std::fs::write(
        &halt_guest,
        vmm_tests::pvh_guest_elf(&vmm_tests::serial_hello_then_halt_code(b"X\n")),
    )
    .map_err(|e| e.to_string())?;
    let mut warm = if o.api {
        Some(WarmVmm::start(
            o.vmms.last().expect("a vmm"),
            dir,
            &o.extra,
        )?)
    } else {
        None
    };
    let mut api_rows = Vec::new();
    let mut tables = Vec::new();
    println!(
        "{:>8} {:>9} {:>9} {:>7} {:>7}",
        "memory", "floor", "vmm", "ratio", "paired"
    );
    for size in &o.sizes {
        let mut floor_runs = Runs::default();
        let mut per_vmm: Vec<Runs> = o.vmms.iter().map(|_| Runs::default()).collect();
        let mut api_times = Vec::new();
        let mut api_ratios = Vec::new();
        for _ in 0..o.runs {
            let mut f = Command::new(&floor);
            f.arg(size);
            let fs = measure(f, o.settle_ms)?;
            let floor_ms = fs.first_byte_ms;
            floor_runs.add(fs, None);
            for (vmm, r) in o.vmms.iter().zip(per_vmm.iter_mut()) {
                let mut v = Command::new(vmm);
                v.args(["--kernel", guest.to_str().unwrap()])
                    .args(["--memory", &format!("size={size}")])
                    .args(["--serial", "tty", "-v"])
                    .args(&o.extra);
                r.add(measure(v, o.settle_ms)?, Some(floor_ms));
            }
            if let Some(w) = warm.as_mut() {
                let ms = w.first_light(&halt_guest, size)?;
                api_times.push(ms);
                api_ratios.push(ms / floor_ms);
            }
        }
        if !api_times.is_empty() {
            let (f, c, a) = (
                median(&floor_runs.times),
                median(&per_vmm[per_vmm.len() - 1].times),
                median(&api_times),
            );
            api_rows.push(format!(
                "{size:>8} {f:>9.2} {c:>9.2} {a:>9.2} {:>6.2}x {:>6.2}x",
                a / f,
                median(&api_ratios)
            ));
        }
        let f = median(&floor_runs.times);
        let mut table = format!("{size:>8} {:>9}{}\n", "floor", floor_runs.phase_row());
        for (n, r) in per_vmm.iter().enumerate() {
            let v = median(&r.times);
            let label = if o.vmms.len() > 1 {
                format!("{size}/{n}")
            } else {
                size.clone()
            };
            println!(
                "{label:>8} {f:>9.2} {v:>9.2} {:>6.2}x {:>6.2}x",
                v / f,
                median(&r.ratios)
            );
            table += &format!("{:>8} {:>9}{}\n", "", format!("vmm{n}"), r.phase_row());
        }
        tables.push(table);
    }
    println!("\nphases (median ms since exec; '-': the program has no such phase)");
    print!("{:>8} {:>9}", "memory", "program");
    for p in PHASES.iter().chain(&["first_byte"]) {
        // Shorten the names to fit the columns.
        let short: String = p.replace("_created", "").replace("_configured", "_cfg");
        print!(" {:>9}", short.chars().take(9).collect::<String>());
    }
    println!();
    for t in tables {
        print!("{t}");
    }
    if let Some(w) = warm {
        println!(
            "\nwarm API: vm.create + vm.boot -> first guest serial byte on one running \
             `vmm --api-socket` (the last vmm; cli: the same binary per exec), median ms"
        );
        println!(
            "{:>8} {:>9} {:>9} {:>9} {:>7} {:>7}",
            "memory", "floor", "cli", "api", "ratio", "paired"
        );
        for r in &api_rows {
            println!("{r}");
        }
        let (p50, p99) = w.latency("GET", "vmm.ping", 500)?;
        println!(
            "API round trip, new connection each: vmm.ping median {p50:.0} us, p99 {p99:.0} us"
        );
        let body = format!(
            r#"{{"memory":{{"size":134217728}},"payload":{{"kernel":"{}"}}}}"#,
            halt_guest.display()
        );
        w.expect("PUT", "vm.create", &body, 204)?;
        let (p50, p99) = w.latency("GET", "vm.info", 500)?;
        println!(
            "API round trip, new connection each: vm.info  median {p50:.0} us, p99 {p99:.0} us"
        );
        w.stop();
    }
    println!();
    for vmm in &o.vmms {
        resident_memory(vmm, dir)?;
    }
    Ok(())
}

/// VmRSS of a running vmm with a 128 MiB, 1-vCPU guest that printed a line and halted.
fn resident_memory(vmm: &str, dir: &Path) -> Result<(), String> {
    let guest = dir.join("halt.elf");
    std::fs::write(
        &guest,
        vmm_tests::pvh_guest_elf(&vmm_tests::serial_hello_then_halt_code(b"X\n")),
    )
    .map_err(|e| e.to_string())?;
    let mut child = Command::new(vmm)
        .args(["--kernel", guest.to_str().unwrap()])
        .args(["--memory", "size=128M", "--serial", "tty"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("{vmm}: {e}"))?;
    let mut b = [0u8; 1];
    let _ = child.stdout.as_mut().expect("piped").read(&mut b);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?");
    println!(
        "resident memory of a running vmm (128 MiB guest, 1 vCPU, halted after printing): {} ({vmm})",
        rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}
