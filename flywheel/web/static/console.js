// The console's only script: the overview redraws itself, and the review page answers to keys.
"use strict";

function refreshOverview(box) {
  setInterval(async () => {
    try {
      const response = await fetch(box.dataset.src, {credentials: "same-origin"});
      if (response.ok) box.innerHTML = await response.text();
    } catch (e) { /* the console restarting: the next tick tries again */ }
  }, Number(box.dataset.refresh) * 1000);
}

function answerKeys() {
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest("input, textarea, select")) return;
    const button = document.querySelector(`[data-key="${CSS.escape(e.key)}"]`);
    if (button) { e.preventDefault(); button.click(); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("overview");
  if (box) refreshOverview(box);
  answerKeys();
});
