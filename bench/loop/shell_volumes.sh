#!/usr/bin/env bash
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# bench/loop/shell_volumes.sh ROOT PREFIX COUNT SIZE [LABEL]
#
# Contender (a) of bench/loop/bench_loop.py: the bare shell version of what the
# volume module does for a loop volume, one volume after the other, no checks,
# no idempotence: sparse image, mkfs.ext4, fstab line, mount -o loop, Docker
# local volume bound to the mountpoint. Volumes are named PREFIX001..PREFIXnnn;
# images go to ROOT/images, mountpoints to ROOT/mounts.
set -euo pipefail
root=$1 prefix=$2 count=$3 size=$4 label=${5:-pv-bench=loop}
mkdir -p "$root/images" "$root/mounts"
for i in $(seq -f '%03g' 1 "$count"); do
    name=$prefix$i
    img=$root/images/$name.img
    mnt=$root/mounts/$name
    truncate -s "$size" "$img"
    mkfs.ext4 -q -L "${name:0:16}" "$img"
    echo "$img $mnt ext4 defaults,nofail,loop 0 2" >> /etc/fstab
    mkdir -p "$mnt"
    mount -o loop "$img" "$mnt"
    docker volume create --driver local -o type=none -o o=bind -o "device=$mnt" \
        --label "$label" "$name" > /dev/null
done
