# Two passed-through devices in one container (lab scenario vfio-hotplug-two): ivshmem passed
# through at boot, edu hot-added beside it (its self-test must pass); then ivshmem removed while
# edu stays, then edu removed.
insmod /lib/modules/edu_test.ko 2>&1 | sed 's/^/LAB-HP2-INSMOD /'
present() {
    for x in /sys/bus/pci/devices/*; do
        [ "$(cat $x/vendor 2>/dev/null):$(cat $x/device 2>/dev/null)" = "$1" ] && return 0
    done
    return 1
}
present 0x1af4:0x1110 && echo "LAB-HP2-IVSHMEM-AT-BOOT"
echo "LAB-HP2-READY"
i=0; while [ "$(dmesg | grep -c 'EDU-TEST RESULT')" -lt 1 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo "LAB-HP2-EDU $(dmesg | grep 'EDU-TEST RESULT' | head -1 | sed 's/.*EDU-TEST //')"
i=0; while present 0x1af4:0x1110 && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
present 0x1af4:0x1110 || echo "LAB-HP2-IVSHMEM-GONE"
present 0x1234:0x11e8 && echo "LAB-HP2-EDU-STAYS"
i=0; while present 0x1234:0x11e8 && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
present 0x1234:0x11e8 || echo "LAB-HP2-EDU-GONE"
