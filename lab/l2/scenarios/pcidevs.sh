# Every PCI device the guest enumerated: IDs, class, driver, and each BAR's size and type
# decoded from sysfs "resource" (start end flags):
#   LAB-PCIDEV <bdf> <vendor>:<device> class=<class> driver=<driver|->
#   LAB-BAR <bdf> <vendor>:<device> bar<N>|rom size=<16M|64G|256|...> <io|mem>[,64bit][,pref] start=<addr>
# plus LAB-PCI-RESOURCE-ERRORS <n> (kernel BAR assignment complaints, each also as LAB-PCI-KMSG).
# display.sh, ivshmem.sh and rootport.sh source this file for lab_pci_devs / lab_pci_find /
# lab_size / lab_bar_patterns.
lab_size() {  # bytes -> 64G / 16M / 4K / 256
    if [ $(($1 % 1073741824)) -eq 0 ]; then echo "$(($1 >> 30))G"
    elif [ $(($1 % 1048576)) -eq 0 ]; then echo "$(($1 >> 20))M"
    elif [ $(($1 % 1024)) -eq 0 ]; then echo "$(($1 >> 10))K"
    else echo "$1"; fi
}
lab_pci_find() {  # vendor:device (0x1af4:0x1110) -> first matching sysfs dir
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat $d/vendor 2>/dev/null):$(cat $d/device 2>/dev/null)" = "$1" ] && { echo "$d"; return 0; }
    done
    return 1
}
lab_bar_patterns() {  # resource-file prefix OFFSET:HEXPATTERN... -> writes then checks each
    # (256 bytes) with bar-poke, printing "<prefix>-POKE ..." per step and "<prefix> RESULT PASS|FAIL".
    local res=$1 prefix=$2 ok=PASS
    shift 2
    for spec in "$@"; do
        off=${spec%%:*} pat=${spec#*:}
        for op in write read; do
            out=$(bar-poke $res $off $op $pat 256 2>&1) || ok=FAIL
            echo "$prefix-POKE $out"
        done
    done
    echo "$prefix RESULT $ok"
}
lab_pci_devs() {
    for d in /sys/bus/pci/devices/*; do
        [ -e "$d" ] || continue
        id="$(cat $d/vendor):$(cat $d/device)"
        drv=-; [ -e $d/driver ] && drv=$(basename $(readlink $d/driver))
        echo "LAB-PCIDEV ${d##*/} $id class=$(cat $d/class) driver=$drv"
        i=0
        while read -r start end flags; do
            if [ $i -le 6 ] && [ $((flags)) -ne 0 ] && [ $((end)) -ne 0 ]; then
                kind=mem; [ $((flags & 0x100)) -ne 0 ] && kind=io
                [ $((flags & 0x100000)) -ne 0 ] && kind="$kind,64bit"
                [ $((flags & 0x2000)) -ne 0 ] && kind="$kind,pref"
                name=bar$i; [ $i -eq 6 ] && name=rom
                echo "LAB-BAR ${d##*/} $id $name size=$(lab_size $((end - start + 1))) $kind start=$start"
            fi
            i=$((i+1))
        done < "$d/resource"
    done
    dmesg | grep -iE "BAR [0-9].*(no space|failed to assign|can't claim|conflict)|no compatible bridge window" \
        | sed 's/^/LAB-PCI-KMSG /'
    echo "LAB-PCI-RESOURCE-ERRORS $(dmesg | grep -ciE "BAR [0-9].*(no space|failed to assign|can't claim|conflict)|no compatible bridge window")"
}
[ "$scenario" = pcidevs ] && lab_pci_devs
