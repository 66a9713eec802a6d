//! Faulting guest RAM in ahead of the DMA mapper, on several threads.
//!
//! Most of what pinning guest RAM for DMA costs is the kernel faulting in and zeroing each
//! page; the pinning itself, on present pages, is a walk of the page tables. Type1 maps one
//! call at a time per container (its lock is held while it pins), so the mapper cannot be
//! parallel, but the faulting-in can: helper threads claim chunks ahead of the mapper and
//! populate them with `madvise(MADV_POPULATE_WRITE)` (Linux 5.14), which faults the pages in
//! for writing without touching what they hold; the mapper then pins pages that are there.
//! A helper skips chunks the mapper has reached (the pin faults them in itself), so nothing
//! waits on a helper, and without helpers (one CPU, an old kernel) the mapper works alone as
//! before. Helpers run under their own seccomp filter (`ThreadKind::Prefault`) and, like the
//! mapper, at idle priority where the process may come back from it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::dma::RamRegion;

/// `MADV_POPULATE_WRITE` (include/uapi/asm-generic/mman-common.h).
pub const MADV_POPULATE_WRITE: i32 = 23;

/// The most helper threads.
pub const MAX_HELPERS: usize = 8;

/// One chunk of guest RAM, in the order the mapper maps them.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    host: *mut u8,
    len: u64,
}

/// Chunks shared by the mapper and the helpers.
pub struct Plan {
    chunks: Vec<Chunk>,
    /// The next chunk a helper takes.
    next: AtomicUsize,
    /// The chunk the mapper is on (helpers skip it and those before).
    mapper_at: AtomicUsize,
    /// Chunks populated by helpers (for the log line and tests).
    populated: AtomicUsize,
    stop: AtomicBool,
}

// SAFETY: the chunks are addresses of guest RAM, which the VMM keeps mapped until the helpers
// have been joined (see `Helpers::join`); they are only handed to madvise.
unsafe impl Send for Plan {}
// SAFETY: as above; the shared state is atomics.
unsafe impl Sync for Plan {}

impl Plan {
    /// `regions` cut into `chunk`-byte pieces, the mapper's order.
    pub fn new(regions: &[RamRegion], chunk: u64) -> Self {
        let mut chunks = Vec::new();
        for r in regions {
            let mut off = 0;
            while off < r.size {
                let len = chunk.min(r.size - off);
                chunks.push(Chunk {
                    host: r.host.wrapping_add(off as usize),
                    len,
                });
                off += len;
            }
        }
        Plan {
            chunks,
            next: AtomicUsize::new(0),
            mapper_at: AtomicUsize::new(0),
            populated: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The mapper starts on chunk `i`.
    pub fn mapper_at(&self, i: usize) {
        self.mapper_at.store(i, Ordering::Release);
    }

    /// Helpers stop after their current chunk.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// How many chunks helpers populated.
    pub fn populated(&self) -> usize {
        self.populated.load(Ordering::Acquire)
    }

    /// One helper's work: claim chunks ahead of the mapper and populate them with `populate`
    /// (madvise in the VMM; a recorder in tests), [`SLICE`] bytes per call, until none are
    /// left, the mapper overtook them all, or [`stop`](Self::stop). A chunk the mapper reaches
    /// while a helper is on it is left to the mapper (its pinning faults the rest in; two
    /// threads faulting one range only contend for its page-table locks), and a stop takes
    /// effect after the current slice. Stops early when `populate` fails (an old kernel).
    pub fn help(&self, populate: &dyn Fn(*mut u8, u64) -> bool) {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            let Some(c) = self.chunks.get(i) else {
                return;
            };
            // The mapper is on it or past it (it starts on chunk 0): go on from past it.
            let at = self.mapper_at.load(Ordering::Acquire);
            if i <= at {
                let _ = self.next.fetch_max(at + 1, Ordering::AcqRel);
                continue;
            }
            let mut off = 0;
            while off < c.len {
                if self.stop.load(Ordering::Acquire) {
                    return;
                }
                if self.mapper_at.load(Ordering::Acquire) >= i {
                    break;
                }
                let host = c.host.wrapping_add(off as usize);
                let len = (SLICE - host as u64 % SLICE).min(c.len - off);
                if !populate(host, len) {
                    return;
                }
                off += len;
            }
            if off == c.len {
                self.populated.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

/// The most a helper populates in one call: one 2 MiB (huge) page, up to the next 2 MiB
/// boundary. `madvise(MADV_POPULATE_WRITE)` holds the process's mmap lock for the whole range
/// it is given, and a thread that maps or unmaps anything meanwhile (a new thread's stack, a
/// large allocation, a BAR) waits for it — and, the lock being fair, so does every page fault
/// after that writer, the vCPUs' faults on guest RAM among them. A whole 64 MiB chunk is
/// 10–20 ms of zeroing at this machine's fault-in rates (prefault_bench), far more in the
/// nested lab: there, beside one helper on 64 MiB chunks, the VMM's set-up took 2.2 s instead
/// of 0.5 s and the guest reached init 3 s later (`lab/out/bench-slice-smp2`); per 2 MiB it is
/// one huge page's zeroing. The calls cost one system call per 2 MiB.
pub const SLICE: u64 = 2 << 20;

/// `madvise(MADV_POPULATE_WRITE)` on `len` bytes at `host`; false when the kernel has no
/// such advice (before 5.14: EINVAL) or refuses.
pub fn populate_write(host: *mut u8, len: u64) -> bool {
    // SAFETY: `host..host+len` is guest RAM, mapped for the VM's life; populating faults pages
    // in and leaves their contents as they are.
    unsafe { libc::madvise(host.cast(), len as usize, MADV_POPULATE_WRITE) == 0 }
}

/// The environment variable that caps the helpers (`0`: none), for hosts where the spare
/// CPUs belong to something else, and to measure the mapping without them.
pub const THREADS_ENV: &str = "VMM_VFIO_PREFAULT_THREADS";

/// How many helpers a VM's mapping gets: one per CPU this process may use beyond the
/// mapper's and the guest's `vcpus` (the guest boots while RAM is being mapped, and a helper
/// on a CPU a vCPU needs slows the boot more than it speeds the mapping), at most
/// [`MAX_HELPERS`] (or [`THREADS_ENV`], if lower). None where the CPUs are all taken: in the
/// nested lab (2 CPUs, a 1-vCPU guest, 4 GiB with edu; `lab/bench.sh --smp 2`) one helper
/// beside the mapper made the boot 21 % slower than without a device and the first DMA 18 %
/// later than the mapper alone, which slowed the boot 5 % (`lab/out/bench-control-smp2`).
pub fn helper_count(vcpus: u32) -> usize {
    spare_cpus(
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        vcpus,
        std::env::var(THREADS_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok()),
    )
}

/// [`helper_count`] for `cpus` usable CPUs and an optional cap.
fn spare_cpus(cpus: usize, vcpus: u32, cap: Option<usize>) -> usize {
    let spare = cpus
        .saturating_sub(1)
        .saturating_sub(vcpus as usize)
        .min(MAX_HELPERS);
    cap.map_or(spare, |c| c.min(spare))
}

/// The helper threads of one mapping.
pub struct Helpers {
    threads: Vec<JoinHandle<()>>,
    plan: Arc<Plan>,
}

impl Helpers {
    /// Starts `count` helpers on `plan`, each confined by `filter` before its first chunk and
    /// at idle priority when `idle` (see dma.rs's `can_leave_idle`).
    pub fn spawn(
        count: usize,
        plan: Arc<Plan>,
        filter: crate::seccomp::Compiled,
        idle: bool,
    ) -> Helpers {
        let mut threads = Vec::new();
        for i in 0..count {
            let (plan, filter) = (plan.clone(), filter.clone());
            let t = std::thread::Builder::new()
                .name(format!("vfio-prefault{i}"))
                .spawn(move || {
                    if let Err(e) = filter.install() {
                        log::warn!("vfio: prefault helper not started: {e}");
                        return;
                    }
                    if idle {
                        super::dma::set_policy(libc::SCHED_IDLE);
                    }
                    plan.help(&populate_write);
                });
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    log::debug!("vfio: prefault helper {i} not started: {e}");
                    break;
                }
            }
        }
        Helpers { threads, plan }
    }

    /// Stops the helpers and waits for them: guest RAM may go only after this (dropping
    /// them does the same).
    pub fn join(mut self) -> usize {
        self.finish();
        self.plan.populated()
    }

    fn finish(&mut self) {
        self.plan.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn regions() -> Vec<RamRegion> {
        vec![
            RamRegion {
                gpa: 0,
                size: 3 << 20,
                host: 0x1000_0000 as *mut u8,
            },
            RamRegion {
                gpa: 1 << 32,
                size: 2 << 20,
                host: 0x4000_0000 as *mut u8,
            },
        ]
    }

    #[test]
    fn chunks_follow_the_regions_in_the_mappers_order() {
        let p = Plan::new(&regions(), 1 << 20);
        assert_eq!(p.len(), 5);
        assert_eq!(p.chunks[3].host as usize, 0x4000_0000);
        assert_eq!(p.chunks[4].host as usize, 0x4010_0000);
    }

    #[test]
    fn helpers_populate_every_chunk_ahead_of_the_mapper_once() {
        let p = Plan::new(&regions(), 1 << 20);
        let seen = Mutex::new(Vec::new());
        p.help(&|h, l| {
            seen.lock().unwrap().push((h as usize, l));
            true
        });
        // Chunk 0 is the mapper's first: left to it.
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0], (0x1010_0000, 1 << 20));
        assert_eq!(p.populated(), 4);
    }

    #[test]
    fn chunks_the_mapper_reached_are_skipped_and_a_stop_ends_the_helper() {
        let p = Plan::new(&regions(), 1 << 20);
        p.mapper_at(3);
        let seen = Mutex::new(Vec::new());
        p.help(&|h, _| {
            seen.lock().unwrap().push(h as usize);
            true
        });
        assert_eq!(seen.into_inner().unwrap(), [0x4010_0000]);

        let p = Plan::new(&regions(), 1 << 20);
        p.stop();
        p.help(&|_, _| panic!("stopped"));
        // A kernel without the advice: the helper gives up at once.
        let p = Plan::new(&regions(), 1 << 20);
        let calls = AtomicUsize::new(0);
        p.help(&|_, _| {
            calls.fetch_add(1, Ordering::AcqRel);
            false
        });
        assert_eq!(calls.load(Ordering::Acquire), 1);
    }

    #[test]
    fn a_chunk_is_populated_in_slices_and_left_once_the_mapper_reaches_it() {
        // One 64 MiB region starting 1 MiB past a 2 MiB boundary, in 16 MiB chunks.
        let region = RamRegion {
            gpa: 0,
            size: 64 << 20,
            host: 0x1010_0000 as *mut u8,
        };
        let p = Plan::new(&[region], 16 << 20);
        let seen = Mutex::new(Vec::new());
        p.help(&|h, l| {
            let mut s = seen.lock().unwrap();
            s.push((h as usize, l));
            // The mapper reaches chunk 2 while the helper is on its third slice.
            if s.len() == 9 + 3 {
                p.mapper_at(2);
            }
            true
        });
        let seen = seen.into_inner().unwrap();
        // Chunk 1 (chunk 0 is the mapper's): a 1 MiB slice up to the boundary, seven of
        // 2 MiB, 1 MiB to the chunk's end; never more than a 2 MiB page per call.
        assert_eq!(seen[0], (0x1110_0000, 1 << 20));
        assert_eq!(seen[1], (0x1120_0000, 2 << 20));
        assert_eq!(seen[8], (0x1200_0000, 1 << 20));
        assert!(seen
            .iter()
            .all(|&(h, l)| h as u64 / SLICE == (h as u64 + l - 1) / SLICE));
        // Chunk 2: three slices, then left to the mapper; chunk 3 whole. Only whole chunks
        // count as populated.
        assert_eq!(seen[9], (0x1210_0000, 1 << 20));
        assert_eq!(seen[12].0, 0x1310_0000);
        assert_eq!(seen.len(), 9 + 3 + 9);
        assert_eq!(p.populated(), 2);

        // A stop ends the helper after the slice it is on, not after its chunk.
        let p = Plan::new(&[region], 16 << 20);
        let calls = AtomicUsize::new(0);
        p.help(&|_, _| {
            if calls.fetch_add(1, Ordering::AcqRel) == 1 {
                p.stop();
            }
            true
        });
        assert_eq!(calls.load(Ordering::Acquire), 2);
        assert_eq!(p.populated(), 0);
    }

    #[test]
    fn helpers_get_the_cpus_the_mapper_and_the_vcpus_leave() {
        // The nested lab: 2 CPUs, 1 vCPU: none. One CPU: none.
        assert_eq!(spare_cpus(2, 1, None), 0);
        assert_eq!(spare_cpus(1, 1, None), 0);
        // A GPU server: 192 CPUs, a 32-vCPU guest: the most there may be, or the cap.
        assert_eq!(spare_cpus(192, 32, None), MAX_HELPERS);
        assert_eq!(spare_cpus(192, 32, Some(2)), 2);
        assert_eq!(spare_cpus(192, 32, Some(0)), 0);
        // 8 CPUs, 4 vCPUs: 3 spare after the mapper.
        assert_eq!(spare_cpus(8, 4, None), 3);
        assert_eq!(spare_cpus(8, 400, None), 0);
    }

    #[test]
    fn populating_real_memory_faults_it_in_without_changing_it() {
        let len = 4 << 20;
        let mapping = pci::vfio::HostMapping::anonymous(len).unwrap();
        let p = mapping.as_ptr();
        // SAFETY: inside the mapping.
        unsafe { *p.add(5000) = 42 };
        // (Linux 5.14 and later, as every machine this runs on has.)
        assert!(populate_write(p, len as u64), "MADV_POPULATE_WRITE failed");
        let mut vec = vec![0u8; len / 4096];
        // SAFETY: mincore fills one byte per page of the mapping.
        assert_eq!(unsafe { libc::mincore(p.cast(), len, vec.as_mut_ptr()) }, 0);
        assert!(vec.iter().all(|&b| b & 1 == 1), "every page is resident");
        // SAFETY: inside the mapping.
        assert_eq!(unsafe { *p.add(5000) }, 42);
    }
}
