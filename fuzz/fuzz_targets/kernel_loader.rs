//! The kernel loader on arbitrary images: `arch::load_guest_with_rsdp` (PVH ELF or bzImage
//! detection, segment/setup loading, initramfs placement, command line, boot info, MP table)
//! with the image in a memfd and a 64 MiB guest.
//!
//! Properties: Ok or Err, never a panic; an accepted kernel's entry point lies in guest RAM;
//! the loader never writes past guest RAM (guest memory refuses it, and ASan watches the
//! host side) and never touches the kernel or initramfs files.
//!
//! Input layout (little endian):
//! ```text
//! 0   u8   flags: bit 0 with an initramfs, bit 1 with an ACPI RSDP address
//! 1   u8   vCPUs - 1 (mod 254)
//! 2   u32  initramfs size (mod 80 MiB; a sparse file: its content does not matter)
//! 6   u32  kernel file size to extend to with zeros (mod 80 MiB; ignored when smaller)
//! 10  u8   command line length, command line bytes (lossy UTF-8)
//! ..  ..   the kernel image
//! ```
#![no_main]

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;

use libfuzzer_sys::fuzz_target;

use arch::{load_guest_with_rsdp, BootSetup, MemoryLayout};
use vm_memory::GuestMemoryMmap;
use vmm_fuzz::{trace, Cursor};

const GUEST_RAM: u64 = 64 << 20;
const MAX_FILE: u32 = 80 << 20;

fn memfd(name: &std::ffi::CStr) -> File {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the returned fd is owned
    // by the File from here on.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor nobody else owns.
    unsafe { File::from_raw_fd(fd) }
}

fn snapshot(f: &File) -> (u64, std::time::SystemTime) {
    let m = f.metadata().expect("memfd metadata");
    (m.len(), m.modified().expect("mtime"))
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let flags = c.u8();
    let vcpus = u32::from(c.u8() % 254) + 1;
    let initramfs_size = c.u32() % MAX_FILE;
    let kernel_size = c.u32() % MAX_FILE;
    let cmdline = String::from_utf8_lossy(c.short_bytes()).into_owned();
    let image = c.rest();

    let mut kernel = memfd(c"fuzz-kernel");
    kernel.write_all(image).expect("write the kernel");
    if u64::from(kernel_size) > image.len() as u64 {
        kernel
            .set_len(u64::from(kernel_size))
            .expect("extend the kernel");
    }
    let mut initramfs = (flags & 1 != 0).then(|| {
        let f = memfd(c"fuzz-initramfs");
        f.set_len(u64::from(initramfs_size))
            .expect("size the initramfs");
        f
    });
    let before = (snapshot(&kernel), initramfs.as_ref().map(snapshot));

    let layout = MemoryLayout::new(GUEST_RAM, 40).expect("a 64 MiB layout");
    let mem = GuestMemoryMmap::from_ranges(&layout.ram_ranges()).expect("guest memory");
    let rsdp = (flags & 2 != 0).then_some(0xe_0000);
    let result = load_guest_with_rsdp(
        &mem,
        BootSetup {
            kernel: &mut kernel,
            initramfs: initramfs.as_mut(),
            cmdline: &cmdline,
            num_vcpus: vcpus,
            layout: &layout,
        },
        rsdp,
    );
    trace!("load: {result:?}");
    if let Ok(entry) = result {
        assert!(
            entry.addr < layout.ram_end(),
            "entry point {:#x} outside guest RAM (end {:#x})",
            entry.addr,
            layout.ram_end()
        );
    }
    let after = (snapshot(&kernel), initramfs.as_ref().map(snapshot));
    assert_eq!(before, after, "the loader changed its input files");
});
