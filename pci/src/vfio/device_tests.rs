use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::allocator::BarRequest;
use crate::interrupt::{MsiEvent, RecordingMsiGroup};
use crate::vfio::{FakeVfioCall, FakeVfioDevice, RegionInfo};

const TABLE: u64 = 0x3000;
const PBA: u64 = 0x3800;

/// A GPU-like device: BAR0 16 MiB (MSI-X table and PBA inside), BAR1 (+2) 256 GiB 64-bit
/// prefetchable, BAR3 256 bytes, BAR5 128 I/O ports, a 512 KiB ROM; capabilities PM @0x60,
/// MSI @0x68 (64-bit, 1 vector), PCIe v2 @0x78, MSI-X @0xb4 (4 vectors), AGP @0xd0 (hidden);
/// extended: SR-IOV @0x100 (hidden), AER @0x140.
fn gpu_config() -> Vec<u8> {
    let mut c = vec![0u8; 4096];
    let mut put = |off: usize, bytes: &[u8]| c[off..off + bytes.len()].copy_from_slice(bytes);
    put(0, &[0xde, 0x10, 0x35, 0x23]);
    put(4, &[0x00, 0x00, 0x10, 0x00]); // status: capability list
    put(8, &[0xa1, 0x00, 0x02, 0x03]); // rev a1, class 030200
    put(0x10, &0u32.to_le_bytes());
    put(0x14, &0x0000_000cu32.to_le_bytes());
    put(0x1c, &0u32.to_le_bytes());
    put(0x24, &1u32.to_le_bytes());
    put(0x2c, &[0xde, 0x10, 0x99, 0x16]);
    put(0x34, &[0x60]);
    put(0x3e, &[0x05, 0x07]);
    put(0x60, &[0x01, 0x68, 0x03, 0x00]);
    put(0x68, &[0x05, 0x78, 0x80, 0x00]);
    put(0x78, &[0x10, 0xb4, 0x02, 0x00]);
    put(0xb4, &[0x11, 0xd0, 0x03, 0x00]);
    put(0xb8, &(TABLE as u32).to_le_bytes());
    put(0xbc, &(PBA as u32).to_le_bytes());
    put(0xd0, &[0x02, 0x00, 0x30, 0x00]);
    put(0x100, &0x1401_0010u32.to_le_bytes());
    put(0x140, &0x0002_0001u32.to_le_bytes());
    c
}

fn region(size: u64, mmap: bool) -> RegionInfo {
    RegionInfo {
        size,
        readable: true,
        writable: true,
        mmappable: mmap,
        sparse_areas: None,
    }
}

fn fake_gpu() -> Arc<FakeVfioDevice> {
    Arc::new(
        FakeVfioDevice::new(gpu_config())
            .with_region(0, region(16 << 20, true))
            .with_region(1, region(256 << 30, true))
            .with_region(3, region(0x100, true))
            .with_region(5, region(0x80, false))
            .with_region(6, region(512 << 10, false))
            .with_irqs(VfioIrqKind::Msi, 1)
            .with_irqs(VfioIrqKind::Msix, 4),
    )
}

/// A gate that counts waits and can refuse DMA; while `mapping` is set, guest RAM is still
/// being mapped: `dma_ready_now` says so and `wait_dma_ready` blocks until it is cleared.
#[derive(Default)]
struct TestGate {
    dma_waits: AtomicUsize,
    dma_error: Mutex<Option<String>>,
    mapping: Mutex<bool>,
    mapped: std::sync::Condvar,
}

impl TestGate {
    fn finish_mapping(&self) {
        *self.mapping.lock().unwrap() = false;
        self.mapped.notify_all();
    }
}

impl DeviceGate for TestGate {
    fn wait_ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn wait_dma_ready(&self) -> Result<(), String> {
        self.dma_waits.fetch_add(1, Ordering::SeqCst);
        let mut m = self.mapping.lock().unwrap();
        while *m {
            m = self.mapped.wait(m).unwrap();
        }
        match self.dma_error.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    fn dma_ready_now(&self) -> Option<Result<(), String>> {
        if *self.mapping.lock().unwrap() {
            return None;
        }
        Some(self.wait_dma_ready())
    }
}

struct Fixture {
    fake: Arc<FakeVfioDevice>,
    dev: VfioPciDevice,
    gate: Arc<TestGate>,
    msi: Arc<RecordingMsiGroup>,
    msix: Arc<RecordingMsiGroup>,
}

fn place(bars: &[BarRequest]) -> Vec<BarConfig> {
    bars.iter()
        .map(|b| BarConfig {
            index: b.index,
            size: b.size,
            kind: b.kind,
            prefetchable: b.prefetchable,
            addr: match b.index {
                0 => 0xc000_0000,
                1 => 0x40_0000_0000,
                3 => 0xc100_0000,
                5 => 0x1000,
                _ => 0xc200_0000,
            },
        })
        .collect()
}

fn eventfds(n: usize) -> Vec<EventFd> {
    (0..n).map(|_| EventFd::new(0).unwrap()).collect()
}

fn fixture_with(fake: Arc<FakeVfioDevice>, clique: Option<u8>) -> Fixture {
    fixture_full(fake, clique, None)
}

fn fixture_full(
    fake: Arc<FakeVfioDevice>,
    clique: Option<u8>,
    intx: Option<IntxResources>,
) -> Fixture {
    let info = VfioPciInfo::probe(fake.as_ref()).unwrap();
    let gate = Arc::new(TestGate::default());
    let msi = Arc::new(RecordingMsiGroup::new());
    let msix = Arc::new(RecordingMsiGroup::new());
    let dev = VfioPciDevice::with_intx(
        &info,
        VfioPciParams {
            ops: fake.clone(),
            bars: place(&info.bars),
            msi: Some(MsiResources {
                group: msi.clone(),
                eventfds: eventfds(1),
            }),
            msix: Some(MsiResources {
                group: msix.clone(),
                eventfds: eventfds(4),
            }),
            gate: gate.clone(),
            gpudirect_clique: clique,
            assigned: true,
        },
        intx,
    )
    .unwrap();
    let mut fixture = Fixture {
        fake,
        dev,
        gate,
        msi,
        msix,
    };
    // The first access tells the device the initial command (decoding on).
    fixture.read32(0);
    fixture.fake.take_calls();
    fixture
}

fn fixture() -> Fixture {
    fixture_with(fake_gpu(), Some(3))
}

impl Fixture {
    fn read8(&mut self, at: usize) -> u8 {
        (self.dev.read_config_register(at / 4) >> (8 * (at % 4))) as u8
    }

    fn read32(&mut self, at: usize) -> u32 {
        self.dev.read_config_register(at / 4)
    }

    fn write(&mut self, at: usize, data: &[u8]) -> ConfigWriteResult {
        self.dev
            .write_config_register(at / 4, (at % 4) as u64, data)
    }

    /// The capability IDs and offsets the guest finds walking from 0x34.
    fn chain(&mut self) -> Vec<(u8, usize)> {
        let mut out = Vec::new();
        let mut at = usize::from(self.read8(0x34));
        while at != 0 && out.len() < 64 {
            out.push((self.read8(at), at));
            at = usize::from(self.read8(at + 1));
        }
        out
    }
}

#[test]
fn header_is_emulated_with_the_devices_ids_and_no_intx() {
    let mut f = fixture();
    assert_eq!(f.read32(0), 0x2335_10de);
    assert_eq!(f.read32(8), 0x0302_00a1);
    assert_eq!(f.read32(0x2c), 0x1699_10de);
    assert_eq!(f.read8(0x0e), 0, "single-function type-0 header");
    assert_eq!(f.read8(0x3d), 0, "no INTx pin");
    assert_eq!(
        f.read32(0x3c) >> 16,
        0x0705,
        "min_gnt/max_lat as the device has them"
    );
    assert_ne!(f.read32(4) >> 16 & 0x10, 0, "capability list");
    // Read-only header fields ignore writes.
    let _ = f.write(0, &[0xff; 4]);
    let _ = f.write(8, &[0xff; 4]);
    assert_eq!(f.read32(0), 0x2335_10de);
    assert_eq!(f.read32(8), 0x0302_00a1);
    assert!(f.fake.take_calls().is_empty(), "nothing reached the device");
}

#[test]
fn capability_chain_skips_hidden_ones_and_ends_with_the_clique_capability() {
    let mut f = fixture();
    assert_eq!(
        f.chain(),
        vec![
            (0x01, 0x60),
            (0x05, 0x68),
            (0x10, 0x78),
            (0x11, 0xb4),
            (0x09, 0xc8)
        ]
    );
    let clique: Vec<u8> = (0xc8..0xd0).map(|a| f.read8(a)).collect();
    assert_eq!(clique, vec![0x09, 0, 8, b'P', b'2', b'P', 3 << 3, 0]);
    assert_eq!(f.read32(0xd0), 0, "the hidden AGP capability reads zero");
    // Extended space: the hidden SR-IOV at 0x100 becomes a null capability.
    assert_eq!(f.read32(0x100), 0x140 << 20);
    assert_eq!(f.read32(0x140), 0x0002_0001);
    assert_eq!(f.dev.read_config_register(1024), 0xffff_ffff);
    // Without a clique the chain ends at MSI-X.
    let mut plain = fixture_with(fake_gpu(), None);
    assert_eq!(plain.chain().last(), Some(&(0x11, 0xb4)));
}

#[test]
fn passthrough_bytes_reach_the_device_but_ids_and_next_pointers_do_not() {
    let mut f = fixture();
    // PCIe Device Control (0x78 + 8).
    let _ = f.write(0x80, &[0x1f, 0x28]);
    assert_eq!(
        f.fake.take_calls(),
        vec![FakeVfioCall::ConfigWrite {
            offset: 0x80,
            data: vec![0x1f, 0x28]
        }]
    );
    assert_eq!(
        f.read32(0x80) & 0xffff,
        0x281f,
        "reads come from the device"
    );
    // A dword write at the PM capability keeps ID and next, forwards the rest.
    let _ = f.write(0x60, &[0xaa, 0xbb, 0xcc, 0xdd]);
    assert_eq!(
        f.fake.take_calls(),
        vec![FakeVfioCall::ConfigWrite {
            offset: 0x62,
            data: vec![0xcc, 0xdd]
        }]
    );
    assert_eq!(f.read8(0x60), 0x01);
    assert_eq!(f.read8(0x61), 0x68);
    // Hidden capabilities and our clique capability drop writes.
    let _ = f.write(0xd0, &[1, 2, 3, 4]);
    let _ = f.write(0xc8, &[1, 2, 3, 4]);
    assert!(f.fake.take_calls().is_empty());
    // Device-specific registers outside any capability pass.
    let _ = f.write(0xc4, &[9]);
    assert_eq!(f.fake.take_calls().len(), 1);
}

#[test]
fn bar_sizing_and_relocation_follow_the_protocol() {
    let mut f = fixture();
    // Decoding starts on (as firmware leaves it); the guest turns it off to size the BARs.
    assert_eq!(f.read32(4) & 0x3, 0x3);
    let off = f.write(4, &[0x00, 0x00]);
    assert!(off
        .bar_moves
        .iter()
        .all(|m| m.new_addr.is_none() && m.old_addr.is_some()));
    assert_eq!(off.bar_moves.len(), 4, "BARs 0, 1, 3 and the I/O BAR 5");
    assert_eq!(
        f.read32(0x14),
        0x0000_000c,
        "BAR1 low: 64-bit prefetchable at 0x40_0000_0000"
    );
    assert_eq!(f.read32(0x18), 0x40);
    let _ = f.write(0x14, &[0xff; 4]);
    let _ = f.write(0x18, &[0xff; 4]);
    assert_eq!(f.read32(0x14), 0x0000_000c, "256 GiB: no low size bits");
    assert_eq!(f.read32(0x18), 0xffff_ffc0);
    // BAR3 (256 bytes) and the I/O BAR5 (128 ports).
    let _ = f.write(0x1c, &[0xff; 4]);
    assert_eq!(f.read32(0x1c), 0xffff_ff00);
    let _ = f.write(0x24, &[0xff; 4]);
    assert_eq!(f.read32(0x24), 0xffff_ff81);
    // ROM: 512 KiB, enable bit writable.
    let _ = f.write(0x30, &[0xff; 4]);
    assert_eq!(f.read32(0x30), 0xfff8_0001);
    // Program BAR1 and turn on memory decoding: the move is reported.
    let _ = f.write(0x14, &0u32.to_le_bytes());
    let _ = f.write(0x18, &0x80u32.to_le_bytes());
    let r = f.write(4, &COMMAND_MEMORY_SPACE.to_le_bytes());
    let bar1 = r.bar_moves.iter().find(|m| m.index == 1).unwrap();
    assert_eq!(bar1.new_addr, Some(0x80_0000_0000));
    assert_eq!(bar1.size, 256 << 30);
    assert!(
        f.fake.take_calls().iter().all(|c| !matches!(
            c,
            FakeVfioCall::ConfigWrite {
                offset: 0x14..=0x27,
                ..
            }
        )),
        "BARs never reach the device"
    );
}

#[test]
fn command_register_forwards_only_what_the_device_was_given_and_waits_for_dma() {
    // A device with memory BARs only: the I/O enable never reaches it.
    let fake = Arc::new(
        FakeVfioDevice::new(gpu_config())
            .with_region(0, region(16 << 20, true))
            .with_irqs(VfioIrqKind::Msix, 4),
    );
    let mut f = fixture_with(fake, None);
    let _ = f.write(4, &[0x07, 0x00]);
    assert_eq!(f.read32(4) & 0xffff, 0x7, "the guest sees what it wrote");
    assert_eq!(
        f.fake.take_calls(),
        vec![FakeVfioCall::ConfigWrite {
            offset: 4,
            data: vec![0x06, 0x00]
        }]
    );
    assert_eq!(f.gate.dma_waits.load(Ordering::SeqCst), 1);
    // Re-writing the same value neither waits again nor touches the device.
    let _ = f.write(4, &[0x07, 0x00]);
    assert!(f.fake.take_calls().is_empty());
    assert_eq!(f.gate.dma_waits.load(Ordering::SeqCst), 1);
    // Status error bits are cleared in the device (write 1 to clear).
    let _ = f.write(6, &[0x00, 0x80]);
    assert_eq!(
        f.fake.take_calls(),
        vec![FakeVfioCall::ConfigWrite {
            offset: 7,
            data: vec![0x80]
        }]
    );
}

#[test]
fn a_bus_master_enable_during_the_mapping_waits_outside_the_device_lock() {
    // The vCPU's path (vmm/src/vcpu/exit.rs): the ECAM write under the device's lock with
    // deferral allowed, then (lock released) the wait on the gate, then the same write again.
    let f = fixture();
    *f.gate.mapping.lock().unwrap() = true;
    let (fake, gate) = (f.fake.clone(), f.gate.clone());
    let dev = Arc::new(Mutex::new(f.dev));
    let vcpu = {
        let dev = dev.clone();
        std::thread::spawn(move || {
            let write = || {
                dev.lock()
                    .unwrap()
                    .write_config_register(1, 0, &[0x07, 0x00])
            };
            let (_, deferred) = crate::vfio::deferred::with_deferral(write);
            let gate = deferred.expect("the wait is deferred, not done under the lock");
            gate.wait_dma_ready().unwrap();
            let _ = write();
        })
    };
    // Meanwhile another vCPU reads the device's config space: the lock is free.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t = std::time::Instant::now();
    let id = dev.lock().unwrap().read_config_register(0);
    assert!(t.elapsed() < std::time::Duration::from_millis(500));
    assert_eq!(id & 0xffff, 0x10de);
    // Bus Master is still off in the device; the guest sees what it wrote.
    let calls = fake.take_calls();
    assert!(
        calls.iter().all(
            |c| !matches!(c, FakeVfioCall::ConfigWrite { offset: 4, data } if data[0] & 0x04 != 0)
        ),
        "{calls:?}"
    );
    assert_eq!(dev.lock().unwrap().read_config_register(1) & 0x7, 0x7);
    gate.finish_mapping();
    vcpu.join().unwrap();
    assert_eq!(
        fake.take_calls(),
        vec![FakeVfioCall::ConfigWrite {
            offset: 4,
            data: vec![0x07, 0x00]
        }],
        "bus mastering on once the mapping is done"
    );
    // Without deferral (a port write, or any other caller) the device waits itself.
    assert!(crate::vfio::deferred::with_deferral(|| ()).1.is_none());
}

#[test]
fn a_failed_dma_mapping_keeps_bus_master_off() {
    let mut f = fixture();
    *f.gate.dma_error.lock().unwrap() = Some("no memory".into());
    let _ = f.write(4, &[0x07, 0x00]);
    let calls = f.fake.take_calls();
    assert!(calls.is_empty(), "decoding was on already: {calls:?}");
    assert_eq!(f.read32(4) & 0xffff, 0x7, "the guest sees what it wrote");
}

#[test]
fn msi_enable_programs_routes_and_vfio_and_disable_undoes_it() {
    let mut f = fixture();
    let _ = f.write(0x6c, &0xfee0_1000u32.to_le_bytes());
    let _ = f.write(0x70, &0u32.to_le_bytes());
    let _ = f.write(0x74, &0x4041u16.to_le_bytes());
    assert!(
        f.fake.take_calls().is_empty(),
        "MSI is emulated, not forwarded"
    );
    let r = f.write(0x6a, &[0x01, 0x00]);
    assert!(r.msi_changed);
    assert_eq!(
        f.fake.take_calls(),
        vec![FakeVfioCall::EnableIrqs(VfioIrqKind::Msi, 1)]
    );
    let (msg, masked) = f.msi.route(0).unwrap();
    assert_eq!(
        (msg.address, msg.data, masked),
        (0xfee0_1000, 0x4041, false)
    );
    assert_eq!(f.read8(0x6a) & 1, 1);
    assert_eq!(f.read8(0x6a) & 0x80, 0x80, "64-bit capable, as the device");
    let r = f.write(0x6a, &[0x00]);
    assert!(r.msi_changed);
    assert_eq!(
        f.fake.take_calls(),
        vec![FakeVfioCall::DisableIrqs(VfioIrqKind::Msi)]
    );
    assert_eq!(f.msi.events().last(), Some(&MsiEvent::Disable));
}

#[test]
fn a_32_bit_msi_capability_keeps_its_layout() {
    let mut cfg = gpu_config();
    cfg[0x6a] = 0x00; // 32-bit, no masking: data at +8
    let fake = Arc::new(
        FakeVfioDevice::new(cfg)
            .with_region(0, region(16 << 20, true))
            .with_irqs(VfioIrqKind::Msi, 1)
            .with_irqs(VfioIrqKind::Msix, 4),
    );
    let mut f = fixture_with(fake, None);
    let _ = f.write(0x6c, &0xfee0_2000u32.to_le_bytes());
    let _ = f.write(0x70, &0x0031u16.to_le_bytes());
    let _ = f.write(0x6a, &[0x01]);
    let (msg, _) = f.msi.route(0).unwrap();
    assert_eq!((msg.address, msg.data), (0xfee0_2000, 0x31));
    assert_eq!(f.read8(0x6a), 0x01, "not 64-bit capable");
    assert_eq!(f.read32(0x70) & 0xffff, 0x31);
}

#[test]
fn msix_table_is_trapped_and_programs_routes_and_vfio() {
    let mut f = fixture();
    // The table/PBA page is not mappable; the rest of BAR0 and all of BAR1 are. BAR3 is
    // smaller than a page and the ROM and I/O BAR are never mapped.
    let areas = f.dev.mappable_areas();
    assert_eq!(
        areas,
        vec![
            MappableArea {
                bar: 0,
                offset: 0,
                size: 0x3000
            },
            MappableArea {
                bar: 0,
                offset: 0x4000,
                size: (16 << 20) - 0x4000
            },
            MappableArea {
                bar: 1,
                offset: 0,
                size: 256 << 30
            },
        ]
    );
    // Program entry 2 through BAR0 and enable MSI-X.
    let entry = TABLE + 2 * 16;
    f.dev.write_bar(0, entry, &0xfee0_3000u32.to_le_bytes());
    f.dev.write_bar(0, entry + 8, &0x51u32.to_le_bytes());
    f.dev.write_bar(0, entry + 12, &0u32.to_le_bytes());
    assert!(f.fake.take_calls().is_empty(), "the table is emulated");
    let r = f.write(0xb6, &[0x00, 0x80]);
    assert!(r.msix_changed);
    assert_eq!(
        f.fake.take_calls(),
        vec![FakeVfioCall::EnableIrqs(VfioIrqKind::Msix, 4)]
    );
    let (msg, masked) = f.msix.route(2).unwrap();
    assert_eq!((msg.address, msg.data, masked), (0xfee0_3000, 0x51, false));
    let mut data = [0u8; 4];
    f.dev.read_bar(0, entry + 8, &mut data);
    assert_eq!(u32::from_le_bytes(data), 0x51);
    // Masking the entry is honoured in the route, not the hardware.
    f.dev.write_bar(0, entry + 12, &1u32.to_le_bytes());
    assert!(f.msix.route(2).unwrap().1);
    assert!(f.fake.take_calls().is_empty());
    // Outside the table, BAR accesses reach the device.
    f.dev.write_bar(0, 0x10, &[1, 2, 3, 4]);
    f.dev.read_bar(0, 0x10, &mut data);
    assert_eq!(data, [1, 2, 3, 4]);
}

#[test]
fn sub_page_io_and_rom_bars_are_forwarded() {
    let mut f = fixture();
    f.dev.write_bar(3, 0x80, &[0xab]);
    let mut b = [0u8; 1];
    f.dev.read_bar(3, 0x80, &mut b);
    assert_eq!(b, [0xab]);
    f.dev.write_bar(5, 4, &[1, 0]);
    let mut io = [0u8; 2];
    f.dev.read_bar(5, 4, &mut io);
    assert_eq!(io, [1, 0]);
    f.dev.write_bar(ROM_BAR_INDEX, 0, &[1]);
    assert_eq!(f.fake.take_calls().len(), 2, "ROM writes are dropped");
    let mut past = [0u8; 4];
    f.dev.read_bar(3, 0x1000, &mut past);
    assert_eq!(past, [0xff; 4], "beyond the region reads all-ones");
}

#[test]
fn hostile_config_and_bar_accesses_never_panic() {
    let mut f = fixture();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let r = next();
        let reg = (r % 1100) as usize;
        let off = (r >> 12) % 6;
        let len = ((r >> 16) % 6) as usize;
        let data: Vec<u8> = (0..len).map(|i| (r >> (24 + 8 * (i % 4))) as u8).collect();
        let _ = f.dev.write_config_register(reg, off, &data);
        let _ = f.dev.read_config_register(reg);
        let bar = ((r >> 40) % 8) as usize;
        let mut buf = vec![0u8; len];
        f.dev.read_bar(bar, r >> 44, &mut buf);
        f.dev.write_bar(bar, (r >> 20) & 0xffff, &data);
    }
    // The chain is still well formed.
    assert_eq!(f.chain().len(), 5);
}

#[test]
fn intx_is_on_until_msi_takes_over_and_back_after() {
    let mut cfg = gpu_config();
    cfg[0x3d] = 1; // INTA#
    let fake = Arc::new(
        FakeVfioDevice::new(cfg)
            .with_region(0, region(16 << 20, true))
            .with_irqs(VfioIrqKind::Intx, 1)
            .with_irqs(VfioIrqKind::Msi, 1)
            .with_irqs(VfioIrqKind::Msix, 4),
    );
    let intx = IntxResources {
        trigger: EventFd::new(0).unwrap(),
        resample: EventFd::new(0).unwrap(),
    };
    // Before the first guest access (the device may still be resetting) nothing is set up.
    let info = VfioPciInfo::probe(fake.as_ref()).unwrap();
    assert_eq!(info.intx_pin, 1);
    let mut f = fixture_full(fake.clone(), None, Some(intx));
    assert_eq!(f.read8(0x3d), 1, "INTA#");
    let first = f.fake.take_calls();
    // (the fixture's first read already turned INTx on; the fake's log was cleared after it)
    assert!(first.is_empty(), "{first:?}");
    // MSI on: INTx off first (VFIO allows one mode at a time); MSI off: INTx back.
    let _ = f.write(0x6c, &0xfee0_0000u32.to_le_bytes());
    let _ = f.write(0x6a, &[0x01]);
    assert_eq!(
        f.fake.take_calls(),
        vec![
            FakeVfioCall::DisableIrqs(VfioIrqKind::Intx),
            FakeVfioCall::EnableIrqs(VfioIrqKind::Msi, 1)
        ]
    );
    let _ = f.write(0x6a, &[0x00]);
    assert_eq!(
        f.fake.take_calls(),
        vec![
            FakeVfioCall::DisableIrqs(VfioIrqKind::Msi),
            FakeVfioCall::EnableIrqs(VfioIrqKind::Intx, 1),
            FakeVfioCall::IntxUnmaskFd
        ]
    );
    // Without INTx resources the pin reads 0.
    let mut plain = fixture();
    assert_eq!(plain.read8(0x3d), 0);
}

#[test]
fn the_first_access_turns_intx_on_after_the_command_register() {
    let mut cfg = gpu_config();
    cfg[0x3d] = 2; // INTB#
    let fake = Arc::new(
        FakeVfioDevice::new(cfg)
            .with_region(0, region(16 << 20, true))
            .with_irqs(VfioIrqKind::Intx, 1),
    );
    let mut dev = with_intx_only(&fake);
    assert!(
        fake.take_calls().is_empty(),
        "nothing before the guest comes"
    );
    assert_eq!(dev.read_config_register(15) >> 8 & 0xff, 2);
    assert_eq!(
        fake.take_calls(),
        vec![
            FakeVfioCall::ConfigWrite {
                offset: 4,
                data: vec![0x02, 0x00]
            },
            FakeVfioCall::EnableIrqs(VfioIrqKind::Intx, 1),
            FakeVfioCall::IntxUnmaskFd
        ]
    );
}

/// An NVIDIA GPU's config space (10de:`device`, class 0302) with the capability chain `caps`
/// (`(id, offset, bytes from offset + 2)`, linked in order); an MSI-X capability gets its table
/// and PBA in BAR0 (16 MiB); BAR1 is 64-bit prefetchable.
fn nvidia_config(device: u16, caps: &[(u8, usize, &[u8])]) -> Vec<u8> {
    let mut c = vec![0u8; 4096];
    c[0..2].copy_from_slice(&0x10deu16.to_le_bytes());
    c[2..4].copy_from_slice(&device.to_le_bytes());
    c[6] = 0x10; // status: capability list
    c[8..12].copy_from_slice(&[0xa1, 0x00, 0x02, 0x03]);
    c[0x14..0x18].copy_from_slice(&0x0000_000cu32.to_le_bytes());
    c[0x34] = caps[0].1 as u8;
    for (i, (id, off, body)) in caps.iter().enumerate() {
        c[*off] = *id;
        c[off + 1] = caps.get(i + 1).map_or(0, |n| n.1 as u8);
        c[off + 2..off + 2 + body.len()].copy_from_slice(body);
        if *id == 0x11 {
            c[off + 4..off + 8].copy_from_slice(&(TABLE as u32).to_le_bytes());
            c[off + 8..off + 12].copy_from_slice(&(PBA as u32).to_le_bytes());
        }
    }
    c
}

fn fake_nvidia(config: Vec<u8>) -> Arc<FakeVfioDevice> {
    Arc::new(
        FakeVfioDevice::new(config)
            .with_region(0, region(16 << 20, true))
            .with_region(1, region(64 << 30, true))
            .with_irqs(VfioIrqKind::Msi, 1)
            .with_irqs(VfioIrqKind::Msix, 4),
    )
}

/// What NVIDIA's driver does to find the clique (open-gpu-kernel-modules,
/// `objClLoadPcieVirtualP2PApproval`): walk the list from 0x34 and take the first
/// vendor-specific capability whose bytes 3..5 are "P2P"; it must be version 0 (bits 0..2 of
/// byte 6), and the clique is bits 3..6. Returns (offset, clique).
fn nvidia_driver_finds_clique(f: &mut Fixture) -> Option<(usize, u8)> {
    let mut cap = usize::from(f.read8(0x34));
    let mut steps = 0;
    while cap != 0 && steps < 48 {
        if f.read8(cap) == 0x09 {
            let sig = u32::from(f.read8(cap + 3))
                | u32::from(f.read8(cap + 4)) << 8
                | u32::from(f.read8(cap + 5)) << 16;
            if sig == 0x0050_3250 {
                let b = f.read8(cap + 6);
                return (b & 7 == 0).then_some((cap, (b >> 3) & 0xf));
            }
        }
        cap = usize::from(f.read8(cap + 1));
        steps += 1;
    }
    None
}

#[test]
fn nvidias_driver_finds_the_clique_on_hopper_and_ampere_shaped_config_spaces() {
    // H100 PCIe / H20 (Hopper): MSI-X at 0xb0, so 0xc8 is free.
    let hopper = || {
        nvidia_config(
            0x2331,
            &[
                (0x01, 0x40, &[0x03, 0x00]),
                (0x05, 0x48, &[0x80, 0x01]),
                (0x10, 0x60, &[0x02, 0x00]),
                (0x09, 0x9c, &[0x14, 0xaa, 0xbb, 0xcc]),
                (0x11, 0xb0, &[0x03, 0x00]),
            ],
        )
    };
    // A100 / L20 (Ampere, Ada): MSI-X at 0xc8..0xd4, so the clique goes to 0xd4.
    let ampere = || {
        nvidia_config(
            0x20b0,
            &[
                (0x01, 0x60, &[0x03, 0x00]),
                (0x00, 0x68, &[]),
                (0x10, 0x78, &[0x02, 0x00]),
                (0x09, 0xb4, &[0x14, 0xaa, 0xbb, 0xcc]),
                (0x11, 0xc8, &[0x03, 0x00]),
            ],
        )
    };
    // (name, config space, where the clique goes, the GPU's own vendor-specific capability)
    type Shape<'a> = (&'a str, &'a dyn Fn() -> Vec<u8>, usize, usize);
    let shapes: [Shape; 2] = [
        ("hopper", &hopper, 0xc8, 0x9c),
        ("ampere", &ampere, 0xd4, 0xb4),
    ];
    for (name, config, at, own_vendor) in shapes {
        let mut f = fixture_with(fake_nvidia(config()), Some(5));
        assert_eq!(nvidia_driver_finds_clique(&mut f), Some((at, 5)), "{name}");
        let chain = f.chain();
        assert_eq!(
            chain.last(),
            Some(&(0x09, at)),
            "{name}: ours ends the chain"
        );
        assert!(
            chain.contains(&(0x09, own_vendor)),
            "{name}: the GPU's own stays: {chain:?}"
        );
        assert!(
            chain.contains(&(0x11, if at == 0xc8 { 0xb0 } else { 0xc8 })),
            "{name}: MSI-X"
        );
        // Without the option there is no clique for the driver to find.
        let mut plain = fixture_with(fake_nvidia(config()), None);
        assert_eq!(nvidia_driver_finds_clique(&mut plain), None, "{name}");
    }
}

/// The kernel's mtty sample as VFIO shows it: a mediated 16550 card (4348:3253) with a 255-byte
/// config region, an 8-byte I/O BAR per port (1 or 2) and INTx.
fn mtty(ports: u32) -> FakeVfioDevice {
    let mut cfg = vec![0u8; 255];
    cfg[..4].copy_from_slice(&0x3253_4348u32.to_le_bytes());
    cfg[0x0a..0x0c].copy_from_slice(&[0x02, 0x07]);
    cfg[0x3d] = 0x01;
    for bar in 0..ports as usize {
        cfg[0x10 + 4 * bar] = 0x01;
    }
    (0..ports)
        .fold(FakeVfioDevice::new(cfg), |dev, bar| {
            dev.with_region(bar, region(8, false))
        })
        .with_irqs(VfioIrqKind::Intx, 1)
}

/// `fake` as a device with an INTx line and nothing else.
fn with_intx_only(fake: &Arc<FakeVfioDevice>) -> VfioPciDevice {
    let info = VfioPciInfo::probe(fake.as_ref()).unwrap();
    VfioPciDevice::with_intx(
        &info,
        VfioPciParams {
            ops: fake.clone(),
            bars: place(&info.bars),
            msi: None,
            msix: None,
            gate: Arc::new(TestGate::default()),
            gpudirect_clique: None,
            assigned: true,
        },
        Some(IntxResources {
            trigger: EventFd::new(0).unwrap(),
            resample: EventFd::new(0).unwrap(),
        }),
    )
    .unwrap()
}

/// The kernel's mtty sample (a mediated two-port 16550 card) reports a 255-byte config region
/// and two 8-byte I/O BARs: it probes, with its IDs, its I/O BARs and its interrupt pin.
#[test]
fn a_mediated_device_with_a_short_config_region_probes() {
    let fake = Arc::new(mtty(2));
    let info = VfioPciInfo::probe(fake.as_ref()).unwrap();
    assert_eq!((info.vendor_id(), info.device_id()), (0x4348, 0x3253));
    assert_eq!(info.config.len(), 256);
    assert_eq!(info.intx_pin, 1);
    let io: Vec<_> = info
        .bars
        .iter()
        .map(|b| (b.index, b.size, b.kind))
        .collect();
    assert_eq!(io, vec![(0, 8, BarKind::Io), (1, 8, BarKind::Io)]);
}

/// A driver that refuses an INTx unmask eventfd (the mtty mdev: ENOTTY) keeps INTx on, and each
/// trapped BAR access of the guest unmasks the line; a driver that takes the eventfd is never
/// unmasked by hand.
#[test]
fn intx_without_an_unmask_eventfd_is_unmasked_at_bar_accesses() {
    for no_fd in [true, false] {
        let fake = Arc::new(if no_fd {
            mtty(1).without_unmask_fd()
        } else {
            mtty(1)
        });
        let mut dev = with_intx_only(&fake);
        assert_eq!(dev.read_config_register(15) >> 8 & 0xff, 1, "INTA#");
        let calls = fake.take_calls();
        assert!(
            calls.contains(&FakeVfioCall::EnableIrqs(VfioIrqKind::Intx, 1)),
            "{calls:?}"
        );
        assert!(
            !calls.contains(&FakeVfioCall::DisableIrqs(VfioIrqKind::Intx)),
            "{calls:?}"
        );
        let mut b = [0u8; 1];
        dev.read_bar(0, 2, &mut b);
        dev.write_bar(0, 0, &[0x41]);
        let unmasks = fake
            .take_calls()
            .iter()
            .filter(|c| **c == FakeVfioCall::IntxUnmask)
            .count();
        assert_eq!(unmasks, if no_fd { 2 } else { 0 }, "no_fd={no_fd}");
    }
}
