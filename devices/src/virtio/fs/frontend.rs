//! The vhost-user session with a device backend, as the vhost-user specification orders it
//! (docs.kernel.org is silent; QEMU's `docs/interop/vhost-user.rst` is the reference):
//!
//! * at connection: `SET_OWNER`, `GET_FEATURES`, and with `VHOST_USER_F_PROTOCOL_FEATURES`
//!   `GET_PROTOCOL_FEATURES` / `SET_PROTOCOL_FEATURES` (only `MQ`, `REPLY_ACK` and
//!   `CONFIGURE_MEM_SLOTS`'s absence matter here), and with `MQ` `GET_QUEUE_NUM` to check that
//!   the backend serves as many queues as the device has;
//! * when the driver starts the device: `SET_FEATURES` (what the driver acked, plus the
//!   protocol-features bit), `SET_MEM_TABLE` (every guest RAM region as an fd, offset and
//!   address), then per ring `SET_VRING_NUM`, `SET_VRING_ADDR` (addresses in this process),
//!   `SET_VRING_BASE` (where the driver's ring stands), `SET_VRING_CALL`, `SET_VRING_KICK`
//!   and, with protocol features, `SET_VRING_ENABLE`;
//! * when the driver resets the device: `GET_VRING_BASE` per started ring, which stops it.
//!
//! Every reply is awaited with a timeout on the socket: a backend that stops answering
//! fails the call (and the device) instead of hanging the thread that asked.

use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtio::queue::DeviceQueue;

/// How long a reply from the backend may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect: {0} (is the backend, e.g. virtiofsd, running and listening there?)")]
    Connect(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Protocol {
        what: &'static str,
        source: vhost::Error,
    },
    #[error("the backend serves {have} queues, the device needs {want}")]
    Queues { have: u64, want: usize },
    #[error(
        "guest memory is not shared with the backend: start the VM with --memory shared=on \
         (the region at {0:#x} has no file to pass)"
    )]
    PrivateMemory(u64),
    #[error("guest memory has {0} regions, more than the backend can be given at once (8)")]
    TooManyRegions(usize),
    #[error("queue {0}: its rings are not in guest memory")]
    Rings(u16),
    #[error("cannot create an eventfd: {0}")]
    EventFd(#[source] std::io::Error),
    #[error("the backend has gone away")]
    Gone,
}

fn proto(what: &'static str) -> impl FnOnce(vhost::Error) -> SessionError {
    move |source| SessionError::Protocol { what, source }
}

/// A connected vhost-user backend.
pub struct Session {
    frontend: Frontend,
    /// A second handle on the socket, for the worker to notice the backend hang up.
    socket: UnixStream,
    path: PathBuf,
    virtio_features: u64,
    protocol: bool,
    /// The rings the backend was given at the last start (stopped again by `stop`).
    started: Vec<u16>,
    gone: bool,
}

impl Session {
    /// Connects and negotiates; the backend must serve at least `queues` queues.
    pub fn connect(path: &Path, queues: usize) -> Result<Self, SessionError> {
        let stream = UnixStream::connect(path).map_err(SessionError::Connect)?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(REPLY_TIMEOUT)))
            .map_err(SessionError::Connect)?;
        let socket = stream.try_clone().map_err(SessionError::Connect)?;
        let mut frontend = Frontend::from_stream(stream, queues as u64);
        frontend.set_owner().map_err(proto("SET_OWNER"))?;
        let virtio_features = frontend.get_features().map_err(proto("GET_FEATURES"))?;
        let protocol = virtio_features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        if protocol {
            let offered = frontend
                .get_protocol_features()
                .map_err(proto("GET_PROTOCOL_FEATURES"))?;
            let want =
                offered & (VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK);
            frontend
                .set_protocol_features(want)
                .map_err(proto("SET_PROTOCOL_FEATURES"))?;
            if want.contains(VhostUserProtocolFeatures::MQ) {
                let have = frontend.get_queue_num().map_err(proto("GET_QUEUE_NUM"))?;
                if have < queues as u64 {
                    return Err(SessionError::Queues { have, want: queues });
                }
            }
        }
        Ok(Session {
            frontend,
            socket,
            path: path.to_path_buf(),
            virtio_features,
            protocol,
            started: Vec::new(),
            gone: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backend's virtio features (without the vhost-user protocol-features bit).
    pub fn virtio_features(&self) -> u64 {
        self.virtio_features & !VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    /// The socket's fd, for the worker to watch for the backend hanging up.
    pub fn socket_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The backend closed the connection: nothing is sent to it any more.
    pub fn mark_gone(&mut self) {
        self.gone = true;
    }

    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Gives the backend guest memory and the rings, at the places the queues stand, and
    /// returns the eventfd per queue (in `queues`' order) the backend signals when it used
    /// buffers. `acked` is what the driver accepted.
    pub(crate) fn start(
        &mut self,
        mem: &GuestMemoryMmap,
        acked: u64,
        queues: &[DeviceQueue],
    ) -> Result<Vec<EventFd>, SessionError> {
        if self.gone {
            return Err(SessionError::Gone);
        }
        let regions = memory_table(mem)?;
        let mut features = acked;
        if self.protocol {
            features |= VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        }
        let f = &mut self.frontend;
        f.set_features(features).map_err(proto("SET_FEATURES"))?;
        f.set_mem_table(&regions).map_err(proto("SET_MEM_TABLE"))?;
        let mut calls = Vec::with_capacity(queues.len());
        self.started.clear();
        for q in queues {
            let i = usize::from(q.index);
            let rings = q.rings();
            let host = |gpa: u64| -> Result<u64, SessionError> {
                mem.get_host_address(vm_memory::GuestAddress(gpa))
                    .map(|p| p as u64)
                    .map_err(|_| SessionError::Rings(q.index))
            };
            let config = VringConfigData {
                queue_max_size: q.size(),
                queue_size: q.size(),
                flags: 0,
                desc_table_addr: host(rings.desc)?,
                used_ring_addr: host(rings.used)?,
                avail_ring_addr: host(rings.avail)?,
                log_addr: None,
            };
            let call = EventFd::new(EFD_NONBLOCK).map_err(SessionError::EventFd)?;
            f.set_vring_num(i, q.size())
                .map_err(proto("SET_VRING_NUM"))?;
            f.set_vring_addr(i, &config)
                .map_err(proto("SET_VRING_ADDR"))?;
            f.set_vring_base(i, q.position(0).next_avail)
                .map_err(proto("SET_VRING_BASE"))?;
            f.set_vring_call(i, &call)
                .map_err(proto("SET_VRING_CALL"))?;
            f.set_vring_kick(i, q.notifier())
                .map_err(proto("SET_VRING_KICK"))?;
            self.started.push(q.index);
            calls.push(call);
        }
        if self.protocol {
            for q in queues {
                f.set_vring_enable(usize::from(q.index), true)
                    .map_err(proto("SET_VRING_ENABLE"))?;
            }
        }
        Ok(calls)
    }

    /// Stops the rings the backend was given (the driver reset the device). Errors are
    /// logged: the device is being reset either way.
    pub fn stop(&mut self) {
        let started = std::mem::take(&mut self.started);
        if self.gone {
            return;
        }
        for i in started {
            let i = usize::from(i);
            if self.protocol {
                if let Err(e) = self.frontend.set_vring_enable(i, false) {
                    log::warn!(
                        "virtio-fs {}: SET_VRING_ENABLE {i} off: {e}",
                        self.path.display()
                    );
                }
            }
            if let Err(e) = self.frontend.get_vring_base(i) {
                // A backend that does not answer in time is not waited for again.
                log::warn!("virtio-fs {}: GET_VRING_BASE {i}: {e}", self.path.display());
                self.gone = true;
                return;
            }
        }
    }
}

/// Guest RAM as the backend maps it: each region's file, offset, guest address and the
/// address it has in this process.
fn memory_table(mem: &GuestMemoryMmap) -> Result<Vec<VhostUserMemoryRegionInfo>, SessionError> {
    let mut out = Vec::new();
    for r in mem.iter() {
        let Some(fo) = r.file_offset() else {
            return Err(SessionError::PrivateMemory(r.start_addr().0));
        };
        out.push(VhostUserMemoryRegionInfo {
            guest_phys_addr: r.start_addr().0,
            memory_size: r.len(),
            userspace_addr: r.as_ptr() as u64,
            mmap_offset: fo.start(),
            mmap_handle: fo.file().as_raw_fd(),
        });
    }
    if out.len() > 8 {
        return Err(SessionError::TooManyRegions(out.len()));
    }
    Ok(out)
}
