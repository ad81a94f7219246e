//! Shell completions for bash, zsh and fish, named and placed as each shell's vendor
//! directory expects: bash-completion loads `completions/NAME` when NAME is first
//! completed, zsh autoloads `_NAME`, fish reads `NAME.fish`.

use std::path::PathBuf;

use clap_complete::Shell;

use crate::Asset;

/// The shells completions are generated for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Where `shell`'s completion of `command` goes, under the output directory.
pub fn path(shell: Shell, command: &str) -> PathBuf {
    let file = match shell {
        Shell::Zsh => format!("_{command}"),
        Shell::Fish => format!("{command}.fish"),
        _ => command.to_owned(),
    };
    PathBuf::from(format!("completions/{shell}/{file}"))
}

/// One completion script per shell in [`SHELLS`].
pub fn scripts(mut command: clap::Command) -> Vec<Asset> {
    let name = command.get_name().to_owned();
    SHELLS
        .iter()
        .map(|&shell| {
            let mut contents = Vec::new();
            clap_complete::generate(shell, &mut command, &name, &mut contents);
            Asset {
                path: path(shell, &name),
                contents,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn each_shell_completes_the_subcommands() {
        let scripts = scripts(xblade::ctl::Args::command());
        assert_eq!(scripts.len(), 3);
        for script in scripts {
            let text = String::from_utf8(script.contents).unwrap();
            for sub in xblade::ctl::Args::command().get_subcommands() {
                assert!(
                    text.contains(sub.get_name()),
                    "{}: no {}",
                    script.path.display(),
                    sub.get_name()
                );
            }
            assert!(text.contains("socket"), "{}", script.path.display());
        }
    }
}
