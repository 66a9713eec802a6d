//! virtio-console with a single port (no `MULTIPORT`): queue 0 (receiveq)
//! carries host input to the guest, queue 1 (transmitq) guest output to a
//! `Write` sink.
//!
//! Host input is pushed through a [`ConsoleInput`] handle (the VMM's stdin
//! loop calls [`ConsoleInput::send`]); it is buffered (up to
//! [`INPUT_CAPACITY`] bytes) until the driver posts receive buffers.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use log::warn;
use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
use vm_memory::{Bytes, GuestMemory, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::chain::{scatter, ChainBuffers};
use super::device::{
    ack_offered, read_config_bytes, ActivateContext, ActivateError, VirtioDevice, VirtioInterrupt,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use super::queue::{take_queues, DeviceQueue};
use super::worker::{BackendHandler, EventHandler, Lifecycle, Source};

/// Queue size offered for both queues.
pub const CONSOLE_QUEUE_SIZE: u16 = 256;
/// Host input buffered while the guest posts no receive buffers.
pub const INPUT_CAPACITY: usize = 64 * 1024;
const RX_QUEUE: usize = 0;
const TX_QUEUE: usize = 1;
const INPUT_TOKEN: u64 = 2;
/// Guest output is copied to the sink in pieces of this size.
const TX_CHUNK: usize = 16 * 1024;
const QUEUE_BUDGET: usize = 256;
const FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX | VIRTIO_F_RING_INDIRECT_DESC;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot create the console input event: {0}")]
    InputEvent(#[source] io::Error),
}

struct InputQueue {
    bytes: Mutex<VecDeque<u8>>,
    event: EventFd,
}

impl InputQueue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<u8>> {
        self.bytes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cloneable handle to feed host input to the guest.
#[derive(Clone)]
pub struct ConsoleInput(Arc<InputQueue>);

impl ConsoleInput {
    /// Queues `data` for the guest; returns how many bytes were accepted
    /// (fewer when [`INPUT_CAPACITY`] bytes are already waiting).
    pub fn send(&self, data: &[u8]) -> usize {
        let accepted = {
            let mut q = self.0.lock();
            let n = data.len().min(INPUT_CAPACITY - q.len());
            q.extend(&data[..n]);
            n
        };
        if accepted > 0 {
            if let Err(e) = self.0.event.write(1) {
                warn!("virtio-console: cannot signal input: {e}");
            }
        }
        accepted
    }

    /// Bytes waiting for receive buffers.
    pub fn pending(&self) -> usize {
        self.0.lock().len()
    }
}

/// What the console keeps across activations.
pub struct ConsoleBackend {
    sink: Box<dyn Write + Send>,
    input: Arc<InputQueue>,
}

struct ConsoleHandler {
    backend: ConsoleBackend,
    mem: GuestMemoryMmap,
    rx: Option<DeviceQueue>,
    tx: Option<DeviceQueue>,
    irq: Arc<dyn VirtioInterrupt>,
}

impl BackendHandler for ConsoleHandler {
    type Backend = ConsoleBackend;

    fn into_backend(self) -> ConsoleBackend {
        self.backend
    }

    /// Input is copied into a receive buffer as soon as it is taken: none is ever held.
    fn queue_positions(&self) -> Vec<crate::virtio::QueuePosition> {
        self.rx
            .iter()
            .chain(&self.tx)
            .map(|q| q.position(0))
            .collect()
    }
}

impl EventHandler for ConsoleHandler {
    fn handle_event(&mut self, token: u64, _events: EventSet) {
        match token {
            t if t == RX_QUEUE as u64 => {
                if let Some(q) = &self.rx {
                    q.ack_notification();
                }
                self.deliver_input();
            }
            t if t == TX_QUEUE as u64 => self.drain_output(),
            INPUT_TOKEN => {
                let _ = self.backend.input.event.read();
                self.deliver_input();
            }
            _ => {}
        }
    }
}

impl ConsoleHandler {
    fn drain_output(&mut self) {
        let Some(tx) = self.tx.as_mut() else { return };
        tx.ack_notification();
        let (mem, sink) = (&self.mem, &mut self.backend.sink);
        let done = tx.process(mem, QUEUE_BUDGET, |chain| {
            write_chain(mem, chain, sink);
            0
        });
        if let Err(e) = sink.flush() {
            warn!("virtio-console: flushing the output failed: {e}");
        }
        if done > 0 {
            tx.signal_used(mem, &self.irq);
        }
    }

    /// Moves buffered input into receive buffers while both are there.
    fn deliver_input(&mut self) {
        let Some(rx) = self.rx.as_mut() else { return };
        let mem = &self.mem;
        let mut used = 0;
        loop {
            let mut input = self.backend.input.lock();
            if input.is_empty() {
                break;
            }
            let Some(chain) = rx.pop(mem) else {
                drop(input);
                if rx.enable_notification(mem) {
                    continue;
                }
                break;
            };
            let head = chain.head_index();
            let len = fill_rx_chain(mem, chain, &mut input);
            rx.add_used(mem, head, len);
            used += 1;
        }
        if used > 0 {
            rx.signal_used(mem, &self.irq);
        }
    }
}

/// Copies a transmit chain's readable bytes to `sink`.
fn write_chain<M, I>(mem: &M, descs: I, sink: &mut dyn Write)
where
    M: GuestMemory + ?Sized,
    I: IntoIterator<Item = virtio_queue::desc::split::Descriptor>,
{
    let bufs = match ChainBuffers::parse(mem, descs) {
        Ok(b) => b,
        Err(e) => {
            warn!("virtio-console: dropping malformed chain: {e}");
            return;
        }
    };
    let mut chunk = vec![0u8; TX_CHUNK];
    for seg in &bufs.readable {
        let mut off = 0usize;
        while off < seg.len as usize {
            let n = TX_CHUNK.min(seg.len as usize - off);
            let addr = vm_memory::GuestAddress(seg.addr.0 + off as u64);
            if mem.read_slice(&mut chunk[..n], addr).is_err() {
                return;
            }
            if let Err(e) = sink.write_all(&chunk[..n]) {
                warn!("virtio-console: writing guest output failed: {e}");
                return;
            }
            off += n;
        }
    }
}

/// Moves as much of `input` as fits into a receive chain; returns the
/// bytes written.
fn fill_rx_chain<M, I>(mem: &M, descs: I, input: &mut VecDeque<u8>) -> u32
where
    M: GuestMemory + ?Sized,
    I: IntoIterator<Item = virtio_queue::desc::split::Descriptor>,
{
    let bufs = match ChainBuffers::parse(mem, descs) {
        Ok(b) => b,
        Err(e) => {
            warn!("virtio-console: dropping malformed receive chain: {e}");
            return 0;
        }
    };
    let n = bufs.writable_len().min(input.len() as u64) as usize;
    let data: Vec<u8> = input.iter().take(n).copied().collect();
    match scatter(mem, &bufs.writable, &data) {
        Ok(written) => {
            input.drain(..written);
            written as u32
        }
        Err(_) => 0,
    }
}

/// A single-port virtio-console.
pub struct Console {
    queue_sizes: [u16; 2],
    acked_features: u64,
    input: ConsoleInput,
    state: Lifecycle<ConsoleHandler>,
}

impl Console {
    /// Guest output goes to `sink`; host input comes through [`Self::input`].
    pub fn new(sink: Box<dyn Write + Send>) -> Result<Self, ConsoleError> {
        let event = EventFd::new(EFD_NONBLOCK).map_err(ConsoleError::InputEvent)?;
        let input = Arc::new(InputQueue {
            bytes: Mutex::new(VecDeque::new()),
            event,
        });
        Ok(Console {
            queue_sizes: [CONSOLE_QUEUE_SIZE; 2],
            acked_features: 0,
            input: ConsoleInput(input.clone()),
            state: Lifecycle::Ready(ConsoleBackend { sink, input }),
        })
    }

    /// The handle to send host input with.
    pub fn input(&self) -> ConsoleInput {
        self.input.clone()
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        FEATURES
    }

    fn ack_features(&mut self, value: u64) {
        self.acked_features = ack_offered("virtio-console", FEATURES, value);
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // cols, rows, max_nr_ports, emerg_wr: meaningless without SIZE,
        // MULTIPORT or EMERG_WRITE, so all zero.
        read_config_bytes(&[0u8; 12], offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        warn!(
            "virtio-console: ignoring a {}-byte config write at {offset}",
            data.len()
        );
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let backend = self.state.take_backend()?;
        let acked = self.acked_features;
        let mut slots = match take_queues(ctx.queues, &self.queue_sizes, &[], &ctx.mem, acked) {
            Ok(slots) => slots,
            Err(e) => {
                self.state.restore(backend);
                return Err(e);
            }
        };
        let tx = slots[TX_QUEUE].take();
        let rx = slots[RX_QUEUE].take();
        let mut sources = vec![Source::readable(&backend.input.event, INPUT_TOKEN)];
        sources.extend(
            rx.iter()
                .map(|q| Source::readable(q.notifier(), RX_QUEUE as u64)),
        );
        sources.extend(
            tx.iter()
                .map(|q| Source::readable(q.notifier(), TX_QUEUE as u64)),
        );
        let handler = ConsoleHandler {
            backend,
            mem: ctx.mem,
            rx,
            tx,
            irq: ctx.interrupt,
        };
        self.state
            .start("virtio-console", handler, &sources, ctx.worker_init)
    }

    fn pause(&mut self) -> Result<Option<Vec<crate::virtio::QueuePosition>>, ActivateError> {
        self.state.pause()
    }

    fn reset(&mut self) -> bool {
        self.acked_features = 0;
        self.state.reset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::device::{ActivatedQueue, VirtioInterruptType};
    use crate::virtio::test_utils::{
        guest_memory, wait_until, RecordingInterrupt, TestQueue, F_WRITE,
    };
    use crate::SharedBuffer;
    use vm_memory::GuestAddress;

    struct Harness {
        mem: GuestMemoryMmap,
        rx: TestQueue,
        tx: TestQueue,
        kicks: Vec<EventFd>,
        irq: Arc<RecordingInterrupt>,
        out: SharedBuffer,
        dev: Console,
    }

    fn start() -> Harness {
        let out = SharedBuffer::new();
        let mut dev = Console::new(Box::new(out.clone())).unwrap();
        dev.ack_features(FEATURES);
        let mem = guest_memory();
        let rx = TestQueue::at(&mem, 0, 16);
        let tx = TestQueue::at(&mem, 1, 16);
        let irq = Arc::new(RecordingInterrupt::default());
        let mut kicks = Vec::new();
        let mut queues = Vec::new();
        for (i, tq) in [&rx, &tx].into_iter().enumerate() {
            let notifier = EventFd::new(EFD_NONBLOCK).unwrap();
            kicks.push(notifier.try_clone().unwrap());
            queues.push(ActivatedQueue {
                index: i as u16,
                queue: tq.queue(),
                notifier,
            });
        }
        let ctx = ActivateContext {
            mem: mem.clone(),
            queues,
            interrupt: irq.clone(),
            worker_init: None,
        };
        dev.activate(ctx).unwrap();
        Harness {
            mem,
            rx,
            tx,
            kicks,
            irq,
            out,
            dev,
        }
    }

    #[test]
    fn guest_output_reaches_the_sink() {
        let mut h = start();
        h.mem
            .write_slice(b"hello ", GuestAddress(0x10_0000))
            .unwrap();
        h.mem
            .write_slice(b"world\n", GuestAddress(0x10_1000))
            .unwrap();
        h.tx.add_chain(&[(0x10_0000, 6, 0), (0x10_1000, 6, 0)]);
        h.kicks[TX_QUEUE].write(1).unwrap();
        assert!(wait_until(|| h.tx.used_idx() == 1));
        assert_eq!(h.out.contents(), b"hello world\n");
        assert_eq!(h.tx.used_elem(0), (0, 0));
        assert_eq!(h.irq.count(VirtioInterruptType::Queue(1)), 1);
    }

    #[test]
    fn host_input_waits_for_and_fills_receive_buffers() {
        let mut h = start();
        let input = h.dev.input();
        assert_eq!(input.send(b"abcdef"), 6);
        // No receive buffer yet: the input stays queued.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(input.pending(), 6);
        h.rx.add_chain(&[(0x20_0000, 4, F_WRITE)]);
        h.rx.add_chain(&[(0x20_1000, 64, F_WRITE)]);
        h.kicks[RX_QUEUE].write(1).unwrap();
        assert!(wait_until(|| h.rx.used_idx() == 2));
        assert_eq!(h.rx.used_elem(0), (0, 4));
        assert_eq!(h.rx.used_elem(1), (1, 2));
        let mut a = [0u8; 4];
        let mut b = [0u8; 2];
        h.mem.read_slice(&mut a, GuestAddress(0x20_0000)).unwrap();
        h.mem.read_slice(&mut b, GuestAddress(0x20_1000)).unwrap();
        assert_eq!((&a, &b), (b"abcd", b"ef"));
        assert_eq!(input.pending(), 0);
        // With a buffer posted, later input flows on its own.
        h.rx.add_chain(&[(0x20_2000, 64, F_WRITE)]);
        h.kicks[RX_QUEUE].write(1).unwrap();
        input.send(b"xyz");
        assert!(wait_until(|| h.rx.used_idx() == 3));
        assert_eq!(h.rx.used_elem(2).1, 3);
    }

    #[test]
    fn input_is_bounded() {
        let dev = Console::new(Box::new(io::sink())).unwrap();
        let input = dev.input();
        assert_eq!(input.send(&vec![0u8; INPUT_CAPACITY + 10]), INPUT_CAPACITY);
        assert_eq!(input.send(b"more"), 0);
    }

    #[test]
    fn malformed_transmit_chains_are_dropped() {
        let mut h = start();
        h.tx.add_chain(&[(u64::MAX - 8, 64, 0)]);
        h.mem.write_slice(b"ok", GuestAddress(0x10_0000)).unwrap();
        h.tx.add_chain(&[(0x10_0000, 2, 0)]);
        h.kicks[TX_QUEUE].write(1).unwrap();
        assert!(wait_until(|| h.tx.used_idx() == 2));
        assert_eq!(h.out.contents(), b"ok");
    }

    #[test]
    fn reset_keeps_the_sink_for_the_next_activation() {
        let mut h = start();
        assert!(h.dev.reset());
        assert_eq!(h.dev.device_type(), 3);
        assert_eq!(h.dev.queue_max_sizes().len(), 2);
        let mut cfg = [0xffu8; 4];
        h.dev.read_config(0, &mut cfg);
        assert_eq!(cfg, [0; 4]);
    }
}
