//! The device worker thread: an epoll loop over the device's queue
//! notification `EventFd`s, its backend fds (tap, input event) and a kill
//! `EventFd`.
//!
//! # Why one thread per device (and not one I/O thread per VM)
//!
//! * **Isolation.** A device whose backend blocks (a slow disk, an NFS image
//!   in `fsync`, a full tap queue) stalls only itself, never the other
//!   devices nor the vCPUs. A shared I/O thread would need every backend to
//!   be non-blocking (io_uring/AIO for disks) to give the same guarantee.
//! * **Per-device seccomp.** A thread can install its own seccomp filter
//!   (the `WorkerInit` hook of the activation context runs first thing on
//!   the worker): the block worker needs `pread64/pwrite64/fdatasync/
//!   fallocate`, the net worker `read/write` on a tap, the rng worker `read`
//!   on one file, all of them `epoll_wait`, `read/write` on eventfds and
//!   `futex`. A shared thread would need the union of all of them.
//! * **Simple.** Each worker owns its state outright (queues, backend, guest
//!   memory handle): no locks between the device model and the data path,
//!   no registration protocol with a central event loop, and stopping a
//!   device is "write the kill eventfd, join, take the backend back".
//!
//! The cost is one mostly-sleeping thread (a few tens of KiB of resident
//! stack) per device, which is negligible for the handful of devices a VM
//! has. The vCPU threads never run device work: a queue notification is a
//! KVM ioeventfd write that wakes the worker.

use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use log::error;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::{ActivateError, QueuePosition, WorkerInit};

/// The epoll token reserved for the kill `EventFd`.
const KILL_TOKEN: u64 = u64::MAX;
/// How many ready events one `epoll_wait` returns at most.
const MAX_EVENTS: usize = 32;

/// The device-specific part of a worker: reacts to one ready source.
pub(crate) trait EventHandler: Send + 'static {
    /// `token` is the one given in the [`Source`]; `events` what is ready.
    fn handle_event(&mut self, token: u64, events: EventSet);

    /// The worker was told to stop: the last thing run on the worker thread (under its
    /// seccomp filter), before the handler goes back to the thread that stopped it.
    fn stopping(&mut self) {}
}

/// An fd the worker waits on, with the token passed back to the handler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source {
    pub fd: RawFd,
    pub token: u64,
    pub events: EventSet,
}

impl Source {
    /// Level-triggered readability (queue notifiers, input events).
    pub fn readable(fd: &impl AsRawFd, token: u64) -> Self {
        Source {
            fd: fd.as_raw_fd(),
            token,
            events: EventSet::IN,
        }
    }
}

/// A running worker thread; dropping it stops and joins the thread.
pub(crate) struct Worker<H> {
    kill: EventFd,
    thread: Option<JoinHandle<H>>,
}

impl<H: EventHandler> Worker<H> {
    /// Registers `sources` (whose fds must stay open as long as `handler`
    /// lives, i.e. `handler` should own them) and starts the thread, which
    /// first runs `init` (e.g. installs its seccomp filter); `spawn` returns
    /// once `init` succeeded. On failure the handler comes back with the
    /// error, except when the thread itself could not be created (then it is
    /// lost with the closure).
    pub fn spawn(
        name: &str,
        handler: H,
        sources: &[Source],
        init: Option<WorkerInit>,
    ) -> Result<Self, SpawnError<H>> {
        debug_assert!(sources.iter().all(|s| s.token != KILL_TOKEN));
        let (epoll, kill) = match setup_epoll(sources) {
            Ok(pair) => pair,
            Err(error) => {
                return Err(SpawnError {
                    error,
                    handler: Some(handler),
                })
            }
        };
        let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<()>>(1);
        let thread_name = name.to_string();
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                if let Some(init) = init {
                    if let Err(e) = init(&thread_name) {
                        let _ = ready_tx.send(Err(e));
                        return handler;
                    }
                }
                let _ = ready_tx.send(Ok(()));
                run(epoll, handler)
            })
            .map_err(|error| SpawnError {
                error,
                handler: None,
            })?;
        let error = match ready_rx.recv() {
            Ok(Ok(())) => {
                return Ok(Worker {
                    kill,
                    thread: Some(thread),
                })
            }
            Ok(Err(e)) => e,
            Err(_) => io::Error::other("the worker thread panicked in its init hook"),
        };
        Err(SpawnError {
            error,
            handler: thread.join().ok(),
        })
    }

    /// Stops the thread and returns the handler (with the backend it owns),
    /// or `None` when the thread panicked.
    pub fn stop(mut self) -> Option<H> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Option<H> {
        let thread = self.thread.take()?;
        if let Err(e) = self.kill.write(1) {
            // Cannot happen short of fd exhaustion; joining would then hang.
            error!(
                "cannot signal the {:?} worker to stop: {e}",
                thread.thread().name()
            );
            return None;
        }
        match thread.join() {
            Ok(handler) => Some(handler),
            Err(_) => {
                error!("a virtio worker thread panicked; its backend is lost");
                None
            }
        }
    }
}

impl<H> Drop for Worker<H> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            if self.kill.write(1).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

/// A handler that owns the device backend (image, tap, entropy file...) and
/// can give it back when the worker stops, for a later re-activation.
pub(crate) trait BackendHandler: EventHandler {
    type Backend: Send;
    fn into_backend(self) -> Self::Backend;
    /// Where each of its queues stands (see [`DeviceQueue::position`]).
    ///
    /// [`DeviceQueue::position`]: super::queue::DeviceQueue::position
    fn queue_positions(&self) -> Vec<QueuePosition>;
}

/// The activation state shared by all devices: the backend waiting for
/// `activate`, or the running worker that owns it, or neither when a worker
/// panicked and took the backend with it.
pub(crate) enum Lifecycle<H: BackendHandler> {
    Ready(H::Backend),
    Active(Worker<H>),
    Broken,
}

impl<H: BackendHandler> Lifecycle<H> {
    /// Takes the backend to build a handler with; the state is `Broken`
    /// until [`start`](Self::start) or [`restore`](Self::restore).
    pub fn take_backend(&mut self) -> Result<H::Backend, ActivateError> {
        match std::mem::replace(self, Lifecycle::Broken) {
            Lifecycle::Ready(backend) => Ok(backend),
            Lifecycle::Active(worker) => {
                *self = Lifecycle::Active(worker);
                Err(ActivateError::AlreadyActive)
            }
            Lifecycle::Broken => Err(ActivateError::BackendLost),
        }
    }

    /// Puts back a backend taken by [`take_backend`](Self::take_backend).
    pub fn restore(&mut self, backend: H::Backend) {
        *self = Lifecycle::Ready(backend);
    }

    /// Starts the worker; on failure the backend is kept when possible.
    pub fn start(
        &mut self,
        name: &str,
        handler: H,
        sources: &[Source],
        init: Option<WorkerInit>,
    ) -> Result<(), ActivateError> {
        match Worker::spawn(name, handler, sources, init) {
            Ok(worker) => {
                *self = Lifecycle::Active(worker);
                Ok(())
            }
            Err(e) => {
                if let Some(handler) = e.handler {
                    *self = Lifecycle::Ready(handler.into_backend());
                }
                Err(ActivateError::Worker(e.error))
            }
        }
    }

    /// Stops a running worker and takes the backend back; `false` when the
    /// backend is lost.
    pub fn reset(&mut self) -> bool {
        match std::mem::replace(self, Lifecycle::Broken) {
            Lifecycle::Active(worker) => match worker.stop() {
                Some(handler) => {
                    *self = Lifecycle::Ready(handler.into_backend());
                    true
                }
                None => false,
            },
            Lifecycle::Ready(backend) => {
                *self = Lifecycle::Ready(backend);
                true
            }
            Lifecycle::Broken => false,
        }
    }

    /// Stops a running worker for a snapshot: the backend is kept for the next activation
    /// and the queues' positions returned; `Ok(None)` when no worker ran.
    pub fn pause(&mut self) -> Result<Option<Vec<QueuePosition>>, ActivateError> {
        match std::mem::replace(self, Lifecycle::Broken) {
            Lifecycle::Active(worker) => match worker.stop() {
                Some(handler) => {
                    let positions = handler.queue_positions();
                    *self = Lifecycle::Ready(handler.into_backend());
                    Ok(Some(positions))
                }
                None => Err(ActivateError::BackendLost),
            },
            Lifecycle::Ready(backend) => {
                *self = Lifecycle::Ready(backend);
                Ok(None)
            }
            Lifecycle::Broken => Err(ActivateError::BackendLost),
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self, Lifecycle::Active(_))
    }
}

/// Why a worker did not start, with the handler when it could be kept.
pub(crate) struct SpawnError<H> {
    pub error: io::Error,
    pub handler: Option<H>,
}

fn setup_epoll(sources: &[Source]) -> io::Result<(Epoll, EventFd)> {
    let epoll = Epoll::new()?;
    let kill = EventFd::new(EFD_NONBLOCK)?;
    let kill_event = EpollEvent::new(EventSet::IN, KILL_TOKEN);
    epoll.ctl(ControlOperation::Add, kill.as_raw_fd(), kill_event)?;
    for s in sources {
        let event = EpollEvent::new(s.events, s.token);
        epoll.ctl(ControlOperation::Add, s.fd, event)?;
    }
    Ok((epoll, kill))
}

fn run<H: EventHandler>(epoll: Epoll, mut handler: H) -> H {
    let mut events = [EpollEvent::default(); MAX_EVENTS];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                error!("virtio worker: epoll_wait failed, stopping: {e}");
                return handler;
            }
        };
        if events[..n].iter().any(|ev| ev.data() == KILL_TOKEN) {
            handler.stopping();
            return handler;
        }
        for ev in &events[..n] {
            handler.handle_event(ev.data(), ev.event_set());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Recorder {
        input: EventFd,
        seen: mpsc::Sender<u64>,
        handled: u32,
    }

    impl EventHandler for Recorder {
        fn handle_event(&mut self, token: u64, _events: EventSet) {
            let _ = self.input.read();
            self.handled += 1;
            self.seen.send(token).unwrap();
        }
    }

    #[test]
    fn worker_dispatches_tokens_and_returns_its_handler_on_stop() {
        let input = EventFd::new(EFD_NONBLOCK).unwrap();
        let kick = input.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        let handler = Recorder {
            input,
            seen: tx,
            handled: 0,
        };
        let sources = [Source::readable(&handler.input, 7)];
        let worker = Worker::spawn("test-worker", handler, &sources, None)
            .ok()
            .unwrap();
        kick.write(1).unwrap();
        let token = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(token, 7);
        let handler = worker.stop().expect("handler comes back");
        assert_eq!(handler.handled, 1);
    }

    #[test]
    fn a_bad_source_gives_the_handler_back() {
        let (tx, _rx) = mpsc::channel();
        let handler = Recorder {
            input: EventFd::new(EFD_NONBLOCK).unwrap(),
            seen: tx,
            handled: 0,
        };
        let bad = Source {
            fd: -1,
            token: 1,
            events: EventSet::IN,
        };
        let err = Worker::spawn("test-worker", handler, &[bad], None)
            .err()
            .unwrap();
        assert!(err.handler.is_some());
        assert_eq!(err.error.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn the_init_hook_runs_on_the_worker_thread_and_can_fail_the_spawn() {
        let (tx, _rx) = mpsc::channel();
        let handler = Recorder {
            input: EventFd::new(EFD_NONBLOCK).unwrap(),
            seen: tx,
            handled: 0,
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let init: WorkerInit = Arc::new(move |name: &str| {
            let me = std::thread::current().name().map(str::to_string);
            seen2.lock().unwrap().push((name.to_string(), me));
            Ok(())
        });
        let worker = Worker::spawn("virtio-test", handler, &[], Some(init))
            .ok()
            .unwrap();
        let calls = seen.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![("virtio-test".to_string(), Some("virtio-test".to_string()))]
        );
        let handler = worker.stop().unwrap();
        let failing: WorkerInit =
            Arc::new(|_: &str| Err(io::Error::from_raw_os_error(libc::EPERM)));
        let err = Worker::spawn("virtio-test", handler, &[], Some(failing))
            .err()
            .unwrap();
        assert_eq!(err.error.raw_os_error(), Some(libc::EPERM));
        assert!(err.handler.is_some(), "the handler survives a failed init");
    }

    #[test]
    fn dropping_a_worker_joins_its_thread() {
        let input = EventFd::new(EFD_NONBLOCK).unwrap();
        let (tx, rx) = mpsc::channel();
        let handler = Recorder {
            input,
            seen: tx,
            handled: 0,
        };
        let worker = Worker::spawn("test-worker", handler, &[], None)
            .ok()
            .unwrap();
        drop(worker);
        // The handler (and its sender) is gone once the thread was joined.
        assert!(rx.recv().is_err());
    }
}
