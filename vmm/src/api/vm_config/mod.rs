//! `vm.create`'s body: Cloud Hypervisor's `VmConfig` (its OpenAPI spec), turned into this
//! VMM's [`VmConfig`] with the same validation as the command line.
//!
//! Every field of Cloud Hypervisor's schema is known. What this VMM does not support yet is
//! accepted only at its default (absent, `null`, `false`, `0`, empty), so a client sending
//! Cloud Hypervisor's defaults works and one asking for a feature we lack gets a 400 naming it
//! instead of a VM silently without it. A field outside the schema is a 400 too.

use std::path::PathBuf;

use serde_json::Value;

use crate::config::{self, ConsoleConfig, CpusConfig, MemoryConfig, SerialConfig, VmConfig};
use crate::seccomp::SeccompMode;

mod schema;
pub use schema::*;

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

/// Every field in `fields` (named `prefix.name`, or `name` at the top level) must be unset.
fn require_all_unset(prefix: &str, fields: &[(&str, &Option<Value>)]) -> Result<(), String> {
    for (name, v) in fields {
        if prefix.is_empty() {
            require_unset(name, v)?;
        } else {
            require_unset(&format!("{prefix}.{name}"), v)?;
        }
    }
    Ok(())
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
                        pci_segment: Some(d.pci_segment),
                        pci_device_id: d.pci_device_id,
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
                        pci_segment: Some(n.pci_segment),
                        pci_device_id: n.pci_device_id,
                        ..Default::default()
                    })
                    .collect(),
            ),
            rng: cfg.rng.as_ref().map(|r| ApiRng {
                src: s(&r.source),
                pci_segment: Some(r.pci_segment),
                pci_device_id: r.pci_device_id,
                ..Default::default()
            }),
            vsock: cfg.vsock.as_ref().map(|v| ApiVsock {
                cid: v.cid,
                socket: s(&v.socket),
                id: v.id.clone(),
                pci_segment: Some(v.pci_segment),
                pci_device_id: v.pci_device_id,
                ..Default::default()
            }),
            fs: (!cfg.fs.is_empty()).then(|| {
                cfg.fs
                    .iter()
                    .map(|f| ApiFs {
                        tag: f.tag.clone(),
                        socket: s(&f.socket),
                        num_queues: f.num_queues.into(),
                        queue_size: f.queue_size.into(),
                        id: f.id.clone(),
                        pci_segment: Some(f.pci_segment),
                        pci_device_id: f.pci_device_id,
                    })
                    .collect()
            }),
            devices: Some(
                cfg.devices
                    .iter()
                    .map(|d| ApiDevice {
                        path: Some(s(&d.path)),
                        id: d.id.clone(),
                        x_nv_gpudirect_clique: d.gpudirect_clique,
                        root_port: d.root_port,
                        numa_node: d.numa_node,
                        iommufd: d.iommufd,
                        pci_segment: Some(d.pci_segment),
                        pci_device_id: d.pci_device_id,
                        ..Default::default()
                    })
                    .collect(),
            ),
            pci_segments: (!cfg.pci_segments.is_empty()).then(|| {
                cfg.pci_segments
                    .iter()
                    .map(|p| ApiPciSegment {
                        pci_segment: p.pci_segment,
                        mmio32_aperture_weight: p.mmio32_aperture_weight,
                        mmio64_aperture_weight: p.mmio64_aperture_weight,
                    })
                    .collect()
            }),
            ..Default::default()
        };
        api.normalized(cfg)
    }

    /// The same configuration with COM1's output elsewhere (a restored clone's).
    pub fn with_serial(mut self, serial: &SerialConfig) -> ApiVmConfig {
        let (mode, file) = match serial {
            SerialConfig::Tty => ("Tty", None),
            SerialConfig::File(f) => ("File", Some(f.display().to_string())),
            SerialConfig::Null => ("Null", None),
            SerialConfig::Off => ("Off", None),
        };
        self.serial = Some(ApiConsole {
            mode: mode.into(),
            file,
            ..Default::default()
        });
        self
    }

    fn to_config(&self, seccomp: SeccompMode) -> Result<VmConfig, String> {
        require_all_unset(
            "",
            &[
                ("rate_limit_groups", &self.rate_limit_groups),
                ("balloon", &self.balloon),
                ("generic_vhost_user", &self.generic_vhost_user),
                ("pmem", &self.pmem),
                ("debug_console", &self.debug_console),
                ("user_devices", &self.user_devices),
                ("vdpa", &self.vdpa),
                ("iommu", &self.iommu),
                ("watchdog", &self.watchdog),
                ("rtc", &self.rtc),
                ("pvpanic", &self.pvpanic),
                ("tpm", &self.tpm),
                ("landlock_enable", &self.landlock_enable),
                ("landlock_rules", &self.landlock_rules),
                ("sgx_epc", &self.sgx_epc),
                ("ivshmem", &self.ivshmem),
                ("pvmemcontrol", &self.pvmemcontrol),
                ("gdb", &self.gdb),
            ],
        )?;
        let p = &self.payload;
        require_all_unset(
            "payload",
            &[
                ("firmware", &p.firmware),
                ("igvm", &p.igvm),
                ("host_data", &p.host_data),
                ("fw_cfg_config", &p.fw_cfg_config),
            ],
        )?;
        let kernel = match p.kernel.as_deref() {
            Some(k) if !k.is_empty() => PathBuf::from(k),
            _ => return Err("payload.kernel: required (direct kernel boot only)".into()),
        };
        let cpus = match &self.cpus {
            None => CpusConfig::default(),
            Some(c) => {
                topology(c.topology.as_ref(), c.boot_vcpus)?;
                require_all_unset(
                    "cpus",
                    &[
                        ("kvm_hyperv", &c.kvm_hyperv),
                        ("max_phys_bits", &c.max_phys_bits),
                        ("affinity", &c.affinity),
                        ("features", &c.features),
                        ("core_scheduling", &c.core_scheduling),
                    ],
                )?;
                match &c.profile {
                    None | Some(Value::Null) => {}
                    Some(Value::String(p)) if p == "Host" => {}
                    Some(v) => return Err(unsupported("cpus.profile", &v.to_string())),
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
                // The most memory may be hot-added later: what Kata always sends. No memory
                // hotplug here: accepted as a ceiling never reached (vm.resize answers 501).
                if let Some(h) = m.hotplug_size.as_ref().filter(|h| !h.is_null()) {
                    if h.as_u64().is_none() {
                        return Err("memory.hotplug_size: not a size in bytes".into());
                    }
                }
                require_all_unset(
                    "memory",
                    &[
                        ("hotplugged_size", &m.hotplugged_size),
                        ("mergeable", &m.mergeable),
                        ("hugepage_size", &m.hugepage_size),
                        ("reserve", &m.reserve),
                    ],
                )?;
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
                require_all_unset("rng", &[("iommu", &r.iommu)])?;
                if r.src.is_empty() {
                    return Err("rng.src: empty path".into());
                }
                Some(devices::virtio::RngConfig {
                    source: PathBuf::from(&r.src),
                    pci_segment: segment("rng", r.pci_segment)?,
                    pci_device_id: device_id("rng", r.pci_device_id)?,
                })
            }
        };
        let vsock = self.vsock.as_ref().map(vsock_config).transpose()?;
        let mut fs = Vec::new();
        for (i, f) in self.fs.iter().flatten().enumerate() {
            fs.push(fs_config(&format!("fs[{i}]"), f)?);
        }
        let mut passthrough = Vec::new();
        for (i, d) in self.devices.iter().flatten().enumerate() {
            passthrough.push(device(&format!("devices[{i}]"), d)?);
        }
        config::device::check_duplicates(&passthrough).map_err(|e| api_message("devices", e))?;
        let platform = self
            .platform
            .as_ref()
            .map(platform)
            .transpose()?
            .unwrap_or_default();
        let mut cfg = VmConfig {
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
            vsock,
            fs,
            devices: passthrough,
            device_ids: Default::default(),
            platform,
            memory_zones: memory_zones(self.memory.as_ref())?,
            numa: numa_nodes(self.numa.as_deref().unwrap_or_default())?,
            pci_segments: pci_segments(self.pci_segments.as_deref().unwrap_or_default())?,
        };
        cfg.settle_memory().map_err(|(param, why)| {
            let field = match param {
                "size" => "memory.size",
                "numa" | "cpus" | "distances" | "guest_numa_id" => "numa",
                "devices" => "devices",
                _ => "memory.zones",
            };
            format!("{field}: {why}")
        })?;
        cfg.check_pci_segments().map_err(|p| p.api())?;
        crate::cli::check_duplicate_disks(&cfg.disks).map_err(|e| api_message("disks", e))?;
        crate::cli::check_duplicate_nets(&cfg.nets).map_err(|e| api_message("net", e))?;
        let disk_ids: Vec<Option<&str>> = self
            .disks
            .iter()
            .flatten()
            .map(|d| d.id.as_deref())
            .collect();
        cfg.device_ids = config::ids::assign_given(&cfg, &disk_ids).map_err(|e| e.to_string())?;
        config::fs::check_memory(&cfg.fs, cfg.memory.shared).map_err(|e| format!("fs: {e}"))?;
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
        // With zones, RAM is their sum and `size` says 0, as it was given.
        let zones: Option<Vec<ApiMemoryZone>> = (!cfg.memory_zones.is_empty()).then(|| {
            cfg.memory_zones
                .iter()
                .map(|z| ApiMemoryZone {
                    id: z.id.clone(),
                    size: z.size,
                    host_numa_node: z.host_numa_node,
                    ..Default::default()
                })
                .collect()
        });
        out.memory = Some(ApiMemory {
            size: if zones.is_some() { 0 } else { cfg.memory.size },
            shared: cfg.memory.shared,
            hugepages: cfg.memory.hugepages,
            prefault: cfg.memory.prefault,
            zones,
            ..Default::default()
        });
        out.numa = (!cfg.numa.is_empty()).then(|| {
            cfg.numa
                .iter()
                .map(|n| ApiNumaNode {
                    guest_numa_id: n.guest_numa_id,
                    cpus: Some(n.cpus.clone()),
                    distances: Some(
                        n.distances
                            .iter()
                            .map(|&(destination, distance)| ApiNumaDistance {
                                destination,
                                distance,
                            })
                            .collect(),
                    ),
                    memory_zones: Some(n.memory_zones.clone()),
                    pci_segments: (!n.pci_segments.is_empty()).then(|| n.pci_segments.clone()),
                    ..Default::default()
                })
                .collect()
        });
        out.payload.cmdline = Some(cfg.cmdline.clone());
        // Every device with its id, generated where none was given (as Cloud Hypervisor's
        // vm.info shows them).
        {
            let ids = &cfg.device_ids;
            if let Some(disks) = out.disks.as_mut() {
                for (d, id) in disks.iter_mut().zip(&ids.disks) {
                    d.id = Some(id.clone());
                }
            }
            if let Some(nets) = out.net.as_mut() {
                for (n, id) in nets.iter_mut().zip(&ids.nets) {
                    n.id = Some(id.clone());
                }
            }
            if let Some(devices) = out.devices.as_mut() {
                for (d, id) in devices.iter_mut().zip(&ids.devices) {
                    d.id = Some(id.clone());
                }
            }
            if let (Some(v), Some(id)) = (out.vsock.as_mut(), &ids.vsock) {
                v.id = Some(id.clone());
            }
            if let Some(fs) = out.fs.as_mut() {
                for (f, id) in fs.iter_mut().zip(&ids.fs) {
                    f.id = Some(id.clone());
                }
            }
        }
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
        // The identity under its current names (a deprecated `uuid` shows as `system_uuid`).
        let p = &cfg.platform;
        if out.platform.is_some() || *p != config::PlatformConfig::default() {
            let api = out.platform.get_or_insert_with(Default::default);
            api.num_pci_segments = p.num_pci_segments;
            api.system_manufacturer = p.system_manufacturer.clone();
            api.system_product_name = p.system_product_name.clone();
            api.system_version = p.system_version.clone();
            api.system_serial_number = p.system_serial_number.clone();
            api.system_uuid = p.system_uuid.clone();
            api.system_sku_number = p.system_sku_number.clone();
            api.system_family = p.system_family.clone();
            api.chassis_asset_tag = p.chassis_asset_tag.clone();
            api.oem_strings = (!p.oem_strings.is_empty()).then(|| p.oem_strings.clone());
        }
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
    require_all_unset(
        field,
        &[
            ("socket", &c.socket),
            ("iommu", &c.iommu),
            ("pci_segment", &c.pci_segment),
            ("pci_device_id", &c.pci_device_id),
        ],
    )?;
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

/// One DiskConfig (`vm.add-disk`'s body) as the VMM builds it; errors name `field`.
pub fn disk_config(field: &str, d: &ApiDisk) -> Result<devices::virtio::DiskConfig, String> {
    disk(field, d)
}

/// One DeviceConfig (`vm.add-device`'s body).
pub fn device_config(field: &str, d: &ApiDevice) -> Result<config::DeviceConfig, String> {
    device(field, d)
}

/// One NetConfig (`vm.add-net`'s body).
pub fn net_config(field: &str, n: &ApiNet) -> Result<devices::virtio::NetConfig, String> {
    net(field, n)
}

fn disk(field: &str, d: &ApiDisk) -> Result<devices::virtio::DiskConfig, String> {
    require_all_unset(
        field,
        &[
            ("iommu", &d.iommu),
            ("vhost_user", &d.vhost_user),
            ("vhost_socket", &d.vhost_socket),
            ("rate_limiter_config", &d.rate_limiter_config),
            ("rate_limit_group", &d.rate_limit_group),
            ("queue_affinity", &d.queue_affinity),
            ("backing_files", &d.backing_files),
        ],
    )?;
    // Cloud Hypervisor's image lock: a byte-range lock over [0, size) (its default, which
    // `ch-remote add-disk` always sends) or a whole-file one. This VMM's lock (flock, LOCK_EX or
    // LOCK_SH when read-only) always covers the whole file, which serves both.
    match d.lock_granularity.as_ref() {
        None | Some(Value::Null) => {}
        Some(Value::String(g)) if g == "ByteRange" || g == "Full" => {}
        Some(v) => {
            return Err(format!(
                "{field}.lock_granularity: {v} is not one of \"ByteRange\", \"Full\""
            ))
        }
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
    if let Some(s) = d.pci_segment {
        kv += &format!(",pci_segment={s}");
    }
    if let Some(n) = d.pci_device_id {
        kv += &format!(",pci_device_id={n}");
    }
    let mut cfg = config::disk::parse(&kv).map_err(|e| api_message(field, e))?;
    cfg.path = PathBuf::from(path);
    Ok(cfg)
}

fn net(field: &str, n: &ApiNet) -> Result<devices::virtio::NetConfig, String> {
    require_all_unset(
        field,
        &[
            ("host_mac", &n.host_mac),
            ("mtu", &n.mtu),
            ("iommu", &n.iommu),
            ("vhost_user", &n.vhost_user),
            ("vhost_socket", &n.vhost_socket),
            ("rate_limiter_config", &n.rate_limiter_config),
            ("fds", &n.fds),
        ],
    )?;
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
        ("id", &n.id),
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
    if let Some(s) = n.pci_segment {
        kv.push(format!("pci_segment={s}"));
    }
    if let Some(id) = n.pci_device_id {
        kv.push(format!("pci_device_id={id}"));
    }
    config::net::parse(&kv.join(",")).map_err(|e| api_message(field, e))
}

fn device(field: &str, d: &ApiDevice) -> Result<config::DeviceConfig, String> {
    require_all_unset(
        field,
        &[
            ("iommu", &d.iommu),
            ("x_exclude_mmap_bars", &d.x_exclude_mmap_bars),
        ],
    )?;
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
    if let Some(r) = d.root_port {
        kv += if r { ",root_port=on" } else { ",root_port=off" };
    }
    if let Some(n) = d.numa_node {
        kv += &format!(",numa_node={n}");
    }
    if let Some(f) = d.iommufd {
        kv += if f { ",iommufd=on" } else { ",iommufd=off" };
    }
    if let Some(s) = d.pci_segment {
        kv += &format!(",pci_segment={s}");
    }
    if let Some(n) = d.pci_device_id {
        kv += &format!(",pci_device_id={n}");
    }
    config::device::parse(&kv).map_err(|e| api_message(field, e))
}

/// `cpus.topology`: the guest here sees every vCPU as a single-thread core of one die in one
/// package (CPUID leaves 0xB/0x1F); a topology saying that (Kata's: 1 thread per core,
/// max_vcpus cores, 1 die, 1 package) is accepted, any other refused.
fn topology(t: Option<&Value>, boot: u32) -> Result<(), String> {
    let Some(t) = t.filter(|t| !t.is_null()) else {
        return Ok(());
    };
    let field = |name: &str| t.get(name).and_then(Value::as_u64);
    let known = [
        "threads_per_core",
        "cores_per_die",
        "dies_per_package",
        "packages",
    ];
    if let Some(other) = t
        .as_object()
        .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
    {
        return Err(format!("cpus.topology.{other}: unknown field"));
    }
    let (threads, cores, dies, packages) = (
        field("threads_per_core").unwrap_or(1),
        field("cores_per_die").unwrap_or(u64::from(boot)),
        field("dies_per_package").unwrap_or(1),
        field("packages").unwrap_or(1),
    );
    if threads != 1 || dies != 1 || packages != 1 || cores < u64::from(boot) {
        return Err(format!(
            "cpus.topology: {threads} thread(s) per core, {cores} core(s) per die, {dies} \
             die(s), {packages} package(s) is not supported: the guest sees every vCPU as a \
             single-thread core of one die in one package (threads_per_core 1, cores_per_die \
             >= boot_vcpus, dies_per_package 1, packages 1)"
        ));
    }
    Ok(())
}

/// The `vsock` entry (`vm.create`'s, or `vm.add-vsock`'s body).
pub fn vsock_config(v: &ApiVsock) -> Result<devices::virtio::VsockConfig, String> {
    if v.iommu
        .as_ref()
        .is_some_and(|i| i.as_bool() != Some(false) && !i.is_null())
    {
        return Err("vsock.iommu: no virtual IOMMU in this VMM".into());
    }
    if !(3..u64::from(u32::MAX)).contains(&v.cid) {
        return Err(format!(
            "vsock.cid: {} is not a guest CID (3 or more: 0-2 are reserved, 2 is \
             the host; below 2^32-1)",
            v.cid
        ));
    }
    if v.socket.is_empty() {
        return Err("vsock.socket: empty path".into());
    }
    Ok(devices::virtio::VsockConfig {
        cid: v.cid,
        socket: PathBuf::from(&v.socket),
        id: v.id.clone().filter(|i| !i.is_empty()),
        pci_segment: segment("vsock", v.pci_segment)?,
        pci_device_id: device_id("vsock", v.pci_device_id)?,
    })
}

/// A device's `pci_segment` (absent: 0); whether the VM has it is checked with the whole
/// configuration ([`VmConfig::check_pci_segments`]).
fn segment(at: &str, s: Option<u16>) -> Result<u16, String> {
    match s {
        Some(s) if s >= config::MAX_PCI_SEGMENTS => Err(format!(
            "{at}.pci_segment: {s} is not a PCI segment number (0 to {})",
            config::MAX_PCI_SEGMENTS - 1
        )),
        s => Ok(s.unwrap_or(0)),
    }
}

/// A device's `pci_device_id`: the slot on its segment's bus 0 (absent: the lowest free one).
/// Whether it is free is checked with the whole configuration.
fn device_id(at: &str, id: Option<u8>) -> Result<Option<u8>, String> {
    match id {
        Some(n) if !(1..=31).contains(&n) => Err(format!(
            "{at}.pci_device_id: {n} is not a PCI slot (1 to 31; 0 is the host bridge)"
        )),
        id => Ok(id),
    }
}

/// `pci_segments`: each segment's MMIO aperture weights.
fn pci_segments(list: &[ApiPciSegment]) -> Result<Vec<config::segments::PciSegmentConfig>, String> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(config::segments::PciSegmentConfig {
                pci_segment: segment(&format!("pci_segments[{i}]"), Some(p.pci_segment))?,
                mmio32_aperture_weight: p.mmio32_aperture_weight,
                mmio64_aperture_weight: p.mmio64_aperture_weight,
            })
        })
        .collect()
}

/// One `fs[]` entry: the limits of `--fs`.
pub fn fs_config(at: &str, f: &ApiFs) -> Result<devices::virtio::FsConfig, String> {
    if f.socket.is_empty() {
        return Err(format!("{at}.socket: empty path"));
    }
    let small =
        |name: &str, v: u64| u16::try_from(v).map_err(|_| format!("{at}.{name}: {v} is too large"));
    let cfg = devices::virtio::FsConfig {
        tag: f.tag.clone(),
        socket: PathBuf::from(&f.socket),
        num_queues: small("num_queues", f.num_queues)?,
        queue_size: small("queue_size", f.queue_size)?,
        id: f.id.clone().filter(|i| !i.is_empty()),
        pci_segment: segment(at, f.pci_segment)?,
        pci_device_id: device_id(at, f.pci_device_id)?,
    };
    config::fs::check(&cfg).map_err(|(param, why)| format!("{at}.{param}: {why}"))?;
    Ok(cfg)
}

/// `memory.zones`: id, size and host node; the zone's other fields only at their defaults.
fn memory_zones(m: Option<&ApiMemory>) -> Result<Vec<config::numa::MemoryZone>, String> {
    let mut out = Vec::new();
    for (i, z) in m
        .and_then(|m| m.zones.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("memory.zones[{i}]");
        require_all_unset(
            &at,
            &[
                ("file", &z.file),
                ("mergeable", &z.mergeable),
                ("shared", &z.shared),
                ("hugepages", &z.hugepages),
                ("hugepage_size", &z.hugepage_size),
                ("hotplug_size", &z.hotplug_size),
                ("hotplugged_size", &z.hotplugged_size),
                ("prefault", &z.prefault),
                ("reserve", &z.reserve),
            ],
        )?;
        if z.id.is_empty() {
            return Err(format!("{at}.id: empty"));
        }
        if z.size == 0 || z.size % 4096 != 0 {
            return Err(format!("{at}.size: a non-zero multiple of 4 KiB"));
        }
        out.push(config::numa::MemoryZone {
            id: z.id.clone(),
            size: z.size,
            host_numa_node: z.host_numa_node,
        });
    }
    Ok(out)
}

/// `numa`: each node's vCPUs, distances, memory zones and PCI segments.
fn numa_nodes(nodes: &[ApiNumaNode]) -> Result<Vec<config::numa::NumaNodeConfig>, String> {
    let mut out = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let at = format!("numa[{i}]");
        require_all_unset(
            &at,
            &[
                ("sgx_epc_sections", &n.sgx_epc_sections),
                ("device_id", &n.device_id),
            ],
        )?;
        out.push(config::numa::NumaNodeConfig {
            guest_numa_id: n.guest_numa_id,
            cpus: n.cpus.clone().unwrap_or_default(),
            distances: n
                .distances
                .iter()
                .flatten()
                .map(|d| (d.destination, d.distance))
                .collect(),
            memory_zones: n.memory_zones.clone().unwrap_or_default(),
            pci_segments: n.pci_segments.clone().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// `platform`: the SMBIOS identity and the segment count (Kata always asks for 2 and puts
/// virtio-fs on segment 1).
fn platform(p: &ApiPlatform) -> Result<config::PlatformConfig, String> {
    // The deprecated names may be given alongside the new ones only with the same value.
    let either =
        |new: &Option<String>, old: &Option<String>, name: &str, old_name: &str| match (new, old) {
            (Some(a), Some(b)) if a != b => Err(format!(
                "platform.{old_name} ({b:?}) and platform.{name} ({a:?}) differ"
            )),
            _ => Ok(new.clone().or_else(|| old.clone())),
        };
    let cfg = config::PlatformConfig {
        num_pci_segments: p.num_pci_segments,
        system_manufacturer: p.system_manufacturer.clone(),
        system_product_name: p.system_product_name.clone(),
        system_version: p.system_version.clone(),
        system_serial_number: either(
            &p.system_serial_number,
            &p.serial_number,
            "system_serial_number",
            "serial_number",
        )?,
        system_uuid: either(&p.system_uuid, &p.uuid, "system_uuid", "uuid")?,
        system_sku_number: p.system_sku_number.clone(),
        system_family: p.system_family.clone(),
        chassis_asset_tag: p.chassis_asset_tag.clone(),
        oem_strings: p.oem_strings.clone().unwrap_or_default(),
    };
    cfg.check()
        .map_err(|(param, why)| format!("platform.{param}: {why}"))?;
    if p.vfio_p2p_dma == Some(false) {
        return Err(unsupported("platform.vfio_p2p_dma", "false"));
    }
    require_all_unset(
        "platform",
        &[
            ("iommu_segments", &p.iommu_segments),
            ("iommu_address_width_bits", &p.iommu_address_width_bits),
            ("tdx", &p.tdx),
            ("sev_snp", &p.sev_snp),
            ("iommufd", &p.iommufd),
            ("iommufd_fd", &p.iommufd_fd),
        ],
    )?;
    Ok(cfg)
}

#[cfg(test)]
mod tests;
