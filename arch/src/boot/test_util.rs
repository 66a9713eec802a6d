//! Test helpers: guest memory, throw-away files and tiny kernel images.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{load_guest, load_guest_with_rsdp, BootError, BootSetup, EntryPoint};
use crate::layout::MemoryLayout;

/// Lazily mapped guest memory laid out for `ram` bytes.
pub fn guest(ram: u64) -> (GuestMemoryMmap, MemoryLayout) {
    let layout = MemoryLayout::new(ram, 40).unwrap();
    (
        GuestMemoryMmap::from_ranges(&layout.ram_ranges()).unwrap(),
        layout,
    )
}

/// An unlinked temporary file holding `bytes`.
pub fn file_with(bytes: &[u8]) -> File {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "arch-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f.write_all(bytes).unwrap();
    f
}

pub fn read_bytes(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

/// `load_guest` with one vCPU.
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    kernel: &mut File,
    initramfs: Option<&mut File>,
    cmdline: &str,
) -> Result<EntryPoint, BootError> {
    load_guest(
        mem,
        BootSetup {
            kernel,
            initramfs,
            cmdline,
            num_vcpus: 1,
            layout,
        },
    )
}

/// `load_guest_with_rsdp` with one vCPU, no initramfs and an empty command line.
pub fn load_kernel_with_rsdp(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    kernel: &mut File,
    rsdp_addr: Option<u64>,
) -> Result<EntryPoint, BootError> {
    let setup = BootSetup {
        kernel,
        initramfs: None,
        cmdline: "",
        num_vcpus: 1,
        layout,
    };
    load_guest_with_rsdp(mem, setup, rsdp_addr)
}

/// A minimal ELF64 x86_64 image: one PT_LOAD segment and one PT_NOTE segment.
pub struct ElfSpec<'a> {
    pub code: &'a [u8],
    pub paddr: u64,
    pub entry: u64,
    pub memsz: Option<u64>,
    /// Whether the note is the Xen PVH entry note (else a GNU build-id note).
    pub note: bool,
    pub note_entry: u32,
}

impl<'a> ElfSpec<'a> {
    pub fn new(code: &'a [u8]) -> Self {
        ElfSpec {
            code,
            paddr: 0x10_0000,
            entry: 0x10_0000,
            memsz: None,
            note: true,
            note_entry: 0x10_0000,
        }
    }

    pub fn build(&self) -> Vec<u8> {
        const NOTE_OFF: u64 = 64 + 2 * 56;
        const CODE_OFF: u64 = 0x100;
        let mut v = Vec::new();
        v.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        v.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        v.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&self.entry.to_le_bytes());
        v.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
        v.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        v.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        for h in [64u16, 56, 2, 64, 0, 0] {
            v.extend_from_slice(&h.to_le_bytes());
        }
        let code_len = self.code.len() as u64;
        let phdr = |v: &mut Vec<u8>, p_type: u32, off: u64, addr: u64, filesz: u64, memsz: u64| {
            v.extend_from_slice(&p_type.to_le_bytes());
            v.extend_from_slice(&5u32.to_le_bytes()); // R+X
            for x in [off, addr, addr, filesz, memsz, 4] {
                v.extend_from_slice(&x.to_le_bytes());
            }
        };
        phdr(
            &mut v,
            1,
            CODE_OFF,
            self.paddr,
            code_len,
            self.memsz.unwrap_or(code_len),
        );
        phdr(&mut v, 4, NOTE_OFF, 0, 20, 20);
        let (name, n_type) = if self.note {
            (b"Xen\0", 18u32)
        } else {
            (b"GNU\0", 3u32)
        };
        for x in [4u32, 4, n_type] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(name);
        v.extend_from_slice(&self.note_entry.to_le_bytes());
        v.resize(CODE_OFF as usize, 0);
        v.extend_from_slice(self.code);
        v
    }
}

/// A PVH ELF entered at 0x100000 running `code`.
pub fn pvh_elf(code: &[u8]) -> Vec<u8> {
    ElfSpec::new(code).build()
}

/// A minimal bzImage: two setup sectors (+ boot sector), then a 4 KiB "kernel".
pub struct BzSpec {
    pub version: u16,
    pub loadflags: u8,
    pub xloadflags: u16,
    pub cmdline_size: u32,
    pub init_size: u32,
    pub initrd_addr_max: u32,
}

impl Default for BzSpec {
    fn default() -> Self {
        BzSpec {
            version: 0x020f,
            loadflags: 1,
            xloadflags: 1,
            cmdline_size: 2047,
            init_size: 0x10_0000,
            initrd_addr_max: 0x7fff_ffff,
        }
    }
}

impl BzSpec {
    pub fn build(&self) -> Vec<u8> {
        let mut v = vec![0u8; 0x600 + 0x1000];
        v[0x1f1] = 2; // setup_sects
        v[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        v[0x200] = 0xeb; // jmp short
        v[0x201] = 0x6a; // header ends at 0x26c
        v[0x202..0x206].copy_from_slice(b"HdrS");
        v[0x206..0x208].copy_from_slice(&self.version.to_le_bytes());
        v[0x211] = self.loadflags;
        v[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
        v[0x22c..0x230].copy_from_slice(&self.initrd_addr_max.to_le_bytes());
        v[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        v[0x234] = 1; // relocatable
        v[0x236..0x238].copy_from_slice(&self.xloadflags.to_le_bytes());
        v[0x238..0x23c].copy_from_slice(&self.cmdline_size.to_le_bytes());
        v[0x260..0x264].copy_from_slice(&self.init_size.to_le_bytes());
        for (i, b) in v[0x600..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        v
    }
}
