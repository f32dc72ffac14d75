//! The fake peers of the black-box tests, written in Rust, on real sockets
//! (127.0.0.1, port 0), in the test's own process: a scripted SMTP
//! upstream ([`FakeSmtp`]) whose misbehaviour each test chooses
//! ([`Script`]), and a webhook receiver ([`Webhook`]). The organisation's
//! real mail server is aiosmtpd ([`super::Upstream`]); these stand in where
//! a test needs a peer to misbehave in a way no real server does on request
//! (silence, a stall at the final dot, a drop at the n-th command), or to
//! count what a real server does not report (connections, every byte).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

// ---- the scripted SMTP upstream ---------------------------------------------

/// How the scripted upstream behaves, on every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// A well-behaved server.
    Normal,
    /// Greets with this reply line and says nothing more (until the guard
    /// closes).
    Greeting(&'static str),
    /// Accepts the connection and closes it without a byte.
    CloseAtOnce,
    /// Accepts the connection and never says anything.
    Silent,
    /// Answers everything, but never replies to the final dot.
    StallAfterDot,
    /// Holds its reply to the first final dot until [`FakeSmtp::resume`];
    /// [`FakeSmtp::until_paused`] returns once the message is in. That
    /// reply is `250 2.0.0 queued as STALL1`.
    HoldFirstDot,
    /// Answers everything, but closes without a reply when it gets DATA
    /// (between the RCPTs and the message).
    CloseAtData,
    /// A normal server that closes each connection right after one
    /// delivered transaction's 250 (a restart, or an idle-connection reaper).
    CloseAfterOne,
    /// A normal server that, after one delivered transaction, says `421`
    /// and closes (Postfix does this when its `smtpd_timeout` expires on an
    /// idle connection).
    Close421AfterOne,
    /// A normal server that, in DATA, stops reading after [`PAUSE_AT`]
    /// bytes until [`FakeSmtp::resume`] (so the guard blocks writing the
    /// message); [`FakeSmtp::until_paused`] returns once it paused.
    PauseInData,
    /// Drops each connection, without a reply, at its second MAIL.
    DropSecondMail,
    /// Refuses the first DATA command of each connection (554), leaving the
    /// transaction open, as servers do.
    RefuseFirstData,
    /// Answers RCPTs only once three are waiting (or another command
    /// comes): a guard that forwards a pipelined batch one RCPT at a time
    /// waits forever for the first reply.
    RcptRepliesInThrees,
    /// Drops the connection, without a reply, at the third RCPT.
    DropThirdRcpt,
}

/// Bytes of message the [`Script::PauseInData`] upstream reads before it
/// pauses.
pub const PAUSE_AT: usize = 1 << 20;

/// What the scripted upstream saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: usize,
    /// Connections that ended (EOF or error on read).
    pub closed: usize,
    /// Messages answered 250 after the final dot, as (connection number
    /// from 1, the transaction's recipients).
    pub delivered: Vec<(usize, Vec<String>)>,
    /// Every byte received, per connection (`bytes[0]` is connection 1).
    pub bytes: Vec<Vec<u8>>,
}

/// The scripted upstream, on 127.0.0.1 port 0; it stops with the test's
/// runtime.
pub struct FakeSmtp {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    paused: Arc<Notify>,
    resume: Arc<Notify>,
}

impl FakeSmtp {
    pub async fn start(script: Script) -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let paused = Arc::new(Notify::new());
        let resume = Arc::new(Notify::new());
        let (s, p, r) = (seen.clone(), paused.clone(), resume.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let id = {
                    let mut seen = s.lock().unwrap();
                    seen.connections += 1;
                    seen.bytes.push(Vec::new());
                    seen.bytes.len()
                };
                let conn = Conn {
                    script,
                    seen: s.clone(),
                    id,
                    paused: p.clone(),
                    resume: r.clone(),
                };
                tokio::spawn(conn.serve(stream));
            }
        });
        FakeSmtp {
            addr,
            seen,
            paused,
            resume,
        }
    }

    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    /// Delivered messages as (connection number from 1, recipients).
    pub fn delivered(&self) -> Vec<(usize, Vec<String>)> {
        self.seen(|s| s.delivered.clone())
    }

    /// How many messages were answered 250 after the final dot.
    pub fn count(&self) -> usize {
        self.seen(|s| s.delivered.len())
    }

    pub fn connections(&self) -> usize {
        self.seen(|s| s.connections)
    }

    /// Returns once the upstream paused ([`Script::PauseInData`]) or holds
    /// its reply to the final dot ([`Script::HoldFirstDot`]).
    pub async fn until_paused(&self) {
        self.paused.notified().await;
    }

    /// Lets a paused or holding upstream go on.
    pub fn resume(&self) {
        self.resume.notify_one();
    }
}

/// One connection of the scripted upstream.
struct Conn {
    script: Script,
    seen: Arc<Mutex<Seen>>,
    /// The connection's number, from 1.
    id: usize,
    paused: Arc<Notify>,
    resume: Arc<Notify>,
}

/// The transaction state of one connection.
#[derive(Default)]
struct State {
    mails: usize,
    datas: usize,
    /// A transaction is open (MAIL accepted, no final dot or RSET since).
    open: bool,
    rcpts: Vec<String>,
    /// RCPT replies held back ([`Script::RcptRepliesInThrees`]).
    held: usize,
}

impl Conn {
    fn record(&self, bytes: &[u8]) {
        self.seen.lock().unwrap().bytes[self.id - 1].extend_from_slice(bytes);
    }

    async fn serve(self, stream: TcpStream) {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        match self.script {
            Script::Greeting(line) => {
                let _ = w.write_all(format!("{line}\r\n").as_bytes()).await;
                self.drain(&mut r).await;
                return;
            }
            Script::CloseAtOnce => {
                drop(w);
                self.drain(&mut r).await;
                return;
            }
            Script::Silent => {
                self.drain(&mut r).await;
                return;
            }
            _ => {}
        }
        let _ = w.write_all(b"220 fake.test ESMTP\r\n").await;
        let mut state = State::default();
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => self.record(&line),
            }
            match self.command(&line, &mut state, &mut r, &mut w).await {
                Next::Continue => {}
                Next::Close => break,
                // The connection stays open, unanswered, until the guard
                // closes it.
                Next::Stall => {
                    self.drain(&mut r).await;
                    return;
                }
            }
        }
        drop(w);
        self.drain(&mut r).await;
    }

    /// Answers one command line.
    async fn command(
        &self,
        line: &[u8],
        state: &mut State,
        r: &mut BufReader<OwnedReadHalf>,
        w: &mut OwnedWriteHalf,
    ) -> Next {
        let text = String::from_utf8_lossy(line);
        let verb = text.get(..4).unwrap_or_default().to_ascii_uppercase();
        if self.script == Script::RcptRepliesInThrees && verb != "RCPT" {
            for _ in 0..std::mem::take(&mut state.held) {
                let _ = w.write_all(b"250 2.1.5 ok\r\n").await;
            }
        }
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-fake.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "MAIL" => {
                state.mails += 1;
                if self.script == Script::DropSecondMail && state.mails == 2 {
                    return Next::Close;
                }
                if std::mem::replace(&mut state.open, true) {
                    b"503 5.5.1 nested MAIL command\r\n"
                } else {
                    state.rcpts.clear();
                    b"250 2.1.0 ok\r\n"
                }
            }
            "RCPT" => {
                let addr = text.split(['<', '>']).nth(1).unwrap_or_default();
                state.rcpts.push(addr.to_string());
                if self.script == Script::DropThirdRcpt && state.rcpts.len() == 3 {
                    return Next::Close;
                }
                if self.script == Script::RcptRepliesInThrees {
                    state.held += 1;
                    if state.held < 3 {
                        return Next::Continue;
                    }
                    state.held = 0;
                    b"250 2.1.5 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n"
                } else {
                    b"250 2.1.5 ok\r\n"
                }
            }
            "DATA" => return self.data(state, r, w).await,
            "RSET" => {
                state.open = false;
                b"250 2.0.0 ok\r\n"
            }
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n").await;
                return Next::Close;
            }
            _ => b"502 5.5.2 what\r\n",
        };
        if w.write_all(reply).await.is_err() {
            return Next::Close;
        }
        Next::Continue
    }

    /// DATA: the 354, the message and the reply to its final dot, as the
    /// script says.
    async fn data(
        &self,
        state: &mut State,
        r: &mut BufReader<OwnedReadHalf>,
        w: &mut OwnedWriteHalf,
    ) -> Next {
        if self.script == Script::CloseAtData {
            return Next::Close;
        }
        let first = state.datas == 0;
        state.datas += 1;
        if self.script == Script::RefuseFirstData && first {
            let _ = w.write_all(b"554 5.3.0 no DATA for you\r\n").await;
            return Next::Continue;
        }
        state.open = false;
        let _ = w.write_all(b"354 go ahead\r\n").await;
        if !self.message(r).await {
            return Next::Close;
        }
        let mut reply = "250 2.0.0 queued\r\n".to_string();
        match self.script {
            Script::StallAfterDot => return Next::Stall,
            Script::HoldFirstDot if first => {
                self.paused.notify_one();
                self.resume.notified().await;
                reply = "250 2.0.0 queued as STALL1\r\n".into();
            }
            Script::Close421AfterOne => {
                reply.push_str("421 4.4.2 fake.test Error: timeout exceeded\r\n");
            }
            _ => {}
        }
        let rcpts = std::mem::take(&mut state.rcpts);
        self.seen.lock().unwrap().delivered.push((self.id, rcpts));
        if w.write_all(reply.as_bytes()).await.is_err() {
            return Next::Close;
        }
        match self.script {
            Script::CloseAfterOne | Script::Close421AfterOne => Next::Close,
            _ => Next::Continue,
        }
    }

    /// Reads a message up to `<CR><LF>.<CR><LF>`; false if the connection
    /// ended first.
    async fn message(&self, r: &mut BufReader<OwnedReadHalf>) -> bool {
        let mut data = b"\r\n".to_vec();
        let mut paused = self.script != Script::PauseInData;
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            self.record(&buf[..n]);
            data.extend_from_slice(&buf[..n]);
            if data.ends_with(b"\r\n.\r\n") {
                return true;
            }
            if !paused && data.len() >= PAUSE_AT {
                paused = true;
                self.paused.notify_one();
                self.resume.notified().await;
            }
        }
    }

    /// Reads (and records) until the peer closes.
    async fn drain(&self, r: &mut BufReader<OwnedReadHalf>) {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            self.record(&buf[..n]);
        }
        self.seen.lock().unwrap().closed += 1;
    }
}

/// What a connection does after a command.
enum Next {
    Continue,
    /// Closes its side and reads until the guard closes.
    Close,
    /// Never answers again; reads until the guard closes.
    Stall,
}

// ---- the webhook receiver ---------------------------------------------------

/// How the webhook receiver answers one POST.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// This status line, then the connection is closed.
    Status(u16),
    /// Reads the request and never answers (a hung ticketing system).
    Silent,
}

/// A webhook receiver on a real socket (port 0): the n-th connection's
/// POST gets `answers[n]` (the last one again after that), over TLS when
/// given an acceptor; keeps every request it read in full.
pub struct Webhook {
    pub port: u16,
    /// Connections accepted, whether or not a request followed (a failed
    /// TLS handshake is one).
    pub connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Webhook {
    pub async fn start(answers: &[Answer], tls: Option<tokio_rustls::TlsAcceptor>) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (answers, count, seen) = (answers.to_vec(), connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let n = count.fetch_add(1, Ordering::SeqCst);
                let answer = answers[n.min(answers.len() - 1)];
                let (tls, seen) = (tls.clone(), seen.clone());
                // Each connection on its own: a silent one must not hold
                // up the next attempt.
                tokio::spawn(async move {
                    match tls {
                        None => answer_post(tcp, answer, &seen).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                answer_post(stream, answer, &seen).await;
                            }
                        }
                    }
                });
            }
        });
        Webhook {
            port,
            connections,
            requests,
        }
    }

    /// The URL of this receiver, `http` or `https`, path `/tickets`.
    pub fn url(&self, scheme: &str) -> String {
        let host = if scheme == "https" {
            "localhost" // the name in the test certificate
        } else {
            "127.0.0.1"
        };
        format!("{scheme}://{host}:{}/tickets", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// The JSON bodies of the requests so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .map(|r| serde_json::from_str(r.split_once("\r\n\r\n").unwrap().1).unwrap())
            .collect()
    }
}

/// Reads one request in full (by its Content-Length), keeps it, answers.
async fn answer_post<S>(mut s: S, answer: Answer, seen: &Mutex<Vec<String>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    seen.lock().unwrap().push(String::from_utf8(buf).unwrap());
    match answer {
        Answer::Status(code) => {
            let status = format!("HTTP/1.1 {code} Test\r\nContent-Length: 0\r\n\r\n");
            let _ = s.write_all(status.as_bytes()).await;
            let _ = s.shutdown().await;
        }
        // Holds the connection open until the guard gives up on it.
        Answer::Silent => {
            let _ = s.read(&mut chunk).await;
        }
    }
}
