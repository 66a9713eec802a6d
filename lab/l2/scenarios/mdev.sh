# A mediated device passed through (lab/l1/scenarios/vfio-mdev.sh): L1's mtty mdev, a two-port
# 16550 PCI card (4348:3253) that loops back what is written to a port. The card, the driver that
# took it and its ports; then a pattern written to each port is read back through it.
d=
for x in /sys/bus/pci/devices/*; do
    [ "$(cat $x/vendor 2>/dev/null):$(cat $x/device 2>/dev/null)" = 0x4348:0x3253 ] && d=$x
done
if [ -z "$d" ]; then
    echo "LAB-MDEV-NODEV (no 4348:3253 in /sys/bus/pci/devices)"
else
    echo "LAB-MDEV-DEV ${d##*/} class=$(cat $d/class) driver=$(basename "$(readlink $d/driver)") irq=$(cat $d/irq)"
    for t in $(ls $d/tty 2>/dev/null); do
        stty -F /dev/$t raw -echo 9600 2>/dev/null
        want="LAB-MDEV-PATTERN-$t-0123456789"
        dd if=/dev/$t of=/tmp/rx bs=1 count=${#want} 2>/dev/null &
        rx=$!
        sleep 0.2
        printf '%s' "$want" > /dev/$t
        i=0
        while kill -0 $rx 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done
        kill $rx 2>/dev/null
        got=$(cat /tmp/rx 2>/dev/null)
        if [ "$got" = "$want" ]; then r=ok; else r="bad got=[$got]"; fi
        echo "LAB-MDEV-LOOPBACK $t $r"
    done
fi
