use super::*;
use crate::interrupt::{MsiEvent, RecordingMsiGroup};
use crate::test_util::header;

struct Fixture {
    config: PciConfiguration,
    msi: Msi,
    group: Arc<RecordingMsiGroup>,
}

fn fixture(vectors: u8, per_vector_mask: bool) -> Fixture {
    let mut config = PciConfiguration::new(&header());
    let group = Arc::new(RecordingMsiGroup::new());
    let msi = Msi::new(&mut config, vectors, per_vector_mask, group.clone()).unwrap();
    Fixture { config, msi, group }
}

impl Fixture {
    /// A guest write of `data` at config byte `offset`; returns `changed`.
    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        let reg = offset / 4;
        let _ = self
            .config
            .write_config_register(reg, (offset % 4) as u64, data);
        self.msi.handle_config_write(&mut self.config, reg)
    }

    fn at(&self, field: usize) -> usize {
        self.msi.offset() + field
    }

    fn program(&mut self, address: u64, data: u16) {
        let lo = self.at(ADDRESS_LO);
        let hi = self.at(ADDRESS_HI);
        let d = self.at(DATA);
        self.write(lo, &(address as u32).to_le_bytes());
        self.write(hi, &((address >> 32) as u32).to_le_bytes());
        self.write(d, &data.to_le_bytes());
    }

    fn set_control(&mut self, control: u16) -> bool {
        let at = self.at(CONTROL);
        self.write(at, &control.to_le_bytes())
    }

    fn set_mask(&mut self, mask: u32) -> bool {
        let at = self.at(MASK);
        self.write(at, &mask.to_le_bytes())
    }
}

fn msg(address: u64, data: u32) -> MsiMessage {
    MsiMessage { address, data }
}

#[test]
fn capability_advertises_64bit_vectors_and_masking() {
    let f = fixture(8, true);
    let off = f.msi.offset();
    assert_eq!(f.config.capabilities(), vec![(PCI_CAP_ID_MSI, off)]);
    let control = f.config.read_u16(off + CONTROL);
    assert_eq!(control, MSI_CTRL_64BIT | MSI_CTRL_PER_VECTOR_MASK | 3 << 1);
    let plain = fixture(1, false);
    assert_eq!(
        plain.config.read_u16(plain.msi.offset() + CONTROL),
        MSI_CTRL_64BIT
    );
    assert!(f.msi.contains(off / 4 + 5));
    assert!(!f.msi.contains(off / 4 + 6));
    assert!(!plain.msi.contains(plain.msi.offset() / 4 + 4));
}

#[test]
fn invalid_vector_counts_are_rejected() {
    for bad in [0, 3, 64] {
        assert_eq!(
            MsiCapability::new(bad, false),
            Err(MsiError::InvalidVectorCount(bad))
        );
    }
}

#[test]
fn read_only_control_bits_ignore_writes() {
    let mut f = fixture(2, false);
    f.set_control(0xffff);
    let control = f.config.read_u16(f.at(CONTROL));
    assert_eq!(
        control,
        MSI_CTRL_64BIT | 1 << 1 | 0b111 << 4 | MSI_CTRL_ENABLE
    );
    assert_eq!(f.msi.state().vectors, 2, "MME capped at capable");
}

#[test]
fn programming_while_disabled_pushes_nothing() {
    let mut f = fixture(1, true);
    f.program(0xfee0_0000, 0x30);
    assert!(f.group.events().is_empty());
    assert!(!f.msi.state().enabled);
}

#[test]
fn enable_routes_every_vector_then_enables() {
    let mut f = fixture(4, false);
    f.program(0xfee0_1000, 0x40);
    assert!(f.set_control(MSI_CTRL_ENABLE | 2 << 4));
    let events = f.group.take_events();
    assert_eq!(events.len(), 5);
    for v in 0..4u16 {
        assert_eq!(
            events[v as usize],
            MsiEvent::Update {
                vector: v,
                msg: msg(0xfee0_1000, 0x40 + u32::from(v)),
                masked: false
            }
        );
    }
    assert_eq!(events[4], MsiEvent::Enable);
    let state = f.msi.state();
    assert_eq!((state.enabled, state.vectors), (true, 4));
}

#[test]
fn address_change_while_enabled_updates_routes() {
    let mut f = fixture(1, false);
    f.program(0xfee0_0000, 0x20);
    f.set_control(MSI_CTRL_ENABLE);
    f.group.take_events();
    let lo = f.at(ADDRESS_LO);
    assert!(f.write(lo, &0xfee0_2003u32.to_le_bytes()));
    assert_eq!(
        f.group.events(),
        vec![MsiEvent::Update {
            vector: 0,
            msg: msg(0xfee0_2000, 0x20),
            masked: false
        }],
        "low two address bits are read-only"
    );
    assert!(
        !f.write(lo, &0xfee0_2000u32.to_le_bytes()),
        "same value: no change"
    );
    assert_eq!(f.group.events().len(), 1);
}

#[test]
fn disable_stops_delivery_and_drops_triggers() {
    let mut f = fixture(1, false);
    f.set_control(MSI_CTRL_ENABLE);
    f.group.take_events();
    assert!(f.set_control(0));
    assert_eq!(f.group.take_events(), vec![MsiEvent::Disable]);
    f.msi.trigger(&mut f.config, 0).unwrap();
    assert!(f.group.triggered().is_empty());
}

#[test]
fn trigger_delivers_enabled_unmasked_vectors_only() {
    let mut f = fixture(2, false);
    f.msi.trigger(&mut f.config, 0).unwrap();
    f.set_control(MSI_CTRL_ENABLE);
    f.msi.trigger(&mut f.config, 0).unwrap();
    f.msi.trigger(&mut f.config, 1).unwrap();
    assert_eq!(
        f.group.triggered(),
        vec![0],
        "vector 1 is not enabled by MME"
    );
}

#[test]
fn masked_vector_is_pending_until_unmasked() {
    let mut f = fixture(2, true);
    f.set_control(MSI_CTRL_ENABLE | 1 << 4);
    f.group.take_events();
    assert!(f.set_mask(0b10));
    assert_eq!(
        f.group.take_events(),
        vec![MsiEvent::Update {
            vector: 1,
            msg: msg(0, 1),
            masked: true
        }]
    );
    f.msi.trigger(&mut f.config, 1).unwrap();
    assert!(f.group.triggered().is_empty());
    assert!(f.msi.is_pending(&f.config, 1));
    assert_eq!(f.config.read_u32(f.at(PENDING)), 0b10);
    // The guest cannot clear pending bits itself.
    let pending = f.at(PENDING);
    f.write(pending, &[0, 0, 0, 0]);
    assert!(f.msi.is_pending(&f.config, 1));
    assert!(f.set_mask(0));
    let events = f.group.take_events();
    assert_eq!(events.last(), Some(&MsiEvent::Trigger(1)));
    assert!(!f.msi.is_pending(&f.config, 1));
}

#[test]
fn mask_bits_beyond_capable_vectors_are_read_only() {
    let mut f = fixture(2, true);
    f.set_mask(0xffff_ffff);
    assert_eq!(f.config.read_u32(f.at(MASK)), 0b11);
}

#[test]
fn shrinking_mme_while_enabled_masks_dropped_vectors() {
    let mut f = fixture(4, false);
    f.set_control(MSI_CTRL_ENABLE | 2 << 4);
    f.group.take_events();
    f.set_control(MSI_CTRL_ENABLE | 1 << 4);
    let events = f.group.take_events();
    assert!(events.contains(&MsiEvent::Update {
        vector: 3,
        msg: msg(0, 3),
        masked: true
    }));
    assert_eq!(f.group.route(1), Some((msg(0, 1), false)));
}

#[test]
fn writes_elsewhere_are_not_msi_changes() {
    let mut f = fixture(1, false);
    let _ = f.config.write_config_register(15, 0, &[5]);
    assert!(!f.msi.handle_config_write(&mut f.config, 15));
}
