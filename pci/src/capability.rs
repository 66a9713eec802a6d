//! Capability lists: the conventional list from the pointer at 0x34 through
//! 0x40..0x100, and the PCI Express extended list from 0x100 to 0x1000.

use crate::configuration::{PciConfiguration, STATUS_CAPABILITIES_LIST};

/// Byte offset of the capabilities pointer.
pub const CAPABILITY_POINTER_OFFSET: usize = 0x34;
/// First byte a capability may occupy.
pub const FIRST_CAPABILITY_OFFSET: usize = 0x40;
/// End of the conventional (256-byte) configuration space.
pub const CONVENTIONAL_CONFIG_END: usize = 0x100;
/// Where the extended capability list starts.
pub const FIRST_EXTENDED_CAPABILITY_OFFSET: usize = 0x100;
/// End of the PCI Express extended configuration space.
pub const EXTENDED_CONFIG_END: usize = 0x1000;

/// Capability ID of MSI.
pub const PCI_CAP_ID_MSI: u8 = 0x05;
/// Capability ID of vendor-specific capabilities (virtio uses these).
pub const PCI_CAP_ID_VENDOR: u8 = 0x09;
/// Capability ID of the PCI Express capability.
pub const PCI_CAP_ID_EXP: u8 = 0x10;
/// Capability ID of MSI-X.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;

/// The most capabilities a list walk follows, so a looping list ends.
const MAX_CAPABILITIES: usize = (CONVENTIONAL_CONFIG_END - FIRST_CAPABILITY_OFFSET) / 4;
/// The same for the extended list.
const MAX_EXTENDED_CAPABILITIES: usize =
    (EXTENDED_CONFIG_END - FIRST_EXTENDED_CAPABILITY_OFFSET) / 4;

/// A capability in the conventional list.
pub trait PciCapability {
    /// The capability ID (byte 0 of the capability).
    fn id(&self) -> u8;
    /// The capability's bytes after its ID and next pointer (from byte 2).
    fn bytes(&self) -> Vec<u8>;
    /// Guest-writable bits of the same bytes as [`PciCapability::bytes`];
    /// missing trailing bytes are read-only. Default: all read-only.
    fn writable_bits(&self) -> Vec<u8> {
        Vec::new()
    }
}

/// A capability in the PCI Express extended list.
pub trait PciExtendedCapability {
    /// The 16-bit extended capability ID.
    fn id(&self) -> u16;
    /// The capability version (4 bits).
    fn version(&self) -> u8;
    /// The bytes after the 4-byte header.
    fn bytes(&self) -> Vec<u8>;
    /// Guest-writable bits of the same bytes; missing trailing bytes are
    /// read-only. Default: all read-only.
    fn writable_bits(&self) -> Vec<u8> {
        Vec::new()
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error(
        "capability {id:#x} of {len} bytes does not fit at {offset:#x} (space ends at {end:#x})"
    )]
    NoSpace {
        id: u16,
        len: usize,
        offset: usize,
        end: usize,
    },
    #[error("capability {id:#x} declares {mask} writable-mask bytes for {len} bytes")]
    MaskTooLong { id: u16, mask: usize, len: usize },
    #[error("extended capability {id:#x} version {version} does not fit in 4 bits")]
    InvalidVersion { id: u16, version: u8 },
}

fn align4(offset: usize) -> usize {
    offset.div_ceil(4) * 4
}

impl PciConfiguration {
    /// Appends `cap` to the conventional list at the next free dword-aligned
    /// offset from 0x40; returns that offset.
    pub fn add_capability(&mut self, cap: &dyn PciCapability) -> Result<usize, CapabilityError> {
        let (id, body, mask) = (cap.id(), cap.bytes(), cap.writable_bits());
        let len = body.len() + 2;
        if mask.len() > body.len() {
            let (id, mask, len) = (u16::from(id), mask.len(), body.len());
            return Err(CapabilityError::MaskTooLong { id, mask, len });
        }
        let offset = match self.last_capability {
            Some((_, end)) => align4(end),
            None => FIRST_CAPABILITY_OFFSET,
        };
        if offset + len > CONVENTIONAL_CONFIG_END {
            return Err(CapabilityError::NoSpace {
                id: u16::from(id),
                len,
                offset,
                end: CONVENTIONAL_CONFIG_END,
            });
        }
        self.set_u8(offset, id);
        self.set_u8(offset + 1, 0);
        self.write_body(offset + 2, &body, &mask);
        match self.last_capability {
            Some((last, _)) => self.set_u8(last + 1, offset as u8),
            None => self.set_u8(CAPABILITY_POINTER_OFFSET, offset as u8),
        }
        self.last_capability = Some((offset, offset + len));
        self.set_status_bits(STATUS_CAPABILITIES_LIST, true);
        Ok(offset)
    }

    /// Appends `cap` to the extended list (the first one at 0x100); returns
    /// its offset.
    pub fn add_extended_capability(
        &mut self,
        cap: &dyn PciExtendedCapability,
    ) -> Result<usize, CapabilityError> {
        let (id, version, body, mask) = (cap.id(), cap.version(), cap.bytes(), cap.writable_bits());
        if version > 0xf {
            return Err(CapabilityError::InvalidVersion { id, version });
        }
        if mask.len() > body.len() {
            let (mask, len) = (mask.len(), body.len());
            return Err(CapabilityError::MaskTooLong { id, mask, len });
        }
        let len = body.len() + 4;
        let offset = match self.last_extended_capability {
            Some((_, end)) => align4(end),
            None => FIRST_EXTENDED_CAPABILITY_OFFSET,
        };
        if offset + len > EXTENDED_CONFIG_END {
            let end = EXTENDED_CONFIG_END;
            return Err(CapabilityError::NoSpace {
                id,
                len,
                offset,
                end,
            });
        }
        self.set_u32(offset, u32::from(version) << 16 | u32::from(id));
        self.write_body(offset + 4, &body, &mask);
        if let Some((last, _)) = self.last_extended_capability {
            let header = self.read_u32(last) & 0x000f_ffff;
            self.set_u32(last, header | (offset as u32) << 20);
        }
        self.last_extended_capability = Some((offset, offset + len));
        Ok(offset)
    }

    fn write_body(&mut self, start: usize, body: &[u8], mask: &[u8]) {
        for (i, byte) in body.iter().enumerate() {
            self.set_u8(start + i, *byte);
            self.set_writable_u8(start + i, mask.get(i).copied().unwrap_or(0));
        }
    }

    /// `(id, offset)` of each capability, walking the list the way a guest
    /// does: from the pointer at 0x34 through the next pointers.
    pub fn capabilities(&self) -> Vec<(u8, usize)> {
        let mut caps = Vec::new();
        if self.status() & STATUS_CAPABILITIES_LIST == 0 {
            return caps;
        }
        let mut offset = usize::from(self.read_u8(CAPABILITY_POINTER_OFFSET) & 0xfc);
        while offset >= FIRST_CAPABILITY_OFFSET && caps.len() < MAX_CAPABILITIES {
            caps.push((self.read_u8(offset), offset));
            offset = usize::from(self.read_u8(offset + 1) & 0xfc);
        }
        caps
    }

    /// `(id, version, offset)` of each extended capability from 0x100.
    pub fn extended_capabilities(&self) -> Vec<(u16, u8, usize)> {
        let mut caps = Vec::new();
        let mut offset = FIRST_EXTENDED_CAPABILITY_OFFSET;
        while caps.len() < MAX_EXTENDED_CAPABILITIES {
            let header = self.read_u32(offset);
            if header == 0 || header == 0xffff_ffff {
                break;
            }
            caps.push((header as u16, ((header >> 16) & 0xf) as u8, offset));
            offset = (header >> 20) as usize & 0xffc;
            if offset < FIRST_EXTENDED_CAPABILITY_OFFSET {
                break;
            }
        }
        caps
    }

    /// Offset of the first capability with `id` in the conventional list.
    pub fn find_capability(&self, id: u8) -> Option<usize> {
        self.capabilities()
            .into_iter()
            .find_map(|(cap, offset)| (cap == id).then_some(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::header;

    struct RawCap {
        id: u8,
        body: Vec<u8>,
        mask: Vec<u8>,
    }

    impl PciCapability for RawCap {
        fn id(&self) -> u8 {
            self.id
        }
        fn bytes(&self) -> Vec<u8> {
            self.body.clone()
        }
        fn writable_bits(&self) -> Vec<u8> {
            self.mask.clone()
        }
    }

    struct RawExtCap(u16, u8, Vec<u8>);

    impl PciExtendedCapability for RawExtCap {
        fn id(&self) -> u16 {
            self.0
        }
        fn version(&self) -> u8 {
            self.1
        }
        fn bytes(&self) -> Vec<u8> {
            self.2.clone()
        }
        fn writable_bits(&self) -> Vec<u8> {
            vec![0xff; self.2.len().min(2)]
        }
    }

    fn cap(id: u8, len: usize) -> RawCap {
        RawCap {
            id,
            body: (0..len).map(|i| i as u8).collect(),
            mask: Vec::new(),
        }
    }

    #[test]
    fn no_capabilities_means_no_list() {
        let config = PciConfiguration::new(&header());
        assert_eq!(config.status() & STATUS_CAPABILITIES_LIST, 0);
        assert_eq!(config.read_u8(CAPABILITY_POINTER_OFFSET), 0);
        assert!(config.capabilities().is_empty());
        assert!(config.extended_capabilities().is_empty());
    }

    #[test]
    fn capability_list_walks_from_0x34_through_next_pointers() {
        let mut config = PciConfiguration::new(&header());
        assert_eq!(config.add_capability(&cap(0x09, 3)), Ok(0x40));
        assert_eq!(config.add_capability(&cap(0x05, 22)), Ok(0x48));
        assert_eq!(config.add_capability(&cap(0x11, 10)), Ok(0x60));
        assert_ne!(config.status() & STATUS_CAPABILITIES_LIST, 0);
        assert_eq!(config.read_u8(0x34), 0x40);
        assert_eq!(config.read_u16(0x40), 0x4809, "id and next of the first");
        assert_eq!(config.read_u16(0x48), 0x6005);
        assert_eq!(config.read_u16(0x60), 0x0011, "last next pointer is 0");
        assert_eq!(config.read_u8(0x42), 0, "body starts at byte 2");
        assert_eq!(config.read_u8(0x44), 2);
        assert_eq!(
            config.capabilities(),
            vec![(0x09, 0x40), (0x05, 0x48), (0x11, 0x60)]
        );
        assert_eq!(config.find_capability(0x11), Some(0x60));
        assert_eq!(config.find_capability(0x10), None);
    }

    #[test]
    fn capability_bytes_are_read_only_unless_declared_writable() {
        let mut config = PciConfiguration::new(&header());
        let offset = config
            .add_capability(&RawCap {
                id: 0x09,
                body: vec![0; 6],
                mask: vec![0x0f, 0x00, 0xff],
            })
            .unwrap();
        let _ = config.write_config_register(offset / 4, 0, &[0xff; 4]);
        let _ = config.write_config_register(offset / 4 + 1, 0, &[0xff; 4]);
        assert_eq!(
            config.read_u32(offset),
            0x000f_0009,
            "id, next RO; byte 2 low nibble"
        );
        assert_eq!(config.read_u32(offset + 4), 0x0000_00ff);
    }

    #[test]
    fn capability_that_does_not_fit_is_rejected() {
        let mut config = PciConfiguration::new(&header());
        config.add_capability(&cap(0x09, 0xb0)).unwrap();
        let err = config.add_capability(&cap(0x05, 22)).unwrap_err();
        assert_eq!(
            err,
            CapabilityError::NoSpace {
                id: 5,
                len: 24,
                offset: 0xf4,
                end: 0x100
            }
        );
        assert_eq!(config.capabilities().len(), 1, "list unchanged");
        let mask_err = config.add_capability(&RawCap {
            id: 9,
            body: vec![0],
            mask: vec![0, 0],
        });
        assert!(matches!(mask_err, Err(CapabilityError::MaskTooLong { .. })));
    }

    #[test]
    fn looping_capability_list_walk_terminates() {
        let mut config = PciConfiguration::new(&header());
        config.add_capability(&cap(0x09, 2)).unwrap();
        config.set_u8(0x41, 0x40);
        assert_eq!(config.capabilities().len(), MAX_CAPABILITIES);
    }

    #[test]
    fn extended_capabilities_chain_from_0x100() {
        let mut config = PciConfiguration::new(&header());
        assert_eq!(
            config.add_extended_capability(&RawExtCap(0x1, 1, vec![0; 8])),
            Ok(0x100)
        );
        assert_eq!(
            config.add_extended_capability(&RawExtCap(0xb, 2, vec![7; 5])),
            Ok(0x10c)
        );
        assert_eq!(config.read_u32(0x100), 0x10c1_0001);
        assert_eq!(config.read_u32(0x10c), 0x0002_000b);
        assert_eq!(
            config.extended_capabilities(),
            vec![(1, 1, 0x100), (0xb, 2, 0x10c)]
        );
        let _ = config.write_config_register(0x110 / 4, 0, &[0; 4]);
        assert_eq!(
            config.read_u32(0x110),
            0x0707_0000,
            "first two body bytes writable"
        );
        let _ = config.write_config_register(0x10c / 4, 0, &[0; 4]);
        assert_eq!(config.read_u32(0x10c), 0x0002_000b, "header is read-only");
    }

    #[test]
    fn extended_capability_errors() {
        let mut config = PciConfiguration::new(&header());
        assert_eq!(
            config.add_extended_capability(&RawExtCap(0x1, 16, vec![])),
            Err(CapabilityError::InvalidVersion { id: 1, version: 16 })
        );
        config
            .add_extended_capability(&RawExtCap(0x1, 1, vec![0; 0xef0]))
            .unwrap();
        assert!(matches!(
            config.add_extended_capability(&RawExtCap(0x2, 1, vec![0; 16])),
            Err(CapabilityError::NoSpace { .. })
        ));
    }
}
