//! The DPO console over real HTTP on a real socket, against a guard that
//! holds real mail (issue 17): log in, the queue, a release as Bcc that
//! reaches the aiosmtpd upstream with no external address visible and is
//! a step under the console user's name; a POST without its CSRF token
//! refused with nothing changed; a viewer who cannot release; a subject
//! `<script>` shown as text; a wrong password throttled after five tries;
//! logout ending the session; the security headers on every page. The
//! browser drives the same flows in tests/console_browser.rs.

mod common;

use std::net::SocketAddr;

use bccguard::incident::store::{Class, HoldState, Role};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A browser as far as these tests need one: one cookie jar, HTTP/1.1
/// with `Connection: close`.
struct Browser {
    addr: SocketAddr,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(addr: SocketAddr) -> Browser {
        Browser {
            addr,
            cookies: Vec::new(),
        }
    }

    async fn request(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Resp {
        let mut s = TcpStream::connect(self.addr)
            .await
            .expect("console connect");
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let body = form.map(|f| {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in f {
                q.append_pair(k, v);
            }
            q.finish()
        });
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: console.test\r\nConnection: close\r\nAccept-Language: de-DE,de;q=0.9\r\n"
        );
        if !cookie.is_empty() {
            req.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        if let Some(b) = &body {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = &body {
            req.push_str(b);
        }
        s.write_all(req.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
            .await
            .expect("console timeout")
            .expect("console read");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {text}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    self.cookies.retain(|(n, _)| n != name);
                    if !value.is_empty() {
                        self.cookies.push((name.to_string(), value.to_string()));
                    }
                }
            }
        }
        Resp {
            status,
            headers,
            body: body.to_string(),
        }
    }

    async fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Resp {
        self.request("POST", path, Some(form)).await
    }

    async fn login(&mut self, user: &str, password: &str) -> Resp {
        self.post("/login", &[("user", user), ("password", password)])
            .await
    }
}

/// The CSRF token a page's forms carry.
fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..].split('"').next().unwrap().to_string()
}

/// The guard's own notices to senders come from the null sender.
fn notice(m: &Delivered) -> bool {
    m.mail_from.is_empty() || m.mail_from == "<>"
}

const PASSWORD: &str = "correct horse battery";

/// A guard that holds open lists, with its console on port 0.
async fn console_guard(up: &Upstream) -> Guard {
    let policy = "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: hold\nconsole:\n  listen: \"127.0.0.1:0\"\n";
    let guard = Guard::start(&yaml(Some(up.addr), policy)).await;
    add_console_user(guard.shared.store.as_ref(), "anna", Role::Dpo, PASSWORD);
    add_console_user(
        guard.shared.store.as_ref(),
        "viktor",
        Role::Viewer,
        PASSWORD,
    );
    guard
}

/// Holds an open list with a hostile subject; returns the incident id.
async fn hold_one(guard: &Guard) -> String {
    let rcpts = externals(5);
    let msg = format!(
        "From: Alice <alice@example.org>\r\nTo: {}\r\nSubject: <script>alert(1)</script>\r\nMessage-ID: <c1@example.org>\r\n\r\nTermine.\r\n",
        rcpts.join(", ")
    );
    let (code, text) = smtplib_send(guard.smtp, "alice@example.org", &rcpts, &msg).await;
    assert_eq!(code, 250, "{text}");
    incident_id(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dpo_logs_in_and_releases_held_mail_as_bcc() {
    let up = Upstream::start().await;
    let guard = console_guard(&up).await;
    let id = hold_one(&guard).await;
    let mut b = Browser::new(guard.console.expect("console on"));

    // Not logged in: every page sends to the login.
    let r = b.get("/").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    let r = b.get("/login").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Anmelden"), "German by Accept-Language");

    let r = b.login("anna", PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie").expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP on loopback");

    let overview = b.get("/").await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert!(
        overview.body.contains("Warten auf Entscheidung: 1"),
        "{}",
        overview.body
    );
    let csp = overview.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(overview.header("x-frame-options"), Some("DENY"));
    assert_eq!(overview.header("cache-control"), Some("no-store"));

    let queue = b.get("/held").await;
    assert!(
        queue.body.contains(&format!("/incidents/{id}")),
        "{}",
        queue.body
    );
    assert!(!queue.body.contains("<script>"), "the subject is text");
    assert!(queue.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    let page = b.get(&format!("/incidents/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Subject: &lt;script&gt;"),
        "the held header section: {}",
        page.body
    );
    let token = csrf(&page.body);

    // Without the token: refused, nothing changed.
    let release = format!("/incidents/{id}/release");
    let r = b.post(&release, &[("how", "bcc")]).await;
    assert_eq!(r.status, 403);
    let r = b
        .post(&release, &[("how", "bcc"), ("csrf", "forged")])
        .await;
    assert_eq!(r.status, 403);
    // An original without the reason and the confirmation: refused.
    let r = b
        .post(&release, &[("how", "original"), ("csrf", &token)])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        guard.shared.store.incident(&id).unwrap().hold,
        Some(HoldState::Held)
    );
    assert!(up.messages().iter().all(notice), "nothing sent yet");

    let r = b.post(&release, &[("how", "bcc"), ("csrf", &token)]).await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some(&*format!("/incidents/{id}"))),
        "{}",
        r.body
    );
    let sent: Vec<Delivered> = up.messages().into_iter().filter(|m| !notice(m)).collect();
    assert_eq!(sent.len(), 1);
    let head = sent[0].head();
    for a in externals(5) {
        assert!(!head.contains(&a), "{a} visible after the release:\n{head}");
    }
    assert_eq!(sent[0].rcpt_tos.len(), 5);
    assert_released(
        guard.shared.store.as_ref(),
        &id,
        "anna",
        "as bcc via console: ",
    );
    let page = b.get(&format!("/incidents/{id}")).await;
    assert!(
        page.body.contains("released") && page.body.contains("(anna)"),
        "{}",
        page.body
    );
    assert_eq!(
        guard
            .metric("bccguard_quarantine_decisions_total{how=\"bcc\",by=\"console\"}")
            .await,
        1.0
    );
    assert_eq!(
        guard
            .metric("bccguard_console_logins_total{result=\"ok\"}")
            .await,
        1.0
    );

    // Logout ends the session: the old cookie opens nothing.
    let old = b.cookies.clone();
    let r = b.post("/logout", &[("csrf", &token)]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    b.cookies = old;
    assert_eq!(b.get("/").await.status, 303, "the session is gone");
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_but_cannot_decide_or_see_the_message() {
    let up = Upstream::start().await;
    let guard = console_guard(&up).await;
    let id = hold_one(&guard).await;
    let mut b = Browser::new(guard.console.unwrap());
    assert_eq!(b.login("viktor", PASSWORD).await.status, 303);
    let page = b.get(&format!("/incidents/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/release"), "no decision offered");
    assert!(page.body.contains("Nur Lesen"), "{}", page.body);
    // The logout form still has the session's token; a forged POST with
    // it is still refused for the role.
    let token = csrf(&page.body);
    let r = b
        .post(
            &format!("/incidents/{id}/release"),
            &[("how", "bcc"), ("csrf", &token)],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(b.get(&format!("/incidents/{id}/message")).await.status, 403);
    assert_eq!(
        guard.shared.store.incident(&id).unwrap().hold,
        Some(HoldState::Held)
    );
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_passwords_are_throttled_even_with_the_right_one_next() {
    let up = Upstream::start().await;
    let guard = console_guard(&up).await;
    let mut b = Browser::new(guard.console.unwrap());
    for _ in 0..5 {
        let r = b.login("anna", "wrong password!").await;
        assert_eq!(r.status, 401);
        assert!(
            r.body.contains("Benutzer oder Passwort falsch"),
            "{}",
            r.body
        );
    }
    let r = b.login("anna", PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert!(b.cookies.is_empty(), "no session while throttled");
    let text = guard.metrics_text().await;
    assert_eq!(
        sample(&text, "bccguard_console_logins_total{result=\"failed\"}"),
        5.0
    );
    assert_eq!(
        sample(&text, "bccguard_console_logins_total{result=\"throttled\"}"),
        1.0
    );
    // An unknown name fails the same way (and is counted the same).
    let mut other = Browser::new(guard.console.unwrap());
    assert_eq!(other.login("mallory", PASSWORD).await.status, 401);
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_pages_filters_and_exports_csv_without_formulas() {
    let up = Upstream::start().await;
    let guard = console_guard(&up).await;
    let id = hold_one(&guard).await;
    let mut b = Browser::new(guard.console.unwrap());
    assert_eq!(b.login("anna", PASSWORD).await.status, 303);
    let list = b.get("/incidents?class=prevented&action=hold").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains(&id), "{}", list.body);
    let none = b.get("/incidents?class=disclosed").await;
    assert!(!none.body.contains(&id));
    let csv = b.get("/incidents.csv?action=hold").await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(
        csv.body.starts_with("id,recorded_at,class,action"),
        "{}",
        csv.body
    );
    assert!(csv.body.contains(&format!("\"{id}\"")), "{}", csv.body);
    assert!(
        csv.body.contains("\"<script>alert(1)</script>\""),
        "{}",
        csv.body
    );
    let report = b.get(&format!("/incidents/{id}/report?lang=en")).await;
    assert!(
        report
            .body
            .contains("DRAFT: notification of a personal data breach"),
        "{}",
        report.body
    );
    // A disclosed incident gets "authority notified", and its clock stops.
    let i = guard.shared.store.incident(&id).unwrap();
    assert_eq!(i.class, Class::Prevented);
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_releases_its_own_held_mail_from_the_link_in_its_notice() {
    let up = Upstream::start().await;
    let policy = "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: hold\nconsole:\n  listen: \"127.0.0.1:0\"\n  public_url: \"http://console.test\"\nquarantine:\n  sender_release: [bcc]\n";
    let guard = Guard::start(&yaml(Some(up.addr), policy)).await;
    let id = hold_one(&guard).await;
    // The hold notice reaches the sender (from the null sender) with the link.
    eventually("the sender's hold notice", || async {
        up.messages().iter().any(notice)
    })
    .await;
    let told = up.messages().into_iter().find(notice).unwrap();
    let body = mail_parser::MessageParser::default()
        .parse(&told.data)
        .and_then(|m| m.body_text(0).map(|b| b.into_owned()))
        .unwrap_or_default();
    let at = body
        .find("http://console.test/release/")
        .unwrap_or_else(|| panic!("no link in:\n{body}"));
    let path = body[at + "http://console.test".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(path.starts_with(&format!("/release/{id}/")), "{path}");
    assert!(!path.contains("alice"), "no address in the link");

    let mut b = Browser::new(guard.console.unwrap());
    // A link scanner's GET only shows the page.
    let page = b.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Ihre zurückgehaltene Nachricht"),
        "{}",
        page.body
    );
    assert!(page.body.contains("value=\"bcc\"") && !page.body.contains("value=\"original\""));
    assert_eq!(
        guard.shared.store.incident(&id).unwrap().hold,
        Some(HoldState::Held)
    );
    // Never the original, and never with a token made up or bent.
    assert_eq!(b.post(&path, &[("how", "original")]).await.status, 400);
    assert_eq!(
        b.post(&path, &[("how", "split")]).await.status,
        400,
        "not offered"
    );
    let bent = format!("{}x", path);
    assert_eq!(b.post(&bent, &[("how", "bcc")]).await.status, 403);
    let other = path.replace(&id, "06H00000000000000");
    assert_eq!(b.get(&other).await.status, 403);

    let r = b.post(&path, &[("how", "bcc")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Erledigt"), "{}", r.body);
    let sent: Vec<Delivered> = up.messages().into_iter().filter(|m| !notice(m)).collect();
    assert_eq!(sent.len(), 1);
    for a in externals(5) {
        assert!(!sent[0].head().contains(&a), "{a} visible");
    }
    let steps = guard.shared.store.steps(&id).unwrap();
    let released = steps.iter().find(|s| s.step == "released").unwrap();
    assert_eq!(released.actor, "alice@example.org");
    assert!(
        released.detail.starts_with("as bcc via sender link: "),
        "{}",
        released.detail
    );
    assert_eq!(
        b.post(&path, &[("how", "bcc")]).await.status,
        409,
        "decided once"
    );
    assert_eq!(
        guard
            .metric("bccguard_quarantine_decisions_total{how=\"bcc\",by=\"sender\"}")
            .await,
        1.0
    );
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_user_header_logs_in_known_users_only() {
    let up = Upstream::start().await;
    let policy = "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: hold\nconsole:\n  listen: \"127.0.0.1:0\"\n  auth: header\n  trusted_proxies: [\"127.0.0.0/8\"]\n";
    let guard = Guard::start(&yaml(Some(up.addr), policy)).await;
    add_console_user(guard.shared.store.as_ref(), "anna", Role::Dpo, PASSWORD);
    let id = hold_one(&guard).await;
    let addr = guard.console.unwrap();
    let get = |user: Option<&'static str>, path: String, cookie: Option<String>| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: c\r\nConnection: close\r\n");
        if let Some(u) = user {
            req.push_str(&format!("X-Forwarded-User: {u}\r\n"));
        }
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let page = format!("/incidents/{id}");
    // No header, or a name the user table does not know: refused.
    assert!(
        get(None, page.clone(), None)
            .await
            .starts_with("HTTP/1.1 403")
    );
    assert!(
        get(Some("mallory"), page.clone(), None)
            .await
            .starts_with("HTTP/1.1 403")
    );
    // A known user: a session of the console's own, and back to the page.
    let first = get(Some("Anna"), page.clone(), None).await;
    assert!(first.starts_with("HTTP/1.1 303"), "{first}");
    assert!(first.contains(&format!("location: {page}\r\n")), "{first}");
    let cookie = first
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let shown = get(Some("anna"), page.clone(), Some(cookie.clone())).await;
    assert!(shown.starts_with("HTTP/1.1 200"), "{shown}");
    assert!(shown.contains("Als Bcc senden") || shown.contains("Send as Bcc"));
    // The session is anna's: another name through the proxy does not get it.
    let other = get(Some("mallory"), page, Some(cookie)).await;
    assert!(other.starts_with("HTTP/1.1 403"), "{other}");
    guard.stop().await;
}

/// The console over its own HTTPS (`console.tls_cert`): the login cookie
/// gets `Secure`; a client that does not speak TLS gets no page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_console_speaks_https_and_the_cookie_is_secure() {
    let up = Upstream::start().await;
    let pki = Pki::new("console");
    let (cert, key) = pki.leaf("console");
    let policy = format!(
        "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: hold\nconsole:\n  listen: \"127.0.0.1:0\"\n  tls_cert: {}\n  tls_key: {}\n",
        cert.display(),
        key.display()
    );
    let guard = Guard::start(&yaml(Some(up.addr), &policy)).await;
    add_console_user(guard.shared.store.as_ref(), "anna", Role::Dpo, PASSWORD);
    let addr = guard.console.unwrap();

    // A client that connects and never speaks TLS holds up nobody else
    // (the handshake timeout is 10 s; this one must get through at once).
    let _silent = TcpStream::connect(addr).await.unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        pki.connector().connect(name, tcp),
    )
    .await
    .expect("a handshake not queued behind the silent client")
    .expect("the console's TLS handshake");
    let form = format!("user=anna&password={}", PASSWORD.replace(' ', "+"));
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 303"), "{text}");
    let cookie = text
        .lines()
        .find(|l| l.starts_with("set-cookie: bccguard_session="))
        .expect("a session cookie");
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    // Plain HTTP to the TLS port: no page, and the console keeps serving.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut junk = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut junk)).await;
    assert!(!String::from_utf8_lossy(&junk).contains("Anmelden"));
    guard.stop().await;
}
