# An NMI from the host (lab scenario api-nmi, lab/l1/scenarios/api-nmi.sh): the guest says it
# is ready, L1 sends vm.nmi, and the guest's kernel reports the NMI it did not expect (no NMI
# source it knows of raised it): "NMI received for unknown reason" on every CPU it reached.
echo "LAB-NMI-READY $(cut -d' ' -f1 /proc/uptime)"
# Until every CPU has reported it (or 60 s).
cpus=$(grep -c ^processor /proc/cpuinfo)
i=0
while [ "$(dmesg | grep -c 'NMI received for unknown reason')" -lt "$cpus" ] && [ $i -lt 600 ]; do
    sleep 0.1; i=$((i+1))
done
dmesg | grep 'NMI received for unknown reason' | sed 's/^\[[^]]*\] *//; s/^/LAB-NMI-SEEN /'
# Which CPUs took it (the reason byte is port 0x61's, whose refresh bit toggles).
dmesg | grep 'NMI received for unknown reason' | sed -n 's/.* on CPU \([0-9]*\)\..*/LAB-NMI-ON-CPU \1/p'
echo "LAB-NMI-CPUS $(dmesg | grep -c 'NMI received for unknown reason')"
