//! DMA mapping of guest RAM (IOVA = guest physical address), off the boot's critical path.
//!
//! Pinning guest RAM costs about 0.25 s per GiB with 4 KiB pages (the kernel faults in and
//! zeroes every page), so it runs on a helper thread started as soon as guest memory exists,
//! overlapped with ACPI tables, kernel loading, vCPU setup and the guest's own early boot.
//! Nothing can DMA before the guest's driver sets Bus Master Enable, so the device model makes
//! the first bus-master enable wait on [`DmaGate`] ([`pci::vfio::DeviceGate`]); guest
//! accesses to the device itself wait only for its start-of-VM reset, which the same thread
//! does first. A mapping error ends the VM with a message saying so.
//!
//! The thread runs at idle priority (SCHED_IDLE) where it can come back from it (CAP_SYS_NICE
//! or RLIMIT_NICE: [`can_leave_idle`]): on a host with a spare core it runs there at full
//! speed; on a busy or single-core host it takes only time the vCPUs leave idle, so it never
//! slows the boot itself, and once a device is waiting on the gate (the guest driver set Bus
//! Master Enable before the mapping finished) it goes back to normal priority for the rest.
//! A process that could not come back maps at normal priority from the start, so a waiting
//! guest is never starved. Helper threads fault RAM in ahead of it (prefault.rs). RAM is
//! mapped in 64 MiB chunks (more for very large guests: [`dma_chunk`]).
//!
//! With `--memory hugepages=on` the pages come from the hugetlb pool and are pinned 2 MiB at
//! a time (512 times fewer faults and page-table entries to walk), which cuts the cost to a
//! fraction; with `prefault=on` the zeroing moves to the mmap before boot instead.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pci::vfio::{DeviceGate, VfioDeviceOps};

/// Where DMA mappings go: the VFIO container (or a fake).
pub trait DmaMapper: Send + Sync {
    /// Maps `size` bytes of this process at `host` for device DMA at `iova`.
    ///
    /// # Safety
    /// `host..host + size` must stay mapped until [`DmaMapper::unmap`] removes the range.
    unsafe fn map(&self, iova: u64, size: u64, host: *mut u8) -> io::Result<()>;
    fn unmap(&self, iova: u64, size: u64) -> io::Result<()>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Pending,
    Done,
    Failed(String),
}

const CANCELLED: &str = "the VM ended before guest RAM was DMA-mapped";

/// Guest RAM is DMA-mapped at least this much at a time.
pub const DMA_CHUNK: u64 = 64 << 20;
/// The most mappings guest RAM takes. Each VFIO_IOMMU_MAP_DMA call is one entry of the
/// container, and type1 allows 65535 by default (`dma_entry_limit`), shared with the
/// peer-to-peer BAR mappings; 64 MiB chunks would cap a VM at ~4 TiB.
pub const RAM_MAP_ENTRIES: u64 = 4096;
/// The largest single mapping call (how long a cancelled VM may wait for the one under way).
pub const DMA_CHUNK_MAX: u64 = 64 << 30;

/// How much guest RAM one mapping call covers for a VM with `total` bytes of it: 64 MiB, or
/// the power of two that keeps the count at [`RAM_MAP_ENTRIES`] (plus one per region) for a
/// larger VM (512 MiB at 2 TiB).
pub fn dma_chunk(total: u64) -> u64 {
    total
        .div_ceil(RAM_MAP_ENTRIES)
        .next_power_of_two()
        .clamp(DMA_CHUNK, DMA_CHUNK_MAX)
}

/// The device reset and RAM mapping progress, waited on by the device models.
pub struct DmaGate {
    state: Mutex<(Phase, Phase)>,
    cv: Condvar,
    /// vCPUs blocked on the DMA mapping right now.
    dma_waiters: AtomicUsize,
    /// The VM is ending: stop mapping.
    cancelled: AtomicBool,
    /// A guest driver has enabled bus mastering on some device.
    bus_master_seen: AtomicBool,
}

impl Default for DmaGate {
    fn default() -> Self {
        DmaGate {
            state: Mutex::new((Phase::Pending, Phase::Pending)),
            cv: Condvar::new(),
            dma_waiters: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            bus_master_seen: AtomicBool::new(false),
        }
    }
}

impl DmaGate {
    fn lock(&self) -> MutexGuard<'_, (Phase, Phase)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, reset: Option<Phase>, dma: Option<Phase>) {
        let mut s = self.lock();
        if let Some(r) = reset {
            s.0 = r;
        }
        if let Some(d) = dma {
            s.1 = d;
        }
        self.cv.notify_all();
    }

    fn wait(&self, pick: impl Fn(&(Phase, Phase)) -> &Phase) -> Result<(), String> {
        let mut s = self.lock();
        loop {
            match pick(&s) {
                Phase::Pending => s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Phase::Done => return Ok(()),
                Phase::Failed(e) => return Err(e.clone()),
            }
        }
    }

    /// Whether the RAM mapping has finished (either way).
    pub fn dma_settled(&self) -> bool {
        self.lock().1 != Phase::Pending
    }

    /// Stops a mapping still in progress (the VM is ending) after its current chunk.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// Whether [`DmaGate::cancel`] was called.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Whether a guest driver has enabled bus mastering (DMA) on a device yet.
    pub fn bus_master_seen(&self) -> bool {
        self.bus_master_seen.load(Ordering::Acquire)
    }

    /// Whether a vCPU is waiting for the mapping (the guest wants DMA now).
    pub fn dma_wanted(&self) -> bool {
        self.dma_waiters.load(Ordering::Acquire) > 0
    }
}

impl DeviceGate for DmaGate {
    fn wait_ready(&self) -> Result<(), String> {
        self.wait(|s| &s.0)
    }

    fn wait_dma_ready(&self) -> Result<(), String> {
        self.bus_master_seen.store(true, Ordering::Release);
        self.dma_waiters.fetch_add(1, Ordering::AcqRel);
        let r = self.wait(|s| &s.1);
        self.dma_waiters.fetch_sub(1, Ordering::AcqRel);
        r
    }

    fn dma_ready_now(&self) -> Option<Result<(), String>> {
        self.bus_master_seen.store(true, Ordering::Release);
        match &self.lock().1 {
            Phase::Pending => None,
            Phase::Done => Some(Ok(())),
            Phase::Failed(e) => Some(Err(e.clone())),
        }
    }
}

/// One guest RAM region: guest physical address, size, host address.
#[derive(Clone, Copy, Debug)]
pub struct RamRegion {
    pub gpa: u64,
    pub size: u64,
    pub host: *mut u8,
}

// SAFETY: a plain address of guest memory, which the VMM keeps mapped for the VM's life; the
// mapping thread only hands it to the kernel.
unsafe impl Send for RamRegion {}

/// What the mapping thread does and whom it tells.
pub struct MappingJob {
    pub mapper: Arc<dyn DmaMapper>,
    pub regions: Vec<RamRegion>,
    /// Devices to reset before the guest may touch them, by name.
    pub resets: Vec<(String, Arc<dyn VfioDeviceOps>)>,
    pub gate: Arc<DmaGate>,
    /// Called with how long the mapping took, when it succeeded.
    pub on_done: Box<dyn FnOnce(Duration, u64) + Send>,
    /// Called with the error message when it failed (ends the VM).
    pub on_error: Box<dyn FnOnce(String) + Send>,
    /// Map at idle priority (only where the thread can come back: [`can_leave_idle`]).
    pub idle: bool,
    /// Threads faulting RAM in ahead of the mapper, on `plan` (prefault.rs).
    pub helpers: Option<(Arc<super::prefault::Plan>, super::prefault::Helpers)>,
    /// Workers resetting several devices at once (reset.rs); `None`: one after the other.
    pub pool: Option<Arc<super::reset::ResetPool>>,
}

/// Whether a thread of this process that went to SCHED_IDLE may come back to SCHED_OTHER:
/// with CAP_SYS_NICE, or an RLIMIT_NICE of 20 or more. Without, a mapper at idle priority on
/// a busy host would stay starved while the guest waits for its DMA; it maps at normal
/// priority from the start instead. (Asked before the threads are confined.)
pub fn can_leave_idle() -> bool {
    const CAP_SYS_NICE: u32 = 23;
    let cap = super::preflight::has_effective_cap(CAP_SYS_NICE);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct.
    let nice = unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut lim) } == 0 && lim.rlim_cur >= 20;
    cap || nice
}

/// Sets the calling thread's scheduling policy (SCHED_IDLE or SCHED_OTHER); false when the
/// kernel refuses (going back from SCHED_IDLE needs CAP_SYS_NICE or RLIMIT_NICE).
/// (The raw system call: musl's `sched_setscheduler` wrapper only returns ENOSYS.)
pub(crate) fn set_policy(policy: libc::c_int) -> bool {
    // SAFETY: sched_param is plain data; all-zero is priority 0 (what SCHED_IDLE and
    // SCHED_OTHER require).
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the kernel only reads `param`.
    unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0 as libc::pid_t,
            policy,
            &param as *const libc::sched_param,
        ) == 0
    }
}

fn map_all(
    mapper: &dyn DmaMapper,
    regions: &[RamRegion],
    gate: &DmaGate,
    idle: bool,
    plan: Option<&super::prefault::Plan>,
) -> Result<u64, String> {
    let chunk = dma_chunk(regions.iter().map(|r| r.size).sum());
    let (mut done, mut entries) = (0u64, 0u64);
    let mut idle = idle && set_policy(libc::SCHED_IDLE);
    for r in regions {
        let mut off = 0;
        while off < r.size {
            if gate.cancelled.load(Ordering::Acquire) {
                return Err(CANCELLED.into());
            }
            if idle && gate.dma_wanted() {
                idle = !set_policy(libc::SCHED_OTHER);
                log::debug!("vfio: a device waits for DMA; mapping at normal priority");
            }
            let len = chunk.min(r.size - off);
            if let Some(p) = plan {
                p.mapper_at(entries as usize);
            }
            // SAFETY: guest RAM stays mapped until the VFIO teardown has unmapped it; the
            // chunk lies inside the region.
            let host = r.host.wrapping_add(off as usize);
            unsafe { mapper.map(r.gpa + off, len, host) }.map_err(|e| {
                let hint = match e.raw_os_error() {
                    Some(libc::ENOSPC) => {
                        " (the container's mapping limit, vfio_iommu_type1's dma_entry_limit, \
                         is reached)"
                    }
                    Some(libc::ENOMEM) => {
                        " (the host is out of memory, or the locked-memory limit \
                         (RLIMIT_MEMLOCK) is below guest RAM)"
                    }
                    _ => "",
                };
                format!(
                    "VFIO DMA mapping of guest RAM at {:#x} (+{}) failed after {} in {entries} \
                     mappings: {e}{hint}; the VM ends and what was mapped is unmapped",
                    r.gpa + off,
                    pci::format_size(len),
                    pci::format_size(done),
                )
            })?;
            off += len;
            done += len;
            entries += 1;
        }
    }
    Ok(done)
}

impl MappingJob {
    /// Resets the devices, then maps the RAM, on a new thread.
    pub fn spawn(self) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("vfio-dma".into())
            .spawn(move || self.run())
    }

    /// The same, on this thread.
    pub fn run(self) {
        match &self.pool {
            Some(p) => p.reset_all(&self.resets, super::reset::BEFORE_USE),
            None => super::reset::reset_each(&self.resets, super::reset::BEFORE_USE),
        }
        self.gate.set(Some(Phase::Done), None);
        let start = Instant::now();
        let plan = self.helpers.as_ref().map(|(p, _)| p.as_ref());
        let result = map_all(
            self.mapper.as_ref(),
            &self.regions,
            &self.gate,
            self.idle,
            plan,
        );
        // The helpers are done (or stop now): nothing touches guest RAM behind the VMM's back.
        if let Some((plan, helpers)) = self.helpers {
            let n = helpers.join();
            log::debug!(
                "vfio: prefault helpers populated {n} of {} chunks",
                plan.len()
            );
        }
        match result {
            Ok(bytes) => {
                self.gate.set(None, Some(Phase::Done));
                (self.on_done)(start.elapsed(), bytes);
            }
            Err(e) => {
                self.gate.set(None, Some(Phase::Failed(e.clone())));
                if e != CANCELLED {
                    (self.on_error)(e);
                }
            }
        }
    }
}

/// Undoes [`MappingJob`]'s RAM mapping (errors are logged: the container's close unmaps
/// everything anyway).
pub fn unmap_ram(mapper: &dyn DmaMapper, regions: &[RamRegion]) {
    for r in regions {
        if let Err(e) = mapper.unmap(r.gpa, r.size) {
            log::debug!("vfio: DMA unmap of {:#x}: {e}", r.gpa);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pci::vfio::{FakeVfioCall, FakeVfioDevice};

    /// Records mappings; fails maps at `fail_at` IOVA.
    #[derive(Default)]
    pub(crate) struct FakeDma {
        pub maps: Mutex<Vec<(u64, u64)>>,
        pub unmaps: Mutex<Vec<(u64, u64)>>,
        pub fail_at: Option<u64>,
    }

    impl DmaMapper for FakeDma {
        unsafe fn map(&self, iova: u64, size: u64, _host: *mut u8) -> io::Result<()> {
            if self.fail_at == Some(iova) {
                return Err(io::Error::from_raw_os_error(libc::ENOMEM));
            }
            self.maps.lock().unwrap().push((iova, size));
            Ok(())
        }
        fn unmap(&self, iova: u64, size: u64) -> io::Result<()> {
            self.unmaps.lock().unwrap().push((iova, size));
            Ok(())
        }
    }

    fn regions() -> Vec<RamRegion> {
        vec![
            RamRegion {
                gpa: 0,
                size: 3 << 30,
                host: std::ptr::null_mut(),
            },
            RamRegion {
                gpa: 1 << 32,
                size: 1 << 30,
                host: std::ptr::null_mut(),
            },
        ]
    }

    #[test]
    fn the_mapping_thread_resets_maps_and_opens_the_gate() {
        let dma = Arc::new(FakeDma::default());
        let gate = Arc::new(DmaGate::default());
        let dev = Arc::new(FakeVfioDevice::new(vec![0; 256]).resettable());
        let done = Arc::new(Mutex::new(None));
        let d = done.clone();
        let job = MappingJob {
            mapper: dma.clone(),
            regions: regions(),
            resets: vec![("0000:00:04.0".into(), dev.clone())],
            gate: gate.clone(),
            on_done: Box::new(move |_, bytes| *d.lock().unwrap() = Some(bytes)),
            on_error: Box::new(|e| panic!("{e}")),
            idle: false,
            helpers: None,
            pool: None,
        };
        assert!(!gate.dma_settled());
        let waiter = {
            let g = gate.clone();
            std::thread::spawn(move || (g.wait_ready(), g.wait_dma_ready()))
        };
        job.spawn().unwrap().join().unwrap();
        assert_eq!(waiter.join().unwrap(), (Ok(()), Ok(())));
        let maps = dma.maps.lock().unwrap().clone();
        assert_eq!(dma_chunk(4 << 30), DMA_CHUNK);
        assert_eq!(maps.len(), 64, "64 MiB chunks");
        assert_eq!(maps[0], (0, DMA_CHUNK));
        assert_eq!(maps[48], (1 << 32, DMA_CHUNK));
        assert_eq!(maps.iter().map(|m| m.1).sum::<u64>(), 4 << 30);
        assert_eq!(*done.lock().unwrap(), Some(4 << 30));
        assert_eq!(dev.take_calls(), vec![FakeVfioCall::Reset]);
        unmap_ram(dma.as_ref(), &regions());
        assert_eq!(dma.unmaps.lock().unwrap().len(), 2);
    }

    #[test]
    fn large_guests_stay_far_below_the_containers_entry_limit() {
        let entries = |total: u64| total.div_ceil(dma_chunk(total));
        assert_eq!(dma_chunk(256 << 30), DMA_CHUNK);
        assert_eq!(dma_chunk(2 << 40), 512 << 20);
        assert_eq!(entries(2 << 40), 4096);
        assert!(entries(8 << 40) <= RAM_MAP_ENTRIES);
        assert_eq!(dma_chunk(1 << 50), DMA_CHUNK_MAX);
        // 2 TiB in two regions (below 3 GiB, above 4 GiB), each a multiple of the chunk.
        let dma = FakeDma::default();
        let ram = [
            RamRegion {
                gpa: 0,
                size: 3 << 30,
                host: std::ptr::null_mut(),
            },
            RamRegion {
                gpa: 1 << 32,
                size: (2 << 40) - (3 << 30),
                host: std::ptr::null_mut(),
            },
        ];
        map_all(&dma, &ram, &DmaGate::default(), false, None).unwrap();
        let maps = dma.maps.lock().unwrap();
        assert_eq!(maps.len(), 4096);
        assert_eq!(maps.iter().map(|m| m.1).sum::<u64>(), 2 << 40);
    }

    #[test]
    fn a_mapping_error_fails_the_gate_and_is_reported() {
        let dma = Arc::new(FakeDma {
            fail_at: Some(1 << 32),
            ..Default::default()
        });
        let gate = Arc::new(DmaGate::default());
        let err = Arc::new(Mutex::new(String::new()));
        let e2 = err.clone();
        MappingJob {
            mapper: dma,
            regions: regions(),
            resets: vec![],
            gate: gate.clone(),
            on_done: Box::new(|_, _| panic!("must fail")),
            on_error: Box::new(move |e| *e2.lock().unwrap() = e),
            idle: false,
            helpers: None,
            pool: None,
        }
        .run();
        let msg = err.lock().unwrap().clone();
        assert!(
            msg.contains("0x100000000") && msg.contains("64 MiB"),
            "{msg}"
        );
        assert!(msg.contains("after 3 GiB in 48 mappings"), "{msg}");
        assert!(msg.contains("RLIMIT_MEMLOCK"), "ENOMEM's hint: {msg}");
        assert!(gate.wait_ready().is_ok(), "the device itself is usable");
        assert_eq!(gate.wait_dma_ready(), Err(msg));
        assert!(gate.dma_settled());
    }

    #[test]
    fn a_cancelled_mapping_stops_quietly() {
        let gate = Arc::new(DmaGate::default());
        gate.cancel();
        MappingJob {
            mapper: Arc::new(FakeDma::default()),
            regions: regions(),
            resets: vec![],
            gate: gate.clone(),
            on_done: Box::new(|_, _| panic!("must not finish")),
            on_error: Box::new(|e| panic!("must not report: {e}")),
            idle: false,
            helpers: None,
            pool: None,
        }
        .run();
        assert!(gate.wait_dma_ready().is_err());
    }
}
