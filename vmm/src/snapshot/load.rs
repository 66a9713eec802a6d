//! Reading a snapshot for a restore, the one way `vm.restore` and `vmm --restore` both use:
//! the directory from its URL, its state checked, its VM's configuration parsed as
//! `vm.create` would, and no passed-through device (a snapshot cannot hold one).

use std::path::PathBuf;

use super::{dir_of_url, SnapshotError, State};
use crate::api::vm_config::{self, ApiVmConfig};
use crate::config::restore::Overrides;
use crate::config::{SeccompMode, VmConfig};

/// A snapshot read and its VM's configuration checked: what a restore builds from.
pub struct Loaded {
    pub dir: PathBuf,
    pub state: State,
    pub api: ApiVmConfig,
    pub cfg: VmConfig,
}

/// Why a snapshot cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("its configuration: {0}")]
    Config(String),
    #[error("its configuration has passed-through devices ({0}), which a snapshot cannot hold")]
    Devices(String),
}

/// Read the snapshot at `url` for a VM confined by `seccomp`, with what `overrides` says
/// it has instead of the snapshot's (COM1's output, disk images and taps by device id).
pub fn load(url: &str, seccomp: SeccompMode, overrides: &Overrides) -> Result<Loaded, LoadError> {
    let dir = dir_of_url(url)?;
    let state = State::read(&dir)?;
    // config.json where it is (edited or not), else the copy in state.json (a snapshot taken
    // before config.json was written).
    let mut config = match State::read_config(&dir)? {
        Some(c) => c,
        None => state.config.clone(),
    };
    apply(&mut config, overrides)?;
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let (mut api, mut cfg) = vm_config::parse(&config, seccomp).map_err(LoadError::Config)?;
    if let Some(serial) = &overrides.serial {
        cfg.serial = serial.clone();
        api = api.with_serial(&cfg.serial);
    }
    if !cfg.devices.is_empty() {
        return Err(LoadError::Devices(cfg.device_ids.devices.join(", ")));
    }
    Ok(Loaded {
        dir,
        state,
        api,
        cfg,
    })
}

/// Point the devices `o` names (by id) at their new disk image or tap in the snapshot's
/// configuration `config` (a `vm.create` body).
fn apply(config: &mut serde_json::Value, o: &Overrides) -> Result<(), LoadError> {
    let mut set = |list: &str, field: &str, id: &str, value: &str| {
        let devices = config.get_mut(list).and_then(|l| l.as_array_mut());
        let ids: Vec<String> = devices
            .as_ref()
            .map(|d| {
                d.iter()
                    .filter_map(|x| x.get("id")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let device = devices.and_then(|d| {
            d.iter_mut()
                .find(|x| x.get("id").and_then(|i| i.as_str()) == Some(id))
        });
        match device {
            Some(d) => {
                d[field] = serde_json::Value::String(value.into());
                Ok(())
            }
            None => Err(LoadError::Config(format!(
                "it has no {} with id '{id}' to give {field} {value} (its {list}: {})",
                if list == "net" { "net" } else { "disk" },
                if ids.is_empty() {
                    "none".into()
                } else {
                    ids.join(", ")
                }
            ))),
        }
    };
    for (id, path) in &o.disks {
        set("disks", "path", id, &path.display().to_string())?;
    }
    for (id, tap) in &o.nets {
        set("net", "tap", id, tap)?;
    }
    if let Some((cid, socket)) = &o.vsock {
        let Some(v) = config.get_mut("vsock").filter(|v| v.is_object()) else {
            return Err(LoadError::Config(
                "it has no vsock to give a cid and socket".into(),
            ));
        };
        v["cid"] = serde_json::json!(cid);
        v["socket"] = serde_json::Value::String(socket.display().to_string());
    }
    Ok(())
}
