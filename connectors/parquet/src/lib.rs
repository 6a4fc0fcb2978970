//! ferry-parquet: columnar file sinks. Each target table is a directory
//! (`<root>/<schema>/<table>/`) of files, one per writer: Parquet (`parquet:///dir`, row
//! groups built from the batches written, Snappy-compressed) or the Arrow IPC file format
//! (`arrow:///dir`, `.arrow` files — Feather v2 — holding the batches as ferry carries them,
//! readable without decoding by any Arrow implementation).
//!
//! A writer writes to a hidden temporary file and renames it into place only on commit, after
//! syncing it to disk, so a reader never sees a partial file and an aborted part leaves none.
#![warn(missing_docs)]

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tracing::info;

use ferry_engine::error::{ClassifiedError, ErrorClass};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use ferry_engine::{
    ChangeApplier, ChangeBatch, ChangeFeed, ChangeRequest, ExistingRows, Op, Ops, Position,
    PrepareOptions, PreparedTables, Sink, SinkWriter, Snapshot, SnapshotPart, SnapshotRequest,
    Source, TableId, TableSchema, WriterOptions,
};

/// Rows per row group at most: large groups compress and scan well; batches are appended to
/// the open group until it reaches this size.
pub const ROW_GROUP_ROWS: usize = 1 << 17;

/// An error of the Parquet sink.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// The URL is not `parquet:///dir`.
    #[error("{field}: {message}")]
    Url {
        /// The job field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing Parquet failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Reading a file back failed.
    #[error("reading {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Writing an Arrow IPC file failed.
    #[error("writing {path}: {source}")]
    WriteIpc {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// The target directory does not fit the migration.
    #[error("target {table}: {message}")]
    Target {
        /// The target table.
        table: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ClassifiedError for ParquetError {
    fn class(&self) -> ErrorClass {
        match self {
            ParquetError::Url { .. } | ParquetError::Target { .. } => ErrorClass::User,
            ParquetError::Io { source, .. } => io_class(source),
            ParquetError::Read { .. } => ErrorClass::External,
            // The writers wrap the file system's errors; anything else is ours.
            ParquetError::Write { source, .. } => {
                io_cause(source).map_or(ErrorClass::Internal, io_class)
            }
            ParquetError::WriteIpc { source, .. } => match source {
                arrow::error::ArrowError::IoError(_, cause) => io_class(cause),
                other => io_cause(other).map_or(ErrorClass::Internal, io_class),
            },
        }
    }
}

/// Who acts on a file-system error: a path that is not a directory, is read-only or not
/// ours to write is the user's to fix (exit 2 at once); a full disk, a quota or a failing
/// device may pass (retried, then exit 3).
fn io_class(error: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::PermissionDenied
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::ReadOnlyFilesystem
        | ErrorKind::AlreadyExists
        | ErrorKind::InvalidFilename
        | ErrorKind::NotFound
        | ErrorKind::InvalidInput => ErrorClass::User,
        _ => ErrorClass::External,
    }
}

/// The file-system error somewhere in `error`'s causes.
fn io_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = error.source();
    }
    None
}

impl From<ParquetError> for ferry_engine::Error {
    fn from(error: ParquetError) -> Self {
        ferry_engine::Error::Connector(Box::new(error))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ParquetError + '_ {
    move |source| ParquetError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The file format a [`FileSink`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// The Arrow IPC file format (Feather v2).
    ArrowIpc,
}

impl FileFormat {
    /// The files' extension.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::ArrowIpc => "arrow",
        }
    }

    /// The URL scheme that selects it.
    pub fn scheme(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::ArrowIpc => "arrow",
        }
    }
}

/// Columnar files under a root directory.
#[derive(Debug)]
pub struct FileSink {
    root: PathBuf,
    format: FileFormat,
    run: u64,
    next_file: AtomicU64,
    prepared: PreparedTables<PathBuf>,
}

impl FileSink {
    /// The directory as the file system resolves it (its nearest existing ancestor
    /// canonicalised), so two spellings of one directory are one place.
    fn identity(&self) -> ferry_engine::ServerIdentity {
        let mut existing = self.root.as_path();
        let mut rest = Vec::new();
        let canonical = loop {
            match existing.canonicalize() {
                Ok(path) => break path,
                Err(_) => match (existing.parent(), existing.file_name()) {
                    (Some(parent), Some(name)) => {
                        rest.push(name.to_owned());
                        existing = parent;
                    }
                    _ => break self.root.clone(),
                },
            }
        };
        let path = rest
            .iter()
            .rev()
            .fold(canonical, |path, name| path.join(name));
        ferry_engine::ServerIdentity {
            engine: "file".into(),
            server: path.display().to_string(),
            database: None,
        }
    }

    /// A sink for `parquet:///absolute/dir` or `arrow:///absolute/dir` (or a relative dir
    /// after `//`); `field` names the job field for errors.
    pub fn from_url(url: &str, field: &str) -> Result<FileSink, ParquetError> {
        let (format, path) = [FileFormat::Parquet, FileFormat::ArrowIpc]
            .into_iter()
            .find_map(|format| {
                let path = url.strip_prefix(format.scheme())?.strip_prefix("://")?;
                Some((format, path))
            })
            .ok_or_else(|| ParquetError::Url {
                field: field.to_string(),
                message: format!(
                    "'{url}' is not a file URL; expected parquet:///path/to/dir or arrow:///path/to/dir"
                ),
            })?;
        if path.is_empty() {
            return Err(ParquetError::Url {
                field: field.to_string(),
                message: format!("no directory after {}://", format.scheme()),
            });
        }
        Ok(FileSink::new(PathBuf::from(path), format))
    }

    /// A sink writing `format` files under `root`.
    pub fn new(root: PathBuf, format: FileFormat) -> FileSink {
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        FileSink {
            root,
            format,
            run,
            next_file: AtomicU64::new(0),
            prepared: PreparedTables::default(),
        }
    }

    /// The directory holding `table`'s files.
    pub fn table_dir(&self, table: &TableId) -> PathBuf {
        self.root.join(&table.schema).join(&table.name)
    }

    /// Rows in the committed files of `table` (Parquet: from each file's footer; Arrow IPC:
    /// by reading its batches).
    pub fn rows_in(&self, table: &TableId) -> Result<u64, ParquetError> {
        let dir = self.table_dir(table);
        let mut rows = 0;
        for path in data_files(&dir, self.format)? {
            rows += match self.format {
                FileFormat::Parquet => {
                    use parquet::file::reader::FileReader as _;
                    let file = File::open(&path).map_err(io(&path))?;
                    let reader = parquet::file::reader::SerializedFileReader::new(file)
                        .map_err(read_error(&path))?;
                    reader.metadata().file_metadata().num_rows() as u64
                }
                FileFormat::ArrowIpc => {
                    let mut count = 0;
                    for batch in file_batches(&path, self.format, ROW_GROUP_ROWS)? {
                        count += batch?.num_rows() as u64;
                    }
                    count
                }
            };
        }
        Ok(rows)
    }
}

/// The files of `format` in `dir`.
fn data_files(dir: &Path, format: FileFormat) -> Result<Vec<PathBuf>, ParquetError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == format.extension()) {
            files.push(path);
        }
    }
    Ok(files)
}

#[async_trait]
impl Sink for FileSink {
    async fn identity(&self) -> ferry_engine::Result<ferry_engine::ServerIdentity> {
        Ok(self.identity())
    }

    async fn is_empty(&self, table: &TableId) -> ferry_engine::Result<bool> {
        let dir = self.table_dir(table);
        Ok(!dir.exists() || data_files(&dir, self.format)?.is_empty())
    }

    async fn claim(&self, job: &str, definition: &str, dry_run: bool) -> ferry_engine::Result<()> {
        let file = self.root.join(format!(".ferry-{job}.definition"));
        let recorded = match fs::read_to_string(&file) {
            Ok(text) => Some(text.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&file)(e).into()),
        };
        if recorded.is_some() || dry_run {
            return ferry_engine::compare_claim(
                job,
                || format!("the part files in {}", self.root.display()),
                recorded,
                definition,
            );
        }
        fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        fs::write(&file, format!("{definition}\n")).map_err(io(&file))?;
        Ok(())
    }

    fn reserved_schema(&self, schema: &str) -> bool {
        // A directory name that is no directory of its own, or ferry's.
        schema == "_ferry" || schema == "." || schema == ".." || schema.contains('/')
    }

    fn name_limit(&self) -> ferry_engine::NameLimit {
        // A directory per schema and table, a column per field: file systems hold 255
        // bytes a name, and a table's directory holds files named after its job and part.
        ferry_engine::NameLimit::Bytes(200)
    }

    async fn lock(
        &self,
        job: &str,
        holder: &ferry_engine::Holder,
    ) -> ferry_engine::Result<ferry_engine::SinkLock> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let lock = ferry_engine::JobLock::acquire(
            &self.root.join(format!(".ferry-{job}.lock")),
            job,
            holder,
        )?;
        Ok(ferry_engine::SinkLock::new(lock))
    }

    async fn prepare(
        &self,
        tables: &[TableSchema],
        options: &PrepareOptions,
    ) -> ferry_engine::Result<()> {
        for table in tables {
            for part in [&table.id.schema, &table.id.name] {
                if part.is_empty() || part.starts_with('.') || part.contains(['/', '\0']) {
                    return Err(ParquetError::Target {
                        table: table.id.to_string(),
                        message: format!(
                            "'{part}' cannot name a directory of its own under {} (empty, hidden, or holding a /); rename it in the rule",
                            self.root.display()
                        ),
                    }
                    .into());
                }
            }
        }
        for table in tables {
            let dir = self.table_dir(&table.id);
            if dir.exists() {
                let files = data_files(&dir, self.format)?;
                if !files.is_empty() {
                    match options.existing_rows {
                        ExistingRows::Fail => {
                            return Err(ParquetError::Target {
                                table: table.id.to_string(),
                                message: format!(
                                    "{} already holds {} .{} files this job did not write; check that it is the directory you mean to fill, then remove them, or set sink.existing_rows = \"append\" to keep them or \"truncate\" to delete them first",
                                    dir.display(),
                                    files.len(),
                                    self.format.extension()
                                ),
                            }
                            .into())
                        }
                        ExistingRows::Truncate if !options.dry_run => {
                            for file in files {
                                fs::remove_file(&file).map_err(io(&file))?;
                            }
                            // Nor does any empty part stay marked done.
                            remove_empty_marks(&dir, None)?;
                        }
                        ExistingRows::Truncate | ExistingRows::Append => {}
                    }
                }
            } else if !options.dry_run {
                fs::create_dir_all(&dir).map_err(io(&dir))?;
            }
            self.prepared.insert(table.id.clone(), dir);
        }
        Ok(())
    }

    async fn writer(
        &self,
        table: &TableSchema,
        options: &WriterOptions,
    ) -> ferry_engine::Result<Box<dyn SinkWriter>> {
        let dir = self.prepared.get(&table.id)?;
        // A part of a job has one file name, so a part written again after a crash replaces
        // its file (the rename is atomic): the file itself is the part's marker, and an
        // upsert is a replacement.
        let extension = self.format.extension();
        let name = match &options.marker {
            Some(marker) => part_file_name(&marker.job, marker.part, extension),
            None => {
                let number = self.next_file.fetch_add(1, Ordering::Relaxed);
                format!("part-{}-{number:05}.{extension}", self.run)
            }
        };
        let path = dir.join(&name);
        let temporary = dir.join(format!(".{name}.tmp"));
        // A part all of whose rows a rule filtered out leaves no data file, only this mark
        // that it is done.
        let empty_marker = options
            .marker
            .as_ref()
            .map(|_| dir.join(format!(".{name}.empty")));
        let file = File::create(&temporary).map_err(io(&temporary))?;
        let writer = match self.format {
            FileFormat::Parquet => {
                let properties = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                let writer = ArrowWriter::try_new(file, table.columns.clone(), Some(properties))
                    .map_err(|source| ParquetError::Write {
                        path: temporary.display().to_string(),
                        source,
                    })?;
                Format::Parquet(writer)
            }
            FileFormat::ArrowIpc => {
                let writer = arrow_ipc::writer::FileWriter::try_new_buffered(file, &table.columns)
                    .map_err(|source| ParquetError::WriteIpc {
                        path: temporary.display().to_string(),
                        source,
                    })?;
                Format::ArrowIpc(writer)
            }
        };
        Ok(Box::new(FileWriter {
            table: table.id.clone(),
            rows: 0,
            writer: Some(writer),
            temporary,
            path,
            empty_marker,
        }))
    }

    async fn finished_parts(
        &self,
        job: &str,
        tables: &[TableSchema],
    ) -> ferry_engine::Result<Vec<(u32, TableId)>> {
        let prefix = format!("{job}-part-");
        let suffix = format!(".{}", self.format.extension());
        let mut finished = Vec::new();
        for table in tables {
            let dir = self.table_dir(&table.id);
            if !dir.exists() {
                continue;
            }
            for entry in fs::read_dir(&dir).map_err(io(&dir))? {
                let entry = entry.map_err(io(&dir))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    continue;
                };
                // A data file, or the mark of a part that had no rows.
                let name = match name.strip_prefix('.') {
                    Some(hidden) => match hidden.strip_suffix(".empty") {
                        Some(marked) => marked,
                        None => continue,
                    },
                    None => name,
                };
                let part = name
                    .strip_prefix(&prefix)
                    .and_then(|n| n.strip_suffix(&suffix))
                    .and_then(|n| n.parse::<u32>().ok());
                if let Some(part) = part {
                    finished.push((part, table.id.clone()));
                }
            }
        }
        Ok(finished)
    }

    async fn applier(&self, _job: &str) -> ferry_engine::Result<Box<dyn ChangeApplier>> {
        Err(ParquetError::Target {
            table: self.root.display().to_string(),
            message: "a file sink takes full migrations only: updates and deletes cannot be applied to Parquet or Arrow files; remove \"incremental\" from migration.types or use a database sink".into(),
        }
        .into())
    }

    async fn forget(&self, job: &str) -> ferry_engine::Result<()> {
        // The part files are the data itself: they stay; the job's claim on them and its
        // marks of empty parts go.
        if self.root.exists() {
            for schema in sorted_dirs(&self.root)? {
                for table in sorted_dirs(&schema)? {
                    remove_empty_marks(&table, Some(job))?;
                }
            }
        }
        let file = self.root.join(format!(".ferry-{job}.definition"));
        match fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&file)(e).into()),
            _ => Ok(()),
        }
    }
}

/// Removes the marks of empty parts in `dir`: of job `job`, or of every job.
fn remove_empty_marks(dir: &Path, job: Option<&str>) -> Result<(), ParquetError> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let ours = name.starts_with('.')
            && name.ends_with(".empty")
            && job.is_none_or(|job| name.starts_with(&format!(".{job}-part-")));
        if ours {
            fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// The file holding part `part` of job `job`.
fn part_file_name(job: &str, part: u32, extension: &str) -> String {
    format!("{job}-part-{part:05}.{extension}")
}

/// An open file of one format.
enum Format {
    Parquet(ArrowWriter<File>),
    ArrowIpc(arrow_ipc::writer::FileWriter<BufWriter<File>>),
}

/// Writes one file.
struct FileWriter {
    table: TableId,
    rows: usize,
    writer: Option<Format>,
    temporary: PathBuf,
    path: PathBuf,
    /// Where an empty part of a job is marked done.
    empty_marker: Option<PathBuf>,
}

impl FileWriter {
    fn parquet_error(&self, source: parquet::errors::ParquetError) -> ParquetError {
        ParquetError::Write {
            path: self.temporary.display().to_string(),
            source,
        }
    }

    fn ipc_error(&self, source: arrow::error::ArrowError) -> ParquetError {
        ParquetError::WriteIpc {
            path: self.temporary.display().to_string(),
            source,
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Not committed (never, or a failed commit: a full disk, a lost device): the part
        // will be read again, so its temporary file must go. After a commit it is renamed
        // away, and removing it finds nothing.
        let _ = fs::remove_file(&self.temporary);
    }
}

#[async_trait]
impl SinkWriter for FileWriter {
    async fn write(&mut self, batch: &ChangeBatch) -> ferry_engine::Result<()> {
        if let Ops::PerRow(_) = batch.ops {
            if (0..batch.num_rows()).any(|row| batch.ops.op(row) != Op::Insert) {
                return Err(ParquetError::Target {
                    table: self.table.to_string(),
                    message: "files take inserts only; updates and deletes need a database sink"
                        .into(),
                }
                .into());
            }
        }
        let written = match self.writer.as_mut() {
            Some(Format::Parquet(writer)) => writer
                .write(&batch.rows)
                .map_err(|source| self.parquet_error(source)),
            Some(Format::ArrowIpc(writer)) => writer
                .write(&batch.rows)
                .map_err(|source| self.ipc_error(source)),
            None => return Err(ferry_engine::Error::Internal("write after commit".into())),
        };
        written?;
        self.rows += batch.num_rows();
        Ok(())
    }

    async fn commit(&mut self) -> ferry_engine::Result<()> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let file = match writer {
            Format::Parquet(writer) => writer
                .into_inner()
                .map_err(|source| self.parquet_error(source))?,
            Format::ArrowIpc(mut writer) => {
                writer.finish().map_err(|source| self.ipc_error(source))?;
                writer
                    .into_inner()
                    .map_err(|source| self.ipc_error(source))?
                    .into_inner()
                    .map_err(|e| ParquetError::Io {
                        path: self.temporary.display().to_string(),
                        source: e.into_error(),
                    })?
            }
        };
        if self.rows == 0 {
            // A part whose rows were all filtered out leaves no file behind.
            drop(file);
            fs::remove_file(&self.temporary).map_err(io(&self.temporary))?;
            if let Some(marker) = &self.empty_marker {
                File::create(marker)
                    .and_then(|f| f.sync_all())
                    .map_err(io(marker))?;
            }
            return Ok(());
        }
        file.sync_all().map_err(io(&self.temporary))?;
        fs::rename(&self.temporary, &self.path).map_err(io(&self.path))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        info!(table = %self.table, file = %self.path.display(), "file committed");
        Ok(())
    }
}

/// Reading the files back (for `ferry verify`): a [`Source`] whose tables are the directories
/// under the root, whose columns are the files' schema, read file by file in no particular
/// order (files have no key order: compare them as multisets) and that has no change log.
#[async_trait]
impl Source for FileSink {
    fn filter_dialect(&self) -> Option<ferry_engine::FilterDialect> {
        None
    }

    fn reads_in_key_order(&self) -> bool {
        false
    }

    async fn identity(&self) -> ferry_engine::Result<ferry_engine::ServerIdentity> {
        Ok(self.identity())
    }

    async fn catalog(&self) -> ferry_engine::Result<Vec<TableSchema>> {
        let mut tables = Vec::new();
        if !self.root.exists() {
            return Ok(tables);
        }
        for schema in sorted_dirs(&self.root)? {
            for table in sorted_dirs(&schema)? {
                let Some(first) = data_files(&table, self.format)?.into_iter().min() else {
                    continue;
                };
                let name = |path: &Path| {
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                tables.push(TableSchema {
                    id: TableId::new(name(&schema), name(&table)),
                    columns: file_schema(&first, self.format)?,
                    primary_key: Vec::new(),
                    estimated_rows: None,
                });
            }
        }
        Ok(tables)
    }

    async fn snapshot(&self, request: SnapshotRequest) -> ferry_engine::Result<Arc<dyn Snapshot>> {
        let parts = (0..request.tables.len())
            .map(|table| SnapshotPart {
                index: table as u32,
                table,
                description: request.tables[table].table.id.to_string(),
                range: None,
            })
            .collect();
        Ok(Arc::new(FileSnapshot {
            dirs: request
                .tables
                .iter()
                .map(|t| self.table_dir(&t.table.id))
                .collect(),
            format: self.format,
            request,
            parts,
        }))
    }

    async fn check_changes(&self, _request: &ChangeRequest) -> ferry_engine::Result<()> {
        Err(no_changes(&self.root))
    }

    async fn changes(&self, _request: ChangeRequest) -> ferry_engine::Result<Box<dyn ChangeFeed>> {
        Err(no_changes(&self.root))
    }

    async fn drop_changes(
        &self,
        _name: &str,
        _definition: Option<&str>,
    ) -> ferry_engine::Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn retained_log(&self, _name: &str) -> ferry_engine::Result<Option<u64>> {
        Ok(None)
    }

    fn keeps_feeds(&self) -> bool {
        false
    }
}

fn no_changes(root: &Path) -> ferry_engine::Error {
    ParquetError::Target {
        table: root.display().to_string(),
        message: "files have no change log to follow; read them with a full migration".into(),
    }
    .into()
}

/// Names `path` in an error reading it.
fn read_error<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> ParquetError + '_ {
    move |e| ParquetError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The directories in `dir`, by name.
fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, ParquetError> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The Arrow schema a file holds.
fn file_schema(
    path: &Path,
    format: FileFormat,
) -> Result<arrow::datatypes::SchemaRef, ParquetError> {
    let file = File::open(path).map_err(io(path))?;
    Ok(match format {
        FileFormat::Parquet => {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(read_error(path))?
                .schema()
                .clone()
        }
        FileFormat::ArrowIpc => arrow_ipc::reader::FileReader::try_new(file, None)
            .map_err(read_error(path))?
            .schema(),
    })
}

/// The batches of one file, `batch_size` rows at a time (Parquet; IPC batches as written).
fn file_batches(
    path: &Path,
    format: FileFormat,
    batch_size: usize,
) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, ParquetError>>>, ParquetError> {
    let file = File::open(path).map_err(io(path))?;
    let owned = path.to_path_buf();
    let batch_error = move |e: arrow::error::ArrowError| read_error(&owned)(e);
    Ok(match format {
        FileFormat::Parquet => {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|builder| builder.with_batch_size(batch_size).build())
                    .map_err(read_error(path))?;
            Box::new(reader.map(move |batch| batch.map_err(&batch_error)))
        }
        FileFormat::ArrowIpc => {
            let reader =
                arrow_ipc::reader::FileReader::try_new(file, None).map_err(read_error(path))?;
            Box::new(reader.map(move |batch| batch.map_err(&batch_error)))
        }
    })
}

/// The files of the requested tables, a part per table.
struct FileSnapshot {
    request: SnapshotRequest,
    dirs: Vec<PathBuf>,
    format: FileFormat,
    parts: Vec<SnapshotPart>,
}

#[async_trait]
impl Snapshot for FileSnapshot {
    fn parts(&self) -> &[SnapshotPart] {
        &self.parts
    }

    fn batch_schema(&self, table: usize) -> arrow::datatypes::SchemaRef {
        self.request.tables[table].batch_schema()
    }

    async fn read(
        &self,
        part: &SnapshotPart,
        out: tokio::sync::mpsc::Sender<ChangeBatch>,
    ) -> ferry_engine::Result<u64> {
        let table = self.request.tables[part.table].clone();
        let dir = self.dirs[part.table].clone();
        let (format, batch_size) = (self.format, self.request.batch_size.max(1));
        let schema = self.batch_schema(part.table);
        let read = tokio::task::spawn_blocking(move || -> ferry_engine::Result<u64> {
            let id = Arc::new(table.table.id.clone());
            // The requested columns, found by name in each file.
            let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let mut files = data_files(&dir, format)?;
            files.sort();
            let mut rows = 0;
            for path in files {
                for batch in file_batches(&path, format, batch_size)? {
                    let batch = batch?;
                    let columns = names
                        .iter()
                        .map(|name| {
                            batch.column_by_name(name).cloned().ok_or_else(|| {
                                ParquetError::Target {
                                    table: id.to_string(),
                                    message: format!("{} has no column {name}", path.display()),
                                }
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let options = arrow::record_batch::RecordBatchOptions::new()
                        .with_row_count(Some(batch.num_rows()));
                    let projected =
                        RecordBatch::try_new_with_options(Arc::clone(&schema), columns, &options)
                            .map_err(read_error(&path))?;
                    rows += projected.num_rows() as u64;
                    let change = ChangeBatch::snapshot(
                        Arc::clone(&id),
                        projected,
                        Position::Snapshot {
                            part: 0,
                            offset: rows,
                        },
                        0,
                    );
                    if out.blocking_send(change).is_err() {
                        return Ok(rows);
                    }
                }
            }
            Ok(rows)
        });
        read.await
            .map_err(|e| ferry_engine::Error::Internal(format!("reading files: {e}")))?
    }

    async fn close(&self) -> ferry_engine::Result<()> {
        Ok(())
    }
}

/// Parquet and Arrow IPC files as the job runtime's registry knows them.
pub static CONNECTOR: ferry_engine::Connector = ferry_engine::Connector {
    name: "Parquet/Arrow files",
    schemes: &["parquet", "arrow"],
    url_form: "parquet:///path/to/dir or arrow:///path/to/dir",
    shape: ferry_engine::Shape::Tables,
    capabilities: ferry_engine::Capabilities {
        source: false,
        sink: true,
        change_feed: false,
        applies_changes: false,
        key_ordered_reads: false,
        files: true,
    },
    source_options: &[],
    sink_options: &[],
    open_source: None,
    open_sink: Some(open_sink),
    read_back: Some(read_back),
};

fn open_sink(
    url: &str,
    options: ferry_engine::ConnectorOptions,
) -> ferry_engine::Result<Arc<dyn Sink>> {
    options.finish(CONNECTOR.sink_options)?;
    Ok(Arc::new(FileSink::from_url(url, "sink.url")?))
}

fn read_back(
    url: &str,
    options: ferry_engine::ConnectorOptions,
) -> ferry_engine::Result<Arc<dyn ferry_engine::Source>> {
    options.finish(CONNECTOR.sink_options)?;
    Ok(Arc::new(FileSink::from_url(url, "sink.url")?))
}
