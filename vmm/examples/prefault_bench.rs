//! prefault_bench: how fast guest RAM is faulted in before VFIO pins it, against the number of
//! threads and the page size, with the VMM's own code (`vmm::vfio::prefault`).
//!
//! Pinning guest RAM for DMA costs mostly the kernel faulting in and zeroing each page; the
//! VMM's helper threads do that part ahead of the (serial) mapper with
//! madvise(MADV_POPULATE_WRITE). This measures that part alone, on this host, without an
//! IOMMU: fresh anonymous memory of each size and page kind, populated by N threads sharing
//! the chunks as the helpers do, GiB/s printed per row. One thread is what the mapper alone
//! pays today. Hugetlb rows run only when the host's 2 MiB pool can hold the size (say
//! "skipped" otherwise).
//!
//! With `--project RAM,DEVICES` (say `1T,8`) it then measures the other half of what the
//! mapper does, pinning pages that are present (io_uring buffer registration stands in for
//! VFIO's pinning: both are `pin_user_pages(FOLL_LONGTERM)` over the range; this host has no
//! IOMMU), and prints a model of the time to DMA-ready for that much RAM from the measured
//! rates: RAM is mapped once per container, whatever the number of devices, in
//! `dma_chunk`-sized entries; the helpers fault in ahead of the serial mapper, so the mapping
//! takes about max(RAM / fault-in rate, RAM / pin rate), plus the IOMMU's page-table writes,
//! which are not measured here.
//!
//! usage: cargo run --release -p vmm --example prefault_bench -- [--sizes 1G,4G] [--threads 1,2,4] [--runs N] [--project 1T,8]

use std::sync::Arc;
use std::time::Instant;

use vmm::vfio::dma::{dma_chunk, RamRegion};
use vmm::vfio::prefault::{populate_write, Plan};

#[derive(Clone, Copy)]
enum Pages {
    Small,
    Thp,
    Huge2M,
}

impl Pages {
    fn name(self) -> &'static str {
        match self {
            Pages::Small => "4K",
            Pages::Thp => "THP",
            Pages::Huge2M => "hugetlb-2M",
        }
    }
}

fn parse_size(s: &str) -> u64 {
    let (n, mul) = match s.chars().last() {
        Some('T') => (&s[..s.len() - 1], 1u64 << 40),
        Some('G') => (&s[..s.len() - 1], 1u64 << 30),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    n.parse::<u64>().expect("a size like 1G") * mul
}

fn free_hugepages_2m() -> u64 {
    std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Seconds to populate `size` bytes of `pages` with `threads` threads; None if unmappable.
fn run(size: u64, pages: Pages, threads: usize) -> Option<f64> {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if let Pages::Huge2M = pages {
        flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB;
    }
    // SAFETY: a fresh mapping, unmapped below.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if m == libc::MAP_FAILED {
        return None;
    }
    let advice = match pages {
        Pages::Small => libc::MADV_NOHUGEPAGE,
        Pages::Thp => libc::MADV_HUGEPAGE,
        Pages::Huge2M => 0,
    };
    if advice != 0 {
        // SAFETY: advice on our own mapping.
        unsafe { libc::madvise(m, size as usize, advice) };
    }
    let region = RamRegion {
        gpa: 0,
        size,
        host: m.cast(),
    };
    let plan = Arc::new(Plan::new(&[region], dma_chunk(size)));
    let start = Instant::now();
    // As in the VMM, chunk 0 is the mapper's: here it is populated by this thread too.
    let first_len = dma_chunk(size).min(size);
    let mut ok = populate_write(m.cast(), first_len);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let p = plan.clone();
                s.spawn(move || p.help(&populate_write))
            })
            .collect();
        for h in hs {
            let _ = h.join();
        }
    });
    let secs = start.elapsed().as_secs_f64();
    ok &= plan.populated() + 1 == plan.len();
    // SAFETY: unmapping what we mapped.
    unsafe { libc::munmap(m, size as usize) };
    ok.then_some(secs)
}

fn main() {
    let mut sizes = vec!["1G".to_string(), "4G".to_string()];
    let mut threads: Vec<usize> = vec![1, 2];
    let mut runs = 3;
    let mut project: Option<(u64, u32)> = None;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--sizes" => sizes = v.split(',').map(String::from).collect(),
            "--threads" => threads = v.split(',').map(|t| t.parse().expect("a count")).collect(),
            "--runs" => runs = v.parse().expect("a count"),
            "--project" => {
                let (ram, devices) = v.split_once(',').unwrap_or((v.as_str(), "8"));
                project = Some((parse_size(ram), devices.parse().expect("a device count")));
            }
            "-h" | "--help" => {
                println!(
                    "usage: prefault_bench [--sizes 1G,4G] [--threads 1,2,4] [--runs N] [--project 1T,8]"
                );
                println!("GiB/s of faulting guest RAM in with N threads (the VMM's prefault");
                println!("helpers), per page kind; the median of N runs (default 3). --project RAM,DEVICES");
                println!("also measures pinning present pages and models the time to DMA-ready");
                return;
            }
            other => {
                eprintln!("prefault_bench: unknown option {other} (--help)");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    println!(
        "{:>6} {:>11} {:>8} {:>9} {:>8}",
        "size", "pages", "threads", "seconds", "GiB/s"
    );
    // (pages, threads) -> GiB/s, at the largest size measured.
    let mut rates: Vec<(&'static str, usize, f64)> = Vec::new();
    for s in &sizes {
        let size = parse_size(s);
        // One uncounted run first: in a VM (this development machine is one) the first use of
        // memory also makes the hypervisor below back it, and whichever row ran first paid for
        // that (4 GiB, 4K, one thread: 8.3 s, then 1.2 s with two).
        let _ = run(size, Pages::Thp, threads.iter().copied().max().unwrap_or(1));
        for pages in [Pages::Small, Pages::Thp, Pages::Huge2M] {
            if let Pages::Huge2M = pages {
                if free_hugepages_2m() * (2 << 20) < size {
                    println!(
                        "{s:>6} {:>11} {:>8} skipped: {} free 2 MiB hugepages, {} needed",
                        pages.name(),
                        "-",
                        free_hugepages_2m(),
                        size >> 21
                    );
                    continue;
                }
            }
            // Interleaved (1, 2, 1, 2, ...) so that the host's noise hits every thread count.
            let mut all: Vec<Vec<f64>> = vec![Vec::new(); threads.len()];
            for _ in 0..runs {
                for (k, &t) in threads.iter().enumerate() {
                    all[k].extend(run(size, pages, t));
                }
            }
            for (&t, mut times) in threads.iter().zip(all) {
                if times.is_empty() {
                    println!(
                        "{s:>6} {:>11} {t:>8} failed (mmap or populate)",
                        pages.name()
                    );
                    continue;
                }
                let med = median(&mut times);
                println!(
                    "{s:>6} {:>11} {t:>8} {med:>9.3} {:>8.2}",
                    pages.name(),
                    gib(size) / med
                );
                rates.retain(|&(p, n, _)| (p, n) != (pages.name(), t));
                rates.push((pages.name(), t, gib(size) / med));
            }
        }
    }
    if let Some((ram, devices)) = project {
        let size = sizes.iter().map(|s| parse_size(s)).max().unwrap_or(1 << 30);
        print_projection(ram, devices, size, runs, &rates);
    }
}

/// `bytes` in GiB.
fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The median of `v` (not empty); sorts it.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// What [`pin_seconds`] pins for a measured `size`: whole GiB (io_uring's most per buffer), at
/// least one.
fn pin_size(size: u64) -> u64 {
    size.max(1 << 30) & !((1 << 30) - 1)
}

/// Seconds to pin `size` bytes of present `pages` (io_uring buffer registration, 1 GiB per
/// buffer: `pin_user_pages(FOLL_LONGTERM)`, as VFIO's type1 and iommufd pin); None where
/// io_uring is unavailable or refuses (RLIMIT_MEMLOCK without CAP_IPC_LOCK).
fn pin_seconds(size: u64, pages: Pages) -> Option<f64> {
    let size = pin_size(size);
    // SAFETY: a new private anonymous mapping, ours until the munmap below.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if m == libc::MAP_FAILED {
        return None;
    }
    let advice = match pages {
        Pages::Thp => libc::MADV_HUGEPAGE,
        _ => libc::MADV_NOHUGEPAGE,
    };
    // SAFETY: advice on our own mapping.
    unsafe { libc::madvise(m, size as usize, advice) };
    let present = populate_write(m.cast(), size);
    // struct io_uring_params (120 bytes), all zero: the defaults.
    let mut params: [u8; 120] = [0; 120];
    // SAFETY: io_uring_setup reads and writes `params` (struct io_uring_params, 120 bytes).
    let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    let mut secs = None;
    if present && ring >= 0 {
        let iov: Vec<libc::iovec> = (0..size >> 30)
            .map(|i| libc::iovec {
                iov_base: m.cast::<u8>().wrapping_add((i << 30) as usize).cast(),
                iov_len: 1 << 30,
            })
            .collect();
        const IORING_REGISTER_BUFFERS: u32 = 0;
        const IORING_UNREGISTER_BUFFERS: u32 = 1;
        let start = Instant::now();
        // SAFETY: the iovecs describe our mapping; the kernel pins it until unregistered.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring,
                IORING_REGISTER_BUFFERS,
                iov.as_ptr(),
                iov.len() as u32,
            )
        };
        if rc == 0 {
            secs = Some(start.elapsed().as_secs_f64());
            // SAFETY: unpins what the call above pinned.
            unsafe {
                libc::syscall(
                    libc::SYS_io_uring_register,
                    ring,
                    IORING_UNREGISTER_BUFFERS,
                    std::ptr::null::<u8>(),
                    0u32,
                )
            };
        }
    }
    if ring >= 0 {
        // SAFETY: the ring's fd, ours.
        unsafe { libc::close(ring as i32) };
    }
    // SAFETY: unmapping what we mapped.
    unsafe { libc::munmap(m, size as usize) };
    secs
}

/// The model of the time to DMA-ready for `ram` bytes and `devices` devices from the rates
/// measured above (fault-in) and pinning measured now at `size`.
fn print_projection(ram: u64, devices: u32, size: u64, runs: usize, rates: &[(&str, usize, f64)]) {
    let chunk = dma_chunk(ram);
    println!();
    println!(
        "projection: {:.0} GiB of guest RAM, {devices} devices in one container (RAM is mapped once for all of them)",
        gib(ram)
    );
    println!(
        "  mapping entries for RAM: {} of {} MiB (type1's default limit is 65535 per container)",
        ram.div_ceil(chunk),
        chunk >> 20
    );
    for pages in [Pages::Small, Pages::Thp] {
        let mut t: Vec<f64> = (0..runs).filter_map(|_| pin_seconds(size, pages)).collect();
        if t.is_empty() {
            println!(
                "  {:>3}: pinning not measured (io_uring unavailable or RLIMIT_MEMLOCK): skipped",
                pages.name()
            );
            continue;
        }
        let pin = gib(pin_size(size)) / median(&mut t);
        println!(
            "  {:>3}: pinning present pages {pin:.1} GiB/s (median of {}, {:.0} GiB)",
            pages.name(),
            t.len(),
            gib(pin_size(size))
        );
        let measured: Vec<_> = rates.iter().filter(|r| r.0 == pages.name()).collect();
        for &&(_, threads, fault) in &measured {
            let secs = gib(ram) / fault.min(pin);
            println!(
                "       fault-in {fault:.2} GiB/s with {threads} thread(s): RAM DMA-mapped ~{secs:.0} s after the VM starts ({})",
                if threads == 1 { "the mapper alone" } else { "mapper + helpers" }
            );
        }
        // Extrapolated, not measured: the most threads measured here, per thread, times the
        // mapper and MAX_HELPERS helpers (a host with that many spare CPUs); memory bandwidth
        // caps it below that on a real host, so the time is a lower bound.
        if let Some(&&(_, threads, fault)) = measured.iter().max_by_key(|r| r.1) {
            let all = vmm::vfio::prefault::MAX_HELPERS + 1;
            let rate = (fault / threads as f64 * all as f64).min(pin);
            println!(
                "       extrapolated to {all} threads (mapper + {} helpers) at {:.2} GiB/s per thread: at best ~{:.0} s",
                all - 1,
                fault / threads as f64,
                gib(ram) / rate
            );
        }
    }
    println!(
        "  not in the model: the IOMMU's page-table writes (no IOMMU here), the devices' resets"
    );
    println!("  (in parallel, one per device), and other load on the host's memory bandwidth");
}
