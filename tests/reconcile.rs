//! The reconciliation run (`scripts/reconcile`) in a small variant that fits
//! every CI run: 600 messages from 8 parallel clients through the `serve`
//! binary to the aiosmtpd peer in chaos mode (random 4xx, 5xx, 421, dropped
//! connections and delays at MAIL, RCPT and after the final dot). The script
//! exits non-zero if any message answered 250 was not stored upstream, any
//! was stored twice, or any was stored although its client was told it
//! failed. The full run (5,000 messages, release build) is documented in
//! docs/hardening.md, "Reconciliation run".

use std::path::Path;
use std::process::Command;

#[test]
fn six_hundred_messages_through_a_randomly_failing_upstream_reconcile() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reconcile");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--no-build", "--guard", env!("CARGO_BIN_EXE_bccguard")])
        .args(["--messages", "600", "--clients", "8", "--rate", "0.1"])
        .args(["--seed", "7"])
        .output()
        .expect("python3 scripts/reconcile");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "reconciliation failed:\n{stdout}\n{stderr}"
    );
    // The run must have exercised both outcomes, or it proves nothing.
    let count = |label: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
    };
    assert_eq!(count("sent"), 600, "{stdout}");
    assert!(count("answered 250") > 100, "{stdout}");
    assert!(count("answered 4xx") > 10, "{stdout}");
    assert_eq!(count("delivered more than once"), 0, "{stdout}");
    assert_eq!(count("250 but not delivered"), 0, "{stdout}");
}
