//! `--vsock cid=N,socket=PATH[,id=ID][,pci_segment=N][,pci_device_id=N]` (Cloud Hypervisor's spelling; `iommu=off` is accepted).

use std::path::PathBuf;

use devices::virtio::VsockConfig;

use super::{kv, ConfigError};

const OPT: &str = "vsock";

pub fn parse(s: &str) -> Result<VsockConfig, ConfigError> {
    let (mut cid, mut socket, mut id) = (None, None, None);
    let (mut pci_segment, mut pci_device_id) = (0, None);
    for (k, v) in kv::parse(
        OPT,
        s,
        &[
            "cid",
            "socket",
            "id",
            "iommu",
            "pci_segment",
            "pci_device_id",
        ],
    )? {
        let invalid = |reason: &str| ConfigError::InvalidValue {
            option: OPT,
            param: k,
            value: v.into(),
            reason: reason.into(),
        };
        match k {
            "cid" => {
                let n: u64 = v.parse().map_err(|_| invalid("not a number"))?;
                if !(3..u64::from(u32::MAX)).contains(&n) {
                    return Err(invalid(
                        "a guest CID is 3 or more (0-2 are reserved; 2 is the host) and below \
                         2^32-1",
                    ));
                }
                cid = Some(n);
            }
            "socket" if v.is_empty() => return Err(invalid("empty path")),
            "socket" => socket = Some(PathBuf::from(v)),
            "id" if v.is_empty() => return Err(invalid("empty id")),
            "id" => id = Some(v.to_string()),
            "pci_segment" => pci_segment = kv::parse_segment(OPT, v)?,
            "pci_device_id" => pci_device_id = Some(kv::parse_device_id(OPT, v)?),
            _ => {
                if kv::parse_bool(OPT, "iommu", v)? {
                    return Err(invalid("no virtual IOMMU in this VMM"));
                }
            }
        }
    }
    let missing = |param| ConfigError::Missing { option: OPT, param };
    Ok(VsockConfig {
        cid: cid.ok_or(missing("cid"))?,
        socket: socket.ok_or(missing("socket"))?,
        id,
        pci_segment,
        pci_device_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_and_socket_are_required_and_checked() {
        let v = parse("cid=3,socket=/run/v.sock,id=agent").unwrap();
        assert_eq!(
            (v.cid, v.socket, v.id.as_deref()),
            (3, PathBuf::from("/run/v.sock"), Some("agent"))
        );
        assert!(parse("cid=3,socket=/v,iommu=off").is_ok());
        for bad in [
            "socket=/v",
            "cid=3",
            "cid=2,socket=/v",
            "cid=x,socket=/v",
            "cid=4294967295,socket=/v",
            "cid=3,socket=",
            "cid=3,socket=/v,iommu=on",
            "cid=3,socket=/v,port=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
