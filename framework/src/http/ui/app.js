// Ballista web UI: a page per route (#/jobs, #/jobs/<id>, #/executors),
// drawn from the REST API. Text from the cluster (queries, errors, plans)
// is always set as text, never parsed as HTML.
"use strict";

const TOKEN_KEY = "ballista.token";
const REFRESH_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
let refreshTimer = null;
let selectedStage = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class Unauthenticated extends Error {}

async function api(path, options) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = Object.assign({}, (options && options.headers) || {});
  if (token && !headers.Authorization) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) throw new Unauthenticated(body.error ? body.error.message : "log in");
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleString() : "–";
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
  return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
}

function fmtBytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function plural(n, word) {
  return n + " " + word + (n === 1 ? "" : "s");
}

function badge(state) {
  return el("span", { class: "badge " + state }, state);
}

function bar(done, total) {
  const pct = total > 0 ? Math.round((100 * done) / total) : 0;
  const fill = el("span");
  fill.style.width = pct + "%";
  return el("span", { class: "bar", title: done + " / " + total }, fill);
}

const TERMINAL = ["succeeded", "failed", "cancelled"];

function setMain(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
}

function schedule(render) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => route(render), REFRESH_MS);
}

// ----- pages -------------------------------------------------------------

async function jobsPage() {
  const jobs = await api("/api/v1/jobs?limit=500");
  const rows = jobs.map((job) => {
    const p = job.progress || { tasks_completed: 0, tasks_total: 0 };
    return el("tr", { "data-job": job.job_id },
      el("td", {}, el("a", { href: "#/jobs/" + job.job_id, class: "job-link" }, job.job_id)),
      el("td", {}, badge(job.state)),
      el("td", {}, job.owner),
      el("td", {}, job.pool || "–"),
      el("td", {}, fmtTime(job.submitted_ms)),
      el("td", { class: "num" }, fmtDuration(job.duration_ms)),
      el("td", {}, bar(p.tasks_completed, p.tasks_total), " ", p.tasks_completed + "/" + p.tasks_total),
      el("td", { class: "query", title: job.query }, job.query));
  });
  setMain(
    el("h1", {}, "Jobs"),
    jobs.length === 0
      ? el("p", { class: "muted" }, "No jobs yet. Jobs run by any client appear here.")
      : el("table", { id: "jobs-table" },
        el("thead", {}, el("tr", {},
          ["Job", "State", "Owner", "Pool", "Submitted", "Duration", "Tasks", "Query"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)));
  schedule(jobsPage);
}

function stageState(stage) {
  if (stage.tasks.done === stage.tasks.total) return "done";
  if (stage.tasks.stopped > 0) return "failed";
  if (stage.tasks.running > 0 || stage.tasks.done > 0) return "running";
  return "waiting";
}

// Stages laid out left to right by their distance from the stages that read
// nothing; the final stage ends up rightmost.
function drawDag(stages, onSelect) {
  const byId = new Map(stages.map((s) => [s.stage_id, s]));
  const level = new Map();
  const levelOf = (s) => {
    if (level.has(s.stage_id)) return level.get(s.stage_id);
    level.set(s.stage_id, 0);
    const l = s.inputs.length === 0 ? 0 : 1 + Math.max(...s.inputs.map((i) => (byId.has(i) ? levelOf(byId.get(i)) : 0)));
    level.set(s.stage_id, l);
    return l;
  };
  stages.forEach(levelOf);
  const columns = [];
  for (const s of stages) (columns[level.get(s.stage_id)] = columns[level.get(s.stage_id)] || []).push(s);
  const W = 170, H = 58, GX = 60, GY = 18;
  const pos = new Map();
  columns.forEach((col, x) => col.forEach((s, y) => pos.set(s.stage_id, { x: 20 + x * (W + GX), y: 20 + y * (H + GY) })));
  const width = 40 + columns.length * (W + GX);
  const height = 40 + Math.max(...columns.map((c) => c.length)) * (H + GY);
  const root = svg("svg", { width, height, id: "stage-dag" },
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9aa3b2" }))));
  for (const s of stages) {
    for (const input of s.inputs) {
      const a = pos.get(input), b = pos.get(s.stage_id);
      if (!a || !b) continue;
      root.append(svg("path", { class: "edge", d: `M${a.x + W},${a.y + H / 2} C${a.x + W + GX / 2},${a.y + H / 2} ${b.x - GX / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}` }));
    }
  }
  for (const s of stages) {
    const p = pos.get(s.stage_id);
    const cls = "stage " + stageState(s) + (selectedStage === s.stage_id ? " selected" : "");
    root.append(svg("g", { class: cls, transform: `translate(${p.x},${p.y})`, "data-stage": s.stage_id, onclick: () => onSelect(s.stage_id) },
      svg("rect", { width: W, height: H, rx: 6 }),
      svg("text", { x: 10, y: 18 }, "Stage " + s.stage_id + (s.is_final ? " (final)" : "")),
      svg("text", { x: 10, y: 34 }, s.tasks.done + "/" + s.tasks.total + " tasks, " +
        (s.tasks.stopped ? s.tasks.stopped + " stopped" : s.tasks.running + " running")),
      svg("text", { x: 10, y: 50 }, plural(s.output_rows, "row") + ", " + fmtBytes(s.output_bytes))));
  }
  return el("div", { class: "diagram" }, root);
}

// One lane per executor, with a row per task running at the same time
// there; a bar per task attempt from its start to its end (or to now while
// it runs), coloured by stage.
function drawTimeline(tasksByStage) {
  const lanes = new Map();
  let start = Infinity, end = 0;
  const now = Date.now();
  for (const [stageId, tasks] of tasksByStage) {
    for (const t of tasks) {
      if (!t.executor_id || !t.started_ms) continue;
      const stop = t.ended_ms || now;
      start = Math.min(start, t.started_ms);
      end = Math.max(end, stop);
      if (!lanes.has(t.executor_id)) lanes.set(t.executor_id, []);
      lanes.get(t.executor_id).push({ stageId, task: t, stop });
    }
  }
  if (lanes.size === 0) return el("p", { class: "muted" }, "No task has started yet.");
  const LABEL = 170, WIDTH = 760, BAR = 10, GAP = 3;
  const span = Math.max(end - start, 1);
  const x = (ms) => LABEL + ((ms - start) / span) * WIDTH;
  const ids = [...lanes.keys()].sort();
  const packed = ids.map((id) => {
    const rows = [];
    const bars = lanes.get(id).sort((a, b) => a.task.started_ms - b.task.started_ms);
    for (const bar of bars) {
      let row = rows.findIndex((last) => last <= bar.task.started_ms);
      if (row < 0) { row = rows.length; rows.push(0); }
      rows[row] = bar.stop;
      bar.row = row;
    }
    return { id, bars, rows: Math.max(rows.length, 1) };
  });
  const height = packed.reduce((h, lane) => h + lane.rows * (BAR + GAP) + 12, 0);
  const root = svg("svg", { width: LABEL + WIDTH + 20, height: height + 24, id: "task-timeline" });
  let y = 6;
  for (const lane of packed) {
    const laneHeight = lane.rows * (BAR + GAP) + 6;
    root.append(svg("rect", { class: "lane", x: LABEL, y, width: WIDTH, height: laneHeight }));
    root.append(svg("text", { x: 4, y: y + 14, "data-executor": lane.id }, lane.id.length > 22 ? lane.id.slice(0, 21) + "…" : lane.id));
    for (const { stageId, task, stop, row } of lane.bars) {
      const bx = x(task.started_ms);
      root.append(svg("rect", {
        class: "task " + task.state, x: bx, y: y + 3 + row * (BAR + GAP), width: Math.max(x(stop) - bx, 2), height: BAR,
        fill: `hsl(${(stageId * 67) % 360}, 55%, ${task.state === "running" ? 62 : 45}%)`,
      }, svg("title", {}, `stage ${stageId} partition ${task.partition} attempt ${task.attempt}: ${fmtDuration(stop - task.started_ms)}`)));
    }
    y += laneHeight + 6;
  }
  root.append(svg("text", { x: LABEL, y: y + 12 }, "0"));
  root.append(svg("text", { x: LABEL + WIDTH - 60, y: y + 12 }, fmtDuration(span)));
  return el("div", { class: "diagram" }, root);
}

function stageDetail(stage, tasks) {
  const d = stage.task_durations;
  return el("section", { id: "stage-detail" },
    el("h2", {}, "Stage " + stage.stage_id),
    el("dl", { class: "facts" },
      el("dt", {}, "Tasks"), el("dd", {}, `${stage.tasks.done} done, ${stage.tasks.running} running, ${stage.tasks.pending} pending, ${stage.tasks.waiting} waiting` +
        (stage.tasks.stopped ? `, ${stage.tasks.stopped} stopped` : "") + ` of ${stage.tasks.total}`),
      el("dt", {}, "Output"), el("dd", {}, `${plural(stage.output_rows, "row")}, ${fmtBytes(stage.output_bytes)}`),
      el("dt", {}, "Spilled"), el("dd", {}, `${fmtBytes(stage.spilled_bytes)} in ${stage.spill_count} files`),
      el("dt", {}, "Shuffle reads"), el("dd", {}, `${stage.local_reads} local, ${stage.remote_fetches} remote`),
      el("dt", {}, "Task time"), el("dd", {}, `min ${fmtDuration(d.min_ms)}, median ${fmtDuration(d.median_ms)}, max ${fmtDuration(d.max_ms)}` +
        (d.slowest_executor ? ` (slowest: partition ${d.slowest_partition} on ${d.slowest_executor})` : "")),
      el("dt", {}, "Failed attempts"), el("dd", {}, String(stage.failed_attempts))),
    el("h2", {}, "Plan with metrics"),
    el("pre", { class: "metrics" }, stage.metrics_text || stage.plan),
    el("h2", {}, "Tasks"),
    el("table", { id: "tasks-table" },
      el("thead", {}, el("tr", {}, ["Partition", "Attempt", "State", "Executor", "Duration", "Rows", "Bytes", "Spilled"].map((h) => el("th", {}, h)))),
      el("tbody", {}, (tasks || []).map((t) => el("tr", {},
        el("td", { class: "num" }, t.partition), el("td", { class: "num" }, t.attempt), el("td", {}, t.state),
        el("td", {}, t.executor_id || "–"), el("td", { class: "num" }, fmtDuration(t.duration_ms)),
        el("td", { class: "num" }, t.output_rows), el("td", { class: "num" }, fmtBytes(t.output_bytes)),
        el("td", { class: "num" }, fmtBytes(t.spilled_bytes)))))));
}

async function jobPage(jobId) {
  const job = await api("/api/v1/jobs/" + encodeURIComponent(jobId));
  const tasksByStage = new Map();
  await Promise.all(job.stages.map(async (s) => {
    tasksByStage.set(s.stage_id, await api(`/api/v1/jobs/${encodeURIComponent(jobId)}/stages/${s.stage_id}/tasks`));
  }));
  if (selectedStage === null || !job.stages.some((s) => s.stage_id === selectedStage)) {
    const final = job.stages.find((s) => s.is_final);
    selectedStage = final ? final.stage_id : null;
  }
  const render = () => jobPage(jobId);
  const select = (id) => { selectedStage = id; route(render); };
  const running = !TERMINAL.includes(job.state);
  const cancel = running
    ? el("button", { class: "danger", id: "cancel-job", type: "button", onclick: async () => {
      if (!confirm("Cancel job " + jobId + "?")) return;
      try { await api(`/api/v1/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" }); } catch (e) { alert(e.message); }
      route(render);
    } }, "Cancel job")
    : null;
  const stage = job.stages.find((s) => s.stage_id === selectedStage);
  setMain(
    el("div", { class: "row" }, el("h1", {}, "Job " + job.job_id), badge(job.state), cancel),
    el("dl", { class: "facts", id: "job-facts" },
      el("dt", {}, "Owner"), el("dd", {}, job.owner),
      el("dt", {}, "Tenant / pool"), el("dd", {}, (job.tenant || "–") + " / " + (job.pool || "–")),
      el("dt", {}, "Submitted"), el("dd", {}, fmtTime(job.submitted_ms)),
      el("dt", {}, "Ended"), el("dd", {}, fmtTime(job.ended_ms)),
      el("dt", {}, "Duration"), el("dd", {}, fmtDuration(job.duration_ms)),
      el("dt", {}, "Query"), el("dd", {}, el("pre", { class: "query" }, job.query)),
      job.error ? [el("dt", {}, "Error"), el("dd", { class: "error" }, job.error)] : null),
    el("h2", {}, "Stages"),
    job.stages.length ? drawDag(job.stages, select) : el("p", { class: "muted" }, job.state === "queued" ? "Queued: " + (job.queue_reason || "") : "Not planned yet."),
    el("h2", {}, "Task timeline by executor"),
    drawTimeline(tasksByStage),
    stage ? stageDetail(stage, tasksByStage.get(stage.stage_id)) : null,
    job.failed_attempts.length ? [
      el("h2", {}, "Failed attempts"),
      el("table", {}, el("thead", {}, el("tr", {}, ["Stage", "Partition", "Attempt", "Executor", "Kind", "Error"].map((h) => el("th", {}, h)))),
        el("tbody", {}, job.failed_attempts.map((f) => el("tr", {},
          el("td", {}, f.stage_id), el("td", {}, f.partition), el("td", {}, f.attempt), el("td", {}, f.executor_id),
          el("td", {}, f.kind), el("td", { class: "error" }, f.message)))))] : null);
  if (running) schedule(render);
}

async function executorsPage() {
  const executors = await api("/api/v1/executors");
  const now = Date.now();
  setMain(
    el("h1", {}, "Executors"),
    executors.length === 0
      ? el("p", { class: "muted" }, "No executor is registered.")
      : el("table", { id: "executors-table" },
        el("thead", {}, el("tr", {}, ["Executor", "Address", "State", "Slots", "Running", "Memory reserved / budget", "Peak", "Last heartbeat"].map((h) => el("th", {}, h)))),
        el("tbody", {}, executors.map((e) => el("tr", { "data-executor": e.executor_id },
          el("td", {}, e.executor_id),
          el("td", {}, e.host + ":" + e.port),
          el("td", {}, badge(e.state)),
          el("td", { class: "num" }, e.slots),
          el("td", { class: "num" }, e.running_tasks),
          el("td", {}, bar(e.memory.reserved_bytes, e.memory.budget_bytes), " ", fmtBytes(e.memory.reserved_bytes) + " / " + fmtBytes(e.memory.budget_bytes)),
          el("td", { class: "num" }, fmtBytes(e.memory.peak_bytes)),
          el("td", {}, Math.max(0, Math.round((now - e.last_heartbeat_ms) / 1000)) + " s ago"))))));
  schedule(executorsPage);
}

function loginPage(message) {
  clearTimeout(refreshTimer);
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  const form = document.getElementById("login-template").content.firstElementChild.cloneNode(true);
  setMain(form);
  const error = form.querySelector("#login-error");
  if (message) error.textContent = message;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = form.querySelector("#login-user").value;
    const password = form.querySelector("#login-password").value;
    try {
      const bytes = new TextEncoder().encode(user + ":" + password);
      const basic = btoa(String.fromCharCode(...bytes));
      const answer = await api("/api/v1/login", { method: "POST", headers: { Authorization: "Basic " + basic } });
      sessionStorage.setItem(TOKEN_KEY, answer.token);
      route();
    } catch (e) {
      error.textContent = e.message;
    }
  });
}

async function header() {
  const [me, cluster] = await Promise.all([api("/api/v1/whoami"), api("/api/v1/cluster")]);
  document.getElementById("who").textContent = me.user + (me.admin ? " (admin)" : "");
  document.getElementById("logout").hidden = false;
  document.getElementById("cluster-summary").textContent =
    `${cluster.executors} executors, ${cluster.slots_total - cluster.slots_free}/${cluster.slots_total} slots busy, ` +
    `${cluster.jobs_running} running, ${cluster.jobs_queued} queued`;
}

async function route(render) {
  clearTimeout(refreshTimer);
  if (!sessionStorage.getItem(TOKEN_KEY)) return loginPage();
  const hash = location.hash || "#/jobs";
  const jobMatch = hash.match(/^#\/jobs\/([A-Za-z0-9_-]+)$/);
  document.getElementById("nav-jobs").classList.toggle("active", hash.startsWith("#/jobs"));
  document.getElementById("nav-executors").classList.toggle("active", hash === "#/executors");
  try {
    await header();
    if (render) await render();
    else if (jobMatch) await jobPage(jobMatch[1]);
    else if (hash === "#/executors") await executorsPage();
    else await jobsPage();
  } catch (e) {
    if (e instanceof Unauthenticated) {
      sessionStorage.removeItem(TOKEN_KEY);
      return loginPage(e.message);
    }
    setMain(el("p", { class: "error", id: "page-error" }, e.message));
  }
}

window.addEventListener("hashchange", () => { selectedStage = null; route(); });
document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  loginPage();
});
route();
