//! A raw disk image: opened (optionally `O_DIRECT`), locked against other
//! VMMs, and accessed by byte offset within its fixed size.
//!
//! With `direct`, every host I/O must be aligned to [`DIRECT_ALIGN`] in
//! offset, length and buffer address. Requests that are not (the guest sees
//! 512-byte sectors) are bounced through an aligned buffer: reads read the
//! enclosing aligned range, writes read-modify-write it. The image size must
//! then be a multiple of [`DIRECT_ALIGN`] so that no aligned write reaches
//! past its end.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vmm_sys_util::fallocate::{fallocate, FallocateMode};

/// Sector size of the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;
/// Alignment used for `O_DIRECT` I/O: safe for every common logical block
/// size (512 and 4096) and for the page cache bypass memory alignment.
pub const DIRECT_ALIGN: usize = 4096;
/// Largest host I/O (and bounce buffer) per step, bounding memory use
/// whatever lengths the guest puts in its descriptors.
pub const MAX_IO_CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot open disk image {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error(
        "disk image {} is locked by another process (another VMM using it?); \
         a read-write disk needs an exclusive lock, a read-only one a shared lock",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("cannot lock disk image {}: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },
    #[error("cannot get the size of disk image {}: {source}", path.display())]
    Size { path: PathBuf, source: io::Error },
    #[error(
        "disk image {} is {size} bytes; direct=on needs a multiple of {align} bytes",
        path.display()
    )]
    DirectUnaligned {
        path: PathBuf,
        size: u64,
        align: usize,
    },
}

/// An open, locked raw image.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    path: PathBuf,
    readonly: bool,
    direct: bool,
    /// Usable size: the file size rounded down to whole sectors (grown by [`DiskResizer`]
    /// while a worker serves the image).
    size: Arc<AtomicU64>,
    punch_hole: bool,
}

/// Grows a [`DiskImage`] that a worker thread is serving: the file and the size its requests
/// are checked against (`vm.resize-disk`).
#[derive(Debug)]
pub struct DiskResizer {
    /// The image's open file description (a dup: the same lock).
    file: File,
    size: Arc<AtomicU64>,
    readonly: bool,
    direct: bool,
}

impl DiskResizer {
    /// Grow the image to `bytes` (whole sectors; the direct-I/O alignment with `direct=on`).
    /// The new part reads as zeros and takes no space until written. Shrinking is refused:
    /// the guest may have data there, and it learns of the change only afterwards.
    pub fn grow(&self, bytes: u64) -> Result<(), String> {
        if self.readonly {
            return Err("the disk is read-only".into());
        }
        let align = if self.direct {
            DIRECT_ALIGN as u64
        } else {
            SECTOR_SIZE
        };
        if !bytes.is_multiple_of(align) {
            return Err(format!("{bytes} is not a multiple of {align} bytes"));
        }
        let now = self.size.load(Ordering::Acquire);
        if bytes < now {
            return Err(format!(
                "{bytes} bytes is smaller than the disk's {now}: shrinking a disk in use is not \
                 supported"
            ));
        }
        self.file.set_len(bytes).map_err(|e| e.to_string())?;
        self.size.store(bytes, Ordering::Release);
        Ok(())
    }

    /// The size requests are checked against now, in bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
}

impl DiskImage {
    /// Opens and locks `path` (`flock` `LOCK_EX`, or `LOCK_SH` when
    /// `readonly`, both non-blocking: a conflict is [`DiskError::Locked`]).
    pub fn open(path: &Path, readonly: bool, direct: bool) -> Result<Self, DiskError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(!readonly);
        if direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        let file = opts.open(path).map_err(|source| DiskError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        lock(&file, path, readonly)?;
        let file_size = file_size(&file).map_err(|source| DiskError::Size {
            path: path.to_path_buf(),
            source,
        })?;
        if direct && !file_size.is_multiple_of(DIRECT_ALIGN as u64) {
            return Err(DiskError::DirectUnaligned {
                path: path.to_path_buf(),
                size: file_size,
                align: DIRECT_ALIGN,
            });
        }
        let punch_hole = !readonly && probe_punch_hole(&file, file_size);
        Ok(DiskImage {
            file,
            path: path.to_path_buf(),
            readonly,
            direct,
            size: Arc::new(AtomicU64::new(file_size - file_size % SECTOR_SIZE)),
            punch_hole,
        })
    }

    /// A handle that grows this image, usable while a worker serves it.
    pub fn resizer(&self) -> io::Result<DiskResizer> {
        Ok(DiskResizer {
            file: self.file.try_clone()?,
            size: self.size.clone(),
            readonly: self.readonly,
            direct: self.direct,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Usable size in bytes (whole sectors).
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Whether holes can be punched (discard support).
    pub fn supports_punch_hole(&self) -> bool {
        self.punch_hole
    }

    /// Whether `len` bytes at `offset` lie within the image
    /// (overflow-safe).
    pub fn in_bounds(&self, offset: u64, len: u64) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| end <= self.size())
    }

    /// Reads exactly `buf.len()` bytes at `offset` (which must be in bounds).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(offset, buf.len())?;
        if self.direct && !is_aligned(offset, buf) {
            let (start, mut bounce) = self.read_aligned_window(offset, buf.len())?;
            let skip = (offset - start) as usize;
            buf.copy_from_slice(&bounce.as_mut_slice()[skip..skip + buf.len()]);
            return Ok(());
        }
        self.file.read_exact_at(buf, offset)
    }

    /// Writes all of `buf` at `offset` (which must be in bounds).
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.check(offset, buf.len())?;
        if self.readonly {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        if self.direct && !is_aligned(offset, buf) {
            let (start, mut bounce) = self.read_aligned_window(offset, buf.len())?;
            let skip = (offset - start) as usize;
            bounce.as_mut_slice()[skip..skip + buf.len()].copy_from_slice(buf);
            return self.file.write_all_at(bounce.as_mut_slice(), start);
        }
        self.file.write_all_at(buf, offset)
    }

    /// Makes written data durable on the host disk (`fdatasync`).
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Deallocates the range (it then reads as zeros).
    pub fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_range(offset, len)?;
        fallocate(&self.file, FallocateMode::PunchHole, true, offset, len)
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }

    /// Zeroes the range: punching a hole when `unmap` is allowed and
    /// supported, else `FALLOC_FL_ZERO_RANGE`, else by writing zeros.
    pub fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        self.check_range(offset, len)?;
        if unmap && self.punch_hole && self.discard(offset, len).is_ok() {
            return Ok(());
        }
        if fallocate(&self.file, FallocateMode::ZeroRange, true, offset, len).is_ok() {
            return Ok(());
        }
        let zeros = AlignedBuf::new(MAX_IO_CHUNK.min(len as usize));
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeros.len as u64) as usize;
            self.write_at(offset + done, &zeros.as_slice()[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    fn check(&self, offset: u64, len: usize) -> io::Result<()> {
        self.check_range(offset, len as u64)
    }

    fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.in_bounds(offset, len) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{len} bytes at {offset} lie beyond the disk end ({})",
                    self.size()
                ),
            ))
        }
    }

    /// Reads the aligned range enclosing `len` bytes at `offset`.
    fn read_aligned_window(&self, offset: u64, len: usize) -> io::Result<(u64, AlignedBuf)> {
        let align = DIRECT_ALIGN as u64;
        let start = offset - offset % align;
        // In bounds and size % align == 0, so `end` cannot pass the size.
        let end = (offset + len as u64).div_ceil(align) * align;
        let mut bounce = AlignedBuf::new((end - start) as usize);
        self.file.read_exact_at(bounce.as_mut_slice(), start)?;
        Ok((start, bounce))
    }
}

fn is_aligned(offset: u64, buf: &[u8]) -> bool {
    offset.is_multiple_of(DIRECT_ALIGN as u64)
        && buf.len().is_multiple_of(DIRECT_ALIGN)
        && (buf.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
}

fn lock(file: &File, path: &Path, readonly: bool) -> Result<(), DiskError> {
    let op = if readonly {
        libc::LOCK_SH
    } else {
        libc::LOCK_EX
    };
    // SAFETY: flock on an fd we own; no memory is passed.
    let ret = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
    if ret == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(DiskError::Locked {
            path: path.to_path_buf(),
        })
    } else {
        Err(DiskError::Lock {
            path: path.to_path_buf(),
            source: err,
        })
    }
}

/// Size of a regular file or a block device.
fn file_size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::End(0))
}

/// Whether `FALLOC_FL_PUNCH_HOLE` works here, probed past the end of the
/// image where punching touches no data.
fn probe_punch_hole(file: &File, size: u64) -> bool {
    let at = size.next_multiple_of(DIRECT_ALIGN as u64);
    fallocate(
        file,
        FallocateMode::PunchHole,
        true,
        at,
        DIRECT_ALIGN as u64,
    )
    .is_ok()
}

/// A zeroed heap buffer whose start is [`DIRECT_ALIGN`]-aligned, built
/// without `unsafe` by over-allocating a `Vec` and slicing into it.
pub(crate) struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> Self {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::tempfile::TempFile;

    pub(crate) fn image(size: usize, fill: u8) -> TempFile {
        let tmp = TempFile::new().unwrap();
        tmp.as_file().write_all_at(&vec![fill; size], 0).unwrap();
        tmp
    }

    #[test]
    fn reads_and_writes_round_trip() {
        let tmp = image(8192, 0);
        let disk = DiskImage::open(tmp.as_path(), false, false).unwrap();
        assert_eq!(disk.size(), 8192);
        disk.write_at(1000, b"hello").unwrap();
        let mut buf = [0u8; 5];
        disk.read_at(1000, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        disk.flush().unwrap();
    }

    #[test]
    fn size_is_rounded_down_to_sectors_and_bounds_are_enforced() {
        let tmp = image(1000, 0);
        let disk = DiskImage::open(tmp.as_path(), false, false).unwrap();
        assert_eq!(disk.size(), 512);
        assert!(disk.in_bounds(0, 512));
        assert!(!disk.in_bounds(1, 512));
        assert!(!disk.in_bounds(u64::MAX, 2));
        assert!(disk.write_at(510, b"xyz").is_err());
        assert_eq!(tmp.as_file().metadata().unwrap().len(), 1000);
    }

    #[test]
    fn a_second_writer_is_refused_with_the_path_in_the_error() {
        let tmp = image(4096, 0);
        let _first = DiskImage::open(tmp.as_path(), false, false).unwrap();
        let err = DiskImage::open(tmp.as_path(), false, false).unwrap_err();
        assert!(matches!(err, DiskError::Locked { .. }));
        assert!(err
            .to_string()
            .contains(&tmp.as_path().display().to_string()));
        // A reader cannot share an image someone writes either.
        let err = DiskImage::open(tmp.as_path(), true, false).unwrap_err();
        assert!(matches!(err, DiskError::Locked { .. }));
    }

    #[test]
    fn readers_share_an_image_but_block_writers() {
        let tmp = image(4096, 0);
        let _a = DiskImage::open(tmp.as_path(), true, false).unwrap();
        let _b = DiskImage::open(tmp.as_path(), true, false).unwrap();
        let err = DiskImage::open(tmp.as_path(), false, false).unwrap_err();
        assert!(matches!(err, DiskError::Locked { .. }));
    }

    #[test]
    fn readonly_images_refuse_writes() {
        let tmp = image(4096, 7);
        let disk = DiskImage::open(tmp.as_path(), true, false).unwrap();
        assert!(disk.readonly());
        assert!(!disk.supports_punch_hole());
        assert!(disk.write_at(0, b"x").is_err());
        let mut b = [0u8; 1];
        disk.read_at(0, &mut b).unwrap();
        assert_eq!(b, [7]);
    }

    #[test]
    fn missing_images_name_the_path() {
        let err = DiskImage::open(Path::new("/nonexistent/disk.img"), false, false).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/disk.img"));
    }

    #[test]
    fn direct_io_bounces_unaligned_requests() {
        let tmp = image(3 * DIRECT_ALIGN, 0xaa);
        let disk = match DiskImage::open(tmp.as_path(), false, true) {
            Ok(d) => d,
            Err(DiskError::Open { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                panic!(
                    "O_DIRECT is unsupported on the temporary directory's file system \
                     (tmpfs?): run with TMPDIR set to a directory on ext4 or xfs"
                )
            }
            Err(e) => panic!("{e}"),
        };
        // Unaligned offset, length and buffer, straddling two blocks.
        disk.write_at(4000, b"0123456789").unwrap();
        let mut buf = [0u8; 12];
        disk.read_at(3999, &mut buf).unwrap();
        assert_eq!(&buf, b"\xaa0123456789\xaa");
        // Aligned I/O goes straight through.
        let mut block = AlignedBuf::new(DIRECT_ALIGN);
        block.as_mut_slice().fill(0x55);
        disk.write_at(8192, block.as_slice()).unwrap();
        let mut back = AlignedBuf::new(DIRECT_ALIGN);
        disk.read_at(8192, back.as_mut_slice()).unwrap();
        assert!(back.as_slice().iter().all(|&b| b == 0x55));
        assert_eq!(
            tmp.as_file().metadata().unwrap().len(),
            3 * DIRECT_ALIGN as u64
        );
    }

    #[test]
    fn direct_io_needs_an_aligned_image_size() {
        let tmp = image(DIRECT_ALIGN + 512, 0);
        match DiskImage::open(tmp.as_path(), false, true) {
            Err(DiskError::DirectUnaligned { size, .. }) => assert_eq!(size, 4608),
            Err(DiskError::Open { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn discard_and_write_zeroes_zero_the_range() {
        let tmp = image(4 * DIRECT_ALIGN, 0xff);
        let disk = DiskImage::open(tmp.as_path(), false, false).unwrap();
        disk.write_zeroes(512, 1024, false).unwrap();
        let mut buf = vec![0u8; 2048];
        disk.read_at(0, &mut buf).unwrap();
        assert!(buf[..512].iter().all(|&b| b == 0xff));
        assert!(buf[512..1536].iter().all(|&b| b == 0));
        assert!(buf[1536..].iter().all(|&b| b == 0xff));
        if disk.supports_punch_hole() {
            disk.discard(8192, 4096).unwrap();
            let mut blk = vec![1u8; 4096];
            disk.read_at(8192, &mut blk).unwrap();
            assert!(blk.iter().all(|&b| b == 0));
        }
        assert!(disk.discard(16384, 512).is_err());
        assert_eq!(
            tmp.as_file().metadata().unwrap().len(),
            4 * DIRECT_ALIGN as u64
        );
    }

    #[test]
    fn aligned_buffers_are_aligned() {
        let mut b = AlignedBuf::new(100);
        assert_eq!(b.as_mut_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
        assert_eq!(b.as_slice().len(), 100);
    }
}
