//! ACPI PCI hotplug: the AML that lets a stock Linux guest (its `acpiphp` driver) take devices
//! the VMM adds to and removes from the root bus at run time. Chosen over native PCIe hotplug
//! (`pciehp` behind emulated root ports) because it needs no port per slot and no PCIe
//! capability emulation, works on the conventional root bus every device here sits on, and is
//! what Cloud Hypervisor and QEMU (pc) guests already run; the registers behind it are
//! `devices::pci_hotplug`.
//!
//! ```text
//! \_SB_.PCIn.Snnn  on every PCI segment n, one per slot 1..=31: _ADR (slot << 16), _SUN
//!                  (slot), _EJ0 -> \_SB_.PHPR.PCEJ (_SUN, n): the guest released it
//! \_SB_.PCIn.DVNT  (bits, event): Notify (Snnn, event) for each slot bit set
//! \_SB_.PHPR       PNP0A06 container: the registers (SystemIO, 4 dwords: PCIU, PCID, B0EJ,
//!                  PSEG, the segment the first three speak of), PCEJ (slot, segment) selects
//!                  the segment and writes 1 << slot to B0EJ; PSCN, for each segment, selects
//!                  it and notifies slots in PCIU with 1 (device check: scan it) and slots in
//!                  PCID with 3 (eject request), as Cloud Hypervisor's does
//! \_SB_.GED1       ACPI0013 Generic Event Device: its interrupt runs _EVT -> PSCN
//! ```

use acpi_tables::aml::{
    Acquire, And, Arg, Device, EISAName, Equal, Field, FieldAccessType, FieldEntry, FieldLockRule,
    FieldUpdateRule, If, Interrupt, Local, Method, MethodCall, Mutex, Name, Notify, OpRegion,
    OpRegionSpace, Path, Release, ResourceTemplate, Return, ShiftLeft, Store, ONE, ZERO,
};
use acpi_tables::Aml;

/// Where the hotplug registers are and which interrupt announces a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciHotplugConfig {
    /// First of the 16 I/O ports of the registers (PCIU, PCID, B0EJ, PSEG).
    pub port: u16,
    /// The GSI of the Generic Event Device (edge, active high) the VMM raises after it set a
    /// bit in PCIU or PCID.
    pub gsi: u32,
}

/// Bytes of port space the registers take.
pub const PORT_LEN: u8 = 16;
/// Notify values (ACPI 6.5 section 5.6.6): check the device in the slot; eject request.
const DEVICE_CHECK: u8 = 1;
const EJECT_REQUEST: u8 = 3;
/// Slot 0 is the host bridge.
const FIRST_SLOT: u8 = 1;
const LAST_SLOT: u8 = 31;

fn slot_name(slot: u8) -> String {
    format!("S{slot:03}")
}

/// The host bridge of PCI segment `segment` (as `dsdt` names it).
fn bridge_name(segment: u16) -> String {
    format!("\\_SB_.PCI{segment:X}")
}

/// One slot device under a segment's host bridge: (segment, slot).
struct Slot(u16, u8);

impl Aml for Slot {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        let sun = u32::from(self.1);
        let adr = sun << 16;
        let segment = u32::from(self.0);
        let sun_path = Path::new("_SUN");
        let eject = MethodCall::new("\\_SB_.PHPR.PCEJ".into(), vec![&sun_path, &segment]);
        Device::new(
            Path::new(&slot_name(self.1)),
            vec![
                &Name::new("_SUN".into(), &sun),
                &Name::new("_ADR".into(), &adr),
                &Method::new("_EJ0".into(), 1, true, vec![&eject]),
            ],
        )
        .to_aml_bytes(sink);
    }
}

/// `If ((Arg0 & (1 << slot)) == (1 << slot)) { Notify (Snnn, Arg1) }`.
struct SlotNotify(u8);

impl Aml for SlotNotify {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        let mask = 1u32 << self.0;
        let slot = Path::new(&slot_name(self.0));
        And::new(&Local(0), &Arg(0), &mask).to_aml_bytes(sink);
        If::new(
            &Equal::new(&Local(0), &mask),
            vec![&Notify::new(&slot, &Arg(1))],
        )
        .to_aml_bytes(sink);
    }
}

/// What goes inside segment `segment`'s host bridge: the slot devices and `DVNT`.
pub(super) fn slots(segment: u16, sink: &mut Vec<u8>) {
    for s in FIRST_SLOT..=LAST_SLOT {
        Slot(segment, s).to_aml_bytes(sink);
    }
    let notifies: Vec<SlotNotify> = (FIRST_SLOT..=LAST_SLOT).map(SlotNotify).collect();
    let body: Vec<&dyn Aml> = notifies.iter().map(|n| n as &dyn Aml).collect();
    Method::new("DVNT".into(), 2, true, body).to_aml_bytes(sink);
}

/// `\_SB_.PHPR` (the registers and their methods) and `\_SB_.GED1` (the interrupt), for PCI
/// segments `0..segments`.
pub(super) fn controller(cfg: &PciHotplugConfig, segments: u16, sink: &mut Vec<u8>) {
    let port = usize::from(cfg.port);
    let len = usize::from(PORT_LEN);
    let fields = vec![
        FieldEntry::Named(*b"PCIU", 32),
        FieldEntry::Named(*b"PCID", 32),
        FieldEntry::Named(*b"B0EJ", 32),
        FieldEntry::Named(*b"PSEG", 32),
    ];
    let (lock, unlock) = (
        Acquire::new("BLCK".into(), 0xffff),
        Release::new("BLCK".into()),
    );
    let (b0ej, pciu, pcid) = (Path::new("B0EJ"), Path::new("PCIU"), Path::new("PCID"));
    let pseg = Path::new("PSEG");
    let select = Store::new(&pseg, &Arg(1));
    let eject = ShiftLeft::new(&b0ej, &ONE, &Arg(0));
    let ret = Return::new(&ZERO);
    let pcej = Method::new(
        "PCEJ".into(),
        2,
        true,
        vec![&lock, &select, &eject, &unlock, &ret],
    );
    // PSCN: each segment selected in turn, its arrivals and removal requests notified.
    let numbers: Vec<u32> = (0..segments.max(1)).map(u32::from).collect();
    let selects: Vec<Store> = numbers.iter().map(|n| Store::new(&pseg, n)).collect();
    let ups: Vec<MethodCall> = (0..segments.max(1))
        .map(|n| {
            MethodCall::new(
                format!("{}.DVNT", bridge_name(n)).as_str().into(),
                vec![&pciu, &DEVICE_CHECK],
            )
        })
        .collect();
    let downs: Vec<MethodCall> = (0..segments.max(1))
        .map(|n| {
            MethodCall::new(
                format!("{}.DVNT", bridge_name(n)).as_str().into(),
                vec![&pcid, &EJECT_REQUEST],
            )
        })
        .collect();
    let mut scan: Vec<&dyn Aml> = vec![&lock];
    for ((select, up), down) in selects.iter().zip(&ups).zip(&downs) {
        scan.extend([select as &dyn Aml, up, down]);
    }
    scan.push(&unlock);
    let pscn = Method::new("PSCN".into(), 0, true, scan);
    Device::new(
        "PHPR".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0A06")),
            &Name::new("_UID".into(), &"PCI Hotplug Controller"),
            &Mutex::new("BLCK".into(), 0),
            &OpRegion::new("PCST".into(), OpRegionSpace::SystemIO, &port, &len),
            &Field::new(
                "PCST".into(),
                FieldAccessType::DWord,
                FieldLockRule::NoLock,
                FieldUpdateRule::WriteAsZeroes,
                fields,
            ),
            &pcej,
            &pscn,
        ],
    )
    .to_aml_bytes(sink);
    let irq = Interrupt::new(true, true, false, false, cfg.gsi);
    let scan = MethodCall::new("\\_SB_.PHPR.PSCN".into(), vec![]);
    Device::new(
        "GED1".into(),
        vec![
            &Name::new("_HID".into(), &"ACPI0013"),
            &Name::new("_UID".into(), &ONE),
            &Name::new("_CRS".into(), &ResourceTemplate::new(vec![&irq])),
            &Method::new("_EVT".into(), 1, true, vec![&scan]),
        ],
    )
    .to_aml_bytes(sink);
}
