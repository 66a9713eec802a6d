//! `vm.add-disk`, `vm.add-net` and `vm.remove-device` in the control loop: the device's id
//! (given, or generated as Cloud Hypervisor does), its place among the VM's devices, the
//! running VM told (hot-added or ejected), and the configuration updated so `vm.info` shows it
//! and a reboot keeps it. A VM that is not running only has its configuration changed. A
//! refused request changes nothing.

use serde_json::json;

use super::{json, Controller, Launcher};
use crate::api::{AddDevice, ApiError, Reply, Status};
use crate::config::ids::{CONSOLE_ID, RNG_ID};
use crate::control::state::Action;

/// Ids for an error message: "a, b", or "none".
fn listed<S: AsRef<str>>(ids: &[S]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
}

fn bad(m: String) -> ApiError {
    ApiError::new(Status::BadRequest, m)
}

impl<L: Launcher> Controller<L> {
    pub(super) fn add_device(&mut self, dev: AddDevice) -> Result<Reply, ApiError> {
        self.check(Action::Hotplug)?;
        let vm = self.vm.as_mut().expect("checked: a VM exists");
        let ids = &vm.cfg.device_ids;
        let taken: Vec<&String> = ids.virtio().chain(&ids.devices).collect();
        let (given, prefix) = match &dev {
            AddDevice::Disk(api, _) => (api.id.clone(), "_disk"),
            AddDevice::Net(_, cfg) => (cfg.id.clone(), "_net"),
            AddDevice::Vfio(_, cfg) => (cfg.id.clone(), "_vfio"),
            AddDevice::Fs(_, cfg) => (cfg.id.clone(), "_fs"),
            AddDevice::Vsock(_, cfg) => (cfg.id.clone(), "_vsock"),
        };
        let id = match given.filter(|i| !i.is_empty()) {
            Some(id) if taken.iter().any(|t| **t == id) || id == RNG_ID || id == CONSOLE_ID => {
                return Err(bad(format!(
                    "device id '{id}' is taken: every device needs its own id"
                )));
            }
            Some(id) => id,
            None => (0..)
                .map(|n| format!("{prefix}{n}"))
                .find(|c| !taken.contains(&c))
                .expect("an unused id exists"),
        };
        if let AddDevice::Disk(_, cfg) = &dev {
            let mut disks = vm.cfg.disks.clone();
            disks.push(cfg.clone());
            crate::cli::check_duplicate_disks(&disks).map_err(|e| bad(format!("disk: {e}")))?;
        }
        if let AddDevice::Net(_, cfg) = &dev {
            let mut nets = vm.cfg.nets.clone();
            nets.push(cfg.clone());
            crate::cli::check_duplicate_nets(&nets).map_err(|e| bad(format!("net: {e}")))?;
        }
        if let AddDevice::Vfio(_, cfg) = &dev {
            let mut devices = vm.cfg.devices.clone();
            devices.push(cfg.clone());
            crate::config::device::check_duplicates(&devices)
                .map_err(|e| bad(format!("device: {e}")))?;
        }
        if let AddDevice::Fs(_, cfg) = &dev {
            crate::config::fs::check_memory(std::slice::from_ref(cfg), vm.cfg.memory.shared)
                .map_err(|e| bad(format!("fs: {e}")))?;
        }
        let (segment, asked) = dev.pci_place();
        let segments = vm.cfg.num_pci_segments();
        if segment >= segments {
            return Err(bad(format!(
                "pci_segment: segment {segment} does not exist: the VM has {segments} \
                 (platform.num_pci_segments)"
            )));
        }
        // A slot asked for (pci_device_id) is not another configured device's.
        if let Some(slot) = asked {
            if let Some(other) = vm.cfg.pci_slot_holder(segment, slot) {
                return Err(bad(format!(
                    "pci_device_id: slot {slot} of segment {segment} is {other}'s already"
                )));
            }
        }
        if matches!(dev, AddDevice::Vsock(..)) && ids.vsock.is_some() {
            return Err(bad("the VM has a vsock device already (one at most)".into()));
        }
        // Its place among the machine's devices: virtio ones in `DeviceIds::virtio` order
        // (disks, then nets), passed-through ones after them.
        let position = match &dev {
            AddDevice::Disk(..) => ids.disks.len(),
            AddDevice::Net(..) => ids.disks.len() + ids.nets.len(),
            AddDevice::Vfio(..) => ids.virtio().count() + ids.devices.len(),
            AddDevice::Vsock(..) => ids.disks.len() + ids.nets.len() + ids.rng.iter().count(),
            AddDevice::Fs(..) => {
                ids.disks.len()
                    + ids.nets.len()
                    + ids.rng.iter().count()
                    + ids.vsock.iter().count()
                    + ids.fs.len()
            }
        };
        let bdf = match vm.machine.as_mut() {
            Some(m) => Some(
                m.hot_add(position, &id, &dev)
                    .map_err(|e| e.context(&format!("cannot add device '{id}'")))?,
            ),
            None => None,
        };
        let ids = &mut vm.cfg.device_ids;
        match dev {
            AddDevice::Disk(mut api, cfg) => {
                api.id = Some(id.clone());
                vm.api.disks.get_or_insert_with(Vec::new).push(api);
                vm.cfg.disks.push(cfg);
                ids.disks.push(id.clone());
            }
            AddDevice::Net(mut api, mut cfg) => {
                api.id = Some(id.clone());
                cfg.id = Some(id.clone());
                vm.api.net.get_or_insert_with(Vec::new).push(api);
                vm.cfg.nets.push(cfg);
                ids.nets.push(id.clone());
            }
            AddDevice::Fs(mut api, mut cfg) => {
                api.id = Some(id.clone());
                cfg.id = Some(id.clone());
                vm.api.fs.get_or_insert_with(Vec::new).push(api);
                vm.cfg.fs.push(cfg);
                ids.fs.push(id.clone());
            }
            AddDevice::Vsock(mut api, mut cfg) => {
                api.id = Some(id.clone());
                cfg.id = Some(id.clone());
                vm.api.vsock = Some(api);
                vm.cfg.vsock = Some(cfg);
                ids.vsock = Some(id.clone());
            }
            AddDevice::Vfio(mut api, mut cfg) => {
                api.id = Some(id.clone());
                cfg.id = Some(id.clone());
                vm.api.devices.get_or_insert_with(Vec::new).push(api);
                vm.cfg.devices.push(cfg);
                ids.devices.push(id.clone());
            }
        }
        self.events
            .emit("vm", "device-added", &[("id", id.clone())]);
        Ok(match bdf {
            // Cloud Hypervisor's PciDeviceInfo.
            Some(bdf) => Reply::Json(json(&json!({"id": id, "bdf": bdf}))),
            None => Reply::Empty,
        })
    }

    /// `vm.resize-disk`: the disk `id` of a booted VM grows to `bytes` and the guest is told
    /// (a config-change interrupt). Shrinking, a size that is not whole sectors and a
    /// read-only disk are refused (400).
    pub(super) fn resize_disk(&mut self, id: String, bytes: u64) -> Result<Reply, ApiError> {
        self.check(Action::ResizeDisk)?;
        let vm = self.vm.as_mut().expect("checked: a VM exists");
        let disks = &vm.cfg.device_ids.disks;
        // Disks come first among the virtio devices.
        let Some(position) = disks.iter().position(|d| *d == id) else {
            return Err(ApiError::new(
                Status::NotFound,
                format!("no disk with id '{id}' (the VM's disks: {})", listed(disks)),
            ));
        };
        if let Some(m) = vm.machine.as_mut() {
            m.resize_disk(position, bytes)
                .map_err(|e| bad(format!("cannot resize disk '{id}': {e}")))?;
        }
        Ok(Reply::Empty)
    }

    pub(super) fn remove_device(&mut self, id: String) -> Result<Reply, ApiError> {
        self.check(Action::Hotplug)?;
        let vm = self.vm.as_mut().expect("checked: a VM exists");
        let ids = &vm.cfg.device_ids;
        if ids.console.as_ref() == Some(&id) {
            return Err(bad(format!("cannot remove '{id}': the console stays")));
        }
        let Some(position) = ids.virtio().chain(&ids.devices).position(|i| *i == id) else {
            let all: Vec<&String> = ids.virtio().chain(&ids.devices).collect();
            return Err(ApiError::new(
                Status::NotFound,
                format!("no device with id '{id}' (the VM has: {})", listed(&all)),
            ));
        };
        if let Some(m) = vm.machine.as_mut() {
            if !m.hot_remove(position, &id)? {
                return Err(ApiError::new(
                    Status::Conflict,
                    format!(
                        "the guest did not release device '{id}' within {} s (no ACPI PCI \
                         hotplug driver, or the device is in use); it is left in place",
                        crate::hotplug::EJECT_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
        let ids = &mut vm.cfg.device_ids;
        let removed = drop_entry(&id, &mut ids.disks, &mut vm.cfg.disks, &mut vm.api.disks)
            || drop_entry(&id, &mut ids.nets, &mut vm.cfg.nets, &mut vm.api.net)
            || drop_entry(&id, &mut ids.fs, &mut vm.cfg.fs, &mut vm.api.fs)
            || drop_entry(
                &id,
                &mut ids.devices,
                &mut vm.cfg.devices,
                &mut vm.api.devices,
            );
        if !removed && ids.vsock.as_ref() == Some(&id) {
            ids.vsock = None;
            vm.cfg.vsock = None;
            vm.api.vsock = None;
        } else if !removed && ids.rng.as_ref() == Some(&id) {
            ids.rng = None;
            vm.cfg.rng = None;
            vm.api.rng = None;
        }
        self.events.emit("vm", "device-removed", &[("id", id)]);
        Ok(Reply::Empty)
    }
}

/// Removes the entry with id `id` (by its place in `ids`) from the ids, the VMM's configuration
/// and the API's; whether it was one of them.
fn drop_entry<C, A>(
    id: &str,
    ids: &mut Vec<String>,
    cfg: &mut Vec<C>,
    api: &mut Option<Vec<A>>,
) -> bool {
    let Some(i) = ids.iter().position(|d| d == id) else {
        return false;
    };
    ids.remove(i);
    cfg.remove(i);
    if let Some(a) = api.as_mut().filter(|a| i < a.len()) {
        a.remove(i);
    }
    true
}
