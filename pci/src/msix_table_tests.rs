use super::*;
use crate::interrupt::{MsiEvent, RecordingMsiGroup};

fn table(vectors: u16) -> (MsixTable, Arc<RecordingMsiGroup>) {
    let group = Arc::new(RecordingMsiGroup::new());
    (MsixTable::new(vectors, group.clone()), group)
}

fn read32(t: &MsixTable, offset: u64) -> u32 {
    let mut data = [0u8; 4];
    t.read_table(offset, &mut data);
    u32::from_le_bytes(data)
}

fn read64(t: &MsixTable, offset: u64) -> u64 {
    let mut data = [0u8; 8];
    t.read_table(offset, &mut data);
    u64::from_le_bytes(data)
}

fn pba64(t: &MsixTable, offset: u64) -> u64 {
    let mut data = [0u8; 8];
    t.read_pba(offset, &mut data);
    u64::from_le_bytes(data)
}

/// Programs entry `v` with 4-byte writes, leaving its mask bit as `masked`.
fn program(t: &mut MsixTable, v: u64, address: u64, data: u32, masked: bool) {
    let base = v * MSIX_TABLE_ENTRY_SIZE;
    t.write_table(base, &(address as u32).to_le_bytes());
    t.write_table(base + 4, &((address >> 32) as u32).to_le_bytes());
    t.write_table(base + 8, &data.to_le_bytes());
    t.write_table(base + 12, &u32::from(masked).to_le_bytes());
}

fn msg(address: u64, data: u32) -> MsiMessage {
    MsiMessage { address, data }
}

#[test]
fn entries_come_out_of_reset_masked() {
    let (t, _) = table(3);
    assert_eq!(t.vectors(), 3);
    assert_eq!((t.table_len(), t.pba_len()), (48, 8));
    for v in 0..3 {
        assert_eq!(read32(&t, v * 16 + 12), MSIX_VECTOR_MASKED);
        assert_eq!(read32(&t, v * 16), 0);
    }
}

#[test]
fn dword_and_qword_accesses_reach_each_field() {
    let (mut t, _) = table(2);
    program(&mut t, 1, 0x1_fee0_0000, 0x4021, true);
    assert_eq!(read32(&t, 16), 0xfee0_0000);
    assert_eq!(read32(&t, 20), 1);
    assert_eq!(read32(&t, 24), 0x4021);
    assert_eq!(read64(&t, 16), 0x1_fee0_0000);
    assert_eq!(read64(&t, 24), 0x1_0000_4021);
    t.write_table(0, &0x0000_0002_fee0_1000u64.to_le_bytes());
    t.write_table(8, &0x0000_0000_0000_0055u64.to_le_bytes());
    let entry = t.entry(0).unwrap();
    assert_eq!(entry.message(), msg(0x2_fee0_1000, 0x55));
    assert!(!entry.masked(), "qword write at 8 cleared the mask bit");
}

#[test]
fn vector_control_reserved_bits_read_zero() {
    let (mut t, _) = table(1);
    t.write_table(12, &0xffff_fffeu32.to_le_bytes());
    assert_eq!(read32(&t, 12), 0);
    t.write_table(12, &0xffff_ffffu32.to_le_bytes());
    assert_eq!(read32(&t, 12), 1);
}

#[test]
fn unsupported_accesses_read_all_ones_and_writes_are_ignored() {
    let (mut t, _) = table(1);
    let before = t.entry(0).unwrap();
    for (offset, len) in [
        (0u64, 1usize),
        (0, 2),
        (2, 4),
        (4, 8),
        (0, 3),
        (0, 16),
        (0, 0),
    ] {
        let mut data = vec![0u8; len];
        t.read_table(offset, &mut data);
        assert!(data.iter().all(|b| *b == 0xff), "{len} bytes at {offset}");
        t.write_table(offset, &vec![0x12; len]);
    }
    assert_eq!(t.entry(0).unwrap(), before);
}

#[test]
fn out_of_range_entries_are_ignored() {
    let (mut t, group) = table(2);
    t.set_control(true, false);
    group.take_events();
    t.write_table(32, &0u32.to_le_bytes());
    t.write_table(u64::MAX - 3, &0u32.to_le_bytes());
    t.write_table(0x7ff0, &0u64.to_le_bytes());
    assert!(group.events().is_empty());
    assert_eq!(read32(&t, 32), 0xffff_ffff);
    assert_eq!(read64(&t, 0x1_0000), u64::MAX);
    assert_eq!(pba64(&t, 8), u64::MAX, "past the PBA");
}

#[test]
fn enabling_routes_every_entry_then_enables() {
    let (mut t, group) = table(2);
    program(&mut t, 0, 0xfee0_0000, 0x30, false);
    assert!(group.events().is_empty(), "nothing pushed while disabled");
    assert!(t.set_control(true, false));
    assert_eq!(
        group.take_events(),
        vec![
            MsiEvent::Update {
                vector: 0,
                msg: msg(0xfee0_0000, 0x30),
                masked: false
            },
            MsiEvent::Update {
                vector: 1,
                msg: msg(0, 0),
                masked: true
            },
            MsiEvent::Enable,
        ]
    );
    assert!(!t.set_control(true, false), "no change");
    assert!(t.set_control(false, false));
    assert_eq!(group.take_events(), vec![MsiEvent::Disable]);
}

#[test]
fn entry_change_while_enabled_updates_its_route() {
    let (mut t, group) = table(1);
    t.set_control(true, false);
    group.take_events();
    program(&mut t, 0, 0xfee0_0000, 0x31, false);
    assert_eq!(
        group.route(0),
        Some((msg(0xfee0_0000, 0x31), false)),
        "routes follow the entry"
    );
    group.take_events();
    t.write_table(8, &0x31u32.to_le_bytes());
    assert!(group.events().is_empty(), "unchanged entry: no update");
}

#[test]
fn masked_vector_sets_pending_and_unmask_delivers_it() {
    let (mut t, group) = table(70);
    program(&mut t, 65, 0xfee0_0000, 0x40, true);
    t.set_control(true, false);
    group.take_events();
    t.trigger(65).unwrap();
    assert!(group.triggered().is_empty());
    assert!(t.is_pending(65));
    assert_eq!(pba64(&t, 8), 1 << 1);
    let mut high = [0u8; 4];
    t.read_pba(12, &mut high);
    assert_eq!(u32::from_le_bytes(high), 0);
    t.write_pba(8, &[0; 8]);
    assert!(t.is_pending(65), "PBA is read-only");
    t.write_table(65 * 16 + 12, &0u32.to_le_bytes());
    assert_eq!(
        group.take_events(),
        vec![
            MsiEvent::Update {
                vector: 65,
                msg: msg(0xfee0_0000, 0x40),
                masked: false
            },
            MsiEvent::Trigger(65),
        ]
    );
    assert!(!t.is_pending(65));
    t.trigger(65).unwrap();
    assert_eq!(group.triggered(), vec![65]);
}

#[test]
fn function_mask_holds_interrupts_until_cleared() {
    let (mut t, group) = table(2);
    program(&mut t, 0, 0xfee0_0000, 0x50, false);
    t.set_control(true, true);
    assert_eq!(group.route(0), Some((msg(0xfee0_0000, 0x50), true)));
    group.take_events();
    t.trigger(0).unwrap();
    t.trigger(1).unwrap();
    assert!(t.is_pending(0) && t.is_pending(1));
    assert!(t.set_control(true, false));
    assert_eq!(
        group.take_events(),
        vec![
            MsiEvent::Update {
                vector: 0,
                msg: msg(0xfee0_0000, 0x50),
                masked: false
            },
            MsiEvent::Trigger(0),
        ],
        "vector 1 stays pending behind its own mask"
    );
    assert!(t.is_pending(1));
}

#[test]
fn triggers_while_disabled_are_dropped_and_bad_vectors_rejected() {
    let (mut t, group) = table(1);
    t.trigger(0).unwrap();
    assert!(!t.is_pending(0));
    assert!(group.events().is_empty());
    let err = t.trigger(1).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn vector_count_is_clamped() {
    assert_eq!(table(0).0.vectors(), 1);
    assert_eq!(table(5000).0.vectors(), MSIX_MAX_VECTORS);
}

#[test]
fn a_restored_table_routes_its_entries_once_enabled() {
    let group = Arc::new(RecordingMsiGroup::new());
    let mut saved = MsixTable::new(3, group.clone());
    saved.set_control(true, false);
    saved.write_table(16, &0xfee0_1000u32.to_le_bytes());
    saved.write_table(16 + 8, &0x41u32.to_le_bytes());
    saved.write_table(16 + 12, &0u32.to_le_bytes());
    let (entries, pba) = (saved.entries().to_vec(), saved.pba_words().to_vec());

    let fresh = Arc::new(RecordingMsiGroup::new());
    let mut t = MsixTable::new(3, fresh.clone());
    assert!(t.restore(&entries[..2], &pba).is_err(), "size differs");
    t.restore(&entries, &pba).unwrap();
    assert!(
        fresh.events().is_empty(),
        "nothing is pushed while disabled"
    );
    t.set_control(true, false);
    let (msg, masked) = fresh.route(1).unwrap();
    assert_eq!((msg.address, msg.data, masked), (0xfee0_1000, 0x41, false));
    assert!(fresh.route(0).unwrap().1, "vector 0 stays masked");
    assert!(t.restore(&entries, &pba).is_err(), "not once enabled");
}

#[test]
fn the_pba_shows_masked_vectors_a_device_signalled_and_only_while_masked() {
    let (mut t, g) = table(70);
    t.set_control(true, false);
    program(&mut t, 3, 0xfee0_0000, 0x41, true);
    program(&mut t, 65, 0xfee0_0000, 0x42, true);
    program(&mut t, 4, 0xfee0_0000, 0x43, false);
    assert_eq!(pba64(&t, 0), 0);
    // A passed-through device raised vectors 3, 65 (masked) and 4 (unmasked: delivered).
    g.raise_outside(3);
    g.raise_outside(65);
    g.raise_outside(4);
    assert_eq!(pba64(&t, 0), 1 << 3);
    assert_eq!(pba64(&t, 8), 1 << 1);
    // Dword reads of the second word's halves.
    let mut lo = [0u8; 4];
    t.read_pba(8, &mut lo);
    assert_eq!(u32::from_le_bytes(lo), 1 << 1);
    // The function mask makes every waiting vector pending.
    t.set_control(true, true);
    assert_eq!(pba64(&t, 0), 1 << 3 | 1 << 4);
}
