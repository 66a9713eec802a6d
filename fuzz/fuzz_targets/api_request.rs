//! The REST API's input: arbitrary bytes parsed as an HTTP request (micro_http, with the
//! API's body limit) and routed (`vmm::api::http::route`, which parses a `vm.create` body as
//! Cloud Hypervisor's VmConfig), and the same bytes as a VmConfig body directly. Nothing may
//! panic; every refusal must render as a non-empty JSON list of messages with a 4xx/5xx
//! status, and an accepted VmConfig must satisfy the limits the command line enforces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::api::http::{route, MAX_BODY};
use vmm::api::{vm_config, Request};
use vmm::seccomp::SeccompMode;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = micro_http::Request::try_from(data, Some(MAX_BODY)) {
        match route(&req, SeccompMode::Off) {
            Ok(Request::Create(b)) => check(&b.1),
            // A device to hot-add passed the same checks as at vm.create.
            Ok(Request::AddDevice(d)) => match *d {
                vmm::api::AddDevice::Disk(_, c) => assert!(c.queue_size.is_power_of_two()),
                vmm::api::AddDevice::Net(_, c) => assert!(c.num_queues >= 2),
                vmm::api::AddDevice::Fs(_, c) => {
                    assert!(!c.tag.is_empty() && c.tag.len() <= 36);
                    assert!(c.queue_size.is_power_of_two() && c.num_queues >= 1);
                }
                vmm::api::AddDevice::Vsock(_, c) => assert!(c.cid >= 3),
                vmm::api::AddDevice::Vfio(_, c) => assert!(!c.path.as_os_str().is_empty()),
            },
            Ok(Request::RemoveDevice(id)) => assert!(!id.is_empty()),
            Ok(_) => {}
            Err(e) => {
                let body: Vec<String> = serde_json::from_str(&e.body()).expect("a JSON list");
                assert!(!body.is_empty() && body.iter().all(|m| !m.is_empty()));
            }
        }
    }
    if let Ok((api, cfg)) = vm_config::parse(data, SeccompMode::Off) {
        check(&cfg);
        // What vm.info reports must serialize.
        serde_json::to_string(&api).expect("serializable");
    }
});

fn check(cfg: &vmm::config::VmConfig) {
    assert!((1..=254).contains(&cfg.cpus.boot));
    assert!(cfg.memory.size > 0);
    assert!(!cfg.kernel.as_os_str().is_empty());
    for d in &cfg.disks {
        assert!(d.queue_size.is_power_of_two());
    }
}
