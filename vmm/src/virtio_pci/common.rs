//! The virtio-pci common configuration structure (virtio 1.2 section 4.1.4.3): feature
//! windows, device status, queue selection and per-queue state. Pure register logic, no
//! I/O: the transport reads the outcome (features acked, driver OK, reset) from the
//! returned [`StatusChange`].

/// Device status bits.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
pub const STATUS_DRIVER: u8 = 2;
pub const STATUS_DRIVER_OK: u8 = 4;
pub const STATUS_FEATURES_OK: u8 = 8;
pub const STATUS_NEEDS_RESET: u8 = 0x40;
pub const STATUS_FAILED: u8 = 0x80;
/// "No MSI-X vector".
pub const NO_VECTOR: u16 = 0xffff;
/// VIRTIO_F_VERSION_1: a modern device and driver.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Bytes of the structure we implement (up to queue_device).
pub const COMMON_CFG_LEN: u64 = 0x38;

/// One virtqueue as the driver configures it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueState {
    pub max_size: u16,
    pub size: u16,
    pub vector: u16,
    pub enabled: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

impl QueueState {
    fn new(max_size: u16) -> Self {
        QueueState {
            max_size,
            size: max_size,
            vector: NO_VECTOR,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// What a write to the status register asks of the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusChange {
    None,
    /// The driver wrote 0: reset the device and this state.
    Reset,
    /// FEATURES_OK was accepted: ack these features to the device.
    FeaturesOk(u64),
    /// DRIVER_OK: activate the device with the enabled queues.
    DriverOk,
}

/// The common configuration registers.
#[derive(Clone, Debug)]
pub struct CommonConfig {
    device_features: u64,
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    pub driver_features: u64,
    pub status: u8,
    pub config_vector: u16,
    pub queue_select: u16,
    pub queues: Vec<QueueState>,
    /// Moves whenever the device configuration changes under the driver (a disk resized), so
    /// a driver reading a multi-byte field across the change reads it again.
    pub config_generation: u8,
}

impl CommonConfig {
    pub fn new(device_features: u64, queue_max_sizes: &[u16]) -> Self {
        CommonConfig {
            device_features,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_vector: NO_VECTOR,
            queue_select: 0,
            config_generation: 0,
            queues: queue_max_sizes
                .iter()
                .map(|m| QueueState::new(*m))
                .collect(),
        }
    }

    /// Back to the power-on state (queue sizes return to their maxima).
    pub fn reset(&mut self) {
        *self = CommonConfig::new(
            self.device_features,
            &self.queues.iter().map(|q| q.max_size).collect::<Vec<_>>(),
        );
    }

    fn queue(&self) -> Option<&QueueState> {
        self.queues.get(usize::from(self.queue_select))
    }

    /// Queue fields may only change before DRIVER_OK (and on an existing queue).
    fn queue_mut(&mut self) -> Option<&mut QueueState> {
        if self.status & STATUS_DRIVER_OK != 0 {
            return None;
        }
        self.queues.get_mut(usize::from(self.queue_select))
    }

    /// Read `data.len()` bytes at `offset`; unknown offsets and odd sizes read zero.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        let v: u64 = match (offset, data.len()) {
            (0x00, 4) => u64::from(self.device_feature_select),
            (0x04, 4) => match self.device_feature_select {
                0 => self.device_features & 0xffff_ffff,
                1 => self.device_features >> 32,
                _ => 0,
            },
            (0x08, 4) => u64::from(self.driver_feature_select),
            (0x0c, 4) => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            (0x10, 2) => u64::from(self.config_vector),
            (0x12, 2) => self.queues.len() as u64,
            (0x14, 1) => u64::from(self.status),
            (0x15, 1) => u64::from(self.config_generation),
            (0x16, 2) => u64::from(self.queue_select),
            (0x18, 2) => self.queue().map_or(0, |q| u64::from(q.size)),
            (0x1a, 2) => self
                .queue()
                .map_or(u64::from(NO_VECTOR), |q| u64::from(q.vector)),
            (0x1c, 2) => self.queue().map_or(0, |q| u64::from(q.enabled)),
            (0x1e, 2) => u64::from(self.queue_select), // queue_notify_off = queue index
            (0x20, 4) | (0x20, 8) => self.queue().map_or(0, |q| q.desc),
            (0x24, 4) => self.queue().map_or(0, |q| q.desc >> 32),
            (0x28, 4) | (0x28, 8) => self.queue().map_or(0, |q| q.driver),
            (0x2c, 4) => self.queue().map_or(0, |q| q.driver >> 32),
            (0x30, 4) | (0x30, 8) => self.queue().map_or(0, |q| q.device),
            (0x34, 4) => self.queue().map_or(0, |q| q.device >> 32),
            _ => {
                log::debug!(
                    "virtio-pci: common config read at {offset:#x} len {}",
                    data.len()
                );
                0
            }
        };
        let bytes = v.to_le_bytes();
        let n = data.len().min(8);
        data[..n].copy_from_slice(&bytes[..n]);
        data[n..].fill(0);
    }

    /// Write `data` at `offset`. Read-only and unknown registers ignore writes.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> StatusChange {
        let mut b = [0u8; 8];
        let n = data.len().min(8);
        b[..n].copy_from_slice(&data[..n]);
        let v = u64::from_le_bytes(b);
        let lo = |old: u64, v: u64| (old & !0xffff_ffff) | (v & 0xffff_ffff);
        let hi = |old: u64, v: u64| (old & 0xffff_ffff) | (v << 32);
        match (offset, data.len()) {
            (0x00, 4) => self.device_feature_select = v as u32,
            (0x08, 4) => self.driver_feature_select = v as u32,
            (0x0c, 4) if self.status & STATUS_FEATURES_OK == 0 => {
                match self.driver_feature_select {
                    0 => self.driver_features = lo(self.driver_features, v),
                    1 => self.driver_features = hi(self.driver_features, v),
                    _ => {}
                }
            }
            (0x10, 2) => self.config_vector = v as u16,
            (0x14, 1) => return self.write_status(v as u8),
            (0x16, 2) => self.queue_select = v as u16,
            (0x18, 2) => {
                if let Some(q) = self.queue_mut() {
                    // A size must be a power of two no larger than the maximum (split rings).
                    let s = v as u16;
                    if s != 0 && s.is_power_of_two() && s <= q.max_size {
                        q.size = s;
                    }
                }
            }
            (0x1a, 2) => {
                if let Some(q) = self.queues.get_mut(usize::from(self.queue_select)) {
                    q.vector = v as u16;
                }
            }
            (0x1c, 2) => {
                if let Some(q) = self.queue_mut() {
                    q.enabled = v == 1;
                }
            }
            (0x20, 8) => self.queue_mut().into_iter().for_each(|q| q.desc = v),
            (0x20, 4) => self
                .queue_mut()
                .into_iter()
                .for_each(|q| q.desc = lo(q.desc, v)),
            (0x24, 4) => self
                .queue_mut()
                .into_iter()
                .for_each(|q| q.desc = hi(q.desc, v)),
            (0x28, 8) => self.queue_mut().into_iter().for_each(|q| q.driver = v),
            (0x28, 4) => self
                .queue_mut()
                .into_iter()
                .for_each(|q| q.driver = lo(q.driver, v)),
            (0x2c, 4) => self
                .queue_mut()
                .into_iter()
                .for_each(|q| q.driver = hi(q.driver, v)),
            (0x30, 8) => self.queue_mut().into_iter().for_each(|q| q.device = v),
            (0x30, 4) => self
                .queue_mut()
                .into_iter()
                .for_each(|q| q.device = lo(q.device, v)),
            (0x34, 4) => self
                .queue_mut()
                .into_iter()
                .for_each(|q| q.device = hi(q.device, v)),
            _ => log::debug!(
                "virtio-pci: ignored common config write at {offset:#x} len {}",
                data.len()
            ),
        }
        StatusChange::None
    }

    fn write_status(&mut self, new: u8) -> StatusChange {
        if new == 0 {
            return StatusChange::Reset;
        }
        let old = self.status;
        // The driver may only add bits (and FAILED); NEEDS_RESET is the device's.
        let mut status = (old | new) & !STATUS_NEEDS_RESET | (old & STATUS_NEEDS_RESET);
        let mut change = StatusChange::None;
        if new & STATUS_FEATURES_OK != 0 && old & STATUS_FEATURES_OK == 0 {
            let accepted = self.driver_features & self.device_features;
            if accepted & VIRTIO_F_VERSION_1 == 0 {
                // A legacy driver: refuse FEATURES_OK, the driver reads it back and gives up.
                status &= !STATUS_FEATURES_OK;
            } else {
                self.driver_features = accepted;
                change = StatusChange::FeaturesOk(accepted);
            }
        }
        if new & STATUS_DRIVER_OK != 0 && old & STATUS_DRIVER_OK == 0 {
            if status & STATUS_FEATURES_OK == 0 {
                status &= !STATUS_DRIVER_OK;
            } else {
                change = StatusChange::DriverOk;
            }
        }
        self.status = status;
        change
    }

    /// Mark the device broken (activation failed).
    pub fn set_needs_reset(&mut self) {
        self.status |= STATUS_NEEDS_RESET;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(c: &mut CommonConfig, off: u64, v: u64, len: usize) -> StatusChange {
        c.write(off, &v.to_le_bytes()[..len])
    }
    fn r(c: &CommonConfig, off: u64, len: usize) -> u64 {
        let mut d = [0u8; 8];
        c.read(off, &mut d[..len]);
        u64::from_le_bytes(d)
    }

    #[test]
    fn driver_negotiates_features_configures_a_queue_and_sets_driver_ok() {
        let features = VIRTIO_F_VERSION_1 | 0b101;
        let mut c = CommonConfig::new(features, &[256, 128]);
        assert_eq!(r(&c, 0x12, 2), 2);
        w(&mut c, 0x00, 1, 4);
        assert_eq!(r(&c, 0x04, 4), 1, "high word has VERSION_1");
        w(
            &mut c,
            0x14,
            u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER),
            1,
        );
        w(&mut c, 0x08, 0, 4);
        w(&mut c, 0x0c, 0b111, 4); // bit 1 not offered: dropped at FEATURES_OK
        w(&mut c, 0x08, 1, 4);
        w(&mut c, 0x0c, 1, 4);
        let ch = w(
            &mut c,
            0x14,
            u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK),
            1,
        );
        assert_eq!(ch, StatusChange::FeaturesOk(VIRTIO_F_VERSION_1 | 0b101));
        w(&mut c, 0x16, 1, 2);
        assert_eq!(r(&c, 0x18, 2), 128);
        w(&mut c, 0x18, 64, 2);
        w(&mut c, 0x1a, 3, 2);
        w(&mut c, 0x20, 0x1000, 4);
        w(&mut c, 0x24, 0x1, 4);
        w(&mut c, 0x28, 0x2000, 8);
        w(&mut c, 0x30, 0x3000, 8);
        w(&mut c, 0x1c, 1, 2);
        assert_eq!(r(&c, 0x1e, 2), 1, "notify offset is the queue index");
        let ch = w(&mut c, 0x14, 0x0f, 1);
        assert_eq!(ch, StatusChange::DriverOk);
        let q = &c.queues[1];
        assert_eq!(
            (q.size, q.vector, q.enabled, q.desc, q.driver, q.device),
            (64, 3, true, 0x1_0000_1000, 0x2000, 0x3000)
        );
        // After DRIVER_OK the queue's layout is frozen.
        w(&mut c, 0x20, 0xdead, 8);
        assert_eq!(c.queues[1].desc, 0x1_0000_1000);
    }

    #[test]
    fn a_driver_without_version_1_cannot_set_features_ok_or_driver_ok() {
        let mut c = CommonConfig::new(VIRTIO_F_VERSION_1, &[8]);
        assert_eq!(
            w(&mut c, 0x14, u64::from(STATUS_FEATURES_OK), 1),
            StatusChange::None
        );
        assert_eq!(r(&c, 0x14, 1) as u8 & STATUS_FEATURES_OK, 0);
        assert_eq!(
            w(&mut c, 0x14, u64::from(STATUS_DRIVER_OK), 1),
            StatusChange::None
        );
        assert_eq!(r(&c, 0x14, 1) as u8 & STATUS_DRIVER_OK, 0);
    }

    #[test]
    fn hostile_writes_are_ignored_and_never_panic() {
        let mut c = CommonConfig::new(VIRTIO_F_VERSION_1, &[16]);
        w(&mut c, 0x16, 7, 2); // a queue that does not exist
        w(&mut c, 0x18, 8, 2);
        w(&mut c, 0x20, 1, 8);
        assert_eq!(r(&c, 0x18, 2), 0);
        w(&mut c, 0x16, 0, 2);
        for bad in [0u64, 3, 17, 32, 0xffff] {
            w(&mut c, 0x18, bad, 2);
            assert_eq!(c.queues[0].size, 16, "size {bad} refused");
        }
        for off in 0..0x40 {
            for len in [1usize, 2, 3, 4, 8] {
                w(&mut c, off, u64::MAX, len);
                let mut d = [0u8; 8];
                c.read(off, &mut d[..len]);
            }
        }
        assert_eq!(w(&mut c, 0x14, 0, 1), StatusChange::Reset);
        c.reset();
        assert_eq!(c.status, 0);
        assert_eq!(c.queues[0].size, 16);
    }
}
