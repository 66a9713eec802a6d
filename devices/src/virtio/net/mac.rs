//! A MAC address: parsing (`52:54:00:12:34:56`), printing, and random
//! locally administered unicast addresses.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes separated by ':'")]
pub struct MacParseError(pub String);

impl MacAddr {
    /// A random unicast address with the locally administered bit set.
    pub fn random_local() -> Self {
        let mut b = [0u8; 6];
        let from_urandom =
            std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
        if from_urandom.is_err() {
            b.copy_from_slice(&vmm_sys_util::rand::rand_bytes(6));
        }
        b[0] = (b[0] & 0xfe) | 0x02;
        MacAddr(b)
    }

    /// Whether the locally administered bit is set and the multicast bit clear.
    pub fn is_local_unicast(&self) -> bool {
        self.0[0] & 0x03 == 0x02
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        let mac: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(mac.0, [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]);
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:11",
            "5:54:00:ab:cd:0f",
            "zz:54:00:ab:cd:0f",
            "+1:54:00:ab:cd:0f",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn random_addresses_are_local_unicast_and_differ() {
        let a = MacAddr::random_local();
        let b = MacAddr::random_local();
        assert!(a.is_local_unicast() && b.is_local_unicast());
        assert_ne!(a, b);
    }
}
