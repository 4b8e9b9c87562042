// cadenza studio: the page. Plain ES module, no framework; it talks only to the studio's JSON API
// (docs/studio-api.md) and plays notes with Tone.js (vendor/Tone.js, a classic script: window.Tone).

import { Roll, noteName } from "/static/roll.js";
import { Player } from "/static/player.js";

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------------------------ the API
class ApiError extends Error {}

async function api(method, path, body, form) {
  const init = { method, headers: { Accept: "application/json" } };
  if (form) init.body = form;
  else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(`cannot reach the studio server (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    let detail = data && data.detail;
    if (detail && typeof detail !== "string") detail = JSON.stringify(detail);
    throw new ApiError(detail || `the server answered ${res.status} ${res.statusText}`);
  }
  return data;
}

// ------------------------------------------------------------------------------------ state
const S = {
  options: null,
  take: null,          // the current take (full, with notes)
  seed: null,          // the take generation starts from (null: none)
  melody: null,        // the harmonize tab's melody
  harmony: null,       // the last harmonization shown in the harmonize tab
  takes: new Map(),    // id -> full take, for every take this page made or saw
  history: [],         // take ids in order of arrival
  undo: [],            // take ids that were current, newest last
  job: null,           // {id, kind, status, position, streamed, roll, es, ...}
  learn: null,         // {steps, i, base}
  surprise: null,
  sheets: new Map(),   // take id -> [svg text]
  tab: "compose",
};

const roll = new Roll($("piano-roll"), { strip: true, onSelect: (a, b) => setBarRange(a, b) });
const learnRoll = new Roll($("learn-roll"), { strip: true });
const harmRoll = new Roll($("harmonize-roll"), { strip: true, beats: true, onPlotClick: (t) => harmonizeBeatAt(t),
  onHover: (t) => showBeat(t) });
const player = new Player($("audio"));

// ------------------------------------------------------------------------------------ messages
function setStatus(text) { $("status").textContent = text; }

function showMessage(text) {
  $("message-text").textContent = text;
  $("message").hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
  $("message-text").textContent = "";
}

function fail(e, what) {
  const text = e instanceof ApiError || e instanceof Error ? e.message : String(e);
  showMessage(what ? `${what}: ${text}` : text);
  setStatus(what ? `${what} failed` : "Something went wrong");
}

$("message-close").addEventListener("click", clearMessage);

// ------------------------------------------------------------------------------------ tabs
function showTab(name) {
  S.tab = name;
  for (const b of document.querySelectorAll(".tabs button")) {
    const on = b.dataset.tab === name;
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
    $(`panel-${b.dataset.tab}`).hidden = !on;
  }
  if (name === "harmonize") refreshHarmonize();
  if (name === "learn") refreshLearnLabels();
  for (const r of [roll, learnRoll, harmRoll]) r.resize();
  drawSurprise();
}

for (const b of document.querySelectorAll(".tabs button")) {
  b.addEventListener("click", () => showTab(b.dataset.tab));
  b.addEventListener("keydown", (e) => {
    const tabs = [...document.querySelectorAll(".tabs button")];
    const k = tabs.indexOf(b) + (e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0);
    if (k !== tabs.indexOf(b)) {
      const t = tabs[(k + tabs.length) % tabs.length];
      t.focus();
      showTab(t.dataset.tab);
    }
  });
}

// ------------------------------------------------------------------------------------ options
function currentModel() {
  return (S.options?.models || []).find((m) => m.name === $("model").value) || null;
}

// Models that write music from tokens (family remi-lm); the chorale harmonizer has its own tab.
function generationModels(o) {
  const gen = o.models.filter((m) => m.family === "remi-lm");
  return gen.length ? gen : o.models;
}

function fillSelect(sel, values, { keepFirst = false, selected = null } = {}) {
  const first = keepFirst ? sel.options[0] : null;
  sel.textContent = "";
  if (first) sel.append(first);
  for (const v of values) {
    const o = document.createElement("option");
    o.value = v;
    o.textContent = v;
    if (v === selected) o.selected = true;
    sel.append(o);
  }
}

function onModelChange() {
  const m = currentModel();
  if (!m) return;
  fillSelect($("style"), m.styles, { selected: m.default_style || m.styles[0] });
  const key = $("key");
  key.disabled = !m.key_control;
  if (!m.key_control) key.value = "";
  $("key-hint").hidden = !!m.key_control;
  key.title = m.key_control ? "" : "This model has no key control";
  for (const id of ["chords-follow", "chords-repeat"]) $(id).disabled = !m.chord_control;
  $("chords-hint").hidden = !!m.chord_control;
}

async function loadOptions() {
  const o = await api("GET", "/api/options");
  S.options = o;
  const models = generationModels(o);
  fillSelect($("model"), models.map((m) => m.name), { selected: o.default_model || models[0]?.name });
  for (const opt of $("model").options) {
    const m = models.find((x) => x.name === opt.value);
    if (m) opt.textContent = `${m.name} (${m.styles.length} style${m.styles.length === 1 ? "" : "s"})`;
  }
  onModelChange();
  fillSelect($("meter"), o.meters, { keepFirst: true });
  fillSelect($("key"), o.keys, { keepFirst: true });
  if (!currentModel()?.key_control) $("key").value = "";
  fillSelect($("instruments"), o.instruments);
  const lim = o.limits || {};
  if (lim.bars) { $("bars").max = lim.bars; $("bar-from").max = lim.bars; $("bar-to").max = lim.bars; }
  for (const id of ["temperature", "harm-temperature"]) {  // the ranges the CLI and the API take
    if (lim.temperature_min != null) $(id).min = lim.temperature_min;
    if (lim.temperature_max != null) $(id).max = lim.temperature_max;
  }
  if (lim.tempo_min != null) { $("tempo").min = lim.tempo_min; $("tempo").max = lim.tempo_max; }
  const d = o.defaults || {};
  if (d.bars != null) $("bars").value = d.bars;
  if (d.temperature != null) $("temperature").value = d.temperature;
  if (d.top_p != null) $("top-p").value = d.top_p;
  if (d.tempo != null) $("tempo").placeholder = `auto (${d.tempo})`;
  if (d.meter) $("meter").options[0].textContent = `auto (${d.meter})`;
  syncOutputs();
}

$("model").addEventListener("change", onModelChange);

function syncOutputs() {
  $("temperature-out").textContent = Number($("temperature").value).toFixed(2);
  $("top-p-out").textContent = Number($("top-p").value).toFixed(2);
  $("harm-temperature-out").textContent = Number($("harm-temperature").value).toFixed(2);
}
for (const id of ["temperature", "top-p", "harm-temperature"]) $(id).addEventListener("input", syncOutputs);
$("length-unit").addEventListener("change", () => {
  const secs = $("length-unit").value === "seconds";
  $("bars").max = secs ? (S.options?.limits?.seconds ?? 300) : (S.options?.limits?.bars ?? 128);
});

// Reading the controls. A blank optional field is null; a field that is not a number is an error.
function num(id, { optional = false, int = false } = {}) {
  const el = $(id);
  const raw = el.value.trim();
  if (raw === "") {
    if (optional) return null;
    throw new ApiError(`${labelOf(el)}: give a number`);
  }
  const v = Number(raw);
  if (!Number.isFinite(v) || (int && !Number.isInteger(v))) throw new ApiError(`${labelOf(el)}: '${raw}' is not ${int ? "a whole number" : "a number"}`);
  return v;
}

function labelOf(el) {
  const l = el.closest("label");
  return l ? l.firstChild.textContent.trim() : el.id;
}

function sampling() {
  return {
    model: $("model").value || null,
    style: $("style").value || null,
    temperature: num("temperature"),
    top_p: num("top-p"),
    random_seed: num("random-seed", { optional: true, int: true }),
  };
}

function generateBody(seedTake) {
  const length = num("bars");
  const secs = $("length-unit").value === "seconds";
  const instruments = [...$("instruments").selectedOptions].map((o) => o.value);
  return {
    ...sampling(),
    seed_take: seedTake ? seedTake.id : null,
    bars: secs ? null : length,
    seconds: secs ? length : null,
    tempo: num("tempo", { optional: true }),
    key: $("key").disabled ? null : ($("key").value || null),
    meter: $("meter").value || null,
    instruments: instruments.length ? instruments : null,
    chords: $("chords-follow").disabled ? null : ($("chords-follow").value.trim() || null),
    repeat: $("chords-follow").disabled ? 1 : (num("chords-repeat", { optional: true, int: true }) || 1),
  };
}

// ------------------------------------------------------------------------------------ takes
function remember(take) {
  S.takes.set(take.id, take);
  if (!S.history.includes(take.id)) S.history.push(take.id);
  renderHistory();
}

function setCurrent(take, { push = true } = {}) {
  if (S.job && S.job.roll === roll) return; // never while a generation is drawing on the roll
  if (player.playing) stopPlayback();
  S.take = take;
  if (take && push && S.undo[S.undo.length - 1] !== take.id) S.undo.push(take.id);
  roll.setTake(take);
  if (take && take.kind !== "harmonize") S.melody = take;
  if (take && take.kind === "harmonize") S.harmony = take;
  resetCursor();
  updateTakeUi();
}

function resetCursor() {
  player.reset();
  $("cursor-time").textContent = fmtTime(0);
}

function updateTakeUi() {
  const t = S.take;
  for (const [id, ext] of [["download-mid", "mid"], ["download-musicxml", "musicxml"], ["download-wav", "wav"]]) {
    const a = $(id);
    if (t) {
      a.href = `/api/takes/${t.id}/file.${ext}`;
      a.classList.remove("disabled");
      a.removeAttribute("aria-disabled");
    } else {
      a.removeAttribute("href");
      a.classList.add("disabled");
      a.setAttribute("aria-disabled", "true");
    }
  }
  $("take-info").textContent = t ? `${t.label} · ${t.bars} bars · ${fmtTime(t.seconds)} · ${t.tempo.toFixed(0)} BPM · ${t.meter}` : "";
  updateCount();
  updateLegend(roll, $("legend"));
  renderHistory();
  updateButtons();
  if ($("sheet-panel").open) loadSheet(t, $("sheet"));
  else $("sheet").innerHTML = t ? '<p class="hint">Open to engrave the current take.</p>' : '<p class="hint">No take yet.</p>';
  refreshLearnLabels();
  refreshHarmonize();
  if (t && S.surprise && S.surprise.take !== t.id) { S.surprise = null; drawSurprise(); }
}

function updateCount() {
  const n = roll.notes.length;
  const streamed = S.job && S.job.roll === roll ? ` (${S.job.streamed} new)` : "";
  $("note-count").textContent = `${plural(n, "note")}${streamed}`;
}

function updateLegend(r, el) {
  el.textContent = "";
  for (const [name, color] of r.legend()) {
    const s = document.createElement("span");
    const i = document.createElement("i");
    i.style.background = color;
    s.append(i, name);
    el.append(s);
  }
}

function updateButtons() {
  const busy = !!S.job;
  const t = S.take;
  $("generate").disabled = busy || !S.options;
  $("continue").disabled = busy || !t;
  $("stop").disabled = !busy;
  $("regenerate").disabled = busy || !t;
  $("undo").disabled = busy || S.undo.length < 2;
  $("play").disabled = roll.notes.length === 0 && !player.playing;
  $("surprise-run").disabled = !t;
  $("harmonize").disabled = busy || !S.melody;
  $("harm-play").disabled = harmRoll.notes.length === 0 && !player.playing;
  $("learn-start").disabled = !S.options;
  $("use-text").disabled = busy;
  $("file").disabled = busy;
  for (const h of document.querySelectorAll("#history button")) h.disabled = busy;
}

function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

function fmtTime(s) {
  s = Math.max(0, s || 0);
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
}

function renderHistory() {
  const ol = $("history");
  ol.textContent = "";
  S.history.forEach((id, k) => {
    const t = S.takes.get(id);
    if (!t) return;
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.take = id;
    if (S.take && S.take.id === id) b.setAttribute("aria-current", "true");
    const when = new Date(t.created * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    for (const [cls, text] of [["k", `#${k + 1}`], ["label", t.label], ["k", `${t.bars} bars · ${t.notes.length} notes`], ["k", when]]) {
      const s = document.createElement("span");
      s.className = cls;
      s.textContent = text;
      b.append(s);
    }
    b.title = `${t.kind}${t.parent ? ` of #${S.history.indexOf(t.parent) + 1}` : ""}: ${t.label}`;
    b.disabled = !!S.job;
    b.addEventListener("click", () => { setCurrent(S.takes.get(id)); setStatus(`Showing #${k + 1}: ${t.label}`); });
    li.append(b);
    ol.prepend(li); // newest on top
  });
}

$("undo").addEventListener("click", () => {
  if (S.undo.length < 2) return;
  S.undo.pop();
  const t = S.takes.get(S.undo[S.undo.length - 1]);
  setCurrent(t, { push: false });
  setStatus(`Back to: ${t.label}`);
});

// ------------------------------------------------------------------------------------ seeds
function setSeed(take) {
  S.seed = take;
  $("seed-info").textContent = take ? `${take.label} (${take.notes.length} notes)` : "none";
  refreshLearnLabels();
}

$("seed-none").addEventListener("click", () => {
  setSeed(null);
  setStatus("No seed: the model starts from nothing");
});

$("file").addEventListener("change", async () => {
  const input = $("file");
  const f = input.files && input.files[0];
  if (!f) return;
  clearMessage();
  const limit = S.options?.limits?.upload_bytes;
  try {
    if (limit && f.size > limit) throw new ApiError(`${f.name} is ${(f.size / 1e6).toFixed(1)} MB; the studio takes files up to ${(limit / 1e6).toFixed(1)} MB`);
    setStatus(`Uploading ${f.name}…`);
    const form = new FormData();
    form.append("file", f, f.name);
    const take = await api("POST", "/api/takes/upload", undefined, form);
    remember(take);
    setSeed(take);
    setCurrent(take);
    setStatus(`Uploaded ${f.name}: ${plural(take.notes.length, "note")}, ${plural(take.bars, "bar")}`);
  } catch (e) {
    fail(e, `Upload of ${f.name}`);
  } finally {
    input.value = "";
  }
});

$("use-text").addEventListener("click", async () => {
  clearMessage();
  const text = $("notes-text").value.trim();
  const kind = $("text-kind").value;
  try {
    if (!text) throw new ApiError(`type some ${kind} first (e.g. ${kind === "notes" ? "E4 D4 C4 D4" : "C G Am F"})`);
    setStatus(`Reading the ${kind}…`);
    const body = { notes: null, chords: null, tempo: num("tempo", { optional: true }), meter: $("meter").value || null };
    body[kind] = text;
    const take = await api("POST", "/api/takes/text", body);
    remember(take);
    setSeed(take);
    setCurrent(take);
    setStatus(`Seed: ${take.label}`);
  } catch (e) {
    fail(e, `Typed ${kind}`);
  }
});

$("clear-text").addEventListener("click", () => { $("notes-text").value = ""; });

function buildKeyboard() {
  const kb = $("keyboard");
  const whites = [];
  for (let p = 60; p < 84; p++) if (![1, 3, 6, 8, 10].includes(p % 12)) whites.push(p);
  const w = 100 / whites.length;
  for (let p = 60; p < 84; p++) {
    const black = [1, 3, 6, 8, 10].includes(p % 12);
    const b = document.createElement("button");
    b.type = "button";
    b.className = black ? "black" : "white";
    b.dataset.note = noteName(p);
    b.dataset.pitch = p;
    b.setAttribute("aria-label", `${noteName(p)}: add to the typed notes`);
    b.title = noteName(p);
    if (black) {
      const left = whites.indexOf(p - 1);
      b.style.left = `${(left + 1) * w - w * 0.3}%`;
      b.style.width = `${w * 0.6}%`;
    } else {
      b.style.left = `${whites.indexOf(p) * w}%`;
      b.style.width = `${w}%`;
      if (p % 12 === 0) b.textContent = noteName(p);
    }
    b.addEventListener("click", () => {
      const ta = $("notes-text");
      if ($("text-kind").value !== "notes") {
        $("text-kind").value = "notes";
        if (/^[A-G][#b]?(m|maj|min|dim|aug|sus|7)?/.test(ta.value.trim()) && !/\d/.test(ta.value)) ta.value = "";
      }
      ta.value = (ta.value.trimEnd() ? ta.value.trimEnd() + " " : "") + noteName(p);
      player.blip(p);
      b.classList.add("lit");
      setTimeout(() => b.classList.remove("lit"), 180);
    });
    kb.append(b);
  }
}

// ------------------------------------------------------------------------------------ jobs
// One job at a time from this page: its notes are drawn on `roll` as they arrive.
async function startJob(kind, path, body, view) {
  if (S.job) return;
  clearMessage();
  stopPlayback();
  let job;
  try {
    setStatus("Sending…");
    job = await api("POST", path, body);
  } catch (e) {
    fail(e, kind[0].toUpperCase() + kind.slice(1));
    return;
  }
  S.job = { id: job.id, kind, status: job.status, position: job.position, streamed: 0, roll: view.roll,
            done: false, es: null, onDone: view.onDone };
  view.roll.startStream(view.base || [], view.grid);
  if (view.selection) view.roll.setSelection(...view.selection);
  onJobStatus(job);
  updateButtons();
  updateCount();
  follow(job.id);
}

function follow(jobId) {
  const es = new EventSource(`/api/jobs/${jobId}/events`);
  S.job.es = es;
  const mine = () => S.job && S.job.id === jobId;
  es.addEventListener("status", (e) => { if (mine()) onJobStatus(JSON.parse(e.data)); });
  es.addEventListener("note", (e) => { if (mine()) onJobNote(JSON.parse(e.data)); });
  es.addEventListener("done", (e) => { es.close(); if (mine()) onJobDone(JSON.parse(e.data)); });
  es.addEventListener("error", (e) => {
    if (e.data !== undefined) { // the job's own error event
      es.close();
      if (mine()) { const d = JSON.parse(e.data); onJobEnd("error", d.message || d.job?.error || "the job failed"); }
      return;
    }
    // the connection broke: stop listening (a reconnect would replay every event) and poll instead
    es.close();
    if (mine() && !S.job.done) poll(jobId);
  });
  es.addEventListener("cancelled", () => { es.close(); if (mine()) onJobEnd("cancelled"); });
}

async function poll(jobId) {
  setStatus("Connection lost; checking the job…");
  for (let k = 0; k < 1200 && S.job && S.job.id === jobId; k++) {
    try {
      const j = await api("GET", `/api/jobs/${jobId}`);
      if (j.status === "done" && j.take) {
        const take = await api("GET", `/api/takes/${j.take}`);
        onJobDone({ job: j, take });
        return;
      }
      if (j.status === "error") return onJobEnd("error", j.error || "the job failed");
      if (j.status === "cancelled") return onJobEnd("cancelled");
      onJobStatus(j);
    } catch (e) {
      if (e instanceof ApiError && /no job/.test(e.message)) return onJobEnd("error", e.message);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

const VERB = { generate: "Generating", regenerate: "Regenerating bars", harmonize: "Harmonizing" };

function onJobStatus(job) {
  S.job.status = job.status;
  S.job.position = job.position;
  const q = $("queue");
  if (job.status === "queued") {
    q.textContent = job.position > 0 ? `Queued: ${job.position} job${job.position === 1 ? "" : "s"} ahead` : "Queued: next";
    setStatus(`Waiting for the model… (${job.position} ahead)`);
  } else if (job.status === "running") {
    q.textContent = "";
    setStatus(`${VERB[S.job.kind] || "Working"}…`);
  }
}

function onJobNote(n) {
  const j = S.job;
  j.streamed++;
  j.roll.addNote(n);
  player.add(j.roll, n);
  if (j.roll === roll) updateCount();
  if (j.roll === harmRoll) $("harm-play").disabled = false;
  $("play").disabled = roll.notes.length === 0;
  if (j.streamed % 8 === 1) setStatus(`${VERB[j.kind] || "Working"}… ${plural(j.streamed, "note")}, bar ${n.bar}`);
}

function onJobDone(data) {
  const j = S.job;
  j.done = true;
  const take = data.take;
  const r = j.roll;
  S.job = null;
  $("queue").textContent = "";
  r.endStream();
  remember(take);
  if (r === roll) {
    const wasPlaying = player.playing && player.roll === roll;
    // the take becomes current; a playback in progress goes on with the take's notes
    S.take = take;
    if (S.undo[S.undo.length - 1] !== take.id) S.undo.push(take.id);
    roll.setTake(take, { keepCursor: wasPlaying });
    if (wasPlaying) player.update(roll, take.notes, take.seconds);
    updateTakeUi();
  }
  if (j.onDone) j.onDone(take);
  updateButtons();
  const notes = Array.isArray(data.messages) && data.messages.length ? ` · ${data.messages.join(" · ")}` : "";
  setStatus(`Done: ${take.label} (${plural(take.notes.length, "note")}, ${plural(take.bars, "bar")})${notes}`);
  if (!take.notes.length) {
    showMessage("The model wrote no notes with these settings: try other instruments (or none, to let the "
      + "model choose), another style or a higher temperature.");
  }
}

function onJobEnd(status, message) {
  const j = S.job;
  if (!j) return;
  j.done = true;
  S.job = null;
  $("queue").textContent = "";
  if (player.roll === j.roll) stopPlayback({ rewind: true });
  j.roll.endStream();
  if (j.roll === roll) roll.setTake(S.take);
  else if (j.roll === harmRoll) harmRoll.setTake(S.harmony);
  updateCount();
  updateButtons();
  if (status === "error") {
    showMessage(message);
    setStatus("The job failed");
  } else {
    setStatus(`Stopped (${j.streamed} notes were written; nothing kept)`);
  }
}

$("stop").addEventListener("click", async () => {
  if (!S.job) return;
  const id = S.job.id;
  setStatus("Stopping…");
  try {
    const j = await api("DELETE", `/api/jobs/${id}`);
    if (j.status === "cancelled" && S.job && S.job.id === id && S.job.es && S.job.es.readyState === 2) onJobEnd("cancelled");
  } catch (e) {
    fail(e, "Stop");
  }
});

// Bar lines while streaming: the seed's bars, then bars of the meter at the tempo (refined from
// the notes' own beat lengths as they arrive).
function meterOf(text) {
  const m = /^(\d+)\/(\d+)$/.exec(text || "");
  return m ? [Number(m[1]), Number(m[2])] : [4, 4];
}

function gridFor(seedTake, body) {
  const meter = body.meter || seedTake?.meter || S.options?.defaults?.meter || "4/4";
  const [num_, den] = meterOf(meter);
  const tempo = seedTake?.tempo || body.tempo || S.options?.defaults?.tempo || 120;
  const quarters = (num_ * 4) / den;
  const starts = seedTake ? seedTake.bar_starts.slice() : [0];
  const barLen = (quarters * 60) / tempo;
  const last = starts[starts.length - 1];
  const end = body.seconds ? last + body.seconds : last + (body.bars || 8) * barLen;
  return { barStarts: starts, barLen, quarters, expectedEnd: end, meter, fixedTempo: !!(seedTake || body.tempo) };
}

async function generate(seedTake) {
  let body;
  try { body = generateBody(seedTake); } catch (e) { return fail(e, "Generate"); }
  await startJob("generate", "/api/generate", body, { roll, base: seedTake ? seedTake.notes : [], grid: gridFor(seedTake, body) });
}

$("generate").addEventListener("click", () => generate(S.seed));
$("continue").addEventListener("click", () => { if (S.take) generate(S.take); });

function setBarRange(a, b) {
  $("bar-from").value = Math.min(a, b);
  $("bar-to").value = Math.max(a, b);
  syncSelection();
}

function syncSelection() {
  const a = Number($("bar-from").value), b = Number($("bar-to").value);
  if (Number.isInteger(a) && Number.isInteger(b) && a >= 1 && b >= a) roll.setSelection(a, b);
  else roll.setSelection(null);
}
$("bar-from").addEventListener("input", syncSelection);
$("bar-to").addEventListener("input", syncSelection);

$("regenerate").addEventListener("click", async () => {
  const t = S.take;
  if (!t) return;
  let body;
  try {
    const a = num("bar-from", { int: true }), b = num("bar-to", { int: true });
    body = { take: t.id, bars: [a, b], ...sampling() };
  } catch (e) { return fail(e, "Regenerate"); }
  const [a, b] = body.bars;
  const bs = t.bar_starts;
  const lo = bs[a - 1] ?? Infinity, hi = bs[b] ?? bs[bs.length - 1];
  const keep = t.notes.filter((n) => n.start < lo - 1e-6 || n.start >= hi - 1e-6);
  await startJob("regenerate", "/api/regenerate", body, {
    roll, base: keep, selection: [a, b],
    grid: { barStarts: bs.slice(), barLen: bs.length > 1 ? bs[1] - bs[0] : 2, expectedEnd: t.seconds, meter: t.meter, fixedTempo: true },
  });
});

// ------------------------------------------------------------------------------------ playback
let raf = 0;

function tick() {
  raf = 0;
  if (!player.playing) return;
  const t = player.position();
  player.roll.setCursor(t);
  $("cursor-time").textContent = fmtTime(t);
  const streaming = S.job && S.job.roll === player.roll;
  if (!streaming && t > player.end + 0.25) {
    stopPlayback({ rewind: true });
    return;
  }
  raf = requestAnimationFrame(tick);
}

function playButtons() {
  for (const [id, r] of [["play", roll], ["harm-play", harmRoll]]) {
    const on = player.playing && player.roll === r;
    $(id).textContent = on ? "❚❚ Pause" : "▶ Play";
    $(id).setAttribute("aria-pressed", String(on));
  }
  updateButtons();
}

async function togglePlay(r, take) {
  if (player.playing && player.roll === r) {
    player.pause();
    playButtons();
    setStatus(`Paused at ${fmtTime(player.offset)}`);
    return;
  }
  if (player.playing) stopPlayback({ rewind: true });
  const streaming = S.job && S.job.roll === r;
  let mode = $("playback").value;
  if (mode === "wav" && (streaming || !take)) {
    mode = "synth";
    setStatus("The WAV exists once the take is finished; playing with the browser synth");
  }
  const end = streaming ? r.end() : (take ? take.seconds : r.end());
  const from = player.roll === r && player.offset < end ? player.offset : 0;
  try {
    await player.play(r, r.notes, from, end, mode === "wav" ? `/api/takes/${take.id}/file.wav` : null);
  } catch (e) {
    fail(e, "Playback");
    return;
  }
  if (player.silent) setStatus("No audio output here: the cursor moves without sound");
  else setStatus(mode === "wav" ? "Playing the SoundFont rendering…" : "Playing…");
  playButtons();
  if (!raf) raf = requestAnimationFrame(tick);
}

function stopPlayback({ rewind = false } = {}) {
  if (!player.playing && !rewind) return;
  const r = player.roll;
  player.stop();
  if (rewind) player.offset = 0;
  if (r) r.setCursor(rewind ? null : player.offset);
  if (rewind) $("cursor-time").textContent = fmtTime(0);
  playButtons();
}

$("play").addEventListener("click", () => togglePlay(roll, S.job && S.job.roll === roll ? null : S.take));
$("harm-play").addEventListener("click", () => togglePlay(harmRoll, S.job && S.job.roll === harmRoll ? null : S.harmony));
$("playback").addEventListener("change", () => { if (player.playing) stopPlayback(); });
player.onEnded = () => stopPlayback({ rewind: true });

// ------------------------------------------------------------------------------------ sheet music
const BAD = /^on|^href$|^xlink:href$/i;

function sanitizeSvg(text) {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const svg = doc.documentElement;
  if (!svg || svg.nodeName.toLowerCase() !== "svg") return null;
  for (const el of svg.querySelectorAll("script, foreignObject, iframe, object, embed")) el.remove();
  for (const el of [svg, ...svg.querySelectorAll("*")]) {
    for (const a of [...el.attributes]) {
      if (BAD.test(a.name) && !(/href$/i.test(a.name) && a.value.startsWith("#"))) el.removeAttribute(a.name);
    }
  }
  return document.importNode(svg, true);
}

async function loadSheet(take, box) {
  if (!take) { box.innerHTML = '<p class="hint">No take yet.</p>'; return; }
  const id = take.id;
  box.dataset.take = id;
  let pages = S.sheets.get(id);
  if (!pages) {
    box.innerHTML = '<p class="hint">Engraving…</p>';
    try {
      pages = (await api("GET", `/api/takes/${id}/sheet`)).pages;
      S.sheets.set(id, pages);
    } catch (e) {
      if (box.dataset.take === id) box.innerHTML = "";
      fail(e, "Sheet music");
      return;
    }
  }
  if (box.dataset.take !== id) return; // another take became current meanwhile
  box.textContent = "";
  for (const p of pages) {
    const svg = sanitizeSvg(p);
    if (svg) box.append(svg);
  }
}

$("sheet-panel").addEventListener("toggle", () => { if ($("sheet-panel").open) loadSheet(S.take, $("sheet")); });
$("harm-sheet-panel").addEventListener("toggle", () => { if ($("harm-sheet-panel").open) loadSheet(S.harmony, $("harm-sheet")); });

// ------------------------------------------------------------------------------------ learn
function refreshLearnLabels() {
  $("learn-seed").textContent = S.seed ? S.seed.label : "none";
  $("surprise-take").textContent = S.take ? S.take.label : "none";
  $("surprise-run").disabled = !S.take;
}

$("learn-start").addEventListener("click", async () => {
  clearMessage();
  let body;
  try {
    body = { ...sampling(), seed_take: S.seed ? S.seed.id : null, notes: num("learn-notes", { int: true }), top: 8 };
  } catch (e) { return fail(e, "Learn"); }
  $("learn-start").disabled = true;
  setStatus("The model is writing, note by note…");
  try {
    const res = await api("POST", "/api/learn", body);
    if (!res.steps.length) throw new ApiError("the model wrote no notes; try again or change the settings");
    S.learn = { steps: res.steps, i: 0, base: S.seed ? S.seed.notes : [], seed: S.seed };
    const g = gridFor(S.seed, { bars: 4 });
    learnRoll.startStream(S.learn.base, g); // keeps its grid: the roll does not rescale at each step
    renderLearn();
    setStatus(`${res.steps.length} notes written; step through them with Next and Previous`);
  } catch (e) {
    fail(e, "Learn");
  } finally {
    $("learn-start").disabled = false;
  }
});

function renderLearn() {
  const L = S.learn;
  if (!L) return;
  const step = L.steps[L.i];
  const shown = L.steps.slice(0, L.i + 1).map((s) => s.note);
  learnRoll.setNotes([...L.base, ...shown], { highlight: step.note });
  $("learn-prev").disabled = L.i <= 0;
  $("learn-next").disabled = L.i >= L.steps.length - 1;
  $("learn-position").textContent = `note ${L.i + 1} of ${L.steps.length}`;
  const n = step.note;
  $("learn-step").innerHTML = "";
  const strong = document.createElement("strong");
  strong.textContent = step.chosen.name;
  $("learn-step").append(`Note ${L.i + 1}: the model chose `, strong,
    ` (probability ${(step.chosen.p * 100).toFixed(1)}%) in bar ${n.bar}, ${n.drum ? "drums" : n.instrument}.`);
  const ol = $("learn-candidates");
  ol.textContent = "";
  const max = Math.max(...step.candidates.map((c) => c.p), step.chosen.p, 1e-9);
  const row = (c, chosen, outside) => {
    const li = document.createElement("li");
    li.dataset.pitch = c.pitch;
    li.dataset.p = c.p;
    if (chosen) { li.classList.add("chosen"); li.setAttribute("aria-current", "true"); }
    if (outside) li.classList.add("note-outside");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = c.name;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(0.5, (c.p / max) * 100)}%`;
    const p = document.createElement("span");
    p.className = "p";
    p.textContent = `${(c.p * 100).toFixed(1)}%`;
    li.title = `${c.name}: p = ${c.p.toFixed(4)}${chosen ? " (chosen)" : ""}`;
    li.append(name, bar, p);
    ol.append(li);
  };
  let found = false;
  for (const c of step.candidates) {
    const chosen = c.pitch === step.chosen.pitch;
    found ||= chosen;
    row(c, chosen, false);
  }
  if (!found) row(step.chosen, true, true);
  player.blip(n.pitch, n.program, n.drum);
}

$("learn-next").addEventListener("click", () => { if (S.learn && S.learn.i < S.learn.steps.length - 1) { S.learn.i++; renderLearn(); } });
$("learn-prev").addEventListener("click", () => { if (S.learn && S.learn.i > 0) { S.learn.i--; renderLearn(); } });

// Surprise: bits per note, as bars, with the mean as a dashed line.
$("surprise-run").addEventListener("click", async () => {
  const t = S.take;
  if (!t) return;
  clearMessage();
  $("surprise-run").disabled = true;
  setStatus(`Measuring how surprising ${t.label} is…`);
  try {
    const res = await api("POST", "/api/surprise", { take: t.id, model: $("model").value || null, style: $("style").value || null });
    S.surprise = { take: t.id, notes: res.notes, mean: res.mean_bits, hover: -1 };
    $("surprise-mean").textContent = `mean ${res.mean_bits.toFixed(2)} bits per note over ${res.notes.length} notes`;
    drawSurprise();
    setStatus(`Surprise: ${res.mean_bits.toFixed(2)} bits per note on average`);
  } catch (e) {
    fail(e, "Surprise");
  } finally {
    $("surprise-run").disabled = !S.take;
  }
});

function drawSurprise() {
  const c = $("surprise-curve");
  const w = c.clientWidth, h = c.clientHeight;
  if (!w || !h) return;
  const dpr = window.devicePixelRatio || 1;
  c.width = Math.round(w * dpr);
  c.height = Math.round(h * dpr);
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const s = S.surprise;
  g.font = "12px system-ui, sans-serif";
  if (!s || !s.notes.length) {
    g.fillStyle = "#98a2b3";
    g.fillText(s ? "no notes" : "Press “Measure surprise” to see how surprising each note of the current take is.", 12, h / 2);
    return;
  }
  const L = 40, R = 10, T = 10, B = 22;
  const top = Math.max(4, Math.ceil(Math.max(...s.notes.map((n) => n.bits)) / 2) * 2);
  const y = (b) => T + (h - T - B) * (1 - b / top);
  g.strokeStyle = "#eceae4";
  g.fillStyle = "#667085";
  g.textAlign = "right";
  for (let b = 0; b <= top; b += Math.max(1, Math.round(top / 5))) {
    g.beginPath(); g.moveTo(L, y(b)); g.lineTo(w - R, y(b)); g.stroke();
    g.fillText(`${b}`, L - 6, y(b) + 4);
  }
  g.save(); g.translate(12, h / 2); g.rotate(-Math.PI / 2); g.textAlign = "center"; g.fillText("bits", 0, 0); g.restore();
  const n = s.notes.length;
  const bw = (w - L - R) / n;
  s.notes.forEach((note, k) => {
    const v = Math.min(1, note.bits / top);
    g.fillStyle = k === s.hover ? "#3d5afe" : `hsl(${220 - 200 * v}, 70%, ${62 - 12 * v}%)`;
    const x = L + k * bw;
    g.fillRect(x + (bw > 3 ? 0.5 : 0), y(note.bits), Math.max(1, bw - (bw > 3 ? 1 : 0)), y(0) - y(note.bits));
  });
  g.strokeStyle = "#c62828";
  g.setLineDash([6, 4]);
  g.beginPath(); g.moveTo(L, y(s.mean)); g.lineTo(w - R, y(s.mean)); g.stroke();
  g.setLineDash([]);
  g.fillStyle = "#c62828";
  g.textAlign = "left";
  g.fillText(`mean ${s.mean.toFixed(2)}`, L + 4, y(s.mean) - 4);
  g.fillStyle = "#667085";
  g.textAlign = "center";
  g.fillText("notes, in order →", (L + w - R) / 2, h - 6);
  s.layout = { L, bw, n };
}

$("surprise-curve").addEventListener("mousemove", (e) => {
  const s = S.surprise;
  if (!s || !s.layout) return;
  const r = e.currentTarget.getBoundingClientRect();
  const k = Math.floor((e.clientX - r.left - s.layout.L) / s.layout.bw);
  if (k === s.hover) return;
  s.hover = k >= 0 && k < s.layout.n ? k : -1;
  const n = s.notes[s.hover];
  $("surprise-info").textContent = n ? `note ${s.hover + 1}: ${n.name} in bar ${n.bar}, ${n.bits.toFixed(2)} bits` : "";
  drawSurprise();
});

// ------------------------------------------------------------------------------------ harmonize
function refreshHarmonize() {
  $("harmonize-melody").textContent = S.melody ? `${S.melody.label} (${S.melody.notes.length} notes)` : "none";
  if (!S.job || S.job.roll !== harmRoll) {
    if (S.harmony && harmRoll.takeId !== S.harmony.id) harmRoll.setTake(S.harmony);
    else if (!S.harmony && S.melody && harmRoll.takeId !== S.melody.id) harmRoll.setTake(S.melody);
  }
  updateButtons();
}

function harmonyDone(take) {
  S.harmony = take;
  harmRoll.setTake(take);
  if ($("harm-sheet-panel").open) loadSheet(take, $("harm-sheet"));
  else $("harm-sheet").innerHTML = '<p class="hint">Open to engrave the harmonization.</p>';
  if (!S.job) setCurrentQuiet(take);
}

// The harmonization also becomes the current take (for downloads, history, undo) without
// redrawing the harmonize roll.
function setCurrentQuiet(take) {
  if (player.playing && player.roll === roll) stopPlayback();
  if (player.roll === roll) resetCursor();
  S.take = take;
  if (S.undo[S.undo.length - 1] !== take.id) S.undo.push(take.id);
  roll.setTake(take);
  updateTakeUi();
}

$("harmonize").addEventListener("click", async () => {
  if (!S.melody) return;
  let temperature;
  try { temperature = num("harm-temperature"); } catch (e) { return fail(e, "Harmonize"); }
  const body = { take: S.melody.id, regenerate: null, temperature, random_seed: num("random-seed", { optional: true, int: true }) };
  await startJob("harmonize", "/api/harmonize", body, {
    roll: harmRoll, base: [], onDone: harmonyDone,
    grid: { barStarts: S.melody.bar_starts.slice(), barLen: 2, expectedEnd: S.melody.seconds, meter: S.melody.meter, fixedTempo: true },
  });
});

function beatAt(take, t) {
  if (!take) return null;
  const bs = take.bar_starts;
  let b = 0;
  while (b + 1 < bs.length - 1 && bs[b + 1] <= t) b++;
  if (t < bs[0] || t >= bs[bs.length - 1]) return null;
  const beats = beatsPerBar(take.meter);
  const len = (bs[b + 1] - bs[b]) / beats;
  const beat = Math.min(beats, Math.floor((t - bs[b]) / len) + 1);
  return { bar: b + 1, beat, start: bs[b] + (beat - 1) * len, end: bs[b] + beat * len };
}

function beatsPerBar(meter) {
  const [n, d] = meterOf(meter);
  return d === 8 && n % 3 === 0 && n > 3 ? n / 3 : n;
}

function showBeat(t) {
  const take = S.harmony;
  const b = t == null || S.job ? null : beatAt(take, t);
  harmRoll.setHover(b ? [b.start, b.end] : null);
  $("harm-beat").textContent = b ? `bar ${b.bar}, beat ${b.beat}: click to write this chord again` : "";
}

async function harmonizeBeatAt(t) {
  const take = S.harmony;
  if (!take || S.job) return;
  const b = beatAt(take, t);
  if (!b) return;
  const region = `${b.bar}.${b.beat}-${b.bar}.${b.beat}`;
  let temperature;
  try { temperature = num("harm-temperature"); } catch (e) { return fail(e, "Harmonize"); }
  harmRoll.setHover(null);
  await startJob("harmonize", "/api/harmonize", { take: take.id, regenerate: region, temperature, random_seed: null }, {
    roll: harmRoll, base: [], onDone: harmonyDone,
    grid: { barStarts: take.bar_starts.slice(), barLen: 2, expectedEnd: take.seconds, meter: take.meter, fixedTempo: true },
  });
  setStatus(`Writing the chord of bar ${b.bar}, beat ${b.beat} again…`);
}

// ------------------------------------------------------------------------------------ debug hook
// Read-only facts for tests and the curious (window.studio).
window.studio = Object.freeze({
  get ready() { return !!S.options; },
  get takeId() { return S.take ? S.take.id : null; },
  get take() { return S.take ? { id: S.take.id, bars: S.take.bars, notes: S.take.notes.length, label: S.take.label } : null; },
  get seedId() { return S.seed ? S.seed.id : null; },
  get notesDrawn() { return roll.notes.length; },
  get streamedNotes() { return S.job ? S.job.streamed : 0; },
  get jobId() { return S.job ? S.job.id : null; },
  get jobStatus() { return S.job ? S.job.status : null; },
  get playing() { return player.playing; },
  get cursor() { return player.playing ? player.position() : player.offset; },
  get silent() { return player.silent; },
  get history() { return S.history.slice(); },
  get undoStack() { return S.undo.slice(); },
  get selection() { return roll.selection ? roll.selection.slice() : null; },
  get learnStep() { return S.learn ? S.learn.i + 1 : 0; },
  get learnSteps() { return S.learn ? S.learn.steps.length : 0; },
  get harmonyTakeId() { return S.harmony ? S.harmony.id : null; },
  get harmonyNotesDrawn() { return harmRoll.notes.length; },
  get surpriseMean() { return S.surprise ? S.surprise.mean : null; },
  get tab() { return S.tab; },
});

// ------------------------------------------------------------------------------------ start
window.addEventListener("resize", () => drawSurprise());
buildKeyboard();
syncOutputs();
syncSelection();
updateTakeUi();
roll.onChange = () => updateLegend(roll, $("legend"));
loadOptions()
  .then(() => { updateButtons(); setStatus("Ready: pick a seed (or none) and press Generate"); })
  .catch((e) => fail(e, "Loading the studio's options"));
