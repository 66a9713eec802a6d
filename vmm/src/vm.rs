//! Build a VM from its configuration, boot it, and wait for it to end.
//!
//! The order is chosen for first-light latency: files are opened (and checked) before any
//! KVM work; memory slots are registered before the in-kernel irqchip exists (registering
//! after KVM_CREATE_IRQCHIP costs several ms more on some hosts); nothing proportional to guest
//! memory is done eagerly.

use std::ffi::CStr;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypervisor::kvm::KvmHypervisor;
use hypervisor::Hypervisor;

use crate::config::VmConfig;
use crate::interrupts::GsiRouter;
use crate::legacy;
use crate::memory;
use crate::pci_setup::{PciSegment, PciSetupError};
use crate::runloop;
use crate::seccomp::{self, SeccompError, ThreadKind};
use crate::timing::BootTimer;
use crate::vcpu::exit::Buses;
use crate::vcpu::{self, ExitSignal, ParkedVcpu, VcpuHandle, VcpuShared, VmExitReason};
use crate::vfio::{Passthrough, PassthroughError};
use crate::virtio_setup::{self, VirtioSetupError};

pub const KVM_PATH: &CStr = c"/dev/kvm";

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open {what} {path}: {source}")]
    OpenFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{e}{hint}", e = .0, hint = kvm_hint(.0))]
    Hypervisor(#[from] hypervisor::HypervisorError),
    #[error("guest memory layout: {0}")]
    Layout(#[from] arch::layout::LayoutError),
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    #[error("loading the guest: {0}")]
    Boot(#[from] arch::BootError),
    #[error("building the ACPI tables: {0}")]
    Acpi(#[from] arch::AcpiError),
    #[error("setting up vCPU {id}: {source}")]
    Vcpu { id: u32, source: arch::RegsError },
    #[error("setting up vCPU {id}'s thread: {reason}")]
    VcpuThread { id: u32, reason: String },
    #[error(transparent)]
    Legacy(#[from] legacy::LegacyError),
    #[error(transparent)]
    Pci(#[from] PciSetupError),
    #[error(transparent)]
    Virtio(#[from] VirtioSetupError),
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
    #[error("event loop: {0}")]
    EventLoop(std::io::Error),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Preflight(#[from] crate::vfio::preflight::PreflightError),
    #[error(transparent)]
    Passthrough(#[from] PassthroughError),
}

fn kvm_hint(e: &hypervisor::HypervisorError) -> &'static str {
    match e {
        hypervisor::HypervisorError::Open { source, .. } => match source.raw_os_error() {
            Some(libc::ENOENT) => " (is KVM enabled? load kvm_intel or kvm_amd)",
            Some(libc::EACCES) | Some(libc::EPERM) => {
                " (run as root or add the user to the 'kvm' group)"
            }
            _ => "",
        },
        _ => "",
    }
}

fn open(what: &'static str, path: &Path) -> Result<File, VmError> {
    let f = File::open(path).map_err(|source| VmError::OpenFile {
        what,
        path: path.display().to_string(),
        source,
    })?;
    match f.metadata() {
        Ok(m) if m.is_dir() => Err(VmError::OpenFile {
            what,
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory"),
        }),
        _ => Ok(f),
    }
}

/// KVM's supported CPUID, from the per-boot cache when it holds it (see cpuid_cache.rs).
fn supported_cpuid(hv: &KvmHypervisor) -> Result<Vec<hypervisor::CpuidEntry>, VmError> {
    use crate::cpuid_cache;
    let cache = cpuid_cache::default_dir().zip(cpuid_cache::CacheKey::current());
    if let Some((dir, key)) = &cache {
        if let Some(entries) = cpuid_cache::load(dir, key) {
            return Ok(entries);
        }
    }
    let entries = hv.supported_cpuid()?;
    if let Some((dir, key)) = &cache {
        if let Err(e) = cpuid_cache::store(dir, key, &entries) {
            log::debug!("not caching the supported CPUID in {}: {e}", dir.display());
        }
    }
    Ok(entries)
}

/// Boot the VM described by `cfg` on /dev/kvm and run it to the end.
pub fn run(cfg: &VmConfig, start: Instant) -> Result<VmExitReason, VmError> {
    let timer = Arc::new(BootTimer::new(start));
    // Passed-through devices are checked before anything is opened: a host that is not set
    // up for VFIO gets one line saying what to fix, with nothing bound, opened or mapped.
    // (No probing of host facts on the boot path of a VM without passthrough.)
    let passthrough = if cfg.devices.is_empty() {
        Vec::new()
    } else {
        crate::vfio::preflight::check(
            &cfg.devices,
            cfg.memory.size,
            &crate::vfio::preflight::HostFacts::probe(),
        )?
    };
    let mut kernel = open("kernel", &cfg.kernel)?;
    let mut initramfs = cfg
        .initramfs
        .as_deref()
        .map(|p| open("initramfs", p))
        .transpose()?;

    // SIGTERM/SIGINT from here on mean "shut the guest down" (see signals.rs).
    crate::signals::shutdown_events().map_err(VmError::EventLoop)?;
    let hv = Arc::new(KvmHypervisor::open(KVM_PATH)?);
    // The VMM thread starts now. Until it is handed the running VM it takes setup work off
    // this thread's path: once the irqchip exists, it compiles the seccomp filters, reads
    // KVM's supported CPUID (from the per-boot cache) and loads the kernel, initramfs, boot
    // and ACPI tables into guest memory, while this thread creates the PIT, the devices and
    // vCPU 0; this thread collects each result where it needs it. The jobs are queued only
    // after memory registration and the irqchip: both wait for grace periods, and with a
    // thread busy on the other CPU they were several times slower (measured with
    // first_light's phases: the irqchip phase went from 0.06 to 0.23 ms with the kernel
    // loading next to it, memory registration from 0.16 to 0.29 ms with the filters).
    let spin = crate::handoff::spin_budget();
    let vmm_thread = crate::handoff::WorkerThread::spawn("vmm-events").map_err(VmError::Thread)?;
    let phys_bits = arch::layout::host_phys_bits();
    let layout = Arc::new(arch::layout::MemoryLayout::new(cfg.memory.size, phys_bits)?);
    let vm = hv.create_vm()?;
    timer.phase("vm_created");

    let mem = memory::create(&layout.ram_ranges(), &cfg.memory)?;
    let ram_slots = memory::register(vm.as_ref(), &mem)?.len() as u32;
    timer.phase("memory_mapped");

    // VFIO devices open now, and guest RAM starts being DMA-mapped on the vfio thread while
    // the rest of the VM is built and the guest boots (see vfio/dma.rs).
    let exit = Arc::new(ExitSignal::new().map_err(VmError::EventLoop)?);
    let mut passthrough = Passthrough::open(
        &vm,
        &passthrough,
        &cfg.devices,
        &mem,
        ram_slots,
        crate::vfio::VfioThreadContext {
            timer: timer.clone(),
            exit: exit.clone(),
            seccomp: cfg.seccomp,
        },
    )?;

    vm.set_tss_address(arch::layout::KVM_TSS_START)?;
    vm.create_irqchip()?;
    let filters = {
        let mut vcpu = seccomp::Confinement::new(cfg.seccomp);
        if !cfg.devices.is_empty() {
            crate::vfio::seccomp::add_vcpu_rules(&mut vcpu.extra);
        }
        let vmm = seccomp::Confinement::new(cfg.seccomp);
        let hv = hv.clone();
        vmm_thread.submit(move || -> Result<_, VmError> {
            let vcpu = vcpu.compile(ThreadKind::Vcpu)?;
            let vmm = vmm.compile(ThreadKind::Vmm)?;
            Ok((vcpu, vmm, supported_cpuid(&hv)?))
        })
    };
    let loaded = {
        let (mem, layout, timer) = (mem.clone(), layout.clone(), timer.clone());
        let (num_vcpus, cmdline, serial) = (cfg.cpus.boot, cfg.cmdline.clone(), cfg.serial.clone());
        vmm_thread.submit(move || -> Result<arch::EntryPoint, VmError> {
            let entry = arch::load_guest_with_rsdp(
                &mem,
                arch::BootSetup {
                    kernel: &mut kernel,
                    initramfs: initramfs.as_mut(),
                    cmdline: &cmdline,
                    num_vcpus,
                    layout: &layout,
                },
                Some(arch::AcpiTables::RSDP_ADDR),
            )?;
            arch::build_acpi_tables(&arch::AcpiConfig {
                num_vcpus,
                layout: &layout,
                pm: legacy::acpi_pm_ports(),
                serial: legacy::acpi_serial(&serial),
                power_button_gsi: Some(legacy::POWER_BUTTON_GSI),
            })?
            .write(&mem)?;
            timer.phase("kernel_loaded");
            Ok(entry)
        })
    };
    timer.phase("irqchip_created");
    vm.create_pit()?;

    let buses = Arc::new(Buses::default());
    let t = timer.clone();
    let devices = legacy::setup(
        vm.as_ref(),
        &buses,
        &cfg.serial,
        (layout.ram_below_4g, layout.ram_above_4g),
        exit.clone(),
        start,
        Box::new(move || t.phase("first_serial_byte")),
    )?;
    let router = Arc::new(GsiRouter::new(vm.clone()));
    let mapper = passthrough.as_ref().map(Passthrough::bar_mapper);
    let pci = PciSegment::with_bar_mapper(vm.clone(), router, &buses, &layout, mapper)?;
    let virtio = virtio_setup::setup(cfg, &pci, vm.clone(), &mem)?;
    if let Some(p) = passthrough.as_mut() {
        p.attach_all(&pci)?;
    }

    let gone = || VmError::Thread(std::io::Error::other("the VMM thread ended during setup"));
    let (vcpu_filter, vmm_filter, supported) =
        crate::handoff::recv(&filters, spin).map_err(|_| gone())??;
    // The other vCPUs' threads start and confine themselves while this one configures the
    // vCPUs; vCPU 0 runs on this thread.
    let mut parked = Vec::new();
    for id in 1..cfg.cpus.boot {
        let filter = vcpu_filter.clone();
        parked.push(ParkedVcpu::spawn(id, move || Ok(filter)).map_err(VmError::Thread)?);
    }
    type Loaded = std::sync::mpsc::Receiver<Result<arch::EntryPoint, VmError>>;
    let configure = |id: u32, entry: Option<&Loaded>| {
        let vcpu = vm.create_vcpu(id)?;
        // vCPU 0 needs the kernel's entry point: the VMM thread has normally found it by the
        // time the vCPU exists.
        let entry = match entry {
            Some(loaded) => Some(crate::handoff::recv(loaded, spin).map_err(|_| gone())??),
            None => None,
        };
        arch::configure_vcpu(
            vcpu.as_ref(),
            id,
            cfg.cpus.boot,
            layout.phys_bits,
            &supported,
            entry.as_ref(),
            &mem,
        )
        .map_err(|source| VmError::Vcpu { id, source })?;
        Ok::<_, VmError>(vcpu)
    };
    let mut vcpu0 = configure(0, Some(&loaded))?;
    let aps = (1..cfg.cpus.boot)
        .map(|id| configure(id, None))
        .collect::<Result<Vec<_>, _>>()?;
    timer.phase("vcpus_configured");

    let shared = VcpuShared {
        buses,
        exit: exit.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    // Every vCPU thread is confined before any enters the guest: a thread whose setup failed
    // ends the VM before a single guest instruction has run.
    for thread in &parked {
        thread.wait_ready().map_err(|reason| VmError::VcpuThread {
            id: thread.id(),
            reason,
        })?;
    }
    let handles: Vec<VcpuHandle> = aps
        .into_iter()
        .zip(parked)
        .map(|(v, thread)| thread.start(v, shared.clone(), None))
        .collect();

    // The VMM thread serves the running guest (stdin, signals, virtio activation, the VM's
    // end) under its own filter; this thread becomes vCPU 0.
    let caller = vcpu::CallerVcpu::new().map_err(VmError::Thread)?;
    let vmm_thread = {
        let (exit, shared, caller, serial) = (
            exit.clone(),
            shared.clone(),
            caller.clone(),
            cfg.serial.clone(),
        );
        vmm_thread.finish(move || {
            let reason = match vmm_filter.install() {
                Ok(()) => runloop::wait_for_exit(&exit, &devices, &virtio, &serial)
                    .map_err(VmError::EventLoop),
                Err(e) => Err(VmError::from(e)),
            };
            // Whatever ended the event loop, the vCPUs leave the guest before memory goes.
            let timeout = Duration::from_secs(2);
            vcpu::stop_all(handles, Some(&caller), &shared.stop, timeout);
            reason
        })
    };
    crate::signals::block_shutdown_signals();
    let t = timer.clone();
    let first: Box<dyn FnOnce()> = Box::new(move || t.phase("first_kvm_run"));
    match vcpu_filter.install() {
        Ok(()) => {
            vcpu::run_loop(vcpu0.as_mut(), &shared, Some(first));
        }
        Err(e) => shared
            .exit
            .report(VmExitReason::Fatal(format!("vCPU 0: {e}"))),
    }
    caller.done();
    drop(vcpu0);
    let (events, events_thread) = vmm_thread;
    let reason = events.recv().unwrap_or_else(|_| {
        Err(VmError::Thread(std::io::Error::other(
            "the VMM thread ended abnormally",
        )))
    });
    let _ = events_thread.join();
    // Devices stop DMA (reset, unmapped) before guest memory goes away.
    if let Some(p) = passthrough.as_mut() {
        p.shutdown();
    }
    // Keep guest memory alive until every vCPU has left the guest.
    drop(mem);
    reason
}
