// The dashboard's only script: the live calls list (Server-Sent Events), the knowledge-base
// re-index progress, and confirmation of destructive buttons. No libraries, no build step.
"use strict";

function liveCalls(box) {
  let calls = [];
  let skew = 0;   // server clock minus browser clock, seconds
  function render() {
    box.replaceChildren();
    if (calls.length === 0) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No call right now.";
      box.append(p);
      return;
    }
    const now = Date.now() / 1000 + skew;
    for (const c of calls) {
      const div = document.createElement("div");
      div.className = "turn live-call";
      div.dataset.sid = c.call_sid;
      const badge = document.createElement("span");
      badge.className = "badge live";
      badge.textContent = "on the line";
      const a = document.createElement("a");
      a.href = "/admin/calls/" + encodeURIComponent(c.call_sid);
      const secs = Math.max(0, Math.round(now - c.started));
      const mmss = Math.floor(secs / 60) + ":" + String(secs % 60).padStart(2, "0");
      a.textContent = " " + c.caller + " - " + mmss + " - " + c.turns + " turn(s)";
      const last = document.createElement("div");
      last.className = "heard";
      last.textContent = c.last_said ? "Caller said: " + c.last_said : "";
      div.append(badge, a, last);
      box.append(div);
    }
  }
  const src = new EventSource("/admin/api/live");
  src.addEventListener("calls", (ev) => {
    calls = JSON.parse(ev.data);
    if (calls.length) skew = (calls[0].started + calls[0].seconds) - Date.now() / 1000;
    render();
  });
  src.onerror = () => { box.dataset.state = "reconnecting"; };
  src.onopen = () => { box.dataset.state = "connected"; };
  setInterval(() => { if (calls.length) render(); }, 1000);
}

function kbProgress(box) {
  const bar = box.querySelector("progress");
  const text = box.querySelector(".status");
  async function tick() {
    const resp = await fetch("/admin/api/kb/progress", { credentials: "same-origin" });
    if (!resp.ok) return;
    const job = await resp.json();
    bar.max = Math.max(job.files_total, 1);
    bar.value = job.files_done;
    text.textContent = job.message;
    if (job.running) setTimeout(tick, 500);
  }
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live-calls");
  if (live) liveCalls(live);
  const kb = document.getElementById("kb-progress");
  if (kb) kbProgress(kb);
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
});
