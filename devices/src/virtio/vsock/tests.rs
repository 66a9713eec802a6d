//! Device-level tests: a guest (driver side of the three queues, in test memory) and host
//! clients on real unix sockets, through `activate` and the worker thread.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::muxer::BUF_ALLOC;
use super::packet::{Header, Op, HDR_LEN, HOST_CID, SHUTDOWN_RCV, SHUTDOWN_SEND};
use super::*;
use crate::virtio::device::{ActivateContext, ActivatedQueue};
use crate::virtio::test_utils::{guest_memory, wait_until, RecordingInterrupt, TestQueue, F_WRITE};

const CID: u64 = 42;
const QSIZE: u16 = 64;
const RX_BUFS: u64 = 0x20_0000;
const RX_BUF_LEN: u32 = HDR_LEN as u32 + 4096;
const TX_BUFS: u64 = 0x60_0000;
const EVENT_BUF: u64 = 0x1f_0000;

/// The queues as a transport hands them to `activate` (index = position), each with its
/// notifier, and a clone of each notifier for the test to kick with.
fn hand_over(
    queues: impl Iterator<Item = virtio_queue::Queue>,
) -> (Vec<ActivatedQueue>, Vec<EventFd>) {
    queues
        .enumerate()
        .map(|(i, queue)| {
            let notifier = EventFd::new(EFD_NONBLOCK).unwrap();
            let kick = notifier.try_clone().unwrap();
            let q = ActivatedQueue {
                index: i as u16,
                queue,
                notifier,
            };
            (q, kick)
        })
        .unzip()
}

struct Guest {
    mem: GuestMemoryMmap,
    rx: TestQueue,
    tx: TestQueue,
    _ev: TestQueue,
    kicks: Vec<EventFd>,
    rx_added: u16,
    rx_seen: u16,
    tx_added: u16,
    dev: Vsock,
    dir: std::path::PathBuf,
}

impl Guest {
    fn new(name: &str) -> Guest {
        Self::build(name, false)
    }

    /// A device restored from a snapshot: it owes the guest a transport reset event.
    fn build(name: &str, restored: bool) -> Guest {
        let dir = std::env::temp_dir().join(format!("vsock-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = VsockConfig {
            cid: CID,
            socket: dir.join("v.sock"),
            id: None,
            pci_segment: 0,
            pci_device_id: None,
        };
        let mut dev = Vsock::new(&cfg).unwrap();
        if restored {
            dev.restored();
        }
        dev.ack_features(u64::MAX);
        let mem = guest_memory();
        let queues: Vec<TestQueue> = (0..3).map(|i| TestQueue::at(&mem, i, QSIZE)).collect();
        let (activated, kicks) = hand_over(queues.iter().map(TestQueue::queue));
        let mut queues = queues.into_iter();
        let mut g = Guest {
            mem: mem.clone(),
            rx: queues.next().unwrap(),
            tx: queues.next().unwrap(),
            _ev: queues.next().unwrap(),
            kicks,
            rx_added: 0,
            rx_seen: 0,
            tx_added: 0,
            dev,
            dir,
        };
        for _ in 0..32 {
            g.add_rx_buffer();
        }
        g._ev.add_chain(&[(EVENT_BUF, 8, F_WRITE)]);
        let ctx = ActivateContext {
            mem,
            queues: activated,
            interrupt: Arc::new(RecordingInterrupt::default()),
            worker_init: None,
        };
        g.dev.activate(ctx).unwrap();
        g
    }

    /// Pause the device (a snapshot) and start it again at the positions it reported.
    fn pause_and_resume(&mut self) {
        use virtio_queue::QueueT;
        let positions = self.dev.pause().unwrap().expect("it was active");
        let queues = [&self.rx, &self.tx, &self._ev]
            .into_iter()
            .enumerate()
            .map(|(i, tq)| {
                let p = positions
                    .iter()
                    .find(|p| usize::from(p.index) == i)
                    .unwrap();
                let mut queue = tq.queue();
                queue.set_next_avail(p.next_avail);
                queue.set_next_used(p.next_used);
                queue
            });
        let (activated, kicks) = hand_over(queues);
        self.kicks = kicks;
        let ctx = ActivateContext {
            mem: self.mem.clone(),
            queues: activated,
            interrupt: Arc::new(RecordingInterrupt::default()),
            worker_init: None,
        };
        self.dev.activate(ctx).unwrap();
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.join("v.sock")
    }

    fn add_rx_buffer(&mut self) {
        let slot = u64::from(self.rx_added % QSIZE);
        self.rx
            .add_chain(&[(RX_BUFS + slot * 0x2000, RX_BUF_LEN, F_WRITE)]);
        self.rx_added = self.rx_added.wrapping_add(1);
        self.kicks[0].write(1).unwrap();
    }

    /// The next packet the device put in a receive buffer (the buffer is given back).
    fn recv(&mut self) -> (Header, Vec<u8>) {
        let seen = self.rx_seen;
        assert!(
            wait_until(|| self.rx.used_idx() != seen),
            "no packet for the guest"
        );
        let (head, len) = self.rx.used_elem(seen);
        self.rx_seen = seen.wrapping_add(1);
        let mut bytes = vec![0u8; len as usize];
        self.mem
            .read_slice(&mut bytes, GuestAddress(RX_BUFS + u64::from(head) * 0x2000))
            .unwrap();
        self.add_rx_buffer();
        let h = Header::parse(&bytes).unwrap();
        (h, bytes[HDR_LEN..].to_vec())
    }

    fn no_packet_for(&self, d: Duration) -> bool {
        std::thread::sleep(d);
        self.rx.used_idx() == self.rx_seen
    }

    /// The guest sends raw bytes as one transmit chain; whether the device took it within `d`.
    fn send_raw_within(&mut self, bytes: &[u8], d: Duration) -> bool {
        let slot = u64::from(self.tx_added % 8);
        let addr = TX_BUFS + slot * 0x1_1000;
        self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
        self.tx.add_chain(&[(addr, bytes.len() as u32, 0)]);
        self.tx_added = self.tx_added.wrapping_add(1);
        self.kicks[1].write(1).unwrap();
        let want = self.tx_added;
        let deadline = std::time::Instant::now() + d;
        while self.tx.used_idx() != want {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// As [`send_raw_within`], giving up after 200 ms.
    fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        self.send_raw_within(bytes, Duration::from_millis(200))
    }

    /// The guest sends raw bytes as one transmit chain and waits until the device took it.
    fn send_raw(&mut self, bytes: &[u8]) {
        assert!(
            self.send_raw_within(bytes, Duration::from_secs(5)),
            "chain not taken"
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        op: Op,
        guest_port: u32,
        host_port: u32,
        flags: u32,
        buf_alloc: u32,
        fwd: u32,
        data: &[u8],
    ) {
        let h = Header {
            src_cid: CID,
            dst_cid: HOST_CID,
            src_port: guest_port,
            dst_port: host_port,
            len: data.len() as u32,
            kind: packet::TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt: fwd,
        };
        let mut bytes = h.to_bytes().to_vec();
        bytes.extend_from_slice(data);
        self.send_raw(&bytes);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_line(s: &mut UnixStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8];
    while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        out.push(b[0]);
    }
    String::from_utf8(out).unwrap()
}

/// Host client: CONNECT, the guest's REQUEST and RESPONSE, then "OK <port>".
fn connect_from_host(g: &mut Guest, guest_port: u32, guest_buf: u32) -> (UnixStream, u32) {
    let mut s = UnixStream::connect(g.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    writeln!(s, "CONNECT {guest_port}").unwrap();
    let (h, _) = g.recv();
    assert_eq!(h.op, Op::Request);
    assert_eq!(
        (h.src_cid, h.dst_cid, h.dst_port),
        (HOST_CID, CID, guest_port)
    );
    assert_eq!(h.buf_alloc, BUF_ALLOC);
    g.send(Op::Response, guest_port, h.src_port, 0, guest_buf, 0, &[]);
    assert_eq!(read_line(&mut s), format!("OK {}", h.src_port));
    (s, h.src_port)
}

#[test]
fn a_host_client_connects_to_a_guest_port_and_bytes_flow_both_ways_until_the_guest_closes() {
    let mut g = Guest::new("host-initiated");
    let (mut s, hp) = connect_from_host(&mut g, 5000, 64 * 1024);
    s.write_all(b"hello guest").unwrap();
    let (h, data) = g.recv();
    assert_eq!((h.op, h.src_port, h.dst_port), (Op::Rw, hp, 5000));
    assert_eq!(data, b"hello guest");
    g.send(Op::Rw, 5000, hp, 0, 64 * 1024, 11, b"hello host");
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello host");
    // What the guest is told was forwarded is its 10 bytes, not the OK line too (a fwd_cnt
    // ahead of what it sent leaves a Linux guest no room to send at all).
    g.send(Op::CreditRequest, 5000, hp, 0, 64 * 1024, 11, &[]);
    let (h, _) = g.recv();
    assert_eq!((h.op, h.fwd_cnt), (Op::CreditUpdate, 10));
    // The guest closes: the host reads the end, the guest gets the RST that confirms it.
    g.send(
        Op::Shutdown,
        5000,
        hp,
        SHUTDOWN_RCV | SHUTDOWN_SEND,
        64 * 1024,
        11,
        &[],
    );
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    let (h, _) = g.recv();
    assert_eq!((h.op, h.dst_port), (Op::Rst, 5000));
}

#[test]
fn a_guest_connection_to_host_port_p_reaches_socket_path_p_or_is_reset() {
    let mut g = Guest::new("guest-initiated");
    let listener = UnixListener::bind(format!("{}_7000", g.socket().display())).unwrap();
    g.send(Op::Request, 1234, 7000, 0, 4096, 0, &[]);
    let (h, _) = g.recv();
    assert_eq!((h.op, h.src_port, h.dst_port), (Op::Response, 7000, 1234));
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    g.send(Op::Rw, 1234, 7000, 0, 4096, 0, b"ping");
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    // The host side goes away: the guest is told the stream ended.
    drop(s);
    let (h, _) = g.recv();
    assert_eq!(h.op, Op::Shutdown);
    assert_ne!(h.flags & SHUTDOWN_SEND, 0);
    // Nothing listens on port 7001.
    g.send(Op::Request, 1235, 7001, 0, 4096, 0, &[]);
    let (h, _) = g.recv();
    assert_eq!((h.op, h.dst_port), (Op::Rst, 1235));
}

#[test]
fn the_host_sends_no_more_than_the_guest_has_room_for() {
    let mut g = Guest::new("credit");
    let (mut s, hp) = connect_from_host(&mut g, 5001, 1000);
    s.write_all(&[7u8; 5000]).unwrap();
    let mut got = 0;
    while got < 1000 {
        let (h, data) = g.recv();
        assert_eq!(h.op, Op::Rw);
        got += data.len();
    }
    assert_eq!(got, 1000);
    assert!(
        g.no_packet_for(Duration::from_millis(100)),
        "sent past the guest's credit"
    );
    // The guest consumed it all: 1000 more.
    g.send(Op::CreditUpdate, 5001, hp, 0, 1000, 1000, &[]);
    let mut more = 0;
    while more < 1000 {
        more += g.recv().1.len();
    }
    assert_eq!(more, 1000);
    // A credit request is answered with our counters.
    g.send(Op::CreditRequest, 5001, hp, 0, 1000, 2000, &[]);
    let (h, _) = g.recv();
    assert_eq!((h.op, h.buf_alloc), (Op::CreditUpdate, BUF_ALLOC));
}

#[test]
fn hostile_packets_are_dropped_or_reset_only_their_stream() {
    let mut g = Guest::new("hostile");
    let (mut s, hp) = connect_from_host(&mut g, 5002, 64 * 1024);
    // A header cut short, an unknown op, a wrong source CID: dropped, nothing answers.
    g.send_raw(&[1u8; 20]);
    let mut raw = Header {
        src_cid: CID,
        dst_cid: HOST_CID,
        src_port: 5002,
        dst_port: hp,
        len: 0,
        kind: packet::TYPE_STREAM,
        op: Op::Rw,
        flags: 0,
        buf_alloc: 0,
        fwd_cnt: 0,
    }
    .to_bytes();
    let mut spoofed = raw;
    spoofed[0] = 7;
    g.send_raw(&spoofed);
    raw[30] = 99;
    g.send_raw(&raw);
    assert!(g.no_packet_for(Duration::from_millis(50)));
    // A payload longer than the chain: this stream is reset.
    let mut h = Header::parse(&{
        let mut r = raw;
        r[30] = 5;
        r
    })
    .unwrap();
    h.len = 100;
    let mut b = h.to_bytes().to_vec();
    b.extend_from_slice(b"short");
    g.send_raw(&b);
    let (r, _) = g.recv();
    assert_eq!((r.op, r.dst_port), (Op::Rst, 5002));
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 0, "the host stream is closed");
    // Data on a stream that does not exist: RST, and another stream is not disturbed.
    let (mut s2, hp2) = connect_from_host(&mut g, 5003, 64 * 1024);
    g.send(Op::Rw, 9999, hp, 0, 4096, 0, b"nobody");
    let (r, _) = g.recv();
    assert_eq!((r.op, r.dst_port), (Op::Rst, 9999));
    g.send(Op::Rw, 5003, hp2, 0, 4096, 0, b"still");
    let mut five = [0u8; 5];
    s2.read_exact(&mut five).unwrap();
    assert_eq!(&five, b"still");
    // A bad CONNECT line is closed without troubling the guest.
    let mut bad = UnixStream::connect(g.socket()).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    bad.write_all(b"HELLO 12\n").unwrap();
    assert_eq!(bad.read(&mut buf).unwrap(), 0);
    assert!(g.no_packet_for(Duration::from_millis(50)));
}

#[test]
fn what_a_guest_sent_before_closing_reaches_a_slow_host_whole() {
    // Found by the lab: a 64 MiB echo came back 30 KiB short when the host read slowly. The
    // guest's last bytes were still queued for the host when it closed (SHUTDOWN both ways),
    // and the stream was dropped with them.
    let mut g = Guest::new("close-while-queued");
    let (mut s, hp) = connect_from_host(&mut g, 5006, 64 * 1024);
    let chunk: Vec<u8> = (0..60 * 1024).map(|i| (i % 251) as u8).collect();
    // More than the host socket's buffer takes while nobody reads it (within the credit).
    let chunks = 4;
    for _ in 0..chunks {
        g.send(Op::Rw, 5006, hp, 0, 64 * 1024, 0, &chunk);
    }
    g.send(
        Op::Shutdown,
        5006,
        hp,
        SHUTDOWN_RCV | SHUTDOWN_SEND,
        64 * 1024,
        0,
        &[],
    );
    // The host now reads: every byte, then the end.
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), chunks * chunk.len());
    assert!(got.chunks(chunk.len()).all(|c| c == &chunk[..]));
    // And the guest gets its RST once all is out (after any credit updates).
    loop {
        let (h, _) = g.recv();
        if h.op == Op::Rst {
            assert_eq!(h.dst_port, 5006);
            break;
        }
        assert_eq!(h.op, Op::CreditUpdate, "{h:?}");
    }
}

#[test]
fn a_guest_sending_past_its_credit_to_a_host_that_never_reads_is_reset() {
    let mut g = Guest::new("never-reads");
    let (_s, hp) = connect_from_host(&mut g, 5004, 64 * 1024);
    let chunk = vec![0x55u8; 60 * 1024];
    let mut reset = false;
    for _ in 0..64 {
        g.send(Op::Rw, 5004, hp, 0, 64 * 1024, 0, &chunk);
        if g.rx.used_idx() != g.rx_seen {
            let (h, _) = g.recv();
            if h.op == Op::Rst {
                reset = true;
                break;
            }
        }
    }
    assert!(reset, "4 MiB past a 256 KiB credit and no reset");
}

#[test]
fn a_bad_cid_or_a_path_that_is_not_a_socket_is_refused() {
    let dir = std::env::temp_dir().join(format!("vsock-test-{}-cfg", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("s");
    for cid in [0, 1, 2, u64::from(u32::MAX)] {
        let e = Vsock::new(&VsockConfig {
            cid,
            socket: socket.clone(),
            id: None,
            pci_segment: 0,
            pci_device_id: None,
        })
        .err()
        .unwrap();
        assert!(matches!(e, VsockError::Cid(c) if c == cid));
    }
    let cfg = |cid| VsockConfig {
        cid,
        socket: socket.clone(),
        id: None,
        pci_segment: 0,
        pci_device_id: None,
    };
    let first = Vsock::new(&cfg(3)).unwrap();
    // Another VM's live socket is not taken over.
    let e = Vsock::new(&cfg(4)).err().unwrap();
    assert!(matches!(e, VsockError::Listen { .. }), "{e}");
    drop(first);
    // The socket file left behind is replaced; a regular file there is not.
    Vsock::new(&cfg(4)).unwrap();
    let _ = std::fs::remove_file(&socket);
    std::fs::write(&socket, b"not a socket").unwrap();
    assert!(matches!(
        Vsock::new(&cfg(5)),
        Err(VsockError::Listen { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn streams_stay_open_across_a_pause_and_close_on_a_reset() {
    let mut g = Guest::new("pause");
    let (mut s, hp) = connect_from_host(&mut g, 5005, 64 * 1024);
    g.pause_and_resume();
    // Written while paused or after: it reaches the guest on the same stream.
    s.write_all(b"after the snapshot").unwrap();
    let (h, data) = g.recv();
    assert_eq!((h.op, h.src_port), (Op::Rw, hp));
    assert_eq!(data, b"after the snapshot");
    g.send(Op::Rw, 5005, hp, 0, 64 * 1024, 18, b"back");
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"back");
    // A driver reset ends every stream.
    assert!(g.dev.reset());
    assert_eq!(s.read(&mut b).unwrap(), 0);
}

#[test]
fn a_restored_device_tells_the_guest_its_transport_was_reset_and_a_booted_one_does_not() {
    let booted = Guest::new("booted-no-event");
    assert!(booted.no_packet_for(Duration::from_millis(50)));
    assert_eq!(booted._ev.used_idx(), 0, "no event on a plain activation");
    let g = Guest::build("restored-event", true);
    assert!(
        wait_until(|| g._ev.used_idx() == 1),
        "no transport reset event"
    );
    assert_eq!(g._ev.used_elem(0).1, 4);
    let id: u32 = g.mem.read_obj(GuestAddress(EVENT_BUF)).unwrap();
    assert_eq!(id, 0, "VIRTIO_VSOCK_EVENT_TRANSPORT_RESET");
    assert!(!g.dev.config_fixed_across_restore());
}

/// CPU time (user + system) of this whole test process, in seconds.
fn process_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

#[test]
fn a_guest_streaming_through_an_echoing_host_finishes_and_the_worker_never_spins() {
    let mut g = Guest::new("stream");
    let path = format!("{}_7200", g.socket().display());
    let listener = UnixListener::bind(&path).unwrap();
    // The host end echoes everything, then closes when the guest stops sending.
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut total = 0usize;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
            total += n;
        }
        total
    });
    const GUEST_BUF: u32 = 256 * 1024;
    const TOTAL: usize = 2 << 20;
    g.send(Op::Request, 4000, 7200, 0, GUEST_BUF, 0, &[]);
    let (h, _) = g.recv();
    assert_eq!(h.op, Op::Response);
    let (mut sent, mut echoed) = (0usize, Vec::new());
    // The guest's view of the host's credit, and its own receive counters.
    let (mut host_buf, mut host_fwd) = (h.buf_alloc, h.fwd_cnt);
    let (mut fwd, mut fwd_told) = (0u32, 0u32);
    let started = process_cpu();
    let mut shut = false;
    while echoed.len() < TOTAL {
        let host_free = host_buf.saturating_sub(sent as u32 - host_fwd) as usize;
        if sent < TOTAL && host_free > 0 {
            let n = (TOTAL - sent).min(host_free).min(60 * 1024);
            let data: Vec<u8> = (sent..sent + n).map(|i| (i * 7) as u8).collect();
            g.send(Op::Rw, 4000, 7200, 0, GUEST_BUF, fwd, &data);
            sent += n;
            continue;
        }
        if sent == TOTAL && !shut {
            g.send(Op::Shutdown, 4000, 7200, SHUTDOWN_SEND, GUEST_BUF, fwd, &[]);
            shut = true;
        }
        let (h, data) = g.recv();
        (host_buf, host_fwd) = (h.buf_alloc, h.fwd_cnt);
        if h.op == Op::Rw {
            echoed.extend_from_slice(&data);
            fwd += data.len() as u32;
            // As Linux: a credit update once less than 64 KiB of its buffer is announced free.
            if GUEST_BUF - (fwd - fwd_told) < 64 * 1024 {
                g.send(Op::CreditUpdate, 4000, 7200, 0, GUEST_BUF, fwd, &[]);
                fwd_told = fwd;
            }
        }
    }
    let expect: Vec<u8> = (0..TOTAL).map(|i| (i * 7) as u8).collect();
    assert!(echoed == expect, "the echo differs");
    // The host closed after the guest's SHUTDOWN: the guest is told, then it closes.
    let (h, _) = g.recv();
    assert_eq!(h.op, Op::Shutdown);
    g.send(
        Op::Shutdown,
        4000,
        7200,
        SHUTDOWN_SEND | SHUTDOWN_RCV,
        GUEST_BUF,
        fwd,
        &[],
    );
    assert_eq!(echo.join().unwrap(), TOTAL);
    let busy = process_cpu() - started;
    // Idle now: the worker must sleep.
    let idle0 = process_cpu();
    std::thread::sleep(Duration::from_millis(300));
    let idle = process_cpu() - idle0;
    assert!(
        idle < 0.05,
        "{idle:.3} s of CPU in 300 ms idle: a thread spins"
    );
    eprintln!("2 MiB each way: {busy:.3} s of CPU");
}

#[test]
fn a_guest_flooding_packets_without_receive_buffers_is_held_back_not_buffered_without_bound() {
    let mut g = Guest::new("flood");
    // Data for streams that do not exist: each wants an RST back. The guest's 32 receive
    // buffers take the first answers; then the device keeps at most MAX_CONTROL waiting and
    // stops taking transmit chains.
    let rw = |port: u32| {
        let mut b = Header {
            src_cid: CID,
            dst_cid: HOST_CID,
            src_port: port,
            dst_port: 9,
            len: 1,
            kind: packet::TYPE_STREAM,
            op: Op::Rw,
            flags: 0,
            buf_alloc: 0,
            fwd_cnt: 0,
        }
        .to_bytes()
        .to_vec();
        b.push(b'x');
        b
    };
    let mut taken = 0usize;
    for port in 0..2000u32 {
        if !g.try_send_raw(&rw(port)) {
            break;
        }
        taken += 1;
    }
    assert!(
        taken <= 32 + muxer::MAX_CONTROL + 1,
        "{taken} chains taken with no receive buffer to answer in"
    );
    // Receive buffers drain the answers, and the held chain and the rest go through.
    let mut rsts = 0;
    while rsts < taken + 1 {
        let (h, _) = g.recv();
        assert_eq!(h.op, Op::Rst);
        rsts += 1;
    }
    for port in 5000..5010u32 {
        g.send_raw(&rw(port));
    }
}
