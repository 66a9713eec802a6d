//! Moving frames between a [`Tap`] and one RX/TX queue pair.
//!
//! Frames on the tap carry the 12-byte `virtio_net_hdr_v1` the guest uses,
//! so both directions are copies; the device only fills in `num_buffers` on
//! receive (the tap leaves those 2 bytes alone).
//!
//! **RX.** The tap is polled edge-triggered. A frame read from it is held
//! until it can be delivered: into one chain (without `MRG_RXBUF`; a frame
//! larger than the chain is dropped and the chain kept), or spread over as
//! many chains as needed (with `MRG_RXBUF`, `num_buffers` set to their
//! count). When the guest has posted too few buffers the frame waits,
//! notifications are re-enabled, and the next RX kick resumes delivery and
//! reading. Chains popped but not yet used wait in a stash, so a frame never
//! has to be "un-popped". A frame larger than all the buffers the ring can
//! hold together is dropped rather than waited for.
//!
//! **TX.** Each chain's readable bytes (header + frame, at most
//! [`MAX_FRAME_LEN`]) are written to the tap as one frame. Chains with
//! device-writable buffers, shorter than a header, or too long are dropped.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use log::{debug, warn};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{GuestMemory, GuestMemoryMmap};

use super::tap::{Tap, VNET_HDR_LEN};
use crate::virtio::chain::{gather, scatter, split_at, ChainBuffers};
use crate::virtio::counters::{net, Counters};
use crate::virtio::device::VirtioInterrupt;
use crate::virtio::queue::DeviceQueue;

/// Largest frame (header included) moved in either direction: a 64 KiB GSO
/// frame with Ethernet and VLAN headers.
pub const MAX_FRAME_LEN: usize = VNET_HDR_LEN + 65550;
/// Offset of `num_buffers` in `virtio_net_hdr_v1`.
const NUM_BUFFERS_OFFSET: usize = 10;
const TX_BUDGET: usize = 256;

/// One RX/TX queue pair and its tap.
pub struct QueuePair {
    pub rx: Option<DeviceQueue>,
    pub tx: Option<DeviceQueue>,
    pub tap: Box<dyn Tap>,
    rx_buf: Vec<u8>,
    /// Length of the frame in `rx_buf` waiting for buffers.
    pending: Option<usize>,
    /// Chains popped from the RX ring but not used yet.
    stash: VecDeque<(u16, ChainBuffers)>,
    tx_buf: Vec<u8>,
    counters: Option<Arc<Counters>>,
}

/// What happened to the frame being delivered.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    Done,
    NoBuffers,
}

impl QueuePair {
    pub fn new(rx: Option<DeviceQueue>, tx: Option<DeviceQueue>, tap: Box<dyn Tap>) -> Self {
        QueuePair {
            rx,
            tx,
            tap,
            rx_buf: vec![0u8; MAX_FRAME_LEN],
            pending: None,
            stash: VecDeque::new(),
            tx_buf: vec![0u8; MAX_FRAME_LEN],
            counters: None,
        }
    }

    /// How many receive chains were taken from the ring and not used yet.
    pub fn stashed(&self) -> u16 {
        self.stash.len() as u16
    }

    /// Count the frames this pair moves in `counters` (`counters::net`).
    pub fn with_counters(mut self, counters: Arc<Counters>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// Reads frames from the tap and delivers them until the tap is empty
    /// or the guest runs out of receive buffers.
    pub fn process_rx(&mut self, mem: &GuestMemoryMmap, irq: &Arc<dyn VirtioInterrupt>, mrg: bool) {
        let Some(rx) = self.rx.as_mut() else { return };
        let mut used = 0;
        loop {
            let len = match self.pending {
                Some(len) => len,
                None => match self.tap.read_frame(&mut self.rx_buf) {
                    Ok(len) => len,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        warn!("virtio-net: reading the tap failed: {e}");
                        break;
                    }
                },
            };
            self.pending = Some(len);
            let frame = &mut self.rx_buf[..len];
            let (delivery, n) = deliver(rx, &mut self.stash, mem, frame, mrg);
            used += n;
            match delivery {
                Delivery::Done => {
                    self.pending = None;
                    if let Some(c) = &self.counters {
                        c.add(net::RX_FRAMES, 1);
                        c.add(net::RX_BYTES, len.saturating_sub(VNET_HDR_LEN) as u64);
                    }
                }
                Delivery::NoBuffers => {
                    if !rx.enable_notification(mem) {
                        break;
                    }
                }
            }
        }
        if used > 0 {
            rx.signal_used(mem, irq);
        }
    }

    /// Sends every available TX chain to the tap.
    pub fn process_tx(&mut self, mem: &GuestMemoryMmap, irq: &Arc<dyn VirtioInterrupt>) {
        let Some(tx) = self.tx.as_mut() else { return };
        tx.ack_notification();
        let (tap, buf, counters) = (&mut self.tap, &mut self.tx_buf, &self.counters);
        let done = tx.process(mem, TX_BUDGET, |chain| {
            if let (Some(len), Some(c)) = (send_chain(mem, chain, tap.as_mut(), buf), counters) {
                c.add(net::TX_FRAMES, 1);
                c.add(net::TX_BYTES, len.saturating_sub(VNET_HDR_LEN) as u64);
            }
            0
        });
        if done > 0 {
            tx.signal_used(mem, irq);
        }
    }
}

/// Pops chains into the stash until it can hold `need` bytes (one chain
/// when `!mrg`). Unusable chains are completed empty at once. Returns how
/// many chains were completed, and whether the stash is now enough.
fn fill_stash(
    rx: &mut DeviceQueue,
    stash: &mut VecDeque<(u16, ChainBuffers)>,
    mem: &GuestMemoryMmap,
    need: u64,
    mrg: bool,
) -> (bool, usize) {
    let mut completed = 0;
    loop {
        let have: u64 = stash.iter().map(|(_, b)| b.writable_len()).sum();
        if (mrg && have >= need) || (!mrg && !stash.is_empty()) {
            return (true, completed);
        }
        let Some(chain) = rx.pop(mem) else {
            return (false, completed);
        };
        let head = chain.head_index();
        match ChainBuffers::parse(mem, chain) {
            Ok(bufs) if bufs.writable_len() > 0 => stash.push_back((head, bufs)),
            Ok(_) => {
                debug!("virtio-net: RX chain {head} has no writable buffer");
                rx.add_used(mem, head, 0);
                completed += 1;
            }
            Err(e) => {
                warn!("virtio-net: dropping malformed RX chain: {e}");
                rx.add_used(mem, head, 0);
                completed += 1;
            }
        }
    }
}

/// Delivers one frame (header included) to the guest. Returns what
/// happened and how many chains were completed.
fn deliver(
    rx: &mut DeviceQueue,
    stash: &mut VecDeque<(u16, ChainBuffers)>,
    mem: &GuestMemoryMmap,
    frame: &mut [u8],
    mrg: bool,
) -> (Delivery, usize) {
    if frame.len() < VNET_HDR_LEN {
        debug!(
            "virtio-net: dropping a {}-byte frame from the tap",
            frame.len()
        );
        return (Delivery::Done, 0);
    }
    let need = frame.len() as u64;
    let (enough, mut completed) = fill_stash(rx, stash, mem, need, mrg);
    if !enough {
        if stash.len() >= usize::from(rx.size()) {
            // Every buffer the ring can hold is stashed and the frame still
            // does not fit: waiting would stall RX for good.
            debug!("virtio-net: all RX buffers together cannot hold a {need}-byte frame; dropped");
            return (Delivery::Done, completed);
        }
        return (Delivery::NoBuffers, completed);
    }
    if !mrg && stash[0].1.writable_len() < need {
        debug!("virtio-net: RX buffer too small for a {need}-byte frame; frame dropped");
        return (Delivery::Done, completed);
    }
    // How many chains the frame spans (1 without MRG_RXBUF).
    let mut count = 0;
    let mut covered = 0u64;
    while covered < need {
        covered += stash[count].1.writable_len();
        count += 1;
    }
    let num_buffers = count as u16;
    frame[NUM_BUFFERS_OFFSET..NUM_BUFFERS_OFFSET + 2].copy_from_slice(&num_buffers.to_le_bytes());
    let mut offset = 0usize;
    for _ in 0..count {
        let (head, bufs) = stash.pop_front().expect("counted above");
        let end = frame.len().min(offset + bufs.writable_len() as usize);
        let written = match scatter(mem, &bufs.writable, &frame[offset..end]) {
            Ok(n) => n,
            Err(e) => {
                warn!("virtio-net: writing an RX buffer failed: {e}");
                0
            }
        };
        rx.add_used(mem, head, written as u32);
        completed += 1;
        offset = end;
    }
    (Delivery::Done, completed)
}

/// Writes one TX chain to the tap as a frame; its length (with the virtio header) once sent.
fn send_chain<M, I>(mem: &M, descs: I, tap: &mut dyn Tap, buf: &mut [u8]) -> Option<usize>
where
    M: GuestMemory + ?Sized,
    I: IntoIterator<Item = Descriptor>,
{
    let bufs = match ChainBuffers::parse(mem, descs) {
        Ok(b) => b,
        Err(e) => {
            warn!("virtio-net: dropping malformed TX chain: {e}");
            return None;
        }
    };
    if !bufs.writable.is_empty() {
        warn!("virtio-net: dropping a TX chain with device-writable buffers");
        return None;
    }
    let len = bufs.readable_len();
    if len < VNET_HDR_LEN as u64 || len > buf.len() as u64 {
        debug!("virtio-net: dropping a {len}-byte TX frame");
        return None;
    }
    let (segs, _) = split_at(&bufs.readable, len);
    let frame = &mut buf[..len as usize];
    if gather(mem, &segs, frame).is_err() {
        return None;
    }
    match tap.write_frame(frame) {
        Ok(_) => Some(frame.len()),
        Err(e) => {
            debug!("virtio-net: tap write failed, frame dropped: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests;
