//! A queue as a device worker sees it: the `virtio_queue::Queue`, its
//! notification `EventFd`, and the guest-facing protocol around them
//! (popping chains, completing them, notification suppression, interrupts),
//! with a hostile driver in mind.
//!
//! `virtio_queue::Queue` itself rejects an `avail.idx` that runs more than
//! the queue size ahead of what the device consumed (`InvalidAvailRingIndex`)
//! and a used-ring head index beyond the queue size. A queue that hits the
//! former is marked broken here and ignored until the device is reset, so a
//! bad index cannot make the worker spin.

use std::sync::Arc;

use log::{error, warn};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::device::{
    ActivateError, ActivatedQueue, QueuePosition, VirtioInterrupt, VirtioInterruptType,
    VIRTIO_F_RING_EVENT_IDX,
};

/// A chain borrowed from the guest memory the worker holds.
pub(crate) type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// Where a queue's rings are in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rings {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

/// A queue owned by a device worker.
#[derive(Debug)]
pub(crate) struct DeviceQueue {
    pub index: u16,
    queue: Queue,
    notifier: EventFd,
    broken: bool,
}

impl DeviceQueue {
    pub fn new(activated: ActivatedQueue, event_idx: bool) -> Self {
        let mut queue = activated.queue;
        queue.set_event_idx(event_idx);
        DeviceQueue {
            index: activated.index,
            queue,
            notifier: activated.notifier,
            broken: false,
        }
    }

    /// The queue size the driver configured.
    pub fn size(&self) -> u16 {
        self.queue.size()
    }

    /// Where this queue stands, with the last `held` chains taken from the ring but not
    /// completed given back (they are taken again from the same ring entries).
    pub fn position(&self, held: u16) -> QueuePosition {
        QueuePosition {
            index: self.index,
            next_avail: self.queue.next_avail().wrapping_sub(held),
            next_used: self.queue.next_used(),
        }
    }

    /// The notification `EventFd` (to register with the worker's epoll).
    pub fn notifier(&self) -> &EventFd {
        &self.notifier
    }

    /// Clears a pending driver notification.
    pub fn ack_notification(&self) {
        // EAGAIN just means the counter was already 0 (non-blocking fd).
        let _ = self.notifier.read();
    }

    /// Makes the worker look at this queue again soon (used when a pass
    /// stopped early to let the worker check for a stop request).
    pub fn kick_self(&self) {
        if let Err(e) = self.notifier.write(1) {
            error!("queue {}: cannot re-arm the notifier: {e}", self.index);
        }
    }

    /// The next available chain, or `None` when the ring is empty or broken.
    pub fn pop<'a>(&mut self, mem: &'a GuestMemoryMmap) -> Option<Chain<'a>> {
        if self.broken {
            return None;
        }
        match self.queue.iter(mem) {
            Ok(mut iter) => iter.next(),
            Err(e) => {
                error!(
                    "queue {}: {e}; ignoring the queue until the device is reset",
                    self.index
                );
                self.broken = true;
                None
            }
        }
    }

    /// Returns a chain to the driver with `len` bytes written into it.
    pub fn add_used(&mut self, mem: &GuestMemoryMmap, head: u16, len: u32) {
        if let Err(e) = self.queue.add_used(mem, head, len) {
            warn!("queue {}: cannot complete chain {head}: {e}", self.index);
        }
    }

    /// Re-enables driver notifications; `true` when chains arrived in the
    /// meantime (so the caller should keep processing).
    pub fn enable_notification(&mut self, mem: &GuestMemoryMmap) -> bool {
        if self.broken {
            return false;
        }
        match self.queue.enable_notification(mem) {
            Ok(more) => more,
            Err(e) => {
                warn!("queue {}: cannot enable notifications: {e}", self.index);
                false
            }
        }
    }

    /// Suppresses driver notifications while the device is busy anyway.
    pub fn disable_notification(&mut self, mem: &GuestMemoryMmap) {
        if let Err(e) = self.queue.disable_notification(mem) {
            warn!("queue {}: cannot disable notifications: {e}", self.index);
        }
    }

    /// Interrupts the driver if it asked to be told about new used entries.
    pub fn signal_used(&mut self, mem: &GuestMemoryMmap, irq: &Arc<dyn VirtioInterrupt>) {
        let needed = self.queue.needs_notification(mem).unwrap_or_else(|e| {
            warn!("queue {}: cannot read used_event: {e}", self.index);
            true
        });
        if needed {
            if let Err(e) = irq.trigger(VirtioInterruptType::Queue(self.index)) {
                error!("queue {}: cannot raise the interrupt: {e}", self.index);
            }
        }
    }

    /// The guest addresses of the descriptor table, available ring and used ring (a
    /// vhost-user backend is given them to serve the queue itself).
    pub fn rings(&self) -> Rings {
        Rings {
            desc: self.queue.desc_table(),
            avail: self.queue.avail_ring(),
            used: self.queue.used_ring(),
        }
    }

    /// Takes the queue back from a backend that served it and is gone: the next chain to
    /// take and the next used entry are where the used ring's index stands (what the backend
    /// completed, in order). A used index that cannot be read breaks the queue.
    pub fn resume_at_used(&mut self, mem: &GuestMemoryMmap) {
        match self
            .queue
            .used_idx(mem, std::sync::atomic::Ordering::Acquire)
        {
            Ok(idx) => {
                self.queue.set_next_avail(idx.0);
                self.queue.set_next_used(idx.0);
            }
            Err(e) => {
                error!("queue {}: cannot read the used index: {e}", self.index);
                self.broken = true;
            }
        }
    }

    /// Pops every available chain and completes it with the length `f`
    /// returns, until the ring stays empty with notifications re-enabled.
    /// At most `budget` chains are handled per call; past that the queue
    /// re-kicks itself so the worker can look at its other events (a stop
    /// request) first. Returns how many chains were completed.
    pub fn process<F>(&mut self, mem: &GuestMemoryMmap, budget: usize, mut f: F) -> usize
    where
        F: FnMut(Chain<'_>) -> u32,
    {
        let mut done = 0;
        loop {
            self.disable_notification(mem);
            while let Some(chain) = self.pop(mem) {
                let head = chain.head_index();
                let len = f(chain);
                self.add_used(mem, head, len);
                done += 1;
                if done >= budget {
                    self.kick_self();
                    return done;
                }
            }
            if !self.enable_notification(mem) {
                return done;
            }
        }
    }
}

/// Checks the queues a transport handed over and places them by index.
/// `required` lists the indices the device cannot work without.
pub(crate) fn take_queues(
    queues: Vec<ActivatedQueue>,
    max_sizes: &[u16],
    required: &[u16],
    mem: &GuestMemoryMmap,
    acked_features: u64,
) -> Result<Vec<Option<DeviceQueue>>, ActivateError> {
    let event_idx = acked_features & VIRTIO_F_RING_EVENT_IDX != 0;
    let mut slots: Vec<Option<DeviceQueue>> = max_sizes.iter().map(|_| None).collect();
    for q in queues {
        let i = usize::from(q.index);
        let max = *max_sizes.get(i).ok_or(ActivateError::UnknownQueue {
            index: q.index,
            count: max_sizes.len(),
        })?;
        if slots[i].is_some() {
            return Err(ActivateError::DuplicateQueue(q.index));
        }
        let size = q.queue.size();
        if size == 0 || size > max || !size.is_power_of_two() || !q.queue.is_valid(mem) {
            return Err(ActivateError::InvalidQueue(q.index));
        }
        slots[i] = Some(DeviceQueue::new(q, event_idx));
    }
    for &r in required {
        if slots.get(usize::from(r)).is_none_or(|s| s.is_none()) {
            return Err(ActivateError::MissingQueue(r));
        }
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{guest_memory, RecordingInterrupt, TestQueue};

    fn activated(tq: &TestQueue, index: u16) -> ActivatedQueue {
        ActivatedQueue {
            index,
            queue: tq.queue(),
            notifier: EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap(),
        }
    }

    #[test]
    fn process_completes_every_chain_and_signals() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        for _ in 0..3 {
            tq.add_chain(&[(0x10_0000, 4, 0)]);
        }
        let mut q = DeviceQueue::new(activated(&tq, 0), false);
        let n = q.process(&mem, 100, |_| 7);
        assert_eq!(n, 3);
        assert_eq!(tq.used_idx(), 3);
        assert_eq!(tq.used_elem(2), (2, 7));
        let irq: Arc<dyn VirtioInterrupt> = Arc::new(RecordingInterrupt::default());
        q.signal_used(&mem, &irq);
    }

    #[test]
    fn process_stops_at_the_budget_and_rekicks_itself() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        for _ in 0..5 {
            tq.add_chain(&[(0x10_0000, 4, 0)]);
        }
        let mut q = DeviceQueue::new(activated(&tq, 0), false);
        assert_eq!(q.process(&mem, 2, |_| 0), 2);
        assert_eq!(q.notifier().read().unwrap(), 1);
        assert_eq!(q.process(&mem, 100, |_| 0), 3);
    }

    #[test]
    fn an_avail_index_too_far_ahead_breaks_the_queue_without_spinning() {
        let mem = guest_memory();
        let tq = TestQueue::new(&mem, 8);
        tq.set_avail_idx(1000);
        let mut q = DeviceQueue::new(activated(&tq, 0), false);
        assert_eq!(q.process(&mem, 100, |_| 0), 0);
        assert!(q.pop(&mem).is_none());
        assert!(!q.enable_notification(&mem));
    }

    #[test]
    fn an_out_of_range_head_is_not_completed() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        tq.publish(42);
        tq.add_chain(&[(0x10_0000, 4, 0)]);
        let mut q = DeviceQueue::new(activated(&tq, 0), false);
        assert_eq!(q.process(&mem, 100, |_| 1), 2);
        // Only the valid chain made it to the used ring.
        assert_eq!(tq.used_idx(), 1);
        assert_eq!(tq.used_elem(0).0, 0);
    }

    #[test]
    fn take_queues_checks_indices_sizes_and_required_queues() {
        let mem = guest_memory();
        let tq = TestQueue::new(&mem, 8);
        let slots = take_queues(vec![activated(&tq, 1)], &[8, 8], &[1], &mem, 0).unwrap();
        assert!(slots[0].is_none() && slots[1].is_some());
        let err = take_queues(vec![activated(&tq, 2)], &[8, 8], &[], &mem, 0).unwrap_err();
        assert!(matches!(err, ActivateError::UnknownQueue { index: 2, .. }));
        let err = take_queues(vec![activated(&tq, 0)], &[4], &[], &mem, 0).unwrap_err();
        assert!(matches!(err, ActivateError::InvalidQueue(0)));
        let err = take_queues(vec![activated(&tq, 0)], &[8, 8], &[1], &mem, 0).unwrap_err();
        assert!(matches!(err, ActivateError::MissingQueue(1)));
        let two = vec![activated(&tq, 0), activated(&tq, 0)];
        let err = take_queues(two, &[8], &[], &mem, 0).unwrap_err();
        assert!(matches!(err, ActivateError::DuplicateQueue(0)));
    }

    #[test]
    fn take_queues_rejects_rings_outside_guest_memory() {
        let mem = guest_memory();
        let tq = TestQueue::new(&mem, 8);
        let mut aq = activated(&tq, 0);
        aq.queue
            .set_used_ring_address(Some(0xffff_0000), Some(0x10));
        let err = take_queues(vec![aq], &[8], &[], &mem, 0).unwrap_err();
        assert!(matches!(err, ActivateError::InvalidQueue(0)));
    }
}
