//! A job as a front end hands it to the runtime: its job file, its name, and where its state
//! lives.

use std::path::Path;

use ferry_engine::{CheckpointStore, Error};
use ferry_sql::JobFile;

use crate::JobError;

/// One job.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// The job's name: its checkpoint, feed and sink records are named after it.
    pub name: String,
    /// The job file.
    pub file: JobFile,
    /// Where the job's checkpoint and lock live.
    pub store: CheckpointStore,
}

impl JobSpec {
    /// The job in the file at `path`, named by the file unless it names itself, its state kept
    /// beside the file.
    pub fn read(path: &Path) -> Result<JobSpec, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| JobError::JobFile {
            path: path.display().to_string(),
            source,
        })?;
        let file = JobFile::parse(&text)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = file.job_name(&stem)?;
        Ok(JobSpec {
            store: CheckpointStore::beside(path, &name),
            name,
            file,
        })
    }

    /// What the job is, beside its name, as a short digest of its job file: the source and
    /// sink (as their URLs name them, without credentials), the migration types and the
    /// rules' text. Only the file goes in, never the source's catalog (a new table matching
    /// a pattern does not make the job another). Recorded beside the job's checkpoint, feed
    /// and sink records: a job file that takes another's name is refused, never handed its
    /// slot, parts or position.
    pub fn definition(&self) -> String {
        definition(&self.file)
    }
}

/// See [`JobSpec::definition`].
pub fn definition(job: &JobFile) -> String {
    let mut types = job.migration.types.clone();
    types.sort();
    let rules: Vec<&str> = job.rules.iter().map(|r| r.sql.trim()).collect();
    let text = format!(
        "source={}\nsink={}\ntypes={types:?}\nrules={}",
        crate::registry::place(&job.source.url),
        crate::registry::place(&job.sink.url),
        rules.join("\n;\n")
    );
    // FNV-1a over the text: stable across releases and platforms.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}
