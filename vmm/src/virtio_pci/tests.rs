use std::sync::atomic::AtomicU32;

use devices::virtio::ActivateError;
use hypervisor::fake::{Call, FakeHypervisor};
use hypervisor::Hypervisor;
use virtio_queue::QueueT;
use vm_memory::GuestAddress;

use super::common::*;
use super::*;
use crate::interrupts::GsiRouter;

#[derive(Default)]
struct Probe {
    activated: Mutex<Vec<Vec<u16>>>,
    /// Each activation's queues: (index, next_avail, next_used).
    places: Mutex<Vec<Vec<(u16, u16, u16)>>>,
    /// What `pause` reports.
    paused_at: Mutex<Option<Vec<QueuePosition>>>,
    acked: Mutex<u64>,
    resets: AtomicU32,
}

struct FakeDevice(Arc<Probe>);

impl VirtioDevice for FakeDevice {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[64, 64]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | 1
    }
    fn ack_features(&mut self, value: u64) {
        *self.0.acked.lock().unwrap() = value;
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill((offset as u8).wrapping_add(0x40));
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        self.0
            .activated
            .lock()
            .unwrap()
            .push(ctx.queues.iter().map(|q| q.index).collect());
        self.0.places.lock().unwrap().push(
            ctx.queues
                .iter()
                .map(|q| (q.index, q.queue.next_avail(), q.queue.next_used()))
                .collect(),
        );
        Ok(())
    }
    fn pause(&mut self) -> Result<Option<Vec<QueuePosition>>, ActivateError> {
        Ok(self.0.paused_at.lock().unwrap().clone())
    }
    fn reset(&mut self) -> bool {
        self.0.resets.fetch_add(1, Ordering::SeqCst);
        true
    }
}

const BAR_ADDR: u64 = 0x10_0000_0000;

fn transport() -> (VirtioPciDevice, Arc<Probe>, Arc<Activator>, FakeHypervisor) {
    let hv = FakeHypervisor::new();
    let vm = hv.create_vm().unwrap();
    let probe = Arc::new(Probe::default());
    let activator = Arc::new(Activator::new().unwrap());
    let msi =
        Arc::new(KvmMsiGroup::new(Arc::new(GsiRouter::new(vm.clone())), vm.clone(), 3).unwrap());
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let bar = BarConfig {
        index: 0,
        size: BAR_SIZE,
        kind: BarKind::Mem64,
        prefetchable: false,
        addr: BAR_ADDR,
    };
    let dev = VirtioPciDevice::new(VirtioPciParams {
        device: Box::new(FakeDevice(probe.clone())),
        bar,
        msi,
        mem,
        vm,
        activator: activator.clone(),
        worker_init: None,
    })
    .unwrap();
    (dev, probe, activator, hv)
}

fn wb(d: &mut VirtioPciDevice, off: u64, v: u64, len: usize) {
    d.write_bar(0, off, &v.to_le_bytes()[..len]);
}

#[test]
fn ids_class_and_the_four_virtio_capabilities_are_in_config_space() {
    let (mut d, ..) = transport();
    assert_eq!(
        d.read_config_register(0),
        0x1042_1af4,
        "virtio-blk modern device id"
    );
    assert_eq!(d.read_config_register(2) >> 8, 0x01_8000);
    let types: Vec<u8> = d
        .config
        .capabilities()
        .into_iter()
        .filter(|(id, _)| *id == 0x09)
        .map(|(_, off)| d.config.read_u8(off + 3))
        .collect();
    assert_eq!(
        types,
        vec![
            CFG_TYPE_COMMON,
            CFG_TYPE_ISR,
            CFG_TYPE_DEVICE,
            CFG_TYPE_NOTIFY
        ]
    );
    assert!(d.config.find_capability(0x11).is_some(), "MSI-X");
}

#[test]
fn driver_ok_activates_on_the_vmm_thread_with_ioeventfds_at_the_notify_area() {
    let (mut d, probe, activator, hv) = transport();
    // Enable memory decoding so the BAR address is live.
    let _ = d.write_config_register(1, 0, &[0x06, 0]);
    wb(&mut d, 0x14, 3, 1);
    wb(&mut d, 0x08, 1, 4);
    wb(&mut d, 0x0c, 1, 4);
    wb(&mut d, 0x14, 0x0b, 1);
    assert_eq!(*probe.acked.lock().unwrap(), VIRTIO_F_VERSION_1);
    wb(&mut d, 0x16, 1, 2);
    wb(&mut d, 0x1a, 1, 2);
    wb(&mut d, 0x1c, 1, 2);
    wb(&mut d, 0x14, 0x0f, 1);
    assert!(
        probe.activated.lock().unwrap().is_empty(),
        "not on the vCPU thread"
    );
    activator.run_pending();
    assert_eq!(*probe.activated.lock().unwrap(), vec![vec![1u16]]);
    let notify = IoEventAddress::Mmio(BAR_ADDR + NOTIFY_OFFSET + 4);
    assert!(hv.calls().contains(&Call::RegisterIoevent {
        addr: notify,
        datamatch: None
    }));
    // A notification through MMIO (slow path) still signals the queue.
    wb(&mut d, NOTIFY_OFFSET + 4, 1, 2);
    assert_eq!(d.notifiers[1].read().unwrap(), 1);
    // Device config window.
    let mut b = [0u8; 2];
    d.read_bar(0, DEVICE_OFFSET + 2, &mut b);
    assert_eq!(b, [0x42, 0x42]);
    // Reset: device reset, ioeventfds removed on the VMM thread.
    wb(&mut d, 0x14, 0, 1);
    activator.run_pending();
    assert_eq!(probe.resets.load(Ordering::SeqCst), 1);
    assert!(hv
        .calls()
        .contains(&Call::UnregisterIoevent { addr: notify }));
    let mut s = [0u8; 1];
    d.read_bar(0, 0x14, &mut s);
    assert_eq!(s[0], 0);
}

#[test]
fn garbage_anywhere_in_the_bar_never_panics() {
    let (mut d, _, activator, _) = transport();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = x % BAR_SIZE;
        let len = [1usize, 2, 4, 8][(x >> 60) as usize % 4];
        if x & 1 == 0 {
            d.write_bar(0, off, &x.to_le_bytes()[..len]);
        } else {
            let mut buf = [0u8; 8];
            d.read_bar((x >> 40) as usize % 7, off, &mut buf[..len]);
        }
        if x.is_multiple_of(97) {
            activator.run_pending();
        }
    }
}

/// A driver's setup: MSI-X on with vector 1 programmed, queue 1 on vector 1 and DRIVER_OK.
fn drive_to_driver_ok(d: &mut VirtioPciDevice, activator: &Activator) {
    let _ = d.write_config_register(1, 0, &[0x06, 0]);
    let msix = d.msix.offset();
    let _ = d.write_config_register(msix / 4, 2, &[0x00, 0x80]);
    let _ = d.msix.handle_config_write(&d.config, msix / 4);
    let entry = u64::from(MSIX_TABLE_OFFSET) + 16;
    wb(d, entry, 0xfee0_0000, 4);
    wb(d, entry + 8, 0x31, 4);
    wb(d, entry + 12, 0, 4);
    wb(d, 0x14, 3, 1);
    wb(d, 0x08, 1, 4);
    wb(d, 0x0c, 1, 4);
    wb(d, 0x14, 0x0b, 1);
    wb(d, 0x16, 1, 2);
    wb(d, 0x18, 32, 2);
    wb(d, 0x1a, 1, 2);
    wb(d, 0x20, 0x1000, 8);
    wb(d, 0x28, 0x2000, 8);
    wb(d, 0x30, 0x3000, 8);
    wb(d, 0x1c, 1, 2);
    wb(d, 0x14, 0x0f, 1);
    activator.run_pending();
}

#[test]
fn a_saved_function_restores_to_the_same_state_and_its_device_carries_on_where_it_stopped() {
    let (mut d, probe, activator, hv) = transport();
    drive_to_driver_ok(&mut d, &activator);
    let at = QueuePosition {
        index: 1,
        next_avail: 5,
        next_used: 4,
    };
    *probe.paused_at.lock().unwrap() = Some(vec![at]);
    let saved = d.save().unwrap();
    assert_eq!(saved.status, 0x0f);
    assert_eq!(saved.driver_features, VIRTIO_F_VERSION_1);
    let q = &saved.queues[1];
    assert_eq!(
        (q.size, q.vector, q.enabled, q.desc, q.driver, q.device),
        (32, 1, true, 0x1000, 0x2000, 0x3000)
    );
    assert_eq!((q.next_avail, q.next_used), (5, 4));
    assert_eq!(saved.msix_table[1], [0xfee0_0000, 0, 0x31, 0]);
    assert_eq!(saved.device_config[0], 0x40);

    // After the snapshot the device carries on from the same place, with the ioeventfds it
    // has (none registered twice).
    let registered = |hv: &FakeHypervisor| {
        hv.calls()
            .iter()
            .filter(|c| matches!(c, Call::RegisterIoevent { .. }))
            .count()
    };
    assert_eq!(registered(&hv), 1);
    d.resume_after_save(&saved);
    activator.run_pending();
    assert_eq!(probe.places.lock().unwrap().last(), Some(&vec![(1, 5, 4)]));
    assert_eq!(registered(&hv), 1);

    // Through JSON into a new function: it reads as the saved one did, its device is
    // activated at the saved place with its ioeventfd, and saving it again gives the same
    // state.
    let json = serde_json::to_string(&saved).unwrap();
    let back: state::VirtioPciState = serde_json::from_str(&json).unwrap();
    let (mut r, rprobe, ractivator, rhv) = transport();
    r.restore_begin(&back).unwrap();
    for reg in (4..10).chain((0..CONFIG_REGS).filter(|r| !(4..10).contains(r))) {
        let _ = r.write_config_register(reg, 0, &back.config[reg].to_le_bytes());
    }
    r.restore_finish(&back);
    ractivator.run_pending();
    assert_eq!(*rprobe.acked.lock().unwrap(), VIRTIO_F_VERSION_1);
    assert_eq!(*rprobe.places.lock().unwrap(), vec![vec![(1, 5, 4)]]);
    assert_eq!(registered(&rhv), 1);
    assert!(r.msix.table().is_enabled());
    let mut s = [0u8; 1];
    r.read_bar(0, 0x14, &mut s);
    assert_eq!(s[0], 0x0f);
    *rprobe.paused_at.lock().unwrap() = Some(vec![at]);
    let again = r.save().unwrap();
    assert_eq!(serde_json::to_string(&again).unwrap(), json);
}

#[test]
fn a_restore_onto_another_device_or_a_damaged_state_is_refused() {
    let (mut d, _probe, activator, _) = transport();
    drive_to_driver_ok(&mut d, &activator);
    let saved = d.save().unwrap();
    let (mut r, ..) = transport();
    let mut other = saved.clone();
    other.device_config[0] ^= 1;
    assert!(r
        .restore_begin(&other)
        .unwrap_err()
        .contains("configuration space"));
    let mut other = saved.clone();
    other.device_type = 1;
    assert!(r.restore_begin(&other).unwrap_err().contains("type 1"));
    let mut other = saved.clone();
    other.msix_table.pop();
    assert!(r.restore_begin(&other).unwrap_err().contains("MSI-X"));
    let mut other = saved.clone();
    other.config.truncate(3);
    assert!(r.restore_begin(&other).is_err());
    // A queue size the device cannot take is left at its maximum.
    let mut other = saved;
    other.queues[1].size = 3;
    r.restore_begin(&other).unwrap();
    r.restore_finish(&other);
    assert_eq!(r.common.queues[1].size, 64);
}
