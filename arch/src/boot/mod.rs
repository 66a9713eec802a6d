//! Loading the guest: kernel, initramfs, command line and the boot information the
//! kernel reads at entry (PVH `hvm_start_info` or the Linux zero page), plus the MP
//! table.
//!
//! Kernel images are untrusted input: every size and offset is checked before use and
//! every failure is a typed error naming what was found.

pub mod bzimage;
pub mod cmdline;
pub mod initramfs;
pub mod pvh;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use vm_memory::GuestMemoryMmap;

use crate::layout::MemoryLayout;
use crate::mptable::{self, MpTableError};

pub use bzimage::BzImageError;
pub use cmdline::CmdlineError;
pub use initramfs::InitramfsError;
pub use pvh::PvhError;

/// How the boot CPU enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// Xen PVH: 32-bit protected mode, paging off, EBX = `hvm_start_info`.
    Pvh,
    /// Linux 64-bit boot protocol (bzImage): long mode, RSI = zero page.
    LinuxBoot,
}

/// Where and how the boot CPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPoint {
    /// Guest-physical address of the first instruction.
    pub addr: u64,
    pub protocol: BootProtocol,
}

/// What to boot.
pub struct BootSetup<'a> {
    /// vmlinux ELF with a PVH note, or a bzImage.
    pub kernel: &'a mut File,
    pub initramfs: Option<&'a mut File>,
    pub cmdline: &'a str,
    pub num_vcpus: u32,
    pub layout: &'a MemoryLayout,
}

/// What the boot information block (`hvm_start_info` or the zero page) tells the
/// kernel besides where its images are.
pub(crate) struct BootInfo<'a> {
    pub cmdline: &'a str,
    pub layout: &'a MemoryLayout,
    /// Guest address of the ACPI RSDP; `None` for a VM without ACPI tables.
    pub rsdp_addr: Option<u64>,
}

/// Why the guest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read the kernel image: {0}")]
    ReadKernel(#[source] io::Error),
    #[error("the kernel image is empty")]
    EmptyKernel,
    #[error(
        "the kernel image ({size} bytes) is not an ELF or bzImage: no ELF magic at offset 0 \
         and no \"HdrS\" magic at offset 0x202"
    )]
    UnknownKernelFormat { size: u64 },
    #[error("cannot load the ELF (PVH) kernel: {0}")]
    Pvh(#[from] PvhError),
    #[error("cannot load the bzImage kernel: {0}")]
    BzImage(#[from] BzImageError),
    #[error("cannot load the initramfs: {0}")]
    Initramfs(#[from] InitramfsError),
    #[error("invalid kernel command line: {0}")]
    Cmdline(#[from] CmdlineError),
    #[error("cannot set up the MP table: {0}")]
    MpTable(#[from] MpTableError),
}

/// Kernel image kinds recognised from the first bytes of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KernelKind {
    Elf,
    BzImage,
}

/// Bytes of the image examined up front: the ELF header and the bzImage setup header.
const HEAD_SIZE: u64 = 0x1000;

/// Reads up to `len` bytes from `offset`; shorter at the end of the file.
pub(crate) fn read_at_most(file: &mut File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.by_ref().take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

fn detect(head: &[u8], size: u64) -> Result<KernelKind, BootError> {
    if head.is_empty() {
        return Err(BootError::EmptyKernel);
    }
    if head.starts_with(b"\x7fELF") {
        return Ok(KernelKind::Elf);
    }
    if head.get(0x202..0x206) == Some(b"HdrS") {
        return Ok(KernelKind::BzImage);
    }
    Err(BootError::UnknownKernelFormat { size })
}

/// Loads the kernel, initramfs and command line into `mem`, writes the boot
/// information for the detected protocol and the MP table, and returns the entry point.
/// The guest gets no ACPI RSDP address: see [`load_guest_with_rsdp`].
///
/// Only guest memory that is written is touched: nothing proportional to the RAM size.
pub fn load_guest(mem: &GuestMemoryMmap, setup: BootSetup) -> Result<EntryPoint, BootError> {
    load_guest_with_rsdp(mem, setup, None)
}

/// [`load_guest`], also telling the kernel where the ACPI RSDP is (see
/// [`crate::acpi::create_acpi_tables`]): in `hvm_start_info.rsdp_paddr` for PVH, in
/// `boot_params.acpi_rsdp_addr` for a bzImage (boot protocol 2.14 and later; older
/// kernels find the RSDP by scanning `[0xe0000, 0x100000)`).
pub fn load_guest_with_rsdp(
    mem: &GuestMemoryMmap,
    setup: BootSetup,
    rsdp_addr: Option<u64>,
) -> Result<EntryPoint, BootError> {
    let BootSetup {
        kernel,
        initramfs,
        cmdline,
        num_vcpus,
        layout,
    } = setup;
    let size = kernel.metadata().map_err(BootError::ReadKernel)?.len();
    let head = read_at_most(kernel, 0, HEAD_SIZE).map_err(BootError::ReadKernel)?;
    let info = BootInfo {
        cmdline,
        layout,
        rsdp_addr,
    };
    let entry = match detect(&head, size)? {
        KernelKind::Elf => pvh::load(mem, kernel, &head, size, initramfs, &info)?,
        KernelKind::BzImage => bzimage::load(mem, kernel, &head, size, initramfs, &info)?,
    };
    mptable::setup_mptable(mem, num_vcpus)?;
    Ok(entry)
}

#[cfg(test)]
pub(crate) mod test_util;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::test_util::*;

    #[test]
    fn detects_elf_and_bzimage_magic() {
        assert_eq!(detect(b"\x7fELF\x02", 5).unwrap(), KernelKind::Elf);
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(detect(&bz, 0x300).unwrap(), KernelKind::BzImage);
    }

    #[test]
    fn garbage_is_not_a_kernel() {
        let (mem, layout) = guest(128 << 20);
        let mut k = file_with(&[0x5a; 4096]);
        let err = load_kernel(&mem, &layout, &mut k, None, "").unwrap_err();
        assert!(
            matches!(err, BootError::UnknownKernelFormat { size: 4096 }),
            "{err}"
        );
        assert!(err.to_string().contains("not an ELF or bzImage"));
    }

    #[test]
    fn empty_and_tiny_files_are_rejected() {
        let (mem, layout) = guest(128 << 20);
        let err = load_kernel(&mem, &layout, &mut file_with(&[]), None, "").unwrap_err();
        assert!(matches!(err, BootError::EmptyKernel), "{err}");
        let err = load_kernel(&mem, &layout, &mut file_with(b"MZ"), None, "").unwrap_err();
        assert!(
            matches!(err, BootError::UnknownKernelFormat { size: 2 }),
            "{err}"
        );
    }

    #[test]
    fn pvh_elf_loads_and_mp_table_is_written() {
        let (mem, layout) = guest(128 << 20);
        let mut k = file_with(&pvh_elf(&[0xf4; 16]));
        let entry = load_kernel(&mem, &layout, &mut k, None, "console=ttyS0").unwrap();
        assert_eq!(
            entry,
            EntryPoint {
                addr: 0x10_0000,
                protocol: BootProtocol::Pvh
            }
        );
        assert_eq!(read_bytes(&mem, 0x10_0000, 16), vec![0xf4; 16]);
        assert_eq!(read_bytes(&mem, crate::layout::MPTABLE_START, 4), b"_MP_");
    }

    #[test]
    fn acpi_tables_and_the_pvh_start_info_agree_on_the_rsdp() {
        use crate::acpi::{create_acpi_tables, AcpiConfig, PmPorts};
        use vm_memory::Bytes;
        let (mem, layout) = guest(128 << 20);
        let pm = PmPorts {
            sleep_control: 0x600,
            sleep_status: 0x601,
            reset: 0x602,
            reset_value: 6,
            s5_sleep_type: 5,
        };
        let cfg = AcpiConfig {
            segments: &[],
            segment0_node: None,
            pci_buses: 0,
            num_vcpus: 2,
            layout: &layout,
            pm,
            serial: None,
            power_button_gsi: None,
            pci_hotplug: None,
        };
        let rsdp = create_acpi_tables(&mem, &cfg).unwrap();
        let mut k = file_with(&pvh_elf(&[0xf4]));
        load_kernel_with_rsdp(&mem, &layout, &mut k, Some(rsdp)).unwrap();
        let paddr = mem
            .read_obj::<u64>(vm_memory::GuestAddress(crate::layout::PVH_INFO_START + 32))
            .unwrap();
        assert_eq!(paddr, rsdp);
        // Loading the kernel and MP table left the tables intact.
        assert_eq!(read_bytes(&mem, paddr, 8), b"RSD PTR ");
    }

    #[test]
    fn too_many_vcpus_for_the_mp_table_is_an_error() {
        let (mem, layout) = guest(128 << 20);
        let mut k = file_with(&pvh_elf(&[0xf4]));
        let setup = BootSetup {
            kernel: &mut k,
            initramfs: None,
            cmdline: "",
            num_vcpus: 300,
            layout: &layout,
        };
        let err = load_guest(&mem, setup).unwrap_err();
        assert!(matches!(
            err,
            BootError::MpTable(MpTableError::TooManyCpus { .. })
        ));
    }
}
