//! Endpoints: which path takes which method and body, and how answers become responses.

use micro_http::{Body, MediaType, Method, Request as HttpRequest, Response, StatusCode, Version};

use super::{vm_config, ApiError, Reply, Request, Status};
use crate::seccomp::SeccompMode;

/// Every endpoint lives under this prefix.
pub const API_ROOT: &str = "/api/v1/";

/// The largest request body accepted (a VmConfig with many devices is a few KiB).
pub const MAX_BODY: usize = 64 << 10;

/// Endpoints of Cloud Hypervisor's API that are routed but not supported yet (more device
/// kinds, CPU and memory resizing, core dumps, migration): they answer 501 with the reason.
const NOT_YET: &[(&str, &str)] = &[
    ("vm.add-pmem", "virtio-pmem"),
    ("vm.add-vdpa", "vDPA"),
    ("vm.add-user-device", "vfio-user"),
    ("vm.add-generic-vhost-user", "vhost-user"),
    ("vm.resize", "CPU and memory hotplug"),
    ("vm.resize-zone", "resizing memory zones"),
    ("vm.coredump", "guest core dumps"),
    ("vm.send-migration", "live migration"),
    ("vm.receive-migration", "live migration"),
];

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

/// Turn an HTTP request into a control request, or say why not.
pub fn route(req: &HttpRequest, seccomp: SeccompMode) -> Result<Request, ApiError> {
    route_with_files(req, Vec::new(), seccomp)
}

/// As [`route`], with the files the client passed along (SCM_RIGHTS): only `vm.add-net` takes
/// any (its taps, one per queue pair, as Cloud Hypervisor's `NetConfig.fds`); another request
/// that carries some is refused.
pub fn route_with_files(
    req: &HttpRequest,
    files: Vec<std::fs::File>,
    seccomp: SeccompMode,
) -> Result<Request, ApiError> {
    let path = req.uri().get_abs_path();
    let Some(endpoint) = path.strip_prefix(API_ROOT) else {
        return Err(ApiError::new(
            Status::NotFound,
            format!("unknown endpoint '{path}': endpoints are under {API_ROOT}"),
        ));
    };
    let (method, request) = match endpoint {
        "vmm.ping" => (Method::Get, Some(Request::Ping)),
        "vmm.shutdown" => (Method::Put, Some(Request::VmmShutdown)),
        "vm.info" => (Method::Get, Some(Request::Info)),
        "vm.counters" => (Method::Get, Some(Request::Counters)),
        "vm.create" => (Method::Put, None),
        "vm.boot" => (Method::Put, Some(Request::Boot)),
        "vm.pause" => (Method::Put, Some(Request::Pause)),
        "vm.resume" => (Method::Put, Some(Request::Resume)),
        "vm.shutdown" => (Method::Put, Some(Request::Shutdown)),
        "vm.reboot" => (Method::Put, Some(Request::Reboot)),
        "vm.power-button" => (Method::Put, Some(Request::PowerButton)),
        "vm.nmi" => (Method::Put, Some(Request::Nmi)),
        "vm.delete" => (Method::Put, Some(Request::Delete)),
        "vm.add-disk" | "vm.add-net" | "vm.add-device" | "vm.add-fs" | "vm.add-vsock"
        | "vm.remove-device" | "vm.resize-disk" => {
            if req.method() != Method::Put {
                return Err(wrong_method(endpoint, Method::Put, req.method()));
            }
            let body = req.body.as_ref().map(|b| b.raw()).unwrap_or_default();
            return hotplug_request(endpoint, body, files);
        }
        _ if !files.is_empty() => {
            return Err(ApiError::new(
                Status::BadRequest,
                format!("{endpoint}: takes no file descriptors (only vm.add-net does, its taps)"),
            ));
        }
        "vm.snapshot" | "vm.restore" => {
            if req.method() != Method::Put {
                return Err(wrong_method(endpoint, Method::Put, req.method()));
            }
            let body = req.body.as_ref().map(|b| b.raw()).unwrap_or_default();
            return snapshot_request(endpoint, body, seccomp);
        }
        other => {
            if let Some((_, what)) = NOT_YET.iter().find(|(e, _)| *e == other) {
                if req.method() != Method::Put {
                    return Err(wrong_method(other, Method::Put, req.method()));
                }
                return Err(ApiError::new(
                    Status::NotImplemented,
                    format!("{other}: not supported yet (this VMM does not implement {what} yet)"),
                ));
            }
            return Err(ApiError::new(
                Status::NotFound,
                format!("unknown endpoint '{other}'"),
            ));
        }
    };
    if req.method() != method {
        return Err(wrong_method(endpoint, method, req.method()));
    }
    match request {
        Some(r) => Ok(r),
        None => {
            let body = req.body.as_ref().map(|b| b.raw()).unwrap_or_default();
            if body.is_empty() {
                return Err(ApiError::new(
                    Status::BadRequest,
                    "vm.create: the body must be a VmConfig (JSON)",
                ));
            }
            let (api, cfg) = vm_config::parse(body, seccomp)
                .map_err(|e| ApiError::new(Status::BadRequest, format!("vm.create: {e}")))?;
            Ok(Request::Create(Box::new((api, cfg))))
        }
    }
}

/// `vm.add-disk` (a DiskConfig), `vm.add-net` (a NetConfig, its tap by name), `vm.add-device`
/// (a DeviceConfig: a host PCI device's sysfs path), and
/// `vm.remove-device {"id"}`, as Cloud Hypervisor takes them.
fn hotplug_request(
    endpoint: &str,
    body: &[u8],
    files: Vec<std::fs::File>,
) -> Result<Request, ApiError> {
    let bad = |m: String| ApiError::new(Status::BadRequest, format!("{endpoint}: {m}"));
    if body.is_empty() {
        return Err(bad("a JSON body is required".into()));
    }
    if !files.is_empty() && endpoint != "vm.add-net" {
        return Err(bad(
            "takes no file descriptors (only vm.add-net does, its taps)".into(),
        ));
    }
    match endpoint {
        "vm.resize-disk" => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Resize {
                id: String,
                desired_size: u64,
            }
            let r: Resize = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            if r.id.is_empty() {
                return Err(bad("id: empty".into()));
            }
            Ok(Request::ResizeDisk {
                id: r.id,
                desired_size: r.desired_size,
            })
        }
        "vm.remove-device" => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Remove {
                id: String,
            }
            let r: Remove = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            if r.id.is_empty() {
                return Err(bad("id: empty".into()));
            }
            Ok(Request::RemoveDevice(r.id))
        }
        "vm.add-fs" => {
            let f: vm_config::ApiFs =
                serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            let cfg = vm_config::fs_config("fs", &f).map_err(bad)?;
            Ok(Request::AddDevice(Box::new(super::AddDevice::Fs(f, cfg))))
        }
        "vm.add-vsock" => {
            let v: vm_config::ApiVsock =
                serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            let cfg = vm_config::vsock_config(&v).map_err(bad)?;
            Ok(Request::AddDevice(Box::new(super::AddDevice::Vsock(
                v, cfg,
            ))))
        }
        "vm.add-device" => {
            let d: vm_config::ApiDevice =
                serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            let cfg = vm_config::device_config("device", &d).map_err(bad)?;
            Ok(Request::AddDevice(Box::new(super::AddDevice::Vfio(d, cfg))))
        }
        "vm.add-disk" => {
            let d: vm_config::ApiDisk =
                serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            let cfg = vm_config::disk_config("disk", &d).map_err(bad)?;
            Ok(Request::AddDevice(Box::new(super::AddDevice::Disk(d, cfg))))
        }
        _ => {
            let mut n: vm_config::ApiNet =
                serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
            // The fds ride beside the body; its own `fds` (Cloud Hypervisor's placeholder
            // numbers) say nothing more.
            n.fds = None;
            let mut cfg = vm_config::net_config("net", &n).map_err(bad)?;
            if !files.is_empty() {
                let pairs = usize::from(cfg.num_queues / 2);
                if files.len() != pairs {
                    return Err(bad(format!(
                        "{} tap fds passed for {} queue pairs (num_queues {}): one per pair",
                        files.len(),
                        pairs,
                        cfg.num_queues
                    )));
                }
                let fds = files.into_iter().map(std::os::fd::OwnedFd::from).collect();
                cfg.tap_fds = devices::virtio::net::TapFds(Some(std::sync::Arc::new(fds)));
            }
            Ok(Request::AddDevice(Box::new(super::AddDevice::Net(n, cfg))))
        }
    }
}

/// `vm.snapshot {"destination_url"}` and `vm.restore {"source_url", "prefault", "resume"}`
/// (Cloud Hypervisor's VmSnapshotConfig and RestoreConfig), the restore with this VMM's
/// `"disks": [{"id", "path"}]` and `"net": [{"id", "tap"}]` for clones. Fields this VMM cannot
/// honour (restoring with new tap fds, memory zone updates) are refused by name.
fn snapshot_request(
    endpoint: &str,
    body: &[u8],
    seccomp: SeccompMode,
) -> Result<Request, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Snapshot {
        destination_url: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Restore {
        source_url: String,
        #[serde(default)]
        prefault: bool,
        #[serde(default)]
        resume: bool,
        #[serde(default)]
        memory_restore_mode: Option<String>,
        #[serde(default)]
        net_fds: Option<serde_json::Value>,
        #[serde(default)]
        zone_updates: Option<serde_json::Value>,
        /// Cloud Hypervisor's fds for passed-through devices (`ch-remote restore` sends them,
        /// null): a snapshot here holds no passed-through device.
        #[serde(default)]
        vfio_fds: Option<serde_json::Value>,
        #[serde(default)]
        iommufd_fd: Option<serde_json::Value>,
        /// This VMM's: disk images (by disk id) the restored VM opens instead.
        #[serde(default)]
        disks: Vec<DiskOverride>,
        /// This VMM's: taps (by net id) the restored VM opens instead.
        #[serde(default)]
        net: Vec<NetOverride>,
        /// This VMM's: the vsock's guest CID and socket instead (a clone's own).
        #[serde(default)]
        vsock: Option<VsockOverride>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct VsockOverride {
        cid: u64,
        socket: std::path::PathBuf,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct DiskOverride {
        id: String,
        path: std::path::PathBuf,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NetOverride {
        id: String,
        tap: String,
    }
    let bad = |m: String| ApiError::new(Status::BadRequest, format!("{endpoint}: {m}"));
    if body.is_empty() {
        return Err(bad("the body must be JSON".into()));
    }
    if endpoint == "vm.snapshot" {
        let s: Snapshot = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
        return Ok(Request::Snapshot {
            destination_url: s.destination_url,
        });
    }
    let r: Restore = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let unset = |v: &Option<serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if !unset(&r.net_fds) {
        return Err(bad(
            "net_fds: not supported (a restored VM opens its taps by name)".into(),
        ));
    }
    if !unset(&r.vfio_fds) || !unset(&r.iommufd_fd) {
        return Err(bad(
            "vfio_fds, iommufd_fd: not supported (a snapshot holds no passed-through device)"
                .into(),
        ));
    }
    if !unset(&r.zone_updates) {
        return Err(bad(
            "zone_updates: not supported (this VMM has no memory zones)".into(),
        ));
    }
    if let Some(m) = r.memory_restore_mode.as_deref() {
        // Memory is always mapped from the snapshot's file on demand (copy-on-write):
        // Cloud Hypervisor's "OnDemand"; "Copy" is accepted as its default spelling.
        if m != "Copy" && m != "OnDemand" {
            return Err(bad(format!(
                "memory_restore_mode: '{m}' is not Copy or OnDemand"
            )));
        }
    }
    Ok(Request::Restore(crate::api::RestoreRequest {
        source_url: r.source_url,
        prefault: r.prefault,
        resume: r.resume,
        seccomp,
        overrides: crate::config::restore::Overrides {
            serial: None,
            disks: r.disks.into_iter().map(|d| (d.id, d.path)).collect(),
            nets: r.net.into_iter().map(|n| (n.id, n.tap)).collect(),
            vsock: r.vsock.map(|v| (v.cid, v.socket)),
        },
    }))
}

fn wrong_method(endpoint: &str, want: Method, got: Method) -> ApiError {
    ApiError::new(
        Status::MethodNotAllowed,
        format!(
            "{endpoint} takes {}, not {}",
            method_name(want),
            method_name(got)
        ),
    )
}

fn status_code(s: Status) -> StatusCode {
    match s {
        Status::BadRequest => StatusCode::BadRequest,
        Status::NotFound => StatusCode::NotFound,
        Status::MethodNotAllowed => StatusCode::MethodNotAllowed,
        Status::Conflict => StatusCode::Conflict,
        Status::PayloadTooLarge => StatusCode::PayloadTooLarge,
        Status::InternalServerError => StatusCode::InternalServerError,
        Status::NotImplemented => StatusCode::NotImplemented,
    }
}

/// The HTTP response for an answer.
pub fn respond(answer: Result<Reply, ApiError>) -> Response {
    let (status, body) = match answer {
        Ok(Reply::Empty) => (StatusCode::NoContent, None),
        Ok(Reply::Json(j)) => (StatusCode::OK, Some(j)),
        Err(e) => {
            log::info!("API error: {e}");
            (status_code(e.status), Some(e.body()))
        }
    };
    let mut r = Response::new(Version::Http11, status);
    r.set_server("vmm");
    if let Some(b) = body {
        r.set_content_type(MediaType::ApplicationJson);
        r.set_body(Body::new(b));
    }
    r
}
