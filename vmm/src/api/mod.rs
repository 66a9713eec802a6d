//! The REST API: Cloud Hypervisor's endpoints, bodies and status codes (its OpenAPI spec,
//! `vmm/src/api/openapi/cloud-hypervisor.yaml` there), HTTP/1.1 on a unix socket.
//!
//! - `server.rs`: the socket (`--api-socket path=…|fd=N`) and the API thread, which parses
//!   HTTP (micro_http) and hands each request to the control loop;
//! - `http.rs`: endpoint routing, request bodies and responses;
//! - `vm_config.rs`: `vm.create`'s VmConfig;
//! - the control loop that acts on requests is crate::control.

pub mod http;
pub mod server;
pub mod vm_config;

#[cfg(test)]
mod tests;

use crate::config::VmConfig;

/// A request the control loop acts on.
#[derive(Debug)]
pub enum Request {
    Ping,
    VmmShutdown,
    Create(Box<(vm_config::ApiVmConfig, VmConfig)>),
    Boot,
    Pause,
    Resume,
    Shutdown,
    Reboot,
    PowerButton,
    /// `vm.nmi`: an NMI to every vCPU.
    Nmi,
    Delete,
    Info,
    Counters,
    /// `vm.snapshot`: write the paused VM to this `file:///dir` URL.
    Snapshot {
        destination_url: String,
    },
    /// `vm.restore`.
    Restore(RestoreRequest),
    /// `vm.add-disk`, `vm.add-net`: the device as the API gave it and as the VMM builds it.
    AddDevice(Box<AddDevice>),
    /// `vm.remove-device {"id"}`.
    RemoveDevice(String),
    /// `vm.resize-disk`: grow the disk with this id to `desired_size` bytes.
    ResizeDisk {
        id: String,
        desired_size: u64,
    },
}

/// A device to add (Cloud Hypervisor's DiskConfig or NetConfig body).
#[derive(Clone, Debug)]
pub enum AddDevice {
    Disk(vm_config::ApiDisk, devices::virtio::DiskConfig),
    Net(vm_config::ApiNet, devices::virtio::NetConfig),
    /// `vm.add-device`: a host PCI device passed through with VFIO.
    Vfio(vm_config::ApiDevice, crate::config::DeviceConfig),
    /// `vm.add-fs`: virtio-fs served by a vhost-user backend.
    Fs(vm_config::ApiFs, devices::virtio::FsConfig),
    /// `vm.add-vsock`.
    Vsock(vm_config::ApiVsock, devices::virtio::VsockConfig),
}

impl AddDevice {
    /// Where the device asks to go: its PCI segment and the slot it asked for, if any
    /// (`pci_device_id`).
    pub fn pci_place(&self) -> (u16, Option<u8>) {
        match self {
            AddDevice::Disk(_, c) => (c.pci_segment, c.pci_device_id),
            AddDevice::Net(_, c) => (c.pci_segment, c.pci_device_id),
            AddDevice::Vfio(_, c) => (c.pci_segment, c.pci_device_id),
            AddDevice::Fs(_, c) => (c.pci_segment, c.pci_device_id),
            AddDevice::Vsock(_, c) => (c.pci_segment, c.pci_device_id),
        }
    }
}

/// `vm.restore`'s body (Cloud Hypervisor's RestoreConfig), and the VMM's seccomp mode for the
/// VM it builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreRequest {
    pub source_url: String,
    pub prefault: bool,
    /// Run the VM at once instead of leaving it paused.
    pub resume: bool,
    pub seccomp: crate::config::SeccompMode,
    /// What the VM has instead of the snapshot's: COM1's output (`--restore … --serial …`),
    /// disk images and taps by device id.
    pub overrides: crate::config::restore::Overrides,
}

/// A successful answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// 204.
    Empty,
    /// 200 with a JSON body.
    Json(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    InternalServerError,
    NotImplemented,
}

/// A failed request: the status, and what was wrong, outermost first. The body is a JSON list
/// of those messages, the shape of Cloud Hypervisor's error bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: Status,
    pub messages: Vec<String>,
}

impl ApiError {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        ApiError {
            status,
            messages: vec![message.into()],
        }
    }

    /// The same error, said of `what` first (the outermost message).
    pub fn context(mut self, what: &str) -> Self {
        self.messages.insert(0, what.to_string());
        self
    }

    pub fn body(&self) -> String {
        serde_json::to_string(&self.messages).unwrap_or_else(|_| "[]".into())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.status, self.messages.join(": "))
    }
}
