//! The VM configuration, parsed from Cloud-Hypervisor-compatible command-line options.
//! One module per option group; each parser is pure so it can be tested and fuzzed.

mod cpus;
pub mod device;
pub mod disk;
pub mod fs;
pub mod ids;
mod kv;
mod memory;
pub mod net;
pub mod numa;
mod path_or_fd;
mod platform;
pub mod restore;
pub mod rng;
pub mod segments;
mod serial;
pub mod size;
pub mod vsock;

use std::path::PathBuf;

pub use cpus::CpusConfig;
pub use device::DeviceConfig;
pub use memory::MemoryConfig;
pub use path_or_fd::PathOrFd;
pub use platform::{PlatformConfig, MAX_PCI_SEGMENTS};
pub use serial::{ConsoleConfig, SerialConfig};

pub use crate::seccomp::SeccompMode;

/// Why an option value was rejected. Messages name the option and the offending text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--{option}: unknown parameter '{param}' (accepted: {accepted})")]
    UnknownParam {
        option: &'static str,
        param: String,
        accepted: &'static str,
    },
    #[error("--{option}: parameter '{param}' given twice")]
    DuplicateParam { option: &'static str, param: String },
    #[error("--{option}: '{item}' is not of the form key=value")]
    NotKeyValue { option: &'static str, item: String },
    #[error("--{option}: {param}='{value}': {reason}")]
    InvalidValue {
        option: &'static str,
        param: &'static str,
        value: String,
        reason: String,
    },
    #[error("--{option}: missing required parameter '{param}'")]
    Missing {
        option: &'static str,
        param: &'static str,
    },
    /// A whole-option problem, worded by the option's own parser.
    #[error("{0}")]
    Option(String),
}

/// Everything needed to build and boot a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
    pub cpus: CpusConfig,
    pub memory: MemoryConfig,
    pub serial: SerialConfig,
    pub console: ConsoleConfig,
    /// Per-thread syscall filters (`--seccomp`).
    pub seccomp: SeccompMode,
    /// virtio-blk disks (`--disk`, repeatable).
    pub disks: Vec<devices::virtio::DiskConfig>,
    /// virtio-net devices (`--net`, repeatable).
    pub nets: Vec<devices::virtio::NetConfig>,
    /// virtio-rng (`--rng`).
    pub rng: Option<devices::virtio::RngConfig>,
    /// virtio-vsock (`--vsock`).
    pub vsock: Option<devices::virtio::VsockConfig>,
    /// virtio-fs devices served by vhost-user backends (`--fs`, repeatable).
    pub fs: Vec<devices::virtio::FsConfig>,
    /// Host PCI devices passed through with VFIO (`--device`, repeatable).
    pub devices: Vec<DeviceConfig>,
    /// Every device's id (`vm.info`, its device tree), set once the devices are parsed.
    pub device_ids: ids::DeviceIds,
    /// SMBIOS identity and PCI segment count (`--platform`).
    pub platform: PlatformConfig,
    /// Guest RAM as zones (`--memory-zone`, with `--memory size=0`), in guest-physical order.
    pub memory_zones: Vec<numa::MemoryZone>,
    /// Guest NUMA nodes (`--numa`).
    pub numa: Vec<numa::NumaNodeConfig>,
    /// PCI segments' MMIO aperture weights (`--pci-segment`; the segment count is
    /// `platform.num_pci_segments`).
    pub pci_segments: Vec<segments::PciSegmentConfig>,
}

impl VmConfig {
    /// Settles guest RAM and NUMA together: with zones, `--memory size` must be 0 and RAM is
    /// their sum; without, it must not be 0; NUMA nodes need zones (their memory), and every
    /// vCPU and zone must be in exactly one node. (param, why) of the first problem.
    pub fn settle_memory(&mut self) -> Result<(), (&'static str, String)> {
        if self.memory_zones.is_empty() {
            if self.memory.size == 0 {
                return Err(("size", "guest memory cannot be empty".into()));
            }
            if !self.numa.is_empty() {
                return Err((
                    "numa",
                    "NUMA nodes need their memory as zones: --memory size=0 and \
                     --memory-zone id=ID,size=SIZE for each, named in memory_zones=[...]"
                        .into(),
                ));
            }
            return self.check_device_nodes();
        }
        if self.memory.size != 0 {
            return Err((
                "size",
                "with memory zones guest RAM is their sum: give --memory size=0".into(),
            ));
        }
        if self.memory.hugepages {
            if let Some(z) = self.memory_zones.iter().find(|z| z.size % (2 << 20) != 0) {
                return Err((
                    "memory_zones",
                    format!(
                        "zone {:?}: with hugepages=on a zone is a multiple of 2 MiB",
                        z.id
                    ),
                ));
            }
        }
        self.memory.size = self
            .memory_zones
            .iter()
            .try_fold(0u64, |a, z| a.checked_add(z.size))
            .ok_or(("memory_zones", "the zones' sizes overflow".to_string()))?;
        numa::check(&self.memory_zones, &self.numa, self.cpus.boot)?;
        self.check_device_nodes()
    }

    /// The guest NUMA nodes passed-through devices are placed in, each once, in device order
    /// (one expander host bridge each).
    pub fn device_nodes(&self) -> Vec<u32> {
        let mut nodes = Vec::new();
        for n in self.devices.iter().filter_map(|d| d.numa_node) {
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
        nodes
    }

    /// A device's `numa_node` names a guest NUMA node and leaves it behind a root port.
    fn check_device_nodes(&self) -> Result<(), (&'static str, String)> {
        for d in &self.devices {
            let Some(n) = d.numa_node else { continue };
            if !self.numa.iter().any(|x| x.guest_numa_id == n) {
                return Err((
                    "devices",
                    format!(
                        "{}: numa_node={n} is not a guest NUMA node (--numa guest_numa_id=...)",
                        d.path.display()
                    ),
                ));
            }
            if d.root_port == Some(false) {
                return Err((
                    "devices",
                    format!(
                        "{}: numa_node puts the device behind a root port; root_port=off \
                         contradicts it",
                        d.path.display()
                    ),
                ));
            }
        }
        let nodes = self.device_nodes();
        if nodes.len() > arch::layout::MAX_EXPANDERS {
            return Err((
                "devices",
                format!(
                    "devices are in {} NUMA nodes; at most {} can have devices",
                    nodes.len(),
                    arch::layout::MAX_EXPANDERS
                ),
            ));
        }
        Ok(())
    }
}

/// The command line used when `--cmdline` is absent: a serial console and a reset that ends the VM.
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";
