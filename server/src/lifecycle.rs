//! One lifecycle for every job the service holds: its states, the actions a user may take in
//! each, and what each action does there. Pure logic: the service applies the answers.
//!
//! `draft` → (start) `prechecking` → `running` (phase `schema|full|incremental`) → `completed`;
//! a blocking precheck failure is `precheck_failed`; `pause` is `pausing` → `paused` (the run
//! commits what it read and keeps its position), `resume` runs it again from its checkpoint;
//! `stop` is `stopping` → `stopped` and terminal; `cutover` (incremental only) waits until the
//! lag is small enough, then stops. An action repeated once satisfied succeeds and changes
//! nothing; one not allowed is refused naming the state and the actions allowed in it.

use serde::{Deserialize, Serialize};

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Configured, never started.
    Draft,
    /// The precheck runs.
    Prechecking,
    /// A blocking precheck item failed.
    PrecheckFailed,
    /// The precheck passed; not started.
    Ready,
    /// Moving data.
    Running,
    /// Asked to pause: committing what it read.
    Pausing,
    /// Paused at its checkpoint.
    Paused,
    /// Ended by an error; can be started again from its checkpoint.
    Failed,
    /// Waiting for the lag to be small enough to stop.
    CuttingOver,
    /// Asked to stop: committing what it read.
    Stopping,
    /// Stopped for good.
    Stopped,
    /// Done: everything asked for was moved.
    Completed,
}

/// What the reconciler drives a job towards (persisted: a paused job stays paused across a
/// restart of the service).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Running (or running again after a restart).
    Running,
    /// Paused.
    Paused,
    /// Stopped.
    Stopped,
}

/// What a user can ask of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Precheck, then run.
    Start,
    /// Check again without running.
    Precheck,
    /// Stop reading, keep the position.
    Pause,
    /// Run again from the checkpoint.
    Resume,
    /// Stop for good.
    Stop,
    /// Wait for the lag to fall under a threshold, then stop.
    Cutover,
    /// Change the rate limits.
    Limit,
    /// Change the spec.
    Alter,
    /// Copy the spec into a new draft job.
    Duplicate,
    /// Remove the job (stopping it first) and its resources.
    Drop,
}

/// What an action does in a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The action applies: the service carries it out.
    Apply,
    /// Already satisfied: success, nothing changes.
    Satisfied,
}

impl State {
    /// The state's name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Prechecking => "prechecking",
            State::PrecheckFailed => "precheck_failed",
            State::Ready => "ready",
            State::Running => "running",
            State::Pausing => "pausing",
            State::Paused => "paused",
            State::Failed => "failed",
            State::CuttingOver => "cutting_over",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Completed => "completed",
        }
    }

    /// Every state, for metrics.
    pub const ALL: [State; 12] = [
        State::Draft,
        State::Prechecking,
        State::PrecheckFailed,
        State::Ready,
        State::Running,
        State::Pausing,
        State::Paused,
        State::Failed,
        State::CuttingOver,
        State::Stopping,
        State::Stopped,
        State::Completed,
    ];

    /// Whether nothing more happens to the job by itself or by a user (but duplicate and
    /// drop).
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Stopped | State::Completed)
    }

    /// Whether a run (or precheck) of the job is under way.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Prechecking
                | State::Running
                | State::Pausing
                | State::CuttingOver
                | State::Stopping
        )
    }
}

impl Action {
    /// What "start" means for a job in `state`, as the cloud APIs use the word: a paused job
    /// resumes, any other starts.
    pub fn start_for(state: State) -> Action {
        match state {
            State::Paused | State::Pausing => Action::Resume,
            _ => Action::Start,
        }
    }

    /// The action's name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Precheck => "precheck",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Stop => "stop",
            Action::Cutover => "cutover",
            Action::Limit => "limit",
            Action::Alter => "alter",
            Action::Duplicate => "duplicate",
            Action::Drop => "drop",
        }
    }

    /// The action named `name` in a URL (`pause`), if any.
    pub fn parse(name: &str) -> Option<Action> {
        ACTIONS.into_iter().find(|action| action.name() == name)
    }
}

const ACTIONS: [Action; 10] = [
    Action::Start,
    Action::Precheck,
    Action::Pause,
    Action::Resume,
    Action::Stop,
    Action::Cutover,
    Action::Limit,
    Action::Alter,
    Action::Duplicate,
    Action::Drop,
];

/// What `action` does to a job in `state` (phase `incremental` when `incremental`), or
/// `None` when it is not allowed there.
pub fn outcome(state: State, incremental: bool, action: Action) -> Option<Outcome> {
    use Action as A;
    use Outcome::{Apply, Satisfied};
    use State as S;
    let outcome = match (action, state) {
        (A::Duplicate | A::Drop, _) => Apply,
        (A::Start, S::Draft | S::Ready | S::PrecheckFailed | S::Failed) => Apply,
        (A::Start, S::Prechecking | S::Running | S::CuttingOver) => Satisfied,
        (A::Precheck, S::Draft | S::Ready | S::PrecheckFailed | S::Failed | S::Paused) => Apply,
        (A::Precheck, S::Prechecking) => Satisfied,
        (A::Pause, S::Running | S::Failed | S::CuttingOver) => Apply,
        (A::Pause, S::Pausing | S::Paused) => Satisfied,
        (A::Resume, S::Paused) => Apply,
        (A::Resume, S::Running) => Satisfied,
        (
            A::Stop,
            S::Draft
            | S::Ready
            | S::PrecheckFailed
            | S::Prechecking
            | S::Running
            | S::Pausing
            | S::Paused
            | S::Failed
            | S::CuttingOver,
        ) => Apply,
        (A::Stop, S::Stopping | S::Stopped) => Satisfied,
        (A::Cutover, S::Running) if incremental => Apply,
        (A::Cutover, S::CuttingOver) => Satisfied,
        (A::Limit, state) if !state.is_terminal() => Apply,
        (A::Alter, S::Draft | S::Ready | S::PrecheckFailed | S::Paused | S::Failed) => Apply,
        _ => return None,
    };
    Some(outcome)
}

/// The actions allowed (applying, not merely satisfied) in `state`, for status answers and
/// refusals.
pub fn allowed_actions(state: State, incremental: bool) -> Vec<&'static str> {
    ACTIONS
        .into_iter()
        .filter(|action| outcome(state, incremental, *action) == Some(Outcome::Apply))
        .map(Action::name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_allow_only_duplicate_and_drop() {
        for state in [State::Stopped, State::Completed] {
            assert_eq!(allowed_actions(state, true), ["duplicate", "drop"]);
            assert_eq!(outcome(state, true, Action::Pause), None);
        }
        assert_eq!(
            outcome(State::Stopped, false, Action::Stop),
            Some(Outcome::Satisfied)
        );
    }

    #[test]
    fn repeating_a_satisfied_action_changes_nothing() {
        assert_eq!(
            outcome(State::Paused, true, Action::Pause),
            Some(Outcome::Satisfied)
        );
        assert_eq!(
            outcome(State::Pausing, true, Action::Pause),
            Some(Outcome::Satisfied)
        );
        assert_eq!(
            outcome(State::Running, true, Action::Resume),
            Some(Outcome::Satisfied)
        );
        assert_eq!(
            outcome(State::Running, false, Action::Start),
            Some(Outcome::Satisfied)
        );
    }

    #[test]
    fn cutover_needs_an_incremental_run() {
        assert_eq!(
            outcome(State::Running, true, Action::Cutover),
            Some(Outcome::Apply)
        );
        assert_eq!(outcome(State::Running, false, Action::Cutover), None);
        assert_eq!(outcome(State::Paused, true, Action::Cutover), None);
        assert!(allowed_actions(State::Running, true).contains(&"cutover"));
        assert!(!allowed_actions(State::Running, false).contains(&"cutover"));
    }

    #[test]
    fn alter_only_when_nothing_runs() {
        for state in State::ALL {
            let allowed = outcome(state, true, Action::Alter).is_some();
            assert_eq!(
                allowed,
                matches!(
                    state,
                    State::Draft
                        | State::Ready
                        | State::PrecheckFailed
                        | State::Paused
                        | State::Failed
                ),
                "{state:?}"
            );
        }
    }

    #[test]
    fn action_names_round_trip() {
        for action in ACTIONS {
            assert_eq!(Action::parse(action.name()), Some(action));
        }
        assert_eq!(Action::parse("explode"), None);
    }
}
