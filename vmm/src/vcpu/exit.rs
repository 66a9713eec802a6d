//! Exit dispatch: one pure function from a vCPU exit to the bus access it means.

use std::sync::Arc;

use devices::Bus;
use hypervisor::VmExit;

/// The guest's I/O spaces (shared with the PCI BAR relocator, which moves BARs on them).
#[derive(Default)]
pub struct Buses {
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
}

impl Buses {
    /// Take every device off both buses. The PCI segment on them holds the buses (to move
    /// BARs), so a VM's devices (their workers, files, disk locks, guest memory) go only when
    /// emptied: its teardown, or a build that failed after devices were added, does it.
    pub fn clear(&self) {
        self.pio.clear();
        self.mmio.clear();
    }
}

/// Empties [`Buses`] when dropped while armed: a VM build that fails half-way.
pub struct ClearOnDrop(Option<Arc<Buses>>);

impl ClearOnDrop {
    pub fn new(buses: &Arc<Buses>) -> Self {
        ClearOnDrop(Some(buses.clone()))
    }

    /// The build succeeded: whoever runs the VM clears the buses at its end.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.clear();
        }
    }
}

/// What the vCPU loop does after an exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Run again.
    Continue,
    /// Another thread kicked us; check for a stop request.
    Interrupted,
    /// The guest asked for a reset (or triple-faulted).
    Reset,
    /// The guest asked to power off.
    PowerOff,
    /// The guest cannot continue.
    Fatal(String),
}

/// Handle one exit. Accesses no device claims read as all-ones and writes are dropped, as on
/// a real bus with nothing behind the address.
pub fn dispatch(buses: &Buses, exit: VmExit<'_>) -> ExitAction {
    match exit {
        VmExit::IoIn { port, data } => {
            if !buses.pio.read(u64::from(port), data) {
                data.fill(0xff);
                log::trace!("unclaimed port read {port:#x} len {}", data.len());
            }
            ExitAction::Continue
        }
        VmExit::IoOut { port, data } => {
            if !buses.pio.write(u64::from(port), data) {
                log::trace!("unclaimed port write {port:#x} {data:02x?}");
            }
            ExitAction::Continue
        }
        VmExit::MmioRead { addr, data } => {
            if !buses.mmio.read(addr, data) {
                data.fill(0xff);
                log::debug!("unclaimed MMIO read {addr:#x} len {}", data.len());
            }
            ExitAction::Continue
        }
        VmExit::MmioWrite { addr, data } => {
            let (claimed, deferred) =
                pci::vfio::deferred::with_deferral(|| buses.mmio.write(addr, data));
            if let Some(gate) = deferred {
                // A Bus Master Enable waiting for guest RAM's DMA mapping: waited for here,
                // with no bus or device lock held, then the same write again.
                let _ = gate.wait_dma_ready();
                buses.mmio.write(addr, data);
            }
            if !claimed {
                log::debug!("unclaimed MMIO write {addr:#x} {data:02x?}");
            }
            ExitAction::Continue
        }
        // With the in-kernel LAPIC, HLT is handled in the kernel; a userspace HLT exit means a
        // vCPU is parked with nothing that could wake it, which for us only happens at the end.
        VmExit::Hlt => ExitAction::Continue,
        VmExit::Interrupted => ExitAction::Interrupted,
        // KVM reports a triple fault as a shutdown; Linux's reboot=t uses exactly that.
        VmExit::Shutdown | VmExit::Reset => ExitAction::Reset,
        VmExit::PowerOff => ExitAction::PowerOff,
        VmExit::FailEntry { reason } => ExitAction::Fatal(format!(
            "the CPU refused to enter the guest (hardware reason {reason:#x})"
        )),
        VmExit::InternalError { suberror } => ExitAction::Fatal(format!(
            "the hypervisor failed to emulate a guest instruction (suberror {suberror})"
        )),
        VmExit::Unhandled { code } => ExitAction::Fatal(format!("unhandled vCPU exit {code}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use devices::BusDevice;
    use hypervisor::fake::{Call, FakeHypervisor, ScriptedExit};
    use hypervisor::Hypervisor;

    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }
    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8 + 0x10);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn pio_and_mmio_exits_reach_the_device_at_its_offset() {
        let buses = Buses::default();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        buses.pio.insert(dev.clone(), 0x3f8, 8).unwrap();
        buses.mmio.insert(dev.clone(), 0xd000_0000, 0x1000).unwrap();
        let hv = FakeHypervisor::new();
        hv.script(
            0,
            [
                ScriptedExit::IoOut {
                    port: 0x3f9,
                    data: vec![7],
                },
                ScriptedExit::IoIn {
                    port: 0x3fa,
                    len: 1,
                },
                ScriptedExit::MmioWrite {
                    addr: 0xd000_0010,
                    data: vec![1, 2, 3, 4],
                },
                ScriptedExit::MmioRead {
                    addr: 0xd000_0004,
                    len: 2,
                },
                ScriptedExit::IoIn {
                    port: 0x1234,
                    len: 2,
                },
                ScriptedExit::PowerOff,
            ],
        );
        let vm = hv.create_vm().unwrap();
        let mut vcpu = vm.create_vcpu(0).unwrap();
        let mut actions = Vec::new();
        loop {
            let a = dispatch(&buses, vcpu.run().unwrap());
            let done = a != ExitAction::Continue;
            actions.push(a);
            if done {
                break;
            }
        }
        assert_eq!(actions.last(), Some(&ExitAction::PowerOff));
        assert_eq!(
            dev.lock().unwrap().writes,
            vec![(1, vec![7]), (0x10, vec![1, 2, 3, 4])]
        );
        let ins: Vec<_> = hv
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::InData { data, .. } => Some(data),
                _ => None,
            })
            .collect();
        // Port 0x3fa is offset 2; MMIO offset 4; the unclaimed port reads all-ones.
        assert_eq!(ins, vec![vec![0x12], vec![0x14, 0x14], vec![0xff, 0xff]]);
    }

    #[test]
    fn lifecycle_exits_map_to_actions() {
        let buses = Buses::default();
        assert_eq!(dispatch(&buses, VmExit::Shutdown), ExitAction::Reset);
        assert_eq!(dispatch(&buses, VmExit::Reset), ExitAction::Reset);
        assert_eq!(
            dispatch(&buses, VmExit::Interrupted),
            ExitAction::Interrupted
        );
        assert!(
            matches!(dispatch(&buses, VmExit::FailEntry { reason: 7 }), ExitAction::Fatal(m) if m.contains("0x7"))
        );
        assert!(matches!(
            dispatch(&buses, VmExit::Unhandled { code: 99 }),
            ExitAction::Fatal(_)
        ));
    }
}
