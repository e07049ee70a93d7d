//! `sm watch` end to end: the real TUI runs inside its own tmux against a real server with
//! fake agents; the test reads its screen with `capture-pane` to see agents appear and
//! change status live, and drives it with keys — a message sent and a permission prompt
//! answered — checking the agents got them.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use sm_tests::*;

/// `sm watch` in a tmux session of its own (a socket apart from the agents').
struct Watch {
    socket: String,
}

impl Watch {
    fn start(server: &Server) -> Watch {
        // One tmux per dashboard: the tests run in parallel, and each kills its own.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let socket = format!("sm-watch-test-{}-{n}", std::process::id());
        let command = format!(
            "env -u SM_SESSION_ID -u SM_TOKEN -u SM_SERVER_URL -u CLAUDE_SESSION_MANAGER_ID \
             SM_CONFIG={} {} watch",
            server.path().join("config.yaml").display(),
            sm_bin().display()
        );
        let ok = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "160", "-y", "45", "-c"])
            .arg(server.work())
            .arg(command)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux could not start sm watch");
        Watch { socket }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            Command::new("tmux")
                .args(["-L", &self.socket, "send-keys", k])
                .status()
                .unwrap();
        }
    }

    fn type_text(&self, text: &str) {
        Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-l", text])
            .status()
            .unwrap();
    }

    /// Waits until the screen satisfies `f`, showing it when it never does.
    fn until(&self, what: &str, f: impl Fn(&str) -> bool) {
        until_explained(
            what,
            DEADLINE,
            || f(&self.screen()).then_some(()),
            || format!("; sm watch shows:\n{}", self.screen()),
        );
    }

    /// The tree row of the session named `name`.
    fn row(&self, name: &str) -> String {
        self.screen()
            .lines()
            .find(|l| {
                l.split('│')
                    .nth(1)
                    .is_some_and(|cell| cell.split_whitespace().any(|w| w == name))
            })
            .map(|l| l.split('│').nth(1).unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    /// Selects `name` through the filter.
    fn select(&self, name: &str) {
        self.keys(&["/"]);
        self.type_text(name);
        self.keys(&["Enter"]);
        self.until(&format!("{name} selected"), |s| {
            s.contains(&format!("sessions matching \"{name}\""))
        });
    }

    fn clear_filter(&self) {
        self.keys(&["/", "Escape"]);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn sm_watch_shows_the_swarm_live_and_sends_and_answers_through_its_keys() {
    let server = Server::start();
    server.ok(&["spawn", "--agent", "fake", "--name", "w1"]);
    let watch = Watch::start(&server);
    watch.until("w1 idle in the tree", |_| {
        watch.row("w1").contains("○ idle")
    });

    // A new agent appears as it is spawned, working, then idle — from the event stream.
    server.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "w2",
        "a slow one [[sleep 3]] [[reply w2 done]]",
    ]);
    watch.until("w2 working", |_| watch.row("w2").contains("● working"));
    watch.until("w2 idle again", |_| watch.row("w2").contains("○ idle"));
    assert!(watch.screen().contains("2 live"), "{}", watch.screen());

    // s: a message typed in the dashboard reaches the agent, once.
    watch.select("w1");
    watch.keys(&["s"]);
    watch.until("the send line", |s| s.contains("send to w1 [sequential]"));
    watch.type_text("hello from the dashboard");
    watch.keys(&["Enter"]);
    watch.until("the send's result", |s| s.contains("queued message #"));
    server.until("w1 to get the message", || {
        server
            .prompts("w1")
            .contains(&"hello from the dashboard".to_string())
            .then_some(())
    });
    watch.until("w1's screen in the side pane", |s| {
        s.contains("Done: hello from the dashboard")
    });
    watch.clear_filter();

    // a: a permission prompt answered from the dashboard.
    let made = server.work().join("made-by-watch.txt");
    server.ok(&[
        "spawn",
        "--agent",
        "fake",
        "--name",
        "asker",
        &format!("[[bash touch {}]] [[reply made]]", made.display()),
    ]);
    watch.until("asker needs input", |_| {
        watch.row("asker").contains("? needs input")
    });
    watch.select("asker");
    watch.until("its question", |s| s.contains("(a: answer)"));
    watch.keys(&["a"]);
    watch.until("the answer line", |s| s.contains("answer asker: press"));
    watch.keys(&["1"]);
    server.until("the answered command to run", || {
        made.exists().then_some(())
    });
    watch.clear_filter();
    watch.until("asker idle", |_| watch.row("asker").contains("○ idle"));

    // Enter: attach to the agent's terminal; detaching comes back to the dashboard.
    watch.select("w1");
    watch.keys(&["Enter"]);
    watch.until("w1's own terminal", |s| {
        s.contains("Done: hello from the dashboard") && !s.contains("sm watch")
    });
    watch.keys(&["C-b", "d"]);
    watch.until("the dashboard back", |s| {
        s.contains("sm watch") && s.contains("● live")
    });
    watch.clear_filter();

    // K: kill asks first, naming the session.
    watch.select("w2");
    watch.keys(&["K"]);
    watch.until("the confirmation", |s| s.contains("kill w2 ["));
    watch.keys(&["y"]);
    server.until("w2 to be killed", || {
        server.find("w2").is_none().then_some(())
    });
    watch.clear_filter();
    watch.until("w2 gone from the tree", |_| watch.row("w2").is_empty());

    // --once: one frame as text, for scripts.
    let once = server
        .sm_command()
        .args(["watch", "--once"])
        .env("COLUMNS", "140")
        .env("LINES", "30")
        .output()
        .unwrap();
    assert!(once.status.success());
    let text = String::from_utf8(once.stdout).unwrap();
    assert!(text.contains("sm watch"), "{text}");
    assert!(text.contains("w1") && text.contains("asker"), "{text}");

    // q quits.
    watch.keys(&["q"]);
    watch.until("sm watch to exit", |s| !s.contains("sm watch"));
}

#[test]
fn sm_watch_shows_a_lost_server_and_comes_back_with_it() {
    let mut server = Server::start_opts(Options {
        fixed_port: true,
        ..Options::default()
    });
    server.ok(&["spawn", "--agent", "fake", "--name", "w1"]);
    let watch = Watch::start(&server);
    watch.until("live", |s| s.contains("● live") && s.contains("w1"));
    server.kill9();
    watch.until("the lost connection shown", |s| {
        s.contains("connection lost")
    });
    server.restart();
    watch.until("live again", |s| s.contains("● live"));
    server.ok(&["spawn", "--agent", "fake", "--name", "after"]);
    watch.until("a session spawned after the restart", |_| {
        watch.row("after").contains("○ idle")
    });
}
