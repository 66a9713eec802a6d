//! SMBIOS 3.0 tables: the guest's identity (`/sys/class/dmi/id`, `dmidecode`).
//!
//! A guest without firmware finds SMBIOS the way Linux does on a legacy PC: it scans
//! `[0xf0000, 0x100000)` on 16-byte boundaries for the `_SM3_` anchor (the 64-bit entry point
//! of SMBIOS 3.x), which gives the address and size of the structure table. Both are written
//! at [`SMBIOS_START`], in the reserved BIOS area after the ACPI tables.
//!
//! The structures (DSP0134 3.x), in this order:
//!
//! | type | what                  | from                                                    |
//! |------|-----------------------|---------------------------------------------------------|
//! | 0    | BIOS information      | this VMM's name and version; "is a virtual machine"     |
//! | 1    | system information    | manufacturer, product, version, serial, UUID, SKU, family |
//! | 3    | chassis               | type "Other", the asset tag                             |
//! | 4    | processor             | one socket with the VM's vCPUs as single-thread cores   |
//! | 11   | OEM strings           | only when there are some                                |
//! | 32   | system boot           | "no errors detected"                                    |
//! | 127  | end of table          |                                                         |
//!
//! The UUID is stored as SMBIOS 2.6 and later store it (its first three fields
//! little-endian), so the guest prints the string it was given: NVIDIA's vGPU manager, cloud
//! agents and licence checks identify a VM by it.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

/// Where the entry point is written (the start of the legacy scan range); the structure
/// table follows it.
pub const SMBIOS_START: u64 = 0xF_0000;
/// One past the end of the area (the 1 MiB line); reserved in the E820 map with the ACPI area.
pub const SMBIOS_END: u64 = 0x10_0000;

/// Length of the SMBIOS 3.0 entry point.
pub const ENTRY_POINT_LEN: usize = 0x18;
/// The structure table starts here, 16-byte aligned after the entry point.
const TABLE_START: u64 = SMBIOS_START + 0x20;

/// Values used when the configuration names none.
pub const DEFAULT_MANUFACTURER: &str = "vmm";
pub const DEFAULT_PRODUCT_NAME: &str = "vmm";

/// SMBIOS version the tables follow.
const MAJOR: u8 = 3;
const MINOR: u8 = 2;

const BIOS_INFORMATION: u8 = 0;
const SYSTEM_INFORMATION: u8 = 1;
const CHASSIS: u8 = 3;
const PROCESSOR: u8 = 4;
const OEM_STRINGS: u8 = 11;
const SYSTEM_BOOT: u8 = 32;
const END_OF_TABLE: u8 = 127;

/// Type 0 characteristics: "BIOS characteristics are not supported" is not what we say; we
/// say PCI is supported (bit 7) and, in extension byte 2, that this is a virtual machine (bit 4).
const BIOS_PCI_SUPPORTED: u64 = 1 << 7;
const BIOS_EXT2_VIRTUAL_MACHINE: u8 = 1 << 4;
/// Type 1 wake-up type: power switch.
const WAKE_UP_POWER_SWITCH: u8 = 0x06;
/// Type 3 chassis type "Other" and state "Safe".
const CHASSIS_OTHER: u8 = 0x01;
const STATE_SAFE: u8 = 0x03;
const SECURITY_NONE: u8 = 0x03;
/// Type 4: central processor, family "Other", socket populated and CPU enabled, 64-bit capable.
const PROCESSOR_CENTRAL: u8 = 0x03;
const PROCESSOR_FAMILY_OTHER: u8 = 0x01;
const PROCESSOR_STATUS_ENABLED: u8 = 0x41;
const PROCESSOR_UPGRADE_OTHER: u8 = 0x01;
const PROCESSOR_64BIT: u16 = 1 << 2;
const NO_CACHE: u16 = 0xFFFF;

/// What the tables say about the VM. Strings are the guest-visible text (ASCII is safest;
/// none may contain a NUL byte, see [`check_string`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmbiosConfig {
    pub manufacturer: Option<String>,
    pub product_name: Option<String>,
    pub version: Option<String>,
    pub serial_number: Option<String>,
    /// The system UUID in the order it is written as text (see [`parse_uuid`]).
    pub uuid: Option<[u8; 16]>,
    pub sku_number: Option<String>,
    pub family: Option<String>,
    pub chassis_asset_tag: Option<String>,
    pub oem_strings: Vec<String>,
    /// vCPUs, described as single-thread cores of one socket.
    pub num_vcpus: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SmbiosError {
    #[error("SMBIOS: {field} contains a NUL byte")]
    Nul { field: &'static str },
    #[error("SMBIOS: {field} is empty (leave it out instead)")]
    Empty { field: &'static str },
    #[error("SMBIOS: more than 255 strings in one structure")]
    TooManyStrings,
    #[error("SMBIOS: the tables take {size} bytes, more than the {max} bytes of their area")]
    TooLarge { size: u64, max: u64 },
    #[error("SMBIOS: writing the tables to guest memory at {addr:#x}")]
    Write {
        addr: u64,
        #[source]
        source: GuestMemoryError,
    },
}

/// A UUID in its text form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits in either
/// case; 32 digits without dashes are accepted too) to its 16 bytes in text order.
pub fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    let bad = || format!("{s:?} is not a UUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
    let digits: Vec<u8> = if s.len() == 36 {
        for (i, c) in s.bytes().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) != (c == b'-') {
                return Err(bad());
            }
        }
        s.bytes().filter(|&c| c != b'-').collect()
    } else if s.len() == 32 {
        s.bytes().collect()
    } else {
        return Err(bad());
    };
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8).ok_or_else(bad);
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = nibble(digits[2 * i])? << 4 | nibble(digits[2 * i + 1])?;
    }
    Ok(out)
}

/// A string the tables can hold: not empty (string number 0 means "none"), no NUL.
pub fn check_string(field: &'static str, s: &str) -> Result<(), SmbiosError> {
    if s.is_empty() {
        return Err(SmbiosError::Empty { field });
    }
    if s.contains('\0') {
        return Err(SmbiosError::Nul { field });
    }
    Ok(())
}

/// One structure: its formatted area and its string set.
struct Structure {
    formatted: Vec<u8>,
    strings: Vec<String>,
}

impl Structure {
    fn new(kind: u8, handle: u16) -> Self {
        // Length (byte 1) is filled in by `finish`.
        let mut formatted = vec![kind, 0];
        formatted.extend_from_slice(&handle.to_le_bytes());
        Structure {
            formatted,
            strings: Vec::new(),
        }
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.formatted.push(v);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.formatted.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.formatted.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.formatted.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.formatted.extend_from_slice(v);
        self
    }

    /// A string field: its number in the string set, or 0 for none.
    fn string(&mut self, s: Option<&str>) -> Result<&mut Self, SmbiosError> {
        let n = match s {
            None => 0,
            Some(s) => {
                self.strings.push(s.to_string());
                u8::try_from(self.strings.len()).map_err(|_| SmbiosError::TooManyStrings)?
            }
        };
        Ok(self.u8(n))
    }

    fn finish(mut self, out: &mut Vec<u8>) {
        self.formatted[1] = self.formatted.len() as u8;
        out.extend_from_slice(&self.formatted);
        if self.strings.is_empty() {
            out.extend_from_slice(&[0, 0]);
        } else {
            for s in &self.strings {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
            out.push(0);
        }
    }
}

/// The UUID's bytes as SMBIOS 2.6+ stores them: time_low, time_mid and
/// time_hi_and_version little-endian, the rest as written.
fn uuid_wire(u: &[u8; 16]) -> [u8; 16] {
    let mut w = *u;
    w[0..4].reverse();
    w[4..6].reverse();
    w[6..8].reverse();
    w
}

/// The structure table for `cfg`.
pub fn build_table(cfg: &SmbiosConfig) -> Result<Vec<u8>, SmbiosError> {
    let strings = [
        ("system_manufacturer", &cfg.manufacturer),
        ("system_product_name", &cfg.product_name),
        ("system_version", &cfg.version),
        ("system_serial_number", &cfg.serial_number),
        ("system_sku_number", &cfg.sku_number),
        ("system_family", &cfg.family),
        ("chassis_asset_tag", &cfg.chassis_asset_tag),
    ];
    for (field, s) in strings {
        if let Some(s) = s {
            check_string(field, s)?;
        }
    }
    for s in &cfg.oem_strings {
        check_string("oem_strings", s)?;
    }
    let manufacturer = cfg.manufacturer.as_deref().unwrap_or(DEFAULT_MANUFACTURER);
    let mut out = Vec::with_capacity(512);
    let mut handle = 0u16;
    let mut next = || {
        handle += 1;
        handle - 1
    };

    let mut bios = Structure::new(BIOS_INFORMATION, next());
    bios.string(Some(DEFAULT_MANUFACTURER))? // vendor
        .string(Some(env!("CARGO_PKG_VERSION")))? // version
        .u16(0) // starting address segment: none (no legacy BIOS image)
        .string(None)? // release date
        .u8(0) // ROM size: none
        .u64(BIOS_PCI_SUPPORTED)
        .u8(0) // characteristics extension byte 1
        .u8(BIOS_EXT2_VIRTUAL_MACHINE)
        .u8(0xFF) // system BIOS major release: not given
        .u8(0xFF) // minor
        .u8(0xFF) // embedded controller firmware major: none
        .u8(0xFF); // minor
    bios.finish(&mut out);

    let mut system = Structure::new(SYSTEM_INFORMATION, next());
    system
        .string(Some(manufacturer))?
        .string(Some(
            cfg.product_name.as_deref().unwrap_or(DEFAULT_PRODUCT_NAME),
        ))?
        .string(cfg.version.as_deref())?
        .string(cfg.serial_number.as_deref())?
        .bytes(&uuid_wire(&cfg.uuid.unwrap_or([0; 16])))
        .u8(WAKE_UP_POWER_SWITCH)
        .string(cfg.sku_number.as_deref())?
        .string(cfg.family.as_deref())?;
    system.finish(&mut out);

    let mut chassis = Structure::new(CHASSIS, next());
    chassis
        .string(Some(manufacturer))?
        .u8(CHASSIS_OTHER)
        .string(None)? // version
        .string(None)? // serial number
        .string(cfg.chassis_asset_tag.as_deref())?
        .u8(STATE_SAFE) // boot-up state
        .u8(STATE_SAFE) // power supply state
        .u8(STATE_SAFE) // thermal state
        .u8(SECURITY_NONE)
        .u32(0) // OEM-defined
        .u8(0) // height: unspecified
        .u8(0) // power cords: unspecified
        .u8(0) // contained elements
        .u8(0); // contained element record length
    chassis.finish(&mut out);

    let cores = cfg.num_vcpus;
    let small = |n: u32| u8::try_from(n).unwrap_or(0xFF);
    let large = |n: u32| u16::try_from(n).unwrap_or(0xFFFF);
    let mut cpu = Structure::new(PROCESSOR, next());
    cpu.string(Some("CPU 0"))? // socket designation
        .u8(PROCESSOR_CENTRAL)
        .u8(PROCESSOR_FAMILY_OTHER)
        .string(None)? // manufacturer
        .u64(0) // processor ID: the guest reads CPUID itself
        .string(None)? // version
        .u8(0) // voltage: unknown
        .u16(0) // external clock: unknown
        .u16(0) // max speed: unknown
        .u16(0) // current speed: unknown
        .u8(PROCESSOR_STATUS_ENABLED)
        .u8(PROCESSOR_UPGRADE_OTHER)
        .u16(NO_CACHE)
        .u16(NO_CACHE)
        .u16(NO_CACHE)
        .string(None)? // serial number
        .string(None)? // asset tag
        .string(None)? // part number
        .u8(small(cores)) // core count
        .u8(small(cores)) // cores enabled
        .u8(small(cores)) // thread count
        .u16(PROCESSOR_64BIT)
        .u16(PROCESSOR_FAMILY_OTHER as u16) // processor family 2
        .u16(large(cores)) // core count 2
        .u16(large(cores)) // cores enabled 2
        .u16(large(cores)); // thread count 2
    cpu.finish(&mut out);

    if !cfg.oem_strings.is_empty() {
        let count = u8::try_from(cfg.oem_strings.len()).map_err(|_| SmbiosError::TooManyStrings)?;
        let mut oem = Structure::new(OEM_STRINGS, next());
        oem.u8(count);
        oem.strings = cfg.oem_strings.clone();
        oem.finish(&mut out);
    }

    let mut boot = Structure::new(SYSTEM_BOOT, next());
    boot.bytes(&[0; 6]).u8(0); // reserved; status: no errors detected
    boot.finish(&mut out);

    Structure::new(END_OF_TABLE, next()).finish(&mut out);
    Ok(out)
}

/// The 64-bit entry point for a structure table of `table_len` bytes at `table_addr`.
pub fn entry_point(table_addr: u64, table_len: u32) -> [u8; ENTRY_POINT_LEN] {
    let mut ep = [0u8; ENTRY_POINT_LEN];
    ep[0..5].copy_from_slice(b"_SM3_");
    ep[6] = ENTRY_POINT_LEN as u8;
    ep[7] = MAJOR;
    ep[8] = MINOR;
    ep[9] = 0; // docrev
    ep[10] = 1; // entry point revision: 3.0
    ep[12..16].copy_from_slice(&table_len.to_le_bytes()); // structure table maximum size
    ep[16..24].copy_from_slice(&table_addr.to_le_bytes());
    let sum = ep.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    ep[5] = 0u8.wrapping_sub(sum);
    ep
}

/// The entry point and table for `cfg`, as one block to write at [`SMBIOS_START`].
pub fn build(cfg: &SmbiosConfig) -> Result<Vec<u8>, SmbiosError> {
    let table = build_table(cfg)?;
    let size = TABLE_START - SMBIOS_START + table.len() as u64;
    let max = SMBIOS_END - SMBIOS_START;
    if size > max {
        return Err(SmbiosError::TooLarge { size, max });
    }
    let mut area = vec![0u8; (TABLE_START - SMBIOS_START) as usize];
    area[..ENTRY_POINT_LEN].copy_from_slice(&entry_point(TABLE_START, table.len() as u32));
    area.extend_from_slice(&table);
    Ok(area)
}

/// Builds the tables for `cfg` and writes them at [`SMBIOS_START`].
pub fn setup_smbios(mem: &GuestMemoryMmap, cfg: &SmbiosConfig) -> Result<(), SmbiosError> {
    let area = build(cfg)?;
    mem.write_slice(&area, GuestAddress(SMBIOS_START))
        .map_err(|source| SmbiosError::Write {
            addr: SMBIOS_START,
            source,
        })
}

#[cfg(test)]
mod tests;
