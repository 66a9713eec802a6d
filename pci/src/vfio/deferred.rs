//! Waiting for the DMA mapping outside the bus locks. A guest's first Bus Master Enable on a
//! passed-through device must wait until guest RAM is DMA-mapped (before, the device could DMA
//! into unmapped memory). Waiting inside the config write would hold the PCI config (ECAM) bus
//! range and the device's lock the whole time, and every other vCPU touching config space would
//! stall behind it. So a config write made through [`with_deferral`] (the vCPU's MMIO write
//! path) does not wait: the device model leaves Bus Master off in the device, records the gate
//! here and returns; the vCPU, its locks released, waits on the gate and makes the same write
//! again, which then enables bus mastering. The guest's vCPU is held until then, as before;
//! nothing else is.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::DeviceGate;

thread_local! {
    static ALLOWED: Cell<bool> = const { Cell::new(false) };
    static PENDING: RefCell<Option<Arc<dyn DeviceGate>>> = const { RefCell::new(None) };
}

/// Runs `f` (a bus write) letting a device defer a wait for the DMA mapping; returns what `f`
/// returned and the gate to wait on before repeating the write, if a device deferred.
pub fn with_deferral<R>(f: impl FnOnce() -> R) -> (R, Option<Arc<dyn DeviceGate>>) {
    ALLOWED.with(|a| a.set(true));
    let r = f();
    ALLOWED.with(|a| a.set(false));
    (r, PENDING.with(|p| p.borrow_mut().take()))
}

/// Called by a device model instead of waiting on `gate`: true when the caller allowed it
/// (the write will be repeated once `gate` is ready), false when the device must wait itself.
pub(crate) fn defer(gate: &Arc<dyn DeviceGate>) -> bool {
    if !ALLOWED.with(|a| a.get()) {
        return false;
    }
    PENDING.with(|p| *p.borrow_mut() = Some(gate.clone()));
    true
}
