//! The REST API end to end: the real `vmm` binary, driven over its socket like a client
//! (ch-remote, Kata's clh driver) would, booting tiny guests on /dev/kvm. Every check is on
//! what the guest did (its serial output in the host's file) or what the API answered.

mod common;
use common::{require_kvm, size, stderr, tmp, wait_until};

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// One request on a new connection: (status, body).
fn call(sock: &Path, method: &str, endpoint: &str, body: Option<&str>) -> (u16, String) {
    vmm_tests::http::call(sock, method, endpoint, body)
        .unwrap_or_else(|e| panic!("{method} {endpoint} on {sock:?}: {e}"))
}

fn put(sock: &Path, endpoint: &str) -> u16 {
    let (code, body) = call(sock, "PUT", endpoint, None);
    assert!(
        code < 300 || body.starts_with('['),
        "{endpoint}: {code} {body}"
    );
    code
}

fn info(sock: &Path) -> serde_json::Value {
    let (code, body) = call(sock, "GET", "vm.info", None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

struct Vmm {
    child: Child,
    sock: PathBuf,
}

/// A test that fails part-way leaves no VMM (and its busy guest) running behind it.
impl Drop for Vmm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_vmm(name: &str, extra: &[&str]) -> Vmm {
    require_kvm();
    let dir = std::env::temp_dir().join(format!("vmm-api-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("api.sock");
    let child = common::vmm()
        .arg("--api-socket")
        .arg(format!("path={}", sock.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmm");
    let mut v = Vmm { child, sock };
    wait_until("the API socket", Duration::from_secs(20), || {
        if let Ok(Some(status)) = v.child.try_wait() {
            panic!("vmm exited early: {status}");
        }
        UnixStream::connect(&v.sock).is_ok()
    });
    v
}

impl Vmm {
    /// `vmm.shutdown`, then the process must exit 0: its stderr, for the caller's checks.
    fn shut_down(self) -> String {
        assert_eq!(put(&self.sock, "vmm.shutdown"), 204);
        let (code, err) = self.wait();
        assert_eq!(code, Some(0), "{err}");
        err
    }

    /// Wait for the process to end (after vmm.shutdown); its exit code and stderr.
    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                return (s.code(), err);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("vmm did not exit after vmm.shutdown");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A file of `len` bytes (sparse): a disk image, an oversized initramfs.
fn sparse_file(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

/// [`create_body`] with more top-level `fields` (JSON members, comma-separated).
fn create_body_with(kernel: &Path, mem_mib: u64, serial: &Path, fields: &str) -> String {
    create_body(kernel, mem_mib, serial).replacen("\"iommu\"", &format!("{fields},\"iommu\""), 1)
}

fn create_body(kernel: &Path, mem_mib: u64, serial: &Path) -> String {
    format!(
        r#"{{"cpus":{{"boot_vcpus":1,"max_vcpus":1}},"memory":{{"size":{}}},
            "payload":{{"kernel":"{}","cmdline":"console=ttyS0"}},
            "serial":{{"mode":"File","file":"{}"}},"console":{{"mode":"Off"}},
            "iommu":false,"watchdog":false,"pvpanic":false}}"#,
        mem_mib << 20,
        kernel.display(),
        serial.display()
    )
}

/// A guest that writes a byte to COM1 every 2M TSC ticks (its serial file is its counter).
fn ticker(name: &str) -> PathBuf {
    tmp(
        name,
        &vmm_tests::pvh_guest_elf(&vmm_tests::serial_ticker_code(b'.', 2_000_000)),
    )
}

/// A VMM serving the API with a 32 MiB ticker guest created and booted: the VMM, its socket
/// and the guest's serial file.
fn boot_ticker(name: &str) -> (Vmm, PathBuf, PathBuf) {
    let ticker = ticker(&format!("api-ticker-{name}"));
    let vmm = spawn_vmm(name, &[]);
    let sock = vmm.sock.clone();
    let serial = sock.with_file_name("serial");
    let (code, body) = call(
        &sock,
        "PUT",
        "vm.create",
        Some(&create_body(&ticker, 32, &serial)),
    );
    assert_eq!(code, 204, "{body}");
    assert_eq!(put(&sock, "vm.boot"), 204);
    (vmm, sock, serial)
}

#[test]
fn a_vm_created_booted_paused_resumed_shut_down_deleted_and_created_again() {
    let ticker = ticker("api-ticker");
    let hello = tmp(
        "api-hello-reset",
        &vmm_tests::pvh_guest_elf(&vmm_tests::serial_hello_code(b"hello\n")),
    );
    let events = tmp("api-events", b"");
    let vmm = spawn_vmm(
        "lifecycle",
        &["--event-monitor", &format!("path={}", events.display())],
    );
    let sock = vmm.sock.clone();
    let serial1 = sock.with_file_name("serial1");
    let serial2 = sock.with_file_name("serial2");

    let (code, body) = call(&sock, "GET", "vmm.ping", None);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(&format!("\"pid\":{}", vmm.child.id())),
        "{body}"
    );
    assert_eq!(call(&sock, "GET", "vm.info", None).0, 404);
    assert_eq!(put(&sock, "vm.boot"), 404);

    let (code, body) = call(
        &sock,
        "PUT",
        "vm.create",
        Some(&create_body(&ticker, 64, &serial1)),
    );
    assert_eq!(code, 204, "{body}");
    assert_eq!(info(&sock)["state"], "Created");
    assert_eq!(put(&sock, "vm.boot"), 204);
    let i = info(&sock);
    assert_eq!(i["state"], "Running");
    assert_eq!(i["memory_actual_size"], 64u64 << 20);
    assert_eq!(i["config"]["memory"]["size"], 64u64 << 20);

    // The guest runs: its counter (bytes on its serial port) advances.
    wait_until("the guest's first ticks", Duration::from_secs(20), || {
        size(&serial1) >= 3
    });
    assert_eq!(put(&sock, "vm.pause"), 204);
    assert_eq!(info(&sock)["state"], "Paused");
    let paused_at = size(&serial1);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(size(&serial1), paused_at, "the guest ran while paused");
    assert_eq!(put(&sock, "vm.resume"), 204);
    wait_until("ticks after resume", Duration::from_secs(20), || {
        size(&serial1) > paused_at + 2
    });
    assert_eq!(info(&sock)["state"], "Running");
    assert_eq!(put(&sock, "vm.power-button"), 204);
    assert_eq!(put(&sock, "vm.shutdown"), 204);
    assert_eq!(info(&sock)["state"], "Shutdown");
    let stopped_at = size(&serial1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        size(&serial1),
        stopped_at,
        "the guest ran after vm.shutdown"
    );
    assert_eq!(put(&sock, "vm.delete"), 204);
    assert_eq!(call(&sock, "GET", "vm.info", None).0, 404);

    // Created again, with other memory and a guest that resets after its greeting: under the
    // API a reset reboots the VM, so the guest greets again (its output is appended).
    let (code, body) = call(
        &sock,
        "PUT",
        "vm.create",
        Some(&create_body(&hello, 128, &serial2)),
    );
    assert_eq!(code, 204, "{body}");
    assert_eq!(put(&sock, "vm.boot"), 204);
    wait_until(
        "a second boot after the guest's reset",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&serial2)
                .unwrap_or_default()
                .matches("hello")
                .count()
                >= 2
        },
    );
    let i = info(&sock);
    assert_eq!(i["config"]["memory"]["size"], 128u64 << 20);
    vmm.shut_down();
    assert!(!sock.exists(), "the socket was left behind");
    let ev = std::fs::read_to_string(&events).unwrap();
    for e in [
        "booting",
        "booted",
        "pausing",
        "paused",
        "resumed",
        "shutdown",
        "deleted",
        "rebooting",
        "rebooted",
    ] {
        assert!(
            ev.contains(&format!("\"event\": \"{e}\"")),
            "no {e} event in {ev}"
        );
    }
}

/// `vm.nmi` reaches the guest: this one has no interrupt table, so the NMI is a triple fault,
/// which KVM reports as a shutdown and the API turns into a reboot: the guest greets again.
/// Before the NMI it had greeted once and halted.
#[test]
fn an_nmi_reaches_the_guest() {
    let guest = tmp(
        "api-nmi-guest",
        &vmm_tests::pvh_guest_elf(&vmm_tests::serial_hello_then_halt_code(b"hi")),
    );
    let vmm = spawn_vmm("nmi", &[]);
    let sock = vmm.sock.clone();
    let serial = sock.with_file_name("serial");
    let greetings = || {
        std::fs::read_to_string(&serial)
            .unwrap_or_default()
            .matches("hi")
            .count()
    };
    // Not booted: refused.
    let (code, body) = call(
        &sock,
        "PUT",
        "vm.create",
        Some(&create_body(&guest, 32, &serial)),
    );
    assert_eq!(code, 204, "{body}");
    assert_eq!(call(&sock, "PUT", "vm.nmi", None).0, 405);
    assert_eq!(put(&sock, "vm.boot"), 204);
    wait_until("the greeting", Duration::from_secs(20), || greetings() >= 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(greetings(), 1, "the guest rebooted on its own");
    let (code, body) = call(&sock, "PUT", "vm.nmi", None);
    assert_eq!(code, 204, "{body}");
    wait_until("a reboot after the NMI", Duration::from_secs(20), || {
        greetings() >= 2
    });
    assert_eq!(call(&sock, "GET", "vm.nmi", None).0, 405);
    let err = vmm.shut_down();
    assert!(!err.contains("seccomp violation"), "{err}");
}

/// `vm.resize-disk` (the body `ch-remote resize-disk` sends): a running VM's disk grows, the
/// image with it; shrinking, an unknown id and a VM not booted are refused and change nothing.
#[test]
fn a_running_vms_disk_grows_and_nothing_else_is_accepted() {
    let ticker = ticker("api-ticker-resize");
    let vmm = spawn_vmm("resize", &[]);
    let sock = vmm.sock.clone();
    let disk = sock.with_file_name("disk.img");
    sparse_file(&disk, 8 << 20);
    let serial = sock.with_file_name("serial");
    let body = create_body_with(
        &ticker,
        32,
        &serial,
        &format!(r#""disks":[{{"path":"{}","id":"d0"}}]"#, disk.display()),
    );
    let (code, reply) = call(&sock, "PUT", "vm.create", Some(&body));
    assert_eq!(code, 204, "{reply}");
    let resize = |id: &str, size: u64| {
        call(
            &sock,
            "PUT",
            "vm.resize-disk",
            Some(&format!(r#"{{"id":"{id}","desired_size":{size}}}"#)),
        )
    };
    assert_eq!(resize("d0", 16 << 20).0, 405, "not booted");
    assert_eq!(put(&sock, "vm.boot"), 204);
    let (code, reply) = resize("d0", 16 << 20);
    assert_eq!(code, 204, "{reply}");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 16 << 20);
    let (code, reply) = resize("d0", 4 << 20);
    assert_eq!(code, 400, "{reply}");
    assert!(reply.contains("shrinking"), "{reply}");
    let (code, reply) = resize("nope", 32 << 20);
    assert_eq!(code, 404, "{reply}");
    assert!(reply.contains("d0"), "{reply}");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 16 << 20);
    assert_eq!(info(&sock)["state"], "Running");
    let err = vmm.shut_down();
    assert!(!err.contains("seccomp violation"), "{err}");
}

/// The files a process holds open (readlink of each /proc/PID/fd entry).
fn open_files(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|l| l.display().to_string())
                // Eventfds, epolls and KVM fds differ by inode number only: compare kinds.
                .map(|l| l.split(':').next().unwrap_or_default().to_string())
                // Sockets are the API's: the listener and client connections that the
                // server closes when it reads their end, a moment after the client's.
                .filter(|l| l != "socket")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The names of a process's threads, sorted.
fn thread_names(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .map(|c| c.trim().to_string())
                // The kernel's own worker for the VM (kvm-nx-lpage-recovery) comes and goes
                // with KVM's page-size recovery, not with the VMM.
                .filter(|c| !c.starts_with("kvm-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The idle VMM's thread names once they have settled: at least three threads, and no name
/// changing across 100 ms (a new thread names itself after it starts, so a sample taken too
/// early sees "vmm" where "vmm-api" will be).
fn settled_thread_names(pid: u32) -> Vec<String> {
    settled(
        "the idle VMM's threads",
        || thread_names(pid),
        |t| t.len() >= 3,
    )
}

/// `read` once two reads 100 ms apart agree (and `ok` holds): an idle VMM makes the next VM's
/// KVM VM ahead on its VMM thread, which opens and closes files (the CPUID cache) after the
/// thread exists.
fn settled(
    what: &str,
    mut read: impl FnMut() -> Vec<String>,
    ok: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut last = Vec::new();
    wait_until(what, Duration::from_secs(10), || {
        let now = read();
        let settled = ok(&now) && now == last;
        last = now;
        if !settled {
            std::thread::sleep(Duration::from_millis(100));
        }
        settled
    });
    last
}

/// Try to take the exclusive lock a read-write disk holds (as another VMM would).
fn can_lock(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: flock on an fd this function owns.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[test]
fn a_vm_with_devices_reboots_and_leaves_nothing_behind_when_stopped() {
    let ticker = ticker("api-ticker-devices");
    let vmm = spawn_vmm("devices", &[]);
    let (sock, pid) = (vmm.sock.clone(), vmm.child.id());
    let disk = sock.with_file_name("disk.img");
    sparse_file(&disk, 8 << 20);
    let serial = sock.with_file_name("serial");
    // Before any VM: what an idle VMM holds (the next VM's KVM VM and thread are made ahead).
    let threads = settled_thread_names(pid);
    let idle = (
        settled("the idle VMM's files", || open_files(pid), |_| true),
        threads,
    );
    let body = create_body_with(
        &ticker,
        32,
        &serial,
        &format!(
            r#""disks":[{{"path":"{}"}}],"rng":{{"src":"/dev/urandom"}}"#,
            disk.display()
        ),
    );
    let (code, body) = call(&sock, "PUT", "vm.create", Some(&body));
    assert_eq!(code, 204, "{body}");
    assert_eq!(put(&sock, "vm.boot"), 204);
    assert!(!can_lock(&disk), "a running VM's disk must be locked");
    // Each reboot tears the VM down and builds it again: the disk's lock must be free by then.
    for _ in 0..3 {
        let (code, body) = call(&sock, "PUT", "vm.reboot", None);
        assert_eq!(code, 204, "vm.reboot: {body}");
    }
    wait_until("ticks after the reboots", Duration::from_secs(20), || {
        size(&serial) >= 2
    });
    for end in ["vm.shutdown", "vm.delete"] {
        assert_eq!(put(&sock, end), 204);
        assert!(can_lock(&disk), "the disk is still locked after {end}");
        let disk_name = disk.display().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while thread_names(pid) != idle.1 {
            assert!(
                Instant::now() < deadline,
                "the VM's threads did not end after {end}: {:?}, idle {:?}",
                thread_names(pid),
                idle.1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let files = open_files(pid);
        assert!(!files.contains(&disk_name), "{disk_name} still open");
        assert_eq!(files, idle.0, "fds left behind by a stopped VM");
        if end == "vm.shutdown" {
            assert_eq!(put(&sock, "vm.boot"), 204, "boot again after vm.shutdown");
        }
    }
    vmm.shut_down();
}

#[test]
fn a_boot_that_fails_half_way_releases_what_it_opened() {
    let ticker = ticker("api-ticker-failed");
    let vmm = spawn_vmm("failed", &[]);
    let (sock, pid) = (vmm.sock.clone(), vmm.child.id());
    let disk = sock.with_file_name("disk.img");
    sparse_file(&disk, 1 << 20);
    // An initramfs larger than the guest's RAM: found while the VM is built, after its disk
    // is opened and locked and its devices are on the buses.
    let initramfs = sock.with_file_name("big.cpio");
    sparse_file(&initramfs, 40 << 20);
    wait_until("the idle VMM's threads", Duration::from_secs(10), || {
        thread_names(pid).len() >= 3
    });
    let idle = open_files(pid);
    let body = create_body_with(
        &ticker,
        32,
        &sock.with_file_name("serial"),
        &format!(r#""disks":[{{"path":"{}"}}]"#, disk.display()),
    );
    let body = body.replacen(
        "\"cmdline\"",
        &format!("\"initramfs\":\"{}\",\"cmdline\"", initramfs.display()),
        1,
    );
    let (code, body) = call(&sock, "PUT", "vm.create", Some(&body));
    assert_eq!(code, 204, "{body}");
    for _ in 0..2 {
        let (code, body) = call(&sock, "PUT", "vm.boot", None);
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("initramfs"), "{body}");
        assert!(can_lock(&disk), "a failed boot left the disk locked");
        assert_eq!(open_files(pid), idle, "a failed boot left fds behind");
    }
    assert_eq!(info(&sock)["state"], "Created");
    vmm.shut_down();
}

#[test]
fn bad_requests_leave_the_guest_running() {
    let (vmm, sock, serial) = boot_ticker("bad");
    wait_until("ticks", Duration::from_secs(20), || size(&serial) >= 2);
    for (method, endpoint, body, want) in [
        ("PUT", "vm.create", Some("{"), 400),
        (
            "PUT",
            "vm.create",
            Some(r#"{"payload":{"kernel":"/k"},"x":1}"#),
            400,
        ),
        ("GET", "vm.boot", None, 405),
        ("PUT", "vm.nothing", None, 404),
        ("PUT", "vm.resume", None, 405),
        ("PUT", "vm.boot", None, 405),
        // A host device not bound to vfio-pci (or not there at all): checked as --device is.
        (
            "PUT",
            "vm.add-device",
            Some(r#"{"path":"/sys/bus/pci/devices/0000:00:01.0"}"#),
            400,
        ),
        (
            "PUT",
            "vm.add-disk",
            Some(r#"{"path":"/nonexistent/disk.img"}"#),
            400,
        ),
        ("PUT", "vm.remove-device", Some(r#"{"id":"nope"}"#), 404),
    ] {
        let (code, body) = call(&sock, method, endpoint, body);
        assert_eq!(code, want, "{method} {endpoint}: {body}");
        let msgs: Vec<String> = serde_json::from_str(&body).unwrap();
        assert!(!msgs.is_empty());
    }
    // Garbage on the socket.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"\x16\x03\x01 not http\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"));
    let before = size(&serial);
    wait_until(
        "ticks after the bad requests",
        Duration::from_secs(20),
        || size(&serial) > before,
    );
    assert_eq!(info(&sock)["state"], "Running");
    vmm.shut_down();
}

#[test]
fn sigterm_shuts_an_api_vmm_down_cleanly() {
    let (vmm, sock, _serial) = boot_ticker("sigterm");
    // SAFETY: signalling the child this test spawned.
    unsafe { libc::kill(vmm.child.id() as i32, libc::SIGTERM) };
    let (code, err) = vmm.wait();
    assert_eq!(code, Some(0), "{err}");
    assert!(!sock.exists());
}

#[test]
fn a_live_socket_is_not_taken_over_and_cli_errors_are_clear() {
    let vmm = spawn_vmm("taken", &[]);
    let out = common::run(&["--api-socket", &format!("path={}", vmm.sock.display())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another process is serving"),
        "{}",
        stderr(&out)
    );
    assert_eq!(put(&vmm.sock, "vmm.shutdown"), 204);
    assert_eq!(vmm.wait().0, Some(0));
    let out = common::run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("--kernel PATH is required (or --restore from a snapshot, or --api-socket"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_vm_with_virtio_fs_talks_to_its_vhost_user_backend_and_is_not_snapshotted() {
    use devices::virtio::fs::fake::FakeBackend;
    let ticker = ticker("api-ticker-fs");
    let backend = FakeBackend::start("api-e2e", 2);
    let vmm = spawn_vmm("fs", &[]);
    let (sock, pid) = (vmm.sock.clone(), vmm.child.id());
    let serial = sock.with_file_name("serial");
    let plain = create_body(&ticker, 32, &serial);
    // Without shared memory the backend could not map the guest's: refused, naming the fix.
    let no_shared = plain.replacen(
        "\"iommu\"",
        &format!(
            "\"fs\":[{{\"tag\":\"share\",\"socket\":\"{}\"}}],\"iommu\"",
            backend.path.display()
        ),
        1,
    );
    let (code, body) = call(&sock, "PUT", "vm.create", Some(&no_shared));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("shared=on"), "{body}");
    let with_fs = no_shared
        .replacen(
            &format!("\"size\":{}", 32u64 << 20),
            &format!("\"size\":{},\"shared\":true", 32u64 << 20),
            1,
        )
        .replacen(
            "\"tag\":\"share\"",
            "\"tag\":\"share\",\"id\":\"share0\"",
            1,
        );
    let (code, body) = call(&sock, "PUT", "vm.create", Some(&with_fs));
    assert_eq!(code, 204, "{body}");
    assert_eq!(put(&sock, "vm.boot"), 204);
    wait_until("the guest's ticks", Duration::from_secs(10), || {
        size(&serial) > 0
    });
    // The device was set up with the backend at boot (the guest has no virtio-fs driver, so
    // the rings are never handed over), under the control thread's seccomp filter.
    assert_eq!(
        backend.log()[..3],
        ["SET_OWNER", "GET_FEATURES", "GET_PROTOCOL_FEATURES"]
    );
    // Guest RAM is the shared memory file the backend would be given.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.contains("memfd:vmm-guest-ram"), "{maps}");
    assert_eq!(info(&sock)["config"]["fs"][0]["id"], "share0");
    // A snapshot is refused, naming the device; the guest runs on.
    assert_eq!(put(&sock, "vm.pause"), 204);
    let dir = sock.with_file_name("snap");
    let (code, body) = call(
        &sock,
        "PUT",
        "vm.snapshot",
        Some(&format!(
            r#"{{"destination_url":"file://{}"}}"#,
            dir.display()
        )),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("share0") && body.contains("virtio-fs"),
        "{body}"
    );
    assert!(!dir.exists(), "nothing is written");
    assert_eq!(put(&sock, "vm.resume"), 204);
    let before = size(&serial);
    wait_until(
        "more ticks after the refusal",
        Duration::from_secs(10),
        || size(&serial) > before,
    );
    // A backend that is not there: the boot is refused with the socket named.
    assert_eq!(put(&sock, "vm.shutdown"), 204);
    assert_eq!(put(&sock, "vm.delete"), 204);
    let missing = with_fs.replacen(
        &backend.path.display().to_string(),
        "/nonexistent/virtiofsd.sock",
        1,
    );
    let (code, body) = call(&sock, "PUT", "vm.create", Some(&missing));
    assert_eq!(code, 204, "{body}");
    let (code, body) = call(&sock, "PUT", "vm.boot", None);
    assert!((400..500).contains(&code), "{code} {body}");
    assert!(body.contains("/nonexistent/virtiofsd.sock"), "{body}");
    let err = vmm.shut_down();
    assert!(!err.contains("seccomp"), "{err}");
}

/// A tap created here, as Kata's runtime creates one and hands its fd over (IFF_TAP, no
/// packet info, vnet headers); None without /dev/net/tun or the right to create taps.
fn make_tap(name: &str) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .ok()?;
    // SAFETY: a zeroed ifreq is valid; the name fits (checked by the callers' short names).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF on a /dev/net/tun fd with an ifreq we own.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
    (r == 0).then_some(f)
}

#[test]
fn devices_are_hot_added_and_a_guest_that_does_not_eject_keeps_its_device() {
    use std::os::fd::AsRawFd;
    let (vmm, sock, serial) = boot_ticker("hotplug");
    let disk = sock.with_file_name("hot.img");
    sparse_file(&disk, 4 << 20);
    // A disk, hot-added: on the bus (vm.info's device tree), its image locked by this VMM.
    let (code, body) = call(
        &sock,
        "PUT",
        "vm.add-disk",
        Some(&format!(r#"{{"path":"{}","id":"hot0"}}"#, disk.display())),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "hot0");
    let bdf = v["bdf"].as_str().unwrap().to_string();
    let tree = &info(&sock)["device_tree"];
    assert_eq!(tree["_virtio-pci-hot0"]["pci_bdf"], bdf);
    assert!(!can_lock(&disk), "the hot-added disk's image is locked");
    // A NIC on a tap whose fd is passed over the socket (Kata's way): its name is the tap's.
    match make_tap("vmmtest0") {
        Some(tap) => {
            let (code, body) = vmm_tests::http::call_with_fds(
                &sock,
                "PUT",
                "vm.add-net",
                Some(r#"{"mac":"52:54:00:12:34:99","num_queues":2,"queue_size":256,"id":"kata0","fds":[-1]}"#),
                &[tap.as_raw_fd()],
            )
            .unwrap();
            assert_eq!(code, 200, "{body}");
            assert_eq!(info(&sock)["config"]["net"][0]["id"], "kata0");
            // Two fds for one queue pair: refused, nothing added.
            let (code, body) = vmm_tests::http::call_with_fds(
                &sock,
                "PUT",
                "vm.add-net",
                Some(r#"{"num_queues":2}"#),
                &[tap.as_raw_fd(), tap.as_raw_fd()],
            )
            .unwrap();
            assert_eq!(code, 400, "{body}");
            assert!(body.contains("one per pair"), "{body}");
        }
        None => eprintln!("skipped: the tap part (cannot create a tap here)"),
    }
    // This guest has no ACPI: asked to eject, it never does. After the 10 s bound the device
    // is still there, and so is its lock; the VM runs on.
    let t = Instant::now();
    let (code, body) = call(&sock, "PUT", "vm.remove-device", Some(r#"{"id":"hot0"}"#));
    assert_eq!(code, 409, "{body}");
    assert!(t.elapsed() >= Duration::from_secs(9), "{:?}", t.elapsed());
    assert!(body.contains("left in place"), "{body}");
    assert_eq!(
        info(&sock)["device_tree"]["_virtio-pci-hot0"]["pci_bdf"],
        bdf
    );
    assert!(!can_lock(&disk));
    let before = size(&serial);
    wait_until("more ticks", Duration::from_secs(10), || {
        size(&serial) > before
    });
    let (code, _) = call(&sock, "PUT", "vm.remove-device", Some(r#"{"id":"nope"}"#));
    assert_eq!(code, 404);
    let err = vmm.shut_down();
    assert!(!err.contains("seccomp"), "{err}");
    // Gone with the VMM: the image is free again.
    assert!(can_lock(&disk));
}

/// A NUMA guest through the API, under the control loop's filter: two zones, one bound to the
/// host's node 0 (mbind on the control thread), two nodes; the guest runs (its ticker bytes
/// reach the serial file) and vm.info gives the zones and nodes back.
#[test]
fn a_numa_vm_with_a_zone_on_host_node_0_boots_through_the_api_under_seccomp() {
    // Every kernel with NUMA support has node 0 (the machines this runs on do).
    assert!(
        Path::new("/sys/devices/system/node/node0").exists(),
        "this host kernel has no NUMA support"
    );
    let ticker = ticker("api-numa-ticker");
    let vmm = spawn_vmm("numa", &[]);
    let sock = vmm.sock.clone();
    let serial = sock.with_file_name("serial");
    let body = format!(
        r#"{{"cpus":{{"boot_vcpus":2,"max_vcpus":2}},
            "memory":{{"size":0,"zones":[{{"id":"m0","size":{},"host_numa_node":0}},
                                        {{"id":"m1","size":{}}}]}},
            "numa":[{{"guest_numa_id":0,"cpus":[0],"distances":[{{"destination":1,"distance":21}}],
                      "memory_zones":["m0"]}},
                    {{"guest_numa_id":1,"cpus":[1],"memory_zones":["m1"]}}],
            "payload":{{"kernel":"{}","cmdline":"console=ttyS0"}},
            "serial":{{"mode":"File","file":"{}"}},"console":{{"mode":"Off"}}}}"#,
        32u64 << 20,
        32u64 << 20,
        ticker.display(),
        serial.display()
    );
    let (code, reply) = call(&sock, "PUT", "vm.create", Some(&body));
    assert_eq!(code, 204, "{reply}");
    assert_eq!(put(&sock, "vm.boot"), 204);
    wait_until("the guest's output", Duration::from_secs(20), || {
        std::fs::metadata(&serial)
            .map(|m| m.len() >= 3)
            .unwrap_or(false)
    });
    let i = info(&sock);
    assert_eq!(i["state"], "Running", "{i}");
    assert_eq!(
        i["config"]["memory"]["zones"][0]["host_numa_node"], 0,
        "{i}"
    );
    assert_eq!(i["config"]["numa"][1]["cpus"][0], 1, "{i}");
    let err = vmm.shut_down();
    assert!(!err.contains("seccomp violation"), "{err}");
}

#[test]
fn devices_on_further_pci_segments_boot_and_hot_plug_under_seccomp_and_vm_info_says_where() {
    let ticker = ticker("api-ticker-segments");
    let vmm = spawn_vmm("segments", &[]);
    let sock = vmm.sock.clone();
    let disk = sock.with_file_name("disk.img");
    sparse_file(&disk, 8 << 20);
    let serial = sock.with_file_name("serial");
    let body = create_body_with(
        &ticker,
        32,
        &serial,
        &format!(
            "\"platform\":{{\"num_pci_segments\":3}},\
             \"pci_segments\":[{{\"pci_segment\":2,\"mmio32_aperture_weight\":2}}],\
             \"disks\":[{{\"path\":\"{}\",\"pci_segment\":1}}],\
             \"rng\":{{\"src\":\"/dev/urandom\",\"pci_segment\":2}}",
            disk.display()
        ),
    );
    let (code, reply) = call(&sock, "PUT", "vm.create", Some(&body));
    assert_eq!(code, 204, "{reply}");
    assert_eq!(put(&sock, "vm.boot"), 204);
    wait_until("the guest's output", Duration::from_secs(20), || {
        std::fs::metadata(&serial)
            .map(|m| m.len() >= 3)
            .unwrap_or(false)
    });
    let i = info(&sock);
    assert_eq!(i["state"], "Running", "{i}");
    let tree = &i["device_tree"];
    assert_eq!(tree["_virtio-pci-_disk0"]["pci_bdf"], "0001:00:01.0", "{i}");
    assert_eq!(tree["_virtio-pci-__rng"]["pci_bdf"], "0002:00:01.0", "{i}");
    assert_eq!(i["config"]["disks"][0]["pci_segment"], 1, "{i}");
    assert_eq!(
        i["config"]["pci_segments"][0]["mmio32_aperture_weight"], 2,
        "{i}"
    );
    // A disk hot-added to the running VM on segment 1, in the slot it asks for; a second one
    // asking for that slot is refused and nothing changes.
    let other = sock.with_file_name("other.img");
    sparse_file(&other, 1 << 20);
    let add = format!(
        r#"{{"path":"{}","id":"hot","pci_segment":1,"pci_device_id":3}}"#,
        other.display()
    );
    let (code, reply) = call(&sock, "PUT", "vm.add-disk", Some(&add));
    assert_eq!(code, 200, "{reply}");
    assert!(reply.contains("0001:00:03.0"), "{reply}");
    let i = info(&sock);
    assert_eq!(
        i["device_tree"]["_virtio-pci-hot"]["pci_bdf"], "0001:00:03.0",
        "{i}"
    );
    assert_eq!(i["config"]["disks"][1]["pci_device_id"], 3, "{i}");
    let again = add
        .replace("\"hot\"", "\"hot2\"")
        .replace("other.img", "other2.img");
    let (code, reply) = call(&sock, "PUT", "vm.add-disk", Some(&again));
    assert_eq!(code, 400, "{reply}");
    assert!(reply.contains("slot 3 of segment 1"), "{reply}");
    assert_eq!(
        info(&sock)["config"]["disks"].as_array().map(Vec::len),
        Some(2)
    );
    let err = vmm.shut_down();
    assert!(!err.contains("seccomp violation"), "{err}");
}
