# Shared helpers for scripts/*.sh (sourced, not run).

# Packages the build needs: clang compiles the XDP program, libbpf-dev has its headers.
XBLADE_BUILD_PACKAGES=(clang llvm libbpf-dev iproute2)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

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

# Builds the release binaries; prints nothing on success but the cargo summary.
build_release() {
    ensure_packages "${XBLADE_BUILD_PACKAGES[@]}"
    find_cargo
    log "building xblade (release)"
    cargo_run build --release --locked -p xblade -p aoe-initiator
    XBLADE="$REPO/target/release/xblade"
    XBLADE_CLIENT="$REPO/target/release/xblade-client"
}
