//! Reading a snapshot for a restore, the one way `vm.restore` and `vmm --restore` both use:
//! the directory from its URL, its state checked, its VM's configuration parsed as
//! `vm.create` would, and no passed-through device (a snapshot cannot hold one).

use std::path::PathBuf;

use super::{dir_of_url, SnapshotError, State};
use crate::api::vm_config::{self, ApiVmConfig};
use crate::config::{SeccompMode, SerialConfig, VmConfig};

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

/// Read the snapshot at `url` for a VM confined by `seccomp`; `serial`: where COM1's output
/// goes instead of the snapshot's.
pub fn load(
    url: &str,
    seccomp: SeccompMode,
    serial: Option<SerialConfig>,
) -> Result<Loaded, LoadError> {
    let dir = dir_of_url(url)?;
    let state = State::read(&dir)?;
    let config = serde_json::to_vec(&state.config).unwrap_or_default();
    let (mut api, mut cfg) = vm_config::parse(&config, seccomp).map_err(LoadError::Config)?;
    if let Some(serial) = serial {
        cfg.serial = serial;
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
