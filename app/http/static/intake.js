// Taking photos in: picked files, a picked folder, or a drop; what is not a photo is
// listed as skipped, each photo becomes a row and joins the queue.

import { $ } from "./dom.js";
import { saveRows } from "./history.js";
import { enqueue } from "./queue.js";
import { newId, state } from "./state.js";
import { render } from "./table.js";

// The photo types: the service's one list (app/vision/images.py), the one `python -m app
// count` takes from a folder, written into the picker's `accept` where it serves the page.
export const PHOTO_SUFFIXES = $("photo").accept.split(",").map((suffix) => suffix.trim().toLowerCase());

function isPhoto(file) {
  const suffix = /\.[^./]*$/.exec(file.name)?.[0].toLowerCase();
  return PHOTO_SUFFIXES.includes(suffix);
}

// A folder's photos keep their path inside it: two "1.jpg" of two folders stay apart.
const displayName = (file) => file.webkitRelativePath || file.name;

// As `python -m app count` leaves them out: macOS's `._x.jpg` beside each photo copied
// to a USB stick, and hidden folders (.thumbnails/); a file picked by name is counted.
const isHidden = (file) => (file.webkitRelativePath || "").split("/").slice(1).some((part) => part.startsWith("."));

// The order `count` counts a folder in: path by path, each part compared as Python does.
function byPath(a, b) {
  const [x, y] = [displayName(a).split("/"), displayName(b).split("/")];
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return x.length - y.length;
}

export async function addFiles(picked) {
  const files = [...picked].sort(byPath);
  const hidden = files.filter(isHidden);
  const photos = files.filter((file) => isPhoto(file) && !isHidden(file));
  // Listed for the whole batch: photos added while others count join it.
  if (!state.running) { state.skipped = []; state.hiddenSkipped = 0; }
  const skipped = state.skipped;
  skipped.push(...files.filter((file) => !isPhoto(file) && !isHidden(file)).map(displayName));
  state.hiddenSkipped = (state.hiddenSkipped || 0) + hidden.length;
  const notes = [];
  if (skipped.length) {
    notes.push(`Skipped ${skipped.length} ${skipped.length === 1 ? "file that is" : "files that are"} not a photo ` +
      `(${PHOTO_SUFFIXES.join(" ")}): ${skipped.join(", ")}.`);
  }
  if (state.hiddenSkipped) {
    notes.push(`Skipped ${state.hiddenSkipped} hidden ${state.hiddenSkipped === 1 ? "file" : "files"} ` +
      "(._ files and hidden folders).");
  }
  $("skipped").hidden = !notes.length;
  $("skipped").textContent = notes.join(" ");
  const rows = photos.map((file) => ({
    id: newId(), name: displayName(file), photo: file, status: "waiting", result: null, error: "",
  }));
  state.rows.push(...rows);
  render(); // shown at once, counted once kept
  await saveRows(rows); // kept before its turn: a reload or a closed page does not lose it
  state.follow = true; // a new batch: the viewer shows each photo as it is counted
  enqueue(rows.map((row) => row.id));
}

// Dropped folders come as entries to walk; files as they are.
export async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...transfer.files];
  const files = [];
  async function walk(entry, path) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      // The path inside the dropped folder, as the folder picker gives it.
      if (path) Object.defineProperty(file, "webkitRelativePath", { value: path + file.name });
      files.push(file);
      return;
    }
    const reader = entry.createReader();
    for (;;) { // readEntries answers in pieces (100 at a time in Chromium) until empty
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await walk(child, `${path}${entry.name}/`);
    }
  }
  for (const entry of entries) await walk(entry, "");
  return files;
}
