//! Cloud Hypervisor's `VmConfig` schema (its OpenAPI spec): every field it defines, so an
//! unknown one is an error. Fields this VMM does not support yet are kept as raw JSON values
//! and refused unless unset (see mod.rs).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiVmConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<ApiCpus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ApiMemory>,
    pub payload: ApiPayload,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<ApiDisk>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<Vec<ApiNet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rng: Option<ApiRng>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<ApiConsole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ApiConsole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<ApiDevice>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<ApiPlatform>,
    // Known to Cloud Hypervisor, not supported here yet: accepted only when unset.
    #[serde(default, skip_serializing)]
    pub rate_limit_groups: Option<Value>,
    #[serde(default, skip_serializing)]
    pub balloon: Option<Value>,
    #[serde(default, skip_serializing)]
    pub generic_vhost_user: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pmem: Option<Value>,
    #[serde(default, skip_serializing)]
    pub debug_console: Option<Value>,
    #[serde(default, skip_serializing)]
    pub user_devices: Option<Value>,
    #[serde(default, skip_serializing)]
    pub vdpa: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock: Option<ApiVsock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs: Option<Vec<ApiFs>>,
    /// Guest NUMA nodes (their memory as `memory.zones`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa: Option<Vec<ApiNumaNode>>,
    #[serde(default, skip_serializing)]
    pub iommu: Option<Value>,
    #[serde(default, skip_serializing)]
    pub watchdog: Option<Value>,
    #[serde(default, skip_serializing)]
    pub rtc: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pvpanic: Option<Value>,
    /// Segments' MMIO aperture weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_segments: Option<Vec<ApiPciSegment>>,
    #[serde(default, skip_serializing)]
    pub tpm: Option<Value>,
    #[serde(default, skip_serializing)]
    pub landlock_enable: Option<Value>,
    #[serde(default, skip_serializing)]
    pub landlock_rules: Option<Value>,
    #[serde(default, skip_serializing)]
    pub sgx_epc: Option<Value>,
    // In Cloud Hypervisor's VmConfig behind build features (ivshmem, pvmemcontrol,
    // guest_debug): accepted only when unset.
    #[serde(default, skip_serializing)]
    pub ivshmem: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pvmemcontrol: Option<Value>,
    #[serde(default, skip_serializing)]
    pub gdb: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiCpus {
    pub boot_vcpus: u32,
    pub max_vcpus: u32,
    #[serde(default, skip_serializing)]
    pub topology: Option<Value>,
    #[serde(default, skip_serializing)]
    pub kvm_hyperv: Option<Value>,
    #[serde(default, skip_serializing)]
    pub max_phys_bits: Option<Value>,
    /// Cloud Hypervisor's default is true; this VMM leaves nested virtualization as KVM has it.
    #[serde(default, skip_serializing)]
    pub nested: Option<bool>,
    #[serde(default, skip_serializing)]
    pub affinity: Option<Value>,
    #[serde(default, skip_serializing)]
    pub features: Option<Value>,
    #[serde(default, skip_serializing)]
    pub core_scheduling: Option<Value>,
    /// Cloud Hypervisor's CPU profile: "Host" (its only one, and this VMM's behaviour).
    #[serde(default, skip_serializing)]
    pub profile: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiMemory {
    pub size: u64,
    #[serde(default)]
    pub shared: bool,
    #[serde(default)]
    pub hugepages: bool,
    #[serde(default)]
    pub prefault: bool,
    #[serde(default, skip_serializing)]
    pub hotplug_size: Option<Value>,
    #[serde(default, skip_serializing)]
    pub hotplugged_size: Option<Value>,
    #[serde(default, skip_serializing)]
    pub mergeable: Option<Value>,
    /// "Acpi" (the default) or "VirtioMem": meaningless without hotplug_size.
    #[serde(default, skip_serializing)]
    pub hotplug_method: Option<String>,
    #[serde(default, skip_serializing)]
    pub hugepage_size: Option<Value>,
    #[serde(default, skip_serializing)]
    pub reserve: Option<Value>,
    /// Transparent huge pages: Cloud Hypervisor's default is on, as this VMM always does.
    #[serde(default, skip_serializing)]
    pub thp: Option<bool>,
    /// Guest RAM as zones (with `size` 0), in guest-physical order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<ApiMemoryZone>>,
}

/// Cloud Hypervisor's MemoryZoneConfig: `id`, `size` and `host_numa_node` are used; the rest
/// only at their defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiMemoryZone {
    pub id: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_numa_node: Option<u32>,
    #[serde(default, skip_serializing)]
    pub file: Option<Value>,
    #[serde(default, skip_serializing)]
    pub mergeable: Option<Value>,
    #[serde(default, skip_serializing)]
    pub shared: Option<Value>,
    #[serde(default, skip_serializing)]
    pub hugepages: Option<Value>,
    #[serde(default, skip_serializing)]
    pub hugepage_size: Option<Value>,
    #[serde(default, skip_serializing)]
    pub hotplug_size: Option<Value>,
    #[serde(default, skip_serializing)]
    pub hotplugged_size: Option<Value>,
    #[serde(default, skip_serializing)]
    pub prefault: Option<Value>,
    #[serde(default, skip_serializing)]
    pub reserve: Option<Value>,
}

/// Cloud Hypervisor's NumaConfig.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiNumaNode {
    pub guest_numa_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distances: Option<Vec<ApiNumaDistance>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_zones: Option<Vec<String>>,
    #[serde(default, skip_serializing)]
    pub sgx_epc_sections: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_segments: Option<Vec<u16>>,
    #[serde(default, skip_serializing)]
    pub device_id: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiNumaDistance {
    pub destination: u32,
    pub distance: u8,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(default, skip_serializing)]
    pub firmware: Option<Value>,
    #[serde(default, skip_serializing)]
    pub igvm: Option<Value>,
    #[serde(default, skip_serializing)]
    pub host_data: Option<Value>,
    #[serde(default, skip_serializing)]
    pub fw_cfg_config: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDisk {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub readonly: bool,
    #[serde(default)]
    pub direct: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_queues: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing)]
    pub iommu: Option<Value>,
    #[serde(default, skip_serializing)]
    pub vhost_user: Option<Value>,
    #[serde(default, skip_serializing)]
    pub vhost_socket: Option<Value>,
    #[serde(default, skip_serializing)]
    pub rate_limiter_config: Option<Value>,
    #[serde(default, skip_serializing)]
    pub rate_limit_group: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_segment: Option<u16>,
    /// The slot on the segment's bus 0 (1 to 31).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_device_id: Option<u8>,
    #[serde(default, skip_serializing)]
    pub queue_affinity: Option<Value>,
    #[serde(default, skip_serializing)]
    pub backing_files: Option<Value>,
    /// Cloud Hypervisor's I/O engine choices, which its `ch-remote add-disk` always sends
    /// (false): this VMM uses neither io_uring nor Linux AIO, so either value is honoured.
    #[serde(default, skip_serializing)]
    pub disable_io_uring: Option<bool>,
    #[serde(default, skip_serializing)]
    pub disable_aio: Option<bool>,
    /// Cloud Hypervisor's default is true (punch holes on discard), as this VMM does.
    #[serde(default, skip_serializing)]
    pub sparse: Option<bool>,
    /// Only "Raw" (or unset): images are raw here.
    #[serde(default, skip_serializing)]
    pub image_type: Option<String>,
    #[serde(default, skip_serializing)]
    pub lock_granularity: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiNet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_queues: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub host_mac: Option<Value>,
    #[serde(default, skip_serializing)]
    pub mtu: Option<Value>,
    #[serde(default, skip_serializing)]
    pub iommu: Option<Value>,
    #[serde(default, skip_serializing)]
    pub vhost_user: Option<Value>,
    #[serde(default, skip_serializing)]
    pub vhost_socket: Option<Value>,
    #[serde(default, skip_serializing)]
    pub vhost_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_segment: Option<u16>,
    /// The slot on the segment's bus 0 (1 to 31).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_device_id: Option<u8>,
    #[serde(default, skip_serializing)]
    pub rate_limiter_config: Option<Value>,
    #[serde(default, skip_serializing)]
    pub offload_tso: Option<bool>,
    #[serde(default, skip_serializing)]
    pub offload_ufo: Option<bool>,
    #[serde(default, skip_serializing)]
    pub offload_csum: Option<bool>,
    /// Tap fds passed with SCM_RIGHTS (`vm.add-net`): not supported yet.
    #[serde(default, skip_serializing)]
    pub fds: Option<Value>,
}

/// Cloud Hypervisor's FsConfig.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFs {
    pub tag: String,
    pub socket: String,
    #[serde(default = "default_fs_queues")]
    pub num_queues: u64,
    #[serde(default = "default_fs_queue_size")]
    pub queue_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Below `platform.num_pci_segments` (Kata puts virtio-fs on segment 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_segment: Option<u16>,
    /// The slot on the segment's bus 0 (1 to 31).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_device_id: Option<u8>,
}

fn default_fs_queues() -> u64 {
    crate::config::fs::DEFAULT_NUM_QUEUES.into()
}

fn default_fs_queue_size() -> u64 {
    crate::config::fs::DEFAULT_QUEUE_SIZE.into()
}

/// Cloud Hypervisor's VsockConfig.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiVsock {
    pub cid: u64,
    pub socket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub iommu: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_segment: Option<u16>,
    /// The slot on the segment's bus 0 (1 to 31).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_device_id: Option<u8>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRng {
    pub src: String,
    #[serde(default, skip_serializing)]
    pub id: Option<Value>,
    #[serde(default, skip_serializing)]
    pub iommu: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_segment: Option<u16>,
    /// The slot on the segment's bus 0 (1 to 31).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_device_id: Option<u8>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConsole {
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing)]
    pub socket: Option<Value>,
    #[serde(default, skip_serializing)]
    pub iommu: Option<Value>,
    #[serde(default, skip_serializing)]
    pub id: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pci_segment: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pci_device_id: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDevice {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_nv_gpudirect_clique: Option<u8>,
    /// This VMM's own: behind a PCI Express root port of its own (absent: by class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_port: Option<bool>,
    /// This VMM's own: the guest NUMA node the device is near (behind a root port under
    /// that node's expander host bridge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<u32>,
    /// This VMM's own: the VFIO backend, iommufd + the device's cdev (true) or the legacy
    /// container (false); absent: the VMM picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommufd: Option<bool>,
    #[serde(default, skip_serializing)]
    pub iommu: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_segment: Option<u16>,
    /// The slot on the segment's bus 0 (1 to 31).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_device_id: Option<u8>,
    #[serde(default, skip_serializing)]
    pub x_exclude_mmap_bars: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiPlatform {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_pci_segments: Option<u16>,
    #[serde(default, skip_serializing)]
    pub iommu_segments: Option<Value>,
    #[serde(default, skip_serializing)]
    pub iommu_address_width_bits: Option<Value>,
    /// SMBIOS identity (`--platform`); `serial_number` and `uuid` are the deprecated names
    /// of `system_serial_number` and `system_uuid` (vm.info reports the new ones).
    #[serde(default, skip_serializing)]
    pub serial_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_serial_number: Option<String>,
    #[serde(default, skip_serializing)]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oem_strings: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_sku_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chassis_asset_tag: Option<String>,
    #[serde(default, skip_serializing)]
    pub tdx: Option<Value>,
    #[serde(default, skip_serializing)]
    pub sev_snp: Option<Value>,
    #[serde(default, skip_serializing)]
    pub iommufd: Option<Value>,
    #[serde(default, skip_serializing)]
    pub iommufd_fd: Option<Value>,
    /// Peer-to-peer DMA between passed-through devices: on (Cloud Hypervisor's default), as
    /// this VMM always maps device BARs for it.
    #[serde(default, skip_serializing)]
    pub vfio_p2p_dma: Option<bool>,
}

/// Cloud Hypervisor's PciSegmentConfig.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiPciSegment {
    pub pci_segment: u16,
    #[serde(default = "one")]
    pub mmio32_aperture_weight: u32,
    #[serde(default = "one")]
    pub mmio64_aperture_weight: u32,
}

fn one() -> u32 {
    1
}
