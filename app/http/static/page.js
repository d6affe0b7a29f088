// The page: photos in, counted one at a time, a row per photo, a viewer for the selected
// one, and a history kept in this browser (IndexedDB). No library: it must work offline.
// This module wires the controls to the modules that do the work:
//   intake.js (photos in) -> queue.js (counting in turn, via service.js) -> history.js;
//   table.js renders the rows and, through viewer.js and stage.js, the photo in view;
//   downloads.js (CSV) and pictures.js (the service's annotated JPEGs, one or a ZIP).

import { $, showError } from "./dom.js";
import { downloadCsv } from "./downloads.js";
import { forgetAll, loadHistory } from "./history.js";
import { addFiles, droppedFiles } from "./intake.js";
import { downloadPhoto, downloadZip } from "./pictures.js";
import { enqueue, stop } from "./queue.js";
import { loadModel, rememberKey, restoreKey } from "./service.js";
import { setUpStage } from "./stage.js";
import { countedOtherwise, currentSettings, rowById, showThreshold, state } from "./state.js";
import { recountable, render, renderButtons } from "./table.js";

const SETTINGS_STORE = "count-organisms.settings";
const DARKNET_THRESHOLD = 0.25;

// Threshold, tiling and crop as they were left: a lab counts with the same ones all day.
// The threshold only once the person moved the slider (`thresholdChosen`): a slider
// never touched follows the model's default, also after the default changes.
function keptSettings() {
  try { return JSON.parse(localStorage.getItem(SETTINGS_STORE) || "{}") || {}; } catch { return {}; }
}

// A choice of the person's: set with the mark, or, kept by an older page that stored
// whatever the slider showed, anything but the 0.25 it started at.
function chosenThreshold(kept) {
  if (!Number.isFinite(kept.threshold)) return null;
  return kept.thresholdChosen || kept.threshold !== DARKNET_THRESHOLD ? kept.threshold : null;
}

function restoreSettings() {
  const kept = keptSettings();
  const chosen = chosenThreshold(kept);
  state.thresholdChosen = chosen !== null;
  if (state.thresholdChosen) showThreshold(chosen);
  if (["auto", "on", "off"].includes(kept.tiling)) $("tiling").value = kept.tiling;
  if (typeof kept.autoCrop === "boolean") $("auto-crop").checked = kept.autoCrop;
  showThreshold($("threshold").value);
}

function keepSettings() {
  const { threshold, tiling, autoCrop } = currentSettings();
  const kept = state.thresholdChosen ? { threshold, thresholdChosen: true, tiling, autoCrop } : { tiling, autoCrop };
  try { localStorage.setItem(SETTINGS_STORE, JSON.stringify(kept)); } catch { /* private mode */ }
}

// The button back to the model's default, shown while the slider is the person's and says otherwise.
function renderModelButton() {
  const model = state.modelThreshold;
  const button = $("threshold-model");
  button.hidden = !state.thresholdChosen || model === null || model === Number($("threshold").value);
  if (model !== null) button.textContent = `Use the model's ${model.toFixed(2)}`;
}

// Released, or another tiling or crop chosen: the settings are kept for the next visit,
// and the photo in the viewer is counted again with them (first in line).
function settingsChanged() {
  keepSettings();
  renderModelButton();
  const row = rowById(state.selected);
  if (row && row.status !== "waiting" && row.status !== "counting" && countedOtherwise(row, currentSettings())) {
    state.follow = false;
    enqueue([row.id], { first: true });
  } else {
    renderButtons();
  }
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
  // Only the person moves the slider with events: the page sets it without any.
  $("threshold").addEventListener("input", () => {
    state.thresholdChosen = true;
    $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
    renderButtons();
  });
  $("threshold").addEventListener("change", () => {
    state.thresholdChosen = true;
    settingsChanged();
  });
  for (const id of ["tiling", "auto-crop"]) $(id).addEventListener("change", settingsChanged);
  $("threshold-model").addEventListener("click", () => {
    state.thresholdChosen = false;
    showThreshold(state.modelThreshold);
    settingsChanged();
  });
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

// Until the person moves it, the slider shows the model's threshold (DEFAULT_THRESHOLD, or
// the one evaluate --save-threshold saved), as the API and count count with it.
window.addEventListener("model", (event) => {
  const value = event.detail.default_threshold;
  if (!state.thresholdChosen && Number.isFinite(value)) {
    showThreshold(value);
    renderButtons();
  }
  renderModelButton();
});

// Back to the page after a while: the model's default may have changed meanwhile.
document.addEventListener("visibilitychange", () => { if (!document.hidden) loadModel(); });

wire();
loadModel();
loadHistory().then(render);
