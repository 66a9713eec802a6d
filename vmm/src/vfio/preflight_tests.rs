use std::os::unix::fs::symlink;

use super::*;

/// A fake sysfs + /dev in a temporary directory.
struct FakeHost {
    root: PathBuf,
}

impl FakeHost {
    fn new(name: &str) -> Self {
        let root =
            std::env::temp_dir().join(format!("vmm-preflight-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for d in [
            "sys/bus/pci/devices",
            "sys/bus/pci/drivers",
            "sys/bus/usb",
            "dev/vfio",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for drv in ["vfio-pci", "e1000e", "pcieport", "pci-stub"] {
            fs::create_dir_all(root.join("sys/bus/pci/drivers").join(drv)).unwrap();
        }
        fs::write(root.join("dev/vfio/vfio"), "").unwrap();
        FakeHost { root }
    }

    /// A PCI device `bdf` of `class` bound to `driver`, in IOMMU group `group`.
    fn device(&self, bdf: &str, class: u32, driver: Option<&str>, group: Option<u32>) -> &Self {
        let dir = self.root.join("sys/devices/pci0000:00").join(bdf);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("class"), format!("0x{class:06x}\n")).unwrap();
        symlink("../../../bus/pci", dir.join("subsystem")).unwrap();
        if let Some(d) = driver {
            symlink(format!("../../../bus/pci/drivers/{d}"), dir.join("driver")).unwrap();
        }
        if let Some(g) = group {
            let gdir = self
                .root
                .join(format!("sys/kernel/iommu_groups/{g}/devices"));
            fs::create_dir_all(&gdir).unwrap();
            symlink(
                format!("../../../kernel/iommu_groups/{g}"),
                dir.join("iommu_group"),
            )
            .unwrap();
            symlink(
                format!("../../../../devices/pci0000:00/{bdf}"),
                gdir.join(bdf),
            )
            .unwrap();
            let node = self.root.join(format!("dev/vfio/{g}"));
            if !node.exists() {
                fs::write(node, "").unwrap();
            }
        }
        symlink(
            format!("../../../devices/pci0000:00/{bdf}"),
            self.root.join("sys/bus/pci/devices").join(bdf),
        )
        .unwrap();
        self
    }

    /// A mediated device `uuid` (a vGPU), bound to `driver`, in its own group `group`.
    fn mdev(&self, uuid: &str, driver: Option<&str>, group: u32) -> PathBuf {
        let dir = self
            .root
            .join("sys/devices/pci0000:00/0000:41:00.0")
            .join(uuid);
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(self.root.join("sys/bus/mdev/devices")).unwrap();
        fs::create_dir_all(self.root.join("sys/bus/mdev/drivers/nvidia-vgpu-vfio")).unwrap();
        symlink("../../../../bus/mdev", dir.join("subsystem")).unwrap();
        if let Some(d) = driver {
            symlink(
                format!("../../../../bus/mdev/drivers/{d}"),
                dir.join("driver"),
            )
            .unwrap();
        }
        let gdir = self
            .root
            .join(format!("sys/kernel/iommu_groups/{group}/devices"));
        fs::create_dir_all(&gdir).unwrap();
        symlink(
            format!("../../../../kernel/iommu_groups/{group}"),
            dir.join("iommu_group"),
        )
        .unwrap();
        fs::write(self.root.join(format!("dev/vfio/{group}")), "").unwrap();
        let link = self.root.join("sys/bus/mdev/devices").join(uuid);
        symlink(
            format!("../../../devices/pci0000:00/0000:41:00.0/{uuid}"),
            &link,
        )
        .unwrap();
        link
    }

    fn cfg(&self, bdf: &str) -> DeviceConfig {
        DeviceConfig {
            path: self.root.join("sys/bus/pci/devices").join(bdf),
            id: None,
            gpudirect_clique: None,
            root_port: None,
            numa_node: None,
            iommufd: None,
            pci_segment: 0,
            pci_device_id: None,
        }
    }

    /// Gives the device `bdf` the VFIO cdev `name` (sysfs `vfio-dev/NAME` and
    /// `/dev/vfio/devices/NAME`), as a kernel with CONFIG_VFIO_DEVICE_CDEV does.
    fn cdev(&self, bdf: &str, name: &str) -> &Self {
        let dir = self.root.join("sys/devices/pci0000:00").join(bdf);
        fs::create_dir_all(dir.join("vfio-dev").join(name)).unwrap();
        fs::create_dir_all(self.root.join("dev/vfio/devices")).unwrap();
        fs::write(self.root.join("dev/vfio/devices").join(name), "").unwrap();
        self
    }

    /// `/dev/iommu`, as a kernel with CONFIG_IOMMUFD has.
    fn iommufd(&self) -> &Self {
        fs::write(self.root.join("dev/iommu"), "").unwrap();
        self
    }

    fn facts(&self) -> HostFacts {
        HostFacts {
            dev_vfio: self.root.join("dev/vfio"),
            dev_iommu: self.root.join("dev/iommu"),
            memlock_limit: None,
            cap_ipc_lock: false,
        }
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

const GPU: u32 = 0x030200;
const NIC: u32 = 0x020000;

fn err(h: &FakeHost, bdfs: &[&str], ram: u64, facts: &HostFacts) -> String {
    let cfgs: Vec<_> = bdfs.iter().map(|b| h.cfg(b)).collect();
    check(&cfgs, ram, facts).unwrap_err().to_string()
}

#[test]
fn a_vfio_bound_device_with_its_group_passes() {
    let h = FakeHost::new("ok");
    h.device("0000:41:00.0", GPU, Some("vfio-pci"), Some(7))
        .device("0000:41:00.1", 0x040300, None, Some(7))
        .device("0000:40:01.1", 0x060400, Some("pcieport"), Some(7));
    let ok = check(&[h.cfg("0000:41:00.0")], 1 << 30, &h.facts()).unwrap();
    assert_eq!(ok[0].bdf, "0000:41:00.0");
    assert_eq!(ok[0].group, 7);
    assert!(check(&[], 1 << 40, &h.facts()).unwrap().is_empty());
}

#[test]
fn wrong_or_missing_path_is_not_a_pci_device() {
    let h = FakeHost::new("path");
    let cfg = DeviceConfig {
        path: h.root.join("sys/bus/pci/devices/0000:99:00.0"),
        ..h.cfg("x")
    };
    let e = check(&[cfg], 0, &h.facts()).unwrap_err().to_string();
    assert!(e.contains("no such device"), "{e}");
    let usb = h.root.join("sys/devices/usb1");
    fs::create_dir_all(&usb).unwrap();
    symlink("../../bus/usb", usb.join("subsystem")).unwrap();
    let cfg = DeviceConfig {
        path: usb,
        ..h.cfg("x")
    };
    let e = check(&[cfg], 0, &h.facts()).unwrap_err().to_string();
    assert!(
        e.contains("not a PCI device") && e.contains("bus/usb"),
        "{e}"
    );
    let e = check(
        &[DeviceConfig {
            path: h.root.clone(),
            ..h.cfg("x")
        }],
        0,
        &h.facts(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no subsystem link"), "{e}");
}

#[test]
fn a_device_on_its_native_driver_gets_the_rebind_commands() {
    let h = FakeHost::new("driver");
    h.device("0000:00:03.0", NIC, Some("e1000e"), Some(3))
        .device("0000:00:04.0", NIC, None, Some(4));
    let e = err(&h, &["0000:00:03.0"], 0, &h.facts());
    assert!(e.contains("bound to driver e1000e, not vfio-pci"), "{e}");
    for cmd in [
        "echo vfio-pci > /sys/bus/pci/devices/0000:00:03.0/driver_override",
        "echo 0000:00:03.0 > /sys/bus/pci/devices/0000:00:03.0/driver/unbind",
        "echo 0000:00:03.0 > /sys/bus/pci/drivers_probe",
    ] {
        assert!(e.contains(cmd), "{e}");
    }
    let e = err(&h, &["0000:00:04.0"], 0, &h.facts());
    assert!(e.contains("not bound to any driver"), "{e}");
    assert!(!e.contains("unbind"), "{e}");
}

#[test]
fn no_iommu_group_means_the_iommu_is_off() {
    let h = FakeHost::new("iommu");
    h.device("0000:00:03.0", NIC, Some("vfio-pci"), None);
    let e = err(&h, &["0000:00:03.0"], 0, &h.facts());
    assert!(
        e.contains("intel_iommu=on") && e.contains("amd_iommu=on"),
        "{e}"
    );
}

#[test]
fn a_group_peer_on_a_host_driver_is_refused_unless_passed_too() {
    let h = FakeHost::new("peer");
    h.device("0000:41:00.0", GPU, Some("vfio-pci"), Some(9))
        .device("0000:41:00.1", 0x040300, Some("snd_hda_intel"), Some(9));
    let e = err(&h, &["0000:41:00.0"], 0, &h.facts());
    assert!(
        e.contains("shares IOMMU group 9 with 0000:41:00.1 (driver snd_hda_intel)"),
        "{e}"
    );
    assert!(
        e.contains("--device path=/sys/bus/pci/devices/0000:41:00.1"),
        "{e}"
    );
    // Passing it too moves the complaint to the peer's own driver.
    let e = err(&h, &["0000:41:00.0", "0000:41:00.1"], 0, &h.facts());
    assert!(
        e.contains("0000:41:00.1 is bound to driver snd_hda_intel"),
        "{e}"
    );
    // A peer on pci-stub or vfio-pci is fine.
    let h2 = FakeHost::new("peer2");
    h2.device("0000:41:00.0", GPU, Some("vfio-pci"), Some(9))
        .device("0000:41:00.1", 0x040300, Some("pci-stub"), Some(9))
        .device("0000:41:00.2", 0x0c0330, Some("vfio-pci"), Some(9));
    assert!(check(&[h2.cfg("0000:41:00.0")], 0, &h2.facts()).is_ok());
}

#[test]
fn missing_or_inaccessible_vfio_nodes_are_named() {
    let h = FakeHost::new("dev");
    h.device("0000:00:03.0", NIC, Some("vfio-pci"), Some(3));
    fs::remove_file(h.root.join("dev/vfio/3")).unwrap();
    let e = err(&h, &["0000:00:03.0"], 0, &h.facts());
    assert!(e.contains("dev/vfio/3 does not exist"), "{e}");
    fs::remove_file(h.root.join("dev/vfio/vfio")).unwrap();
    let e = err(&h, &["0000:00:03.0"], 0, &h.facts());
    assert!(
        e.contains("dev/vfio/vfio does not exist") && e.contains("modprobe vfio-pci"),
        "{e}"
    );
    // Permission checks depend on who runs the tests (root can access anything), so only the
    // message is checked here.
    let msg = PreflightError::DevAccess {
        path: "/dev/vfio/3".into(),
        err: "Permission denied".into(),
    }
    .to_string();
    assert!(msg.contains("run as root"), "{msg}");
}

#[test]
fn memlock_must_cover_guest_ram_unless_cap_ipc_lock() {
    let h = FakeHost::new("memlock");
    h.device("0000:00:03.0", NIC, Some("vfio-pci"), Some(3));
    let facts = HostFacts {
        memlock_limit: Some(8 << 20),
        ..h.facts()
    };
    let e = err(&h, &["0000:00:03.0"], 4 << 30, &facts);
    assert!(
        e.contains("RLIMIT_MEMLOCK is 8 MiB") && e.contains("all 4 GiB"),
        "{e}"
    );
    assert!(
        e.contains("ulimit -l 4194304") && e.contains("LimitMEMLOCK"),
        "{e}"
    );
    let cfg = [h.cfg("0000:00:03.0")];
    assert!(check(&cfg, 8 << 20, &facts).is_ok());
    let privileged = HostFacts {
        cap_ipc_lock: true,
        ..facts
    };
    assert!(check(&cfg, 4 << 30, &privileged).is_ok());
    // The real probe answers without failing.
    let _ = HostFacts::probe();
}

#[test]
fn a_mediated_device_passes_with_its_vendor_driver_and_own_group() {
    let h = FakeHost::new("mdev");
    let uuid = "c2a2e5e4-7a9b-4f6c-8a5e-1f2d3c4b5a69";
    let path = h.mdev(uuid, Some("nvidia-vgpu-vfio"), 51);
    let cfg = DeviceConfig {
        path,
        id: None,
        gpudirect_clique: None,
        root_port: None,
        numa_node: None,
        iommufd: None,
        pci_segment: 0,
        pci_device_id: None,
    };
    let ok = check(std::slice::from_ref(&cfg), 1 << 30, &h.facts()).unwrap();
    assert_eq!(ok[0].bdf, uuid);
    assert_eq!(ok[0].group, 51);

    let h = FakeHost::new("mdev-nodrv");
    let cfg = DeviceConfig {
        path: h.mdev(uuid, None, 52),
        id: None,
        gpudirect_clique: None,
        root_port: None,
        numa_node: None,
        iommufd: None,
        pci_segment: 0,
        pci_device_id: None,
    };
    let e = check(&[cfg], 1 << 30, &h.facts()).unwrap_err().to_string();
    assert!(
        e.contains("not bound to a driver") && e.contains(uuid),
        "{e}"
    );
    // A missing mdev names where mdevs live.
    let cfg = DeviceConfig {
        path: h
            .root
            .join("sys/bus/mdev/devices/00000000-0000-0000-0000-000000000000"),
        id: None,
        gpudirect_clique: None,
        root_port: None,
        numa_node: None,
        iommufd: None,
        pci_segment: 0,
        pci_device_id: None,
    };
    let e = check(&[cfg], 1 << 30, &h.facts()).unwrap_err().to_string();
    assert!(e.contains("/sys/bus/mdev/devices"), "{e}");
}

fn wish(bdf: &str, iommufd: Option<bool>, has_cdev: bool) -> BackendWish<'_> {
    BackendWish {
        bdf,
        iommufd,
        has_cdev,
    }
}

#[test]
fn the_backend_is_iommufd_for_one_device_where_the_host_has_it() {
    let one = [wish("0000:41:00.0", None, true)];
    assert_eq!(choose_backend(&one, true, true), Ok(Backend::Iommufd));
    // No /dev/iommu, or no cdev: the container.
    assert_eq!(choose_backend(&one, false, true), Ok(Backend::Container));
    let old = [wish("0000:41:00.0", None, false)];
    assert_eq!(choose_backend(&old, true, true), Ok(Backend::Container));
    // Several devices keep the container (peer-to-peer DMA into each other's BARs)...
    let two = [
        wish("0000:41:00.0", None, true),
        wish("0000:42:00.0", None, true),
    ];
    assert_eq!(choose_backend(&two, true, true), Ok(Backend::Container));
    // ...unless the host has no container at all, or they ask for iommufd.
    assert_eq!(choose_backend(&two, true, false), Ok(Backend::Iommufd));
    let asked = [
        wish("0000:41:00.0", Some(true), true),
        wish("0000:42:00.0", None, true),
    ];
    assert_eq!(choose_backend(&asked, true, true), Ok(Backend::Iommufd));
    // iommufd=off wins over a host that has iommufd.
    let off = [wish("0000:41:00.0", Some(false), true)];
    assert_eq!(choose_backend(&off, true, true), Ok(Backend::Container));
}

#[test]
fn iommufd_on_where_the_host_cannot_or_mixed_wishes_are_refused_saying_why() {
    let on = [wish("0000:41:00.0", Some(true), true)];
    let e = choose_backend(&on, false, true).unwrap_err();
    assert!(
        e.contains("/dev/iommu does not exist") && e.contains("CONFIG_IOMMUFD"),
        "{e}"
    );
    let no_cdev = [wish("0000:41:00.0", Some(true), false)];
    let e = choose_backend(&no_cdev, true, true).unwrap_err();
    assert!(
        e.contains("no VFIO cdev") && e.contains("CONFIG_VFIO_DEVICE_CDEV"),
        "{e}"
    );
    let mixed = [
        wish("0000:41:00.0", Some(true), true),
        wish("0000:42:00.0", Some(false), true),
    ];
    let e = choose_backend(&mixed, true, true).unwrap_err();
    assert!(
        e.contains("0000:41:00.0 has iommufd=on and 0000:42:00.0 iommufd=off"),
        "{e}"
    );
}

#[test]
fn preflight_finds_the_cdev_and_checks_the_iommufd_nodes() {
    let h = FakeHost::new("cdev");
    h.device("0000:41:00.0", GPU, Some("vfio-pci"), Some(7))
        .cdev("0000:41:00.0", "vfio3")
        .iommufd();
    let ok = check(&[h.cfg("0000:41:00.0")], 1 << 30, &h.facts()).unwrap();
    assert_eq!(ok[0].cdev.as_deref(), Some("vfio3"));
    assert_eq!(ok[0].backend, Backend::Iommufd);
    // The iommufd backend needs neither the container nor the group's node.
    fs::remove_file(h.root.join("dev/vfio/vfio")).unwrap();
    fs::remove_file(h.root.join("dev/vfio/7")).unwrap();
    assert_eq!(
        check(&[h.cfg("0000:41:00.0")], 1 << 30, &h.facts()).unwrap()[0].backend,
        Backend::Iommufd
    );
    // ...but the cdev node.
    fs::remove_file(h.root.join("dev/vfio/devices/vfio3")).unwrap();
    let e = err(&h, &["0000:41:00.0"], 0, &h.facts());
    assert!(e.contains("dev/vfio/devices/vfio3 does not exist"), "{e}");
    // iommufd=off: the container's nodes are checked again.
    let mut cfg = h.cfg("0000:41:00.0");
    cfg.iommufd = Some(false);
    let e = check(&[cfg], 0, &h.facts()).unwrap_err().to_string();
    assert!(e.contains("dev/vfio/vfio does not exist"), "{e}");
    // Without /dev/iommu the device goes through the container (nodes restored).
    fs::write(h.root.join("dev/vfio/vfio"), "").unwrap();
    fs::write(h.root.join("dev/vfio/7"), "").unwrap();
    fs::remove_file(h.root.join("dev/iommu")).unwrap();
    let ok = check(&[h.cfg("0000:41:00.0")], 0, &h.facts()).unwrap();
    assert_eq!(
        (ok[0].backend, ok[0].cdev.as_deref()),
        (Backend::Container, Some("vfio3"))
    );
}
