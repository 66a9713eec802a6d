# VFIO hotplug of QEMU's edu device (lab scenario vfio-edu-hotplug, lab/l1/scenarios/vfio-edu-hotplug.sh):
# the guest boots with no device and edu_test.ko loaded; L1 hot-adds the edu (vm.add-device) and
# the driver's probe runs its self-test (ident, liveness, MSI, DMA round trip); L1 removes it
# (vm.remove-device: the driver's remove runs, the slot is ejected) and adds it again: the
# self-test runs and passes again.
insmod /lib/modules/edu_test.ko 2>&1 | sed 's/^/LAB-HPV-INSMOD /'
echo "LAB-HPV-READY $(cut -d' ' -f1 /proc/uptime)"
results() { dmesg | grep -c 'EDU-TEST RESULT'; }
edu_present() {
    for x in /sys/bus/pci/devices/*; do
        [ "$(cat $x/vendor 2>/dev/null):$(cat $x/device 2>/dev/null)" = 0x1234:0x11e8 ] && at=${x##*/} && return 0
    done
    return 1
}
waitn() { i=0; while [ "$(results)" -lt "$1" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; }
waitn 1
dmesg | grep 'EDU-TEST' | sed 's/^\[[^]]*\] *//; s/^edu_test: //; s/^/LAB-EDU /'
# Where the guest found it, before L1 (which removes it once it reads LAB-HPV-FIRST) takes it.
edu_present && echo "LAB-HPV-AT $at"
echo "LAB-HPV-FIRST $(dmesg | grep 'EDU-TEST RESULT' | head -1 | sed 's/.*EDU-TEST //') at $(cut -d' ' -f1 /proc/uptime)"
i=0; while edu_present && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
edu_present && echo "LAB-HPV-STILL-THERE" || echo "LAB-HPV-GONE at $(cut -d' ' -f1 /proc/uptime)"
waitn 2
echo "LAB-HPV-SECOND $(dmesg | grep 'EDU-TEST RESULT' | sed -n 2p | sed 's/.*EDU-TEST //')"
grep -w edu_test /proc/interrupts | tr -s " " | sed "s/^ */LAB-EDU-IRQ /"
