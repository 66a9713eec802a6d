//! Unit tests of the filter definitions. Installing them is tested in vmm/tests/seccomp.rs,
//! in child processes.

use super::*;

const ALL_KINDS: [ThreadKind; 13] = [
    ThreadKind::Control,
    ThreadKind::Api,
    ThreadKind::Vfio,
    ThreadKind::Prefault,
    ThreadKind::Vmm,
    ThreadKind::Activator,
    ThreadKind::Vcpu,
    ThreadKind::Device(DeviceKind::Block),
    ThreadKind::Device(DeviceKind::Net),
    ThreadKind::Device(DeviceKind::Rng),
    ThreadKind::Device(DeviceKind::Console),
    ThreadKind::Device(DeviceKind::Vsock),
    ThreadKind::Device(DeviceKind::Fs),
];

/// The README's Security table quotes these; change both together.
#[test]
fn allowed_syscall_counts_match_the_readme() {
    for kind in ALL_KINDS {
        let a = allowlist(kind);
        let names: Vec<_> = a
            .syscalls()
            .map(|n| names::name(n).unwrap_or("?"))
            .collect();
        println!(
            "{:<15} {:>2} syscalls {:>2} rules: {}",
            kind.name(),
            a.len(),
            a.rule_entries(),
            names.join(" ")
        );
    }
    let counts = |k| (allowlist(k).len(), allowlist(k).rule_entries());
    assert_eq!(common::runtime().len(), 19);
    assert_eq!(counts(ThreadKind::Vmm), (25, 27));
    assert_eq!(counts(ThreadKind::Vcpu), (21, 23));
    let mut passthrough = Confinement::new(SeccompMode::Enforce);
    crate::vfio::seccomp::add_vcpu_rules(&mut passthrough.extra);
    let mut vcpu = allowlist(ThreadKind::Vcpu);
    vcpu.extend(&passthrough.extra);
    assert_eq!((vcpu.len(), vcpu.rule_entries()), (23, 27));
    assert_eq!(counts(ThreadKind::Vfio), (24, 34));
    assert_eq!(counts(ThreadKind::Prefault), (20, 21));
    assert_eq!(counts(ThreadKind::Api), (26, 26));
    assert_eq!(counts(ThreadKind::Control), (89, 139));
    assert_eq!(counts(ThreadKind::Activator), (52, 55));
    for d in [
        DeviceKind::Block,
        DeviceKind::Net,
        DeviceKind::Rng,
        DeviceKind::Console,
    ] {
        assert_eq!(counts(ThreadKind::Device(d)), (32, 32));
    }
    assert_eq!(counts(ThreadKind::Device(DeviceKind::Vsock)), (39, 39));
    assert_eq!(counts(ThreadKind::Device(DeviceKind::Fs)), (34, 34));
}

#[test]
fn every_allowed_syscall_has_a_name_for_the_violation_message() {
    for kind in ALL_KINDS {
        for nr in allowlist(kind).syscalls() {
            assert!(names::name(nr).is_some(), "{}: syscall {nr}", kind.name());
        }
    }
}

#[test]
fn no_thread_may_spawn_exec_trace_or_open_sockets_and_files() {
    let forbidden = [
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_fork,
        libc::SYS_vfork,
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_socket,
        libc::SYS_connect,
        libc::SYS_open,
        libc::SYS_openat,
        libc::SYS_kill,
        libc::SYS_mount,
        libc::SYS_bpf,
        libc::SYS_seccomp,
        libc::SYS_prctl,
    ];
    for kind in ALL_KINDS {
        let a = allowlist(kind);
        for nr in forbidden {
            // The activator exists to start device workers: threads (not processes), named,
            // each installing its own narrower filter.
            let spawns = [
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_prctl,
                libc::SYS_seccomp,
            ];
            if kind == ThreadKind::Activator && spawns.contains(&nr) {
                continue;
            }
            // The control loop builds VMs: it opens their files, creates the tap's AF_INET
            // configuration socket and starts their threads. It still may not exec, fork a
            // process that could, trace, connect, mount, load BPF or signal other processes.
            let builds = [
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_prctl,
                libc::SYS_seccomp,
                libc::SYS_openat,
                libc::SYS_socket,
            ];
            if kind == ThreadKind::Control && builds.contains(&nr) {
                continue;
            }
            // A vsock worker connects to unix sockets on the host (a guest connection to host
            // port P reaches PATH_P), and its creators' filters hold its list: AF_UNIX only
            // (checked below).
            let vsock = [libc::SYS_socket, libc::SYS_connect];
            let holds_vsock = matches!(
                kind,
                ThreadKind::Device(DeviceKind::Vsock) | ThreadKind::Activator | ThreadKind::Control
            );
            if holds_vsock && vsock.contains(&nr) {
                continue;
            }
            assert!(
                !a.contains(nr),
                "{} allows {:?}",
                kind.name(),
                names::name(nr)
            );
        }
    }
}

#[test]
fn the_only_sockets_a_vsock_worker_may_create_are_unix_sockets() {
    use seccompiler::{SeccompAction, SeccompFilter};
    let a = allowlist(ThreadKind::Device(DeviceKind::Vsock));
    let filter = SeccompFilter::new(
        a.into_rules().into_iter().collect(),
        SeccompAction::Errno(1),
        SeccompAction::Allow,
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap();
    let prog: seccompiler::BpfProgram = filter.try_into().unwrap();
    // Run the filter in a child process: AF_UNIX is created, AF_INET refused with EPERM.
    // SAFETY: fork in a test; the child only makes syscalls and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = (|| {
            if seccompiler::apply_filter(&prog).is_err() {
                return 10;
            }
            // SAFETY: plain socket(2) calls.
            let unix = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            // SAFETY: as above.
            let inet = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            if unix >= 0 && inet < 0 && errno == Some(libc::EPERM) {
                0
            } else {
                11
            }
        })();
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "AF_UNIX only");
}

#[test]
fn only_vcpus_issue_kvm_run_and_device_workers_issue_no_ioctl() {
    let rules = |k| allowlist(k).into_rules();
    // KVM_RUN, plus the MSI route and irqfd a guest's MSI/MSI-X programming takes effect by.
    assert_eq!(rules(ThreadKind::Vcpu)[&libc::SYS_ioctl].len(), 3);
    assert_eq!(rules(ThreadKind::Vmm)[&libc::SYS_ioctl].len(), 2);
    assert_eq!(rules(ThreadKind::Activator)[&libc::SYS_ioctl].len(), 2);
    assert!(!allowlist(ThreadKind::Device(DeviceKind::Block)).contains(libc::SYS_ioctl));
}

#[test]
fn memory_may_never_be_mapped_executable() {
    for kind in ALL_KINDS {
        let rules = allowlist(kind).into_rules();
        for nr in [libc::SYS_mmap, libc::SYS_mprotect] {
            assert_eq!(
                rules[&nr],
                vec![allowlist::arg_lacks(2, libc::PROT_EXEC as u64)]
            );
        }
        assert!(!rules.contains_key(&libc::SYS_pkey_mprotect));
        // mremap moves or resizes a mapping and keeps its protection; only the control loop
        // (glibc's realloc of large blocks while it builds a VM) and the vsock worker (its
        // streams' buffers), with the threads whose filters hold its list, may.
        assert_eq!(
            rules.contains_key(&libc::SYS_mremap),
            matches!(
                kind,
                ThreadKind::Control | ThreadKind::Activator | ThreadKind::Device(DeviceKind::Vsock)
            )
        );
    }
}

#[test]
fn every_kind_compiles_in_every_mode_and_off_compiles_nothing() {
    for kind in ALL_KINDS {
        for mode in [SeccompMode::Enforce, SeccompMode::Log] {
            let p = program(kind, mode).unwrap().unwrap();
            // The kernel's limit is 4096 instructions; stay far below it.
            assert!(p.len() < 1024, "{}: {} instructions", kind.name(), p.len());
        }
        assert!(program(kind, SeccompMode::Off).unwrap().is_none());
    }
}

#[test]
fn apply_off_installs_nothing() {
    apply(ThreadKind::Vcpu, SeccompMode::Off).unwrap();
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    assert!(status.contains("Seccomp:\t0"), "{status}");
}

#[test]
fn extra_rules_widen_only_the_thread_they_are_given_to() {
    let mut c = Confinement::new(SeccompMode::Enforce);
    let plain = c.program(ThreadKind::Vcpu).unwrap().unwrap().len();
    c.extra.allow(libc::SYS_pread64);
    let widened = c.program(ThreadKind::Vcpu).unwrap().unwrap().len();
    assert!(widened > plain, "{widened} vs {plain} instructions");
    assert!(!allowlist(ThreadKind::Vcpu).contains(libc::SYS_pread64));
    assert!(Confinement::new(SeccompMode::Off)
        .program(ThreadKind::Vcpu)
        .unwrap()
        .is_none());
}

/// Every thread kind's real filter (the vCPU's with and without the passthrough rules), in
/// our search layout, decides every syscall number and every argument value its rules name
/// exactly as seccompiler's linear chain of the same rules does; both run in bpf::run.
#[test]
fn the_installed_layout_decides_like_seccompilers_chain_for_every_real_filter() {
    let mut lists: Vec<(String, allowlist::Allowlist)> = ALL_KINDS
        .iter()
        .map(|&k| (k.name().to_string(), allowlist(k)))
        .collect();
    let mut passthrough = Confinement::new(SeccompMode::Enforce);
    crate::vfio::seccomp::add_vcpu_rules(&mut passthrough.extra);
    let mut vcpu = allowlist(ThreadKind::Vcpu);
    vcpu.extend(&passthrough.extra);
    lists.push(("vcpu+vfio".into(), vcpu));
    for (name, list) in lists {
        let rules = list.into_rules();
        let ours = bpf::build(rules.clone(), SeccompAction::Trap, SeccompAction::Allow).unwrap();
        let theirs = bpf::linear(rules);
        // Candidate argument values: every constant the rules compare against or mask with,
        // and its neighbours, plus a few extremes.
        let mut values: Vec<u64> = vec![0, 1, u64::MAX, 0x8000_0000, 0xffff_ffff];
        for ins in &theirs {
            if ins.code != 0x06 && ins.code != 0x20 {
                let k = u64::from(ins.k);
                values.extend([k, k.wrapping_add(1), k.wrapping_sub(1), !k & 0xffff_ffff]);
            }
        }
        values.sort_unstable();
        values.dedup();
        let mut worst = (0, 0);
        // Past the table too: x32 numbers (bit 30, same audit arch), -1.
        for nr in (0..512u32).chain([0x4000_0000, 0x4000_0010, 0x4000_00e4, u32::MAX]) {
            for arg in 0..6 {
                for &v in &values {
                    let mut args = [0u64; 6];
                    args[arg] = v;
                    let a = bpf::run(&ours, bpf::AUDIT_ARCH_X86_64, nr, args);
                    let b = bpf::run(&theirs, bpf::AUDIT_ARCH_X86_64, nr, args);
                    assert_eq!(a.0, b.0, "{name}: nr {nr} arg{arg}={v:#x}");
                    worst = (worst.0.max(a.1), worst.1.max(b.1));
                }
            }
        }
        // What the kernel pays at install: one run per syscall number (to build its cache of
        // always-allowed syscalls).
        let total = |p: &[seccompiler::sock_filter]| -> usize {
            (0..512u32)
                .map(|nr| bpf::run(p, bpf::AUDIT_ARCH_X86_64, nr, [0; 6]).1)
                .sum()
        };
        let (t_ours, t_theirs) = (total(&ours), total(&theirs));
        println!(
            "{name:<16} {} vs {} instructions; per syscall at most {} vs {} run, {} vs {} \
             over all numbers",
            ours.len(),
            theirs.len(),
            worst.0,
            worst.1,
            t_ours,
            t_theirs
        );
        assert!(t_ours * 4 < t_theirs, "{name}: {t_ours} vs {t_theirs}");
    }
}
