// gcbridge status page: polls /status and renders it. Values are set with textContent only.
"use strict";
(function () {
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  const num = (v) => (typeof v === "number" ? v.toLocaleString("en") : "–");
  const secs = (v) => (typeof v === "number" ? (v < 120 ? v.toFixed(1) + " s" : (v / 60).toFixed(1) + " min") : "–");
  const time = (t) => (typeof t === "number" && t > 0 ? new Date(t * 1000).toLocaleTimeString() : "–");
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
    set("updated", "updated " + new Date().toLocaleTimeString());

    const g = s.genesys || {};
    const ev = s.events || {};
    set("events-received", num(ev.received));
    set("duplicates", num(g.duplicates_dropped));
    set("unrouted", num(ev.unrouted));
    const rejected = g.rejected_topics || [];
    $("rejected").hidden = rejected.length === 0;
    set("rejected", rejected.length ? "topics rejected by Genesys Cloud: " + rejected.join(", ") : "");
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
    set("sn-reachable", sn.reachable === true ? "reachable" : sn.reachable === false ? "unreachable" : "unknown");
    set("sn-detail", sn.last_error ? "last error: " + sn.last_error : sn.instance || "");
    set("genesys-endpoint", g.endpoint || "–");
    set("topics", num(g.topics));
    set("token-refreshes", num(g.token_refreshes));

    fillRows("channels", (g.channels || []).map((c) => [
      c.path || String(c.shard), c.id || "", { text: c.state || "", cls: "state-" + (c.state || "") },
      num(c.topics), time(c.connected_since), ago(c.last_frame_at), time(c.expires_at),
    ]));
    const counts = (m) => Object.entries(m || {}).map(([k, v]) => [k, num(v)]);
    fillRows("reconnects", counts(g.reconnects));
    fillRows("rotations", counts(g.rotations));
    fillRows("recent-gaps", (gaps.recent || []).map((x) => [
      time(x.start), time(x.end), secs(x.seconds), x.reason || "", (x.topics || []).length + " topics",
    ]));
  }

  async function poll() {
    try {
      const res = await fetch("/status", { cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      render(await res.json());
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
