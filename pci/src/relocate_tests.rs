use super::*;
use crate::bar::BarKind;
use crate::test_util::TestDevice;
use devices::BusDevice;

struct Dummy;

impl BusDevice for Dummy {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0x5a);
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

fn device() -> Arc<Mutex<dyn PciDevice>> {
    Arc::new(Mutex::new(TestDevice::new()))
}

fn reprogram(kind: BarKind, old: Option<u64>, new: Option<u64>) -> BarReprogram {
    BarReprogram {
        index: 2,
        kind,
        old_addr: old,
        new_addr: new,
        size: 0x4000,
    }
}

fn relocator() -> (BusBarRelocator, Arc<Bus>, Arc<Bus>) {
    let (pio, mmio) = (Arc::new(Bus::new()), Arc::new(Bus::new()));
    let relocator =
        BusBarRelocator::new(pio.clone(), mmio.clone()).with_reserved_mmio(vec![(0, 0x8000_0000)]);
    (relocator, pio, mmio)
}

const ADDR: PciAddress = PciAddress::new(0, 3, 0);

fn move_bar(
    relocator: &BusBarRelocator,
    dev: &Arc<Mutex<dyn PciDevice>>,
    r: BarReprogram,
) -> Result<(), RelocationError> {
    relocator.move_bar(&BarMove {
        address: ADDR,
        device: dev,
        reprogram: r,
    })
}

#[test]
fn overlaps_detects_shared_addresses_only() {
    assert!(overlaps(0x1000, 0x1000, 0x1fff, 1));
    assert!(!overlaps(0x1000, 0x1000, 0x2000, 0x1000));
    assert!(!overlaps(0x2000, 0x1000, 0x1000, 0x1000));
    assert!(overlaps(0, u64::MAX, u64::MAX - 1, 1));
    assert!(!overlaps(0x1000, 0, 0x1000, 0x10));
    assert!(overlaps(u64::MAX, 1, u64::MAX, 1));
}

#[test]
fn decoded_bar_is_inserted_moved_and_removed_on_the_mmio_bus() {
    let (relocator, pio, mmio) = relocator();
    let dev = device();
    let r = reprogram(BarKind::Mem64, None, Some(0x1_0000_0000));
    move_bar(&relocator, &dev, r).unwrap();
    assert!(mmio.write(0x1_0000_0008, &[7]));
    assert!(!pio.write(0x1_0000_0008, &[7]));
    assert_eq!(relocator.mapping(ADDR, 2), Some((false, 0x1_0000_0000)));

    let r = reprogram(BarKind::Mem64, Some(0x1_0000_0000), Some(0x2_0000_0000));
    move_bar(&relocator, &dev, r).unwrap();
    let mut data = [0u8; 1];
    assert!(!mmio.read(0x1_0000_0008, &mut data), "old range is gone");
    assert!(mmio.read(0x2_0000_0008, &mut data));
    assert_eq!(data, [7], "same device memory at the new address");

    let r = reprogram(BarKind::Mem64, Some(0x2_0000_0000), None);
    move_bar(&relocator, &dev, r).unwrap();
    assert!(!mmio.read(0x2_0000_0008, &mut data));
    assert_eq!(relocator.mapping(ADDR, 2), None);
}

#[test]
fn io_bars_go_on_the_port_bus() {
    let (relocator, pio, mmio) = relocator();
    let dev = device();
    let r = BarReprogram {
        index: 0,
        size: 0x20,
        ..reprogram(BarKind::Io, None, Some(0xc000))
    };
    move_bar(&relocator, &dev, r).unwrap();
    assert!(pio.write(0xc000, &[1]));
    assert!(!mmio.write(0xc000, &[1]));
}

#[test]
fn moves_onto_reserved_memory_are_refused_and_leave_the_bar_unmapped() {
    let (relocator, _, mmio) = relocator();
    let dev = device();
    move_bar(
        &relocator,
        &dev,
        reprogram(BarKind::Mem64, None, Some(0x1_0000_0000)),
    )
    .unwrap();
    let r = reprogram(BarKind::Mem64, Some(0x1_0000_0000), Some(0x7fff_f000));
    let err = move_bar(&relocator, &dev, r).unwrap_err();
    assert!(
        matches!(err, RelocationError::Reserved { start: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("0000:00:03.0"));
    assert!(!mmio.write(0x1_0000_0000, &[1]));
    assert_eq!(relocator.mapping(ADDR, 2), None);
}

#[test]
fn overlap_with_another_device_is_refused_and_never_removes_it() {
    let (relocator, _, mmio) = relocator();
    let dev = device();
    mmio.insert(Arc::new(Mutex::new(Dummy)), 0x9000_0000, 0x1000)
        .unwrap();
    let r = reprogram(BarKind::Mem64, None, Some(0x9000_0000));
    let err = move_bar(&relocator, &dev, r).unwrap_err();
    assert!(matches!(err, RelocationError::Bus { index: 2, .. }));
    // The guest moves on from the conflicting address: the dummy must stay.
    let r = reprogram(BarKind::Mem64, Some(0x9000_0000), Some(0xa000_0000));
    move_bar(&relocator, &dev, r).unwrap();
    let mut data = [0u8; 1];
    assert!(mmio.read(0x9000_0000, &mut data));
    assert_eq!(data, [0x5a]);
}

#[test]
fn recording_relocator_records_and_can_fail() {
    let relocator = RecordingRelocator::new();
    let dev = device();
    let r = reprogram(BarKind::Mem32, None, Some(0x9000_0000));
    let mv = BarMove {
        address: ADDR,
        device: &dev,
        reprogram: r,
    };
    relocator.move_bar(&mv).unwrap();
    relocator.set_failing(true);
    assert!(relocator.move_bar(&mv).is_err());
    assert_eq!(relocator.take_moves(), vec![(ADDR, r), (ADDR, r)]);
    assert!(relocator.take_moves().is_empty());
}
