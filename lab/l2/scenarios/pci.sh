# The PCI topology the guest sees through ACPI: every device with its IDs and BARs, whether
# config space goes through ECAM (MMCONFIG from the MCFG), and any ACPI errors.
for d in /sys/bus/pci/devices/*; do
    [ -e "$d" ] || continue
    echo "LAB-PCI-DEV ${d##*/} $(cat $d/vendor):$(cat $d/device) class=$(cat $d/class)"
    i=0
    while read -r start end flags; do
        [ "$start" != 0x0000000000000000 ] && echo "LAB-PCI-BAR ${d##*/} $i $start-$end flags=$flags"
        i=$((i+1))
    done < "$d/resource"
done
dmesg | grep -iE "MMCONFIG|ECAM" | sed 's/^/LAB-PCI-DMESG /'

# ECAM, as the guest observes it:
#  * the MCFG table (/sys/firmware/acpi/tables/MCFG): base address and bus range of segment 0;
#  * Linux accepted the window: "PCI MMCONFIG" in /proc/iomem (absent when it said "not using
#    MMCONFIG");
#  * the window decodes config space: each device's first 64 bytes read through an mmap of the
#    window (/dev/mem: needs iomem=relaxed, as the kernel claims the window) equal what sysfs
#    reads (through 0xcf8: x86 Linux uses ECAM only above offset 0xff), and an absent function
#    (00:1f.7) reads all-ones there.
mcfg_u() {  # mcfg_u OFFSET BYTES: little-endian unsigned from the MCFG table
    v=0 i=0
    for b in $(od -An -tu1 -j$1 -N$2 /sys/firmware/acpi/tables/MCFG 2>/dev/null); do
        v=$((v + (b << (8 * i)))); i=$((i + 1))
    done
    echo $v
}
base=$(mcfg_u 44 8)
echo "LAB-PCI-ECAM mcfg=$(printf '0x%x' $base) segment=$(mcfg_u 52 2) buses=$(mcfg_u 54 1)-$(mcfg_u 55 1)"
echo "LAB-PCI-ECAM-IOMEM $(grep -m1 'PCI MMCONFIG' /proc/iomem | sed 's/^ *//')"
ecam_off() {  # ecam_off 0000:BB:DD.F
    bus=$(echo $1 | cut -d: -f2) df=$(echo $1 | cut -d: -f3)
    echo $((base + (0x$bus << 20) + (0x${df%.*} << 15) + (${df#*.} << 12)))
}
if [ "$base" != 0 ]; then
    for d in /sys/bus/pci/devices/*; do
        [ -e "$d" ] || continue
        want=$(head -c 64 $d/config | od -An -tx1 -v | tr -d ' \n')
        if out=$(bar-poke /dev/mem $(ecam_off ${d##*/}) read $want 64 2>&1); then r=PASS; else r=FAIL; fi
        echo "LAB-PCI-ECAM-READBACK ${d##*/} $r"
        [ $r = PASS ] || echo "LAB-PCI-ECAM-READBACK-DETAIL $out"
    done
    if [ ! -e /sys/bus/pci/devices/0000:00:1f.7 ]; then
        if out=$(bar-poke /dev/mem $(ecam_off 0000:00:1f.7) read ffffffff 4 2>&1); then r=PASS; else r=FAIL; fi
        echo "LAB-PCI-ECAM-ABSENT 0000:00:1f.7 $r"
        [ $r = PASS ] || echo "LAB-PCI-ECAM-ABSENT-DETAIL $out"
    fi
fi
dmesg | grep -iE "ACPI (BIOS )?Error|ACPI Exception|AE_[A-Z_]+" | sed 's/^/LAB-ACPI-ERROR /'
echo "LAB-ACPI-ERRORS $(dmesg | grep -ciE 'ACPI (BIOS )?Error|ACPI Exception')"
