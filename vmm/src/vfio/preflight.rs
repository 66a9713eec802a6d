//! Checks made before any VFIO file is opened, so a misconfigured host gets one clear line
//! saying what is wrong and how to fix it, and nothing is bound, opened or mapped.
//!
//! Everything is read from sysfs through the device path given on the command line (so tests
//! point it at a fake tree in a temporary directory), from the `/dev/vfio` directory given in
//! [`HostFacts`], and from the process's RLIMIT_MEMLOCK and capabilities.
//!
//! It also picks the VM's VFIO backend ([`Backend`], [`choose_backend`]): the legacy container
//! (`/dev/vfio/vfio` + one `/dev/vfio/N` per IOMMU group) or iommufd (`/dev/iommu` + each
//! device's own cdev, `/dev/vfio/devices/vfioN`, Linux 6.6+ with CONFIG_IOMMUFD and
//! CONFIG_VFIO_DEVICE_CDEV). One VM uses one backend for all its devices.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::DeviceConfig;

/// Drivers a device may have and still be passed (or share a group with a passed device).
const VFIO_DRIVER: &str = "vfio-pci";
/// The kernel also accepts group members bound to pci-stub (see `vfio_driver_allowed`).
const STUB_DRIVER: &str = "pci-stub";
/// Capability bit of CAP_IPC_LOCK in /proc/self/status CapEff.
const CAP_IPC_LOCK: u32 = 14;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error(
        "--device path={path}: no such device (PCI devices are listed in /sys/bus/pci/devices, \
         mediated devices such as vGPUs in /sys/bus/mdev/devices)"
    )]
    NotFound { path: String },
    #[error(
        "mediated device {uuid} is not bound to a driver: its parent's vendor driver (for an \
         NVIDIA vGPU, nvidia-vgpu-vfio) must be loaded; see /sys/bus/mdev/drivers"
    )]
    MdevNoDriver { uuid: String },
    #[error("--device path={path}: not a PCI device ({why})")]
    NotPci { path: String, why: String },
    #[error("{bdf} is bound to driver {driver}, not vfio-pci; rebind it as root: {fix}")]
    WrongDriver {
        bdf: String,
        driver: String,
        fix: String,
    },
    #[error("{bdf} is not bound to any driver; bind it to vfio-pci as root: {fix}")]
    NoDriver { bdf: String, fix: String },
    #[error(
        "{bdf} has no IOMMU group: the IOMMU is disabled; enable VT-d/AMD-Vi in the firmware and \
         boot the host with intel_iommu=on (Intel) or amd_iommu=on (AMD) on its kernel command line"
    )]
    NoIommuGroup { bdf: String },
    #[error(
        "{bdf} shares IOMMU group {group} with {peer} (driver {driver}), which must be bound to \
         vfio-pci too (or be passed as well with --device path=/sys/bus/pci/devices/{peer}): {fix}"
    )]
    GroupPeer {
        bdf: String,
        group: u32,
        peer: String,
        driver: String,
        fix: String,
    },
    #[error("{0}")]
    Backend(String),
    #[error("{path} does not exist: {hint}")]
    DevMissing { path: String, hint: &'static str },
    #[error("{path} is not readable and writable by this user ({err}): run as root or give this user the device (chown)")]
    DevAccess { path: String, err: String },
    #[error(
        "RLIMIT_MEMLOCK is {have} but VFIO must pin all {need} of guest RAM for device DMA: raise \
         it for the user running vmm (ulimit -l {need_kib} in the launching shell, \
         LimitMEMLOCK={need_bytes} or infinity in a systemd unit, memlock in \
         /etc/security/limits.conf), or run vmm as root / with CAP_IPC_LOCK"
    )]
    Memlock {
        have: String,
        need: String,
        need_kib: u64,
        need_bytes: u64,
    },
}

/// What preflight needs to know about the host besides sysfs.
#[derive(Clone, Debug)]
pub struct HostFacts {
    /// Where the VFIO container and group devices live (`/dev/vfio`; device cdevs in its
    /// `devices` directory).
    pub dev_vfio: PathBuf,
    /// The iommufd device (`/dev/iommu`).
    pub dev_iommu: PathBuf,
    /// The soft RLIMIT_MEMLOCK in bytes; `None` when unlimited.
    pub memlock_limit: Option<u64>,
    /// CAP_IPC_LOCK in the effective set: locked-memory limits do not apply.
    pub cap_ipc_lock: bool,
}

impl HostFacts {
    /// This process on this host.
    pub fn probe() -> Self {
        HostFacts {
            dev_vfio: PathBuf::from("/dev/vfio"),
            dev_iommu: PathBuf::from("/dev/iommu"),
            memlock_limit: memlock_limit(),
            cap_ipc_lock: has_effective_cap(CAP_IPC_LOCK),
        }
    }
}

fn memlock_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) };
    match rc {
        0 if rl.rlim_cur == libc::RLIM_INFINITY => None,
        0 => Some(rl.rlim_cur),
        _ => Some(0),
    }
}

pub(crate) fn has_effective_cap(bit: u32) -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

/// A device that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedDevice {
    /// The sysfs directory as given on the command line.
    pub path: PathBuf,
    /// `DDDD:BB:DD.F`.
    pub bdf: String,
    pub group: u32,
    /// Its VFIO cdev (`vfio0`: `/dev/vfio/devices/vfio0`), when the kernel gives it one.
    pub cdev: Option<String>,
    /// The backend the VM opens it with (the same for every device of one check).
    pub backend: Backend,
}

/// A VM's VFIO backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `/dev/vfio/vfio` and the groups' `/dev/vfio/N` (VFIO type1 IOMMU).
    Container,
    /// `/dev/iommu` and each device's `/dev/vfio/devices/vfioN`.
    Iommufd,
}

impl Backend {
    /// For messages and `vm.info`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Container => "legacy VFIO container",
            Backend::Iommufd => "iommufd",
        }
    }
}

/// What [`choose_backend`] knows about one device.
#[derive(Clone, Debug)]
pub struct BackendWish<'a> {
    pub bdf: &'a str,
    /// `iommufd=on|off` (None: not given).
    pub iommufd: Option<bool>,
    /// The device has a VFIO cdev.
    pub has_cdev: bool,
}

/// The backend for a VM's devices: what they ask for (`iommufd=on|off`), else iommufd where
/// the host has it (`/dev/iommu`, and a cdev for every device) and either there is one device
/// or the legacy container is missing. With several devices the container is kept: their
/// peer-to-peer DMA needs each device's BARs mapped for the others, which the type1 IOMMU
/// does and iommufd (which cannot pin another device's MMIO) does not. Devices that ask for
/// different backends, or `iommufd=on` where the host cannot, are refused saying why.
pub fn choose_backend(
    wishes: &[BackendWish<'_>],
    have_iommufd: bool,
    have_container: bool,
) -> Result<Backend, String> {
    let on = wishes.iter().find(|w| w.iommufd == Some(true));
    let off = wishes.iter().find(|w| w.iommufd == Some(false));
    if let (Some(a), Some(b)) = (on, off) {
        return Err(format!(
            "{} has iommufd=on and {} iommufd=off: one VM's devices share one VFIO backend; give \
             both the same (or neither)",
            a.bdf, b.bdf
        ));
    }
    let no_cdev = wishes.iter().find(|w| !w.has_cdev);
    if let Some(a) = on {
        if !have_iommufd {
            return Err(format!(
                "{}: iommufd=on, but /dev/iommu does not exist: the host kernel needs \
                 CONFIG_IOMMUFD (modprobe iommufd), or use iommufd=off",
                a.bdf
            ));
        }
        if let Some(w) = no_cdev {
            return Err(format!(
                "{}: iommufd=on, but the device has no VFIO cdev (no vfio-dev directory in \
                 its sysfs directory): the host kernel needs CONFIG_VFIO_DEVICE_CDEV (Linux \
                 6.6+), or use iommufd=off",
                w.bdf
            ));
        }
        return Ok(Backend::Iommufd);
    }
    if off.is_some() {
        return Ok(Backend::Container);
    }
    let iommufd_works = have_iommufd && no_cdev.is_none();
    Ok(if iommufd_works && (wishes.len() == 1 || !have_container) {
        Backend::Iommufd
    } else {
        Backend::Container
    })
}

/// The name of the device's VFIO cdev (`vfio0`), from its sysfs `vfio-dev` directory.
fn cdev_name(dir: &Path) -> Option<String> {
    let mut names = fs::read_dir(dir.join("vfio-dev"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("vfio"));
    let first = names.next()?;
    names.next().is_none().then_some(first)
}

fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

fn rebind_commands(bdf: &str, bound: bool) -> String {
    let dev = format!("/sys/bus/pci/devices/{bdf}");
    let unbind = if bound {
        format!("echo {bdf} > {dev}/driver/unbind; ")
    } else {
        String::new()
    };
    format!(
        "modprobe vfio-pci; echo vfio-pci > {dev}/driver_override; {unbind}\
         echo {bdf} > /sys/bus/pci/drivers_probe"
    )
}

/// What kind of device a `--device` path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bus {
    /// A PCI function (physical, or an SR-IOV virtual function) bound to vfio-pci.
    Pci,
    /// A mediated device (an NVIDIA vGPU, say): `/sys/bus/mdev/devices/UUID`, made by its
    /// parent's vendor driver, which also serves it through VFIO (no vfio-pci binding, an
    /// IOMMU group of its own).
    Mdev,
}

/// The device's name (BDF, or an mdev's UUID), sysfs directory and bus, checking it is a
/// PCI device or a mediated device.
fn pci_device(cfg: &DeviceConfig) -> Result<(String, PathBuf, Bus), PreflightError> {
    let path = cfg.path.display().to_string();
    let dir =
        fs::canonicalize(&cfg.path).map_err(|_| PreflightError::NotFound { path: path.clone() })?;
    let not_pci = |why: String| PreflightError::NotPci {
        path: path.clone(),
        why,
    };
    if !dir.is_dir() {
        return Err(not_pci("not a directory".into()));
    }
    let subsystem = fs::read_link(dir.join("subsystem")).map_err(|_| {
        not_pci("no subsystem link: point path= at /sys/bus/pci/devices/BDF".into())
    })?;
    let on_bus = subsystem
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "bus");
    let bus = match subsystem.file_name().and_then(|n| n.to_str()) {
        Some("pci") if on_bus => Bus::Pci,
        Some("mdev") if on_bus => Bus::Mdev,
        _ => return Err(not_pci(format!("its subsystem is {}", subsystem.display()))),
    };
    let bdf = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((bdf, dir, bus))
}

fn check_mdev_driver(uuid: &str, dir: &Path) -> Result<(), PreflightError> {
    match link_name(&dir.join("driver")) {
        Some(_) => Ok(()),
        None => Err(PreflightError::MdevNoDriver { uuid: uuid.into() }),
    }
}

fn check_driver(bdf: &str, dir: &Path) -> Result<(), PreflightError> {
    match link_name(&dir.join("driver")) {
        Some(d) if d == VFIO_DRIVER => Ok(()),
        Some(driver) => Err(PreflightError::WrongDriver {
            bdf: bdf.into(),
            driver,
            fix: rebind_commands(bdf, true),
        }),
        None => Err(PreflightError::NoDriver {
            bdf: bdf.into(),
            fix: rebind_commands(bdf, false),
        }),
    }
}

fn iommu_group(bdf: &str, dir: &Path) -> Result<u32, PreflightError> {
    link_name(&dir.join("iommu_group"))
        .and_then(|g| g.parse().ok())
        .ok_or_else(|| PreflightError::NoIommuGroup { bdf: bdf.into() })
}

/// Whether a group member that is not passed may stay as it is: the kernel accepts members
/// with no driver, bound to a VFIO or stub driver, or that are bridges (non-type-0 headers).
fn peer_is_allowed(peer_dir: &Path) -> Result<(), String> {
    let driver = link_name(&peer_dir.join("driver"));
    let class = fs::read_to_string(peer_dir.join("class")).unwrap_or_default();
    let class = u32::from_str_radix(class.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    let bridge = matches!(class >> 8, 0x0604 | 0x0607 | 0x0609);
    match driver {
        None => Ok(()),
        Some(d) if d == VFIO_DRIVER || d == STUB_DRIVER || bridge => Ok(()),
        Some(d) => Err(d),
    }
}

fn check_group_peers(
    bdf: &str,
    dir: &Path,
    group: u32,
    passed: &[String],
) -> Result<(), PreflightError> {
    let Ok(entries) = fs::read_dir(dir.join("iommu_group").join("devices")) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let peer = entry.file_name().to_string_lossy().into_owned();
        if peer == bdf || passed.contains(&peer) {
            continue;
        }
        if let Err(driver) = peer_is_allowed(&entry.path()) {
            return Err(PreflightError::GroupPeer {
                bdf: bdf.into(),
                group,
                fix: rebind_commands(&peer, true),
                peer,
                driver,
            });
        }
    }
    Ok(())
}

fn check_dev_node(path: &Path, hint: &'static str) -> Result<(), PreflightError> {
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(PreflightError::DevMissing { path: shown, hint });
    }
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| PreflightError::DevMissing {
        path: shown.clone(),
        hint,
    })?;
    // SAFETY: access only reads the NUL-terminated path we pass.
    if unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) } != 0 {
        let err = std::io::Error::last_os_error().to_string();
        return Err(PreflightError::DevAccess { path: shown, err });
    }
    Ok(())
}

/// `n` bytes the way a person reads them.
fn human(n: u64) -> String {
    pci::format_size(n)
}

fn check_memlock(guest_ram: u64, host: &HostFacts) -> Result<(), PreflightError> {
    if host.cap_ipc_lock {
        return Ok(());
    }
    match host.memlock_limit {
        Some(have) if have < guest_ram => Err(PreflightError::Memlock {
            have: human(have),
            need: human(guest_ram),
            need_kib: guest_ram.div_ceil(1024),
            need_bytes: guest_ram,
        }),
        _ => Ok(()),
    }
}

/// Check every `--device` before anything is opened. `guest_ram` is what VFIO will pin.
pub fn check(
    devices: &[DeviceConfig],
    guest_ram: u64,
    host: &HostFacts,
) -> Result<Vec<CheckedDevice>, PreflightError> {
    let mut found = Vec::with_capacity(devices.len());
    for cfg in devices {
        let (bdf, dir, bus) = pci_device(cfg)?;
        found.push((cfg, bdf, dir, bus));
    }
    let passed: Vec<String> = found.iter().map(|(_, bdf, _, _)| bdf.clone()).collect();
    let cdevs: Vec<Option<String>> = found.iter().map(|(_, _, d, _)| cdev_name(d)).collect();
    let wishes: Vec<BackendWish<'_>> = found
        .iter()
        .zip(&cdevs)
        .map(|((cfg, bdf, _, _), cdev)| BackendWish {
            bdf,
            iommufd: cfg.iommufd,
            has_cdev: cdev.is_some(),
        })
        .collect();
    let backend = if wishes.is_empty() {
        Backend::Container
    } else {
        choose_backend(
            &wishes,
            host.dev_iommu.exists(),
            host.dev_vfio.join("vfio").exists(),
        )
        .map_err(PreflightError::Backend)?
    };
    let mut checked = Vec::with_capacity(found.len());
    for ((cfg, bdf, dir, bus), cdev) in found.into_iter().zip(cdevs) {
        let group = match bus {
            Bus::Pci => {
                check_driver(&bdf, &dir)?;
                let group = iommu_group(&bdf, &dir)?;
                check_group_peers(&bdf, &dir, group, &passed)?;
                group
            }
            // An mdev's group holds only itself.
            Bus::Mdev => {
                check_mdev_driver(&bdf, &dir)?;
                iommu_group(&bdf, &dir)?
            }
        };
        match (backend, &cdev) {
            (Backend::Iommufd, Some(name)) => {
                check_dev_node(
                    &host.dev_iommu,
                    "the iommufd device is missing; load it: modprobe iommufd",
                )?;
                check_dev_node(
                    &host.dev_vfio.join("devices").join(name),
                    "the device's VFIO cdev is missing; is the device bound to vfio-pci?",
                )?;
            }
            _ => {
                check_dev_node(
                    &host.dev_vfio.join("vfio"),
                    "the VFIO container device is missing; load the driver: modprobe vfio-pci",
                )?;
                check_dev_node(
                    &host.dev_vfio.join(group.to_string()),
                    "the IOMMU group's VFIO device is missing; is the device bound to vfio-pci?",
                )?;
            }
        }
        checked.push(CheckedDevice {
            path: cfg.path.clone(),
            bdf,
            group,
            cdev,
            backend,
        });
    }
    if !checked.is_empty() {
        check_memlock(guest_ram, host)?;
    }
    Ok(checked)
}

#[cfg(test)]
#[path = "preflight_tests.rs"]
mod tests;
