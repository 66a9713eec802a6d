//! `--restore source_url=file:///dir[,prefault=on|off][,resume=on|off]` (Cloud Hypervisor's
//! spelling): start from a snapshot instead of a kernel.

use super::{kv, ConfigError};

const OPT: &str = "restore";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreOptions {
    pub source_url: String,
    pub prefault: bool,
    /// `None`: the default (paused under `--api-socket`, running without it).
    pub resume: Option<bool>,
    /// `--serial` given with `--restore`: where this VM's COM1 output goes instead of where the
    /// snapshot's did (clones of one snapshot each get their own).
    pub serial: Option<super::SerialConfig>,
}

pub fn parse(s: &str) -> Result<RestoreOptions, ConfigError> {
    let mut source_url = None;
    let mut prefault = false;
    let mut resume = None;
    for (k, v) in kv::parse(OPT, s, &["source_url", "prefault", "resume"])? {
        match k {
            "source_url" => {
                crate::snapshot::dir_of_url(v).map_err(|e| ConfigError::InvalidValue {
                    option: OPT,
                    param: "source_url",
                    value: v.into(),
                    reason: e.to_string(),
                })?;
                source_url = Some(v.to_string());
            }
            "prefault" => prefault = kv::parse_bool(OPT, "prefault", v)?,
            _ => resume = Some(kv::parse_bool(OPT, "resume", v)?),
        }
    }
    Ok(RestoreOptions {
        source_url: source_url.ok_or(ConfigError::Missing {
            option: OPT,
            param: "source_url",
        })?,
        prefault,
        resume,
        serial: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cloud_hypervisors_restore_option() {
        let r = parse("source_url=file:///snap/a,prefault=on").unwrap();
        assert_eq!(r.source_url, "file:///snap/a");
        assert!(r.prefault);
        assert_eq!(r.resume, None);
        assert_eq!(
            parse("source_url=file:///s,resume=off").unwrap().resume,
            Some(false)
        );
        for bad in [
            "prefault=on",
            "source_url=/snap",
            "source_url=file:///s,prefault=maybe",
            "source_url=file:///s,memory=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
