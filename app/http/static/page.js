"use strict";
// The page: photos in, counted one at a time (a photo is a whole request, and the
// service queues per worker), a row per photo, a viewer for the selected one, and a
// history kept in this browser (IndexedDB). No library: it must work offline.

const $ = (id) => document.getElementById(id);
const PHOTO_NAMES = /\.(jpe?g|jfif|png|tiff?|webp|bmp|gif|mpo)$/i;
// The service's own colours (app/vision/annotate.py): the page and its pictures agree.
const PALETTE = [
  [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
  [240, 50, 230], [210, 245, 60], [250, 190, 190], [0, 128, 128], [170, 110, 40], [255, 225, 25],
];
const KEY_STORE = "count-organisms.api-key";

const state = {
  rows: [], // every photo in the table, oldest first: the history
  queue: [], // ids of rows waiting for their turn
  selected: null, // id of the row in the viewer
  follow: true, // the viewer follows the photo being counted until someone picks a row
  running: false,
  controller: null, // aborts the request in flight (Stop)
  batch: { done: 0, total: 0, failed: 0 },
  classes: [], // class names in .names order (the order of `stat`)
  hidden: new Set(), // classes whose boxes are hidden in the viewer
  skipped: [], // names of files of this batch that are not photos
  zipping: false, // a ZIP is being prepared: one at a time
};
let nextId = 0;
const newId = () => `${Date.now().toString(36)}-${(nextId++).toString(36)}`;
const rowById = (id) => state.rows.find((row) => row.id === id);

function classColour(name) {
  const index = Math.max(0, state.classes.indexOf(name));
  if (index < PALETTE.length) return `rgb(${PALETTE[index].join(" ")})`;
  return `hsl(${Math.round(((index * 0.618033988749895) % 1) * 360)} 89% 55%)`; // golden ratio, as the service
}

function seconds(milliseconds) {
  return milliseconds < 1000 ? `${Math.round(milliseconds)} ms` : `${(milliseconds / 1000).toFixed(1)} s`;
}

const total = (stat) => Object.values(stat).reduce((sum, n) => sum + n, 0);

function element(tag, { dataset, ...properties } = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  Object.assign(node.dataset, dataset);
  node.append(...children);
  return node;
}

// ---- taking photos in --------------------------------------------------------------

function isPhoto(file) {
  return file.type.startsWith("image/") || PHOTO_NAMES.test(file.name);
}

function addFiles(files) {
  const photos = files.filter(isPhoto);
  // Listed for the whole batch: photos added while others count join it.
  if (!state.running) state.skipped = [];
  const skipped = state.skipped;
  skipped.push(...files.filter((file) => !isPhoto(file)).map(displayName));
  $("skipped").hidden = !skipped.length;
  $("skipped").textContent = skipped.length
    ? `Skipped ${skipped.length} ${skipped.length === 1 ? "file that is" : "files that are"} not a photo: ${skipped.join(", ")}.`
    : "";
  const rows = photos.map((file) => ({
    id: newId(), name: displayName(file), photo: file, status: "waiting", result: null, error: "",
  }));
  state.rows.push(...rows);
  state.follow = true; // a new batch: the viewer shows each photo as it is counted
  enqueue(rows.map((row) => row.id));
}

// A folder's photos keep their path inside it: two "1.jpg" of two folders stay apart.
const displayName = (file) => file.webkitRelativePath || file.name;

// Dropped folders come as entries to walk; files as they are.
async function droppedFiles(transfer) {
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

// ---- counting, one photo after another ------------------------------------------

function enqueue(ids, { first = false } = {}) {
  const fresh = ids.filter((id) => !state.queue.includes(id) && rowById(id)?.status !== "counting");
  if (!fresh.length) { render(); return; }
  // Kept until its turn: a photo queued again shows its last result, labelled with its threshold.
  if (first) state.queue.unshift(...fresh); else state.queue.push(...fresh);
  if (!state.running) state.batch = { done: 0, total: 0, failed: 0 };
  state.batch.total += fresh.length;
  for (const id of fresh) {
    const row = rowById(id);
    if (!row.result) Object.assign(row, { status: "waiting", error: "" });
  }
  if (state.follow || state.selected === null) state.selected = fresh[0];
  showError("");
  run();
}

async function run() {
  if (state.running) { render(); return; }
  state.running = true;
  const started = performance.now();
  let stopped = false;
  try {
    while (state.queue.length && !stopped) {
      const row = rowById(state.queue.shift());
      if (row) stopped = (await countRow(row)) === "stop";
    }
  } finally {
    state.running = false;
    state.controller = null;
    state.queue = [];
    const { done, total: all, failed } = state.batch;
    const photos = (n) => `${n} ${n === 1 ? "photo" : "photos"}`;
    $("progress").textContent = stopped
      ? `Stopped after ${done} of ${all}.`
      : `Counted ${photos(done)} in ${seconds(performance.now() - started)}` +
        (failed ? `; ${failed} failed (see the Error column).` : ".");
    render();
  }
}

function settings() {
  return { threshold: Number($("threshold").value), tiling: $("tiling").value, autoCrop: $("auto-crop").checked };
}

function keyHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

// Whether this browser can draw the photo itself (not a TIFF, say): then the service
// sends only the boxes and the page draws them; otherwise it sends its own picture.
async function canShow(blob) {
  try { (await createImageBitmap(blob)).close(); return true; } catch { return false; }
}

// Returns "stop" when the rest of the queue would fail the same way (a key, the network).
async function countRow(row) {
  const previous = { status: row.status, result: row.result, error: row.error };
  const asked = settings(); // each photo takes the settings of its turn
  state.controller = new AbortController(); // before any wait: Stop must reach this photo
  row.status = "counting";
  row.result = null; // never shown as this count's result while it runs
  row.error = "";
  row.asked = asked;
  state.batch.done += 1;
  if (state.follow) state.selected = row.id;
  $("progress").textContent = `${state.batch.done} of ${state.batch.total}: ${row.name}`;
  render();
  if (row.viewable === undefined) row.viewable = await canShow(row.photo);
  // (fetch refuses at once, as aborted, if Stop came during that check)

  const form = new FormData();
  form.append("image", row.photo, row.name.split("/").pop());
  form.append("filename", row.name);
  form.append("threshold", asked.threshold);
  form.append("tiling", asked.tiling);
  form.append("auto_crop", asked.autoCrop);
  form.append("detections", "true");
  form.append("return_image", row.viewable ? "false" : "true");
  const started = performance.now();
  let response, body;
  try {
    response = await fetch("invocations", {
      method: "POST", body: form, headers: keyHeaders(), signal: state.controller.signal,
    });
    body = await response.json().catch(() => null);
  } catch (error) {
    Object.assign(row, previous);
    state.batch.done -= 1;
    if (error.name !== "AbortError") {
      showError("The service could not be reached. Check the connection, then press “Count waiting photos”.");
    }
    return "stop";
  }
  const ms = performance.now() - started;
  if (!state.rows.includes(row)) return "stop"; // the history was cleared meanwhile
  if (response.status === 401) { // every other photo would fail alike: say it once, wait for a key
    Object.assign(row, previous);
    state.batch.done -= 1;
    showError(Object.keys(keyHeaders()).length
      ? "The API key was not accepted. Check it, then press “Count waiting photos”."
      : "This service needs an API key. Enter it above, then press “Count waiting photos”.");
    return "stop";
  }
  if (!response.ok || !body || !body.stat) {
    row.status = "failed";
    row.error = explain(response.status, body);
    row.result = null;
    row.countedAt = new Date().toISOString();
    row.failedWith = asked;
    state.batch.failed += 1;
  } else {
    row.status = "done";
    row.result = {
      ...asked, ms, stat: body.stat, detections: body.detections || [], countedAt: new Date().toISOString(),
      crop: body.crop, cropNote: body.crop_note, picture: body.img ? jpegBlob(body.img) : null,
    };
    learnClasses(Object.keys(body.stat));
  }
  await saveRow(row);
  render();
  return "next";
}

// What the service says is meant for people already; add what to do where it helps.
function explain(status, body) {
  const message = body?.error?.message || `the service answered ${status}`;
  if (status === 413) return `The photo is too large: ${message}`;
  if (status === 503) return `The service is busy or still starting; re-count it in a moment (${message}).`;
  if (status >= 500) return `The service failed on this photo. Please report request ${body?.error?.request_id || ""}.`;
  return `The photo could not be counted: ${message}`;
}

function jpegBlob(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: "image/jpeg" });
}

function learnClasses(names) {
  for (const name of names) if (!state.classes.includes(name)) state.classes.push(name);
}

function stop() {
  state.queue = [];
  state.controller?.abort(); // run() then says where it stopped
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

// ---- the table -----------------------------------------------------------------

// Class columns: those with a count in some row, in the model's order.
function shownClasses() {
  return state.classes.filter((name) => state.rows.some((row) => row.result?.stat[name] > 0));
}

function render() {
  renderTable();
  renderButtons();
  renderViewer();
}

function renderTable() {
  const classes = shownClasses();
  const head = element("tr", {}, element("th", { scope: "col", textContent: "File" }),
    ...classes.map((name) => element("th", { scope: "col", className: "n" },
      element("span", { className: "swatch", style: `background:${classColour(name)}` }), ` ${name}`)),
    ...["Total", "Threshold", "Time"].map((text) => element("th", { scope: "col", className: "n", textContent: text })),
    element("th", { scope: "col", textContent: "Error" }),
    element("th", { scope: "col", textContent: "Photo" }));
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
    const threshold = result?.threshold ?? (row.status === "counting" ? row.asked?.threshold : row.failedWith?.threshold);
    const time = { waiting: "waiting", counting: "counting…" }[row.status] ??
      (state.queue.includes(row.id) ? "queued again" : result ? seconds(result.ms) : "");
    const tr = element("tr", {}, element("td", {}, file),
      ...classes.map((name) => element("td", { className: "n", textContent: result ? result.stat[name] : "",
        dataset: { class: name } })),
      cell("n total", result ? total(result.stat) : ""),
      cell("n threshold", threshold === undefined ? "" : threshold.toFixed(2)),
      cell("n time", time), cell("error", row.error), element("td", {}, save));
    Object.assign(tr.dataset, { id: row.id, file: row.name, status: row.status });
    if (row.id === state.selected) { tr.className = "selected"; tr.setAttribute("aria-current", "true"); }
    return tr;
  }));
  $("history-note").textContent = state.rows.length
    ? "Results stay in this browser until you clear them. Pick a file name to see its photo."
    : "No photos counted yet. Results stay in this browser until you clear them.";
}

function renderButtons() {
  const waiting = state.rows.filter((row) => row.status === "waiting" && !state.queue.includes(row.id)).length;
  $("count").hidden = state.running || !waiting;
  $("count").textContent = `Count ${waiting} waiting ${waiting === 1 ? "photo" : "photos"}`;
  $("stop").hidden = !state.running;
  const threshold = Number($("threshold").value);
  const other = state.rows.filter((row) => row.status !== "counting" && !state.queue.includes(row.id) &&
    (row.status === "failed" || (row.result && row.result.threshold !== threshold))).length;
  $("recount-all").hidden = !other;
  $("recount-all").textContent = `Re-count ${other === 1 ? "1 photo" : `all ${other}`} at ${threshold.toFixed(2)}`;
  const counted = state.rows.some((row) => row.result || row.error);
  $("download-csv").disabled = !counted;
  $("download-zip").disabled = state.zipping || !state.rows.some((row) => row.result);
  $("clear-history").disabled = !state.rows.length;
}

// ---- the viewer: zoom, pan, classes on and off ---------------------------------

const view = { scale: 1, x: 0, y: 0, width: 0, height: 0, fitted: true, rowId: null, url: null, source: null };

function renderViewer() {
  const row = rowById(state.selected);
  $("viewer").hidden = !row;
  if (!row) { exitFull(); return; }
  const result = row.result;
  $("viewer-title").textContent = row.name;
  const asked = row.asked || {};
  $("viewer-caption").textContent = {
    waiting: "Waiting to be counted.",
    counting: `Counting at threshold ${asked.threshold?.toFixed(2)}, tiling ${asked.tiling}…`,
    failed: `Not counted: ${row.error}`,
  }[row.status] ?? `Threshold ${result.threshold.toFixed(2)}, tiling ${result.tiling}` +
    `${result.autoCrop ? ", cropped to the sample" : ""}; counted ${new Date(result.countedAt).toLocaleString()}.`;
  showPhoto(row);
  renderLegend(row);
  $("download-one").disabled = !result;
}

// The picture under the boxes: the photo itself, or the service's annotated picture
// where this browser cannot draw the photo (TIFF).
function showPhoto(row) {
  const source = row.viewable === false ? row.result?.picture ?? null : row.photo;
  const img = $("annotated");
  if (view.rowId !== row.id || view.source !== source) {
    view.rowId = row.id;
    view.source = source;
    if (view.url) URL.revokeObjectURL(view.url);
    view.url = source ? URL.createObjectURL(source) : null;
    img.hidden = true; // the last photo's picture never stands in for this one
    $("boxes").replaceChildren();
    if (view.url) {
      img.onload = () => {
        img.hidden = false;
        view.width = img.naturalWidth;
        view.height = img.naturalHeight;
        $("canvas").style.width = `${view.width}px`;
        $("canvas").style.height = `${view.height}px`;
        $("stage").style.aspectRatio = `${view.width} / ${view.height}`;
        fit();
        drawBoxes(rowById(view.rowId));
      };
      img.onerror = () => { $("stage-note").textContent = "This browser cannot show this file."; };
      img.src = view.url;
    } else { // nothing to show: a small stage for the note, not the last photo's frame
      img.removeAttribute("src");
      view.width = 0;
      $("stage").style.aspectRatio = "";
      $("zoom-level").textContent = "–";
    }
  } else {
    drawBoxes(row);
  }
  img.alt = row.result ? `${row.name} with a box around every object found` : row.name;
  let note = "";
  if (row.status === "counting") note = "Counting…";
  else if (row.status === "waiting") note = "Waiting to be counted…";
  else if (!source) note = "This browser cannot show this file.";
  else if (row.viewable === false) note = "The service's own picture: its boxes cannot be hidden.";
  $("stage-note").textContent = note;
}

function drawBoxes(row) {
  const svg = $("boxes");
  const result = row?.result;
  svg.replaceChildren();
  if (!result || !view.width || row.viewable === false) return;
  svg.setAttribute("viewBox", `0 0 ${view.width} ${view.height}`);
  const ns = "http://www.w3.org/2000/svg";
  const rect = ([x, y, w, h], className) => {
    const node = document.createElementNS(ns, "rect");
    for (const [name, value] of Object.entries({ x, y, width: w, height: h })) node.setAttribute(name, value);
    if (className) node.setAttribute("class", className);
    return node;
  };
  if (result.crop) svg.append(rect(result.crop, "crop"));
  const groups = new Map();
  for (const detection of result.detections) {
    if (!groups.has(detection.class)) {
      const group = document.createElementNS(ns, "g");
      group.dataset.class = detection.class;
      group.setAttribute("stroke", classColour(detection.class));
      group.style.display = state.hidden.has(detection.class) ? "none" : "";
      groups.set(detection.class, group);
    }
    const box = rect(detection.box);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${detection.class} ${detection.confidence.toFixed(2)}`;
    box.append(title);
    groups.get(detection.class).append(box);
  }
  svg.append(...groups.values());
}

function renderLegend(row) {
  const result = row.result;
  const found = result ? state.classes.filter((name) => result.stat[name] > 0) : [];
  const toggles = result && row.viewable !== false;
  $("counts").replaceChildren(...found.map((name) => {
    const box = element("input", { type: "checkbox", checked: !state.hidden.has(name), disabled: !toggles });
    box.dataset.class = name;
    box.addEventListener("change", () => {
      if (box.checked) state.hidden.delete(name); else state.hidden.add(name);
      for (const group of $("boxes").querySelectorAll("g")) {
        if (group.dataset.class === name) group.style.display = box.checked ? "" : "none";
      }
    });
    return element("li", { dataset: { class: name } }, element("label", {}, box,
      element("span", { className: "swatch", style: `background:${classColour(name)}` }),
      name, element("span", { className: "n", textContent: result.stat[name] })));
  }));
  if (result && !found.length) $("counts").append(element("li", { textContent: "Nothing found." }));
  if (!result) $("counts").append(element("li", { className: "muted", textContent: row.status === "failed" ? "No counts: see the error." : "Counting…" }));
  $("total").textContent = result ? total(result.stat) : "–";
  $("took").textContent = result ? seconds(result.ms) : "–";
  $("crop-summary").textContent = !result || result.crop === undefined ? "" : result.crop
    ? `Counted inside the sample (dashed): ${result.crop[2]}×${result.crop[3]} px at ${result.crop[0]}, ${result.crop[1]}.`
    : "No sample found to crop to: the whole photo was counted.";
}

function applyView() {
  $("canvas").style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
  $("zoom-level").textContent = `${Math.round(view.scale * 100)}%`;
}

function fitScale() {
  const box = $("stage").getBoundingClientRect();
  return view.width ? Math.min(box.width / view.width, box.height / view.height) : 1;
}

function fit() {
  if (!view.width) return;
  const box = $("stage").getBoundingClientRect();
  view.scale = fitScale();
  view.x = (box.width - view.width * view.scale) / 2;
  view.y = (box.height - view.height * view.scale) / 2;
  view.fitted = true;
  applyView();
}

// Zoom by `factor` keeping the photo's point under (px, py) of the stage in place.
function zoomAt(factor, px, py) {
  const fitted = fitScale();
  const scale = Math.min(Math.max(view.scale * factor, fitted / 2), Math.max(8, fitted));
  view.x = px - ((px - view.x) * scale) / view.scale;
  view.y = py - ((py - view.y) * scale) / view.scale;
  view.scale = scale;
  view.fitted = false;
  applyView();
}

function zoomCentre(factor) {
  const box = $("stage").getBoundingClientRect();
  zoomAt(factor, box.width / 2, box.height / 2);
}

function setUpStage() {
  const stage = $("stage");
  const pointers = new Map();
  const local = (event) => {
    const box = stage.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  };
  stage.addEventListener("wheel", (event) => {
    event.preventDefault();
    const { x, y } = local(event);
    zoomAt(Math.exp(-event.deltaY * 0.0015), x, y);
  }, { passive: false });
  stage.addEventListener("pointerdown", (event) => {
    stage.setPointerCapture(event.pointerId);
    pointers.set(event.pointerId, local(event));
    stage.classList.add("dragging");
  });
  stage.addEventListener("pointermove", (event) => {
    if (!pointers.has(event.pointerId)) return;
    const before = [...pointers.values()];
    const previous = pointers.get(event.pointerId);
    const now = local(event);
    pointers.set(event.pointerId, now);
    if (pointers.size === 1) { // drag: pan
      view.x += now.x - previous.x;
      view.y += now.y - previous.y;
      view.fitted = false;
      applyView();
    } else if (pointers.size === 2) { // pinch: zoom about the fingers' midpoint, and follow it
      const after = [...pointers.values()];
      const span = (a, b) => Math.hypot(a.x - b.x, a.y - b.y) || 1;
      const middle = (a, b) => ({ x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });
      const [m0, m1] = [middle(...before), middle(...after)];
      view.x += m1.x - m0.x;
      view.y += m1.y - m0.y;
      zoomAt(span(...after) / span(...before), m1.x, m1.y);
    }
  });
  const release = (event) => {
    pointers.delete(event.pointerId);
    if (!pointers.size) stage.classList.remove("dragging");
  };
  stage.addEventListener("pointerup", release);
  stage.addEventListener("pointercancel", release);
  stage.addEventListener("dblclick", (event) => {
    const { x, y } = local(event);
    if (view.fitted) zoomAt(2, x, y); else fit();
  });
  stage.addEventListener("keydown", (event) => {
    const actions = { "+": () => zoomCentre(1.5), "=": () => zoomCentre(1.5), "-": () => zoomCentre(1 / 1.5), "0": fit };
    if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
  });
  // A window or phone turned: keep a fitted photo fitted.
  new ResizeObserver(() => { if (view.fitted) fit(); }).observe(stage);
  $("zoom-in").addEventListener("click", () => zoomCentre(1.5));
  $("zoom-out").addEventListener("click", () => zoomCentre(1 / 1.5));
  $("zoom-fit").addEventListener("click", fit);
  $("zoom-actual").addEventListener("click", () => zoomCentre(1 / view.scale));
  $("full-size").addEventListener("click", () => ($("viewer").classList.contains("full") ? exitFull() : enterFull()));
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") exitFull(); });
}

function enterFull() {
  $("viewer").classList.add("full");
  document.body.classList.add("viewing-full");
  $("full-size").setAttribute("aria-pressed", "true");
  $("full-size").textContent = "Close full size";
  view.fitted = true;
}

function exitFull() {
  $("viewer").classList.remove("full");
  document.body.classList.remove("viewing-full");
  $("full-size").setAttribute("aria-pressed", "false");
  $("full-size").textContent = "Full size";
  view.fitted = true;
}

// ---- downloads: the table as CSV, the photos with their boxes, one or as a ZIP --

function csvField(value) {
  const text = String(value ?? "");
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// Every class of the model, as the service's own CSV: columns that do not move.
function csvText() {
  const header = ["file", "counted_at", "threshold", "tiling", "auto_crop", ...state.classes, "total", "ms", "error"];
  const lines = [header];
  for (const row of state.rows) {
    const result = row.result;
    if (!result && !row.error) continue;
    const asked = result || row.failedWith || {};
    lines.push([row.name, result?.countedAt ?? row.countedAt ?? "", asked.threshold ?? "", asked.tiling ?? "",
      asked.autoCrop ?? "", ...state.classes.map((name) => (result ? result.stat[name] ?? 0 : "")),
      result ? total(result.stat) : "", result ? Math.round(result.ms) : "", row.error]);
  }
  return lines.map((line) => line.map(csvField).join(",")).join("\r\n") + "\r\n";
}

function save(blob, name) {
  const link = element("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

const stamp = () => new Date().toISOString().slice(0, 19).replaceAll(":", "-");
const annotatedName = (row) => row.name.replace(/\.[^./]*$/, "") + "-counted.jpg";

// The photo with every class's boxes, and a band below it (not over it) naming the
// file, the threshold and the counts: a picture that explains itself once saved.
async function annotatedJpeg(row) {
  const result = row.result;
  if (row.viewable === false) return result.picture; // the service drew it
  const bitmap = await createImageBitmap(row.photo);
  const { width, height } = bitmap;
  const longest = Math.max(width, height);
  const line = Math.max(1, Math.round(longest / 700));
  const font = Math.max(12, Math.round(longest / 70));
  const measure = document.createElement("canvas").getContext("2d");
  measure.font = `${font}px sans-serif`;
  const found = state.classes.filter((name) => result.stat[name] > 0);
  const items = found.map((name) => ({ name, text: `${name}: ${result.stat[name]}` }));
  const head = `${row.name} · threshold ${result.threshold.toFixed(2)} · ${total(result.stat)} objects`;
  const pad = Math.round(font * 0.6);
  const lineHeight = Math.round(font * 1.5);
  let x = pad, lines = 2;
  for (const item of items) { // lay the legend out in rows that fit the width
    const w = font * 1.4 + measure.measureText(item.text).width + font;
    if (x + w > width - pad && x > pad) { x = pad; lines += 1; }
    Object.assign(item, { x, line: lines - 1 });
    x += w;
  }
  const band = pad * 2 + lineHeight * (items.length ? lines : 1);
  const canvas = element("canvas", { width, height: height + band });
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  context.lineWidth = line;
  if (result.crop) {
    context.strokeStyle = "#fff";
    context.setLineDash([line * 6, line * 4]);
    context.strokeRect(...result.crop);
    context.setLineDash([]);
  }
  for (const detection of result.detections) {
    context.strokeStyle = classColour(detection.class);
    context.strokeRect(...detection.box);
  }
  context.fillStyle = "#fff";
  context.fillRect(0, height, width, band);
  context.font = measure.font;
  context.textBaseline = "middle";
  context.fillStyle = "#1d2733";
  context.fillText(head, pad, height + pad + lineHeight / 2, width - 2 * pad);
  for (const item of items) {
    const y = height + pad + lineHeight * item.line + lineHeight / 2;
    context.fillStyle = classColour(item.name);
    context.fillRect(item.x, y - font / 2, font, font);
    context.fillStyle = "#1d2733";
    context.fillText(item.text, item.x + font * 1.4, y);
  }
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

async function downloadPhoto(row) {
  if (row.result) save(await annotatedJpeg(row), annotatedName(row).split("/").pop());
}

async function downloadZip() {
  const rows = state.rows.filter((row) => row.result);
  const button = $("download-zip");
  state.zipping = button.disabled = true;
  const files = [];
  const names = new Set();
  try {
    for (const [i, row] of rows.entries()) {
      button.textContent = `Preparing ${i + 1} of ${rows.length}…`;
      let name = annotatedName(row);
      for (let n = 2; names.has(name); n += 1) name = annotatedName(row).replace(/\.jpg$/, ` (${n}).jpg`);
      names.add(name);
      const blob = await annotatedJpeg(row);
      files.push({ name, bytes: new Uint8Array(await blob.arrayBuffer()), date: new Date(row.result.countedAt) });
    }
    save(zipStored(files), `counted-photos-${stamp()}.zip`);
  } finally {
    button.textContent = "Download photos (ZIP)";
    state.zipping = false;
    renderButtons();
  }
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i += 1) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// A ZIP of stored (uncompressed) entries, as PKWARE's APPNOTE lays it out: a local
// header before each file, a central directory, an end record. JPEGs gain nothing
// from deflate, and storing needs only the CRC-32. (No ZIP64: under 4 GB in all.)
function zipStored(files) {
  const encoder = new TextEncoder();
  const parts = [], directory = [];
  let offset = 0;
  for (const file of files) {
    const name = encoder.encode(file.name);
    const size = file.bytes.length;
    const crc = crc32(file.bytes);
    const d = file.date;
    const time = (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1);
    const date = ((Math.max(1980, d.getFullYear()) - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate();
    const local = new DataView(new ArrayBuffer(30));
    [[0, 0x04034b50, 4], [4, 20, 2], [6, 0x0800, 2], [8, 0, 2], [10, time, 2], [12, date, 2], [14, crc, 4],
      [18, size, 4], [22, size, 4], [26, name.length, 2], [28, 0, 2]].forEach(([at, value, width]) =>
      (width === 4 ? local.setUint32(at, value, true) : local.setUint16(at, value, true))); // 0x0800: UTF-8 names
    const entry = new DataView(new ArrayBuffer(46));
    [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [8, 0x0800, 2], [10, 0, 2], [12, time, 2], [14, date, 2],
      [16, crc, 4], [20, size, 4], [24, size, 4], [28, name.length, 2], [42, offset, 4]].forEach(([at, value, width]) =>
      (width === 4 ? entry.setUint32(at, value, true) : entry.setUint16(at, value, true)));
    parts.push(local, name, file.bytes);
    directory.push(entry, name);
    offset += 30 + name.length + size;
  }
  const directorySize = directory.reduce((sum, part) => sum + part.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, directorySize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...directory, end], { type: "application/zip" });
}

// ---- history: IndexedDB, so a reload keeps every result and its photo -----------

const history = new Promise((resolve) => {
  try {
    const request = indexedDB.open("count-organisms", 1);
    request.onupgradeneeded = () => request.result.createObjectStore("results", { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => resolve(null);
  } catch {
    resolve(null); // no IndexedDB (a private window of some browsers): the page works without history
  }
});

async function inStore(mode, work) {
  const database = await history;
  if (!database) return undefined;
  return new Promise((resolve, reject) => {
    const transaction = database.transaction("results", mode);
    const request = work(transaction.objectStore("results"));
    transaction.oncomplete = () => resolve(request.result);
    transaction.onerror = transaction.onabort = () => reject(transaction.error);
  });
}

async function saveRow(row) {
  const { id, name, photo, status, result, error, viewable, countedAt, failedWith } = row;
  const order = state.rows.indexOf(row);
  try {
    await inStore("readwrite", (store) => store.put({
      id, order, name, photo, status, result, error, viewable, countedAt, failedWith,
    }));
  } catch (error) {
    showError(`This result could not be kept in the history (${error?.name || "storage error"}): ` +
      "the browser's storage may be full. Download what you need, then clear the history.");
  }
}

async function loadHistory() {
  const records = (await inStore("readonly", (store) => store.getAll()).catch(() => [])) || [];
  records.sort((a, b) => a.order - b.order);
  for (const record of records) {
    state.rows.push({ ...record, status: record.result ? "done" : "failed" });
    if (record.result) learnClasses(Object.keys(record.result.stat));
  }
  if (records.length && state.selected === null) state.selected = records.at(-1).id;
  render();
}

async function clearHistory() {
  stop();
  state.rows = [];
  state.selected = null;
  state.follow = true;
  $("progress").textContent = "";
  $("skipped").hidden = true;
  await inStore("readwrite", (store) => store.clear()).catch(() => {});
  render();
}

// ---- the model, the key, and wiring ----------------------------------------------

async function loadModel() {
  try {
    const response = await fetch("model", { headers: keyHeaders() });
    if (!response.ok) { $("model-summary").textContent = "Model details need an API key."; return; }
    const model = await response.json();
    learnClasses(model.classes);
    $("model-summary").textContent =
      `${model.classes.length} classes, network ${model.network.width}×${model.network.height}, ` +
      `engine ${model.engine} (${model.precision}) on ${model.device}.`;
    $("model-classes").replaceChildren(...model.classes.map((name) => element("li", { textContent: name })));
  } catch {
    $("model-summary").textContent = "The service could not be reached.";
  }
}

function wire() {
  // The key lives for this tab's session only: not written to disk with the history.
  $("api-key").value = sessionStorage.getItem(KEY_STORE) || "";
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
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
  $("download-csv").addEventListener("click", () =>
    save(new Blob([csvText()], { type: "text/csv;charset=utf-8" }), `counts-${stamp()}.csv`));
  $("download-zip").addEventListener("click", downloadZip);
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
loadHistory();
