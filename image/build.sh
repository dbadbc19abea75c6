#!/usr/bin/env bash
# Build the Gatehouse appliance image from Debian's packages and a static
# gatehouse binary. Packages are fetched with `apt-get download` and
# unpacked with `dpkg -x` into the build folder; nothing is installed on
# the build host. Outputs, in image/out/ (image/out/metal/ for IMAGE=metal):
#
#   gatehouse.img     raw disk: BIOS boot (syslinux) and UEFI boot
#                     (systemd-boot) of one kernel and initramfs, from one
#                     FAT partition
#   gatehouse.qcow2   the same disk as qcow2 (uncompressed: compressed
#                     clusters make every read at boot slow)
#   vmlinuz, initramfs.img   for direct kernel boot (qemu -kernel/-initrd)
#   manifest.txt      package versions and file sizes
#
#   IMAGE=cloud|metal  cloud: Debian's cloud kernel with virtio drivers
#                      (default); metal: the generic kernel with common
#                      NIC and storage drivers, for bare-metal boxes
#   GATEHOUSE_BIN=FILE use this static gatehouse instead of building one
#   CARGO_TARGET_DIR   where cargo builds (default /var/tmp/gatehouse-target)
#
# Needs on the host (scripts/install-deps.sh installs them): apt-get, dpkg,
# cpio, zstd, depmod (kmod), mkfs.vfat (dosfstools),
# mtools, syslinux, sfdisk (fdisk), qemu-img (qemu-utils) and a Rust
# toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

IMAGE=${IMAGE:-cloud}
case $IMAGE in
cloud)
    kernel_meta=linux-image-cloud-amd64
    out=$root/image/out
    ;;
metal)
    kernel_meta=linux-image-amd64
    out=$root/image/out/metal
    ;;
*)
    echo "IMAGE must be cloud or metal, not $IMAGE" >&2
    exit 2
    ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/gatehouse-target}"
rust_target=x86_64-unknown-linux-gnu

# Downloaded packages are kept between builds; everything else is rebuilt.
cache=$root/image/out/debs
work=$out/work
rootfs=$work/rootfs
mkdir -p "$cache" "$out"
rm -rf "$work"
mkdir -p "$work/pkgs" "$rootfs"

# The kernel command line for every boot path. Both consoles get kernel
# messages; the last one named (the serial port) is /dev/console.
cmdline="console=tty1 console=ttyS0,115200 quiet panic=10"

step() { echo "==> $*"; }

# --- packages ---------------------------------------------------------------

# The real package behind a metapackage such as linux-image-cloud-amd64.
depends_of() {
    apt-cache depends --important "$1" | awk '/Depends:/ { print $2; exit }'
}

fetch() { # PACKAGE... -> unpacked into $work/pkgs/PACKAGE
    local pkg version file
    for pkg in "$@"; do
        version=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
        if [ -z "$version" ] || [ "$version" = "(none)" ]; then
            echo "package $pkg is not available from the configured Debian mirrors" >&2
            exit 1
        fi
        file=$(ls "$cache/${pkg}_${version/:/%3a}_"*.deb 2>/dev/null | head -n 1 || true)
        if [ -z "$file" ]; then
            if ! (cd "$cache" && apt-get download -q "$pkg=$version" >/dev/null 2>&1); then
                # Stale package lists name versions the mirror has replaced.
                apt-get update -qq >/dev/null
                version=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
                (cd "$cache" && apt-get download -q "$pkg=$version" >/dev/null 2>&1) || {
                    echo "apt-get download $pkg=$version failed" >&2
                    exit 1
                }
            fi
            file=$(ls "$cache/${pkg}_${version/:/%3a}_"*.deb | head -n 1)
        fi
        mkdir -p "$work/pkgs/$pkg"
        dpkg -x "$file" "$work/pkgs/$pkg"
        echo "$pkg $version" >>"$work/packages.txt"
    done
}

step "fetching Debian packages ($IMAGE)"
: >"$work/packages.txt"
kernel_pkg=$(depends_of "$kernel_meta")
[ -n "$kernel_pkg" ] || { echo "cannot resolve $kernel_meta" >&2; exit 1; }
# mke2fs and the libraries it links: the data disk is formatted on first boot.
e2fs_pkgs=(e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1 libc6)
fetch "$kernel_pkg" busybox-static ca-certificates systemd-boot-efi "${e2fs_pkgs[@]}"
kver=${kernel_pkg#linux-image-}
kpkg=$work/pkgs/$kernel_pkg

# --- the static gatehouse binary ------------------------------------------

if [ -n "${GATEHOUSE_BIN:-}" ]; then
    gatehouse=$GATEHOUSE_BIN
else
    step "building gatehouse (static, release, LTO)"
    # --target keeps the static flag off build scripts and proc macros.
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --locked --quiet --profile appliance --target "$rust_target" -p gatehouse
    gatehouse=$CARGO_TARGET_DIR/$rust_target/appliance/gatehouse
fi
if readelf -lW "$gatehouse" | grep -q 'Requesting program interpreter' ||
    readelf -dW "$gatehouse" | grep -q '(NEEDED)'; then
    echo "$gatehouse is not a static executable" >&2
    exit 1
fi

# --- root file system -------------------------------------------------------

step "assembling the root file system"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,lib,etc/ssl/certs,proc,sys,dev,run,tmp,root,var/lib/gatehouse,var/log}
chmod 0700 "$rootfs/root" "$rootfs/var/lib/gatehouse"
chmod 1777 "$rootfs/tmp"
# The kernel opens /dev/console for init before devtmpfs is mounted.
mknod -m 0600 "$rootfs/dev/console" c 5 1

install -m 0755 "$work/pkgs/busybox-static/bin/busybox" "$rootfs/bin/busybox"
# Applets that would serve or fetch over the network, log people in, or
# install software get no link: the image runs none of them.
no_link=" $(grep -v '^#' "$root/image/excluded-applets.txt" | tr '\n' ' ') "
for applet in $("$rootfs/bin/busybox" --list-full); do
    case $no_link in *" ${applet##*/} "*) continue ;; esac
    [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done
# The kernel starts /init; busybox runs as init under that name and reads
# /etc/inittab.
ln -s /bin/busybox "$rootfs/init"

install -m 0755 "$gatehouse" "$rootfs/usr/bin/gatehouse"

# mke2fs is dynamically linked: copy it with the libraries it needs, found
# in the unpacked packages (never the build host's).
lib_search=()
for pkg in "${e2fs_pkgs[@]}"; do
    lib_search+=("$work/pkgs/$pkg/lib/x86_64-linux-gnu" "$work/pkgs/$pkg/usr/lib/x86_64-linux-gnu")
done
copy_libs() { # ELF
    local lib dir found
    for lib in $(readelf -dW "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -e "$rootfs/lib/x86_64-linux-gnu/$lib" ] && continue
        found=
        for dir in "${lib_search[@]}"; do
            if [ -e "$dir/$lib" ]; then
                found=$(readlink -f "$dir/$lib")
                break
            fi
        done
        [ -n "$found" ] || { echo "library $lib (for $1) not found in the packages" >&2; exit 1; }
        install -D -m 0755 "$found" "$rootfs/lib/x86_64-linux-gnu/$lib"
        copy_libs "$found"
    done
}
install -m 0755 "$work/pkgs/e2fsprogs/sbin/mke2fs" "$rootfs/sbin/mke2fs"
copy_libs "$rootfs/sbin/mke2fs"
mkdir -p "$rootfs/lib64"
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$rootfs/lib64/ld-linux-x86-64.so.2"
install -m 0644 "$work/pkgs/e2fsprogs/etc/mke2fs.conf" "$rootfs/etc/mke2fs.conf"

# The public web roots (Mozilla's list, as Debian ships it): discovery and
# key sets of a public identity provider are fetched over HTTPS.
cat "$work/pkgs/ca-certificates/usr/share/ca-certificates/mozilla/"*.crt \
    >"$rootfs/etc/ssl/certs/ca-certificates.crt"

# The overlay shared with buildroot/: init configuration, the boot,
# supervisor, console and shutdown scripts, the minimal config.
cp -a "$root/image/rootfs/." "$rootfs/"

# --- kernel modules ---------------------------------------------------------

step "selecting kernel modules ($kver)"
moddir=lib/modules/$kver
mkdir -p "$rootfs/$moddir"
cp "$kpkg/$moddir/modules.builtin" "$kpkg/$moddir/modules.order" "$rootfs/$moddir/"
cp "$kpkg/$moddir/modules.builtin.modinfo" "$rootfs/$moddir/" 2>/dev/null || true
# Debian makes modules.dep when the package is installed; make it for the
# unpacked copy, whose dependency lines then name what each module needs.
depmod -b "$kpkg" "$kver"
declare -A wanted=()
add_module() { # NAME (dashes and underscores are the same)
    local name=${1//-/_} path dep
    path=$(awk -v n="$name" -F: '{ f = $1; sub(/.*\//, "", f); sub(/\.ko.*$/, "", f); gsub(/-/, "_", f); if (f == n) { print $1; exit } }' \
        "$kpkg/$moddir/modules.dep")
    if [ -z "$path" ]; then
        if grep -qE "/${name//_/[-_]}\.ko" "$kpkg/$moddir/modules.builtin"; then
            return 0
        fi
        echo "kernel module $1 is neither a module nor built into $kver" >&2
        exit 1
    fi
    [ -n "${wanted[$path]:-}" ] && return 0
    wanted[$path]=1
    for dep in $(awk -v p="$path" -F: '$1 == p { print $2; exit }' "$kpkg/$moddir/modules.dep"); do
        dep=${dep##*/}
        add_module "${dep%%.ko*}"
    done
}
modules_list=$root/image/modules-$IMAGE.txt
while read -r name _; do
    case $name in '' | '#'*) continue ;; esac
    add_module "$name"
done <"$modules_list"
for path in "${!wanted[@]}"; do
    install -D -m 0644 "$kpkg/$moddir/$path" "$rootfs/$moddir/$path"
done
# Loaded at every boot: lines marked "boot" (the cloud image's few
# drivers; file systems and the power button's input events, which no
# device asks for). Drivers without the mark load only for hardware that
# is present (gatehouse.coldplug tells the boot script to look).
sed -n 's/^\([^#][^ ]*\) *boot$/\1/p' "$modules_list" >"$rootfs/$moddir/gatehouse.load"
if grep -qvE '^(#|$)|boot$' "$modules_list"; then
    : >"$rootfs/$moddir/gatehouse.coldplug"
fi
depmod -b "$rootfs" "$kver"

# --- initramfs --------------------------------------------------------------

step "packing the initramfs"
find "$rootfs" -exec touch -h -d @0 {} +
(cd "$rootfs" && find . -mindepth 1 | LC_ALL=C sort |
    cpio --quiet -o -H newc -R 0:0 --reproducible) >"$work/initramfs.cpio"
# zstd: nearly xz's size, and it unpacks several times faster at boot.
zstd -q -19 -T0 -f "$work/initramfs.cpio" -o "$out/initramfs.img"
install -m 0644 "$kpkg/boot/vmlinuz-$kver" "$out/vmlinuz"

# --- UEFI: systemd-boot and one boot entry ----------------------------------

# The kernel and initramfs live once on the disk, for both firmwares:
# syslinux (BIOS) and systemd-boot (UEFI) read the same two files. A
# unified kernel image would hold a second copy of both (23 MB of the
# cloud image). The entry's command line cannot be edited at the boot
# menu (`editor no`), as a unified image's could not; the menu never
# shows unless a key is held (`timeout 0`).
step "setting up systemd-boot"
loader=$work/pkgs/systemd-boot-efi/usr/lib/systemd/boot/efi/systemd-bootx64.efi
gh_version=$("$gatehouse" --version | awk '{ print $2 }')
cat >"$work/loader.conf" <<EOF
default gatehouse.conf
timeout 0
editor no
auto-entries no
auto-firmware no
EOF
cat >"$work/entry.conf" <<EOF
title Gatehouse $gh_version ($IMAGE)
version $gh_version
linux /vmlinuz
initrd /initramfs.img
options $cmdline
EOF

# --- the disk image ---------------------------------------------------------

step "making the disk image"
cat >"$work/syslinux.cfg" <<EOF
# Hold Shift or Alt at boot for a prompt: "gatehouse gatehouse.net=ADDR/PREFIX,GATEWAY[,DNS]"
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT gatehouse
LABEL gatehouse
  LINUX /vmlinuz
  INITRD /initramfs.img
  APPEND $cmdline
EOF
# One FAT partition, sized to its files plus room for the file system.
payload_kib=$(du -k -c "$out/vmlinuz" "$out/initramfs.img" "$loader" | awk 'END { print $1 }')
part_kib=$(((payload_kib * 101 / 100 + 1024 + 1023) / 1024 * 1024))
part=$work/boot.part
rm -f "$part"
mkfs.vfat -C -n GATEHOUSE "$part" "$part_kib" >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$part" ::/EFI ::/EFI/BOOT ::/syslinux ::/loader ::/loader/entries
mcopy -i "$part" "$out/vmlinuz" ::/vmlinuz
mcopy -i "$part" "$out/initramfs.img" ::/initramfs.img
mcopy -i "$part" "$loader" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$part" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$part" "$work/entry.conf" ::/loader/entries/gatehouse.conf
mcopy -i "$part" "$work/syslinux.cfg" ::/syslinux/syslinux.cfg
syslinux --install --directory /syslinux "$part"
# MBR: syslinux's boot code, one active partition starting at 1 MiB.
img=$out/gatehouse.img
rm -f "$img"
truncate -s $(((part_kib + 1024) * 1024)) "$img"
printf 'label: dos\nstart=2048, type=ef, bootable\n' | sfdisk -q "$img"
mbr=$(ls /usr/lib/SYSLINUX/mbr.bin /usr/lib/syslinux/mbr/mbr.bin 2>/dev/null | head -n 1)
dd if="$mbr" of="$img" bs=440 count=1 conv=notrunc status=none
dd if="$part" of="$img" bs=1M seek=1 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$img" "$out/gatehouse.qcow2"

# --- manifest ---------------------------------------------------------------

{
    echo "image: $IMAGE"
    echo "kernel: $kver"
    echo "gatehouse: $gh_version"
    echo "cmdline: $cmdline"
    echo
    echo "packages:"
    sed 's/^/  /' "$work/packages.txt"
    echo
    echo "modules:"
    (cd "$rootfs/$moddir" && find . -name '*.ko*' | sed 's|.*/||; s/\.ko.*$//' | sort | tr '\n' ' ' | fold -s -w 76 | sed 's/^/  /')
    echo
    echo
    echo "sizes (bytes):"
    for f in gatehouse.img gatehouse.qcow2 vmlinuz initramfs.img; do
        printf '  %-16s %10d\n' "$f" "$(stat -c %s "$out/$f")"
    done
    printf '  %-16s %10d\n' "gatehouse binary" "$(stat -c %s "$gatehouse")"
    printf '  %-16s %10d\n' "root fs (cpio)" "$(stat -c %s "$work/initramfs.cpio")"
} >"$out/manifest.txt"
rm -rf "$work"
step "done: $out"
sed -n '/^sizes/,$p' "$out/manifest.txt"
