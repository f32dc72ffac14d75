//! Black-box: TLS on both hops and AUTH passed through, with a test CA
//! generated here, a real TLS+AUTH upstream (aiosmtpd) and a real client
//! library (lettre over rustls). Also the attacks: plaintext AUTH, STARTTLS
//! command injection, a wrong upstream certificate, an upstream that stops
//! offering STARTTLS.

mod common;

use std::net::SocketAddr;

use common::*;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Guard config: TLS towards clients (require_tls default), upstream
/// STARTTLS verified against `ca`, AUTH passthrough.
fn guard_yaml(
    up: &Upstream,
    pki: &Pki,
    upstream_ca: &std::path::Path,
    extra_server: &str,
    upstream_tls: &str,
) -> String {
    let (cert, key) = pki.leaf("guard");
    format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  tls_listen: [\"127.0.0.1:0\"]\n  hostname: guard.test\n  trusted_networks: [\"10.99.0.0/16\"]\n  tls:\n    cert: {}\n    key: {}\n{extra_server}\
         upstream:\n  address: \"{}\"\n  tls: {upstream_tls}\n  ca: {}\n  tls_name: localhost\n  auth: passthrough\n  connect_timeout: 5s\n  command_timeout: 10s\n  data_timeout: 10s\n\
         metrics:\n  listen: \"127.0.0.1:0\"\nincidents:\n  path: INCIDENTS\n{POLICY}",
        cert.display(),
        key.display(),
        up.addr,
        upstream_ca.display()
    )
}

async fn tls_upstream(pki: &Pki, mode: &str) -> Upstream {
    tls_upstream_with(pki, mode, &["--auth", "alice@example.org:secret"]).await
}

async fn tls_upstream_with(pki: &Pki, mode: &str, extra: &[&str]) -> Upstream {
    let (cert, key) = pki.leaf("upstream");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut args = vec!["--tls-cert", &cert, "--tls-key", &key, mode];
    args.extend_from_slice(extra);
    Upstream::start_with(&args).await
}

fn transport(
    guard: &Guard,
    pki: &Pki,
    user: &str,
    password: &str,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let params = TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap();
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(guard.smtp.port())
        .tls(Tls::Required(params))
        .credentials(Credentials::new(user.into(), password.into()))
        .authentication(vec![Mechanism::Plain])
        .build()
}

fn email(from: &str, to: &str) -> Message {
    Message::builder()
        .from(from.parse().unwrap())
        .to(to.parse().unwrap())
        .subject("Befund")
        .body(String::from("Guten Tag\r\n"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_hops_and_auth_passthrough_deliver() {
    let pki = Pki::new("test CA");
    let up = tls_upstream(&pki, "--starttls").await;
    let guard = Guard::start(&guard_yaml(&up, &pki, &pki.ca(), "", "starttls")).await;
    let client = transport(&guard, &pki, "alice@example.org", "secret");
    let resp = client
        .send(email("alice@example.org", "bob@partner.test"))
        .await
        .expect("send over TLS with AUTH");
    assert_eq!(resp.code().to_string(), "250");
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls, "the guard's upstream session was not encrypted");
    assert_eq!(
        got[0].auth.as_deref(),
        Some("alice@example.org"),
        "upstream saw the client's own login"
    );
    let head = got[0].head();
    assert!(head.contains("with ESMTPSA id "), "{head}");
    assert!(head.contains("(using version=TLSv1.3"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_gets_upstreams_refusal_and_repeated_failures_close_the_session() {
    let pki = Pki::new("test CA");
    let up = tls_upstream(&pki, "--starttls").await;
    let extra = "  limits:\n    max_auth_failures: 2\n    auth_failure_delay: 10ms\n";
    let guard = Guard::start(&guard_yaml(&up, &pki, &pki.ca(), extra, "starttls")).await;
    let err = transport(&guard, &pki, "alice@example.org", "wrong")
        .send(email("alice@example.org", "bob@partner.test"))
        .await
        .expect_err("wrong password must fail");
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().contains("535"), "{err}");
    assert_eq!(up.count(), 0);
    assert_eq!(
        guard
            .metric("bccguard_refused_total{reason=\"auth_failed\"}")
            .await,
        1.0
    );

    // Raw session: two failures in a row end it with 421.
    let mut c = tls_client(&guard, &pki, guard.smtp, true).await;
    c.ehlo().await;
    let bad = base64_plain("alice@example.org", "nope");
    c.cmd(&format!("AUTH PLAIN {bad}"), 535).await;
    c.send(format!("AUTH PLAIN {bad}\r\n")).await;
    c.expect(535).await;
    c.expect(421).await;
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_auth_and_mail_are_refused_when_tls_is_required() {
    let pki = Pki::new("test CA");
    let up = tls_upstream(&pki, "--starttls").await;
    let guard = Guard::start(&guard_yaml(&up, &pki, &pki.ca(), "", "starttls")).await;
    let mut c = Client::connect(guard.smtp).await;
    let ehlo = c.ehlo().await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(
        !ehlo.contains("AUTH"),
        "AUTH must not be offered in plaintext: {ehlo}"
    );
    let text = c
        .cmd(
            &format!("AUTH PLAIN {}", base64_plain("alice@example.org", "secret")),
            538,
        )
        .await;
    assert!(text.contains("5.7.11"), "{text}");
    assert!(
        c.cmd("MAIL FROM:<alice@example.org>", 530)
            .await
            .contains("5.7.0")
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_pipelined_after_starttls_is_discarded_and_the_session_starts_over() {
    let pki = Pki::new("test CA");
    // An upstream that trusts the guard without AUTH.
    let up = tls_upstream_with(&pki, "--starttls", &[]).await;
    // Without require_tls, so MAIL may come before STARTTLS.
    let guard = Guard::start(
        &guard_yaml(
            &up,
            &pki,
            &pki.ca(),
            "  require_tls: false\n  trusted_networks: [\"127.0.0.0/8\"]\n",
            "starttls",
        )
        .replace("  trusted_networks: [\"10.99.0.0/16\"]\n", ""),
    )
    .await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.cmd("MAIL FROM:<alice@example.org>", 250).await;
    // The injection: RSET rides in the same segment as STARTTLS.
    c.send("STARTTLS\r\nRSET\r\n").await;
    c.expect(220).await;
    let mut t = tls_over(c.into_tcp(), &pki.ca_pem).await;
    // The first reply after the handshake answers our EHLO, not the RSET.
    let ehlo = t.ehlo().await;
    assert!(ehlo.contains("guard.test greets client.test"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    // The transaction from before the handshake is forgotten.
    t.cmd("RCPT TO:<bob@partner.test>", 503).await;
    // And a STARTTLS over TLS is a sequence error.
    t.cmd("STARTTLS", 503).await;
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_upstream_certificate_is_a_4xx_and_nothing_goes_out_in_plaintext() {
    let pki = Pki::new("test CA");
    let other = Pki::new("someone else's CA");
    let up = tls_upstream(&pki, "--starttls").await;
    // The guard trusts only `other`, so upstream's certificate is wrong.
    let guard = Guard::start(&guard_yaml(&up, &pki, &other.ca(), "", "starttls")).await;
    let mut c = tls_client(&guard, &pki, guard.smtp, true).await;
    c.ehlo().await;
    let text = c
        .cmd(
            &format!("AUTH PLAIN {}", base64_plain("alice@example.org", "secret")),
            451,
        )
        .await;
    assert!(text.contains("4.7.0"), "{text}");
    assert_eq!(up.count(), 0);
    assert_eq!(
        guard
            .metric("bccguard_upstream_errors_total{kind=\"tls\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_starttls_is_never_used_in_plaintext() {
    let pki = Pki::new("test CA");
    // A plain upstream that offers no STARTTLS at all (a downgrade).
    let up = Upstream::start().await;
    let yaml = guard_yaml(
        &up,
        &pki,
        &pki.ca(),
        "  trusted_networks: [\"127.0.0.0/8\"]\n",
        "starttls",
    )
    .replace("  trusted_networks: [\"10.99.0.0/16\"]\n", "");
    let guard = Guard::start(&yaml).await;
    let mut c = tls_client(&guard, &pki, guard.smtp, true).await;
    c.ehlo().await;
    assert!(
        c.cmd("MAIL FROM:<alice@example.org>", 451)
            .await
            .contains("4.7.0")
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_on_both_sides() {
    let pki = Pki::new("test CA");
    let up = tls_upstream(&pki, "--implicit").await;
    let guard = Guard::start(&guard_yaml(&up, &pki, &pki.ca(), "", "tls")).await;
    let smtps = guard.smtps.expect("tls_listen bound");
    let mut c = tls_client(&guard, &pki, smtps, false).await;
    c.expect(220).await;
    let ehlo = c.ehlo().await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    // AUTH LOGIN, step by step.
    c.cmd("AUTH LOGIN", 334).await;
    c.cmd(&b64("alice@example.org"), 334).await;
    c.cmd(&b64("secret"), 235).await;
    let r = c
        .send_mail(
            "alice@example.org",
            &["bob@partner.test"],
            &message("alice@example.org", "bob@partner.test", None, "hi\r\n"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls);
    assert_eq!(got[0].auth.as_deref(), Some("alice@example.org"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_user_may_only_send_as_itself_when_sender_match_is_required() {
    let pki = Pki::new("test CA");
    let up = tls_upstream(&pki, "--starttls").await;
    let guard = Guard::start(&guard_yaml(
        &up,
        &pki,
        &pki.ca(),
        "  require_sender_match: true\n",
        "starttls",
    ))
    .await;
    let mut c = tls_client(&guard, &pki, guard.smtp, true).await;
    c.ehlo().await;
    c.cmd(
        &format!("AUTH PLAIN {}", base64_plain("alice@example.org", "secret")),
        235,
    )
    .await;
    assert!(
        c.cmd("MAIL FROM:<chef@example.org>", 553)
            .await
            .contains("5.7.1")
    );
    // Right envelope, someone else's header From: refused at the end.
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    c.send_message(&message(
        "chef@example.org",
        "bob@partner.test",
        None,
        "x\r\n",
    ))
    .await;
    assert!(c.expect(553).await.contains("chef@example.org"));
    let r = c
        .send_mail(
            "alice@example.org",
            &["bob@partner.test"],
            &message(
                "Alice <ALICE@example.org>",
                "bob@partner.test",
                None,
                "x\r\n",
            ),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_logs_in_upstream_for_trusted_clients() {
    let pki = Pki::new("test CA");
    let up = tls_upstream(&pki, "--starttls").await;
    let secret = pki.dir.path().join("password");
    std::fs::write(&secret, "secret\n").unwrap();
    let yaml = guard_yaml(
        &up,
        &pki,
        &pki.ca(),
        "  require_tls: false\n  trusted_networks: [\"127.0.0.0/8\"]\n",
        "starttls",
    )
    .replace("  trusted_networks: [\"10.99.0.0/16\"]\n", "")
    .replace(
        "  auth: passthrough\n",
        &format!(
            "  auth:\n    username: alice@example.org\n    password_file: {}\n",
            secret.display()
        ),
    );
    let guard = Guard::start(&yaml).await;
    let mut c = Client::connect(guard.smtp).await;
    let ehlo = c.cmd("EHLO scanner.test", 250).await;
    assert!(
        !ehlo.contains("AUTH"),
        "clients do not log in with a service account: {ehlo}"
    );
    let r = c
        .mail(
            "scanner@example.org",
            &["bob@partner.test"],
            &message("scanner@example.org", "bob@partner.test", None, "scan\r\n"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got[0].auth.as_deref(), Some("alice@example.org"));
    assert!(got[0].tls);
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn base64_plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// A raw client on TLS: after EHLO + STARTTLS (`starttls`), or from the
/// first byte (implicit TLS; the greeting is then still unread).
async fn tls_client(_guard: &Guard, pki: &Pki, addr: SocketAddr, starttls: bool) -> TlsClient {
    if starttls {
        let mut c = Client::connect(addr).await;
        c.ehlo().await;
        c.cmd("STARTTLS", 220).await;
        tls_over(c.into_tcp(), &pki.ca_pem).await
    } else {
        tls_over(
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            &pki.ca_pem,
        )
        .await
    }
}

/// The raw test client on TLS.
pub type TlsClient = Client<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// TLS on `tcp`, trusting only the test CA; reads nothing yet.
async fn tls_over(tcp: tokio::net::TcpStream, ca_pem: &str) -> TlsClient {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector_for(ca_pem)
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the guard");
    Client::over(tls)
}

/// An upstream session logged in with one client's credentials must never
/// serve another client: the guard pools idle upstream sessions, but not
/// those that carry a user's login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_upstream_session_is_never_handed_to_another_client() {
    let pki = Pki::new("test CA");
    let up = tls_upstream(&pki, "--starttls").await;
    let yaml = guard_yaml(
        &up,
        &pki,
        &pki.ca(),
        "  trusted_networks: [\"127.0.0.0/8\"]\n",
        "starttls",
    )
    .replace("  trusted_networks: [\"10.99.0.0/16\"]\n", "");
    let guard = Guard::start(&yaml).await;
    // Alice logs in and sends; her upstream session is logged in as her.
    let mut alice = tls_client(&guard, &pki, guard.smtp, true).await;
    alice.cmd("EHLO alice.test", 250).await;
    alice
        .cmd(
            &format!("AUTH PLAIN {}", base64_plain("alice@example.org", "secret")),
            235,
        )
        .await;
    let r = alice
        .send_mail(
            "alice@example.org",
            &["bob@partner.test"],
            &message("alice@example.org", "bob@partner.test", None, "1\r\n"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    // A trusted client without a login: upstream must see an anonymous
    // session and refuse it, never Alice's. (Upstream's answer to MAIL comes
    // with the first RCPT.)
    let mut scanner = tls_client(&guard, &pki, guard.smtp, true).await;
    scanner.cmd("EHLO scanner.test", 250).await;
    scanner.cmd("MAIL FROM:<scanner@example.org>", 250).await;
    let refused = scanner.cmd("RCPT TO:<bob@partner.test>", 530).await;
    assert!(refused.contains("5.7.0"), "{refused}");
    // Alice's own next message still goes out as her.
    let r = alice
        .send_mail(
            "alice@example.org",
            &["carol@partner.test"],
            &message("alice@example.org", "carol@partner.test", None, "2\r\n"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|m| m.auth.as_deref() == Some("alice@example.org"))
    );
}
