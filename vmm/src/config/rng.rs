//! `--rng src=PATH[,pci_segment=N][,pci_device_id=N]`

use std::path::PathBuf;

use devices::virtio::RngConfig;

use super::{kv, ConfigError};

pub fn parse(s: &str) -> Result<RngConfig, ConfigError> {
    let mut cfg = RngConfig::default();
    for (k, v) in kv::parse("rng", s, &["src", "pci_segment", "pci_device_id"])? {
        if k == "pci_segment" {
            cfg.pci_segment = kv::parse_segment("rng", v)?;
            continue;
        }
        if k == "pci_device_id" {
            cfg.pci_device_id = Some(kv::parse_device_id("rng", v)?);
            continue;
        }
        if v.is_empty() {
            return Err(ConfigError::InvalidValue {
                option: "rng",
                param: "src",
                value: v.into(),
                reason: "empty path".into(),
            });
        }
        cfg.source = PathBuf::from(v);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_source_is_urandom_and_src_overrides_it() {
        assert_eq!(parse("").unwrap().source, PathBuf::from("/dev/urandom"));
        assert_eq!(
            parse("src=/dev/random").unwrap().source,
            PathBuf::from("/dev/random")
        );
        assert!(parse("src=").is_err());
        assert!(parse("file=/x").is_err());
    }
}
