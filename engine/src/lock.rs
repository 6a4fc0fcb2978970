//! One runner per job: an exclusive lock on a file beside the job's checkpoint, held for as
//! long as the run (or `ferry drop`) lasts and released by the operating system when the
//! process ends, however it ends (`kill -9` included). The file holds who holds it (host,
//! pid, since when), so a second runner is refused with a message naming the first.
//!
//! Sinks take a lock of their own in the target (see [`crate::Sink::lock`]), which also
//! stops a runner of the same job name on another host or from another directory.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Who runs a job: host, process and start time, as written into locks and shown to a
/// second runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// When the lock was taken, as UTC text.
    pub since: String,
}

impl Holder {
    /// This process, now.
    pub fn this_process() -> Holder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "an unknown host".into());
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Holder {
            host,
            pid: std::process::id(),
            since: utc_text(seconds),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} since {}", self.pid, self.host, self.since)
    }
}

/// `seconds` after the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_text(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let time = seconds % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

/// The exclusive lock of one job; released when dropped or when the process ends.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
    path: PathBuf,
}

impl JobLock {
    /// The lock file of the job whose checkpoint is `state_file`: `<name>.lock` beside it.
    pub fn path_for(state_file: &Path) -> PathBuf {
        let name = state_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.strip_suffix(".state.json").unwrap_or(&name);
        state_file.with_file_name(format!("{stem}.lock"))
    }

    /// Takes the lock of job `job` at `path` for `holder`, or fails with
    /// [`Error::Running`] naming the process that holds it.
    pub fn acquire(path: &Path, job: &str, holder: &Holder) -> Result<JobLock> {
        let error = |message: String| Error::Checkpoint {
            path: path.display().to_string(),
            message,
        };
        let mut file = crate::private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| error(format!("cannot open the job's lock file: {e}")))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(Error::Running {
                    job: job.to_string(),
                    holder: describe_holder(&text),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(error(format!("cannot lock the job's lock file: {e}")))
            }
        }
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(
                file,
                "host = {}\npid = {}\nsince = {}",
                holder.host, holder.pid, holder.since
            )?;
            file.flush()
        };
        write(&mut file).map_err(|e| error(format!("cannot write the job's lock file: {e}")))?;
        Ok(JobLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// Who holds the lock at `path` now, `None` when nobody does (the job is not running).
    pub fn holder(path: &Path) -> Option<String> {
        let mut file = File::open(path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Some(describe_holder(&text))
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The holder written in a lock file, in words.
fn describe_holder(text: &str) -> String {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    match (field("pid"), field("host"), field("since")) {
        (Some(pid), Some(host), Some(since)) => format!("pid {pid} on {host} since {since}"),
        _ => "another process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_text(1_796_083_199), "2026-11-30 23:59:59 UTC");
    }

    #[test]
    fn a_second_lock_names_the_first_holder_until_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = JobLock::path_for(&dir.path().join("orders.state.json"));
        assert!(path.ends_with("orders.lock"));
        assert_eq!(JobLock::holder(&path), None);
        let first = Holder {
            host: "alpha".into(),
            pid: 7,
            since: "then".into(),
        };
        let lock = JobLock::acquire(&path, "orders", &first).unwrap();
        let refused = JobLock::acquire(&path, "orders", &Holder::this_process()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "job orders is already running (pid 7 on alpha since then); wait for it to end, or stop it with `ferry stop`"
        );
        assert_eq!(
            JobLock::holder(&path).as_deref(),
            Some("pid 7 on alpha since then")
        );
        drop(lock);
        assert_eq!(JobLock::holder(&path), None);
        JobLock::acquire(&path, "orders", &first).unwrap();
    }
}
