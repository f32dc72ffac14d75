//! The `bccguard` command line: `serve`, `check`, `explain`, `health`, the
//! DPO's `quarantine`, `incident` and `group` commands on the store, and
//! `user` for the console's accounts.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

use cli::dpo::{IncidentCmd, QuarantineCmd, incident, quarantine, workflow};
use cli::group::{GroupCmd, group};
use cli::user::{UserCmd, user};
use cli::{admin, load, serve::serve};

/// SMTP submission guard against open distribution lists (To/Cc leaks).
#[derive(Parser, Debug)]
#[command(name = "bccguard", version, about)]
struct Cli {
    /// Log format: text (for a terminal) or json (for log shippers).
    #[arg(
        long,
        global = true,
        env = "BCCGUARD_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the guard.
    Serve {
        /// policy.yaml; without it the embedded default is used.
        #[arg(long, short, env = "BCCGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a policy file; exits non-zero and lists every problem.
    Check {
        /// policy.yaml; without it the embedded default is checked.
        #[arg(long, short, env = "BCCGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show what the guard would do with a message, sending nothing.
    #[command(after_help = "\
Exit status (for scripts):
  0  pass: relayed unchanged, nothing recorded
  1  error: the message or the policy could not be read
  2  reject: refused, nothing sent
  3  hold: kept in the quarantine for a decision
  4  rewritten: sent with the recipients in Bcc, or split into copies
  5  recorded: relayed unchanged with an incident recorded (monitor, allow)")]
    Explain {
        /// policy.yaml; without it the embedded default is used.
        #[arg(long, short, env = "BCCGUARD_CONFIG")]
        config: Option<PathBuf>,
        /// The message (.eml, RFC 5322).
        message: PathBuf,
        /// Envelope recipient (repeatable); default: the visible addresses.
        #[arg(long = "rcpt")]
        rcpt: Vec<String>,
        /// Envelope sender; default: the header From.
        #[arg(long = "from")]
        from: Option<String>,
    },
    /// Ask a running guard's /healthz (or /readyz) on metrics.listen; exits
    /// 0 on HTTP 200. For container health checks in images without a shell.
    Health {
        /// policy.yaml of the running guard (for metrics.listen).
        #[arg(long, short, env = "BCCGUARD_CONFIG")]
        config: Option<PathBuf>,
        /// Ask /readyz (can it take mail now?) instead of /healthz.
        #[arg(long)]
        ready: bool,
    },
    /// Held messages (`action: hold`): list, show, release, drop.
    Quarantine {
        /// policy.yaml of the guard (for store.path and the upstream).
        #[arg(long, short, env = "BCCGUARD_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: QuarantineCmd,
    },
    /// The incident register: list incidents, draft an Art. 33 notification.
    Incident {
        /// policy.yaml of the guard (for store.path and incidents.*).
        #[arg(long, short, env = "BCCGUARD_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: IncidentCmd,
    },
    /// Approved open groups: approve from a held incident, list, show,
    /// remove.
    Group {
        /// policy.yaml of the guard (for store.path and groups.max_age).
        #[arg(long, short, env = "BCCGUARD_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: GroupCmd,
    },
    /// The DPO console's accounts: add (with a role), list, remove, and a
    /// new password.
    User {
        /// policy.yaml of the guard (for store.path).
        #[arg(long, short, env = "BCCGUARD_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: UserCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Cmd::Serve { config } => serve(config),
        Cmd::Check { config } => admin::check(config),
        Cmd::Explain {
            config,
            message,
            rcpt,
            from,
        } => {
            // The verdict is the exit status: scripts branch on it.
            return match load(config.as_ref())
                .and_then(|c| admin::explain(&c, &message, &rcpt, from.as_deref()))
            {
                Ok(verdict) => ExitCode::from(verdict.exit_code()),
                Err(e) => fail(&e),
            };
        }
        Cmd::Health { config, ready } => admin::health(config, ready),
        Cmd::Quarantine { config, command } => {
            load(config.as_ref()).and_then(|c| workflow(|| quarantine(c, command)))
        }
        Cmd::Incident { config, command } => {
            load(config.as_ref()).and_then(|c| workflow(|| incident(c, command)))
        }
        Cmd::Group { config, command } => {
            load(config.as_ref()).and_then(|c| workflow(|| group(c, command)))
        }
        Cmd::User { config, command } => load(config.as_ref()).and_then(|c| user(c, command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Prints the error with its causes; exit status 1.
fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("bccguard: {e:#}");
    ExitCode::FAILURE
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BCCGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
