// The results table, a row per photo, and the buttons that act on the rows; `render`
// redraws them and the viewer from the state.

import { $, element, seconds } from "./dom.js";
import { forgetRow } from "./history.js";
import { downloadPhoto } from "./pictures.js";
import { classColour, countedOtherwise, currentSettings, state, total } from "./state.js";
import { renderViewer } from "./viewer.js";

export function render() {
  renderTable();
  renderButtons();
  renderViewer();
}

// Class columns: those with a count in some row, in the model's order.
function shownClasses() {
  return state.classes.filter((name) => state.rows.some((row) => row.result?.stat[name] > 0));
}

function renderTable() {
  const classes = shownClasses();
  const head = element("tr", {}, element("th", { scope: "col", textContent: "File" }),
    ...classes.map((name) => element("th", { scope: "col", className: "n" },
      element("span", { className: "swatch", style: `background:${classColour(name)}` }), ` ${name}`)),
    ...["Total", "Threshold", "Time"].map((text) => element("th", { scope: "col", className: "n", textContent: text })),
    element("th", { scope: "col", textContent: "Photo" }),
    element("th", { scope: "col", ariaLabel: "Remove" }));
  $("results").tHead.replaceChildren(head);
  $("results").tBodies[0].replaceChildren(...state.rows.map((row) => {
    const result = row.result;
    const cell = (className, text) => element("td", { className, textContent: text ?? "" });
    const file = element("button", { type: "button", className: "file", textContent: row.name });
    file.setAttribute("aria-label", `Show ${row.name}`);
    file.addEventListener("click", () => { state.selected = row.id; state.follow = false; render(); });
    const save = element("button", { type: "button", className: "save secondary", textContent: "JPEG",
      disabled: !result });
    save.setAttribute("aria-label", `Download ${row.name} with its boxes`);
    save.addEventListener("click", () => downloadPhoto(row));
    const remove = element("button", { type: "button", className: "remove secondary", textContent: "✕",
      disabled: row.status === "counting" });
    remove.setAttribute("aria-label", `Remove ${row.name} from the table and the history`);
    remove.addEventListener("click", () => removeRow(row));
    const threshold = result?.threshold ?? (row.status === "counting" ? row.asked?.threshold : row.failedWith?.threshold);
    const time = { waiting: "waiting", counting: "counting…" }[row.status] ??
      (state.queue.includes(row.id) ? "queued again" : result ? seconds(result.ms) : "");
    // A failed row's reason stands under its name, in the first column, which stays in
    // view however many class columns the table scrolls (80 for a COCO model).
    const error = element("p", { className: "error", textContent: row.error });
    const tr = element("tr", {}, element("td", { className: "file-cell" }, file, error),
      ...classes.map((name) => element("td", { className: "n", textContent: result ? result.stat[name] : "",
        dataset: { class: name } })),
      cell("n total", result ? total(result.stat) : ""),
      cell("n threshold", threshold === undefined ? "" : threshold.toFixed(2)),
      cell("n time", time), element("td", {}, save), element("td", {}, remove));
    Object.assign(tr.dataset, { id: row.id, file: row.name, status: row.status });
    if (row.id === state.selected) { tr.className = "selected"; tr.setAttribute("aria-current", "true"); }
    return tr;
  }));
  $("history-note").textContent = state.rows.length
    ? "Results stay in this browser until you clear them. Pick a file name to see its photo."
    : "No photos counted yet. Results stay in this browser until you clear them.";
}

async function removeRow(row) {
  state.rows = state.rows.filter((other) => other !== row);
  state.queue = state.queue.filter((id) => id !== row.id);
  if (state.selected === row.id) state.selected = state.rows.at(-1)?.id ?? null;
  await forgetRow(row.id);
  render();
}

export function renderButtons() {
  const waiting = state.rows.filter((row) => row.status === "waiting" && !state.queue.includes(row.id)).length;
  $("count").hidden = state.running || !waiting;
  $("count").textContent = `Count ${waiting} waiting ${waiting === 1 ? "photo" : "photos"}`;
  $("stop").hidden = !state.running;
  const now = currentSettings();
  const other = recountable(now).length;
  $("recount-all").hidden = !other;
  $("recount-all").textContent = `Re-count ${other === 1 ? "1 photo" : `all ${other}`} at threshold ` +
    `${now.threshold.toFixed(2)}, tiling ${now.tiling}${now.autoCrop ? ", cropped" : ""}`;
  const counted = state.rows.some((row) => row.result || row.error);
  $("download-csv").disabled = !counted;
  $("download-zip").disabled = state.zipping || !state.rows.some((row) => row.result);
  $("clear-history").disabled = !state.rows.length;
}

// The rows counted with other settings than the controls show now, or failed.
export function recountable(now = currentSettings()) {
  return state.rows.filter((row) => row.status !== "counting" && !state.queue.includes(row.id) &&
    countedOtherwise(row, now)).map((row) => row.id);
}
