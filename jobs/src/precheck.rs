//! A job's precheck as named items — `source.connectivity`, `sink.connectivity`,
//! `rules.valid`, `sink.conflicts`, `source.cdc_config`, … — each passed, warning, failed or
//! skipped, with what was found and how to fix it. `ferry check` is the precheck read as one
//! result (its first failure is the command's error); the service shows the items.
//!
//! Item names are stable: they are the interface of the service's precheck answers.

use ferry_engine::Error;
use serde::Serialize;

/// What one item found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Checked, fine.
    Passed,
    /// Checked: the job can run, but something can spoil it.
    Warning,
    /// Checked: the job cannot run until it is fixed.
    Failed,
    /// Not checked (something it needs failed first, or it does not apply).
    Skipped,
}

/// One item of a precheck.
#[derive(Debug, Serialize)]
pub struct PrecheckItem {
    /// Its stable name (`sink.connectivity`).
    pub name: &'static str,
    /// What it found.
    pub status: ItemStatus,
    /// Whether a failure of it keeps the job from starting.
    pub blocking: bool,
    /// What it is about (`127.0.0.1:5433/shop`), when one thing.
    pub object: Option<String>,
    /// What was found, in words.
    pub message: String,
    /// What to do about it (empty when passed).
    pub fix: String,
    /// The error a failure stands for, for front ends that report errors.
    #[serde(skip)]
    pub error: Option<Error>,
}

/// A precheck's items, in the order they ran.
#[derive(Debug, Default, Serialize)]
pub struct Precheck {
    /// The items.
    pub items: Vec<PrecheckItem>,
}

/// A connectivity item's message: that `side` answers, and how its connection is secured.
pub(crate) fn answers(side: &str, transport: &Result<String, Error>) -> String {
    match transport {
        Ok(how) => format!("the {side} answers; {how}"),
        Err(_) => String::new(),
    }
}

/// What a precheck item is called and how its failure is usually fixed.
#[derive(Clone, Copy)]
pub(crate) struct Item {
    pub name: &'static str,
    pub blocking: bool,
    pub fix: &'static str,
}

/// The source answers (address, credentials, database).
pub(crate) const SOURCE_CONNECTIVITY: Item = Item {
    name: "source.connectivity",
    blocking: true,
    fix: "check the host, port, user, password and database in source.url, and that the source accepts connections from this host (PostgreSQL: a pg_hba.conf line for this user; MySQL: GRANT … TO 'user'@'this host')",
};
/// The sink answers.
pub(crate) const SINK_CONNECTIVITY: Item = Item {
    name: "sink.connectivity",
    blocking: true,
    fix: "check the host, port, user, password and database in sink.url, and that the sink accepts connections from this host (PostgreSQL: a pg_hba.conf line for this user; MySQL: GRANT … TO 'user'@'this host')",
};
/// The rules parse and name tables and columns the source has, with types the sink takes.
pub(crate) const RULES_VALID: Item = Item {
    name: "rules.valid",
    blocking: true,
    fix: "correct the rule the message names (its table, column or expression)",
};
/// The sink's targets can take what the job writes, and no other job holds its name there.
pub(crate) const SINK_CONFLICTS: Item = Item {
    name: "sink.conflicts",
    blocking: true,
    fix: "make the target tables match what the rules write (or let ferry create them), or give the job another name",
};
/// The source keeps a change log the job can follow.
pub(crate) const SOURCE_CDC: Item = Item {
    name: "source.cdc_config",
    blocking: true,
    fix: "PostgreSQL: ALTER SYSTEM SET wal_level = logical, free replication slots and WAL senders, a REPLICATION role; MySQL/MariaDB: log_bin, binlog_format = ROW, binlog_row_image = FULL, REPLICATION SLAVE and REPLICATION CLIENT",
};
/// The source keeps its log long enough.
pub(crate) const SOURCE_LOG_RETENTION: Item = Item {
    name: "source.log_retention",
    blocking: false,
    fix: "run the job and let it catch up, or drop it if it is abandoned",
};
/// The Redis target does not evict migrated keys.
pub(crate) const SINK_EVICTION: Item = Item {
    name: "sink.redis_eviction",
    blocking: false,
    fix: "CONFIG SET maxmemory-policy noeviction on the target",
};
/// The servers' settings can be read (Redis `CONFIG GET`, `INFO`).
pub(crate) const SERVER_SETTINGS: Item = Item {
    name: "servers.settings",
    blocking: true,
    fix: "let ferry's user run CONFIG GET and INFO on both servers (ACL: +config|get +info), or check that both still answer",
};
/// The job's checkpoint can be read.
pub(crate) const CHECKPOINT: Item = Item {
    name: "job.checkpoint",
    blocking: true,
    fix: "the message names the checkpoint file: move it away to start the job over, or `ferry drop` the job",
};
/// The Redis source can feed a replica through a long copy and a restart.
pub(crate) const SOURCE_REPLICATION: Item = Item {
    name: "source.replication_buffers",
    blocking: false,
    fix: "raise the source's repl-backlog-size and client-output-buffer-limit replica as the message says",
};

impl Precheck {
    /// What the passed connectivity items found, one line a side (`source.connectivity:
    /// the source answers; encrypted …`).
    pub fn connections(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|item| {
                item.status == ItemStatus::Passed && item.name.ends_with(".connectivity")
            })
            .map(|item| format!("{}: {}", item.name, item.message))
            .collect()
    }

    /// Whether no blocking item failed.
    pub fn passed(&self) -> bool {
        !self
            .items
            .iter()
            .any(|item| item.blocking && item.status == ItemStatus::Failed)
    }

    /// Whether some item warns.
    pub fn warns(&self) -> bool {
        self.items.iter().any(|i| i.status == ItemStatus::Warning)
    }

    /// The first blocking failure's error, taken out.
    pub fn take_error(&mut self) -> Option<Error> {
        self.items
            .iter_mut()
            .find(|item| item.blocking && item.status == ItemStatus::Failed)
            .and_then(|item| item.error.take())
    }

    pub(crate) fn pass(&mut self, item: Item, object: Option<String>, message: impl Into<String>) {
        self.push(
            item,
            ItemStatus::Passed,
            object,
            message.into(),
            String::new(),
        );
    }

    pub(crate) fn warn(&mut self, item: Item, object: Option<String>, message: impl Into<String>) {
        self.push(
            item,
            ItemStatus::Warning,
            object,
            message.into(),
            item.fix.to_string(),
        );
    }

    pub(crate) fn fail(&mut self, item: Item, object: Option<String>, error: Error) {
        self.items.push(PrecheckItem {
            name: item.name,
            status: ItemStatus::Failed,
            blocking: item.blocking,
            object,
            message: error.to_string(),
            fix: item.fix.to_string(),
            error: Some(error),
        });
    }

    pub(crate) fn skip(&mut self, item: Item, why: &str) {
        self.push(
            item,
            ItemStatus::Skipped,
            None,
            format!("not checked: {why}"),
            String::new(),
        );
    }

    /// Records `result` as `item`: passed with `message`, or failed with its error. Returns
    /// the value when it passed.
    pub(crate) fn record<T>(
        &mut self,
        item: Item,
        object: Option<String>,
        message: &str,
        result: Result<T, Error>,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                self.pass(item, object, message);
                Some(value)
            }
            Err(error) => {
                self.fail(item, object, error);
                None
            }
        }
    }

    fn push(
        &mut self,
        item: Item,
        status: ItemStatus,
        object: Option<String>,
        message: String,
        fix: String,
    ) {
        self.items.push(PrecheckItem {
            name: item.name,
            status,
            blocking: item.blocking,
            object,
            message,
            fix,
            error: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_blocking_failure_fails_the_precheck() {
        let mut precheck = Precheck::default();
        precheck.pass(SOURCE_CONNECTIVITY, None, "answers");
        precheck.warn(SINK_EVICTION, None, "allkeys-lru");
        assert!(precheck.passed());
        assert!(precheck.warns());
        precheck.fail(SINK_CONNECTIVITY, None, Error::Internal("refused".into()));
        assert!(!precheck.passed());
        let error = precheck.take_error().expect("the failure's error");
        assert!(error.to_string().contains("refused"));
        let json = serde_json::to_value(&precheck).unwrap();
        assert_eq!(json["items"][2]["name"], "sink.connectivity");
        assert_eq!(json["items"][2]["status"], "failed");
        assert!(json["items"][2]["fix"]
            .as_str()
            .unwrap()
            .contains("sink.url"));
    }
}
