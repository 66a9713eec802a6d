//! MSI and MSI-X of a passed-through device, emulated with this crate's [`Msi`] and [`Msix`]
//! at the device's own capability offsets, and wired to VFIO so the device's interrupts go
//! device -> eventfd -> (the VMM's irqfd) -> guest with no userspace hop.
//!
//! Each capability lives in a private "shadow" [`PciConfiguration`] where `Msi`/`Msix` put
//! it; guest accesses to the device's capability are translated byte by byte to the shadow
//! (MSI's 32-bit layout differs from the shadow's 64-bit one only by where data, mask and
//! pending sit). [`VfioIrqGroup`] wraps the VMM's [`MsiInterruptGroup`]: enabling the
//! capability also hands the vectors' eventfds to VFIO_DEVICE_SET_IRQS, disabling it
//! disables them there. Masking stays in the VMM's group (a masked vector's irqfd is
//! detached and the eventfd keeps counting), so the hardware mask is never touched.
//!
//! [`VfioIntx`] is the fallback: the INTx line signals an eventfd the VMM wires to a
//! level-triggered GSI (KVM irqfd with a resample eventfd). VFIO masks the line when it fires;
//! the guest's EOI writes the resample eventfd, which VFIO takes as "unmask". VFIO allows one
//! interrupt mode at a time, so INTx is turned off while MSI or MSI-X is on. A driver that
//! takes no unmask eventfd (some mediated devices': the kernel's mtty sample answers ENOTTY)
//! gets its line unmasked at each of the guest's trapped BAR accesses instead, which is how
//! QEMU treats such devices: the guest's interrupt handler reads the device's registers
//! before it is done, so the line is unmasked by then.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use log::warn;
use vmm_sys_util::eventfd::EventFd;

use super::ops::{VfioDeviceOps, VfioIrqKind};
use crate::bar::BarConfig;
use crate::configuration::{PciConfiguration, PciHeader};
use crate::interrupt::{MsiInterruptGroup, MsiMessage};
use crate::msi::{Msi, MsiError};
use crate::msix::{Msix, MsixParams};

/// The device's INTx line through VFIO (see the module documentation).
pub struct VfioIntx {
    ops: Arc<dyn VfioDeviceOps>,
    trigger: EventFd,
    resample: EventFd,
    /// (INTx is on in VFIO, MSI/MSI-X capabilities on now).
    state: Mutex<(bool, u32)>,
    /// The driver took no unmask eventfd: unmask at BAR accesses.
    unmask_on_access: std::sync::atomic::AtomicBool,
}

impl VfioIntx {
    /// `trigger` asserts the guest's GSI; a write to `resample` means the guest EOIed it.
    pub fn new(ops: Arc<dyn VfioDeviceOps>, trigger: EventFd, resample: EventFd) -> Self {
        VfioIntx {
            ops,
            trigger,
            resample,
            state: Mutex::new((false, 0)),
            unmask_on_access: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, u32)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn turn_on(&self, s: &mut (bool, u32)) {
        if s.0 || s.1 > 0 {
            return;
        }
        if let Err(e) = self.ops.enable_irqs(VfioIrqKind::Intx, &[&self.trigger]) {
            warn!("vfio: INTx stays off: {e}");
            return;
        }
        let by_access = match self.ops.set_intx_unmask_fd(&self.resample) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {
                if !self.unmask_on_access.load(Relaxed) {
                    log::info!(
                        "vfio: the device's driver takes no INTx unmask eventfd: its line is \
                         unmasked at the guest's BAR accesses"
                    );
                }
                true
            }
            Err(e) => {
                warn!("vfio: INTx stays off: {e}");
                let _ = self.ops.disable_irqs(VfioIrqKind::Intx);
                return;
            }
        };
        self.unmask_on_access.store(by_access, Relaxed);
        s.0 = true;
    }

    /// The guest read or wrote one of the device's trapped BARs: for a driver that takes no
    /// unmask eventfd, that unmasks the line (see the module documentation).
    pub fn bar_accessed(&self) {
        if !self.unmask_on_access.load(Relaxed) {
            return;
        }
        let s = self.lock();
        if s.0 {
            if let Err(e) = self.ops.unmask_intx() {
                log::debug!("vfio: INTx unmask: {e}");
            }
        }
    }

    fn turn_off(&self, s: &mut (bool, u32)) {
        if s.0 {
            if let Err(e) = self.ops.disable_irqs(VfioIrqKind::Intx) {
                warn!("vfio: turning INTx off: {e}");
            }
            s.0 = false;
        }
    }

    /// Turns the line on (when no MSI/MSI-X is on).
    pub fn start(&self) {
        let mut s = self.lock();
        self.turn_on(&mut s);
    }

    /// MSI or MSI-X is being enabled.
    fn suspend(&self) {
        let mut s = self.lock();
        self.turn_off(&mut s);
        s.1 += 1;
    }

    /// MSI or MSI-X was disabled.
    fn resume(&self) {
        let mut s = self.lock();
        s.1 = s.1.saturating_sub(1);
        self.turn_on(&mut s);
    }

    /// Whether the line is on in VFIO.
    pub fn is_on(&self) -> bool {
        self.lock().0
    }
}

/// An interrupt group that programs VFIO when the guest enables or disables the capability.
pub struct VfioIrqGroup {
    inner: Arc<dyn MsiInterruptGroup>,
    fds: Vec<EventFd>,
    ops: Arc<dyn VfioDeviceOps>,
    kind: VfioIrqKind,
    /// Vectors to hand to VFIO on enable (MSI: what multiple-message enable asks for).
    wanted: Mutex<usize>,
    /// The INTx line to turn off while this capability is on.
    intx: Option<Arc<VfioIntx>>,
}

impl VfioIrqGroup {
    /// `fds[i]` is the eventfd that delivers vector `i` through `inner`.
    pub fn new(
        inner: Arc<dyn MsiInterruptGroup>,
        fds: Vec<EventFd>,
        ops: Arc<dyn VfioDeviceOps>,
        kind: VfioIrqKind,
    ) -> Self {
        let wanted = fds.len();
        VfioIrqGroup {
            inner,
            fds,
            ops,
            kind,
            wanted: Mutex::new(wanted),
            intx: None,
        }
    }

    /// Turns `intx` off while the capability is on.
    pub fn with_intx(mut self, intx: Option<Arc<VfioIntx>>) -> Self {
        self.intx = intx;
        self
    }

    fn set_wanted(&self, n: usize) {
        *self.wanted.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }

    fn wanted(&self) -> usize {
        let n = *self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        n.min(self.fds.len())
            .min(self.ops.irq_count(self.kind) as usize)
    }
}

impl MsiInterruptGroup for VfioIrqGroup {
    fn update(&self, vector: u16, msg: MsiMessage, masked: bool) -> io::Result<()> {
        self.inner.update(vector, msg, masked)
    }

    fn trigger(&self, vector: u16) -> io::Result<()> {
        self.inner.trigger(vector)
    }

    fn enable(&self) -> io::Result<()> {
        if let Some(intx) = &self.intx {
            intx.suspend();
        }
        self.inner.enable()?;
        let n = self.wanted();
        if n == 0 {
            return Ok(());
        }
        let fds: Vec<&EventFd> = self.fds[..n].iter().collect();
        self.ops.enable_irqs(self.kind, &fds)
    }

    fn pending(&self, vector: u16) -> bool {
        self.inner.pending(vector)
    }

    fn disable(&self) -> io::Result<()> {
        let vfio = self.ops.disable_irqs(self.kind);
        if let Some(intx) = &self.intx {
            intx.resume();
        }
        self.inner.disable()?;
        vfio
    }
}

/// A shadow configuration space holding one capability at its first offset.
fn shadow() -> PciConfiguration {
    PciConfiguration::new(&PciHeader::default())
}

fn shadow_write(shadow: &mut PciConfiguration, off: usize, byte: u8) {
    let _ = shadow.write_config_register(off / 4, (off % 4) as u64, &[byte]);
}

/// The device's MSI capability, emulated.
pub struct VfioMsi {
    len: usize,
    is64: bool,
    shadow: PciConfiguration,
    msi: Msi,
    group: Arc<VfioIrqGroup>,
}

impl VfioMsi {
    /// From the device's message control register.
    pub fn new(control: u16, group: Arc<VfioIrqGroup>) -> Result<Self, MsiError> {
        let vectors = 1u8 << ((control >> 1) & 7).min(5);
        let maskable = control & (1 << 8) != 0;
        let mut shadow = shadow();
        let msi = Msi::new(&mut shadow, vectors, maskable, group.clone())?;
        Ok(VfioMsi {
            len: super::caps::msi_len(control),
            is64: control & (1 << 7) != 0,
            shadow,
            msi,
            group,
        })
    }

    /// The shadow offset of byte `rel` of the device's layout (`None`: reserved, reads 0).
    fn shadow_offset(&self, rel: usize) -> Option<usize> {
        let shadow_rel = match (self.is64, rel) {
            (_, 2..=7) => rel,
            (true, 8..=13) => rel,
            (true, 16..=23) => rel,
            (false, 8..=9) => rel + 4,
            (false, 12..=19) => rel + 4,
            _ => return None,
        };
        (rel < self.len).then_some(self.msi.offset() + shadow_rel)
    }

    /// Byte `rel` (2.. of the capability) as the guest reads it.
    pub fn read(&self, rel: usize) -> u8 {
        let Some(off) = self.shadow_offset(rel) else {
            return 0;
        };
        let b = self.shadow.read_u8(off);
        if rel == 2 && !self.is64 {
            b & !0x80
        } else {
            b
        }
    }

    /// A guest write of `data` starting at byte `rel` of the capability.
    pub fn write(&mut self, rel: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let Some(off) = self.shadow_offset(rel + i) {
                shadow_write(&mut self.shadow, off, *b);
            }
        }
        let control = self.shadow.read_u16(self.msi.offset() + 2);
        let mme = (control >> 4) & 7;
        let mmc = (control >> 1) & 7;
        self.group.set_wanted(1 << mme.min(mmc));
        self.msi
            .handle_config_write(&mut self.shadow, self.msi.offset() / 4);
    }

    pub fn enabled(&self) -> bool {
        self.msi.state().enabled
    }
}

/// The device's MSI-X capability and its table and PBA, emulated.
pub struct VfioMsix {
    shadow: PciConfiguration,
    msix: Msix,
}

/// Where an MSI-X structure sits: BAR index, offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixRegion {
    pub bar: usize,
    pub offset: u64,
    pub len: u64,
}

impl VfioMsix {
    /// `bars` are the device's BARs (only index, size and kind matter).
    pub fn new(
        params: MsixParams,
        bars: &[BarConfig],
        group: Arc<VfioIrqGroup>,
    ) -> Result<Self, String> {
        let mut shadow = shadow();
        for index in [params.table_bar, params.pba_bar] {
            let Some(bar) = bars.iter().find(|b| b.index == index) else {
                return Err(format!(
                    "MSI-X structures in BAR {index}, which the device lacks"
                ));
            };
            if shadow.bar_size(index).is_none() {
                let bar = BarConfig { addr: 0, ..*bar };
                shadow.add_bar(&bar).map_err(|e| e.to_string())?;
            }
        }
        let msix = Msix::new(&mut shadow, params, group).map_err(|e| e.to_string())?;
        Ok(VfioMsix { shadow, msix })
    }

    pub fn table(&self) -> MsixRegion {
        let p = self.msix.params();
        MsixRegion {
            bar: p.table_bar,
            offset: u64::from(p.table_offset),
            len: self.msix.table().table_len(),
        }
    }

    pub fn pba(&self) -> MsixRegion {
        let p = self.msix.params();
        MsixRegion {
            bar: p.pba_bar,
            offset: u64::from(p.pba_offset),
            len: self.msix.table().pba_len(),
        }
    }

    /// Byte `rel` (2..12) of the capability.
    pub fn read(&self, rel: usize) -> u8 {
        self.shadow.read_u8(self.msix.offset() + rel)
    }

    /// A guest write at byte `rel` of the capability (only enable and function mask stick).
    pub fn write(&mut self, rel: usize, data: &[u8]) {
        let base = self.msix.offset();
        for (i, b) in data.iter().enumerate() {
            if (2..12).contains(&(rel + i)) {
                shadow_write(&mut self.shadow, base + rel + i, *b);
            }
        }
        self.msix.handle_config_write(&self.shadow, base / 4);
    }

    pub fn enabled(&self) -> bool {
        self.msix.table().is_enabled()
    }

    /// A BAR read that lands in the table or PBA; false when elsewhere.
    pub fn read_bar(&self, bar: usize, offset: u64, data: &mut [u8]) -> bool {
        self.msix.read_bar(bar, offset, data)
    }

    /// A BAR write that lands in the table or PBA; false when elsewhere.
    pub fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) -> bool {
        self.msix.write_bar(bar, offset, data)
    }
}
