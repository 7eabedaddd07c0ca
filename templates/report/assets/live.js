// The live view (`runyard ui`): the page reloads when the results branch moves, and a
// running run's log follows its runner's output. Only the server that sent the page is asked.
"use strict";

const POLL_MS = 1000;
const startTip = document.body.dataset.live;
const log = document.getElementById("log");
let logFrom = null;

async function poll() {
  try {
    const response = await fetch("/api/tip", { cache: "no-store" });
    const state = await response.json();
    if (state.tip !== startTip) {
      location.reload();
      return;
    }
    if (log && log.dataset.state === "running") await followLog();
  } catch (error) {
    document.getElementById("live-status").textContent = "live (server not answering)";
  }
  setTimeout(poll, POLL_MS);
}

async function followLog() {
  const from = logFrom === null ? 0 : logFrom;
  const response = await fetch("/api/log/" + encodeURIComponent(log.dataset.uid) + "?from=" + from,
                               { cache: "no-store" });
  if (!response.ok) return;
  const part = await response.json();
  if (logFrom === null && part.text) log.textContent = "";
  log.textContent += part.text;
  logFrom = part.next;
}

setTimeout(poll, POLL_MS);
