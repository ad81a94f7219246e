# Shared helpers for scripts/*.sh (sourced, not run).

# Packages the build needs: clang compiles the XDP program, libbpf-dev has its headers.
XBLADE_BUILD_PACKAGES=(clang llvm libbpf-dev iproute2)
# Packages scripts/package.sh needs besides: dpkg-shlibdeps (dpkg-dev) finds the binaries'
# library dependencies, objcopy and strip (binutils) split off the debug info, and the
# package test reads the man pages (man-db, groff-base) and installs the package (adduser).
XBLADE_PACKAGE_PACKAGES=(dpkg-dev binutils man-db groff-base adduser)
# cargo-deb, pinned: the version package.sh is written and tested against (needs rustc 1.85;
# `cargo install` took 57 s on the 2-core development machine).
CARGO_DEB_VERSION=3.8.0

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# veth_lab NS_T NS_C IF_T IF_C MTU QUEUES: a fresh pair of network namespaces joined by
# one veth pair (IF_T in NS_T, IF_C in NS_C) with QUEUES RX/TX queues per end, both ends up
# at MTU. Namespaces of the same names left from before are removed first; removing the
# namespaces removes the pair. The caller owns the names and their removal on exit.
veth_lab() {
    local ns_t=$1 ns_c=$2 if_t=$3 if_c=$4 mtu=$5 queues=$6
    ip netns del "$ns_t" 2>/dev/null || true
    ip netns del "$ns_c" 2>/dev/null || true
    ip netns add "$ns_t"
    ip netns add "$ns_c"
    ip link add "$if_t" numrxqueues "$queues" numtxqueues "$queues" netns "$ns_t" type veth \
        peer name "$if_c" numrxqueues "$queues" numtxqueues "$queues" netns "$ns_c"
    ip -n "$ns_t" link set "$if_t" mtu "$mtu" up
    ip -n "$ns_c" link set "$if_c" mtu "$mtu" up
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root (XDP, AF_XDP and network namespaces): run it with sudo"
}

# apt-get install the given packages if any is missing.
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (sudo apt-get install ${missing[*]})"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

# Finds cargo: on PATH, in root's ~/.cargo, or in the invoking sudo user's ~/.cargo.
# Sets CARGO (and runs builds as SUDO_USER when cargo is theirs).
find_cargo() {
    CARGO_AS=()
    if command -v cargo >/dev/null 2>&1; then
        CARGO=$(command -v cargo)
    elif [ -x "$HOME/.cargo/bin/cargo" ]; then
        CARGO="$HOME/.cargo/bin/cargo"
    elif [ -n "${SUDO_USER:-}" ] && user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6) \
        && [ -x "$user_home/.cargo/bin/cargo" ]; then
        CARGO="$user_home/.cargo/bin/cargo"
        CARGO_AS=(sudo -u "$SUDO_USER" env "PATH=$user_home/.cargo/bin:$PATH")
    else
        die "cargo not found: install the Rust toolchain (rustup) and try again"
    fi
}

cargo_run() {
    "${CARGO_AS[@]}" "$CARGO" "$@"
}

# Installs cargo-deb $CARGO_DEB_VERSION unless that version is already installed (another
# version is replaced). Needs find_cargo first.
ensure_cargo_deb() {
    local have
    have=$(cargo_run deb --version 2>/dev/null | awk '{ print $2 }') || have=""
    [ "$have" = "$CARGO_DEB_VERSION" ] && return 0
    log "installing cargo-deb $CARGO_DEB_VERSION${have:+ (replacing $have)}"
    cargo_run install cargo-deb --version "=$CARGO_DEB_VERSION" --locked --force --quiet \
        || die "cargo install cargo-deb $CARGO_DEB_VERSION failed"
}

# Builds the release binaries; prints nothing on success but the cargo summary.
build_release() {
    ensure_packages "${XBLADE_BUILD_PACKAGES[@]}"
    find_cargo
    log "building xblade (release)"
    cargo_run build --release --locked -p xblade -p aoe-initiator
    XBLADE="$REPO/target/release/xblade"
    XBLADE_CLIENT="$REPO/target/release/xblade-client"
}

# summary_problems FILE: checks the daemon's end-of-run summary in FILE (the lines from
# "xblade summary" on): "requests N (reads N, writes N, ...)" and "errors ata N, aoe N,
# disk i/o N". Prints one problem per line (nothing when all is well): every count must be
# present (a missing one is a problem, never a 0), reads and writes above 0, every error
# count 0. Sets SUMMARY_READS, SUMMARY_WRITES, SUMMARY_ATA, SUMMARY_AOE, SUMMARY_IO (empty
# when missing).
summary_problems() {
    local file=$1 label var
    summary_num() { # the number after LABEL in the summary, or nothing
        { sed -n '/^xblade summary/,$p' "$file" | grep -o "$1 [0-9][0-9]*" | head -n 1 | awk '{print $NF}'; } || true
    }
    SUMMARY_READS=$(summary_num "reads")
    SUMMARY_WRITES=$(summary_num "writes")
    SUMMARY_ATA=$(summary_num "ata")
    SUMMARY_AOE=$(summary_num "aoe")
    SUMMARY_IO=$(summary_num "disk i/o")
    if ! grep -q '^xblade summary' "$file" 2>/dev/null; then
        echo "no summary (no \"xblade summary\" line) in xblade's output"
        return 0
    fi
    for label in "reads:SUMMARY_READS" "writes:SUMMARY_WRITES" "ata:SUMMARY_ATA" "aoe:SUMMARY_AOE" "disk i/o:SUMMARY_IO"; do
        var=${label#*:}
        [ -n "${!var}" ] || echo "xblade's summary has no \"${label%%:*} N\" count"
    done
    [ -z "$SUMMARY_READS" ] || [ "$SUMMARY_READS" -gt 0 ] || echo "xblade served no reads"
    [ -z "$SUMMARY_WRITES" ] || [ "$SUMMARY_WRITES" -gt 0 ] || echo "xblade served no writes"
    [ -z "$SUMMARY_IO" ] || [ "$SUMMARY_IO" -eq 0 ] || echo "xblade counted $SUMMARY_IO disk i/o errors"
    [ -z "$SUMMARY_ATA" ] || [ "$SUMMARY_ATA" -eq 0 ] || echo "xblade answered $SUMMARY_ATA requests with ATA errors"
    [ -z "$SUMMARY_AOE" ] || [ "$SUMMARY_AOE" -eq 0 ] || echo "xblade answered $SUMMARY_AOE requests with AoE errors"
    return 0
}
