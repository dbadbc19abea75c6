#!/bin/sh
# Buildroot post-build script for the Gatehouse appliance ($1: the target
# directory). The overlay (image/rootfs, shared with image/build.sh) is
# already in place; this finishes what image/build.sh does for its image.
set -eu
target=$1
here=$(dirname "$0")
excluded=$here/../../../image/excluded-applets.txt

# The kernel starts /init from an initramfs; busybox runs as init under
# that name and reads /etc/inittab from the overlay.
[ -e "$target/init" ] || ln -s /bin/busybox "$target/init"

mkdir -p "$target/var/lib/gatehouse" "$target/run"
chmod 0700 "$target/var/lib/gatehouse"

# No link for applets that would serve, log in or install software.
grep -v '^#' "$excluded" | while read -r applet; do
    for dir in bin sbin usr/bin usr/sbin; do
        link=$target/$dir/$applet
        [ -L "$link" ] || continue
        case $(readlink "$link") in *busybox) rm -f "$link" ;; esac
    done
done

# Nothing in the image may offer a shell over the network or install
# software: fail the build if a package brought one.
for program in sshd dropbear telnetd apt dpkg opkg rpm gcc cc; do
    for dir in bin sbin usr/bin usr/sbin; do
        if [ -e "$target/$dir/$program" ]; then
            echo "post-build: $dir/$program must not be in the Gatehouse image" >&2
            exit 1
        fi
    done
done
