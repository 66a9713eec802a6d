//! ELF (vmlinux) kernels entered through the Xen PVH boot ABI.
//!
//! The ELF headers are validated here first (class, machine, every loadable segment
//! inside the file and inside low RAM above 1 MiB), then linux-loader copies the
//! segments and finds the `XEN_ELFNOTE_PHYS32_ENTRY` note. The kernel gets an
//! `hvm_start_info` (version 1, with the memory map) whose address goes in EBX.

use std::fs::File;
use std::mem::size_of;

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info, XEN_HVM_START_MAGIC_VALUE,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::initramfs;
use super::{cmdline, read_at_most, BootError, BootInfo, BootProtocol, EntryPoint};
use crate::e820::e820_map;
use crate::layout::{
    MemoryLayout, CMDLINE_MAX_SIZE, CMDLINE_START, HIGH_RAM_START, PVH_INFO_START,
    PVH_MEMMAP_MAX_SIZE, PVH_MEMMAP_START, PVH_MODLIST_START,
};

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: u64 = 56;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

/// Why an ELF kernel cannot be loaded for PVH boot.
#[derive(Debug, thiserror::Error)]
pub enum PvhError {
    #[error("ELF header truncated: the file is only {size} bytes, the header needs 64")]
    TruncatedHeader { size: u64 },
    #[error("ELF class {class} is not ELFCLASS64: only 64-bit vmlinux images are supported")]
    NotElf64 { class: u8 },
    #[error("the ELF file is big-endian (EI_DATA {data}); an x86_64 kernel is little-endian")]
    NotLittleEndian { data: u8 },
    #[error("the ELF file is for machine {machine}, not x86_64 (62)")]
    WrongMachine { machine: u16 },
    #[error("ELF program header entries are {size} bytes, not the 56 of ELF64")]
    BadProgramHeaderSize { size: u16 },
    #[error(
        "ELF program headers ({count} at offset {offset:#x}) run past the end of the \
         {file_size}-byte file: the image is truncated"
    )]
    TruncatedProgramHeaders {
        offset: u64,
        count: u16,
        file_size: u64,
    },
    #[error(
        "ELF segment {index} (file bytes {offset:#x}+{size:#x}) runs past the end of the \
         {file_size}-byte file: the image is truncated"
    )]
    TruncatedSegment {
        index: usize,
        offset: u64,
        size: u64,
        file_size: u64,
    },
    #[error(
        "ELF segment {index} has more file bytes ({filesz:#x}) than memory bytes ({memsz:#x})"
    )]
    BadSegmentSize {
        index: usize,
        filesz: u64,
        memsz: u64,
    },
    #[error(
        "ELF segment {index} wants guest memory [{start:#x}, {end:#x}), outside the usable \
         RAM [{HIGH_RAM_START:#x}, {ram_end:#x}): give the VM more memory or check the image"
    )]
    SegmentOutsideRam {
        index: usize,
        start: u64,
        end: u128,
        ram_end: u64,
    },
    #[error("the ELF file has no loadable segment")]
    NoLoadableSegments,
    #[error("cannot read the kernel image: {0}")]
    Read(#[source] std::io::Error),
    #[error("loading the ELF segments failed: {0}")]
    Loader(#[source] linux_loader::loader::Error),
    #[error(
        "the ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): build it with \
         CONFIG_PVH=y or boot a bzImage"
    )]
    NoPvhNote,
    #[error(
        "the PVH entry point {addr:#x} is outside the loaded RAM [{HIGH_RAM_START:#x}, \
         {ram_end:#x})"
    )]
    EntryOutsideRam { addr: u64, ram_end: u64 },
    #[error("{count} memory map entries do not fit the {max}-entry PVH memory map area")]
    MemmapTooLarge { count: usize, max: usize },
    #[error("cannot write the PVH {what} at guest address {addr:#x}: {source}")]
    WriteBootInfo {
        what: &'static str,
        addr: u64,
        source: GuestMemoryError,
    },
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Checks the ELF header in `head` and every loadable segment; returns the end of the
/// highest segment in guest memory.
fn validate_elf(
    kernel: &mut File,
    head: &[u8],
    file_size: u64,
    layout: &MemoryLayout,
) -> Result<u64, PvhError> {
    if head.len() < EHDR_SIZE {
        return Err(PvhError::TruncatedHeader { size: file_size });
    }
    match (head[4], head[5], u16_at(head, 18), u16_at(head, 54)) {
        (class, ..) if class != ELFCLASS64 => return Err(PvhError::NotElf64 { class }),
        (_, data, ..) if data != ELFDATA2LSB => return Err(PvhError::NotLittleEndian { data }),
        (_, _, machine, _) if machine != EM_X86_64 => {
            return Err(PvhError::WrongMachine { machine })
        }
        (.., size) if u64::from(size) != PHDR_SIZE => {
            return Err(PvhError::BadProgramHeaderSize { size })
        }
        _ => {}
    }
    let (phoff, phnum) = (u64_at(head, 32), u16_at(head, 56));
    let table_end = u128::from(phoff) + u128::from(phnum) * u128::from(PHDR_SIZE);
    if table_end > u128::from(file_size) {
        return Err(PvhError::TruncatedProgramHeaders {
            offset: phoff,
            count: phnum,
            file_size,
        });
    }
    let table =
        read_at_most(kernel, phoff, u64::from(phnum) * PHDR_SIZE).map_err(PvhError::Read)?;
    let mut kernel_end: Option<u64> = None;
    let mut has_file_bytes = false;
    for (index, ph) in table.chunks_exact(PHDR_SIZE as usize).enumerate() {
        if let Some(end) = check_segment(index, ph, file_size, layout)? {
            kernel_end = kernel_end.max(Some(end));
            has_file_bytes |= u64_at(ph, 32) > 0;
        }
    }
    match kernel_end {
        Some(end) if has_file_bytes => Ok(end),
        _ => Err(PvhError::NoLoadableSegments),
    }
}

/// Checks one program header: its file bytes (PT_LOAD and PT_NOTE) lie inside the
/// file, and a PT_LOAD's memory lies inside low RAM above 1 MiB. Returns the end of a
/// PT_LOAD segment in guest memory, `None` for other segments.
fn check_segment(
    index: usize,
    ph: &[u8],
    file_size: u64,
    layout: &MemoryLayout,
) -> Result<Option<u64>, PvhError> {
    let p_type = u32_at(ph, 0);
    let (offset, paddr) = (u64_at(ph, 8), u64_at(ph, 24));
    let (filesz, memsz) = (u64_at(ph, 32), u64_at(ph, 40));
    if p_type != PT_LOAD && p_type != PT_NOTE {
        return Ok(None);
    }
    if u128::from(offset) + u128::from(filesz) > u128::from(file_size) {
        return Err(PvhError::TruncatedSegment {
            index,
            offset,
            size: filesz,
            file_size,
        });
    }
    if p_type != PT_LOAD {
        return Ok(None);
    }
    if filesz > memsz {
        return Err(PvhError::BadSegmentSize {
            index,
            filesz,
            memsz,
        });
    }
    let end = u128::from(paddr) + u128::from(memsz);
    if paddr < HIGH_RAM_START || end > u128::from(layout.ram_below_4g) {
        return Err(PvhError::SegmentOutsideRam {
            index,
            start: paddr,
            end,
            ram_end: layout.ram_below_4g,
        });
    }
    // end <= ram_below_4g, so it fits in u64.
    Ok(Some(end as u64))
}

/// Copies the segments with linux-loader and returns the PVH entry point.
fn load_elf(
    mem: &GuestMemoryMmap,
    kernel: &mut File,
    layout: &MemoryLayout,
) -> Result<u64, PvhError> {
    let result = Elf::load(mem, None, kernel, Some(GuestAddress(HIGH_RAM_START)))
        .map_err(PvhError::Loader)?;
    match result.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(GuestAddress(addr)) => {
            if !(HIGH_RAM_START..layout.ram_below_4g).contains(&addr) {
                return Err(PvhError::EntryOutsideRam {
                    addr,
                    ram_end: layout.ram_below_4g,
                });
            }
            Ok(addr)
        }
        PvhBootCapability::PvhEntryNotPresent | PvhBootCapability::PvhEntryIgnored => {
            Err(PvhError::NoPvhNote)
        }
    }
}

fn write<T: vm_memory::ByteValued>(
    mem: &GuestMemoryMmap,
    what: &'static str,
    addr: u64,
    val: T,
) -> Result<(), PvhError> {
    mem.write_obj(val, GuestAddress(addr))
        .map_err(|source| PvhError::WriteBootInfo { what, addr, source })
}

/// Writes `hvm_start_info` v1, the memory map and (with an initramfs) the module list.
/// `rsdp_paddr` is 0 without ACPI tables.
fn write_start_info(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    initrd: Option<(u64, u64)>,
    rsdp_addr: Option<u64>,
) -> Result<(), PvhError> {
    let map = e820_map(layout);
    let max = PVH_MEMMAP_MAX_SIZE as usize / size_of::<hvm_memmap_table_entry>();
    if map.len() > max {
        return Err(PvhError::MemmapTooLarge {
            count: map.len(),
            max,
        });
    }
    for (i, e) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        };
        let addr = PVH_MEMMAP_START + (i * size_of::<hvm_memmap_table_entry>()) as u64;
        write(mem, "memory map", addr, entry)?;
    }
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: CMDLINE_START,
        rsdp_paddr: rsdp_addr.unwrap_or(0),
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if let Some((paddr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        };
        write(mem, "module list", PVH_MODLIST_START, module)?;
        info.nr_modules = 1;
        info.modlist_paddr = PVH_MODLIST_START;
    }
    write(mem, "start info", PVH_INFO_START, info)
}

/// Loads an ELF kernel for PVH boot (see [`super::load_guest`]).
pub(super) fn load(
    mem: &GuestMemoryMmap,
    kernel: &mut File,
    head: &[u8],
    file_size: u64,
    initramfs: Option<&mut File>,
    info: &BootInfo,
) -> Result<EntryPoint, BootError> {
    let layout = info.layout;
    let kernel_end = validate_elf(kernel, head, file_size, layout)?;
    // The command line is checked before anything big is copied.
    cmdline::write_cmdline(mem, info.cmdline, CMDLINE_MAX_SIZE - 1)?;
    let addr = load_elf(mem, kernel, layout)?;
    let initrd = match initramfs {
        Some(file) => {
            let top = layout.ram_below_4g;
            Some(initramfs::load_initramfs(mem, file, kernel_end, top)?)
        }
        None => None,
    };
    write_start_info(mem, layout, initrd, info.rsdp_addr)?;
    Ok(EntryPoint {
        addr,
        protocol: BootProtocol::Pvh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::test_util::*;
    use crate::boot::BootError;
    use std::mem::offset_of;

    #[test]
    fn start_info_layout_matches_the_xen_abi() {
        assert_eq!(size_of::<hvm_start_info>(), 56);
        assert_eq!(offset_of!(hvm_start_info, nr_modules), 12);
        assert_eq!(offset_of!(hvm_start_info, modlist_paddr), 16);
        assert_eq!(offset_of!(hvm_start_info, cmdline_paddr), 24);
        assert_eq!(offset_of!(hvm_start_info, rsdp_paddr), 32);
        assert_eq!(offset_of!(hvm_start_info, memmap_paddr), 40);
        assert_eq!(offset_of!(hvm_start_info, memmap_entries), 48);
        assert_eq!(size_of::<hvm_memmap_table_entry>(), 24);
        assert_eq!(size_of::<hvm_modlist_entry>(), 32);
    }

    #[test]
    fn start_info_in_guest_memory_reads_back_per_abi() {
        let (mem, layout) = guest(128 << 20);
        let mut k = file_with(&pvh_elf(&[0x90; 32]));
        let mut initrd = file_with(&[0xab; 5000]);
        load_kernel(
            &mem,
            &layout,
            &mut k,
            Some(&mut initrd),
            "console=ttyS0 quiet",
        )
        .unwrap();
        let u32_at = |a| mem.read_obj::<u32>(GuestAddress(a)).unwrap();
        let u64_at = |a| mem.read_obj::<u64>(GuestAddress(a)).unwrap();
        let base = PVH_INFO_START;
        assert_eq!(u32_at(base), 0x336e_c578, "magic");
        assert_eq!(u32_at(base + 4), 1, "version");
        assert_eq!(u32_at(base + 12), 1, "nr_modules");
        assert_eq!(u64_at(base + 16), PVH_MODLIST_START);
        assert_eq!(u64_at(base + 24), CMDLINE_START);
        assert_eq!(u64_at(base + 32), 0, "rsdp_paddr");
        assert_eq!(u64_at(base + 40), PVH_MEMMAP_START);
        let entries = e820_map(&layout);
        assert_eq!(u32_at(base + 48) as usize, entries.len());
        assert_eq!(
            read_bytes(&mem, CMDLINE_START, 21),
            b"console=ttyS0 quiet\0\0"
        );
        // Memory map entries, 24 bytes each.
        for (i, e) in entries.iter().enumerate() {
            let a = PVH_MEMMAP_START + 24 * i as u64;
            assert_eq!(
                (u64_at(a), u64_at(a + 8), u32_at(a + 16)),
                (e.addr, e.size, e.kind)
            );
        }
        // The module is page aligned at the top of low RAM and holds the file.
        let (paddr, size) = (u64_at(PVH_MODLIST_START), u64_at(PVH_MODLIST_START + 8));
        assert_eq!(size, 5000);
        assert_eq!(paddr % 4096, 0);
        assert!(paddr + size <= layout.ram_below_4g && paddr + size + 4096 > layout.ram_below_4g);
        assert_eq!(read_bytes(&mem, paddr, 5000), vec![0xab; 5000]);
    }

    #[test]
    fn without_initramfs_there_are_no_modules() {
        let (mem, layout) = guest(128 << 20);
        load_kernel(&mem, &layout, &mut file_with(&pvh_elf(&[0x90])), None, "").unwrap();
        let nr = mem
            .read_obj::<u32>(GuestAddress(PVH_INFO_START + 12))
            .unwrap();
        let modlist = mem
            .read_obj::<u64>(GuestAddress(PVH_INFO_START + 16))
            .unwrap();
        assert_eq!((nr, modlist), (0, 0));
    }

    #[test]
    fn start_info_carries_the_rsdp_address() {
        let (mem, layout) = guest(128 << 20);
        let mut k = file_with(&pvh_elf(&[0x90]));
        load_kernel_with_rsdp(&mem, &layout, &mut k, Some(0xE_0000)).unwrap();
        let rsdp = mem.read_obj::<u64>(GuestAddress(PVH_INFO_START + 32));
        assert_eq!(rsdp.unwrap(), 0xE_0000);
        let mut k = file_with(&pvh_elf(&[0x90]));
        load_kernel_with_rsdp(&mem, &layout, &mut k, None).unwrap();
        let rsdp = mem.read_obj::<u64>(GuestAddress(PVH_INFO_START + 32));
        assert_eq!(rsdp.unwrap(), 0);
    }

    fn pvh_err(image: &[u8]) -> PvhError {
        let (mem, layout) = guest(128 << 20);
        match load_kernel(&mem, &layout, &mut file_with(image), None, "") {
            Err(BootError::Pvh(e)) => e,
            other => panic!("expected a PVH error, got {other:?}"),
        }
    }

    #[test]
    fn elf_without_pvh_note_is_rejected_by_name() {
        let image = ElfSpec {
            note: false,
            ..ElfSpec::new(&[0x90; 8])
        }
        .build();
        let err = pvh_err(&image);
        assert!(matches!(err, PvhError::NoPvhNote));
        assert!(err.to_string().contains("no PVH entry note"));
    }

    #[test]
    fn truncated_elf_header_and_tables_are_rejected() {
        let image = pvh_elf(&[0x90; 64]);
        assert!(matches!(
            pvh_err(&image[..40]),
            PvhError::TruncatedHeader { size: 40 }
        ));
        assert!(matches!(
            pvh_err(&image[..100]),
            PvhError::TruncatedProgramHeaders { count: 2, .. }
        ));
        let cut = image.len() - 10;
        assert!(matches!(
            pvh_err(&image[..cut]),
            PvhError::TruncatedSegment { index: 0, .. }
        ));
    }

    #[test]
    fn note_segment_past_the_end_of_the_file_is_truncation() {
        let mut image = pvh_elf(&[0x90; 8]);
        // Second program header (PT_NOTE): p_filesz at 64 + 56 + 32.
        image[152..160].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            pvh_err(&image),
            PvhError::TruncatedSegment { index: 1, .. }
        ));
    }

    #[test]
    fn elf_with_only_bss_segments_has_nothing_to_load() {
        let mut image = pvh_elf(&[0x90; 8]);
        image[64 + 32..64 + 40].copy_from_slice(&0u64.to_le_bytes()); // PT_LOAD p_filesz
        assert!(matches!(pvh_err(&image), PvhError::NoLoadableSegments));
    }

    #[test]
    fn wrong_class_machine_and_endianness_are_named() {
        let mut image = pvh_elf(&[0x90]);
        image[4] = 1;
        assert!(matches!(pvh_err(&image), PvhError::NotElf64 { class: 1 }));
        let mut image = pvh_elf(&[0x90]);
        image[5] = 2;
        assert!(matches!(
            pvh_err(&image),
            PvhError::NotLittleEndian { data: 2 }
        ));
        let mut image = pvh_elf(&[0x90]);
        image[18] = 183;
        assert!(matches!(
            pvh_err(&image),
            PvhError::WrongMachine { machine: 183 }
        ));
    }

    #[test]
    fn segments_outside_ram_are_rejected_before_loading() {
        let low = ElfSpec {
            paddr: 0x1000,
            entry: 0x1000,
            ..ElfSpec::new(&[0x90])
        }
        .build();
        assert!(matches!(
            pvh_err(&low),
            PvhError::SegmentOutsideRam { start: 0x1000, .. }
        ));
        let huge = ElfSpec {
            memsz: Some(u64::MAX),
            ..ElfSpec::new(&[0x90])
        }
        .build();
        let err = pvh_err(&huge);
        assert!(
            matches!(err, PvhError::SegmentOutsideRam { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn entry_outside_ram_is_rejected() {
        let image = ElfSpec {
            note_entry: 0xFFFF_0000,
            ..ElfSpec::new(&[0x90])
        }
        .build();
        assert!(matches!(
            pvh_err(&image),
            PvhError::EntryOutsideRam {
                addr: 0xFFFF_0000,
                ..
            }
        ));
    }
}
