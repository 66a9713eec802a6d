//! PCI segments (Cloud Hypervisor's spelling): `--platform num_pci_segments=N` gives the VM
//! segments 0..N, each a host bridge of its own (`arch::pci_segments`); a device goes on one
//! with `pci_segment=S` (`--disk`, `--net`, `--rng`, `--vsock`, `--fs`, `--device`);
//! `--pci-segment pci_segment=S,mmio32_aperture_weight=W,mmio64_aperture_weight=W` sizes a
//! segment's share of the MMIO windows (weight 1 each by default); `--numa
//! ...,pci_segments=[S,..]` puts segments in a guest NUMA node (`_PXM`).

use super::{kv, ConfigError, VmConfig, MAX_PCI_SEGMENTS};

const OPT: &str = "pci-segment";

/// One `--pci-segment` (the API's `pci_segments[]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciSegmentConfig {
    pub pci_segment: u16,
    pub mmio32_aperture_weight: u32,
    pub mmio64_aperture_weight: u32,
}

pub fn parse(s: &str) -> Result<PciSegmentConfig, ConfigError> {
    let mut cfg = PciSegmentConfig {
        pci_segment: 0,
        mmio32_aperture_weight: 1,
        mmio64_aperture_weight: 1,
    };
    let mut have = false;
    for (k, v) in kv::parse(
        OPT,
        s,
        &[
            "pci_segment",
            "mmio32_aperture_weight",
            "mmio64_aperture_weight",
        ],
    )? {
        let weight = |param| match v.parse::<u32>() {
            Ok(w) if w > 0 => Ok(w),
            _ => Err(ConfigError::InvalidValue {
                option: OPT,
                param,
                value: v.into(),
                reason: "a weight is a whole number of 1 or more".into(),
            }),
        };
        match k {
            "pci_segment" => {
                cfg.pci_segment = kv::parse_segment(OPT, v)?;
                have = true;
            }
            "mmio32_aperture_weight" => cfg.mmio32_aperture_weight = weight(k)?,
            _ => cfg.mmio64_aperture_weight = weight("mmio64_aperture_weight")?,
        }
    }
    if !have {
        return Err(ConfigError::Missing {
            option: OPT,
            param: "pci_segment",
        });
    }
    Ok(cfg)
}

/// What is wrong with the VM's segments: the list (`disks`, `net`, `rng`, `vsock`, `fs`,
/// `devices`, `pci_segments`, `numa`), the entry, the field and why. The command line and
/// the API word the place their own way ([`Problem::cli`], [`Problem::api`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    pub list: &'static str,
    pub index: usize,
    pub field: &'static str,
    pub why: String,
}

impl Problem {
    /// `--disk: pci_segment: ...`.
    pub fn cli(&self) -> String {
        let option = match self.list {
            "disks" => "disk",
            "devices" => "device",
            "pci_segments" => "pci-segment",
            other => other,
        };
        format!("--{option}: {}: {}", self.field, self.why)
    }

    /// `disks[0].pci_segment: ...` (`rng`/`vsock` are not lists).
    pub fn api(&self) -> String {
        format!(
            "{}.{}: {}",
            item_name(self.list, self.index),
            self.field,
            self.why
        )
    }
}

/// Item `index` of the configuration's list `list` as the API names it: `disks[2]`, or `rng`
/// and `vsock` (one each, not lists).
fn item_name(list: &str, index: usize) -> String {
    match list {
        "rng" | "vsock" => list.to_string(),
        l => format!("{l}[{index}]"),
    }
}

/// One kind of device ("disks", "rng", …) and where each asks to be: (segment, slot).
type PciPlaces = (&'static str, Vec<(u16, Option<u8>)>);

impl VmConfig {
    /// How many PCI segments the VM has.
    pub fn num_pci_segments(&self) -> u16 {
        self.platform.num_pci_segments.unwrap_or(1).max(1)
    }

    /// Each segment's `(mmio32, mmio64)` aperture weights, segments 0..N in order.
    pub fn segment_weights(&self) -> Vec<(u32, u32)> {
        (0..self.num_pci_segments())
            .map(|s| {
                self.pci_segments
                    .iter()
                    .find(|c| c.pci_segment == s)
                    .map_or((1, 1), |c| {
                        (c.mmio32_aperture_weight, c.mmio64_aperture_weight)
                    })
            })
            .collect()
    }

    /// The guest NUMA node segment `s` is in (`--numa pci_segments=[..]`).
    pub fn segment_node(&self, s: u16) -> Option<u32> {
        self.numa
            .iter()
            .find(|n| n.pci_segments.contains(&s))
            .map(|n| n.guest_numa_id)
    }

    /// Where each device of each kind asks to be: (segment, slot), in the configuration's
    /// lists' order.
    fn pci_places(&self) -> [PciPlaces; 6] {
        macro_rules! places {
            ($list:expr) => {
                $list
                    .iter()
                    .map(|d| (d.pci_segment, d.pci_device_id))
                    .collect()
            };
        }
        [
            ("disks", places!(self.disks)),
            ("net", places!(self.nets)),
            ("rng", places!(self.rng)),
            ("vsock", places!(self.vsock)),
            ("fs", places!(self.fs)),
            ("devices", places!(self.devices)),
        ]
    }

    /// The configured device that asked for `slot` of `segment` (`pci_device_id`), as the API
    /// names it (`disks[2]`, `rng`), if any.
    pub fn pci_slot_holder(&self, segment: u16, slot: u8) -> Option<String> {
        Self::slot_holder(&self.pci_places(), segment, slot, None)
    }

    /// The first device in `lists` other than `not` (list, index) that asked for `slot` of
    /// `segment`, before `not` if `not` is given.
    fn slot_holder(
        lists: &[PciPlaces],
        segment: u16,
        slot: u8,
        not: Option<(&str, usize)>,
    ) -> Option<String> {
        for (list, places) in lists {
            for (i, &place) in places.iter().enumerate() {
                if not == Some((list, i)) {
                    return None;
                }
                if place == (segment, Some(slot)) {
                    return Some(item_name(list, i));
                }
            }
        }
        None
    }

    /// The slots devices asked for (`pci_device_id`), by segment, for the bus to keep for
    /// them while it places the others.
    pub fn pci_slots_asked(&self) -> Vec<(u16, u8)> {
        self.pci_places()
            .iter()
            .flat_map(|(_, places)| places.iter())
            .filter_map(|&(s, id)| Some((s, id?)))
            .collect()
    }

    /// Every device's segment exists; a slot asked for is asked for once; segment settings name existing segments once; a
    /// segment is in one NUMA node at most, and segment 0 only in node 0 (its devices' node is
    /// the main host bridge's); a device placed by `numa_node` stays on segment 0.
    pub fn check_pci_segments(&self) -> Result<(), Problem> {
        let n = self.num_pci_segments();
        let problem = |list, index, field, why: String| Problem {
            list,
            index,
            field,
            why,
        };
        let beyond = |s: u16| {
            format!(
                "segment {s} does not exist: the VM has {n} (0 to {}; more with --platform \
                 num_pci_segments=N, at most {MAX_PCI_SEGMENTS})",
                n - 1
            )
        };
        let lists = self.pci_places();
        for (list, places) in &lists {
            if let Some((i, &(s, _))) = places.iter().enumerate().find(|(_, (s, _))| *s >= n) {
                return Err(problem(list, i, "pci_segment", beyond(s)));
            }
        }
        // Each slot asked for (`pci_device_id`) by one device of its segment at most.
        for (list, places) in &lists {
            for (i, &(s, id)) in places.iter().enumerate() {
                let Some(id) = id else { continue };
                if let Some(other) = Self::slot_holder(&lists, s, id, Some((list, i))) {
                    return Err(problem(
                        list,
                        i,
                        "pci_device_id",
                        format!("slot {id} of segment {s} is {other}'s already"),
                    ));
                }
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            if d.numa_node.is_some() && d.pci_device_id.is_some() {
                return Err(problem(
                    "devices",
                    i,
                    "pci_device_id",
                    "numa_node places the device on its node's expander host bridge, whose \
                     slots are not chosen by pci_device_id"
                        .into(),
                ));
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            if d.numa_node.is_some() && d.pci_segment != 0 {
                return Err(problem(
                    "devices",
                    i,
                    "numa_node",
                    format!(
                        "numa_node places a device under an expander host bridge of segment \
                         0; for segment {} put the segment in the node instead (--numa \
                         ...,pci_segments=[{}])",
                        d.pci_segment, d.pci_segment
                    ),
                ));
            }
        }
        for (i, c) in self.pci_segments.iter().enumerate() {
            if c.pci_segment >= n {
                return Err(problem(
                    "pci_segments",
                    i,
                    "pci_segment",
                    beyond(c.pci_segment),
                ));
            }
            if self.pci_segments[..i]
                .iter()
                .any(|o| o.pci_segment == c.pci_segment)
            {
                return Err(problem(
                    "pci_segments",
                    i,
                    "pci_segment",
                    format!("segment {} is given twice", c.pci_segment),
                ));
            }
            if c.mmio32_aperture_weight == 0 || c.mmio64_aperture_weight == 0 {
                return Err(problem(
                    "pci_segments",
                    i,
                    "mmio32_aperture_weight",
                    "a weight is 1 or more".into(),
                ));
            }
        }
        for (i, node) in self.numa.iter().enumerate() {
            for &s in &node.pci_segments {
                if s >= n {
                    return Err(problem("numa", i, "pci_segments", beyond(s)));
                }
                if s == 0 && node.guest_numa_id != 0 {
                    return Err(problem(
                        "numa",
                        i,
                        "pci_segments",
                        "segment 0 can only be in node 0".into(),
                    ));
                }
                if self.numa[..i].iter().any(|o| o.pci_segments.contains(&s)) {
                    return Err(problem(
                        "numa",
                        i,
                        "pci_segments",
                        format!("segment {s} is in two nodes"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::numa::NumaNodeConfig;

    fn test_config() -> VmConfig {
        let m = crate::cli::command()
            .try_get_matches_from(["vmm", "--kernel", "/k"])
            .unwrap();
        crate::cli::from_matches(&m).unwrap().vm
    }

    fn vm(segments: u16) -> VmConfig {
        let mut cfg = test_config();
        cfg.platform.num_pci_segments = Some(segments);
        cfg
    }

    fn cli(args: &[&str]) -> Result<VmConfig, String> {
        let m = crate::cli::command()
            .try_get_matches_from(["vmm", "--kernel", "/k"].iter().chain(args))
            .map_err(|e| e.to_string())?;
        crate::cli::from_matches(&m)
            .map(|c| c.vm)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn pci_device_id_picks_a_slot_once_per_segment() {
        let cfg = cli(&[
            "--disk",
            "path=/a.img,pci_device_id=5",
            "--disk",
            "path=/b.img",
            "--net",
            "tap=t0,pci_device_id=9",
            "--rng",
            "src=/dev/urandom,pci_device_id=31",
            "--vsock",
            "cid=3,socket=/v,pci_device_id=6",
            "--device",
            "path=/sys/bus/pci/devices/0000:01:00.0,pci_device_id=7",
            "--platform",
            "num_pci_segments=2",
            "--fs",
            "tag=t,socket=/s,pci_segment=1,pci_device_id=5",
            "--memory",
            "size=1G,shared=on",
        ])
        .unwrap();
        assert_eq!(cfg.disks[0].pci_device_id, Some(5));
        assert_eq!(cfg.disks[1].pci_device_id, None);
        let mut asked = cfg.pci_slots_asked();
        asked.sort();
        assert_eq!(asked, [(0, 5), (0, 6), (0, 7), (0, 9), (0, 31), (1, 5)]);
        // Slot 0 is the host bridge's; 32 is no slot.
        for bad in ["0", "32", "x", "-1"] {
            let e = cli(&["--disk", &format!("path=/a.img,pci_device_id={bad}")]).unwrap_err();
            assert!(e.contains("1 to 31"), "{bad}: {e}");
        }
        // One device per slot of a segment; the same slot on another segment is another.
        let e = cli(&[
            "--disk",
            "path=/a.img,pci_device_id=4",
            "--net",
            "tap=t0,pci_device_id=4",
        ])
        .unwrap_err();
        assert!(e.contains("slot 4 of segment 0 is disks[0]'s"), "{e}");
        assert!(cli(&[
            "--platform",
            "num_pci_segments=2",
            "--disk",
            "path=/a.img,pci_device_id=4",
            "--disk",
            "path=/b.img,pci_device_id=4,pci_segment=1",
        ])
        .is_ok());
        // A device under its node's expander host bridge does not pick a slot of bus 0.
        let e = cli(&[
            "--cpus",
            "boot=2",
            "--memory",
            "size=0",
            "--memory-zone",
            "id=z0,size=512M",
            "--memory-zone",
            "id=z1,size=512M",
            "--numa",
            "guest_numa_id=0,cpus=[0],memory_zones=[z0]",
            "--numa",
            "guest_numa_id=1,cpus=[1],memory_zones=[z1]",
            "--device",
            "path=/sys/bus/pci/devices/0000:01:00.0,numa_node=1,pci_device_id=3",
        ])
        .unwrap_err();
        assert!(e.contains("expander"), "{e}");
    }

    #[test]
    fn pci_segment_parses_as_cloud_hypervisor_spells_it() {
        assert_eq!(
            parse("pci_segment=2,mmio32_aperture_weight=3,mmio64_aperture_weight=5").unwrap(),
            PciSegmentConfig {
                pci_segment: 2,
                mmio32_aperture_weight: 3,
                mmio64_aperture_weight: 5
            }
        );
        assert_eq!(parse("pci_segment=1").unwrap().mmio64_aperture_weight, 1);
        for (bad, says) in [
            ("mmio32_aperture_weight=2", "pci_segment"),
            ("pci_segment=16", "from 0 to 15"),
            ("pci_segment=1,mmio64_aperture_weight=0", "1 or more"),
            ("pci_segment=1,size=3", "size"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn devices_must_name_a_segment_the_vm_has() {
        let mut cfg = vm(2);
        cfg.disks.push(devices::virtio::DiskConfig::new("/a"));
        cfg.disks.push(devices::virtio::DiskConfig {
            pci_segment: 1,
            ..devices::virtio::DiskConfig::new("/b")
        });
        assert_eq!(cfg.check_pci_segments(), Ok(()));
        cfg.disks[1].pci_segment = 2;
        let p = cfg.check_pci_segments().unwrap_err();
        assert_eq!(
            p.api(),
            "disks[1].pci_segment: segment 2 does not exist: the VM has 2 (0 to 1; more with \
             --platform num_pci_segments=N, at most 16)"
        );
        assert!(
            p.cli().starts_with("--disk: pci_segment: segment 2"),
            "{}",
            p.cli()
        );
        // Without num_pci_segments the VM has segment 0 alone.
        let mut cfg = test_config();
        cfg.rng = Some(devices::virtio::RngConfig {
            pci_segment: 1,
            ..Default::default()
        });
        let p = cfg.check_pci_segments().unwrap_err();
        assert!(
            p.api().starts_with("rng.pci_segment: segment 1"),
            "{}",
            p.api()
        );
    }

    #[test]
    fn segment_settings_and_nodes_are_checked_and_read_back() {
        let mut cfg = vm(3);
        cfg.pci_segments = vec![
            parse("pci_segment=2,mmio64_aperture_weight=4").unwrap(),
            parse("pci_segment=0,mmio32_aperture_weight=2").unwrap(),
        ];
        cfg.numa = vec![
            NumaNodeConfig {
                guest_numa_id: 0,
                pci_segments: vec![0, 2],
                ..Default::default()
            },
            NumaNodeConfig {
                guest_numa_id: 1,
                pci_segments: vec![1],
                ..Default::default()
            },
        ];
        assert_eq!(cfg.check_pci_segments(), Ok(()));
        assert_eq!(cfg.segment_weights(), vec![(2, 1), (1, 1), (1, 4)]);
        assert_eq!(
            (
                cfg.segment_node(0),
                cfg.segment_node(1),
                cfg.segment_node(2)
            ),
            (Some(0), Some(1), Some(0))
        );

        let mut twice = cfg.clone();
        twice.pci_segments[1].pci_segment = 2;
        assert!(twice
            .check_pci_segments()
            .unwrap_err()
            .why
            .contains("twice"));
        let mut two_nodes = cfg.clone();
        two_nodes.numa[1].pci_segments = vec![2];
        assert!(two_nodes
            .check_pci_segments()
            .unwrap_err()
            .why
            .contains("two nodes"));
        let mut zero = cfg.clone();
        zero.numa[0].pci_segments = vec![2];
        zero.numa[1].pci_segments = vec![0];
        assert!(zero
            .check_pci_segments()
            .unwrap_err()
            .why
            .contains("only be in node 0"));
        let mut far = cfg.clone();
        far.numa[1].pci_segments = vec![3];
        assert_eq!(
            far.check_pci_segments()
                .unwrap_err()
                .api()
                .split(':')
                .next(),
            Some("numa[1].pci_segments")
        );
    }

    #[test]
    fn a_device_placed_by_numa_node_stays_on_segment_0() {
        let mut cfg = vm(2);
        let mut d =
            crate::config::device::parse("path=/sys/bus/pci/devices/0000:01:00.0,numa_node=1")
                .unwrap();
        d.pci_segment = 1;
        cfg.devices.push(d);
        let p = cfg.check_pci_segments().unwrap_err();
        assert_eq!((p.list, p.field), ("devices", "numa_node"));
        assert!(p.why.contains("pci_segments=[1]"), "{}", p.why);
    }
}
