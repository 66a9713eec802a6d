use super::*;

const GIB: u64 = 1 << 30;
const DEV: PciAddress = PciAddress::new(0, 3, 0);

fn config(mmio64: (u64, u64)) -> PciAllocatorConfig {
    PciAllocatorConfig {
        io: (0x1000, 0xf000),
        mmio32: (0xc000_0000, 0x2000_0000),
        mmio64,
        host_phys_bits: Some(39),
    }
}

fn req(index: usize, kind: BarKind, size: u64) -> BarRequest {
    BarRequest {
        index,
        size,
        kind,
        prefetchable: kind == BarKind::Mem64,
    }
}

#[test]
fn format_size_uses_the_largest_readable_unit() {
    assert_eq!(format_size(256 * GIB), "256 GiB");
    assert_eq!(format_size(0x1000), "4 KiB");
    assert_eq!(format_size(1536 * 1024 * 1024), "1.5 GiB");
    assert_eq!(format_size(0), "0 B");
    assert_eq!(format_size(100), "100 B");
    assert_eq!(format_size(1 << 40), "1 TiB");
    assert_eq!(format_size(u64::MAX), "16.0 EiB");
}

#[test]
fn bars_are_naturally_aligned_in_the_window_of_their_kind() {
    let mut alloc = PciAllocator::new(&config((64 * GIB, 64 * GIB))).unwrap();
    let io = alloc.allocate(DEV, &req(0, BarKind::Io, 0x20)).unwrap();
    assert_eq!(io, 0x1000);
    let small = alloc.allocate(DEV, &req(1, BarKind::Mem32, 0x10)).unwrap();
    let big = alloc
        .allocate(DEV, &req(2, BarKind::Mem32, 0x100_0000))
        .unwrap();
    assert_eq!(small, 0xc000_0000);
    assert_eq!(
        big, 0xc100_0000,
        "16 MiB alignment skips past the small BAR"
    );
    let high = alloc
        .allocate(DEV, &req(4, BarKind::Mem64, 0x4000))
        .unwrap();
    assert!(high >= 64 * GIB && high + 0x4000 <= 128 * GIB);
    assert_eq!(high % 0x4000, 0);
    assert_eq!(
        alloc.allocation(DEV, 2),
        Some((PciWindow::Mmio32, big, 0x100_0000))
    );
    assert_eq!(alloc.free_space(PciWindow::Io), 0xf000 - 0x20);
}

#[test]
fn gpu_class_256gib_bar_is_placed_aligned_to_256gib() {
    // A window like the layout's: 1 GiB-aligned above RAM, up to 2^40.
    let base = 65 * GIB;
    let mut alloc = PciAllocator::new(&config((base, (1 << 40) - base))).unwrap();
    // Small 64-bit BARs first, as when virtio devices come before the GPU.
    for index in 0..3 {
        alloc
            .allocate(DEV, &req(index * 2, BarKind::Mem64, 0x4000))
            .unwrap();
    }
    let gpu = PciAddress::new(0, 4, 0);
    let bar = alloc
        .allocate(gpu, &req(2, BarKind::Mem64, 256 * GIB))
        .unwrap();
    assert_eq!(bar % (256 * GIB), 0);
    assert_eq!(bar, 256 * GIB);
    let second = alloc
        .allocate(gpu, &req(4, BarKind::Mem64, 256 * GIB))
        .unwrap();
    assert_eq!(second, 512 * GIB);
}

#[test]
fn bar_too_big_for_the_window_names_the_shortfall() {
    let mut alloc = PciAllocator::new(&config((64 * GIB, 64 * GIB))).unwrap();
    let err = alloc
        .allocate(DEV, &req(2, BarKind::Mem64, 256 * GIB))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "BAR 2 of 0000:00:03.0 needs 256 GiB but the 64-bit MMIO window has only 64 GiB left \
         (largest aligned free block 64 GiB); the host has 39 physical address bits"
    );
}

#[test]
fn enough_free_space_without_an_aligned_block_is_reported() {
    // 384 GiB free from 64 GiB: no 256 GiB-aligned 256 GiB block fits.
    let mut alloc = PciAllocator::new(&config((64 * GIB, 384 * GIB))).unwrap();
    let err = alloc
        .allocate(DEV, &req(0, BarKind::Mem64, 256 * GIB))
        .unwrap_err();
    assert!(matches!(
        err,
        AllocatorError::DoesNotFit {
            free,
            largest,
            window: PciWindow::Mmio64,
            ..
        } if free == 384 * GIB && largest == 128 * GIB
    ));
}

#[test]
fn missing_window_reports_nothing_left() {
    let mut alloc = PciAllocator::new(&PciAllocatorConfig {
        host_phys_bits: None,
        ..config((0, 0))
    })
    .unwrap();
    let err = alloc
        .allocate(DEV, &req(0, BarKind::Mem64, 0x1000))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "BAR 0 of 0000:00:03.0 needs 4 KiB but the 64-bit MMIO window has only 0 B left \
         (largest aligned free block 0 B)"
    );
}

#[test]
fn allocation_errors_are_typed() {
    let mut alloc = PciAllocator::new(&config((64 * GIB, GIB))).unwrap();
    assert_eq!(
        alloc.allocate(DEV, &req(0, BarKind::Mem32, 0x3000)),
        Err(AllocatorError::InvalidSize {
            device: DEV,
            index: 0,
            size: 0x3000
        })
    );
    alloc
        .allocate(DEV, &req(0, BarKind::Mem32, 0x1000))
        .unwrap();
    assert_eq!(
        alloc.allocate(DEV, &req(0, BarKind::Mem32, 0x1000)),
        Err(AllocatorError::AlreadyAllocated {
            device: DEV,
            index: 0
        })
    );
    assert_eq!(
        alloc.free(DEV, 1),
        Err(AllocatorError::NotAllocated {
            device: DEV,
            index: 1
        })
    );
    assert!(matches!(
        PciAllocator::new(&config((u64::MAX, 2))),
        Err(AllocatorError::InvalidWindow {
            window: PciWindow::Mmio64,
            ..
        })
    ));
}

#[test]
fn freed_bars_can_be_allocated_again() {
    let mut alloc = PciAllocator::new(&config((64 * GIB, 64 * GIB))).unwrap();
    let whole = 0x2000_0000;
    let addr = alloc.allocate(DEV, &req(1, BarKind::Mem32, whole)).unwrap();
    assert!(alloc.allocate(DEV, &req(2, BarKind::Mem32, 0x10)).is_err());
    alloc.free(DEV, 1).unwrap();
    assert_eq!(alloc.free_space(PciWindow::Mmio32), whole);
    assert_eq!(
        alloc.allocate(DEV, &req(1, BarKind::Mem32, whole)),
        Ok(addr)
    );
}

#[test]
fn free_device_releases_all_its_bars_only() {
    let mut alloc = PciAllocator::new(&config((64 * GIB, 64 * GIB))).unwrap();
    let other = PciAddress::new(0, 4, 0);
    alloc.allocate(DEV, &req(0, BarKind::Io, 0x20)).unwrap();
    alloc
        .allocate(DEV, &req(1, BarKind::Mem32, 0x1000))
        .unwrap();
    alloc.allocate(DEV, &req(2, BarKind::Mem64, GIB)).unwrap();
    alloc
        .allocate(other, &req(0, BarKind::Mem32, 0x1000))
        .unwrap();
    assert_eq!(alloc.free_device(DEV), 3);
    assert_eq!(alloc.free_space(PciWindow::Mmio64), 64 * GIB);
    assert_eq!(alloc.free_space(PciWindow::Io), 0xf000);
    assert!(alloc.allocation(other, 0).is_some());
    assert_eq!(alloc.free_device(DEV), 0);
}

#[test]
fn allocate_device_places_largest_first_and_rolls_back_on_failure() {
    let mut alloc = PciAllocator::new(&config((64 * GIB, 64 * GIB))).unwrap();
    let bars = [
        req(0, BarKind::Mem32, 0x1000),
        req(1, BarKind::Mem32, 0x1000_0000),
        req(2, BarKind::Mem64, 8 * GIB),
    ];
    let placed = alloc.allocate_device(DEV, &bars).unwrap();
    assert_eq!(placed.len(), 3);
    assert_eq!(placed[1].addr, 0xc000_0000, "the 256 MiB BAR went first");
    assert_eq!(placed[0].addr, 0xd000_0000);
    assert_eq!(placed[2].addr % (8 * GIB), 0);
    assert!(placed[2].prefetchable && placed[2].kind == BarKind::Mem64);

    // The 4 GiB BAR goes first and succeeds; the 256 MiB one no longer fits.
    let other = PciAddress::new(0, 5, 0);
    let too_big = [
        req(0, BarKind::Mem32, 0x1000_0000),
        req(2, BarKind::Mem64, 4 * GIB),
    ];
    let free_before = alloc.free_space(PciWindow::Mmio64);
    assert!(alloc.allocate_device(other, &too_big).is_err());
    assert_eq!(alloc.free_space(PciWindow::Mmio64), free_before);
    assert!(alloc.allocation(other, 2).is_none());
}

#[test]
fn overlaps_is_reexported_for_ram_checks() {
    assert!(overlaps(0, 0x1000, 0xfff, 0x10));
    assert!(!overlaps(0, 0x1000, 0x1000, 0x10));
}
