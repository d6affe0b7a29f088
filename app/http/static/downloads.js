// Downloads: the table as CSV, and the photos with their boxes, one or all as a ZIP.

import { csvField } from "./csv.js";
import { $, element } from "./dom.js";
import { classColour, state, total } from "./state.js";
import { distinctNames, zipStored } from "./zip.js";

// The columns of the API's CSV and of `python -m app count` (file, date, width, height,
// crop, a column per class, total, threshold, model, ms, error), value for value: every
// class of the model, not only those found, so the columns do not move between files.
// `ms` is the service's own time for the photo, as theirs.
export const CSV_HEAD = ["file", "date", "width", "height", "crop"];
export const CSV_TAIL = ["total", "threshold", "model", "ms", "error"];

function csvText() {
  const lines = [[...CSV_HEAD, ...state.classes, ...CSV_TAIL]];
  for (const row of state.rows) {
    const result = row.result;
    if (!result && !row.error) continue;
    if (!result) {
      lines.push([row.name, "", "", "", "", ...state.classes.map(() => ""), "", "", "", "", row.error]);
      continue;
    }
    lines.push([row.name, result.date ?? "", result.width ?? "", result.height ?? "", result.crop ? result.crop.join(" ") : "",
      ...state.classes.map((name) => result.stat[name] ?? ""), total(result.stat), result.threshold,
      result.model ?? "", result.serviceMs ?? "", ""]);
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
// Named as `count --annotate` names them: day1/x.jpg -> day1/x.annotated.jpg.
const annotatedName = (row) => row.name.replace(/\.[^./]*$/, "") + ".annotated.jpg";

// The photo with every class's boxes and, in its top-left corner as the service draws
// its legend, a box naming the file, the threshold and the counts: a picture of the
// photo's own size (as the API's and the count command's) that explains itself once saved.
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
  let right = pad * 2 + measure.measureText(head).width; // the legend box covers no more than it needs
  for (const item of items) { // lay the legend out in rows that fit the width
    const w = font * 1.4 + measure.measureText(item.text).width + font;
    if (x + w > width - pad && x > pad) { x = pad; lines += 1; }
    Object.assign(item, { x, line: lines - 1 });
    x += w;
    right = Math.max(right, x);
  }
  const band = pad * 2 + lineHeight * (items.length ? lines : 1);
  const canvas = element("canvas", { width, height });
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  context.lineWidth = line;
  if (result.crop) { // dark under white dashes: seen on a white dish and on a dark one
    context.strokeStyle = "#1d2733";
    context.strokeRect(...result.crop);
    context.strokeStyle = "#fff";
    context.setLineDash([line * 6, line * 4]);
    context.strokeRect(...result.crop);
    context.setLineDash([]);
  }
  for (const detection of result.detections) {
    context.strokeStyle = classColour(detection.class);
    context.strokeRect(...detection.box);
  }
  context.fillStyle = "rgb(255 255 255 / 0.85)";
  context.fillRect(0, 0, Math.min(right, width), Math.min(band, height));
  context.font = measure.font;
  context.textBaseline = "middle";
  context.fillStyle = "#1d2733";
  context.fillText(head, pad, pad + lineHeight / 2, width - 2 * pad);
  for (const item of items) {
    const y = pad + lineHeight * item.line + lineHeight / 2;
    context.fillStyle = classColour(item.name);
    context.fillRect(item.x, y - font / 2, font, font);
    context.fillStyle = "#1d2733";
    context.fillText(item.text, item.x + font * 1.4, y);
  }
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

export async function downloadPhoto(row) {
  if (row.result) save(await annotatedJpeg(row), annotatedName(row).split("/").pop());
}

export function downloadCsv() {
  save(new Blob([csvText()], { type: "text/csv;charset=utf-8" }), `counts-${stamp()}.csv`);
}

// Every counted photo in one ZIP; the caller renders the buttons again afterwards.
export async function downloadZip() {
  const rows = state.rows.filter((row) => row.result);
  const names = distinctNames(rows.map(annotatedName));
  const button = $("download-zip");
  state.zipping = button.disabled = true;
  const files = [];
  try {
    for (const [i, row] of rows.entries()) {
      button.textContent = `Preparing ${i + 1} of ${rows.length}…`;
      const blob = await annotatedJpeg(row);
      const bytes = new Uint8Array(await blob.arrayBuffer());
      files.push({ name: names[i], bytes, date: new Date(row.result.countedAt) });
    }
    save(zipStored(files), `counted-photos-${stamp()}.zip`);
  } finally {
    button.textContent = "Download photos (ZIP)";
    state.zipping = false;
  }
}
