//! `--event-monitor path=…|fd=N`: one JSON object per lifecycle event, as Cloud Hypervisor
//! writes them (`{"timestamp":{"secs":…,"nanos":…},"source":"vm","event":"booted",
//! "properties":null}`, pretty-printed, followed by a blank line), so an orchestrator can
//! follow the VM without polling. The file is written without blocking: a reader that does not
//! keep up (a full pipe) loses events, never stalls the VMM.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Serialize)]
struct Event<'a> {
    timestamp: Duration,
    source: &'a str,
    event: &'a str,
    properties: Option<BTreeMap<&'a str, String>>,
}

pub struct EventMonitor {
    out: Option<File>,
    start: Instant,
}

/// Where `--event-monitor` writes.
pub type EventTarget = crate::config::PathOrFd;

impl EventMonitor {
    pub fn none() -> Self {
        EventMonitor {
            out: None,
            start: Instant::now(),
        }
    }

    pub fn open(target: &EventTarget, start: Instant) -> std::io::Result<Self> {
        let file = match target {
            EventTarget::Path(p) => open_path(p)?,
            EventTarget::Fd(fd) => {
                // SAFETY: F_GETFD only checks that the descriptor is open.
                if unsafe { libc::fcntl(*fd, libc::F_GETFD) } < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: the fd was handed to this process for this purpose and is open;
                // from here on this File owns it.
                unsafe { File::from_raw_fd(*fd) }
            }
        };
        // SAFETY: sets O_NONBLOCK on a descriptor this File owns.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        Ok(EventMonitor {
            out: Some(file),
            start,
        })
    }

    /// Record `event` from `source` ("vmm" or "vm"), with optional properties.
    pub fn emit(&mut self, source: &str, event: &str, properties: &[(&str, String)]) {
        log::info!("event: {source} {event} {properties:?}");
        let Some(out) = self.out.as_mut() else { return };
        let e = Event {
            timestamp: self.start.elapsed(),
            source,
            event,
            properties: if properties.is_empty() {
                None
            } else {
                Some(properties.iter().cloned().collect())
            },
        };
        let Ok(mut text) = serde_json::to_string_pretty(&e) else {
            return;
        };
        text.push_str("\n\n");
        if let Err(e) = out.write_all(text.as_bytes()) {
            log::warn!("event monitor: {event} not written: {e}");
        }
    }
}

fn open_path(p: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cloud_hypervisors_json_objects() {
        let dir = std::env::temp_dir().join(format!("vmm-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.json");
        let target =
            EventTarget::parse("event-monitor", &format!("path={}", path.display())).unwrap();
        let mut m = EventMonitor::open(&target, Instant::now()).unwrap();
        m.emit("vm", "booted", &[]);
        m.emit("vm", "device-added", &[("id", "_disk0".into())]);
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<serde_json::Value> = text
            .split("\n\n")
            .filter(|s| !s.trim().is_empty())
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["source"], "vm");
        assert_eq!(events[0]["event"], "booted");
        assert!(events[0]["timestamp"]["secs"].is_u64());
        assert!(events[0]["timestamp"]["nanos"].is_u64());
        assert!(events[0]["properties"].is_null());
        assert_eq!(events[1]["properties"]["id"], "_disk0");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn targets_parse_like_cloud_hypervisors() {
        assert_eq!(
            EventTarget::parse("event-monitor", "fd=3"),
            Ok(EventTarget::Fd(3))
        );
        assert_eq!(
            EventTarget::parse("event-monitor", "path=/tmp/e"),
            Ok(EventTarget::Path("/tmp/e".into()))
        );
        assert_eq!(
            EventTarget::parse("event-monitor", "/tmp/e"),
            Ok(EventTarget::Path("/tmp/e".into()))
        );
        assert!(EventTarget::parse("event-monitor", "fd=x").is_err());
        assert!(EventTarget::parse("event-monitor", "path=").is_err());
    }
}
