//! The control loop against a fake launcher: every request in every state, guest-initiated
//! ends, and that a refused request changes nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::fake::{FakeLauncher, Log};
use super::*;
use crate::api::vm_config;
use crate::seccomp::SeccompMode;

fn controller() -> (
    Controller<FakeLauncher>,
    Arc<Log>,
    mpsc::Receiver<ControlMsg>,
) {
    let log = Arc::new(Log::default());
    let (tx, rx) = mpsc::channel();
    let c = Controller::new(FakeLauncher(log.clone()), tx, EventMonitor::none());
    (c, log, rx)
}

fn create(mem_mib: u64) -> Request {
    let body = format!(
        r#"{{"payload":{{"kernel":"/k"}},"memory":{{"size":{}}}}}"#,
        mem_mib << 20
    );
    let parsed = vm_config::parse(body.as_bytes(), SeccompMode::Off).unwrap();
    Request::Create(Box::new(parsed))
}

fn status(r: Result<Reply, ApiError>) -> Result<Reply, Status> {
    r.map_err(|e| e.status)
}

/// Deliver the guest's end as the VM's event thread would.
fn guest_ends(
    c: &mut Controller<FakeLauncher>,
    log: &Log,
    rx: &mpsc::Receiver<ControlMsg>,
    r: VmExitReason,
) {
    let on_end = log.on_end.lock().unwrap().take().expect("a booted VM");
    on_end(Ok(r));
    match rx.try_recv() {
        Ok(ControlMsg::VmEnded { generation, result }) => c.vm_ended(generation, result),
        _ => panic!("no VmEnded message"),
    }
}

#[test]
fn the_full_lifecycle_with_every_refusal_on_the_way() {
    let (mut c, log, _rx) = controller();
    assert_eq!(status(c.handle(Request::Info)), Err(Status::NotFound));
    assert_eq!(status(c.handle(Request::Boot)), Err(Status::NotFound));
    assert_eq!(status(c.handle(Request::Counters)), Err(Status::NotFound));
    assert_eq!(status(c.handle(create(64))), Ok(Reply::Empty));
    assert_eq!(c.state(), Some(VmState::Created));
    assert_eq!(status(c.handle(create(64))), Err(Status::Conflict));
    assert_eq!(
        status(c.handle(Request::Pause)),
        Err(Status::MethodNotAllowed)
    );
    assert_eq!(
        status(c.handle(Request::Resume)),
        Err(Status::MethodNotAllowed)
    );
    assert_eq!(
        status(c.handle(Request::PowerButton)),
        Err(Status::MethodNotAllowed)
    );
    assert_eq!(status(c.handle(Request::Boot)), Ok(Reply::Empty));
    assert_eq!(c.state(), Some(VmState::Running));
    assert_eq!(log.boots.load(Ordering::SeqCst), 1);
    assert_eq!(
        status(c.handle(Request::Boot)),
        Err(Status::MethodNotAllowed)
    );
    assert_eq!(
        status(c.handle(Request::Resume)),
        Err(Status::MethodNotAllowed)
    );
    assert_eq!(status(c.handle(Request::Pause)), Ok(Reply::Empty));
    assert_eq!(c.state(), Some(VmState::Paused));
    assert_eq!(
        status(c.handle(Request::Pause)),
        Err(Status::MethodNotAllowed)
    );
    assert_eq!(
        status(c.handle(Request::PowerButton)),
        Err(Status::MethodNotAllowed)
    );
    assert_eq!(status(c.handle(Request::Resume)), Ok(Reply::Empty));
    assert_eq!(
        (
            log.pauses.load(Ordering::SeqCst),
            log.resumes.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    assert_eq!(status(c.handle(Request::PowerButton)), Ok(Reply::Empty));
    assert_eq!(log.buttons.load(Ordering::SeqCst), 1);
    let Ok(Reply::Json(info)) = c.handle(Request::Info) else {
        panic!("vm.info")
    };
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["state"], "Running");
    assert_eq!(info["memory_actual_size"], 64u64 << 20);
    assert_eq!(info["config"]["memory"]["size"], 64u64 << 20);
    assert_eq!(status(c.handle(Request::Shutdown)), Ok(Reply::Empty));
    assert_eq!(c.state(), Some(VmState::Shutdown));
    assert_eq!(log.stops.load(Ordering::SeqCst), 1);
    assert_eq!(
        status(c.handle(Request::Shutdown)),
        Err(Status::MethodNotAllowed)
    );
    // Booted again from Shutdown, then deleted while running.
    assert_eq!(status(c.handle(Request::Boot)), Ok(Reply::Empty));
    assert_eq!(status(c.handle(Request::Delete)), Ok(Reply::Empty));
    assert_eq!(c.state(), None);
    assert_eq!(log.stops.load(Ordering::SeqCst), 2);
    assert_eq!(status(c.handle(Request::Delete)), Ok(Reply::Empty));
    // Created again with other memory.
    assert_eq!(status(c.handle(create(128))), Ok(Reply::Empty));
    assert_eq!(status(c.handle(Request::Boot)), Ok(Reply::Empty));
    let Ok(Reply::Json(info)) = c.handle(Request::Info) else {
        panic!("vm.info")
    };
    assert!(info.contains(&(128u64 << 20).to_string()), "{info}");
    assert_eq!(status(c.handle(Request::VmmShutdown)), Ok(Reply::Empty));
    assert!(c.exiting());
    assert_eq!(log.stops.load(Ordering::SeqCst), 3);
}

#[test]
fn a_guest_reset_reboots_and_a_poweroff_leaves_the_vm_shut_down() {
    let (mut c, log, rx) = controller();
    c.handle(create(64)).unwrap();
    c.handle(Request::Boot).unwrap();
    guest_ends(&mut c, &log, &rx, VmExitReason::Reset);
    assert_eq!(c.state(), Some(VmState::Running));
    assert_eq!(log.boots.load(Ordering::SeqCst), 2);
    assert_eq!(log.stops.load(Ordering::SeqCst), 1);
    guest_ends(&mut c, &log, &rx, VmExitReason::PowerOff);
    assert_eq!(c.state(), Some(VmState::Shutdown));
    assert_eq!(log.stops.load(Ordering::SeqCst), 2);
    // The VMM keeps serving: boot again.
    c.handle(Request::Boot).unwrap();
    guest_ends(
        &mut c,
        &log,
        &rx,
        VmExitReason::Fatal("triple fault".into()),
    );
    assert_eq!(c.state(), Some(VmState::Shutdown));
}

#[test]
fn the_end_of_an_earlier_boot_is_ignored() {
    let (mut c, log, rx) = controller();
    c.handle(create(64)).unwrap();
    c.handle(Request::Boot).unwrap();
    let stale = log.on_end.lock().unwrap().take().unwrap();
    c.handle(Request::Reboot).unwrap();
    assert_eq!(log.boots.load(Ordering::SeqCst), 2);
    // The first boot's event thread reports its end after the reboot replaced it.
    stale(Ok(VmExitReason::PowerOff));
    let Ok(ControlMsg::VmEnded { generation, result }) = rx.try_recv() else {
        panic!()
    };
    c.vm_ended(generation, result);
    assert_eq!(c.state(), Some(VmState::Running));
    // A machine stopped by the VMM reports Stopped: nothing happens.
    guest_ends(&mut c, &log, &rx, VmExitReason::Stopped);
    assert_eq!(c.state(), Some(VmState::Running));
}

#[test]
fn a_failed_boot_changes_nothing_and_says_why() {
    let (mut c, log, _rx) = controller();
    c.handle(create(64)).unwrap();
    *log.fail_next_boot.lock().unwrap() = Some(ApiError::new(
        Status::BadRequest,
        "cannot open kernel /k: No such file or directory",
    ));
    let e = c.handle(Request::Boot).unwrap_err();
    assert_eq!(e.status, Status::BadRequest);
    assert_eq!(e.messages[0], "cannot boot the VM");
    assert!(e.messages[1].contains("/k"));
    assert_eq!(c.state(), Some(VmState::Created));
    c.handle(Request::Boot).unwrap();
    assert_eq!(c.state(), Some(VmState::Running));
}

#[test]
fn ping_says_version_and_pid() {
    let (mut c, _, _rx) = controller();
    let Ok(Reply::Json(j)) = c.handle(Request::Ping) else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["pid"], std::process::id());
    assert!(v["features"].is_array());
}

#[test]
fn vm_info_reports_device_ids_and_a_device_tree_shaped_as_cloud_hypervisors() {
    let (mut c, _log, _rx) = controller();
    let body = r#"{"payload":{"kernel":"/k"},"memory":{"size":67108864},
        "disks":[{"path":"/a.img"},{"path":"/b.img","id":"data"}],
        "net":[{"tap":"t0"}],"rng":{"src":"/dev/urandom"},
        "devices":[{"path":"/sys/bus/pci/devices/0000:41:00.0"}]}"#;
    let parsed = vm_config::parse(body.as_bytes(), SeccompMode::Off).unwrap();
    assert_eq!(
        status(c.handle(Request::Create(Box::new(parsed)))),
        Ok(Reply::Empty)
    );
    let info = |c: &mut Controller<FakeLauncher>| -> serde_json::Value {
        let Ok(Reply::Json(info)) = c.handle(Request::Info) else {
            panic!("vm.info")
        };
        serde_json::from_str(&info).unwrap()
    };
    let i = info(&mut c);
    assert_eq!(i["config"]["disks"][0]["id"], "_disk0");
    assert_eq!(i["config"]["disks"][1]["id"], "data");
    assert_eq!(i["config"]["net"][0]["id"], "_net1");
    assert_eq!(i["config"]["devices"][0]["id"], "_vfio2");
    // No devices exist before the boot: no tree, no counters.
    assert_eq!(i["device_tree"], serde_json::json!({}));
    assert_eq!(
        status(c.handle(Request::Counters)),
        Ok(Reply::Json("{}".into()))
    );
    assert_eq!(status(c.handle(Request::Boot)), Ok(Reply::Empty));
    let tree = info(&mut c)["device_tree"].clone();
    // The fake machine puts its devices at 00:01.0, 00:02.0, ... in order.
    assert_eq!(tree["_disk0"]["parent"], "_virtio-pci-_disk0");
    assert_eq!(tree["_virtio-pci-_disk0"]["pci_bdf"], "0000:00:01.0");
    assert_eq!(tree["_virtio-pci-_disk0"]["children"][0], "_disk0");
    assert_eq!(tree["_virtio-pci-data"]["pci_bdf"], "0000:00:02.0");
    assert_eq!(tree["_virtio-pci-_net1"]["pci_bdf"], "0000:00:03.0");
    assert_eq!(tree["_virtio-pci-__rng"]["pci_bdf"], "0000:00:04.0");
    assert_eq!(tree["_vfio2"]["pci_bdf"], "0000:00:05.0");
    assert_eq!(tree.as_object().unwrap().len(), 9);
    assert_eq!(
        status(c.handle(Request::Counters)),
        Ok(Reply::Json(
            r#"{"_disk0":{"read_bytes":512},"data":{"read_bytes":512}}"#.into()
        ))
    );
}

#[test]
fn a_device_id_given_twice_is_refused_at_create() {
    let body = r#"{"payload":{"kernel":"/k"},
        "disks":[{"path":"/a.img","id":"x"}],"net":[{"tap":"t0","id":"x"}]}"#;
    let e = vm_config::parse(body.as_bytes(), SeccompMode::Off).unwrap_err();
    assert!(e.contains("'x' is used twice"), "{e}");
}

#[test]
fn a_vm_with_a_passed_through_device_refuses_a_snapshot_naming_it_and_stays_paused() {
    let (mut c, log, _rx) = controller();
    let body = r#"{"payload":{"kernel":"/k"},"memory":{"size":67108864},
        "disks":[{"path":"/a.img"}],
        "devices":[{"path":"/sys/bus/pci/devices/0000:41:00.0","id":"gpu0"}]}"#;
    let parsed = vm_config::parse(body.as_bytes(), SeccompMode::Off).unwrap();
    assert_eq!(
        status(c.handle(Request::Create(Box::new(parsed)))),
        Ok(Reply::Empty)
    );
    assert_eq!(status(c.handle(Request::Boot)), Ok(Reply::Empty));
    assert_eq!(status(c.handle(Request::Pause)), Ok(Reply::Empty));
    let e = c
        .handle(Request::Snapshot {
            destination_url: "file:///tmp/never-written".into(),
        })
        .unwrap_err();
    assert_eq!(e.status, Status::BadRequest);
    let m = e.messages.join(" ");
    assert!(m.contains("gpu0") && m.contains("VFIO"), "{m}");
    assert!(log.snapshots.lock().unwrap().is_empty());
    assert_eq!(c.state(), Some(VmState::Paused));
    assert_eq!(status(c.handle(Request::Resume)), Ok(Reply::Empty));
}

fn add_disk(path: &str, id: Option<&str>) -> Request {
    add_disk_body(&match id {
        Some(id) => format!(r#"{{"path":"{path}","id":"{id}"}}"#),
        None => format!(r#"{{"path":"{path}"}}"#),
    })
}

/// `vm.add-disk` with this DiskConfig body.
fn add_disk_body(json: &str) -> Request {
    let api: vm_config::ApiDisk = serde_json::from_str(json).unwrap();
    let cfg = vm_config::disk_config("disk", &api).unwrap();
    Request::AddDevice(Box::new(crate::api::AddDevice::Disk(api, cfg)))
}

fn info_json(c: &mut Controller<FakeLauncher>) -> serde_json::Value {
    match c.handle(Request::Info) {
        Ok(Reply::Json(s)) => serde_json::from_str(&s).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn devices_are_added_to_a_created_vm_and_hot_added_to_a_running_one() {
    let (mut c, log, _rx) = controller();
    assert_eq!(
        status(c.handle(add_disk("/a.img", None))),
        Err(Status::NotFound),
        "no VM"
    );
    assert_eq!(status(c.handle(create(64))), Ok(Reply::Empty));
    // Not booted: the configuration gets it (204), and the boot cold-plugs it.
    assert_eq!(status(c.handle(add_disk("/a.img", None))), Ok(Reply::Empty));
    assert_eq!(info_json(&mut c)["config"]["disks"][0]["id"], "_disk0");
    assert_eq!(status(c.handle(Request::Boot)), Ok(Reply::Empty));
    assert!(log.added.lock().unwrap().is_empty());
    // Running: hot-added after the first disk (position 1), answered with its PciDeviceInfo.
    let reply = c.handle(add_disk("/b.img", Some("data"))).unwrap();
    let Reply::Json(body) = reply else {
        panic!("{reply:?}")
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "data");
    assert!(v["bdf"].as_str().unwrap().starts_with("0000:00:"));
    assert_eq!(*log.added.lock().unwrap(), vec![(1, "data".to_string())]);
    let info = info_json(&mut c);
    assert_eq!(info["config"]["disks"][1]["path"], "/b.img");
    assert_eq!(info["config"]["disks"][1]["id"], "data");
    // A taken id, and an image already attached, are refused with nothing changed.
    for req in [add_disk("/c.img", Some("data")), add_disk("/b.img", None)] {
        assert_eq!(status(c.handle(req)), Err(Status::BadRequest));
    }
    assert_eq!(log.added.lock().unwrap().len(), 1);
    assert_eq!(
        info_json(&mut c)["config"]["disks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A generated id never repeats one in use.
    assert!(status(c.handle(add_disk("/d.img", None))).is_ok());
    assert_eq!(log.added.lock().unwrap()[1], (2, "_disk1".to_string()));
    // A snapshot now would lay devices out differently on restore: refused.
    assert_eq!(status(c.handle(Request::Pause)), Ok(Reply::Empty));
    let snap = c.handle(Request::Snapshot {
        destination_url: "file:///tmp/x".into(),
    });
    assert_eq!(status(snap), Err(Status::BadRequest));
    assert!(log.snapshots.lock().unwrap().is_empty());
}

#[test]
fn a_device_goes_on_any_segment_the_vm_has_before_boot_and_while_running() {
    let (mut c, log, _rx) = controller();
    let body = br#"{"payload":{"kernel":"/k"},"memory":{"size":67108864},
                    "platform":{"num_pci_segments":2}}"#;
    let parsed = vm_config::parse(body, SeccompMode::Off).unwrap();
    assert_eq!(
        status(c.handle(Request::Create(Box::new(parsed)))),
        Ok(Reply::Empty)
    );
    let on = |path: &str, id: &str, segment: u16| {
        add_disk_body(&format!(
            r#"{{"path":"{path}","id":"{id}","pci_segment":{segment}}}"#
        ))
    };
    // Segment 2 does not exist; segment 1 does, and the boot puts the disk there.
    let e = c.handle(on("/a.img", "a", 2)).unwrap_err();
    assert_eq!(e.status, Status::BadRequest);
    assert!(e.to_string().contains("segment 2 does not exist"), "{e}");
    assert_eq!(status(c.handle(on("/a.img", "a", 1))), Ok(Reply::Empty));
    assert_eq!(info_json(&mut c)["config"]["disks"][0]["pci_segment"], 1);
    assert_eq!(status(c.handle(Request::Boot)), Ok(Reply::Empty));
    // Running: hot-plug serves every segment (ACPI hotplug selects it), both ways; a segment
    // the VM lacks is still refused, and nothing changes.
    let e = c.handle(on("/c.img", "c", 2)).unwrap_err();
    assert_eq!(e.status, Status::BadRequest);
    assert!(log.added.lock().unwrap().is_empty());
    assert!(c.handle(on("/b.img", "b", 1)).is_ok());
    assert_eq!(log.added.lock().unwrap().len(), 1);
    assert_eq!(info_json(&mut c)["config"]["disks"][1]["pci_segment"], 1);
    assert!(c.handle(Request::RemoveDevice("a".into())).is_ok());
    assert_eq!(log.removed.lock().unwrap().len(), 1);
    assert_eq!(
        info_json(&mut c)["config"]["disks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_slot_asked_for_is_kept_in_the_config_and_asked_for_once() {
    let (mut c, log, _rx) = controller();
    let body = br#"{"payload":{"kernel":"/k"},"memory":{"size":67108864},
                    "disks":[{"path":"/a.img","pci_device_id":5}],
                    "rng":{"src":"/dev/urandom","pci_device_id":6}}"#;
    let parsed = vm_config::parse(body, SeccompMode::Off).unwrap();
    assert_eq!(parsed.1.disks[0].pci_device_id, Some(5));
    assert_eq!(
        status(c.handle(Request::Create(Box::new(parsed)))),
        Ok(Reply::Empty)
    );
    let info = info_json(&mut c);
    assert_eq!(info["config"]["disks"][0]["pci_device_id"], 5);
    assert_eq!(info["config"]["rng"]["pci_device_id"], 6);
    for bad in [0, 32] {
        let body = format!(
            r#"{{"payload":{{"kernel":"/k"}},"disks":[{{"path":"/a.img","pci_device_id":{bad}}}]}}"#
        );
        let e = vm_config::parse(body.as_bytes(), SeccompMode::Off).unwrap_err();
        assert!(e.contains("pci_device_id") && e.contains("1 to 31"), "{e}");
    }
    let at = |path: &str, id: &str, slot: u8| {
        add_disk_body(&format!(
            r#"{{"path":"{path}","id":"{id}","pci_device_id":{slot}}}"#
        ))
    };
    // Before boot and while running: a slot another device asked for is refused.
    let e = c.handle(at("/b.img", "b", 5)).unwrap_err();
    assert_eq!(e.status, Status::BadRequest);
    assert!(e.to_string().contains("slot 5 of segment 0"), "{e}");
    assert_eq!(status(c.handle(at("/b.img", "b", 7))), Ok(Reply::Empty));
    assert_eq!(status(c.handle(Request::Boot)), Ok(Reply::Empty));
    let e = c.handle(at("/c.img", "c", 6)).unwrap_err();
    assert_eq!(e.status, Status::BadRequest);
    assert!(
        e.to_string()
            .contains("slot 6 of segment 0 is rng's already"),
        "{e}"
    );
    assert!(log.added.lock().unwrap().is_empty());
    assert!(c.handle(at("/c.img", "c", 8)).is_ok());
    assert_eq!(log.added.lock().unwrap().len(), 1);
    assert_eq!(info_json(&mut c)["config"]["disks"][2]["pci_device_id"], 8);
}

#[test]
fn a_second_nic_on_a_tap_in_use_is_refused() {
    let (mut c, _log, _rx) = controller();
    assert_eq!(status(c.handle(create(64))), Ok(Reply::Empty));
    let net = |tap: &str| {
        let api: vm_config::ApiNet =
            serde_json::from_str(&format!(r#"{{"tap":"{tap}"}}"#)).unwrap();
        let cfg = vm_config::net_config("net", &api).unwrap();
        Request::AddDevice(Box::new(crate::api::AddDevice::Net(api, cfg)))
    };
    assert!(c.handle(net("t0")).is_ok());
    let e = c.handle(net("t0")).unwrap_err();
    assert_eq!(e.status, Status::BadRequest);
    assert!(e.to_string().contains("two NICs"), "{e}");
    assert_eq!(
        info_json(&mut c)["config"]["net"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn removal_asks_the_guest_and_a_refusal_or_unknown_id_changes_nothing() {
    let (mut c, log, _rx) = controller();
    assert_eq!(status(c.handle(create(64))), Ok(Reply::Empty));
    for (p, id) in [("/a.img", "a"), ("/b.img", "b")] {
        assert_eq!(status(c.handle(add_disk(p, Some(id)))), Ok(Reply::Empty));
    }
    assert_eq!(status(c.handle(Request::Boot)), Ok(Reply::Empty));
    let e = c.handle(Request::RemoveDevice("nope".into())).unwrap_err();
    assert_eq!(e.status, Status::NotFound);
    assert!(e.to_string().contains("a, b"), "{e}");
    // The guest does not let go: 409, the device stays.
    log.refuse_eject.store(true, Ordering::SeqCst);
    let e = c.handle(Request::RemoveDevice("b".into())).unwrap_err();
    assert_eq!(e.status, Status::Conflict);
    assert!(e.to_string().contains("left in place"), "{e}");
    assert_eq!(
        info_json(&mut c)["config"]["disks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // It does: gone from the machine (position 1) and from the configuration.
    log.refuse_eject.store(false, Ordering::SeqCst);
    assert_eq!(
        status(c.handle(Request::RemoveDevice("b".into()))),
        Ok(Reply::Empty)
    );
    assert_eq!(*log.removed.lock().unwrap(), vec![(1, "b".to_string())]);
    let disks = info_json(&mut c)["config"]["disks"].clone();
    assert_eq!(disks.as_array().unwrap().len(), 1);
    assert_eq!(disks[0]["id"], "a");
    // A VM not running: only its configuration changes.
    assert_eq!(status(c.handle(Request::Shutdown)), Ok(Reply::Empty));
    assert_eq!(
        status(c.handle(Request::RemoveDevice("a".into()))),
        Ok(Reply::Empty)
    );
    assert_eq!(log.removed.lock().unwrap().len(), 1);
    assert!(info_json(&mut c)["config"]["disks"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn fs_and_vsock_are_added_in_their_place_and_checked_like_at_create() {
    let (mut c, log, _rx) = controller();
    assert_eq!(status(c.handle(create(64))), Ok(Reply::Empty));
    assert_eq!(
        status(c.handle(add_disk("/a.img", Some("a")))),
        Ok(Reply::Empty)
    );
    assert_eq!(status(c.handle(Request::Boot)), Ok(Reply::Empty));
    let fs = |tag: &str| {
        let api: vm_config::ApiFs =
            serde_json::from_str(&format!(r#"{{"tag":"{tag}","socket":"/s"}}"#)).unwrap();
        let cfg = vm_config::fs_config("fs", &api).unwrap();
        Request::AddDevice(Box::new(crate::api::AddDevice::Fs(api, cfg)))
    };
    let vsock = |cid: u64| {
        let api: vm_config::ApiVsock =
            serde_json::from_str(&format!(r#"{{"cid":{cid},"socket":"/v"}}"#)).unwrap();
        let cfg = vm_config::vsock_config(&api).unwrap();
        Request::AddDevice(Box::new(crate::api::AddDevice::Vsock(api, cfg)))
    };
    // This VM's memory is private: a vhost-user backend could not map it.
    let e = c.handle(fs("t")).unwrap_err();
    assert_eq!(e.status, Status::BadRequest);
    assert!(e.to_string().contains("shared=on"), "{e}");
    assert!(log.added.lock().unwrap().is_empty());
    // A vsock goes after the disk (disks, nets, rng, vsock, fs, console); a second is refused.
    assert!(status(c.handle(vsock(3))).is_ok());
    assert_eq!(*log.added.lock().unwrap(), vec![(1, "_vsock0".to_string())]);
    assert_eq!(status(c.handle(vsock(4))), Err(Status::BadRequest));
    assert_eq!(info_json(&mut c)["config"]["vsock"]["cid"], 3);
    // Removed like any device.
    assert_eq!(
        status(c.handle(Request::RemoveDevice("_vsock0".into()))),
        Ok(Reply::Empty)
    );
    assert!(info_json(&mut c)["config"]["vsock"].is_null());
}
