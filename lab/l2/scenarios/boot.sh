# Basic facts about the guest; the host side checks these lines.
echo "LAB-UNAME $(uname -r)"
echo "LAB-CMDLINE $(cat /proc/cmdline)"
echo "LAB-NPROC $(nproc)"
echo "LAB-CPUINFO-PROCESSORS $(grep -c ^processor /proc/cpuinfo)"
echo "LAB-MEMTOTAL $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2) kB"
echo "LAB-CPU-TSC-DEADLINE $(grep -m1 "^flags" /proc/cpuinfo | grep -cw tsc_deadline_timer)"
echo "LAB-CPU-MODEL $(grep -m1 "^model name" /proc/cpuinfo | cut -d: -f2 | sed "s/^ *//")"
