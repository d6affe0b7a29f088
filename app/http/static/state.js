// What the page knows: the rows (the history), the queue, the selection, the classes.
// One object that every module reads and changes; the modules render from it.

import { $ } from "./dom.js";

export const state = {
  rows: [], // every photo in the table, oldest first: the history
  queue: [], // ids of rows waiting for their turn
  selected: null, // id of the row in the viewer
  follow: true, // the viewer follows the photo being counted until someone picks a row
  running: false,
  paused: false, // the service stopped answering mid-batch: waiting for it to come back
  controller: null, // aborts the request in flight (Stop)
  batch: { done: 0, total: 0, failed: 0 },
  classes: [], // class names in .names order (the order of `stat`)
  hidden: new Set(), // classes whose boxes are hidden in the viewer
  skipped: [], // names of files of this batch that are not photos
  zipping: false, // a ZIP is being prepared: one at a time
  // Whether the person moved the threshold slider: until then it follows the model's
  // default (GET model), the photos are sent without a threshold and the service's own
  // default counts them, as it counts the API's and `count`'s.
  thresholdChosen: false,
  modelThreshold: null, // the model's default threshold, as GET model last said
};

let nextId = 0;
export const newId = () => `${Date.now().toString(36)}-${(nextId++).toString(36)}`;
export const rowById = (id) => state.rows.find((row) => row.id === id);

export const total = (stat) => Object.values(stat).reduce((sum, n) => sum + n, 0);

// The settings a photo is counted with, as the controls show them now.
export function currentSettings() {
  return {
    threshold: Number($("threshold").value),
    tiling: $("tiling").value,
    autoCrop: $("auto-crop").checked,
  };
}

// The slider set from here (the model's default, an answer's threshold), not by the person.
export function showThreshold(value) {
  $("threshold").value = value;
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
}

// Whether a row's result was counted with other settings than `now` (a failed row always is).
export function countedOtherwise(row, now) {
  if (row.status === "failed") return true;
  const result = row.result;
  if (!result) return false;
  return result.threshold !== now.threshold || (result.tiling ?? "auto") !== now.tiling ||
    Boolean(result.autoCrop) !== now.autoCrop;
}

export function learnClasses(names) {
  for (const name of names) if (!state.classes.includes(name)) state.classes.push(name);
}

// The service's own colours (app/vision/annotate.py): the page and its pictures agree.
const PALETTE = [
  [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
  [240, 50, 230], [210, 245, 60], [250, 190, 190], [0, 128, 128], [170, 110, 40], [255, 225, 25],
];

export function classColour(name) {
  const index = Math.max(0, state.classes.indexOf(name));
  if (index < PALETTE.length) return `rgb(${PALETTE[index].join(" ")})`;
  return `hsl(${Math.round(((index * 0.618033988749895) % 1) * 360)} 89% 55%)`; // golden ratio, as the service
}
