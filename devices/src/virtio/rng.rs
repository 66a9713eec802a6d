//! virtio-rng: fills the driver's device-writable buffers with bytes read
//! from an entropy file (`/dev/urandom` by default).

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use log::warn;
use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use vm_memory::{GuestMemory, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use super::chain::{scatter, ChainBuffers};
use super::device::{
    ack_offered, ActivateContext, ActivateError, VirtioDevice, VirtioInterrupt,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use super::queue::{take_queues, DeviceQueue};
use super::worker::{BackendHandler, EventHandler, Lifecycle, Source};

/// Queue size offered.
pub const RNG_QUEUE_SIZE: u16 = 256;
/// At most this many bytes are handed out per request, whatever buffer
/// sizes the driver posts.
pub const MAX_BYTES_PER_REQUEST: usize = 64 * 1024;
/// Chains handled before the worker looks at other events.
const QUEUE_BUDGET: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RngConfig {
    /// Where entropy is read from.
    pub source: PathBuf,
    /// The PCI segment the device goes on (0 unless the VM has more: `--platform
    /// num_pci_segments`).
    pub pci_segment: u16,
    /// The slot on the segment's bus 0 (`pci_device_id`, 1 to 31); `None`: the lowest free one.
    pub pci_device_id: Option<u8>,
}

impl Default for RngConfig {
    fn default() -> Self {
        RngConfig {
            source: PathBuf::from("/dev/urandom"),
            pci_segment: 0,
            pci_device_id: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RngError {
    #[error("cannot open the entropy source {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
}

/// Fills one chain; returns the bytes written into it.
fn fill_chain<M, I, R>(mem: &M, descs: I, source: &mut R, buf: &mut [u8]) -> u32
where
    M: GuestMemory + ?Sized,
    I: IntoIterator<Item = virtio_queue::desc::split::Descriptor>,
    R: Read,
{
    let bufs = match ChainBuffers::parse(mem, descs) {
        Ok(b) => b,
        Err(e) => {
            warn!("virtio-rng: dropping malformed chain: {e}");
            return 0;
        }
    };
    let want = bufs.writable_len().min(buf.len() as u64) as usize;
    let got = match read_up_to(source, &mut buf[..want]) {
        Ok(n) => n,
        Err(e) => {
            warn!("virtio-rng: reading the entropy source failed: {e}");
            return 0;
        }
    };
    scatter(mem, &bufs.writable, &buf[..got]).map_or(0, |n| n as u32)
}

/// Reads until `buf` is full, the source ends, or it fails.
fn read_up_to<R: Read>(source: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match source.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if done > 0 => {
                warn!("virtio-rng: short read: {e}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

struct RngHandler {
    source: File,
    mem: GuestMemoryMmap,
    queue: DeviceQueue,
    irq: Arc<dyn VirtioInterrupt>,
    buf: Vec<u8>,
}

impl BackendHandler for RngHandler {
    type Backend = File;

    fn into_backend(self) -> File {
        self.source
    }

    fn queue_positions(&self) -> Vec<crate::virtio::QueuePosition> {
        vec![self.queue.position(0)]
    }
}

impl EventHandler for RngHandler {
    fn handle_event(&mut self, _token: u64, _events: EventSet) {
        self.queue.ack_notification();
        let (mem, source, buf) = (&self.mem, &mut self.source, &mut self.buf);
        let done = self.queue.process(mem, QUEUE_BUDGET, |chain| {
            fill_chain(mem, chain, source, buf)
        });
        if done > 0 {
            self.queue.signal_used(mem, &self.irq);
        }
    }
}

/// A virtio-rng device.
pub struct Rng {
    queue_sizes: [u16; 1],
    acked_features: u64,
    state: Lifecycle<RngHandler>,
}

const FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX | VIRTIO_F_RING_INDIRECT_DESC;

impl Rng {
    pub fn new(cfg: &RngConfig) -> Result<Self, RngError> {
        let source = File::open(&cfg.source).map_err(|source| RngError::Open {
            path: cfg.source.clone(),
            source,
        })?;
        Ok(Rng {
            queue_sizes: [RNG_QUEUE_SIZE],
            acked_features: 0,
            state: Lifecycle::Ready(source),
        })
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        FEATURES
    }

    fn ack_features(&mut self, value: u64) {
        self.acked_features = ack_offered("virtio-rng", FEATURES, value);
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // virtio-rng has no configuration space.
        data.fill(0);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        warn!(
            "virtio-rng: ignoring a {}-byte config write at {offset}",
            data.len()
        );
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let source = self.state.take_backend()?;
        let acked = self.acked_features;
        let slots = match take_queues(ctx.queues, &self.queue_sizes, &[0], &ctx.mem, acked) {
            Ok(slots) => slots,
            Err(e) => {
                self.state.restore(source);
                return Err(e);
            }
        };
        let Some(queue) = slots.into_iter().flatten().next() else {
            self.state.restore(source);
            return Err(ActivateError::MissingQueue(0));
        };
        let sources = [Source::readable(queue.notifier(), 0)];
        let handler = RngHandler {
            source,
            mem: ctx.mem,
            queue,
            irq: ctx.interrupt,
            buf: vec![0u8; MAX_BYTES_PER_REQUEST],
        };
        self.state
            .start("virtio-rng", handler, &sources, ctx.worker_init)
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
    use std::os::unix::fs::FileExt;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
    use vmm_sys_util::tempfile::TempFile;

    #[test]
    fn fill_chain_fills_every_writable_buffer() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        tq.add_chain(&[(0x10_0000, 3, F_WRITE), (0x10_1000, 5, F_WRITE)]);
        let mut source: &[u8] = b"abcdefghijklmnop";
        let mut buf = vec![0u8; 64];
        assert_eq!(fill_chain(&mem, tq.pop(&mem), &mut source, &mut buf), 8);
        let mut a = [0u8; 3];
        let mut b = [0u8; 5];
        mem.read_slice(&mut a, GuestAddress(0x10_0000)).unwrap();
        mem.read_slice(&mut b, GuestAddress(0x10_1000)).unwrap();
        assert_eq!((&a, &b), (b"abc", b"defgh"));
    }

    #[test]
    fn fill_chain_caps_huge_requests_and_handles_short_sources() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        tq.add_chain(&[(0x10_0000, 0x20_0000, F_WRITE)]);
        let mut source = std::io::repeat(7);
        let mut buf = vec![0u8; 16];
        assert_eq!(fill_chain(&mem, tq.pop(&mem), &mut source, &mut buf), 16);
        tq.add_chain(&[(0x10_0000, 100, F_WRITE)]);
        let mut short: &[u8] = b"xy";
        assert_eq!(fill_chain(&mem, tq.pop(&mem), &mut short, &mut buf), 2);
        // Read-only buffers get nothing; a bad chain is dropped.
        tq.add_chain(&[(0x10_0000, 100, 0)]);
        assert_eq!(fill_chain(&mem, tq.pop(&mem), &mut source, &mut buf), 0);
        tq.add_chain(&[(u64::MAX - 10, 100, F_WRITE)]);
        assert_eq!(fill_chain(&mem, tq.pop(&mem), &mut source, &mut buf), 0);
    }

    #[test]
    fn the_device_serves_entropy_from_its_source_file() {
        let tmp = TempFile::new().unwrap();
        tmp.as_file().write_all_at(&[0x42; 4096], 0).unwrap();
        let mut dev = Rng::new(&RngConfig {
            source: tmp.as_path().to_path_buf(),
            pci_segment: 0,
            pci_device_id: None,
        })
        .unwrap();
        assert_eq!(dev.device_type(), 4);
        assert_ne!(dev.features() & VIRTIO_F_VERSION_1, 0);
        dev.ack_features(dev.features());
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 16);
        let notifier = EventFd::new(EFD_NONBLOCK).unwrap();
        let kick = notifier.try_clone().unwrap();
        let irq = Arc::new(RecordingInterrupt::default());
        let ctx = ActivateContext {
            mem: mem.clone(),
            queues: vec![ActivatedQueue {
                index: 0,
                queue: tq.queue(),
                notifier,
            }],
            interrupt: irq.clone(),
            worker_init: None,
        };
        dev.activate(ctx).unwrap();
        tq.add_chain(&[(0x10_0000, 32, F_WRITE)]);
        kick.write(1).unwrap();
        assert!(wait_until(|| tq.used_idx() == 1));
        assert_eq!(tq.used_elem(0), (0, 32));
        let mut got = [0u8; 32];
        mem.read_slice(&mut got, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(got, [0x42; 32]);
        assert_eq!(irq.count(VirtioInterruptType::Queue(0)), 1);
        assert!(dev.reset());
    }

    #[test]
    fn a_failing_worker_init_fails_activation_but_keeps_the_device() {
        let mut dev = Rng::new(&RngConfig::default()).unwrap();
        let mem = guest_memory();
        let tq = TestQueue::new(&mem, 16);
        let ctx = |init: Option<crate::virtio::WorkerInit>| ActivateContext {
            mem: mem.clone(),
            queues: vec![ActivatedQueue {
                index: 0,
                queue: tq.queue(),
                notifier: EventFd::new(EFD_NONBLOCK).unwrap(),
            }],
            interrupt: Arc::new(RecordingInterrupt::default()),
            worker_init: init,
        };
        let failing: crate::virtio::WorkerInit =
            Arc::new(|_: &str| Err(io::Error::from_raw_os_error(libc::EPERM)));
        let err = dev.activate(ctx(Some(failing))).unwrap_err();
        assert!(matches!(err, ActivateError::Worker(_)));
        dev.activate(ctx(None)).unwrap();
        assert!(dev.reset());
    }

    #[test]
    fn the_default_source_is_urandom_and_missing_sources_are_named() {
        assert_eq!(RngConfig::default().source, PathBuf::from("/dev/urandom"));
        let err = Rng::new(&RngConfig {
            source: PathBuf::from("/nonexistent/entropy"),
            pci_segment: 0,
            pci_device_id: None,
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("/nonexistent/entropy"));
    }
}
