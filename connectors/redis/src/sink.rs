//! Writing to a target Redis: commands are queued and sent together, their replies read back
//! in one go (pipelining), so a batch costs one round trip; the first error reply fails the
//! batch and names the command it answered.

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::replica::{ReplicaConfig, ReplicaError};

/// A pipelined connection to the target.
pub struct RedisWriter {
    address: String,
    socket: TcpStream,
    out: Vec<u8>,
    /// The name of each command sent and not yet answered.
    pending: Vec<Vec<u8>>,
    replies: Vec<u8>,
    db: Option<u64>,
    commands: u64,
}

impl RedisWriter {
    /// Connects (and logs in when a password is given).
    pub async fn connect(config: &ReplicaConfig) -> Result<RedisWriter, ReplicaError> {
        let socket = TcpStream::connect(&config.address)
            .await
            .map_err(|source| ReplicaError::Io {
                address: config.address.clone(),
                context: "connecting to the target".into(),
                source,
            })?;
        let _ = socket.set_nodelay(true);
        let mut writer = RedisWriter {
            address: config.address.clone(),
            socket,
            out: Vec::new(),
            pending: Vec::new(),
            replies: Vec::new(),
            db: None,
            commands: 0,
        };
        if let Some(password) = &config.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &config.user {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            writer.command(&auth);
            writer.flush().await?;
        }
        Ok(writer)
    }

    /// Queues one command.
    pub fn command(&mut self, args: &[&[u8]]) {
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            self.out
                .extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            self.out.extend_from_slice(arg);
            self.out.extend_from_slice(b"\r\n");
        }
        self.pending
            .push(args.first().map(|a| a.to_vec()).unwrap_or_default());
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

    fn error(&self, message: String) -> ReplicaError {
        ReplicaError::Protocol {
            address: self.address.clone(),
            message,
        }
    }

    /// Sends one command (after whatever is queued) and returns its reply.
    pub async fn request(&mut self, args: &[&[u8]]) -> Result<OwnedFrame, ReplicaError> {
        self.flush().await?;
        self.command(args);
        let written = self.socket.write_all(&self.out).await;
        written.map_err(|source| ReplicaError::Io {
            address: self.address.clone(),
            context: "writing to the server".into(),
            source,
        })?;
        self.out.clear();
        self.pending.clear();
        loop {
            match decode(&self.replies) {
                Ok(Some((frame, consumed))) => {
                    self.replies.drain(..consumed);
                    self.commands += 1;
                    return Ok(frame);
                }
                Ok(None) => self.read_more().await?,
                Err(error) => return Err(self.error(format!("a malformed reply: {error:?}"))),
            }
        }
    }

    async fn read_more(&mut self) -> Result<(), ReplicaError> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.socket.read(&mut chunk).await;
        let read = read.map_err(|source| ReplicaError::Io {
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
    pub async fn flush(&mut self) -> Result<(), ReplicaError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self.socket.write_all(&self.out).await;
        written.map_err(|source| ReplicaError::Io {
            address: self.address.clone(),
            context: "writing to the target".into(),
            source,
        })?;
        self.out.clear();
        let mut answered = 0;
        let mut first_error = None;
        let mut at = 0;
        while answered < self.pending.len() {
            match decode(&self.replies[at..]) {
                Ok(Some((frame, consumed))) => {
                    at += consumed;
                    if let (OwnedFrame::Error(message), None) = (&frame, &first_error) {
                        first_error = Some(format!(
                            "the target refused {}: {message}",
                            String::from_utf8_lossy(&self.pending[answered])
                        ));
                    }
                    answered += 1;
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
        self.commands += self.pending.len() as u64;
        self.pending.clear();
        match first_error {
            Some(message) => Err(self.error(message)),
            None => Ok(()),
        }
    }
}
