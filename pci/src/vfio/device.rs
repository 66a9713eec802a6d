//! [`VfioPciDevice`]: a passed-through PCI function as the guest sees it.
//!
//! - The header is emulated: IDs and class as the device has them, BARs and the ROM BAR at
//!   the addresses the VMM allocated (sizing and relocation as on hardware), a single-function
//!   type-0 header, the device's INTx pin when the VMM wired one (else none). Memory and I/O
//!   decoding start enabled, as firmware leaves them.
//! - The command register is emulated and forwarded with care: memory and I/O decoding reach
//!   the device only for the kinds of BARs the guest was given; Bus Master Enable is forwarded
//!   only once guest RAM is DMA-mapped (the first enable waits on the [`DeviceGate`]).
//! - Status, capabilities and everything else in config space pass through, except MSI and
//!   MSI-X (emulated, see [`super::interrupts`]) and hidden capabilities (skipped).
//! - BAR accesses that reach the VMM (trapped pages, sub-page BARs, I/O BARs, the ROM) go to
//!   the MSI-X table/PBA emulation or to the device through VFIO.

use std::sync::Arc;

use log::{debug, warn};

use super::bars::mappable_areas;
use super::caps;
use super::interrupts::{VfioIntx, VfioIrqGroup, VfioMsi, VfioMsix};
use super::layout::{self, Byte, LayoutInput};
use super::ops::{
    DeviceGate, VfioDeviceOps, VfioIrqKind, VFIO_PCI_CONFIG_REGION, VFIO_PCI_ROM_REGION,
};
use super::probe::{VfioPciError, VfioPciInfo};
use crate::bar::{BarConfig, BarInfo, BarKind, ROM_BAR_INDEX};
use crate::configuration::{
    ConfigWriteResult, PciConfiguration, PciHeader, COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE,
    COMMAND_IO_SPACE, COMMAND_MEMORY_SPACE, COMMAND_PARITY_ERROR_RESPONSE, COMMAND_SERR_ENABLE,
    COMMAND_STATUS_REG, STATUS_CAPABILITIES_LIST,
};
use crate::device::PciDevice;
use crate::interrupt::MsiInterruptGroup;
use vmm_sys_util::eventfd::EventFd;

/// The VMM's interrupt group for one capability and the eventfd of each of its vectors.
pub struct MsiResources {
    pub group: Arc<dyn MsiInterruptGroup>,
    pub eventfds: Vec<EventFd>,
}

/// The VMM's ends of the INTx line: `trigger` asserts the pin's GSI (a KVM irqfd), and the
/// hypervisor writes `resample` when the guest has EOIed it.
pub struct IntxResources {
    pub trigger: EventFd,
    pub resample: EventFd,
}

/// What the VMM decided for the device.
pub struct VfioPciParams {
    pub ops: Arc<dyn VfioDeviceOps>,
    /// The BARs from [`VfioPciInfo::bars`] with their allocated addresses (ROM as index 6).
    pub bars: Vec<BarConfig>,
    pub msi: Option<MsiResources>,
    pub msix: Option<MsiResources>,
    pub gate: Arc<dyn DeviceGate>,
    /// Add the NVIDIA GPUDirect P2P clique capability with this ID.
    pub gpudirect_clique: Option<u8>,
    /// The BARs hold addresses the VMM assigned, and decoding starts on (as firmware leaves
    /// a device). False for a device behind a root port: its BARs are 0 with decoding off,
    /// for the guest to assign within the port's windows.
    pub assigned: bool,
}

/// A part of a BAR to map straight into the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappableArea {
    pub bar: usize,
    pub offset: u64,
    pub size: u64,
}

/// A passed-through PCI function.
pub struct VfioPciDevice {
    ops: Arc<dyn VfioDeviceOps>,
    gate: Arc<dyn DeviceGate>,
    config: PciConfiguration,
    bytes: Vec<Byte>,
    msi: Option<VfioMsi>,
    msix: Option<VfioMsix>,
    intx: Option<Arc<VfioIntx>>,
    /// Command bits the guest may turn on in the device.
    command_mask: u16,
    /// The command value last written to the device.
    device_command: u16,
    /// The device has not been told the command register yet (it may still be resetting).
    command_unsynced: bool,
}

fn header(cfg: &[u8], interrupt_pin: u8) -> PciHeader {
    let w = |o: usize| u16::from_le_bytes([cfg[o], cfg[o + 1]]);
    PciHeader {
        vendor_id: w(0),
        device_id: w(2),
        class_code: u32::from_le_bytes([cfg[9], cfg[10], cfg[11], 0]),
        revision_id: cfg[8],
        subsystem_vendor_id: w(0x2c),
        subsystem_id: w(0x2e),
        multi_function: false,
        interrupt_pin,
    }
}

fn irq_group(
    res: MsiResources,
    ops: &Arc<dyn VfioDeviceOps>,
    kind: VfioIrqKind,
    intx: &Option<Arc<VfioIntx>>,
) -> Arc<VfioIrqGroup> {
    let group = VfioIrqGroup::new(res.group, res.eventfds, ops.clone(), kind);
    Arc::new(group.with_intx(intx.clone()))
}

/// Declares `bars` in `config`; returns the command bits the guest may turn on in the device
/// (decoding only for the kinds of BARs it has).
fn declare_bars(config: &mut PciConfiguration, bars: &[BarConfig]) -> Result<u16, VfioPciError> {
    let mut command_mask = COMMAND_BUS_MASTER
        | COMMAND_INTX_DISABLE
        | COMMAND_SERR_ENABLE
        | COMMAND_PARITY_ERROR_RESPONSE;
    for bar in bars {
        let declared = if bar.index == ROM_BAR_INDEX {
            config.add_rom_bar(bar.size, bar.addr)
        } else {
            config.add_bar(bar)
        };
        declared.map_err(|source| VfioPciError::Bar {
            index: bar.index,
            source,
        })?;
        command_mask |= if bar.kind == BarKind::Io {
            COMMAND_IO_SPACE
        } else {
            COMMAND_MEMORY_SPACE
        };
    }
    Ok(command_mask)
}

/// MSI and MSI-X, emulated when the device has them and the VMM gave them vectors (a
/// capability that cannot be emulated is hidden).
fn emulated_interrupts(
    info: &VfioPciInfo,
    p: &mut VfioPciParams,
    intx: &Option<Arc<VfioIntx>>,
) -> (Option<VfioMsi>, Option<VfioMsix>) {
    let msi = match (info.msi, p.msi.take()) {
        (Some((_, control)), Some(res)) => {
            let group = irq_group(res, &p.ops, VfioIrqKind::Msi, intx);
            VfioMsi::new(control, group)
                .map_err(|e| warn!("vfio: MSI hidden: {e}"))
                .ok()
        }
        _ => None,
    };
    let msix = match (info.msix, p.msix.take()) {
        (Some((_, params)), Some(res)) => {
            let group = irq_group(res, &p.ops, VfioIrqKind::Msix, intx);
            VfioMsix::new(params, &p.bars, group)
                .map_err(|e| warn!("vfio: MSI-X hidden: {e}"))
                .ok()
        }
        _ => None,
    };
    (msi, msix)
}

/// The NVIDIA GPUDirect clique capability, when asked for, at a free spot.
fn clique_cap(
    info: &VfioPciInfo,
    clique: Option<u8>,
) -> Result<Option<layout::ExtraCap>, VfioPciError> {
    let Some(clique) = clique else {
        return Ok(None);
    };
    if info.vendor_id() != 0x10de {
        warn!("vfio: GPUDirect clique capability on a non-NVIDIA device");
    }
    let at = caps::free_slot(&info.caps, 8).ok_or(VfioPciError::NoRoomForClique)?;
    Ok(Some(layout::gpudirect_clique_cap(at, clique)))
}

impl VfioPciDevice {
    /// A device whose interrupts are MSI/MSI-X only (no INTx pin).
    pub fn new(info: &VfioPciInfo, p: VfioPciParams) -> Result<Self, VfioPciError> {
        Self::with_intx(info, p, None)
    }

    /// A device with its INTx line too, for a device with an interrupt pin
    /// ([`VfioPciInfo::intx_pin`]).
    pub fn with_intx(
        info: &VfioPciInfo,
        mut p: VfioPciParams,
        intx: Option<IntxResources>,
    ) -> Result<Self, VfioPciError> {
        let intx = match (info.intx_pin, intx) {
            (1..=4, Some(r)) => Some(Arc::new(VfioIntx::new(
                p.ops.clone(),
                r.trigger,
                r.resample,
            ))),
            _ => None,
        };
        let pin = if intx.is_some() { info.intx_pin } else { 0 };
        let mut config = PciConfiguration::new(&header(&info.config, pin));
        config.set_u16(
            0x3e,
            u16::from_le_bytes([info.config[0x3e], info.config[0x3f]]),
        );
        let command_mask = declare_bars(&mut config, &p.bars)?;
        let (msi, msix) = emulated_interrupts(info, &mut p, &intx);
        let layout = layout::build(&LayoutInput {
            config: &info.config,
            caps: &info.caps,
            ext_caps: &info.ext_caps,
            msi: msi.is_some(),
            msix: msix.is_some(),
            extra: clique_cap(info, p.gpudirect_clique)?,
        });
        // Decoding starts on, as firmware leaves it after assigning the BARs: the guest may use
        // a device no driver enabled (sysfs resource files) and Linux keeps the addresses.
        let decode = if p.assigned {
            command_mask & (COMMAND_MEMORY_SPACE | COMMAND_IO_SPACE)
        } else {
            0
        };
        let _ = config.write_config_register(COMMAND_STATUS_REG, 0, &decode.to_le_bytes());
        config.set_u8(
            crate::capability::CAPABILITY_POINTER_OFFSET,
            layout.first_cap,
        );
        config.set_status_bits(STATUS_CAPABILITIES_LIST, layout.first_cap != 0);
        Ok(VfioPciDevice {
            ops: p.ops,
            gate: p.gate,
            config,
            bytes: layout.bytes,
            msi,
            msix,
            intx,
            command_mask,
            device_command: 0,
            command_unsynced: true,
        })
    }

    /// The parts of the memory BARs that can be mapped straight into the guest (everything
    /// VFIO lets us mmap, page-aligned, except the MSI-X table and PBA pages).
    pub fn mappable_areas(&self) -> Vec<MappableArea> {
        let mut out = Vec::new();
        for bar in self.config.bars() {
            if bar.kind == BarKind::Io || bar.index == ROM_BAR_INDEX {
                continue;
            }
            let Some(region) = self.ops.region_info(bar.index as u32) else {
                continue;
            };
            let trapped: Vec<(u64, u64)> = self
                .msix
                .iter()
                .flat_map(|m| [m.table(), m.pba()])
                .filter(|r| r.bar == bar.index)
                .map(|r| (r.offset, r.len))
                .collect();
            for (offset, size) in mappable_areas(&region, &trapped) {
                out.push(MappableArea {
                    bar: bar.index,
                    offset,
                    size,
                });
            }
        }
        out
    }

    /// Whether the guest has MSI or MSI-X enabled.
    pub fn interrupts_enabled(&self) -> (bool, bool) {
        (
            self.msi.as_ref().is_some_and(VfioMsi::enabled),
            self.msix.as_ref().is_some_and(VfioMsix::enabled),
        )
    }

    fn device_read(&self, offset: u64, data: &mut [u8]) {
        if let Err(e) = self.ops.read_region(VFIO_PCI_CONFIG_REGION, offset, data) {
            debug!("vfio: config read at {offset:#x}: {e}");
            data.fill(0xff);
        }
    }

    fn device_write(&self, offset: u64, data: &[u8]) {
        if let Err(e) = self.ops.write_region(VFIO_PCI_CONFIG_REGION, offset, data) {
            debug!("vfio: config write at {offset:#x}: {e}");
        }
    }

    /// Sends the guest's command register to the device, filtered.
    fn forward_command(&mut self) {
        let mut want = self.config.command() & self.command_mask;
        let enabling_dma =
            want & COMMAND_BUS_MASTER != 0 && self.device_command & COMMAND_BUS_MASTER == 0;
        if enabling_dma {
            let ready = match self.gate.dma_ready_now() {
                // Still mapping: the vCPU waits with no lock held and writes again
                // (deferred.rs); meanwhile Bus Master stays off in the device.
                None if super::deferred::defer(&self.gate) => Err(None),
                None => self.gate.wait_dma_ready().map_err(Some),
                Some(r) => r.map_err(Some),
            };
            match ready {
                Ok(()) => {}
                Err(None) => want &= !COMMAND_BUS_MASTER,
                Err(Some(e)) => {
                    warn!("vfio: bus master enable refused, guest RAM is not DMA-mapped: {e}");
                    want &= !COMMAND_BUS_MASTER;
                }
            }
        }
        if want != self.device_command {
            self.device_write(4, &want.to_le_bytes());
            self.device_command = want;
        }
    }

    /// Waits until the device may be touched; the first time, tells it the command register.
    fn ready(&mut self) -> bool {
        if self.gate.wait_ready().is_err() {
            return false;
        }
        if self.command_unsynced {
            self.command_unsynced = false;
            self.forward_command();
            if let Some(intx) = &self.intx {
                intx.start();
            }
        }
        true
    }

    fn write_header(&mut self, reg: usize, offset: u64, data: &[u8]) -> ConfigWriteResult {
        let result = self.config.write_config_register(reg, offset, data);
        if reg == COMMAND_STATUS_REG {
            self.forward_command();
            // Status error bits are write-1-to-clear in the device.
            let status: Vec<(u64, u8)> = data
                .iter()
                .enumerate()
                .map(|(i, b)| (offset + i as u64, *b))
                .filter(|(at, b)| *at >= 2 && *b != 0)
                .collect();
            for (at, b) in status {
                self.device_write(4 + at, &[b]);
            }
        }
        result
    }

    fn read_byte(&self, at: usize, device: &mut Option<[u8; 4]>) -> u8 {
        match self.bytes.get(at).copied().unwrap_or(Byte::Absent) {
            Byte::Header => self.config.read_u8(at),
            Byte::Device => {
                let dword = device.get_or_insert_with(|| {
                    let mut d = [0u8; 4];
                    self.device_read((at & !3) as u64, &mut d);
                    d
                });
                dword[at % 4]
            }
            Byte::Fixed(v) => v,
            Byte::Msi(rel) => self.msi.as_ref().map_or(0, |m| m.read(usize::from(rel))),
            Byte::Msix(rel) => self.msix.as_ref().map_or(0, |m| m.read(usize::from(rel))),
            Byte::Absent => 0xff,
        }
    }

    /// Applies a write to registers past the header byte by byte, in runs of one kind.
    fn write_bytes(&mut self, start: usize, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            let kind = self.bytes.get(start + i).copied().unwrap_or(Byte::Absent);
            let same = |b: Byte| {
                matches!(
                    (kind, b),
                    (Byte::Device, Byte::Device)
                        | (Byte::Msi(_), Byte::Msi(_))
                        | (Byte::Msix(_), Byte::Msix(_))
                )
            };
            let mut end = i + 1;
            while end < data.len()
                && same(self.bytes.get(start + end).copied().unwrap_or(Byte::Absent))
            {
                end += 1;
            }
            let run = &data[i..end];
            match kind {
                Byte::Device => self.device_write((start + i) as u64, run),
                Byte::Msi(rel) => {
                    if let Some(m) = self.msi.as_mut() {
                        m.write(usize::from(rel), run);
                    }
                }
                Byte::Msix(rel) => {
                    if let Some(m) = self.msix.as_mut() {
                        m.write(usize::from(rel), run);
                    }
                }
                _ => debug!("vfio: dropped config write at {:#x}", start + i),
            }
            i = end;
        }
    }
}

impl PciDevice for VfioPciDevice {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        if reg >= self.bytes.len() / 4 || !self.ready() {
            return 0xffff_ffff;
        }
        if reg == COMMAND_STATUS_REG {
            let mut d = [0u8; 4];
            self.device_read(4, &mut d);
            let status = u16::from_le_bytes([d[2], d[3]]) & !STATUS_CAPABILITIES_LIST
                | self.config.status() & STATUS_CAPABILITIES_LIST;
            return u32::from(status) << 16 | u32::from(self.config.command());
        }
        let mut device = None;
        let b: [u8; 4] = std::array::from_fn(|i| self.read_byte(reg * 4 + i, &mut device));
        u32::from_le_bytes(b)
    }

    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]) -> ConfigWriteResult {
        let fits = offset < 4 && offset as usize + data.len() <= 4 && !data.is_empty();
        if !fits || reg >= self.bytes.len() / 4 || !self.ready() {
            return ConfigWriteResult::default();
        }
        if reg < 16 {
            return self.write_header(reg, offset, data);
        }
        let (msi_before, msix_before) = self.interrupts_enabled();
        self.write_bytes(reg * 4 + offset as usize, data);
        let (msi_after, msix_after) = self.interrupts_enabled();
        ConfigWriteResult {
            msi_changed: msi_before != msi_after,
            msix_changed: msix_before != msix_after,
            ..Default::default()
        }
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if !self.ready() {
            return;
        }
        if self
            .msix
            .as_ref()
            .is_some_and(|m| m.read_bar(bar, offset, data))
        {
            return;
        }
        let region = if bar == ROM_BAR_INDEX {
            VFIO_PCI_ROM_REGION
        } else {
            bar as u32
        };
        if let Err(e) = self.ops.read_region(region, offset, data) {
            debug!("vfio: BAR {bar} read at {offset:#x}: {e}");
            data.fill(0xff);
        }
        if let Some(intx) = &self.intx {
            intx.bar_accessed();
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == ROM_BAR_INDEX || !self.ready() {
            return;
        }
        if self
            .msix
            .as_mut()
            .is_some_and(|m| m.write_bar(bar, offset, data))
        {
            return;
        }
        if let Err(e) = self.ops.write_region(bar as u32, offset, data) {
            debug!("vfio: BAR {bar} write at {offset:#x}: {e}");
        }
        if let Some(intx) = &self.intx {
            intx.bar_accessed();
        }
    }

    fn bars(&self) -> Vec<BarInfo> {
        self.config.bars()
    }
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
