//! Commands that look at or act on sessions: `me`, `status`, `all`, `others`, `alone`,
//! `children`, `clear`, `kill`, `name`, `output`.

use serde_json::json;
use sm_lib::EventKind;
use sm_lib::wire::{
    AnswerBody, Answered, Cleared, Me, NameBody, Output, SessionView, Status, Subagent, Summary,
    TaskBody,
};

use crate::client::{CliError, Client, enc, my_session, typed};
use crate::output;

/// Who `/me` says the caller is.
fn whoami(client: &Client) -> Result<Me, CliError> {
    client.get_as("/me")
}

fn me_required() -> Result<String, CliError> {
    my_session().ok_or_else(|| {
        CliError::Usage(
            "this command is for agents inside an sm session (SM_SESSION_ID is not set); \
             name a session instead"
                .into(),
        )
    })
}

fn list(client: &Client) -> Result<Vec<SessionView>, CliError> {
    client.get_as("/sessions")
}

fn live(s: &SessionView) -> bool {
    s.session.status.is_live()
}

/// `sm me`: this session.
pub fn me(client: &Client, json_out: bool) -> Result<(), CliError> {
    let me = whoami(client)?;
    if json_out {
        output::json(&me);
        return Ok(());
    }
    match me.session() {
        None => println!("admin (not inside an sm session)"),
        Some(s) => println!(
            "{} [{}] {} in {}",
            output::label(s),
            s.id,
            s.status,
            output::clean(&s.working_dir.display().to_string())
        ),
    }
    Ok(())
}

/// `sm all`: every session, live first.
pub fn all(client: &Client, json_out: bool) -> Result<(), CliError> {
    let mut sessions = list(client)?;
    sessions.sort_by_key(|s| !live(s));
    if json_out {
        output::json(&sessions);
    } else {
        output::sessions(&sessions);
    }
    Ok(())
}

/// `sm others`: live sessions other than mine.
pub fn others(client: &Client, json_out: bool) -> Result<(), CliError> {
    let me = my_session();
    let sessions: Vec<SessionView> = list(client)?
        .into_iter()
        .filter(|s| live(s) && Some(s.session.id.as_str()) != me.as_deref())
        .collect();
    if json_out {
        output::json(&sessions);
    } else {
        output::sessions(&sessions);
    }
    Ok(())
}

/// `sm alone`: whether any other live session works in my working directory (the caller
/// exits 0 when alone, 1 when not).
pub fn alone(client: &Client, json_out: bool) -> Result<bool, CliError> {
    let me = whoami(client)?;
    // Outside a session "my directory" is where the command runs (as the server would
    // record it: absolute, symlinks resolved).
    let dir = match me.session() {
        Some(s) => s.working_dir.clone(),
        None => {
            let here = std::env::current_dir().map_err(|e| CliError::Usage(e.to_string()))?;
            here.canonicalize().unwrap_or(here)
        }
    };
    let my_id = me.session().map(|s| s.id.clone());
    let others: Vec<SessionView> = list(client)?
        .into_iter()
        .filter(|s| {
            live(s) && Some(&s.session.id) != my_id.as_ref() && s.session.working_dir == dir
        })
        .collect();
    let alone = others.is_empty();
    if json_out {
        output::json(&json!({ "alone": alone, "others": others }));
    } else if alone {
        println!(
            "alone: no other live session works in {}",
            output::clean(&dir.display().to_string())
        );
    } else {
        println!("not alone; also working here:");
        output::sessions(&others);
    }
    Ok(alone)
}

/// `sm status`: me, the others, and the locks — one request (three to a server older
/// than `GET /status`).
pub fn status(client: &Client, json_out: bool) -> Result<(), CliError> {
    let status: Status = match client.get_as("/status") {
        Err(CliError::Api { code, .. }) if code == "not_found" => Status {
            me: whoami(client)?,
            sessions: list(client)?,
            locks: client.get_as("/locks")?,
            node: None,
            nodes: Vec::new(),
        },
        other => other?,
    };
    if json_out {
        output::json(&status);
        return Ok(());
    }
    match status.me.session() {
        None => println!("me: admin"),
        Some(s) => println!("me: {} {}", output::label(s), s.status),
    }
    if !status.nodes.is_empty() {
        let nodes: Vec<String> = status
            .nodes
            .iter()
            .map(|n| {
                let name = output::clean(&n.name);
                if n.reachable {
                    name
                } else {
                    format!("{name} (unreachable)")
                }
            })
            .collect();
        println!(
            "node: {} of {}",
            output::clean(status.node.as_deref().unwrap_or("?")),
            nodes.join(", ")
        );
    }
    let live_sessions: Vec<SessionView> = status.sessions.into_iter().filter(live).collect();
    println!("sessions ({} live):", live_sessions.len());
    output::sessions(&live_sessions);
    println!("locks:");
    output::locks(&status.locks);
    Ok(())
}

/// Arguments of `sm children`.
#[derive(clap::Args)]
pub struct ChildrenArgs {
    /// Whose children (default: mine).
    pub parent: Option<String>,
    /// Include grandchildren and further.
    #[arg(long)]
    pub recursive: bool,
    /// Only children with this status (e.g. idle, working).
    #[arg(long)]
    pub status: Option<String>,
}

/// `sm children`.
pub fn children(client: &Client, args: ChildrenArgs, json_out: bool) -> Result<(), CliError> {
    let parent = args.parent.map_or_else(me_required, Ok)?;
    let kids: Vec<SessionView> = client.get_as(&format!(
        "/sessions/{}/children?recursive={}",
        enc(&parent),
        args.recursive
    ))?;
    let kids: Vec<SessionView> = kids
        .into_iter()
        .filter(|s| {
            args.status
                .as_deref()
                .is_none_or(|st| s.session.status.to_string() == st)
        })
        .collect();
    if json_out {
        output::json(&kids);
    } else {
        output::sessions(&kids);
    }
    Ok(())
}

/// `sm clear <id>`.
pub fn clear(client: &Client, target: &str, json_out: bool) -> Result<(), CliError> {
    let answer = client.post(&format!("/sessions/{}/clear", enc(target)), &json!({}))?;
    if json_out {
        output::json(&answer);
    } else {
        let Cleared { cleared } = typed(answer)?;
        println!("cleared {} [{cleared}]", output::clean(target));
    }
    Ok(())
}

/// `sm answer <id> <n>`.
pub fn answer(
    client: &Client,
    target: &str,
    option: usize,
    json_out: bool,
) -> Result<(), CliError> {
    let answer = client.post(
        &format!("/sessions/{}/answer", enc(target)),
        &AnswerBody { option },
    )?;
    if json_out {
        output::json(&answer);
    } else {
        let Answered { answered, .. } = typed(answer)?;
        println!(
            "answered {}: {}",
            output::clean(target),
            output::clean(&answered)
        );
    }
    Ok(())
}

/// `sm kill <id>`.
pub fn kill(client: &Client, target: &str, json_out: bool) -> Result<(), CliError> {
    let answer = client.delete(&format!("/sessions/{}", enc(target)))?;
    if json_out {
        output::json(&answer);
    } else {
        let view: SessionView = typed(answer)?;
        println!("killed {}", output::label(&view.session));
    }
    Ok(())
}

/// `sm name <name> [--session id]`.
pub fn name(
    client: &Client,
    name: &str,
    session: Option<String>,
    json_out: bool,
) -> Result<(), CliError> {
    let target = session.map_or_else(me_required, Ok)?;
    let updated = client.post(
        &format!("/sessions/{}/name", enc(&target)),
        &NameBody {
            name: Some(name.to_string()),
        },
    )?;
    if json_out {
        output::json(&updated);
    } else {
        let view: SessionView = typed(updated)?;
        println!("named {}", output::label(&view.session));
    }
    Ok(())
}

/// `sm output <id> [--lines N]`.
pub fn output_tail(
    client: &Client,
    target: &str,
    lines: usize,
    json_out: bool,
) -> Result<(), CliError> {
    let answer = client.get(&format!("/sessions/{}/output?lines={lines}", enc(target)))?;
    if json_out {
        output::json(&answer);
        return Ok(());
    }
    let tail: Output = typed(answer)?;
    for line in &tail.lines {
        println!("{}", output::clean(line));
    }
    if !tail.recent_tools.is_empty() {
        println!("--- recent tool use ---");
        for event in &tail.recent_tools {
            if let EventKind::ToolUse {
                tool,
                phase,
                target,
            } = &event.kind
            {
                println!(
                    "{} {} {}",
                    output::clean(phase),
                    output::clean(tool),
                    output::clean(target.as_deref().unwrap_or(""))
                );
            }
        }
    }
    Ok(())
}

/// `sm task "<what>" [--session S]`.
pub fn task(
    client: &Client,
    task: &str,
    session: Option<String>,
    json_out: bool,
) -> Result<(), CliError> {
    let target = session.map_or_else(me_required, Ok)?;
    let body = TaskBody {
        task: (!task.trim().is_empty()).then(|| task.to_string()),
    };
    let updated = client.post(&format!("/sessions/{}/task", enc(&target)), &body)?;
    if json_out {
        output::json(&updated);
        return Ok(());
    }
    let SessionView { session, .. } = typed(updated)?;
    match &session.task {
        None => println!("cleared the task of {}", output::label(&session)),
        Some(t) => println!("{}: {}", output::label(&session), output::clean(t)),
    }
    Ok(())
}

/// `sm subagents [session]`.
pub fn subagents(client: &Client, target: Option<String>, json_out: bool) -> Result<(), CliError> {
    let target = target.map_or_else(me_required, Ok)?;
    let list: Vec<Subagent> = client.get_as(&format!("/sessions/{}/subagents", enc(&target)))?;
    if json_out {
        output::json(&list);
        return Ok(());
    }
    if list.is_empty() {
        println!("(no subagents)");
    }
    for a in list {
        println!(
            "{:<24} {:<20} {}",
            output::clean(&a.agent_id),
            output::clean(a.agent_type.as_deref().unwrap_or("-")),
            if a.running { "running" } else { "done" }
        );
    }
    Ok(())
}

/// `sm what <session> [--deep]`.
pub fn what(client: &Client, target: &str, deep: bool, json_out: bool) -> Result<(), CliError> {
    let answer: Summary = client.get_as(&format!("/sessions/{}/what?deep={deep}", enc(target)))?;
    if json_out {
        output::json(&answer);
        return Ok(());
    }
    println!("{}", output::clean_block(&answer.summary));
    if answer.source == "fallback" {
        println!(
            "(fallback summary: {})",
            output::clean(
                answer
                    .fallback_reason
                    .as_deref()
                    .unwrap_or("no summariser answered")
            )
        );
    }
    Ok(())
}
