// Counting, one photo after another: a photo is a whole request, and the service queues
// per worker, so the page sends the next only when the last has its answer.

import { $, seconds, showError } from "./dom.js";
import { saveRow } from "./history.js";
import { explain, keyHeaders, postPhoto } from "./service.js";
import { currentSettings, learnClasses, rowById, showThreshold, state } from "./state.js";
import { render } from "./table.js";

export function enqueue(ids, { first = false } = {}) {
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

export function stop() {
  state.queue = [];
  state.controller?.abort(); // run() then says where it stopped
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
        (failed ? `; ${failed} failed (the reason stands under the file's name).` : ".");
    render();
  }
}

// Whether this browser can draw the photo itself (not a TIFF, say): then the service
// sends only the boxes and the page draws them; otherwise it sends its own picture.
async function canShow(blob) {
  try { (await createImageBitmap(blob)).close(); return true; } catch { return false; }
}

// The answers that mean the service, not the photo: it is stopping, starting or full.
const PAUSE_FOR = new Set(["unavailable", "not_ready", "busy"]);
const PAUSE_POLL_MS = 2000;

// Waits until /ping answers again, saying so; false when Stop was pressed meanwhile.
async function serviceBack(row) {
  const signal = state.controller.signal;
  $("progress").textContent = `Paused at ${state.batch.done} of ${state.batch.total} (${row.name}): ` +
    "the service is not answering. Counting goes on by itself when it is back.";
  state.paused = true;
  render();
  try {
    while (!signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, PAUSE_POLL_MS));
      if (signal.aborted) break;
      try {
        if ((await fetch("ping", { signal, cache: "no-store" })).ok) {
          $("progress").textContent = `${state.batch.done} of ${state.batch.total}: ${row.name}`;
          return true;
        }
      } catch { /* still down */ }
    }
    return false;
  } finally {
    state.paused = false;
  }
}

// The model's default changed while the page was open (evaluate --save-threshold): the
// untouched slider follows it.
function followModel(threshold) {
  state.modelThreshold = threshold;
  showThreshold(threshold);
}

// Returns "stop" when the rest of the queue would fail the same way (a key).
async function countRow(row) {
  const previous = { status: row.status, result: row.result, error: row.error };
  const asked = currentSettings(); // each photo takes the settings of its turn
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

  let started, response, body;
  for (;;) {
    started = performance.now();
    try {
      ({ response, body } = await postPhoto(row, asked, state.controller.signal));
    } catch (error) {
      if (error.name === "AbortError") {
        Object.assign(row, previous);
        state.batch.done -= 1;
        return "stop";
      }
      response = null; // no answer at all: the service is down, or the network
    }
    if (response && !(response.status === 503 && PAUSE_FOR.has(body?.error?.code))) break;
    // The service stopped (or is starting): pause, and send this photo again once it is back.
    if (!(await serviceBack(row))) {
      Object.assign(row, previous);
      state.batch.done -= 1;
      return "stop";
    }
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
  if (!response.ok || !body || !body.counts) {
    row.status = "failed";
    row.error = explain(response.status, body);
    row.result = null;
    row.countedAt = new Date().toISOString();
    row.failedWith = asked;
    state.batch.failed += 1;
  } else {
    row.status = "done";
    // What the API's CSV says of the photo (service.js), and how long the page waited.
    // The threshold the service counted with: the model's default where none was sent.
    const threshold = Number.isFinite(body.threshold) ? body.threshold : asked.threshold;
    if (!state.thresholdChosen && threshold !== Number($("threshold").value)) followModel(threshold);
    row.result = {
      ...asked, threshold, ms, stat: body.counts, detections: body.detections || [], countedAt: new Date().toISOString(),
      crop: asked.autoCrop ? body.crop : undefined, picture: body.picture || null, date: body.date || "",
      width: body.width, height: body.height, model: body.model, serviceMs: body.ms, tiles: body.tiles,
    };
    learnClasses(Object.keys(body.counts));
  }
  await saveRow(row);
  render();
  return "next";
}
