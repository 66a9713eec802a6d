# QEMU's edu device (1234:11e8) passed through: edu_test.ko (lab/l2/edu/) runs its self-test in
# probe (ident, liveness, factorial, MSI raised by 0x60 and by the factorial, DMA RAM->device->RAM)
# and logs "EDU-TEST ..." lines, printed here as LAB-EDU lines, ending in
# "EDU-TEST RESULT PASS|FAIL". The interrupt's /proc/interrupts line is printed as LAB-EDU-IRQ.
# Module parameters: lab.edu_args=qword=1,dma_bits=32 on the kernel command line.
# LAB-EDU-FIRST-DMA uptime=<s>: when the first DMA (RAM -> device) completed, in guest uptime.
args=
for arg in $(cat /proc/cmdline); do
    case "$arg" in lab.edu_args=*) args=$(echo "${arg#lab.edu_args=}" | tr ',' ' ') ;; esac
done
d=
for x in /sys/bus/pci/devices/*; do
    [ "$(cat $x/vendor 2>/dev/null):$(cat $x/device 2>/dev/null)" = 0x1234:0x11e8 ] && d=$x
done
if [ -z "$d" ]; then
    echo "LAB-EDU-NODEV (no 1234:11e8 in /sys/bus/pci/devices)"
else
    echo "LAB-EDU-DEV ${d##*/} class=$(cat $d/class) resource0=$(head -1 $d/resource)"
    insmod /lib/modules/edu_test.ko $args 2>&1 | sed 's/^/LAB-EDU-INSMOD /'
    dmesg | grep 'EDU-TEST' | sed 's/^\[[^]]*\] *//; s/^edu_test: //; s/^/LAB-EDU /'
    # When the first DMA completed, in guest uptime (the printk time of its line; lab.py bench)
    t=$(dmesg | grep -m1 'EDU-TEST dma-to-device src=' | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p')
    echo "LAB-EDU-FIRST-DMA uptime=${t:-none}"
    # The bus-master enable the guest saw wait for the VMM's DMA mapping (over 1 s).
    us=$(dmesg | sed -n 's/.*EDU-TEST set-master us=\([0-9]*\).*/\1/p' | head -1)
    [ "${us:-0}" -ge 1000000 ] && echo "LAB-EDU-BME-WAITED us=$us"
    grep -w edu_test /proc/interrupts | tr -s " " | sed "s/^ */LAB-EDU-IRQ /"  # not "edu": Rescheduling
fi
