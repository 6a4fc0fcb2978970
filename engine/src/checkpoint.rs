//! The job's checkpoint: what a run has durably done, kept in a file next to the job file and
//! named after the job (`<dir>/orders.state.json` for job `orders`), so `ferry run` after a
//! crash, a `kill -9` or a stop continues where the last run ended. No server is needed to
//! keep it. The service keeps it in its job catalog instead, through a [`CheckpointCell`].
//!
//! The file is replaced atomically (written beside, synced, renamed, directory synced): after
//! a crash it holds either the old state or the new one, never a mix. A database sink also
//! records the same progress inside the transactions that do the work (see
//! [`crate::sink::Sink::finished_parts`] and [`crate::sink::ChangeApplier`]); on resume ferry
//! takes the furthest of the two, so a crash between a sink commit and the file write neither
//! repeats nor skips anything.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::position::Position;
use crate::schema::TableId;
use crate::source::SnapshotPart;

/// Version of the file format; a file of another version is refused, not guessed at.
/// Version 2 keeps snapshot parts as typed bounds (version 1 kept SQL text) and the job's
/// definition.
pub const STATE_VERSION: u32 = 2;

/// Everything a job has durably done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The job's name (also the name of its change feed at the source).
    pub job: String,
    /// The source as `host:port/database`: a state file is never applied to another source.
    pub source: String,
    /// What the job is (its source, sink, tables and migration types, as a digest): a state
    /// file is never applied to another job that took the same name. Absent in files
    /// written before ferry recorded it.
    #[serde(default)]
    pub definition: Option<String>,
    /// The job file that wrote it (its canonical path), to tell an edited job file from
    /// another file of the same job name beside it.
    #[serde(default)]
    pub job_file: Option<String>,
    /// The source tables the rules selected when the job began, in plan order (snapshot
    /// parts refer to them by index).
    pub tables: Vec<TableId>,
    /// The change feed, once created.
    pub feed: Option<FeedState>,
    /// The full migration's plan and progress, once planned.
    pub snapshot: Option<SnapshotState>,
    /// The position of the last transaction applied to the sink.
    pub applied: Option<Position>,
}

/// The change feed a job follows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedState {
    /// Its name at the source.
    pub name: String,
    /// Where it began: the snapshot's instant.
    pub consistent_point: Position,
}

/// A full migration's parts and which of them are done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotState {
    /// The parts as first planned; a resumed run reads the same ones.
    pub parts: Vec<SnapshotPart>,
    /// Parts committed, with the target table they were committed to.
    pub finished: BTreeSet<(u32, TableId)>,
    /// Whether every part of every table is done.
    pub complete: bool,
}

impl JobState {
    /// A new, empty state for job `job` reading `source`.
    pub fn new(job: &str, source: &str, tables: Vec<TableId>) -> JobState {
        JobState {
            version: STATE_VERSION,
            job: job.to_string(),
            source: source.to_string(),
            definition: None,
            job_file: None,
            tables,
            feed: None,
            snapshot: None,
            applied: None,
        }
    }
}

/// Where a job's checkpoint is kept instead of a file of its own: a service's job catalog.
pub trait CheckpointCell: Send + Sync + std::fmt::Debug {
    /// The text last written; `None` when none was.
    fn read(&self) -> std::io::Result<Option<String>>;
    /// Replaces the text, atomically and durably, before it returns.
    fn write(&self, text: &str) -> std::io::Result<()>;
    /// Removes the text; none is not an error.
    fn remove(&self) -> std::io::Result<()>;
    /// Where it is, for messages (`job catalog /data/catalog.redb, job 3`).
    fn describe(&self) -> String;
}

/// Where a job's [`JobState`] is kept: a file, or a [`CheckpointCell`].
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    /// The file (with a cell: the name its lock file is made from).
    path: PathBuf,
    job_file: Option<PathBuf>,
    cell: Option<std::sync::Arc<dyn CheckpointCell>>,
}

impl CheckpointStore {
    /// The store of job `job` whose file is `job_file`: `<job>.state.json` beside it.
    pub fn beside(job_file: &Path, job: &str) -> CheckpointStore {
        CheckpointStore {
            path: job_file.with_file_name(format!("{job}.state.json")),
            job_file: Some(job_file.to_path_buf()),
            cell: None,
        }
    }

    /// The store at exactly `path`.
    pub fn at(path: impl Into<PathBuf>) -> CheckpointStore {
        CheckpointStore {
            path: path.into(),
            job_file: None,
            cell: None,
        }
    }

    /// The store kept in `cell`, its lock file made from `path` (whose directory must exist).
    pub fn in_cell(
        path: impl Into<PathBuf>,
        cell: std::sync::Arc<dyn CheckpointCell>,
    ) -> CheckpointStore {
        CheckpointStore {
            path: path.into(),
            job_file: None,
            cell: Some(cell),
        }
    }

    /// Where the checkpoint is, for messages: the file, or the cell.
    pub fn describe(&self) -> String {
        match &self.cell {
            Some(cell) => cell.describe(),
            None => self.path.display().to_string(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The job's lock file, beside the checkpoint (see [`crate::JobLock`]).
    pub fn lock_path(&self) -> PathBuf {
        crate::lock::JobLock::path_for(&self.path)
    }

    /// The job file this store is beside, as the file system resolves it.
    pub fn job_file(&self) -> Option<String> {
        let file = self.job_file.as_ref()?;
        Some(
            file.canonicalize()
                .unwrap_or_else(|_| file.clone())
                .display()
                .to_string(),
        )
    }

    fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::Checkpoint {
            path: self.describe(),
            message: message.to_string(),
        }
    }

    /// The saved state, `None` when the job never ran.
    pub fn load(&self) -> Result<Option<JobState>> {
        let text = match &self.cell {
            Some(cell) => match cell.read() {
                Ok(Some(text)) => text,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.error(format!("cannot read it: {e}"))),
            },
            None => match fs::read_to_string(&self.path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.error(format!("cannot read it: {e}"))),
            },
        };
        let not_ours = |e: serde_json::Error| {
            self.error(format!(
                "is not a ferry checkpoint ({e}); move it away to start the job over"
            ))
        };
        // The version first: a file of another format is named as such, not as damaged.
        #[derive(Deserialize)]
        struct Version {
            version: Option<u64>,
        }
        let version = serde_json::from_str::<Version>(&text)
            .map_err(not_ours)?
            .version;
        if version != Some(u64::from(STATE_VERSION)) {
            return Err(self.error(format!(
                "has format version {}, this ferry reads version {STATE_VERSION}; finish the job with the ferry that wrote it, or `ferry drop` it and run it again",
                version.map_or_else(|| "none".to_string(), |v| v.to_string())
            )));
        }
        let state: JobState = serde_json::from_str(&text).map_err(not_ours)?;
        Ok(Some(state))
    }

    /// Replaces the saved state atomically and durably.
    pub fn save(&self, state: &JobState) -> Result<()> {
        let text = serde_json::to_string_pretty(state).map_err(|e| self.error(e))?;
        if let Some(cell) = &self.cell {
            return cell
                .write(&text)
                .map_err(|e| self.error(format!("cannot write it: {e}")));
        }
        let temporary = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = crate::private_file(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temporary, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| self.error(format!("cannot write it: {e}")))
    }

    /// Removes the saved state (after `ferry drop`); a missing file is not an error.
    pub fn remove(&self) -> Result<()> {
        if let Some(cell) = &self.cell {
            return cell
                .remove()
                .map_err(|e| self.error(format!("cannot remove it: {e}")));
        }
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(self.error(format!("cannot remove it: {e}")))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::beside(&dir.path().join("orders.toml"), "orders");
        assert!(store.path().ends_with("orders.state.json"));
        assert_eq!(store.load().unwrap(), None);
        let mut state = JobState::new(
            "orders",
            "127.0.0.1:5432/shop",
            vec![TableId::new("shop", "orders")],
        );
        state.snapshot = Some(SnapshotState {
            parts: vec![SnapshotPart {
                index: 0,
                table: 0,
                description: "id < 10".into(),
                range: Some(crate::source::PartRange::Key {
                    from: None,
                    to: Some(10),
                }),
            }],
            finished: BTreeSet::from([(0, TableId::new("sales", "orders"))]),
            complete: false,
        });
        store.save(&state).unwrap();
        state.applied = Some(Position::Postgres { lsn: 42 });
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), Some(state));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file stays behind");
        store.remove().unwrap();
        store.remove().unwrap();
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn a_damaged_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::at(dir.path().join("x.state.json"));
        fs::write(store.path(), "{ not json").unwrap();
        let error = store.load().unwrap_err().to_string();
        assert!(
            error.contains("x.state.json") && error.contains("move it away"),
            "{error}"
        );
    }
}
