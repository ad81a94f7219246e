#!/usr/bin/env bash
# Builds (or reuses from the cache) the guest that scripts/vm-test.sh boots: a Debian 12 kernel
# with the modules the test needs (virtio-net, aoe, ext4 and their dependencies) and a gzip'ed
# newc initramfs holding busybox (static), mke2fs/e2fsck with their shared libraries, the
# modules and tests/vm/init.
#
#   sudo tests/vm/build-guest.sh        # prints the kernel and initramfs paths on stdout
#
# Everything downloaded or built lives in $XBLADE_VM_CACHE (default: target/vm-cache):
#   debs/            the .deb files apt-get downloaded (kernel, busybox-static)
#   kernel/          vmlinuz, the needed modules, PACKAGE (which kernel package they came from)
#   initrd.gz        the initramfs; initrd.stamp says which inputs it was built from
# A warm cache needs no network and no apt. XBLADE_VM_KERNEL_PKG=linux-image-... pins the
# kernel package (default: what linux-image-amd64 depends on); delete the cache to refresh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

CACHE=${XBLADE_VM_CACHE:-$REPO/target/vm-cache}
# Modules the guest loads (with their dependencies, in modprobe's order); aoe is loaded last,
# by /init, once the NIC is up (the driver broadcasts its first discovery when it loads).
GUEST_MODULES=(virtio_pci virtio_net ext4 aoe)
# Guest programs taken from the host (dynamic: copied with their libraries).
GUEST_PROGRAMS=(/sbin/mke2fs /sbin/e2fsck)

mkdir -p "$CACHE/debs"

apt_ready=0
apt_refresh() {
    [ "$apt_ready" -eq 1 ] && return 0
    log "apt-get update"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt_ready=1
}

# Echoes the path of PACKAGE's .deb in the cache, downloading it (apt-get download) if needed.
fetch_deb() {
    local pkg=$1 deb
    deb=$(find "$CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)
    if [ -z "$deb" ]; then
        apt-cache show "$pkg" >/dev/null 2>&1 || apt_refresh
        log "downloading $pkg (apt-get download)"
        if ! (cd "$CACHE/debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null); then
            # A stale package list names a file the mirror no longer has: refresh, try again.
            [ "$apt_ready" -eq 0 ] || die "apt-get download $pkg failed"
            apt_refresh
            (cd "$CACHE/debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null) \
                || die "apt-get download $pkg failed"
        fi
        deb=$(find "$CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)
        [ -n "$deb" ] || die "apt-get download $pkg left no ${pkg}_*.deb in $CACHE/debs"
    fi
    echo "$deb"
}

# --- kernel and modules ------------------------------------------------------------------------
KDIR="$CACHE/kernel"
if [ ! -s "$KDIR/vmlinuz" ] || [ ! -s "$KDIR/modules.load" ] || [ ! -s "$KDIR/PACKAGE" ]; then
    ensure_packages kmod # depmod and modprobe --show-depends resolve the module order
    pkg=${XBLADE_VM_KERNEL_PKG:-}
    if [ -z "$pkg" ]; then
        apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt_refresh
        pkg=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
        [ -n "$pkg" ] || die "cannot tell which kernel package linux-image-amd64 depends on (apt-cache depends linux-image-amd64)"
    fi
    deb=$(fetch_deb "$pkg")
    log "extracting $(basename "$deb")"
    x=$(mktemp -d "$CACHE/kernel-x.XXXXXX")
    trap 'rm -rf "$x"' EXIT
    dpkg-deb -x "$deb" "$x"
    vmlinuz=$(find "$x/boot" -maxdepth 1 -name 'vmlinuz-*' -print -quit)
    [ -n "$vmlinuz" ] || die "$deb has no /boot/vmlinuz-*"
    kver=${vmlinuz##*/vmlinuz-}
    [ -d "$x/lib/modules/$kver" ] || die "$deb has no /lib/modules/$kver"
    depmod -b "$x" "$kver"
    rm -rf "$KDIR.new"
    mkdir -p "$KDIR.new/modules"
    cp "$vmlinuz" "$KDIR.new/vmlinuz"
    : >"$KDIR.new/modules.load"
    # modprobe prints "insmod PATH [params]" for each dependency (soft ones too: ext4 pulls in
    # crc32c) and then the module, in load order; "builtin NAME" for built-in ones.
    for m in "${GUEST_MODULES[@]}"; do
        modprobe -d "$x" -S "$kver" --show-depends "$m" >"$x/deps" \
            || die "modprobe --show-depends $m failed for kernel $kver"
        while read -r kind path _; do
            [ "$kind" = insmod ] || continue
            file=${path##*/}
            case "$file" in
                *.ko) ;;
                *.ko.xz) xz -dc "$path" >"$KDIR.new/modules/${file%.xz}"; file=${file%.xz} ;;
                *.ko.zst) zstd -qdc "$path" >"$KDIR.new/modules/${file%.zst}"; file=${file%.zst} ;;
                *.ko.gz) gzip -dc "$path" >"$KDIR.new/modules/${file%.gz}"; file=${file%.gz} ;;
                *) die "unexpected module file $path" ;;
            esac
            [ -e "$KDIR.new/modules/$file" ] || cp "$path" "$KDIR.new/modules/$file"
            grep -qx "${file%.ko}" "$KDIR.new/modules.load" || echo "${file%.ko}" >>"$KDIR.new/modules.load"
        done <"$x/deps"
    done
    grep -qx aoe "$KDIR.new/modules.load" || die "kernel $kver has no aoe module (CONFIG_ATA_OVER_ETH)"
    version=$(dpkg-deb -f "$deb" Version)
    echo "$pkg $version $kver" >"$KDIR.new/PACKAGE"
    rm -rf "$KDIR" "$x"
    trap - EXIT
    mv "$KDIR.new" "$KDIR"
    log "kernel cached: $(cat "$KDIR/PACKAGE") ($(wc -l <"$KDIR/modules.load") modules)"
fi

# --- busybox (static, from busybox-static; not installed on the host: it conflicts with busybox)
BUSYBOX="$CACHE/busybox"
if [ ! -x "$BUSYBOX" ]; then
    deb=$(fetch_deb busybox-static)
    x=$(mktemp -d "$CACHE/busybox-x.XXXXXX")
    dpkg-deb -x "$deb" "$x"
    cp "$x/bin/busybox" "$BUSYBOX.new"
    rm -rf "$x"
    mv "$BUSYBOX.new" "$BUSYBOX"
    echo "busybox-static $(dpkg-deb -f "$deb" Version)" >"$CACHE/busybox.PACKAGE"
fi

# --- initramfs --------------------------------------------------------------------------------
for p in "${GUEST_PROGRAMS[@]}"; do
    [ -x "$p" ] || ensure_packages e2fsprogs
done
stamp=$(
    {
        sha256sum "$HERE/init" "${BASH_SOURCE[0]}" "$BUSYBOX" "${GUEST_PROGRAMS[@]}" /etc/mke2fs.conf
        cat "$KDIR/PACKAGE" "$KDIR/modules.load"
    } | sha256sum | cut -d' ' -f1
)
if [ ! -s "$CACHE/initrd.gz" ] || [ "$(cat "$CACHE/initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
    log "building the initramfs"
    root=$(mktemp -d "$CACHE/initrd-x.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root"/{bin,sbin,etc,dev,proc,sys,tmp,mnt,lib/modules}
    cp "$BUSYBOX" "$root/bin/busybox"
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    for p in "${GUEST_PROGRAMS[@]}"; do
        cp -L "$p" "$root/sbin/"
        # Each library at the path the loader looks for it (ldd's absolute paths).
        ldd "$p" | grep -o '/[^ ]*' | while read -r lib; do
            [ -e "$root$lib" ] && continue
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    done
    ln -s mke2fs "$root/sbin/mkfs.ext4"
    cp /etc/mke2fs.conf "$root/etc/mke2fs.conf"
    cp "$KDIR"/modules/*.ko "$root/lib/modules/"
    cp "$KDIR/modules.load" "$root/etc/modules.load"
    cp "$HERE/init" "$root/init"
    chmod 0755 "$root/init"
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null) \
        | gzip -6 >"$CACHE/initrd.gz.new"
    rm -rf "$root"
    trap - EXIT
    mv "$CACHE/initrd.gz.new" "$CACHE/initrd.gz"
    echo "$stamp" >"$CACHE/initrd.stamp"
    log "initramfs: $(du -h "$CACHE/initrd.gz" | cut -f1)"
fi

echo "$KDIR/vmlinuz"
echo "$CACHE/initrd.gz"
