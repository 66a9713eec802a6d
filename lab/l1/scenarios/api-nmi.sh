#!/bin/sh
# Scenario api-nmi (with lab/l2/scenarios/nmi.sh): a Debian guest with two vCPUs booted through
# the API; once it is up, L1 sends vm.nmi and the guest's kernel reports the NMI on each vCPU.
S=/tmp/nmi.sock
LOG=/tmp/nmi.log
. /lab/l1/lib-api-vm.sh
API_VCPUS=2 api_vm_boot nmi
waitfor "LAB-NMI-READY"
api $S PUT vm.nmi
api_vm_end
echo "LAB-NMI-VMM-EXIT $rc"
cat $LOG
exit $rc
