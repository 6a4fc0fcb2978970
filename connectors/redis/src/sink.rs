//! Writing to a target Redis: commands are queued and sent together, their replies read back
//! in one go (pipelining), so a batch costs one round trip; the first error reply fails the
//! batch and names the command it answered.

use ferry_tls::Stream;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::RedisError;
use crate::replica::ReplicaConfig;

/// A reply of the server, as [`RedisWriter::request`] returns it.
pub use redis_protocol::resp2::types::OwnedFrame as Reply;

/// A pipelined connection to the target.
pub struct RedisWriter {
    address: String,
    socket: Stream,
    out: Vec<u8>,
    /// Where each command queued and not yet sent starts in `out` (its name is the first
    /// argument there), kept to name a command the target refuses.
    pending: Vec<usize>,
    /// The batch sent and not yet answered: its text and where each command starts, kept
    /// until its replies are read.
    sent: Vec<u8>,
    in_flight: Vec<usize>,
    replies: Vec<u8>,
    db: Option<u64>,
    commands: u64,
}

impl RedisWriter {
    /// Connects (and logs in when a password is given).
    pub async fn connect(config: &ReplicaConfig) -> Result<RedisWriter, RedisError> {
        let socket = config.open("connecting to the target").await?;
        let mut writer = RedisWriter {
            address: config.address.clone(),
            socket,
            out: Vec::new(),
            pending: Vec::new(),
            sent: Vec::new(),
            in_flight: Vec::new(),
            replies: Vec::new(),
            db: None,
            commands: 0,
        };
        if let Some(password) = &config.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &config.user {
                auth.push(user.as_bytes());
            }
            auth.push(password.expose().as_bytes());
            writer.command(&auth);
            writer.flush().await?;
        }
        Ok(writer)
    }

    /// The TLS protocol and cipher suite of the connection, `None` when plain.
    pub fn negotiated(&self) -> Option<String> {
        self.socket.negotiated()
    }

    /// Queues one command.
    pub fn command(&mut self, args: &[&[u8]]) {
        self.queue(args);
    }

    /// Queues one command whose arguments are owned (as the replication stream gives them),
    /// without gathering references to them first.
    pub fn command_owned(&mut self, args: &[Vec<u8>]) {
        self.queue(args);
    }

    fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        use std::io::Write;
        self.pending.push(self.out.len());
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "*{}\r\n", args.len());
        for arg in args {
            let arg = arg.as_ref();
            let _ = write!(self.out, "${}\r\n", arg.len());
            self.out.extend_from_slice(arg);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    /// The name of the queued command that starts at `at` in `text`.
    fn command_name(text: &[u8], at: usize) -> String {
        // *<n>\r\n$<len>\r\n<name>\r\n
        let rest = text.get(at..).unwrap_or_default();
        let name = rest
            .split(|&b| b == b'\n')
            .nth(2)
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .unwrap_or_default();
        String::from_utf8_lossy(name).into_owned()
    }

    /// Queues a switch to database `db` unless the connection is in it already.
    pub fn select(&mut self, db: u64) {
        if self.db != Some(db) {
            let db_text = db.to_string();
            self.command(&[b"SELECT", db_text.as_bytes()]);
            self.db = Some(db);
        }
    }

    /// Commands queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.pending.len()
    }

    /// Bytes of commands queued and not yet sent.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// Commands the target has answered since the connection began.
    pub fn commands_done(&self) -> u64 {
        self.commands
    }

    fn error(&self, message: String) -> RedisError {
        RedisError::Protocol {
            address: self.address.clone(),
            message,
        }
    }

    /// Sends one command (after whatever is queued) and returns its reply.
    pub async fn request(&mut self, args: &[&[u8]]) -> Result<OwnedFrame, RedisError> {
        let mut replies = self.request_many(&[args.to_vec()]).await?;
        replies.pop().ok_or_else(|| self.error("no reply".into()))
    }

    fn write_error(&self) -> impl FnOnce(std::io::Error) -> RedisError + '_ {
        move |source| RedisError::Io {
            address: self.address.clone(),
            context: "writing to the server".into(),
            source,
        }
    }

    /// Writes what is queued to the socket.
    async fn send_out(&mut self) -> Result<(), RedisError> {
        let written = self.socket.write_all(&self.out).await;
        written.map_err(self.write_error())?;
        self.out.clear();
        Ok(())
    }

    /// `INFO section` as text (empty when the server sends something else).
    pub async fn info(&mut self, section: &str) -> Result<String, RedisError> {
        Ok(match self.request(&[b"INFO", section.as_bytes()]).await? {
            OwnedFrame::BulkString(text) => String::from_utf8_lossy(&text).into_owned(),
            _ => String::new(),
        })
    }

    /// Sends `commands` together (after whatever is queued) and returns their replies, in
    /// order.
    pub async fn request_many(
        &mut self,
        commands: &[Vec<&[u8]>],
    ) -> Result<Vec<Reply>, RedisError> {
        self.flush().await?;
        for args in commands {
            self.command(args);
        }
        self.send_out().await?;
        self.pending.clear();
        let mut replies = Vec::with_capacity(commands.len());
        let mut at = 0;
        while replies.len() < commands.len() {
            match decode(&self.replies[at..]) {
                Ok(Some((frame, consumed))) => {
                    at += consumed;
                    replies.push(frame);
                }
                Ok(None) => {
                    self.replies.drain(..at);
                    at = 0;
                    self.read_more().await?;
                }
                Err(error) => return Err(self.error(format!("a malformed reply: {error:?}"))),
            }
        }
        self.replies.drain(..at);
        self.commands += replies.len() as u64;
        Ok(replies)
    }

    async fn read_more(&mut self) -> Result<(), RedisError> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.socket.read(&mut chunk).await;
        let read = read.map_err(|source| RedisError::Io {
            address: self.address.clone(),
            context: "reading the server's replies".into(),
            source,
        })?;
        if read == 0 {
            return Err(self.error("the server closed the connection".into()));
        }
        self.replies.extend_from_slice(&chunk[..read]);
        Ok(())
    }

    /// Sends what is queued and reads every reply; fails on the first error reply.
    pub async fn flush(&mut self) -> Result<(), RedisError> {
        self.send().await?;
        self.settle().await
    }

    /// Whether a batch is sent and not yet answered.
    pub fn in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Sends what is queued without waiting for its replies, so the target works on it while
    /// the caller prepares the next batch; the batch sent before is answered first (one
    /// batch in flight at most). Its error, if any, comes from here or [`Self::settle`].
    pub async fn send(&mut self) -> Result<(), RedisError> {
        self.settle().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        // The batch's text is kept until its replies are read, to name a refused command.
        std::mem::swap(&mut self.sent, &mut self.out);
        std::mem::swap(&mut self.in_flight, &mut self.pending);
        self.out.clear();
        let written = self.socket.write_all(&self.sent).await;
        if written.is_err() {
            // Nothing more will be answered on this connection.
            self.in_flight.clear();
        }
        written.map_err(self.write_error())
    }

    /// Reads the replies of the batch in flight; fails on the first error reply.
    pub async fn settle(&mut self) -> Result<(), RedisError> {
        let mut answered = 0;
        let mut first_error = None;
        let mut at = 0;
        while answered < self.in_flight.len() {
            match skip_reply(&self.replies[at..]) {
                Ok(Some((consumed, error))) => {
                    if let (Some(message), None) = (error, &first_error) {
                        first_error = Some(format!(
                            "the server refused {}: {message}",
                            Self::command_name(&self.sent, self.in_flight[answered])
                        ));
                    }
                    at += consumed;
                    answered += 1;
                }
                Ok(None) => {
                    self.replies.drain(..at);
                    at = 0;
                    self.read_more().await?;
                }
                Err(message) => return Err(self.error(message)),
            }
        }
        self.replies.drain(..at);
        self.commands += self.in_flight.len() as u64;
        self.in_flight.clear();
        match first_error {
            Some(message) => Err(self.error(message)),
            None => Ok(()),
        }
    }
}

/// The length of the complete reply at the start of `bytes` and its error message if it is
/// an error; `None` while it is incomplete. Reads no more than it must and allocates only
/// for an error.
fn skip_reply(bytes: &[u8]) -> Result<Option<(usize, Option<String>)>, String> {
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &bytes[1..end];
    let number = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("a malformed reply: {:?}", String::from_utf8_lossy(line)))
    };
    match bytes.first() {
        Some(b'+') | Some(b':') => Ok(Some((end + 2, None))),
        Some(b'-') => Ok(Some((
            end + 2,
            Some(String::from_utf8_lossy(line).into_owned()),
        ))),
        Some(b'$') => {
            let length = number()?;
            if length < 0 {
                return Ok(Some((end + 2, None)));
            }
            let total = end + 2 + length as usize + 2;
            Ok((bytes.len() >= total).then_some((total, None)))
        }
        Some(b'*') => {
            let count = number()?;
            let mut at = end + 2;
            let mut error = None;
            for _ in 0..count.max(0) {
                match skip_reply(&bytes[at..])? {
                    Some((consumed, inner)) => {
                        at += consumed;
                        error = error.or(inner);
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((at, error)))
        }
        _ => Err(format!(
            "a malformed reply starting {:?}",
            String::from_utf8_lossy(&bytes[..end.min(20)])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::skip_reply;

    #[test]
    fn replies_are_skipped_whole_and_errors_kept() {
        assert_eq!(skip_reply(b"+OK\r\n:1"), Ok(Some((5, None))));
        assert_eq!(skip_reply(b"$3\r\nab"), Ok(None));
        assert_eq!(skip_reply(b"$3\r\nabc\r\n"), Ok(Some((9, None))));
        assert_eq!(skip_reply(b"$-1\r\n"), Ok(Some((5, None))));
        assert_eq!(
            skip_reply(b"*2\r\n:1\r\n-ERR no\r\n"),
            Ok(Some((17, Some("ERR no".into()))))
        );
        assert_eq!(skip_reply(b"*2\r\n:1\r\n"), Ok(None));
        assert!(skip_reply(b"?x\r\n").is_err());
    }
}
