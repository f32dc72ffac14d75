//! Shared harness for the black-box tests: a real upstream SMTP server
//! (aiosmtpd, `tests/peers/upstream.py`), the guard started in-process on
//! port 0 via `bccguard::relay::server::run`, the one SMTP test client
//! ([`Client`]: whole transactions, or raw bytes for scripted byte-exact
//! sessions), the fake peers written in Rust ([`peers`]: a scripted SMTP
//! upstream, a webhook receiver), and tokio's paused clock for timeout
//! tests ([`clock`]). Real sockets everywhere; no fixed ports, no sleeps
//! for synchronisation.
#![allow(dead_code)]

pub mod clock;
pub mod peers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bccguard::config::Config;
use bccguard::relay::Shared;
use bccguard::relay::server::{self, Listeners};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf,
    WriteHalf,
};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// One message as the upstream server stored it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub mail_from: String,
    pub mail_options: Vec<String>,
    pub rcpt_tos: Vec<String>,
    pub rcpt_options: Vec<Vec<String>>,
    pub data: Vec<u8>,
    /// The guard's session to upstream was encrypted.
    pub tls: bool,
    /// The login the guard's upstream session authenticated as.
    pub auth: Option<String>,
}

impl Delivered {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The header section as text (up to the empty line).
    pub fn head(&self) -> String {
        let text = self.text();
        text.split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

/// The aiosmtpd upstream, killed when dropped.
pub struct Upstream {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Upstream::start_with(&[]).await
    }

    /// An upstream that offers PIPELINING (RFC 2920) in its EHLO reply.
    pub async fn start_pipelining() -> Upstream {
        Upstream::start_with(&["--pipelining"]).await
    }

    /// With extra peer options (`--starttls`, `--implicit`, `--tls-cert`,
    /// `--tls-key`, `--auth user:pass`).
    pub async fn start_with(options: &[&str]) -> Upstream {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/upstream.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .arg("--slow")
            .arg("3")
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiosmtpd (run .ci/run or: pip install aiosmtpd)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("upstream peer did not start")
            .expect("read port");
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("upstream peer said {line:?}; is aiosmtpd installed?"));
        Upstream {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        }
    }

    /// Every stored message, in order of arrival.
    pub fn messages(&self) -> Vec<Delivered> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|json| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("meta");
                let data = std::fs::read(json.with_extension("eml")).expect("eml");
                let strings = |v: &serde_json::Value| -> Vec<String> {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                Delivered {
                    mail_from: meta["mail_from"].as_str().unwrap_or_default().to_string(),
                    mail_options: strings(&meta["mail_options"]),
                    rcpt_tos: strings(&meta["rcpt_tos"]),
                    rcpt_options: meta["rcpt_options"]
                        .as_array()
                        .map(|a| a.iter().map(strings).collect())
                        .unwrap_or_default(),
                    data,
                    tls: meta["tls"].as_bool().unwrap_or(false),
                    auth: meta["auth"].as_str().map(String::from),
                }
            })
            .collect()
    }

    pub fn count(&self) -> usize {
        self.messages().len()
    }
}

/// The guard, running in this process on port 0; shut down when dropped.
pub struct Guard {
    pub smtp: SocketAddr,
    /// The first implicit-TLS listener, if `server.tls_listen` is set.
    pub smtps: Option<SocketAddr>,
    pub metrics: SocketAddr,
    /// The DPO console, if the policy turns it on (`console.listen`).
    pub console: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A policy.yaml for tests: `extra` is appended (may override sections).
pub fn yaml(upstream: Option<SocketAddr>, policy: &str) -> String {
    let target = match upstream {
        Some(a) => format!(
            "upstream:\n  address: \"{a}\"\n  connect_timeout: 5s\n  command_timeout: 10s\n  data_timeout: 10s\n"
        ),
        None => "upstream:\n  maildir: MAILDIR\n".to_string(),
    };
    format!(
        "server:\n  listen: [\"127.0.0.1:0\"]\n  hostname: guard.test\n  trusted_networks: [\"127.0.0.0/8\"]\n{target}metrics:\n  listen: \"127.0.0.1:0\"\nincidents:\n  path: INCIDENTS\n{policy}"
    )
}

/// Waits (bounded) until upstream holds `n` messages.
pub async fn wait_for(up: &Upstream, n: usize) -> Vec<Delivered> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = up.messages();
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Files in a spool directory (entries and their messages).
pub fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The same policy.yaml with `upstream.recipients: deferred`: the guard
/// answers RCPT itself and upstream hears the envelope with the message.
pub fn deferred(yaml_text: &str) -> String {
    yaml_text.replacen("upstream:\n", "upstream:\n  recipients: deferred\n", 1)
}

/// A test policy.yaml with its files in `dir`: the `INCIDENTS` and
/// `MAILDIR` placeholders filled, and a spool and store there unless the
/// text names its own.
pub fn in_dir(yaml_text: &str, dir: &Path) -> String {
    let mut text = yaml_text
        .replace(
            "INCIDENTS",
            &dir.join("incidents.jsonl").display().to_string(),
        )
        .replace("MAILDIR", &dir.join("outbox").display().to_string());
    if !text.contains("\nspool:") {
        // Never the default ./spool in the source tree.
        let spool = dir.join("spool");
        text.push_str(&format!("spool:\n  path: {}\n", spool.display()));
    }
    if !text.contains("\nstore:") {
        // Never the default ./bccguard.db in the source tree.
        let store = dir.join("bccguard.db");
        text.push_str(&format!("store:\n  path: {}\n", store.display()));
    }
    text
}

/// The default test policy: example.org internal, threshold 3.
pub const POLICY: &str = "policy:\n  internal_domains: [\"example.org\", \"*.example.org\"]\n  max_external_recipients: 3\n  action: reject\n";

impl Guard {
    pub async fn start(yaml_text: &str) -> Guard {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = in_dir(yaml_text, dir.path());
        let config = Config::from_yaml(&text, "test").unwrap_or_else(|e| panic!("{e}"));
        let listeners = Listeners::bind(&config).await.expect("bind");
        let smtp = listeners.smtp[0].local_addr().unwrap();
        let smtps = listeners.smtps.first().map(|l| l.local_addr().unwrap());
        let metrics = listeners.metrics.as_ref().unwrap().local_addr().unwrap();
        let console = listeners.console.as_ref().map(|l| l.local_addr().unwrap());
        let shared = Arc::new(Shared::new(config).expect("shared"));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server::run(shared.clone(), listeners, async move {
            let _ = stopped.await;
        }));
        let task = tokio::spawn(async move {
            task.await.expect("server task").expect("server run");
        });
        Guard {
            smtp,
            smtps,
            metrics,
            console,
            shared,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn with_upstream(up: &Upstream, policy: &str) -> Guard {
        Guard::start(&yaml(Some(up.addr), policy)).await
    }

    /// Incident records written so far.
    pub fn incidents(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("incidents.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("incident line is JSON"))
            .collect()
    }

    pub fn incidents_raw(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("incidents.jsonl")).unwrap_or_default()
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// GET /metrics over a real socket.
    pub async fn metrics_text(&self) -> String {
        let mut s = TcpStream::connect(self.metrics)
            .await
            .expect("metrics connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        tokio::time::timeout(WAIT, s.read_to_string(&mut body))
            .await
            .expect("metrics timeout")
            .unwrap();
        body
    }

    /// The value of one sample line, e.g. `bccguard_messages_total{action="pass"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        sample(&self.metrics_text().await, series)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(WAIT, t)
                .await
                .expect("guard did not stop")
                .unwrap();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A scripted SMTP client speaking raw bytes, over plain TCP or any other
/// stream (TLS: `Client::over` a `tokio_rustls` stream).
pub struct Client<S = TcpStream> {
    reader: BufReader<ReadHalf<S>>,
    writer: WriteHalf<S>,
}

/// One reply as the client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Client {
    /// Connects and reads the greeting (asserting 220).
    pub async fn connect(addr: SocketAddr) -> Client {
        let mut c = Client::connect_raw(addr).await;
        c.expect(220).await;
        c
    }

    pub async fn connect_raw(addr: SocketAddr) -> Client {
        Client::over(TcpStream::connect(addr).await.expect("connect"))
    }

    /// The socket again, e.g. to start TLS on it after `220` to STARTTLS.
    pub fn into_tcp(self) -> TcpStream {
        assert!(self.reader.buffer().is_empty(), "unread bytes before TLS");
        self.reader.into_inner().unsplit(self.writer)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client on an established stream; reads nothing yet.
    pub fn over(stream: S) -> Client<S> {
        let (r, w) = tokio::io::split(stream);
        Client {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.writer.write_all(bytes.as_ref()).await.expect("send");
        // A TLS stream holds records until flushed.
        self.writer.flush().await.expect("flush");
    }

    /// Reads one reply; `None` if the connection closed.
    pub async fn reply(&mut self) -> Option<Reply> {
        self.reply_within(WAIT).await
    }

    /// Reads one reply and asserts its code; returns its text.
    pub async fn expect(&mut self, code: u16) -> String {
        let r = self
            .reply()
            .await
            .unwrap_or_else(|| panic!("connection closed, expected {code}"));
        assert_eq!(r.code, code, "expected {code}, got: {}", r.text);
        r.text
    }

    /// Sends a command line and expects a code.
    pub async fn cmd(&mut self, line: &str, code: u16) -> String {
        self.send(format!("{line}\r\n")).await;
        self.expect(code).await
    }

    /// `EHLO client.test`, answered 250; returns the reply's text.
    pub async fn ehlo(&mut self) -> String {
        self.cmd("EHLO client.test", 250).await
    }

    /// EHLO + MAIL + RCPTs + DATA + message; returns the final reply.
    pub async fn mail<R: AsRef<str>>(&mut self, from: &str, rcpts: &[R], message: &str) -> Reply {
        self.ehlo().await;
        self.send_mail(from, rcpts, message).await
    }

    /// MAIL + RCPTs + DATA + message in a session that said EHLO already
    /// (e.g. again after STARTTLS, or logged in); returns the final reply.
    pub async fn send_mail<R: AsRef<str>>(
        &mut self,
        from: &str,
        rcpts: &[R],
        message: &str,
    ) -> Reply {
        self.begin_data(from, rcpts).await;
        self.finish(message).await
    }

    /// MAIL FROM, every RCPT TO (each answered 250) and DATA (answered
    /// 354): the transaction is open and the client at its message, to be
    /// sent with [`Client::finish`], [`Client::send_message`], or as raw
    /// bytes with [`Client::send`].
    pub async fn begin_data<R: AsRef<str>>(&mut self, from: &str, rcpts: &[R]) {
        self.cmd(&format!("MAIL FROM:<{from}>"), 250).await;
        for r in rcpts {
            self.cmd(&format!("RCPT TO:<{}>", r.as_ref()), 250).await;
        }
        self.cmd("DATA", 354).await;
    }

    /// After DATA's 354: the message, dot-stuffed, and the final dot, in
    /// one write; reads no reply.
    pub async fn send_message(&mut self, message: &str) {
        self.send(stuff(message) + ".\r\n").await;
    }

    /// [`Client::send_message`], then the reply to the final dot.
    pub async fn finish(&mut self, message: &str) -> Reply {
        self.send_message(message).await;
        self.reply().await.expect("final reply")
    }

    /// True once the server has closed the connection.
    pub async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(WAIT, self.reader.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Dot-stuffs a CRLF message for the wire (RFC 5321 4.5.2), the way a
/// client does; written here independently of the guard's own code.
pub fn stuff(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 16);
    for line in message.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    out
}

/// A message with the given To and Cc values (CRLF line ends).
pub fn message(from: &str, to: &str, cc: Option<&str>, body: &str) -> String {
    let mut m = format!("From: {from}\r\nTo: {to}\r\n");
    if let Some(cc) = cc {
        m.push_str(&format!("Cc: {cc}\r\n"));
    }
    m.push_str("Subject: Termin abgesagt\r\nMessage-ID: <test-1@example.org>\r\nDate: Mon, 1 Mar 2021 10:00:00 +0100\r\n\r\n");
    m.push_str(body);
    m
}

/// `n` external addresses `p1@ext1.test, ...` spread over 7 domains.
pub fn externals(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("p{i}@ext{}.test", i % 7)).collect()
}

/// Strips the guard's prepended Received header (the first field, folded
/// over three lines) from a delivered message.
pub fn without_received(data: &[u8]) -> &[u8] {
    assert!(
        data.starts_with(b"Received: from "),
        "no Received header first: {:?}",
        String::from_utf8_lossy(&data[..data.len().min(200)])
    );
    let mut i = 0;
    loop {
        let nl = data[i..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("header line")
            + i;
        i = nl + 1;
        if data.get(i) != Some(&b'\t') && data.get(i) != Some(&b' ') {
            return &data[i..];
        }
    }
}

// ---- Helpers added for the policy, incident/metrics and CLI tests ----

/// A longer wait for replies that follow heavy upstream work (1,494 split
/// copies); still bounded.
pub const LONG_WAIT: Duration = Duration::from_secs(180);

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Reads one reply, waiting at most `wait`; `None` if the connection
    /// closed.
    pub async fn reply_within(&mut self, wait: Duration) -> Option<Reply> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(wait, self.reader.read_line(&mut line))
                .await
                .expect("reply timeout")
                .ok()?;
            if n == 0 {
                return None;
            }
            text.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Some(Reply { code, text });
            }
        }
    }

    /// Like [`Client::mail`] (dot-stuffs the message), but the final reply
    /// may take up to `wait`.
    pub async fn mail_within<R: AsRef<str>>(
        &mut self,
        from: &str,
        rcpts: &[R],
        message: &str,
        wait: Duration,
    ) -> Reply {
        self.ehlo().await;
        self.begin_data(from, rcpts).await;
        self.send_message(message).await;
        self.reply_within(wait).await.expect("final reply")
    }
}

/// [`yaml`] with a `server.limits` block (`limits` lines indented by four
/// spaces, e.g. `"    max_recipients: 2000\n"`).
pub fn yaml_with_limits(upstream: Option<SocketAddr>, policy: &str, limits: &str) -> String {
    let anchor = "  trusted_networks: [\"127.0.0.0/8\"]\n";
    let base = yaml(upstream, policy);
    assert!(base.contains(anchor), "yaml() changed shape: {base}");
    base.replacen(anchor, &format!("{anchor}  limits:\n{limits}"), 1)
}

/// The incident id quoted in a 550 reply (`... Incident 01ABC...; ...`).
pub fn incident_id(reply_text: &str) -> String {
    let at = reply_text
        .find("Incident ")
        .unwrap_or_else(|| panic!("no incident id in reply: {reply_text}"));
    let id: String = reply_text[at + 9..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    assert!(!id.is_empty(), "empty incident id in reply: {reply_text}");
    id
}

/// A message's header section split into fields, and its body (from the
/// empty line on, CRLF included).
pub struct Parsed<'a> {
    /// `(lowercase name, raw bytes of the whole field incl. folding and CRLF)`.
    pub fields: Vec<(String, &'a [u8])>,
    /// Everything from the empty line that ends the header section.
    pub body: &'a [u8],
}

impl<'a> Parsed<'a> {
    /// Splits `msg` (CRLF line ends) into header fields and body.
    pub fn new(msg: &'a [u8]) -> Parsed<'a> {
        let end = msg
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 2)
            .unwrap_or(msg.len());
        let head = &msg[..end];
        let mut fields: Vec<(String, &'a [u8])> = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < head.len() {
            let nl = head[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(head.len(), |p| i + p + 1);
            let continuation = matches!(head.get(nl), Some(b' ') | Some(b'\t'));
            if !continuation {
                let raw = &head[start..nl];
                let name = raw
                    .iter()
                    .position(|&b| b == b':')
                    .map(|c| {
                        String::from_utf8_lossy(&raw[..c])
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_default();
                fields.push((name, raw));
                start = nl;
            }
            i = nl;
        }
        Parsed {
            fields,
            body: &msg[end..],
        }
    }

    /// Raw fields whose name is not in `skip` (lowercase names).
    pub fn fields_except(&self, skip: &[&str]) -> Vec<&'a [u8]> {
        self.fields
            .iter()
            .filter(|(n, _)| !skip.contains(&n.as_str()))
            .map(|(_, raw)| *raw)
            .collect()
    }

    /// Unfolded values of every field named `name` (lowercase).
    pub fn values(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, raw)| {
                let text = String::from_utf8_lossy(raw);
                let value = text.split_once(':').map_or("", |(_, v)| v);
                value.replace("\r\n", "").trim().to_string()
            })
            .collect()
    }
}

/// The 1,494-address cancellation mail: every address in one To header,
/// folded four to a line, with `eol` as line end ("\r\n" for SMTP, "\n" for
/// a file on disk).
pub fn cancellation_mail(addrs: &[String], eol: &str) -> String {
    let mut to = String::from("To: ");
    for (i, a) in addrs.iter().enumerate() {
        to.push_str(a);
        if i + 1 < addrs.len() {
            to.push(',');
            to.push_str(if i % 4 == 3 { eol } else { " " });
            if i % 4 == 3 {
                to.push(' ');
            }
        }
    }
    let lines = [
        "From: Praxis Dr. Muster <praxis@example.org>".to_string(),
        to,
        "Subject: Absage aller Termine am 12. Maerz".into(),
        "Message-ID: <absage-1494@example.org>".into(),
        "Date: Tue, 11 Mar 2025 08:15:00 +0100".into(),
        "MIME-Version: 1.0".into(),
        "Content-Type: text/plain; charset=utf-8".into(),
        "X-Mailer: Praxissoftware 7.2".into(),
        String::new(),
        "Sehr geehrte Patientinnen und Patienten,".into(),
        String::new(),
        "wegen Krankheit fallen alle Termine am 12. Maerz aus.".into(),
        ".Diese Zeile beginnt mit einem Punkt (dot-stuffed on the wire).".into(),
        "Mit freundlichen Gruessen, Ihre Praxis".into(),
    ];
    let mut m = lines.join(eol);
    m.push_str(eol);
    m
}

/// Sends one mail through Python's smtplib, a client as people use one
/// (the message on its stdin); returns the DATA reply as smtplib shows
/// it: the code, then the text.
pub async fn smtplib_send<R: AsRef<str>>(
    smtp: SocketAddr,
    from: &str,
    rcpts: &[R],
    message: &str,
) -> (u16, String) {
    let script = r#"
import smtplib, sys
host, port, sender, rcpts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
msg = sys.stdin.read()
with smtplib.SMTP(host, port) as s:
    s.ehlo("client.example.org")
    s.mail(sender)
    for r in rcpts:
        s.rcpt(r)
    code, text = s.data(msg)
    print(code)
    print(text.decode())
"#;
    let rcpts: Vec<&str> = rcpts.iter().map(AsRef::as_ref).collect();
    let mut child = Command::new("python3")
        .args([
            "-c",
            script,
            &smtp.ip().to_string(),
            &smtp.port().to_string(),
        ])
        .args([from, &rcpts.join(",")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(message.as_bytes())
        .await
        .expect("to smtplib");
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("smtplib timed out")
        .expect("smtplib ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "smtplib failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, text) = stdout.split_once('\n').expect("code line");
    (
        code.trim().parse().expect("code"),
        text.trim_end().to_string(),
    )
}

/// Adds a console account, as `bccguard user add NAME --role ROLE` would
/// (the same Argon2id hash), for the console tests.
pub fn add_console_user(
    store: &dyn bccguard::incident::store::Store,
    name: &str,
    role: bccguard::incident::store::Role,
    password: &str,
) {
    store
        .add_user(&bccguard::incident::store::User {
            name: name.into(),
            role,
            password_hash: bccguard::console::auth::hash_password(password).unwrap(),
            created_at: 0,
            created_by: "test".into(),
        })
        .unwrap();
}

/// Asserts the incident's `released` step: taken by `actor`, its detail
/// starting with `detail` (how, and where: "as bcc via console: ").
pub fn assert_released(
    store: &dyn bccguard::incident::store::Store,
    id: &str,
    actor: &str,
    detail: &str,
) {
    let steps = store.steps(id).unwrap();
    let released = steps
        .iter()
        .find(|s| s.step == "released")
        .unwrap_or_else(|| panic!("no released step: {steps:?}"));
    assert_eq!(released.actor, actor);
    assert!(released.detail.starts_with(detail), "{}", released.detail);
}

/// Polls `check` until it returns true or `WAIT` passes (for state that
/// settles after the client saw its reply, e.g. a session's end).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port that was free a moment ago (for the `serve` binary, whose
/// configured listener cannot report a port 0 choice).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

impl Guard {
    /// Begins the shutdown without waiting for it (drain tests); `stop()`
    /// then waits for the end.
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The value of one sample line of a `/metrics` text.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// `GET path` over a real socket: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("http connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("http send");
    let mut text = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut text))
        .await
        .expect("http timeout")
        .expect("http read");
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

// ---- Helpers added for the limit and fault tests ----

impl Upstream {
    /// Kills this peer and starts a fresh one on the same port and the same
    /// directory (its numbering continues): the organisation's server
    /// restarted between two transactions of one client session.
    pub async fn restart(&mut self) {
        let _ = self.child.kill().await;
        let port = self.addr.port().to_string();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/upstream.py");
        // The old listener's port is free once the child is gone; binding
        // can still race the kernel briefly, so a failed start is retried
        // (bounded).
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut child = Command::new("python3")
                .arg(&script)
                .arg(self.dir.path())
                .args(["--slow", "3", "--port", &port])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("python3 with aiosmtpd");
            let stdout = child.stdout.take().expect("stdout");
            let mut line = String::new();
            let _ = tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line)).await;
            if line.trim() == format!("PORT {port}") {
                self.child = child;
                return;
            }
            let _ = child.kill().await;
            assert!(
                tokio::time::Instant::now() < deadline,
                "upstream peer could not take over port {port}: {line:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Client {
    /// Connects from a chosen local address (e.g. `127.0.0.2`, still
    /// loopback) without reading the greeting.
    pub async fn connect_raw_from(local: std::net::IpAddr, addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(local, 0)).expect("bind source");
        Client::over(socket.connect(addr).await.expect("connect"))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Sends `bytes` one byte every `every` until the server answers or
    /// closes (a slow-drip sender); returns that reply, `None` if it closed
    /// without one. Waits at most `WAIT` for the server.
    pub async fn drip(&mut self, bytes: &[u8], every: Duration) -> Option<Reply> {
        let mut tick = tokio::time::interval(every);
        let mut next = bytes.iter();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            tokio::select! {
                // fill_buf is cancel-safe: nothing read is lost.
                got = self.reader.fill_buf() => {
                    return match got {
                        Ok([]) | Err(_) => None,
                        Ok(_) => self.reply().await,
                    };
                }
                _ = tick.tick() => {
                    if let Some(b) = next.next() {
                        // A write error means the server closed: read on.
                        let _ = self.writer.write_all(std::slice::from_ref(b)).await;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => panic!("no reply to a slow drip within {WAIT:?}"),
            }
        }
    }
}

/// Reads replies until the connection closes (bounded by `WAIT` each);
/// returns their codes in order.
pub async fn codes_until_closed(c: &mut Client) -> Vec<u16> {
    let mut codes = Vec::new();
    while let Some(r) = c.reply().await {
        codes.push(r.code);
    }
    codes
}

// ---- Helpers added for the webhook tests: a test CA, the guard as a process ----

/// A throw-away CA and certificates signed by it, as PEM files.
pub struct Pki {
    /// Holds the PEM files (and anything else a test puts there).
    pub dir: tempfile::TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub ca_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let ca_pem = params.self_signed(&key).unwrap().pem();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
        Pki {
            dir,
            issuer: rcgen::Issuer::new(params, key),
            ca_pem,
        }
    }

    /// The CA certificate's PEM file.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for `localhost`; returns (cert, key) paths.
    pub fn leaf(&self, file: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.path().join(format!("{file}.pem")),
            self.dir.path().join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// A TLS client that trusts only this CA (and checks `localhost`).
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        connector_for(&self.ca_pem)
    }

    /// A TLS server side with a fresh `localhost` certificate (for test
    /// peers written in Rust; the guard's own acceptor set-up).
    pub fn acceptor(&self, file: &str) -> tokio_rustls::TlsAcceptor {
        let (cert, key) = self.leaf(file);
        let cert = bccguard::net::tls::ReloadingCert::new(&cert, &key).expect("test certificate");
        bccguard::net::tls::acceptor(Arc::new(cert)).expect("test acceptor")
    }
}

/// A TLS client that trusts only the CA in `ca_pem`.
pub fn connector_for(ca_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The `bccguard serve` binary as a child process, for what only a process
/// of its own can have (its environment, e.g. `SSL_CERT_FILE` for the
/// system trust store); listeners on port 0, read back from its log; killed
/// when dropped.
pub struct ServedGuard {
    pub child: std::process::Child,
    pub smtp: SocketAddr,
    pub metrics: SocketAddr,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl ServedGuard {
    /// Runs `serve` on `yaml_text` (placeholders as for [`Guard::start`])
    /// with `env` added and no `BCCGUARD*` variable of the test's own.
    pub async fn start(yaml_text: &str, env: &[(&str, &std::ffi::OsStr)]) -> ServedGuard {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("policy.yaml");
        std::fs::write(&config, in_dir(yaml_text, dir.path())).expect("write config");
        let log = dir.path().join("guard.log");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bccguard"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BCCGUARD") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn bccguard serve");
        let mut served = ServedGuard {
            child,
            smtp: ([0, 0, 0, 0], 0).into(),
            metrics: ([0, 0, 0, 0], 0).into(),
            log,
            dir,
        };
        let logged = |text: &str, after: &str| -> Option<SocketAddr> {
            text.lines().find_map(|l| {
                let at = l.find(after)? + after.len();
                l[at..]
                    // Text or JSON lines (`"SMTP on 127.0.0.1:2525"`).
                    .split(|c: char| c.is_whitespace() || c == '/' || c == '"')
                    .next()?
                    .parse()
                    .ok()
            })
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = served.log_text();
            if let (Some(smtp), Some(metrics)) = (
                logged(&text, "SMTP on "),
                logged(&text, "metrics on http://"),
            ) {
                (served.smtp, served.metrics) = (smtp, metrics);
                return served;
            }
            if let Some(status) = served.child.try_wait().expect("try_wait") {
                panic!("bccguard serve exited with {status}; log:\n{text}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "bccguard serve did not log its listeners; log:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (std's `Child::kill` on Unix): no shutdown, no flush.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// What the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one sample line of its `/metrics`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (code, text) = http_get(self.metrics, "/metrics").await;
        assert_eq!(code, 200, "{text}");
        sample(&text, series)
    }
}

impl Drop for ServedGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bccguard <args> --config <config>` as the DPO `dpo-anna` (through
/// sudo: `$SUDO_USER`; `$USER` says someone else and must not count), warnings only in its log: (success, stdout, stderr).
pub fn bccguard_as_dpo(config: &Path, args: &[&str]) -> (bool, String, String) {
    let (code, stdout, stderr) = bccguard_as_dpo_status(config, args);
    (code == Some(0), stdout, stderr)
}

/// [`bccguard_as_dpo`] with the exit status (`explain`'s is its verdict).
pub fn bccguard_as_dpo_status(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bccguard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SUDO_USER", "dpo-anna")
        .env("USER", "not-the-actor")
        .env("BCCGUARD_LOG", "warn")
        .output()
        .expect("run bccguard");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
