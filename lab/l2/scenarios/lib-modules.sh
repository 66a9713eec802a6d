# Sourced by scenarios: `load_modules NAME...` insmods NAME and what it depends on, in the
# dependency order recorded in /lab/modules.avail (modules are carried but not auto-loaded).
load_modules() {
    for want in "$@"; do
        for m in $(cat /lab/modules.avail); do
            insmod "/lib/modules/$m" 2>/dev/null
            [ "$m" = "$want.ko" ] && break
        done
    done
}
