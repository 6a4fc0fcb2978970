//! Running the `ferry` binary from tests as a user runs it, and waiting on what it does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `ferry` binary under test: `$FERRY_BIN`, or the one cargo built beside the running
/// test binary (integration tests run from `target/<profile>/deps/`, the binary is in
/// `target/<profile>/`; cargo builds it before the package's integration tests).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRY_BIN") {
        return path.into();
    }
    let here = std::env::current_exe().expect("the test binary's path");
    let profile = here
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps");
    let ferry = profile.join("ferry");
    assert!(
        ferry.is_file(),
        "{} not found: run the tests with cargo test (it builds the binary), or set FERRY_BIN",
        ferry.display()
    );
    ferry
}

/// Runs `ferry <command> <job>` to its end.
pub fn ferry(command: &str, job: &Path) -> Output {
    ferry_with(command, job, &[])
}

/// Runs `ferry <command> <job> <args…>` to its end.
pub fn ferry_with(command: &str, job: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg(command)
        .arg(job)
        .args(args)
        .output()
        .expect("run ferry")
}

/// Starts `ferry <command> <job>` with its output captured.
pub fn spawn(command: &str, job: &Path) -> Child {
    Command::new(binary())
        .arg(command)
        .arg(job)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferry")
}

/// A `ferry <command> <job>` whose log (stderr) goes to a file, so that a test can wait on
/// what it logs while it runs.
pub struct Logged {
    /// The process.
    pub child: Child,
    /// Its log.
    pub log: PathBuf,
}

/// Starts `ferry <command> <job>`, its stdout captured and its log written to `log`.
pub fn spawn_logged(command: &str, job: &Path, log: &Path) -> Logged {
    let file = std::fs::File::create(log).expect("create the log file");
    let child = Command::new(binary())
        .arg(command)
        .arg(job)
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .expect("run ferry");
    Logged {
        child,
        log: log.to_path_buf(),
    }
}

impl Logged {
    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log holds every one of `lines`, failing the test after `limit`.
    pub fn wait_for_log(&self, limit: Duration, lines: &[&str]) {
        wait_for(&format!("ferry to log {lines:?}"), limit, || {
            let log = self.log();
            lines.iter().all(|line| log.contains(line))
        });
    }

    /// Asks it to stop with `ferry stop` (job `job`) and returns its output, the log as its
    /// stderr.
    pub fn stop(self, job: &Path) -> Output {
        let output = ferry("stop", job);
        assert!(output.status.success(), "{}", describe(&output));
        let mut output = self.child.wait_with_output().expect("wait for ferry");
        output.stderr = std::fs::read(&self.log).unwrap_or_default();
        output
    }
}

/// Asks a running job to stop with `ferry stop` and returns the run's output.
pub fn stop(job: &Path, child: Child) -> Output {
    let output = ferry("stop", job);
    assert!(output.status.success(), "{}", describe(&output));
    child.wait_with_output().expect("wait for ferry")
}

/// Kills `ferry run` `rounds` times at points `dice` picks, from `first_ms` on and later each
/// round (early ones land in the snapshot, later ones while streaming). Each run must have
/// been killed, not have ended on its own.
pub fn kill_rounds(job: &Path, rounds: u64, first_ms: u64, dice: &mut Dice) {
    for round in 0..rounds {
        let mut child = spawn("run", job);
        std::thread::sleep(Duration::from_millis(
            first_ms + dice.roll(1200) + round * 500,
        ));
        child.kill().expect("kill ferry");
        let output = child.wait_with_output().expect("wait for ferry");
        assert_eq!(output.status.code(), None, "{}", describe(&output));
    }
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits for `condition`, failing the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A source of pseudo-random numbers that repeats from run to run.
pub struct Dice(pub u64);

impl Dice {
    /// A number in `0..sides`.
    pub fn roll(&mut self, sides: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % sides
    }

    /// A position in `0..len` (0 when `len` is 0).
    pub fn index(&mut self, len: usize) -> usize {
        self.roll(len.max(1) as u64) as usize
    }

    /// One of `items`, which must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
}

/// A thread writing to a source until told to stop, counting the transactions it committed.
pub struct Writers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    transactions: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writers {
    /// Runs `write(stop, transactions)` on a thread of its own; it must return soon after
    /// `stop` is set and count each committed transaction in `transactions`.
    pub fn start(
        write: impl FnOnce(
                std::sync::Arc<std::sync::atomic::AtomicBool>,
                std::sync::Arc<std::sync::atomic::AtomicU64>,
            ) + Send
            + 'static,
    ) -> Writers {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let transactions = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (flag, count) = (stop.clone(), transactions.clone());
        let thread = std::thread::spawn(move || write(flag, count));
        Writers {
            stop,
            transactions,
            thread: Some(thread),
        }
    }

    /// Transactions committed so far.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the writers, waits for them and returns how many transactions they committed.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the writer thread panicked");
        }
        self.transactions()
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
