//! Commands that look at or act on sessions: `me`, `status`, `all`, `others`, `alone`,
//! `children`, `clear`, `kill`, `name`, `output`.

use serde_json::{Value, json};

use crate::client::{CliError, Client, enc, my_session};
use crate::output;

fn me_required() -> Result<String, CliError> {
    my_session().ok_or_else(|| {
        CliError::Usage(
            "this command is for agents inside an sm session (SM_SESSION_ID is not set); \
             name a session instead"
                .into(),
        )
    })
}

fn list(client: &Client) -> Result<Vec<Value>, CliError> {
    Ok(client
        .get("/sessions")?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn live(s: &Value) -> bool {
    !matches!(s["status"].as_str(), Some("dead" | "stopped"))
}

/// `sm me`: this session.
pub fn me(client: &Client, json_out: bool) -> Result<(), CliError> {
    let me = client.get("/me")?;
    if json_out {
        output::json(&me);
    } else if me["admin"] == true {
        println!("admin (not inside an sm session)");
    } else {
        println!(
            "{} [{}] {} in {}",
            output::label(&me),
            output::field(&me["id"]),
            output::field(&me["status"]),
            output::field(&me["working_dir"])
        );
    }
    Ok(())
}

/// `sm all`: every session, live first.
pub fn all(client: &Client, json_out: bool) -> Result<(), CliError> {
    let mut sessions = list(client)?;
    sessions.sort_by_key(|s| !live(s));
    if json_out {
        output::json(&Value::Array(sessions));
    } else {
        output::sessions(&sessions);
    }
    Ok(())
}

/// `sm others`: live sessions other than mine.
pub fn others(client: &Client, json_out: bool) -> Result<(), CliError> {
    let me = my_session();
    let sessions: Vec<Value> = list(client)?
        .into_iter()
        .filter(|s| live(s) && s["id"].as_str() != me.as_deref())
        .collect();
    if json_out {
        output::json(&Value::Array(sessions));
    } else {
        output::sessions(&sessions);
    }
    Ok(())
}

/// `sm alone`: whether any other live session works in my working directory (the caller
/// exits 0 when alone, 1 when not).
pub fn alone(client: &Client, json_out: bool) -> Result<bool, CliError> {
    let me = client.get("/me")?;
    // Outside a session "my directory" is where the command runs (as the server would
    // record it: absolute, symlinks resolved).
    let dir = match me["working_dir"].as_str() {
        Some(d) => Some(d.to_string()),
        None => {
            let here = std::env::current_dir().map_err(|e| CliError::Usage(e.to_string()))?;
            let here = here.canonicalize().unwrap_or(here);
            Some(here.display().to_string())
        }
    };
    let others: Vec<Value> = list(client)?
        .into_iter()
        .filter(|s| live(s) && s["id"] != me["id"] && s["working_dir"].as_str() == dir.as_deref())
        .collect();
    let alone = others.is_empty();
    if json_out {
        output::json(&json!({ "alone": alone, "others": others }));
    } else if alone {
        println!(
            "alone: no other live session works in {}",
            output::clean(&dir.unwrap_or_default())
        );
    } else {
        println!("not alone; also working here:");
        output::sessions(&others);
    }
    Ok(alone)
}

/// `sm status`: me, the others, and the locks.
pub fn status(client: &Client, json_out: bool) -> Result<(), CliError> {
    let me = client.get("/me")?;
    let sessions = list(client)?;
    let locks = client.get("/locks")?;
    if json_out {
        output::json(&json!({ "me": me, "sessions": sessions, "locks": locks }));
        return Ok(());
    }
    if me["admin"] == true {
        println!("me: admin");
    } else {
        println!(
            "me: {} {}",
            output::label(&me),
            output::field(&me["status"])
        );
    }
    let live_sessions: Vec<Value> = sessions.into_iter().filter(live).collect();
    println!("sessions ({} live):", live_sessions.len());
    output::sessions(&live_sessions);
    println!("locks:");
    output::locks(locks.as_array().map(Vec::as_slice).unwrap_or_default());
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
    let kids = client.get(&format!(
        "/sessions/{}/children?recursive={}",
        enc(&parent),
        args.recursive
    ))?;
    let kids: Vec<Value> = kids
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| {
            args.status
                .as_deref()
                .is_none_or(|st| s["status"].as_str() == Some(st))
        })
        .collect();
    if json_out {
        output::json(&Value::Array(kids));
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
        println!("cleared {}", output::clean(target));
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
        &json!({ "option": option }),
    )?;
    if json_out {
        output::json(&answer);
    } else {
        println!(
            "answered {}: {}",
            output::clean(target),
            output::field(&answer["answered"])
        );
    }
    Ok(())
}

/// `sm kill <id>`.
pub fn kill(client: &Client, target: &str, json_out: bool) -> Result<(), CliError> {
    let session = client.delete(&format!("/sessions/{}", enc(target)))?;
    if json_out {
        output::json(&session);
    } else {
        println!("killed {}", output::label(&session));
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
        &json!({ "name": name }),
    )?;
    if json_out {
        output::json(&updated);
    } else {
        println!("named {}", output::label(&updated));
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
    } else {
        for line in answer["lines"].as_array().into_iter().flatten() {
            println!("{}", output::field(line));
        }
        let tools = answer["recent_tools"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !tools.is_empty() {
            println!("--- recent tool use ---");
            for t in tools {
                let k = &t["kind"];
                println!(
                    "{} {} {}",
                    output::field(&k["phase"]),
                    output::field(&k["tool"]),
                    output::field(&k["target"])
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
    let value = if task.trim().is_empty() {
        Value::Null
    } else {
        json!(task)
    };
    let updated = client.post(
        &format!("/sessions/{}/task", enc(&target)),
        &json!({ "task": value }),
    )?;
    if json_out {
        output::json(&updated);
    } else if updated["task"].is_null() {
        println!("cleared the task of {}", output::label(&updated));
    } else {
        println!(
            "{}: {}",
            output::label(&updated),
            output::field(&updated["task"])
        );
    }
    Ok(())
}

/// `sm subagents [session]`.
pub fn subagents(client: &Client, target: Option<String>, json_out: bool) -> Result<(), CliError> {
    let target = target.map_or_else(me_required, Ok)?;
    let list = client.get(&format!("/sessions/{}/subagents", enc(&target)))?;
    if json_out {
        output::json(&list);
        return Ok(());
    }
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("(no subagents)");
    }
    for a in items {
        println!(
            "{:<24} {:<20} {}",
            output::field(&a["agent_id"]),
            output::clean(a["agent_type"].as_str().unwrap_or("-")),
            if a["running"] == true {
                "running"
            } else {
                "done"
            }
        );
    }
    Ok(())
}

/// `sm what <session> [--deep]`.
pub fn what(client: &Client, target: &str, deep: bool, json_out: bool) -> Result<(), CliError> {
    let answer = client.get(&format!("/sessions/{}/what?deep={deep}", enc(target)))?;
    if json_out {
        output::json(&answer);
        return Ok(());
    }
    println!(
        "{}",
        output::clean_block(answer["summary"].as_str().unwrap_or(""))
    );
    if answer["source"] == "fallback" {
        println!(
            "(fallback summary: {})",
            output::clean(
                answer["fallback_reason"]
                    .as_str()
                    .unwrap_or("no summariser answered")
            )
        );
    }
    Ok(())
}
