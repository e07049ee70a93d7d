//! sm's Codex support against the fake agent in its Codex style (`sm-fake-agent --style
//! codex`: Codex's screen, hooks from `$CODEX_HOME/hooks.json` installed by `sm setup
//! --agent codex`, the Interrupt hook, an Enter right after text taken as a newline) — the
//! Codex profile's regression tests wherever the real CLI is not installed.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::Value;
use sm_tests::{Options, Server, sibling};

fn codex_server() -> Server {
    let server = Server::start_opts(Options {
        extra_config: format!(
            "codex:\n  command: {}\n  args: [\"--style\", \"codex\"]\n",
            sibling("sm-fake-agent").display()
        ),
        ..Options::default()
    });
    server.setup_codex_hooks();
    server
}

/// How many prompts the fake agents received that are exactly `text`.
fn received(s: &Server, text: &str) -> usize {
    s.all_prompts().iter().filter(|(_, p)| p == text).count()
}

fn screen(s: &Server, name: &str) -> String {
    s.ok(&["output", name, "--lines", "40"])
}

#[test]
fn a_codex_agent_is_driven_through_its_screen_and_its_hooks() {
    let s = codex_server();
    let work = s.work();
    let dir = work.to_str().unwrap();
    s.ok(&[
        "spawn",
        "--agent",
        "codex",
        "--name",
        "x",
        "--dir",
        dir,
        "--skip-permissions",
    ]);
    s.wait_status("x", "idle");

    // Typed, then Enter after Codex's submit gap: one prompt, exactly the text (an Enter in
    // the same burst would have made a newline and left it in the box).
    s.ok(&["send", "x", "first [[reply one]]"]);
    s.until("x's answer", || {
        screen(&s, "x").contains("• one").then_some(())
    });
    s.wait_status("x", "idle");
    assert_eq!(received(&s, "first [[reply one]]"), 1);

    // Codex's own session id, learned from its hooks.
    let (_, events) = s.http("GET", "/events?limit=1000", Some(&s.token()), None, b"");
    let learned = events.as_array().into_iter().flatten().any(|e| {
        e["kind"]["type"] == "hook"
            && e["kind"]["agent_session"]
                .as_str()
                .is_some_and(|id| id.starts_with("01fake-"))
    });
    assert!(learned, "no hook carried Codex's session id: {events}");

    // Urgent interrupts with Escape; Codex's Interrupt hook (no Stop) and the box left
    // empty do not confuse the turn that follows.
    s.ok(&["send", "x", "slow [[sleep 30]] [[reply slow done]]"]);
    s.wait_status("x", "working");
    s.ok(&["send", "x", "stop that [[reply urgent done]]", "--urgent"]);
    s.until("the urgent answer", || {
        screen(&s, "x").contains("• urgent done").then_some(())
    });
    s.wait_status("x", "idle");
    let shown = screen(&s, "x");
    assert!(shown.contains("■ Conversation interrupted"), "{shown}");
    assert!(!shown.contains("• slow done"), "{shown}");
    assert_eq!(received(&s, "stop that [[reply urgent done]]"), 1);

    // A multi-line message stays lines in the box; a long one collapses; both arrive whole.
    let multi = "line one\nline two\n[[reply multi done]]";
    s.ok(&["send", "x", multi]);
    s.until("the multi-line answer", || {
        screen(&s, "x").contains("• multi done").then_some(())
    });
    let long = format!("{} [[reply long done]]", "long text ".repeat(150));
    s.ok(&["send", "x", &long]);
    s.until("the long answer", || {
        screen(&s, "x").contains("• long done").then_some(())
    });
    assert_eq!(received(&s, multi), 1);
    assert_eq!(received(&s, &long), 1);

    // clear types /new.
    s.wait_status("x", "idle");
    s.ok(&["clear", "x"]);
    assert!(received(&s, "/new") == 1, "{:?}", s.all_prompts());
    assert!(!screen(&s, "x").contains("• urgent done"));
}

#[test]
fn codex_approval_questions_are_answered_and_apply_patch_takes_the_lock() {
    let s = codex_server();
    let work = s.work();
    let dir = work.to_str().unwrap();
    s.ok(&["spawn", "--agent", "codex", "--name", "p", "--dir", dir]);
    s.wait_status("p", "idle");
    let made = work.join("made.txt");
    s.ok(&[
        "send",
        "p",
        &format!("[[bash touch {}]] [[reply made it]]", made.display()),
    ]);
    s.wait_status("p", "needs_input");
    let session: Value = s.session("p");
    assert!(
        screen(&s, "p").contains("Would you like to run the following command?"),
        "{session}"
    );
    let answered = s.ok(&["answer", "p", "1"]);
    assert!(answered.contains("Yes, proceed"), "{answered}");
    s.until("the answer after approval", || {
        screen(&s, "p").contains("• made it").then_some(())
    });
    assert!(made.exists());

    // apply_patch goes through sm's auto-lock: the workspace lock is the writer's.
    s.wait_status("p", "idle");
    s.ok(&[
        "spawn",
        "--agent",
        "codex",
        "--name",
        "w",
        "--dir",
        dir,
        "--skip-permissions",
    ]);
    s.wait_status("w", "idle");
    s.ok(&[
        "send",
        "w",
        "[[write notes.txt hello]] [[sleep 3]] [[reply wrote]]",
    ]);
    s.until("w's auto-lock", || {
        s.ok(&["status"]).contains("writing").then_some(())
    });
    s.until("w's answer", || {
        screen(&s, "w").contains("• wrote").then_some(())
    });
    assert!(work.join("notes.txt").exists());
}
