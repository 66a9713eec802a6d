//! virtio-blk requests from a hostile driver: `devices::virtio::block::request::parse_request`
//! over descriptors and guest memory from the input, then the parsed request carried out
//! against a real image file through the public `DiskImage` (read/write, discard and
//! write-zeroes ranges taken from the guest's segments), without the executor's own bounds
//! check in front, so the image's check is what is fuzzed.
//!
//! (The request executor, `devices::virtio::block::handler::RequestExecutor`, is private to
//! the block module; its own randomized test lives in `devices/src/virtio/block/tests.rs`.)
//!
//! Properties: parsing never panics; an accepted request's segments and status byte lie in
//! guest RAM and READ/WRITE data is whole sectors; every image access beyond the image's
//! end fails, and the image file never changes size nor has bytes past its last whole sector
//! written, cached or `O_DIRECT`.
//!
//! Input layout (little endian):
//! ```text
//! 0   u8   descriptor count (mod 9)
//! 1   per descriptor 10 bytes: u32 addr (bit 31 set: u64::MAX - low 31 bits), u32 len,
//!          u16 flags (virtq_desc flags as the guest wrote them: NEXT, WRITE, INDIRECT)
//! ..  u8   bit 0: use the O_DIRECT image when the host filesystem allows it
//! ..  ..   guest RAM image from address 0 (request header, data, discard segments)
//! ```
#![no_main]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

use devices::virtio::block::request::{parse_request, Request, RequestType};
use devices::virtio::block::{DiskImage, SECTOR_SIZE};
use devices::virtio::chain::{gather, scatter, total_len};
use virtio_queue::desc::split::Descriptor;
use vmm_fuzz::{guest_memory, in_guest_ram, trace, Cursor};

/// Cached image: 64 KiB of sectors plus a 100-byte partial sector the guest must never see.
const CACHED_LEN: u64 = 0x1_0000 + 100;
/// `O_DIRECT` image (its size must be a multiple of 4096).
const DIRECT_LEN: u64 = 0x1_0000;
const TAIL_FILL: u8 = 0xa5;

struct Image {
    disk: DiskImage,
    /// Our own handle on the same file, to look behind the device's back.
    raw: File,
    len: u64,
}

fn make_image(len: u64, direct: bool) -> Option<Image> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // /tmp may be tmpfs (no O_DIRECT there): fall back to the working directory.
    for dir in [std::env::temp_dir(), PathBuf::from(".")] {
        let path = dir.join(format!("vmm-fuzz-blk-{}-{n}.img", std::process::id()));
        let Ok(mut raw) = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        else {
            continue;
        };
        raw.write_all(&vec![TAIL_FILL; len as usize]).ok()?;
        let disk = DiskImage::open(&path, false, direct);
        let _ = std::fs::remove_file(&path);
        if let Ok(disk) = disk {
            return Some(Image { disk, raw, len });
        }
    }
    None
}

fn images() -> &'static (Image, Option<Image>) {
    static IMAGES: OnceLock<(Image, Option<Image>)> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let cached = make_image(CACHED_LEN, false).expect("a temporary disk image");
        (cached, make_image(DIRECT_LEN, true))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let count = c.u8() % 9;
    let mut descs = Vec::new();
    for _ in 0..count {
        let raw = c.u32();
        let addr = if raw & 0x8000_0000 != 0 {
            u64::MAX - u64::from(raw & 0x7fff_ffff)
        } else {
            u64::from(raw)
        };
        descs.push(Descriptor::new(addr, c.u32(), c.u16(), 0));
    }
    let use_direct = c.bool();
    let mem = guest_memory(c.rest());

    let parsed = parse_request(&mem, descs);
    trace!("request: {parsed:?}");
    let Ok(req) = parsed else {
        return;
    };
    check_request(&req);

    let (cached, direct) = images();
    let image = match (use_direct, direct) {
        (true, Some(d)) => d,
        _ => cached,
    };
    execute(&mem, &req, image);
    check_image(image);
});

fn check_request(req: &Request) {
    assert!(in_guest_ram(req.status.0, 1), "status outside RAM: {req:?}");
    for seg in &req.data {
        assert!(
            in_guest_ram(seg.addr.0, u64::from(seg.len)),
            "data segment outside RAM: {req:?}"
        );
    }
    if matches!(req.kind, RequestType::In | RequestType::Out) {
        assert_eq!(req.data_len() % SECTOR_SIZE, 0, "{req:?}");
    }
    if matches!(req.kind, RequestType::Flush | RequestType::Unsupported(_)) {
        assert!(req.data.is_empty(), "{req:?}");
    }
}

fn execute(mem: &vm_memory::GuestMemoryMmap, req: &Request, image: &Image) {
    let disk = &image.disk;
    let offset = req.sector.saturating_mul(SECTOR_SIZE);
    let len = req.data_len();
    let fits = disk.in_bounds(offset, len);
    // Never more than the guest RAM the segments can cover (several may overlap).
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    match req.kind {
        RequestType::In => {
            let res = disk.read_at(offset, &mut buf);
            trace!("read {len} at {offset}: {res:?}");
            assert_eq!(res.is_ok(), fits, "read at {offset} len {len}: {res:?}");
            if res.is_ok() {
                scatter(mem, &req.data, &buf).expect("scatter into checked segments");
            }
        }
        RequestType::Out => {
            gather(mem, &req.data, &mut buf).expect("gather of checked segments");
            let res = disk.write_at(offset, &buf);
            trace!("write {len} at {offset}: {res:?}");
            assert!(res.is_err() || fits, "write at {offset} len {len} accepted");
        }
        RequestType::Discard | RequestType::WriteZeroes => {
            // virtio_blk_discard_write_zeroes: u64 sector, u32 sectors, u32 flags.
            let n = total_len(&req.data).min(16 * 32) as usize;
            let mut raw = vec![0u8; n - n % 16];
            gather(mem, &req.data, &mut raw).expect("gather of checked segments");
            for seg in raw.chunks_exact(16) {
                let sector = u64::from_le_bytes(seg[0..8].try_into().unwrap());
                let sectors = u32::from_le_bytes(seg[8..12].try_into().unwrap());
                let unmap = seg[12] & 1 != 0;
                let off = sector.saturating_mul(SECTOR_SIZE);
                let bytes = u64::from(sectors) * SECTOR_SIZE;
                let fits = disk.in_bounds(off, bytes);
                let res = if req.kind == RequestType::Discard {
                    disk.discard(off, bytes)
                } else {
                    disk.write_zeroes(off, bytes, unmap)
                };
                trace!("{:?} {bytes} at {off}: {res:?}", req.kind);
                assert!(res.is_err() || fits, "zeroing {bytes} at {off} accepted");
            }
        }
        RequestType::Flush | RequestType::GetId | RequestType::Unsupported(_) => {}
    }
}

fn check_image(image: &Image) {
    let len = image.raw.metadata().expect("image metadata").len();
    assert_eq!(len, image.len, "the image changed size");
    assert_eq!(image.disk.size(), image.len - image.len % SECTOR_SIZE);
    let tail = image.len - image.disk.size();
    if tail > 0 {
        let mut buf = vec![0u8; tail as usize];
        image
            .raw
            .read_exact_at(&mut buf, image.disk.size())
            .expect("read the tail");
        assert!(
            buf.iter().all(|&b| b == TAIL_FILL),
            "bytes past the last whole sector were written"
        );
    }
}
