//! An agent kind defined only by configuration (`agents:`): the fake agent, described by
//! its command line and screen markers, driven with no hooks at all — readiness, turns,
//! questions and interrupts all read off its screen through the definition's regexes.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use sm_tests::{Hooks, Options, Server, sibling};

fn server() -> Server {
    let config = format!(
        r#"agents:
  mock:
    command: {}
    args: ["--session-id", "{{session_id}}"]
    model_args: ["--model", "{{model}}"]
    skip_permissions_args: ["--dangerously-skip-permissions"]
    ready: '\? for shortcuts'
    working: 'esc to interrupt'
    question: '^ *Do you want to'
    input: '^❯ ?(.*)$'
    answer: '^⏺ (.*)$'
    clear: /clear
    interrupt: escape
    default_model: mock-model-1
"#,
        sibling("sm-fake-agent").display()
    );
    Server::start_opts(Options {
        extra_config: config,
        // No hooks: the definition's screen markers are all sm has.
        hooks: Hooks::Exactly(serde_json::json!({})),
        ..Options::default()
    })
}

fn screen(s: &Server, name: &str) -> String {
    s.ok(&["output", name, "--lines", "40"])
}

#[test]
fn an_agent_defined_in_the_configuration_is_driven_by_its_screen_markers() {
    let s = server();
    let work = s.work();
    let dir = work.to_str().unwrap();
    let out = s.ok(&[
        "spawn",
        "--agent",
        "mock",
        "--name",
        "m",
        "--dir",
        dir,
        "--skip-permissions",
    ]);
    assert!(out.starts_with("spawned m"), "{out}");
    s.wait_status("m", "idle");
    assert_eq!(s.session("m")["agent"], "mock");
    assert_eq!(
        s.session("m")["model"],
        "mock-model-1",
        "agents.mock.default_model"
    );

    // A turn read off the screen: working while the footer says so, idle once it is gone.
    s.ok(&["send", "m", "first [[sleep 1]] [[reply one]]"]);
    s.wait_status("m", "working");
    s.wait_status("m", "idle");
    assert!(screen(&s, "m").contains("⏺ one"));
    // A multi-line message is checked in the box (its indented rows) and arrives whole.
    let multi = "line one\nline two [[reply two]]";
    s.ok(&["send", "m", multi]);
    s.until("the second answer", || {
        screen(&s, "m").contains("⏺ two").then_some(())
    });
    s.wait_status("m", "idle");
    // A parent is woken by the screen-detected end of a turn, with the answer it shows.
    std::fs::write(
        work.join("em.sh"),
        "sm spawn --agent mock --name kid --wait 60 'kid task [[reply kid done]]'\n",
    )
    .unwrap();
    s.ok(&["send", "m", "[[bash sh em.sh]] [[reply spawned]]"]);
    s.until("the parent's wake", || {
        s.all_prompts()
            .iter()
            .any(|(_, p)| p.contains("[sm] kid") && p.contains("kid done"))
            .then_some(())
    });

    // Urgent interrupts with the configured key.
    s.wait_status("m", "idle");
    s.ok(&["send", "m", "slow [[sleep 30]] [[reply slow done]]"]);
    s.wait_status("m", "working");
    s.ok(&["send", "m", "now [[reply urgent done]]", "--urgent"]);
    s.until("the urgent answer", || {
        screen(&s, "m").contains("⏺ urgent done").then_some(())
    });
    assert!(!screen(&s, "m").contains("⏺ slow done"));
    let received: Vec<String> = s.all_prompts().into_iter().map(|(_, p)| p).collect();
    for text in [
        "first [[sleep 1]] [[reply one]]",
        multi,
        "now [[reply urgent done]]",
    ] {
        assert_eq!(
            received.iter().filter(|p| *p == text).count(),
            1,
            "{text:?}: {received:?}"
        );
    }

    // A question matched by the definition, answered through sm.
    s.ok(&["spawn", "--agent", "mock", "--name", "q", "--dir", dir]);
    s.wait_status("q", "idle");
    s.ok(&["send", "q", "[[write made.txt x]] [[reply made]]"]);
    s.wait_status("q", "needs_input");
    let answered = s.ok(&["answer", "q", "1"]);
    assert!(answered.contains("Yes"), "{answered}");
    s.until("the answer after approval", || {
        screen(&s, "q").contains("⏺ made").then_some(())
    });
    assert!(work.join("made.txt").exists());

    // The configured clear command.
    s.wait_status("m", "idle");
    s.ok(&["clear", "m"]);
    assert!(!screen(&s, "m").contains("⏺ urgent done"));

    // A kind nobody configured is refused with the known ones named.
    let refused = s.sm(&["spawn", "--agent", "nosuch", "--dir", dir]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("nosuch") && err.contains("mock"), "{err}");
}

#[test]
fn sm_setup_installs_hooks_where_a_configured_agent_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("boxy/settings.json");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "agents:\n  boxy:\n    command: boxy\n    hooks: true\n    hooks_file: {}\n  quiet:\n    command: q\n",
            settings.display()
        ),
    )
    .unwrap();
    let sm = |args: &[&str]| {
        std::process::Command::new(sibling("sm"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(sm(&["setup", "--agent", "boxy"]).status.success());
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert!(
        written["hooks"]["Stop"][0]["hooks"][0]["command"]
            .as_str()
            .unwrap()
            .ends_with("sm hook stop")
    );
    assert!(
        sm(&["setup", "--agent", "boxy", "--uninstall"])
            .status
            .success()
    );
    assert_eq!(std::fs::read_to_string(&settings).unwrap().trim(), "{}");
    for (agent, says) in [("quiet", "has no hooks"), ("nope", "unknown agent")] {
        let out = sm(&["setup", "--agent", agent]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(says));
    }
}
