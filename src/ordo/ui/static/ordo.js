// ordo's few lines of behaviour beyond htmx: confirmation dialogs, log search, and
// following the end of a live log. No build step; plain browser JavaScript.
"use strict";

// A DAG is fitted to its card's width (CSS: down to 60 %); "Actual size" shows it
// unshrunk. Either way, a graph wider than its card says so and scrolls sideways. The
// choice is kept on <html>, so it survives the live part being swapped in again.
function fitDags() {
  const actual = document.documentElement.dataset.dagZoom === "actual";
  for (const box of document.querySelectorAll(".scroll.dag")) {
    const over = box.scrollWidth > box.clientWidth + 1;
    box.dataset.overflow = String(over);
    const tools = box.previousElementSibling;
    if (!tools || !tools.classList.contains("dag-tools")) continue;
    const hint = tools.querySelector(".scroll-hint");
    if (hint) hint.hidden = !over;
    const zoom = tools.querySelector(".dag-zoom");
    if (zoom) {
      zoom.setAttribute("aria-pressed", String(actual));
      zoom.textContent = actual ? "Fit to width" : "Actual size";
    }
  }
}

try {
  if (sessionStorage.getItem("ordo-dag-zoom") === "actual") document.documentElement.dataset.dagZoom = "actual";
} catch (e) { /* storage may be off: fit to width */ }
document.addEventListener("DOMContentLoaded", fitDags);
document.addEventListener("htmx:afterSettle", fitDags);
window.addEventListener("resize", fitDags);

document.addEventListener("click", (event) => {
  const zoom = event.target.closest(".dag-zoom");
  if (zoom) {
    const actual = document.documentElement.dataset.dagZoom !== "actual";
    document.documentElement.dataset.dagZoom = actual ? "actual" : "fit";
    try { sessionStorage.setItem("ordo-dag-zoom", actual ? "actual" : "fit"); } catch (e) { /* ignore */ }
    fitDags();
    return;
  }
  const opener = event.target.closest("[data-dialog]");
  if (opener) {
    const dialog = document.getElementById(opener.dataset.dialog);
    if (dialog) dialog.showModal();
    return;
  }
  const closer = event.target.closest("[data-close]");
  if (closer) closer.closest("dialog").close();
});

function filterLog(list) {
  const box = document.querySelector(".log-search");
  const wanted = box ? box.value.trim().toLowerCase() : "";
  for (const line of list.children) {
    line.hidden = wanted !== "" && !line.textContent.toLowerCase().includes(wanted);
  }
}

document.addEventListener("input", (event) => {
  if (event.target.matches(".log-search")) {
    const list = document.getElementById("log-lines");
    if (list) filterLog(list);
  }
});

document.addEventListener("htmx:sseBeforeMessage", (event) => {
  const list = event.target;
  if (list.id !== "log-lines") return;
  list.dataset.atEnd = String(list.scrollTop + list.clientHeight >= list.scrollHeight - 4);
});

document.addEventListener("htmx:sseMessage", (event) => {
  const list = event.target;
  if (list.id !== "log-lines") return;
  filterLog(list);
  if (list.dataset.atEnd !== "false") list.scrollTop = list.scrollHeight;
});
