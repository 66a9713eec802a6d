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
dmesg | grep -iE "ACPI (BIOS )?Error|ACPI Exception|AE_[A-Z_]+" | sed 's/^/LAB-ACPI-ERROR /'
echo "LAB-ACPI-ERRORS $(dmesg | grep -ciE 'ACPI (BIOS )?Error|ACPI Exception')"
