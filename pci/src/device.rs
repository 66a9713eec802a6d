//! The interface every PCI function implements.

use crate::bar::BarInfo;
use crate::configuration::ConfigWriteResult;

/// A PCI function as the bus sees it: configuration registers, BAR
/// accesses by BAR index, and the BARs it currently has.
///
/// Config accesses arrive as dword register indices (`reg`, 0..1024) plus
/// a byte `offset` within the dword; the bus has already split or refused
/// anything that does not fit one dword. Implementations must not panic on
/// any value a guest can produce.
pub trait PciDevice: Send {
    /// Register `reg` (all-ones when it does not exist).
    fn read_config_register(&mut self, reg: usize) -> u32;

    /// A guest write of `data` at byte `offset` (0..=3) of register `reg`.
    /// The result tells the caller which BARs to move; apply them in order.
    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]) -> ConfigWriteResult;

    /// A guest read at `offset` within BAR `bar` (0..=5, or
    /// [`crate::ROM_BAR_INDEX`] for the expansion ROM).
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]);

    /// A guest write at `offset` within BAR `bar`.
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]);

    /// The function's BARs as currently programmed.
    fn bars(&self) -> Vec<BarInfo>;
}
