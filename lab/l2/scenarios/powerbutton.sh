# The host presses the ACPI power button (SIGTERM to the vmm: GED interrupt -> _EVT ->
# Notify(PWRB, 0x80)); the ACPI button driver turns it into a KEY_POWER input event, which
# we wait for on the "Power Button" event device, then power off as an init system would.
insmod /lib/modules/button.ko 2>/dev/null
insmod /lib/modules/evdev.ko 2>/dev/null
# A disk, when the VM has one (api-powerbutton: the host reads vm.counters while the guest
# waits), is probed now: the kernel reads its partition table; the guest reads its first
# sector too and says what it found (not a LAB-PWRBTN- line: the host waits for those).
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_blk
if [ -b /dev/vda ]; then
    echo "LAB-PB-DISK vda $(dd if=/dev/vda bs=512 count=1 2>/dev/null | wc -c) bytes read"
fi
dev=
for n in /sys/class/input/event*; do
    [ "$(cat "$n/device/name" 2>/dev/null)" = "Power Button" ] && dev=/dev/input/${n##*/}
done
if [ -z "$dev" ]; then
    echo "LAB-PWRBTN-NODEV"; ls /sys/class/input
else
    # Open the device before saying so: the host presses the button once it reads READY, and
    # an event device delivers only to readers that have it open.
    exec 3< "$dev"
    echo "LAB-PWRBTN-READY $dev"
    head -c 24 <&3 > /dev/null
    echo "LAB-PWRBTN-PRESSED"
fi
