//! The turn rules, one case each: a state, an input, the effects that must follow.

use std::time::Duration;

use super::*;
use crate::types::SessionStatus::{Idle, NeedsInput, Starting, Stopped, Working};

const HOOKS: Rules = Rules {
    verifiable: true,
    reports_hooks: true,
    idle_timeout: Duration::from_secs(60),
};
const NO_HOOKS: Rules = Rules {
    verifiable: true,
    reports_hooks: false,
    ..HOOKS
};

/// A session and a clock that only moves when told.
struct Case {
    turns: Turns,
    start: Instant,
    elapsed: Duration,
}

impl Case {
    fn new(status: SessionStatus, rules: Rules) -> Case {
        let start = Instant::now();
        let now = Now {
            mono: start,
            wall: Timestamp(1_000_000),
        };
        Case {
            turns: Turns::new(status, rules, now),
            start,
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.start + self.elapsed,
            wall: Timestamp(1_000_000 + self.elapsed.as_millis() as i64),
        }
    }

    fn after(&mut self, ms: u64) -> &mut Case {
        self.elapsed += Duration::from_millis(ms);
        self
    }

    fn signal(&mut self, signal: AgentSignal) -> Vec<Effect> {
        let now = self.now();
        self.turns.on_signal(&signal, now)
    }

    fn screen(&mut self, state: ScreenState) -> Vec<Effect> {
        let now = self.now();
        self.turns.on_screen(&state, Some("the answer".into()), now)
    }

    /// A turn running, seen working (its prompt hook came).
    fn working(rules: Rules) -> Case {
        let mut case = Case::new(Idle, rules);
        case.signal(AgentSignal::PromptSubmitted);
        case
    }
}

fn ready() -> ScreenState {
    ScreenState::Ready {
        input: String::new(),
    }
}

fn busy() -> ScreenState {
    ScreenState::Working { input: None }
}

fn permission() -> ScreenState {
    ScreenState::Permission {
        question: "Do you want to create a.txt?".into(),
        options: vec!["Yes".into(), "No".into()],
    }
}

fn stop(message: &str) -> AgentSignal {
    AgentSignal::TurnEnded {
        last_message: Some(message.into()),
    }
}

fn status(from: SessionStatus, to: SessionStatus) -> Effect {
    Effect::Status { from, to }
}

fn completed(message: Option<&str>) -> Effect {
    Effect::TurnCompleted {
        last_message: message.map(str::to_string),
    }
}

#[test]
fn a_prompt_hook_starts_a_turn() {
    let mut case = Case::new(Idle, HOOKS);
    assert_eq!(
        case.signal(AgentSignal::PromptSubmitted),
        [status(Idle, Working)]
    );
    assert_eq!(case.signal(AgentSignal::PromptSubmitted), []);
}

#[test]
fn a_stop_hook_ends_the_turn_releases_auto_locks_and_reports_it() {
    let mut case = Case::working(HOOKS);
    assert_eq!(
        case.signal(stop("done")),
        [
            status(Working, Idle),
            Effect::ReleaseAutoLocks,
            completed(Some("done"))
        ]
    );
    assert_eq!(case.turns.last_message(), Some("done"));
}

#[test]
fn a_ready_screen_after_a_stop_reports_nothing_more() {
    let mut case = Case::working(HOOKS);
    case.signal(stop("done"));
    assert_eq!(case.after(2000).screen(ready()), []);
}

#[test]
fn a_second_stop_for_the_same_turn_reports_nothing() {
    let mut case = Case::working(HOOKS);
    case.signal(stop("done"));
    assert_eq!(case.signal(stop("done")), [Effect::ReleaseAutoLocks]);
}

#[test]
fn a_stop_followed_by_a_screen_still_showing_the_working_footer_is_not_a_new_turn() {
    let mut case = Case::working(HOOKS);
    case.signal(stop("done"));
    assert_eq!(case.after(200).screen(busy()), []);
    assert_eq!(case.turns.status(), Idle);
    // The screen is looked at again shortly.
    assert!(case.turns.next_deadline().is_some());
}

#[test]
fn a_working_screen_well_after_a_stop_is_a_new_turn() {
    let mut case = Case::working(HOOKS);
    case.signal(stop("done"));
    assert_eq!(
        case.after(STOP_GRACE.as_millis() as u64 + 1).screen(busy()),
        [status(Idle, Working)]
    );
}

#[test]
fn escape_ends_a_turn_without_a_stop_once_output_has_been_quiet() {
    let mut case = Case::working(HOOKS);
    // Output just now: the ready screen may be the instant before the final render.
    let now = case.now();
    case.turns.on_activity(now);
    assert_eq!(case.after(100).screen(ready()), []);
    assert_eq!(
        case.after(300).screen(ready()),
        [
            status(Working, Idle),
            Effect::ReleaseAutoLocks,
            completed(Some("the answer"))
        ]
    );
}

#[test]
fn a_ready_screen_does_not_end_a_turn_never_seen_working() {
    // Working because sm typed a message, but neither a hook nor the screen has shown the
    // turn yet: the prompt may not have been taken.
    let mut case = Case::new(Working, HOOKS);
    assert_eq!(case.after(1000).screen(ready()), []);
    assert_eq!(case.turns.status(), Working);
}

#[test]
fn an_agent_without_hooks_ends_its_turn_on_a_quiet_ready_screen() {
    let mut case = Case::new(Working, NO_HOOKS);
    assert_eq!(
        case.after(1000).screen(ready()),
        [
            status(Working, Idle),
            Effect::ReleaseAutoLocks,
            completed(Some("the answer"))
        ]
    );
}

#[test]
fn a_permission_prompt_on_screen_needs_input_once() {
    let mut case = Case::working(HOOKS);
    assert_eq!(
        case.screen(permission()),
        [
            status(Working, NeedsInput),
            Effect::NeedsInput {
                prompt: Some("Do you want to create a.txt?".into()),
                options: vec!["Yes".into(), "No".into()],
            }
        ]
    );
    assert_eq!(case.screen(permission()), []);
}

#[test]
fn a_permission_hook_has_the_question_read_off_the_screen() {
    let mut case = Case::working(HOOKS);
    assert_eq!(
        case.signal(AgentSignal::PermissionAsked {
            message: "Claude needs your permission".into()
        }),
        [Effect::ReadQuestion {
            fallback: "Claude needs your permission".into()
        }]
    );
    let now = case.now();
    assert_eq!(
        case.turns
            .on_question(Some("Claude needs your permission".into()), vec![], now),
        [
            status(Working, NeedsInput),
            Effect::NeedsInput {
                prompt: Some("Claude needs your permission".into()),
                options: vec![],
            }
        ]
    );
}

#[test]
fn an_answered_question_goes_back_to_working_and_the_next_screen_decides() {
    let mut case = Case::working(HOOKS);
    case.screen(permission());
    assert_eq!(case.screen(ready()), [status(NeedsInput, Working)]);
    assert_eq!(
        case.after(QUIET_BEFORE_IDLE.as_millis() as u64)
            .screen(ready()),
        [
            status(Working, Idle),
            Effect::ReleaseAutoLocks,
            completed(Some("the answer"))
        ]
    );
}

#[test]
fn a_starting_agent_is_idle_only_once_its_ready_screen_has_been_quiet() {
    let mut case = Case::new(Starting, HOOKS);
    assert_eq!(case.after(100).screen(ready()), []);
    assert_eq!(case.after(250).screen(ready()), [status(Starting, Idle)]);
}

#[test]
fn a_starting_agent_ignores_everything_but_a_ready_screen() {
    let mut case = Case::new(Starting, HOOKS);
    assert_eq!(case.after(1000).screen(busy()), []);
    assert_eq!(case.screen(permission()), []);
    assert_eq!(case.screen(ScreenState::Other), []);
}

#[test]
fn the_session_start_hook_waits_for_the_screen_unless_the_screen_cannot_tell() {
    let mut case = Case::new(Starting, HOOKS);
    assert_eq!(case.signal(AgentSignal::SessionStarted), []);
    assert!(case.turns.next_deadline().is_some());
    let mut shell = Case::new(
        Starting,
        Rules {
            verifiable: false,
            ..NO_HOOKS
        },
    );
    assert_eq!(
        shell.signal(AgentSignal::SessionStarted),
        [status(Starting, Idle)]
    );
}

#[test]
fn a_tool_hook_is_logged_and_means_a_turn_runs() {
    let mut case = Case::new(Idle, HOOKS);
    let fx = case.signal(AgentSignal::Tool {
        tool: "Write".into(),
        phase: "pre",
        target: Some("a.txt".into()),
    });
    assert_eq!(
        fx,
        [
            Effect::Record(EventKind::ToolUse {
                tool: "Write".into(),
                phase: "pre".into(),
                target: Some("a.txt".into())
            }),
            status(Idle, Working)
        ]
    );
}

#[test]
fn a_subagent_stopping_is_logged_but_starts_no_turn() {
    let mut case = Case::new(Idle, HOOKS);
    let fx = case.signal(AgentSignal::Subagent {
        agent_id: "a1".into(),
        agent_type: None,
        running: false,
    });
    assert_eq!(fx.len(), 1);
    assert_eq!(case.turns.status(), Idle);
}

#[test]
fn the_session_end_hook_stops_the_session() {
    let mut case = Case::working(HOOKS);
    assert_eq!(
        case.signal(AgentSignal::SessionEnded),
        [status(Working, Stopped)]
    );
    assert!(case.turns.session_ended());
    assert_eq!(case.turns.on_end(SessionStatus::Dead), None);
}

#[test]
fn an_idle_timeout_is_reported_once_per_idle_period() {
    let mut case = Case::new(Idle, HOOKS);
    let now = case.after(59_000).now();
    assert_eq!(case.turns.on_tick(now), []);
    let now = case.after(1_000).now();
    assert_eq!(
        case.turns.on_tick(now),
        [Effect::IdleTimedOut {
            idle_for: Duration::from_secs(60)
        }]
    );
    let now = case.after(60_000).now();
    assert_eq!(case.turns.on_tick(now), []);
    assert_eq!(case.turns.next_deadline(), None);
    // A new turn and a new idle period: reported again.
    case.signal(AgentSignal::PromptSubmitted);
    case.signal(stop("again"));
    let now = case.after(60_000).now();
    assert_eq!(case.turns.on_tick(now).len(), 1);
}

#[test]
fn a_working_agent_never_times_out_idle() {
    let mut case = Case::working(HOOKS);
    let now = case.after(600_000).now();
    assert_eq!(case.turns.on_tick(now), []);
}

#[test]
fn a_wake_names_every_turn_finished_since_its_wait() {
    let mut case = Case::working(HOOKS);
    case.signal(stop("one"));
    let since = case.after(10).now().wall;
    case.signal(AgentSignal::PromptSubmitted);
    case.after(10).signal(stop("two"));
    case.signal(AgentSignal::PromptSubmitted);
    case.after(10)
        .signal(AgentSignal::TurnEnded { last_message: None });
    assert_eq!(case.turns.turns_since(since), ["two", "(no message)"]);
}

#[test]
fn a_delivered_message_starts_the_turn_on_a_verifiable_screen() {
    let mut case = Case::new(Idle, HOOKS);
    let now = case.now();
    assert_eq!(case.turns.on_delivered(now), [status(Idle, Working)]);
    let mut shell = Case::new(
        Idle,
        Rules {
            verifiable: false,
            ..NO_HOOKS
        },
    );
    let now = shell.now();
    assert_eq!(shell.turns.on_delivered(now), []);
}

#[test]
fn after_a_restart_a_ready_screen_ends_a_turn_whose_stop_was_missed() {
    let mut case = Case::new(Working, HOOKS);
    let now = case.now();
    assert_eq!(
        case.turns.on_recovered_screen(&ready(), now),
        [
            status(Working, Idle),
            Effect::ReleaseAutoLocks,
            completed(None)
        ]
    );
    let mut idle = Case::new(Idle, HOOKS);
    let now = idle.now();
    assert_eq!(idle.turns.on_recovered_screen(&ready(), now), []);
}

#[test]
fn a_clear_forgets_the_last_message() {
    let mut case = Case::working(HOOKS);
    case.signal(stop("done"));
    case.turns.on_cleared();
    assert_eq!(case.turns.last_message(), None);
}
