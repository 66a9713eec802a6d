//! VmConfig bodies as Kata and ch-remote send them, and every way one can be refused.

use super::*;

fn parse_ok(json: &str) -> VmConfig {
    parse(json.as_bytes(), SeccompMode::Enforce).unwrap().1
}

fn parse_err(json: &str) -> String {
    parse(json.as_bytes(), SeccompMode::Enforce).unwrap_err()
}

#[test]
fn a_minimal_config_gets_cloud_hypervisors_defaults() {
    let c = parse_ok(r#"{"payload":{"kernel":"/k"}}"#);
    assert_eq!(c.kernel, PathBuf::from("/k"));
    assert_eq!(c.cpus.boot, 1);
    assert_eq!(c.memory.size, 512 << 20);
    assert_eq!(c.serial, SerialConfig::Null);
    assert_eq!(c.console, ConsoleConfig::Off);
    assert_eq!(c.cmdline, config::DEFAULT_CMDLINE);
}

#[test]
fn a_full_config_as_kata_or_ch_remote_send_it() {
    let c = parse_ok(
        r#"{
        "cpus": {"boot_vcpus": 2, "max_vcpus": 2, "nested": true},
        "memory": {"size": 1073741824, "shared": true, "hugepages": false,
                   "mergeable": false, "hotplug_method": "Acpi", "thp": true},
        "payload": {"kernel": "/vmlinux", "initramfs": "/initrd", "cmdline": "console=ttyS0"},
        "disks": [{"path": "/img,with,commas", "readonly": true, "num_queues": 1,
                   "queue_size": 128, "id": "_disk0", "vhost_user": false, "sparse": true}],
        "net": [{"tap": "tap0", "mac": "52:54:00:12:34:56", "num_queues": 2,
                 "queue_size": 256, "iommu": false, "offload_tso": true}],
        "rng": {"src": "/dev/urandom", "iommu": false},
        "serial": {"mode": "File", "file": "/tmp/serial"},
        "console": {"mode": "Off"},
        "devices": [{"path": "/sys/bus/pci/devices/0000:41:00.0", "id": "gpu0",
                     "x_nv_gpudirect_clique": 1}],
        "iommu": false, "watchdog": false, "pvpanic": false, "vsock": null,
        "platform": {"num_pci_segments": 1}
    }"#,
    );
    assert_eq!(c.cpus.boot, 2);
    assert_eq!(c.memory.size, 1 << 30);
    assert!(c.memory.shared);
    assert_eq!(c.disks[0].path, PathBuf::from("/img,with,commas"));
    assert!(c.disks[0].readonly);
    assert_eq!(c.disks[0].id.as_deref(), Some("_disk0"));
    assert_eq!(c.nets[0].tap.as_deref(), Some("tap0"));
    assert_eq!(c.serial, SerialConfig::File("/tmp/serial".into()));
    assert_eq!(c.devices[0].gpudirect_clique, Some(1));
    assert!(c.rng.is_some());
}

#[test]
fn unknown_fields_and_wrong_types_are_refused_by_name() {
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"bogus":1}"#);
    assert!(e.contains("unknown field `bogus`"), "{e}");
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":1,"max_vcpus":1,"x":1}}"#);
    assert!(e.contains("unknown field `x`"), "{e}");
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"memory":{"size":"big"}}"#);
    assert!(e.contains("invalid type"), "{e}");
    let e = parse_err(r#"{"payload":"#);
    assert!(e.starts_with("invalid VmConfig"), "{e}");
    let e = parse_err(r#"{"cpus":{"boot_vcpus":1,"max_vcpus":1}}"#);
    assert!(e.contains("missing field `payload`"), "{e}");
}

#[test]
fn invalid_values_are_refused_with_the_field_named() {
    let e = parse_err(r#"{"payload":{}}"#);
    assert!(e.starts_with("payload.kernel: required"), "{e}");
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":0,"max_vcpus":0}}"#);
    assert!(
        e.starts_with("cpus:") && e.contains("at least one vCPU"),
        "{e}"
    );
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":2,"max_vcpus":1}}"#);
    assert!(e.starts_with("cpus.max_vcpus: 1 is less"), "{e}");
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":1,"max_vcpus":999}}"#);
    assert!(e.starts_with("cpus.max_vcpus:"), "{e}");
    // Room for CPU hotplug, as Kata asks: the VM boots with boot_vcpus.
    let (api, c) = parse(
        br#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":1,"max_vcpus":4}}"#,
        SeccompMode::Off,
    )
    .unwrap();
    assert_eq!(c.cpus.boot, 1);
    assert_eq!(api.cpus.unwrap().max_vcpus, 4);
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"memory":{"size":0}}"#);
    assert!(
        e.starts_with("memory.size: guest memory cannot be empty"),
        "{e}"
    );
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"disks":[{"path":"/a","queue_size":3}]}"#);
    assert!(
        e.starts_with("disks[0]:") && e.contains("power of two"),
        "{e}"
    );
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"disks":[{"path":"/a"},{"path":"/a"}]}"#);
    assert!(e.contains("two disks"), "{e}");
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"serial":{"mode":"File"}}"#);
    assert!(e.starts_with("serial.file: required"), "{e}");
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"serial":{"mode":"Loud"}}"#);
    assert!(e.contains("not one of"), "{e}");
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"net":[{"mac":"zz"}]}"#);
    assert!(e.starts_with("net[0]:"), "{e}");
}

#[test]
fn features_not_supported_yet_are_refused_unless_unset() {
    for (json, field) in [
        (r#""pmem":[{"file":"/f"}]"#, "pmem"),
        (r#""iommu":true"#, "iommu"),
        (
            r#""payload":{"kernel":"/k","firmware":"/fw"}"#,
            "payload.firmware",
        ),
        (r#""serial":{"mode":"Pty"}"#, "serial.mode"),
        (
            r#""memory":{"size":1073741824,"hotplugged_size":1073741824}"#,
            "memory.hotplugged_size",
        ),
    ] {
        let body = if json.starts_with(r#""payload""#) {
            format!("{{{json}}}")
        } else {
            format!(r#"{{"payload":{{"kernel":"/k"}},{json}}}"#)
        };
        let e = parse_err(&body);
        assert!(
            e.starts_with(field) && e.contains("not supported"),
            "{body}: {e}"
        );
    }
    // Cloud Hypervisor's defaults, sent explicitly, are fine.
    parse_ok(
        r#"{"payload":{"kernel":"/k"},"vsock":null,"fs":[],"iommu":false,"numa":null,
            "balloon":null,"pmem":[],"tpm":null}"#,
    );
}

#[test]
fn info_reports_the_config_with_defaults_filled_in() {
    let (api, _) = parse(
        br#"{"payload":{"kernel":"/k"},"iommu":false}"#,
        SeccompMode::Off,
    )
    .unwrap();
    let v = serde_json::to_value(&api).unwrap();
    assert_eq!(v["cpus"]["boot_vcpus"], 1);
    assert_eq!(v["memory"]["size"], 512u64 << 20);
    assert_eq!(v["payload"]["kernel"], "/k");
    assert_eq!(v["serial"]["mode"], "Null");
    assert!(v.get("iommu").is_none());
}

#[test]
fn vsock_is_cloud_hypervisors_vsockconfig() {
    let (api, cfg) = super::parse(
        br#"{"payload":{"kernel":"/k"},"vsock":{"cid":7,"socket":"/run/v.sock","iommu":false}}"#,
        SeccompMode::Off,
    )
    .unwrap();
    let v = cfg.vsock.as_ref().unwrap();
    assert_eq!((v.cid, v.socket.to_str()), (7, Some("/run/v.sock")));
    assert_eq!(cfg.device_ids.vsock.as_deref(), Some("_vsock0"));
    let info = serde_json::to_value(&api).unwrap();
    assert_eq!(info["vsock"]["id"], "_vsock0");
    assert_eq!(info["vsock"]["cid"], 7);
    for (body, field) in [
        (r#""vsock":{"cid":2,"socket":"/v"}"#, "vsock.cid"),
        (r#""vsock":{"cid":3,"socket":""}"#, "vsock.socket"),
        (
            r#""vsock":{"cid":3,"socket":"/v","iommu":true}"#,
            "vsock.iommu",
        ),
        (r#""vsock":{"cid":3}"#, "socket"),
    ] {
        let e = parse_err(&format!(r#"{{"payload":{{"kernel":"/k"}},{body}}}"#));
        assert!(e.contains(field), "{body}: {e}");
    }
}

#[test]
fn fs_is_cloud_hypervisors_fsconfig_as_kata_sends_it() {
    // clh.go's addVolume: the shared directory's virtiofsd on PCI segment 1 of 2, shared memory.
    let (api, cfg) = super::parse(
        br#"{"payload":{"kernel":"/k"},"memory":{"size":1073741824,"shared":true},
            "platform":{"num_pci_segments":2},
            "fs":[{"tag":"kataShared","socket":"/run/kata/vfs.sock","num_queues":1,
                   "queue_size":1024,"pci_segment":1}]}"#,
        SeccompMode::Off,
    )
    .unwrap();
    let f = &cfg.fs[0];
    assert_eq!(
        (
            f.tag.as_str(),
            f.socket.to_str(),
            f.num_queues,
            f.queue_size
        ),
        ("kataShared", Some("/run/kata/vfs.sock"), 1, 1024)
    );
    assert_eq!(cfg.device_ids.fs, vec!["_fs0".to_string()]);
    let info = serde_json::to_value(&api).unwrap();
    assert_eq!(info["fs"][0]["id"], "_fs0");
    assert_eq!(info["fs"][0]["tag"], "kataShared");
    // ch-remote's defaults: num_queues and queue_size may be left out.
    let c = parse_ok(
        r#"{"payload":{"kernel":"/k"},"memory":{"size":1073741824,"shared":true},
            "fs":[{"tag":"t","socket":"/s","id":"myfs"}]}"#,
    );
    assert_eq!((c.fs[0].num_queues, c.fs[0].queue_size), (1, 1024));
    assert_eq!(c.device_ids.fs, vec!["myfs".to_string()]);
    let shared = r#""memory":{"size":1073741824,"shared":true}"#;
    for (body, field) in [
        (r#""fs":[{"tag":"t","socket":"/s"}]"#, "shared=on"),
        (
            &*format!(r#"{shared},"fs":[{{"tag":"","socket":"/s"}}]"#),
            "fs[0].tag",
        ),
        (
            &*format!(r#"{shared},"fs":[{{"tag":"t","socket":""}}]"#),
            "fs[0].socket",
        ),
        (
            &*format!(r#"{shared},"fs":[{{"tag":"t","socket":"/s","num_queues":0}}]"#),
            "fs[0].num_queues",
        ),
        (
            &*format!(r#"{shared},"fs":[{{"tag":"t","socket":"/s","queue_size":100}}]"#),
            "fs[0].queue_size",
        ),
        (
            &*format!(r#"{shared},"fs":[{{"tag":"t","socket":"/s","pci_segment":1}}]"#),
            "fs[0].pci_segment",
        ),
        (&*format!(r#"{shared},"fs":[{{"socket":"/s"}}]"#), "tag"),
        (
            &*format!(
                r#"{shared},"fs":[{{"tag":"a","socket":"/s","id":"x"}},{{"tag":"b","socket":"/t","id":"x"}}]"#
            ),
            "used twice",
        ),
    ] {
        let e = parse_err(&format!(r#"{{"payload":{{"kernel":"/k"}},{body}}}"#));
        assert!(e.contains(field), "{body}: {e}");
    }
}

#[test]
fn devices_go_on_the_pci_segments_they_name_and_vm_info_says_where() {
    let (api, cfg) = super::parse(
        br#"{"payload":{"kernel":"/k"},"platform":{"num_pci_segments":3},
            "memory":{"size":0,"shared":true,"zones":[{"id":"a","size":268435456},
                                                      {"id":"b","size":268435456}]},
            "cpus":{"boot_vcpus":2,"max_vcpus":2},
            "numa":[{"guest_numa_id":0,"cpus":[0],"memory_zones":["a"]},
                    {"guest_numa_id":1,"cpus":[1],"memory_zones":["b"],"pci_segments":[2]}],
            "pci_segments":[{"pci_segment":1,"mmio64_aperture_weight":4}],
            "disks":[{"path":"/d","pci_segment":1}],
            "net":[{"tap":"t0","pci_segment":2}],
            "rng":{"src":"/dev/urandom","pci_segment":1},
            "vsock":{"cid":3,"socket":"/v","pci_segment":2},
            "fs":[{"tag":"t","socket":"/s","pci_segment":1}],
            "devices":[{"path":"/sys/bus/pci/devices/0000:01:00.0","pci_segment":2}]}"#,
        SeccompMode::Off,
    )
    .unwrap();
    assert_eq!(cfg.disks[0].pci_segment, 1);
    assert_eq!(cfg.nets[0].pci_segment, 2);
    assert_eq!(cfg.rng.as_ref().unwrap().pci_segment, 1);
    assert_eq!(cfg.vsock.as_ref().unwrap().pci_segment, 2);
    assert_eq!(cfg.fs[0].pci_segment, 1);
    assert_eq!(cfg.devices[0].pci_segment, 2);
    assert_eq!(cfg.segment_weights(), vec![(1, 1), (1, 4), (1, 1)]);
    assert_eq!(cfg.segment_node(2), Some(1));
    // vm.info reports each device's segment, the weights and the nodes' segments, and the
    // configuration it reports parses back to the same VM (a snapshot's configuration).
    let info = serde_json::to_value(super::ApiVmConfig::from_config(&cfg)).unwrap();
    assert_eq!(info["disks"][0]["pci_segment"], 1);
    assert_eq!(info["net"][0]["pci_segment"], 2);
    assert_eq!(info["rng"]["pci_segment"], 1);
    assert_eq!(info["vsock"]["pci_segment"], 2);
    assert_eq!(info["fs"][0]["pci_segment"], 1);
    assert_eq!(info["devices"][0]["pci_segment"], 2);
    assert_eq!(info["pci_segments"][0]["mmio64_aperture_weight"], 4);
    assert_eq!(info["numa"][1]["pci_segments"][0], 2);
    let again = parse_ok(&info.to_string());
    assert_eq!(
        (
            again.disks[0].pci_segment,
            again.devices[0].pci_segment,
            again.pci_segments
        ),
        (1, 2, cfg.pci_segments.clone())
    );
    let _ = api;
    for (body, says) in [
        (
            r#""disks":[{"path":"/d","pci_segment":1}]"#,
            "disks[0].pci_segment: segment 1 does not exist: the VM has 1",
        ),
        (
            r#""platform":{"num_pci_segments":2},"net":[{"tap":"t","pci_segment":2}]"#,
            "net[0].pci_segment: segment 2 does not exist",
        ),
        (
            r#""platform":{"num_pci_segments":2},"devices":[{"path":"/p","pci_segment":16}]"#,
            "devices[0]: pci_segment='16'",
        ),
        (
            r#""platform":{"num_pci_segments":2},"pci_segments":[{"pci_segment":3}]"#,
            "pci_segments[0].pci_segment: segment 3 does not exist",
        ),
        (
            r#""platform":{"num_pci_segments":2},"pci_segments":[{"pci_segment":1,"mmio32_aperture_weight":0}]"#,
            "pci_segments[0].mmio32_aperture_weight",
        ),
        (r#""pci_segments":[{"pci_segment":0,"size":1}]"#, "size"),
    ] {
        let e = parse_err(&format!(r#"{{"payload":{{"kernel":"/k"}},{body}}}"#));
        assert!(e.contains(says), "{body}: {e}");
    }
}

#[test]
fn what_kata_always_sends_is_accepted() {
    // clh.go's CreateVM: a flat topology, a hotplug ceiling, two PCI segments.
    let c = parse_ok(
        r#"{"payload":{"kernel":"/k"},
            "cpus":{"boot_vcpus":1,"max_vcpus":4,"kvm_hyperv":false,"nested":true,
                    "topology":{"threads_per_core":1,"cores_per_die":4,"dies_per_package":1,"packages":1}},
            "memory":{"size":2147483648,"shared":true,"hotplug_size":8589934592,
                      "mergeable":false,"hotplug_method":"Acpi","prefault":false,"thp":true},
            "platform":{"num_pci_segments":2,"tdx":false,"sev_snp":false}}"#,
    );
    assert_eq!(c.cpus.boot, 1);
    assert_eq!(c.memory.size, 2 << 30);
    for (body, field) in [
        (
            r#""cpus":{"boot_vcpus":2,"max_vcpus":2,"topology":{"threads_per_core":2,"cores_per_die":1}}"#,
            "cpus.topology",
        ),
        (
            r#""cpus":{"boot_vcpus":2,"max_vcpus":2,"topology":{"packages":2,"cores_per_die":1}}"#,
            "cpus.topology",
        ),
        (
            r#""cpus":{"boot_vcpus":2,"max_vcpus":2,"topology":{"cores_per_die":1}}"#,
            "cpus.topology",
        ),
        (
            r#""cpus":{"boot_vcpus":1,"max_vcpus":1,"topology":{"sockets":1}}"#,
            "cpus.topology.sockets",
        ),
        (
            r#""memory":{"size":1073741824,"hotplug_size":"lots"}"#,
            "memory.hotplug_size",
        ),
        (
            r#""platform":{"num_pci_segments":0}"#,
            "platform.num_pci_segments",
        ),
    ] {
        let e = parse_err(&format!(r#"{{"payload":{{"kernel":"/k"}},{body}}}"#));
        assert!(e.contains(field), "{body}: {e}");
    }
}

#[test]
fn the_platform_identity_is_taken_reported_under_its_current_names_and_checked() {
    let (api, c) = parse(
        br#"{"payload":{"kernel":"/k"},"platform":{"num_pci_segments":2,
            "uuid":"4b1c0a5e-9f3d-4c2a-8e7b-123456789abc","serial_number":"SN-7",
            "oem_strings":["io.katacontainers=1","b"],"system_manufacturer":"Acme",
            "system_product_name":"P","system_version":"V","system_family":"F",
            "system_sku_number":"K","chassis_asset_tag":"T"}}"#,
        SeccompMode::Enforce,
    )
    .unwrap();
    let p = &c.platform;
    assert_eq!(
        p.system_uuid.as_deref(),
        Some("4b1c0a5e-9f3d-4c2a-8e7b-123456789abc")
    );
    assert_eq!(p.system_serial_number.as_deref(), Some("SN-7"));
    assert_eq!(p.oem_strings, ["io.katacontainers=1", "b"]);
    assert_eq!(p.chassis_asset_tag.as_deref(), Some("T"));
    let info = serde_json::to_value(&api).unwrap();
    let ip = &info["platform"];
    assert_eq!(ip["system_uuid"], "4b1c0a5e-9f3d-4c2a-8e7b-123456789abc");
    assert_eq!(ip["system_serial_number"], "SN-7");
    assert_eq!(ip["oem_strings"][1], "b");
    assert_eq!(ip["num_pci_segments"], 2);
    assert!(ip.get("uuid").is_none() && ip.get("serial_number").is_none());
    // The same identity from the command line reports the same way.
    let m = crate::cli::command()
        .try_get_matches_from([
            "vmm",
            "--kernel",
            "/k",
            "--platform",
            "system_uuid=4b1c0a5e-9f3d-4c2a-8e7b-123456789abc,oem_strings=[x,y]",
        ])
        .unwrap();
    let cli = crate::cli::from_matches(&m).unwrap().vm;
    let info = serde_json::to_value(ApiVmConfig::from_config(&cli)).unwrap();
    assert_eq!(
        info["platform"]["system_uuid"],
        "4b1c0a5e-9f3d-4c2a-8e7b-123456789abc"
    );
    assert_eq!(info["platform"]["oem_strings"][0], "x");

    for (body, field) in [
        (r#"{"uuid":"not-a-uuid"}"#, "platform.system_uuid"),
        (
            r#"{"system_uuid":"4b1c0a5e-9f3d-4c2a-8e7b-123456789abc","uuid":"4b1c0a5e-9f3d-4c2a-8e7b-123456789abd"}"#,
            "platform.uuid",
        ),
        (r#"{"oem_strings":["a\u0000b"]}"#, "platform.oem_strings"),
        (r#"{"system_family":""}"#, "platform.system_family"),
        (r#"{"oem_strings":"one"}"#, "expected a sequence"),
    ] {
        let e = parse_err(&format!(
            r#"{{"payload":{{"kernel":"/k"}},"platform":{body}}}"#
        ));
        assert!(e.contains(field), "{body}: {e}");
    }
}

#[test]
fn numa_nodes_and_memory_zones_come_in_cloud_hypervisors_schema_and_go_back_out_in_vm_info() {
    let body = br#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":2,"max_vcpus":2},
        "memory":{"size":0,"zones":[{"id":"m0","size":1073741824,"host_numa_node":0},
                                    {"id":"m1","size":1073741824}]},
        "numa":[{"guest_numa_id":0,"cpus":[0],"distances":[{"destination":1,"distance":21}],
                 "memory_zones":["m0"]},
                {"guest_numa_id":1,"cpus":[1],"distances":[{"destination":0,"distance":21}],
                 "memory_zones":["m1"]}]}"#;
    let (api, c) = parse(body, SeccompMode::Enforce).unwrap();
    assert_eq!(c.memory.size, 2 << 30);
    assert_eq!(c.memory_zones[0].host_numa_node, Some(0));
    assert_eq!(c.numa[1].cpus, [1]);
    assert_eq!(c.numa[0].distances, [(1, 21)]);
    // vm.info says what was asked, and it creates the same VM again (a restore does that).
    let info = serde_json::to_vec(&api).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(v["memory"]["size"], 0);
    assert_eq!(v["memory"]["zones"][1]["id"], "m1");
    assert_eq!(v["numa"][0]["distances"][0]["distance"], 21);
    let (_, again) = parse(&info, SeccompMode::Enforce).unwrap();
    assert_eq!(again, c);

    for (patch, field) in [
        (
            r#""numa":[{"guest_numa_id":0,"cpus":[0,1]}]"#,
            "numa: NUMA nodes need",
        ),
        (
            r#""memory":{"size":1073741824,"zones":[{"id":"a","size":4096}]}"#,
            "memory.size: with memory zones",
        ),
        (
            r#""memory":{"size":0,"zones":[{"id":"a","size":4096,"shared":true}]}"#,
            "memory.zones[0]",
        ),
        (
            r#""memory":{"size":0,"zones":[{"id":"a","size":4096}]},"numa":[{"guest_numa_id":0,"cpus":[0],"memory_zones":["a"],"pci_segments":[1]}]"#,
            "numa[0]",
        ),
        (
            r#""memory":{"size":0,"zones":[{"id":"a","size":4096}]},"numa":[{"guest_numa_id":0,"cpus":[1],"memory_zones":["a"]}]"#,
            "numa: vCPU 0 is in 0 nodes",
        ),
    ] {
        let e = parse_err(&format!(r#"{{"payload":{{"kernel":"/k"}},{patch}}}"#));
        assert!(e.contains(field), "{patch}: {e}");
    }
}

#[test]
fn a_devices_vfio_backend_comes_in_as_iommufd_and_goes_back_out_in_vm_info() {
    let body = br#"{"payload":{"kernel":"/k"},
        "devices":[{"path":"/sys/bus/pci/devices/0000:41:00.0","iommufd":true},
                   {"path":"/sys/bus/pci/devices/0000:42:00.0","iommufd":false},
                   {"path":"/sys/bus/pci/devices/0000:43:00.0"}]}"#;
    let (api, c) = parse(body, SeccompMode::Enforce).unwrap();
    let got: Vec<_> = c.devices.iter().map(|d| d.iommufd).collect();
    assert_eq!(got, [Some(true), Some(false), None]);
    let v = serde_json::to_value(&api).unwrap();
    assert_eq!(v["devices"][0]["iommufd"], true);
    assert_eq!(v["devices"][1]["iommufd"], false);
    assert!(v["devices"][2].get("iommufd").is_none());
    let e = parse_err(r#"{"payload":{"kernel":"/k"},"devices":[{"path":"/x","iommufd":"on"}]}"#);
    assert!(e.contains("invalid type"), "{e}");
}

/// The bodies Cloud Hypervisor's own `ch-remote` (v54.0.0) sends for its `add-*` commands,
/// captured byte for byte on a socket: every one parses (it serializes its whole Rust structs,
/// with fields its OpenAPI document does not list, such as `disable_io_uring`).
#[test]
fn ch_remote_v54_add_bodies_parse() {
    let disk: ApiDisk = serde_json::from_str(
        r#"{"pci_segment":1,"pci_device_id":4,"path":"/tmp/x.img","readonly":false,"direct":false,"num_queues":1,"queue_size":128,"vhost_user":false,"disable_io_uring":false,"disable_aio":false,"backing_files":false,"sparse":true,"image_type":"Unknown","lock_granularity":"ByteRange"}"#,
    )
    .unwrap();
    let d = disk_config("disk", &disk).unwrap();
    assert_eq!((d.pci_segment, d.pci_device_id), (1, Some(4)));
    assert_eq!(d.num_queues, 1);
    let net: ApiNet = serde_json::from_str(
        r#"{"pci_segment":0,"tap":"t0","num_queues":2,"queue_size":256,"vhost_user":false,"vhost_mode":"Client","offload_tso":true,"offload_ufo":true,"offload_csum":true}"#,
    )
    .unwrap();
    assert_eq!(net_config("net", &net).unwrap().tap.as_deref(), Some("t0"));
    let dev: ApiDevice = serde_json::from_str(
        r#"{"pci_segment":1,"pci_device_id":7,"path":"/sys/bus/pci/devices/0000:01:00.0","x_exclude_mmap_bars":[]}"#,
    )
    .unwrap();
    let d = device_config("device", &dev).unwrap();
    assert_eq!((d.pci_segment, d.pci_device_id), (1, Some(7)));
    let fs: ApiFs = serde_json::from_str(
        r#"{"pci_segment":0,"tag":"t","socket":"/tmp/fs.sock","num_queues":1,"queue_size":1024}"#,
    )
    .unwrap();
    assert_eq!(fs_config("fs", &fs).unwrap().tag, "t");
    let vsock: ApiVsock =
        serde_json::from_str(r#"{"pci_segment":0,"cid":3,"socket":"/tmp/v.sock"}"#).unwrap();
    assert_eq!(vsock_config(&vsock).unwrap().cid, 3);
    // An engine choice is honoured either way (this VMM uses neither io_uring nor AIO).
    let disk: ApiDisk =
        serde_json::from_str(r#"{"path":"/d.img","disable_io_uring":true,"disable_aio":true}"#)
            .unwrap();
    assert!(disk_config("disk", &disk).is_ok());
    // Both lock granularities are served by the whole-file lock; anything else is refused.
    for (g, ok) in [
        ("\"Full\"", true),
        ("null", true),
        ("\"Partial\"", false),
        ("1", false),
    ] {
        let disk: ApiDisk =
            serde_json::from_str(&format!(r#"{{"path":"/d.img","lock_granularity":{g}}}"#))
                .unwrap();
        let r = disk_config("disk", &disk);
        assert_eq!(r.is_ok(), ok, "{g}: {r:?}");
        if let Err(e) = r {
            assert!(e.contains("disk.lock_granularity"), "{e}");
        }
    }
}

/// Fields Cloud Hypervisor v54's structs serialize that its OpenAPI document does not list (a
/// client serializing those structs whole sends them at their defaults): accepted at their
/// defaults, refused otherwise with the field named.
#[test]
fn cloud_hypervisor_v54_fields_beyond_its_openapi_document_are_known() {
    let c = parse_ok(
        r#"{"payload":{"kernel":"/k","fw_cfg_config":null},
            "cpus":{"boot_vcpus":1,"max_vcpus":1,"profile":"Host"},
            "memory":{"size":0,"zones":[{"id":"z","size":268435456,"reserve":false}]},
            "numa":[{"guest_numa_id":0,"cpus":[0],"memory_zones":["z"],"device_id":null}],
            "platform":{"iommufd_fd":null},
            "ivshmem":null,"pvmemcontrol":null,"gdb":false}"#,
    );
    assert_eq!(c.cpus.boot, 1);
    for (field, body) in [
        (
            "cpus.profile",
            r#"{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":1,"max_vcpus":1,"profile":"Other"}}"#,
        ),
        ("gdb", r#"{"payload":{"kernel":"/k"},"gdb":true}"#),
        (
            "ivshmem",
            r#"{"payload":{"kernel":"/k"},"ivshmem":{"path":"/dev/shm/x","size":"1M"}}"#,
        ),
        (
            "platform.iommufd_fd",
            r#"{"payload":{"kernel":"/k"},"platform":{"iommufd_fd":3}}"#,
        ),
        (
            "payload.fw_cfg_config",
            r#"{"payload":{"kernel":"/k","fw_cfg_config":{"e820":true}}}"#,
        ),
    ] {
        let e = parse_err(body);
        assert!(e.contains(field), "{field}: {e}");
    }
}

/// Two NICs on one tap are refused when the configuration is made, not at the boot's EBUSY.
#[test]
fn two_nics_on_one_tap_are_refused() {
    let e =
        parse_err(r#"{"payload":{"kernel":"/k"},"net":[{"tap":"t0"},{"tap":"t1"},{"tap":"t0"}]}"#);
    assert!(
        e.contains("net") && e.contains("t0") && e.contains("two NICs"),
        "{e}"
    );
    parse_ok(r#"{"payload":{"kernel":"/k"},"net":[{"tap":"t0"},{"tap":"t1"}]}"#);
    let m = crate::cli::command()
        .try_get_matches_from([
            "vmm", "--kernel", "/k", "--net", "tap=t0", "--net", "tap=t0",
        ])
        .unwrap();
    let e = crate::cli::from_matches(&m).err().unwrap().to_string();
    assert!(e.contains("two NICs"), "{e}");
}
