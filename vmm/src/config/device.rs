//! `--device path=SYSFS_PATH[,id=NAME][,x_nv_gpudirect_clique=N][,root_port=on|off]
//! [,numa_node=N][,iommufd=on|off][,pci_segment=N]` (repeatable): a host PCI device passed through with VFIO,
//! in Cloud Hypervisor's syntax. `root_port` (this VMM's own) puts the device behind a PCI
//! Express root port of its own; absent, 3D controllers (data-centre GPUs, class 0x0302) get
//! one and others do not. `iommufd` (this VMM's own) picks the VFIO backend: `on` opens the
//! device's VFIO cdev (`/dev/vfio/devices/vfioN`) and maps DMA through `/dev/iommu`, `off` uses
//! the legacy container and groups; absent, the VMM picks (see `vfio::preflight`).

use std::path::PathBuf;

use super::{kv, ConfigError};

const OPT: &str = "device";
/// The clique ID takes 4 bits in the NVIDIA P2P capability (QEMU and the driver agree).
pub const MAX_GPUDIRECT_CLIQUE: u8 = 15;

/// One passed-through device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The device's sysfs directory, e.g. `/sys/bus/pci/devices/0000:41:00.0`.
    pub path: PathBuf,
    pub id: Option<String>,
    /// NVIDIA GPUDirect P2P clique: GPUs with the same ID may talk to each other directly.
    pub gpudirect_clique: Option<u8>,
    /// Behind a PCI Express root port of its own (None: by the device's class).
    pub root_port: Option<bool>,
    /// Guest NUMA node the device is near: it goes behind a root port under that node's
    /// expander host bridge (whose `_PXM` gives Linux the device's node).
    pub numa_node: Option<u32>,
    /// The VFIO backend: iommufd + the device's cdev (true) or the legacy container and
    /// groups (false); None: the VMM picks.
    pub iommufd: Option<bool>,
    /// The PCI segment the device goes on (0 unless the VM has more: `--platform
    /// num_pci_segments`).
    pub pci_segment: u16,
    /// The slot on the segment's bus 0 (`pci_device_id`, 1 to 31); `None`: the lowest free one.
    pub pci_device_id: Option<u8>,
}

impl DeviceConfig {
    /// The path without trailing slashes, for comparing two `--device` options.
    fn normalized_path(&self) -> PathBuf {
        self.path.components().collect()
    }

    /// The last path component (the BDF for sysfs device paths).
    fn leaf(&self) -> Option<&std::ffi::OsStr> {
        self.path.file_name()
    }
}

fn invalid(param: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        option: OPT,
        param,
        value: value.into(),
        reason: reason.into(),
    }
}

fn parse_id(v: &str) -> Result<String, ConfigError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "_-.:".contains(c);
    if v.is_empty() || !v.chars().all(ok) {
        return Err(invalid(
            "id",
            v,
            "use letters, digits and _ - . : only (and not nothing)",
        ));
    }
    Ok(v.to_string())
}

fn parse_clique(v: &str) -> Result<u8, ConfigError> {
    match v.parse::<u8>() {
        Ok(n) if n <= MAX_GPUDIRECT_CLIQUE => Ok(n),
        _ => Err(invalid(
            "x_nv_gpudirect_clique",
            v,
            format!("a clique ID is a number from 0 to {MAX_GPUDIRECT_CLIQUE}"),
        )),
    }
}

/// Parse one `--device` value.
pub fn parse(s: &str) -> Result<DeviceConfig, ConfigError> {
    let mut path = None;
    let mut id = None;
    let mut gpudirect_clique = None;
    let mut root_port = None;
    let mut numa_node = None;
    let mut iommufd = None;
    let (mut pci_segment, mut pci_device_id) = (0, None);
    for (k, v) in kv::parse(
        OPT,
        s,
        &[
            "path",
            "id",
            "x_nv_gpudirect_clique",
            "root_port",
            "numa_node",
            "iommufd",
            "pci_segment",
            "pci_device_id",
        ],
    )? {
        match k {
            "path" if v.is_empty() => return Err(invalid("path", v, "empty path")),
            "path" => path = Some(PathBuf::from(v)),
            "id" => id = Some(parse_id(v)?),
            "root_port" => root_port = Some(kv::parse_bool(OPT, "root_port", v)?),
            "iommufd" => iommufd = Some(kv::parse_bool(OPT, "iommufd", v)?),
            "pci_segment" => pci_segment = kv::parse_segment(OPT, v)?,
            "pci_device_id" => pci_device_id = Some(kv::parse_device_id(OPT, v)?),
            "numa_node" => {
                numa_node = Some(
                    v.parse()
                        .map_err(|_| invalid("numa_node", v, "a guest NUMA node number"))?,
                )
            }
            _ => gpudirect_clique = Some(parse_clique(v)?),
        }
    }
    let path = path.ok_or(ConfigError::Missing {
        option: OPT,
        param: "path",
    })?;
    Ok(DeviceConfig {
        path,
        id,
        gpudirect_clique,
        root_port,
        numa_node,
        iommufd,
        pci_segment,
        pci_device_id,
    })
}

/// Rejects two `--device` options naming the same device (same path, same final component
/// such as the BDF, or the same id): the second open would fail with EBUSY anyway, later and
/// less clearly.
pub fn check_duplicates(devices: &[DeviceConfig]) -> Result<(), ConfigError> {
    for (i, a) in devices.iter().enumerate() {
        for b in &devices[..i] {
            if a.id.is_some() && a.id == b.id {
                let id = a.id.clone().unwrap_or_default();
                return Err(invalid("id", &id, "given to two devices"));
            }
            let same_leaf = a.leaf().is_some() && a.leaf() == b.leaf() && looks_like_bdf(a);
            if a.normalized_path() == b.normalized_path() || same_leaf {
                let path = a.path.display().to_string();
                return Err(invalid("path", &path, "the same device is given twice"));
            }
        }
    }
    Ok(())
}

/// `DDDD:BB:DD.F`
fn looks_like_bdf(d: &DeviceConfig) -> bool {
    let leaf = d.leaf().and_then(|l| l.to_str()).unwrap_or("");
    let b = leaf.as_bytes();
    b.len() == 12 && b[4] == b':' && b[7] == b':' && b[10] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cloud_hypervisor_syntax() {
        let d = parse("path=/sys/bus/pci/devices/0000:41:00.0/,id=gpu0,x_nv_gpudirect_clique=3")
            .unwrap();
        assert_eq!(d.path, PathBuf::from("/sys/bus/pci/devices/0000:41:00.0/"));
        assert_eq!(d.id.as_deref(), Some("gpu0"));
        assert_eq!(d.gpudirect_clique, Some(3));
        let port = parse("path=/sys/bus/pci/devices/0000:41:00.0,root_port=on").unwrap();
        assert_eq!(port.root_port, Some(true));
        let off = parse("path=/sys/bus/pci/devices/0000:41:00.0,root_port=off").unwrap();
        assert_eq!(off.root_port, Some(false));
        let fd = parse("path=/sys/bus/pci/devices/0000:41:00.0,iommufd=on").unwrap();
        assert_eq!((fd.iommufd, port.iommufd), (Some(true), None));
        let legacy = parse("path=/sys/bus/pci/devices/0000:41:00.0,iommufd=off").unwrap();
        assert_eq!(legacy.iommufd, Some(false));
        assert!(parse("path=/x,iommufd=auto").is_err());
        assert!(parse("path=/x,root_port=maybe").is_err());
        let n = parse("path=/sys/bus/pci/devices/0000:41:00.0,numa_node=1").unwrap();
        assert_eq!(n.numa_node, Some(1));
        assert!(parse("path=/x,numa_node=-1").is_err());
        let plain = parse("path=/sys/bus/pci/devices/0000:00:03.0").unwrap();
        assert_eq!(plain.id, None);
        assert_eq!(plain.gpudirect_clique, None);
    }

    #[test]
    fn rejects_missing_path_bad_ids_and_cliques() {
        assert!(matches!(parse("id=x"), Err(ConfigError::Missing { .. })));
        assert!(parse("path=").is_err());
        assert!(parse("path=/x,id=").is_err());
        assert!(parse("path=/x,id=a b").is_err());
        for bad in ["16", "-1", "x", "256"] {
            let e = parse(&format!("path=/x,x_nv_gpudirect_clique={bad}")).unwrap_err();
            assert!(e.to_string().contains("0 to 15"), "{e}");
        }
        assert!(parse("path=/x,iommu=on").is_err());
    }

    #[test]
    fn duplicate_paths_bdfs_and_ids_are_rejected() {
        let d = |s: &str| parse(s).unwrap();
        let a = d("path=/sys/bus/pci/devices/0000:41:00.0");
        let same_slash = d("path=/sys/bus/pci/devices/0000:41:00.0/");
        let same_bdf = d("path=/sys/devices/pci0000:40/0000:40:01.1/0000:41:00.0");
        let other = d("path=/sys/bus/pci/devices/0000:41:00.1");
        assert!(check_duplicates(&[a.clone(), other.clone()]).is_ok());
        for dup in [same_slash, same_bdf] {
            let e = check_duplicates(&[a.clone(), dup]).unwrap_err().to_string();
            assert!(e.contains("given twice"), "{e}");
        }
        let e = check_duplicates(&[d("path=/a/x,id=gpu"), d("path=/b/y,id=gpu")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("two devices"), "{e}");
        // Non-BDF leaves may repeat under different directories.
        assert!(check_duplicates(&[d("path=/a/dev"), d("path=/b/dev")]).is_ok());
    }
}
