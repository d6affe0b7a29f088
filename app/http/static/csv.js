// A CSV field as app/pipeline/render.py writes it (its spreadsheet_safe, then the csv
// module's quoting), so the page's CSV is as safe to open as the API's and the count
// command's: controls and bidi overrides removed, and every part of the field that a
// spreadsheet would run as a formula, after `,` or `;` too (the cell separator where the
// decimal mark is a comma), written with a leading '.

const UNSHOWN = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
const FORMULA_START = /^\s*[=+\-@]/;
const PLAIN_NUMBER = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

export function spreadsheetSafe(text) {
  return text
    .replace(UNSHOWN, "")
    .split(/([,;])/)
    .map((part) => (FORMULA_START.test(part) && !PLAIN_NUMBER.test(part) ? `'${part}` : part))
    .join("");
}

export function csvField(value) {
  const text = typeof value === "string" ? spreadsheetSafe(value) : String(value ?? "");
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
