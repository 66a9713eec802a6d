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
//! usage: cargo run --release -p vmm --example prefault_bench -- [--sizes 1G,4G] [--threads 1,2,4] [--runs N]

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--sizes" => sizes = v.split(',').map(String::from).collect(),
            "--threads" => threads = v.split(',').map(|t| t.parse().expect("a count")).collect(),
            "--runs" => runs = v.parse().expect("a count"),
            "-h" | "--help" => {
                println!("usage: prefault_bench [--sizes 1G,4G] [--threads 1,2,4] [--runs N]");
                println!("GiB/s of faulting guest RAM in with N threads (the VMM's prefault");
                println!("helpers), per page kind; the median of N runs (default 3)");
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
    for s in &sizes {
        let size = parse_size(s);
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
            for &t in &threads {
                let mut times: Vec<f64> = (0..runs).filter_map(|_| run(size, pages, t)).collect();
                if times.is_empty() {
                    println!(
                        "{s:>6} {:>11} {t:>8} failed (mmap or populate)",
                        pages.name()
                    );
                    continue;
                }
                times.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let med = times[times.len() / 2];
                let gib = size as f64 / (1u64 << 30) as f64;
                println!(
                    "{s:>6} {:>11} {t:>8} {med:>9.3} {:>8.2}",
                    pages.name(),
                    gib / med
                );
            }
        }
    }
}
