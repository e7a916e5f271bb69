#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# extensions/molecule/utils/sweep.sh BASE
#
# Last-resort removal, run by the scenarios' destroy playbook, of what a FAILED Molecule run
# may have left under its own base directory BASE (/var/lib/pv-molecule/<scenario>):
#   processes whose command line names a path under BASE (TERM, then KILL, by pid),
#   mounts under BASE (deepest first), loop devices backed by files under BASE,
#   /etc/fstab lines naming a path under BASE, and finally BASE itself.
# After a successful run the roles' own `state: absent` (cleanup step) has removed all of it
# and this prints nothing. Each removal is printed as "swept: <what>".
set -uo pipefail
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}

BASE=${1:?usage: sweep.sh BASE}
BASE=${BASE%/}
case $BASE in
    /*/pv-molecule/?*) ;;
    *) echo "sweep.sh: refusing $BASE (must be an absolute path under a pv-molecule directory)" >&2; exit 2 ;;
esac

# -- processes (never this script or its ancestors)
alive() {   # a zombie (exited, not reaped) has an empty cmdline; /proc sizes read as 0
    local cmd
    cmd=$(tr -d '\0' 2>/dev/null <"/proc/$1/cmdline") || return 1
    [[ -n $cmd ]]
}
declare -A keep=()
p=$$
while [[ $p =~ ^[0-9]+$ ]] && ((p > 1)); do
    keep[$p]=1
    p=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null)
done
pids=()
for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ -n ${keep[$pid]:-} ]] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$dir/cmdline") || continue
    [[ $cmd == *"$BASE/"* ]] && pids+=("$pid")
done
if ((${#pids[@]})); then
    for pid in "${pids[@]}"; do
        echo "swept: process $pid ($(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-200))"
        kill -TERM "$pid" 2>/dev/null
    done
    for _ in $(seq 100); do
        alive=0
        for pid in "${pids[@]}"; do alive "$pid" && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
fi

# -- mounts, deepest first
while IFS= read -r target; do
    [[ -n $target ]] || continue
    umount "$target" 2>/dev/null || umount -l "$target"
    echo "swept: mount $target"
done < <(awk -v base="$BASE/" 'index($5, base) == 1 {print $5}' /proc/self/mountinfo | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)

# -- loop devices backed by files under BASE
while read -r dev file; do
    [[ $file == "$BASE/"* ]] || continue
    losetup -d "$dev" && echo "swept: loop device $dev ($file)"
done < <(losetup -l -n -O NAME,BACK-FILE 2>/dev/null)

# -- fstab lines naming a path under BASE, with the "# persistent_volumes.docker: <name>" marker
#    line the modules write just above each of theirs. Other runs edit /etc/fstab too: it is
#    read once, and rewritten (in place: it may be a bind mount) only if it did not change since.
fstab_filter() {   # stdin: fstab; $1=drop prints the lines to remove, $1=keep the rest
    awk -v base="$BASE/" -v mode="$1" '
        index($0, base) { if (mode == "drop") { if (held != "") print held; print }
                          held = ""; next }
        { if (held != "" && mode == "keep") print held; held = "" }
        /^# persistent_volumes\.docker: / { held = $0; next }
        mode == "keep" { print }
        END { if (held != "" && mode == "keep") print held }'
}
if [[ -f /etc/fstab ]] && grep -qF -- "$BASE/" /etc/fstab; then
    for _ in 1 2 3 4 5; do
        before=$(cat /etc/fstab)
        drop=$(fstab_filter drop <<<"$before")
        kept=$(fstab_filter keep <<<"$before")
        [[ $(cat /etc/fstab) == "$before" ]] || continue
        printf '%s\n' "$kept" >/etc/fstab
        while IFS= read -r line; do echo "swept: fstab line $line"; done <<<"$drop"
        break
    done
fi

# -- the base directory
if [[ -e $BASE ]]; then
    rm -rf --one-file-system -- "$BASE" && echo "swept: directory $BASE"
fi
exit 0
