//! A PCI Express root port: a type-1 (PCI-to-PCI bridge) function on bus 0 with one device
//! behind it on its secondary bus, as a GPU sits on a real server. NVIDIA's driver and NCCL
//! read the topology (`nvidia-smi topo`, the link a GPU trained to) from the port above the
//! GPU; Linux sizes and assigns the port's windows itself (the device behind it starts with
//! its BARs unassigned and its windows closed, as firmware that left them to the OS would).
//!
//! What the guest sees, at the offsets hardware uses:
//! - header: Red Hat's PCIe root port IDs (1b36:000c, QEMU's), class 0x060400, header type 1;
//!   bus numbers (primary 0, secondary = subordinate = the port's bus), a 32-bit memory
//!   window and a 64-bit prefetchable window, both writable and closed at first; no I/O
//!   window (its registers read 0 and ignore writes) and no INTx;
//! - PCI Express capability (0x40, version 2, Root Port, slot implemented with the slot's
//!   number, no hot-plug): the link's maximum and current speed and width copied from the
//!   host device's own link, data link layer active, presence detected;
//! - Access Control Services (0x100): the capabilities a real root port reports (source
//!   validation, translation blocking, P2P request/completion redirect, upstream forwarding),
//!   their controls writable.
//!
//! Routing: config accesses to the secondary bus's device 0 function 0 reach the device
//! behind it (see [`crate::PciBus`]); nothing below routes MMIO through the windows, which
//! the VMM does not need (BARs are mapped where the device's own registers say).

use log::debug;

use crate::bar::BarInfo;
use crate::configuration::{ConfigWriteResult, PciConfiguration, PciHeader};
use crate::device::PciDevice;

pub const ROOT_PORT_VENDOR_ID: u16 = 0x1b36;
pub const ROOT_PORT_DEVICE_ID: u16 = 0x000c;
/// Bridge, PCI-to-PCI.
pub const ROOT_PORT_CLASS: u32 = 0x06_04_00;

/// Where the PCI Express capability sits.
pub const PCIE_CAP_OFFSET: usize = 0x40;
/// Where the ACS extended capability sits.
pub const ACS_CAP_OFFSET: usize = 0x100;

const BUS_NUMBERS_REG: usize = 0x18 / 4;
const MEM_WINDOW_REG: usize = 0x20 / 4;
const PREF_WINDOW_REG: usize = 0x24 / 4;
const PREF_BASE_UPPER_REG: usize = 0x28 / 4;
const PREF_LIMIT_UPPER_REG: usize = 0x2c / 4;
const CAP_POINTER_REG: usize = 0x34 / 4;
const INTERRUPT_BRIDGE_CONTROL_REG: usize = 0x3c / 4;
/// Header type 1 in byte 2 of register 3.
const HEADER_TYPE_BRIDGE: u32 = 1 << 16;
/// Status register: capabilities list.
const STATUS_CAPABILITIES: u32 = 1 << 20;

/// A PCIe link: speed as the Link Capabilities encoding (1 = 2.5 GT/s ... 6 = 64 GT/s) and
/// width in lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcieLink {
    pub max_speed: u8,
    pub max_width: u8,
    pub speed: u8,
    pub width: u8,
}

impl Default for PcieLink {
    /// Gen4 x16, a data-centre GPU's link, for devices whose host link is unknown.
    fn default() -> Self {
        PcieLink {
            max_speed: 4,
            max_width: 16,
            speed: 4,
            width: 16,
        }
    }
}

/// GT/s of the Link Capabilities speed codes 1..=6.
const SPEEDS: [(f64, &str); 6] = [
    (2.5, "2.5 GT/s"),
    (5.0, "5 GT/s"),
    (8.0, "8 GT/s"),
    (16.0, "16 GT/s"),
    (32.0, "32 GT/s"),
    (64.0, "64 GT/s"),
];

impl PcieLink {
    /// The Link Capabilities speed code of sysfs's `current_link_speed`/`max_link_speed`
    /// text ("16.0 GT/s PCIe"); None for "Unknown" and the like.
    pub fn speed_code(text: &str) -> Option<u8> {
        let gts: f64 = text.split_whitespace().next()?.parse().ok()?;
        SPEEDS
            .iter()
            .position(|&(s, _)| (s - gts).abs() < 0.01)
            .map(|i| i as u8 + 1)
    }

    /// A speed code as text ("16 GT/s"; "?" for a code outside 1..=6).
    pub fn speed_text(code: u8) -> &'static str {
        SPEEDS
            .get(usize::from(code).wrapping_sub(1))
            .map_or("?", |&(_, t)| t)
    }
}

/// The root port function.
pub struct PciRootPort {
    config: PciConfiguration,
    slot: u8,
}

impl PciRootPort {
    /// A port in bus 0 slot `slot` whose secondary bus is `bus`, with `link` to its device.
    pub fn new(slot: u8, bus: u8, link: PcieLink) -> Self {
        Self::on_bus(0, slot, bus, link)
    }

    /// The same on root bus `primary` (an expander host bridge's).
    pub fn on_bus(primary: u8, slot: u8, bus: u8, link: PcieLink) -> Self {
        let mut c = PciConfiguration::new(&PciHeader {
            vendor_id: ROOT_PORT_VENDOR_ID,
            device_id: ROOT_PORT_DEVICE_ID,
            class_code: ROOT_PORT_CLASS,
            ..Default::default()
        });
        c.set_register(3, HEADER_TYPE_BRIDGE);
        // Cache line size stays writable (PciConfiguration::new); no INTx (pin 0).
        c.set_register(
            BUS_NUMBERS_REG,
            u32::from(bus) << 16 | u32::from(bus) << 8 | u32::from(primary),
        );
        // Bus numbers and the secondary latency timer are the guest's to write.
        c.set_writable_bits(BUS_NUMBERS_REG, 0xffff_ffff);
        // Windows closed (base above limit); bits 31:20 of each address writable, in
        // 1 MiB units. The prefetchable window is 64-bit (low nibble 1).
        c.set_register(MEM_WINDOW_REG, 0x0000_fff0);
        c.set_writable_bits(MEM_WINDOW_REG, 0xfff0_fff0);
        c.set_register(PREF_WINDOW_REG, 0x0001_fff1);
        c.set_writable_bits(PREF_WINDOW_REG, 0xfff0_fff0);
        c.set_writable_bits(PREF_BASE_UPPER_REG, 0xffff_ffff);
        c.set_writable_bits(PREF_LIMIT_UPPER_REG, 0xffff_ffff);
        // Bridge control: parity, SERR, ISA, VGA, VGA 16-bit, master abort, secondary bus
        // reset; the interrupt line stays a scratch byte.
        c.set_writable_bits(INTERRUPT_BRIDGE_CONTROL_REG, 0x007f_00ff);
        c.set_register(CAP_POINTER_REG, PCIE_CAP_OFFSET as u32);
        let status = c.read_config_register(1);
        c.set_register(1, status | STATUS_CAPABILITIES);

        let r = PCIE_CAP_OFFSET / 4;
        // Capability ID, no next; version 2, Root Port (4), slot implemented.
        c.set_register(r, 0x10 | (2 | 4 << 4 | 1 << 8) << 16);
        // Device Capabilities: 256-byte max payload, role-based error reporting.
        c.set_register(r + 1, 1 | 1 << 15);
        c.set_writable_bits(r + 2, 0x0000_ffff);
        // Link Capabilities: max speed and width, DLL link active reporting, port number.
        c.set_register(
            r + 3,
            u32::from(link.max_speed)
                | u32::from(link.max_width) << 4
                | 1 << 20
                | u32::from(slot) << 24,
        );
        // Link Control (writable) / Status: current speed and width, slot clock, DLL active.
        c.set_register(
            r + 4,
            (u32::from(link.speed) | u32::from(link.width) << 4 | 1 << 12 | 1 << 13) << 16,
        );
        c.set_writable_bits(r + 4, 0x0000_ffff);
        // Slot Capabilities: the physical slot number, no hot-plug.
        c.set_register(r + 5, u32::from(slot) << 19);
        // Slot Control / Status: presence detected.
        c.set_register(r + 6, (1 << 6) << 16);
        c.set_writable_bits(r + 6, 0x0000_ffff);
        // Root Control writable; Device Control 2 writable.
        c.set_writable_bits(r + 7, 0x0000_ffff);
        c.set_writable_bits(r + 10, 0x0000_ffff);
        // Link Capabilities 2: the supported speeds vector up to the maximum.
        let speeds = ((1u32 << link.max_speed) - 1) << 1;
        c.set_register(r + 11, speeds);
        // Link Control 2: target speed = the maximum.
        c.set_register(r + 12, u32::from(link.max_speed));
        c.set_writable_bits(r + 12, 0x0000_ffff);

        // ACS: ID 0x000d, version 1, last in the list.
        let a = ACS_CAP_OFFSET / 4;
        c.set_register(a, 0x000d | 1 << 16);
        c.set_register(a + 1, 0x001f);
        c.set_writable_bits(a + 1, 0x001f << 16);
        PciRootPort { config: c, slot }
    }

    /// The secondary bus number as the guest (or this VMM) last programmed it.
    pub fn secondary_bus(&self) -> u8 {
        (self.config.read_config_register(BUS_NUMBERS_REG) >> 8) as u8
    }

    /// The slot on bus 0 the port sits in.
    pub fn slot(&self) -> u8 {
        self.slot
    }
}

impl PciDevice for PciRootPort {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        self.config.read_config_register(reg)
    }

    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]) -> ConfigWriteResult {
        self.config.write_config_register(reg, offset, data)
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        debug!("root port: read of BAR {bar} at {offset:#x}, which does not exist");
        data.fill(0xff);
    }

    fn write_bar(&mut self, bar: usize, offset: u64, _data: &[u8]) {
        debug!("root port: write to BAR {bar} at {offset:#x}, which does not exist");
    }

    fn bars(&self) -> Vec<BarInfo> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte(p: &mut PciRootPort, off: usize) -> u8 {
        (p.read_config_register(off / 4) >> ((off % 4) * 8)) as u8
    }

    fn word(p: &mut PciRootPort, off: usize) -> u16 {
        (p.read_config_register(off / 4) >> ((off % 4) * 8)) as u16
    }

    #[test]
    fn the_header_is_a_bridge_with_closed_windows_and_its_bus_numbers() {
        let mut p = PciRootPort::new(5, 2, PcieLink::default());
        assert_eq!(p.read_config_register(0), 0x000c_1b36);
        assert_eq!(p.read_config_register(2) >> 8, 0x06_04_00);
        assert_eq!(byte(&mut p, 0x0e) & 0x7f, 1, "header type 1");
        assert_eq!(
            (byte(&mut p, 0x18), byte(&mut p, 0x19), byte(&mut p, 0x1a)),
            (0, 2, 2)
        );
        assert_eq!(p.secondary_bus(), 2);
        // Closed: base above limit; the prefetchable window is 64-bit.
        assert!(word(&mut p, 0x20) > word(&mut p, 0x22));
        assert!(word(&mut p, 0x24) & 0xfff0 > word(&mut p, 0x26) & 0xfff0);
        assert_eq!(word(&mut p, 0x24) & 0xf, 1);
        // No I/O window: writes do not stick.
        let _ = p.write_config_register(0x1c / 4, 0, &[0xf0, 0xf0]);
        assert_eq!(word(&mut p, 0x1c), 0);
        assert_eq!(byte(&mut p, 0x3d), 0, "no INTx pin");
        assert!(p.bars().is_empty());
    }

    #[test]
    fn the_guest_programs_the_windows_and_bus_numbers() {
        let mut p = PciRootPort::new(3, 1, PcieLink::default());
        // A 64 GiB prefetchable window at 0x100_0000_0000, a 16 MiB memory window.
        let _ = p.write_config_register(0x24 / 4, 0, &0xfff1_0001u32.to_le_bytes());
        let _ = p.write_config_register(0x28 / 4, 0, &0x100u32.to_le_bytes());
        let _ = p.write_config_register(0x2c / 4, 0, &0x10fu32.to_le_bytes());
        let _ = p.write_config_register(0x20 / 4, 0, &0xc0f0_c000u32.to_le_bytes());
        assert_eq!(p.read_config_register(0x24 / 4), 0xfff1_0001);
        assert_eq!(p.read_config_register(0x28 / 4), 0x100);
        assert_eq!(p.read_config_register(0x20 / 4), 0xc0f0_c000);
        let _ = p.write_config_register(0x18 / 4, 1, &[7]);
        assert_eq!(p.secondary_bus(), 7);
    }

    #[test]
    fn the_link_is_the_host_devices_and_the_capabilities_chain_is_well_formed() {
        let link = PcieLink {
            max_speed: 5,
            max_width: 16,
            speed: 4,
            width: 8,
        };
        let mut p = PciRootPort::new(9, 1, link);
        assert_ne!(word(&mut p, 0x06) & (1 << 4), 0, "capabilities list");
        assert_eq!(byte(&mut p, 0x34), 0x40);
        let c = PCIE_CAP_OFFSET;
        assert_eq!((byte(&mut p, c), byte(&mut p, c + 1)), (0x10, 0));
        let caps = word(&mut p, c + 2);
        assert_eq!((caps & 0xf, caps >> 4 & 0xf), (2, 4), "v2 root port");
        assert_ne!(caps & (1 << 8), 0, "slot implemented");
        let lcap = p.read_config_register(c / 4 + 3);
        assert_eq!((lcap & 0xf, lcap >> 4 & 0x3f, lcap >> 24), (5, 16, 9));
        let lsta = word(&mut p, c + 0x12);
        assert_eq!((lsta & 0xf, lsta >> 4 & 0x3f), (4, 8));
        assert_ne!(lsta & (1 << 13), 0, "data link layer active");
        let scap = p.read_config_register(c / 4 + 5);
        assert_eq!(scap >> 19, 9, "physical slot");
        assert_eq!(scap & 0x7f, 0, "no hot-plug");
        assert_eq!(p.read_config_register(c / 4 + 11), 0b11_1110, "2.5-32 GT/s");
        // ACS at 0x100, the last extended capability.
        let acs = p.read_config_register(ACS_CAP_OFFSET / 4);
        assert_eq!((acs & 0xffff, acs >> 16 & 0xf, acs >> 20), (0x000d, 1, 0));
        assert_eq!(word(&mut p, ACS_CAP_OFFSET + 4), 0x1f);
        let _ = p.write_config_register(ACS_CAP_OFFSET / 4 + 1, 2, &[0x1f, 0]);
        assert_eq!(word(&mut p, ACS_CAP_OFFSET + 6), 0x1f);
    }

    #[test]
    fn sysfs_link_speeds_map_to_the_capability_encoding() {
        assert_eq!(PcieLink::speed_code("2.5 GT/s PCIe"), Some(1));
        assert_eq!(PcieLink::speed_code("16.0 GT/s PCIe"), Some(4));
        assert_eq!(PcieLink::speed_code("32.0 GT/s PCIe"), Some(5));
        assert_eq!(PcieLink::speed_code("Unknown"), None);
        assert_eq!(PcieLink::speed_code(""), None);
    }
}
