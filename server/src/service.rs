//! The service: the jobs of one data dir, each driven through the lifecycle
//! ([`crate::lifecycle`]) on the shared runtime, its record kept in the catalog.
//!
//! Every action is applied to the job's record and committed to the catalog before it is
//! answered; the run itself (precheck, then `ferry_jobs::run`) is a task of its own that
//! reports back through the same records. On start the service reconciles: jobs that were
//! running (or prechecking, or cutting over) run again from their checkpoints, `pausing` ones
//! are `paused`, `stopping` ones `stopped`. One job's failure, retry or load touches no
//! other: each run has its own task, context and connections.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_jobs::status::StatusBoard;
use ferry_jobs::{Controls, Event, JobSpec, Phase, RunContext};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::catalog::{
    Catalog, CatalogError, ErrorRecord, EventRecord, ItemRecord, JobRecord, LimitsRecord,
    PrecheckOnly, PrecheckRecord,
};
use crate::error::ApiError;
use crate::lifecycle::{self, Action, Desired, Outcome, State};
use crate::spec;

/// How long a cutover waits for the lag to fall under its threshold, unless told.
pub const CUTOVER_TIMEOUT: Duration = Duration::from_secs(300);
/// The lag at or under which a cutover stops the job, unless told.
pub const CUTOVER_LAG: f64 = 1.0;

/// Milliseconds since the UNIX epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the run of a job is to do when it ends, or do next.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Intent {
    /// Run to the end.
    Run,
    /// Precheck only, then settle in `ready` / `precheck_failed` (or back where it was).
    PrecheckOnly { back_to: Option<State> },
    /// Stop reading and keep the position.
    Pause,
    /// Stop for good.
    Stop,
    /// Stop once the lag is at most `max_lag` seconds; back to running at `deadline`.
    Cutover { max_lag: f64, deadline: Instant },
    /// The service shuts down: leave the record as it is, so the next start resumes it.
    Shutdown,
}

/// A run under way.
struct Live {
    /// Which run this is: a run's task clears only its own entry (a resume can start the
    /// next run while the last one's task is still returning).
    run: u64,
    intent: Intent,
    /// Set once the run's context exists.
    board: Option<Arc<StatusBoard>>,
    controls: Option<Controls>,
    /// Cancelled when the run's task ends.
    ended: CancellationToken,
}

struct Entry {
    record: JobRecord,
    live: Option<Live>,
    /// Being dropped: every action is refused.
    dropping: bool,
    /// Errors and retries seen (for metrics), since the service started.
    errors: u64,
    retries: u64,
}

/// A change of a job's limits: per limit, kept (`None`), lifted (`Some(None)`) or set.
#[derive(Clone, Copy, Debug, Default)]
pub struct LimitsChange {
    /// Rows a second.
    pub rows_per_sec: Option<Option<f64>>,
    /// Megabytes (10^6 bytes) a second.
    pub mb_per_sec: Option<Option<f64>>,
}

/// The jobs of one data dir.
pub struct Service {
    data_dir: PathBuf,
    catalog: Arc<Catalog>,
    jobs: Mutex<BTreeMap<String, Entry>>,
    shutdown: CancellationToken,
    runs: std::sync::atomic::AtomicU64,
}

/// A job's record and live status, read at one moment.
pub struct View {
    /// The record.
    pub record: JobRecord,
    /// The run's status ([`ferry_jobs::JobStatus`]) now, or as the last run ended.
    pub status: Option<serde_json::Value>,
    /// Errors since the service started.
    pub errors: u64,
    /// Retries since the service started.
    pub retries: u64,
}

impl Service {
    /// The service of `data_dir` (created if need be), its jobs reconciled: what was running
    /// runs again from its checkpoint.
    pub fn open(data_dir: &Path) -> Result<Arc<Service>, CatalogError> {
        let private = || -> std::io::Result<()> {
            std::fs::create_dir_all(data_dir.join("jobs"))?;
            // The catalog holds job files as given (a password written inline among them).
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        };
        private().map_err(|e| CatalogError::Damaged {
            path: data_dir.display().to_string(),
            key: "data dir".into(),
            message: e.to_string(),
        })?;
        let catalog = Arc::new(Catalog::open(data_dir)?);
        let records = catalog.jobs()?;
        let service = Arc::new(Service {
            data_dir: data_dir.to_path_buf(),
            catalog,
            jobs: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
            runs: std::sync::atomic::AtomicU64::new(0),
        });
        for record in records {
            service.reconcile(record)?;
        }
        Ok(service)
    }

    fn reconcile(self: &Arc<Self>, mut record: JobRecord) -> Result<(), CatalogError> {
        let name = record.name.clone();
        let mut events = Vec::new();
        let settled = match record.state {
            State::Pausing => Some(State::Paused),
            State::Stopping => Some(State::Stopped),
            _ => None,
        };
        if let Some(state) = settled {
            events.push(state_event(&mut record, state, "settled on restart"));
        }
        let resume = match record.state {
            State::Running => Some(Intent::Run),
            State::CuttingOver => {
                events.push(state_event(
                    &mut record,
                    State::Running,
                    "the service restarted during the cutover: running again; ask for the cutover again",
                ));
                Some(Intent::Run)
            }
            State::Prechecking => Some(match record.precheck_only {
                Some(PrecheckOnly { back_to }) => Intent::PrecheckOnly { back_to },
                None => Intent::Run,
            }),
            _ => None,
        };
        if !events.is_empty() {
            self.catalog.save(&record, &events)?;
        }
        let precheck_first = record.state == State::Prechecking;
        self.lock().insert(
            name.clone(),
            Entry {
                record,
                live: None,
                dropping: false,
                errors: 0,
                retries: 0,
            },
        );
        if let Some(intent) = resume {
            info!(job = %name, "resuming the job after a restart of the service");
            self.launch(&name, intent, precheck_first);
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every job's view, by id.
    pub fn views(&self) -> Vec<View> {
        let jobs = self.lock();
        let mut views: Vec<View> = jobs.values().map(view).collect();
        views.sort_by_key(|v| v.record.id);
        views
    }

    /// Job `name`'s view.
    pub fn view(&self, name: &str) -> Result<View, ApiError> {
        let jobs = self.lock();
        jobs.get(name)
            .map(view)
            .ok_or_else(|| ApiError::not_found(name))
    }

    /// Job `name`'s events from `since` on.
    pub fn events(
        &self,
        name: &str,
        since: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, ApiError> {
        let id = self.view(name)?.record.id;
        Ok(self.catalog.events(id, since, limit)?)
    }

    /// Where job `name`'s lock file is made from (its checkpoint is in the catalog).
    fn checkpoint_path(&self, record: &JobRecord) -> PathBuf {
        self.data_dir
            .join("jobs")
            .join(record.id.to_string())
            .join(format!("{}.state.json", record.name))
    }

    /// The runtime's spec of `record`.
    fn job_spec(&self, record: &JobRecord) -> Result<JobSpec, ApiError> {
        let file = spec::check_spec(&record.name, &record.spec)?;
        let path = self.checkpoint_path(record);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", dir.display())))?;
        }
        let cell = crate::catalog::CheckpointInCatalog {
            catalog: Arc::clone(&self.catalog),
            id: record.id,
        };
        Ok(JobSpec {
            name: record.name.clone(),
            file,
            store: ferry_jobs::CheckpointStore::in_cell(path, Arc::new(cell)),
        })
    }

    /// Creates job `name` from `text` (the job file); prechecks and starts it when `start`.
    pub fn create(self: &Arc<Self>, name: &str, text: &str, start: bool) -> Result<View, ApiError> {
        self.create_labelled(name, text, start, BTreeMap::new())
    }

    /// [`Service::create`], with labels (a cloud API's name for the job, its origin).
    pub fn create_labelled(
        self: &Arc<Self>,
        name: &str,
        text: &str,
        start: bool,
        labels: BTreeMap<String, String>,
    ) -> Result<View, ApiError> {
        spec::check_name(name)?;
        let file = spec::check_spec(name, text)?;
        if self.lock().contains_key(name) {
            return Err(ApiError::name_taken(name));
        }
        let record = self.insert(name, text, file_limits(&file), labels)?;
        if start {
            self.act(&record.name, Action::Start)?;
        }
        self.view(&record.name)
    }

    /// Creates a job with no spec yet, as the cloud APIs create one before configuring it:
    /// named `{prefix}{id}`, in `draft`, refusing to start until [`Service::configure`].
    pub fn create_draft(
        self: &Arc<Self>,
        prefix: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<View, ApiError> {
        self.create_draft_once(prefix, labels, None)
    }

    /// [`Service::create_draft`], unless a job already has label `once` (a client's
    /// idempotency token): then that job, checked and made under one lock.
    pub fn create_draft_once(
        self: &Arc<Self>,
        prefix: &str,
        labels: BTreeMap<String, String>,
        once: Option<&str>,
    ) -> Result<View, ApiError> {
        let name = format!("{prefix}{{id}}");
        let record = self.insert_once(&name, "", LimitsRecord::default(), labels, once)?;
        self.view(&record.name)
    }

    fn insert(
        &self,
        name: &str,
        text: &str,
        limits: LimitsRecord,
        labels: BTreeMap<String, String>,
    ) -> Result<JobRecord, ApiError> {
        self.insert_once(name, text, limits, labels, None)
    }

    fn insert_once(
        &self,
        name: &str,
        text: &str,
        limits: LimitsRecord,
        labels: BTreeMap<String, String>,
        once: Option<&str>,
    ) -> Result<JobRecord, ApiError> {
        let now = now_ms();
        let mut record = JobRecord {
            id: 0,
            name: name.to_string(),
            spec: text.to_string(),
            state: State::Draft,
            phase: None,
            desired: None,
            created_at: now,
            started_at: None,
            updated_at: now,
            finished_at: None,
            precheck: None,
            error: None,
            limits,
            last_status: None,
            warnings: Vec::new(),
            precheck_only: None,
            next_event: 0,
            labels,
        };
        let created = new_event(&mut record, "info", "created", "job created");
        let mut jobs = self.lock();
        if let Some(key) = once {
            let value = record.labels.get(key);
            if let Some(found) = jobs
                .values()
                .find(|e| value.is_some() && e.record.labels.get(key) == value)
            {
                return Ok(found.record.clone());
            }
        }
        let record = self.catalog.create(record, &[created])?;
        jobs.insert(
            record.name.clone(),
            Entry {
                record: record.clone(),
                live: None,
                dropping: false,
                errors: 0,
                retries: 0,
            },
        );
        Ok(record)
    }

    /// Replaces job `name`'s spec with `text` (checked first) and adds `labels`, in a state
    /// that allows altering it; then, when `start`, starts it (resumes it when paused). A
    /// start the state does not allow is refused before anything changes.
    pub fn configure(
        self: &Arc<Self>,
        name: &str,
        text: &str,
        labels: BTreeMap<String, String>,
        start: bool,
    ) -> Result<(), ApiError> {
        let file = spec::check_spec(name, text)?;
        let action = {
            let mut jobs = self.lock();
            let (entry, _) = allowing(&mut jobs, name, Action::Alter)?;
            let state = entry.record.state;
            let action = Action::start_for(state);
            if start && lifecycle::outcome(state, in_incremental(entry), action).is_none() {
                return Err(ApiError::invalid_state(
                    name,
                    state,
                    action,
                    lifecycle::allowed_actions(state, in_incremental(entry)),
                ));
            }
            entry.record.spec = text.to_string();
            entry.record.labels.extend(labels);
            // The file's limits, where it sets them; else the ones in force.
            let given = file_limits(&file);
            entry.record.limits = LimitsRecord {
                rows_per_sec: given.rows_per_sec.or(entry.record.limits.rows_per_sec),
                mb_per_sec: given.mb_per_sec.or(entry.record.limits.mb_per_sec),
            };
            self.commit(&mut entry.record, "action", "configured")?;
            action
        };
        if start {
            self.act(name, action)?;
        }
        Ok(())
    }

    /// Sets labels of job `name`.
    pub fn label(&self, name: &str, labels: BTreeMap<String, String>) -> Result<(), ApiError> {
        let mut jobs = self.lock();
        let entry = jobs
            .get_mut(name)
            .ok_or_else(|| ApiError::not_found(name))?;
        entry.record.labels.extend(labels);
        self.commit(&mut entry.record, "action", "labels changed")?;
        Ok(())
    }

    /// Copies job `name`'s spec into a new draft job `new_name`.
    pub fn duplicate(self: &Arc<Self>, name: &str, new_name: &str) -> Result<View, ApiError> {
        let mut spec: toml::Table = self
            .view(name)?
            .record
            .spec
            .parse()
            .map_err(|e| ApiError::internal(format!("the stored spec does not parse: {e}")))?;
        // The copy is named by the request, not by the original's file.
        spec.remove("name");
        let text = toml::to_string(&spec).map_err(|e| ApiError::internal(e.to_string()))?;
        self.create(new_name, &text, false)
    }

    /// Applies `action` (start, precheck, pause, resume, stop) to job `name`. Returns whether
    /// it was already satisfied.
    pub fn act(self: &Arc<Self>, name: &str, action: Action) -> Result<Outcome, ApiError> {
        self.act_with(name, action, CUTOVER_LAG, CUTOVER_TIMEOUT)
    }

    /// Starts job `name`, or resumes it when paused ([`Action::start_for`]).
    pub fn start_or_resume(self: &Arc<Self>, name: &str) -> Result<Outcome, ApiError> {
        let state = self.view(name)?.record.state;
        self.act(name, Action::start_for(state))
    }

    /// [`Service::act`], with a cutover's lag threshold and timeout.
    pub fn act_with(
        self: &Arc<Self>,
        name: &str,
        action: Action,
        max_lag: f64,
        timeout: Duration,
    ) -> Result<Outcome, ApiError> {
        let mut launch = None;
        let installed;
        {
            let mut jobs = self.lock();
            let (entry, outcome) = allowing(&mut jobs, name, action)?;
            let state = entry.record.state;
            if outcome == Outcome::Satisfied {
                // A start during a precheck-only run makes it a run.
                if let (Action::Start, Some(live)) = (action, entry.live.as_mut()) {
                    if matches!(live.intent, Intent::PrecheckOnly { .. }) {
                        live.intent = Intent::Run;
                        entry.record.desired = Some(Desired::Running);
                        entry.record.precheck_only = None;
                        self.commit(
                            &mut entry.record,
                            "action",
                            "start requested: runs once the precheck passes",
                        )?;
                    }
                }
                return Ok(outcome);
            }
            let record = &mut entry.record;
            let mut events = vec![new_event(
                record,
                "info",
                "action",
                &format!("{} requested", action.name()),
            )];
            match action {
                Action::Start => {
                    record.desired = Some(Desired::Running);
                    record.precheck_only = None;
                    record.error = None;
                    events.push(state_event(record, State::Prechecking, "prechecking"));
                    launch = Some((Intent::Run, true));
                }
                Action::Precheck => {
                    let back_to = matches!(state, State::Paused | State::Failed).then_some(state);
                    record.precheck_only = Some(PrecheckOnly { back_to });
                    events.push(state_event(record, State::Prechecking, "prechecking"));
                    launch = Some((Intent::PrecheckOnly { back_to }, true));
                }
                Action::Resume => {
                    record.desired = Some(Desired::Running);
                    record.warnings.clear();
                    events.push(state_event(record, State::Running, "resuming"));
                    launch = Some((Intent::Run, false));
                }
                Action::Pause | Action::Stop | Action::Cutover => {
                    let (intent, desired, next) = match action {
                        Action::Pause => (Intent::Pause, Desired::Paused, State::Pausing),
                        Action::Stop => (Intent::Stop, Desired::Stopped, State::Stopping),
                        _ => (
                            Intent::Cutover {
                                max_lag,
                                deadline: Instant::now() + timeout,
                            },
                            Desired::Stopped,
                            State::CuttingOver,
                        ),
                    };
                    record.desired = Some(desired);
                    // A run whose end is already recorded is not running.
                    let running = entry.live.as_mut().filter(|_| state.is_active());
                    match running {
                        Some(live) => {
                            live.intent = intent;
                            events.push(state_event(record, next, next.name()));
                            if matches!(intent, Intent::Pause | Intent::Stop) {
                                if let Some(controls) = &live.controls {
                                    controls.request_stop();
                                }
                            }
                        }
                        None => {
                            // Nothing runs: the state is reached at once.
                            let settled = match intent {
                                Intent::Pause => State::Paused,
                                _ => State::Stopped,
                            };
                            if settled == State::Stopped {
                                record.finished_at = Some(now_ms());
                            }
                            events.push(state_event(record, settled, settled.name()));
                        }
                    }
                    if matches!(intent, Intent::Cutover { .. }) && state.is_active() {
                        let service = Arc::clone(self);
                        let name = name.to_string();
                        tokio::spawn(async move { service.watch_cutover(name).await });
                    }
                }
                Action::Limit | Action::Alter | Action::Duplicate | Action::Drop => {
                    return Err(ApiError::internal(format!(
                        "{} is not a lifecycle action",
                        action.name()
                    )));
                }
            }
            self.catalog.save(&entry.record, &events)?;
            // The run is installed with the state that announces it, so an action that comes
            // next finds it.
            installed =
                launch.map(|(intent, precheck)| (install(entry, intent, &self.runs), precheck));
        }
        if let Some(((run, ended), precheck)) = installed {
            self.spawn_run(name, run, ended, precheck);
        }
        Ok(Outcome::Apply)
    }

    /// Changes job `name`'s limits as `change` says, each checked: rows a second a whole
    /// number of at least 1, megabytes a second more than 0 and at most 10240. Returns the
    /// limits now in force.
    pub fn change_limits(
        &self,
        name: &str,
        change: LimitsChange,
    ) -> Result<LimitsRecord, ApiError> {
        let rows = change
            .rows_per_sec
            .map(|rows| match rows {
                None => Ok(None),
                Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= 1e12 => Ok(Some(n as u64)),
                Some(n) => Err(ApiError::invalid(
                    "rows_per_sec",
                    format!("rows_per_sec must be a whole number of at least 1 (unlimited: null, DEFAULT or -1), not {n}"),
                )),
            })
            .transpose()?;
        let mb = change
            .mb_per_sec
            .map(|mb| match mb {
                None => Ok(None),
                Some(n) if n > 0.0 && n <= 10240.0 => Ok(Some(n)),
                Some(n) => Err(ApiError::invalid(
                    "mb_per_sec",
                    format!("mb_per_sec must be more than 0 and at most 10240 (unlimited: null, DEFAULT or -1), not {n}"),
                )),
            })
            .transpose()?;
        self.update_limits(name, |limits| LimitsRecord {
            rows_per_sec: rows.unwrap_or(limits.rows_per_sec),
            mb_per_sec: mb.unwrap_or(limits.mb_per_sec),
        })
    }

    /// The name of the job with id `id`.
    pub fn name_of(&self, id: u64) -> Option<String> {
        self.lock()
            .values()
            .find(|e| e.record.id == id)
            .map(|e| e.record.name.clone())
    }

    /// The job `key` names: its name, or its id in digits (a name is never all digits).
    pub fn resolve(&self, key: &str) -> Result<String, ApiError> {
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            if let Some(name) = key.parse().ok().and_then(|id| self.name_of(id)) {
                return Ok(name);
            }
            return Err(ApiError::not_found(key));
        }
        self.view(key).map(|_| key.to_string())
    }

    /// Changes job `name`'s limits (`None`: unlimited), within a second when it runs.
    pub fn set_limits(&self, name: &str, limits: LimitsRecord) -> Result<(), ApiError> {
        self.update_limits(name, |_| limits).map(|_| ())
    }

    /// Job `name`'s limits made by `change` from the ones in force, read and written under
    /// one lock (two changes at once lose neither).
    fn update_limits(
        &self,
        name: &str,
        change: impl FnOnce(LimitsRecord) -> LimitsRecord,
    ) -> Result<LimitsRecord, ApiError> {
        let mut jobs = self.lock();
        let (entry, _) = allowing(&mut jobs, name, Action::Limit)?;
        let limits = change(entry.record.limits);
        if let Some(controls) = entry.live.as_ref().and_then(|l| l.controls.as_ref()) {
            apply_limits(controls, limits);
        }
        entry.record.limits = limits;
        let message = format!(
            "limits: {} rows/s, {} MB/s",
            limits
                .rows_per_sec
                .map_or("unlimited".into(), |n| n.to_string()),
            limits
                .mb_per_sec
                .map_or("unlimited".into(), |n| n.to_string())
        );
        self.commit(&mut entry.record, "limits", &message)?;
        Ok(limits)
    }

    /// Merges `patch` (TOML text) into job `name`'s spec; checked before it is stored.
    pub fn alter(&self, name: &str, patch: &str) -> Result<(), ApiError> {
        let mut jobs = self.lock();
        let (entry, _) = allowing(&mut jobs, name, Action::Alter)?;
        let merged = spec::merge(&entry.record.spec, patch)?;
        spec::check_spec(name, &merged)?;
        entry.record.spec = merged;
        self.commit(
            &mut entry.record,
            "action",
            "spec altered; the next start prechecks it",
        )?;
        Ok(())
    }

    /// Removes job `name`: stops it first, then (unless `keep_resources`) drops its change
    /// feed, its records in the sink and its checkpoint. Returns what was removed.
    pub async fn drop_job(
        self: &Arc<Self>,
        name: &str,
        keep_resources: bool,
    ) -> Result<Vec<String>, ApiError> {
        let ended = {
            let mut jobs = self.lock();
            let entry = jobs
                .get_mut(name)
                .ok_or_else(|| ApiError::not_found(name))?;
            if entry.dropping {
                return Err(ApiError::invalid_state(
                    name,
                    entry.record.state,
                    Action::Drop,
                    Vec::new(),
                )
                .with("message", format!("job {name} is being dropped")));
            }
            entry.dropping = true;
            entry.live.as_mut().map(|live| {
                live.intent = Intent::Stop;
                if let Some(controls) = &live.controls {
                    controls.request_stop();
                }
                live.ended.clone()
            })
        };
        if let Some(ended) = ended {
            ended.cancelled().await;
        }
        let record = self.view(name)?.record;
        let removed = async {
            // A job that never ran (never configured, or only prechecked) made nothing at
            // its source or sink: nothing to reach there, which may not even be up.
            if keep_resources || record.spec.is_empty() || record.started_at.is_none() {
                return Ok(Vec::new());
            }
            let spec = self.job_spec(&record)?;
            let job = ferry_jobs::open(spec).map_err(|e| ApiError::from_job(&e))?;
            let report = ferry_jobs::drop(job.as_ref(), false)
                .await
                .map_err(|e| ApiError::from_job(&e).with("job", name))?;
            self.catalog.remove(&record)?;
            Ok(report.removed)
        };
        let removed = match removed.await {
            Ok(removed) => removed,
            Err(error) => {
                // Not dropped: the job takes actions again.
                if let Some(entry) = self.lock().get_mut(name) {
                    entry.dropping = false;
                }
                return Err(error);
            }
        };
        if keep_resources {
            self.catalog.remove(&record)?;
        }
        self.lock().remove(name);
        let dir = self.data_dir.join("jobs").join(record.id.to_string());
        let _ = std::fs::remove_dir_all(dir);
        info!(job = %name, "job dropped");
        Ok(removed)
    }

    /// Waits until job `name` is in a settled state (not prechecking, pausing, stopping or
    /// cutting over) or `timeout` passes; returns whether it settled.
    pub async fn settle(&self, name: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.view(name) {
                Ok(view)
                    if matches!(
                        view.record.state,
                        State::Prechecking | State::Pausing | State::Stopping | State::CuttingOver
                    ) => {}
                _ => return true,
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every run, leaving the records as they are (the next start resumes them), and
    /// waits for the runs to commit what they read.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let ended: Vec<CancellationToken> = {
            let mut jobs = self.lock();
            jobs.values_mut()
                .filter_map(|entry| entry.live.as_mut())
                .map(|live| {
                    live.intent = Intent::Shutdown;
                    if let Some(controls) = &live.controls {
                        controls.request_stop();
                    }
                    live.ended.clone()
                })
                .collect()
        };
        for token in ended {
            token.cancelled().await;
        }
    }

    /// Installs a run of job `name` and starts its task (at start-up, before any request).
    fn launch(self: &Arc<Self>, name: &str, intent: Intent, precheck: bool) {
        let installed = {
            let mut jobs = self.lock();
            jobs.get_mut(name)
                .map(|entry| install(entry, intent, &self.runs))
        };
        if let Some((run, ended)) = installed {
            self.spawn_run(name, run, ended, precheck);
        }
    }

    /// Starts the task of run `run` of job `name` (prechecking first when `precheck`). A run
    /// that panics fails the job instead of leaving it `running`; either way the run's entry
    /// is cleared and `ended` fires.
    fn spawn_run(self: &Arc<Self>, name: &str, run: u64, ended: CancellationToken, precheck: bool) {
        let service = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            let task = {
                let service = Arc::clone(&service);
                let name = name.clone();
                tokio::spawn(async move { service.drive(&name, precheck).await })
            };
            if let Err(error) = task.await {
                let message = format!("internal: the job's run ended abnormally ({error}); start it again, and report this as a bug");
                service.update(&name, |entry| {
                    entry.errors += 1;
                    fail(&mut entry.record, "internal error", &message)
                });
            }
            if let Some(entry) = service.lock().get_mut(&name) {
                if entry.live.as_ref().is_some_and(|live| live.run == run) {
                    entry.live = None;
                }
            }
            ended.cancel();
        });
    }

    fn intent(&self, name: &str) -> Option<Intent> {
        self.lock()
            .get(name)
            .and_then(|e| e.live.as_ref())
            .map(|l| l.intent)
    }

    /// Changes job `name`'s record under the lock and commits it with the events `change`
    /// returns.
    fn update(&self, name: &str, change: impl FnOnce(&mut Entry) -> Vec<EventRecord>) {
        let mut jobs = self.lock();
        let Some(entry) = jobs.get_mut(name) else {
            return;
        };
        let events = change(entry);
        if let Err(error) = self.catalog.save(&entry.record, &events) {
            warn!(job = %name, %error, "cannot record the job's state");
        }
    }

    async fn drive(self: &Arc<Self>, name: &str, precheck: bool) {
        let Ok(view) = self.view(name) else { return };
        let job = match self
            .job_spec(&view.record)
            .and_then(|spec| ferry_jobs::open(spec).map_err(|e| ApiError::from_job(&e)))
        {
            Ok(job) => job,
            Err(error) => {
                self.update(name, |entry| {
                    entry.errors += 1;
                    fail(&mut entry.record, "user error", &error.message)
                });
                return;
            }
        };
        if precheck {
            let (items, _) = job.precheck().await;
            let passed = items.passed();
            let warns = items.warns();
            let record = PrecheckRecord {
                checked_at: now_ms(),
                items: items
                    .items
                    .iter()
                    .map(|item| ItemRecord {
                        name: item.name.to_string(),
                        status: serde_json::to_value(item.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        blocking: item.blocking,
                        object: item.object.clone(),
                        message: item.message.clone(),
                        fix: item.fix.clone(),
                    })
                    .collect(),
            };
            let intent = self.intent(name);
            let mut go_on = false;
            self.update(name, |entry| {
                let r = &mut entry.record;
                r.precheck = Some(record);
                r.precheck_only = None;
                let summary = if passed && warns {
                    "precheck passed with warnings"
                } else if passed {
                    "precheck passed"
                } else {
                    "precheck failed"
                };
                let mut events = vec![new_event(
                    r,
                    if passed { "info" } else { "error" },
                    "precheck",
                    summary,
                )];
                let next = match intent {
                    Some(Intent::Stop) => {
                        r.finished_at = Some(now_ms());
                        State::Stopped
                    }
                    Some(Intent::Pause) => State::Paused,
                    Some(Intent::PrecheckOnly { back_to }) => match (passed, back_to) {
                        (true, Some(state)) => state,
                        (true, None) => State::Ready,
                        (false, Some(state)) => state,
                        (false, None) => State::PrecheckFailed,
                    },
                    Some(Intent::Shutdown) => return events,
                    _ if passed => {
                        go_on = true;
                        State::Running
                    }
                    _ => State::PrecheckFailed,
                };
                events.push(state_event(r, next, summary));
                events
            });
            if !go_on {
                return;
            }
        }
        self.run(name, job).await;
    }

    async fn run(self: &Arc<Self>, name: &str, job: Box<dyn ferry_jobs::Job>) {
        let (context, mut events) = RunContext::new(job.spec());
        let limits = match self.view(name) {
            Ok(view) => view.record.limits,
            Err(_) => return,
        };
        let controls = context.controls();
        apply_limits(&controls, limits);
        let stop_now = {
            let mut jobs = self.lock();
            let Some(entry) = jobs.get_mut(name) else {
                return;
            };
            let Some(live) = entry.live.as_mut() else {
                return;
            };
            live.board = Some(context.status_board());
            live.controls = Some(controls.clone());
            entry.record.started_at = Some(now_ms());
            entry.record.error = None;
            matches!(live.intent, Intent::Pause | Intent::Stop | Intent::Shutdown)
        };
        if stop_now {
            controls.request_stop();
        }
        self.update(name, |entry| {
            if entry.record.state == State::Running {
                Vec::new()
            } else {
                vec![state_event(&mut entry.record, State::Running, "running")]
            }
        });
        // The run's events become the job's: phases, retries, limit changes.
        let pump = {
            let service = Arc::clone(self);
            let name = name.to_string();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    service.record_event(&name, event);
                }
            })
        };
        let result = ferry_jobs::run(job.as_ref(), &context).await;
        let status = context.status();
        // The run is over; its controls (which the job's entry holds) would keep the
        // channel open, so the pump ends here. The last phase is in the final status.
        pump.abort();
        let intent = self.intent(name).unwrap_or(Intent::Run);
        let warnings = match (intent, &result) {
            (Intent::Pause, Ok(_) | Err(ferry_jobs::Error::Stopped)) => {
                retained_warning(job.as_ref()).await
            }
            _ => Vec::new(),
        };
        self.update(name, |entry| {
            let record = &mut entry.record;
            record.last_status = serde_json::to_value(&status).ok();
            if let Some(phase) = status.phase {
                record.phase = Some(phase_name(phase).to_string());
            }
            record.warnings = warnings;
            match (&result, intent) {
                (_, Intent::Shutdown) => Vec::new(),
                (Ok(_) | Err(ferry_jobs::Error::Stopped), Intent::Pause) => {
                    vec![state_event(
                        record,
                        State::Paused,
                        "paused at its checkpoint",
                    )]
                }
                (
                    Ok(_) | Err(ferry_jobs::Error::Stopped),
                    Intent::Stop | Intent::Cutover { .. },
                ) => {
                    record.finished_at = Some(now_ms());
                    vec![state_event(record, State::Stopped, "stopped")]
                }
                (Ok(_), _) => {
                    record.finished_at = Some(now_ms());
                    vec![state_event(record, State::Completed, "completed")]
                }
                (Err(error), _) => {
                    entry.errors += 1;
                    fail(record, &error.class().to_string(), &error.to_string())
                }
            }
        });
    }

    fn record_event(&self, name: &str, event: Event) {
        match event {
            Event::Phase(phase) => self.update(name, |entry| {
                entry.record.phase = Some(phase_name(phase).to_string());
                vec![new_event(
                    &mut entry.record,
                    "info",
                    "phase",
                    &format!("phase {}", phase_name(phase)),
                )]
            }),
            Event::Retrying {
                error,
                try_number,
                of,
                delay,
            } => self.update(name, |entry| {
                entry.retries += 1;
                entry.errors += 1;
                let of = of.map_or("unbounded".to_string(), |n| n.to_string());
                vec![new_event(
                    &mut entry.record,
                    "warning",
                    "retrying",
                    &format!(
                        "try {try_number} of {of} failed, next in {:.1} s: {error}",
                        delay.as_secs_f64()
                    ),
                )]
            }),
            Event::LimitsChanged { .. } | Event::Counters(_) | Event::Stopping => {}
        }
    }

    async fn watch_cutover(self: Arc<Self>, name: String) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut jobs = self.lock();
            let Some(entry) = jobs.get_mut(&name) else {
                return;
            };
            let Some(live) = entry.live.as_mut() else {
                return;
            };
            let Intent::Cutover { max_lag, deadline } = live.intent else {
                return;
            };
            let status = live.board.as_ref().map(|b| b.snapshot());
            let lag = status
                .as_ref()
                .filter(|s| s.substate == Some(ferry_jobs::status::Substate::CaughtUp))
                .and_then(|s| s.incremental.as_ref())
                .map(|i| i.lag_seconds);
            if let Some(lag) = lag.filter(|&lag| lag <= max_lag) {
                live.intent = Intent::Stop;
                if let Some(controls) = &live.controls {
                    controls.request_stop();
                }
                let event = state_event(
                    &mut entry.record,
                    State::Stopping,
                    &format!("cutover: caught up (lag {lag:.3} s), stopping"),
                );
                let _ = self.catalog.save(&entry.record, &[event]);
                return;
            }
            if Instant::now() >= deadline {
                live.intent = Intent::Run;
                entry.record.desired = Some(Desired::Running);
                let event = state_event(
                    &mut entry.record,
                    State::Running,
                    "cutover timed out before the lag fell under its threshold: running on",
                );
                let _ = self.catalog.save(&entry.record, &[event]);
                return;
            }
        }
    }
}

/// Records a new run of `entry` with `intent`: its number and the signal of its end.
fn install(
    entry: &mut Entry,
    intent: Intent,
    runs: &std::sync::atomic::AtomicU64,
) -> (u64, CancellationToken) {
    let run = runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ended = CancellationToken::new();
    entry.live = Some(Live {
        run,
        intent,
        board: None,
        controls: None,
        ended: ended.clone(),
    });
    (run, ended)
}

/// Job `name`'s entry and what `action` does to it, or why it cannot.
fn allowing<'a>(
    jobs: &'a mut BTreeMap<String, Entry>,
    name: &str,
    action: Action,
) -> Result<(&'a mut Entry, Outcome), ApiError> {
    let entry = jobs
        .get_mut(name)
        .ok_or_else(|| ApiError::not_found(name))?;
    let state = entry.record.state;
    if entry.dropping {
        return Err(ApiError::invalid_state(name, state, action, Vec::new())
            .with("message", format!("job {name} is being dropped")));
    }
    if entry.record.spec.is_empty()
        && matches!(
            action,
            Action::Start | Action::Precheck | Action::Resume | Action::Cutover
        )
    {
        return Err(ApiError::not_configured(name, state, action));
    }
    let incremental = in_incremental(entry);
    match lifecycle::outcome(state, incremental, action) {
        Some(outcome) => Ok((entry, outcome)),
        None => Err(ApiError::invalid_state(
            name,
            state,
            action,
            lifecycle::allowed_actions(state, incremental),
        )),
    }
}

/// Whether the job's run is (or was last) in the incremental phase: the live status knows
/// it first (a Redis job's phase is its connector's state, not an event).
fn in_incremental(entry: &Entry) -> bool {
    let live = entry
        .live
        .as_ref()
        .and_then(|l| l.board.as_ref())
        .and_then(|board| board.phase());
    match live {
        Some(phase) => phase == Phase::Incremental,
        None => entry.record.phase.as_deref() == Some("incremental"),
    }
}

fn view(entry: &Entry) -> View {
    let status = entry
        .live
        .as_ref()
        .and_then(|l| l.board.as_ref())
        .and_then(|board| serde_json::to_value(board.snapshot()).ok())
        .or_else(|| entry.record.last_status.clone());
    let mut record = entry.record.clone();
    if let Some(phase) = status.as_ref().and_then(|s| s["phase"].as_str()) {
        record.phase = Some(phase.to_string());
    }
    View {
        record,
        status,
        errors: entry.errors,
        retries: entry.retries,
    }
}

fn apply_limits(controls: &Controls, limits: LimitsRecord) {
    controls.set_limits(
        Some(limits.rows_per_sec.unwrap_or(0)),
        Some(
            limits
                .mb_per_sec
                .map_or(0, |mb| (mb * ferry_jobs::context::MEGABYTE as f64) as u64),
        ),
    );
}

/// The API's name of `phase`.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Schema => "schema",
        Phase::Full => "full",
        Phase::Incremental => "incremental",
    }
}

impl Service {
    /// Appends an `info` event of `kind` to `record` and commits both.
    fn commit(
        &self,
        record: &mut JobRecord,
        kind: &str,
        message: &str,
    ) -> Result<(), CatalogError> {
        let event = new_event(record, "info", kind, message);
        self.catalog.save(record, &[event])
    }
}

/// The limits a job file sets (`0`: none).
fn file_limits(file: &ferry_jobs::JobFile) -> LimitsRecord {
    LimitsRecord {
        rows_per_sec: Some(file.migration.max_rows_per_second).filter(|&n| n > 0),
        mb_per_sec: Some(file.migration.bandwidth_limit_mb)
            .filter(|&n| n > 0)
            .map(|n| n as f64),
    }
}

fn new_event(record: &mut JobRecord, level: &str, kind: &str, message: &str) -> EventRecord {
    let seq = record.next_event;
    record.next_event += 1;
    record.updated_at = now_ms();
    EventRecord {
        seq,
        at: record.updated_at,
        level: level.into(),
        kind: kind.into(),
        from_state: None,
        to_state: None,
        message: message.into(),
    }
}

fn state_event(record: &mut JobRecord, to: State, message: &str) -> EventRecord {
    let from = record.state;
    record.state = to;
    let level = match to {
        State::Failed | State::PrecheckFailed => "error",
        _ => "info",
    };
    let mut event = new_event(record, level, "state", message);
    event.from_state = Some(from);
    event.to_state = Some(to);
    event
}

fn fail(record: &mut JobRecord, class: &str, message: &str) -> Vec<EventRecord> {
    record.error = Some(ErrorRecord {
        class: class.into(),
        message: message.into(),
        at: now_ms(),
    });
    vec![state_event(record, State::Failed, message)]
}

/// The warning a paused job's change feed earns: the WAL its slot keeps the source from
/// recycling.
async fn retained_warning(job: &dyn ferry_jobs::Job) -> Vec<String> {
    match job.retained_log().await {
        Ok(Some((feed, bytes))) => vec![format!(
            "replication slot {feed} retains {:.1} MB of WAL on the source while the job is paused; resume it, or stop and drop it, before the source's disk fills",
            bytes as f64 / 1e6
        )],
        _ => Vec::new(),
    }
}
