//! A fake vhost-user backend for tests (vhost's own backend-side request handler with a
//! recording device behind it): what it was told, the fds it was given, and a way to die.
//! Built for this crate's tests and, with the `fake-vhost-user` feature, for the VMM's.

use std::fs::File;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use vhost::vhost_user::message::*;
use vhost::vhost_user::{
    Backend, BackendReqHandler, Error as VuError, GpuBackend, Result as VuResult,
    VhostUserBackendReqHandlerMut,
};

use crate::virtio::device::{VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_VERSION_1};

/// What the fake offers: the ring features and vhost-user protocol features.
pub const VIRTIO_FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX | (1 << 30);

/// What the fake backend was told.
#[derive(Default)]
pub struct Seen {
    pub log: Vec<String>,
    pub regions: Vec<(u64, u64, u64)>,
    pub mem_files: usize,
    pub calls: Vec<(u8, File)>,
    pub kicks: Vec<(u8, File)>,
    pub bases: Vec<(u32, u32)>,
    pub addrs: Vec<(u32, u64, u64, u64)>,
}

struct Fake {
    seen: Arc<Mutex<Seen>>,
    queues: u64,
    protocol: VhostUserProtocolFeatures,
}

impl Fake {
    fn note(&self, s: impl Into<String>) -> VuResult<()> {
        self.seen.lock().unwrap().log.push(s.into());
        Ok(())
    }
}

fn unsupported<T>() -> VuResult<T> {
    Err(VuError::InvalidOperation("not in the fake backend"))
}

impl VhostUserBackendReqHandlerMut for Fake {
    fn set_owner(&mut self) -> VuResult<()> {
        self.note("SET_OWNER")
    }
    fn reset_owner(&mut self) -> VuResult<()> {
        self.note("RESET_OWNER")
    }
    fn reset_device(&mut self) -> VuResult<()> {
        unsupported()
    }
    fn get_features(&mut self) -> VuResult<u64> {
        self.note("GET_FEATURES")?;
        Ok(VIRTIO_FEATURES)
    }
    fn set_features(&mut self, features: u64) -> VuResult<()> {
        self.note(format!("SET_FEATURES {features:#x}"))
    }
    fn set_mem_table(&mut self, ctx: &[VhostUserMemoryRegion], files: Vec<File>) -> VuResult<()> {
        let mut s = self.seen.lock().unwrap();
        s.regions = ctx
            .iter()
            .map(|r| (r.guest_phys_addr, r.memory_size, r.mmap_offset))
            .collect();
        s.mem_files = files.len();
        s.log.push("SET_MEM_TABLE".into());
        Ok(())
    }
    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        self.note(format!("SET_VRING_NUM {index} {num}"))
    }
    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        let mut s = self.seen.lock().unwrap();
        s.addrs.push((index, descriptor, available, used));
        s.log.push(format!("SET_VRING_ADDR {index}"));
        Ok(())
    }
    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        self.seen.lock().unwrap().bases.push((index, base));
        self.note(format!("SET_VRING_BASE {index}"))
    }
    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        self.note(format!("GET_VRING_BASE {index}"))?;
        Ok(VhostUserVringState::new(index, 0))
    }
    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.seen.lock().unwrap().kicks.push((index, fd.unwrap()));
        self.note(format!("SET_VRING_KICK {index}"))
    }
    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.seen.lock().unwrap().calls.push((index, fd.unwrap()));
        self.note(format!("SET_VRING_CALL {index}"))
    }
    fn set_vring_err(&mut self, _index: u8, _fd: Option<File>) -> VuResult<()> {
        unsupported()
    }
    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        self.note("GET_PROTOCOL_FEATURES")?;
        Ok(self.protocol)
    }
    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        self.note(format!("SET_PROTOCOL_FEATURES {features:#x}"))
    }
    fn get_queue_num(&mut self) -> VuResult<u64> {
        self.note("GET_QUEUE_NUM")?;
        Ok(self.queues)
    }
    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        self.note(format!("SET_VRING_ENABLE {index} {enable}"))
    }
    fn get_config(&mut self, _: u32, _: u32, _: VhostUserConfigFlags) -> VuResult<Vec<u8>> {
        unsupported()
    }
    fn set_config(&mut self, _: u32, _: &[u8], _: VhostUserConfigFlags) -> VuResult<()> {
        unsupported()
    }
    fn set_backend_req_fd(&mut self, _backend: Backend) {}
    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> VuResult<()> {
        unsupported()
    }
    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> VuResult<File> {
        unsupported()
    }
    fn get_inflight_fd(
        &mut self,
        _inflight: &VhostUserInflight,
    ) -> VuResult<(VhostUserInflight, File)> {
        unsupported()
    }
    fn set_inflight_fd(&mut self, _inflight: &VhostUserInflight, _file: File) -> VuResult<()> {
        unsupported()
    }
    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        unsupported()
    }
    fn add_mem_region(&mut self, _: &VhostUserSingleMemoryRegion, _fd: File) -> VuResult<()> {
        unsupported()
    }
    fn remove_mem_region(&mut self, _region: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        unsupported()
    }
    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _fd: File,
    ) -> VuResult<Option<File>> {
        unsupported()
    }
    fn check_device_state(&mut self) -> VuResult<()> {
        unsupported()
    }
    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        unsupported()
    }
    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> VuResult<()> {
        unsupported()
    }
}

/// A fake backend listening at a fresh socket path; `stop` closes its end.
pub struct FakeBackend {
    pub path: PathBuf,
    pub seen: Arc<Mutex<Seen>>,
    /// The connection, shut down to play a backend that dies.
    conn: Arc<Mutex<Option<UnixStream>>>,
    _dir: TempDir,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl FakeBackend {
    /// Listens on a fresh socket in a temporary directory and serves one connection.
    pub fn start(name: &str, queues: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("vmm-fs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fs.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let conn = Arc::new(Mutex::new(None));
        let (seen2, conn2) = (seen.clone(), conn.clone());
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            *conn2.lock().unwrap() = Some(stream.try_clone().unwrap());
            let fake = Fake {
                seen: seen2,
                queues,
                protocol: VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK,
            };
            let mut handler = BackendReqHandler::from_stream(stream, Arc::new(Mutex::new(fake)));
            while handler.handle_request().is_ok() {}
        });
        FakeBackend {
            path,
            seen,
            conn,
            _dir: TempDir(dir),
        }
    }

    /// The messages received, in order.
    pub fn log(&self) -> Vec<String> {
        self.seen.lock().unwrap().log.clone()
    }

    /// The backend process dies: its end of the connection closes.
    pub fn die(&self) {
        if let Some(s) = self.conn.lock().unwrap().take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}
