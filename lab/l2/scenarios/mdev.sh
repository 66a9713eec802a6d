# A mediated device passed through (lab/l1/scenarios/vfio-mdev.sh): L1's mtty mdev, a two-port
# 16550 PCI card (4348:3253) that loops back what is written to a port. The card, the driver that
# took it and its ports; then a pattern written to each port is read back through it (the bytes
# go out through the mdev's I/O BAR and come back by its INTx interrupt), and the interrupt and
# port counters.
d=
for x in /sys/bus/pci/devices/*; do
    [ "$(cat $x/vendor 2>/dev/null):$(cat $x/device 2>/dev/null)" = 0x4348:0x3253 ] && d=$x
done
if [ -z "$d" ]; then
    echo "LAB-MDEV-NODEV (no 4348:3253 in /sys/bus/pci/devices)"
else
    echo "LAB-MDEV-DEV ${d##*/} class=$(cat $d/class) driver=$(basename "$(readlink $d/driver)") irq=$(cat $d/irq)"
    for t in $(ls $d/tty 2>/dev/null); do
        # Under 16 bytes: the sample's 16-byte FIFO reads as empty once 16 bytes fill it (its
        # head wraps onto its tail), and 8250_pci writes 16 at a time.
        want="mtty-$t-ok"
        # One descriptor open for both directions the whole time (the port stays up).
        exec 3<>/dev/$t
        stty -F /dev/$t raw -echo clocal 9600 2>/dev/null
        dd bs=1 count=${#want} <&3 > /tmp/rx 2>/dev/null &
        rx=$!
        sleep 0.2
        printf '%s' "$want" >&3
        i=0
        while kill -0 $rx 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done
        kill $rx 2>/dev/null
        exec 3<&-
        got=$(cat /tmp/rx 2>/dev/null)
        if [ "$got" = "$want" ]; then r=ok; else r="bad got=[$got]"; fi
        echo "LAB-MDEV-LOOPBACK $t $r"
    done
    grep -E "^ *$(cat $d/irq):" /proc/interrupts | sed 's/^/LAB-MDEV-IRQ /'
    grep -E '^[0-9]+: uart:16550' /proc/tty/driver/serial 2>/dev/null | sed 's/^/LAB-MDEV-UART /'
fi
