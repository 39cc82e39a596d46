// The dashboard's only script: the live calls list (Server-Sent Events), the knowledge-base
// re-index progress, and confirmation of destructive buttons. No libraries, no build step.
"use strict";

function liveCalls(box) {
  const src = new EventSource("/admin/api/live");
  src.addEventListener("calls", (ev) => {
    const calls = JSON.parse(ev.data);
    box.replaceChildren();
    if (calls.length === 0) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No call right now.";
      box.append(p);
      return;
    }
    for (const c of calls) {
      const div = document.createElement("div");
      div.className = "turn live-call";
      div.dataset.sid = c.call_sid;
      const a = document.createElement("a");
      a.href = "/admin/calls/" + encodeURIComponent(c.call_sid);
      a.textContent = c.caller + " - " + c.seconds + " s, " + c.turns + " turn(s)";
      const last = document.createElement("div");
      last.className = "heard";
      last.textContent = c.last_said ? "Caller: " + c.last_said : "";
      div.append(a, last);
      box.append(div);
    }
  });
  src.onerror = () => { box.dataset.state = "reconnecting"; };
  src.onopen = () => { box.dataset.state = "connected"; };
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
