# A display-class device passed through (bochs-display, 1234:1111: BAR0 16 MiB prefetchable
# framebuffer, BAR2 4 KiB MMIO), alone or with other devices: list every PCI device with its
# BAR sizes (pcidevs.sh), then each display-class device (class 0x03xxxx).
. /lab/scenarios/pcidevs.sh
lab_pci_devs
n=0
for d in /sys/bus/pci/devices/*; do
    case "$(cat $d/class)" in
        0x03*) n=$((n+1)); echo "LAB-DISPLAY ${d##*/} $(cat $d/vendor):$(cat $d/device) class=$(cat $d/class)" ;;
    esac
done
echo "LAB-DISPLAY-COUNT $n"
