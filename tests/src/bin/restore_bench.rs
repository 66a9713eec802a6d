//! restore_bench: how long a VM takes to come back from a snapshot, against booting it, and
//! what each restored clone costs in memory. Prints figures; asserts nothing.
//!
//! The guest is the tiny counting guest of the tests (it writes a byte to COM1 every few
//! microseconds). Per memory size: one `vmm --api-socket` boots it, pauses it and writes a
//! snapshot; then, interleaved, N runs each of
//!   boot:    exec `vmm --kernel guest --memory size=S` -> first serial byte
//!   restore: exec `vmm --restore source_url=file://snap` -> first serial byte
//!   api:     `vm.restore {resume: true}` on a running `vmm --api-socket` -> first serial byte
//! (medians), then three clones restored from the one snapshot side by side, with their
//! resident (RSS) and proportional (PSS, shared pages split between the clones) memory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "\
restore_bench: restore from a snapshot vs boot, and memory per clone

usage: restore_bench [--vmm PATH] [--runs N] [--sizes 256M,2G]

  --vmm PATH    the vmm binary (default target/release/vmm)
  --runs N      runs per way and size (default 15)
  --sizes LIST  guest memory sizes (default 256M,2G)
";

struct Options {
    vmm: String,
    runs: usize,
    sizes: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        vmm: "target/release/vmm".into(),
        runs: 15,
        sizes: vec!["256M".into(), "2G".into()],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--vmm" => o.vmm = val()?,
            "--runs" => o.runs = val()?.parse().map_err(|_| "--runs: a number".to_string())?,
            "--sizes" => o.sizes = val()?.split(',').map(String::from).collect(),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if o.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(o)
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('M') => (&s[..s.len() - 1], 1u64 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("bad size {s}"))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn http(sock: &Path, method: &str, endpoint: &str, body: &str) -> Result<(), String> {
    let b = (!body.is_empty()).then_some(body);
    match vmm_tests::http::call(sock, method, endpoint, b) {
        Ok((code, _)) if code < 300 => Ok(()),
        Ok((code, body)) => Err(format!("{endpoint}: HTTP {code} {body}")),
        Err(e) => Err(format!("{endpoint}: {e}")),
    }
}

/// A `vmm --api-socket` whose stdout (the guest's serial port) is piped here and read on a
/// thread, each read's arrival sent on `bytes`.
struct ApiVmm {
    child: Child,
    sock: PathBuf,
    bytes: std::sync::mpsc::Receiver<()>,
}

impl ApiVmm {
    fn start(vmm: &str, sock: PathBuf) -> Result<Self, String> {
        let mut child = Command::new(vmm)
            .arg("--api-socket")
            .arg(format!("path={}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{vmm}: {e}"))?;
        let mut out = child.stdout.take().expect("piped");
        let (tx, bytes) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while matches!(out.read(&mut b), Ok(n) if n > 0) {
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while http(&sock, "GET", "vmm.ping", "").is_err() {
            if Instant::now() > deadline {
                return Err("no answer to vmm.ping".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(ApiVmm { child, sock, bytes })
    }

    /// Forget what the guest printed so far.
    fn drain(&self) {
        while self.bytes.try_recv().is_ok() {}
    }

    /// Wait for the guest's next output.
    fn first_byte(&mut self) -> Result<(), String> {
        self.bytes
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| format!("no serial output: {e}"))
    }
}

impl Drop for ApiVmm {
    fn drop(&mut self) {
        let _ = http(&self.sock, "PUT", "vmm.shutdown", "");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn `cmd` (stdout piped), wait for its first stdout byte; the child keeps running.
fn first_byte(mut cmd: Command) -> Result<(Child, f64), String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let t = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
    let mut b = [0u8; 1];
    let n = child
        .stdout
        .as_mut()
        .expect("piped")
        .read(&mut b)
        .unwrap_or(0);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if n != 1 {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{cmd:?}: no serial output"));
    }
    Ok((child, ms))
}

fn end(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// (RSS, PSS) in KiB from /proc/PID/smaps_rollup.
fn memory_of(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let o = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("restore_bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let dir = std::env::temp_dir().join(format!("restore-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let r = run(&o, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("restore_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: &Options, dir: &Path) -> Result<(), String> {
    if !Path::new(&o.vmm).is_file() {
        return Err(format!("{}: no such file (cargo build --release)", o.vmm));
    }
    let guest = dir.join("counter.elf");
    std::fs::write(
        &guest,
        vmm_tests::pvh_guest_elf(&vmm_tests::serial_counter_code(10_000)),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "restore vs boot: exec (or vm.restore) -> first guest serial byte, median of {} \
         interleaved runs (ms); {}",
        o.runs, o.vmm
    );
    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "memory", "boot", "restore", "api", "snap_ms", "snap_disk"
    );
    let mut clones = Vec::new();
    for size in &o.sizes {
        let bytes = parse_size(size)?;
        let snap = dir.join(format!("snap-{size}"));
        // The snapshot: boot, let it count, pause, write it.
        let mut api = ApiVmm::start(&o.vmm, dir.join(format!("snap-{size}.sock")))?;
        let body = format!(
            r#"{{"memory":{{"size":{bytes}}},"payload":{{"kernel":"{}"}},"serial":{{"mode":"Tty"}}}}"#,
            guest.display()
        );
        http(&api.sock, "PUT", "vm.create", &body)?;
        http(&api.sock, "PUT", "vm.boot", "")?;
        api.first_byte()?;
        http(&api.sock, "PUT", "vm.pause", "")?;
        let t = Instant::now();
        http(
            &api.sock,
            "PUT",
            "vm.snapshot",
            &format!(r#"{{"destination_url":"file://{}"}}"#, snap.display()),
        )?;
        let snap_ms = t.elapsed().as_secs_f64() * 1e3;
        drop(api);
        let disk_kib = std::fs::metadata(snap.join("memory-ranges"))
            .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) / 2)
            .unwrap_or(0);

        // exec a VM booted from the guest / restored from the snapshot, its serial on stdout.
        let boot_cmd = || {
            let mut c = Command::new(&o.vmm);
            c.args(["--kernel", guest.to_str().unwrap()]).args([
                "--memory",
                &format!("size={size}"),
                "--serial",
                "tty",
            ]);
            c
        };
        let restore_cmd = || {
            let mut c = Command::new(&o.vmm);
            c.args([
                "--restore",
                &format!("source_url=file://{}", snap.display()),
            ]);
            c
        };
        let mut warm = ApiVmm::start(&o.vmm, dir.join(format!("warm-{size}.sock")))?;
        let restore_body = format!(
            r#"{{"source_url":"file://{}","resume":true}}"#,
            snap.display()
        );
        let (mut boot, mut restore, mut api_restore) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..o.runs {
            let b = boot_cmd();
            let (c, ms) = first_byte(b)?;
            end(c);
            boot.push(ms);
            let r = restore_cmd();
            let (c, ms) = first_byte(r)?;
            end(c);
            restore.push(ms);
            // Whatever the last deleted VM printed after its first byte is not this run's.
            warm.drain();
            let t = Instant::now();
            http(&warm.sock, "PUT", "vm.restore", &restore_body)?;
            warm.first_byte()?;
            api_restore.push(t.elapsed().as_secs_f64() * 1e3);
            http(&warm.sock, "PUT", "vm.delete", "")?;
        }
        drop(warm);
        println!(
            "{size:>8} {:>9.2} {:>9.2} {:>9.2} {snap_ms:>9.1} {:>9} KiB",
            median(&boot),
            median(&restore),
            median(&api_restore),
            disk_kib
        );

        // Three clones of the one snapshot, side by side.
        let mut running = Vec::new();
        for _ in 0..3 {
            let r = restore_cmd();
            running.push(first_byte(r)?.0);
        }
        std::thread::sleep(Duration::from_millis(300));
        let mems: Vec<(u64, u64)> = running.iter().map(|c| memory_of(c.id())).collect();
        let b = boot_cmd();
        let (booted, _) = first_byte(b)?;
        std::thread::sleep(Duration::from_millis(300));
        let booted_mem = memory_of(booted.id());
        end(booted);
        for c in running {
            end(c);
        }
        clones.push(format!(
            "{size:>8} {:>14} {:>14} {:>16}",
            mems.iter()
                .map(|m| m.0.to_string())
                .collect::<Vec<_>>()
                .join("/"),
            mems.iter()
                .map(|m| m.1.to_string())
                .collect::<Vec<_>>()
                .join("/"),
            format!("{}/{}", booted_mem.0, booted_mem.1)
        ));
    }
    println!(
        "\nmemory per process (KiB), three clones restored from one snapshot, and one booted VM"
    );
    println!(
        "{:>8} {:>14} {:>14} {:>16}",
        "memory", "clone RSS", "clone PSS", "booted RSS/PSS"
    );
    for c in clones {
        println!("{c}");
    }
    Ok(())
}
