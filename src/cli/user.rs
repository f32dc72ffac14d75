//! The admin's `user` commands: the DPO console's accounts (`add`, `list`,
//! `remove`, `passwd`) in the guard's store. Passwords are read from the
//! terminal without echo (twice) or as one line of standard input
//! (`--password-stdin`, for scripts), checked for length and stored as
//! Argon2id hashes only ([`bccguard::console::auth`]).
//!
//! Each change says who made it: the account keeps `created_by` (the OS
//! user behind sudo, as workflow steps do), and add, remove and passwd
//! each log one line to stderr naming the account and the person; there is
//! no incident to hang a step on.
//!
//! `user add` may create the database: the first account is made on a
//! fresh install, before the guard ever ran. The other commands, like the
//! DPO's, refuse a missing one (a wrong `--config` must not answer from an
//! empty table).

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use bccguard::config::Config;
use bccguard::console::auth::{Role, check_new_password, hash_password, normalize_user_name};
use bccguard::incident::notify::rfc3339;
use bccguard::incident::store::{SqliteStore, Store, StoreError, User};

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Make a console account; asks for its password twice (or reads one
    /// line of stdin with --password-stdin). Creates the database if the
    /// guard never ran.
    Add {
        /// The login name (letters, digits, . _ - @ +; stored lower case).
        name: String,
        /// dpo: decides on held mail and sees bodies and recipients;
        /// viewer: reads the register and held headers only.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Read the password as one line of standard input, no prompt.
        #[arg(long = "password-stdin")]
        password_stdin: bool,
    },
    /// Every account: name, role, when and by whom it was made.
    List,
    /// Delete an account; its console sessions end at once.
    Remove {
        /// The login name.
        name: String,
    },
    /// Set a new password; the account's console sessions end at once.
    Passwd {
        /// The login name.
        name: String,
        /// Read the password as one line of standard input, no prompt.
        #[arg(long = "password-stdin")]
        password_stdin: bool,
    },
}

/// `--role`: the console's roles as the command line spells them.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Dpo,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Dpo => Role::Dpo,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

/// Runs one `user` command on the guard's store (blocking calls: a few
/// rows, no runtime needed).
pub fn user(config: Config, command: UserCmd) -> anyhow::Result<()> {
    let actor = bccguard::incident::quarantine::actor();
    match command {
        UserCmd::Add {
            name,
            role,
            password_stdin,
        } => {
            let name = account_name(&name)?;
            let role = Role::from(role);
            // Before the prompt: a taken name should not cost a password.
            let existing = if config.store.path.exists() {
                Some(super::dpo::open_store(&config)?)
            } else {
                None
            };
            if let Some(store) = &existing
                && store.user(&name)?.is_some()
            {
                return Err(StoreError::UserExists(name).into());
            }
            let password_hash = hash_password(&new_password(password_stdin)?)?;
            // After it: a refused password leaves no empty database behind.
            let store = match existing {
                Some(store) => store,
                None => create_store(&config)?,
            };
            store.add_user(&User {
                name: name.clone(),
                role,
                password_hash,
                created_at: bccguard::clock::now() as i64,
                created_by: actor.clone(),
            })?;
            tracing::info!(user = %name, %role, by = %actor, "console account added");
            super::print(&format!("user {name} added as {role} by {actor}\n"))?;
        }
        UserCmd::List => list(super::dpo::open_store(&config)?.as_ref())?,
        UserCmd::Remove { name } => {
            let name = account_name(&name)?;
            let store = super::dpo::open_store(&config)?;
            let ended = store.remove_user(&name)?;
            tracing::info!(user = %name, by = %actor, sessions_ended = ended, "console account removed");
            super::print(&format!(
                "user {name} removed by {actor}; {ended} console session(s) ended\n"
            ))?;
            if !store.users()?.iter().any(|u| u.role == Role::Dpo) {
                super::print(
                    "  no dpo account left: nobody can decide in the console (bccguard user add NAME --role dpo)\n",
                )?;
            }
        }
        UserCmd::Passwd {
            name,
            password_stdin,
        } => {
            let name = account_name(&name)?;
            let store = super::dpo::open_store(&config)?;
            if store.user(&name)?.is_none() {
                return Err(StoreError::NoUser(name).into());
            }
            let hash = hash_password(&new_password(password_stdin)?)?;
            let ended = store.set_password(&name, &hash)?;
            tracing::info!(user = %name, by = %actor, sessions_ended = ended, "console password changed");
            super::print(&format!(
                "user {name}: password changed by {actor}; {ended} console session(s) ended\n"
            ))?;
        }
    }
    Ok(())
}

/// The name as stored, or why it cannot be one.
fn account_name(raw: &str) -> anyhow::Result<String> {
    normalize_user_name(raw).map_err(anyhow::Error::msg)
}

/// `user list`: names, roles, when and by whom; never the hashes.
fn list(store: &dyn Store) -> anyhow::Result<()> {
    let users = store.users()?;
    let width = users.iter().map(|u| u.name.len()).max().unwrap_or(0);
    let mut out = format!("{} user(s)\n", users.len());
    for u in &users {
        out.push_str(&format!(
            "{:<width$}  {:<6}  created {} by {}\n",
            u.name,
            u.role.as_str(),
            rfc3339(u.created_at),
            u.created_by
        ));
    }
    super::print(&out)
}

/// The store for `user add` when the guard never ran: the guard's
/// database, created (empty, mode 0600), so the first account can be made
/// before the first start. Created by root (sudo), the file gets the owner of its
/// directory, the guard's state directory, so the guard can open it.
fn create_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let path = &config.store.path;
    create_private(path)
        .with_context(|| format!("cannot create the database {} (store.path)", path.display()))?;
    let store = SqliteStore::open(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the new database {} (store.path): {e}",
            path.display()
        )
    })?;
    tracing::info!(path = %path.display(), "created the guard's database (store.path) for the first account");
    Ok(Arc::new(store))
}

/// An empty file readable by its owner only (SQLite takes it for a new
/// database), owned like its directory.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let owner = std::fs::metadata(dir)?;
    if nix::unistd::Uid::effective().is_root() && owner.uid() != 0 {
        std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid()))?;
    }
    Ok(())
}

/// A new password: one line of stdin, or typed twice at the terminal
/// without echo; refused if empty, too short or too long.
fn new_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let pw = read_line(&mut std::io::stdin().lock())?;
        check_new_password(&pw)?;
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "no terminal to ask for the password on: give it as one line of standard input with --password-stdin"
        );
    }
    let pw = prompt("New console password: ")?;
    check_new_password(&pw)?;
    if prompt("Again: ")? != pw {
        anyhow::bail!("the two passwords differ; nothing changed");
    }
    Ok(pw)
}

/// One line without its line end (LF or CRLF); the rest of the line is
/// the password, spaces included.
fn read_line(input: &mut dyn std::io::BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_string())
}

/// Asks on stderr and reads a line from the terminal with echo off.
fn prompt(question: &str) -> anyhow::Result<String> {
    let mut err = std::io::stderr().lock();
    err.write_all(question.as_bytes())?;
    err.flush()?;
    let line = {
        let _quiet = EchoOff::new()?;
        read_line(&mut std::io::stdin().lock())?
    };
    // The Enter was not echoed either.
    err.write_all(b"\n")?;
    Ok(line)
}

/// The terminal's echo off while it lives (restored on drop, so an error
/// on the way does not leave the admin's shell mute).
struct EchoOff(nix::sys::termios::Termios);

impl EchoOff {
    fn new() -> anyhow::Result<EchoOff> {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn the echo off")?;
        Ok(EchoOff(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, tcsetattr};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stdin_password_is_the_line_without_its_end_spaces_kept() {
        let read = |s: &str| read_line(&mut s.as_bytes()).unwrap();
        assert_eq!(read("correct horse\n"), "correct horse");
        assert_eq!(read("correct horse\r\nsecond line\n"), "correct horse");
        assert_eq!(read(" padded  \n"), " padded  ");
        assert_eq!(read("no newline"), "no newline");
        assert_eq!(read(""), "");
    }
}
