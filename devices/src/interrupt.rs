//! How devices raise an interrupt line (or signal an event such as a reset
//! request) without knowing how the VMM delivers it.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Something a device can pulse: an edge-triggered interrupt line (usually an
/// irqfd behind an `EventFd`) or an out-of-band event such as "reset".
pub trait Interrupt: Send + Sync {
    fn trigger(&self) -> io::Result<()>;
}

/// An [`Interrupt`] backed by an `EventFd`; triggering writes 1 to it, so it
/// can be registered as a KVM irqfd or polled by the VMM's event loop.
#[derive(Debug)]
pub struct EventFdInterrupt(pub EventFd);

impl EventFdInterrupt {
    /// A fresh non-blocking `EventFd`.
    pub fn new() -> io::Result<Self> {
        Ok(Self(EventFd::new(EFD_NONBLOCK)?))
    }

    /// The underlying `EventFd` (to register as an irqfd or poll on).
    pub fn eventfd(&self) -> &EventFd {
        &self.0
    }
}

impl From<EventFd> for EventFdInterrupt {
    fn from(evt: EventFd) -> Self {
        Self(evt)
    }
}

impl Interrupt for EventFdInterrupt {
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// An [`Interrupt`] that only counts how often it was triggered; meant for
/// tests here and in other crates.
#[derive(Debug, Default)]
pub struct CountingInterrupt(pub AtomicU64);

impl CountingInterrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times `trigger` has been called.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Interrupt for CountingInterrupt {
    fn trigger(&self) -> io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counting_interrupt_counts_each_trigger() {
        let irq = CountingInterrupt::new();
        assert_eq!(irq.count(), 0);
        irq.trigger().unwrap();
        irq.trigger().unwrap();
        assert_eq!(irq.count(), 2);
    }

    #[test]
    fn eventfd_interrupt_writes_one_per_trigger() {
        let irq = EventFdInterrupt::new().unwrap();
        irq.trigger().unwrap();
        irq.trigger().unwrap();
        assert_eq!(irq.eventfd().read().unwrap(), 2);
    }

    #[test]
    fn interrupts_are_usable_as_shared_trait_objects() {
        let counting = Arc::new(CountingInterrupt::new());
        let dyn_irq: Arc<dyn Interrupt> = counting.clone();
        dyn_irq.trigger().unwrap();
        assert_eq!(counting.count(), 1);
    }
}
