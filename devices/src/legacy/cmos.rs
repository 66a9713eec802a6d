//! MC146818-compatible CMOS RTC/NVRAM at ports 0x70 (index) and 0x71
//! (data); insert as one range: base 0x70, len 2.
//!
//! The clock registers always read the host's current UTC wall clock
//! (guest writes to them are ignored); the remaining registers of the
//! 128-byte bank are scratch RAM, pre-loaded with the memory-size fields
//! firmware and Linux read.

use std::time::SystemTime;

use log::debug;

use super::clock::{to_bcd, DateTime};
use super::read_open_bus;
use crate::BusDevice;

/// Offset of the index (address) port in the range.
pub const INDEX_OFFSET: u64 = 0;
/// Offset of the data port in the range.
pub const DATA_OFFSET: u64 = 1;

const NMI_DISABLE_BIT: u8 = 0x80;
const INDEX_MASK: u8 = !NMI_DISABLE_BIT;
const CMOS_SIZE: usize = 128;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// Register A: update in progress (read-only, always clear here).
const REG_A_UIP: u8 = 0x80;
/// Register A reset value: 32.768 kHz time base, 1024 Hz periodic rate.
const REG_A_DEFAULT: u8 = 0x26;
/// Register B: 24-hour mode.
const REG_B_24H: u8 = 0x02;
/// Register B: data mode binary (clear = BCD).
const REG_B_DM_BINARY: u8 = 0x04;
/// Register D: valid RAM and time.
const REG_D_VRT: u8 = 0x80;
/// 12-hour mode: PM flag in the hours register.
const HOUR_PM: u8 = 0x80;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const SIXTY_FOUR_KIB: u64 = 64 * KIB;

/// Source of the wall-clock time the RTC reports.
pub type Clock = Box<dyn Fn() -> SystemTime + Send>;

pub struct Cmos {
    index: u8,
    data: [u8; CMOS_SIZE],
    clock: Clock,
}

impl Cmos {
    /// `mem_below_4g`: bytes of guest RAM below 4 GiB (counted from 0);
    /// `mem_above_4g`: bytes of guest RAM from 4 GiB up.
    pub fn new(mem_below_4g: u64, mem_above_4g: u64) -> Self {
        Self::with_clock(mem_below_4g, mem_above_4g, Box::new(SystemTime::now))
    }

    /// Like [`Cmos::new`] with a custom wall clock (tests, time offsets).
    pub fn with_clock(mem_below_4g: u64, mem_above_4g: u64, clock: Clock) -> Self {
        let mut data = [0u8; CMOS_SIZE];
        data[usize::from(REG_A)] = REG_A_DEFAULT;
        data[usize::from(REG_B)] = REG_B_24H;
        data[usize::from(REG_D)] = REG_D_VRT;
        set_memory_fields(&mut data, mem_below_4g, mem_above_4g);
        Cmos {
            index: 0,
            data,
            clock,
        }
    }

    /// The index register and the 128 bytes of CMOS (the RTC's control registers and NVRAM;
    /// the time itself is the host's wall clock, read when the guest asks): a snapshot's.
    pub fn state(&self) -> (u8, Vec<u8>) {
        (self.index, self.data.to_vec())
    }

    /// Set what [`Cmos::state`] returned; `data` must be 128 bytes.
    pub fn restore(&mut self, index: u8, data: &[u8]) -> Result<(), String> {
        if data.len() != CMOS_SIZE {
            return Err(format!(
                "CMOS state of {} bytes, not {CMOS_SIZE}",
                data.len()
            ));
        }
        self.index = index & INDEX_MASK;
        self.data.copy_from_slice(data);
        Ok(())
    }

    fn read_register(&mut self, reg: u8) -> u8 {
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => self.time_register(reg),
            REG_A => self.data[usize::from(REG_A)] & !REG_A_UIP,
            REG_C => std::mem::take(&mut self.data[usize::from(REG_C)]),
            REG_D => REG_D_VRT,
            _ => self.data[usize::from(reg)],
        }
    }

    fn write_register(&mut self, reg: u8, value: u8) {
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => {
                debug!("cmos: ignoring write {value:#x} to clock register {reg:#x}")
            }
            REG_A => self.data[usize::from(REG_A)] = value & !REG_A_UIP,
            REG_C | REG_D => debug!("cmos: ignoring write {value:#x} to read-only {reg:#x}"),
            _ => self.data[usize::from(reg)] = value,
        }
    }

    fn time_register(&self, reg: u8) -> u8 {
        let now = DateTime::from_system_time((self.clock)());
        let reg_b = self.data[usize::from(REG_B)];
        let encode = |value: u8| {
            if reg_b & REG_B_DM_BINARY != 0 {
                value
            } else {
                to_bcd(value)
            }
        };
        match reg {
            REG_SECONDS => encode(now.second),
            REG_MINUTES => encode(now.minute),
            REG_HOURS if reg_b & REG_B_24H != 0 => encode(now.hour),
            REG_HOURS => {
                let hour12 = match now.hour % 12 {
                    0 => 12,
                    h => h,
                };
                let pm = if now.hour >= 12 { HOUR_PM } else { 0 };
                encode(hour12) | pm
            }
            // The RTC counts weekdays 1..=7 from Sunday.
            REG_WEEKDAY => encode(now.weekday + 1),
            REG_DAY => encode(now.day),
            REG_MONTH => encode(now.month),
            REG_YEAR => encode(now.year.rem_euclid(100) as u8),
            _ => encode((now.year / 100).clamp(0, 99) as u8),
        }
    }
}

/// Fills the memory-size registers the way QEMU and Cloud Hypervisor do.
fn set_memory_fields(data: &mut [u8; CMOS_SIZE], mem_below_4g: u64, mem_above_4g: u64) {
    // 0x15/0x16: base memory in KiB.
    data[0x15..=0x16].copy_from_slice(&640u16.to_le_bytes());
    // 0x17/0x18 and 0x30/0x31: extended memory above 1 MiB in KiB.
    let ext_kib = (mem_below_4g.saturating_sub(MIB) / KIB).min(0xffff) as u16;
    data[0x17..=0x18].copy_from_slice(&ext_kib.to_le_bytes());
    data[0x30..=0x31].copy_from_slice(&ext_kib.to_le_bytes());
    // 0x34/0x35: memory between 16 MiB and the 32-bit hole, in 64 KiB units.
    let above_16m = (mem_below_4g.saturating_sub(16 * MIB) / SIXTY_FOUR_KIB).min(0xffff) as u16;
    data[0x34..=0x35].copy_from_slice(&above_16m.to_le_bytes());
    // 0x5b..=0x5d: memory above 4 GiB in 64 KiB units, 24 bits.
    let high = (mem_above_4g / SIXTY_FOUR_KIB).min(0xff_ffff) as u32;
    data[0x5b..=0x5d].copy_from_slice(&high.to_le_bytes()[..3]);
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (DATA_OFFSET, 1) => data[0] = self.read_register(self.index),
            // The index port is write-only; like QEMU, it reads as all-ones.
            _ => {
                debug!("cmos: read of {} bytes at offset {offset:#x}", data.len());
                read_open_bus(data);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data) {
            // Bit 7 of the index port gates NMI on real hardware; ignore it.
            (INDEX_OFFSET, &[value]) => self.index = value & INDEX_MASK,
            (DATA_OFFSET, &[value]) => self.write_register(self.index, value),
            _ => debug!("cmos: ignoring {}-byte write at {offset:#x}", data.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::test_util::hammer;
    use std::time::{Duration, UNIX_EPOCH};

    const GIB: u64 = 1024 * MIB;
    /// 2024-12-31T23:59:58Z, a Tuesday.
    const NEW_YEARS_EVE: u64 = 1_735_689_598;

    fn fixed_clock(secs: u64) -> Clock {
        Box::new(move || UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn read_reg(cmos: &mut Cmos, reg: u8) -> u8 {
        cmos.write(INDEX_OFFSET, &[reg]);
        let mut data = [0u8; 1];
        cmos.read(DATA_OFFSET, &mut data);
        data[0]
    }

    fn write_reg(cmos: &mut Cmos, reg: u8, value: u8) {
        cmos.write(INDEX_OFFSET, &[reg]);
        cmos.write(DATA_OFFSET, &[value]);
    }

    fn is_bcd(value: u8) -> bool {
        value & 0x0f <= 9 && value >> 4 <= 9
    }

    #[test]
    fn memory_registers_describe_1g_below_and_3g_above_4g() {
        let mut cmos = Cmos::new(GIB, 3 * GIB);
        // (1 GiB - 16 MiB) / 64 KiB = 16128 = 0x3f00.
        assert_eq!(read_reg(&mut cmos, 0x34), 0x00);
        assert_eq!(read_reg(&mut cmos, 0x35), 0x3f);
        // 3 GiB / 64 KiB = 49152 = 0x00c000.
        assert_eq!(read_reg(&mut cmos, 0x5b), 0x00);
        assert_eq!(read_reg(&mut cmos, 0x5c), 0xc0);
        assert_eq!(read_reg(&mut cmos, 0x5d), 0x00);
        // Extended memory in KiB saturates at 0xffff.
        assert_eq!(read_reg(&mut cmos, 0x30), 0xff);
        assert_eq!(read_reg(&mut cmos, 0x31), 0xff);
        assert_eq!(read_reg(&mut cmos, 0x15), 0x80);
        assert_eq!(read_reg(&mut cmos, 0x16), 0x02);
    }

    #[test]
    fn memory_registers_saturate_and_handle_tiny_guests() {
        let mut cmos = Cmos::new(8 * MIB, 1 << 50);
        assert_eq!(read_reg(&mut cmos, 0x34), 0);
        assert_eq!(read_reg(&mut cmos, 0x35), 0);
        assert_eq!(read_reg(&mut cmos, 0x30), 0x00); // 7 MiB = 7168 KiB = 0x1c00
        assert_eq!(read_reg(&mut cmos, 0x31), 0x1c);
        for reg in 0x5b..=0x5d {
            assert_eq!(read_reg(&mut cmos, reg), 0xff);
        }
        let mut cmos = Cmos::new(8 * GIB, 0);
        assert_eq!(read_reg(&mut cmos, 0x34), 0xff);
        assert_eq!(read_reg(&mut cmos, 0x35), 0xff);
    }

    #[test]
    fn time_fields_read_as_bcd_by_default() {
        let mut cmos = Cmos::with_clock(0, 0, fixed_clock(NEW_YEARS_EVE));
        let expected = [
            (REG_SECONDS, 0x58),
            (REG_MINUTES, 0x59),
            (REG_HOURS, 0x23),
            (REG_WEEKDAY, 0x03),
            (REG_DAY, 0x31),
            (REG_MONTH, 0x12),
            (REG_YEAR, 0x24),
            (REG_CENTURY, 0x20),
        ];
        for (reg, value) in expected {
            assert_eq!(read_reg(&mut cmos, reg), value, "register {reg:#x}");
        }
    }

    #[test]
    fn host_clock_time_fields_are_valid_bcd() {
        let mut cmos = Cmos::new(GIB, 0);
        for reg in [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32] {
            let value = read_reg(&mut cmos, reg);
            assert!(is_bcd(value), "register {reg:#x} = {value:#x}");
        }
        let month = read_reg(&mut cmos, REG_MONTH);
        assert!((0x01..=0x12).contains(&month));
        assert!(read_reg(&mut cmos, REG_CENTURY) >= 0x20);
    }

    #[test]
    fn binary_mode_when_register_b_dm_bit_set() {
        let mut cmos = Cmos::with_clock(0, 0, fixed_clock(NEW_YEARS_EVE));
        write_reg(&mut cmos, REG_B, REG_B_24H | REG_B_DM_BINARY);
        assert_eq!(read_reg(&mut cmos, REG_B), 0x06);
        assert_eq!(read_reg(&mut cmos, REG_SECONDS), 58);
        assert_eq!(read_reg(&mut cmos, REG_HOURS), 23);
        assert_eq!(read_reg(&mut cmos, REG_DAY), 31);
        assert_eq!(read_reg(&mut cmos, REG_YEAR), 24);
        assert_eq!(read_reg(&mut cmos, REG_CENTURY), 20);
    }

    #[test]
    fn twelve_hour_mode_sets_the_pm_flag() {
        let mut cmos = Cmos::with_clock(0, 0, fixed_clock(NEW_YEARS_EVE));
        write_reg(&mut cmos, REG_B, 0);
        assert_eq!(read_reg(&mut cmos, REG_HOURS), HOUR_PM | 0x11);
        let mut cmos = Cmos::with_clock(0, 0, fixed_clock(0));
        write_reg(&mut cmos, REG_B, 0);
        assert_eq!(read_reg(&mut cmos, REG_HOURS), 0x12);
    }

    #[test]
    fn status_registers_have_their_documented_values() {
        let mut cmos = Cmos::new(GIB, 0);
        assert_eq!(read_reg(&mut cmos, REG_A) & REG_A_UIP, 0);
        write_reg(&mut cmos, REG_A, 0xff);
        assert_eq!(read_reg(&mut cmos, REG_A), 0x7f);
        assert_eq!(read_reg(&mut cmos, REG_B), 0x02);
        assert_eq!(read_reg(&mut cmos, REG_C), 0x00);
        write_reg(&mut cmos, REG_D, 0);
        assert_eq!(read_reg(&mut cmos, REG_D), 0x80);
    }

    #[test]
    fn nmi_disable_bit_is_masked_off_the_index() {
        let mut cmos = Cmos::new(GIB, 3 * GIB);
        cmos.write(INDEX_OFFSET, &[NMI_DISABLE_BIT | 0x5c]);
        let mut data = [0u8; 1];
        cmos.read(DATA_OFFSET, &mut data);
        assert_eq!(data, [0xc0]);
        write_reg(&mut cmos, NMI_DISABLE_BIT | 0x40, 0x99);
        assert_eq!(read_reg(&mut cmos, 0x40), 0x99);
    }

    #[test]
    fn other_registers_are_scratch_ram_and_clock_writes_are_ignored() {
        let mut cmos = Cmos::with_clock(0, 0, fixed_clock(NEW_YEARS_EVE));
        for reg in [0x01, 0x0f, 0x10, 0x7f] {
            write_reg(&mut cmos, reg, reg ^ 0xa5);
            assert_eq!(read_reg(&mut cmos, reg), reg ^ 0xa5);
        }
        write_reg(&mut cmos, REG_SECONDS, 0x00);
        assert_eq!(read_reg(&mut cmos, REG_SECONDS), 0x58);
    }

    #[test]
    fn index_port_and_odd_sized_reads_return_all_ones() {
        let mut cmos = Cmos::new(GIB, 0);
        let mut data = [0u8; 1];
        cmos.read(INDEX_OFFSET, &mut data);
        assert_eq!(data, [0xff]);
        let mut wide = [0u8; 2];
        cmos.read(DATA_OFFSET, &mut wide);
        assert_eq!(wide, [0xff, 0xff]);
    }

    #[test]
    fn survives_any_access_size_at_any_offset() {
        let mut cmos = Cmos::new(GIB, 3 * GIB);
        hammer(&mut cmos, 2);
        // Still works afterwards.
        assert_eq!(read_reg(&mut cmos, REG_D), 0x80);
    }

    #[test]
    fn state_round_trips_and_a_wrong_size_is_refused() {
        let mut a = Cmos::new(128 << 20, 0);
        a.write(INDEX_OFFSET, &[0x40]);
        a.write(DATA_OFFSET, &[0x5a]);
        a.write(INDEX_OFFSET, &[0x41]);
        let (index, data) = a.state();
        let mut b = Cmos::new(64 << 20, 0);
        b.restore(index, &data).unwrap();
        assert_eq!(b.state(), (index, data));
        b.write(INDEX_OFFSET, &[0x40]);
        let mut v = [0u8];
        b.read(DATA_OFFSET, &mut v);
        assert_eq!(v, [0x5a]);
        assert!(b.restore(0, &[0u8; 64]).is_err());
    }
}
