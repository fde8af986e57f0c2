#!/usr/bin/env bash
# Builds the Keel appliance image: a Debian 12 root filesystem with the Keel
# package installed, BIOS GRUB, serial console, hugepages and isolated CPUs on
# the kernel command line, and a data partition for the store and token.
#
#   sudo bash Appliance/image/build.sh [OUTDIR]      (default .build/image)
#
# Output in OUTDIR: keel.raw (bare metal: dd it to a disk), keel.qcow2 (VMs,
# compressed), keel_VERSION_amd64.deb (upgrades: the binaries alone) and
# sizes.txt. Needs root (mmdebstrap --mode=root), network access to Debian's
# mirrors, and no loop devices or partition support in the kernel: the file
# systems are written into the image file at their offsets.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$(mkdir -p "${1:-$repo/.build/image}" && cd "${1:-$repo/.build/image}" && pwd)"
[ "$(id -u)" -eq 0 ] || { echo "build.sh: run as root" >&2; exit 1; }
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"

# Sizes (MiB). The root partition is about half full; the data partition holds
# the store (a full Internet table with its history is a few hundred MiB).
ROOT_MIB="${KEEL_ROOT_MIB:-1536}"
DATA_MIB="${KEEL_DATA_MIB:-512}"

step() { echo "== $*"; }
t0=$(date +%s)

step "packages for the build"
export DEBIAN_FRONTEND=noninteractive
need="mmdebstrap qemu-utils grub-pc-bin grub-common e2fsprogs fdisk xz-utils dpkg-dev patchelf"
missing=""; for p in $need; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then apt-get update -qq; apt-get install -y -qq --no-install-recommends $missing >/dev/null; fi

step "Keel package"
bash "$here/package.sh" "$out"
deb="$(ls -t "$out"/keel_*_amd64.deb | head -n 1)"

step "root filesystem (mmdebstrap, Debian 12)"
root="$out/rootfs"
rm -rf "$root" "$out/data"
mkdir -p "$out/data"
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources="http://deb.debian.org/debian"
# The Keel package's own dependencies (DPDK's runtime libraries and PMDs,
# dpdk-devbind.py, SQLite, libnuma) come in through apt when it is installed.
mmdebstrap --variant=minbase --mode=root --quiet \
    --include=systemd,systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,iproute2,iputils-ping,procps,less,openssh-server,ca-certificates \
    --customize-hook="copy-in $deb /tmp" \
    --customize-hook='chroot "$1" sh -c "apt-get install -y -qq --no-install-recommends /tmp/*.deb >/dev/null && rm /tmp/*.deb"' \
    --customize-hook='chroot "$1" apt-get clean' \
    bookworm "$root" "$sources"

step "configuration"
# A router has no sound, graphics, cameras, radios or Bluetooth: their kernel
# modules are a third of the root filesystem. (A kernel package upgrade
# brings them back; they are harmless there.)
for m in "$root"/lib/modules/*; do
    rm -rf "$m"/kernel/sound "$m"/kernel/drivers/gpu "$m"/kernel/drivers/media "$m"/kernel/drivers/net/wireless \
        "$m"/kernel/net/wireless "$m"/kernel/net/mac80211 "$m"/kernel/drivers/bluetooth "$m"/kernel/net/bluetooth \
        "$m"/kernel/drivers/staging "$m"/kernel/drivers/iio "$m"/kernel/drivers/input/touchscreen
    chroot "$root" depmod "$(basename "$m")"
done
root_uuid="$(cat /proc/sys/kernel/random/uuid)"
data_uuid="$(cat /proc/sys/kernel/random/uuid)"
kver="$(basename "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)" | sed 's/^vmlinuz-//')"
ln -sf "vmlinuz-$kver" "$root/boot/vmlinuz"
ln -sf "initrd.img-$kver" "$root/boot/initrd.img"
echo keel > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 keel\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
cat > "$root/etc/fstab" <<EOF
UUID=$root_uuid / ext4 defaults,errors=remount-ro 0 1
UUID=$data_uuid /var/lib/keel ext4 defaults 0 2
EOF
# The management NIC: DHCP (the data NICs are DPDK's before networkd starts).
mkdir -p "$root/etc/systemd/network"
cat > "$root/etc/systemd/network/10-management.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF
chroot "$root" systemctl enable systemd-networkd.service serial-getty@ttyS0.service >/dev/null 2>&1
# A new machine id on first boot (each appliance its own).
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# SSH: keys only (none are installed: add /root/.ssh/authorized_keys). Host
# keys are made on first boot, not shipped in every copy of the image.
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' > "$root/etc/systemd/system/ssh.service.d/keel.conf"
printf 'PasswordAuthentication no\nPermitRootLogin prohibit-password\n' > "$root/etc/ssh/sshd_config.d/keel.conf"
# Kernel command line: serial console (last = /dev/console), the huge pages
# keel.yaml asks for, and the data-plane CPUs kept from the scheduler.
pages="$(awk '/^hugepages:/ {h=1; next} h && /^[^ #]/ {h=0} h && $1 == "pages:" {print $2}' "$root/etc/keel/keel.yaml")"
cpus="$(awk '/^lcores:/ {l=1; next} l && /^[^ #]/ {l=0} l && $1 ~ /^(io|workers):/ {gsub(/[^0-9,]/, "", $2); if ($2 != "") s = s (s ? "," : "") $2} END {print s}' "$root/etc/keel/keel.yaml")"
cmdline="root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200n8 hugepages=${pages:-640} default_hugepagesz=2M"
[ -n "$cpus" ] && cmdline="$cmdline isolcpus=$cpus nohz_full=$cpus rcu_nocbs=$cpus"
mkdir -p "$root/boot/grub/i386-pc"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$root/boot/grub/i386-pc/"
cat > "$root/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=2
set default=0
menuentry "Keel ($kver)" {
    linux /boot/vmlinuz $cmdline
    initrd /boot/initrd.img
}
EOF
echo "$cmdline" > "$out/cmdline.txt"
# The data partition starts empty: first boot makes the store and the token there.
mkdir -p "$root/var/lib/keel"
chmod 0700 "$root/var/lib/keel" "$out/data"

step "disk image (MBR: root ext4, data ext4; GRUB in the gap before the first partition)"
raw="$out/keel.raw"
rm -f "$raw" "$out/keel.qcow2"
total=$((1 + ROOT_MIB + DATA_MIB))
truncate -s "${total}M" "$raw"
sfdisk --quiet "$raw" <<EOF
label: dos
start=2048, size=$((ROOT_MIB * 2048)), type=83, bootable
start=$(((1 + ROOT_MIB) * 2048)), size=$((DATA_MIB * 2048)), type=83
EOF
mkfs.ext4 -q -F -L keel-root -U "$root_uuid" -E offset=$((1 << 20)),nodiscard -d "$root" "$raw" "${ROOT_MIB}M"
mkfs.ext4 -q -F -L keel-data -U "$data_uuid" -E offset=$(((1 + ROOT_MIB) << 20)),nodiscard -d "$out/data" "$raw" "${DATA_MIB}M"
# GRUB for BIOS: boot.img in the MBR's code area (its partition table kept),
# core.img (with what reading ext4 on an MBR disk needs) from sector 1.
grub-mkimage -O i386-pc -o "$out/core.img" -p "(hd0,msdos1)/boot/grub" \
    biosdisk part_msdos ext2 normal linux boot configfile serial terminal echo test search
[ "$(stat -c %s "$out/core.img")" -lt $(((2048 - 1) * 512)) ] || { echo "build.sh: core.img does not fit before the first partition" >&2; exit 1; }
dd if=/usr/lib/grub/i386-pc/boot.img of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$out/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none
rm -f "$out/core.img"

step "qcow2 (compressed) and sizes"
qemu-img convert -c -O qcow2 "$raw" "$out/keel.qcow2"
# keel.raw.xz is for downloads; a test run (KEEL_IMAGE_XZ=0, Tests/run.sh)
# boots the qcow2 and skips the minute xz takes.
rm -f "$out/keel.raw.xz"
[ "${KEEL_IMAGE_XZ:-1}" = 0 ] || xz -T0 -1 -c "$raw" > "$out/keel.raw.xz"
used="$(du -sm "$root" | cut -f1)"
{
    echo "kernel $kver"
    echo "root_filesystem_mib $used"
    echo "raw_mib $((total))"
    [ -f "$out/keel.raw.xz" ] && echo "raw_xz_mib $(( $(stat -c %s "$out/keel.raw.xz") >> 20 ))"
    echo "qcow2_mib $(( $(stat -c %s "$out/keel.qcow2") >> 20 ))"
    echo "deb_mib $(( $(stat -c %s "$deb") >> 20 ))"
    echo "build_seconds $(( $(date +%s) - t0 ))"
} | tee "$out/sizes.txt"
rm -rf "$root" "$out/data"
echo "image: $raw, $out/keel.qcow2 (cmdline: $cmdline)"
