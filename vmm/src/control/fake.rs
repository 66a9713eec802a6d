//! A launcher whose machines only count what is asked of them (control and API tests).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::{Launcher, Machine, OnEnd};
use crate::api::ApiError;
use crate::config::VmConfig;

/// What the fake machines did, shared with the test.
#[derive(Default)]
pub(crate) struct Log {
    pub boots: AtomicU32,
    pub stops: AtomicU32,
    pub pauses: AtomicU32,
    pub resumes: AtomicU32,
    pub buttons: AtomicU32,
    pub nmis: AtomicU32,
    /// (position, bytes) of each disk resize.
    pub resizes: Mutex<Vec<(usize, u64)>>,
    pub snapshots: Mutex<Vec<std::path::PathBuf>>,
    pub restores: AtomicU32,
    /// The last boot's end callback: the test plays the guest with it.
    pub on_end: Mutex<Option<OnEnd>>,
    pub fail_next_boot: Mutex<Option<ApiError>>,
    /// Hot-adds and removes: (position, id).
    pub added: Mutex<Vec<(usize, String)>>,
    pub removed: Mutex<Vec<(usize, String)>>,
    /// The guest does not release devices (`hot_remove` answers false).
    pub refuse_eject: std::sync::atomic::AtomicBool,
}

/// The log, the guest's RAM size and its disks' ids.
struct FakeMachine(Arc<Log>, u64, Vec<String>);

impl Machine for FakeMachine {
    fn pause(&self) -> Result<(), String> {
        self.0.pauses.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn resume(&self) {
        self.0.resumes.fetch_add(1, Ordering::SeqCst);
    }
    fn power_button(&self) -> Result<(), String> {
        self.0.buttons.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn nmi(&self) -> Result<(), String> {
        self.0.nmis.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn resize_disk(&mut self, position: usize, bytes: u64) -> Result<(), String> {
        self.0.resizes.lock().unwrap().push((position, bytes));
        Ok(())
    }
    fn memory_size(&self) -> u64 {
        self.1
    }
    /// Each disk has read one sector.
    fn counters(&self) -> super::Counters {
        self.2
            .iter()
            .map(|id| (id.clone(), [("read_bytes", 512)].into_iter().collect()))
            .collect()
    }
    fn pci_addresses(&self) -> Vec<String> {
        (1..=8).map(|d| format!("0000:00:{d:02x}.0")).collect()
    }
    fn snapshot(&self, dir: &std::path::Path, _config: serde_json::Value) -> Result<(), ApiError> {
        self.0.snapshots.lock().unwrap().push(dir.to_path_buf());
        Ok(())
    }
    fn hot_add(
        &mut self,
        position: usize,
        id: &str,
        _device: &crate::api::AddDevice,
    ) -> Result<String, ApiError> {
        let mut added = self.0.added.lock().unwrap();
        added.push((position, id.to_string()));
        Ok(format!("0000:00:{:02x}.0", 0x10 + added.len()))
    }
    fn hot_remove(&mut self, position: usize, id: &str) -> Result<bool, ApiError> {
        if self.0.refuse_eject.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.0
            .removed
            .lock()
            .unwrap()
            .push((position, id.to_string()));
        Ok(true)
    }
    fn hotplugged(&self) -> bool {
        !self.0.added.lock().unwrap().is_empty() || !self.0.removed.lock().unwrap().is_empty()
    }
    fn stop(self: Box<Self>) {
        self.0.stops.fetch_add(1, Ordering::SeqCst);
    }
}

pub(crate) struct FakeLauncher(pub Arc<Log>);

impl Launcher for FakeLauncher {
    fn boot(
        &mut self,
        cfg: &VmConfig,
        _reboot: bool,
        on_end: OnEnd,
    ) -> Result<Box<dyn Machine>, ApiError> {
        if let Some(e) = self.0.fail_next_boot.lock().unwrap().take() {
            return Err(e);
        }
        self.0.boots.fetch_add(1, Ordering::SeqCst);
        *self.0.on_end.lock().unwrap() = Some(on_end);
        Ok(Box::new(FakeMachine(
            self.0.clone(),
            cfg.memory.size,
            cfg.device_ids.disks.clone(),
        )))
    }

    fn restore(
        &mut self,
        cfg: &VmConfig,
        _restore: crate::vm::Restore<'_>,
        _resume: bool,
        on_end: OnEnd,
    ) -> Result<Box<dyn Machine>, ApiError> {
        self.0.restores.fetch_add(1, Ordering::SeqCst);
        *self.0.on_end.lock().unwrap() = Some(on_end);
        Ok(Box::new(FakeMachine(
            self.0.clone(),
            cfg.memory.size,
            cfg.device_ids.disks.clone(),
        )))
    }
}
