//! The vsock worker's handler: guest streams to and from unix sockets on the host, as Cloud
//! Hypervisor's and Firecracker's "hybrid vsock" does it.
//!
//! * **Host-initiated**: a client connects to the device's unix socket `PATH` and writes
//!   `CONNECT <port>\n`; the device picks a host port, asks the guest for a stream to `<port>`
//!   (REQUEST) and, once the guest's listener accepted (RESPONSE), answers `OK <host port>\n`;
//!   from then on the unix stream is the vsock stream.
//! * **Guest-initiated**: a guest connection to the host (CID 2) port `P` is a connection to the
//!   unix socket `PATH_P`; refused (RST) when nothing listens there.
//!
//! Flow control is the spec's credit scheme, both ways. Toward the host, the device buffers at
//! most [`BUF_ALLOC`] bytes per stream (what it advertises as its `buf_alloc`) and tells the guest
//! how far it got (`fwd_cnt`) when half of that was written out; a guest that sends beyond its
//! credit has its stream reset. Toward the guest, a stream is read only while the guest has room
//! (its `buf_alloc` minus what is in flight). A host peer that goes away ends only its stream
//! (SHUTDOWN when it stops sending, RST when a write to it fails); a guest RST or full SHUTDOWN
//! closes the unix stream.
//!
//! All of it runs on the device's worker thread. The unix sockets are in an epoll of the
//! handler's own (edge-triggered), which the worker waits on as one more source.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use log::{debug, warn};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::credit::Credit;
use super::packet::{
    Header, Op, HDR_LEN, HOST_CID, MAX_PAYLOAD, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};
use super::unix::{accept_nonblocking, connect_nonblocking};
use crate::virtio::chain::{gather, scatter, ChainBuffers};
use crate::virtio::device::{QueuePosition, VirtioInterrupt};
use crate::virtio::queue::DeviceQueue;
use crate::virtio::worker::{BackendHandler, EventHandler};

/// What the device buffers per stream toward the host, and advertises as its `buf_alloc`.
pub const BUF_ALLOC: u32 = 256 * 1024;
/// The longest `CONNECT <port>\n` line read from a host client.
const MAX_CONNECT_LINE: usize = 32;
/// Host ports the device gives host-initiated streams start here.
const FIRST_HOST_PORT: u32 = 1 << 30;

/// Worker tokens: the three queues and the handler's own epoll.
pub const RX_TOKEN: u64 = 0;
pub const TX_TOKEN: u64 = 1;
pub const EVENT_TOKEN: u64 = 2;
pub const SOCKETS_TOKEN: u64 = 3;
/// Packets without payload (RST, RESPONSE, credit updates...) waiting for receive buffers at
/// most: past that the worker stops taking transmit chains until the guest gives buffers (a
/// guest flooding packets that each want an answer, with no buffer to answer in, cannot make
/// the queue grow without bound).
pub const MAX_CONTROL: usize = 1024;
/// Open streams (and host clients not yet through their CONNECT line) at most: a guest or a
/// host client opening more is refused (RST / closed), so neither can exhaust the VMM's fds.
pub const MAX_STREAMS: usize = 4096;
/// Rounds of socket events handled per turn of the worker.
const SOCKET_ROUNDS: usize = 8;
/// The listener's token in the handler's epoll (streams have 1, 2, ...).
const LISTENER: u64 = 0;

/// What the device keeps between activations: the guest's CID, the listening socket and,
/// across a pause (a snapshot of a VM that goes on), its open streams.
pub struct VsockBackend {
    pub cid: u64,
    pub path: PathBuf,
    pub listener: UnixListener,
    pub(crate) streams: Option<Streams>,
    /// A transport reset event is owed to the guest (the device was restored).
    pub(crate) reset_event: bool,
}

/// `VIRTIO_VSOCK_EVENT_TRANSPORT_RESET`: `struct virtio_vsock_event { le32 id; }`.
const EVENT_TRANSPORT_RESET: u32 = 0;

/// A device's streams: kept by its worker, and by the backend while the device is paused.
pub(crate) struct Streams {
    /// The unix sockets' epoll (the worker waits on it as one more source).
    sockets: Epoll,
    conns: HashMap<u64, Conn>,
    by_ports: HashMap<(u32, u32), u64>,
    handshakes: HashMap<u64, Handshake>,
    /// Packets without payload waiting for a receive buffer.
    control: VecDeque<Header>,
    /// Streams whose host side may have data (edge-triggered: until a read would block).
    readable: BTreeSet<u64>,
    next_token: u64,
    next_port: u32,
}

impl Streams {
    fn new(listener: &UnixListener) -> io::Result<Self> {
        let sockets = Epoll::new()?;
        sockets.ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, LISTENER),
        )?;
        Ok(Streams {
            sockets,
            conns: HashMap::new(),
            by_ports: HashMap::new(),
            handshakes: HashMap::new(),
            control: VecDeque::new(),
            readable: BTreeSet::new(),
            next_token: 1,
            next_port: FIRST_HOST_PORT,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Host-initiated: REQUEST sent, waiting for the guest's RESPONSE.
    Connecting,
    Established,
}

struct Conn {
    stream: UnixStream,
    host_port: u32,
    guest_port: u32,
    state: State,
    credit: Credit,
    /// Guest data not yet written to the host stream.
    to_host: VecDeque<u8>,
    /// Bytes at the front of `to_host` that are ours (the `OK <port>` line), not the
    /// guest's: they do not count in `fwd_cnt` (a guest told it was forwarded more than it
    /// sent sees no room at all and stops sending).
    ours: usize,
    /// Host bytes read with the CONNECT line, sent to the guest first.
    early: Vec<u8>,
    /// The guest will send no more: shut the host stream's write side once `to_host` is out.
    guest_done_sending: bool,
    /// The guest will receive no more: stop reading the host stream.
    guest_done_receiving: bool,
    /// The host stream reached its end (SHUTDOWN sent) or hung up.
    host_eof: bool,
    /// Its write side is shut (once: every shutdown(2) wakes the socket's waiters, and with
    /// it this worker's edge-triggered epoll).
    host_write_shut: bool,
    host_hup: bool,
    /// The guest closed its end (SHUTDOWN both ways) while what it had sent was still on its
    /// way to the host: the stream is closed (RST to the guest) once `to_host` is out, not
    /// before (its last bytes would be lost).
    closing: bool,
}

/// A packet from the host's end of `c` to the guest `cid`, with our credit.
fn hdr(cid: u64, c: &Conn, op: Op, len: u32, flags: u32) -> Header {
    Header::to_guest(
        cid,
        c.host_port,
        c.guest_port,
        op,
        len,
        flags,
        BUF_ALLOC,
        c.credit.fwd_cnt,
    )
}

/// A host client that connected and has not finished its `CONNECT <port>\n` line.
struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
}

pub(crate) struct VsockHandler {
    backend: VsockBackend,
    mem: GuestMemoryMmap,
    rx: DeviceQueue,
    tx: DeviceQueue,
    event: Option<DeviceQueue>,
    irq: Arc<dyn VirtioInterrupt>,
    /// The streams and their sockets: handed to the backend when the worker stops, so a
    /// pause keeps them.
    s: Streams,
    /// A receive chain taken from the ring and not used yet (head, buffers).
    stash: Option<(u16, ChainBuffers)>,
    buf: Vec<u8>,
    /// Transmit chains wait because `s.control` is full.
    tx_backlogged: bool,
}

impl VsockHandler {
    pub(crate) fn new(
        mut backend: VsockBackend,
        mem: GuestMemoryMmap,
        rx: DeviceQueue,
        tx: DeviceQueue,
        event: Option<DeviceQueue>,
        irq: Arc<dyn VirtioInterrupt>,
    ) -> Result<Self, Box<(VsockBackend, io::Error)>> {
        let streams = match backend.streams.take() {
            Some(s) => s,
            None => match Streams::new(&backend.listener) {
                Ok(s) => s,
                Err(e) => return Err(Box::new((backend, e))),
            },
        };
        let mut h = VsockHandler {
            backend,
            mem,
            rx,
            tx,
            event,
            irq,
            s: streams,
            stash: None,
            buf: vec![0u8; HDR_LEN + MAX_PAYLOAD as usize],
            tx_backlogged: false,
        };
        h.send_reset_event();
        Ok(h)
    }

    /// The fd the worker waits on for the unix sockets' events.
    pub fn sockets_fd(&self) -> i32 {
        self.s.sockets.as_raw_fd()
    }

    fn rst_to(&mut self, host_port: u32, guest_port: u32) {
        let h = Header::to_guest(self.backend.cid, host_port, guest_port, Op::Rst, 0, 0, 0, 0);
        self.s.control.push_back(h);
    }

    /// Close a stream and tell the guest (RST) unless it is the one that reset it.
    fn kill(&mut self, token: u64, tell_guest: bool) {
        if let Some(c) = self.s.conns.remove(&token) {
            self.s.by_ports.remove(&(c.host_port, c.guest_port));
            self.s.readable.remove(&token);
            let _ = self.s.sockets.ctl(
                ControlOperation::Delete,
                c.stream.as_raw_fd(),
                EpollEvent::default(),
            );
            if tell_guest {
                self.rst_to(c.host_port, c.guest_port);
            }
        }
    }

    fn watch(&mut self, stream: UnixStream, token: u64) -> io::Result<UnixStream> {
        let events =
            EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        self.s.sockets.ctl(
            ControlOperation::Add,
            stream.as_raw_fd(),
            EpollEvent::new(events, token),
        )?;
        Ok(stream)
    }

    fn new_conn(
        &mut self,
        stream: UnixStream,
        host_port: u32,
        guest_port: u32,
        state: State,
    ) -> Conn {
        Conn {
            stream,
            host_port,
            guest_port,
            state,
            credit: Credit::default(),
            to_host: VecDeque::new(),
            ours: 0,
            early: Vec::new(),
            guest_done_sending: false,
            guest_done_receiving: false,
            host_eof: false,
            host_hup: false,
            host_write_shut: false,
            closing: false,
        }
    }

    // ---- guest → host ----------------------------------------------------------------

    /// Every transmit chain: parse, act, complete.
    fn process_tx(&mut self) {
        let mut done = 0;
        loop {
            self.tx.disable_notification(&self.mem);
            while self.s.control.len() < MAX_CONTROL {
                let Some(chain) = self.tx.pop(&self.mem) else {
                    break;
                };
                let head = chain.head_index();
                let n = match ChainBuffers::parse(&self.mem, chain) {
                    Ok(bufs) => {
                        let want = (bufs.readable_len() as usize).min(self.buf.len());
                        gather(&self.mem, &bufs.readable, &mut self.buf[..want]).unwrap_or(0)
                    }
                    Err(e) => {
                        warn!("virtio-vsock: dropping a malformed transmit chain: {e}");
                        0
                    }
                };
                self.tx.add_used(&self.mem, head, 0);
                done += 1;
                let packet = self.buf[..n].to_vec();
                self.on_guest_packet(&packet);
            }
            if self.s.control.len() >= MAX_CONTROL {
                // Backlogged: taken up again once the guest's receive buffers drain it.
                self.tx_backlogged = true;
                break;
            }
            if !self.tx.enable_notification(&self.mem) {
                break;
            }
        }
        if done > 0 {
            self.tx.signal_used(&self.mem, &self.irq);
        }
    }

    /// One packet the guest sent (header and payload as read from its chain).
    pub fn on_guest_packet(&mut self, bytes: &[u8]) {
        let h = match Header::parse(bytes) {
            Ok(h) => h,
            Err(e) => {
                debug!("virtio-vsock: dropping a packet: {e}");
                return;
            }
        };
        if h.src_cid != self.backend.cid || h.dst_cid != HOST_CID {
            debug!(
                "virtio-vsock: dropping a packet from CID {} to CID {} (the guest is {})",
                h.src_cid, h.dst_cid, self.backend.cid
            );
            return;
        }
        let (host_port, guest_port) = (h.dst_port, h.src_port);
        if h.kind != TYPE_STREAM {
            if h.op != Op::Rst {
                self.rst_to(host_port, guest_port);
            }
            return;
        }
        if let Err(e) = h.check_payload(bytes.len() - HDR_LEN) {
            debug!("virtio-vsock: resetting {host_port}:{guest_port}: {e}");
            if let Some(&t) = self.s.by_ports.get(&(host_port, guest_port)) {
                self.kill(t, true);
            } else if h.op != Op::Rst {
                self.rst_to(host_port, guest_port);
            }
            return;
        }
        let payload = &bytes[HDR_LEN..HDR_LEN + h.len as usize];
        log::trace!(
            "virtio-vsock: {:?} {}:{} len {} flags {:#x} buf_alloc {} fwd_cnt {}",
            h.op,
            host_port,
            guest_port,
            h.len,
            h.flags,
            h.buf_alloc,
            h.fwd_cnt
        );
        let Some(&token) = self.s.by_ports.get(&(host_port, guest_port)) else {
            match h.op {
                Op::Request => self.guest_connects(&h),
                Op::Rst => {}
                _ => self.rst_to(host_port, guest_port),
            }
            return;
        };
        let cid = self.backend.cid;
        let Some(c) = self.s.conns.get_mut(&token) else {
            return;
        };
        c.credit.update_from(&h);
        match h.op {
            Op::Request => self.kill(token, true),
            Op::Response if c.state == State::Connecting => {
                c.state = State::Established;
                let ok = format!("OK {}\n", c.host_port);
                c.to_host.extend(ok.as_bytes());
                c.ours = ok.len();
                // Host bytes that came with the CONNECT line go to the guest first.
                self.s.readable.insert(token);
                self.flush(token);
            }
            Op::Response => self.kill(token, true),
            Op::Rst => self.kill(token, false),
            Op::Shutdown => {
                c.guest_done_sending |= h.flags & SHUTDOWN_SEND != 0;
                c.guest_done_receiving |= h.flags & SHUTDOWN_RCV != 0;
                // What the guest sent goes out, now or as the host takes it; a guest that
                // closed its end waits for the RST that confirms the close, which comes once
                // it is all out (flush).
                c.closing = c.guest_done_sending && c.guest_done_receiving;
                self.flush(token);
            }
            Op::Rw => {
                if c.state != State::Established || c.guest_done_sending {
                    self.kill(token, true);
                } else if c.to_host.len() + payload.len() > BUF_ALLOC as usize {
                    warn!(
                        "virtio-vsock: the guest sent past its credit on {}:{}; resetting the \
                         stream",
                        c.host_port, c.guest_port
                    );
                    self.kill(token, true);
                } else {
                    c.to_host.extend(payload);
                    self.flush(token);
                }
            }
            Op::CreditUpdate => {}
            Op::CreditRequest => {
                c.credit.fwd_cnt_sent = c.credit.fwd_cnt;
                let h = hdr(cid, c, Op::CreditUpdate, 0, 0);
                self.s.control.push_back(h);
            }
        }
    }

    /// A guest REQUEST to host port P: a connection to the unix socket `PATH_P`.
    fn guest_connects(&mut self, h: &Header) {
        let cid = self.backend.cid;
        let (host_port, guest_port) = (h.dst_port, h.src_port);
        if self.s.conns.len() + self.s.handshakes.len() >= MAX_STREAMS {
            warn!("virtio-vsock: {MAX_STREAMS} streams open; refusing the guest's connection to host port {host_port}");
            self.rst_to(host_port, guest_port);
            return;
        }
        let path = format!("{}_{host_port}", self.backend.path.display());
        let token = self.s.next_token;
        let stream = connect_nonblocking(&path).and_then(|s| self.watch(s, token));
        match stream {
            Ok(stream) => {
                self.s.next_token += 1;
                let mut c = self.new_conn(stream, host_port, guest_port, State::Established);
                c.credit.update_from(h);
                let resp = hdr(cid, &c, Op::Response, 0, 0);
                self.s.control.push_back(resp);
                self.s.by_ports.insert((host_port, guest_port), token);
                self.s.conns.insert(token, c);
                self.s.readable.insert(token);
            }
            Err(e) => {
                debug!("virtio-vsock: guest connection to {path}: {e}");
                self.rst_to(host_port, guest_port);
            }
        }
    }

    /// Write what the guest sent to the host stream, as far as it takes it.
    fn flush(&mut self, token: u64) {
        let cid = self.backend.cid;
        let Some(c) = self.s.conns.get_mut(&token) else {
            return;
        };
        let mut failed = false;
        while !c.to_host.is_empty() {
            let (a, _) = c.to_host.as_slices();
            match c.stream.write(a) {
                Ok(0) => break,
                Ok(n) => {
                    c.to_host.drain(..n);
                    let ours = n.min(c.ours);
                    c.ours -= ours;
                    c.credit.fwd_cnt = c.credit.fwd_cnt.wrapping_add((n - ours) as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(
                        "virtio-vsock: the host end of {}:{} went away: {e}",
                        c.host_port, c.guest_port
                    );
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            self.kill(token, true);
            return;
        }
        if c.to_host.is_empty() && c.guest_done_sending && !c.host_write_shut {
            c.host_write_shut = true;
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        if c.closing && c.to_host.is_empty() {
            self.kill(token, true);
            return;
        }
        if c.credit.update_due() {
            c.credit.fwd_cnt_sent = c.credit.fwd_cnt;
            let h = hdr(cid, c, Op::CreditUpdate, 0, 0);
            self.s.control.push_back(h);
        }
    }

    // ---- host sockets ------------------------------------------------------------------

    fn process_sockets(&mut self) {
        let mut events = [EpollEvent::default(); 32];
        // Bounded: what is still ready after that many rounds waits for the worker's next
        // turn (its epoll reports this one again), after the queues.
        for _ in 0..SOCKET_ROUNDS {
            let n = match self.s.sockets.wait(0, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("virtio-vsock: epoll_wait: {e}");
                    return;
                }
            };
            if n == 0 {
                return;
            }
            for ev in &events[..n] {
                let (token, set) = (ev.data(), ev.event_set());
                if token == LISTENER {
                    self.accept_all();
                } else if self.s.handshakes.contains_key(&token) {
                    self.read_connect_line(token);
                } else if let Some(c) = self.s.conns.get_mut(&token) {
                    if set.intersects(EventSet::HANG_UP | EventSet::ERROR) {
                        c.host_hup = true;
                    }
                    if set.intersects(
                        EventSet::IN | EventSet::READ_HANG_UP | EventSet::HANG_UP | EventSet::ERROR,
                    ) {
                        self.s.readable.insert(token);
                    }
                    if set.contains(EventSet::OUT) {
                        self.flush(token);
                    }
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match accept_nonblocking(&self.backend.listener) {
                Ok(stream) if self.s.conns.len() + self.s.handshakes.len() >= MAX_STREAMS => {
                    warn!("virtio-vsock: {MAX_STREAMS} streams open; closing a new host client");
                    drop(stream);
                }
                Ok(stream) => {
                    let token = self.s.next_token;
                    let ok = self.s.sockets.ctl(
                        ControlOperation::Add,
                        stream.as_raw_fd(),
                        EpollEvent::new(EventSet::IN, token),
                    );
                    if let Err(e) = ok {
                        warn!("virtio-vsock: cannot watch a new host connection: {e}");
                        continue;
                    }
                    self.s.next_token += 1;
                    self.s.handshakes.insert(
                        token,
                        Handshake {
                            stream,
                            line: Vec::new(),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(
                        "virtio-vsock: accept on {}: {e}",
                        self.backend.path.display()
                    );
                    return;
                }
            }
        }
    }

    /// A host client's `CONNECT <port>\n`; on a whole line, the REQUEST to the guest.
    fn read_connect_line(&mut self, token: u64) {
        let cid = self.backend.cid;
        let Some(hs) = self.s.handshakes.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; MAX_CONNECT_LINE];
        let closed = loop {
            match hs.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => {
                    hs.line.extend_from_slice(&chunk[..n]);
                    if hs.line.contains(&b'\n') || hs.line.len() > MAX_CONNECT_LINE {
                        break false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        let hs = self.s.handshakes.remove(&token).expect("looked up above");
        let _ = self.s.sockets.ctl(
            ControlOperation::Delete,
            hs.stream.as_raw_fd(),
            EpollEvent::default(),
        );
        if closed {
            return;
        }
        let Some(nl) = hs.line.iter().position(|&b| b == b'\n') else {
            debug!("virtio-vsock: a host client sent no CONNECT line; closing it");
            return;
        };
        let port = std::str::from_utf8(&hs.line[..nl])
            .ok()
            .and_then(|l| l.trim_end_matches('\r').strip_prefix("CONNECT "))
            .and_then(|p| p.trim().parse::<u32>().ok());
        let Some(guest_port) = port else {
            debug!("virtio-vsock: a host client sent a bad CONNECT line; closing it");
            return;
        };
        let early = hs.line[nl + 1..].to_vec();
        let host_port = self.free_host_port(guest_port);
        let Ok(stream) = self.watch(hs.stream, token) else {
            return;
        };
        let mut c = self.new_conn(stream, host_port, guest_port, State::Connecting);
        c.early = early;
        let req = hdr(cid, &c, Op::Request, 0, 0);
        debug!(
            "virtio-vsock: host client asks for guest port {guest_port} (host port {host_port})"
        );
        self.s.control.push_back(req);
        self.s.by_ports.insert((host_port, guest_port), token);
        self.s.conns.insert(token, c);
    }

    fn free_host_port(&mut self, guest_port: u32) -> u32 {
        loop {
            let p = self.s.next_port;
            self.s.next_port = self.s.next_port.wrapping_add(1).max(FIRST_HOST_PORT);
            if !self.s.by_ports.contains_key(&(p, guest_port)) {
                return p;
            }
        }
    }

    // ---- host → guest ------------------------------------------------------------------

    fn take_rx_chain(&mut self) -> Option<(u16, ChainBuffers)> {
        if let Some(s) = self.stash.take() {
            return Some(s);
        }
        loop {
            let chain = self.rx.pop(&self.mem)?;
            let head = chain.head_index();
            match ChainBuffers::parse(&self.mem, chain) {
                Ok(b) if b.writable_len() >= HDR_LEN as u64 => return Some((head, b)),
                Ok(_) => {
                    warn!("virtio-vsock: a receive buffer too small for a header; dropped");
                    self.rx.add_used(&self.mem, head, 0);
                }
                Err(e) => {
                    warn!("virtio-vsock: dropping a malformed receive chain: {e}");
                    self.rx.add_used(&self.mem, head, 0);
                }
            }
        }
    }

    fn put(&mut self, head: u16, bufs: &ChainBuffers, h: &Header, payload: &[u8]) {
        let mut bytes = Vec::with_capacity(HDR_LEN + payload.len());
        bytes.extend_from_slice(&h.to_bytes());
        bytes.extend_from_slice(payload);
        let n = scatter(&self.mem, &bufs.writable, &bytes).unwrap_or(0);
        self.rx.add_used(&self.mem, head, n as u32);
    }

    /// Fill receive buffers: control packets first, then data from streams the guest has
    /// room for.
    fn pump_rx(&mut self) {
        let mut used = 0;
        loop {
            if self.s.control.is_empty() && !self.has_rx_work() {
                break;
            }
            let Some((head, bufs)) = self.take_rx_chain() else {
                if self.rx.enable_notification(&self.mem) {
                    continue;
                }
                break;
            };
            if let Some(h) = self.s.control.pop_front() {
                self.put(head, &bufs, &h, &[]);
                used += 1;
                continue;
            }
            let room = (bufs.writable_len() as usize - HDR_LEN).min(MAX_PAYLOAD as usize);
            match self.read_for_guest(room) {
                Some((h, data)) => {
                    self.put(head, &bufs, &h, &data);
                    used += 1;
                }
                None => self.stash = Some((head, bufs)),
            }
        }
        if used > 0 {
            self.rx.signal_used(&self.mem, &self.irq);
        }
    }

    fn has_rx_work(&self) -> bool {
        self.s.readable.iter().any(|t| {
            self.s.conns.get(t).is_some_and(|c| {
                c.state == State::Established
                    && !c.guest_done_receiving
                    && (c.credit.peer_free() > 0 || c.host_eof)
            })
        })
    }

    /// The next packet from a readable stream with guest credit: data (RW), or the SHUTDOWN
    /// that says the host stream ended. None when no stream has anything now.
    fn read_for_guest(&mut self, room: usize) -> Option<(Header, Vec<u8>)> {
        let cid = self.backend.cid;
        let tokens: Vec<u64> = self.s.readable.iter().copied().collect();
        for token in tokens {
            let Some(c) = self.s.conns.get_mut(&token) else {
                self.s.readable.remove(&token);
                continue;
            };
            if c.state != State::Established || c.guest_done_receiving || c.host_eof {
                self.s.readable.remove(&token);
                continue;
            }
            let want = room.min(c.credit.peer_free() as usize);
            if want == 0 {
                // Waits for a credit update from the guest; stays readable.
                continue;
            }
            let mut data = vec![0u8; want];
            let got = if !c.early.is_empty() {
                let n = want.min(c.early.len());
                data[..n].copy_from_slice(&c.early[..n]);
                c.early.drain(..n);
                Ok(n)
            } else {
                c.stream.read(&mut data)
            };
            match got {
                Ok(0) => {
                    c.host_eof = true;
                    self.s.readable.remove(&token);
                    let flags = if c.host_hup {
                        SHUTDOWN_SEND | SHUTDOWN_RCV
                    } else {
                        SHUTDOWN_SEND
                    };
                    let h = hdr(cid, c, Op::Shutdown, 0, flags);
                    return Some((h, Vec::new()));
                }
                Ok(n) => {
                    data.truncate(n);
                    c.credit.tx_cnt = c.credit.tx_cnt.wrapping_add(n as u32);
                    c.credit.fwd_cnt_sent = c.credit.fwd_cnt;
                    let h = hdr(cid, c, Op::Rw, n as u32, 0);
                    return Some((h, data));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.s.readable.remove(&token);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("virtio-vsock: reading a host stream: {e}");
                    self.kill(token, true);
                }
            }
        }
        None
    }

    /// Post the transport reset event owed, if the guest gave an event buffer.
    fn send_reset_event(&mut self) {
        if !self.backend.reset_event {
            return;
        }
        let Some(q) = self.event.as_mut() else {
            return;
        };
        let Some(chain) = q.pop(&self.mem) else {
            return;
        };
        let head = chain.head_index();
        let n = match ChainBuffers::parse(&self.mem, chain) {
            Ok(b) => {
                scatter(&self.mem, &b.writable, &EVENT_TRANSPORT_RESET.to_le_bytes()).unwrap_or(0)
            }
            Err(_) => 0,
        };
        q.add_used(&self.mem, head, n as u32);
        q.signal_used(&self.mem, &self.irq);
        if n == 4 {
            self.backend.reset_event = false;
        }
    }

    /// Where the queues stand; a stashed receive chain goes back to the ring.
    pub fn positions(&self) -> Vec<QueuePosition> {
        let mut out = vec![self.rx.position(u16::from(self.stash.is_some()))];
        out.push(self.tx.position(0));
        out.extend(self.event.iter().map(|q| q.position(0)));
        out
    }
}

impl EventHandler for VsockHandler {
    fn handle_event(&mut self, token: u64, _events: EventSet) {
        match token {
            RX_TOKEN => self.rx.ack_notification(),
            TX_TOKEN => {
                self.tx.ack_notification();
                self.process_tx();
            }
            EVENT_TOKEN => {
                if let Some(q) = &self.event {
                    q.ack_notification();
                }
                self.send_reset_event();
            }
            SOCKETS_TOKEN => self.process_sockets(),
            _ => return,
        }
        // Whatever happened may have made packets for the guest, or room for them.
        self.pump_rx();
        if self.tx_backlogged && self.s.control.len() < MAX_CONTROL / 2 {
            self.tx_backlogged = false;
            self.process_tx();
            self.pump_rx();
        }
    }
}

impl BackendHandler for VsockHandler {
    type Backend = VsockBackend;

    /// The streams stay with the backend (a pause for a snapshot keeps them open; a device
    /// reset drops them, see `Vsock::reset`).
    fn into_backend(mut self) -> VsockBackend {
        // Every open stream is looked at again by the next worker: the host may have written
        // meanwhile, and its edge-triggered readiness will not be reported twice.
        self.s.readable = self.s.conns.keys().copied().collect();
        self.backend.streams = Some(self.s);
        self.backend
    }

    fn queue_positions(&self) -> Vec<QueuePosition> {
        self.positions()
    }
}
