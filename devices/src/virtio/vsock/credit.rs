//! The credit scheme of virtio-vsock flow control, for one stream.

use super::muxer::BUF_ALLOC;
use super::packet::Header;

/// Credit bookkeeping of one stream (virtio 1.2 section 5.10.6.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Credit {
    /// Bytes of guest data written to the host stream.
    pub fwd_cnt: u32,
    /// The `fwd_cnt` the guest last heard from us.
    pub fwd_cnt_sent: u32,
    /// Bytes sent to the guest.
    pub tx_cnt: u32,
    /// The guest's receive buffer and what it consumed, from its latest packet.
    pub peer_buf_alloc: u32,
    pub peer_fwd_cnt: u32,
}

impl Credit {
    /// How many more bytes the guest can take now (0 when a hostile guest's counters say it
    /// has less than nothing).
    pub fn peer_free(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// From the header of a packet the guest sent on this stream.
    pub fn update_from(&mut self, h: &Header) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
    }

    /// Whether the guest should be told of our progress (half our buffer freed unannounced).
    pub fn update_due(&self) -> bool {
        self.fwd_cnt.wrapping_sub(self.fwd_cnt_sent) >= BUF_ALLOC / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_never_goes_below_nothing() {
        let mut c = Credit {
            peer_buf_alloc: 1000,
            ..Default::default()
        };
        assert_eq!(c.peer_free(), 1000);
        c.tx_cnt = 600;
        assert_eq!(c.peer_free(), 400);
        c.peer_fwd_cnt = 500;
        assert_eq!(c.peer_free(), 900);
        // A guest claiming to have consumed more than was sent, or a tiny buffer.
        c.peer_fwd_cnt = 700;
        assert_eq!(c.peer_free(), 0);
        c.peer_fwd_cnt = 0;
        c.peer_buf_alloc = 10;
        assert_eq!(c.peer_free(), 0);
        // Counters wrap.
        c.tx_cnt = 5;
        c.peer_fwd_cnt = u32::MAX - 4;
        c.peer_buf_alloc = 100;
        assert_eq!(c.peer_free(), 90);
    }

    #[test]
    fn an_update_is_due_once_half_the_buffer_went_out_unannounced() {
        let mut c = Credit {
            fwd_cnt: BUF_ALLOC / 2 - 1,
            ..Default::default()
        };
        assert!(!c.update_due());
        c.fwd_cnt += 1;
        assert!(c.update_due());
        c.fwd_cnt_sent = c.fwd_cnt;
        assert!(!c.update_due());
    }
}
