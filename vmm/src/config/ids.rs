//! Device ids: what `vm.info` reports and `vm.remove-device` names. A user-given id is kept;
//! the others are generated as Cloud Hypervisor does (`_disk0`, `_net1`, `_vfio2` (one counter
//! shared by every generated name, skipping ids already taken; also `_vsock3`, `_fs4`); `__rng` and `__console` are
//! fixed). Ids are unique in a VM: a duplicate is refused when the VM is created.

use super::{ConfigError, ConsoleConfig, VmConfig};

/// Every device's id, in the order of its kind in [`VmConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceIds {
    pub disks: Vec<String>,
    pub nets: Vec<String>,
    pub rng: Option<String>,
    pub vsock: Option<String>,
    pub fs: Vec<String>,
    pub console: Option<String>,
    pub devices: Vec<String>,
}

pub const RNG_ID: &str = "__rng";
pub const CONSOLE_ID: &str = "__console";

impl DeviceIds {
    /// The ids of the virtio devices, in the order they are put on the PCI bus.
    pub fn virtio(&self) -> impl Iterator<Item = &String> {
        self.disks
            .iter()
            .chain(&self.nets)
            .chain(&self.rng)
            .chain(&self.vsock)
            .chain(&self.fs)
            .chain(&self.console)
    }
}

/// The ids of `cfg`'s devices, from the ids its devices were given (`DiskConfig::id`,
/// `NetConfig::id`, `DeviceConfig::id`); an id given twice is an error naming it.
pub fn assign(cfg: &VmConfig) -> Result<DeviceIds, ConfigError> {
    let disks: Vec<Option<&str>> = cfg.disks.iter().map(|d| d.id.as_deref()).collect();
    assign_given(cfg, &disks)
}

/// As [`assign`], with the disks' ids given apart (the API's `id`, which is not the serial the
/// guest reads).
pub fn assign_given(cfg: &VmConfig, disk_ids: &[Option<&str>]) -> Result<DeviceIds, ConfigError> {
    let given: Vec<&str> = disk_ids
        .iter()
        .flatten()
        .copied()
        .chain(cfg.nets.iter().filter_map(|n| n.id.as_deref()))
        .chain(cfg.devices.iter().filter_map(|d| d.id.as_deref()))
        .chain(cfg.vsock.iter().filter_map(|v| v.id.as_deref()))
        .chain(cfg.fs.iter().filter_map(|f| f.id.as_deref()))
        .collect();
    let mut taken: Vec<String> = Vec::new();
    for id in &given {
        if taken.iter().any(|t| t == id) || *id == RNG_ID || *id == CONSOLE_ID {
            return Err(ConfigError::Option(format!(
                "device id '{id}' is used twice: every disk, net, vsock, fs and device needs its own id"
            )));
        }
        taken.push(id.to_string());
    }
    let mut counter = 0u32;
    let mut next = |prefix: &str, given: Option<&str>, taken: &mut Vec<String>| -> String {
        if let Some(id) = given {
            return id.to_string();
        }
        loop {
            let id = format!("{prefix}{counter}");
            counter += 1;
            if !taken.contains(&id) {
                taken.push(id.clone());
                return id;
            }
        }
    };
    let disks = (0..cfg.disks.len())
        .map(|i| next("_disk", disk_ids.get(i).copied().flatten(), &mut taken))
        .collect();
    let nets = cfg
        .nets
        .iter()
        .map(|n| next("_net", n.id.as_deref(), &mut taken))
        .collect();
    let devices = cfg
        .devices
        .iter()
        .map(|d| next("_vfio", d.id.as_deref(), &mut taken))
        .collect();
    let vsock = cfg
        .vsock
        .as_ref()
        .map(|v| next("_vsock", v.id.as_deref(), &mut taken));
    let fs = cfg
        .fs
        .iter()
        .map(|f| next("_fs", f.id.as_deref(), &mut taken))
        .collect();
    Ok(DeviceIds {
        disks,
        nets,
        rng: cfg.rng.as_ref().map(|_| RNG_ID.to_string()),
        vsock,
        fs,
        console: (cfg.console != ConsoleConfig::Off).then(|| CONSOLE_ID.to_string()),
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::virtio::{DiskConfig, NetConfig, RngConfig};

    fn vm() -> VmConfig {
        let m = crate::cli::command()
            .try_get_matches_from(["vmm", "--kernel", "/k"])
            .unwrap();
        crate::cli::from_matches(&m).unwrap().vm
    }

    #[test]
    fn generated_ids_share_one_counter_and_skip_given_ones() {
        let mut cfg = vm();
        let mut named = DiskConfig::new("/b");
        named.id = Some("_disk1".into());
        cfg.disks = vec![DiskConfig::new("/a"), named, DiskConfig::new("/c")];
        cfg.nets = vec![NetConfig::default()];
        cfg.rng = Some(RngConfig::default());
        let ids = assign(&cfg).unwrap();
        assert_eq!(ids.disks, ["_disk0", "_disk1", "_disk2"]);
        assert_eq!(ids.nets, ["_net3"]);
        assert_eq!(ids.rng.as_deref(), Some(RNG_ID));
        assert_eq!(ids.console, None);
        assert_eq!(
            ids.virtio().collect::<Vec<_>>(),
            ["_disk0", "_disk1", "_disk2", "_net3", RNG_ID]
        );
    }

    #[test]
    fn a_duplicate_id_is_refused_with_its_name() {
        let mut cfg = vm();
        let mut d = DiskConfig::new("/a");
        d.id = Some("x".into());
        let n = NetConfig {
            id: Some("x".into()),
            ..NetConfig::default()
        };
        cfg.disks = vec![d];
        cfg.nets = vec![n];
        let e = assign(&cfg).unwrap_err().to_string();
        assert!(e.contains("'x' is used twice"), "{e}");
    }
}
