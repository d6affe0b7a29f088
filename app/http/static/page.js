// The page: photos in, counted one at a time, a row per photo, a viewer for the selected
// one, and a history kept in this browser (IndexedDB). No library: it must work offline.
// This module wires the controls to the modules that do the work:
//   intake.js (photos in) -> queue.js (counting in turn, via service.js) -> history.js;
//   table.js renders the rows and, through viewer.js and stage.js, the photo in view;
//   downloads.js (CSV, annotated JPEGs, zip.js).

import { $, showError } from "./dom.js";
import { downloadCsv, downloadPhoto, downloadZip } from "./downloads.js";
import { forgetAll, loadHistory } from "./history.js";
import { addFiles, droppedFiles } from "./intake.js";
import { enqueue, stop } from "./queue.js";
import { loadModel, rememberKey, restoreKey } from "./service.js";
import { setUpStage } from "./stage.js";
import { rowById, state } from "./state.js";
import { render, renderButtons } from "./table.js";

async function clearHistory() {
  stop();
  state.rows = [];
  state.selected = null;
  state.follow = true;
  $("progress").textContent = "";
  $("skipped").hidden = true;
  await forgetAll();
  render();
}

function wire() {
  restoreKey();
  $("api-key").addEventListener("change", () => {
    rememberKey();
    showError("");
    loadModel();
  });
  $("photo").addEventListener("change", (event) => { addFiles([...event.target.files]); event.target.value = ""; });
  $("folder").addEventListener("change", (event) => { addFiles([...event.target.files]); event.target.value = ""; });
  $("threshold").addEventListener("input", () => {
    $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
    renderButtons();
  });
  // Released: re-count the photo in the viewer at the new threshold (first in line).
  $("threshold").addEventListener("change", () => {
    const row = rowById(state.selected);
    const threshold = Number($("threshold").value);
    if (row && row.status !== "waiting" && row.status !== "counting" && row.result?.threshold !== threshold) {
      state.follow = false;
      enqueue([row.id], { first: true });
    }
  });
  $("count").addEventListener("click", () => {
    enqueue(state.rows.filter((row) => row.status === "waiting").map((row) => row.id));
  });
  $("stop").addEventListener("click", stop);
  $("recount-all").addEventListener("click", () => {
    const threshold = Number($("threshold").value);
    enqueue(state.rows.filter((row) => row.status === "failed" || (row.result && row.result.threshold !== threshold))
      .map((row) => row.id));
  });
  $("download-csv").addEventListener("click", downloadCsv);
  $("download-zip").addEventListener("click", () => downloadZip().finally(renderButtons));
  $("download-one").addEventListener("click", () => { const row = rowById(state.selected); if (row) downloadPhoto(row); });
  $("clear-history").addEventListener("click", clearHistory);
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    addFiles(await droppedFiles(event.dataTransfer));
  });
  setUpStage();
}

wire();
loadModel();
loadHistory().then(render);
