// Counting, one photo after another: a photo is a whole request, and the service queues
// per worker, so the page sends the next only when the last has its answer.

import { $, seconds, showError } from "./dom.js";
import { saveRow } from "./history.js";
import { explain, keyHeaders, postPhoto } from "./service.js";
import { currentSettings, learnClasses, rowById, state } from "./state.js";
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
        (failed ? `; ${failed} failed (see the Error column).` : ".");
    render();
  }
}

// Whether this browser can draw the photo itself (not a TIFF, say): then the service
// sends only the boxes and the page draws them; otherwise it sends its own picture.
async function canShow(blob) {
  try { (await createImageBitmap(blob)).close(); return true; } catch { return false; }
}

// Returns "stop" when the rest of the queue would fail the same way (a key, the network).
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

  const started = performance.now();
  let response, body;
  try {
    ({ response, body } = await postPhoto(row, asked, state.controller.signal));
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
    row.result = {
      ...asked, ms, stat: body.counts, detections: body.detections || [], countedAt: new Date().toISOString(),
      crop: asked.autoCrop ? body.crop : undefined, picture: body.picture || null, date: body.date || "",
      width: body.width, height: body.height, model: body.model, serviceMs: body.ms,
    };
    learnClasses(Object.keys(body.counts));
  }
  await saveRow(row);
  render();
  return "next";
}
