//! The tables read back the way Linux's dmi_scan.c reads them: scan for the anchor, check the
//! entry point, walk the structures, take strings by number, print the UUID.

use super::*;
use vm_memory::GuestMemoryMmap;

/// One decoded structure: type, formatted area, strings.
#[derive(Debug)]
struct Decoded {
    kind: u8,
    formatted: Vec<u8>,
    strings: Vec<String>,
}

impl Decoded {
    /// String field at `offset` (0 = none), as dmi_string() resolves it.
    fn string(&self, offset: usize) -> Option<&str> {
        let n = self.formatted[offset] as usize;
        (n != 0).then(|| self.strings[n - 1].as_str())
    }
}

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap()
}

/// Scan `[0xf0000, 0x100000)` on 16-byte boundaries for `_SM3_` (dmi_scan_machine's
/// non-EFI path), check it as dmi_smbios3_present does, and walk the table.
fn scan(mem: &GuestMemoryMmap) -> (u32, Vec<Decoded>) {
    let mut area = vec![0u8; 0x10000];
    mem.read_slice(&mut area, GuestAddress(0xF0000)).unwrap();
    let at = (0..area.len())
        .step_by(16)
        .find(|&i| &area[i..i + 5] == b"_SM3_")
        .expect("no _SM3_ anchor in the scan range");
    let ep = &area[at..at + 32];
    let len = ep[6] as usize;
    assert!((24..=32).contains(&len), "entry point length {len}");
    assert_eq!(
        ep[..len].iter().fold(0u8, |a, &b| a.wrapping_add(b)),
        0,
        "entry point checksum"
    );
    let version = u32::from_be_bytes([0, ep[7], ep[8], ep[9]]);
    let table_len = u32::from_le_bytes(ep[12..16].try_into().unwrap()) as usize;
    let table_addr = u64::from_le_bytes(ep[16..24].try_into().unwrap());
    let mut table = vec![0u8; table_len];
    mem.read_slice(&mut table, GuestAddress(table_addr))
        .unwrap();

    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= table.len() {
        let kind = table[i];
        let flen = table[i + 1] as usize;
        assert!(flen >= 4, "structure at {i} has length {flen}");
        let formatted = table[i..i + flen].to_vec();
        // The string set ends at a double NUL.
        let mut j = i + flen;
        let mut strings = Vec::new();
        if table[j] == 0 && table[j + 1] == 0 {
            j += 2;
        } else {
            loop {
                let end = j + table[j..].iter().position(|&b| b == 0).unwrap();
                strings.push(String::from_utf8(table[j..end].to_vec()).unwrap());
                j = end + 1;
                if table[j] == 0 {
                    j += 1;
                    break;
                }
            }
        }
        out.push(Decoded {
            kind,
            formatted,
            strings,
        });
        i = j;
        if kind == END_OF_TABLE {
            break;
        }
    }
    assert_eq!(
        i,
        table.len(),
        "the table length covers the structures exactly"
    );
    (version, out)
}

/// How Linux prints the type 1 UUID for SMBIOS ≥ 2.6 (%pUl: first three fields LE).
fn linux_uuid(f: &[u8]) -> String {
    let u = &f[8..24];
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6], u[8], u[9], u[10], u[11], u[12], u[13],
        u[14], u[15]
    )
}

fn find(s: &[Decoded], kind: u8) -> &Decoded {
    s.iter().find(|d| d.kind == kind).unwrap()
}

const UUID: &str = "4b1c0a5e-9f3d-4c2a-8e7b-123456789abc";

fn full() -> SmbiosConfig {
    SmbiosConfig {
        manufacturer: Some("Acme Cloud".into()),
        product_name: Some("gpu-pool".into()),
        version: Some("v2".into()),
        serial_number: Some("SN-0042".into()),
        uuid: Some(parse_uuid(UUID).unwrap()),
        sku_number: Some("h100x8".into()),
        family: Some("sandbox".into()),
        chassis_asset_tag: Some("rack7-u12".into()),
        oem_strings: vec!["io.katacontainers.pod=abc".into(), "tenant=42".into()],
        num_vcpus: 4,
    }
}

#[test]
fn the_guest_finds_the_tables_and_reads_every_field_back() {
    let m = mem();
    setup_smbios(&m, &full()).unwrap();
    let (version, s) = scan(&m);
    assert_eq!(version, 0x030200);
    let kinds: Vec<u8> = s.iter().map(|d| d.kind).collect();
    assert_eq!(kinds, [0, 1, 3, 4, 11, 32, 127]);
    // Handles are unique.
    let mut handles: Vec<u16> = s
        .iter()
        .map(|d| u16::from_le_bytes([d.formatted[2], d.formatted[3]]))
        .collect();
    handles.dedup();
    assert_eq!(handles.len(), s.len());

    let bios = find(&s, 0);
    assert_eq!(bios.formatted.len(), 0x18);
    assert_eq!(bios.string(4), Some(DEFAULT_MANUFACTURER));
    assert_eq!(bios.string(5), Some(env!("CARGO_PKG_VERSION")));
    assert_ne!(bios.formatted[0x13] & (1 << 4), 0, "virtual machine bit");

    let sys = find(&s, 1);
    assert_eq!(sys.formatted.len(), 0x1B);
    assert_eq!(sys.string(4), Some("Acme Cloud"));
    assert_eq!(sys.string(5), Some("gpu-pool"));
    assert_eq!(sys.string(6), Some("v2"));
    assert_eq!(sys.string(7), Some("SN-0042"));
    assert_eq!(linux_uuid(&sys.formatted), UUID);
    assert_eq!(sys.string(0x19), Some("h100x8"));
    assert_eq!(sys.string(0x1A), Some("sandbox"));

    let chassis = find(&s, 3);
    assert_eq!(chassis.formatted.len(), 0x15);
    assert_eq!(chassis.string(4), Some("Acme Cloud"));
    assert_eq!(chassis.string(8), Some("rack7-u12"));

    let cpu = find(&s, 4);
    assert_eq!(cpu.formatted.len(), 0x30);
    assert_eq!(cpu.formatted[0x23], 4, "core count");
    assert_eq!(cpu.formatted[0x25], 4, "thread count");
    assert_eq!(
        u16::from_le_bytes([cpu.formatted[0x2A], cpu.formatted[0x2B]]),
        4
    );

    let oem = find(&s, 11);
    assert_eq!(
        oem.formatted,
        [11, 5, oem.formatted[2], oem.formatted[3], 2]
    );
    assert_eq!(oem.strings, ["io.katacontainers.pod=abc", "tenant=42"]);

    let boot = find(&s, 32);
    assert_eq!(boot.formatted.len(), 11);
    assert_eq!(boot.formatted[10], 0);
}

#[test]
fn defaults_name_the_vmm_leave_the_rest_empty_and_skip_oem_strings() {
    let m = mem();
    setup_smbios(
        &m,
        &SmbiosConfig {
            num_vcpus: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let (_, s) = scan(&m);
    let kinds: Vec<u8> = s.iter().map(|d| d.kind).collect();
    assert_eq!(kinds, [0, 1, 3, 4, 32, 127]);
    let sys = find(&s, 1);
    assert_eq!(sys.string(4), Some(DEFAULT_MANUFACTURER));
    assert_eq!(sys.string(5), Some(DEFAULT_PRODUCT_NAME));
    assert_eq!(sys.string(7), None);
    assert_eq!(
        linux_uuid(&sys.formatted),
        "00000000-0000-0000-0000-000000000000"
    );
}

#[test]
fn more_than_255_vcpus_go_in_the_16_bit_counts() {
    let table = build_table(&SmbiosConfig {
        num_vcpus: 300,
        ..Default::default()
    })
    .unwrap();
    let m = mem();
    let area = build(&SmbiosConfig {
        num_vcpus: 300,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(&area[0x20..], &table[..]);
    m.write_slice(&area, GuestAddress(SMBIOS_START)).unwrap();
    let (_, s) = scan(&m);
    let cpu = find(&s, 4);
    assert_eq!(cpu.formatted[0x23], 0xFF);
    assert_eq!(
        u16::from_le_bytes([cpu.formatted[0x2A], cpu.formatted[0x2B]]),
        300
    );
}

#[test]
fn uuids_parse_in_both_spellings_and_bad_ones_are_refused() {
    let a = parse_uuid(UUID).unwrap();
    assert_eq!(a[0], 0x4b);
    assert_eq!(a[15], 0xbc);
    assert_eq!(parse_uuid(&UUID.replace('-', "")).unwrap(), a);
    assert_eq!(parse_uuid(&UUID.to_uppercase()).unwrap(), a);
    for bad in [
        "",
        "4b1c0a5e-9f3d-4c2a-8e7b-123456789ab",
        "4b1c0a5e-9f3d-4c2a-8e7b-123456789abz",
        "4b1c0a5e9-f3d-4c2a-8e7b-123456789abc",
        "not a uuid",
    ] {
        assert!(parse_uuid(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn strings_with_nul_or_empty_are_refused_and_nothing_is_built() {
    let mut c = full();
    c.serial_number = Some("a\0b".into());
    assert!(matches!(
        build_table(&c),
        Err(SmbiosError::Nul {
            field: "system_serial_number"
        })
    ));
    let mut c = full();
    c.oem_strings.push(String::new());
    assert!(matches!(
        build_table(&c),
        Err(SmbiosError::Empty {
            field: "oem_strings"
        })
    ));
    let mut c = full();
    c.oem_strings = (0..256).map(|i| format!("s{i}")).collect();
    assert!(matches!(build_table(&c), Err(SmbiosError::TooManyStrings)));
}

#[test]
fn tables_too_large_for_their_area_are_an_error() {
    let mut c = full();
    c.oem_strings = (0..255)
        .map(|i| format!("{i}-{}", "x".repeat(300)))
        .collect();
    assert!(matches!(build(&c), Err(SmbiosError::TooLarge { .. })));
}

#[test]
fn the_area_does_not_overlap_the_acpi_tables_and_is_reserved() {
    use crate::acpi::{ACPI_TABLES_END, ACPI_TABLES_START};
    const { assert!(ACPI_TABLES_END <= SMBIOS_START) };
    let layout = crate::layout::MemoryLayout::new(128 << 20, 40).unwrap();
    let map = crate::e820_map(&layout);
    assert!(map.iter().any(|e| e.kind == crate::e820::E820_RESERVED
        && e.addr <= ACPI_TABLES_START
        && e.addr + e.size >= SMBIOS_END));
}
