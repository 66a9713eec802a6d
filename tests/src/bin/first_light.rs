//! First-light benchmark: wall time from exec of `vmm` to the first byte the guest writes to
//! its serial port, at several guest memory sizes, beside a bare KVM floor measured the same
//! way in the same run (a process that only opens /dev/kvm, creates the VM, registers memory,
//! creates the irqchip and one vCPU, and runs 7 bytes of real-mode code that writes a byte).
//!
//! Usage: first-light [--vmm PATH]... [--runs N] [--sizes 128M,4G,32G] [--vmm-arg ARG]...
//! Several `--vmm` binaries are measured interleaved with the same floor runs (one row
//! each): the way to compare two builds on a noisy machine. `ratio` is median vmm over
//! median floor; `paired` is the median of each run's ratio to the floor run just before it.
//! (The floor is this same binary re-executed with `--floor SIZE`.)
//! `first-light --write-guest PATH` writes the tiny guest it boots, to profile one run by hand.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

fn parse_size(s: &str) -> u64 {
    let (n, mult) = match s.chars().last() {
        Some('M') => (&s[..s.len() - 1], 1u64 << 20),
        Some('G') => (&s[..s.len() - 1], 1u64 << 30),
        _ => (s, 1),
    };
    n.parse::<u64>().expect("size") * mult
}

/// The floor: the least any VMM must do before a guest can write a byte.
fn floor(size: u64) {
    let kvm = Kvm::new().expect("open /dev/kvm");
    let vm = kvm.create_vm().expect("KVM_CREATE_VM");
    eprintln!("boot-phase vm_created mono_ns={}", mono_ns());
    let low = size.min(3 << 30);
    let mut slots = vec![(0u64, low)];
    if size > low {
        slots.push((1 << 32, size - low));
    }
    let mut host0 = std::ptr::null_mut();
    for (i, (gpa, len)) in slots.iter().enumerate() {
        // SAFETY: a fresh anonymous mapping, never unmapped while the VM lives.
        let host = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                *len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(host, libc::MAP_FAILED);
        if i == 0 {
            host0 = host as *mut u8;
        }
        let r = kvm_userspace_memory_region {
            slot: i as u32,
            guest_phys_addr: *gpa,
            memory_size: *len,
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the mapping outlives the VM (the process exits first).
        unsafe {
            vm.set_user_memory_region(r)
                .expect("KVM_SET_USER_MEMORY_REGION")
        };
    }
    eprintln!("boot-phase memory_mapped mono_ns={}", mono_ns());
    vm.create_irq_chip().expect("KVM_CREATE_IRQCHIP");
    let mut vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
    // mov dx,0x3f8 ; mov al,'X' ; out dx,al ; hlt
    let code = [0xba, 0xf8, 0x03, 0xb0, b'X', 0xee, 0xf4];
    // SAFETY: guest page 0x1000 lies inside the first mapping.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), host0.add(0x1000), code.len()) };
    let mut sregs = vcpu.get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).unwrap();
    let mut regs = vcpu.get_regs().unwrap();
    regs.rip = 0x1000;
    regs.rflags = 2;
    vcpu.set_regs(&regs).unwrap();
    loop {
        match vcpu.run().expect("KVM_RUN") {
            VcpuExit::IoOut(0x3f8, data) => {
                use std::io::Write;
                std::io::stdout().write_all(data).unwrap();
                std::io::stdout().flush().unwrap();
                return;
            }
            VcpuExit::Hlt => return,
            _ => {}
        }
    }
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

/// Spawn `cmd`, return ms until the first stdout byte, plus any `boot-phase NAME ... mono_ns=N` lines.
fn measure(mut cmd: Command) -> Sample {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let t0 = mono_ns();
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut b = [0u8; 1];
    let n = out.read(&mut b).unwrap_or(0);
    let first_byte_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(n, 1, "no serial output from {cmd:?}");
    let mut rest = Vec::new();
    let _ = out.read_to_end(&mut rest);
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let status = child.wait().unwrap();
    assert!(status.success(), "{cmd:?} failed: {status}\n{err}");
    let phases = err
        .lines()
        .filter_map(|l| {
            let rest = l.split("boot-phase ").nth(1)?;
            let name = rest.split_whitespace().next()?.to_string();
            let ns: u64 = rest.split("mono_ns=").nth(1)?.trim().parse().ok()?;
            Some((name, ns.saturating_sub(t0) as f64 / 1e6))
        })
        .collect();
    Sample {
        first_byte_ms,
        phases,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--floor") {
        floor(parse_size(&args[2]));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--write-guest") {
        // The guest the benchmark boots, for profiling one vmm run by hand.
        let bytes = vmm_tests::pvh_guest_elf(&vmm_tests::serial_hello_code(b"X\n"));
        std::fs::write(&args[2], bytes).expect("write the guest");
        return;
    }
    let mut vmms: Vec<String> = Vec::new();
    let mut runs = 15usize;
    let mut sizes = vec!["128M".to_string(), "4G".into(), "32G".into()];
    let mut extra: Vec<String> = Vec::new();
    let mut i = 1;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--vmm" => vmms.push(args[i + 1].clone()),
            "--runs" => runs = args[i + 1].parse().expect("--runs N"),
            "--sizes" => sizes = args[i + 1].split(',').map(String::from).collect(),
            "--vmm-arg" => extra.push(args[i + 1].clone()),
            o => panic!("unknown option {o}"),
        }
        i += 2;
    }
    if vmms.is_empty() {
        vmms.push("target/release/vmm".into());
    }
    let guest = std::env::temp_dir().join(format!("first-light-guest-{}.elf", std::process::id()));
    std::fs::write(
        &guest,
        vmm_tests::pvh_guest_elf(&vmm_tests::serial_hello_code(b"X\n")),
    )
    .unwrap();
    let me = std::env::current_exe().unwrap();
    println!("first light: exec -> first guest serial byte, median of {runs} runs (ms)");
    for (n, vmm) in vmms.iter().enumerate() {
        println!("vmm{}: {vmm} {}", n, extra.join(" "));
    }
    println!(
        "{:>6} {:>9} {:>9} {:>7} {:>7}   vmm phases (median ms since exec)",
        "memory", "floor", "vmm", "ratio", "paired"
    );
    for size in &sizes {
        let mut floor_ms = Vec::new();
        let mut floor_phases: Vec<(String, Vec<f64>)> = Vec::new();
        // Per vmm: first-byte times, per-run ratios to the floor run just before, phases.
        let mut per_vmm: Vec<VmmRuns> = vmms.iter().map(|_| VmmRuns::default()).collect();
        for _ in 0..runs {
            // Interleave the floor and each vmm so machine noise hits all alike.
            let mut f = Command::new(&me);
            f.args(["--floor", size]);
            let fs = measure(f);
            floor_ms.push(fs.first_byte_ms);
            collect(&mut floor_phases, fs.phases);
            for (vmm, r) in vmms.iter().zip(per_vmm.iter_mut()) {
                let mut v = Command::new(vmm);
                v.args([
                    "--kernel",
                    guest.to_str().unwrap(),
                    "--memory",
                    &format!("size={size}"),
                    "--serial",
                    "tty",
                    "-v",
                ]);
                v.args(&extra);
                let s = measure(v);
                r.times.push(s.first_byte_ms);
                r.ratios.push(s.first_byte_ms / fs.first_byte_ms);
                collect(&mut r.phases, s.phases);
            }
        }
        let f = median(floor_ms);
        let floor_phases = show(floor_phases, "floor:");
        for (n, r) in per_vmm.into_iter().enumerate() {
            let v = median(r.times);
            let label = if vmms.len() > 1 {
                format!("{size}/{n}")
            } else {
                size.clone()
            };
            println!(
                "{label:>6} {f:>9.2} {v:>9.2} {:>6.2}x {:>6.2}x   {floor_phases} {}",
                v / f,
                median(r.ratios),
                show(r.phases, "")
            );
        }
    }
    let _ = std::fs::remove_file(&guest);
    for vmm in &vmms {
        resident_memory(vmm);
    }
}

/// One vmm's runs at one size: first-byte times, each run's ratio to the floor run just
/// before it, and its phases.
#[derive(Default)]
struct VmmRuns {
    times: Vec<f64>,
    ratios: Vec<f64>,
    phases: Vec<(String, Vec<f64>)>,
}

/// Add one run's phases to the per-phase lists.
fn collect(into: &mut Vec<(String, Vec<f64>)>, phases: Vec<(String, f64)>) {
    for (name, ms) in phases {
        match into.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(ms),
            None => into.push((name, vec![ms])),
        }
    }
}

/// `prefix` + `name=median` for each phase.
fn show(phases: Vec<(String, Vec<f64>)>, prefix: &str) -> String {
    phases
        .into_iter()
        .map(|(n, v)| format!("{prefix}{n}={:.2}", median(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// VmRSS of a running vmm with a 128 MiB, 1-vCPU guest that printed a line and halted.
fn resident_memory(vmm: &str) {
    let guest = std::env::temp_dir().join(format!("first-light-halt-{}.elf", std::process::id()));
    std::fs::write(
        &guest,
        vmm_tests::pvh_guest_elf(&vmm_tests::serial_hello_then_halt_code(b"X\n")),
    )
    .unwrap();
    let mut child = Command::new(vmm)
        .args([
            "--kernel",
            guest.to_str().unwrap(),
            "--memory",
            "size=128M",
            "--serial",
            "tty",
        ])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn vmm");
    let mut b = [0u8; 1];
    let _ = child.stdout.as_mut().unwrap().read(&mut b);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&guest);
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?");
    println!(
        "resident memory of a running vmm (128 MiB guest, 1 vCPU, halted after printing): {} ({vmm})",
        rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
}
