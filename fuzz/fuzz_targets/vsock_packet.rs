//! A virtio-vsock packet as the guest writes it into a transmit chain: arbitrary bytes through
//! `parse_packet`. Nothing may panic; an accepted packet is a stream packet whose payload is
//! exactly the `len` its header says, and its header writes back to the same bytes. The credit
//! arithmetic on the header's counters never underflows.
#![no_main]

use devices::virtio::vsock::credit::Credit;
use devices::virtio::vsock::packet::{parse_packet, Header, HDR_LEN, MAX_PAYLOAD, TYPE_STREAM};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, payload)) = parse_packet(data) {
        assert_eq!(h.kind, TYPE_STREAM);
        assert_eq!(payload.len(), h.len as usize);
        assert!(h.len <= MAX_PAYLOAD);
        assert_eq!(&h.to_bytes()[..], &data[..HDR_LEN]);
        assert_eq!(Header::parse(&h.to_bytes()), Ok(h));
        let mut c = Credit {
            tx_cnt: h.src_port,
            ..Default::default()
        };
        c.update_from(&h);
        assert!(c.peer_free() <= h.buf_alloc);
    }
});
