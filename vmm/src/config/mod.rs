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
mod path_or_fd;
mod platform;
pub mod restore;
pub mod rng;
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
}

/// The command line used when `--cmdline` is absent: a serial console and a reset that ends the VM.
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";
