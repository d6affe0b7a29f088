// Downloads: the table as CSV (the photos with their boxes: pictures.js).

import { csvField } from "./csv.js";
import { element } from "./dom.js";
import { state, total } from "./state.js";

// The columns of the API's CSV and of `python -m app count` (file, date, width, height,
// crop, a column per class, total, threshold, model, ms, tiles_run, tiles_skipped, error;
// app/pipeline/render.py's CsvDocument), value for value: every class of the model, not
// only those found, so the columns do not move between files. `ms` is the service's own
// time for the photo, as theirs.
export const CSV_HEAD = ["file", "date", "width", "height", "crop"];
export const CSV_TAIL = ["total", "threshold", "model", "ms", "tiles_run", "tiles_skipped", "error"];

function csvText() {
  const lines = [[...CSV_HEAD, ...state.classes, ...CSV_TAIL]];
  for (const row of state.rows) {
    const result = row.result;
    if (!result && !row.error) continue;
    if (!result) {
      lines.push([row.name, "", "", "", "", ...state.classes.map(() => ""), "", "", "", "", "", "", row.error]);
      continue;
    }
    lines.push([row.name, result.date ?? "", result.width ?? "", result.height ?? "", result.crop ? result.crop.join(" ") : "",
      ...state.classes.map((name) => result.stat[name] ?? ""), total(result.stat), result.threshold,
      result.model ?? "", result.serviceMs ?? "", result.tiles?.run ?? "", result.tiles?.skipped ?? "", ""]);
  }
  return lines.map((line) => line.map(csvField).join(",")).join("\r\n") + "\r\n";
}

export function save(blob, name) {
  const link = element("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

export const stamp = () => new Date().toISOString().slice(0, 19).replaceAll(":", "-");

export function downloadCsv() {
  save(new Blob([csvText()], { type: "text/csv;charset=utf-8" }), `counts-${stamp()}.csv`);
}
