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
import { countedOtherwise, currentSettings, rowById, state } from "./state.js";
import { recountable, render, renderButtons } from "./table.js";

const SETTINGS_STORE = "count-organisms.settings";

// Threshold, tiling and crop as they were left: a lab counts with the same ones all day.
function keptSettings() {
  try { return JSON.parse(localStorage.getItem(SETTINGS_STORE) || "{}") || {}; } catch { return {}; }
}

function restoreSettings() {
  const kept = keptSettings();
  if (Number.isFinite(kept.threshold)) $("threshold").value = kept.threshold;
  if (["auto", "on", "off"].includes(kept.tiling)) $("tiling").value = kept.tiling;
  if (typeof kept.autoCrop === "boolean") $("auto-crop").checked = kept.autoCrop;
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
}

function keepSettings() {
  try { localStorage.setItem(SETTINGS_STORE, JSON.stringify(currentSettings())); } catch { /* private mode */ }
}

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
  restoreSettings();
  $("threshold").addEventListener("input", () => {
    $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
    renderButtons();
  });
  // Released, or another tiling or crop chosen: the settings are kept for the next visit,
  // and the photo in the viewer is counted again with them (first in line).
  for (const id of ["threshold", "tiling", "auto-crop"]) {
    $(id).addEventListener("change", () => {
      keepSettings();
      const row = rowById(state.selected);
      if (row && row.status !== "waiting" && row.status !== "counting" && countedOtherwise(row, currentSettings())) {
        state.follow = false;
        enqueue([row.id], { first: true });
      } else {
        renderButtons();
      }
    });
  }
  $("count").addEventListener("click", () => {
    enqueue(state.rows.filter((row) => row.status === "waiting").map((row) => row.id));
  });
  $("stop").addEventListener("click", stop);
  $("recount-all").addEventListener("click", () => enqueue(recountable()));
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

// Until this browser keeps a threshold of its own, the slider starts at the model's
// (DEFAULT_THRESHOLD, or the one evaluate --save-threshold saved), as the API and count do.
window.addEventListener("model", (event) => {
  const value = event.detail.default_threshold;
  if (!Number.isFinite(keptSettings().threshold) && Number.isFinite(value)) {
    $("threshold").value = value;
    $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
    renderButtons();
  }
});

wire();
loadModel();
loadHistory().then(render);
