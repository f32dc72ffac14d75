//! The wire: dot-stuffed message streaming, buffered writes flushed against
//! a deadline, and upstream's replies read and parsed within the limits
//! ([`MAX_REPLY_LINE`], [`MAX_REPLY_LINES`]) a hostile or broken server
//! could otherwise exceed.

use super::*;

impl Client {
    /// Says QUIT and waits briefly for the answer.
    pub async fn quit(mut self) {
        let _ = timeout(QUIT_TIMEOUT, async {
            self.command("QUIT\r\n", "QUIT").await.ok();
        })
        .await;
    }

    /// Sends `parts` dot-stuffed in chunks of [`SEND_CHUNK`] (a large
    /// message is never copied whole) and leaves the last chunk with the
    /// terminating dot in the output buffer, so the caller may add the next
    /// commands to the same write (RFC 2920).
    pub(super) async fn stream_stuffed(
        &mut self,
        parts: &[&[u8]],
        deadline: tokio::time::Instant,
    ) -> Result<(), UpstreamError> {
        let mut stuffer = Stuffer::new();
        self.out.clear();
        for part in parts {
            for chunk in part.chunks(SEND_CHUNK) {
                stuffer.push(chunk, &mut self.out);
                if self.out.len() >= SEND_CHUNK {
                    self.flush_until(deadline, self.data_timeout, "message transfer")
                        .await?;
                }
            }
        }
        stuffer.finish(&mut self.out);
        Ok(())
    }

    /// Streams the message dot-stuffed in chunks of [`SEND_CHUNK`], so a
    /// large message is never copied whole; the whole transfer and the final
    /// reply share one `data_timeout` deadline.
    pub(super) async fn send_message(&mut self, parts: &Parts<'_>) -> Result<Reply, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.data_timeout;
        self.stream_stuffed(parts, deadline).await?;
        self.flush_until(deadline, self.data_timeout, "message transfer")
            .await?;
        self.out.shrink_to(IDLE_OUT_CAPACITY);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.read_reply(left, "end of DATA").await
    }

    /// Writes and flushes the output buffer (a TLS stream holds records
    /// until flushed) by `deadline`; `limit` is what a timeout reports.
    pub(super) async fn flush_until(
        &mut self,
        deadline: impl Into<Deadline>,
        limit: Duration,
        what: &'static str,
    ) -> Result<(), UpstreamError> {
        let stream = self.stream.get_mut();
        let out = &self.out;
        let write = async move {
            stream.write_all(out).await?;
            stream.flush().await
        };
        self.timer
            .run(deadline, write)
            .await
            .ok_or(UpstreamError::Timeout(limit, what))?
            .map_err(UpstreamError::Closed)?;
        self.out.clear();
        Ok(())
    }

    pub(super) async fn command(
        &mut self,
        line: &str,
        what: &'static str,
    ) -> Result<Reply, UpstreamError> {
        self.out.clear();
        self.out.extend_from_slice(line.as_bytes());
        self.exchange(what).await
    }

    /// Sends the output buffer and reads one reply, each within
    /// `command_timeout` (as Postfix's `smtp_*_timeout` limit each command
    /// and each response).
    pub(super) async fn exchange(&mut self, what: &'static str) -> Result<Reply, UpstreamError> {
        self.flush_out(self.command_timeout, what).await?;
        self.read_reply(self.command_timeout, what).await
    }

    /// Sends the output buffer within `limit`.
    pub(super) async fn flush_out(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<(), UpstreamError> {
        self.flush_until(limit, limit, what).await
    }

    /// Reads one reply. A `421` (RFC 5321 3.8: the server is closing the
    /// channel, e.g. Postfix after its idle timeout) ends the upstream
    /// session whatever command it answers: passed on unchanged it would
    /// tell the client that the *guard* closes, while its session stays
    /// open.
    pub(super) async fn read_reply(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<Reply, UpstreamError> {
        let read = read_reply(&mut self.stream, &mut self.line);
        let reply = self
            .timer
            .run(limit, read)
            .await
            .ok_or(UpstreamError::Timeout(limit, what))??;
        if reply.code == 421 {
            return Err(UpstreamError::Refused(reply));
        }
        Ok(reply)
    }
}

/// Reads one (multi-line) reply; `buf` holds each line while it is read.
pub(super) async fn read_reply(
    stream: &mut BufReader<Stream>,
    buf: &mut Vec<u8>,
) -> Result<Reply, UpstreamError> {
    let mut code = None;
    let mut lines = Vec::with_capacity(1);
    loop {
        buf.clear();
        let n = (&mut *stream)
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', buf)
            .await
            .map_err(UpstreamError::Closed)?;
        if n == 0 {
            return Err(UpstreamError::Closed(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        if buf.last() != Some(&b'\n') {
            return Err(UpstreamError::Protocol("reply line too long".into()));
        }
        let (this, last, text) = parse_reply_line(buf)?;
        if *code.get_or_insert(this) != this {
            return Err(UpstreamError::Protocol(
                "reply lines carry different codes".into(),
            ));
        }
        lines.push(text);
        if last {
            break;
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(UpstreamError::Protocol("reply has too many lines".into()));
        }
    }
    Ok(Reply {
        code: code.unwrap_or_default(),
        lines,
    })
}

/// `250-text`, `250 text` or `250` -> (code, is last line, text).
pub(super) fn parse_reply_line(raw: &[u8]) -> Result<(u16, bool, String), UpstreamError> {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let bad = || {
        UpstreamError::Protocol(format!(
            "not an SMTP reply: {:?}",
            String::from_utf8_lossy(line)
        ))
    };
    if line.len() < 3
        || !line[..3].iter().all(u8::is_ascii_digit)
        || !(b'2'..=b'5').contains(&line[0])
    {
        return Err(bad());
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(bad()),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse() {
        type Row<'a> = (&'a [u8], Option<(u16, bool, &'a str)>);
        let table: &[Row] = &[
            (b"250 2.0.0 Ok\r\n", Some((250, true, "2.0.0 Ok"))),
            (b"250-PIPELINING\r\n", Some((250, false, "PIPELINING"))),
            (b"354\r\n", Some((354, true, ""))),
            (
                b"451 4.4.1 try later\n",
                Some((451, true, "4.4.1 try later")),
            ),
            (b"hello\r\n", None),
            (b"25\r\n", None),
            (b"250_x\r\n", None),
            (b"650 x\r\n", None),
        ];
        for (raw, expected) in table {
            let got = parse_reply_line(raw).ok();
            assert_eq!(
                got,
                expected.map(|(c, l, t)| (c, l, t.to_string())),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
