//! What this binary was built from, as the build script found it
//! (`target-daemon/build/git_revision.rs`): the crate version and the git revision. Both
//! commands' `--version` print [`VERSION`]: `xblade 0.1.0 (git 5d942e7)`.

/// The git revision: `git rev-parse --short HEAD` of the checkout built (`5d942e7`), with
/// `-dirty` when tracked files differed from it; else what the builder set in the
/// `XBLADE_GIT_REV` environment variable; else `unknown` (a tarball built without it).
pub const GIT_REVISION: &str = env!("XBLADE_GIT_REV");

/// The crate version.
pub const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `0.1.0 (git 5d942e7)`: what `--version` prints after the command's name.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("XBLADE_GIT_REV"),
    ")"
);

/// [`VERSION`], for callers that want a function.
pub fn version() -> &'static str {
    VERSION
}

/// Whether `revision` has the shape [`GIT_REVISION`] may take: `unknown`, 7-40 lowercase hex
/// digits with an optional `-dirty`, or what a builder set (letters, digits, `.+-_`, at most
/// 64 characters, checked by the build script).
pub fn is_revision(revision: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b".+-_".contains(&b);
    !revision.is_empty() && revision.len() <= 64 && revision.bytes().all(allowed)
}

/// Whether `revision` is a git checkout's: 7-40 lowercase hex digits, then `-dirty` or nothing.
pub fn is_git_revision(revision: &str) -> bool {
    let hash = revision.strip_suffix("-dirty").unwrap_or(revision);
    (7..=40).contains(&hash.len())
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_package_and_the_revision() {
        assert_eq!(VERSION, format!("{PACKAGE_VERSION} (git {GIT_REVISION})"));
        assert_eq!(version(), VERSION);
        // The exact revision of a checkout is checked by tests/version.rs, against git.
        assert!(is_revision(GIT_REVISION), "{GIT_REVISION:?}");
    }

    #[test]
    fn revision_shapes() {
        assert!(is_git_revision("5d942e7"));
        assert!(is_git_revision("5d942e7-dirty"));
        assert!(is_git_revision(&"a".repeat(40)));
        assert!(!is_git_revision("5d942e"));
        assert!(!is_git_revision("5D942E7"));
        assert!(!is_git_revision("5d942e7-clean"));
        assert!(!is_git_revision("unknown"));
        assert!(is_revision("unknown"));
        assert!(is_revision("v0.1.0+deb12"));
        assert!(!is_revision(""));
        assert!(!is_revision("a b"));
        assert!(!is_revision(&"a".repeat(65)));
    }

    #[test]
    fn both_commands_print_it() {
        use clap::CommandFactory;
        assert_eq!(crate::config::Cli::command().get_version(), Some(VERSION));
        assert_eq!(crate::ctl::Args::command().get_version(), Some(VERSION));
    }
}
