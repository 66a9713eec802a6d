//! The control loop of a VMM driven through its API: it owns the VM (at most one, as in
//! Cloud Hypervisor), sequences every transition in one place ([`state::transition`] says
//! what is allowed, [`Controller::handle`] does it) and reports each to the event monitor.
//!
//! It runs on the process's main thread. Requests arrive from the API thread over a channel,
//! each with a channel for its answer; the VM's end (guest reset, poweroff, failure) arrives
//! on the same channel from the VM's event thread, tagged with the boot it belongs to, so an
//! end caused by the control loop itself (a shutdown) is not mistaken for the guest's.
//!
//! Under the API, a guest reset reboots the VM and a guest poweroff leaves it Shutdown with
//! the VMM still serving (Cloud Hypervisor's behaviour); `vm.boot` starts it again.

pub mod events;
pub mod serve;
pub mod state;

use std::sync::mpsc;

use serde::Serialize;

use crate::api::vm_config::ApiVmConfig;
use crate::api::{ApiError, Reply, Request, Status};
use crate::config::VmConfig;
use crate::vcpu::VmExitReason;
use events::EventMonitor;
use state::{transition, Action, Refusal, VmState};

/// What the control loop receives.
pub enum ControlMsg {
    /// A request from the API thread, with where to send the answer.
    Api(Request, mpsc::Sender<Result<Reply, ApiError>>),
    /// The VM of boot `generation` ended by itself (or its event loop failed).
    VmEnded {
        generation: u64,
        result: Result<VmExitReason, String>,
    },
}

/// A booted VM, as the control loop drives it.
pub trait Machine: Send {
    /// Stop every vCPU outside the guest; returns once they are.
    fn pause(&self) -> Result<(), String>;
    fn resume(&self);
    /// Press the guest's ACPI power button.
    fn power_button(&self) -> Result<(), String>;
    /// A non-maskable interrupt to every vCPU (Cloud Hypervisor's `vm.nmi`).
    fn nmi(&self) -> Result<(), String>;
    /// Grow the `position`-th virtio device (a disk) to `bytes`; the guest is told.
    fn resize_disk(&mut self, position: usize, bytes: u64) -> Result<(), String>;
    /// Guest RAM in bytes.
    fn memory_size(&self) -> u64;
    /// The PCI address ("0000:00:01.0") of each virtio device (in `DeviceIds::virtio` order)
    /// and then of each passed-through device.
    fn pci_addresses(&self) -> Vec<String>;
    /// Each device's I/O counters by device id (`vm.counters`).
    fn counters(&self) -> Counters;
    /// Hot-add `device` as the `position`-th device in `DeviceIds::virtio` order, with `id`;
    /// its PCI address ("0000:00:05.0").
    fn hot_add(
        &mut self,
        position: usize,
        id: &str,
        device: &crate::api::AddDevice,
    ) -> Result<String, ApiError>;
    /// Ask the guest to release the `position`-th device and take it away; `Ok(false)` when
    /// the guest did not release it in time (it stays).
    fn hot_remove(&mut self, position: usize, id: &str) -> Result<bool, ApiError>;
    /// Whether devices were added or removed since boot.
    fn hotplugged(&self) -> bool;
    /// Write the (paused) VM to the snapshot directory `dir`; `config` is its configuration
    /// as `vm.info` shows it.
    fn snapshot(&self, dir: &std::path::Path, config: serde_json::Value) -> Result<(), ApiError>;
    /// Stop the VM and free everything it holds.
    fn stop(self: Box<Self>);
}

/// `vm.counters`: device id → counter name → value.
pub type Counters =
    std::collections::BTreeMap<String, std::collections::BTreeMap<&'static str, u64>>;

/// Called (once) when a booted VM ends by itself.
pub type OnEnd = Box<dyn FnOnce(Result<VmExitReason, String>) + Send>;

/// Boots VMs: KVM in the VMM, a fake in tests.
pub trait Launcher {
    /// Boot `cfg`. A refusal carries the status: 400 when the configuration names something
    /// unusable (a missing kernel, a device not bound to vfio-pci), 500 otherwise.
    /// `reboot`: this VM ran before (since its `vm.create`).
    fn boot(
        &mut self,
        cfg: &VmConfig,
        reboot: bool,
        on_end: OnEnd,
    ) -> Result<Box<dyn Machine>, ApiError>;

    /// Build `cfg`'s VM from the snapshot `state` in `dir`, paused unless `resume`.
    fn restore(
        &mut self,
        cfg: &VmConfig,
        restore: crate::vm::Restore<'_>,
        resume: bool,
        on_end: OnEnd,
    ) -> Result<Box<dyn Machine>, ApiError>;

    /// Called when no VM runs (after a stop or a failed boot): prepare what the next boot can
    /// use, off its path.
    fn prepare_next(&mut self) {}
}

struct VmSlot {
    api: ApiVmConfig,
    cfg: VmConfig,
    state: VmState,
    machine: Option<Box<dyn Machine>>,
    /// Booted at least once since created.
    booted: bool,
}

pub struct Controller<L: Launcher> {
    launcher: L,
    /// For the `on_end` callbacks of the VMs it boots.
    tx: mpsc::Sender<ControlMsg>,
    vm: Option<VmSlot>,
    /// Incremented per boot: tags `VmEnded` messages.
    generation: u64,
    events: EventMonitor,
    exiting: bool,
}

#[derive(Serialize)]
struct Ping {
    build_version: String,
    version: String,
    pid: u32,
    features: Vec<&'static str>,
}

#[derive(Serialize)]
struct Info<'a> {
    config: &'a ApiVmConfig,
    state: VmState,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_actual_size: Option<u64>,
    device_tree: std::collections::BTreeMap<String, serde_json::Value>,
}

fn refused(r: Refusal) -> ApiError {
    let status = match r {
        Refusal::NotCreated(_) => Status::NotFound,
        Refusal::AlreadyCreated => Status::Conflict,
        Refusal::WrongState { .. } => Status::MethodNotAllowed,
    };
    ApiError::new(status, r.to_string())
}

fn internal(what: &str, e: String) -> ApiError {
    ApiError::new(Status::InternalServerError, e).context(what)
}

impl<L: Launcher> Controller<L> {
    pub fn new(launcher: L, tx: mpsc::Sender<ControlMsg>, events: EventMonitor) -> Self {
        let mut c = Controller {
            launcher,
            tx,
            vm: None,
            generation: 0,
            events,
            exiting: false,
        };
        c.events.emit("vmm", "starting", &[]);
        c
    }

    pub fn state(&self) -> Option<VmState> {
        self.vm.as_ref().map(|v| v.state)
    }

    /// True once `vmm.shutdown` was answered: the loop ends.
    pub fn exiting(&self) -> bool {
        self.exiting
    }

    /// Serve until `vmm.shutdown`.
    pub fn run(&mut self, rx: &mpsc::Receiver<ControlMsg>) {
        while !self.exiting {
            let Ok(msg) = rx.recv() else { break };
            match msg {
                ControlMsg::Api(req, reply) => {
                    let answer = self.handle(req);
                    let _ = reply.send(answer);
                }
                ControlMsg::VmEnded { generation, result } => self.vm_ended(generation, result),
            }
        }
    }

    /// Check `action` against the state machine; the new state if allowed.
    fn check(&self, action: Action) -> Result<Option<VmState>, ApiError> {
        transition(self.state(), action).map_err(refused)
    }

    fn set_state(&mut self, s: VmState) {
        if let Some(vm) = self.vm.as_mut() {
            vm.state = s;
        }
    }

    fn machine(&self) -> Option<&dyn Machine> {
        self.vm.as_ref().and_then(|v| v.machine.as_deref())
    }

    /// Stop the running VM, if any, and (unless the VMM is exiting) prepare the next boot.
    fn stop_machine(&mut self) {
        if let Some(m) = self.vm.as_mut().and_then(|v| v.machine.take()) {
            m.stop();
            if !self.exiting {
                self.launcher.prepare_next();
            }
        }
    }

    /// The end callback of the VM about to be built (a new generation).
    fn next_on_end(&mut self) -> OnEnd {
        self.generation += 1;
        let (tx, generation) = (self.tx.clone(), self.generation);
        Box::new(move |result| {
            let _ = tx.send(ControlMsg::VmEnded { generation, result });
        })
    }

    /// `vm.snapshot`: a paused VM without passed-through devices.
    fn snapshot(&mut self, url: &str) -> Result<Reply, ApiError> {
        self.check(Action::Snapshot)?;
        let bad = |m: String| ApiError::new(Status::BadRequest, m);
        let dir = crate::snapshot::dir_of_url(url).map_err(|e| bad(e.to_string()))?;
        let vm = self.vm.as_ref().expect("checked: a VM exists");
        let ids = &vm.cfg.device_ids;
        if !ids.devices.is_empty() {
            return Err(bad(format!(
                "cannot snapshot the VM: it has passed-through device(s) {} whose state cannot be \
                 saved (VFIO); the VM is left as it was",
                ids.devices.join(", ")
            )));
        }
        if !ids.fs.is_empty() {
            return Err(bad(format!(
                "cannot snapshot the VM: its virtio-fs device(s) {} are served by vhost-user \
                 backends whose state this VMM cannot save; the VM is left as it was",
                ids.fs.join(", ")
            )));
        }
        if vm.machine.as_ref().is_some_and(|m| m.hotplugged()) {
            return Err(bad(
                "cannot snapshot the VM: devices were added or removed since it booted (a \
                 restore would lay them out in another order); reboot it first"
                    .into(),
            ));
        }
        let config = serde_json::to_value(&vm.api)
            .map_err(|e| internal("cannot snapshot the VM", e.to_string()))?;
        let machine = vm.machine.as_deref().expect("a paused VM has a machine");
        self.events.emit("vm", "snapshotting", &[]);
        machine
            .snapshot(&dir, config)
            .map_err(|e| e.context("cannot snapshot the VM"))?;
        self.events.emit("vm", "snapshotted", &[]);
        Ok(Reply::Empty)
    }

    /// `vm.restore`: a VM built from a snapshot, paused (or running with `resume`).
    fn restore(&mut self, r: crate::api::RestoreRequest) -> Result<Reply, ApiError> {
        self.check(Action::Restore)?;
        let crate::snapshot::Loaded {
            dir,
            state,
            api,
            cfg,
        } = crate::snapshot::load(&r.source_url, r.seccomp, &r.overrides).map_err(|e| {
            ApiError::new(Status::BadRequest, e.to_string()).context("cannot restore")
        })?;
        self.events.emit("vm", "restoring", &[]);
        let on_end = self.next_on_end();
        let restore = crate::vm::Restore {
            state: &state,
            dir: &dir,
            prefault: r.prefault,
        };
        let machine = match self.launcher.restore(&cfg, restore, r.resume, on_end) {
            Ok(m) => m,
            Err(e) => {
                self.launcher.prepare_next();
                return Err(e.context("cannot restore"));
            }
        };
        self.vm = Some(VmSlot {
            api,
            cfg,
            state: if r.resume {
                VmState::Running
            } else {
                VmState::Paused
            },
            machine: Some(machine),
            booted: true,
        });
        self.events.emit("vm", "restored", &[]);
        Ok(Reply::Empty)
    }

    fn boot_machine(&mut self) -> Result<(), ApiError> {
        if self.vm.is_none() {
            return Err(refused(Refusal::NotCreated(Action::Boot)));
        }
        let on_end = self.next_on_end();
        let vm = self.vm.as_ref().expect("checked above");
        let machine = match self.launcher.boot(&vm.cfg, vm.booted, on_end) {
            Ok(m) => m,
            Err(e) => {
                self.launcher.prepare_next();
                return Err(e);
            }
        };
        if let Some(vm) = self.vm.as_mut() {
            vm.machine = Some(machine);
            vm.state = VmState::Running;
            vm.booted = true;
        }
        Ok(())
    }

    /// Act on one request. A refused request changes nothing.
    pub fn handle(&mut self, req: Request) -> Result<Reply, ApiError> {
        match req {
            Request::Ping => Ok(Reply::Json(json(&Ping {
                build_version: format!("vmm {}", env!("CARGO_PKG_VERSION")),
                version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
                features: vec!["kvm", "vfio", "seccomp"],
            }))),
            Request::VmmShutdown => {
                self.exiting = true;
                self.stop_machine();
                if self.vm.take().is_some() {
                    self.events.emit("vm", "deleted", &[]);
                }
                self.events.emit("vmm", "shutdown", &[]);
                Ok(Reply::Empty)
            }
            Request::Create(b) => {
                self.check(Action::Create)?;
                let (api, cfg) = *b;
                self.vm = Some(VmSlot {
                    api,
                    cfg,
                    state: VmState::Created,
                    machine: None,
                    booted: false,
                });
                self.events.emit("vm", "created", &[]);
                Ok(Reply::Empty)
            }
            Request::Boot => {
                self.check(Action::Boot)?;
                self.events.emit("vm", "booting", &[]);
                self.boot_machine()
                    .map_err(|e| e.context("cannot boot the VM"))?;
                self.events.emit("vm", "booted", &[]);
                Ok(Reply::Empty)
            }
            Request::Pause => {
                self.check(Action::Pause)?;
                self.events.emit("vm", "pausing", &[]);
                if let Some(m) = self.machine() {
                    m.pause().map_err(|e| internal("cannot pause the VM", e))?;
                }
                self.set_state(VmState::Paused);
                self.events.emit("vm", "paused", &[]);
                Ok(Reply::Empty)
            }
            Request::Resume => {
                self.check(Action::Resume)?;
                self.events.emit("vm", "resuming", &[]);
                if let Some(m) = self.machine() {
                    m.resume();
                }
                self.set_state(VmState::Running);
                self.events.emit("vm", "resumed", &[]);
                Ok(Reply::Empty)
            }
            Request::Shutdown => {
                self.check(Action::Shutdown)?;
                self.stop_machine();
                self.set_state(VmState::Shutdown);
                self.events.emit("vm", "shutdown", &[]);
                Ok(Reply::Empty)
            }
            Request::Reboot => {
                self.check(Action::Reboot)?;
                self.reboot()?;
                Ok(Reply::Empty)
            }
            Request::PowerButton => {
                self.check(Action::PowerButton)?;
                if let Some(m) = self.machine() {
                    m.power_button()
                        .map_err(|e| internal("cannot press the power button", e))?;
                }
                self.events.emit("vm", "power-button", &[]);
                Ok(Reply::Empty)
            }
            Request::Nmi => {
                self.check(Action::Nmi)?;
                if let Some(m) = self.machine() {
                    m.nmi().map_err(|e| internal("cannot send the NMI", e))?;
                }
                Ok(Reply::Empty)
            }
            Request::Delete => {
                self.check(Action::Delete)?;
                self.stop_machine();
                if self.vm.take().is_some() {
                    self.events.emit("vm", "deleted", &[]);
                }
                Ok(Reply::Empty)
            }
            Request::Info => {
                self.check(Action::Inspect)?;
                let vm = self.vm.as_ref().expect("checked: a VM exists");
                Ok(Reply::Json(json(&Info {
                    config: &vm.api,
                    state: vm.state,
                    memory_actual_size: vm.machine.as_ref().map(|m| m.memory_size()),
                    device_tree: vm
                        .machine
                        .as_ref()
                        .map(|m| device_tree(&vm.cfg.device_ids, &m.pci_addresses()))
                        .unwrap_or_default(),
                })))
            }
            Request::AddDevice(d) => self.add_device(*d),
            Request::RemoveDevice(id) => self.remove_device(id),
            Request::ResizeDisk { id, desired_size } => self.resize_disk(id, desired_size),
            Request::Snapshot { destination_url } => self.snapshot(&destination_url),
            Request::Restore(r) => self.restore(r),
            Request::Counters => {
                self.check(Action::Inspect)?;
                // Disks and nets count their I/O; a VM not running has no devices (an empty
                // map, as Cloud Hypervisor answers then).
                let counters = self.machine().map(|m| m.counters()).unwrap_or_default();
                Ok(Reply::Json(json(&counters)))
            }
        }
    }

    fn reboot(&mut self) -> Result<(), ApiError> {
        self.events.emit("vm", "rebooting", &[]);
        self.stop_machine();
        if let Err(e) = self.boot_machine() {
            self.set_state(VmState::Shutdown);
            self.events.emit("vm", "shutdown", &[]);
            return Err(e.context("cannot reboot the VM"));
        }
        self.events.emit("vm", "rebooted", &[]);
        Ok(())
    }

    /// The VM of boot `generation` ended by itself.
    pub fn vm_ended(&mut self, generation: u64, result: Result<VmExitReason, String>) {
        let current = generation == self.generation && self.machine().is_some();
        if !current {
            return;
        }
        match result {
            Ok(VmExitReason::Stopped) => {}
            Ok(VmExitReason::Reset) => {
                log::info!("guest reset: rebooting the VM");
                if let Err(e) = self.reboot() {
                    log::error!("{e}");
                }
            }
            Ok(VmExitReason::PowerOff) => {
                log::info!("guest powered off");
                self.stop_machine();
                self.set_state(VmState::Shutdown);
                self.events.emit("vm", "shutdown", &[]);
            }
            Ok(VmExitReason::Fatal(m)) | Err(m) => {
                log::error!("guest failed: {m}");
                self.stop_machine();
                self.set_state(VmState::Shutdown);
                self.events.emit("vm", "shutdown", &[("reason", m)]);
            }
        }
    }
}

/// `vm.info`'s device tree, shaped as Cloud Hypervisor's: a virtio device `X` is a child of its
/// transport `_virtio-pci-X`, which holds the PCI address; a passed-through device holds its own.
/// `addresses`: as [`Machine::pci_addresses`].
pub fn device_tree(
    ids: &crate::config::ids::DeviceIds,
    addresses: &[String],
) -> std::collections::BTreeMap<String, serde_json::Value> {
    use serde_json::json;
    let mut tree = std::collections::BTreeMap::new();
    let mut addresses = addresses.iter();
    for id in ids.virtio() {
        let transport = format!("_virtio-pci-{id}");
        let bdf = addresses.next();
        tree.insert(
            id.clone(),
            json!({"id": id, "resources": [], "parent": transport, "children": []}),
        );
        tree.insert(
            transport.clone(),
            json!({"id": transport, "resources": [], "children": [id], "pci_bdf": bdf}),
        );
    }
    for id in &ids.devices {
        let bdf = addresses.next();
        tree.insert(
            id.clone(),
            json!({"id": id, "resources": [], "children": [], "pci_bdf": bdf}),
        );
    }
    tree
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

/// The end callback a `vm::start*` takes, reporting the VM's error as text.
fn vm_on_end(on_end: OnEnd) -> Box<dyn FnOnce(Result<VmExitReason, crate::vm::VmError>) + Send> {
    Box::new(move |r| on_end(r.map_err(|e| e.to_string())))
}

/// A started VM as a `Machine`, or its error with 400 when `bad_request` says the request
/// named something unusable, 500 otherwise.
fn started(
    r: Result<crate::vm::RunningVm, crate::vm::VmError>,
    bad_request: impl Fn(&crate::vm::VmError) -> bool,
) -> Result<Box<dyn Machine>, ApiError> {
    r.map(|m| Box::new(m) as Box<dyn Machine>).map_err(|e| {
        let status = if bad_request(&e) {
            Status::BadRequest
        } else {
            Status::InternalServerError
        };
        ApiError::new(status, e.to_string())
    })
}

/// The KVM launcher: boots with what the VMM prepared at start (see vm.rs, `Warm`).
pub struct KvmLauncher {
    pub warm: crate::vm::Warm,
}

impl Launcher for KvmLauncher {
    fn boot(
        &mut self,
        cfg: &VmConfig,
        reboot: bool,
        on_end: OnEnd,
    ) -> Result<Box<dyn Machine>, ApiError> {
        use crate::vm::VmError as E;
        started(
            crate::vm::start(cfg, &mut self.warm, reboot, vm_on_end(on_end)),
            |e| {
                matches!(
                    e,
                    E::OpenFile { .. } | E::Preflight(_) | E::Layout(_) | E::Boot(_)
                ) || matches!(e, E::Virtio(v) if v.is_configuration())
            },
        )
    }

    fn restore(
        &mut self,
        cfg: &VmConfig,
        restore: crate::vm::Restore<'_>,
        resume: bool,
        on_end: OnEnd,
    ) -> Result<Box<dyn Machine>, ApiError> {
        use crate::vm::VmError as E;
        let on_end = vm_on_end(on_end);
        started(
            crate::vm::start_restored(cfg, &mut self.warm, restore, resume, on_end),
            |e| {
                matches!(
                    e,
                    E::OpenFile { .. } | E::Snapshot(_) | E::Hypervisor(_) | E::Layout(_)
                ) || matches!(e, E::Virtio(v) if v.is_configuration())
            },
        )
    }

    fn prepare_next(&mut self) {
        self.warm.prepare_next();
    }
}

impl Machine for crate::vm::RunningVm {
    fn pause(&self) -> Result<(), String> {
        crate::vm::RunningVm::pause(self).map_err(|e| e.to_string())
    }
    fn resume(&self) {
        crate::vm::RunningVm::resume(self)
    }
    fn power_button(&self) -> Result<(), String> {
        crate::vm::RunningVm::power_button(self).map_err(|e| e.to_string())
    }
    fn nmi(&self) -> Result<(), String> {
        crate::vm::RunningVm::nmi(self).map_err(|e| e.to_string())
    }
    fn resize_disk(&mut self, position: usize, bytes: u64) -> Result<(), String> {
        crate::vm::RunningVm::resize_virtio(self, position, bytes)
    }
    fn memory_size(&self) -> u64 {
        crate::vm::RunningVm::memory_size(self)
    }
    fn snapshot(&self, dir: &std::path::Path, config: serde_json::Value) -> Result<(), ApiError> {
        crate::vm::RunningVm::snapshot(self, dir, config).map_err(|e| {
            use crate::snapshot::SnapshotError as E;
            let status = match e {
                E::Url { .. } | E::Unsupported(_) => Status::BadRequest,
                _ => Status::InternalServerError,
            };
            ApiError::new(status, e.to_string())
        })
    }
    fn counters(&self) -> Counters {
        crate::vm::RunningVm::counters(self)
            .into_iter()
            .map(|(id, c)| (id, c.into_iter().collect()))
            .collect()
    }
    fn pci_addresses(&self) -> Vec<String> {
        crate::vm::RunningVm::pci_addresses(self)
            .iter()
            .map(ToString::to_string)
            .collect()
    }
    fn hot_add(
        &mut self,
        position: usize,
        id: &str,
        device: &crate::api::AddDevice,
    ) -> Result<String, ApiError> {
        use crate::api::AddDevice;
        use crate::seccomp::DeviceKind;
        let bad = |m: String| ApiError::new(Status::BadRequest, m);
        let place = device.pci_place();
        let (dev, kind): (Box<dyn devices::virtio::VirtioDevice>, _) = match device {
            AddDevice::Disk(_, cfg) => (
                Box::new(
                    devices::virtio::Block::new(cfg)
                        .map_err(|e| bad(format!("disk {}: {e}", cfg.path.display())))?,
                ),
                DeviceKind::Block,
            ),
            AddDevice::Net(_, cfg) => (
                Box::new(devices::virtio::Net::new(cfg).map_err(|e| bad(format!("net: {e}")))?),
                DeviceKind::Net,
            ),
            AddDevice::Fs(_, cfg) => (
                Box::new(devices::virtio::Fs::new(cfg).map_err(|e| bad(format!("fs: {e}")))?),
                DeviceKind::Fs,
            ),
            AddDevice::Vsock(_, cfg) => (
                Box::new(devices::virtio::Vsock::new(cfg).map_err(|e| bad(format!("vsock: {e}")))?),
                DeviceKind::Vsock,
            ),
            AddDevice::Vfio(_, cfg) => {
                use crate::vm::VmError as E;
                let address = self.hot_add_vfio(id, cfg).map_err(|e| match e {
                    // What preflight finds (not bound to vfio-pci, a missing path, too little
                    // locked memory) and a device that cannot be opened are the request's.
                    E::Preflight(_) | E::Passthrough(_) | E::Hotplug(_) => bad(e.to_string()),
                    e => internal("hot-adding the device", e.to_string()),
                })?;
                return Ok(address.to_string());
            }
        };
        let address = self
            .hot_add_virtio(position, id, place, dev, kind)
            .map_err(|e| match e {
                crate::vm::VmError::Hotplug(crate::hotplug::HotplugError::Unavailable) => {
                    bad(e.to_string())
                }
                // A slot asked for (pci_device_id) that holds a device already.
                crate::vm::VmError::Virtio(ref v) if v.is_configuration() => bad(e.to_string()),
                e => internal("hot-adding the device", e.to_string()),
            })?;
        Ok(address.to_string())
    }
    fn hot_remove(&mut self, position: usize, id: &str) -> Result<bool, ApiError> {
        let timeout = crate::hotplug::EJECT_TIMEOUT;
        let r = if position < self.virtio_count() {
            self.hot_remove_virtio(position, id, timeout)
        } else {
            self.hot_remove_vfio(position, id, timeout)
        };
        r.map_err(|e| match e {
            crate::vm::VmError::Hotplug(crate::hotplug::HotplugError::BehindRootPort(_)) => {
                ApiError::new(crate::api::Status::BadRequest, e.to_string())
            }
            e => internal("removing the device", e.to_string()),
        })
    }
    fn hotplugged(&self) -> bool {
        crate::vm::RunningVm::hotplugged(self)
    }
    fn stop(self: Box<Self>) {
        crate::vm::RunningVm::stop(*self)
    }
}

#[cfg(test)]
pub(crate) mod fake;
mod hotplug;
#[cfg(test)]
mod tests;
