// gcbridge status page: polls /status and renders it. Values are set with textContent only.
"use strict";
(function () {
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  const num = (v) => (typeof v === "number" ? v.toLocaleString("en") : "–");
  const secs = (v) => (typeof v === "number" ? (v < 120 ? v.toFixed(1) + " s" : (v / 60).toFixed(1) + " min") : "–");
  // Date and time, always both and always UTC, so that a channel expiring tomorrow never reads as earlier
  // than one connected today, and the page agrees with the logs.
  const time = (t) => (typeof t === "number" && t > 0 ? new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ") : "–");
  const clock = (t) => new Date(t * 1000).toISOString().slice(11, 16);
  const ago = (t) => (typeof t === "number" && t > 0 ? secs(Math.max(0, Date.now() / 1000 - t)) + " ago" : "–");

  function set(id, text) { const el = $(id); if (el) el.textContent = text; }

  function fillRows(tableId, rows) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren();
    for (const cells of rows) {
      const tr = document.createElement("tr");
      for (const cell of cells) {
        const td = document.createElement("td");
        if (cell && typeof cell === "object") { td.textContent = cell.text; td.className = cell.cls || ""; }
        else td.textContent = cell;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  function render(s) {
    const state = s.state || "unknown";
    $("state").dataset.state = state;
    set("state", state);
    const ready = s.readiness || {};
    $("ready").dataset.ready = String(Boolean(ready.ready));
    set("ready", ready.ready ? "ready" : "not ready");
    set("reasons", (ready.reasons || []).join(" · "));
    set("updated", "updated " + time(Date.now() / 1000) + " UTC");

    const g = s.genesys || {};
    const ev = s.events || {};
    set("events-received", num(ev.received));
    set("duplicates", num(g.duplicates_dropped));
    set("unrouted", num(ev.unrouted));
    const rejected = g.rejected_topics || [];
    $("rejected-topics").hidden = rejected.length === 0;
    set("rejected-topics", rejected.length ? "topics rejected by Genesys Cloud: " + rejected.join(", ") : "");
    const d = s.deliveries || {};
    set("delivered", num(d.delivered));
    set("retries", num(d.retry));
    set("rejected", num(d.rejected));
    const o = s.outbox || {};
    set("outbox-pending", num(o.pending));
    set("outbox-inflight", num(o.in_flight));
    set("outbox-dead", num(o.dead));
    set("outbox-age", secs(o.oldest_pending_age));
    const gaps = s.gaps || {};
    set("gaps", num(gaps.count));
    set("gap-seconds", secs(gaps.seconds));
    const sn = s.servicenow || {};
    // a sink-wide condition (credentials refused, a missing table, ...) pauses every delivery: say so first
    const cond = sn.condition;
    set("sn-reachable", cond ? "paused" : sn.reachable === true ? "reachable"
      : sn.reachable === false ? "unreachable" : "unknown");
    set("sn-detail", cond ? cond.summary + " since " + time(cond.since) + ": " + cond.action
      : sn.last_error ? "last error: " + sn.last_error : sn.instance || "");
    set("genesys-endpoint", g.endpoint || "–");
    set("topics", num(g.topics));
    set("token-refreshes", num(g.token_refreshes));

    fillRows("channels", (g.channels || []).map((c) => [
      c.path || String(c.shard), c.id || "", { text: c.state || "", cls: "state-" + (c.state || "") },
      num(c.topics), time(c.connected_since), ago(c.last_frame_at), time(c.expires_at),
    ]));
    const counts = (m) => {
      const rows = Object.entries(m || {}).map(([k, v]) => [k, num(v)]);
      return rows.length ? rows : [[{ text: "none", cls: "muted" }, ""]];
    };
    fillRows("reconnects", counts(g.reconnects));
    fillRows("rotations", counts(g.rotations));
    fillRows("recent-gaps", (gaps.recent || []).map((x) => [
      time(x.start), time(x.end), secs(x.seconds), x.reason || "", (x.topics || []).length + " topics",
    ]));
    renderBackfill(s.backfill || {});
  }

  // back-fill: jobs waiting or running (the big number), outcomes, and the recent jobs with their reasons
  function renderBackfill(b) {
    const jobs = b.jobs || {};
    const open = (jobs.pending || 0) + (jobs.running || 0);
    set("backfill-open", b.enabled === false && !open ? "off" : num(open) + (b.running ? " (running)" : " waiting"));
    set("backfill-done", num(jobs.done));
    set("backfill-partial", num(jobs.partial));
    set("backfill-failed", num(jobs.failed));
    fillRows("backfill-jobs", (b.recent || []).map((j) => {
      const missing = (j.unfillable || []).map((u) => u.count + " topics: " + u.reason);
      if (j.last_error) missing.push(j.last_error);
      const bad = j.state === "failed" || j.state === "partial";
      return [
        String(j.id), { text: j.state || "", cls: bad ? "error" : "" }, time(j.start), time(j.end), j.reason || "",
        num(j.attempts), num(j.events_found), num(j.events_written), missing.join("; ") || "–",
      ];
    }));
  }

  // -- the last hour: small bar charts and the gap timeline, drawn here as SVG (no library, no network) ----
  const SVG = "http://www.w3.org/2000/svg";
  const HOUR = 3600;
  const WIDTH = 600;

  function svgEl(name, attrs, title) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (title) { const t = document.createElementNS(SVG, "title"); t.textContent = title; el.appendChild(t); }
    return el;
  }

  // The figure's SVG (created once) and its axis line below it.
  function canvas(fig, height) {
    let svg = fig.querySelector("svg");
    if (!svg) {
      svg = svgEl("svg", { viewBox: `0 0 ${WIDTH} ${height}`, preserveAspectRatio: "none", role: "img" });
      svg.style.height = height + "px";
      const axis = document.createElement("div");
      axis.className = "axis muted";
      for (const text of ["60 min ago", "", "now"]) {
        const span = document.createElement("span");
        span.textContent = text;
        axis.appendChild(span);
      }
      fig.append(svg, axis);
    }
    svg.replaceChildren();
    return svg;
  }

  // x position (0..WIDTH) of a UNIX time within the hour ending at `now`
  const xOf = (t, now) => Math.min(WIDTH, Math.max(0, ((t - (now - HOUR)) / HOUR) * WIDTH));

  function bars(figId, minutes, now, field, format) {
    const fig = $(figId);
    const svg = canvas(fig, 56);
    const shown = minutes.filter((m) => m.start + 60 > now - HOUR && typeof m[field] === "number");
    const peak = Math.max(0, ...shown.map((m) => m[field]));
    const top = Math.max(peak, 1e-9);  // the scale; an all-zero hour draws flat bars
    for (const m of shown) {
      const h = (m[field] / top) * 52;
      const x = xOf(m.start, now);
      const w = Math.max(1, xOf(m.start + 60, now) - x - 1);
      svg.appendChild(svgEl("rect", { x, y: 54 - h, width: w, height: Math.max(h, 0.5), class: "bar" },
        `${clock(m.start)} UTC: ${format(m[field])}`));
    }
    svg.appendChild(svgEl("line", { x1: 0, y1: 54.5, x2: WIDTH, y2: 54.5, class: "baseline" }));
    const last = shown.length ? shown[shown.length - 1][field] : null;
    fig.querySelector(".latest").textContent = last === null ? "(no data yet)" : `now ${format(last)} · peak ${format(peak)}`;
    fig.querySelector(".axis span:nth-child(2)").textContent = shown.length ? `bar = 1 minute` : "";
  }

  function gapTimeline(gaps, now) {
    const fig = $("gap-timeline");
    const svg = canvas(fig, 18);
    svg.appendChild(svgEl("rect", { x: 0, y: 2, width: WIDTH, height: 14, class: "track" }));
    const inHour = gaps.filter((g) => typeof g.start === "number" && typeof g.end === "number" && g.end > now - HOUR);
    for (const g of inHour) {
      const x = xOf(g.start, now);
      const w = Math.max(2, xOf(g.end, now) - x);  // a 1 s gap still shows
      svg.appendChild(svgEl("rect", { x, y: 0, width: w, height: 18, class: "gap" },
        `${time(g.start)} to ${time(g.end)} UTC (${secs(g.seconds)}): ${g.reason || ""}`));
    }
    fig.querySelector(".latest").textContent = inHour.length ? `${inHour.length} in the last hour` : "none in the last hour";
  }

  function charts(s) {
    const now = typeof s.now === "number" ? s.now : Date.now() / 1000;
    const minutes = (s.history || {}).minutes || [];
    bars("chart-events-in", minutes, now, "events_in", num);
    bars("chart-records-written", minutes, now, "records_written", num);
    bars("chart-outbox-depth", minutes, now, "outbox_depth", num);
    bars("chart-servicenow-latency", minutes, now, "servicenow_latency_ms", (v) => num(Math.round(v)) + " ms");
    gapTimeline((s.gaps || {}).recent || [], now);
  }

  async function poll() {
    try {
      const res = await fetch("/status", { cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const doc = await res.json();
      render(doc);
      charts(doc);
      $("error").hidden = true;
    } catch (err) {
      set("error", "cannot reach the service: " + err.message);
      $("error").hidden = false;
      $("state").dataset.state = "unknown";
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }
  poll();
})();
