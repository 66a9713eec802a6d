//! `--cpus boot=N[,max=N]`

use super::{kv, ConfigError};

const OPT: &str = "cpus";
/// The MP table and xAPIC IDs limit us to 254 vCPUs (APIC ID 255 is broadcast; one ID is the IOAPIC's).
pub const MAX_VCPUS: u32 = 254;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpusConfig {
    pub boot: u32,
}

impl Default for CpusConfig {
    fn default() -> Self {
        CpusConfig { boot: 1 }
    }
}

fn count(param: &'static str, v: &str) -> Result<u32, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidValue {
        option: OPT,
        param,
        value: v.into(),
        reason,
    };
    let n: u32 = v
        .parse()
        .map_err(|_| invalid("not a whole number".into()))?;
    if n == 0 {
        return Err(invalid("a VM needs at least one vCPU".into()));
    }
    if n > MAX_VCPUS {
        return Err(invalid(format!("at most {MAX_VCPUS} vCPUs are supported")));
    }
    Ok(n)
}

impl CpusConfig {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let mut boot = None;
        let mut max = None;
        for (k, v) in kv::parse(OPT, s, &["boot", "max"])? {
            match k {
                "boot" => boot = Some(count("boot", v)?),
                _ => max = Some((count("max", v)?, v)),
            }
        }
        let boot = boot.ok_or(ConfigError::Missing {
            option: OPT,
            param: "boot",
        })?;
        if let Some((m, v)) = max {
            if m != boot {
                return Err(ConfigError::InvalidValue {
                    option: OPT,
                    param: "max",
                    value: v.into(),
                    reason: "vCPU hotplug is not supported: max must equal boot".into(),
                });
            }
        }
        Ok(CpusConfig { boot })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_boot_count() {
        assert_eq!(CpusConfig::parse("boot=4").unwrap().boot, 4);
        assert_eq!(CpusConfig::parse("boot=2,max=2").unwrap().boot, 2);
    }

    #[test]
    fn rejects_zero_too_many_garbage_and_hotplug() {
        for bad in [
            "boot=0",
            "boot=255",
            "boot=x",
            "boot=-1",
            "max=2",
            "boot=2,max=4",
            "",
        ] {
            assert!(CpusConfig::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
