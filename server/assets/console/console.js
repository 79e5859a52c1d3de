// The Rookery console (docs/CONSOLE.md). The admin key lives in `key` below and nowhere
// else: not in a URL, a cookie or storage. Live data comes over one stream, server-sent
// events read with fetch() so that the key travels in the Authorization header; actions
// go through the admin HTTP API with the same header.

const $ = (id) => document.getElementById(id);
let key = null;          // the admin key, in memory only
let feed = null;         // the open feed's AbortController
let room = null;         // the room whose page is open
let retry = null;        // timer of the next feed reconnect
let configDirty = false; // the config box holds an edit not yet sent
const HISTORY = 60;      // samples kept per plot (one a second)

// Cards: what the stats event carries, how to show it, and its plot's samples.
const cards = [
  { id: "connections", label: "Connections", fmt: int },
  { id: "rooms", label: "Rooms", fmt: int },
  { id: "deliveriesPerSec", label: "Deliveries/s", fmt: rate },
  { id: "messagesPerSec", label: "Messages in/s", fmt: rate },
  { id: "queuedBytes", label: "Queued bytes", fmt: bytes },
  { id: "slowConsumers", label: "Slow consumers", fmt: int },
].map((c) => ({ ...c, samples: [] }));

function int(n) { return Math.round(n).toLocaleString("en"); }
function rate(n) { return n < 10 ? n.toFixed(1) : int(n); }
function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

/** An element with attributes and children (text nodes for strings): never innerHTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function buildCards() {
  $("cards").replaceChildren(...cards.map((c) => {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${HISTORY - 1} 30`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("class", "plot");
    const area = document.createElementNS(SVG, "polygon");
    area.setAttribute("class", "area");
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", "line");
    svg.append(area, line);
    c.area = area;
    c.line = line;
    c.value = el("p", { class: "value", id: `v-${c.id}` }, "–");
    c.range = el("p", { class: "range muted" }, "");
    return el("div", { class: "card stat" }, el("h3", {}, c.label), c.value, svg, c.range);
  }));
}

/** Draws a card's samples as a line over a filled area, scaled to their maximum. */
function plot(c) {
  const max = Math.max(1, ...c.samples);
  const offset = HISTORY - c.samples.length;
  const points = c.samples.map((v, i) => `${i + offset},${(30 - (v / max) * 28 - 1).toFixed(2)}`);
  c.line.setAttribute("points", points.join(" "));
  const first = offset;
  const last = HISTORY - 1;
  c.area.setAttribute("points", points.length ? `${first},30 ${points.join(" ")} ${last},30` : "");
  c.range.textContent = `last ${c.samples.length} s, max ${c.fmt(Math.max(0, ...c.samples))}`;
}

function onStats(s) {
  for (const c of cards) {
    // A rate is null in a feed's first tick (nothing to compare with yet): keep the plot.
    if (s[c.id] === null) continue;
    const v = Number(s[c.id] || 0);
    c.value.textContent = c.fmt(v);
    c.samples.push(v);
    if (c.samples.length > HISTORY) c.samples.shift();
    plot(c);
  }
  const errors = Object.entries(s.errors || {}).filter(([d]) => d !== "echo");
  $("errors").textContent = errors.map(([d, n]) => `${d} ${int(n)}`).join(" · ");
  const closes = Object.entries(s.closes || {}).filter(([, n]) => n > 0);
  $("closes").textContent = closes.length ? closes.map(([code, n]) => `${code} ×${int(n)}`).join(" · ") : "none";
  $("rate-limited").textContent = int(s.rateLimited || 0);
  if (!s.storeHealthy) setStatus("The state store is failing: see the server's log.");
}

function onRooms(list) {
  $("rooms-total").textContent = `(${int(list.total)} live${list.total > list.rooms.length ? `, ${list.rooms.length} shown` : ""})`;
  const rows = list.rooms.map((r) => el("tr", { "data-room": r.name },
    el("th", { scope: "row" }, el("button", { type: "button", class: "link", onclick: () => openRoom(r.name) }, r.name)),
    el("td", { class: "num members" }, int(r.members)),
    el("td", { class: "num" }, rate(r.rate)),
    el("td", { class: "num" }, int(r.seq))));
  $("rooms").tBodies[0].replaceChildren(...rows);
  $("rooms-empty").hidden = rows.length > 0;
}

function onRoom(page) {
  if (!room || page.room !== room) return;
  $("room-live").textContent = page.live ? "live" : "idle (no members)";
  const members = page.members || [];
  $("member-count").textContent = members.length;
  $("members").tBodies[0].replaceChildren(...members.map((m) => {
    const name = m.properties && Object.keys(m.properties).length ? JSON.stringify(m.properties) : "—";
    return el("tr", { "data-id": m.id },
      el("td", { class: "mono" }, m.id),
      el("td", { class: "dialect" }, m.dialect || ""),
      el("td", { class: "mono" }, name),
      el("td", {}, el("button", { type: "button", class: "danger", onclick: () => disconnect(m.id) }, "Disconnect")));
  }));
  const polls = [];
  for (const [kind, all] of [["poll", page.polls || {}], ["ephemeral poll", page.ephemeralPolls || {}]]) {
    for (const [id, stats] of Object.entries(all)) {
      const total = Object.values(stats).reduce((a, b) => a + b, 0);
      polls.push(el("div", { class: "poll", "data-poll": id },
        el("p", {}, el("strong", {}, id), ` (${kind}, ${total} vote${total === 1 ? "" : "s"})`),
        ...Object.entries(stats).map(([answer, n]) => bar(answer, n, total))));
    }
  }
  $("polls").replaceChildren(...(polls.length ? polls : [el("p", { class: "muted" }, "none")]));
  const counters = Object.entries(page.counters || {});
  $("counters").replaceChildren(...counters.flatMap(([id, v]) =>
    [el("dt", {}, id), el("dd", { "data-counter": id }, String(v))]));
  if (!counters.length) $("counters").replaceChildren(el("dd", { class: "muted" }, "none"));
  if (!configDirty && document.activeElement !== $("config")) $("config").value = page.config ?? "";
  $("room-pos").textContent = page.pos ? `epoch ${page.pos.epoch}, seq ${page.pos.seq}` : "—";
  $("tail-skipped").textContent = page.tailSkipped ? `(${page.tailSkipped} skipped: too fast to show)` : "";
}

/** One poll answer as a labelled bar (a meter element, so it is read out too). */
function bar(answer, n, total) {
  const meter = el("meter", { min: 0, max: Math.max(total, 1), value: n });
  meter.setAttribute("aria-label", answer);
  return el("p", { class: "answer" }, el("span", { class: "label" }, answer), meter, el("span", { class: "num" }, String(n)));
}

function onTail(event) {
  const li = el("li", {},
    el("time", {}, new Date().toLocaleTimeString("en-GB")), " ",
    el("strong", {}, event.type || "?"), " ",
    el("code", {}, JSON.stringify(event.data ?? null)));
  const list = $("tail");
  list.prepend(li);
  while (list.children.length > 200) list.lastElementChild.remove();
}

function setStatus(text) { $("action-status").textContent = text; }

// The feed: one fetch whose body is a stream of server-sent events.
async function openFeed() {
  clearTimeout(retry);
  if (feed) feed.abort();
  if (!key) return;
  const controller = new AbortController();
  feed = controller;
  const params = new URLSearchParams({ q: $("search").value, sort: $("sort").value });
  if (room) params.set("room", room);
  try {
    const res = await fetch(`/console/api/feed?${params}`, {
      headers: { Authorization: `Bearer ${key}` }, cache: "no-store", signal: controller.signal,
    });
    if (res.status === 401 || res.status === 403) return logout("The server no longer takes this key.");
    if (!res.ok) throw new Error(`feed answered ${res.status}`);
    $("feed-state").textContent = "live";
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (e) {
    if (controller.signal.aborted) return;
    console.warn("console feed:", e);
  }
  if (controller.signal.aborted || feed !== controller) return;
  $("feed-state").textContent = "reconnecting…";
  retry = setTimeout(openFeed, 2000);
}

function dispatch(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data.push(line.slice(6));
  }
  const value = JSON.parse(data.join("\n"));
  if (name === "stats") onStats(value);
  else if (name === "rooms") onRooms(value);
  else if (name === "room") onRoom(value);
  else if (name === "tail") onTail(value);
}

// Actions, through the admin HTTP API.
async function admin(method, path, body) {
  const res = await fetch(path, {
    method, body, cache: "no-store",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
  });
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(answer.error ? `${answer.error.code}: ${answer.error.message}` : `HTTP ${res.status}`);
  return answer;
}

async function disconnect(id) {
  if (!confirm(`Disconnect client ${id}? Its connection is closed (code 1000); it may reconnect.`)) return;
  try {
    const answer = await admin("DELETE", `/api/clients/${encodeURIComponent(id)}`);
    setStatus(`Disconnected ${id} (${answer.disconnected} connection${answer.disconnected === 1 ? "" : "s"}).`);
  } catch (e) { setStatus(`Disconnect failed: ${e.message}`); }
}

$("config-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!confirm(`Replace the config of room ${room}? Every member gets the new one.`)) return;
  try {
    await admin("PUT", `/api/rooms/${encodeURIComponent(room)}/config`, $("config").value);
    configDirty = false;
    setStatus(`Config of ${room} set.`);
  } catch (err) { setStatus(`Set config failed: ${err.message}`); }
});
$("config").addEventListener("input", () => { configDirty = true; });

$("broadcast-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  let data;
  try { data = JSON.parse($("bc-data").value); } catch { return setStatus("Broadcast data must be JSON."); }
  const body = { type: $("bc-type").value, data };
  if ($("bc-to").value) body.to = $("bc-to").value;
  try {
    await admin("POST", `/api/rooms/${encodeURIComponent(room)}/broadcast`, JSON.stringify(body));
    setStatus(`Broadcast sent to ${room}.`);
  } catch (err) { setStatus(`Broadcast failed: ${err.message}`); }
});

function openRoom(name) {
  room = name;
  configDirty = false;
  $("room-title").textContent = name;
  $("room-live").textContent = "";
  $("tail").replaceChildren();
  $("members").tBodies[0].replaceChildren();
  $("rooms-view").hidden = true;
  $("room-view").hidden = false;
  openFeed();
  $("back").focus();
}

function closeRoom() {
  const was = room;
  room = null;
  $("room-view").hidden = true;
  $("rooms-view").hidden = false;
  openFeed();
  const button = [...document.querySelectorAll("#rooms tbody tr")].find((r) => r.dataset.room === was);
  (button ? button.querySelector("button") : $("search")).focus();
}

$("back").addEventListener("click", closeRoom);
$("open-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("open-room").value.trim();
  if (name) openRoom(name);
});
let searchTimer = null;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(openFeed, 300);
});
$("sort").addEventListener("change", openFeed);

// Logging in: the key is checked by the server, then kept in `key` only.
$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const given = $("key").value;
  $("login-error").textContent = "";
  let res;
  try {
    res = await fetch("/console/api/session", { headers: { Authorization: `Bearer ${given}` }, cache: "no-store" });
  } catch { $("login-error").textContent = "The server cannot be reached."; return; }
  if (!res.ok) {
    const answer = await res.json().catch(() => ({}));
    $("login-error").textContent = res.status === 401 ? "Wrong admin key." : (answer.error?.message || `HTTP ${res.status}`);
    $("key").select();
    return;
  }
  const session = await res.json();
  key = given;
  $("key").value = "";
  $("login-view").hidden = true;
  $("dash").hidden = false;
  $("logout").hidden = false;
  document.title = `Rookery ${session.version} console`;
  openFeed();
  $("search").focus();
});

function logout(why = "") {
  key = null;
  room = null;
  clearTimeout(retry);
  if (feed) feed.abort();
  feed = null;
  for (const c of cards) c.samples.length = 0;
  $("dash").hidden = true;
  $("room-view").hidden = true;
  $("rooms-view").hidden = false;
  $("logout").hidden = true;
  $("login-view").hidden = false;
  $("feed-state").textContent = "";
  $("login-error").textContent = why;
  $("key").focus();
}
$("logout").addEventListener("click", () => logout());

buildCards();
$("key").focus();
