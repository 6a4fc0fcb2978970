//! A migration's state and counters, shared with whoever reports them while it runs (the
//! cloud services' job states: `FULL_MIGRATING`, `INCR_MIGRATING`, `SUCCESS`, `FAILED`,
//! `TERMINATED`).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Where a migration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationState {
    /// Connecting, or reconnecting after a broken link.
    Connecting,
    /// Copying the RDB of a full resync.
    FullMigrating,
    /// Following the command stream.
    IncrMigrating,
    /// Done as asked (a full copy, or a stream followed to where it was told to end).
    Success,
    /// Stopped by an error.
    Failed,
    /// Stopped by the user.
    Terminated,
}

impl MigrationState {
    /// The state's name as the cloud APIs spell it.
    pub fn name(self) -> &'static str {
        match self {
            MigrationState::Connecting => "CONNECTING",
            MigrationState::FullMigrating => "FULL_MIGRATING",
            MigrationState::IncrMigrating => "INCR_MIGRATING",
            MigrationState::Success => "SUCCESS",
            MigrationState::Failed => "FAILED",
            MigrationState::Terminated => "TERMINATED",
        }
    }

    fn from_code(code: u8) -> MigrationState {
        match code {
            1 => MigrationState::FullMigrating,
            2 => MigrationState::IncrMigrating,
            3 => MigrationState::Success,
            4 => MigrationState::Failed,
            5 => MigrationState::Terminated,
            _ => MigrationState::Connecting,
        }
    }

    fn code(self) -> u8 {
        match self {
            MigrationState::Connecting => 0,
            MigrationState::FullMigrating => 1,
            MigrationState::IncrMigrating => 2,
            MigrationState::Success => 3,
            MigrationState::Failed => 4,
            MigrationState::Terminated => 5,
        }
    }
}

/// Counters a running migration updates.
#[derive(Debug, Default)]
pub struct MigrationStatus {
    state: AtomicU8,
    keys: AtomicU64,
    bytes: AtomicU64,
    commands: AtomicU64,
    offset: AtomicU64,
}

impl MigrationStatus {
    /// The current state.
    pub fn state(&self) -> MigrationState {
        MigrationState::from_code(self.state.load(Ordering::Relaxed))
    }

    /// Moves to `state`.
    pub fn set_state(&self, state: MigrationState) {
        self.state.store(state.code(), Ordering::Relaxed);
    }

    /// Keys written by full copies.
    pub fn keys(&self) -> u64 {
        self.keys.load(Ordering::Relaxed)
    }

    /// Source bytes received (RDB and stream).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Commands replayed from the stream.
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }

    /// The replication offset the target holds.
    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::Relaxed)
    }

    pub(crate) fn add_key(&self) {
        self.keys.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_command(&self) {
        self.commands.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_offset(&self, offset: u64) {
        self.offset.store(offset, Ordering::Relaxed);
    }
}
