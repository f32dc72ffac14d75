//! The command line's subcommands, one file per audience: [`serve`] runs
//! the guard, [`admin`] checks and explains a policy and probes a running
//! guard, [`dpo`] works the quarantine and the incident register,
//! [`group`] the approved open groups, [`user`] the console's accounts.

pub mod admin;
pub mod dpo;
pub mod group;
pub mod serve;
pub mod user;

use std::path::PathBuf;

use anyhow::Context;

use bccguard::config::Config;

/// The policy file, or the embedded default when none is given.
pub fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        None => Ok(Config::embedded_default()?),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Ok(Config::load_file_text(&text, p)?)
        }
    }
}

/// Writes a command's output to stdout. A reader that stops early
/// (`| head`, `| grep -q`) is not an error: the rest is not wanted, and a
/// panic on the closed pipe would only add noise to the admin's screen.
pub fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}
