//! `xbladectl`: talks to a running xblade over its control socket. Everything is in
//! [`xblade::ctl`]; the command line is defined there so that man pages and completions can be
//! generated from it.

fn main() -> std::process::ExitCode {
    xblade::ctl::main()
}
