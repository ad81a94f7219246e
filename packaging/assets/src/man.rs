//! Man pages (section 8: both commands are for the administrator) rendered with clap_mangen,
//! one per command and one per visible subcommand, named as `git` names its own
//! (`xbladectl-status.8`).
//!
//! A page is clap_mangen's sections (NAME, SYNOPSIS, DESCRIPTION, OPTIONS, COMMANDS) followed
//! by ours in man-pages(7) order: EXIT STATUS, SIGNALS, ENVIRONMENT, FILES, VERSIONS (clap's),
//! EXAMPLES (the command's `after_help`, kept as laid out) and SEE ALSO.

use std::path::PathBuf;

use clap_mangen::roff::{bold, roman, Inline, Roff};
use clap_mangen::Man;

use crate::notes::Notes;
use crate::{Asset, PageDate};

/// The section both commands' pages go in: system administration.
pub const SECTION: &str = "8";
/// The manual the pages belong to (the `.TH` line's fifth field).
const MANUAL: &str = "System Administration";

/// The page of `command` and one of each visible subcommand, at any depth.
pub fn pages(command: clap::Command, notes: &Notes, date: &PageDate) -> Vec<Asset> {
    // Building propagates global options into subcommands and names them `xbladectl-status`.
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let source = format!(
        "{} {}",
        command.get_name(),
        command.get_version().unwrap_or_default()
    );
    let root = command.get_name().to_owned();
    let mut names = Vec::new();
    collect_names(&command, &mut names);
    let mut pages = Vec::new();
    let mut stack = vec![command];
    while let Some(command) = stack.pop() {
        stack.extend(
            command
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .cloned(),
        );
        let name = page_name(&command);
        let see_also: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|other| *other != name && (name == root || *other == root))
            .collect();
        let contents = render(command, notes, &see_also, date, &source);
        pages.push(Asset {
            path: PathBuf::from(format!("man/{name}.{SECTION}")),
            contents,
        });
    }
    pages
}

/// `xbladectl-status` for a built subcommand, `xbladectl` for the command itself.
fn page_name(command: &clap::Command) -> String {
    command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned()
}

fn collect_names(command: &clap::Command, names: &mut Vec<String>) {
    names.push(page_name(command));
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect_names(sub, names);
    }
}

/// One page. `see_also`: the other pages of this command to list in SEE ALSO (all of them
/// on the command's own page, the command's on a subcommand's).
fn render(
    command: clap::Command,
    notes: &Notes,
    see_also: &[&str],
    date: &PageDate,
    source: &str,
) -> Vec<u8> {
    let examples = command
        .get_after_long_help()
        .or_else(|| command.get_after_help())
        .map(|help| help.to_string());
    // clap_mangen would print `after_help` as filled text under EXTRA; it goes under
    // EXAMPLES instead, with its columns kept.
    let command = command
        .after_help(None::<&str>)
        .after_long_help(None::<&str>);
    let has_subcommands = command.get_subcommands().any(|s| !s.is_hide_set());
    let has_options = command.get_arguments().any(|a| !a.is_hide_set());
    let has_version = command.get_version().is_some();
    let man = Man::new(command)
        .section(SECTION)
        .date(date.as_str())
        .source(source)
        .manual(MANUAL);
    let man = {
        let title = man.get_filename();
        let title = title
            .trim_end_matches(&format!(".{SECTION}"))
            .to_uppercase();
        man.title(title)
    };

    let mut page = Page::default();
    page.clap(|w| man.render_title(w));
    page.clap(|w| man.render_name_section(w));
    page.clap(|w| man.render_synopsis_section(w));
    page.clap(|w| man.render_description_section(w));
    if has_options {
        page.clap(|w| man.render_options_section(w));
    }
    if has_subcommands {
        page.clap(|w| man.render_subcommands_section(w));
    }

    let mut roff = Roff::new();
    table(&mut roff, "EXIT STATUS", notes.exit_status);
    table(&mut roff, "SIGNALS", notes.signals);
    table(&mut roff, "ENVIRONMENT", notes.environment);
    table(&mut roff, "FILES", notes.files);
    page.ours(&roff);
    if has_version {
        page.clap(|w| man.render_version_section(w));
    }

    let mut roff = Roff::new();
    if let Some(text) = examples {
        verbatim(&mut roff, "EXAMPLES", &text);
    }
    see_also_section(&mut roff, see_also, notes.see_also);
    page.ours(&roff);
    ascii_roff(&page.0)
}

/// The page with every non-ASCII character written as groff's `\[uXXXX]` escape: man(1)
/// may run groff with an input encoding that is not UTF-8 (it warns "invalid input
/// character" and drops the character), and help text may contain `…` or `→`.
fn ascii_roff(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out.into_bytes()
}

/// A page being put together from clap_mangen's sections and ours. Each of clap_mangen's
/// sections comes with roff's preamble (the definition of the `Aq` string that apostrophes
/// use); the page keeps the first.
#[derive(Default)]
struct Page(Vec<u8>);

impl Page {
    fn clap(&mut self, render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
        let mut section = Vec::new();
        render(&mut section).expect("rendering into a Vec cannot fail");
        let preamble = Roff::new().render();
        match section.strip_prefix(preamble.as_bytes()) {
            Some(body) if !self.0.is_empty() => self.0.extend_from_slice(body),
            _ => self.0.extend_from_slice(&section),
        }
    }

    fn ours(&mut self, roff: &Roff) {
        let rendered = roff.render();
        let preamble = Roff::new().render();
        let body = rendered.strip_prefix(&preamble).unwrap_or(&rendered);
        self.0.extend_from_slice(body.as_bytes());
    }
}

/// `.SH HEADING` and one tagged paragraph per entry: the term in bold, its meaning below.
fn table(roff: &mut Roff, heading: &str, entries: &[(&str, &str)]) {
    if entries.is_empty() {
        return;
    }
    roff.control("SH", [heading]);
    for (term, meaning) in entries {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*meaning)]);
    }
}

/// `.SH HEADING` and `text` in no-fill mode, so that aligned columns stay aligned. A first
/// line `Examples:` is dropped (it is the heading).
fn verbatim(roff: &mut Roff, heading: &str, text: &str) {
    let mut lines = text.lines().peekable();
    if lines
        .peek()
        .is_some_and(|l| l.trim().eq_ignore_ascii_case("examples:"))
    {
        lines.next();
    }
    roff.control("SH", [heading]);
    roff.control("nf", []);
    for line in lines {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
}

/// `.SH SEE ALSO`: `pages` (of this command, in section [`SECTION`]) and then `others`
/// (`name(section)`), comma separated, names in bold.
fn see_also_section(roff: &mut Roff, pages: &[&str], others: &[&str]) {
    let references: Vec<(String, String)> = pages
        .iter()
        .map(|page| (page.to_string(), SECTION.to_owned()))
        .chain(others.iter().filter_map(|other| {
            let (name, section) = other.strip_suffix(')')?.split_once('(')?;
            Some((name.to_owned(), section.to_owned()))
        }))
        .collect();
    if references.is_empty() {
        return;
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut inlines: Vec<Inline> = Vec::new();
    for (i, (name, section)) in references.iter().enumerate() {
        if i > 0 {
            inlines.push(roman(", "));
        }
        inlines.push(bold(name.as_str()));
        inlines.push(roman(format!("({section})")));
    }
    roff.text(inlines);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notes;
    use clap::CommandFactory;
    use std::path::Path;

    fn page(name: &str) -> String {
        let pages = pages(
            xblade::ctl::Args::command(),
            &notes::XBLADECTL,
            &PageDate::parse("2026-12-03").unwrap(),
        )
        .into_iter()
        .chain(pages(
            xblade::config::Cli::command(),
            &notes::XBLADE,
            &PageDate::parse("2026-01-02").unwrap(),
        ));
        let page = pages
            .into_iter()
            .find(|p| p.path == Path::new(&format!("man/{name}.8")))
            .unwrap_or_else(|| panic!("no page {name}"));
        String::from_utf8(page.contents).unwrap()
    }

    #[test]
    fn non_ascii_is_escaped() {
        assert_eq!(
            ascii_roff("MAC… → x".as_bytes()),
            b"MAC\\[u2026] \\[u2192] x".to_vec()
        );
    }

    #[test]
    fn sections_in_order() {
        let page = page("xblade");
        let headings: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .collect();
        // clap's sections first (options may add more under their help headings), ours last.
        assert_eq!(
            headings[..4],
            ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS"]
        );
        let ours = [
            "\"EXIT STATUS\"",
            "SIGNALS",
            "FILES",
            "VERSION",
            "EXAMPLES",
            "\"SEE ALSO\"",
        ];
        assert_eq!(
            headings[headings.len() - ours.len()..],
            ours,
            "{headings:?}"
        );
        assert!(page.starts_with(&Roff::new().render()), "{page}");
        assert_eq!(page.matches(&Roff::new().render()).count(), 1, "{page}");
        assert!(
            page.contains("\n.TH XBLADE 8 2026-01-02 \"xblade "),
            "{page}"
        );
        assert!(page.contains(xblade::build::VERSION), "{page}");
        // Options come from clap; hidden ones stay hidden.
        assert!(page.contains("config"), "{page}");
        assert!(!page.contains("tune\\-no"), "{page}");
        // The examples keep their columns.
        assert!(page.contains("\n.nf\n"), "{page}");
        assert!(page.contains("/etc/xblade/xblade.toml"), "{page}");
    }

    #[test]
    fn subcommand_pages_carry_the_global_options_and_point_back() {
        let status = page("xbladectl-status");
        assert!(
            status.contains("\n.TH XBLADECTL-STATUS 8 2026-12-03 "),
            "{status}"
        );
        assert!(
            status.contains("socket"),
            "global --socket missing: {status}"
        );
        assert!(status.contains("XBLADE_CONTROL"), "{status}");
        let see_also = status.split(".SH \"SEE ALSO\"").nth(1).unwrap();
        assert!(see_also.contains("\\fBxbladectl\\fR(8)"), "{see_also}");
        assert!(!see_also.contains("xbladectl\\-reload"), "{see_also}");

        let ctl = page("xbladectl");
        let see_also = ctl.split(".SH \"SEE ALSO\"").nth(1).unwrap();
        for sub in xblade::ctl::Args::command().get_subcommands() {
            // roff escapes every hyphen: `config-string` is written `config\-string`.
            let name = sub.get_name().replace('-', "\\-");
            let reference = format!("\\fBxbladectl\\-{name}\\fR(8)");
            assert!(see_also.contains(&reference), "{reference}: {see_also}");
        }
        assert!(see_also.contains("\\fBxblade\\fR(8)"), "{see_also}");
    }
}
