//! The whole set as the guest finds it: RSDP -> XSDT -> tables, in guest memory.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::fadt::offsets;
use super::madt::parse::{entries, Entry};
use super::test_util::{find, sum, u32_at, u64_at};
use super::*;
use crate::e820::{e820_map, E820_RESERVED};
use crate::layout;

const PM: PmPorts = PmPorts {
    sleep_control: 0x600,
    sleep_status: 0x601,
    reset: 0x602,
    reset_value: 0x06,
    s5_sleep_type: 5,
};

fn guest(ram: u64) -> (GuestMemoryMmap, MemoryLayout) {
    let layout = MemoryLayout::new(ram, 40).unwrap();
    let mem = GuestMemoryMmap::from_ranges(&layout.ram_ranges()).unwrap();
    (mem, layout)
}

fn config(layout: &MemoryLayout, num_vcpus: u32) -> AcpiConfig<'_> {
    AcpiConfig {
        segments: &[],
        segment0_node: None,
        pci_buses: 0,
        num_vcpus,
        layout,
        pm: PM,
        serial: Some(SerialPort {
            port: 0x3f8,
            gsi: 4,
        }),
        power_button_gsi: Some(5),
        pci_hotplug: None,
    }
}

fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

/// The table at `addr`, its length taken from its header.
fn table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
    let header = read(mem, addr, 36);
    read(mem, addr, u32_at(&header, 4) as usize)
}

/// Everything the guest reaches from the RSDP: (address, table) for the XSDT, each
/// XSDT entry, and the DSDT.
fn walk(mem: &GuestMemoryMmap, rsdp: u64) -> Vec<(u64, Vec<u8>)> {
    let r = read(mem, rsdp, 36);
    assert_eq!(&r[..8], b"RSD PTR ");
    assert_eq!(sum(&r[..20]), 0, "RSDP checksum");
    assert_eq!(sum(&r), 0, "RSDP extended checksum");
    assert_eq!(r[15], 2, "RSDP revision");
    let xsdt_addr = u64_at(&r, 24);
    let xsdt = table(mem, xsdt_addr);
    assert_eq!(&xsdt[..4], b"XSDT");
    let mut found = vec![(xsdt_addr, xsdt.clone())];
    for i in 0..(xsdt.len() - 36) / 8 {
        let addr = u64_at(&xsdt, 36 + 8 * i);
        found.push((addr, table(mem, addr)));
    }
    let fadt = &found.iter().find(|(_, t)| &t[..4] == b"FACP").unwrap().1;
    let dsdt_addr = u64_at(fadt, offsets::X_DSDT);
    found.push((dsdt_addr, table(mem, dsdt_addr)));
    found
}

fn signatures(tables: &[(u64, Vec<u8>)]) -> Vec<&[u8]> {
    tables.iter().map(|(_, t)| &t[..4]).collect()
}

#[test]
fn rsdp_leads_to_xsdt_fadt_madt_mcfg_and_dsdt_with_valid_checksums() {
    let (mem, layout) = guest(256 << 20);
    let rsdp = create_acpi_tables(&mem, &config(&layout, 4)).unwrap();
    assert_eq!(rsdp, 0xE_0000);
    let tables = walk(&mem, rsdp);
    let sigs = signatures(&tables);
    assert_eq!(sigs, [b"XSDT", b"FACP", b"APIC", b"MCFG", b"DSDT"]);
    for (addr, t) in &tables {
        assert_eq!(
            sum(t),
            0,
            "checksum of {} at {addr:#x}",
            String::from_utf8_lossy(&t[..4])
        );
        assert_eq!(&t[10..16], b"RUSTVM");
    }
    let madt = &tables[2].1;
    let cpus: Vec<_> = entries(madt)
        .into_iter()
        .filter(|e| matches!(e, Entry::LocalApic { .. }))
        .collect();
    assert_eq!(cpus.len(), 4);
    let dsdt = &tables[4].1;
    assert!(find(dsdt, b"_S5_").is_some());
}

#[test]
fn tables_lie_inside_the_acpi_area_without_overlapping_each_other() {
    let (mem, layout) = guest(128 << 20);
    let rsdp = create_acpi_tables(&mem, &config(&layout, MAX_ACPI_CPUS)).unwrap();
    let mut ranges: Vec<(u64, u64)> = walk(&mem, rsdp)
        .iter()
        .map(|(addr, t)| (*addr, addr + t.len() as u64))
        .collect();
    ranges.push((rsdp, rsdp + 36));
    ranges.sort();
    for (start, end) in &ranges {
        assert!(*start >= ACPI_TABLES_START && *end <= ACPI_TABLES_END);
    }
    for pair in ranges.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "{:x?} overlaps {:x?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn fadt_registers_match_the_pm_ports() {
    let (mem, layout) = guest(128 << 20);
    let tables = walk(&mem, create_acpi_tables(&mem, &config(&layout, 1)).unwrap());
    let fadt = &tables[1].1;
    let flags = u32_at(fadt, offsets::FLAGS);
    assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
    assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
    let gas = |off: usize| {
        (
            fadt[off],
            fadt[off + 1],
            fadt[off + 3],
            u64_at(fadt, off + 4),
        )
    };
    assert_eq!(gas(offsets::RESET_REG), (1, 8, 1, u64::from(PM.reset)));
    assert_eq!(fadt[offsets::RESET_VALUE], PM.reset_value);
    assert_eq!(gas(offsets::SLEEP_CONTROL_REG), (1, 8, 1, 0x600));
    assert_eq!(gas(offsets::SLEEP_STATUS_REG), (1, 8, 1, 0x601));
    assert_eq!(PM.s5_sleep_control_value(), 0x34, "SLP_TYP 5 << 2 | SLP_EN");
}

#[test]
fn mcfg_points_at_the_ecam_for_bus_0() {
    let (mem, layout) = guest(128 << 20);
    let tables = walk(&mem, create_acpi_tables(&mem, &config(&layout, 1)).unwrap());
    let mcfg = &tables[3].1;
    assert_eq!(u64_at(mcfg, 44), layout::PCI_ECAM_START);
    // No root port: bus 0 alone (Linux probes every bus up to the MCFG's last).
    assert_eq!((mcfg[54], mcfg[55]), (0, 0));
    let ports = AcpiConfig {
        segments: &[],
        segment0_node: None,
        pci_buses: 2,
        ..config(&layout, 1)
    };
    let tables = walk(&mem, create_acpi_tables(&mem, &ports).unwrap());
    assert_eq!((tables[3].1[54], tables[3].1[55]), (0, 2));
}

#[test]
fn the_acpi_area_is_reserved_and_clear_of_the_other_boot_structures() {
    let layout = MemoryLayout::new(128 << 20, 40).unwrap();
    let reserved = e820_map(&layout).into_iter().any(|e| {
        e.kind == E820_RESERVED && e.addr <= ACPI_TABLES_START && e.addr + e.size >= ACPI_TABLES_END
    });
    assert!(
        reserved,
        "E820 must reserve [{ACPI_TABLES_START:#x}, {ACPI_TABLES_END:#x})"
    );
    let mptable_end =
        layout::MPTABLE_START + crate::mptable::mptable_size(crate::mptable::MAX_MP_CPUS) as u64;
    let others = [
        (
            "GDT/IDT",
            layout::BOOT_GDT_START,
            layout::BOOT_IDT_START + 8,
        ),
        (
            "PVH start info",
            layout::PVH_INFO_START,
            layout::PVH_MODLIST_START + 0x20,
        ),
        (
            "zero page",
            layout::ZERO_PAGE_START,
            layout::ZERO_PAGE_START + 0x1000,
        ),
        ("page tables", layout::PML4_START, layout::PVH_MEMMAP_START),
        (
            "PVH memmap",
            layout::PVH_MEMMAP_START,
            layout::PVH_MEMMAP_START + layout::PVH_MEMMAP_MAX_SIZE,
        ),
        (
            "command line",
            layout::CMDLINE_START,
            layout::CMDLINE_START + layout::CMDLINE_MAX_SIZE,
        ),
        ("MP table", layout::MPTABLE_START, mptable_end),
        ("kernel", layout::HIGH_RAM_START, layout.ram_below_4g),
    ];
    for (what, start, end) in others {
        assert!(
            end <= ACPI_TABLES_START || start >= ACPI_TABLES_END,
            "{what} [{start:#x}, {end:#x}) overlaps the ACPI area"
        );
    }
}

#[test]
fn bad_configurations_are_rejected_before_anything_is_written() {
    let (mem, layout) = guest(128 << 20);
    let err = |cfg: AcpiConfig| create_acpi_tables(&mem, &cfg).unwrap_err();
    assert!(matches!(err(config(&layout, 0)), AcpiError::NoCpus));
    assert!(matches!(
        err(config(&layout, 255)),
        AcpiError::TooManyCpus { num_vcpus: 255 }
    ));
    let mut cfg = config(&layout, 1);
    cfg.pm.s5_sleep_type = 8;
    assert!(matches!(err(cfg), AcpiError::BadSleepType { value: 8 }));
    let mut cfg = config(&layout, 1);
    cfg.pm.reset = 0;
    let e = err(cfg);
    assert!(
        matches!(e, AcpiError::ZeroPort { register: "reset" }),
        "{e}"
    );
    assert_eq!(read(&mem, RSDP_ADDR, 8), [0; 8], "nothing written");
}

#[test]
fn the_area_refuses_tables_past_1_mib() {
    let mut area = TableArea::new();
    let max = (ACPI_TABLES_END - ACPI_TABLES_START) as usize;
    assert_eq!(area.push(&[1; 10]).unwrap(), ACPI_TABLES_START + 48);
    let too_big = vec![0; max];
    assert!(matches!(
        area.push(&too_big),
        Err(AcpiError::TooLarge { .. })
    ));
    let e = area.push(&too_big).unwrap_err().to_string();
    assert!(e.contains("0xe0000"), "{e}");
}

#[test]
fn memory_without_the_acpi_area_is_an_error_not_a_panic() {
    let layout = MemoryLayout::new(128 << 20, 40).unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x8_0000)]).unwrap();
    let e = create_acpi_tables(&mem, &config(&layout, 1)).unwrap_err();
    assert!(matches!(e, AcpiError::Write { addr: 0xE_0000, .. }), "{e}");
}
