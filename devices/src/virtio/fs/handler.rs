//! The virtio-fs worker. While the backend serves the rings it only turns the backend's
//! "call" eventfds into the queues' interrupts. When the backend hangs up (killed, crashed)
//! it takes the rings over: every request the guest has made that was not answered, and
//! every one it makes later, is completed with a FUSE reply carrying `-ENOTCONN`, so the
//! guest's file operations fail ("Transport endpoint is not connected") instead of hanging,
//! and the VM carries on. (With a backend that completes requests in order, as virtiofsd's
//! queue threads do, the requests it had taken but not answered are the ones past the used
//! index, and those are the ones answered here.)

use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use log::error;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::frontend::Session;
use crate::virtio::chain::{gather, scatter, ChainBuffers};
use crate::virtio::device::{QueuePosition, VirtioInterrupt, VirtioInterruptType};
use crate::virtio::queue::DeviceQueue;
use crate::virtio::worker::{BackendHandler, EventHandler, Source};

/// Tokens: `0..n` the call eventfd of the n-th started queue; these two for the socket and
/// the inner epoll of the queues' notifiers (used once the backend is gone).
const SOCKET_TOKEN: u64 = 1 << 32;
const TAKEOVER_TOKEN: u64 = (1 << 32) + 1;
/// `struct fuse_in_header` is 40 bytes, `struct fuse_out_header` 16.
const FUSE_IN_HEADER: usize = 40;
const FUSE_OUT_HEADER: usize = 16;
/// Chains answered per wake-up before the worker looks at its other events.
const BUDGET: usize = 256;

/// What the device keeps between activations.
pub(crate) struct FsBackend {
    pub session: Session,
    pub tag: String,
}

pub(crate) struct FsHandler {
    backend: FsBackend,
    mem: GuestMemoryMmap,
    queues: Vec<DeviceQueue>,
    calls: Vec<EventFd>,
    interrupt: Arc<dyn VirtioInterrupt>,
    /// The queues' notifiers, watched only after the backend is gone.
    takeover: Epoll,
    /// Requests answered with ENOTCONN since the backend went away.
    failed: u64,
}

type NewError = Box<(FsBackend, io::Error)>;

impl FsHandler {
    pub fn new(
        backend: FsBackend,
        mem: GuestMemoryMmap,
        queues: Vec<DeviceQueue>,
        calls: Vec<EventFd>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<Self, NewError> {
        let takeover = match Epoll::new() {
            Ok(e) => e,
            Err(e) => return Err(Box::new((backend, e))),
        };
        Ok(FsHandler {
            backend,
            mem,
            queues,
            calls,
            interrupt,
            takeover,
            failed: 0,
        })
    }

    /// What the worker waits on: the call eventfds, the socket hanging up, the inner epoll.
    pub fn sources(&self) -> Vec<Source> {
        let mut s: Vec<Source> = self
            .calls
            .iter()
            .enumerate()
            .map(|(i, c)| Source::readable(c, i as u64))
            .collect();
        s.push(Source {
            fd: self.backend.session.socket_fd(),
            token: SOCKET_TOKEN,
            // Not IN: the socket carries replies to requests the device sends while the
            // worker is stopped; only the peer hanging up matters here.
            events: EventSet::READ_HANG_UP,
        });
        s.push(Source::readable(&self.takeover, TAKEOVER_TOKEN));
        s
    }

    /// The backend is gone: answer what it left unanswered and watch the notifiers.
    fn take_over(&mut self) {
        if self.backend.session.is_gone() {
            return;
        }
        self.backend.session.mark_gone();
        error!(
            "virtio-fs {:?}: the vhost-user backend at {} hung up; the guest's file operations \
             on this tag now fail (ENOTCONN) until the VM is restarted with a backend",
            self.backend.tag,
            self.backend.session.path().display()
        );
        for (i, q) in self.queues.iter_mut().enumerate() {
            q.resume_at_used(&self.mem);
            let ev = EpollEvent::new(EventSet::IN, i as u64);
            if let Err(e) = self
                .takeover
                .ctl(ControlOperation::Add, q.notifier().as_raw_fd(), ev)
            {
                error!("virtio-fs: cannot watch queue {}: {e}", q.index);
            }
        }
        for i in 0..self.queues.len() {
            self.fail_requests(i);
        }
    }

    /// Completes every available request of queue `i` with `-ENOTCONN`.
    fn fail_requests(&mut self, i: usize) {
        let mem = &self.mem;
        let q = &mut self.queues[i];
        let n = q.process(mem, BUDGET, |chain| answer_enotconn(mem, chain));
        self.failed += n as u64;
        if n > 0 {
            q.signal_used(mem, &self.interrupt);
        }
    }
}

/// Writes a FUSE reply header with `-ENOTCONN` for the request in `chain`; the length used.
fn answer_enotconn(mem: &GuestMemoryMmap, chain: crate::virtio::queue::Chain<'_>) -> u32 {
    let Ok(bufs) = ChainBuffers::parse(mem, chain) else {
        return 0;
    };
    let mut hdr = [0u8; FUSE_IN_HEADER];
    if gather(mem, &bufs.readable, &mut hdr).ok() != Some(FUSE_IN_HEADER) {
        return 0;
    }
    // FORGET and BATCH_FORGET have no reply buffer: nothing to say.
    if bufs.writable_len() < FUSE_OUT_HEADER as u64 {
        return 0;
    }
    let unique = &hdr[8..16];
    let mut out = [0u8; FUSE_OUT_HEADER];
    out[..4].copy_from_slice(&(FUSE_OUT_HEADER as u32).to_le_bytes());
    out[4..8].copy_from_slice(&(-libc::ENOTCONN).to_le_bytes());
    out[8..16].copy_from_slice(unique);
    match scatter(mem, &bufs.writable, &out) {
        Ok(FUSE_OUT_HEADER) => FUSE_OUT_HEADER as u32,
        _ => 0,
    }
}

impl EventHandler for FsHandler {
    /// The backend stops its rings now, on this thread (the one allowed to talk to it), not
    /// on the vCPU thread whose status write reset the device.
    fn stopping(&mut self) {
        self.backend.session.stop();
    }

    fn handle_event(&mut self, token: u64, events: EventSet) {
        match token {
            SOCKET_TOKEN => {
                if events.intersects(EventSet::READ_HANG_UP | EventSet::HANG_UP | EventSet::ERROR) {
                    self.take_over();
                }
            }
            TAKEOVER_TOKEN => {
                let mut ready = [EpollEvent::default(); 16];
                let n = self.takeover.wait(0, &mut ready).unwrap_or(0);
                for ev in &ready[..n] {
                    let i = ev.data() as usize;
                    if i < self.queues.len() {
                        self.queues[i].ack_notification();
                        self.fail_requests(i);
                    }
                }
            }
            i => {
                let i = i as usize;
                if let Some(call) = self.calls.get(i) {
                    if call.read().is_ok() {
                        let kind = VirtioInterruptType::Queue(self.queues[i].index);
                        if let Err(e) = self.interrupt.trigger(kind) {
                            error!(
                                "virtio-fs: interrupt for queue {}: {e}",
                                self.queues[i].index
                            );
                        }
                    }
                }
            }
        }
    }
}

impl BackendHandler for FsHandler {
    type Backend = FsBackend;

    /// The worker stopped (the driver reset the device; the rings were stopped in
    /// `stopping`).
    fn into_backend(self) -> FsBackend {
        if self.failed > 0 {
            log::info!(
                "virtio-fs {:?}: {} requests were answered ENOTCONN after the backend left",
                self.backend.tag,
                self.failed
            );
        }
        self.backend
    }

    /// Not used: a virtio-fs device is never paused (see `Fs::pause`).
    fn queue_positions(&self) -> Vec<QueuePosition> {
        self.queues.iter().map(|q| q.position(0)).collect()
    }
}
