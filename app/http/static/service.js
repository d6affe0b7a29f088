// Talking to the service: its API key, one photo's count (POST invocations), the model
// (GET model). Relative URLs: the page works behind a proxy that serves it under a prefix.

import { $, element } from "./dom.js";
import { learnClasses, state } from "./state.js";

const KEY_STORE = "count-organisms.api-key";

// The key lives for this tab's session only: not written to disk with the history.
export function restoreKey() {
  $("api-key").value = sessionStorage.getItem(KEY_STORE) || "";
}

export function rememberKey() {
  sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
}

export function keyHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

// One photo, with the settings of its turn and its file's time, answered as a JSON line:
// the same fields as the API's CSV and the count command's (file, date, width, height, crop, counts, total,
// threshold, model, ms, tiles, error) and the boxes. A photo this browser cannot draw (a TIFF)
// also gets the service's own picture, in a second request. Rejects when the service
// cannot be reached or `signal` aborts; `body` is null when the answer is not JSON.
// The file's modification time in this computer's local time, to the second, as
// `python -m app count` writes it for a photo without an EXIF date; "" when unknown.
export function fileTime(file) {
  const time = new Date(file.lastModified);
  const year = time.getFullYear();
  if (!(file.lastModified > 0) || year < 1000 || year > 9999) return "";
  const two = (n) => String(n).padStart(2, "0");
  return `${year}-${two(time.getMonth() + 1)}-${two(time.getDate())}T${two(time.getHours())}:` +
    `${two(time.getMinutes())}:${two(time.getSeconds())}`;
}

// The photo as a form for POST invocations: its name, its file's time and the settings.
// threshold: null sends none (the service counts with the model's default).
function photoForm(row, { threshold, tiling, autoCrop }, format) {
  const form = new FormData();
  form.append("image", row.photo, row.name.split("/").pop());
  form.append("filename", row.name);
  const date = fileTime(row.photo); // the service keeps the photo's EXIF date where it has one
  if (date) form.append("date", date);
  if (threshold !== null) form.append("threshold", threshold);
  form.append("tiling", tiling ?? "auto");
  form.append("auto_crop", Boolean(autoCrop));
  form.append("format", format);
  return form;
}

export async function postPhoto(row, asked, signal) {
  const send = (format) => {
    // A slider nobody moved sends none: the service counts with the model's default.
    const form = photoForm(row, { ...asked, threshold: state.thresholdChosen ? asked.threshold : null }, format);
    if (format === "jsonl") form.append("detections", "true");
    return fetch("invocations", { method: "POST", body: form, headers: keyHeaders(), signal });
  };
  const response = await send("jsonl");
  const body = await response.json().catch(() => null);
  if (response.ok && body && !row.viewable) {
    const picture = await send("jpeg");
    if (picture.ok) body.picture = await picture.blob();
  }
  return { response, body };
}

// The photo with its boxes as the service draws it: the API's `img` and `count
// --annotate`'s pictures, one renderer for all, asked with the settings the row was
// counted with. A picture drawn when it was counted (a photo this browser cannot show)
// is that one already. Throws what to tell the person when the service cannot draw it.
export async function servicePicture(row) {
  const result = row.result;
  if (result.picture) return result.picture;
  const form = photoForm(row, result, "jpeg");
  const response = await fetch("invocations", { method: "POST", body: form, headers: keyHeaders() })
    .catch(() => null);
  if (!response) throw new Error("the service could not be reached");
  if (!response.ok) throw new Error(explain(response.status, await response.json().catch(() => null)));
  return response.blob();
}

// What the service says is meant for people already; add what to do where it helps.
export function explain(status, body) {
  const message = body?.error?.message || `the service answered ${status}`;
  if (status === 413) return `The photo is too large: ${message}`;
  if (status === 503) return `The service is busy or still starting; re-count it in a moment (${message}).`;
  if (status >= 500) return `The service failed on this photo. Please report request ${body?.error?.request_id || ""}.`;
  return `The photo could not be counted: ${message}`;
}

export async function loadModel() {
  try {
    const response = await fetch("model", { headers: keyHeaders() });
    if (!response.ok) { $("model-summary").textContent = "Model details need an API key."; return; }
    const model = await response.json();
    learnClasses(model.classes);
    state.modelThreshold = Number.isFinite(model.default_threshold) ? model.default_threshold : null;
    window.dispatchEvent(new CustomEvent("model", { detail: model })); // page.js: the model's threshold
    $("model-summary").textContent =
      `${model.classes.length} classes, network ${model.network.width}×${model.network.height}, ` +
      `engine ${model.engine} (${model.precision}) on ${model.device}.`;
    $("model-classes").replaceChildren(...model.classes.map((name) => element("li", { textContent: name })));
  } catch {
    $("model-summary").textContent = "The service could not be reached.";
  }
}
