//! The virtio-net worker: dispatches queue kicks and tap readiness to the
//! queue pairs, and answers the control queue (multi-queue only).
//!
//! Tokens: a queue's token is its index (RX of pair `i` is `2i`, TX `2i+1`,
//! the control queue `2 * max_pairs`); the tap of pair `i` is
//! [`TAP_TOKEN_BASE`]` + i`.

use std::sync::Arc;

use log::warn;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, VIRTIO_NET_ERR, VIRTIO_NET_OK,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestMemory, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use super::rxtx::QueuePair;
use super::tap::Tap;
use crate::virtio::chain::{gather, ChainBuffers};
use crate::virtio::device::VirtioInterrupt;
use crate::virtio::queue::DeviceQueue;
use crate::virtio::worker::{BackendHandler, EventHandler};

/// First tap token; queue tokens are below it.
pub const TAP_TOKEN_BASE: u64 = 1 << 32;
const CTRL_BUDGET: usize = 64;

pub struct NetHandler {
    pub pairs: Vec<QueuePair>,
    pub ctrl: Option<DeviceQueue>,
    pub mem: GuestMemoryMmap,
    pub irq: Arc<dyn VirtioInterrupt>,
    /// `VIRTIO_NET_F_MRG_RXBUF` was negotiated.
    pub mrg_rxbuf: bool,
    pub max_pairs: u16,
}

impl BackendHandler for NetHandler {
    type Backend = Vec<Box<dyn Tap>>;

    fn into_backend(self) -> Vec<Box<dyn Tap>> {
        self.pairs.into_iter().map(|p| p.tap).collect()
    }

    /// Receive buffers waiting for a frame go back to the ring (the frame being delivered,
    /// if any, is dropped with the worker: a lost packet, as on a real link).
    fn queue_positions(&self) -> Vec<crate::virtio::QueuePosition> {
        let mut out = Vec::new();
        for p in &self.pairs {
            out.extend(p.rx.iter().map(|q| q.position(p.stashed())));
            out.extend(p.tx.iter().map(|q| q.position(0)));
        }
        out.extend(self.ctrl.iter().map(|q| q.position(0)));
        out
    }
}

impl EventHandler for NetHandler {
    fn handle_event(&mut self, token: u64, _events: EventSet) {
        let ctrl_token = 2 * u64::from(self.max_pairs);
        if token >= TAP_TOKEN_BASE {
            if let Some(pair) = self.pairs.get_mut((token - TAP_TOKEN_BASE) as usize) {
                pair.process_rx(&self.mem, &self.irq, self.mrg_rxbuf);
            }
        } else if token == ctrl_token {
            self.process_ctrl();
        } else if let Some(pair) = self.pairs.get_mut((token / 2) as usize) {
            if token.is_multiple_of(2) {
                if let Some(rx) = &pair.rx {
                    rx.ack_notification();
                }
                pair.process_rx(&self.mem, &self.irq, self.mrg_rxbuf);
            } else {
                pair.process_tx(&self.mem, &self.irq);
            }
        }
    }
}

impl NetHandler {
    fn process_ctrl(&mut self) {
        let Some(ctrl) = self.ctrl.as_mut() else {
            return;
        };
        ctrl.ack_notification();
        let (mem, max_pairs) = (&self.mem, self.max_pairs);
        let done = ctrl.process(mem, CTRL_BUDGET, |chain| handle_ctrl(mem, chain, max_pairs));
        if done > 0 {
            ctrl.signal_used(mem, &self.irq);
        }
    }
}

/// Answers one control request (`class`, `command`, data, then a 1-byte
/// ack). Only `MQ_VQ_PAIRS_SET` is supported: all pairs are always served,
/// so accepting a count in range is all it takes. Returns the used length.
pub fn handle_ctrl<M, I>(mem: &M, descs: I, max_pairs: u16) -> u32
where
    M: GuestMemory + ?Sized,
    I: IntoIterator<Item = Descriptor>,
{
    let bufs = match ChainBuffers::parse(mem, descs) {
        Ok(b) => b,
        Err(e) => {
            warn!("virtio-net: dropping malformed control chain: {e}");
            return 0;
        }
    };
    let Some(ack_seg) = bufs.writable.last() else {
        warn!("virtio-net: control request without room for the ack");
        return 0;
    };
    let ack_addr = vm_memory::GuestAddress(ack_seg.addr.0 + u64::from(ack_seg.len) - 1);
    let mut req = [0u8; 4];
    let got = gather(mem, &bufs.readable, &mut req).unwrap_or(0);
    let ok = got == 4
        && u32::from(req[0]) == VIRTIO_NET_CTRL_MQ
        && u32::from(req[1]) == VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET
        && (1..=max_pairs).contains(&u16::from_le_bytes([req[2], req[3]]));
    let ack = if ok { VIRTIO_NET_OK } else { VIRTIO_NET_ERR } as u8;
    match mem.write_obj(ack, ack_addr) {
        Ok(()) => 1,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{guest_memory, TestQueue, F_WRITE};
    use vm_memory::GuestAddress;

    fn ctrl(mem: &GuestMemoryMmap, tq: &mut TestQueue, req: &[u8], max_pairs: u16) -> (u32, u8) {
        mem.write_slice(req, GuestAddress(0x10_0000)).unwrap();
        mem.write_obj(0xeeu8, GuestAddress(0x11_0000)).unwrap();
        tq.add_chain(&[(0x10_0000, req.len() as u32, 0), (0x11_0000, 1, F_WRITE)]);
        let len = handle_ctrl(mem, tq.pop(mem), max_pairs);
        (len, mem.read_obj(GuestAddress(0x11_0000)).unwrap())
    }

    #[test]
    fn vq_pairs_set_is_accepted_in_range_only() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        let ok = VIRTIO_NET_OK as u8;
        let err = VIRTIO_NET_ERR as u8;
        assert_eq!(ctrl(&mem, &mut tq, &[4, 0, 2, 0], 4), (1, ok));
        assert_eq!(ctrl(&mem, &mut tq, &[4, 0, 5, 0], 4), (1, err));
        assert_eq!(ctrl(&mem, &mut tq, &[4, 0, 0, 0], 4), (1, err));
        // Another class (RX mode) and a truncated request are refused.
        assert_eq!(ctrl(&mem, &mut tq, &[0, 0, 1, 0], 4), (1, err));
        assert_eq!(ctrl(&mem, &mut tq, &[4, 0], 4), (1, err));
    }

    #[test]
    fn a_control_chain_without_an_ack_byte_is_dropped() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        tq.add_chain(&[(0x10_0000, 4, 0)]);
        assert_eq!(handle_ctrl(&mem, tq.pop(&mem), 4), 0);
    }
}
