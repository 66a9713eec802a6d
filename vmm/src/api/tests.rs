//! The API over its real socket and thread, with the control loop driving fake machines:
//! every endpoint, and every kind of bad request, answered with the right status and a JSON
//! body while the VM keeps running.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use vmm_sys_util::eventfd::EventFd;

use super::server::{ApiSocket, ApiSocketSpec, ApiThread};
use crate::control::events::EventMonitor;
use crate::control::fake::{FakeLauncher, Log};
use crate::control::{state::VmState, Controller};
use crate::seccomp::{Confinement, SeccompMode, ThreadKind};

struct Api {
    path: PathBuf,
    log: Arc<Log>,
    control: Option<std::thread::JoinHandle<Option<VmState>>>,
    api: Option<std::thread::JoinHandle<()>>,
    kill: EventFd,
}

fn start(name: &str) -> Api {
    let dir = std::env::temp_dir().join(format!("vmm-apitest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("api.sock");
    let socket = ApiSocket::open(&ApiSocketSpec::Path(path.clone())).unwrap();
    let log = Arc::new(Log::default());
    let (tx, rx) = mpsc::channel();
    let kill = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let api = ApiThread {
        socket,
        control: tx.clone(),
        kill: kill.try_clone().unwrap(),
        filter: Confinement::new(SeccompMode::Off)
            .compile(ThreadKind::Api)
            .unwrap(),
        seccomp: SeccompMode::Off,
    }
    .spawn()
    .unwrap();
    let l = log.clone();
    let control = std::thread::spawn(move || {
        let mut c = Controller::new(FakeLauncher(l), tx, EventMonitor::none());
        c.run(&rx);
        c.state()
    });
    Api {
        path,
        log,
        control: Some(control),
        api: Some(api),
        kill,
    }
}

impl Api {
    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Send raw bytes on a new connection; (status, body) of the response.
    fn raw(&self, bytes: &[u8]) -> (u16, String) {
        let mut s = self.connect();
        s.write_all(bytes).unwrap();
        read_response(&mut s)
    }

    fn call(&self, method: &str, endpoint: &str, body: Option<&str>) -> (u16, String) {
        self.raw(&vmm_tests::http::request_bytes(method, endpoint, body))
    }

    fn put(&self, endpoint: &str) -> u16 {
        self.call("PUT", endpoint, None).0
    }

    fn finish(mut self) -> Option<VmState> {
        let state = self.control.take().unwrap().join().unwrap();
        self.api.take().unwrap().join().unwrap();
        state
    }
}

/// One HTTP response: the status and the body.
fn read_response(s: &mut UnixStream) -> (u16, String) {
    vmm_tests::http::read_response(s).expect("a response in time")
}

/// An error body: a JSON list of messages; returns them joined.
fn messages(body: &str) -> String {
    let v: Vec<String> = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(!v.is_empty());
    v.join(" | ")
}

fn put_with(endpoint: &str, body: &str) -> Vec<u8> {
    format!(
        "PUT /api/v1/{endpoint} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const CREATE: &str = r#"{"payload":{"kernel":"/k"},"memory":{"size":67108864}}"#;

#[test]
fn every_endpoint_answers_as_cloud_hypervisors_spec_says() {
    let api = start("endpoints");
    let (code, body) = api.call("GET", "vmm.ping", None);
    assert_eq!(code, 200, "{body}");
    let ping: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ping["pid"], std::process::id());
    assert_eq!(api.call("GET", "vm.info", None).0, 404);
    assert_eq!(api.call("GET", "vm.counters", None).0, 404);
    assert_eq!(api.put("vm.boot"), 404);
    assert_eq!(api.call("PUT", "vm.create", Some(CREATE)).0, 204);
    assert_eq!(api.call("PUT", "vm.create", Some(CREATE)).0, 409);
    let (code, body) = api.call("GET", "vm.info", None);
    assert_eq!(code, 200);
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["state"], "Created");
    assert_eq!(info["config"]["payload"]["kernel"], "/k");
    assert_eq!(api.put("vm.pause"), 405);
    assert_eq!(api.put("vm.boot"), 204);
    assert_eq!(api.put("vm.boot"), 405);
    assert_eq!(api.put("vm.pause"), 204);
    assert_eq!(api.put("vm.pause"), 405);
    assert_eq!(api.put("vm.power-button"), 405);
    assert_eq!(api.put("vm.resume"), 204);
    assert_eq!(api.put("vm.resume"), 405);
    assert_eq!(api.put("vm.power-button"), 204);
    assert_eq!(api.put("vm.reboot"), 204);
    let (code, body) = api.call("GET", "vm.info", None);
    assert_eq!(code, 200);
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["state"], "Running");
    assert_eq!(info["memory_actual_size"], 64u64 << 20);
    assert_eq!(api.call("GET", "vm.counters", None), (200, "{}".into()));
    assert_eq!(api.put("vm.shutdown"), 204);
    assert_eq!(api.put("vm.shutdown"), 405);
    assert_eq!(api.put("vm.boot"), 204);
    assert_eq!(api.put("vm.delete"), 204);
    assert_eq!(api.call("GET", "vm.info", None).0, 404);
    let (code, body) = api.call("PUT", "vm.resize", Some(r#"{"desired_vcpus":2}"#));
    assert_eq!(code, 501);
    assert!(messages(&body).contains("not supported yet"), "{body}");
    for e in ["vm.resize", "vm.coredump"] {
        assert_eq!(api.call("PUT", e, Some("{}")).0, 501, "{e}");
    }
    // Hotplug: a body as Cloud Hypervisor's (else 400 naming what is wrong); no VM: 404.
    for (e, body) in [
        ("vm.add-disk", "{}"),
        ("vm.add-disk", r#"{"path":"/x","vhost_user":true}"#),
        ("vm.add-net", r#"{"mac":"zz"}"#),
        ("vm.remove-device", "{}"),
        ("vm.remove-device", r#"{"id":""}"#),
        ("vm.add-device", r#"{"path":""}"#),
        ("vm.add-fs", r#"{"tag":"","socket":"/s"}"#),
        ("vm.add-vsock", r#"{"cid":2,"socket":"/v"}"#),
    ] {
        let (code, b) = api.call("PUT", e, Some(body));
        assert_eq!(code, 400, "{e} {body}: {b}");
    }
    assert_eq!(
        api.call("PUT", "vm.add-disk", Some(r#"{"path":"/x.img"}"#))
            .0,
        404
    );
    assert_eq!(
        api.call("PUT", "vm.remove-device", Some(r#"{"id":"x"}"#)).0,
        404
    );
    for (e, body) in [
        (
            "vm.add-device",
            r#"{"path":"/sys/bus/pci/devices/0000:00:04.0"}"#,
        ),
        ("vm.add-fs", r#"{"tag":"t","socket":"/s"}"#),
        ("vm.add-vsock", r#"{"cid":3,"socket":"/v"}"#),
    ] {
        assert_eq!(api.call("PUT", e, Some(body)).0, 404, "{e}: no VM");
    }
    assert_eq!(api.call("GET", "vm.add-disk", None).0, 405);
    // Snapshots: a body is required; restore needs no VM; snapshot a paused one.
    assert_eq!(api.call("PUT", "vm.snapshot", Some("{}")).0, 400);
    let (code, body) = api.call(
        "PUT",
        "vm.snapshot",
        Some(r#"{"destination_url":"file:///tmp/x"}"#),
    );
    assert_eq!(code, 404, "{body}");
    assert_eq!(api.call("PUT", "vm.restore", Some("{}")).0, 400);
    let (code, body) = api.call(
        "PUT",
        "vm.restore",
        Some(r#"{"source_url":"file:///nonexistent-snapshot"}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(messages(&body).contains("cannot restore"), "{body}");
    let (code, body) = api.call(
        "PUT",
        "vm.restore",
        Some(r#"{"source_url":"file:///x","net_fds":[{"id":"n","fds":[3]}]}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(messages(&body).contains("net_fds"), "{body}");
    // The body `ch-remote restore` (v54.0.0) sends, captured byte for byte: it gets as far as
    // the snapshot (which does not exist); fds for passed-through devices are refused.
    let (code, body) = api.call(
        "PUT",
        "vm.restore",
        Some(
            r#"{"source_url":"file:///nonexistent-snapshot","prefault":false,"memory_restore_mode":"Copy","net_fds":null,"vfio_fds":null,"iommufd_fd":null,"resume":false,"zone_updates":[]}"#,
        ),
    );
    assert_eq!(code, 400, "{body}");
    assert!(messages(&body).contains("cannot restore"), "{body}");
    let (code, body) = api.call(
        "PUT",
        "vm.restore",
        Some(r#"{"source_url":"file:///x","vfio_fds":[{"id":"gpu0","fds":[3]}]}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(messages(&body).contains("vfio_fds"), "{body}");
    let log = api.log.clone();
    assert_eq!(
        (
            log.boots.load(Ordering::SeqCst),
            log.pauses.load(Ordering::SeqCst),
            log.resumes.load(Ordering::SeqCst),
            log.buttons.load(Ordering::SeqCst),
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(api.put("vmm.shutdown"), 204);
    assert_eq!(api.finish(), None);
}

#[test]
fn bad_requests_get_a_4xx_with_a_reason_and_the_vm_keeps_running() {
    let api = start("bad");
    assert_eq!(api.call("PUT", "vm.create", Some(CREATE)).0, 204);
    assert_eq!(api.put("vm.boot"), 204);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed HTTP",
            b"NONSENSE\r\n\r\n".to_vec(),
            400,
            "Bad Request",
        ),
        (
            "not HTTP at all",
            b"\x00\x01\x02 hello\r\n\r\n".to_vec(),
            400,
            "Bad Request",
        ),
        (
            "unknown endpoint",
            b"GET /api/v1/vm.bogus HTTP/1.1\r\n\r\n".to_vec(),
            404,
            "unknown endpoint",
        ),
        (
            "outside the API",
            b"GET /index.html HTTP/1.1\r\n\r\n".to_vec(),
            404,
            "/api/v1/",
        ),
        (
            "wrong method",
            b"GET /api/v1/vm.pause HTTP/1.1\r\n\r\n".to_vec(),
            405,
            "takes PUT",
        ),
        (
            "wrong method on a read",
            b"PUT /api/v1/vm.info HTTP/1.1\r\n\r\n".to_vec(),
            405,
            "takes GET",
        ),
        (
            "invalid JSON",
            put_with("vm.create", r#"{"payload"#),
            400,
            "invalid VmConfig",
        ),
        (
            "unknown field",
            put_with("vm.create", r#"{"payload":{"kernel":"/k"},"gpus":8}"#),
            400,
            "unknown field `gpus`",
        ),
        (
            "wrong type",
            put_with(
                "vm.create",
                r#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":"many","max_vcpus":1}}"#,
            ),
            400,
            "invalid type",
        ),
        (
            "no body",
            b"PUT /api/v1/vm.create HTTP/1.1\r\n\r\n".to_vec(),
            400,
            "must be a VmConfig",
        ),
        (
            "action in the wrong state",
            b"PUT /api/v1/vm.resume HTTP/1.1\r\n\r\n".to_vec(),
            405,
            "not paused",
        ),
        (
            "create over an existing VM",
            put_with("vm.create", CREATE),
            409,
            "already created",
        ),
    ];
    for (what, bytes, code, needle) in cases {
        eprintln!("case: {what}");
        let (got, body) = api.raw(&bytes);
        assert_eq!(got, code, "{what}: {body}");
        let m = messages(&body);
        assert!(m.contains(needle), "{what}: {m}");
    }
    // A body over the limit is refused before it is read into a request.
    let big = format!(
        "PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        super::http::MAX_BODY + 1
    );
    let (code, body) = api.raw(big.as_bytes());
    assert!((400..500).contains(&code), "{code} {body}");
    messages(&body);
    // Through all of it the VM ran on.
    let (code, body) = api.call("GET", "vm.info", None);
    assert_eq!(code, 200);
    assert!(body.contains("\"state\":\"Running\""), "{body}");
    assert_eq!(api.log.stops.load(Ordering::SeqCst), 0);
    assert_eq!(api.put("vmm.shutdown"), 204);
    api.finish();
}

#[test]
fn stalled_clients_cannot_lock_the_api_out_and_many_clients_are_served_at_once() {
    let api = start("stall");
    // More clients that connect and say nothing (or half a request) than the server has
    // connections (those over the limit are told so with a 503 and closed).
    let mut stalled: Vec<UnixStream> = (0..40).map(|_| api.connect()).collect();
    for s in stalled.iter_mut().step_by(2) {
        let _ = s.write_all(b"GET /api/v1/vmm.pi");
    }
    std::thread::sleep(Duration::from_millis(700));
    // A real client is still served (an idle connection is evicted for it).
    assert_eq!(api.call("GET", "vmm.ping", None).0, 200);
    drop(stalled);
    // Many clients at once, each answered.
    let path = api.path.clone();
    let clients: Vec<_> = (0..24)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&path).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.write_all(b"GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n")
                    .unwrap();
                read_response(&mut s).0
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    // Keep-alive: several requests on one connection.
    let mut s = api.connect();
    for _ in 0..3 {
        s.write_all(b"GET /api/v1/vmm.ping HTTP/1.1\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut s).0, 200);
    }
    assert_eq!(api.put("vmm.shutdown"), 204);
    api.finish();
}

#[test]
fn a_shutdown_signal_ends_the_vmm_like_vmm_shutdown() {
    let api = start("signal");
    assert_eq!(api.call("PUT", "vm.create", Some(CREATE)).0, 204);
    assert_eq!(api.put("vm.boot"), 204);
    api.kill.write(1).unwrap();
    let log = api.log.clone();
    assert_eq!(api.finish(), None, "the VM is gone");
    assert_eq!(log.stops.load(Ordering::SeqCst), 1, "stopped, not leaked");
}
