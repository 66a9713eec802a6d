//! ACPI PCI hotplug: the AML that lets a stock Linux guest (its `acpiphp` driver) take devices
//! the VMM adds to and removes from the root bus at run time. Chosen over native PCIe hotplug
//! (`pciehp` behind emulated root ports) because it needs no port per slot and no PCIe
//! capability emulation, works on the conventional root bus every device here sits on, and is
//! what Cloud Hypervisor and QEMU (pc) guests already run; the registers behind it are
//! `devices::pci_hotplug`.
//!
//! ```text
//! \_SB_.PCI0.Snnn  one per slot 1..=31: _ADR (slot << 16), _SUN (slot),
//!                  _EJ0 -> \_SB_.PHPR.PCEJ (_SUN): the guest released it
//! \_SB_.PCI0.DVNT  (bits, event): Notify (Snnn, event) for each slot bit set
//! \_SB_.PHPR       PNP0A06 container: the registers (SystemIO, 3 dwords: PCIU, PCID, B0EJ),
//!                  PCEJ (slot) writes 1 << slot to B0EJ; PSCN notifies slots in PCIU with 1
//!                  (device check: scan it) and slots in PCID with 3 (eject request)
//! \_SB_.GED1       ACPI0013 Generic Event Device: its interrupt runs _EVT -> PSCN
//! ```

use acpi_tables::aml::{
    Acquire, And, Arg, Device, EISAName, Equal, Field, FieldAccessType, FieldEntry, FieldLockRule,
    FieldUpdateRule, If, Interrupt, Local, Method, MethodCall, Mutex, Name, Notify, OpRegion,
    OpRegionSpace, Path, Release, ResourceTemplate, Return, ShiftLeft, ONE, ZERO,
};
use acpi_tables::Aml;

/// Where the hotplug registers are and which interrupt announces a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciHotplugConfig {
    /// First of the 12 I/O ports of the registers (PCIU, PCID, B0EJ).
    pub port: u16,
    /// The GSI of the Generic Event Device (edge, active high) the VMM raises after it set a
    /// bit in PCIU or PCID.
    pub gsi: u32,
}

/// Bytes of port space the registers take.
pub const PORT_LEN: u8 = 12;
/// Notify values (ACPI 6.5 section 5.6.6): check the device in the slot; eject request.
const DEVICE_CHECK: u8 = 1;
const EJECT_REQUEST: u8 = 3;
/// Slot 0 is the host bridge.
const FIRST_SLOT: u8 = 1;
const LAST_SLOT: u8 = 31;

fn slot_name(slot: u8) -> String {
    format!("S{slot:03}")
}

/// One slot device under `\_SB_.PCI0`.
struct Slot(u8);

impl Aml for Slot {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        let sun = u32::from(self.0);
        let adr = sun << 16;
        let sun_path = Path::new("_SUN");
        let eject = MethodCall::new("\\_SB_.PHPR.PCEJ".into(), vec![&sun_path]);
        Device::new(
            Path::new(&slot_name(self.0)),
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

/// What goes inside `\_SB_.PCI0`: the slot devices and `DVNT`.
pub(super) fn slots(sink: &mut Vec<u8>) {
    for s in FIRST_SLOT..=LAST_SLOT {
        Slot(s).to_aml_bytes(sink);
    }
    let notifies: Vec<SlotNotify> = (FIRST_SLOT..=LAST_SLOT).map(SlotNotify).collect();
    let body: Vec<&dyn Aml> = notifies.iter().map(|n| n as &dyn Aml).collect();
    Method::new("DVNT".into(), 2, true, body).to_aml_bytes(sink);
}

/// `\_SB_.PHPR` (the registers and their methods) and `\_SB_.GED1` (the interrupt).
pub(super) fn controller(cfg: &PciHotplugConfig, sink: &mut Vec<u8>) {
    let port = usize::from(cfg.port);
    let len = usize::from(PORT_LEN);
    let fields = vec![
        FieldEntry::Named(*b"PCIU", 32),
        FieldEntry::Named(*b"PCID", 32),
        FieldEntry::Named(*b"B0EJ", 32),
    ];
    let (lock, unlock) = (
        Acquire::new("BLCK".into(), 0xffff),
        Release::new("BLCK".into()),
    );
    let (b0ej, pciu, pcid) = (Path::new("B0EJ"), Path::new("PCIU"), Path::new("PCID"));
    let eject = ShiftLeft::new(&b0ej, &ONE, &Arg(0));
    let ret = Return::new(&ZERO);
    let pcej = Method::new("PCEJ".into(), 1, true, vec![&lock, &eject, &unlock, &ret]);
    let up = MethodCall::new("\\_SB_.PCI0.DVNT".into(), vec![&pciu, &DEVICE_CHECK]);
    let down = MethodCall::new("\\_SB_.PCI0.DVNT".into(), vec![&pcid, &EJECT_REQUEST]);
    let pscn = Method::new("PSCN".into(), 0, true, vec![&lock, &up, &down, &unlock]);
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
