//! Compiles the XDP program (`xdp-prog/xblade.bpf.c`) into `$OUT_DIR/xblade.bpf.o`, which
//! `src/xdp/mod.rs` embeds with `include_bytes!`, and turns the constants the program shares with
//! the daemon (`xdp-prog/xblade_abi.h`: counter indices, map sizes, flags, struct sizes) into
//! `$OUT_DIR/xdp_abi.rs`, which `src/xdp/abi.rs` includes. Every `#define XBLADE_*` line of the
//! header must be `#define XBLADE_NAME <decimal or hex literal>` (the include guard aside), and
//! the names the daemon needs must all be there; anything else fails the build, so the two sides
//! cannot drift apart silently.
//!
//! `-g` is not optional: the program declares BTF-style maps (`SEC(".maps")`), and aya refuses
//! an object without a `.BTF` section ("no BTF parsed for object"). Set `CLANG` to use a
//! compiler other than the `clang` on `PATH`.
//!
//! It also names the git revision being built (`XBLADE_GIT_REV`, see `build/git_revision.rs`).

#[path = "build/git_revision.rs"]
mod git_revision;

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{self, Command},
};

const HINT: &str = "clang not found: apt-get install clang llvm libbpf-dev";

/// The `#define`s of `xblade_abi.h` the daemon uses; a header without one of them fails the build.
const REQUIRED: &[&str] = &[
    "XBLADE_COUNTER_PASS_NOT_AOE",
    "XBLADE_COUNTER_PASS_RESPONSE",
    "XBLADE_COUNTER_PASS_OTHER_TARGET",
    "XBLADE_COUNTER_DROP_ACL",
    "XBLADE_COUNTER_REDIRECT",
    "XBLADE_COUNTER_PASS_NO_SOCKET",
    "XBLADE_COUNTER_DROP_MALFORMED",
    "XBLADE_COUNTER_COUNT",
    "XBLADE_MAJOR_ANY",
    "XBLADE_MINOR_ANY",
    "XBLADE_MAX_EXPORTS",
    "XBLADE_TARGETS_MAX_ENTRIES",
    "XBLADE_ACL_MAX_ENTRIES",
    "XBLADE_XSKS_MAX_ENTRIES",
    "XBLADE_TARGET_ACL",
    "XBLADE_TARGET_MARKER",
    "XBLADE_TARGET_VALUE_SIZE",
    "XBLADE_ACL_KEY_SIZE",
];

/// The header's include guard: the one `XBLADE_` define without a value.
const GUARD: &str = "XBLADE_ABI_H";

fn main() {
    let manifest_dir = PathBuf::from(env_or_exit("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env_or_exit("OUT_DIR"));
    let source = manifest_dir.join("../xdp-prog/xblade.bpf.c");
    let header = manifest_dir.join("../xdp-prog/xblade_abi.h");
    let object = out_dir.join("xblade.bpf.o");

    git_revision::emit(&manifest_dir).unwrap_or_else(|e| fail(&e));

    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-env-changed=CLANG");

    let text = fs::read_to_string(&header)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", header.display())));
    let constants =
        parse_abi(&text).unwrap_or_else(|e| fail(&format!("{}: {e}", header.display())));
    let rust = abi_rust(&constants, &header);
    let abi_out = out_dir.join("xdp_abi.rs");
    fs::write(&abi_out, rust)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", abi_out.display())));

    let clang = env::var_os("CLANG").unwrap_or_else(|| "clang".into());
    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"]);
    // <linux/bpf.h> includes <asm/types.h>, which Debian keeps in the multiarch directory of the
    // *build* machine's libc headers (the BPF target has none of its own).
    if let Some(dir) = multiarch_include_dir() {
        cmd.arg(format!("-I{}", dir.display()));
    }
    cmd.arg("-c").arg(&source).arg("-o").arg(&object);

    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!(
            "compiling {} with {} failed ({status}); see the compiler output above. \
             The BPF headers come from libbpf-dev and linux-libc-dev",
            source.display(),
            Path::new(&clang).display(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail(HINT),
        Err(e) => fail(&format!("cannot run {}: {e}", Path::new(&clang).display())),
    }
}

/// The `XBLADE_*` constants of the header, in order: (name, value).
fn parse_abi(text: &str) -> Result<Vec<(String, u32)>, String> {
    let mut constants: Vec<(String, u32)> = Vec::new();
    let mut in_comment = false;
    for (number, raw) in text.lines().enumerate() {
        let line = strip_comments(raw, &mut in_comment);
        let mut words = line.split_whitespace();
        if words.next() != Some("#define") {
            continue;
        }
        let Some(name) = words.next() else {
            return Err(format!("line {}: `#define` without a name", number + 1));
        };
        if !name.starts_with("XBLADE_") {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        let value = match rest.as_slice() {
            [] if name == GUARD => continue,
            [value] => parse_int(value),
            _ => None,
        };
        let Some(value) = value else {
            return Err(format!(
                "line {}: cannot parse `{}`: every XBLADE_ define must be \
                 `#define XBLADE_NAME <decimal or hex literal>` (build.rs turns them into Rust)",
                number + 1,
                raw.trim()
            ));
        };
        if constants.iter().any(|(n, _)| n == name) {
            return Err(format!("line {}: {name} defined twice", number + 1));
        }
        constants.push((name.to_owned(), value));
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !constants.iter().any(|(n, _)| n == r))
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing defines: {}", missing.join(", ")));
    }
    Ok(constants)
}

/// `line` without `/* */` and `//` comments; `in_comment` carries an open `/*` across lines.
fn strip_comments(line: &str, in_comment: &mut bool) -> String {
    let mut out = String::new();
    let mut rest = line;
    loop {
        if *in_comment {
            match rest.find("*/") {
                Some(end) => {
                    rest = &rest[end + 2..];
                    *in_comment = false;
                }
                None => return out,
            }
        }
        let block = rest.find("/*");
        let line_comment = rest.find("//");
        match (block, line_comment) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                out.push(' ');
                rest = &rest[b + 2..];
                *in_comment = true;
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                return out;
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// A C integer literal: decimal or `0x` hex, optionally with a `u`/`U` suffix.
fn parse_int(literal: &str) -> Option<u32> {
    let digits = literal.trim_end_matches(['u', 'U']);
    match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok(),
        None => None,
    }
}

fn abi_rust(constants: &[(String, u32)], header: &Path) -> String {
    let mut out = format!(
        "// Generated by target-daemon/build.rs from {}. Do not edit.\n",
        header.display()
    );
    for (name, value) in constants {
        out.push_str(&format!(
            "/// `{name}` of `xdp-prog/xblade_abi.h`.\npub const {name}: u32 = {value:#x};\n"
        ));
    }
    out
}

/// `/usr/include/<arch>-linux-gnu` for the host architecture, if it exists.
fn multiarch_include_dir() -> Option<PathBuf> {
    let host = env::var("HOST").ok()?;
    let arch = host.split('-').next()?;
    let dir = PathBuf::from(format!("/usr/include/{arch}-linux-gnu"));
    dir.is_dir().then_some(dir)
}

fn env_or_exit(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| fail(&format!("{name} is not set (run through cargo)")))
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    println!("cargo:warning={message}");
    process::exit(1);
}
