// sm dashboard: a client of sm's own HTTP API, with live updates from its event stream.
//
// Safety rule: everything an agent can influence (names, tasks, screens, messages, event
// details) enters the page only as text nodes or attribute values set through the DOM,
// never as markup. The server's Content-Security-Policy forbids inline script besides.
"use strict";

(() => {
  const EVENT_TYPES = [
    "session_created", "status_changed", "message_queued", "message_delivered",
    "message_failed", "lock_acquired", "lock_released", "hook", "needs_input",
    "idle_timeout", "error", "turn_completed", "wait_fired", "needs_attention", "tool_use",
    "subagent", "note",
  ];
  const STATUSES = ["starting", "idle", "working", "needs_input", "stopped", "dead"];
  const ENDED = new Set(["stopped", "dead"]);
  const SYMBOL = {
    starting: "◌", idle: "●", working: "▶", needs_input: "?", stopped: "■", dead: "✕",
    unknown: "·",
  };
  const WORD = {
    starting: "starting", idle: "idle", working: "working", needs_input: "needs input",
    stopped: "stopped", dead: "dead",
  };

  // ----- state -----
  const model = {
    sessions: new Map(), // id -> SessionView
    locks: [],
    loaded: false,
    link: "connecting", // connecting | live | lost
  };
  const view = { route: null, overview: null, session: null, events: null };
  // What a test (or a curious person, in the console) can read about live updates.
  const stats = { statusLatencyMs: [], eventsApplied: 0, reconnects: 0, lastRender: 0 };
  window.smDashboard = stats;

  // ----- DOM helpers (text only) -----
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "on") {
        for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      } else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, String(value));
    }
    append(node, children);
    return node;
  }
  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  // Replaces a node's children with these (arrays flattened, strings as text).
  function fill(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }
  const $ = (sel) => document.querySelector(sel);

  // ----- formatting -----
  function ago(ms) {
    const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0");
    return Math.floor(s / 86400) + "d";
  }
  function clock(ms) {
    const d = new Date(ms);
    const today = new Date();
    const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return d.toDateString() === today.toDateString() ? time : d.toLocaleDateString() + " " + time;
  }
  const short = (id) => (id || "").slice(0, 8);
  function nameOf(id) {
    if (!id) return "you";
    const s = model.sessions.get(id);
    return s && s.name ? s.name : short(id);
  }
  function display(s) {
    return s.name || short(s.id);
  }
  function cut(text, n) {
    text = String(text ?? "");
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }
  function statusBadge(status) {
    const st = STATUSES.includes(status) ? status : "unknown";
    return el("span", { class: "status st-" + st, title: WORD[st] || st },
      el("span", { class: "sym", "aria-hidden": "true" }, SYMBOL[st]), " ", WORD[st] || st);
  }
  function sessionLink(id, text) {
    return el("a", { href: "#/s/" + encodeURIComponent(id) }, text ?? nameOf(id));
  }
  function lockOf(id) {
    return model.locks.find((l) => l.holder === id);
  }

  // ----- API -----
  async function api(method, path, body) {
    const init = { method, headers: { "X-Sm-Dashboard": "1" }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new Error("the server cannot be reached (" + e.message + ")");
    }
    if (response.status === 401) {
      // The login ended (expired, logged out elsewhere, server's token changed).
      location.reload();
      throw new Error("logged out");
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error ? data.error.message : response.status + " " + response.statusText;
      throw new Error(message);
    }
    return data;
  }
  const enc = encodeURIComponent;

  function flash(message, kind) {
    const box = $("#banner");
    box.hidden = false;
    box.className = "banner " + (kind || "info");
    fill(box, message);
    clearTimeout(flash.timer);
    if (kind !== "stuck") flash.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 8000 : 3000);
  }
  async function act(what, fn) {
    try {
      const result = await fn();
      flash(what, "ok");
      return result;
    } catch (e) {
      flash("Failed: " + e.message, "error");
      return undefined;
    }
  }

  // ----- data -----
  async function loadAll() {
    const status = await api("GET", "/status");
    model.sessions = new Map(status.sessions.map((s) => [s.id, s]));
    model.locks = status.locks;
    model.loaded = true;
  }
  const pendingSessions = new Set();
  let refetchTimer = null;
  function refetchSession(id) {
    // Coalesce: a burst of events about one agent costs one request.
    pendingSessions.add(id);
    if (refetchTimer) return;
    refetchTimer = setTimeout(async () => {
      refetchTimer = null;
      const ids = [...pendingSessions];
      pendingSessions.clear();
      await Promise.all(ids.map(async (sid) => {
        try {
          const s = await api("GET", "/sessions/" + enc(sid));
          model.sessions.set(s.id, s);
        } catch (_) { /* gone or unreachable: the next event or resync tells */ }
      }));
      render();
    }, 60);
  }
  let locksTimer = null;
  function refetchLocks() {
    if (locksTimer) return;
    locksTimer = setTimeout(async () => {
      locksTimer = null;
      try { model.locks = await api("GET", "/locks"); } catch (_) { /* keep what we have */ }
      render();
    }, 60);
  }

  // ----- live updates -----
  let source = null;
  function connect() {
    source = new EventSource("/events/stream");
    source.addEventListener("open", async () => {
      const wasLost = model.link === "lost";
      setLink("live");
      if (wasLost) {
        stats.reconnects += 1;
        // Whatever happened while the stream was down: read it all again.
        try { await loadAll(); } catch (_) { /* the next event retries */ }
        flash("Live updates are back.", "ok");
        render(true);
      }
    });
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (message) => {
        // "error" is also the name of EventSource's own connection error.
        if (!(message instanceof MessageEvent) || !message.data) return;
        let event;
        try { event = JSON.parse(message.data); } catch (_) { return; }
        apply(event);
      });
    }
    source.addEventListener("error", (e) => {
      if (e instanceof MessageEvent && e.data) return;
      setLink("lost");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. a 401 after the login ended): check, then retry.
        setTimeout(async () => {
          try { await api("GET", "/me"); } catch (_) { /* reloads on 401 */ }
          connect();
        }, 2000);
      }
    });
  }
  function setLink(state) {
    model.link = state;
    const node = $("#link");
    node.className = "link link-" + state;
    node.textContent = state === "live" ? "● live" : state === "lost" ? "○ reconnecting…" : "connecting…";
    if (state === "lost") flash("Live updates were interrupted; reconnecting…", "stuck");
  }

  function apply(event) {
    stats.eventsApplied += 1;
    const kind = event.kind || {};
    const id = event.session;
    const s = id ? model.sessions.get(id) : null;
    let statusChange = false;
    switch (kind.type) {
      case "status_changed":
        if (s) {
          s.status = kind.to;
          s.status_changed_at = event.at;
          statusChange = true;
        }
        if (id) refetchSession(id);
        break;
      case "session_created":
      case "note":
      case "message_queued":
      case "message_delivered":
      case "message_failed":
        if (id) refetchSession(id);
        break;
      case "lock_acquired":
      case "lock_released":
        refetchLocks();
        break;
      default:
        break;
    }
    if (view.session && view.session.id === id) sessionEvent(event);
    if (view.events) eventsPageEvent(event);
    if (statusChange) {
      shownAt.push(event.at);
      render();
    }
  }

  // ----- rendering -----
  let renderQueued = false;
  function render(now) {
    if (now) {
      renderQueued = false;
      draw();
      return;
    }
    if (renderQueued) return;
    renderQueued = true;
    queueMicrotask(() => {
      if (!renderQueued) return;
      renderQueued = false;
      draw();
    });
  }
  // Event times of status changes waiting for the redraw that shows them.
  const shownAt = [];
  function draw() {
    const t0 = performance.now();
    drawTotals();
    if (view.overview) drawOverviewList();
    if (view.session) drawSessionHeader();
    stats.lastRender = performance.now() - t0;
    const now = Date.now();
    for (const at of shownAt.splice(0)) stats.statusLatencyMs.push(now - at);
  }
  function drawTotals() {
    const counts = {};
    for (const s of model.sessions.values()) counts[s.status] = (counts[s.status] || 0) + 1;
    const live = [...model.sessions.values()].filter((s) => !ENDED.has(s.status)).length;
    const parts = [live + " live"];
    for (const st of ["working", "needs_input", "idle", "starting"]) {
      if (counts[st]) parts.push(counts[st] + " " + WORD[st]);
    }
    const node = $("#totals");
    fill(node, parts.join(" · "));
    if (counts.needs_input) node.append(" ", el("span", { class: "attention" }, "⚠"));
  }

  // ----- overview -----
  function routeOverview() {
    const saved = JSON.parse(sessionStorage.getItem("sm.filter") || "{}");
    const state = {
      text: saved.text || "",
      status: saved.status || "",
      ended: !!saved.ended,
      list: el("div", { class: "sessions", id: "sessions", role: "list" }),
    };
    const remember = () => sessionStorage.setItem("sm.filter", JSON.stringify({ text: state.text, status: state.status, ended: state.ended }));
    const search = el("input", {
      type: "search", placeholder: "Filter by name, task, directory…", value: state.text,
      "aria-label": "Filter", id: "filter",
      on: { input: (e) => { state.text = e.target.value; remember(); drawOverviewList(); } },
    });
    const statusSelect = el("select", {
      "aria-label": "Status", id: "status-filter",
      on: { change: (e) => { state.status = e.target.value; remember(); drawOverviewList(); } },
    }, el("option", { value: "" }, "any status"), STATUSES.map((st) => el("option", { value: st, selected: st === state.status }, WORD[st])));
    const ended = el("label", { class: "check" }, el("input", {
      type: "checkbox", checked: state.ended, id: "show-ended",
      on: { change: (e) => { state.ended = e.target.checked; remember(); drawOverviewList(); } },
    }), " show ended");
    view.overview = state;
    fill($("#main"),
      el("section", { class: "toolbar" }, search, statusSelect, ended),
      state.list,
    );
    drawOverviewList();
  }

  function visibleTree() {
    const f = view.overview;
    const text = f.text.trim().toLowerCase();
    const matches = (s) => {
      if (!f.ended && ENDED.has(s.status)) return false;
      if (f.status && s.status !== f.status) return false;
      if (!text) return true;
      return [s.name, s.id, s.task, s.working_dir, s.agent, s.model, s.node]
        .some((v) => v && String(v).toLowerCase().includes(text));
    };
    const shown = [...model.sessions.values()].filter(matches);
    const shownIds = new Set(shown.map((s) => s.id));
    const children = new Map();
    const roots = [];
    for (const s of shown) {
      if (s.parent && shownIds.has(s.parent)) {
        if (!children.has(s.parent)) children.set(s.parent, []);
        children.get(s.parent).push(s);
      } else roots.push(s);
    }
    const order = (a, b) => a.created_at - b.created_at;
    const rows = [];
    const walk = (s, depth) => {
      rows.push([s, depth]);
      for (const c of (children.get(s.id) || []).sort(order)) walk(c, depth + 1);
    };
    for (const r of roots.sort(order)) walk(r, 0);
    return rows;
  }

  function drawOverviewList() {
    const f = view.overview;
    if (!f) return;
    if (!model.loaded) return;
    const rows = visibleTree();
    if (!rows.length) {
      const none = model.sessions.size ? "No session matches the filter." : "No sessions yet. Start one with sm spawn, or from Telegram.";
      fill(f.list, el("p", { class: "muted empty" }, none));
      return;
    }
    const header = el("div", { class: "row head", role: "presentation" },
      el("span", { class: "c-status" }, "status"),
      el("span", { class: "c-name" }, "session"),
      el("span", { class: "c-since" }, "for"),
      el("span", { class: "c-task" }, "task"),
      el("span", { class: "c-queue" }, "queue"),
      el("span", { class: "c-lock" }, "lock"),
      el("span", { class: "c-kind" }, "agent"));
    const showNodes = manyNodes();
    fill(f.list, header, rows.map(([s, depth]) => sessionRow(s, depth, showNodes)));
  }

  // Nodes are shown only when the swarm spans several (one machine: nothing to tell apart).
  function manyNodes() {
    const nodes = new Set();
    for (const s of model.sessions.values()) if (s.node) nodes.add(s.node);
    return nodes.size > 1;
  }

  function sessionRow(s, depth, showNodes) {
    const lock = lockOf(s.id);
    const row = el("a", {
      class: "row st-row-" + s.status, href: "#/s/" + enc(s.id), role: "listitem",
      dataset: { session: s.id, status: s.status },
    },
    el("span", { class: "c-status" }, statusBadge(s.status)),
    el("span", { class: "c-name" },
      depth ? el("span", { class: "tree", "aria-hidden": "true" }, "└ ") : null,
      el("span", { class: "name" }, display(s)),
      s.name ? el("span", { class: "id muted" }, " " + short(s.id)) : null),
    el("span", { class: "c-since muted", dataset: { since: String(s.status_changed_at) } }, ago(s.status_changed_at)),
    el("span", { class: "c-task", title: s.task || "" }, s.task ? cut(s.task, 120) : el("span", { class: "muted" }, s.end_reason ? cut(s.end_reason, 80) : "")),
    el("span", { class: "c-queue" }, s.queued ? el("span", { class: "queued", title: s.queued + " waiting" }, "✉ " + s.queued) : ""),
    el("span", { class: "c-lock" }, lock ? el("span", { class: "lock", title: lock.workspace + " (" + lock.reason + ")" }, cut(lock.workspace.split("/").pop(), 24)) : ""),
    el("span", { class: "c-kind muted" }, s.agent + (s.model ? " · " + s.model : ""),
      showNodes || s.unreachable ? el("span", { class: s.unreachable ? "node unreachable" : "node" }, " · node " + s.node + (s.unreachable ? " (unreachable)" : "")) : null));
    row.style.setProperty("--depth", String(Math.min(depth, 8)));
    return row;
  }

  // ----- session page -----
  function routeSession(id) {
    const page = {
      id,
      messages: [],
      activity: [],
      question: null,
      screenBox: el("pre", { class: "screen", id: "screen", tabindex: "0", "aria-label": "The agent's screen" }, "…"),
      header: el("section", { class: "card", id: "session-header" }),
      questionBox: el("section", { class: "card question", id: "question", hidden: true }),
      messagesBox: el("div", { id: "messages" }),
      activityBox: el("ol", { class: "activity", id: "activity" }),
      childrenBox: el("div", { id: "children" }),
      refreshTimer: null,
      screenTimer: null,
    };
    view.session = page;
    const text = el("textarea", { id: "send-text", rows: 3, placeholder: "Message to the agent (Ctrl+Enter sends)", required: true });
    const mode = el("select", { id: "send-mode", "aria-label": "Delivery mode" },
      el("option", { value: "sequential" }, "sequential — when idle"),
      el("option", { value: "important" }, "important — next, without interrupting"),
      el("option", { value: "urgent" }, "urgent — interrupt now"));
    const send = async (e) => {
      e.preventDefault();
      if (!text.value.trim()) return;
      const m = await act("Sent", () => api("POST", "/sessions/" + enc(id) + "/input", { text: text.value, mode: mode.value }));
      if (m) {
        flash("Queued as message #" + m.id + " (" + m.mode + ").", "ok");
        text.value = "";
        refreshSession();
      }
    };
    text.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(e); });
    const sendForm = el("form", { class: "card send", id: "send-form", on: { submit: send } },
      el("h2", {}, "Send"), text, el("div", { class: "line" }, mode, el("button", { type: "submit", id: "send-button" }, "Send")));

    // A one-field form that sets `key` of the session (empty: removes it).
    const fieldForm = (input, buttonId, buttonText, done, path, key) => el("form", { class: "line", on: { submit: async (e) => {
      e.preventDefault();
      const value = input.value.trim();
      const s = await act(done, () => api("POST", "/sessions/" + enc(id) + path, { [key]: value || null }));
      if (s) { model.sessions.set(s.id, { ...model.sessions.get(s.id), ...s }); input.value = ""; render(); }
    } } }, input, el("button", { type: "submit", id: buttonId }, buttonText));
    const nameInput = el("input", { id: "rename-input", placeholder: "new name", "aria-label": "New name" });
    const taskInput = el("input", { id: "task-input", placeholder: "task", "aria-label": "Task" });
    const actions = el("section", { class: "card actions" }, el("h2", {}, "Actions"),
      fieldForm(nameInput, "rename-button", "Rename", "Renamed", "/name", "name"),
      fieldForm(taskInput, "task-button", "Set task", "Task set", "/task", "task"),
      el("div", { class: "line" },
        el("button", { type: "button", id: "clear-button", on: { click: async () => {
          const s = model.sessions.get(id);
          if (!confirm("Clear " + (s ? display(s) : short(id)) + "'s conversation (/clear)?")) return;
          await act("Cleared", () => api("POST", "/sessions/" + enc(id) + "/clear", {}));
          refreshSession();
        } } }, "Clear"),
        el("button", { type: "button", class: "danger", id: "kill-button", on: { click: async () => {
          const s = model.sessions.get(id);
          if (!confirm("Kill " + (s ? display(s) : short(id)) + "? Its queued messages fail and its waiters are told.")) return;
          await act("Killed", () => api("DELETE", "/sessions/" + enc(id)));
          refreshSession();
        } } }, "Kill")));

    fill($("#main"),
      el("p", { class: "crumbs" }, el("a", { href: "#/" }, "← all sessions")),
      page.header,
      page.questionBox,
      el("div", { class: "two" },
        el("section", { class: "card screen-card" }, el("h2", {}, "Screen"), page.screenBox),
        el("div", { class: "side" }, sendForm, actions)),
      el("section", { class: "card" }, el("h2", {}, "Children"), page.childrenBox),
      el("section", { class: "card" }, el("h2", {}, "Messages"), page.messagesBox),
      el("section", { class: "card" }, el("h2", {}, "Activity"), page.activityBox),
    );
    drawSessionHeader();
    refreshSession(true);
  }

  async function refreshSession(first) {
    const page = view.session;
    if (!page) return;
    const id = page.id;
    const requests = [
      // A page opened by name (#/s/worker) follows the session's id from here on.
      api("GET", "/sessions/" + enc(id)).then((s) => { model.sessions.set(s.id, s); page.id = s.id; }),
      api("GET", "/sessions/" + enc(id) + "/messages?limit=100").then((m) => { page.messages = m; }),
      loadScreen(),
    ];
    if (first) {
      requests.push(api("GET", "/events?before=0&limit=150&session=" + enc(id)).then((events) => {
        page.activity = events;
        const asked = events.find((e) => e.kind.type === "needs_input");
        if (asked) page.question = asked.kind;
      }));
    }
    const results = await Promise.allSettled(requests);
    if (view.session !== page) return;
    const failed = results.find((r) => r.status === "rejected");
    if (failed && first) flash("Could not load this session: " + failed.reason.message, "error");
    drawSessionHeader();
    drawMessages();
    if (first) drawActivity();
    scheduleScreen();
  }

  async function loadScreen() {
    const page = view.session;
    if (!page) return;
    try {
      const out = await api("GET", "/sessions/" + enc(page.id) + "/output?styled=true");
      // Trailing blank rows of the terminal say nothing.
      const lines = out.lines.slice();
      while (lines.length && !plain(lines[lines.length - 1]).trim()) lines.pop();
      if (lines.length) fill(page.screenBox, styled(lines));
      else page.screenBox.textContent = "(blank)";
      page.screenBox.scrollTop = page.screenBox.scrollHeight;
    } catch (e) {
      page.screenBox.textContent = "(no screen: " + e.message + ")";
    }
  }

  // ----- a terminal's colours (SGR sequences; the server sends no other) -----
  const SGR = /\x1b\[([0-9;:]*)m/g;
  const plain = (line) => line.replace(SGR, "");
  const BASIC = ["#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff"];
  function xterm(n) {
    if (n < 16) return BASIC[n];
    if (n < 232) {
      const v = [0, 95, 135, 175, 215, 255];
      n -= 16;
      return "rgb(" + v[Math.floor(n / 36)] + "," + v[Math.floor(n / 6) % 6] + "," + v[n % 6] + ")";
    }
    const g = 8 + (n - 232) * 10;
    return "rgb(" + g + "," + g + "," + g + ")";
  }
  function sgr(style, params) {
    const p = params.split(/[;:]/).map((x) => (x === "" ? 0 : Number(x)));
    for (let i = 0; i < p.length; i++) {
      const c = p[i];
      if (c === 0) { for (const k of Object.keys(style)) delete style[k]; }
      else if (c === 1) style.bold = true;
      else if (c === 2) style.dim = true;
      else if (c === 3) style.italic = true;
      else if (c === 4) style.underline = true;
      else if (c === 7) style.reverse = true;
      else if (c === 22) { delete style.bold; delete style.dim; }
      else if (c === 23) delete style.italic;
      else if (c === 24) delete style.underline;
      else if (c === 27) delete style.reverse;
      else if (c >= 30 && c <= 37) style.fg = BASIC[c - 30];
      else if (c >= 90 && c <= 97) style.fg = BASIC[c - 90 + 8];
      else if (c >= 40 && c <= 47) style.bg = BASIC[c - 40];
      else if (c >= 100 && c <= 107) style.bg = BASIC[c - 100 + 8];
      else if (c === 39) delete style.fg;
      else if (c === 49) delete style.bg;
      else if (c === 38 || c === 48) {
        let colour = null;
        if (p[i + 1] === 5 && i + 2 < p.length) { colour = xterm(Math.min(255, p[i + 2])); i += 2; }
        else if (p[i + 1] === 2 && i + 4 < p.length) { colour = "rgb(" + p[i + 2] + "," + p[i + 3] + "," + p[i + 4] + ")"; i += 4; }
        if (colour) style[c === 38 ? "fg" : "bg"] = colour;
      }
    }
  }
  function styled(lines) {
    const out = [];
    const style = {};
    lines.forEach((line, n) => {
      if (n) out.push("\n");
      let last = 0;
      const push = (text) => {
        if (!text) return;
        if (!Object.keys(style).length) { out.push(text); return; }
        const span = el("span", { class: [style.bold && "t-b", style.dim && "t-dim", style.italic && "t-i", style.underline && "t-u"].filter(Boolean).join(" ") }, text);
        const fg = style.reverse ? style.bg || "#0a0c10" : style.fg;
        const bg = style.reverse ? style.fg || "#d7dae0" : style.bg;
        // Set through the CSSOM, which the page's style policy allows (no style attributes).
        if (fg) span.style.color = fg;
        if (bg) span.style.backgroundColor = bg;
        out.push(span);
      };
      for (const m of line.matchAll(SGR)) {
        push(line.slice(last, m.index));
        sgr(style, m[1]);
        last = m.index + m[0].length;
      }
      push(line.slice(last));
    });
    return out;
  }

  function scheduleScreen() {
    const page = view.session;
    if (!page) return;
    clearTimeout(page.screenTimer);
    const s = model.sessions.get(page.id);
    // A working agent's screen changes all the time; an idle one's only on events.
    if (s && ["working", "starting", "needs_input"].includes(s.status)) {
      page.screenTimer = setTimeout(async () => {
        if (view.session !== page) return;
        if (!document.hidden) await loadScreen();
        scheduleScreen();
      }, 1000);
    }
  }

  function sessionEvent(event) {
    const page = view.session;
    page.activity.unshift(event);
    if (page.activity.length > 500) page.activity.length = 500;
    if (event.kind.type === "needs_input") page.question = event.kind;
    drawActivity();
    clearTimeout(page.refreshTimer);
    page.refreshTimer = setTimeout(() => refreshSession(false), 80);
  }

  function field(label, value) {
    return [el("dt", {}, label), el("dd", {}, value)];
  }

  function drawSessionHeader() {
    const page = view.session;
    if (!page) return;
    const s = model.sessions.get(page.id);
    if (!s) {
      fill(page.header, el("h1", {}, short(page.id)), el("p", { class: "muted" }, model.loaded ? "No such session (it may have been removed)." : "Loading…"));
      return;
    }
    document.title = display(s) + " · sm";
    const lock = lockOf(s.id);
    const kids = [...model.sessions.values()].filter((c) => c.parent === s.id).sort((a, b) => a.created_at - b.created_at);
    fill(page.header,
      el("h1", {}, el("span", { class: "name", id: "session-name" }, display(s)), " ", statusBadge(s.status),
        el("span", { class: "muted since" }, " for ", el("span", { dataset: { since: String(s.status_changed_at) } }, ago(s.status_changed_at)))),
      el("dl", { class: "facts" },
        field("id", s.id),
        field("agent", s.agent + (s.model ? " · " + s.model : "") + (s.skip_permissions ? " · no permission prompts" : "")),
        field("directory", s.working_dir),
        s.node ? field("node", s.node + (s.unreachable ? " (unreachable: its lease ran out; messages for it are kept)" : "")) : null,
        field("task", s.task ? el("span", { id: "session-task" }, s.task) : el("span", { class: "muted" }, "none")),
        field("parent", s.parent ? sessionLink(s.parent) : el("span", { class: "muted" }, "none")),
        field("queue", s.queued ? s.queued + " waiting" : "empty"),
        lock ? field("lock", lock.workspace + " (" + lock.reason + ")") : null,
        field("started", clock(s.created_at)),
        s.end_reason ? field("ended", s.end_reason) : null,
        s.attach ? field("attach", el("code", {}, s.attach.join(" "))) : null));
    fill(page.childrenBox, kids.length
      ? el("ul", { class: "children" }, kids.map((c) => el("li", {}, statusBadge(c.status), " ", sessionLink(c.id, display(c)), c.task ? el("span", { class: "muted" }, " — " + cut(c.task, 80)) : null)))
      : el("p", { class: "muted" }, "none"));
    drawQuestion(s);
    scheduleScreen();
  }

  function drawQuestion(s) {
    const page = view.session;
    const box = page.questionBox;
    if (s.status !== "needs_input") {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    box.hidden = false;
    const q = page.question || {};
    const options = q.options && q.options.length ? q.options : null;
    const answer = async (n, label) => {
      const done = await act("Answered: " + label, () => api("POST", "/sessions/" + enc(page.id) + "/answer", { option: n }));
      if (done !== undefined) refreshSession(false);
    };
    fill(box,
      el("h2", {}, "Waiting for an answer"),
      el("p", { class: "prompt" }, q.prompt || "The agent asks a question (see its screen)."),
      el("div", { class: "options" }, options
        ? options.map((label, i) => el("button", { type: "button", class: "option", dataset: { option: String(i + 1) }, on: { click: () => answer(i + 1, label) } }, (i + 1) + ". " + label))
        : [1, 2, 3].map((n) => el("button", { type: "button", class: "option", dataset: { option: String(n) }, on: { click: () => answer(n, "option " + n) } }, "Option " + n))));
  }

  function drawMessages() {
    const page = view.session;
    if (!page.messages.length) {
      fill(page.messagesBox, el("p", { class: "muted" }, "none"));
      return;
    }
    const rows = page.messages.slice().reverse().map((m) => el("tr", { class: "msg msg-" + m.state, dataset: { message: String(m.id) } },
      el("td", { class: "num" }, "#" + m.id),
      el("td", {}, clock(m.created_at)),
      el("td", {}, m.sender ? sessionLink(m.sender) : "operator"),
      el("td", {}, m.mode),
      el("td", {}, el("span", { class: "state state-" + m.state }, m.state),
        m.attempts > 1 ? el("span", { class: "muted" }, " ×" + m.attempts) : null,
        m.reason ? el("div", { class: "reason" }, m.reason) : null),
      el("td", { class: "text" }, m.text.length > 160
        ? el("details", {}, el("summary", {}, cut(m.text, 160)), el("pre", {}, m.text))
        : m.text)));
    fill(page.messagesBox, el("div", { class: "scroll" }, el("table", { class: "table" },
      el("thead", {}, el("tr", {}, ["id", "queued", "from", "mode", "state", "text"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows))));
  }

  function describe(event) {
    const k = event.kind || {};
    switch (k.type) {
      case "status_changed": return WORD[k.from] + " → " + WORD[k.to];
      case "session_created": return "started (" + k.agent + ")";
      case "message_queued": return "message #" + k.message + " queued (" + k.mode + ")";
      case "message_delivered": return "message #" + k.message + " delivered";
      case "message_failed": return "message #" + k.message + " failed: " + k.reason;
      case "lock_acquired": return "locked " + k.workspace + " (" + k.reason + ")";
      case "lock_released": return "unlocked " + k.workspace;
      case "hook": return "hook " + k.event;
      case "needs_input": return "asks: " + (k.prompt || "a question") + (k.options && k.options.length ? " [" + k.options.join(" / ") + "]" : "");
      case "idle_timeout": return "idle for " + k.idle_secs + "s with nobody waiting";
      case "error": return "error: " + k.message;
      case "turn_completed": return "finished a turn" + (k.last_message ? ": " + cut(k.last_message, 300) : "");
      case "wait_fired": return "woke " + nameOf(k.waiter) + " (" + k.outcome + ")";
      case "needs_attention": return "needs attention: " + k.reason;
      case "tool_use": return "tool " + k.tool + " " + k.phase + (k.target ? " " + cut(k.target, 200) : "");
      case "subagent": return "subagent " + (k.agent_type || k.agent_id) + (k.running ? " started" : " stopped");
      case "note": return k.text;
      default: {
        const rest = { ...k };
        delete rest.type;
        return (k.type || "event") + " " + JSON.stringify(rest);
      }
    }
  }

  function drawActivity() {
    const page = view.session;
    const items = page.activity.filter((e) => e.kind.type !== "hook").slice(0, 200);
    fill(page.activityBox, items.length
      ? items.map((e) => el("li", { class: "ev ev-" + e.kind.type }, el("time", { class: "muted" }, clock(e.at)), " ", describe(e)))
      : el("li", { class: "muted" }, "nothing yet"));
  }

  // ----- events page -----
  function routeEvents() {
    const page = { rows: [], session: "", type: "", live: true, table: el("tbody", { id: "events-body" }), more: null, oldest: null };
    view.events = page;
    const sessionInput = el("input", { type: "search", placeholder: "session name or id", "aria-label": "Session", id: "events-session" });
    const typeSelect = el("select", { "aria-label": "Type", id: "events-type" }, el("option", { value: "" }, "every type"), EVENT_TYPES.map((t) => el("option", { value: t }, t.replace(/_/g, " "))));
    const live = el("label", { class: "check" }, el("input", { type: "checkbox", checked: true, on: { change: (e) => { page.live = e.target.checked; } } }), " live");
    page.more = el("button", { type: "button", id: "events-more", on: { click: () => loadEvents(false) } }, "Older");
    const reload = () => { page.session = sessionInput.value.trim(); page.type = typeSelect.value; loadEvents(true); };
    sessionInput.addEventListener("change", reload);
    typeSelect.addEventListener("change", () => { page.type = typeSelect.value; drawEvents(); });
    fill($("#main"),
      el("section", { class: "toolbar" }, sessionInput, typeSelect, live),
      el("section", { class: "card" }, el("div", { class: "scroll" }, el("table", { class: "table events" },
        el("thead", {}, el("tr", {}, ["#", "time", "session", "type", "what"].map((h) => el("th", {}, h)))),
        page.table)), el("p", {}, page.more)));
    loadEvents(true);
  }

  async function loadEvents(fresh) {
    const page = view.events;
    if (!page) return;
    const before = fresh ? 0 : page.oldest;
    let url = "/events?limit=200&before=" + (before || 0);
    if (page.session) url += "&session=" + enc(page.session);
    try {
      const events = await api("GET", url);
      if (view.events !== page) return;
      page.rows = fresh ? events : page.rows.concat(events);
      if (events.length) page.oldest = events[events.length - 1].id;
      page.more.disabled = events.length < 200;
      page.more.textContent = events.length < 200 ? "No older events" : "Older";
      drawEvents();
    } catch (e) {
      flash("Could not read the events: " + e.message, "error");
    }
  }

  function eventRow(e) {
    return el("tr", { class: "ev ev-" + e.kind.type },
      el("td", { class: "num" }, e.id),
      el("td", {}, clock(e.at)),
      el("td", {}, e.session ? sessionLink(e.session) : ""),
      el("td", {}, e.kind.type.replace(/_/g, " ")),
      el("td", { class: "text" }, describe(e)));
  }

  function drawEvents() {
    const page = view.events;
    const rows = page.rows.filter((e) => !page.type || e.kind.type === page.type);
    fill(page.table, rows.length ? rows.map(eventRow) : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no events")));
  }

  function eventsPageEvent(event) {
    const page = view.events;
    if (!page.live) return;
    if (page.session) {
      const s = event.session ? model.sessions.get(event.session) : null;
      const wanted = page.session.toLowerCase();
      if (!s || !(s.id.startsWith(wanted) || (s.name || "").toLowerCase() === wanted)) return;
    }
    page.rows.unshift(event);
    if (!page.type || event.kind.type === page.type) {
      const body = page.table;
      if (body.firstChild && !body.firstChild.classList.contains("ev")) body.replaceChildren();
      body.prepend(eventRow(event));
    }
  }

  // ----- routing -----
  function route() {
    const hash = location.hash || "#/";
    for (const page of ["overview", "session", "events"]) {
      if (view[page] && view[page].screenTimer) clearTimeout(view[page].screenTimer);
      view[page] = null;
    }
    document.title = "sm";
    const nav = hash.startsWith("#/events") ? "events" : "overview";
    for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
    const m = hash.match(/^#\/s\/([^/?]+)/);
    if (m) routeSession(decodeURIComponent(m[1]));
    else if (hash.startsWith("#/events")) routeEvents();
    else routeOverview();
  }

  // Times in status tick without a redraw.
  setInterval(() => {
    for (const node of document.querySelectorAll("[data-since]")) node.textContent = ago(Number(node.dataset.since));
  }, 1000);

  async function start() {
    $("#logout").addEventListener("click", async () => {
      try { await fetch("/ui/logout", { method: "POST", headers: { "X-Sm-Dashboard": "1" }, credentials: "same-origin" }); } finally { location.reload(); }
    });
    window.addEventListener("hashchange", route);
    connect();
    try {
      await loadAll();
    } catch (e) {
      flash("Could not load the sessions: " + e.message, "error");
    }
    route();
    render(true);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
