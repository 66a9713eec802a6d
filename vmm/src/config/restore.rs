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
    /// What this VM has instead of the snapshot's (`--serial`, `--disk path=,id=`,
    /// `--net tap=,id=` given with `--restore`).
    pub overrides: Overrides,
}

/// What a restored VM (a clone) has instead of its snapshot's: each clone needs its own disk
/// images (an image is locked by the VM that has it open), taps and serial output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Where COM1's output goes.
    pub serial: Option<super::SerialConfig>,
    /// (disk id, image): the image this disk opens instead. It must be the same size.
    pub disks: Vec<(String, std::path::PathBuf)>,
    /// (net id, tap name): the tap this NIC opens instead (its MAC stays the snapshot's).
    pub nets: Vec<(String, String)>,
    /// The vsock's guest CID and socket instead (each clone needs its own).
    pub vsock: Option<(u64, std::path::PathBuf)>,
}

/// `--disk path=IMAGE,id=ID` with `--restore`: disk ID opens IMAGE instead.
pub fn parse_disk_override(s: &str) -> Result<(String, std::path::PathBuf), ConfigError> {
    let (id, path) = id_and(s, "disk", "path")?;
    Ok((id, path.into()))
}

/// `--net tap=NAME,id=ID` with `--restore`: net ID opens tap NAME instead.
pub fn parse_net_override(s: &str) -> Result<(String, String), ConfigError> {
    id_and(s, "net", "tap")
}

fn id_and(
    s: &str,
    option: &'static str,
    what: &'static str,
) -> Result<(String, String), ConfigError> {
    let accepted: &'static [&'static str] = if what == "path" {
        &["path", "id"]
    } else {
        &["tap", "id"]
    };
    let (mut id, mut value) = (None, None);
    for (k, v) in kv::parse(option, s, accepted).map_err(|e| {
        ConfigError::Option(format!(
            "{e} (with --restore, --{option} takes only {what}= and id=: the device of the \
             snapshot with that id uses it instead)"
        ))
    })? {
        if k == "id" {
            id = Some(v.to_string());
        } else {
            value = Some(v.to_string());
        }
    }
    let missing = |param| ConfigError::Missing { option, param };
    match (id, value) {
        (Some(id), Some(v)) if !v.is_empty() => Ok((id, v)),
        (None, _) => Err(missing("id")),
        _ => Err(missing(what)),
    }
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
        overrides: Overrides::default(),
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
        assert_eq!(
            parse_disk_override("path=/c1.img,id=_disk0").unwrap(),
            ("_disk0".to_string(), "/c1.img".into())
        );
        assert_eq!(
            parse_net_override("id=n0,tap=tap7").unwrap(),
            ("n0".to_string(), "tap7".to_string())
        );
        assert!(parse_disk_override("path=/c1.img").is_err(), "no id");
        assert!(parse_disk_override("id=x,path=").is_err(), "no path");
        let e = parse_disk_override("path=/c.img,id=x,readonly=on").unwrap_err();
        assert!(e.to_string().contains("only path= and id="), "{e}");
        assert!(parse_net_override("tap=t,id=x,mac=12:34:56:78:9a:bc").is_err());
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
