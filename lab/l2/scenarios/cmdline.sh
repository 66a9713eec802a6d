# Echo every lab.token=VALUE found in /proc/cmdline so the host can check it arrived intact.
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        lab.token=*) echo "LAB-TOKEN-SEEN ${arg#lab.token=}" ;;
    esac
done
echo "LAB-CMDLINE $(cat /proc/cmdline)"
