# Sourced by the L1 sides of the scenarios that drive a vmm through its API (hotplug-*,
# vfio-*-hotplug): one vmm serving $S with its output in $LOG, a VM created and booted on it
# (api_vm_boot), a pattern waited for in $LOG (waitfor), and the end (api_vm_end: the guest
# powered off, vmm.shutdown, the vmm's exit status in $rc).
waitfor() { i=0; while ! grep -q "$1" "$LOG" && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; }
# api_vm_boot L2_SCENARIO [MEMORY_EXTRA] [CONFIG_EXTRA]: MEMORY_EXTRA goes inside "memory"
# (e.g. ,\"shared\":true), CONFIG_EXTRA after the other fields (e.g. ,\"devices\":[...]);
# API_VCPUS (default 1) vCPUs.
api_vm_boot() {
    : > "$LOG"
    $VMM --api-socket path=$S > "$LOG" 2>&1 & pid=$!
    i=0; while ! api $S GET vmm.ping > /dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    api $S PUT vm.create "{\"cpus\":{\"boot_vcpus\":${API_VCPUS:-1},\"max_vcpus\":${API_VCPUS:-1}},\"memory\":{\"size\":268435456$2},\"payload\":{\"kernel\":\"$VMLINUX\",\"initramfs\":\"$INITRD\",\"cmdline\":\"$CMDLINE quiet lab.scenario=$1\"},\"serial\":{\"mode\":\"Tty\"},\"console\":{\"mode\":\"Off\"}$3}"
    api $S PUT vm.boot
}
api_vm_end() {
    waitfor "LAB-L2-DONE"
    i=0; while ! api $S GET vm.info 2>/dev/null | grep -q '"state":"Shutdown"' && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
    api $S PUT vmm.shutdown
    wait $pid
    rc=$?
}
