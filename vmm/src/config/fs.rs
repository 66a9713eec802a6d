//! `--fs tag=TAG,socket=PATH[,num_queues=N][,queue_size=N][,id=ID][,pci_segment=N]
//! [,pci_device_id=N]` (Cloud Hypervisor's spelling and defaults: one request queue of 1024 entries).
//! The backend (`virtiofsd --socket-path PATH --shared-dir DIR`) must be listening, and guest
//! memory must be shared with it: `--memory shared=on`.

use std::path::PathBuf;

use devices::virtio::fs::{FsConfig, MAX_REQUEST_QUEUES, TAG_LEN};

use super::{kv, ConfigError};

const OPT: &str = "fs";
pub const DEFAULT_NUM_QUEUES: u16 = 1;
pub const DEFAULT_QUEUE_SIZE: u16 = 1024;

pub fn parse(s: &str) -> Result<FsConfig, ConfigError> {
    let (mut tag, mut socket, mut id) = (None, None, None);
    let (mut num_queues, mut queue_size) = (DEFAULT_NUM_QUEUES, DEFAULT_QUEUE_SIZE);
    let (mut pci_segment, mut pci_device_id) = (0, None);
    const KEYS: &[&str] = &[
        "tag",
        "socket",
        "num_queues",
        "queue_size",
        "id",
        "pci_segment",
        "pci_device_id",
    ];
    for (k, v) in kv::parse(OPT, s, KEYS)? {
        let invalid = |reason: &str| ConfigError::InvalidValue {
            option: OPT,
            param: k,
            value: v.into(),
            reason: reason.into(),
        };
        match k {
            "tag" => tag = Some(v.to_string()),
            "socket" if v.is_empty() => return Err(invalid("empty path")),
            "socket" => socket = Some(PathBuf::from(v)),
            "num_queues" => num_queues = v.parse().map_err(|_| invalid("not a number"))?,
            "queue_size" => queue_size = v.parse().map_err(|_| invalid("not a number"))?,
            "id" if v.is_empty() => return Err(invalid("empty id")),
            "id" => id = Some(v.to_string()),
            "pci_segment" => pci_segment = kv::parse_segment(OPT, v)?,
            _ => pci_device_id = Some(kv::parse_device_id(OPT, v)?),
        }
    }
    let missing = |param| ConfigError::Missing { option: OPT, param };
    let cfg = FsConfig {
        tag: tag.ok_or(missing("tag"))?,
        socket: socket.ok_or(missing("socket"))?,
        num_queues,
        queue_size,
        id,
        pci_segment,
        pci_device_id,
    };
    check(&cfg).map_err(|(param, reason)| ConfigError::InvalidValue {
        option: OPT,
        param,
        value: match param {
            "tag" => cfg.tag.clone(),
            "num_queues" => cfg.num_queues.to_string(),
            _ => cfg.queue_size.to_string(),
        },
        reason,
    })?;
    Ok(cfg)
}

/// The limits the device has (shared with the API): the parameter at fault and why.
pub fn check(cfg: &FsConfig) -> Result<(), (&'static str, String)> {
    if cfg.tag.is_empty() || cfg.tag.len() > TAG_LEN {
        return Err(("tag", format!("a tag is 1 to {TAG_LEN} bytes")));
    }
    if cfg.num_queues == 0 || cfg.num_queues > MAX_REQUEST_QUEUES {
        return Err((
            "num_queues",
            format!("1 to {MAX_REQUEST_QUEUES} request queues"),
        ));
    }
    if cfg.queue_size < 2 || cfg.queue_size > 32768 || !cfg.queue_size.is_power_of_two() {
        return Err(("queue_size", "a power of two from 2 to 32768".into()));
    }
    Ok(())
}

/// A vhost-user backend maps guest memory from the files it is given: memory must be shared.
pub fn check_memory(fs: &[FsConfig], shared: bool) -> Result<(), String> {
    match fs.first() {
        Some(f) if !shared => Err(format!(
            "virtio-fs {:?} needs guest memory shared with its backend: add --memory \
             ...,shared=on (\"memory\": {{\"shared\": true}} in the API)",
            f.tag
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_and_socket_are_required_and_limits_checked() {
        let f = parse("tag=myfs,socket=/run/fs.sock").unwrap();
        assert_eq!(
            (f.tag.as_str(), f.socket, f.num_queues, f.queue_size, f.id),
            ("myfs", PathBuf::from("/run/fs.sock"), 1, 1024, None)
        );
        let f =
            parse("tag=t,socket=/s,num_queues=4,queue_size=256,id=shared,pci_segment=0").unwrap();
        assert_eq!(
            (f.num_queues, f.queue_size, f.id.as_deref()),
            (4, 256, Some("shared"))
        );
        for (bad, says) in [
            ("socket=/s", "tag"),
            ("tag=t", "socket"),
            ("tag=,socket=/s", "1 to 36 bytes"),
            (
                "tag=0123456789012345678901234567890123456,socket=/s",
                "1 to 36 bytes",
            ),
            ("tag=t,socket=/s,num_queues=0", "request queues"),
            ("tag=t,socket=/s,num_queues=x", "not a number"),
            ("tag=t,socket=/s,queue_size=1000", "power of two"),
            ("tag=t,socket=/s,pci_segment=16", "from 0 to 15"),
            ("tag=t,socket=/s,cache=always", "cache"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains("--fs") || e.contains("fs"), "{bad}: {e}");
        }
    }

    #[test]
    fn virtio_fs_needs_shared_memory() {
        let f = parse("tag=t,socket=/s").unwrap();
        let e = check_memory(std::slice::from_ref(&f), false).unwrap_err();
        assert!(e.contains("shared=on"), "{e}");
        assert!(check_memory(&[f], true).is_ok());
        assert!(check_memory(&[], false).is_ok());
    }
}
