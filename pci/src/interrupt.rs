//! How MSI and MSI-X reach the VMM without this crate knowing KVM: the VMM
//! implements [`MsiInterruptGroup`] (one per device: a KVM GSI route and an
//! irqfd per vector), and the capability code keeps the routes current so
//! that an interrupt travels device → irqfd → guest with no userspace hop.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, MutexGuard};

/// The message a vector sends: a DWORD write of `data` to `address`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// A device's set of message-signalled interrupt vectors.
///
/// MSI/MSI-X code calls [`MsiInterruptGroup::update`] whenever a vector's
/// message or mask changes while the capability is enabled (and for every
/// vector just before [`MsiInterruptGroup::enable`]); it calls
/// [`MsiInterruptGroup::trigger`] only for unmasked vectors, keeping
/// pending bits itself for masked ones.
pub trait MsiInterruptGroup: Send + Sync {
    /// Routes `vector` to `msg`; a `masked` vector must not be delivered
    /// (the VMM may keep the route but detach the irqfd).
    fn update(&self, vector: u16, msg: MsiMessage, masked: bool) -> io::Result<()>;
    /// Delivers `vector` now.
    fn trigger(&self, vector: u16) -> io::Result<()>;
    /// The capability was enabled: start delivering.
    fn enable(&self) -> io::Result<()>;
    /// The capability was disabled: stop delivering.
    fn disable(&self) -> io::Result<()>;
    /// Whether an interrupt of the masked `vector` was raised and waits for the unmask
    /// (raised outside the table: a passed-through device or a device thread signalled the
    /// vector's eventfd). The PBA shows it.
    fn pending(&self, _vector: u16) -> bool {
        false
    }
}

/// One call recorded by [`RecordingMsiGroup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiEvent {
    Update {
        vector: u16,
        msg: MsiMessage,
        masked: bool,
    },
    Trigger(u16),
    Enable,
    Disable,
}

#[derive(Debug, Default)]
struct Recorded {
    events: Vec<MsiEvent>,
    routes: BTreeMap<u16, (MsiMessage, bool)>,
    enabled: bool,
    /// Vectors raised from outside the table while masked (see `raise_outside`).
    waiting: Vec<u16>,
}

/// An [`MsiInterruptGroup`] that records every call; for tests here and in
/// other crates.
#[derive(Debug, Default)]
pub struct RecordingMsiGroup {
    inner: Mutex<Recorded>,
}

impl RecordingMsiGroup {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A device signalled `vector` on its own (not through `trigger`): it waits while masked.
    pub fn raise_outside(&self, vector: u16) {
        self.lock().waiting.push(vector);
    }

    /// Every call so far, oldest first.
    pub fn events(&self) -> Vec<MsiEvent> {
        self.lock().events.clone()
    }

    /// Every call so far, forgetting them.
    pub fn take_events(&self) -> Vec<MsiEvent> {
        std::mem::take(&mut self.lock().events)
    }

    /// The vectors triggered so far, in order.
    pub fn triggered(&self) -> Vec<u16> {
        self.lock()
            .events
            .iter()
            .filter_map(|e| match e {
                MsiEvent::Trigger(v) => Some(*v),
                _ => None,
            })
            .collect()
    }

    /// The last route set for `vector`: message and masked flag.
    pub fn route(&self, vector: u16) -> Option<(MsiMessage, bool)> {
        self.lock().routes.get(&vector).copied()
    }

    /// Whether the last of enable/disable was enable.
    pub fn is_enabled(&self) -> bool {
        self.lock().enabled
    }
}

impl MsiInterruptGroup for RecordingMsiGroup {
    fn update(&self, vector: u16, msg: MsiMessage, masked: bool) -> io::Result<()> {
        let mut rec = self.lock();
        rec.events.push(MsiEvent::Update {
            vector,
            msg,
            masked,
        });
        rec.routes.insert(vector, (msg, masked));
        Ok(())
    }

    fn trigger(&self, vector: u16) -> io::Result<()> {
        self.lock().events.push(MsiEvent::Trigger(vector));
        Ok(())
    }

    fn pending(&self, vector: u16) -> bool {
        self.lock().waiting.contains(&vector)
    }

    fn enable(&self) -> io::Result<()> {
        let mut rec = self.lock();
        rec.events.push(MsiEvent::Enable);
        rec.enabled = true;
        Ok(())
    }

    fn disable(&self) -> io::Result<()> {
        let mut rec = self.lock();
        rec.events.push(MsiEvent::Disable);
        rec.enabled = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn recording_group_keeps_events_routes_and_enable_state() {
        let group = RecordingMsiGroup::new();
        let msg = MsiMessage {
            address: 0xfee0_0000,
            data: 0x41,
        };
        group.update(3, msg, false).unwrap();
        group.enable().unwrap();
        group.trigger(3).unwrap();
        assert!(group.is_enabled());
        assert_eq!(group.route(3), Some((msg, false)));
        assert_eq!(group.route(4), None);
        assert_eq!(group.triggered(), vec![3]);
        let events = group.take_events();
        assert_eq!(events.len(), 3);
        assert_eq!(events[1], MsiEvent::Enable);
        assert!(group.events().is_empty());
        group.disable().unwrap();
        assert!(!group.is_enabled());
    }

    #[test]
    fn group_is_usable_as_shared_trait_object() {
        let group = Arc::new(RecordingMsiGroup::new());
        let shared: Arc<dyn MsiInterruptGroup> = group.clone();
        shared.trigger(1).unwrap();
        assert_eq!(group.triggered(), vec![1]);
    }
}
