// The streamfx demo page: plain JavaScript, no build step.
// Everything the page learns is kept in window.demo (the browser test reads it there).
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (n) => Number(n).toLocaleString("en-US");
const size = (n) => n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB`
  : n >= 1024 ? `${(n / 1024).toFixed(1)} KB` : `${n} B`;

// The job this page follows, and its subscribers: one EventSource each (kept apart in
// `sources`, so that window.demo stays plain data).
const job = {
  id: null, since: null, steps: 0, subscribers: [], drops: 0, done: false, followers: [],
};
const sources = new Map();
const followed = new Set(); // jobs this page followed: never go back to an older one
const demo = { job, exports: {}, live: null, config: null, upload: null, flood: null };
window.demo = demo;

// ---- the long job ---------------------------------------------------------------------

function logLine(text, cls) {
  const li = document.createElement("li");
  li.textContent = text;
  if (cls) li.className = cls;
  const log = $("job-log");
  log.appendChild(li);
  while (log.children.length > 400) log.removeChild(log.firstChild);
  log.scrollTop = log.scrollHeight;
}

function sequenceText(sub) {
  if (sub.problems.length) return sub.problems.join("; ");
  return sub.seqs.length ? `1…${sub.lastSeq}: no gap, no duplicate` : "–";
}

function showSubscriber(sub) {
  let row = document.querySelector(`#job-subscribers tr[data-n="${sub.n}"]`);
  if (!row) {
    row = $("job-subscribers").tBodies[0].insertRow();
    row.dataset.n = sub.n;
    for (let i = 0; i < 7; i++) row.insertCell();
  }
  const cells = row.children;
  cells[0].textContent = `#${sub.n} (${sub.name})`;
  cells[1].textContent = sub.pids.join(" → ") || "–";
  cells[2].textContent = fmt(sub.seqs.length);
  cells[3].textContent = sub.lastId || "–";
  cells[4].textContent = sub.connections;
  cells[5].textContent = sub.heartbeats;
  cells[6].textContent = sequenceText(sub);
  cells[6].className = sub.problems.length ? "bad" : "ok";
}

function onJobEvent(sub, event) {
  const data = JSON.parse(event.data);
  const seq = data.seq;
  if (seq <= sub.lastSeq) sub.problems.push(`duplicate ${seq}`);
  else if (seq !== sub.lastSeq + 1) sub.problems.push(`gap ${sub.lastSeq + 1}…${seq - 1}`);
  sub.seqs.push(seq);
  sub.lastSeq = Math.max(sub.lastSeq, seq);
  sub.lastId = event.lastEventId;
  showSubscriber(sub);
  if (event.type === "done") {
    sub.done = true;
    sources.get(sub.n).close();
    job.done = job.subscribers.every((s) => s.done);
  }
  if (sub.n !== 1) return; // the progress bar and the log follow subscriber #1
  if (event.type === "progress") {
    $("job-bar").style.width = `${data.percent}%`;
    $("job-percent").textContent = `${data.percent} %  (step ${data.step}/${data.total})`;
  } else if (event.type === "log") {
    logLine(`#${seq}  ${data.line}`);
  } else if (event.type === "done") {
    $("job-drop").disabled = true;
    $("job-status").textContent = `done: ${data.steps} steps in ${data.seconds} s`;
    $("job-status").className = "ok";
    logLine(`#${seq}  job finished in ${data.seconds} s`, "done");
  }
}

function onHeartbeat(sub, event) {
  sub.heartbeats += 1;
  showSubscriber(sub);
  const heart = $("job-heart");
  heart.classList.add("beat");
  setTimeout(() => heart.classList.remove("beat"), 350);
  if (sub.n === 1) {
    logLine(`♥ heartbeat ${event.data} (no id: Last-Event-ID stays ${sub.lastId})`, "heartbeat");
  }
}

function subscribe(n) {
  const name = Math.random().toString(36).slice(2, 8);
  const sub = {
    n, name, seqs: [], lastSeq: 0, lastId: null, connections: 0, heartbeats: 0, done: false,
    problems: [], drops: 0, resets: [], pids: [],
  };
  const url = `/api/jobs/${job.id}/events?since=${encodeURIComponent(job.since)}&subscriber=${name}`;
  const source = new EventSource(url);
  sources.set(n, source);
  source.onopen = () => {
    sub.connections += 1;
    showSubscriber(sub);
    logLine(sub.connections === 1 ? `[#${n}] connected`
      : `[#${n}] reconnected: the server resumes after id ${sub.lastId}`, "conn");
  };
  source.onerror = () => {
    if (sub.done || source.readyState !== EventSource.CONNECTING) return;
    logLine(`[#${n}] stream closed; EventSource reconnects with Last-Event-ID: ${sub.lastId}`, "conn");
  };
  source.addEventListener("worker", (event) => {
    sub.pids.push(JSON.parse(event.data).pid);
    showSubscriber(sub);
  });
  for (const type of ["progress", "log", "done"]) {
    source.addEventListener(type, (event) => onJobEvent(sub, event));
  }
  source.addEventListener("heartbeat", (event) => onHeartbeat(sub, event));
  source.addEventListener("drop", (event) => {
    sub.drops += 1;
    sub.lastId = event.lastEventId;
    logLine(`[#${n}] server dropped this connection (drop event ${event.lastEventId})`, "conn");
  });
  source.addEventListener("reset", (event) => {
    sub.resets.push(event.data);
    sub.problems.push(`reset: ${event.data}`);
    showSubscriber(sub);
    logLine(`[#${n}] the hub could not resume (${event.data}): live from here`, "conn");
  });
  showSubscriber(sub);
  return sub;
}

// Follow `record` ({id, since, steps}) with N subscribers (?subscribers=N, default 1,
// at most 4: a browser opens at most six connections per host over HTTP/1.1, and the
// live feed takes one), each from the job's start: `since` is the id of the job's
// "created" event.
function followJob(record) {
  if (!record || followed.has(record.id)) return;
  followed.add(record.id);
  for (const source of sources.values()) source.close();
  sources.clear();
  Object.assign(job, { id: record.id, since: record.since, steps: record.steps,
    subscribers: [], drops: 0, done: false, followers: [] });
  $("job-log").textContent = "";
  $("job-subscribers").tBodies[0].textContent = "";
  $("job-bar").style.width = "0";
  $("job-percent").textContent = "0 %";
  $("job-status").textContent = `job ${job.id} running`;
  $("job-status").className = "status";
  $("job-drop").disabled = false;
  const asked = Number(new URLSearchParams(location.search).get("subscribers")) || 1;
  const count = Math.min(Math.max(asked, 1), 4);
  for (let n = 1; n <= count; n++) job.subscribers.push(subscribe(n));
}

async function startJob() {
  // ?steps=&interval=&pause= on the page's URL are passed on (the tests use short jobs).
  const params = new URLSearchParams(location.search);
  const query = new URLSearchParams();
  for (const key of ["steps", "interval", "pause"]) if (params.has(key)) query.set(key, params.get(key));
  const response = await fetch(`/api/jobs?${query}`, { method: "POST" });
  followJob(await response.json());
}

async function dropJob() {
  if (!job.id) return;
  const response = await fetch(`/api/jobs/${job.id}/drop`, { method: "POST" });
  const result = await response.json();
  job.drops += 1;
  logLine(`asked the server to drop every connection following the job `
    + `(drop event ${result.drop_event})`, "conn");
}

// ---- exports --------------------------------------------------------------------------

function exportRow(token) {
  let row = document.querySelector(`tr[data-token="${token}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.token = token;
    row.innerHTML = "<td></td><td></td><td></td><td></td><td></td>";
    $("export-results").tBodies[0].prepend(row);
  }
  return row;
}

function showExport(record) {
  demo.exports[record.token] = record;
  const cells = exportRow(record.token).children;
  cells[0].textContent = record.format.toUpperCase();
  cells[1].textContent = fmt(record.rows);
  cells[2].textContent = size(record.bytes);
  cells[3].textContent = record.outcome === "running" ? "…" : `${record.seconds.toFixed(2)} s`;
  cells[4].textContent = record.outcome;
  cells[4].className = record.outcome === "completed" ? "ok"
    : record.outcome === "running" ? "" : "bad";
}

function startExport(format) {
  const rows = Math.max(0, Number($("export-rows").value) || 0);
  const token = Math.random().toString(36).slice(2, 10);
  showExport({ token, format, requested: rows, rows: 0, bytes: 0, seconds: 0, outcome: "running" });
  const link = document.createElement("a");
  link.href = `/api/export/${format}?rows=${rows}&token=${token}`;
  link.download = "";
  document.body.appendChild(link);
  link.click(); // the browser's own download: the response streams straight to disk
  link.remove();
}

// ---- the large file ---------------------------------------------------------------------

function showFile(file) {
  const info = $("file-info");
  if (file.written < file.size) {
    info.textContent = `preparing ${file.name}: ${size(file.written)} of ${size(file.size)}`;
  } else {
    info.textContent = `${file.name}, ${size(file.size)}, resumable`;
    $("file-link").textContent = `download ${file.name}`;
  }
}

async function rangeCheck() {
  const response = await fetch("/api/file", { headers: { Range: "bytes=100-199" } });
  const body = await response.arrayBuffer();
  $("range-result").textContent = `${response.status} ${response.statusText}, `
    + `Content-Range: ${response.headers.get("content-range")}, ${body.byteLength} bytes`;
}

// ---- uploads ----------------------------------------------------------------------------

async function sendUpload(body, headers) {
  const result = $("upload-result");
  result.textContent = "uploading…";
  result.className = "result";
  const response = await fetch("/api/upload", { method: "POST", body, headers });
  const text = await response.text();
  demo.upload = { status: response.status, text };
  if (response.ok) {
    result.textContent = `${response.status} ${response.statusText}\n`
      + JSON.stringify(JSON.parse(text), null, 2);
    result.className = "result ok";
  } else {
    result.textContent = `${response.status} ${response.statusText}: ${text}`;
    result.className = "result bad";
  }
}

function formWith(name, blob) {
  const form = new FormData();
  form.append("file", blob, name);
  return form;
}

function showLimits(config) {
  const u = config.upload;
  $("upload-limits").textContent = `${size(u.max_size)} per request, ${size(u.max_part_size)} `
    + `per file, ${u.max_parts} parts; types: ${u.allowed_types.join(", ")}`;
}

// ---- the burst ---------------------------------------------------------------------------

function flood() {
  const n = 20000;
  let received = 0;
  $("flood-result").textContent = "receiving…";
  const source = new EventSource(`/api/flood?n=${n}`);
  source.addEventListener("tick", () => { received += 1; });
  source.addEventListener("end", () => {
    source.close();
    demo.flood = { sent: n, received };
    $("flood-result").textContent = `received ${fmt(received)} of ${fmt(n)}: the server `
      + `dropped ${fmt(n - received)} oldest waiting events instead of buffering them`;
  });
}

// ---- live counters ------------------------------------------------------------------------

function showLive(snapshot) {
  demo.live = snapshot;
  // The latest job (started from any page, in any worker) and who follows it.
  followJob(snapshot.job.current);
  if (snapshot.job.current && snapshot.job.current.id === job.id) {
    const mine = new Set(job.subscribers.map((s) => s.name));
    $("job-followers").textContent = snapshot.job.followers.map((member) => {
      const [name, pid] = member.split("@");
      return `${name}${mine.has(name) ? " (this page)" : ""} in worker ${pid}`;
    }).join(", ") || "nobody";
    job.followers = snapshot.job.followers;
  }
  $("live-active").textContent = fmt(snapshot.active);
  $("live-events").textContent = fmt(snapshot.events);
  $("live-bytes").textContent = size(snapshot.bytes);
  $("live-dropped").textContent = fmt(snapshot.dropped);
  $("live-hub").textContent = fmt(snapshot.hub.subscribers);
  $("live-worker").textContent = `(worker ${snapshot.hub.worker})`;
  const body = $("live-streams").tBodies[0];
  body.textContent = "";
  for (const s of snapshot.streams) {
    const row = body.insertRow();
    for (const value of [s.kind, s.name || "–", s.active, fmt(s.items), size(s.bytes), fmt(s.dropped)]) {
      row.insertCell().textContent = value;
    }
  }
  for (const record of snapshot.exports) {
    if (document.querySelector(`tr[data-token="${record.token}"]`)) showExport(record);
  }
  showFile(snapshot.file);
}

// ---- wiring ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  $("job-start").addEventListener("click", startJob);
  $("job-drop").addEventListener("click", dropJob);
  for (const button of document.querySelectorAll("#exports button[data-format]")) {
    button.addEventListener("click", () => startExport(button.dataset.format));
  }
  $("range-check").addEventListener("click", rangeCheck);
  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData();
    for (const file of $("upload-file").files) form.append("file", file, file.name);
    sendUpload(form);
  });
  $("upload-too-large").addEventListener("click", () => {
    const bytes = demo.config.upload.max_part_size + 1;
    sendUpload(formWith("big.txt", new Blob([new Uint8Array(bytes)], { type: "text/plain" })));
  });
  $("upload-wrong-type").addEventListener("click", () => {
    sendUpload(formWith("setup.exe", new Blob(["MZ\x90\x00"], { type: "application/x-msdownload" })));
  });
  $("upload-malformed").addEventListener("click", () => {
    const body = "--demo\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
      + "Content-Type: text/plain\r\n\r\nhello, and then the body just stops";
    sendUpload(body, { "Content-Type": "multipart/form-data; boundary=demo" });
  });
  $("flood-start").addEventListener("click", flood);

  demo.config = await (await fetch("/api/config")).json();
  showLimits(demo.config);
  showFile(demo.config.file);
  const { backend, workers } = demo.config;
  $("job-backend").textContent = `hub: ${backend}, ${workers} worker${workers > 1 ? "s" : ""}`;
  followJob(demo.config.current_job);
  const live = new EventSource("/api/live");
  live.onmessage = (event) => showLive(JSON.parse(event.data));
  document.body.dataset.ready = "true";
});
