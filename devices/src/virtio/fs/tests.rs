//! virtio-fs against a fake vhost-user backend (`fake.rs`): the message sequence, the rings
//! and eventfds it is given, interrupts relayed, and what happens when it hangs up.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::fake::FakeBackend;
use super::*;
use crate::virtio::device::{ActivatedQueue, VirtioInterruptType};
use crate::virtio::test_utils::{
    guest_memory, shared_guest_memory, wait_until, RecordingInterrupt, TestQueue, F_WRITE,
};

fn config(socket: &Path) -> FsConfig {
    FsConfig {
        tag: "myfs".into(),
        socket: socket.to_path_buf(),
        num_queues: 1,
        queue_size: 16,
        id: None,
        pci_segment: 0,
        pci_device_id: None,
    }
}

fn activated(tq: &TestQueue, index: u16) -> ActivatedQueue {
    ActivatedQueue {
        index,
        queue: tq.queue(),
        notifier: EventFd::new(EFD_NONBLOCK).unwrap(),
    }
}

struct Running {
    fs: Fs,
    mem: GuestMemoryMmap,
    queues: Vec<TestQueue>,
    notifiers: Vec<EventFd>,
    irq: Arc<RecordingInterrupt>,
}

/// An activated device over shared memory, its two queues with `size` entries.
fn activate(backend: &FakeBackend) -> Running {
    let mut fs = Fs::new(&config(&backend.path)).unwrap();
    let mem = shared_guest_memory();
    let queues = vec![TestQueue::at(&mem, 0, 16), TestQueue::at(&mem, 1, 16)];
    let aq: Vec<ActivatedQueue> = queues
        .iter()
        .enumerate()
        .map(|(i, q)| activated(q, i as u16))
        .collect();
    let notifiers = aq.iter().map(|q| q.notifier.try_clone().unwrap()).collect();
    fs.ack_features(fs.features());
    let irq = Arc::new(RecordingInterrupt::default());
    fs.activate(ActivateContext {
        mem: mem.clone(),
        queues: aq,
        interrupt: irq.clone(),
        worker_init: None,
    })
    .unwrap();
    Running {
        fs,
        mem,
        queues,
        notifiers,
        irq,
    }
}

impl Running {
    /// The driver starts the device again over the same rings (after a reset).
    fn reactivate(&mut self) -> Result<(), ActivateError> {
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| activated(q, i as u16))
            .collect();
        self.fs.activate(ActivateContext {
            mem: self.mem.clone(),
            queues,
            interrupt: self.irq.clone(),
            worker_init: None,
        })
    }
}

#[test]
fn the_frontend_follows_the_vhost_user_sequence() {
    let backend = FakeBackend::start("sequence", 2);
    let mut r = activate(&backend);
    assert!(r.fs.is_active());
    // The driver sees the backend's ring features but never the vhost-user protocol bit.
    assert_eq!(
        r.fs.features(),
        VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX
    );
    let acked = VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX | (1 << 30);
    let mut want: Vec<String> = [
        "SET_OWNER",
        "GET_FEATURES",
        "GET_PROTOCOL_FEATURES",
        "SET_PROTOCOL_FEATURES 0x9",
        "GET_QUEUE_NUM",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.push(format!("SET_FEATURES {acked:#x}"));
    want.push("SET_MEM_TABLE".into());
    for i in 0..2 {
        for m in [
            "SET_VRING_NUM {i} 16",
            "SET_VRING_ADDR {i}",
            "SET_VRING_BASE {i}",
        ] {
            want.push(m.replace("{i}", &i.to_string()));
        }
        want.push(format!("SET_VRING_CALL {i}"));
        want.push(format!("SET_VRING_KICK {i}"));
    }
    want.push("SET_VRING_ENABLE 0 true".into());
    want.push("SET_VRING_ENABLE 1 true".into());
    assert_eq!(backend.log(), want);
    {
        let s = backend.seen.lock().unwrap();
        // All of guest memory, as one file at offset 0.
        assert_eq!(s.regions, vec![(0, crate::virtio::test_utils::MEM_SIZE, 0)]);
        assert_eq!(s.mem_files, 1);
        assert_eq!(s.bases, vec![(0, 0), (1, 0)]);
        // Ring addresses are this process's: the backend maps the same file.
        let host = |gpa: u64| {
            use vm_memory::GuestMemoryBackend;
            r.mem.get_host_address(GuestAddress(gpa)).unwrap() as u64
        };
        let rings = r.queues[1].queue();
        use virtio_queue::QueueT;
        assert_eq!(
            s.addrs[1],
            (
                1,
                host(rings.desc_table()),
                host(rings.avail_ring()),
                host(rings.used_ring())
            )
        );
    }
    // The guest's kick reaches the backend directly (the eventfd itself was passed) ...
    r.notifiers[1].write(1).unwrap();
    let mut kick = backend.seen.lock().unwrap().kicks[1].1.try_clone().unwrap();
    let mut buf = [0u8; 8];
    kick.read_exact(&mut buf).unwrap();
    assert_eq!(u64::from_ne_bytes(buf), 1);
    // ... and the backend's call becomes the queue's interrupt.
    let call = backend.seen.lock().unwrap().calls[1].1.try_clone().unwrap();
    std::io::Write::write_all(&mut &call, &1u64.to_ne_bytes()).unwrap();
    assert!(wait_until(
        || r.irq.count(VirtioInterruptType::Queue(1)) == 1
    ));
    // A reset stops the rings in the backend, and the driver may start the device again.
    assert!(r.fs.reset());
    assert!(!r.fs.is_active());
    let log = backend.log();
    let tail: Vec<&str> = log[log.len() - 4..].iter().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "SET_VRING_ENABLE 0 false",
            "GET_VRING_BASE 0",
            "SET_VRING_ENABLE 1 false",
            "GET_VRING_BASE 1"
        ]
    );
    r.fs.ack_features(r.fs.features());
    r.reactivate().unwrap();
    assert!(r.fs.is_active());
}

/// A FUSE request in guest memory at `at`: a 40-byte in-header (`unique`) and room for the
/// reply at `at + 0x100`.
fn request(mem: &GuestMemoryMmap, tq: &mut TestQueue, at: u64, unique: u64) {
    let mut hdr = [0u8; 40];
    hdr[0..4].copy_from_slice(&40u32.to_le_bytes());
    hdr[4..8].copy_from_slice(&15u32.to_le_bytes()); // FUSE_READ
    hdr[8..16].copy_from_slice(&unique.to_le_bytes());
    mem.write_slice(&hdr, GuestAddress(at)).unwrap();
    mem.write_slice(&[0xaa; 64], GuestAddress(at + 0x100))
        .unwrap();
    tq.add_chain(&[(at, 40, 0), (at + 0x100, 64, F_WRITE)]);
}

fn reply(mem: &GuestMemoryMmap, at: u64) -> (u32, i32, u64) {
    let len: u32 = mem.read_obj(GuestAddress(at + 0x100)).unwrap();
    let err: i32 = mem.read_obj(GuestAddress(at + 0x104)).unwrap();
    let unique: u64 = mem.read_obj(GuestAddress(at + 0x108)).unwrap();
    (len, err, unique)
}

#[test]
fn requests_fail_with_enotconn_once_the_backend_hangs_up() {
    let backend = FakeBackend::start("dies", 2);
    let mut r = activate(&backend);
    // A request the backend never answered, then the backend dies.
    request(&r.mem, &mut r.queues[1], 0x20_0000, 0x1234);
    backend.die();
    assert!(wait_until(|| r.queues[1].used_idx() == 1));
    assert_eq!(r.queues[1].used_elem(0), (0, 16));
    assert_eq!(reply(&r.mem, 0x20_0000), (16, -libc::ENOTCONN, 0x1234));
    assert!(wait_until(
        || r.irq.count(VirtioInterruptType::Queue(1)) == 1
    ));
    // A request made afterwards fails the same way when the guest kicks the queue.
    request(&r.mem, &mut r.queues[1], 0x30_0000, 0x5678);
    r.notifiers[1].write(1).unwrap();
    assert!(wait_until(|| r.queues[1].used_idx() == 2));
    assert_eq!(reply(&r.mem, 0x30_0000), (16, -libc::ENOTCONN, 0x5678));
    // A FORGET-like request with no reply buffer is completed with nothing written, and a
    // chain too short for a FUSE header too.
    r.queues[0].add_chain(&[(0x40_0000, 40, 0)]);
    r.queues[0].add_chain(&[(0x40_1000, 8, 0), (0x40_2000, 64, F_WRITE)]);
    r.notifiers[0].write(1).unwrap();
    assert!(wait_until(|| r.queues[0].used_idx() == 2));
    assert_eq!(r.queues[0].used_elem(0).1, 0);
    assert_eq!(r.queues[0].used_elem(1).1, 0);
    // Resetting a device whose backend is gone sends nothing (and does not hang); it cannot
    // be started again.
    assert!(r.fs.reset());
    let err = r.reactivate().unwrap_err();
    assert!(err.to_string().contains("gone away"), "{err}");
}

#[test]
fn private_guest_memory_is_refused_with_the_option_to_use() {
    let backend = FakeBackend::start("private", 2);
    let mut fs = Fs::new(&config(&backend.path)).unwrap();
    let mem = guest_memory();
    let q0 = TestQueue::at(&mem, 0, 16);
    let q1 = TestQueue::at(&mem, 1, 16);
    fs.ack_features(fs.features());
    let err = fs
        .activate(ActivateContext {
            mem: mem.clone(),
            queues: vec![activated(&q0, 0), activated(&q1, 1)],
            interrupt: Arc::new(RecordingInterrupt::default()),
            worker_init: None,
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("--memory shared=on"), "{msg}");
    assert!(msg.contains("fs.sock"), "{msg}");
    assert!(!fs.is_active());
}

#[test]
fn the_configuration_space_holds_the_tag_and_the_request_queue_count() {
    let backend = FakeBackend::start("config", 4);
    let mut cfg = config(&backend.path);
    cfg.num_queues = 3;
    let fs = Fs::new(&cfg).unwrap();
    assert_eq!(fs.device_type(), 26);
    assert_eq!(fs.queue_max_sizes(), &[16, 16, 16, 16]);
    let mut space = [0xffu8; 40];
    fs.read_config(0, &mut space);
    assert_eq!(&space[..4], b"myfs");
    assert!(space[4..36].iter().all(|&b| b == 0));
    assert_eq!(u32::from_le_bytes(space[36..40].try_into().unwrap()), 3);
}

#[test]
fn bad_configurations_and_backends_are_clear_errors() {
    let backend = FakeBackend::start("bad", 2);
    let good = config(&backend.path);
    let with = |f: &dyn Fn(&mut FsConfig)| {
        let mut c = good.clone();
        f(&mut c);
        Fs::new(&c).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(with(&|c| c.tag = String::new()).contains("1 to 36 bytes"));
    assert!(with(&|c| c.tag = "x".repeat(37)).contains("1 to 36 bytes"));
    assert!(with(&|c| c.num_queues = 0).contains("num_queues"));
    assert!(with(&|c| c.queue_size = 1000).contains("power of two"));
    let missing = with(&|c| c.socket = PathBuf::from("/nonexistent/virtiofsd.sock"));
    assert!(
        missing.contains("/nonexistent/virtiofsd.sock") && missing.contains("virtiofsd"),
        "{missing}"
    );
    // A backend that serves fewer queues than asked for.
    let small = FakeBackend::start("small", 2);
    let mut c = config(&small.path);
    c.num_queues = 2;
    let err = Fs::new(&c).err().unwrap().to_string();
    assert!(err.contains("serves 2 queues, the device needs 3"), "{err}");
}
