//! The command line: Cloud Hypervisor's flag names for the options we share.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::{
    self, ConfigError, ConsoleConfig, CpusConfig, MemoryConfig, SeccompMode, SerialConfig,
    VmConfig, DEFAULT_CMDLINE,
};

/// Parsed command line: the VM plus process-level settings.
#[derive(Debug)]
pub struct Cli {
    /// The VM the command line describes; meaningful when `boot` is set.
    pub vm: VmConfig,
    /// A kernel was given: boot `vm` now (with `--api-socket` too, as Cloud Hypervisor does).
    pub boot: bool,
    /// `--api-socket`: serve the REST API (and, without `--kernel`, wait for `vm.create`).
    pub api_socket: Option<crate::api::server::ApiSocketSpec>,
    /// `--event-monitor`: where lifecycle events are written.
    pub event_monitor: Option<crate::control::events::EventTarget>,
    /// `--restore`: start from this snapshot instead of a kernel.
    pub restore: Option<config::restore::RestoreOptions>,
    pub verbosity: u8,
    pub log_file: Option<PathBuf>,
}

pub fn command() -> Command {
    Command::new("vmm")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A fast-booting KVM virtual machine monitor with PCI passthrough")
        .arg(
            Arg::new("kernel")
                .long("kernel")
                .value_name("PATH")
                .help("Guest kernel: a PVH ELF vmlinux or a bzImage (required unless --api-socket)"),
        )
        .arg(
            Arg::new("api-socket")
                .long("api-socket")
                .value_name("path=PATH|fd=N")
                .help(
                    "Serve Cloud Hypervisor's REST API on this unix socket (created 0600); \
                     without --kernel the VMM waits for vm.create",
                ),
        )
        .arg(
            Arg::new("event-monitor")
                .long("event-monitor")
                .value_name("path=PATH|fd=N")
                .help("Write one JSON object per VM lifecycle event (booted, paused, shutdown…) here"),
        )
        .arg(
            Arg::new("restore")
                .long("restore")
                .value_name("source_url=file:///DIR")
                .help(
                    "Start from a snapshot (vm.snapshot's directory) instead of a kernel:                      source_url=file:///DIR[,prefault=on][,resume=on|off]; paused under                      --api-socket unless resume=on, running without it",
                ),
        )
        .arg(
            Arg::new("initramfs")
                .long("initramfs")
                .value_name("PATH")
                .help("Initramfs/initrd image"),
        )
        .arg(
            Arg::new("cmdline")
                .long("cmdline")
                .value_name("STR")
                .help(format!(
                    "Kernel command line [default: \"{DEFAULT_CMDLINE}\"]"
                )),
        )
        .arg(
            Arg::new("cpus")
                .long("cpus")
                .value_name("boot=N")
                .default_value("boot=1")
                .help("vCPUs: boot=N[,max=N]"),
        )
        .arg(
            Arg::new("memory")
                .long("memory")
                .value_name("size=SIZE")
                .default_value("size=512M")
                .help("Guest RAM: size=SIZE[,hugepages=on|off][,prefault=on|off][,shared=on|off]"),
        )
        .arg(
            Arg::new("serial")
                .long("serial")
                .value_name("MODE")
                .default_value("tty")
                .help("COM1 16550 UART: tty|off|null|file=PATH"),
        )
        .arg(
            Arg::new("console")
                .long("console")
                .value_name("MODE")
                .default_value("off")
                .help("virtio-console: off|null|tty|file=PATH"),
        )
        .arg(
            Arg::new("disk")
                .long("disk")
                .value_name("path=FILE")
                .action(ArgAction::Append)
                .help("virtio-blk disk (repeatable): path=FILE[,readonly=on][,direct=on][,num_queues=N][,queue_size=N][,id=NAME][,pci_segment=N][,pci_device_id=N]"),
        )
        .arg(
            Arg::new("net")
                .long("net")
                .value_name("tap=NAME")
                .action(ArgAction::Append)
                .help("virtio-net over a TAP (repeatable): tap=NAME[,ip=ADDR,mask=MASK][,mac=MAC][,num_queues=N][,queue_size=N][,id=ID][,pci_segment=N][,pci_device_id=N]"),
        )
        .arg(
            Arg::new("memory-zone")
                .long("memory-zone")
                .value_name("id=ID,size=SIZE[,host_numa_node=N]")
                .action(ArgAction::Append)
                .help(
                    "a zone of guest RAM (repeatable; with --memory size=0): RAM is the zones \
                     in order; host_numa_node binds the zone's memory to that host node",
                ),
        )
        .arg(
            Arg::new("numa")
                .long("numa")
                .value_name("guest_numa_id=N,cpus=[..],distances=[N@D,..],memory_zones=[..]")
                .action(ArgAction::Append)
                .help(
                    "a guest NUMA node (repeatable): its vCPUs, its memory zones and its \
                     distances to the other nodes (SRAT/SLIT); every vCPU and zone in exactly \
                     one; pci_segments=[S,..] puts PCI segments' host bridges in it (segment 0 \
                     only in node 0)",
                ),
        )
        .arg(
            Arg::new("pci-segment")
                .long("pci-segment")
                .value_name("pci_segment=S,mmio32_aperture_weight=W,mmio64_aperture_weight=W")
                .action(ArgAction::Append)
                .help(
                    "a PCI segment's share of the 32- and 64-bit MMIO windows, in proportion \
                     to the weights of all segments (each 1 unless given; repeatable)",
                ),
        )
        .arg(
            Arg::new("platform")
                .long("platform")
                .value_name("system_uuid=UUID,...")
                .help(
                    "the VM's SMBIOS identity (guest: /sys/class/dmi/id, dmidecode): \
                     system_uuid=UUID,system_serial_number=S,oem_strings=[A,B],\
                     system_manufacturer=M,system_product_name=P,system_version=V,\
                     system_sku_number=K,system_family=F,chassis_asset_tag=T \
                     (uuid= and serial_number= are accepted as the older names); \
                     num_pci_segments=N (1-16): PCI segments 0..N, each a host bridge of its \
                     own; a device goes on one with pci_segment=S (--disk, --net, --rng, \
                     --vsock, --fs, --device), in slot N of its bus 0 with pci_device_id=N \
                     (1-31; else the lowest free slot)",
                ),
        )
        .arg(
            Arg::new("rng")
                .long("rng")
                .value_name("src=PATH")
                .num_args(0..=1)
                .default_missing_value("src=/dev/urandom")
                .help("virtio-rng: src=PATH (default /dev/urandom)[,pci_segment=N][,pci_device_id=N]"),
        )
        .arg(
            Arg::new("vsock")
                .long("vsock")
                .value_name("cid=N,socket=PATH[,id=ID][,pci_segment=N][,pci_device_id=N]")
                .help(
                    "virtio-vsock: the guest's CID; host clients connect to the unix socket \
                     PATH and write \"CONNECT <port>\\n\", guest connections to host port P \
                     reach PATH_P",
                ),
        )
        .arg(
            Arg::new("fs")
                .long("fs")
                .value_name("tag=TAG,socket=PATH[,num_queues=N][,queue_size=N][,id=ID][,pci_segment=N][,pci_device_id=N]")
                .action(ArgAction::Append)
                .help(
                    "virtio-fs served by a vhost-user backend listening on PATH (e.g. \
                     virtiofsd --socket-path PATH --shared-dir DIR); the guest mounts TAG \
                     (mount -t virtiofs TAG /mnt). Needs --memory shared=on. Repeatable",
                ),
        )
        .arg(
            Arg::new("device")
                .long("device")
                .value_name("path=SYSFS_PATH")
                .action(ArgAction::Append)
                .help(
                    "Host PCI device passed through with VFIO (repeatable): \
                     path=/sys/bus/pci/devices/BDF[,id=NAME][,x_nv_gpudirect_clique=0..15]\
                     [,root_port=on|off][,numa_node=N][,iommufd=on|off][,pci_segment=N][,pci_device_id=N]",
                ),
        )
        .arg(
            Arg::new("seccomp")
                .long("seccomp")
                .value_name("true|false|log")
                .default_value("true")
                .help(
                    "Per-thread syscall filters: true (a syscall outside the filter ends the VMM \
                     with a message naming it), log (allow it; the kernel audit-logs it), false \
                     (no filters)",
                ),
        )
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::Count)
                .help("More log output (-v info, -vv debug, -vvv trace)"),
        )
        .arg(
            Arg::new("log-file")
                .long("log-file")
                .value_name("PATH")
                .help("Write the log here instead of stderr"),
        )
}

/// Two disks on one image (or with one id) would corrupt it or confuse the guest.
pub fn check_duplicate_disks(disks: &[devices::virtio::DiskConfig]) -> Result<(), ConfigError> {
    for (i, a) in disks.iter().enumerate() {
        for b in &disks[..i] {
            let same_id = a.id.is_some() && a.id == b.id;
            if a.path == b.path || same_id {
                let (param, value) = if same_id {
                    ("id", a.id.clone().unwrap_or_default())
                } else {
                    ("path", a.path.display().to_string())
                };
                return Err(ConfigError::InvalidValue {
                    option: "disk",
                    param,
                    value,
                    reason: "given to two disks".into(),
                });
            }
        }
    }
    Ok(())
}

/// Two NICs on one tap: a tap that is not multi-queue takes one attachment (the second boot
/// step would fail with EBUSY), and a multi-queue one would mix two guests' NICs.
pub fn check_duplicate_nets(nets: &[devices::virtio::NetConfig]) -> Result<(), ConfigError> {
    for (i, a) in nets.iter().enumerate() {
        let Some(tap) = a.tap.as_deref() else {
            continue;
        };
        if nets[..i].iter().any(|b| b.tap.as_deref() == Some(tap)) {
            return Err(ConfigError::InvalidValue {
                option: "net",
                param: "tap",
                value: tap.to_string(),
                reason: "given to two NICs".into(),
            });
        }
    }
    Ok(())
}

fn get<'a>(m: &'a ArgMatches, id: &str) -> Option<&'a String> {
    m.get_one::<String>(id)
}

/// Turn clap's matches into a validated configuration.
pub fn from_matches(m: &ArgMatches) -> Result<Cli, ConfigError> {
    let console = ConsoleConfig::parse(get(m, "console").map(String::as_str).unwrap_or("off"))?;
    let all = |id: &str| {
        m.get_many::<String>(id)
            .into_iter()
            .flatten()
            .map(String::as_str)
    };
    let disks = all("disk")
        .map(config::disk::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let nets = all("net")
        .map(config::net::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let rng = get(m, "rng").map(|s| config::rng::parse(s)).transpose()?;
    let vsock = get(m, "vsock")
        .map(|s| config::vsock::parse(s))
        .transpose()?;
    let fs = all("fs")
        .map(config::fs::parse)
        .collect::<Result<Vec<_>, _>>()?;
    check_duplicate_disks(&disks)?;
    check_duplicate_nets(&nets)?;
    let devices = all("device")
        .map(config::device::parse)
        .collect::<Result<Vec<_>, _>>()?;
    config::device::check_duplicates(&devices)?;
    let api_socket = get(m, "api-socket")
        .map(|s| config::PathOrFd::parse("api-socket", s))
        .transpose()
        .map_err(ConfigError::Option)?;
    let event_monitor = get(m, "event-monitor")
        .map(|s| config::PathOrFd::parse("event-monitor", s))
        .transpose()
        .map_err(ConfigError::Option)?;
    let boot = get(m, "kernel").is_some();
    let mut restore = get(m, "restore")
        .map(|s| config::restore::parse(s))
        .transpose()?;
    let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    if let Some(r) = restore.as_mut() {
        // A restored VM is the snapshot's: what would describe another one is refused rather
        // than ignored. Where its serial output goes may differ (one file per clone).
        for id in [
            "memory",
            "cpus",
            "rng",
            "device",
            "initramfs",
            "cmdline",
            "console",
            "fs",
            "platform",
            "memory-zone",
            "numa",
            "pci-segment",
        ] {
            if given(id) {
                return Err(ConfigError::Option(format!(
                    "--restore and --{id}: a restored VM's configuration is its snapshot's \
                     (only --serial, disk images and taps by id, and the vsock's cid and \
                     socket may differ)"
                )));
            }
        }
        if given("serial") {
            r.overrides.serial = Some(SerialConfig::parse(
                get(m, "serial").map_or("tty", String::as_str),
            )?);
        }
        for d in m.get_many::<String>("disk").into_iter().flatten() {
            r.overrides
                .disks
                .push(config::restore::parse_disk_override(d)?);
        }
        for n in m.get_many::<String>("net").into_iter().flatten() {
            r.overrides
                .nets
                .push(config::restore::parse_net_override(n)?);
        }
        if let Some(v) = get(m, "vsock") {
            let v = config::vsock::parse(v)?;
            r.overrides.vsock = Some((v.cid, v.socket));
        }
    }
    if restore.is_some() && boot {
        return Err(ConfigError::Option(
            "--restore and --kernel: a restored VM's kernel, configuration and devices come              from its snapshot; give one or the other"
                .into(),
        ));
    }
    if restore.is_some()
        && restore.as_ref().and_then(|r| r.resume) == Some(false)
        && api_socket.is_none()
    {
        return Err(ConfigError::Option(
            "--restore ...,resume=off needs --api-socket (something must resume the VM)".into(),
        ));
    }
    if !boot && api_socket.is_none() && restore.is_none() {
        return Err(ConfigError::Option(
            "--kernel PATH is required (or --restore from a snapshot, or --api-socket to create              the VM through the API)"
                .into(),
        ));
    }
    let mut vm = VmConfig {
        kernel: PathBuf::from(get(m, "kernel").cloned().unwrap_or_default()),
        initramfs: get(m, "initramfs").map(PathBuf::from),
        cmdline: get(m, "cmdline")
            .cloned()
            .unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
        cpus: CpusConfig::parse(get(m, "cpus").map(String::as_str).unwrap_or("boot=1"))?,
        memory: MemoryConfig::parse(get(m, "memory").map(String::as_str).unwrap_or("size=512M"))?,
        serial: SerialConfig::parse(get(m, "serial").map(String::as_str).unwrap_or("tty"))?,
        console,
        seccomp: SeccompMode::parse(get(m, "seccomp").map(String::as_str).unwrap_or("true"))?,
        disks,
        nets,
        rng,
        vsock,
        fs,
        devices,
        device_ids: Default::default(),
        platform: get(m, "platform")
            .map(|s| config::PlatformConfig::parse(s))
            .transpose()?
            .unwrap_or_default(),
        memory_zones: all("memory-zone")
            .map(config::numa::parse_zone)
            .collect::<Result<Vec<_>, _>>()?,
        numa: all("numa")
            .map(config::numa::parse_node)
            .collect::<Result<Vec<_>, _>>()?,
        pci_segments: all("pci-segment")
            .map(config::segments::parse)
            .collect::<Result<Vec<_>, _>>()?,
    };
    vm.settle_memory().map_err(|(param, why)| {
        let option = match param {
            "size" => "--memory",
            "numa" | "cpus" | "distances" | "guest_numa_id" => "--numa",
            "devices" => "--device",
            _ => "--memory-zone",
        };
        ConfigError::Option(format!("{option}: {param}: {why}"))
    })?;
    vm.check_pci_segments()
        .map_err(|p| ConfigError::Option(p.cli()))?;
    config::fs::check_memory(&vm.fs, vm.memory.shared)
        .map_err(|e| ConfigError::Option(format!("--fs: {e}")))?;
    // A duplicate id is the command line's: the error names the options that give ids.
    vm.device_ids = config::ids::assign(&vm)
        .map_err(|e| ConfigError::Option(format!("--disk, --net, --device, --vsock, --fs: {e}")))?;
    Ok(Cli {
        vm,
        boot,
        api_socket,
        event_monitor,
        restore,
        verbosity: m.get_count("verbose"),
        log_file: get(m, "log-file").map(PathBuf::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let m = command()
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())?;
        from_matches(&m).map_err(|e| e.to_string())
    }

    #[test]
    fn cloud_hypervisor_style_flags_parse() {
        let cli = parse(&[
            "vmm",
            "--kernel",
            "k",
            "--initramfs",
            "i",
            "--cmdline",
            "console=ttyS0",
            "--cpus",
            "boot=4",
            "--memory",
            "size=1G,prefault=on",
            "--serial",
            "tty",
            "--console",
            "off",
            "-vv",
        ])
        .unwrap();
        assert_eq!(cli.vm.cpus.boot, 4);
        assert_eq!(cli.vm.memory.size, 1 << 30);
        assert!(cli.vm.memory.prefault);
        assert_eq!(cli.vm.cmdline, "console=ttyS0");
        assert_eq!(cli.verbosity, 2);
    }

    #[test]
    fn defaults_apply_when_flags_are_absent() {
        let cli = parse(&["vmm", "--kernel", "k"]).unwrap();
        assert_eq!(cli.vm.cpus.boot, 1);
        assert_eq!(cli.vm.memory.size, 512 << 20);
        assert_eq!(cli.vm.serial, SerialConfig::Tty);
        assert_eq!(cli.vm.cmdline, DEFAULT_CMDLINE);
        assert_eq!(cli.vm.seccomp, SeccompMode::Enforce);
    }

    #[test]
    fn seccomp_takes_cloud_hypervisors_values() {
        let mode = |v| parse(&["vmm", "--kernel", "k", "--seccomp", v]).map(|c| c.vm.seccomp);
        assert_eq!(mode("false"), Ok(SeccompMode::Off));
        assert_eq!(mode("log"), Ok(SeccompMode::Log));
        assert_eq!(mode("true"), Ok(SeccompMode::Enforce));
        assert!(mode("yes").unwrap_err().contains("--seccomp"));
        let help = command().render_help().to_string();
        assert!(help.contains("audit-logs"), "{help}");
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse(&["vmm"]).unwrap_err().contains("--kernel"));
        assert!(parse(&["vmm", "--kernel", "k", "--bogus"]).is_err());
        assert!(parse(&["vmm", "--kernel", "k", "--cpus", "boot=0"])
            .unwrap_err()
            .contains("at least one vCPU"));
        assert!(parse(&["vmm", "--kernel", "k", "--memory", "size=lots"])
            .unwrap_err()
            .contains("--memory"));
        assert!(parse(&["vmm", "--kernel", "k", "--console", "socket"])
            .unwrap_err()
            .contains("--console"));
        assert!(
            parse(&["vmm", "--kernel", "k", "--disk", "path=a", "--disk", "path=a"])
                .unwrap_err()
                .contains("two disks")
        );
        assert!(parse(&[
            "vmm",
            "--kernel",
            "k",
            "--disk",
            "path=a,id=x",
            "--disk",
            "path=b,id=x"
        ])
        .unwrap_err()
        .contains("two disks"));
    }

    #[test]
    fn passthrough_devices_are_repeatable_and_unique() {
        let cli = parse(&[
            "vmm",
            "--kernel",
            "k",
            "--device",
            "path=/sys/bus/pci/devices/0000:41:00.0,id=gpu0,x_nv_gpudirect_clique=1",
            "--device",
            "path=/sys/bus/pci/devices/0000:41:00.1",
        ])
        .unwrap();
        assert_eq!(cli.vm.devices.len(), 2);
        assert_eq!(cli.vm.devices[0].gpudirect_clique, Some(1));
        let dup = parse(&[
            "vmm",
            "--kernel",
            "k",
            "--device",
            "path=/sys/bus/pci/devices/0000:41:00.0",
            "--device",
            "path=/sys/bus/pci/devices/0000:41:00.0/",
        ]);
        assert!(dup.unwrap_err().contains("--device"));
    }

    #[test]
    fn virtio_devices_are_repeatable() {
        let cli = parse(&[
            "vmm",
            "--kernel",
            "k",
            "--disk",
            "path=a",
            "--disk",
            "path=b,readonly=on",
            "--net",
            "tap=t0",
            "--rng",
            "--console",
            "tty",
        ])
        .unwrap();
        assert_eq!(cli.vm.disks.len(), 2);
        assert!(cli.vm.disks[1].readonly);
        assert_eq!(cli.vm.nets[0].tap.as_deref(), Some("t0"));
        assert_eq!(
            cli.vm.rng.unwrap().source,
            std::path::PathBuf::from("/dev/urandom")
        );
        assert_eq!(cli.vm.console, ConsoleConfig::Tty);
    }
}
