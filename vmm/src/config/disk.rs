//! `--disk path=FILE[,readonly=on][,direct=on][,num_queues=N][,queue_size=N][,id=NAME]
//! [,pci_segment=N][,pci_device_id=N]`

use std::path::PathBuf;

use devices::virtio::DiskConfig;

use super::{kv, ConfigError};

const OPT: &str = "disk";
const PARAMS: &[&str] = &[
    "path",
    "readonly",
    "direct",
    "num_queues",
    "queue_size",
    "id",
    "pci_segment",
    "pci_device_id",
];

fn invalid(param: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        option: OPT,
        param,
        value: value.into(),
        reason: reason.into(),
    }
}

/// A queue count or size: a positive u16 (sizes also a power of two).
pub(super) fn queue_param(
    option: &'static str,
    param: &'static str,
    v: &str,
    pow2: bool,
) -> Result<u16, ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidValue {
        option,
        param,
        value: v.into(),
        reason: reason.into(),
    };
    let n: u16 = v
        .parse()
        .map_err(|_| bad("expected a number from 1 to 32768"))?;
    if n == 0 || n > 32768 {
        return Err(bad("expected a number from 1 to 32768"));
    }
    if pow2 && !n.is_power_of_two() {
        return Err(bad("a queue size must be a power of two"));
    }
    Ok(n)
}

pub fn parse(s: &str) -> Result<DiskConfig, ConfigError> {
    let mut cfg: Option<DiskConfig> = None;
    let pairs = kv::parse(OPT, s, PARAMS)?;
    for (k, v) in &pairs {
        if *k == "path" {
            if v.is_empty() {
                return Err(invalid("path", v, "empty path"));
            }
            cfg = Some(DiskConfig::new(PathBuf::from(v)));
        }
    }
    let mut cfg = cfg.ok_or(ConfigError::Missing {
        option: OPT,
        param: "path",
    })?;
    for (k, v) in pairs {
        match k {
            "readonly" => cfg.readonly = kv::parse_bool(OPT, "readonly", v)?,
            "direct" => cfg.direct = kv::parse_bool(OPT, "direct", v)?,
            "num_queues" => cfg.num_queues = queue_param(OPT, "num_queues", v, false)?,
            "queue_size" => cfg.queue_size = queue_param(OPT, "queue_size", v, true)?,
            "id" if v.is_empty() => return Err(invalid("id", v, "empty id")),
            "id" => cfg.id = Some(v.to_string()),
            "pci_segment" => cfg.pci_segment = kv::parse_segment(OPT, v)?,
            "pci_device_id" => cfg.pci_device_id = Some(kv::parse_device_id(OPT, v)?),
            _ => {}
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cloud_hypervisor_disk_syntax() {
        let d = parse("path=/img/a.raw,readonly=on,direct=off,num_queues=4,queue_size=128,id=root")
            .unwrap();
        assert_eq!(d.path, PathBuf::from("/img/a.raw"));
        assert!(d.readonly && !d.direct);
        assert_eq!((d.num_queues, d.queue_size), (4, 128));
        assert_eq!(d.id.as_deref(), Some("root"));
        let d = parse("path=x").unwrap();
        assert!(!d.readonly);
    }

    #[test]
    fn rejects_missing_path_bad_queues_and_unknown_params() {
        for bad in [
            "readonly=on",
            "path=",
            "path=x,queue_size=100",
            "path=x,num_queues=0",
            "path=x,cache=on",
            "path=x,id=",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
