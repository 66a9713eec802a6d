//! Boots a tiny PVH guest, built here, on the real /dev/kvm: it writes a line to COM1 and asks
//! the i8042 for a reset, so `vmm` must print the line and exit 0.

mod common;
use common::*;

fn boot(cpus: &str, mem: &str) -> std::process::Output {
    let code = vmm_tests::serial_hello_code(b"Hello from a tiny PVH guest\n");
    let k = tmp(
        &format!("tiny-pvh-{cpus}-{mem}"),
        &vmm_tests::pvh_guest_elf(&code),
    );
    vmm()
        .args([
            "--kernel",
            k.to_str().unwrap(),
            "--cpus",
            &format!("boot={cpus}"),
            "--memory",
            &format!("size={mem}"),
            "--serial",
            "tty",
        ])
        .output()
        .expect("spawn vmm")
}

#[test]
fn tiny_pvh_guest_prints_and_resets_with_exit_0() {
    require_kvm();
    let o = boot("1", "128M");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Hello from a tiny PVH guest"),
        "stdout: {out:?} stderr: {}",
        stderr(&o)
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
}

#[test]
fn tiny_guest_with_four_vcpus_and_high_memory_exits_0() {
    require_kvm();
    // 4 vCPUs (APs wait for INIT/SIPI) and RAM above the 32-bit hole.
    let o = boot("4", "5G");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Hello"),
        "stderr: {}",
        stderr(&o)
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
}

#[test]
fn serial_file_receives_the_guest_output() {
    require_kvm();
    let code = vmm_tests::serial_hello_code(b"to a file\n");
    let k = tmp("tiny-pvh-file", &vmm_tests::pvh_guest_elf(&code));
    let log = std::env::temp_dir().join(format!("vmm-serial-{}.log", std::process::id()));
    let o = vmm()
        .args([
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "size=64M",
            "--serial",
            &format!("file={}", log.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let got = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(got, "to a file\n");
}

#[test]
fn sigterm_presses_the_power_button_and_a_second_one_stops_the_vm() {
    require_kvm();
    use std::io::Read;
    // A guest that prints and halts: it has no ACPI, so the button press changes nothing.
    let code = vmm_tests::serial_hello_then_halt_code(b"up\n");
    let k = tmp("tiny-pvh-halt", &vmm_tests::pvh_guest_elf(&code));
    let mut child = vmm()
        .args([
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "size=64M",
            "-v",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut b = [0u8; 3];
    child.stdout.as_mut().unwrap().read_exact(&mut b).unwrap();
    assert_eq!(&b, b"up\n");
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "one SIGTERM must not kill the VM"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("pressing the ACPI power button"), "{err}");
    assert!(err.contains("stopped by a second SIGTERM"), "{err}");
}
