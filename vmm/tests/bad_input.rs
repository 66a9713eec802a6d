//! Bad host-side input: a one-line error and a non-zero exit, never a panic.

mod common;
use common::*;

fn assert_clean_error(o: &std::process::Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
}

#[test]
fn missing_kernel_file_names_the_path() {
    let o = run(&["--kernel", "/nonexistent/vmlinux"]);
    assert_clean_error(&o, 1, "cannot open kernel /nonexistent/vmlinux");
}

#[test]
fn kernel_option_is_required() {
    assert_clean_error(&run(&[]), 2, "--kernel");
}

#[test]
fn unknown_option_is_rejected() {
    assert_clean_error(&run(&["--kernel", "k", "--frobnicate"]), 2, "--frobnicate");
}

#[test]
fn zero_vcpus_and_malformed_sizes_are_rejected() {
    assert_clean_error(
        &run(&["--kernel", "k", "--cpus", "boot=0"]),
        2,
        "at least one vCPU",
    );
    assert_clean_error(
        &run(&["--kernel", "k", "--memory", "size=12Q"]),
        2,
        "--memory",
    );
    assert_clean_error(
        &run(&["--kernel", "k", "--memory", "size=0"]),
        2,
        "cannot be empty",
    );
}

#[test]
fn a_bad_smbios_identity_is_refused_naming_the_field() {
    assert_clean_error(
        &run(&["--kernel", "k", "--platform", "system_uuid=1234"]),
        2,
        "--platform: system_uuid='1234': \"1234\" is not a UUID",
    );
    assert_clean_error(
        &run(&["--kernel", "k", "--platform", "oem_strings=[a,]"]),
        2,
        "oem_strings",
    );
    assert_clean_error(
        &run(&["--kernel", "k", "--platform", "tdx=on"]),
        2,
        "unknown parameter 'tdx'",
    );
}

#[test]
fn a_device_in_a_numa_node_the_guest_does_not_have_is_refused() {
    assert_clean_error(
        &run(&[
            "--kernel",
            "k",
            "--device",
            "path=/sys/bus/pci/devices/0000:41:00.0,numa_node=1",
        ]),
        2,
        "numa_node=1 is not a guest NUMA node",
    );
}

#[test]
fn a_directory_is_not_a_kernel() {
    assert_clean_error(&run(&["--kernel", "/tmp"]), 1, "is a directory");
}

#[test]
fn missing_initramfs_names_the_path() {
    let k = tmp("k-for-initrd", b"whatever");
    let o = run(&[
        "--kernel",
        k.to_str().unwrap(),
        "--initramfs",
        "/nonexistent/initrd",
    ]);
    assert_clean_error(&o, 1, "cannot open initramfs /nonexistent/initrd");
}

#[test]
fn garbage_kernel_is_rejected_with_its_kind() {
    require_kvm();
    let k = tmp("garbage-kernel", &[0x5a; 4096]);
    let o = run(&["--kernel", k.to_str().unwrap(), "--memory", "size=64M"]);
    assert_clean_error(&o, 1, "loading the guest");
}

#[test]
fn initramfs_larger_than_memory_is_rejected() {
    require_kvm();
    let k = tmp(
        "tiny-for-initrd",
        &vmm_tests::pvh_guest_elf(&vmm_tests::serial_hello_code(b"x")),
    );
    let big = std::env::temp_dir().join(format!("vmm-test-big-initrd-{}", std::process::id()));
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(96 << 20).unwrap(); // sparse
    let o = run(&[
        "--kernel",
        k.to_str().unwrap(),
        "--initramfs",
        big.to_str().unwrap(),
        "--memory",
        "size=64M",
    ]);
    let _ = std::fs::remove_file(&big);
    assert_clean_error(&o, 1, "initramfs");
}

/// Ignored (counted as skipped) by a plain `cargo test`; scripts/test.sh runs it as root
/// with `--include-ignored`.
#[test]
#[ignore = "needs root and setpriv (util-linux) to drop privileges: cargo test -- --include-ignored"]
fn kvm_not_permitted_says_how_to_fix_it() {
    // Run as an unprivileged user who cannot open /dev/kvm (root-only here and on CI).
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    assert!(
        std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok(),
        "this test needs setpriv (util-linux)"
    );
    let k = tmp(
        "k-for-perm",
        &vmm_tests::pvh_guest_elf(&vmm_tests::serial_hello_code(b"x")),
    );
    let mut perms = std::fs::metadata(&k).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&k, perms).unwrap();
    std::fs::set_permissions(
        k.parent().unwrap(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let o = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_vmm"),
            "--kernel",
            k.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let kvm_world_accessible = std::fs::metadata("/dev/kvm")
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o006 == 0o006)
        .unwrap_or(false);
    if kvm_world_accessible {
        eprintln!("/dev/kvm is world-accessible here: nothing to refuse");
        return;
    }
    assert_clean_error(&o, 1, "cannot open /dev/kvm");
    assert!(stderr(&o).contains("kvm' group"), "{}", stderr(&o));
}
