//! `vm.create`'s body: Cloud Hypervisor's `VmConfig` (its OpenAPI spec), turned into this
//! VMM's [`VmConfig`] with the same validation as the command line.
//!
//! Every field of Cloud Hypervisor's schema is known. What this VMM does not support yet is
//! accepted only at its default (absent, `null`, `false`, `0`, empty), so a client sending
//! Cloud Hypervisor's defaults works and one asking for a feature we lack gets a 400 naming it
//! instead of a VM silently without it. A field outside the schema is a 400 too.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{self, ConsoleConfig, CpusConfig, MemoryConfig, SerialConfig, VmConfig};
use crate::seccomp::SeccompMode;

/// Parse and validate a `vm.create` body. The error says which field is wrong and why.
pub fn parse(body: &[u8], seccomp: SeccompMode) -> Result<(ApiVmConfig, VmConfig), String> {
    let api: ApiVmConfig =
        serde_json::from_slice(body).map_err(|e| format!("invalid VmConfig: {e}"))?;
    let cfg = api.to_config(seccomp)?;
    Ok((api.normalized(&cfg), cfg))
}

/// `true` when `v` is what Cloud Hypervisor's schema means by "not set".
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_unset),
    }
}

fn unsupported(field: &str, what: &str) -> String {
    format!("{field}: {what} is not supported by this VMM yet")
}

fn require_unset(field: &str, v: &Option<Value>) -> Result<(), String> {
    match v {
        Some(v) if !is_unset(v) => Err(unsupported(field, &format!("'{v}'"))),
        _ => Ok(()),
    }
}

/// The command-line parsers' messages name the flag ("--disk: ..."); the API names the field.
fn api_message(field: &str, e: config::ConfigError) -> String {
    let m = e.to_string();
    format!(
        "{field}: {}",
        m.split_once(": ").map_or(m.as_str(), |(_, r)| r)
    )
}

fn no_separators(field: &str, v: &str) -> Result<(), String> {
    if v.contains(',') {
        return Err(format!("{field}: '{v}' may not contain ','"));
    }
    Ok(())
}

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
    pub fs: Option<Value>,
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
    #[serde(default, skip_serializing)]
    pub vsock: Option<Value>,
    #[serde(default, skip_serializing)]
    pub numa: Option<Value>,
    #[serde(default, skip_serializing)]
    pub iommu: Option<Value>,
    #[serde(default, skip_serializing)]
    pub watchdog: Option<Value>,
    #[serde(default, skip_serializing)]
    pub rtc: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pvpanic: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pci_segments: Option<Value>,
    #[serde(default, skip_serializing)]
    pub tpm: Option<Value>,
    #[serde(default, skip_serializing)]
    pub landlock_enable: Option<Value>,
    #[serde(default, skip_serializing)]
    pub landlock_rules: Option<Value>,
    #[serde(default, skip_serializing)]
    pub sgx_epc: Option<Value>,
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
    #[serde(default, skip_serializing)]
    pub zones: Option<Value>,
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
    #[serde(default, skip_serializing)]
    pub pci_segment: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pci_device_id: Option<Value>,
    #[serde(default, skip_serializing)]
    pub queue_affinity: Option<Value>,
    #[serde(default, skip_serializing)]
    pub backing_files: Option<Value>,
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
    #[serde(default, skip_serializing)]
    pub pci_segment: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pci_device_id: Option<Value>,
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

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRng {
    pub src: String,
    #[serde(default, skip_serializing)]
    pub id: Option<Value>,
    #[serde(default, skip_serializing)]
    pub iommu: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pci_segment: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pci_device_id: Option<Value>,
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
    #[serde(default, skip_serializing)]
    pub iommu: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pci_segment: Option<Value>,
    #[serde(default, skip_serializing)]
    pub pci_device_id: Option<Value>,
    #[serde(default, skip_serializing)]
    pub x_exclude_mmap_bars: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiPlatform {
    /// One PCI segment is what this VMM has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_pci_segments: Option<u16>,
    #[serde(default, skip_serializing)]
    pub iommu_segments: Option<Value>,
    #[serde(default, skip_serializing)]
    pub iommu_address_width_bits: Option<Value>,
    #[serde(default, skip_serializing)]
    pub serial_number: Option<Value>,
    #[serde(default, skip_serializing)]
    pub system_serial_number: Option<Value>,
    #[serde(default, skip_serializing)]
    pub uuid: Option<Value>,
    #[serde(default, skip_serializing)]
    pub system_uuid: Option<Value>,
    #[serde(default, skip_serializing)]
    pub oem_strings: Option<Value>,
    #[serde(default, skip_serializing)]
    pub system_manufacturer: Option<Value>,
    #[serde(default, skip_serializing)]
    pub system_product_name: Option<Value>,
    #[serde(default, skip_serializing)]
    pub system_version: Option<Value>,
    #[serde(default, skip_serializing)]
    pub system_family: Option<Value>,
    #[serde(default, skip_serializing)]
    pub system_sku_number: Option<Value>,
    #[serde(default, skip_serializing)]
    pub chassis_asset_tag: Option<Value>,
    #[serde(default, skip_serializing)]
    pub tdx: Option<Value>,
    #[serde(default, skip_serializing)]
    pub sev_snp: Option<Value>,
    #[serde(default, skip_serializing)]
    pub iommufd: Option<Value>,
    /// Peer-to-peer DMA between passed-through devices: on (Cloud Hypervisor's default), as
    /// this VMM always maps device BARs for it.
    #[serde(default, skip_serializing)]
    pub vfio_p2p_dma: Option<bool>,
}

impl ApiVmConfig {
    /// The command line's VM as `vm.info` shows it (`vmm --api-socket … --kernel …`).
    pub fn from_config(cfg: &VmConfig) -> ApiVmConfig {
        let s = |p: &std::path::Path| p.display().to_string();
        let api = ApiVmConfig {
            payload: ApiPayload {
                kernel: Some(s(&cfg.kernel)),
                initramfs: cfg.initramfs.as_deref().map(s),
                ..Default::default()
            },
            disks: Some(
                cfg.disks
                    .iter()
                    .map(|d| ApiDisk {
                        path: Some(s(&d.path)),
                        readonly: d.readonly,
                        direct: d.direct,
                        num_queues: Some(d.num_queues.into()),
                        queue_size: Some(d.queue_size.into()),
                        serial: d.id.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            net: Some(
                cfg.nets
                    .iter()
                    .map(|n| ApiNet {
                        tap: n.tap.clone(),
                        ip: n.ip.map(|a| a.to_string()),
                        mask: n.mask.map(|a| a.to_string()),
                        mac: n.mac.map(|m| m.to_string()),
                        num_queues: Some(n.num_queues.into()),
                        queue_size: Some(n.queue_size.into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            rng: cfg.rng.as_ref().map(|r| ApiRng {
                src: s(&r.source),
                ..Default::default()
            }),
            devices: Some(
                cfg.devices
                    .iter()
                    .map(|d| ApiDevice {
                        path: Some(s(&d.path)),
                        id: d.id.clone(),
                        x_nv_gpudirect_clique: d.gpudirect_clique,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        api.normalized(cfg)
    }

    fn to_config(&self, seccomp: SeccompMode) -> Result<VmConfig, String> {
        for (field, v) in [
            ("rate_limit_groups", &self.rate_limit_groups),
            ("balloon", &self.balloon),
            ("fs", &self.fs),
            ("generic_vhost_user", &self.generic_vhost_user),
            ("pmem", &self.pmem),
            ("debug_console", &self.debug_console),
            ("user_devices", &self.user_devices),
            ("vdpa", &self.vdpa),
            ("vsock", &self.vsock),
            ("numa", &self.numa),
            ("iommu", &self.iommu),
            ("watchdog", &self.watchdog),
            ("rtc", &self.rtc),
            ("pvpanic", &self.pvpanic),
            ("pci_segments", &self.pci_segments),
            ("tpm", &self.tpm),
            ("landlock_enable", &self.landlock_enable),
            ("landlock_rules", &self.landlock_rules),
            ("sgx_epc", &self.sgx_epc),
        ] {
            require_unset(field, v)?;
        }
        let p = &self.payload;
        require_unset("payload.firmware", &p.firmware)?;
        require_unset("payload.igvm", &p.igvm)?;
        require_unset("payload.host_data", &p.host_data)?;
        let kernel = match p.kernel.as_deref() {
            Some(k) if !k.is_empty() => PathBuf::from(k),
            _ => return Err("payload.kernel: required (direct kernel boot only)".into()),
        };
        let cpus = match &self.cpus {
            None => CpusConfig::default(),
            Some(c) => {
                for (f, v) in [
                    ("cpus.topology", &c.topology),
                    ("cpus.kvm_hyperv", &c.kvm_hyperv),
                    ("cpus.max_phys_bits", &c.max_phys_bits),
                    ("cpus.affinity", &c.affinity),
                    ("cpus.features", &c.features),
                    ("cpus.core_scheduling", &c.core_scheduling),
                ] {
                    require_unset(f, v)?;
                }
                // max_vcpus above boot_vcpus is what Kata asks for (room for CPU hotplug): the
                // VM boots with boot_vcpus, and adding vCPUs (vm.resize) answers 501 until CPU
                // hotplug exists.
                let cpus = CpusConfig::parse(&format!("boot={}", c.boot_vcpus))
                    .map_err(|e| api_message("cpus", e))?;
                if c.max_vcpus < c.boot_vcpus {
                    return Err(format!(
                        "cpus.max_vcpus: {} is less than boot_vcpus ({})",
                        c.max_vcpus, c.boot_vcpus
                    ));
                }
                CpusConfig::parse(&format!("boot={}", c.max_vcpus))
                    .map_err(|e| api_message("cpus.max_vcpus", e))?;
                cpus
            }
        };
        let memory = match &self.memory {
            None => MemoryConfig::default(),
            Some(m) => {
                for (f, v) in [
                    ("memory.hotplug_size", &m.hotplug_size),
                    ("memory.hotplugged_size", &m.hotplugged_size),
                    ("memory.mergeable", &m.mergeable),
                    ("memory.hugepage_size", &m.hugepage_size),
                    ("memory.reserve", &m.reserve),
                    ("memory.zones", &m.zones),
                ] {
                    require_unset(f, v)?;
                }
                if m.thp == Some(false) {
                    return Err(unsupported("memory.thp", "false"));
                }
                let onoff = |b: bool| if b { "on" } else { "off" };
                MemoryConfig::parse(&format!(
                    "size={},shared={},hugepages={},prefault={}",
                    m.size,
                    onoff(m.shared),
                    onoff(m.hugepages),
                    onoff(m.prefault)
                ))
                .map_err(|e| api_message("memory", e))?
            }
        };
        let serial = match &self.serial {
            None => SerialConfig::Null,
            Some(c) => console_mode("serial", c)?.serial(),
        };
        let console = match &self.console {
            None => ConsoleConfig::Off,
            Some(c) => console_mode("console", c)?.console(),
        };
        let mut disks = Vec::new();
        for (i, d) in self.disks.iter().flatten().enumerate() {
            disks.push(disk(&format!("disks[{i}]"), d)?);
        }
        let mut nets = Vec::new();
        for (i, n) in self.net.iter().flatten().enumerate() {
            nets.push(net(&format!("net[{i}]"), n)?);
        }
        let rng = match &self.rng {
            None => None,
            Some(r) => {
                let f = "rng";
                for (field, v) in [
                    ("rng.iommu", &r.iommu),
                    ("rng.pci_segment", &r.pci_segment),
                    ("rng.pci_device_id", &r.pci_device_id),
                ] {
                    require_unset(field, v)?;
                }
                if r.src.is_empty() {
                    return Err(format!("{f}.src: empty path"));
                }
                Some(devices::virtio::RngConfig {
                    source: PathBuf::from(&r.src),
                })
            }
        };
        let mut passthrough = Vec::new();
        for (i, d) in self.devices.iter().flatten().enumerate() {
            passthrough.push(device(&format!("devices[{i}]"), d)?);
        }
        config::device::check_duplicates(&passthrough).map_err(|e| api_message("devices", e))?;
        if let Some(p) = &self.platform {
            platform(p)?;
        }
        let cfg = VmConfig {
            kernel,
            initramfs: p
                .initramfs
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            cmdline: p
                .cmdline
                .clone()
                .unwrap_or_else(|| config::DEFAULT_CMDLINE.to_string()),
            cpus,
            memory,
            serial,
            console,
            seccomp,
            disks,
            nets,
            rng,
            devices: passthrough,
        };
        crate::cli::check_duplicate_disks(&cfg.disks).map_err(|e| api_message("disks", e))?;
        Ok(cfg)
    }

    /// The configuration as `vm.info` reports it: what was asked, with the defaults filled
    /// in and the unset unsupported fields left out.
    fn normalized(&self, cfg: &VmConfig) -> ApiVmConfig {
        let mut out = self.clone();
        out.cpus = Some(ApiCpus {
            boot_vcpus: cfg.cpus.boot,
            max_vcpus: self
                .cpus
                .as_ref()
                .map_or(cfg.cpus.boot, |c| c.max_vcpus.max(cfg.cpus.boot)),
            ..Default::default()
        });
        out.memory = Some(ApiMemory {
            size: cfg.memory.size,
            shared: cfg.memory.shared,
            hugepages: cfg.memory.hugepages,
            prefault: cfg.memory.prefault,
            ..Default::default()
        });
        out.payload.cmdline = Some(cfg.cmdline.clone());
        let mode = |m: &str, file: Option<&PathBuf>| ApiConsole {
            mode: m.into(),
            file: file.map(|f| f.display().to_string()),
            ..Default::default()
        };
        out.serial = Some(match &cfg.serial {
            SerialConfig::Tty => mode("Tty", None),
            SerialConfig::File(f) => mode("File", Some(f)),
            SerialConfig::Null => mode("Null", None),
            SerialConfig::Off => mode("Off", None),
        });
        out.console = Some(match &cfg.console {
            ConsoleConfig::Tty => mode("Tty", None),
            ConsoleConfig::File(f) => mode("File", Some(f)),
            ConsoleConfig::Null => mode("Null", None),
            ConsoleConfig::Off => mode("Off", None),
        });
        out
    }
}

enum Mode {
    Off,
    Null,
    Tty,
    File(PathBuf),
}

impl Mode {
    fn serial(self) -> SerialConfig {
        match self {
            Mode::Off => SerialConfig::Off,
            Mode::Null => SerialConfig::Null,
            Mode::Tty => SerialConfig::Tty,
            Mode::File(p) => SerialConfig::File(p),
        }
    }

    fn console(self) -> ConsoleConfig {
        match self {
            Mode::Off => ConsoleConfig::Off,
            Mode::Null => ConsoleConfig::Null,
            Mode::Tty => ConsoleConfig::Tty,
            Mode::File(p) => ConsoleConfig::File(p),
        }
    }
}

fn console_mode(field: &str, c: &ApiConsole) -> Result<Mode, String> {
    for (f, v) in [
        ("socket", &c.socket),
        ("iommu", &c.iommu),
        ("pci_segment", &c.pci_segment),
        ("pci_device_id", &c.pci_device_id),
    ] {
        require_unset(&format!("{field}.{f}"), v)?;
    }
    let file = c.file.as_deref().filter(|f| !f.is_empty());
    match (c.mode.as_str(), file) {
        ("Off", _) => Ok(Mode::Off),
        ("Null", _) => Ok(Mode::Null),
        ("Tty", _) => Ok(Mode::Tty),
        ("File", Some(f)) => Ok(Mode::File(PathBuf::from(f))),
        ("File", None) => Err(format!("{field}.file: required with mode File")),
        ("Pty" | "Socket", _) => Err(unsupported(&format!("{field}.mode"), &c.mode)),
        (m, _) => Err(format!(
            "{field}.mode: '{m}' is not one of Off, Pty, Tty, File, Socket, Null"
        )),
    }
}

fn disk(field: &str, d: &ApiDisk) -> Result<devices::virtio::DiskConfig, String> {
    for (f, v) in [
        ("iommu", &d.iommu),
        ("vhost_user", &d.vhost_user),
        ("vhost_socket", &d.vhost_socket),
        ("rate_limiter_config", &d.rate_limiter_config),
        ("rate_limit_group", &d.rate_limit_group),
        ("pci_segment", &d.pci_segment),
        ("pci_device_id", &d.pci_device_id),
        ("queue_affinity", &d.queue_affinity),
        ("backing_files", &d.backing_files),
        ("lock_granularity", &d.lock_granularity),
    ] {
        require_unset(&format!("{field}.{f}"), v)?;
    }
    if d.sparse == Some(false) {
        return Err(unsupported(&format!("{field}.sparse"), "false"));
    }
    if let Some(t) = d
        .image_type
        .as_deref()
        .filter(|t| *t != "Raw" && *t != "Unknown")
    {
        return Err(unsupported(&format!("{field}.image_type"), t));
    }
    let path = match d.path.as_deref() {
        Some(p) if !p.is_empty() => p,
        _ => return Err(format!("{field}.path: required")),
    };
    // The command line's parser validates the rest; the path is set after it (paths may hold
    // the ',' that separates its parameters).
    let onoff = |b: bool| if b { "on" } else { "off" };
    let mut kv = format!(
        "path=_,readonly={},direct={}",
        onoff(d.readonly),
        onoff(d.direct)
    );
    if let Some(n) = d.num_queues {
        kv += &format!(",num_queues={n}");
    }
    if let Some(n) = d.queue_size {
        kv += &format!(",queue_size={n}");
    }
    // The serial the guest reads (GET_ID): Cloud Hypervisor's `serial`, else the `id`.
    if let Some(id) = d.serial.as_deref().or(d.id.as_deref()) {
        no_separators(&format!("{field}.serial"), id)?;
        kv += &format!(",id={id}");
    }
    let mut cfg = config::disk::parse(&kv).map_err(|e| api_message(field, e))?;
    cfg.path = PathBuf::from(path);
    Ok(cfg)
}

fn net(field: &str, n: &ApiNet) -> Result<devices::virtio::NetConfig, String> {
    for (f, v) in [
        ("host_mac", &n.host_mac),
        ("mtu", &n.mtu),
        ("iommu", &n.iommu),
        ("vhost_user", &n.vhost_user),
        ("vhost_socket", &n.vhost_socket),
        ("pci_segment", &n.pci_segment),
        ("pci_device_id", &n.pci_device_id),
        ("rate_limiter_config", &n.rate_limiter_config),
        ("fds", &n.fds),
    ] {
        require_unset(&format!("{field}.{f}"), v)?;
    }
    for (f, v) in [
        ("offload_tso", n.offload_tso),
        ("offload_ufo", n.offload_ufo),
        ("offload_csum", n.offload_csum),
    ] {
        if v == Some(false) {
            return Err(unsupported(&format!("{field}.{f}"), "false"));
        }
    }
    let mut kv = Vec::new();
    for (k, v) in [
        ("tap", &n.tap),
        ("ip", &n.ip),
        ("mask", &n.mask),
        ("mac", &n.mac),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            no_separators(&format!("{field}.{k}"), v)?;
            kv.push(format!("{k}={v}"));
        }
    }
    if let Some(q) = n.num_queues {
        kv.push(format!("num_queues={q}"));
    }
    if let Some(q) = n.queue_size {
        kv.push(format!("queue_size={q}"));
    }
    config::net::parse(&kv.join(",")).map_err(|e| api_message(field, e))
}

fn device(field: &str, d: &ApiDevice) -> Result<config::DeviceConfig, String> {
    for (f, v) in [
        ("iommu", &d.iommu),
        ("pci_segment", &d.pci_segment),
        ("pci_device_id", &d.pci_device_id),
        ("x_exclude_mmap_bars", &d.x_exclude_mmap_bars),
    ] {
        require_unset(&format!("{field}.{f}"), v)?;
    }
    let path = match d.path.as_deref() {
        Some(p) if !p.is_empty() => p,
        _ => {
            return Err(format!(
                "{field}.path: required (a device fd passed with SCM_RIGHTS is not supported yet)"
            ))
        }
    };
    no_separators(&format!("{field}.path"), path)?;
    let mut kv = format!("path={path}");
    if let Some(id) = &d.id {
        no_separators(&format!("{field}.id"), id)?;
        kv += &format!(",id={id}");
    }
    if let Some(c) = d.x_nv_gpudirect_clique {
        kv += &format!(",x_nv_gpudirect_clique={c}");
    }
    config::device::parse(&kv).map_err(|e| api_message(field, e))
}

fn platform(p: &ApiPlatform) -> Result<(), String> {
    if p.num_pci_segments.is_some_and(|n| n > 1) {
        return Err(unsupported(
            "platform.num_pci_segments",
            "more than one PCI segment",
        ));
    }
    if p.vfio_p2p_dma == Some(false) {
        return Err(unsupported("platform.vfio_p2p_dma", "false"));
    }
    for (f, v) in [
        ("iommu_segments", &p.iommu_segments),
        ("iommu_address_width_bits", &p.iommu_address_width_bits),
        ("serial_number", &p.serial_number),
        ("system_serial_number", &p.system_serial_number),
        ("uuid", &p.uuid),
        ("system_uuid", &p.system_uuid),
        ("oem_strings", &p.oem_strings),
        ("system_manufacturer", &p.system_manufacturer),
        ("system_product_name", &p.system_product_name),
        ("system_version", &p.system_version),
        ("system_family", &p.system_family),
        ("system_sku_number", &p.system_sku_number),
        ("chassis_asset_tag", &p.chassis_asset_tag),
        ("tdx", &p.tdx),
        ("sev_snp", &p.sev_snp),
        ("iommufd", &p.iommufd),
    ] {
        require_unset(&format!("platform.{f}"), v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(json: &str) -> VmConfig {
        parse(json.as_bytes(), SeccompMode::Enforce).unwrap().1
    }

    fn parse_err(json: &str) -> String {
        parse(json.as_bytes(), SeccompMode::Enforce).unwrap_err()
    }

    #[test]
    fn a_minimal_config_gets_cloud_hypervisors_defaults() {
        let c = parse_ok(r#"{"payload":{"kernel":"/k"}}"#);
        assert_eq!(c.kernel, PathBuf::from("/k"));
        assert_eq!(c.cpus.boot, 1);
        assert_eq!(c.memory.size, 512 << 20);
        assert_eq!(c.serial, SerialConfig::Null);
        assert_eq!(c.console, ConsoleConfig::Off);
        assert_eq!(c.cmdline, config::DEFAULT_CMDLINE);
    }

    #[test]
    fn a_full_config_as_kata_or_ch_remote_send_it() {
        let c = parse_ok(
            r#"{
            "cpus": {"boot_vcpus": 2, "max_vcpus": 2, "nested": true},
            "memory": {"size": 1073741824, "shared": true, "hugepages": false,
                       "mergeable": false, "hotplug_method": "Acpi", "thp": true},
            "payload": {"kernel": "/vmlinux", "initramfs": "/initrd", "cmdline": "console=ttyS0"},
            "disks": [{"path": "/img,with,commas", "readonly": true, "num_queues": 1,
                       "queue_size": 128, "id": "_disk0", "vhost_user": false, "sparse": true}],
            "net": [{"tap": "tap0", "mac": "52:54:00:12:34:56", "num_queues": 2,
                     "queue_size": 256, "iommu": false, "offload_tso": true}],
            "rng": {"src": "/dev/urandom", "iommu": false},
            "serial": {"mode": "File", "file": "/tmp/serial"},
            "console": {"mode": "Off"},
            "devices": [{"path": "/sys/bus/pci/devices/0000:41:00.0", "id": "gpu0",
                         "x_nv_gpudirect_clique": 1}],
            "iommu": false, "watchdog": false, "pvpanic": false, "vsock": null,
            "platform": {"num_pci_segments": 1}
        }"#,
        );
        assert_eq!(c.cpus.boot, 2);
        assert_eq!(c.memory.size, 1 << 30);
        assert!(c.memory.shared);
        assert_eq!(c.disks[0].path, PathBuf::from("/img,with,commas"));
        assert!(c.disks[0].readonly);
        assert_eq!(c.disks[0].id.as_deref(), Some("_disk0"));
        assert_eq!(c.nets[0].tap.as_deref(), Some("tap0"));
        assert_eq!(c.serial, SerialConfig::File("/tmp/serial".into()));
        assert_eq!(c.devices[0].gpudirect_clique, Some(1));
        assert!(c.rng.is_some());
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused_by_name() {
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"bogus":1}"#);
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e =
            parse_err(r#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":1,"max_vcpus":1,"x":1}}"#);
        assert!(e.contains("unknown field `x`"), "{e}");
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"memory":{"size":"big"}}"#);
        assert!(e.contains("invalid type"), "{e}");
        let e = parse_err(r#"{"payload":"#);
        assert!(e.starts_with("invalid VmConfig"), "{e}");
        let e = parse_err(r#"{"cpus":{"boot_vcpus":1,"max_vcpus":1}}"#);
        assert!(e.contains("missing field `payload`"), "{e}");
    }

    #[test]
    fn invalid_values_are_refused_with_the_field_named() {
        let e = parse_err(r#"{"payload":{}}"#);
        assert!(e.starts_with("payload.kernel: required"), "{e}");
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":0,"max_vcpus":0}}"#);
        assert!(
            e.starts_with("cpus:") && e.contains("at least one vCPU"),
            "{e}"
        );
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":2,"max_vcpus":1}}"#);
        assert!(e.starts_with("cpus.max_vcpus: 1 is less"), "{e}");
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":1,"max_vcpus":999}}"#);
        assert!(e.starts_with("cpus.max_vcpus:"), "{e}");
        // Room for CPU hotplug, as Kata asks: the VM boots with boot_vcpus.
        let (api, c) = parse(
            br#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":1,"max_vcpus":4}}"#,
            SeccompMode::Off,
        )
        .unwrap();
        assert_eq!(c.cpus.boot, 1);
        assert_eq!(api.cpus.unwrap().max_vcpus, 4);
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"memory":{"size":0}}"#);
        assert!(e.starts_with("memory:"), "{e}");
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"disks":[{"path":"/a","queue_size":3}]}"#);
        assert!(
            e.starts_with("disks[0]:") && e.contains("power of two"),
            "{e}"
        );
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"disks":[{"path":"/a"},{"path":"/a"}]}"#);
        assert!(e.contains("two disks"), "{e}");
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"serial":{"mode":"File"}}"#);
        assert!(e.starts_with("serial.file: required"), "{e}");
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"serial":{"mode":"Loud"}}"#);
        assert!(e.contains("not one of"), "{e}");
        let e = parse_err(r#"{"payload":{"kernel":"/k"},"net":[{"mac":"zz"}]}"#);
        assert!(e.starts_with("net[0]:"), "{e}");
    }

    #[test]
    fn features_not_supported_yet_are_refused_unless_unset() {
        for (json, field) in [
            (r#""vsock":{"cid":3,"socket":"/v"}"#, "vsock"),
            (
                r#""fs":[{"tag":"t","socket":"/s","num_queues":1,"queue_size":1024}]"#,
                "fs",
            ),
            (r#""iommu":true"#, "iommu"),
            (
                r#""payload":{"kernel":"/k","firmware":"/fw"}"#,
                "payload.firmware",
            ),
            (r#""serial":{"mode":"Pty"}"#, "serial.mode"),
            (
                r#""memory":{"size":1073741824,"hotplug_size":1073741824}"#,
                "memory.hotplug_size",
            ),
            (
                r#""platform":{"num_pci_segments":2}"#,
                "platform.num_pci_segments",
            ),
        ] {
            let body = if json.starts_with(r#""payload""#) {
                format!("{{{json}}}")
            } else {
                format!(r#"{{"payload":{{"kernel":"/k"}},{json}}}"#)
            };
            let e = parse_err(&body);
            assert!(
                e.starts_with(field) && e.contains("not supported"),
                "{body}: {e}"
            );
        }
        // Cloud Hypervisor's defaults, sent explicitly, are fine.
        parse_ok(
            r#"{"payload":{"kernel":"/k"},"vsock":null,"fs":[],"iommu":false,"numa":null,
                "balloon":null,"pmem":[],"tpm":null}"#,
        );
    }

    #[test]
    fn info_reports_the_config_with_defaults_filled_in() {
        let (api, _) = parse(
            br#"{"payload":{"kernel":"/k"},"iommu":false}"#,
            SeccompMode::Off,
        )
        .unwrap();
        let v = serde_json::to_value(&api).unwrap();
        assert_eq!(v["cpus"]["boot_vcpus"], 1);
        assert_eq!(v["memory"]["size"], 512u64 << 20);
        assert_eq!(v["payload"]["kernel"], "/k");
        assert_eq!(v["serial"]["mode"], "Null");
        assert!(v.get("iommu").is_none());
    }
}
