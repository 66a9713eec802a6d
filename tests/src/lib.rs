//! Tiny guest images for end-to-end tests: a PVH ELF wrapping hand-assembled 32-bit
//! code, the code itself (print to COM1, then request a reset), and a few images that
//! must be rejected.

pub mod http;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

/// Guest-physical load address and PVH entry point of [`pvh_guest_elf`] images.
pub const GUEST_LOAD_ADDR: u64 = 0x10_0000;
/// COM1 data port.
pub const SERIAL_PORT: u16 = 0x3f8;
/// i8042 command port; writing 0xFE there pulses the CPU reset line.
pub const I8042_COMMAND_PORT: u8 = 0x64;
/// i8042 "pulse reset" command.
pub const I8042_RESET: u8 = 0xfe;

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the note type linux-loader looks for in PT_NOTE segments.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// File offset of the code: page aligned like the load address, as `p_align` asks.
const CODE_OFFSET: u64 = 0x1000;
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

fn push_u16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn push_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn push_u64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// One ELF64 program header.
struct Phdr {
    p_type: u32,
    flags: u32,
    offset: u64,
    addr: u64,
    size: u64,
    align: u64,
}

fn push_phdr(v: &mut Vec<u8>, p: &Phdr) {
    push_u32(v, p.p_type);
    push_u32(v, p.flags);
    push_u64(v, p.offset);
    push_u64(v, p.addr); // p_vaddr
    push_u64(v, p.addr); // p_paddr: where linux-loader puts the segment
    push_u64(v, p.size); // p_filesz
    push_u64(v, p.size); // p_memsz
    push_u64(v, p.align);
}

/// An ELF note: namesz, descsz, type, name and desc each padded to 4 bytes.
fn note(name: &[u8], n_type: u32, desc: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    push_u32(&mut v, name.len() as u32);
    push_u32(&mut v, desc.len() as u32);
    push_u32(&mut v, n_type);
    for part in [name, desc] {
        v.extend_from_slice(part);
        v.resize(v.len().next_multiple_of(4), 0);
    }
    v
}

/// A minimal ELF64 x86_64 executable: a PT_LOAD segment at [`GUEST_LOAD_ADDR`] holding
/// `code`, and a PT_NOTE segment holding `note_bytes`. No sections.
fn elf_with_note(code: &[u8], note_bytes: &[u8]) -> Vec<u8> {
    let note_offset = EHDR_SIZE + 2 * PHDR_SIZE;
    let mut v = Vec::with_capacity(CODE_OFFSET as usize + code.len());
    // e_ident: magic, ELFCLASS64, ELFDATA2LSB, EV_CURRENT, System V ABI, padding.
    v.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    v.extend_from_slice(&[0; 8]);
    push_u16(&mut v, 2); // e_type: ET_EXEC
    push_u16(&mut v, 62); // e_machine: EM_X86_64
    push_u32(&mut v, 1); // e_version
    push_u64(&mut v, GUEST_LOAD_ADDR); // e_entry
    push_u64(&mut v, EHDR_SIZE); // e_phoff: right after this header
    push_u64(&mut v, 0); // e_shoff: no sections
    push_u32(&mut v, 0); // e_flags
    push_u16(&mut v, EHDR_SIZE as u16); // e_ehsize
    push_u16(&mut v, PHDR_SIZE as u16); // e_phentsize
    push_u16(&mut v, 2); // e_phnum
    push_u16(&mut v, 64); // e_shentsize
    push_u16(&mut v, 0); // e_shnum
    push_u16(&mut v, 0); // e_shstrndx
    let load = Phdr {
        p_type: PT_LOAD,
        flags: 0b111, // R W X
        offset: CODE_OFFSET,
        addr: GUEST_LOAD_ADDR,
        size: code.len() as u64,
        align: 0x1000,
    };
    push_phdr(&mut v, &load);
    let note_phdr = Phdr {
        p_type: PT_NOTE,
        flags: 0b100, // R
        offset: note_offset,
        addr: 0,
        size: note_bytes.len() as u64,
        align: 4,
    };
    push_phdr(&mut v, &note_phdr);
    v.extend_from_slice(note_bytes);
    assert!(
        v.len() as u64 <= CODE_OFFSET,
        "note too large for the builder"
    );
    v.resize(CODE_OFFSET as usize, 0);
    v.extend_from_slice(code);
    v
}

/// A minimal valid ELF64 (ET_EXEC, x86_64) PVH kernel: `code32` is loaded at
/// guest-physical 0x100000 and entered there in 32-bit protected mode through the Xen
/// PVH note (name "Xen\0", type 18, 4-byte desc = 0x100000).
pub fn pvh_guest_elf(code32: &[u8]) -> Vec<u8> {
    let entry = (GUEST_LOAD_ADDR as u32).to_le_bytes();
    elf_with_note(code32, &note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &entry))
}

/// The same ELF but its only note is a GNU build-id: a kernel built without CONFIG_PVH.
pub fn elf_without_pvh_note(code32: &[u8]) -> Vec<u8> {
    elf_with_note(code32, &note(b"GNU\0", 3, &[0xab; 20]))
}

/// Bytes that are neither an ELF nor a bzImage.
pub fn not_a_kernel() -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Hand-assembled 32-bit code: write `msg` byte by byte to COM1 (0x3f8), ask the
/// i8042 for a reset (0xFE to port 0x64), then halt forever.
///
/// ```text
/// FA             cli
/// 66 BA F8 03    mov dx, 0x3f8       (0x66: 16-bit operand in 32-bit code)
/// B0 xx          mov al, <byte>      } once per byte of msg
/// EE             out dx, al          }
/// B0 FE          mov al, 0xfe
/// E6 64          out 0x64, al
/// F4             hlt                 <- loop
/// EB FD          jmp short loop      (rel8 -3: back to the hlt)
/// ```
pub fn serial_hello_code(msg: &[u8]) -> Vec<u8> {
    let mut code = vec![0xfa];
    code.extend_from_slice(&[0x66, 0xba]);
    code.extend_from_slice(&SERIAL_PORT.to_le_bytes());
    for &byte in msg {
        code.extend_from_slice(&[0xb0, byte, 0xee]);
    }
    code.extend_from_slice(&[0xb0, I8042_RESET, 0xe6, I8042_COMMAND_PORT]);
    code.extend_from_slice(&[0xf4, 0xeb, 0xfd]);
    code
}

/// Like [`serial_hello_code`] but without the reset: the guest halts forever after `msg`
/// (for measuring a running VMM, e.g. its resident memory).
pub fn serial_hello_then_halt_code(msg: &[u8]) -> Vec<u8> {
    let mut code = serial_hello_code(msg);
    let n = code.len();
    // Drop `mov al,0xfe; out 0x64,al` (4 bytes) before the final hlt/jmp.
    code.drain(n - 7..n - 3);
    code
}

/// Hand-assembled 32-bit code: write `byte` to COM1 forever, one every `cycles` TSC ticks
/// (a guest whose progress can be watched from outside: the serial file grows while its vCPU
/// runs and stops growing while it is paused).
///
/// ```text
/// FA               cli
/// top:
/// 0F 31            rdtsc               edx:eax = TSC
/// 89 C3            mov ebx, eax
/// wait:
/// 0F 31            rdtsc
/// 29 D8            sub eax, ebx        ticks since top (mod 2^32)
/// 3D imm32         cmp eax, cycles
/// 72 F5            jb wait             (rel8 -11)
/// B0 xx            mov al, byte
/// 66 BA F8 03      mov dx, 0x3f8       (rdtsc clobbered edx)
/// EE               out dx, al
/// EB E8            jmp top             (rel8 -24)
/// ```
pub fn serial_ticker_code(byte: u8, cycles: u32) -> Vec<u8> {
    let mut code = vec![0xfa, 0x0f, 0x31, 0x89, 0xc3, 0x0f, 0x31, 0x29, 0xd8, 0x3d];
    code.extend_from_slice(&cycles.to_le_bytes());
    code.extend_from_slice(&[0x72, 0xf5, 0xb0, byte, 0x66, 0xba]);
    code.extend_from_slice(&SERIAL_PORT.to_le_bytes());
    code.extend_from_slice(&[0xee, 0xeb, 0xe8]);
    debug_assert_eq!(code.len(), 25);
    code
}

/// Hand-assembled 32-bit code: write a counter (0, 1, 2, ... mod 256) to COM1, one byte every
/// `cycles` TSC ticks, forever. The counter lives in ECX: a guest restored from a snapshot goes
/// on from where it was saved, so its serial output stays one unbroken sequence.
///
/// ```text
/// FA               cli
/// 31 C9            xor ecx, ecx        counter = 0
/// top:
/// 0F 31            rdtsc
/// 89 C3            mov ebx, eax
/// wait:
/// 0F 31            rdtsc
/// 29 D8            sub eax, ebx
/// 3D imm32         cmp eax, cycles
/// 72 F5            jb wait             (rel8 -11)
/// 88 C8            mov al, cl
/// 66 BA F8 03      mov dx, 0x3f8
/// EE               out dx, al
/// 41               inc ecx
/// EB E7            jmp top             (rel8 -25)
/// ```
pub fn serial_counter_code(cycles: u32) -> Vec<u8> {
    let mut code = vec![
        0xfa, 0x31, 0xc9, 0x0f, 0x31, 0x89, 0xc3, 0x0f, 0x31, 0x29, 0xd8, 0x3d,
    ];
    code.extend_from_slice(&cycles.to_le_bytes());
    code.extend_from_slice(&[0x72, 0xf5, 0x88, 0xc8, 0x66, 0xba]);
    code.extend_from_slice(&SERIAL_PORT.to_le_bytes());
    code.extend_from_slice(&[0xee, 0x41, 0xeb, 0xe7]);
    debug_assert_eq!(code.len(), 28);
    code
}

/// Hand-assembled 32-bit code that drives the modern virtio-pci device at PCI `00:<dev>.0`
/// to DRIVER_OK, as a driver would, with queue 0 enabled on zeroed rings at 2 MiB (nothing is
/// ever queued), then runs [`serial_hello_then_halt_code`]. The VMM then activates the device
/// and starts its worker thread. Paging is off, so it first moves the 64-bit BAR 0 (which the
/// VMM places above 4 GiB) to [`VIRTIO_TEST_BAR`] in the 32-bit window, as an OS may, and
/// turns on memory decoding and bus mastering in the command register; it
/// assumes this VMM's layout (everything in BAR 0, common configuration at offset 0). If BAR 0
/// does not read back below 4 GiB it writes `!` instead of `msg`.
///
/// ```text
/// B8 imm32        mov eax, 0x80000000 | dev << 11 | reg   (CONFIG_ADDRESS of a register)
/// 66 BA F8 0C     mov dx, 0xcf8
/// EF              out dx, eax
/// B8 imm32        mov eax, value                          (writes only)
/// 66 BA FC 0C     mov dx, 0xcfc
/// EF / ED         out dx, eax / in eax, dx                (write / read CONFIG_DATA)
/// 85 C0 / 75 rel8 test eax, eax / jnz fail                (BAR 0's high dword must be 0)
/// 25 F0 FF FF FF  and eax, ~0xf                           (low dword: the address)
/// 89 C3           mov ebx, eax
/// C6 43 d8 imm8   mov byte  [ebx+d8], imm8                (device_status)
/// 66 C7 43 d8 i16 mov word  [ebx+d8], imm16               (queue_select, queue_enable)
/// C7 43 d8 imm32  mov dword [ebx+d8], imm32               (features, ring addresses)
/// ```
/// Where [`virtio_driver_ok_then_hello_code`] puts the device's BAR 0: inside the VMM's 32-bit
/// PCI window (0xC000_0000..0xE000_0000), 64 KiB aligned.
pub const VIRTIO_TEST_BAR: u32 = 0xD000_0000;

pub fn virtio_driver_ok_then_hello_code(dev: u8, msg: &[u8]) -> Vec<u8> {
    let cfg_addr = |reg: u32| 0x8000_0000u32 | (u32::from(dev) << 11) | reg;
    // mov eax, CONFIG_ADDRESS of `reg`; mov dx, 0xcf8; out dx, eax
    let select = |code: &mut Vec<u8>, reg: u32| {
        code.push(0xb8);
        code.extend_from_slice(&cfg_addr(reg).to_le_bytes());
        code.extend_from_slice(&[0x66, 0xba, 0xf8, 0x0c, 0xef]);
    };
    // ...; mov dx, 0xcfc; in eax, dx
    let read_config = |code: &mut Vec<u8>, reg: u32| {
        select(code, reg);
        code.extend_from_slice(&[0x66, 0xba, 0xfc, 0x0c, 0xed]);
    };
    // ...; mov eax, value; mov dx, 0xcfc; out dx, eax
    let write_config = |code: &mut Vec<u8>, reg: u32, value: u32| {
        select(code, reg);
        code.push(0xb8);
        code.extend_from_slice(&value.to_le_bytes());
        code.extend_from_slice(&[0x66, 0xba, 0xfc, 0x0c, 0xef]);
    };
    let byte = |code: &mut Vec<u8>, off: u8, v: u8| code.extend_from_slice(&[0xc6, 0x43, off, v]);
    let word = |code: &mut Vec<u8>, off: u8, v: u16| {
        code.extend_from_slice(&[0x66, 0xc7, 0x43, off]);
        code.extend_from_slice(&v.to_le_bytes());
    };
    let dword = |code: &mut Vec<u8>, off: u8, v: u32| {
        code.extend_from_slice(&[0xc7, 0x43, off]);
        code.extend_from_slice(&v.to_le_bytes());
    };
    let mut body = Vec::new();
    read_config(&mut body, 0x10);
    body.extend_from_slice(&[0x25, 0xf0, 0xff, 0xff, 0xff, 0x89, 0xc3]);
    byte(&mut body, 0x14, 1); // ACKNOWLEDGE
    byte(&mut body, 0x14, 2); // DRIVER
    dword(&mut body, 0x08, 1); // driver_feature_select = 1
    dword(&mut body, 0x0c, 1); // VIRTIO_F_VERSION_1 (bit 32)
    byte(&mut body, 0x14, 8); // FEATURES_OK
    word(&mut body, 0x16, 0); // queue_select = 0
    dword(&mut body, 0x20, 0x20_0000); // queue_desc
    dword(&mut body, 0x24, 0);
    dword(&mut body, 0x28, 0x20_1000); // queue_driver (avail)
    dword(&mut body, 0x2c, 0);
    dword(&mut body, 0x30, 0x20_2000); // queue_device (used)
    dword(&mut body, 0x34, 0);
    word(&mut body, 0x1c, 1); // queue_enable
    byte(&mut body, 0x14, 4); // DRIVER_OK
    let hello = serial_hello_then_halt_code(msg);
    let fail = serial_hello_then_halt_code(b"!");
    let mut code = Vec::new();
    write_config(&mut code, 0x14, 0);
    write_config(&mut code, 0x10, VIRTIO_TEST_BAR);
    write_config(&mut code, 0x04, 0x6); // memory decoding and bus mastering on
    read_config(&mut code, 0x14);
    // test eax, eax; jnz fail (over the body and the hello code)
    let skip = body.len() + hello.len();
    assert!(skip < 128, "jump too far for rel8");
    code.extend_from_slice(&[0x85, 0xc0, 0x75, skip as u8]);
    code.extend_from_slice(&body);
    code.extend_from_slice(&hello);
    code.extend_from_slice(&fail);
    code
}

/// An unlinked temporary file holding `bytes`, positioned at its end.
pub fn temp_file_with(bytes: &[u8]) -> std::io::Result<File> {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "vmm-tests-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    f.write_all(bytes)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arch::{load_guest, BootError, BootProtocol, BootSetup, EntryPoint, MemoryLayout};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes([b[o], b[o + 1]])
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    fn boot(image: &[u8]) -> (GuestMemoryMmap, Result<EntryPoint, BootError>) {
        let layout = MemoryLayout::new(64 << 20, 40).unwrap();
        let mem = GuestMemoryMmap::from_ranges(&layout.ram_ranges()).unwrap();
        let mut kernel = temp_file_with(image).unwrap();
        let setup = BootSetup {
            kernel: &mut kernel,
            initramfs: None,
            cmdline: "console=ttyS0",
            num_vcpus: 1,
            layout: &layout,
        };
        let result = load_guest(&mem, setup);
        (mem, result)
    }

    #[test]
    fn serial_hello_code_is_the_documented_bytes() {
        assert_eq!(
            serial_hello_code(b"Hi"),
            vec![
                0xfa, 0x66, 0xba, 0xf8, 0x03, 0xb0, b'H', 0xee, 0xb0, b'i', 0xee, 0xb0, 0xfe, 0xe6,
                0x64, 0xf4, 0xeb, 0xfd
            ]
        );
    }

    #[test]
    fn pvh_guest_elf_headers_describe_code_and_note() {
        let code = serial_hello_code(b"ok");
        let elf = pvh_guest_elf(&code);
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!((elf[4], elf[5]), (2, 1), "ELFCLASS64, little-endian");
        assert_eq!(
            (u16_at(&elf, 16), u16_at(&elf, 18)),
            (2, 62),
            "ET_EXEC, x86_64"
        );
        assert_eq!(u64_at(&elf, 24), 0x10_0000, "e_entry");
        assert_eq!((u16_at(&elf, 54), u16_at(&elf, 56)), (56, 2));
        let load = &elf[64..120];
        assert_eq!(u32_at(load, 0), 1);
        let (off, paddr, filesz) = (u64_at(load, 8), u64_at(load, 24), u64_at(load, 32));
        assert_eq!((paddr, filesz), (0x10_0000, code.len() as u64));
        assert_eq!(&elf[off as usize..], &code[..]);
        let note_ph = &elf[120..176];
        assert_eq!(u32_at(note_ph, 0), 4);
        let n = &elf[u64_at(note_ph, 8) as usize..];
        assert_eq!((u32_at(n, 0), u32_at(n, 4), u32_at(n, 8)), (4, 4, 18));
        assert_eq!(&n[12..16], b"Xen\0");
        assert_eq!(u32_at(n, 16), 0x10_0000);
    }

    #[test]
    fn load_guest_accepts_the_pvh_elf_and_enters_at_1mib() {
        let code = serial_hello_code(b"Hello\n");
        let (mem, result) = boot(&pvh_guest_elf(&code));
        assert_eq!(
            result.unwrap(),
            EntryPoint {
                addr: 0x10_0000,
                protocol: BootProtocol::Pvh
            }
        );
        let mut loaded = vec![0; code.len()];
        mem.read_slice(&mut loaded, GuestAddress(0x10_0000))
            .unwrap();
        assert_eq!(loaded, code);
    }

    #[test]
    fn load_guest_rejects_elf_without_note_and_garbage() {
        let (_, r) = boot(&elf_without_pvh_note(&[0xf4]));
        assert!(matches!(r, Err(BootError::Pvh(_))), "{r:?}");
        let (_, r) = boot(&not_a_kernel());
        assert!(
            matches!(r, Err(BootError::UnknownKernelFormat { .. })),
            "{r:?}"
        );
    }
}
