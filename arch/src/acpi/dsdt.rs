//! The Differentiated System Description Table (ACPI 6.5 section 5.2.11.1): the AML
//! namespace the guest enumerates.
//!
//! ```text
//! \_S5_          Package { S5 SLP_TYP, 0 }
//! \_SB_.Cnnn     ACPI0007 processor, _UID = MADT processor UID, _STA = 0xF (per vCPU)
//! \_SB_.PCI0     PNP0A08/PNP0A03 host bridge, segment 0, bus 0; _CRS: bus range,
//!                config ports 0xcf8-0xcff, I/O 0-0xcf7 and 0xd00-0xffff, the 32-bit
//!                and 64-bit MMIO windows; _PRT: INTA#..INTD# of every slot on IOAPIC
//!                GSIs 16..=23 (see [`pci_intx_gsi`])
//! \_SB_.PCIn     PNP0A08 host bridge of PCI segment n (1..=15, when the VM has them):
//!                _SEG n, buses from 0, its own MMIO windows, _PRT as PCI0's
//! \_SB_.COM1     PNP0501 16550 (when the VM has one): I/O port block + its IRQ
//! \_SB_.MBRD     PNP0C02 motherboard resources: the ECAM and the PM registers
//! \_SB_.PWRB     PNP0C0C power button (when the VMM has a power-button interrupt)
//! \_SB_.GED0     ACPI0013 Generic Event Device: its interrupt runs _EVT, which notifies
//!                PWRB with 0x80 (button pressed) -- how a HW-reduced platform signals it
//! \_SB_.PHPR, \_SB_.GED1, \_SB_.PCI0.Snnn: ACPI PCI hotplug, when enabled (see hotplug.rs)
//! ```

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, And, Arg, CreateDWordField, Device, EISAName, Else, Equal,
    If, Interrupt, Local, Memory32Fixed, Method, Name, NotEqual, Notify, Or, Package,
    PackageBuilder, Path, ResourceTemplate, Return, Scope, Store, Uuid, IO, ONE, ZERO,
};
use acpi_tables::sdt::Sdt;
use acpi_tables::{Aml, AmlSink};

use super::{AcpiConfig, AcpiError, PmPorts, SerialPort, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::{Expander, MemoryLayout, PCI_ECAM_SIZE, PCI_ECAM_START};
use crate::pci_segments::{PciSegmentLayout, SEGMENT_ECAM_SIZE, SEGMENT_ECAM_START};

/// Revision 2 and later: AML integers are 64 bits wide.
const DSDT_REVISION: u8 = 2;
/// _STA: present, enabled, shown in the UI, functioning.
const STA_PRESENT: u8 = 0x0f;
/// PCI configuration address/data ports.
const PCI_CONFIG_PORT: u16 = 0xcf8;
const PCI_CONFIG_PORT_LEN: u8 = 8;
/// Ports of a 16550.
const SERIAL_PORT_LEN: u8 = 8;

/// `\_S5_`: the SLP_TYP OSPM writes to the sleep control register for soft-off.
fn sleep_states(pm: &PmPorts, sink: &mut Vec<u8>) {
    let s5 = pm.s5_sleep_type;
    Name::new("_S5_".into(), &Package::new(vec![&s5, &ZERO])).to_aml_bytes(sink);
}

/// AML serialized once and reused as is.
struct Raw(Vec<u8>);

impl Raw {
    fn of(aml: &dyn Aml) -> Self {
        let mut bytes = Vec::new();
        aml.to_aml_bytes(&mut bytes);
        Raw(bytes)
    }
}

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

/// One ACPI0007 processor device per vCPU; `_UID` matches the MADT processor UID.
/// What all of them share is serialized once: this runs for every vCPU at boot.
fn processors(num_vcpus: u32, sink: &mut Vec<u8>) {
    let hid = Raw::of(&Name::new("_HID".into(), &"ACPI0007"));
    let present = Return::new(&STA_PRESENT);
    let sta = Raw::of(&Method::new("_STA".into(), 0, false, vec![&present]));
    for id in 0..num_vcpus {
        let name = format!("C{id:03X}");
        let uid = Name::new("_UID".into(), &id);
        Device::new(Path::new(&name), vec![&hid, &uid, &sta]).to_aml_bytes(sink);
    }
}

/// `[start, start + len)` as inclusive `(min, max)`; `None` when empty.
fn inclusive((start, len): (u64, u64)) -> Option<(u64, u64)> {
    let last = start.checked_add(len.checked_sub(1)?)?;
    Some((start, last))
}

/// The 32-bit MMIO window as a DWord memory descriptor; `None` when it is empty.
fn mmio32_window(window: (u64, u64)) -> Result<Option<AddressSpace<u32>>, AcpiError> {
    let Some((min, max)) = inclusive(window) else {
        return Ok(None);
    };
    let (Ok(min), Ok(max)) = (u32::try_from(min), u32::try_from(max)) else {
        return Err(AcpiError::Mmio32Window {
            start: window.0,
            len: window.1,
        });
    };
    let cache = AddressSpaceCacheable::NotCacheable;
    Ok(Some(AddressSpace::new_memory(cache, true, min, max, None)))
}

/// A 64-bit (prefetchable) MMIO window `(start, len)` for a `_CRS`; None when empty.
fn mmio64_window(window: (u64, u64)) -> Option<AddressSpace<u64>> {
    inclusive(window).map(|(min, max)| {
        AddressSpace::<u64>::new_memory(AddressSpaceCacheable::Cacheable, true, min, max, None)
    })
}

/// Slots on the root bus (device numbers 0..=31).
const PCI_SLOTS: u8 = 32;
/// The first of the IOAPIC pins PCI INTx lines go to.
const PCI_INTX_FIRST_GSI: u32 = 16;
/// How many there are (16..=23).
const PCI_INTX_GSIS: u32 = 8;

/// The IOAPIC GSI of PCI slot `slot`'s interrupt pin `pin` (0 = INTA# .. 3 = INTD#), as the
/// DSDT's `_PRT` routes it: GSIs 16..=23, swizzled so that the INTA# of neighbouring slots
/// land on different lines. Level-triggered, active low, shared.
pub fn pci_intx_gsi(slot: u8, pin: u8) -> u32 {
    PCI_INTX_FIRST_GSI + (u32::from(slot) + u32::from(pin)) % PCI_INTX_GSIS
}

/// `_PRT`: one `Package { Address, Pin, Source, SourceIndex }` per slot and pin, with Source 0
/// (SourceIndex is a global system interrupt, not a link device).
fn pci_routing_table() -> PackageBuilder {
    let mut prt = PackageBuilder::new();
    for slot in 0..PCI_SLOTS {
        let address = u32::from(slot) << 16 | 0xffff;
        for pin in 0..4u8 {
            let gsi = pci_intx_gsi(slot, pin);
            prt.add_element(&Package::new(vec![&address, &pin, &ZERO, &gsi]));
        }
    }
    prt
}

/// The PCI host bridge: segment 0, buses `0..=last_bus`, all I/O ports but the
/// config ports, and the MMIO windows of `layout`.
fn pci_host_bridge(
    layout: &MemoryLayout,
    hotplug: bool,
    last_bus: u8,
    node: Option<u32>,
    sink: &mut Vec<u8>,
) -> Result<(), AcpiError> {
    let config = IO::new(PCI_CONFIG_PORT, PCI_CONFIG_PORT, 1, PCI_CONFIG_PORT_LEN);
    let io_low = AddressSpace::<u16>::new_io(0, PCI_CONFIG_PORT - 1, None);
    let io_high = AddressSpace::<u16>::new_io(0xd00, 0xffff, None);
    let mut slots = Vec::new();
    if hotplug {
        super::hotplug::slots(0, &mut slots);
    }
    host_bridge(
        HostBridge {
            name: "PCI0".into(),
            segment: 0,
            uid: 0,
            buses: (0, last_bus),
            node,
            io: &[&config, &io_low, &io_high],
            mmio32: layout.mmio32,
            mmio64: layout.mmio64,
            extra: &[&Raw(slots)],
        },
        sink,
    )
}

/// What tells one PCI host bridge (PNP0A08) from another.
struct HostBridge<'a> {
    name: String,
    segment: u16,
    uid: u32,
    /// Its root bus (`_BBN`) and last bus.
    buses: (u8, u8),
    /// `_PXM`, when it is in a NUMA node.
    node: Option<u32>,
    /// I/O resources of its `_CRS`, after the bus range.
    io: &'a [&'a dyn Aml],
    mmio32: (u64, u64),
    mmio64: (u64, u64),
    /// More of its namespace, after `_OSC`.
    extra: &'a [&'a dyn Aml],
}

/// A host bridge: its ids, segment, root bus, node, `_CRS` (buses, `io`, the MMIO windows),
/// `_PRT` (INTx of every slot on IOAPIC GSIs) and `_OSC`.
fn host_bridge(b: HostBridge<'_>, sink: &mut Vec<u8>) -> Result<(), AcpiError> {
    let bus = AddressSpace::<u16>::new_bus_number(u16::from(b.buses.0), u16::from(b.buses.1));
    let mem32 = mmio32_window(b.mmio32)?;
    let mem64 = mmio64_window(b.mmio64);
    let mut crs: Vec<&dyn Aml> = vec![&bus];
    crs.extend(b.io);
    if let Some(m) = &mem32 {
        crs.push(m);
    }
    if let Some(m) = &mem64 {
        crs.push(m);
    }
    let (segment, bbn) = (u32::from(b.segment), u32::from(b.buses.0));
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0A08"));
    let cid = Name::new("_CID".into(), &EISAName::new("PNP0A03"));
    let seg = Name::new("_SEG".into(), &segment);
    let uid = Name::new("_UID".into(), &b.uid);
    let bbn = Name::new("_BBN".into(), &bbn);
    let pxm = b.node.map(|n| Name::new("_PXM".into(), &n));
    let crs = Name::new("_CRS".into(), &ResourceTemplate::new(crs));
    let prt = Name::new("_PRT".into(), &pci_routing_table());
    let osc = Raw(osc());
    let mut children: Vec<&dyn Aml> = vec![&hid, &cid, &seg, &uid, &bbn];
    if let Some(p) = &pxm {
        children.push(p);
    }
    children.extend([&crs as &dyn Aml, &prt, &osc]);
    children.extend(b.extra);
    Device::new(b.name.as_str().into(), children).to_aml_bytes(sink);
    Ok(())
}

/// The PCI host bridge's `_OSC` (PCI Firmware Specification 3.3, 4.5.1): the OS gets native
/// control of PME, AER and the PCI Express capability structure when it asks (so its pcieport
/// driver serves the root ports), not of hot-plug (PCIe native and SHPC, bits 0 and 1), which
/// stays ACPI's (the slots above are hot-plugged through `_EJ0` and the GED), nor of LTR. Bits it did not get
/// are reported with the "capabilities masked" error bit, an unknown revision with its bit,
/// an unknown UUID with its bit, as QEMU's firmware does.
fn osc() -> Vec<u8> {
    let cdw1 = Path::new("CDW1");
    let cdw3 = Path::new("CDW3");
    let ctrl = Local(0);
    let mut out = Vec::new();
    Method::new(
        "_OSC".into(),
        4,
        false,
        vec![
            &CreateDWordField::new(&cdw1, &Arg(3), &ZERO),
            &If::new(
                &Equal::new(&Arg(0), &Uuid::new("33DB4D5B-1FF7-401C-9657-7441C03DD766")),
                vec![
                    &CreateDWordField::new(&cdw3, &Arg(3), &8u8),
                    &Store::new(&ctrl, &cdw3),
                    &And::new(&ctrl, &ctrl, &0x1cu8),
                    &If::new(
                        &NotEqual::new(&Arg(1), &ONE),
                        vec![&Or::new(&cdw1, &cdw1, &0x08u8)],
                    ),
                    &If::new(
                        &NotEqual::new(&cdw3, &ctrl),
                        vec![&Or::new(&cdw1, &cdw1, &0x10u8)],
                    ),
                    &Store::new(&cdw3, &ctrl),
                ],
            ),
            &Else::new(vec![&Or::new(&cdw1, &cdw1, &0x04u8)]),
            &Return::new(&Arg(3)),
        ],
    )
    .to_aml_bytes(&mut out);
    out
}

/// COM1: its eight ports and its edge-triggered, active-high interrupt.
fn serial(port: &SerialPort, sink: &mut Vec<u8>) {
    let io = IO::new(port.port, port.port, 1, SERIAL_PORT_LEN);
    let irq = Interrupt::new(true, true, false, false, port.gsi);
    Device::new(
        "COM1".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0501")),
            &Name::new("_UID".into(), &ZERO),
            &Name::new("_CRS".into(), &ResourceTemplate::new(vec![&io, &irq])),
        ],
    )
    .to_aml_bytes(sink);
}

/// Resources no other device claims: the ECAMs (Linux only trusts an MCFG entry when its
/// ECAM is reserved here or in the E820 map) and the PM registers.
fn motherboard_resources(
    pm: &PmPorts,
    hotplug: Option<&super::PciHotplugConfig>,
    segments: &[PciSegmentLayout],
    sink: &mut Vec<u8>,
) {
    // All fit in 32 bits: the ECAMs sit below 4 GiB. The further segments' in one block.
    let ecam = Memory32Fixed::new(true, PCI_ECAM_START as u32, PCI_ECAM_SIZE as u32);
    let more = segments
        .iter()
        .map(|s| s.ecam + SEGMENT_ECAM_SIZE)
        .max()
        .map(|end| {
            Memory32Fixed::new(
                true,
                SEGMENT_ECAM_START as u32,
                (end - SEGMENT_ECAM_START) as u32,
            )
        });
    let ports = [pm.sleep_control, pm.sleep_status, pm.reset].map(|p| IO::new(p, p, 1, 1));
    let hp = hotplug.map(|h| IO::new(h.port, h.port, 1, super::hotplug::PORT_LEN));
    let mut crs: Vec<&dyn Aml> = vec![&ecam];
    if let Some(m) = &more {
        crs.push(m);
    }
    crs.extend(ports.iter().map(|p| p as &dyn Aml));
    if let Some(h) = &hp {
        crs.push(h);
    }
    Device::new(
        "MBRD".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C02")),
            &Name::new("_UID".into(), &ZERO),
            &Name::new("_CRS".into(), &ResourceTemplate::new(crs)),
        ],
    )
    .to_aml_bytes(sink);
}

/// Notify value for a power button press (ACPI 6.5 section 4.8.3.1.1.1).
const BUTTON_PRESSED: u8 = 0x80;

/// The power button and the Generic Event Device whose interrupt presses it.
fn power_button(gsi: u32, sink: &mut Vec<u8>) {
    Device::new(
        "PWRB".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C0C")),
            &Name::new("_UID".into(), &ZERO),
        ],
    )
    .to_aml_bytes(sink);
    let irq = Interrupt::new(true, true, false, false, gsi);
    let button = Path::new("\\_SB_.PWRB");
    let notify = Notify::new(&button, &BUTTON_PRESSED);
    Device::new(
        "GED0".into(),
        vec![
            &Name::new("_HID".into(), &"ACPI0013"),
            &Name::new("_UID".into(), &ZERO),
            &Name::new("_CRS".into(), &ResourceTemplate::new(vec![&irq])),
            &Method::new("_EVT".into(), 1, true, vec![&notify]),
        ],
    )
    .to_aml_bytes(sink);
}

/// The DSDT for `cfg` (validated by the caller).
#[cfg(test)]
pub(super) fn build(cfg: &AcpiConfig) -> Result<Vec<u8>, AcpiError> {
    build_with(cfg, &[])
}

/// An expander host bridge (PNP0A08 on segment 0, `_UID` its root bus): its buses, its MMIO windows and
/// its NUMA node (`_PXM`), the node Linux gives every device below it.
fn expander_bridge(e: &Expander, sink: &mut Vec<u8>) -> Result<(), AcpiError> {
    host_bridge(
        HostBridge {
            name: format!("PC{:02X}", e.bus),
            segment: 0,
            // Unique among the host bridges: the main one is 0, further segments' are their
            // number.
            uid: u32::from(e.bus),
            buses: (e.bus, e.last_bus),
            node: Some(e.node),
            io: &[],
            mmio32: e.mmio32,
            mmio64: e.mmio64,
            extra: &[],
        },
        sink,
    )
}

/// The host bridge of a PCI segment after 0 (`\_SB_.PCIn`, PNP0A08 with `_SEG` n): its buses
/// from 0, its MMIO windows, no I/O ports (config access is its ECAM alone), its node when
/// it has one.
fn segment_bridge(
    s: &PciSegmentLayout,
    hotplug: bool,
    sink: &mut Vec<u8>,
) -> Result<(), AcpiError> {
    let mut slots = Vec::new();
    if hotplug {
        super::hotplug::slots(s.id, &mut slots);
    }
    host_bridge(
        HostBridge {
            name: format!("PCI{:X}", s.id),
            segment: s.id,
            uid: u32::from(s.id),
            buses: (0, s.last_bus),
            node: s.node,
            io: &[],
            mmio32: s.mmio32,
            mmio64: s.mmio64,
            extra: &[&Raw(slots)],
        },
        sink,
    )
}

/// The DSDT, with `expanders` (their windows cut from `cfg.layout`'s by the caller: see
/// [`MemoryLayout::split_for_expanders`]) as host bridges after the main one.
pub(super) fn build_with(cfg: &AcpiConfig, expanders: &[Expander]) -> Result<Vec<u8>, AcpiError> {
    let mut sb = Vec::with_capacity(64 * cfg.num_vcpus as usize + 512);
    processors(cfg.num_vcpus, &mut sb);
    let last_bus = if expanders.is_empty() {
        cfg.pci_buses
    } else {
        crate::layout::EXPANDER_FIRST_BUS - 1
    };
    pci_host_bridge(
        cfg.layout,
        cfg.pci_hotplug.is_some(),
        last_bus,
        cfg.segment0_node,
        &mut sb,
    )?;
    for e in expanders {
        expander_bridge(e, &mut sb)?;
    }
    for s in cfg.segments {
        segment_bridge(s, cfg.pci_hotplug.is_some(), &mut sb)?;
    }
    if let Some(port) = &cfg.serial {
        serial(port, &mut sb);
    }
    motherboard_resources(&cfg.pm, cfg.pci_hotplug.as_ref(), cfg.segments, &mut sb);
    if let Some(gsi) = cfg.power_button_gsi {
        power_button(gsi, &mut sb);
    }
    if let Some(h) = &cfg.pci_hotplug {
        let segments = 1 + u16::try_from(cfg.segments.len()).unwrap_or(u16::MAX - 1);
        super::hotplug::controller(h, segments, &mut sb);
    }

    let mut aml = Vec::with_capacity(sb.len() + 32);
    sleep_states(&cfg.pm, &mut aml);
    aml.extend(Scope::raw("\\_SB_".into(), sb));
    let mut dsdt = Sdt::new(
        *b"DSDT",
        36,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    dsdt.append_slice(&aml);
    Ok(dsdt.as_slice().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::test_util::{assert_header, count, find, pkg_length};

    const PM: PmPorts = PmPorts {
        sleep_control: 0x600,
        sleep_status: 0x601,
        reset: 0x602,
        reset_value: 0x06,
        s5_sleep_type: 5,
    };
    const COM1: SerialPort = SerialPort {
        port: 0x3f8,
        gsi: 4,
    };

    fn dsdt(num_vcpus: u32, ram: u64, serial: Option<SerialPort>) -> (Vec<u8>, MemoryLayout) {
        let layout = MemoryLayout::new(ram, 40).unwrap();
        let cfg = AcpiConfig {
            segments: &[],
            segment0_node: None,
            pci_buses: 0,
            num_vcpus,
            layout: &layout,
            pm: PM,
            serial,
            power_button_gsi: None,
            pci_hotplug: None,
        };
        (build(&cfg).unwrap(), layout)
    }

    /// EISA ID encoding of "PNP" + `product` as an AML DWord constant.
    fn pnp_eisa_id(product: u16) -> [u8; 5] {
        let p = product.to_be_bytes();
        [0x0c, 0x41, 0xd0, p[0], p[1]]
    }

    /// The devices directly inside `\_SB_`: (name, body) in order. Checks that every
    /// PkgLength ends where the next object starts and the scope ends the table.
    fn sb_devices(t: &[u8]) -> Vec<([u8; 4], &[u8])> {
        // Name(_S5_, Package {..}) comes first, then Scope(\_SB_) up to the end.
        assert_eq!(&t[36..41], b"\x08_S5_");
        assert_eq!(t[41], 0x12, "PackageOp");
        let scope = 42 + pkg_length(&t[42..]).0;
        assert_eq!(t[scope], 0x10, "ScopeOp");
        let (len, n) = pkg_length(&t[scope + 1..]);
        assert_eq!(scope + 1 + len, t.len(), "the scope ends the table");
        assert_eq!(&t[scope + 1 + n..scope + 1 + n + 5], b"\\_SB_");
        let mut off = scope + 1 + n + 5;
        let mut devices = Vec::new();
        while off < t.len() {
            assert_eq!(&t[off..off + 2], &[0x5b, 0x82], "DeviceOp at {off}");
            let (len, n) = pkg_length(&t[off + 2..]);
            let body = &t[off + 2 + n..off + 2 + len];
            devices.push((body[..4].try_into().unwrap(), &body[4..]));
            off += 2 + len;
        }
        assert_eq!(off, t.len());
        devices
    }

    #[test]
    fn dsdt_header_is_valid_with_64_bit_integers() {
        let (t, _) = dsdt(2, 128 << 20, Some(COM1));
        assert_header(&t, b"DSDT", 2);
    }

    #[test]
    fn s5_package_carries_the_pm_devices_sleep_type() {
        let (t, _) = dsdt(1, 128 << 20, None);
        let at = find(&t, b"\x08_S5_").expect("Name(_S5_)");
        // Package, PkgLength 5, 2 elements: BytePrefix 5, Zero.
        assert_eq!(&t[at + 5..at + 11], &[0x12, 0x05, 0x02, 0x0a, 0x05, 0x00]);
    }

    #[test]
    fn one_processor_device_per_vcpu_with_matching_uid_and_sta() {
        for n in [1u32, 3, 254] {
            let (t, _) = dsdt(n, 128 << 20, Some(COM1));
            assert_eq!(count(&t, b"ACPI0007\0"), n as usize);
            let devices = sb_devices(&t);
            let cpus: Vec<_> = devices.iter().filter(|(name, _)| name[0] == b'C').collect();
            assert_eq!(cpus.len(), n as usize + 1, "C000.. plus COM1");
            for (i, (name, body)) in cpus.iter().take(n as usize).enumerate() {
                assert_eq!(*name, *format!("C{i:03X}").as_bytes());
                // Name(_UID, i): ZeroOp, OneOp, BytePrefix or WordPrefix.
                let uid = find(body, b"\x08_UID").unwrap() + 5;
                let value = match body[uid] {
                    0x00 => 0,
                    0x01 => 1,
                    0x0a => usize::from(body[uid + 1]),
                    op => panic!("unexpected _UID opcode {op:#x}"),
                };
                assert_eq!(value, i);
                // Method(_STA) { Return (0x0F) }
                assert!(
                    find(body, b"_STA\x00\xa4\x0a\x0f").is_some(),
                    "_STA of C{i:03X}"
                );
            }
        }
    }

    #[test]
    fn pci_host_bridge_ids_and_bus_and_io_ranges() {
        let (t, _) = dsdt(1, 128 << 20, None);
        let devices = sb_devices(&t);
        let (_, pci) = devices.iter().find(|(n, _)| n == b"PCI0").unwrap();
        assert_eq!(
            &pci[..10],
            &[b'\x08', b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x0a, 0x08]
        );
        assert!(find(pci, &pnp_eisa_id(0x0a03)).is_some(), "_CID PNP0A03");
        // _HID, not _ADR too (ACPI 6.5 section 6.1: a device has one or the other).
        assert!(find(pci, b"_ADR").is_none());
        for name in [b"_SEG", b"_BBN", b"_UID"] {
            let at = find(pci, name).unwrap();
            assert_eq!(
                pci[at + 4],
                0x00,
                "{} = Zero",
                String::from_utf8_lossy(name)
            );
        }
        // WordBusNumber 0..=0 (producer, min/max fixed), length 1: no root port, bus 0 alone.
        let bus = [0x88, 0x0d, 0, 2, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert!(find(pci, &bus).is_some(), "bus range");
        let cfg_ports = [0x47, 1, 0xf8, 0x0c, 0xf8, 0x0c, 1, 8];
        assert!(find(pci, &cfg_ports).is_some(), "0xcf8..0xcff");
        let io_low = [
            0x88, 0x0d, 0, 1, 0x0c, 3, 0, 0, 0, 0, 0xf7, 0x0c, 0, 0, 0xf8, 0x0c,
        ];
        assert!(find(pci, &io_low).is_some(), "I/O 0..=0xcf7");
        let io_high = [
            0x88, 0x0d, 0, 1, 0x0c, 3, 0, 0, 0, 0x0d, 0xff, 0xff, 0, 0, 0, 0xf3,
        ];
        assert!(find(pci, &io_high).is_some(), "I/O 0xd00..=0xffff");
    }

    #[test]
    fn pci_routing_table_sends_each_slots_pins_to_swizzled_ioapic_gsis() {
        let (t, _) = dsdt(1, 128 << 20, None);
        let devices = sb_devices(&t);
        let (_, pci) = devices.iter().find(|(n, _)| n == b"PCI0").unwrap();
        let at = find(pci, b"_PRT").unwrap();
        // PackageOp, a 2-byte PkgLength, 128 entries.
        assert_eq!(pci[at + 4], 0x12);
        assert_eq!(pci[at + 7], 128);
        // Slot 3 INTB#: Package (4) { 0x0003FFFF, One, Zero, 20 }.
        let entry = [0x12, 0x0b, 4, 0x0c, 0xff, 0xff, 3, 0, 0x01, 0x00, 0x0a, 20];
        assert!(find(pci, &entry).is_some(), "slot 3 INTB#");
        assert_eq!(pci_intx_gsi(0, 0), 16);
        assert_eq!(pci_intx_gsi(3, 1), 20);
        assert_eq!(pci_intx_gsi(7, 3), 18);
        assert!((0..32).all(|s| (0..4).all(|p| (16..24).contains(&pci_intx_gsi(s, p)))));
    }

    #[test]
    fn pci_host_bridge_has_the_layouts_mmio_windows() {
        for ram in [128u64 << 20, 3 << 30, 8 << 30] {
            let (t, layout) = dsdt(1, ram, None);
            let (start, len) = layout.mmio32;
            let mut d32 = vec![0x87, 0x17, 0, 0, 0x0c, 0x01, 0, 0, 0, 0];
            for v in [start, start + len - 1, 0, len] {
                d32.extend_from_slice(&(v as u32).to_le_bytes());
            }
            assert!(find(&t, &d32).is_some(), "DWordMemory {start:#x}+{len:#x}");
            let (start, len) = layout.mmio64;
            let mut d64 = vec![0x8a, 0x2b, 0, 0, 0x0c, 0x03];
            for v in [0, start, start + len - 1, 0, len] {
                d64.extend_from_slice(&v.to_le_bytes());
            }
            assert!(find(&t, &d64).is_some(), "QWordMemory {start:#x}+{len:#x}");
        }
    }

    #[test]
    fn com1_is_described_only_when_present() {
        let (t, _) = dsdt(1, 128 << 20, Some(COM1));
        let devices = sb_devices(&t);
        let (_, com) = devices.iter().find(|(n, _)| n == b"COM1").unwrap();
        assert!(find(com, &pnp_eisa_id(0x0501)).is_some());
        assert!(
            find(com, &[0x47, 1, 0xf8, 3, 0xf8, 3, 1, 8]).is_some(),
            "IO"
        );
        // Extended IRQ: consumer, edge, active high, exclusive; one interrupt, 4.
        assert!(
            find(com, &[0x89, 6, 0, 0x03, 1, 4, 0, 0, 0]).is_some(),
            "IRQ"
        );

        let (t, _) = dsdt(1, 128 << 20, None);
        assert!(find(&t, &pnp_eisa_id(0x0501)).is_none());
        assert!(sb_devices(&t).iter().all(|(n, _)| n != b"COM1"));
    }

    #[test]
    fn power_button_and_its_generic_event_device_only_when_wired() {
        let layout = MemoryLayout::new(128 << 20, 40).unwrap();
        let cfg = AcpiConfig {
            segments: &[],
            segment0_node: None,
            pci_buses: 0,
            num_vcpus: 1,
            layout: &layout,
            pm: PM,
            serial: None,
            power_button_gsi: Some(5),
            pci_hotplug: None,
        };
        let t = build(&cfg).unwrap();
        let devices = sb_devices(&t);
        let (_, pwrb) = devices.iter().find(|(n, _)| n == b"PWRB").unwrap();
        assert!(find(pwrb, &pnp_eisa_id(0x0c0c)).is_some(), "PNP0C0C");
        let (_, ged) = devices.iter().find(|(n, _)| n == b"GED0").unwrap();
        assert!(find(ged, b"ACPI0013").is_some());
        // Extended IRQ: consumer, edge, active high, exclusive; one interrupt, GSI 5.
        assert!(
            find(ged, &[0x89, 6, 0, 0x03, 1, 5, 0, 0, 0]).is_some(),
            "GSI"
        );
        // _EVT: Notify (\_SB_.PWRB, 0x80).
        assert!(find(ged, b"_EVT").is_some());
        // NotifyOp, root prefix, DualNamePrefix, the two name segments, BytePrefix 0x80.
        assert!(find(ged, b"\x86\\\x2e_SB_PWRB\x0a\x80").is_some(), "Notify");

        let t = build(&AcpiConfig {
            segments: &[],
            segment0_node: None,
            pci_buses: 0,
            power_button_gsi: None,
            pci_hotplug: None,
            ..cfg
        })
        .unwrap();
        assert!(sb_devices(&t)
            .iter()
            .all(|(n, _)| n != b"GED0" && n != b"PWRB"));
    }

    #[test]
    fn motherboard_resources_reserve_the_ecam_and_pm_ports() {
        let (t, _) = dsdt(1, 128 << 20, None);
        let devices = sb_devices(&t);
        let (_, mb) = devices.iter().find(|(n, _)| n == b"MBRD").unwrap();
        assert!(find(mb, &pnp_eisa_id(0x0c02)).is_some());
        let ecam = [0x86, 9, 0, 1, 0, 0, 0, 0xe0, 0, 0, 0, 0x10];
        assert!(find(mb, &ecam).is_some(), "Memory32Fixed ECAM");
        for port in [0x600u16, 0x601, 0x602] {
            let [lo, hi] = port.to_le_bytes();
            assert!(
                find(mb, &[0x47, 1, lo, hi, lo, hi, 1, 1]).is_some(),
                "{port:#x}"
            );
        }
    }

    #[test]
    fn empty_windows_are_left_out_and_windows_above_4g_are_an_error() {
        let mut layout = MemoryLayout::new(128 << 20, 40).unwrap();
        layout.mmio32 = (0x1000, 0);
        assert!(mmio32_window(layout.mmio32).unwrap().is_none());
        layout.mmio32 = (0xffff_f000, 0x2000);
        assert!(matches!(
            mmio32_window(layout.mmio32),
            Err(AcpiError::Mmio32Window { .. })
        ));
        assert_eq!(inclusive((5, 0)), None);
        assert_eq!(inclusive((u64::MAX, 2)), None);
        assert_eq!(inclusive((0x10, 0x10)), Some((0x10, 0x1f)));
    }
}

#[cfg(test)]
mod hotplug_tests {
    use super::*;
    use crate::acpi::test_util::find;
    use crate::acpi::PciHotplugConfig;

    const PM: PmPorts = PmPorts {
        sleep_control: 0x600,
        sleep_status: 0x601,
        reset: 0x602,
        reset_value: 0x06,
        s5_sleep_type: 5,
    };

    fn table(hotplug: Option<PciHotplugConfig>) -> Vec<u8> {
        let layout = MemoryLayout::new(128 << 20, 40).unwrap();
        build(&AcpiConfig {
            segments: &[],
            segment0_node: None,
            pci_buses: 0,
            num_vcpus: 1,
            layout: &layout,
            pm: PM,
            serial: None,
            power_button_gsi: Some(5),
            pci_hotplug: hotplug,
        })
        .unwrap()
    }

    /// `aml` disassembled by ACPICA's `iasl -d` (a malformed term stops it: asserted), or None
    /// when iasl is not installed (the caller then says it is skipped). `VMM_PRINT_DSL=1`
    /// prints the text.
    fn disassemble(aml: &[u8], tag: &str) -> Option<String> {
        let Ok(version) = std::process::Command::new("iasl").arg("-v").output() else {
            eprintln!("skipped: iasl is not installed");
            return None;
        };
        assert!(version.status.success() || !version.stdout.is_empty());
        let dir = std::env::temp_dir().join(format!("vmm-dsdt-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dsdt.aml"), aml).unwrap();
        let res = std::process::Command::new("iasl")
            .args(["-d", "dsdt.aml"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).unwrap_or_default();
        if std::env::var_os("VMM_PRINT_DSL").is_some() {
            eprintln!("{dsl}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            res.status.success(),
            "{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
        Some(dsl)
    }

    #[test]
    fn pci_hotplug_adds_slots_the_register_device_and_its_ged() {
        let hp = PciHotplugConfig {
            port: 0x610,
            gsi: 6,
        };
        let t = table(Some(hp));
        for slot in 1..=31u8 {
            let name = format!("S{slot:03}");
            assert!(find(&t, name.as_bytes()).is_some(), "{name}");
        }
        assert!(
            find(&t, b"S000").is_none(),
            "the host bridge's slot is not ejectable"
        );
        for name in [
            b"PHPR", b"GED1", b"PCEJ", b"PSCN", b"DVNT", b"B0EJ", b"PCIU", b"PCID", b"PSEG",
        ] {
            assert!(
                find(&t, name).is_some(),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        // OperationRegion (PCST, SystemIO, 0x610, 16): ExtOpPrefix 0x5b, OpRegionOp 0x80,
        // the name, space 1, WordPrefix 0x0b 0x0610, BytePrefix 0x0a 16.
        assert!(
            find(
                &t,
                &[0x5b, 0x80, b'P', b'C', b'S', b'T', 1, 0x0b, 0x10, 0x06, 0x0a, 16]
            )
            .is_some(),
            "OperationRegion"
        );
        // GED1's interrupt: GSI 6, edge, active high.
        assert!(
            find(&t, &[0x89, 6, 0, 0x03, 1, 6, 0, 0, 0]).is_some(),
            "GSI"
        );
        // The register ports are reserved as motherboard resources.
        assert!(
            find(&t, &[0x47, 1, 0x10, 0x06, 0x10, 0x06, 1, 16]).is_some(),
            "IO"
        );
        // Without hotplug: none of it.
        let t = table(None);
        for name in [b"PHPR", b"GED1", b"S001", b"DVNT"] {
            assert!(find(&t, name).is_none());
        }
    }

    /// ACPICA's disassembler must read the table back (a malformed term stops it). The test
    /// scripts install `iasl` (acpica-tools, scripts/common.sh); without it this test says it
    /// is skipped.
    #[test]
    fn the_hotplug_dsdt_disassembles_with_iasl() {
        let Some(dsl) = disassemble(
            &table(Some(PciHotplugConfig {
                port: 0x610,
                gsi: 6,
            })),
            "hp",
        ) else {
            return;
        };
        for want in [
            "Device (S031)",
            "Method (_EJ0, 1, Serialized)",
            "\\_SB.PHPR.PCEJ (_SUN, Zero)",
            "OperationRegion (PCST, SystemIO, 0x0610, 0x10)",
            "PSEG = Arg1",
            "B0EJ = (One << Arg0)",
            "PSEG = Zero",
            "\\_SB.PCI0.DVNT (PCIU, One)",
            "\\_SB.PCI0.DVNT (PCID, 0x03)",
            "Notify (S005, Arg1)",
            "\\_SB.PHPR.PSCN ()",
            "Method (_OSC, 4, NotSerialized)",
            "ToUUID (\"33db4d5b-1ff7-401c-9657-7441c03dd766\")",
            "Local0 &= 0x1C",
            "CDW1 |= 0x10",
        ] {
            assert!(dsl.contains(want), "{want} not in:\n{dsl}");
        }
    }

    /// With PCI segments, every segment's bridge has the slots, and the scan selects each
    /// segment before it reads its registers.
    #[test]
    fn hotplug_serves_every_segment_with_its_own_slots() {
        let layout = MemoryLayout::new(128 << 20, 40).unwrap();
        let (main, segs) = layout.split_for_segments(&[(1, 1); 3]);
        let aml = build(&AcpiConfig {
            segments: &segs,
            segment0_node: None,
            pci_buses: 0,
            num_vcpus: 1,
            layout: &main,
            pm: PM,
            serial: None,
            power_button_gsi: None,
            pci_hotplug: Some(PciHotplugConfig {
                port: 0x610,
                gsi: 6,
            }),
        })
        .unwrap();
        // 31 slots on each of the 3 bridges.
        let count = aml.windows(4).filter(|w| *w == b"S031").count();
        assert!(count >= 3, "S031 {count} times");
        let Some(dsl) = disassemble(&aml, "hpseg") else {
            return;
        };
        for want in [
            "Device (PCI1)",
            "Device (PCI2)",
            "\\_SB.PHPR.PCEJ (_SUN, One)",
            "\\_SB.PHPR.PCEJ (_SUN, 0x02)",
            "PSEG = One",
            "PSEG = 0x02",
            "\\_SB.PCI1.DVNT (PCIU, One)",
            "\\_SB.PCI2.DVNT (PCID, 0x03)",
        ] {
            assert!(dsl.contains(want), "{want} not in:\n{dsl}");
        }
        // PSCN selects segment 2 before it reads segment 2's registers.
        let sel = dsl.find("PSEG = 0x02").unwrap();
        let scan = dsl.find("\\_SB.PCI2.DVNT (PCIU, One)").unwrap();
        assert!(sel < scan);
    }

    /// An expander host bridge per node with devices: iasl reads it, and it has its node,
    /// its first bus and its windows; the main bridge stops at bus 0x7f.
    #[test]
    fn expander_bridges_disassemble_with_their_node_bus_and_windows() {
        let layout = MemoryLayout::new(128 << 20, 40).unwrap();
        let (main, ex) = layout.split_for_expanders(&[1]);
        let aml = build_with(
            &AcpiConfig {
                segments: &[],
                segment0_node: None,
                pci_buses: 0,
                num_vcpus: 2,
                layout: &main,
                pm: PM,
                serial: None,
                power_button_gsi: None,
                pci_hotplug: None,
            },
            &ex,
        )
        .unwrap();
        let Some(dsl) = disassemble(&aml, "ex") else {
            return;
        };
        for want in [
            "Device (PC80)",
            "Name (_PXM, One)",
            "Name (_BBN, 0x80)",
            "Name (_UID, 0x80)",
            "0x0080,             // Range Minimum",
            "0x008F,             // Range Maximum",
            "0x007F,             // Range Maximum",
        ] {
            assert!(dsl.contains(want), "{want} not in:\n{dsl}");
        }
    }

    /// Two further segments (one in node 1): iasl reads them, each a host bridge with its
    /// `_SEG`, buses from 0, its windows and no I/O; the motherboard reserves their ECAMs.
    #[test]
    fn segment_bridges_disassemble_with_their_segment_buses_windows_and_ecam() {
        let layout = MemoryLayout::new(128 << 20, 40).unwrap();
        let (main, mut segs) = layout.split_for_segments(&[(1, 1); 3]);
        segs[0].last_bus = 0;
        segs[1].node = Some(1);
        let aml = build(&AcpiConfig {
            segments: &segs,
            segment0_node: Some(0),
            pci_buses: 0,
            num_vcpus: 2,
            layout: &main,
            pm: PM,
            serial: None,
            power_button_gsi: None,
            pci_hotplug: None,
        })
        .unwrap();
        let Some(dsl) = disassemble(&aml, "seg") else {
            return;
        };
        let zero = &dsl[dsl.find("Device (PCI0)").expect("PCI0")..];
        let zero = &zero[..zero.find("Device (PCI1)").expect("PCI1 after PCI0")];
        assert!(
            zero.contains("Name (_PXM, Zero)"),
            "segment 0 in node 0:\n{zero}"
        );
        let one = &dsl[dsl.find("Device (PCI1)").expect("PCI1")..];
        let one = &one[..one.find("Device (PCI2)").expect("PCI2 after PCI1")];
        for want in [
            "Name (_SEG, One)",
            "Name (_UID, One)",
            "Name (_BBN, Zero)",
            "0x0000,             // Range Maximum",
            &format!("0x{:08X},         // Range Minimum", segs[0].mmio32.0),
            "Method (_OSC",
        ] {
            assert!(one.contains(want), "{want} not in PCI1:\n{one}");
        }
        assert!(!one.contains("_PXM"), "PCI1 is in no node");
        assert!(!one.contains("IO (Decode16"), "no I/O ports on PCI1");
        let two = &dsl[dsl.find("Device (PCI2)").unwrap()..];
        for want in [
            "Name (_SEG, 0x02)",
            "Name (_PXM, One)",
            "0x0007,             // Range Maximum",
        ] {
            assert!(two.contains(want), "{want} not in PCI2:\n{two}");
        }
        // Segment 0's ECAM and the two further ones' (16 MiB from 0xF0000000).
        assert!(dsl.contains("Memory32Fixed (ReadWrite,\n                    0xF0000000,         // Address Base\n                    0x01000000,"), "{dsl}");
    }
}
