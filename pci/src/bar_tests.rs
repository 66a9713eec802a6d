use super::*;
use crate::configuration::{COMMAND_IO_SPACE, COMMAND_MEMORY_SPACE};
use crate::test_util::header;

fn config_with(bars: &[BarConfig]) -> PciConfiguration {
    let mut config = PciConfiguration::new(&header());
    for bar in bars {
        config.add_bar(bar).unwrap();
    }
    config
}

fn mem32(index: usize, size: u64, addr: u64) -> BarConfig {
    BarConfig {
        index,
        size,
        kind: BarKind::Mem32,
        prefetchable: false,
        addr,
    }
}

fn mem64(index: usize, size: u64, addr: u64) -> BarConfig {
    BarConfig {
        kind: BarKind::Mem64,
        prefetchable: true,
        ..mem32(index, size, addr)
    }
}

fn io(index: usize, size: u64, addr: u64) -> BarConfig {
    BarConfig {
        kind: BarKind::Io,
        ..mem32(index, size, addr)
    }
}

fn write_u32(config: &mut PciConfiguration, reg: usize, value: u32) -> Vec<BarReprogram> {
    config
        .write_config_register(reg, 0, &value.to_le_bytes())
        .bar_moves
}

fn set_command(config: &mut PciConfiguration, command: u16) -> Vec<BarReprogram> {
    config
        .write_config_register(1, 0, &command.to_le_bytes())
        .bar_moves
}

/// Writes all-ones, reads the size mask back, restores the old value.
fn size_probe(config: &mut PciConfiguration, reg: usize) -> u32 {
    let old = config.read_config_register(reg);
    assert!(write_u32(config, reg, 0xffff_ffff).is_empty());
    let mask = config.read_config_register(reg);
    assert!(write_u32(config, reg, old).is_empty());
    assert_eq!(config.read_config_register(reg), old);
    mask
}

#[test]
fn io_bar_sizing_reads_back_size_mask_and_io_bit() {
    let mut config = config_with(&[io(0, 0x20, 0xc000)]);
    assert_eq!(config.read_config_register(4), 0xc001);
    assert_eq!(size_probe(&mut config, 4), 0xffff_ffe1);
}

#[test]
fn mem32_bar_sizing_reads_back_size_mask() {
    let mut config = config_with(&[mem32(1, 0x1000, 0xc000_0000)]);
    assert_eq!(config.read_config_register(5), 0xc000_0000);
    assert_eq!(size_probe(&mut config, 5), 0xffff_f000);
}

#[test]
fn prefetchable_mem32_bar_keeps_prefetch_bit() {
    let bar = BarConfig {
        prefetchable: true,
        ..mem32(2, 0x10, 0xd000_0010)
    };
    let mut config = config_with(&[bar]);
    assert_eq!(config.read_config_register(6), 0xd000_0018);
    assert_eq!(size_probe(&mut config, 6), 0xffff_fff8);
}

#[test]
fn mem64_bar_sizing_spans_both_registers() {
    let mut config = config_with(&[mem64(2, 0x2_0000_0000, 0x40_0000_0000)]);
    assert_eq!(config.read_config_register(6), 0x0000_000c);
    assert_eq!(config.read_config_register(7), 0x40);
    assert_eq!(size_probe(&mut config, 6), 0x0000_000c);
    assert_eq!(size_probe(&mut config, 7), 0xffff_fffe);
    let small = config_with(&[mem64(0, 0x4000, 0x1_0000_0000)]);
    let mut small = small;
    assert_eq!(size_probe(&mut small, 4), 0xffff_c00c);
    assert_eq!(size_probe(&mut small, 5), 0xffff_ffff);
}

#[test]
fn non_prefetchable_mem64_bar_has_only_the_64bit_type() {
    let bar = BarConfig {
        prefetchable: false,
        ..mem64(0, 0x1000, 0)
    };
    let config = config_with(&[bar]);
    assert_eq!(config.read_config_register(4), 0b100);
}

#[test]
fn bar_address_bits_honour_alignment() {
    let mut config = config_with(&[mem32(0, 0x1000, 0)]);
    write_u32(&mut config, 4, 0x1234_5678);
    assert_eq!(config.read_config_register(4), 0x1234_5000);
    assert_eq!(config.bar_addr(0), Some(0x1234_5000));
}

#[test]
fn rom_bar_sizing_and_enable_bit() {
    let mut config = PciConfiguration::new(&header());
    config.add_rom_bar(0x1_0000, 0xfeb0_0000).unwrap();
    assert_eq!(config.read_config_register(12), 0xfeb0_0000);
    assert_eq!(size_probe(&mut config, 12), 0xffff_0001);
    write_u32(&mut config, 12, 0x0000_07fe);
    assert_eq!(
        config.read_config_register(12),
        0,
        "reserved bits stay zero"
    );
    assert_eq!(
        config.add_rom_bar(0x1_0000, 0),
        Err(BarError::SlotInUse {
            index: ROM_BAR_INDEX,
            slot: ROM_BAR_INDEX
        })
    );
}

#[test]
fn rom_bar_decodes_only_with_memory_space_and_enable_bit() {
    let mut config = PciConfiguration::new(&header());
    config.add_rom_bar(0x800, 0xfeb0_0000).unwrap();
    assert!(set_command(&mut config, COMMAND_MEMORY_SPACE).is_empty());
    let moves = write_u32(&mut config, 12, 0xfeb0_0001);
    assert_eq!(
        moves,
        vec![BarReprogram {
            index: ROM_BAR_INDEX,
            kind: BarKind::Mem32,
            old_addr: None,
            new_addr: Some(0xfeb0_0000),
            size: 0x800,
        }]
    );
    let moves = set_command(&mut config, 0);
    assert_eq!(moves[0].new_addr, None);
    assert_eq!(moves[0].old_addr, Some(0xfeb0_0000));
}

#[test]
fn add_bar_rejects_invalid_configurations() {
    let mut config = config_with(&[mem64(2, 0x1000, 0)]);
    let cases = [
        (mem32(6, 0x1000, 0), BarError::InvalidIndex(6)),
        (
            mem32(2, 0x1000, 0),
            BarError::SlotInUse { index: 2, slot: 2 },
        ),
        (
            mem32(3, 0x1000, 0),
            BarError::SlotInUse { index: 3, slot: 3 },
        ),
        (
            mem64(1, 0x1000, 0),
            BarError::SlotInUse { index: 1, slot: 2 },
        ),
        (mem64(5, 0x1000, 0), BarError::Mem64AtLastSlot),
        (
            mem32(0, 0x3000, 0),
            BarError::SizeNotPowerOfTwo {
                index: 0,
                size: 0x3000,
            },
        ),
        (
            mem32(0, 0, 0),
            BarError::SizeNotPowerOfTwo { index: 0, size: 0 },
        ),
        (
            mem32(0, 8, 0),
            BarError::SizeTooSmall {
                index: 0,
                size: 8,
                min: 16,
            },
        ),
        (
            io(0, 2, 0),
            BarError::SizeTooSmall {
                index: 0,
                size: 2,
                min: 4,
            },
        ),
        (
            mem32(0, 1 << 32, 0),
            BarError::SizeTooLarge {
                index: 0,
                size: 1 << 32,
                max: 1 << 31,
            },
        ),
        (
            mem32(0, 0x1000, 0x800),
            BarError::UnalignedAddress {
                index: 0,
                addr: 0x800,
                size: 0x1000,
            },
        ),
        (
            mem32(0, 0x1000, 0x1_0000_0000),
            BarError::AddressOutOfRange {
                index: 0,
                addr: 0x1_0000_0000,
                size: 0x1000,
            },
        ),
        (
            BarConfig {
                prefetchable: true,
                ..io(0, 4, 0)
            },
            BarError::PrefetchableIo(0),
        ),
    ];
    for (bar, err) in cases {
        assert_eq!(config.add_bar(&bar), Err(err), "{bar:?}");
    }
    assert_eq!(
        config.add_rom_bar(0x400, 0),
        Err(BarError::SizeTooSmall {
            index: ROM_BAR_INDEX,
            size: 0x400,
            min: 0x800
        })
    );
}

#[test]
fn bars_lists_declared_bars_with_decode_state() {
    let mut config = config_with(&[io(0, 0x10, 0xc000), mem64(2, 0x4000, 0x1_0000_0000)]);
    assert!(!set_command(&mut config, COMMAND_IO_SPACE).is_empty());
    let bars = config.bars();
    assert_eq!(bars.len(), 2);
    assert_eq!(
        bars[0],
        BarInfo {
            index: 0,
            kind: BarKind::Io,
            prefetchable: false,
            addr: 0xc000,
            size: 0x10,
            decoded: true,
        }
    );
    assert_eq!(
        (bars[1].index, bars[1].addr, bars[1].decoded),
        (2, 0x1_0000_0000, false)
    );
    assert_eq!(config.bar_size(2), Some(0x4000));
    assert_eq!(config.bar_size(3), None, "upper half is not a BAR");
}

#[test]
fn moving_a_bar_with_decoding_off_reports_nothing() {
    let mut config = config_with(&[mem32(0, 0x1000, 0xc000_0000)]);
    assert!(write_u32(&mut config, 4, 0xc100_0000).is_empty());
    assert_eq!(config.bar_addr(0), Some(0xc100_0000));
}

#[test]
fn enabling_and_disabling_decoding_reports_insert_and_remove() {
    let mut config = config_with(&[mem32(0, 0x1000, 0xc000_0000), io(1, 0x20, 0xc020)]);
    let moves = set_command(&mut config, COMMAND_MEMORY_SPACE);
    assert_eq!(
        moves,
        vec![BarReprogram {
            index: 0,
            kind: BarKind::Mem32,
            old_addr: None,
            new_addr: Some(0xc000_0000),
            size: 0x1000,
        }]
    );
    let moves = set_command(&mut config, COMMAND_MEMORY_SPACE | COMMAND_IO_SPACE);
    assert_eq!(moves.len(), 1);
    assert_eq!((moves[0].index, moves[0].kind), (1, BarKind::Io));
    assert_eq!(moves[0].new_addr, Some(0xc020));
    assert!(set_command(&mut config, COMMAND_MEMORY_SPACE | COMMAND_IO_SPACE).is_empty());
    let moves = set_command(&mut config, 0);
    assert_eq!(moves.len(), 2);
    assert!(moves
        .iter()
        .all(|m| m.new_addr.is_none() && m.old_addr.is_some()));
}

#[test]
fn moving_a_decoded_bar_reports_old_and_new_address() {
    let mut config = config_with(&[mem32(3, 0x1000, 0xc000_0000)]);
    let _ = set_command(&mut config, COMMAND_MEMORY_SPACE);
    let moves = write_u32(&mut config, 7, 0xc800_0000);
    assert_eq!(
        moves,
        vec![BarReprogram {
            index: 3,
            kind: BarKind::Mem32,
            old_addr: Some(0xc000_0000),
            new_addr: Some(0xc800_0000),
            size: 0x1000,
        }]
    );
}

#[test]
fn rewriting_the_same_address_reports_nothing() {
    let mut config = config_with(&[mem32(0, 0x1000, 0xc000_0000)]);
    let _ = set_command(&mut config, COMMAND_MEMORY_SPACE);
    assert!(write_u32(&mut config, 4, 0xc000_0000).is_empty());
    // Low bits are read-only, so this is the same address too.
    assert!(write_u32(&mut config, 4, 0xc000_0fff).is_empty());
    let byte = config.write_config_register(4, 3, &[0xc0]);
    assert!(byte.bar_moves.is_empty());
}

#[test]
fn moving_a_decoded_64bit_bar_low_then_high_reports_each_step() {
    let mut config = config_with(&[mem64(0, 0x1000, 0x1_0000_0000)]);
    let _ = set_command(&mut config, COMMAND_MEMORY_SPACE);
    let moves = write_u32(&mut config, 4, 0x2000_0000);
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].old_addr, Some(0x1_0000_0000));
    assert_eq!(moves[0].new_addr, Some(0x1_2000_0000));
    let moves = write_u32(&mut config, 5, 0x40);
    assert_eq!(
        moves,
        vec![BarReprogram {
            index: 0,
            kind: BarKind::Mem64,
            old_addr: Some(0x1_2000_0000),
            new_addr: Some(0x40_2000_0000),
            size: 0x1000,
        }]
    );
    assert_eq!(config.bar_addr(0), Some(0x40_2000_0000));
}

#[test]
fn moving_a_64bit_bar_with_decoding_off_then_enabling_reports_one_insert() {
    let mut config = config_with(&[mem64(0, 0x1000, 0x1_0000_0000)]);
    assert!(write_u32(&mut config, 4, 0x2000_0000).is_empty());
    assert!(write_u32(&mut config, 5, 0x40).is_empty());
    let moves = set_command(&mut config, COMMAND_MEMORY_SPACE);
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].old_addr, None);
    assert_eq!(moves[0].new_addr, Some(0x40_2000_0000));
}

#[test]
fn io_decoding_does_not_move_memory_bars() {
    let mut config = config_with(&[mem32(0, 0x1000, 0xc000_0000)]);
    assert!(set_command(&mut config, COMMAND_IO_SPACE).is_empty());
}
