//! `--net tap=NAME,ip=ADDR,mask=MASK,mac=MAC[,num_queues=N][,queue_size=N][,id=ID][,pci_segment=N]
//! [,pci_device_id=N]`

use std::net::Ipv4Addr;

use devices::virtio::{MacAddr, NetConfig};

use super::disk::queue_param;
use super::{kv, ConfigError};

const OPT: &str = "net";
const PARAMS: &[&str] = &[
    "tap",
    "ip",
    "mask",
    "mac",
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

fn ipv4(param: &'static str, v: &str) -> Result<Ipv4Addr, ConfigError> {
    v.parse()
        .map_err(|_| invalid(param, v, "not an IPv4 address"))
}

pub fn parse(s: &str) -> Result<NetConfig, ConfigError> {
    let mut cfg = NetConfig {
        tap: None,
        ip: None,
        mask: None,
        mac: None,
        num_queues: 2,
        queue_size: 256,
        id: None,
        tap_fds: Default::default(),
        pci_segment: 0,
        pci_device_id: None,
    };
    for (k, v) in kv::parse(OPT, s, PARAMS)? {
        match k {
            "tap" if v.is_empty() || v.len() > 15 => {
                return Err(invalid("tap", v, "a tap name has 1 to 15 characters"))
            }
            "tap" => cfg.tap = Some(v.to_string()),
            "ip" => cfg.ip = Some(ipv4("ip", v)?),
            "mask" => cfg.mask = Some(ipv4("mask", v)?),
            "mac" => {
                cfg.mac =
                    Some(v.parse::<MacAddr>().map_err(|_| {
                        invalid("mac", v, "not a MAC address like 12:34:56:78:9a:bc")
                    })?)
            }
            "num_queues" => {
                let n = queue_param(OPT, "num_queues", v, false)?;
                if n < 2 || n % 2 != 0 {
                    return Err(invalid(
                        "num_queues",
                        v,
                        "RX and TX queues come in pairs: an even number, at least 2",
                    ));
                }
                cfg.num_queues = n;
            }
            "queue_size" => cfg.queue_size = queue_param(OPT, "queue_size", v, true)?,
            "pci_segment" => cfg.pci_segment = kv::parse_segment(OPT, v)?,
            "pci_device_id" => cfg.pci_device_id = Some(kv::parse_device_id(OPT, v)?),
            _ => {
                if v.is_empty() {
                    return Err(invalid("id", v, "an id cannot be empty"));
                }
                cfg.id = Some(v.to_string());
            }
        }
    }
    if cfg.mask.is_some() && cfg.ip.is_none() {
        return Err(invalid("mask", "", "a mask needs an ip"));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tap_addresses_and_queues() {
        let n = parse(
            "tap=vmtap0,ip=192.168.249.1,mask=255.255.255.0,mac=12:34:56:78:9a:bc,num_queues=4",
        )
        .unwrap();
        assert_eq!(n.tap.as_deref(), Some("vmtap0"));
        assert_eq!(n.ip, Some(Ipv4Addr::new(192, 168, 249, 1)));
        assert_eq!(n.num_queues, 4);
        assert!(n.mac.is_some());
        assert_eq!(parse("").unwrap().num_queues, 2);
    }

    #[test]
    fn rejects_bad_addresses_and_odd_queue_counts() {
        for bad in [
            "ip=300.1.1.1",
            "mac=zz",
            "num_queues=3",
            "tap=averyveryverylongname",
            "mask=255.0.0.0",
            "vhost=on",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
