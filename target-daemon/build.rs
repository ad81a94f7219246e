//! Compiles the XDP program (`xdp-prog/xblade.bpf.c`) into `$OUT_DIR/xblade.bpf.o`, which
//! `src/xdp/mod.rs` embeds with `include_bytes!`.
//!
//! `-g` is not optional: the program declares BTF-style maps (`SEC(".maps")`), and aya refuses
//! an object without a `.BTF` section ("no BTF parsed for object"). Set `CLANG` to use a
//! compiler other than the `clang` on `PATH`.

use std::{
    env,
    path::{Path, PathBuf},
    process::{self, Command},
};

const HINT: &str = "clang not found: apt-get install clang llvm libbpf-dev";

fn main() {
    let manifest_dir = PathBuf::from(env_or_exit("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env_or_exit("OUT_DIR"));
    let source = manifest_dir.join("../xdp-prog/xblade.bpf.c");
    let object = out_dir.join("xblade.bpf.o");

    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-env-changed=CLANG");

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
