// Drover's dashboard: reads the control plane's API with the token it was given and
// keeps the overview live from /api/v1/stream. Every value is written as text (never
// as HTML), so nothing in a repo or a status can run in the page.
"use strict";

const KEY = "drover-token";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(KEY) || "";
let scopes = [];
let status = null;
let streaming = null;

// What a scope allows, as the API decides it (server/auth.rs `allows`).
function allows(wanted) {
  return scopes.some((s) => s === "admin" || s === wanted ||
    (wanted.includes(":") && s === wanted.split(":")[0] + ":*"));
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
  });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { error: text }; }
  if (!response.ok) {
    const error = new Error((body && body.error) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

// An element with text and attributes.
function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function badge(text, tone) {
  return el("span", text, { class: "badge " + tone });
}

function tone(word) {
  if (["Synced", "Running", "Healthy", "ready", "healthy", "succeeded", "ok", "open"].includes(word)) return "ok";
  if (["Failed", "Abnormal", "Degraded", "down", "failed", "rolled-back", "refused", "error", "closed"].includes(word)) return "bad";
  return "warn";
}

// Replaces a table's rows: each row is a list of cells (text, or a node).
function fill(tableId, rows, empty) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  if (rows.length === 0) {
    const row = body.insertRow();
    const cell = row.insertCell();
    cell.colSpan = $(tableId).tHead.rows[0].cells.length;
    cell.className = "muted";
    cell.textContent = empty;
    return;
  }
  for (const cells of rows) {
    const row = body.insertRow();
    for (const c of cells) {
      const cell = row.insertCell();
      if (c instanceof Node) cell.append(c); else cell.textContent = c === null || c === undefined ? "" : String(c);
    }
  }
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

function short(id) {
  return id ? id.slice(0, 7) : "";
}

function button(text, onClick, extra = {}) {
  const b = el("button", text, { type: "button", ...extra });
  b.addEventListener("click", onClick);
  return b;
}

function toast(text) {
  $("toast").textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { $("toast").textContent = ""; }, 8000);
}

// Asks before a write. With `number`, asks for it too; resolves to the answer or null.
function confirmAction(text, number) {
  return new Promise((resolve) => {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    $("confirm-field").hidden = number === undefined;
    if (number !== undefined) $("confirm-input").value = number;
    dialog.returnValue = "";
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") return resolve(null);
      resolve(number === undefined ? true : Number($("confirm-input").value));
    }, { once: true });
    dialog.showModal();
    (number === undefined ? $("confirm-ok") : $("confirm-input")).focus();
  });
}

async function write(path, body, what) {
  try {
    const done = await api(path, { method: "POST", body: JSON.stringify(body) });
    toast(done && done.message ? done.message : what + ": done");
  } catch (e) {
    toast(what + " refused: " + e.message);
  }
}

// An environment's state as people read it: Updating while a release of it is judged,
// then as its services are (Abnormal if one is, Running once all are).
function environmentState(e) {
  if (e.release_open) return "Updating";
  const states = status.services.filter((s) => s.environment === e.name).map((s) => s.state);
  if (states.includes("Abnormal")) return "Abnormal";
  if (states.every((s) => s === "Running")) return "Running";
  return states.includes("Updating") ? "Updating" : "Starting";
}

function renderOverview() {
  fill("environments", status.environments.map((e) => {
    const state = environmentState(e);
    return [el("strong", e.name), e.cluster, el("code", e.revision || "", { title: e.summary || "" }),
      badge(e.sync, tone(e.sync)), badge(state, tone(state)), e.message];
  }), "No environment yet.");
  fill("services", status.services.map((s) => {
    const actions = allows("scale:" + s.environment)
      ? button("Scale…", async () => {
        const n = await confirmAction(`Scale ${s.environment}/${s.name} to how many replicas? It is a runtime change: the next commit that sets replicas wins.`, s.desired);
        if (n !== null) write(`/api/v1/services/${encodeURIComponent(s.environment)}/${encodeURIComponent(s.name)}/scale`, { replicas: n }, "scale");
      }, { "aria-label": `Scale ${s.environment}/${s.name}` })
      : "";
    return [s.environment, el("strong", s.name), s.version || "", badge(s.state, tone(s.state)),
      badge(s.health, tone(s.health)), el("span", `${s.ready}/${s.desired}`, { class: "num" }), s.message, actions];
  }), "No service yet.");
  fill("instances", status.instances.map((i) => [
    el("code", i.id), i.node, badge(i.state, tone(i.state === "running" ? "ok" : i.state)),
    i.ready ? "yes" : "no", i.restarts, i.last_failure || "",
  ]), "No instance.");
  fill("nodes", status.nodes.map((n) => [
    el("strong", n.name), n.cluster, badge(n.status, tone(n.status)),
    n.availability + (n.availability_override ? " (override)" : ""), n.instances,
    `${n.cpu_used_millis}m / ${n.cpu}`, `${Math.round(n.memory_used_bytes / 1048576)}Mi / ${n.memory}`,
  ]), "No node.");
  fill("gates", (status.promotions || []).map((g) => [
    g.from, g.to, badge(g.open ? "open" : "closed", g.open ? "ok" : "bad"), g.message,
    allows("promote:" + g.to)
      ? button("Promote…", async () => {
        if (await confirmAction(`Promote ${g.from} to ${g.to}? A commit carrying ${g.from}'s versions to ${g.to} is written.`)) {
          write("/api/v1/promotions", { from: g.from, to: g.to }, "promotion");
        }
      }, { "aria-label": `Promote ${g.from} to ${g.to}` })
      : "",
  ]), "No environment promotes from another.");
  const select = $("history-env");
  const names = status.environments.map((e) => e.name);
  if ([...select.options].map((o) => o.value).join() !== names.join()) {
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => el("option", n, { value: n })));
    if (names.includes(chosen)) select.value = chosen;
  }
}

async function showHistory() {
  const env = $("history-env").value;
  if (!env) return;
  $("rollback").hidden = !allows("rollback:" + env);
  try {
    const releases = await api(`/api/v1/environments/${encodeURIComponent(env)}/history`);
    fill("releases", releases.map((r) => [
      el("code", short(r.revision), { title: r.revision }), r.summary, r.trigger,
      badge(r.result, tone(r.result)), r.reason, r.revert ? el("code", short(r.revert), { title: r.revert }) : "",
      when(r.started_ms),
      button("Diff", () => showDiff(r.revision), { "aria-label": `Diff of ${short(r.revision)}` }),
    ]), "No release yet.");
  } catch (e) {
    toast("history: " + e.message);
  }
}

async function showDiff(revision) {
  const section = $("diff");
  section.hidden = false;
  $("diff-title").textContent = `Loading ${short(revision)}…`;
  $("diff-body").replaceChildren();
  try {
    const d = await api(`/api/v1/revisions/${encodeURIComponent(revision)}/diff`);
    $("diff-title").textContent = `${short(d.revision)} ${d.summary} (against ${d.parent ? short(d.parent) : "nothing"})`;
    if (d.changes.changes.length === 0) {
      $("diff-body").append(el("p", "This revision changes no object."));
    }
    for (const c of d.changes.changes) {
      const where = c.environment ? `${c.environment}/${c.name}` : c.name;
      $("diff-body").append(el("h4", `${c.change}: ${c.kind} ${where}`));
      if (c.summary.length) {
        const list = el("ul");
        for (const line of c.summary) list.append(el("li", line));
        $("diff-body").append(list);
      }
      const pre = el("pre", null, { class: "diff", "aria-label": `YAML diff of ${where}` });
      for (const line of c.diff.split("\n")) {
        const cls = line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "";
        pre.append(el("span", line + "\n", cls ? { class: cls } : {}));
      }
      $("diff-body").append(pre);
    }
    $("diff-title").focus();
  } catch (e) {
    $("diff-title").textContent = "No diff: " + e.message;
  }
}

async function showList(view) {
  try {
    if (view === "promotions") {
      const list = await api("/api/v1/promotions");
      fill("promotion-list", list.map((p) => [p.id, p.from, p.to, badge(p.state, tone(p.state)),
        p.reason, p.commit ? el("code", short(p.commit)) : "", p.requested_by]), "No promotion yet.");
    } else if (view === "audit") {
      const list = await api("/api/v1/audit?limit=200");
      fill("audit-list", list.map((a) => [when(a.at_ms), a.who, a.origin, a.action, a.target,
        badge(a.outcome, tone(a.outcome)), a.detail]), "Nothing audited yet.");
    } else if (view === "events") {
      const list = await api("/api/v1/events?limit=200");
      fill("event-list", list.map((e) => [when(e.at_ms), e.environment, e.object, e.reason, e.message]), "No event yet.");
    }
  } catch (e) {
    toast(view + ": " + e.message);
  }
}

function show(view) {
  for (const b of document.querySelectorAll("nav button")) {
    if (b.dataset.view === view) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  }
  for (const v of ["overview", "history", "promotions", "audit", "events"]) $(v).hidden = v !== view;
  if (view === "history") showHistory();
  else showList(view);
}

// Reads the status stream (Server-Sent Events over fetch, so the token goes in a
// header) until it ends, then reconnects.
async function stream() {
  const controller = new AbortController();
  streaming = controller;
  while (streaming === controller) {
    try {
      const response = await fetch("/api/v1/stream", {
        headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
        signal: controller.signal,
      });
      if (!response.ok) throw new Error(response.statusText);
      $("live").textContent = "Live";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          frame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (e) {
      if (streaming !== controller) return;
    }
    $("live").textContent = "Reconnecting…";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function frame(text) {
  let event = "message";
  const data = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (event === "status") {
    status = JSON.parse(data.join("\n"));
    renderOverview();
    $("live").textContent = "Live, updated " + new Date().toLocaleTimeString();
  } else if (event === "error") {
    $("live").textContent = data.join(" ");
  }
}

async function signIn(given) {
  token = given;
  try {
    const me = await api("/api/v1/whoami");
    scopes = me.scopes;
    sessionStorage.setItem(KEY, token);
    $("who").textContent = `Signed in as ${me.name} (${scopes.join(", ")})`;
    $("login").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    $("login-error").textContent = "";
    stream();
  } catch (e) {
    token = "";
    sessionStorage.removeItem(KEY);
    $("login").hidden = false;
    $("app").hidden = true;
    $("login-error").textContent = e.status === 401 ? "That token is unknown or revoked." : "Sign-in failed: " + e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value.trim());
  });
  $("sign-out").addEventListener("click", () => {
    if (streaming) streaming.abort();
    streaming = null;
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.view));
  $("history-env").addEventListener("change", showHistory);
  $("rollback").addEventListener("click", async () => {
    const env = $("history-env").value;
    if (await confirmAction(`Roll ${env} back to its last healthy release? A commit restoring it is written to Git.`)) {
      await write(`/api/v1/environments/${encodeURIComponent(env)}/rollback`, {}, "rollback");
      setTimeout(showHistory, 1000);
    }
  });
  $("diff-title").tabIndex = -1;
  if (token) signIn(token);
});
