//! Telegram control: notifications to allowed chats (turn completed, error, a question with
//! buttons that answer it, idle timeout), commands (`/new`, `/list`, `/status`, `/kill`,
//! `/what`, `/help`), and replies to a notification sent to its session.
//!
//! Built on `teloxide-core`'s Bot API client with our own long-polling loop. Everything
//! outgoing goes through one queue drained by a sender task that retries with back-off, so
//! a slow or unreachable Telegram never holds back the engine: [`Notifier::notify`] only
//! enqueues. Chats not in `telegram.allowed_chat_ids` get nothing; they are logged.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sm_lib::{
    AgentKind, Caller, DeliveryMode, Engine, Notification, NotificationKind, Notifier, SessionId,
    SpawnRequest,
};
use teloxide_core::payloads::setters::*;
use teloxide_core::requests::Requester;
use teloxide_core::types::{
    AllowedUpdate, CallbackQuery, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, Message,
    MessageId, ParseMode, ReplyParameters, Update, UpdateKind,
};
use teloxide_core::{Bot, RequestError};
use tokio::sync::mpsc;

use crate::ServerError;
use crate::proxy::OwnerCalls;

/// Telegram's limit is 4096 characters per message; stay clear of it after escaping.
const CHUNK_CHARS: usize = 3500;
/// How much of an agent's last message a notification shows.
const EXCERPT_CHARS: usize = 2500;
/// How many notifications are remembered for reply routing.
const REMEMBERED: usize = 5000;
/// Outgoing messages waiting while Telegram is unreachable; older ones are dropped beyond.
const OUTBOX: usize = 1000;
/// Long-poll duration; below the client's request timeout (17 s).
const POLL_SECS: u32 = 10;

/// What the bot needs to know.
#[derive(Debug, Clone)]
pub struct TelegramSettings {
    /// The bot token.
    pub token: String,
    /// The only chats served.
    pub allowed_chat_ids: Vec<i64>,
    /// The Bot API server, when not Telegram's.
    pub api_url: Option<String>,
    /// Where `/new` without a path starts an agent.
    pub default_dir: PathBuf,
    /// Which agent `/new` starts.
    pub agent: AgentKind,
    /// The model `/new` gives each agent kind (`claude.default_model`, …).
    pub default_models: HashMap<AgentKind, String>,
}

/// The Telegram bot: a [`Notifier`], and after [`Telegram::start_polling`] a command loop.
#[derive(Clone)]
pub struct Telegram {
    shared: Arc<Shared>,
}

struct Shared {
    bot: Bot,
    token: String,
    allowed: HashSet<i64>,
    default_dir: PathBuf,
    agent: AgentKind,
    default_models: HashMap<AgentKind, String>,
    outbox: mpsc::Sender<Outgoing>,
    /// Which session each notification was about, for replies.
    threads: Mutex<Threads>,
    /// In a cluster: how kill, answer and `what` reach a session another node owns.
    owners: std::sync::OnceLock<OwnerCalls>,
}

#[derive(Default)]
struct Threads {
    by_message: HashMap<(i64, i32), SessionId>,
    order: VecDeque<(i64, i32)>,
}

enum Outgoing {
    Send {
        chat: i64,
        /// MarkdownV2, already escaped.
        text: String,
        buttons: Vec<(String, String)>,
        reply_to: Option<i32>,
        session: Option<SessionId>,
    },
    AnswerCallback {
        id: String,
        text: String,
        alert: bool,
    },
    Edit {
        chat: i64,
        message: i32,
        text: String,
    },
}

impl Telegram {
    /// Creates the bot and starts its sender task (call inside a tokio runtime).
    pub fn new(settings: TelegramSettings) -> Result<Telegram, ServerError> {
        let client = teloxide_core::net::default_reqwest_settings()
            .build()
            .map_err(|e| ServerError::Io {
                what: "cannot create the Telegram HTTP client".into(),
                source: std::io::Error::other(e),
            })?;
        let mut bot = Bot::with_client(settings.token.clone(), client);
        if let Some(url) = &settings.api_url {
            let url = url.parse().map_err(|e| ServerError::Io {
                what: format!("telegram.api_url {url:?} is not a URL"),
                source: std::io::Error::other(e),
            })?;
            bot = bot.set_api_url(url);
        }
        let (outbox, queue) = mpsc::channel(OUTBOX);
        let telegram = Telegram {
            shared: Arc::new(Shared {
                bot,
                token: settings.token,
                allowed: settings.allowed_chat_ids.into_iter().collect(),
                default_dir: settings.default_dir,
                agent: settings.agent,
                default_models: settings.default_models,
                outbox,
                threads: Mutex::default(),
                owners: std::sync::OnceLock::new(),
            }),
        };
        tokio::spawn(telegram.clone().send_loop(queue));
        Ok(telegram)
    }

    /// Starts answering commands, replies and buttons from the allowed chats; `owners`
    /// reaches the sessions of other nodes in a cluster.
    pub fn start_polling(&self, engine: Engine, owners: Option<OwnerCalls>) {
        if let Some(o) = owners {
            let _ = self.shared.owners.set(o);
        }
        tokio::spawn(self.clone().poll_loop(engine));
    }

    /// `local` when the session is this node's; when another node owns it, `path` asked of
    /// that node with `method` and `body`.
    async fn here_or_owner<T: serde::de::DeserializeOwned>(
        &self,
        local: sm_lib::Result<T>,
        method: axum::http::Method,
        path: String,
        body: Option<serde_json::Value>,
    ) -> sm_lib::Result<T> {
        match local {
            Err(sm_lib::Error::Elsewhere { node, session }) => match self.shared.owners.get() {
                Some(owners) => owners.call(&node, method, &path, body).await,
                None => Err(sm_lib::Error::Elsewhere { node, session }),
            },
            other => other,
        }
    }

    /// In a cluster only one node reads the bot's updates (Telegram serves one reader at a
    /// time, and two would each see some commands twice): the reachable node first by name.
    fn polls_here(engine: &Engine) -> bool {
        if engine.cluster().is_none() {
            return true;
        }
        let me = engine.node();
        engine
            .nodes()
            .iter()
            .filter(|n| n.reachable)
            .map(|n| n.name.as_str())
            .min()
            .is_none_or(|first| Some(first) == me)
    }

    /// An error's text with the bot token removed (request URLs contain it).
    fn redact(&self, e: &RequestError) -> String {
        e.to_string().replace(&self.shared.token, "<token>")
    }

    fn enqueue(&self, item: Outgoing) {
        match self.shared.outbox.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("telegram: {OUTBOX} messages are waiting to be sent; dropping one")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn say(&self, chat: i64, reply_to: Option<i32>, text: String) {
        self.say_about(chat, reply_to, text, None);
    }

    /// Like [`Telegram::say`]; replies to what is sent then go to `session`.
    fn say_about(
        &self,
        chat: i64,
        reply_to: Option<i32>,
        text: String,
        session: Option<SessionId>,
    ) {
        for (i, chunk) in chunks(&text).into_iter().enumerate() {
            self.enqueue(Outgoing::Send {
                chat,
                text: chunk,
                buttons: Vec::new(),
                reply_to: if i == 0 { reply_to } else { None },
                session: session.clone(),
            });
        }
    }

    // ----- sending -----

    async fn send_loop(self, mut queue: mpsc::Receiver<Outgoing>) {
        while let Some(item) = queue.recv().await {
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=6 {
                match self.send_once(&item).await {
                    Ok(()) => break,
                    Err(RequestError::RetryAfter(s)) => {
                        tokio::time::sleep(Duration::from_secs(u64::from(s.seconds()))).await;
                    }
                    // Telegram refused the request itself: sending it again will not help.
                    Err(RequestError::Api(e)) => {
                        tracing::warn!(error = %e, "telegram refused a message");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(attempt, error = %self.redact(&e), "telegram: sending failed; retrying");
                        if attempt == 6 {
                            tracing::error!("telegram: giving up on a message after 6 attempts");
                        } else {
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            }
        }
    }

    async fn send_once(&self, item: &Outgoing) -> Result<(), RequestError> {
        let bot = &self.shared.bot;
        match item {
            Outgoing::Send {
                chat,
                text,
                buttons,
                reply_to,
                session,
            } => {
                let mut request = bot
                    .send_message(ChatId(*chat), text.clone())
                    .parse_mode(ParseMode::MarkdownV2);
                if !buttons.is_empty() {
                    request = request.reply_markup(InlineKeyboardMarkup::new(
                        buttons
                            .iter()
                            .map(|(label, data)| {
                                vec![InlineKeyboardButton::callback(label.clone(), data.clone())]
                            })
                            .collect::<Vec<_>>(),
                    ));
                }
                if let Some(id) = reply_to {
                    request = request.reply_parameters(ReplyParameters::new(MessageId(*id)));
                }
                let sent = request.await?;
                if let Some(session) = session {
                    self.remember(*chat, sent.id.0, session.clone());
                }
            }
            Outgoing::AnswerCallback { id, text, alert } => {
                bot.answer_callback_query(id.clone().into())
                    .text(text.clone())
                    .show_alert(*alert)
                    .await?;
            }
            Outgoing::Edit {
                chat,
                message,
                text,
            } => {
                bot.edit_message_text(ChatId(*chat), MessageId(*message), text.clone())
                    .parse_mode(ParseMode::MarkdownV2)
                    .await?;
            }
        }
        Ok(())
    }

    fn remember(&self, chat: i64, message: i32, session: SessionId) {
        let mut threads = self
            .shared
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        threads.by_message.insert((chat, message), session);
        threads.order.push_back((chat, message));
        while threads.order.len() > REMEMBERED {
            if let Some(old) = threads.order.pop_front() {
                threads.by_message.remove(&old);
            }
        }
    }

    fn thread_of(&self, chat: i64, message: &Message) -> Option<String> {
        let threads = self
            .shared
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(id) = threads.by_message.get(&(chat, message.id.0)) {
            return Some(id.to_string());
        }
        // After a restart the map is empty: every notification names its session's short
        // id in parentheses on its first line.
        let first = message.text()?.lines().next()?;
        first.split('(').skip(1).find_map(|rest| {
            let short = rest.split(')').next()?;
            (short.len() == 8 && short.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| short.to_string())
        })
    }

    // ----- receiving -----

    async fn poll_loop(self, engine: Engine) {
        let mut offset: i32 = 0;
        let mut backoff = Duration::from_secs(1);
        let mut polling = true;
        loop {
            let here = Self::polls_here(&engine);
            if here != polling {
                polling = here;
                tracing::info!(
                    node = engine.node().unwrap_or(""),
                    "telegram: {}",
                    if here {
                        "this node now reads the bot's updates"
                    } else {
                        "another node reads the bot's updates; this one only sends"
                    }
                );
            }
            if !here {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            let updates = self
                .shared
                .bot
                .get_updates()
                .offset(offset)
                .timeout(POLL_SECS)
                .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
                .await;
            match updates {
                Ok(updates) => {
                    backoff = Duration::from_secs(1);
                    for update in updates {
                        offset = offset.max(update.id.0 as i32 + 1);
                        let me = self.clone();
                        let engine = engine.clone();
                        tokio::spawn(async move { me.handle(update, &engine).await });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %self.redact(&e), retry_in = ?backoff, "telegram: cannot fetch updates");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn handle(&self, update: Update, engine: &Engine) {
        match update.kind {
            UpdateKind::Message(message) => {
                let chat = message.chat.id.0;
                if !self.shared.allowed.contains(&chat) {
                    tracing::warn!(
                        chat,
                        "telegram: ignoring a message from a chat that is not allowed"
                    );
                    return;
                }
                self.on_message(chat, &message, engine).await;
            }
            UpdateKind::CallbackQuery(query) => {
                let chat = query
                    .message
                    .as_ref()
                    .map(|m| m.chat().id.0)
                    .unwrap_or(query.from.id.0 as i64);
                if !self.shared.allowed.contains(&chat) {
                    tracing::warn!(
                        chat,
                        "telegram: ignoring a button from a chat that is not allowed"
                    );
                    return;
                }
                self.on_button(chat, &query, engine).await;
            }
            _ => {}
        }
    }

    async fn on_message(&self, chat: i64, message: &Message, engine: &Engine) {
        let Some(text) = message.text().map(str::trim) else {
            return;
        };
        let me = message.id.0;
        if let Some(original) = message.reply_to_message() {
            if let Some(target) = self.thread_of(chat, original) {
                return self.reply_to_session(chat, me, &target, text, engine).await;
            }
        }
        let Some(command) = text.strip_prefix('/') else {
            return self.say(
                chat,
                Some(me),
                escape("Reply to one of my notifications to message its agent, or send /help."),
            );
        };
        let (name, arg) = command
            .split_once(char::is_whitespace)
            .unwrap_or((command, ""));
        // `/list@my_bot` in groups.
        let name = name.split('@').next().unwrap_or(name);
        let arg = arg.trim();
        let answer = match name {
            "start" | "help" => Ok(help()),
            "new" => match self.new_session(arg, engine).await {
                Ok((text, session)) => return self.say_about(chat, Some(me), text, Some(session)),
                Err(e) => Err(e),
            },
            "list" => list(engine).await,
            "status" => status(engine).await,
            "kill" => self.kill(arg, engine).await,
            "what" => self.what(arg, engine).await,
            other => Ok(escape(&format!("Unknown command /{other}. Send /help."))),
        };
        let text = answer.unwrap_or_else(|e| format!("⚠️ {}", escape(&e.to_string())));
        self.say(chat, Some(me), text);
    }

    async fn reply_to_session(
        &self,
        chat: i64,
        me: i32,
        target: &str,
        text: &str,
        engine: &Engine,
    ) {
        let (mode, body) = match text.strip_prefix('!') {
            Some(rest) => (DeliveryMode::Urgent, rest.trim()),
            None => (DeliveryMode::Important, text),
        };
        let result = async {
            let session = engine.resolve(target).await?;
            // Keyed by the reply itself: should two nodes ever both read it (while the
            // reading node changes), it is queued once.
            engine
                .send_with_key(
                    &Caller::Admin,
                    &session.id,
                    body,
                    mode,
                    Some(format!("telegram:{chat}:{me}")),
                )
                .await?;
            Ok::<_, sm_lib::Error>(session)
        }
        .await;
        let answer = match result {
            Ok(session) => format!(
                "➡️ sent to *{}* \\({}\\)",
                escape(&short_name(
                    &session.id,
                    session.name.as_ref().map(|n| n.as_str())
                )),
                escape(&mode.to_string())
            ),
            Err(e) => format!("⚠️ not sent: {}", escape(&e.to_string())),
        };
        self.say(chat, Some(me), answer);
    }

    async fn on_button(&self, chat: i64, query: &CallbackQuery, engine: &Engine) {
        let id = query.id.0.clone();
        let parsed = query.data.as_deref().and_then(|d| {
            let mut parts = d.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("a"), Some(session), Some(option)) => {
                    Some((session.to_string(), option.parse::<usize>().ok()?))
                }
                _ => None,
            }
        });
        let Some((session, option)) = parsed else {
            return self.enqueue(Outgoing::AnswerCallback {
                id,
                text: "This button is not one of mine.".into(),
                alert: true,
            });
        };
        let result = async {
            let s = engine.resolve(&session).await?;
            let local = engine.answer(&Caller::Admin, &s.id, option).await;
            let label = self
                .here_or_owner(
                    local.map(|label| sm_lib::wire::Answered {
                        session: s.id.clone(),
                        answered: label,
                    }),
                    axum::http::Method::POST,
                    format!("/sessions/{}/answer", s.id),
                    Some(serde_json::json!({ "option": option })),
                )
                .await?
                .answered;
            Ok::<_, sm_lib::Error>((s, label))
        }
        .await;
        match result {
            Ok((s, label)) => {
                self.enqueue(Outgoing::AnswerCallback {
                    id,
                    text: format!("Answered: {label}"),
                    alert: false,
                });
                if let Some(message) = &query.message {
                    self.enqueue(Outgoing::Edit {
                        chat,
                        message: message.id().0,
                        text: format!(
                            "❓ *{}* asked; you answered *{}*",
                            escape(&short_name(&s.id, s.name.as_ref().map(|n| n.as_str()))),
                            escape(&label)
                        ),
                    });
                }
            }
            Err(e) => self.enqueue(Outgoing::AnswerCallback {
                id,
                text: format!("Not answered: {e}"),
                alert: true,
            }),
        }
    }

    async fn new_session(&self, arg: &str, engine: &Engine) -> sm_lib::Result<(String, SessionId)> {
        // `/new codex ~/repo`: an agent kind first picks it over the configured one.
        let (first, rest) = arg.split_once(char::is_whitespace).unwrap_or((arg, ""));
        let named = first
            .parse::<sm_lib::AgentKind>()
            .ok()
            .filter(|kind| engine.agent_kinds().contains(kind));
        let (agent, arg) = match named {
            Some(kind) => (kind, rest.trim()),
            None => (self.shared.agent.clone(), arg),
        };
        let dir = if arg.is_empty() {
            self.shared.default_dir.clone()
        } else {
            sm_lib::config::expand_tilde(std::path::Path::new(arg))
        };
        let mut request = SpawnRequest::new(agent.clone(), &dir);
        request.model = self.shared.default_models.get(&agent).cloned();
        let session = engine.spawn(&Caller::Admin, request).await?;
        let text = format!(
            "🚀 started *{}* in `{}`\n{}",
            escape(&short_name(
                &session.id,
                session.name.as_ref().map(|n| n.as_str())
            )),
            escape_code(&dir.display().to_string()),
            escape("Reply to this message to give it work.")
        );
        Ok((text, session.id))
    }
}

#[async_trait]
impl Notifier for Telegram {
    fn name(&self) -> &str {
        "telegram"
    }

    async fn notify(&self, n: &Notification) -> sm_lib::Result<()> {
        let who = escape(&short_name(
            &n.session,
            n.name.as_ref().map(|name| name.as_str()),
        ));
        let footer = escape("Reply to message it (important); start with ! to interrupt.");
        let mut buttons = Vec::new();
        let body = match &n.kind {
            NotificationKind::TurnCompleted { last_message } => {
                let excerpt = last_message
                    .as_deref()
                    .map(|m| format!("\n\n{}", escape(&excerpt(m, EXCERPT_CHARS))))
                    .unwrap_or_default();
                format!("✅ *{who}* finished its turn{excerpt}\n\n_{footer}_")
            }
            NotificationKind::Error { message } => format!(
                "❌ *{who}* hit an error\n\n{}\n\n_{footer}_",
                escape(&excerpt(message, EXCERPT_CHARS))
            ),
            NotificationKind::NeedsInput { prompt, options } => {
                for (i, option) in options.iter().enumerate().take(9) {
                    buttons.push((
                        excerpt(&format!("{}. {option}", i + 1), 60),
                        format!("a:{}:{i}", n.session),
                    ));
                }
                format!(
                    "❓ *{who}* is asking\n\n{}\n\n_{}_",
                    escape(&excerpt(
                        prompt.as_deref().unwrap_or("(a question on its screen)"),
                        EXCERPT_CHARS
                    )),
                    escape("Tap an answer, or reply to message it.")
                )
            }
            NotificationKind::IdleTimeout { idle_secs } => format!(
                "💤 *{who}* has been idle for {}\n\n_{footer}_",
                escape(&human_secs(*idle_secs))
            ),
            _ => return Ok(()),
        };
        for chat in &self.shared.allowed {
            self.enqueue(Outgoing::Send {
                chat: *chat,
                text: body.clone(),
                buttons: buttons.clone(),
                reply_to: None,
                session: Some(n.session.clone()),
            });
        }
        Ok(())
    }
}

fn help() -> String {
    escape(
        "sm — your agents from your phone\n\n\
         /new [claude|codex] [dir] — start an agent (in dir, or the default)\n\
         /list — sessions and what they are doing\n\
         /status — counts and workspace locks\n\
         /what <name or id> — a short summary of what it is doing\n\
         /kill <name or id> — end a session\n\
         /help — this text\n\n\
         Reply to a notification to send its agent a message (important: delivered at its \
         next idle point); start the reply with ! to interrupt it (urgent). Tap a button \
         under a question to answer it.",
    )
}

async fn list(engine: &Engine) -> sm_lib::Result<String> {
    let sessions: Vec<_> = engine
        .sessions()
        .await?
        .into_iter()
        .filter(|s| s.status.is_live())
        .collect();
    if sessions.is_empty() {
        return Ok(escape("No live sessions. Start one with /new."));
    }
    let mut lines = vec![format!("*{} live*", sessions.len())];
    // Nodes are named only when the swarm spans several.
    let several_nodes = engine.nodes().len() > 1;
    for s in sessions {
        let task = s
            .task
            .as_deref()
            .map(|t| format!(" — {}", excerpt(t, 80)))
            .unwrap_or_default();
        let node = s.node.as_deref().unwrap_or("?");
        let unreachable = engine.node_reachable(node) == Some(false);
        let status = if unreachable {
            "unreachable".to_string()
        } else {
            s.status.to_string()
        };
        let place = if several_nodes || unreachable {
            format!(" on {node}")
        } else {
            String::new()
        };
        lines.push(format!(
            "• *{}* {}{}{}",
            escape(&short_name(&s.id, s.name.as_ref().map(|n| n.as_str()))),
            escape(&status),
            escape(&place),
            escape(&task)
        ));
    }
    Ok(lines.join("\n"))
}

async fn status(engine: &Engine) -> sm_lib::Result<String> {
    let sessions = engine.sessions().await?;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for s in sessions.iter().filter(|s| s.status.is_live()) {
        *counts.entry(s.status.to_string()).or_default() += 1;
    }
    let live: usize = counts.values().sum();
    let breakdown = counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let locks = engine.store().list_locks().await?;
    let mut lines = vec![escape(&format!(
        "{live} live session{}{}; {} workspace lock{}",
        if live == 1 { "" } else { "s" },
        if breakdown.is_empty() {
            String::new()
        } else {
            format!(" ({breakdown})")
        },
        locks.len(),
        if locks.len() == 1 { "" } else { "s" }
    ))];
    for lock in locks {
        lines.push(escape(&format!(
            "🔒 {} — held by {}",
            lock.workspace.0.display(),
            &lock.holder.as_str()[..8.min(lock.holder.as_str().len())]
        )));
    }
    Ok(lines.join("\n"))
}

impl Telegram {
    async fn kill(&self, arg: &str, engine: &Engine) -> sm_lib::Result<String> {
        if arg.is_empty() {
            return Ok(escape("Which one? /kill <name or id>"));
        }
        let s = engine.resolve(arg).await?;
        let local = engine
            .kill(&Caller::Admin, &s.id)
            .await
            .map(|()| serde_json::Value::Null);
        let path = format!("/sessions/{}", s.id);
        self.here_or_owner(local, axum::http::Method::DELETE, path, None)
            .await?;
        Ok(format!(
            "🛑 killed *{}*",
            escape(&short_name(&s.id, s.name.as_ref().map(|n| n.as_str())))
        ))
    }

    async fn what(&self, arg: &str, engine: &Engine) -> sm_lib::Result<String> {
        if arg.is_empty() {
            return Ok(escape("Which one? /what <name or id>"));
        }
        let s = engine.resolve(arg).await?;
        let local = engine.what(&s.id, false).await;
        let path = format!("/sessions/{}/what", s.id);
        let summary = self
            .here_or_owner(local, axum::http::Method::GET, path, None)
            .await?;
        Ok(summary_text(&s, &summary))
    }
}

fn summary_text(s: &sm_lib::Session, summary: &sm_lib::engine::what::Summary) -> String {
    let note = match &summary.fallback_reason {
        Some(why) => format!("\n\n_{}_", escape(&format!("(heuristic summary: {why})"))),
        None => String::new(),
    };
    format!(
        "🔎 *{}*\n\n{}{note}",
        escape(&short_name(&s.id, s.name.as_ref().map(|n| n.as_str()))),
        escape(&excerpt(&summary.summary, EXCERPT_CHARS))
    )
}

/// `name (1234abcd)`, or the short id alone.
fn short_name(id: &SessionId, name: Option<&str>) -> String {
    let short = &id.as_str()[..8.min(id.as_str().len())];
    match name {
        Some(n) => format!("{n} ({short})"),
        None => format!("({short})"),
    }
}

fn human_secs(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// At most `max` characters of `text`, cut at a character boundary with an ellipsis.
pub fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// Escapes text for Telegram's MarkdownV2, so nothing an agent writes can change the
/// formatting (or make Telegram refuse the message); escape sequences and control
/// characters are dropped first, as for every operator's screen.
pub fn escape(text: &str) -> String {
    let text = sm_lib::engine::sanitize::strip_controls(text);
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(
            c,
            '_' | '*'
                | '['
                | ']'
                | '('
                | ')'
                | '~'
                | '`'
                | '>'
                | '#'
                | '+'
                | '-'
                | '='
                | '|'
                | '{'
                | '}'
                | '.'
                | '!'
                | '\\'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes text inside a MarkdownV2 code span.
fn escape_code(text: &str) -> String {
    sm_lib::engine::sanitize::strip_controls(text)
        .replace('\\', "\\\\")
        .replace('`', "\\`")
}

/// Splits an escaped message into pieces under Telegram's limit, at line breaks where it
/// can and never inside an escape.
pub fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.split('\n') {
        let mut line = line.to_string();
        while line.chars().count() > CHUNK_CHARS {
            let mut cut: String = line.chars().take(CHUNK_CHARS).collect();
            // Do not end on the backslash of an escape pair.
            let trailing = cut.chars().rev().take_while(|c| *c == '\\').count();
            if trailing % 2 == 1 {
                cut.pop();
            }
            let rest: String = line.chars().skip(cut.chars().count()).collect();
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            out.push(cut);
            line = rest;
        }
        if current.chars().count() + line.chars().count() + 1 > CHUNK_CHARS && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.trim().is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_escaped() {
        assert_eq!(escape("a_b*c[d](e)!"), "a\\_b\\*c\\[d\\]\\(e\\)\\!");
        assert_eq!(escape("1.5 - x > y"), "1\\.5 \\- x \\> y");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
    }

    #[test]
    fn long_text_is_split_under_the_limit_without_breaking_escapes() {
        let text = escape(&"a.b".repeat(5000));
        let parts = chunks(&text);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(p.chars().count() <= CHUNK_CHARS);
            let trailing = p.chars().rev().take_while(|c| *c == '\\').count();
            assert_eq!(trailing % 2, 0, "a chunk ends inside an escape");
        }
        assert_eq!(parts.concat(), text);
        let lines: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
        let parts = chunks(&lines.join("\n"));
        assert_eq!(parts.join("\n"), lines.join("\n"));
    }

    #[test]
    fn excerpts_are_cut_cleanly() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("ééééééééééé", 5), "éééé…");
    }
}
