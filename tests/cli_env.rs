//! Black-box: environment overrides of policy.yaml as containers and
//! systemd units set them (`BCCGUARD__SECTION__KEY`, lists comma-separated),
//! checked through the real binary's `check` command.

use std::process::Command;

fn check(env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bccguard"))
        .arg("check")
        .envs(env.iter().copied())
        .env_remove("BCCGUARD_CONFIG")
        .output()
        .expect("run bccguard");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn lists_numbers_and_booleans_can_be_set_from_the_environment() {
    let (ok, text) = check(&[
        ("BCCGUARD__SERVER__LISTEN", "0.0.0.0:2525,[::]:2525"),
        ("BCCGUARD__SERVER__PROXY_PROTOCOL", "true"),
        (
            "BCCGUARD__SERVER__PROXY_TRUSTED_NETWORKS",
            "10.0.0.0/8,fd00::/8",
        ),
        ("BCCGUARD__SERVER__HOSTNAME", "1234"),
        ("BCCGUARD__POLICY__MAX_EXTERNAL_RECIPIENTS", "25"),
        ("BCCGUARD__POLICY__ACTION", "monitor"),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("2 listener(s), threshold 25, action monitor"),
        "{text}"
    );
}

#[test]
fn a_bad_environment_value_names_its_key() {
    let (ok, text) = check(&[("BCCGUARD__SERVER__PROXY_PROTOCOL", "maybe")]);
    assert!(!ok);
    assert!(
        text.contains("server.proxy_protocol: \"maybe\" is not true or false"),
        "{text}"
    );
}
