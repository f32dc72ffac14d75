//! The admin's commands that need no store: `check` (validate a policy
//! file), `explain` (what the guard would do with a message) and `health`
//! (ask a running guard, for container health checks).

use std::path::PathBuf;

use anyhow::Context;

use bccguard::config::Config;
use bccguard::explain::Verdict;

/// Loads and validates a policy file and prints what it sets and warns of.
pub fn check(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = super::load(path.as_ref())?;
    let name = path.map_or("embedded default policy.yaml".to_string(), |p| {
        p.display().to_string()
    });
    println!(
        "{name}: OK ({} listener(s), threshold {}, action {}, {} rule(s))",
        config.server.listen.len(),
        config.policy.max_external_recipients,
        config.policy.action,
        config.policy.rules.len()
    );
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    Ok(())
}

/// Prints what the guard would do with a message file; returns the
/// verdict, which is the exit status.
pub fn explain(
    config: &Config,
    message: &PathBuf,
    rcpt: &[String],
    from: Option<&str>,
) -> anyhow::Result<Verdict> {
    let raw =
        std::fs::read(message).with_context(|| format!("cannot read {}", message.display()))?;
    let name = message.display().to_string();
    let groups = approved_groups(config);
    let explained =
        bccguard::explain::explain_with(config, groups.as_ref(), &name, &raw, rcpt, from);
    super::print(&explained.text)?;
    Ok(explained.verdict)
}

/// The approved groups of the guard's store, if there is one to read
/// (explain writes nothing, so it never creates a database).
fn approved_groups(config: &Config) -> Option<bccguard::policy::Groups> {
    let store = bccguard::incident::store::SqliteStore::open_existing(&config.store.path).ok()?;
    bccguard::incident::groups::snapshot(&store)
        .ok()
        .map(|(_, g)| g)
}

/// Asks a running guard's /healthz or /readyz.
pub fn health(path: Option<PathBuf>, ready: bool) -> anyhow::Result<()> {
    let config = super::load(path.as_ref())?;
    let addr = config
        .metrics
        .listen
        .context("metrics.listen is empty: the guard serves no health endpoint")?;
    let endpoint = if ready { "/readyz" } else { "/healthz" };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = runtime
        .block_on(bccguard::relay::health::probe(addr, endpoint))
        .with_context(|| format!("GET {endpoint} on {addr}"))?;
    anyhow::ensure!(code == 200, "GET {endpoint} on {addr}: HTTP {code}");
    println!("GET {endpoint} on {addr}: HTTP 200");
    Ok(())
}
