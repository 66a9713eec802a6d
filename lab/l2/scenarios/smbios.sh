# The VM's SMBIOS identity as the guest kernel read it (dmi_scan.c: the _SM3_ entry point
# found by scanning 0xf0000-0xfffff): /sys/class/dmi/id and, for the OEM strings (type 11),
# the raw table the kernel exports at /sys/firmware/dmi/tables/DMI.
d=/sys/class/dmi/id
for f in sys_vendor product_name product_version product_serial product_uuid product_sku \
    product_family chassis_vendor chassis_type chassis_asset_tag bios_vendor; do
    echo "LAB-DMI $f=$(cat $d/$f 2>&1)"
done
t=/sys/firmware/dmi/tables
if [ -r $t/DMI ]; then
    echo "LAB-DMI-ENTRY $(head -c 5 $t/smbios_entry_point)"
    # Strings are NUL-terminated in the table (the first follows its structure's count byte).
    tr '\000' '\n' < $t/DMI | grep -a -o 'lab-oem-[[:print:]]*' | sed 's/^/LAB-DMI-OEM /'
else
    echo "LAB-DMI-NO-TABLES"
fi
