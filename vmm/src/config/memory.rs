//! `--memory size=SIZE[,hugepages=on|off][,prefault=on|off][,shared=on|off]`

use super::{kv, size::parse_size, ConfigError};

const OPT: &str = "memory";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryConfig {
    pub size: u64,
    /// Back guest RAM with hugetlbfs pages (MAP_HUGETLB).
    pub hugepages: bool,
    /// Populate guest RAM up front (MAP_POPULATE) instead of on first touch.
    pub prefault: bool,
    /// MAP_SHARED instead of MAP_PRIVATE.
    pub shared: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            size: 512 << 20,
            hugepages: false,
            prefault: false,
            shared: false,
        }
    }
}

impl MemoryConfig {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let mut cfg = MemoryConfig::default();
        let mut have_size = false;
        for (k, v) in kv::parse(OPT, s, &["size", "hugepages", "prefault", "shared"])? {
            match k {
                "size" => {
                    cfg.size = parse_size(v).map_err(|reason| ConfigError::InvalidValue {
                        option: OPT,
                        param: "size",
                        value: v.into(),
                        reason,
                    })?;
                    have_size = true;
                }
                "hugepages" => cfg.hugepages = kv::parse_bool(OPT, "hugepages", v)?,
                "prefault" => cfg.prefault = kv::parse_bool(OPT, "prefault", v)?,
                _ => cfg.shared = kv::parse_bool(OPT, "shared", v)?,
            }
        }
        if !have_size {
            return Err(ConfigError::Missing {
                option: OPT,
                param: "size",
            });
        }
        // size=0 means "the memory zones' sum" (VmConfig::settle_memory checks there are some).
        if cfg.hugepages && cfg.size % (2 << 20) != 0 {
            return Err(ConfigError::InvalidValue {
                option: OPT,
                param: "size",
                value: cfg.size.to_string(),
                reason: "with hugepages=on the size must be a multiple of 2 MiB".into(),
            });
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_size_and_flags() {
        let m = MemoryConfig::parse("size=4G,hugepages=on,prefault=off").unwrap();
        assert_eq!(m.size, 4 << 30);
        assert!(m.hugepages);
        assert!(!m.prefault);
    }

    #[test]
    fn rejects_zero_missing_and_bad_sizes() {
        // 0 parses (it means "the zones' sum"); VmConfig::settle_memory refuses it without
        // zones ("guest memory cannot be empty", tests/bad_input.rs).
        assert_eq!(MemoryConfig::parse("size=0").unwrap().size, 0);
        assert!(matches!(
            MemoryConfig::parse("prefault=on"),
            Err(ConfigError::Missing { .. })
        ));
        assert!(matches!(
            MemoryConfig::parse("size=12Q"),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(matches!(
            MemoryConfig::parse("size=3M,hugepages=on"),
            Err(ConfigError::InvalidValue { .. })
        ));
    }
}
