// inngest-mw web UI: forms and buttons call the engine's JSON API; pages marked data-live
// refresh their live part when the engine's event stream (/v1/stream) says something changed.
"use strict";

function flash(text, isError) {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.className = isError ? "flash bad" : "flash";
  box.hidden = false;
}

// With a signing key, the engine's sign-in set this cookie; every change the UI makes sends it
// back as a header, which a page on another site cannot do (see the engine's uiauth module).
function csrfToken() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("inngest_mw_csrf="));
  return found ? decodeURIComponent(found.slice("inngest_mw_csrf=".length)) : "";
}

async function callApi(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Inngest-MW-CSRF": csrfToken() },
    body: body === undefined ? "{}" : JSON.stringify(body),
  });
  let payload = null;
  try { payload = await response.json(); } catch (err) { payload = null; }
  if (!response.ok) {
    const reason = payload && (payload.error || (payload.results && payload.results
      .filter((r) => !r.ok).map((r) => r.url + ": " + (r.error || r.body)).join("; ")));
    throw new Error(reason || ("the engine answered " + response.status));
  }
  return payload;
}

function after(payload) {
  const data = payload && payload.data;
  if (data && data.run_id) { location.href = "/runs/" + data.run_id; return; }
  if (data && data.ids) { flash("sent: event " + data.ids.join(", ")); }
  refresh(true);
}

// A textarea marked data-json must hold a JSON object; the form says what is wrong, not sent.
function readJson(form) {
  const area = form.querySelector("textarea[data-json]");
  if (!area) return { ok: true };
  const message = form.querySelector(".json-error");
  const anyJson = form.hasAttribute("data-any-json");
  let value;
  try {
    value = area.value.trim() === "" ? (anyJson ? null : {}) : JSON.parse(area.value);
    if (!anyJson && (value === null || typeof value !== "object" || Array.isArray(value))) {
      throw new Error("data must be a JSON object, like {\"id\": 1}");
    }
  } catch (err) {
    message.textContent = "Not valid: " + err.message;
    message.hidden = false;
    area.classList.add("invalid");
    return { ok: false };
  }
  message.hidden = true;
  area.classList.remove("invalid");
  return { ok: true, value: value };
}

async function submitForm(form) {
  const kind = form.dataset.kind;
  const json = readJson(form);
  if (!json.ok) return;
  let url = form.dataset.api;
  let body;
  if (kind === "send-event") body = { name: form.elements.name.value, data: json.value };
  else if (kind === "invoke") body = { data: json.value };
  else if (kind === "rerun-from") body = { from_step: form.elements.from_step.value };
  else if (kind === "signal") body = { signal: form.dataset.signal, data: json.value };
  else if (kind === "sync-url") { url = "/fn/sync?url=" + encodeURIComponent(form.elements.url.value); }
  try {
    after(await callApi(url, body));
  } catch (err) {
    flash(err.message, true);
  }
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.dataset.kind) return;
  event.preventDefault();
  submitForm(form);
});

document.addEventListener("input", (event) => {
  const area = event.target;
  if (area.matches && area.matches("textarea[data-json]") && area.classList.contains("invalid")) {
    readJson(area.form);
  }
});

document.addEventListener("click", async (event) => {
  const button = event.target.closest ? event.target.closest("button[data-post]") : null;
  if (!button) return;
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  try {
    after(await callApi(button.dataset.post));
  } catch (err) {
    flash(err.message, true);
  } finally {
    button.disabled = false;
  }
});

// Times come as UTC ISO strings: show them in the browser's local time.
function localTimes(root) {
  root.querySelectorAll("time[datetime]").forEach((node) => {
    const when = new Date(node.getAttribute("datetime"));
    if (!isNaN(when)) {
      node.textContent = when.toLocaleString(undefined, { hour12: false });
      node.title = node.getAttribute("datetime");
    }
  });
}

let pending = null;
let inFlight = false;

async function refresh(now) {
  const live = document.getElementById("live");
  if (!live) return;
  if (new URLSearchParams(location.search).get("cursor")) return; // an older page stays put
  if (pending) clearTimeout(pending);
  pending = setTimeout(async () => {
    pending = null;
    if (inFlight) { refresh(); return; }
    inFlight = true;
    try {
      const response = await fetch(location.href, { headers: { Accept: "text/html" } });
      const html = await response.text();
      const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
      const current = document.getElementById("live");
      if (fresh && current) {
        const open = new Set([...current.querySelectorAll("details[open]")].map(pathOf));
        const typed = formState(current);
        current.replaceWith(fresh);
        fresh.querySelectorAll("details").forEach((d) => { if (open.has(pathOf(d))) d.open = true; });
        restoreForms(fresh, typed);
        localTimes(fresh);
      }
    } finally {
      inFlight = false;
    }
  }, now ? 0 : 250);
}

// What the visitor chose or typed in the page's forms, and where the focus was: a refresh keeps
// both, so a choice made while the page updates is never lost.
function formState(root) {
  const values = new Map();
  root.querySelectorAll("select[id], input[id], textarea[id]").forEach((el) => values.set(el.id, el.value));
  const focused = root.contains(document.activeElement) ? document.activeElement.id : "";
  return { values, focused };
}

function restoreForms(root, state) {
  state.values.forEach((value, id) => {
    const el = root.querySelector("#" + CSS.escape(id));
    if (!el) return;
    if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === value)) return;
    el.value = value;
  });
  if (state.focused) {
    const el = root.querySelector("#" + CSS.escape(state.focused));
    if (el) el.focus();
  }
}

function pathOf(node) {
  const row = node.closest("[data-event],[data-run],[data-step]");
  return (row ? row.outerHTML.slice(0, 80) : "") + [...node.parentNode.children].indexOf(node);
}

function relevant(message) {
  const live = document.getElementById("live");
  if (!live) return false;
  const kind = live.dataset.live;
  if (kind === "run") return message.kind === "history" && message.run_id === live.dataset.run;
  if (kind === "apps") return message.kind === "sync";
  if (kind === "events") return message.kind === "event" || message.kind === "history";
  return message.kind === "history";
}

function connect() {
  const dot = document.getElementById("live-dot");
  const stream = new EventSource("/v1/stream");
  // Catch up on whatever changed between rendering this page and the stream opening.
  stream.onopen = () => { dot.classList.add("on"); refresh(true); };
  stream.onerror = () => { dot.classList.remove("on"); };
  stream.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (relevant(message)) refresh();
  };
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  if (document.getElementById("live")) connect();
});
