// The streamfx demo page: plain JavaScript, no build step.
// Everything the page learns is kept in window.demo (the browser test reads it there).
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (n) => Number(n).toLocaleString("en-US");
const size = (n) => n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB`
  : n >= 1024 ? `${(n / 1024).toFixed(1)} KB` : `${n} B`;

const job = {
  id: null, source: null, seqs: [], lastSeq: 0, connections: 0, heartbeats: 0,
  done: false, problems: [], drops: 0,
};
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

function showSequence() {
  const el = $("job-sequence");
  if (job.problems.length) {
    el.textContent = job.problems.join("; ");
    el.className = "bad";
  } else {
    el.textContent = job.seqs.length ? `1…${job.lastSeq}: no gap, no duplicate` : "–";
    el.className = "ok";
  }
}

function onJobEvent(event) {
  const seq = Number(event.lastEventId);
  const data = JSON.parse(event.data);
  if (seq !== data.seq) job.problems.push(`id ${seq} carries seq ${data.seq}`);
  if (seq <= job.lastSeq) job.problems.push(`duplicate ${seq}`);
  else if (seq !== job.lastSeq + 1) job.problems.push(`gap ${job.lastSeq + 1}…${seq - 1}`);
  job.seqs.push(seq);
  job.lastSeq = Math.max(job.lastSeq, seq);
  $("job-events").textContent = fmt(job.seqs.length);
  $("job-last-id").textContent = seq;
  showSequence();
  if (event.type === "progress") {
    $("job-bar").style.width = `${data.percent}%`;
    $("job-percent").textContent = `${data.percent} %  (step ${data.step}/${data.total})`;
  } else if (event.type === "log") {
    logLine(`#${seq}  ${data.line}`);
  } else if (event.type === "done") {
    job.done = true;
    job.source.close();
    $("job-drop").disabled = true;
    $("job-status").textContent = `done: ${data.steps} steps in ${data.seconds} s`;
    $("job-status").className = "ok";
    logLine(`#${seq}  job finished in ${data.seconds} s`, "done");
  }
}

function onHeartbeat(event) {
  job.heartbeats += 1;
  $("job-heartbeats").textContent = job.heartbeats;
  const heart = $("job-heart");
  heart.classList.add("beat");
  setTimeout(() => heart.classList.remove("beat"), 350);
  logLine(`♥ heartbeat ${event.data} (no id: Last-Event-ID stays ${job.lastSeq})`, "heartbeat");
}

async function startJob() {
  if (job.source) job.source.close();
  Object.assign(job, {
    id: null, source: null, seqs: [], lastSeq: 0, connections: 0, heartbeats: 0,
    done: false, problems: [], drops: 0,
  });
  $("job-log").textContent = "";
  $("job-bar").style.width = "0";
  ["job-events", "job-connections", "job-heartbeats"].forEach((id) => { $(id).textContent = "0"; });
  showSequence();
  // ?steps=&interval=&pause= on the page's URL are passed on (the tests use short jobs).
  const params = new URLSearchParams(location.search);
  const query = new URLSearchParams();
  for (const key of ["steps", "interval", "pause"]) if (params.has(key)) query.set(key, params.get(key));
  const response = await fetch(`/api/jobs?${query}`, { method: "POST" });
  const started = await response.json();
  job.id = started.id;
  $("job-status").textContent = `job ${job.id} running`;
  $("job-status").className = "status";
  $("job-drop").disabled = false;

  const source = new EventSource(`/api/jobs/${job.id}/events`);
  job.source = source;
  source.onopen = () => {
    job.connections += 1;
    $("job-connections").textContent = job.connections;
    logLine(job.connections === 1 ? "connected"
      : `reconnected: the server resumes after id ${job.lastSeq}`, "conn");
  };
  source.onerror = () => {
    if (job.done) return;
    if (source.readyState === EventSource.CONNECTING) {
      logLine(`stream closed; EventSource reconnects with Last-Event-ID: ${job.lastSeq}`, "conn");
    }
  };
  for (const type of ["progress", "log", "done"]) source.addEventListener(type, onJobEvent);
  source.addEventListener("heartbeat", onHeartbeat);
}

async function dropJob() {
  if (!job.id) return;
  const response = await fetch(`/api/jobs/${job.id}/drop`, { method: "POST" });
  const result = await response.json();
  job.drops += 1;
  logLine(`server dropped ${result.dropped} connection(s) at id ${result.last_seq}`, "conn");
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
  $("live-active").textContent = fmt(snapshot.active);
  $("live-events").textContent = fmt(snapshot.events);
  $("live-bytes").textContent = size(snapshot.bytes);
  $("live-dropped").textContent = fmt(snapshot.dropped);
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
  const live = new EventSource("/api/live");
  live.onmessage = (event) => showLive(JSON.parse(event.data));
  document.body.dataset.ready = "true";
});
