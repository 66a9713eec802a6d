//! bzImage kernels entered through the Linux 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst).
//!
//! The setup header is copied from the image (only up to its real end, `0x202 +` the
//! byte at `0x201`), validated (protocol >= 2.06, loaded high, 64-bit entry), and
//! completed with the loader's fields in a zero page at [`ZERO_PAGE_START`]. The
//! protected-mode kernel is loaded at 1 MiB and entered at `load address + 0x200`.

use std::fs::File;

use linux_loader::loader::bootparam::{
    boot_e820_entry, boot_params, setup_header, CAN_USE_HEAP, E820_MAX_ENTRIES_ZEROPAGE,
    LOADED_HIGH, XLF_KERNEL_64,
};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::KernelLoader;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::{cmdline, initramfs, BootError, BootInfo, BootProtocol, EntryPoint};
use crate::e820::e820_map;
use crate::layout::{
    MemoryLayout, CMDLINE_MAX_SIZE, CMDLINE_START, HIGH_RAM_START, ZERO_PAGE_START,
};

/// Offset of the setup header in the image and in `boot_params`.
const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// Offset of the `jump` byte giving the header length.
const HEADER_LEN_BYTE: usize = 0x201;
/// Oldest boot protocol accepted: 2.06 adds `cmdline_size`.
pub const MIN_BOOT_PROTOCOL: u16 = 0x0206;
/// Boot protocol 2.14 adds `acpi_rsdp_addr` to the zero page.
pub const RSDP_BOOT_PROTOCOL: u16 = 0x020e;
/// The 64-bit entry point is this far into the protected-mode kernel.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// `initrd_addr_max` assumed when the header leaves it 0 (boot.rst).
const DEFAULT_INITRD_ADDR_MAX: u32 = 0x37ff_ffff;
/// Loader type "undefined" (we have no assigned ID).
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// End of the setup heap, relative to the real-mode code (boot.rst's usual value).
const HEAP_END_PTR: u16 = 0xfe00;

/// Why a bzImage cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BzImageError {
    #[error(
        "bzImage boot protocol {major}.{minor:02} is too old: at least 2.06 is needed",
        major = version >> 8,
        minor = version & 0xff
    )]
    ProtocolTooOld { version: u16 },
    #[error("the image is a zImage (not loaded high); only bzImage kernels are supported")]
    NotLoadedHigh,
    #[error(
        "the bzImage has no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags): \
         build a 64-bit kernel"
    )]
    No64BitEntry,
    #[error(
        "the bzImage is truncated: {file_size} bytes, but its {setup_size}-byte setup code \
         is not even followed by a kernel"
    )]
    Truncated { file_size: u64, setup_size: u64 },
    #[error(
        "the kernel needs {needed:#x} bytes from {HIGH_RAM_START:#x} but low RAM ends at \
         {ram_end:#x}: give the VM more memory"
    )]
    KernelTooBig { needed: u64, ram_end: u64 },
    #[error("loading the bzImage failed: {0}")]
    Loader(#[source] linux_loader::loader::Error),
    #[error("cannot write the zero page at guest address {addr:#x}: {source}")]
    WriteZeroPage { addr: u64, source: GuestMemoryError },
}

/// The validated setup header plus the sizes derived from it.
#[derive(Clone, Copy, Debug)]
pub struct BzHeader {
    pub hdr: setup_header,
    /// Bytes of the protected-mode kernel (after the setup code).
    pub kernel_size: u64,
}

/// Parses and validates the setup header from the image's first bytes.
pub fn parse_header(head: &[u8], file_size: u64, ram_end: u64) -> Result<BzHeader, BzImageError> {
    let mut hdr = setup_header::default();
    let header_end = head
        .get(HEADER_LEN_BYTE)
        .map_or(0, |len| 0x202 + usize::from(*len))
        .min(SETUP_HEADER_OFFSET + std::mem::size_of::<setup_header>())
        .min(head.len());
    if let Some(bytes) = head.get(SETUP_HEADER_OFFSET..header_end) {
        hdr.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
    }
    let version = hdr.version;
    if version < MIN_BOOT_PROTOCOL {
        return Err(BzImageError::ProtocolTooOld { version });
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(BzImageError::NotLoadedHigh);
    }
    if hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BzImageError::No64BitEntry);
    }
    let setup_sects = match hdr.setup_sects {
        0 => 4,
        n => u64::from(n),
    };
    let setup_size = (setup_sects + 1) * 512;
    if file_size <= setup_size {
        return Err(BzImageError::Truncated {
            file_size,
            setup_size,
        });
    }
    let kernel_size = file_size - setup_size;
    let needed = kernel_size.max(u64::from(hdr.init_size));
    if HIGH_RAM_START.saturating_add(needed) > ram_end {
        return Err(BzImageError::KernelTooBig { needed, ram_end });
    }
    Ok(BzHeader { hdr, kernel_size })
}

/// The longest command line the kernel accepts, NUL excluded.
fn cmdline_limit(hdr: &setup_header) -> u64 {
    let size = match hdr.cmdline_size {
        0 => 255,
        n => u64::from(n),
    };
    size.min(CMDLINE_MAX_SIZE - 1)
}

/// The zero page: the image's setup header completed with the loader's fields. The
/// RSDP address goes in only for kernels that know the field (protocol 2.14+).
fn build_zero_page(
    hdr: setup_header,
    layout: &MemoryLayout,
    initrd: Option<(u64, u64)>,
    rsdp_addr: Option<u64>,
) -> boot_params {
    let mut params = boot_params::default();
    if hdr.version >= RSDP_BOOT_PROTOCOL {
        params.acpi_rsdp_addr = rsdp_addr.unwrap_or(0);
    }
    let mut hdr = hdr;
    hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    hdr.code32_start = HIGH_RAM_START as u32;
    hdr.loadflags |= CAN_USE_HEAP;
    hdr.heap_end_ptr = HEAP_END_PTR;
    hdr.cmd_line_ptr = CMDLINE_START as u32;
    let (image, size) = initrd.unwrap_or((0, 0));
    hdr.ramdisk_image = image as u32;
    hdr.ramdisk_size = size as u32;
    params.ext_ramdisk_image = (image >> 32) as u32;
    params.ext_ramdisk_size = (size >> 32) as u32;
    params.hdr = hdr;
    let map = e820_map(layout);
    let mut table = [boot_e820_entry::default(); E820_MAX_ENTRIES_ZEROPAGE];
    for (slot, e) in table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_table = table;
    params.e820_entries = map.len().min(E820_MAX_ENTRIES_ZEROPAGE) as u8;
    params
}

/// Loads a bzImage for the 64-bit boot protocol (see [`super::load_guest`]).
pub(super) fn load(
    mem: &GuestMemoryMmap,
    kernel: &mut File,
    head: &[u8],
    file_size: u64,
    initramfs: Option<&mut File>,
    info: &BootInfo,
) -> Result<EntryPoint, BootError> {
    let layout = info.layout;
    let BzHeader { hdr, kernel_size } = parse_header(head, file_size, layout.ram_below_4g)?;
    cmdline::write_cmdline(mem, info.cmdline, cmdline_limit(&hdr))?;
    BzImage::load(mem, Some(GuestAddress(HIGH_RAM_START)), kernel, None)
        .map_err(BzImageError::Loader)?;
    let initrd = match initramfs {
        Some(file) => {
            // The kernel decompresses in place: keep [load, load + init_size) free.
            let lower = HIGH_RAM_START + kernel_size.max(u64::from(hdr.init_size));
            let addr_max = match hdr.initrd_addr_max {
                0 => DEFAULT_INITRD_ADDR_MAX,
                n => n,
            };
            let top = layout.ram_below_4g.min(u64::from(addr_max) + 1);
            Some(initramfs::load_initramfs(mem, file, lower, top)?)
        }
        None => None,
    };
    mem.write_obj(
        build_zero_page(hdr, layout, initrd, info.rsdp_addr),
        GuestAddress(ZERO_PAGE_START),
    )
    .map_err(|source| BzImageError::WriteZeroPage {
        addr: ZERO_PAGE_START,
        source,
    })?;
    Ok(EntryPoint {
        addr: HIGH_RAM_START + ENTRY_64_OFFSET,
        protocol: BootProtocol::LinuxBoot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::test_util::*;
    use crate::boot::InitramfsError;
    use std::mem::offset_of;

    #[test]
    fn boot_params_layout_matches_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<boot_params>(), 4096);
        assert_eq!(offset_of!(boot_params, acpi_rsdp_addr), 0x070);
        assert_eq!(offset_of!(boot_params, ext_ramdisk_image), 0x0c0);
        assert_eq!(offset_of!(boot_params, e820_entries), 0x1e8);
        assert_eq!(offset_of!(boot_params, hdr), 0x1f1);
        assert_eq!(offset_of!(boot_params, e820_table), 0x2d0);
        let h = 0x1f1;
        assert_eq!(h + offset_of!(setup_header, header), 0x202);
        assert_eq!(h + offset_of!(setup_header, type_of_loader), 0x210);
        assert_eq!(h + offset_of!(setup_header, loadflags), 0x211);
        assert_eq!(h + offset_of!(setup_header, ramdisk_image), 0x218);
        assert_eq!(h + offset_of!(setup_header, ramdisk_size), 0x21c);
        assert_eq!(h + offset_of!(setup_header, heap_end_ptr), 0x224);
        assert_eq!(h + offset_of!(setup_header, cmd_line_ptr), 0x228);
        assert_eq!(h + offset_of!(setup_header, initrd_addr_max), 0x22c);
        assert_eq!(h + offset_of!(setup_header, xloadflags), 0x236);
        assert_eq!(h + offset_of!(setup_header, cmdline_size), 0x238);
        assert_eq!(h + offset_of!(setup_header, init_size), 0x260);
        assert_eq!(std::mem::size_of::<boot_e820_entry>(), 20);
    }

    #[test]
    fn zero_page_in_guest_memory_has_loader_fields_e820_and_initrd() {
        let (mem, layout) = guest(256 << 20);
        let image = BzSpec::default().build();
        let mut initrd = file_with(&[0x17; 3000]);
        let entry = load_kernel(
            &mem,
            &layout,
            &mut file_with(&image),
            Some(&mut initrd),
            "root=/dev/vda",
        )
        .unwrap();
        assert_eq!(
            entry,
            EntryPoint {
                addr: 0x10_0200,
                protocol: BootProtocol::LinuxBoot
            }
        );
        let zp = ZERO_PAGE_START;
        let u8_at = |o: u64| mem.read_obj::<u8>(GuestAddress(zp + o)).unwrap();
        let u32_at = |o: u64| mem.read_obj::<u32>(GuestAddress(zp + o)).unwrap();
        let u64_at = |o: u64| mem.read_obj::<u64>(GuestAddress(zp + o)).unwrap();
        assert_eq!(u32_at(0x202), 0x5372_6448, "HdrS copied from the image");
        assert_eq!(u8_at(0x210), 0xff, "type_of_loader");
        assert_eq!(u8_at(0x211), LOADED_HIGH | CAN_USE_HEAP);
        assert_eq!(u32_at(0x228) as u64, CMDLINE_START);
        assert_eq!(read_bytes(&mem, CMDLINE_START, 14), b"root=/dev/vda\0");
        let (rd_addr, rd_size) = (u32_at(0x218) as u64, u32_at(0x21c));
        assert_eq!(rd_size, 3000);
        assert_eq!(rd_addr % 4096, 0);
        assert!(rd_addr + 3000 <= 0x3800_0000.min(layout.ram_below_4g));
        assert_eq!(read_bytes(&mem, rd_addr, 3000), vec![0x17; 3000]);
        let map = e820_map(&layout);
        assert_eq!(u8_at(0x1e8) as usize, map.len());
        for (i, e) in map.iter().enumerate() {
            let o = 0x2d0 + 20 * i as u64;
            assert_eq!(
                (u64_at(o), u64_at(o + 8), u32_at(o + 16)),
                (e.addr, e.size, e.kind)
            );
        }
        // The protected-mode kernel follows the setup sectors in the file.
        assert_eq!(read_bytes(&mem, 0x10_0000, 4), &image[0x600..0x604]);
    }

    #[test]
    fn zero_page_carries_the_rsdp_address_for_protocol_2_14_and_later() {
        let (mem, layout) = guest(128 << 20);
        let rsdp_at = |version: u16, rsdp: Option<u64>| {
            let image = BzSpec {
                version,
                ..Default::default()
            }
            .build();
            load_kernel_with_rsdp(&mem, &layout, &mut file_with(&image), rsdp).unwrap();
            mem.read_obj::<u64>(GuestAddress(ZERO_PAGE_START + 0x070))
                .unwrap()
        };
        assert_eq!(rsdp_at(0x020f, Some(0xE_0000)), 0xE_0000);
        assert_eq!(rsdp_at(0x020e, Some(0xE_0000)), 0xE_0000);
        assert_eq!(rsdp_at(0x020f, None), 0);
        // Before 2.14 those bytes were padding: the kernel scans for the RSDP instead.
        assert_eq!(rsdp_at(0x020d, Some(0xE_0000)), 0);
    }

    #[test]
    fn header_bytes_past_the_declared_end_are_not_copied() {
        let mut image = BzSpec::default().build();
        image[HEADER_LEN_BYTE] = 0x36; // header ends at 0x238 (protocol 2.06's cmdline_size)
        image[0x260..0x264].copy_from_slice(&0xdead_beef_u32.to_le_bytes());
        let h = parse_header(&image, image.len() as u64, 1 << 30).unwrap();
        assert_eq!({ h.hdr.init_size }, 0);
        assert_eq!({ h.hdr.xloadflags }, XLF_KERNEL_64);
    }

    fn bz_err(image: &[u8], ram: u64) -> BzImageError {
        parse_header(image, image.len() as u64, ram).unwrap_err()
    }

    #[test]
    fn old_protocol_zimage_and_32bit_only_are_rejected_by_name() {
        let old = BzSpec {
            version: 0x0204,
            ..Default::default()
        }
        .build();
        let err = bz_err(&old, 1 << 30);
        assert!(matches!(
            err,
            BzImageError::ProtocolTooOld { version: 0x0204 }
        ));
        assert!(err.to_string().contains("2.04 is too old"), "{err}");
        let zimage = BzSpec {
            loadflags: 0,
            ..Default::default()
        }
        .build();
        assert!(matches!(
            bz_err(&zimage, 1 << 30),
            BzImageError::NotLoadedHigh
        ));
        let k32 = BzSpec {
            xloadflags: 0,
            ..Default::default()
        }
        .build();
        assert!(matches!(bz_err(&k32, 1 << 30), BzImageError::No64BitEntry));
    }

    #[test]
    fn truncated_after_setup_and_too_big_are_rejected() {
        let image = BzSpec::default().build();
        assert!(matches!(
            bz_err(&image[..0x600], 1 << 30),
            BzImageError::Truncated {
                file_size: 0x600,
                setup_size: 0x600
            }
        ));
        let big = BzSpec {
            init_size: 0x1000_0000,
            ..Default::default()
        }
        .build();
        assert!(matches!(
            bz_err(&big, 128 << 20),
            BzImageError::KernelTooBig { .. }
        ));
    }

    #[test]
    fn cmdline_longer_than_cmdline_size_is_rejected() {
        let (mem, layout) = guest(128 << 20);
        let image = BzSpec {
            cmdline_size: 8,
            ..Default::default()
        }
        .build();
        let err =
            load_kernel(&mem, &layout, &mut file_with(&image), None, "123456789").unwrap_err();
        assert!(matches!(
            err,
            BootError::Cmdline(cmdline::CmdlineError::TooLong { len: 9, max: 8 })
        ));
    }

    #[test]
    fn initramfs_respects_initrd_addr_max_and_init_size() {
        let (mem, layout) = guest(256 << 20);
        let image = BzSpec {
            initrd_addr_max: 0x80f_ffff,
            ..Default::default()
        }
        .build();
        let mut initrd = file_with(&[1; 100]);
        load_kernel(&mem, &layout, &mut file_with(&image), Some(&mut initrd), "").unwrap();
        let rd = mem
            .read_obj::<u32>(GuestAddress(ZERO_PAGE_START + 0x218))
            .unwrap();
        assert_eq!(rd, 0x80f_f000);
        // init_size reaching the top leaves no room.
        let image = BzSpec {
            init_size: 0xfe0_0000,
            ..Default::default()
        }
        .build();
        let mut initrd = file_with(&[1; 0x20_0000]);
        let err = load_kernel(&mem, &layout, &mut file_with(&image), Some(&mut initrd), "");
        assert!(matches!(
            err,
            Err(BootError::Initramfs(InitramfsError::TooLarge { .. }))
        ));
    }
}
