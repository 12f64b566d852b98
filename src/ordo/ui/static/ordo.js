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

// The flow editor: a textarea under a highlighted copy of its text (no library: YAML's
// keys, comments, strings, numbers and template tags), line numbers, and the lines
// the validation messages name marked. Works offline; the textarea stays the form field.
function escapeHtml(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function highlightLine(line) {
  const comment = line.match(/^(\s*)(#.*)$/);
  if (comment) return escapeHtml(comment[1]) + '<span class="hl-comment">' + escapeHtml(comment[2]) + "</span>";
  const parts = line.match(/^(\s*-?\s*)([A-Za-z0-9_.-]+)(\s*:)(.*)$/);
  let head = "", rest = line;
  if (parts) {
    head = escapeHtml(parts[1]) + '<span class="hl-key">' + escapeHtml(parts[2]) + "</span>" + escapeHtml(parts[3]);
    rest = parts[4];
  }
  if (/^\s*(-?\d+(\.\d+)?|true|false|null)\s*$/.test(rest)) return head + '<span class="hl-number">' + escapeHtml(rest) + "</span>";
  const token = /(\{\{.*?\}\})|("(?:[^"\\]|\\.)*"?|'[^']*'?)|(\s#.*$)/g;
  let out = "", last = 0, m;
  while ((m = token.exec(rest)) !== null) {
    out += escapeHtml(rest.slice(last, m.index));
    const kind = m[1] ? "hl-template" : m[2] ? "hl-string" : "hl-comment";
    out += '<span class="' + kind + '">' + escapeHtml(m[0]) + "</span>";
    last = m.index + m[0].length;
  }
  out += escapeHtml(rest.slice(last));
  return head + out;
}

function marked() {
  const lines = new Set();
  for (const item of document.querySelectorAll("#problems [data-line]")) {
    if (item.dataset.line) lines.add(Number(item.dataset.line));
  }
  return lines;
}

function paintEditor(box) {
  const area = box.querySelector("textarea");
  const code = box.querySelector(".editor-highlight code");
  const numbers = box.querySelector(".editor-lines");
  const bad = marked();
  const lines = area.value.split("\n");
  code.innerHTML = lines.map((l, i) => {
    const html = highlightLine(l) || " ";
    return bad.has(i + 1) ? '<span class="hl-bad">' + html + "</span>" : html;
  }).join("\n") + "\n";
  numbers.innerHTML = lines.map((_, i) => bad.has(i + 1) ? '<span class="hl-bad-no">' + (i + 1) + "</span>" : String(i + 1)).join("\n");
  syncEditor(box);
}

function syncEditor(box) {
  const area = box.querySelector("textarea");
  const pre = box.querySelector(".editor-highlight");
  const numbers = box.querySelector(".editor-lines");
  pre.scrollTop = area.scrollTop;
  pre.scrollLeft = area.scrollLeft;
  numbers.scrollTop = area.scrollTop;
}

function paintEditors() {
  for (const box of document.querySelectorAll("[data-editor]")) paintEditor(box);
}

document.addEventListener("DOMContentLoaded", paintEditors);
document.addEventListener("htmx:afterSettle", paintEditors);
document.addEventListener("input", (event) => {
  const box = event.target.closest && event.target.closest("[data-editor]");
  if (box) paintEditor(box);
});
document.addEventListener("scroll", (event) => {
  const box = event.target.closest && event.target.closest("[data-editor]");
  if (box) syncEditor(box);
}, true);
document.addEventListener("keydown", (event) => {
  // Tab in the editor indents (two spaces) instead of leaving the field; Escape then Tab leaves.
  const area = event.target;
  if (event.key !== "Tab" || event.shiftKey || !area.closest || !area.closest("[data-editor]")) return;
  if (area.dataset.escaped === "true") { area.dataset.escaped = "false"; return; }
  event.preventDefault();
  const start = area.selectionStart;
  area.setRangeText("  ", start, area.selectionEnd, "end");
  area.dispatchEvent(new Event("input", { bubbles: true }));
});
document.addEventListener("keyup", (event) => {
  if (event.key === "Escape" && event.target.closest && event.target.closest("[data-editor]")) event.target.dataset.escaped = "true";
});
document.addEventListener("click", (event) => {
  const go = event.target.closest && event.target.closest(".goto-line");
  if (go) {
    event.preventDefault();
    const area = document.getElementById("flow-text");
    const line = Number(go.dataset.line);
    const lines = area.value.split("\n");
    const at = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    area.focus();
    area.setSelectionRange(at, at + (lines[line - 1] || "").length);
    return;
  }
  const more = event.target.closest && event.target.closest("#add-script");
  if (more) {
    const box = document.getElementById("more-scripts");
    const n = box.querySelectorAll("input[type=file]").length + 1;
    const label = document.createElement("label");
    label.htmlFor = "pkg-script-" + n;
    label.textContent = "Script " + n;
    const input = document.createElement("input");
    input.type = "file";
    input.name = "files";
    input.id = "pkg-script-" + n;
    input.multiple = true;
    box.append(label, input);
    input.focus();
  }
});
