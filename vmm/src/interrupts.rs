//! Interrupt routing: the VM-wide GSI routing table and MSI/MSI-X vector groups backed by
//! KVM irqfds, so a device (emulated or VFIO) interrupts the guest with no userspace hop.
//!
//! KVM_SET_GSI_ROUTING replaces the whole table, so one `GsiRouter` owns it: the legacy
//! PIC/IOAPIC routes KVM installs by default (GSIs 0-23), plus one MSI route per vector,
//! allocated from GSI 24 up.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use hypervisor::{IrqRoute, Vm};
use pci::{MsiInterruptGroup, MsiMessage};
use vmm_sys_util::eventfd::EventFd;

/// GSIs below this are the IOAPIC's pins.
pub const IOAPIC_PINS: u32 = 24;
const KVM_IRQCHIP_PIC_MASTER: u32 = 0;
const KVM_IRQCHIP_PIC_SLAVE: u32 = 1;
const KVM_IRQCHIP_IOAPIC: u32 = 2;
/// KVM's default routing table has 1024 entries at most on x86 (KVM_MAX_IRQ_ROUTES is 4096).
const MAX_GSI: u32 = 4096;

fn io_err(e: hypervisor::HypervisorError) -> io::Error {
    io::Error::other(e.to_string())
}

/// KVM's default routes: ISA IRQs 0-15 to the PICs and the IOAPIC, 16-23 to the IOAPIC.
fn default_routes() -> BTreeMap<u32, Vec<IrqRoute>> {
    let mut routes = BTreeMap::new();
    for gsi in 0..IOAPIC_PINS {
        let mut r = vec![IrqRoute::Irqchip {
            gsi,
            chip: KVM_IRQCHIP_IOAPIC,
            pin: gsi,
        }];
        if gsi < 8 {
            r.push(IrqRoute::Irqchip {
                gsi,
                chip: KVM_IRQCHIP_PIC_MASTER,
                pin: gsi,
            });
        } else if gsi < 16 {
            r.push(IrqRoute::Irqchip {
                gsi,
                chip: KVM_IRQCHIP_PIC_SLAVE,
                pin: gsi - 8,
            });
        }
        routes.insert(gsi, r);
    }
    routes
}

/// The VM's GSI routing table.
pub struct GsiRouter {
    vm: Arc<dyn Vm>,
    state: Mutex<RouterState>,
}

struct RouterState {
    routes: BTreeMap<u32, Vec<IrqRoute>>,
    next_gsi: u32,
}

impl GsiRouter {
    pub fn new(vm: Arc<dyn Vm>) -> Self {
        GsiRouter {
            vm,
            state: Mutex::new(RouterState {
                routes: default_routes(),
                next_gsi: IOAPIC_PINS,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RouterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh GSI for an MSI vector.
    pub fn allocate_gsi(&self) -> io::Result<u32> {
        let mut s = self.lock();
        if s.next_gsi >= MAX_GSI {
            return Err(io::Error::other("out of GSIs for MSI vectors"));
        }
        s.next_gsi += 1;
        Ok(s.next_gsi - 1)
    }

    /// Point `gsi` at `msg` (`None` removes the route) and push the table to KVM.
    pub fn set_msi_route(&self, gsi: u32, msg: Option<MsiMessage>) -> io::Result<()> {
        self.set_msi_routes(&[(gsi, msg)])
    }

    /// Apply every change, then push the table to KVM once (KVM_SET_GSI_ROUTING replaces the
    /// whole table: one call per change would cost a GPU with hundreds of vectors hundreds of
    /// calls, each with the whole table, when its driver enables MSI-X).
    pub fn set_msi_routes(&self, changes: &[(u32, Option<MsiMessage>)]) -> io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut s = self.lock();
        for &(gsi, msg) in changes {
            match msg {
                Some(m) => s.routes.insert(
                    gsi,
                    vec![IrqRoute::Msi {
                        gsi,
                        address: m.address,
                        data: m.data,
                    }],
                ),
                None => s.routes.remove(&gsi),
            };
        }
        let table: Vec<IrqRoute> = s.routes.values().flatten().copied().collect();
        self.vm.set_gsi_routing(&table).map_err(io_err)
    }
}

struct Vector {
    gsi: u32,
    evt: EventFd,
    msg: Option<MsiMessage>,
    masked: bool,
    /// Whether the irqfd is registered with KVM (enabled, unmasked, with a message).
    wired: bool,
    /// The message KVM's routing table holds for this GSI (pushed only when it changes).
    routed: Option<MsiMessage>,
}

impl Vector {
    fn wants_wiring(&self, enabled: bool) -> bool {
        enabled && !self.masked && self.msg.is_some()
    }
}

/// An MSI or MSI-X vector group: one GSI, route and irqfd per vector. A masked vector's
/// irqfd is unregistered; interrupts raised meanwhile stay counted in its eventfd and KVM
/// delivers them when the irqfd is registered again on unmask (the pending-bit semantics).
pub struct KvmMsiGroup {
    router: Arc<GsiRouter>,
    vm: Arc<dyn Vm>,
    vectors: Mutex<Vec<Vector>>,
    enabled: Mutex<bool>,
}

impl KvmMsiGroup {
    pub fn new(router: Arc<GsiRouter>, vm: Arc<dyn Vm>, count: u16) -> io::Result<Self> {
        let mut vectors = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            vectors.push(Vector {
                gsi: router.allocate_gsi()?,
                evt: EventFd::new(libc::EFD_NONBLOCK)?,
                msg: None,
                masked: true,
                wired: false,
                routed: None,
            });
        }
        Ok(KvmMsiGroup {
            router,
            vm,
            vectors: Mutex::new(vectors),
            enabled: Mutex::new(false),
        })
    }

    /// The eventfd of `vector`: a VFIO device or a device thread writes it to interrupt.
    pub fn eventfd(&self, vector: u16) -> Option<EventFd> {
        let v = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        v.get(usize::from(vector))
            .and_then(|v| v.evt.try_clone().ok())
    }

    /// Bring the vectors' routes and irqfds in line with enabled/masked/message state: every
    /// route that must change goes to KVM in one routing update, then irqfds are registered
    /// or unregistered. A masked vector keeps its route (nothing changes until it is wired).
    fn rewire(&self, vs: &mut [Vector], enabled: bool) -> io::Result<()> {
        let changes: Vec<(u32, Option<MsiMessage>)> = vs
            .iter()
            .filter(|v| v.wants_wiring(enabled) && v.routed != v.msg)
            .map(|v| (v.gsi, v.msg))
            .collect();
        self.router.set_msi_routes(&changes)?;
        for v in vs.iter_mut() {
            let want = v.wants_wiring(enabled);
            if want {
                v.routed = v.msg;
            }
            if want && !v.wired {
                self.vm.register_irqfd(&v.evt, v.gsi).map_err(io_err)?;
                v.wired = true;
            } else if !want && v.wired {
                self.vm.unregister_irqfd(&v.evt, v.gsi).map_err(io_err)?;
                v.wired = false;
            }
        }
        Ok(())
    }
}

impl MsiInterruptGroup for KvmMsiGroup {
    fn update(&self, vector: u16, msg: MsiMessage, masked: bool) -> io::Result<()> {
        let enabled = *self.enabled.lock().unwrap_or_else(|e| e.into_inner());
        let mut vs = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        let i = usize::from(vector);
        let Some(v) = vs.get_mut(i) else {
            return Ok(()); // a vector the device does not have: ignore, as hardware would
        };
        v.msg = Some(msg);
        v.masked = masked;
        self.rewire(&mut vs[i..=i], enabled)
    }

    fn trigger(&self, vector: u16) -> io::Result<()> {
        let vs = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        match vs.get(usize::from(vector)) {
            Some(v) => v.evt.write(1),
            None => Ok(()),
        }
    }

    fn enable(&self) -> io::Result<()> {
        *self.enabled.lock().unwrap_or_else(|e| e.into_inner()) = true;
        let mut vs = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        self.rewire(&mut vs, true)
    }

    fn disable(&self) -> io::Result<()> {
        *self.enabled.lock().unwrap_or_else(|e| e.into_inner()) = false;
        let mut vs = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        self.rewire(&mut vs, false)
    }

    /// A vector not wired to KVM whose eventfd counted an interrupt: asked with a
    /// zero-timeout ppoll, which reads nothing (the count is delivered on unmask).
    fn pending(&self, vector: u16) -> bool {
        let vs = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        let Some(v) = vs.get(usize::from(vector)) else {
            return false;
        };
        if v.wired {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: v.evt.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: one pollfd and a timespec that outlive the call; no signal mask.
        let n = unsafe {
            libc::syscall(
                libc::SYS_ppoll,
                &mut pfd as *mut libc::pollfd,
                1 as libc::nfds_t,
                &zero as *const libc::timespec,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        n == 1 && pfd.revents & libc::POLLIN != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::fake::{Call, FakeHypervisor};
    use hypervisor::Hypervisor;

    fn msg(data: u32) -> MsiMessage {
        MsiMessage {
            address: 0xfee0_0000,
            data,
        }
    }

    #[test]
    fn routes_keep_the_legacy_table_and_add_msi_entries() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let router = GsiRouter::new(vm);
        let gsi = router.allocate_gsi().unwrap();
        assert_eq!(gsi, 24);
        router.set_msi_route(gsi, Some(msg(0x41))).unwrap();
        let Some(Call::SetGsiRouting(table)) = hv.calls().into_iter().last() else {
            panic!()
        };
        // 16 ISA IRQs on IOAPIC + PIC, 8 more on the IOAPIC, one MSI.
        assert_eq!(table.len(), 16 * 2 + 8 + 1);
        assert!(table.contains(&IrqRoute::Msi {
            gsi: 24,
            address: 0xfee0_0000,
            data: 0x41
        }));
        assert!(table.contains(&IrqRoute::Irqchip {
            gsi: 4,
            chip: 2,
            pin: 4
        }));
        assert!(table.contains(&IrqRoute::Irqchip {
            gsi: 9,
            chip: 1,
            pin: 1
        }));
    }

    #[test]
    fn vectors_are_wired_only_when_enabled_unmasked_and_programmed() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let router = Arc::new(GsiRouter::new(vm.clone()));
        let g = KvmMsiGroup::new(router, vm, 2).unwrap();
        g.update(0, msg(0x30), false).unwrap();
        assert!(
            !hv.calls()
                .iter()
                .any(|c| matches!(c, Call::RegisterIrqfd { .. })),
            "not enabled yet"
        );
        g.enable().unwrap();
        assert!(hv.calls().contains(&Call::RegisterIrqfd {
            gsi: 24,
            resample: false
        }));
        assert!(
            !hv.calls().contains(&Call::RegisterIrqfd {
                gsi: 25,
                resample: false
            }),
            "vector 1 has no message"
        );
        g.update(0, msg(0x30), true).unwrap();
        assert!(
            hv.calls().contains(&Call::UnregisterIrqfd { gsi: 24 }),
            "masking unwires"
        );
        // A trigger while masked stays pending in the eventfd, and shows as pending without
        // being consumed.
        assert!(!g.pending(0));
        g.trigger(0).unwrap();
        assert!(g.pending(0));
        assert!(g.pending(0), "asking consumed it");
        assert_eq!(g.eventfd(0).unwrap().read().unwrap(), 1);
        assert!(!g.pending(0));
        assert!(!g.pending(7), "no such vector");
        // Out-of-range vectors are ignored.
        g.update(9, msg(1), false).unwrap();
        g.trigger(9).unwrap();
    }

    fn count(hv: &FakeHypervisor, kind: fn(&Call) -> bool) -> usize {
        hv.calls().iter().filter(|c| kind(c)).count()
    }

    fn routing_pushes(hv: &FakeHypervisor) -> usize {
        count(hv, |c| matches!(c, Call::SetGsiRouting(_)))
    }

    #[test]
    fn routes_go_to_kvm_once_per_change() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let router = Arc::new(GsiRouter::new(vm.clone()));
        let g = KvmMsiGroup::new(router, vm, 64).unwrap();
        // A driver programs every MSI-X entry (masked, MSI-X still disabled): no pushes.
        for v in 0..64 {
            g.update(v, msg(0x40 + u32::from(v)), true).unwrap();
        }
        assert_eq!(routing_pushes(&hv), 0);
        // It unmasks them, then enables MSI-X: one push for all 64 routes.
        for v in 0..64 {
            g.update(v, msg(0x40 + u32::from(v)), false).unwrap();
        }
        assert_eq!(routing_pushes(&hv), 0, "still disabled");
        g.enable().unwrap();
        assert_eq!(routing_pushes(&hv), 1);
        let Some(Call::SetGsiRouting(table)) = hv
            .calls()
            .into_iter()
            .rfind(|c| matches!(c, Call::SetGsiRouting(_)))
        else {
            panic!()
        };
        assert_eq!(table.len(), 16 * 2 + 8 + 64);
        let irqfds = |hv: &FakeHypervisor| count(hv, |c| matches!(c, Call::RegisterIrqfd { .. }));
        assert_eq!(irqfds(&hv), 64);
        // Rewriting an entry with the same message, masking and unmasking: no push.
        g.update(3, msg(0x43), false).unwrap();
        g.update(3, msg(0x43), true).unwrap();
        g.update(3, msg(0x43), false).unwrap();
        assert_eq!(routing_pushes(&hv), 1);
        assert_eq!(irqfds(&hv), 65, "re-wired on unmask");
        // A new message for a live vector: one push, which KVM sees.
        g.update(3, msg(0x99), false).unwrap();
        assert_eq!(routing_pushes(&hv), 2);
        assert!(
            matches!(hv.calls().into_iter().last(), Some(Call::SetGsiRouting(t))
            if t.contains(&IrqRoute::Msi { gsi: 27, address: 0xfee0_0000, data: 0x99 }))
        );
        // Disable and enable again: routes unchanged, nothing pushed.
        g.disable().unwrap();
        g.enable().unwrap();
        assert_eq!(routing_pushes(&hv), 2);
    }
}
