//! Resetting a passed-through device the way it allows: a function reset (FLR, or whatever
//! the kernel's `reset_method` offers: VFIO_DEVICE_RESET) when VFIO says the device has one,
//! else a bus ("hot") reset (VFIO_DEVICE_PCI_HOT_RESET), which resets every function on the
//! bus or slot and so needs the VFIO group of each of them to be this VM's. A GPU without FLR
//! and its HDMI audio function usually share a slot and an IOMMU group: passing the GPU gives
//! the VM that group, so the bus reset works. When neither is possible the device is not
//! reset, and the warning names it and says what is missing.
//!
//! The group file descriptors come from [`GroupFds`]: vfio-ioctls opens each group once and
//! keeps the file to itself, so the registry holds a duplicate of that descriptor for as long
//! as a device of the group is open in this VM. A device opened through its cdev (iommufd)
//! needs none: the kernel reports the other functions by whether this VM's iommufd owns them
//! (VFIO_PCI_HOT_RESET_FLAG_DEV_ID[_OWNED]) and takes an empty list of group descriptors.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use pci::vfio::ResetDone;

use super::seccomp::{
    VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_PCI_HOT_RESET,
    VFIO_DEVICE_RESET,
};

/// `vfio_device_info.flags`: the device supports VFIO_DEVICE_RESET (bit 0; bit 1 says
/// "a vfio-pci device").
pub use vfio_bindings::bindings::vfio::VFIO_DEVICE_FLAGS_RESET;

/// One function a bus reset would reset (`struct vfio_pci_dependent_device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dependent {
    pub group: u32,
    pub segment: u16,
    pub bus: u8,
    pub devfn: u8,
}

impl std::fmt::Display for Dependent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.segment,
            self.bus,
            self.devfn >> 3,
            self.devfn & 7
        )
    }
}

/// The groups a bus reset needs, in order and once each, or why the VM cannot do it: a
/// function in a group this VM does not own.
pub fn hot_reset_groups(affected: &[Dependent], owned: &[u32]) -> Result<Vec<u32>, String> {
    let mut groups = Vec::new();
    for d in affected {
        if !owned.contains(&d.group) {
            return Err(format!(
                "a bus reset would also reset {d} (IOMMU group {}), which this VM does not \
                 have: pass that device through too",
                d.group
            ));
        }
        if !groups.contains(&d.group) {
            groups.push(d.group);
        }
    }
    Ok(groups)
}

/// `vfio_pci_hot_reset_info.flags`: the entries carry device IDs (the device is a cdev).
pub const HOT_RESET_FLAG_DEV_ID: u32 = 1 << 0;
/// ...and this VM's iommufd owns every affected device.
pub const HOT_RESET_FLAG_DEV_ID_OWNED: u32 = 1 << 1;
/// A device ID entry for a function this VM does not own (`VFIO_PCI_DEVID_NOT_OWNED`).
const DEVID_NOT_OWNED: u32 = u32::MAX;

/// What a bus reset needs given VFIO_DEVICE_GET_PCI_HOT_RESET_INFO's `flags` and entries:
/// the groups (legacy: [`hot_reset_groups`]), or none for a cdev whose iommufd owns every
/// affected function; or why the VM cannot do it.
pub fn hot_reset_plan(
    flags: u32,
    affected: &[Dependent],
    owned: &[u32],
) -> Result<Vec<u32>, String> {
    if flags & HOT_RESET_FLAG_DEV_ID == 0 {
        return hot_reset_groups(affected, owned);
    }
    if flags & HOT_RESET_FLAG_DEV_ID_OWNED != 0 {
        return Ok(Vec::new());
    }
    let other = affected.iter().find(|d| d.group == DEVID_NOT_OWNED);
    Err(match other {
        Some(d) => format!(
            "a bus reset would also reset {d}, which this VM does not have: pass that device \
             through too"
        ),
        None => "a bus reset would also reset a function this VM does not have".into(),
    })
}

/// The VM's VFIO group descriptors, by group number (see the module documentation).
#[derive(Default)]
pub struct GroupFds(Mutex<HashMap<u32, (OwnedFd, usize)>>);

impl GroupFds {
    /// Takes a reference on `group`, whose file vfio-ioctls has open in this process (found
    /// by its device number among the open descriptors). Without it a bus reset is
    /// impossible; nothing else depends on it.
    pub fn acquire(&self, group: u32) -> io::Result<()> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, n)) = map.get_mut(&group) {
            *n += 1;
            return Ok(());
        }
        let fd = find_open(&Path::new("/dev/vfio").join(group.to_string()))?;
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor this process owns.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `dup` was just created and is owned by nothing else.
        map.insert(group, (unsafe { OwnedFd::from_raw_fd(dup) }, 1));
        Ok(())
    }

    /// Drops a reference taken by [`acquire`](Self::acquire) (the last closes the duplicate,
    /// after vfio-ioctls let the group go, so the group can be opened again).
    pub fn release(&self, group: u32) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, n)) = map.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                map.remove(&group);
            }
        }
    }

    /// The descriptors of `groups`, in that order.
    fn fds(&self, groups: &[u32]) -> Option<Vec<RawFd>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        groups
            .iter()
            .map(|g| map.get(g).map(|(fd, _)| fd.as_raw_fd()))
            .collect()
    }

    fn owned(&self) -> Vec<u32> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.keys().copied().collect()
    }
}

/// The open descriptor of the character device at `path`.
fn find_open(path: &Path) -> io::Result<RawFd> {
    let want = std::fs::metadata(path)?;
    use std::os::unix::fs::MetadataExt;
    let rdev = want.rdev();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 16) as RawFd
    } else {
        1024
    };
    for fd in 0..max {
        // SAFETY: fstat writes only the struct; a closed descriptor is EBADF.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFCHR
            && st.st_rdev == rdev
        {
            return Ok(fd);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} is not open in this process", path.display()),
    ))
}

/// `device`'s reset: VFIO_DEVICE_RESET when `reset_works`, else a bus reset with the groups
/// in `groups`.
pub fn reset(device: RawFd, reset_works: bool, groups: &Arc<GroupFds>) -> io::Result<ResetDone> {
    if reset_works {
        // SAFETY: VFIO_DEVICE_RESET takes no argument.
        if unsafe { libc::ioctl(device, VFIO_DEVICE_RESET as _) } == 0 {
            return Ok(ResetDone::Function);
        }
        return Err(io::Error::last_os_error());
    }
    let (flags, affected) = match hot_reset_info(device) {
        Ok(a) => a,
        // No bus or slot reset either (a root-bus device, a bridge that cannot; a mediated
        // device, whose driver knows no such request: ENOTTY).
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENODEV) | Some(libc::EINVAL) | Some(libc::ENOTTY)
            ) =>
        {
            return Ok(ResetDone::Unavailable(
                "it has no function-level reset and no bus or slot reset".into(),
            ))
        }
        Err(e) => return Err(e),
    };
    let needed = match hot_reset_plan(flags, &affected, &groups.owned()) {
        Ok(g) => g,
        Err(why) => {
            return Ok(ResetDone::Unavailable(format!(
                "it has no function-level reset, and {why}"
            )))
        }
    };
    let Some(fds) = groups.fds(&needed) else {
        return Ok(ResetDone::Unavailable(
            "its group's descriptor was not found for a bus reset".into(),
        ));
    };
    // struct vfio_pci_hot_reset { argsz, flags, count, group_fds[] }.
    let mut buf: Vec<u32> = vec![0; 3 + fds.len()];
    buf[0] = (buf.len() * 4) as u32;
    buf[2] = fds.len() as u32;
    for (slot, fd) in buf[3..].iter_mut().zip(&fds) {
        *slot = *fd as u32;
    }
    // SAFETY: the kernel reads argsz bytes of `buf`, which is that long.
    if unsafe { libc::ioctl(device, VFIO_DEVICE_PCI_HOT_RESET as _, buf.as_mut_ptr()) } == 0 {
        Ok(ResetDone::Bus)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: its flags and the functions a bus reset of `device`
/// would reset (with a device ID in `group` when the flags say so).
fn hot_reset_info(device: RawFd) -> io::Result<(u32, Vec<Dependent>)> {
    // struct vfio_pci_hot_reset_info { argsz, flags, count, devices[] } with 8-byte entries
    // { u32 group_id; u16 segment; u8 bus; u8 devfn }. Asked with room for 16, then as
    // many as the kernel says (ENOSPC with count filled in).
    let mut room = 16usize;
    loop {
        let mut buf: Vec<u32> = vec![0; 3 + 2 * room];
        buf[0] = (buf.len() * 4) as u32;
        // SAFETY: the kernel writes at most argsz bytes into `buf`.
        let rc = unsafe {
            libc::ioctl(
                device,
                VFIO_DEVICE_GET_PCI_HOT_RESET_INFO as _,
                buf.as_mut_ptr(),
            )
        };
        let count = buf[2] as usize;
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOSPC) && count > room && count <= 4096 {
                room = count;
                continue;
            }
            return Err(e);
        }
        let deps = (0..count.min(room))
            .map(|i| {
                let (g, rest) = (buf[3 + 2 * i], buf[4 + 2 * i]);
                Dependent {
                    group: g,
                    segment: rest as u16,
                    bus: (rest >> 16) as u8,
                    devfn: (rest >> 24) as u8,
                }
            })
            .collect();
        return Ok((buf[1], deps));
    }
}

/// [`report`]'s `when` for the reset before a device's first use.
pub const BEFORE_USE: &str = "before use";

/// Says what a reset of the device `name` did (`when`: "before use", "at VM stop", ...): a
/// device left without one is a warning that says why, a failed reset is a warning too, and
/// the VM goes on either way (the kernel reset the device when vfio-pci first opened it).
pub fn report(name: &str, when: &str, r: io::Result<ResetDone>) {
    match r {
        Ok(ResetDone::Function) => log::debug!("vfio: {name} reset (function reset) {when}"),
        Ok(ResetDone::Bus) => log::debug!("vfio: {name} reset (bus reset) {when}"),
        // Said once per device, before its first use; again only in the debug log.
        Ok(ResetDone::Unavailable(why)) if when == BEFORE_USE => {
            log::warn!("vfio: {name} is not reset {when}: {why}")
        }
        Ok(ResetDone::Unavailable(why)) => log::debug!("vfio: {name} is not reset {when}: {why}"),
        Err(e) => log::warn!("vfio: reset of {name} {when} failed: {e}; continuing"),
    }
}

/// VFIO_DEVICE_GET_INFO's flags.
pub fn device_flags(device: RawFd) -> io::Result<u32> {
    // struct vfio_device_info { argsz, flags, num_regions, num_irqs, cap_offset, pad }.
    let mut info = [0u32; 6];
    info[0] = std::mem::size_of_val(&info) as u32;
    // SAFETY: the kernel writes at most argsz bytes into `info`.
    if unsafe { libc::ioctl(device, VFIO_DEVICE_GET_INFO as _, info.as_mut_ptr()) } == 0 {
        Ok(info[1])
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Resets `devices` (name, device) one after the other on this thread.
pub fn reset_each(devices: &[(String, Arc<dyn pci::vfio::VfioDeviceOps>)], when: &'static str) {
    for (name, d) in devices {
        report(name, when, d.reset());
    }
}

/// One reset a [`ResetPool`] worker does: the device, its name, when (for the message).
type ResetJob = (
    Arc<dyn pci::vfio::VfioDeviceOps>,
    String,
    &'static str,
    std::sync::mpsc::Sender<()>,
);

/// Threads that reset several devices at once: a function-level reset takes 100 ms or more
/// (the device has that long to come back), so eight GPUs reset one after the other would
/// hold a VM's start, and its stop, for seconds. Started with the VM's `vfio` thread, one
/// per device (at most [`MAX_RESET_WORKERS`]), under the `vfio` thread's own filter (these do a
/// part of its work); they end when the pool is dropped.
pub struct ResetPool {
    workers: Vec<std::sync::mpsc::Sender<ResetJob>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The most reset workers a VM gets.
pub const MAX_RESET_WORKERS: usize = 8;

impl ResetPool {
    /// `count` workers confined by `filter` (none for one device: the caller resets it).
    pub fn spawn(count: usize, filter: crate::seccomp::Compiled) -> ResetPool {
        let mut pool = ResetPool {
            workers: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..count.min(MAX_RESET_WORKERS) {
            let (tx, rx) = std::sync::mpsc::channel::<ResetJob>();
            let filter = filter.clone();
            let t = std::thread::Builder::new()
                .name(format!("vfio-reset{i}"))
                .spawn(move || {
                    let confined = filter.install();
                    if let Err(e) = &confined {
                        log::warn!("vfio: reset worker not confined ({e}); it resets nothing");
                    }
                    while let Ok((dev, name, when, done)) = rx.recv() {
                        if confined.is_ok() {
                            report(&name, when, dev.reset());
                        }
                        let _ = done.send(());
                    }
                });
            match t {
                Ok(t) => {
                    pool.workers.push(tx);
                    pool.threads.push(t);
                }
                Err(e) => {
                    log::debug!("vfio: reset worker {i} not started: {e}");
                    break;
                }
            }
        }
        pool
    }

    /// Resets `devices` (name, device), in parallel on the workers, or here one after the
    /// other when there are none; returns once every reset is done.
    pub fn reset_all(
        &self,
        devices: &[(String, Arc<dyn pci::vfio::VfioDeviceOps>)],
        when: &'static str,
    ) {
        if self.workers.is_empty() || devices.len() < 2 {
            reset_each(devices, when);
            return;
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut sent = 0;
        for (i, (name, d)) in devices.iter().enumerate() {
            let job = (d.clone(), name.clone(), when, done_tx.clone());
            match self.workers[i % self.workers.len()].send(job) {
                Ok(()) => sent += 1,
                // A worker that ended: reset here.
                Err(_) => report(name, when, d.reset()),
            }
        }
        drop(done_tx);
        for _ in 0..sent {
            if done_rx.recv().is_err() {
                break;
            }
        }
    }
}

impl Drop for ResetPool {
    fn drop(&mut self) {
        self.workers.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(group: u32, bus: u8, dev: u8, func: u8) -> Dependent {
        Dependent {
            group,
            segment: 0,
            bus,
            devfn: dev << 3 | func,
        }
    }

    #[test]
    fn numbers_match_the_linux_uapi_headers() {
        assert_eq!(VFIO_DEVICE_GET_INFO, 0x3b6b);
        assert_eq!(VFIO_DEVICE_RESET, 0x3b6f);
        assert_eq!(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, 0x3b70);
        assert_eq!(VFIO_DEVICE_PCI_HOT_RESET, 0x3b71);
        // include/uapi/linux/vfio.h: VFIO_DEVICE_FLAGS_RESET (1 << 0), _PCI (1 << 1).
        assert_eq!(VFIO_DEVICE_FLAGS_RESET, 1);
    }

    #[test]
    fn a_gpu_and_its_audio_function_in_one_group_need_only_that_group() {
        // 0000:41:00.0 (GPU) and 0000:41:00.1 (HDMI audio) in IOMMU group 27.
        let affected = [dep(27, 0x41, 0, 0), dep(27, 0x41, 0, 1)];
        assert_eq!(hot_reset_groups(&affected, &[27]).unwrap(), [27]);
    }

    #[test]
    fn several_groups_are_each_needed_once_in_order() {
        let affected = [dep(30, 1, 0, 0), dep(31, 1, 0, 1), dep(30, 1, 0, 2)];
        assert_eq!(hot_reset_groups(&affected, &[31, 30]).unwrap(), [30, 31]);
    }

    #[test]
    fn a_cdev_bus_reset_needs_no_group_when_the_iommufd_owns_every_function() {
        let owned = [dep(u32::MAX - 1, 0x41, 0, 0), dep(u32::MAX - 1, 0x41, 0, 1)];
        let flags = HOT_RESET_FLAG_DEV_ID | HOT_RESET_FLAG_DEV_ID_OWNED;
        assert_eq!(hot_reset_plan(flags, &owned, &[]), Ok(vec![]));
        // A function outside the VM's iommufd is named.
        let foreign = [dep(3, 0x41, 0, 0), dep(u32::MAX, 0x41, 0, 1)];
        let e = hot_reset_plan(HOT_RESET_FLAG_DEV_ID, &foreign, &[]).unwrap_err();
        assert!(
            e.contains("0000:41:00.1") && e.contains("pass that device"),
            "{e}"
        );
        // Without the DEV_ID flag the entries are groups, as before.
        assert_eq!(hot_reset_plan(0, &[dep(7, 0x41, 0, 0)], &[7]), Ok(vec![7]));
        assert!(hot_reset_plan(0, &[dep(7, 0x41, 0, 0)], &[]).is_err());
    }

    #[test]
    fn a_function_in_a_group_the_vm_lacks_is_named_with_the_fix() {
        let affected = [dep(27, 0x41, 0, 0), dep(28, 0x41, 0, 1)];
        let e = hot_reset_groups(&affected, &[27]).unwrap_err();
        assert!(e.contains("0000:41:00.1"), "{e}");
        assert!(e.contains("IOMMU group 28"), "{e}");
        assert!(e.contains("pass that device through too"), "{e}");
    }

    /// A device whose reset takes `ms` and counts how many run at once.
    struct SlowReset {
        ms: u64,
        running: Arc<std::sync::atomic::AtomicUsize>,
        peak: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl pci::vfio::VfioDeviceOps for SlowReset {
        fn region_info(&self, _: u32) -> Option<pci::vfio::RegionInfo> {
            None
        }
        fn read_region(&self, _: u32, _: u64, _: &mut [u8]) -> io::Result<()> {
            Ok(())
        }
        fn write_region(&self, _: u32, _: u64, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn mmap_region(&self, _: u32, _: u64, _: u64) -> io::Result<pci::vfio::HostMapping> {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
        fn irq_count(&self, _: pci::vfio::VfioIrqKind) -> u32 {
            0
        }
        fn enable_irqs(
            &self,
            _: pci::vfio::VfioIrqKind,
            _: &[&vmm_sys_util::eventfd::EventFd],
        ) -> io::Result<()> {
            Ok(())
        }
        fn disable_irqs(&self, _: pci::vfio::VfioIrqKind) -> io::Result<()> {
            Ok(())
        }
        fn set_intx_unmask_fd(&self, _: &vmm_sys_util::eventfd::EventFd) -> io::Result<()> {
            Ok(())
        }
        fn unmask_intx(&self) -> io::Result<()> {
            Ok(())
        }
        fn reset(&self) -> io::Result<ResetDone> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.running.fetch_add(1, SeqCst) + 1;
            self.peak.fetch_max(now, SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(self.ms));
            self.running.fetch_sub(1, SeqCst);
            Ok(ResetDone::Function)
        }
    }

    #[test]
    fn eight_slow_resets_run_at_once_on_the_pool() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let devices: Vec<(String, Arc<dyn pci::vfio::VfioDeviceOps>)> = (0..8)
            .map(|i| {
                let d: Arc<dyn pci::vfio::VfioDeviceOps> = Arc::new(SlowReset {
                    ms: 200,
                    running: running.clone(),
                    peak: peak.clone(),
                });
                (format!("gpu{i}"), d)
            })
            .collect();
        let filter = crate::seccomp::Confinement::new(crate::seccomp::SeccompMode::Off)
            .compile(crate::seccomp::ThreadKind::Vfio)
            .unwrap();
        let pool = ResetPool::spawn(8, filter);
        let start = std::time::Instant::now();
        pool.reset_all(&devices, BEFORE_USE);
        let took = start.elapsed();
        assert_eq!(
            peak.load(std::sync::atomic::Ordering::SeqCst),
            8,
            "all at once"
        );
        assert!(took < std::time::Duration::from_millis(1200), "{took:?}");
        assert_eq!(
            running.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "all done"
        );
        drop(pool);
        // No workers: one after the other, here.
        let pool = ResetPool::spawn(
            0,
            crate::seccomp::Confinement::new(crate::seccomp::SeccompMode::Off)
                .compile(crate::seccomp::ThreadKind::Vfio)
                .unwrap(),
        );
        peak.store(0, std::sync::atomic::Ordering::SeqCst);
        pool.reset_all(&devices[..2], BEFORE_USE);
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A device whose driver knows no bus-reset request (a mediated device: ENOTTY, as any
    /// file that is not a VFIO device answers) and advertises no function reset: no reset
    /// possible, said as such, not an error.
    #[test]
    fn a_driver_without_reset_requests_has_no_reset_rather_than_an_error() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let r = reset(null.as_raw_fd(), false, &Arc::new(GroupFds::default())).unwrap();
        assert!(
            matches!(&r, ResetDone::Unavailable(why) if why.contains("no function-level reset")),
            "{r:?}"
        );
    }

    #[test]
    fn group_references_close_the_duplicate_with_the_last() {
        // /dev/null stands in for a group file this process has open.
        let null = std::fs::File::open("/dev/null").unwrap();
        let fd = find_open(Path::new("/dev/null")).unwrap();
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        let g = GroupFds::default();
        {
            let dup = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
            g.0.lock()
                .unwrap()
                .insert(7, (unsafe { OwnedFd::from_raw_fd(dup) }, 1));
        }
        g.acquire(7).unwrap();
        assert_eq!(g.fds(&[7]).unwrap().len(), 1);
        let dup = g.fds(&[7]).unwrap()[0];
        g.release(7);
        assert!(g.fds(&[7]).is_some(), "one reference left");
        g.release(7);
        assert!(g.fds(&[7]).is_none());
        // The duplicate is closed; the original is not.
        assert!(unsafe { libc::fcntl(dup, libc::F_GETFD) } < 0 || dup == null.as_raw_fd());
        assert!(unsafe { libc::fcntl(null.as_raw_fd(), libc::F_GETFD) } >= 0);
        assert!(matches!(
            find_open(Path::new("/nonexistent/vfio/9")),
            Err(e) if e.kind() == io::ErrorKind::NotFound
        ));
    }
}
