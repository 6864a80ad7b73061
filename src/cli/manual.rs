//! Shell completions and the man page, both generated from the command line's definition so
//! they never drift from it.

use std::io::Write;

use clap::CommandFactory;

use super::Cli;

/// `thoth-gateway completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "thoth-gateway", &mut std::io::stdout());
    0
}

/// `thoth-gateway man`: the man page (section 1, with every subcommand) on stdout.
pub fn man_page() -> i32 {
    let cmd = Cli::command();
    let mut out = Vec::new();
    if let Err(e) = render(&cmd, &mut out) {
        eprintln!("cannot render the man page: {e}");
        return 1;
    }
    match std::io::stdout().write_all(&out) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cannot write the man page: {e}");
            1
        }
    }
}

/// The page of `cmd`, then a section per subcommand (one page to install, like `git`'s
/// summary pages, rather than one file each).
fn render(cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render(out)?;
    for sub in cmd.get_subcommands() {
        let name = format!("{} {}", cmd.get_name(), sub.get_name());
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let page = clap_mangen::Man::new(sub.clone().bin_name(name));
        page.render_synopsis_section(out)?;
        page.render_description_section(out)?;
        page.render_options_section(out)?;
        if sub.has_subcommands() {
            page.render_subcommands_section(out)?;
        }
    }
    Ok(())
}
