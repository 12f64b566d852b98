// ordo's few lines of behaviour beyond htmx: confirmation dialogs, log search, and
// following the end of a live log. No build step; plain browser JavaScript.
"use strict";

document.addEventListener("click", (event) => {
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
