//! Guest NUMA, in Cloud Hypervisor's syntax:
//!
//! ```text
//! --memory size=0 --memory-zone id=mem0,size=64G,host_numa_node=0 --memory-zone id=mem1,size=64G,host_numa_node=1
//! --numa guest_numa_id=0,cpus=[0-7],distances=[1@20],memory_zones=[mem0]
//! --numa guest_numa_id=1,cpus=[8-15],distances=[0@20],memory_zones=[mem1]
//! ```
//!
//! Guest RAM is the zones one after the other in guest-physical order (around the 32-bit
//! hole and the HyperTransport range, like any RAM); each zone's host memory is bound to its
//! `host_numa_node` (mbind) before the guest touches it. The guest learns its nodes from the
//! SRAT and SLIT (arch/src/acpi/numa.rs). Every vCPU and every zone belongs to exactly one
//! node, node IDs are 0..n, and a distance is 11..=254 (10 is a node's own).

use super::{kv, size::parse_size, ConfigError};

/// `--memory-zone id=ID,size=SIZE[,host_numa_node=N]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryZone {
    pub id: String,
    pub size: u64,
    /// Host NUMA node the zone's memory is bound to.
    pub host_numa_node: Option<u32>,
}

/// `--numa guest_numa_id=N,cpus=[..],distances=[..],memory_zones=[..]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NumaNodeConfig {
    pub guest_numa_id: u32,
    pub cpus: Vec<u32>,
    /// `(destination node, distance)`.
    pub distances: Vec<(u32, u8)>,
    pub memory_zones: Vec<String>,
    /// PCI segments in the node (their host bridges' `_PXM`).
    pub pci_segments: Vec<u16>,
}

fn invalid(
    option: &'static str,
    param: &'static str,
    value: &str,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::InvalidValue {
        option,
        param,
        value: value.into(),
        reason: reason.into(),
    }
}

pub fn parse_zone(s: &str) -> Result<MemoryZone, ConfigError> {
    const OPT: &str = "memory-zone";
    let (mut id, mut size, mut node) = (None, None, None);
    for (k, v) in kv::parse(OPT, s, &["id", "size", "host_numa_node"])? {
        match k {
            "id" if v.is_empty() => return Err(invalid(OPT, "id", v, "empty")),
            "id" => id = Some(v.to_string()),
            "size" => {
                size = Some(parse_size(v).map_err(|r| invalid(OPT, "size", v, r))?);
            }
            _ => {
                node = Some(
                    v.parse()
                        .map_err(|_| invalid(OPT, "host_numa_node", v, "a host node number"))?,
                )
            }
        }
    }
    let id = id.ok_or(ConfigError::Missing {
        option: OPT,
        param: "id",
    })?;
    let size = size.ok_or(ConfigError::Missing {
        option: OPT,
        param: "size",
    })?;
    if size == 0 || size % 4096 != 0 {
        return Err(invalid(
            OPT,
            "size",
            &size.to_string(),
            "a non-zero multiple of 4 KiB",
        ));
    }
    Ok(MemoryZone {
        id,
        size,
        host_numa_node: node,
    })
}

/// `[0-3,5]` or `0-3` into the numbers it names.
fn parse_cpus(v: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for item in kv::parse_list(v) {
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (a, b),
            None => (item.as_str(), item.as_str()),
        };
        let a: u32 = a
            .trim()
            .parse()
            .map_err(|_| format!("{item:?} is not a vCPU number or range"))?;
        let b: u32 = b
            .trim()
            .parse()
            .map_err(|_| format!("{item:?} is not a vCPU number or range"))?;
        if a > b || b > 4095 {
            return Err(format!("{item:?} is not a vCPU range"));
        }
        out.extend(a..=b);
    }
    Ok(out)
}

pub fn parse_node(s: &str) -> Result<NumaNodeConfig, ConfigError> {
    const OPT: &str = "numa";
    let mut n = NumaNodeConfig::default();
    let mut have_id = false;
    for (k, v) in kv::parse(
        OPT,
        s,
        &[
            "guest_numa_id",
            "cpus",
            "distances",
            "memory_zones",
            "pci_segments",
        ],
    )? {
        match k {
            "guest_numa_id" => {
                n.guest_numa_id = v
                    .parse()
                    .map_err(|_| invalid(OPT, "guest_numa_id", v, "a node number"))?;
                have_id = true;
            }
            "cpus" => n.cpus = parse_cpus(v).map_err(|r| invalid(OPT, "cpus", v, r))?,
            "distances" => {
                for d in kv::parse_list(v) {
                    let bad =
                        || invalid(OPT, "distances", v, format!("{d:?} is not NODE@DISTANCE"));
                    let (dest, dist) = d.split_once('@').ok_or_else(bad)?;
                    n.distances.push((
                        dest.parse().map_err(|_| bad())?,
                        dist.parse().map_err(|_| bad())?,
                    ));
                }
            }
            "pci_segments" => {
                for s in kv::parse_list(v) {
                    n.pci_segments.push(kv::parse_segment(OPT, &s)?);
                }
            }
            _ => n.memory_zones = kv::parse_list(v),
        }
    }
    if !have_id {
        return Err(ConfigError::Missing {
            option: OPT,
            param: "guest_numa_id",
        });
    }
    Ok(n)
}

/// Checks the zones and nodes together against `boot_vcpus`; the (field, why) of the first
/// problem. (The command line and the API word the field their own way.)
pub fn check(
    zones: &[MemoryZone],
    nodes: &[NumaNodeConfig],
    boot_vcpus: u32,
) -> Result<(), (&'static str, String)> {
    for (i, z) in zones.iter().enumerate() {
        if zones[..i].iter().any(|o| o.id == z.id) {
            return Err(("memory_zones", format!("zone id {:?} is given twice", z.id)));
        }
    }
    if nodes.is_empty() {
        return Ok(());
    }
    let n = nodes.len() as u32;
    let mut ids: Vec<u32> = nodes.iter().map(|x| x.guest_numa_id).collect();
    ids.sort_unstable();
    if ids != (0..n).collect::<Vec<_>>() {
        return Err((
            "guest_numa_id",
            format!("node IDs must be 0 to {} once each (got {ids:?})", n - 1),
        ));
    }
    for cpu in 0..boot_vcpus {
        let owners = nodes.iter().filter(|x| x.cpus.contains(&cpu)).count();
        if owners != 1 {
            return Err((
                "cpus",
                format!("vCPU {cpu} is in {owners} nodes; every vCPU must be in exactly one"),
            ));
        }
    }
    for x in nodes {
        if let Some(c) = x.cpus.iter().find(|&&c| c >= boot_vcpus) {
            return Err((
                "cpus",
                format!("vCPU {c} does not exist (the VM has {boot_vcpus})"),
            ));
        }
        for &(dest, d) in &x.distances {
            if dest >= n || dest == x.guest_numa_id {
                return Err((
                    "distances",
                    format!("node {}: {dest} is not another node", x.guest_numa_id),
                ));
            }
            if !(11..=254).contains(&d) {
                return Err((
                    "distances",
                    format!(
                        "node {}: distance {d} to node {dest} is not in 11..=254",
                        x.guest_numa_id
                    ),
                ));
            }
        }
        for z in &x.memory_zones {
            if !zones.iter().any(|m| &m.id == z) {
                return Err((
                    "memory_zones",
                    format!("node {}: no zone {z:?}", x.guest_numa_id),
                ));
            }
        }
    }
    for z in zones {
        let owners = nodes
            .iter()
            .filter(|x| x.memory_zones.contains(&z.id))
            .count();
        if owners != 1 {
            return Err((
                "memory_zones",
                format!(
                    "zone {:?} is in {owners} nodes; every zone must be in exactly one",
                    z.id
                ),
            ));
        }
    }
    Ok(())
}

/// Where each zone lies in guest-physical memory: zones fill `ram` (the layout's RAM ranges,
/// in order) one after the other. `(zone index, gpa, length)` pieces.
pub fn zone_pieces(zones: &[MemoryZone], ram: &[(u64, u64)]) -> Vec<(usize, u64, u64)> {
    let mut out = Vec::new();
    let mut ranges = ram.iter().copied();
    let mut cur = ranges.next();
    for (i, z) in zones.iter().enumerate() {
        let mut left = z.size;
        while left > 0 {
            let Some((gpa, len)) = cur else { return out };
            let take = left.min(len);
            out.push((i, gpa, take));
            left -= take;
            cur = if take == len {
                ranges.next()
            } else {
                Some((gpa + take, len - take))
            };
        }
    }
    out
}

/// The guest's nodes for the SRAT/SLIT.
pub fn acpi_nodes(
    zones: &[MemoryZone],
    nodes: &[NumaNodeConfig],
    ram: &[(u64, u64)],
) -> Vec<arch::acpi::numa::NumaNode> {
    let pieces = zone_pieces(zones, ram);
    let mut out: Vec<_> = nodes
        .iter()
        .map(|x| arch::acpi::numa::NumaNode {
            domain: x.guest_numa_id,
            cpus: x.cpus.clone(),
            memory: pieces
                .iter()
                .filter(|(z, _, _)| x.memory_zones.contains(&zones[*z].id))
                .map(|&(_, gpa, len)| (gpa, len))
                .collect(),
            distances: x.distances.clone(),
        })
        .collect();
    out.sort_by_key(|n| n.domain);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn zones() -> Vec<MemoryZone> {
        vec![
            parse_zone("id=mem0,size=4G,host_numa_node=0").unwrap(),
            parse_zone("id=mem1,size=4G,host_numa_node=1").unwrap(),
        ]
    }

    fn nodes() -> Vec<NumaNodeConfig> {
        vec![
            parse_node("guest_numa_id=0,cpus=[0-1],distances=[1@21],memory_zones=[mem0]").unwrap(),
            parse_node("guest_numa_id=1,cpus=[2,3],distances=[0@21],memory_zones=mem1").unwrap(),
        ]
    }

    #[test]
    fn cloud_hypervisors_syntax_parses() {
        let z = zones();
        assert_eq!(
            (z[1].id.as_str(), z[1].size, z[1].host_numa_node),
            ("mem1", 4 * GIB, Some(1))
        );
        let n = nodes();
        assert_eq!(n[0].cpus, [0, 1]);
        assert_eq!(n[1].cpus, [2, 3]);
        assert_eq!(n[0].distances, [(1, 21)]);
        assert_eq!(n[1].memory_zones, ["mem1"]);
        check(&z, &n, 4).unwrap();
    }

    #[test]
    fn zones_fill_ram_in_order_across_the_32_bit_hole() {
        // 8 GiB: [0, 3 GiB) and [4 GiB, 9 GiB).
        let ram = [(0, 3 * GIB), (4 * GIB, 5 * GIB)];
        let p = zone_pieces(&zones(), &ram);
        assert_eq!(
            p,
            [(0, 0, 3 * GIB), (0, 4 * GIB, GIB), (1, 5 * GIB, 4 * GIB)]
        );
        let acpi = acpi_nodes(&zones(), &nodes(), &ram);
        assert_eq!(acpi[0].memory, [(0, 3 * GIB), (4 * GIB, GIB)]);
        assert_eq!(acpi[1].memory, [(5 * GIB, 4 * GIB)]);
        assert_eq!(acpi[1].cpus, [2, 3]);
    }

    #[test]
    fn every_inconsistency_is_named() {
        let z = zones();
        let mut n = nodes();
        n[1].cpus = vec![3];
        let e = check(&z, &n, 4).unwrap_err();
        assert!(
            e.0 == "cpus" && e.1.contains("vCPU 2 is in 0 nodes"),
            "{e:?}"
        );
        let mut n = nodes();
        n[1].cpus = vec![1, 2, 3];
        assert!(check(&z, &n, 4)
            .unwrap_err()
            .1
            .contains("vCPU 1 is in 2 nodes"));
        assert!(check(&z, &nodes(), 3)
            .unwrap_err()
            .1
            .contains("vCPU 3 does not exist"));
        let mut n = nodes();
        n[1].guest_numa_id = 2;
        assert_eq!(check(&z, &n, 4).unwrap_err().0, "guest_numa_id");
        let mut n = nodes();
        n[0].distances = vec![(1, 9)];
        assert_eq!(check(&z, &n, 4).unwrap_err().0, "distances");
        let mut n = nodes();
        n[0].distances = vec![(0, 20)];
        assert!(check(&z, &n, 4).unwrap_err().1.contains("not another node"));
        let mut n = nodes();
        n[1].memory_zones = vec!["mem0".into()];
        assert!(check(&z, &n, 4)
            .unwrap_err()
            .1
            .contains("zone \"mem0\" is in 2 nodes"));
        let mut n = nodes();
        n[1].memory_zones = vec!["nope".into()];
        assert!(check(&z, &n, 4).unwrap_err().1.contains("no zone \"nope\""));
        let dup = vec![z[0].clone(), z[0].clone()];
        assert!(check(&dup, &[], 4).unwrap_err().1.contains("given twice"));
        assert!(parse_zone("id=a,size=0").is_err());
        assert!(parse_node("cpus=[0]").is_err());
        assert!(parse_node("guest_numa_id=0,cpus=[3-1]").is_err());
        assert!(parse_node("guest_numa_id=0,distances=[1-20]").is_err());
    }
}
