// The photos with their boxes, one or all as a ZIP: the service's own pictures (the
// API's `img`, `count --annotate`'s), one renderer for all, never one of the page's own.

import { $, showError } from "./dom.js";
import { save, stamp } from "./downloads.js";
import { servicePicture } from "./service.js";
import { state } from "./state.js";
import { distinctNames, zipStored } from "./zip.js";

// Named as `count --annotate` names them: day1/x.jpg -> day1/x.annotated.jpg.
const annotatedName = (row) => row.name.replace(/\.[^./]*$/, "") + ".annotated.jpg";

export async function downloadPhoto(row) {
  if (!row.result) return;
  try {
    save(await servicePicture(row), annotatedName(row).split("/").pop());
  } catch (error) {
    showError(`${row.name}: the picture could not be made: ${error.message}`);
  }
}

// Every counted photo in one ZIP; the caller renders the buttons again afterwards. A
// photo the service cannot draw now (stopped, or the photo gone) is left out and named.
export async function downloadZip() {
  const rows = state.rows.filter((row) => row.result);
  const names = distinctNames(rows.map(annotatedName));
  const button = $("download-zip");
  state.zipping = button.disabled = true;
  const files = [], failed = [];
  try {
    for (const [i, row] of rows.entries()) {
      button.textContent = `Preparing ${i + 1} of ${rows.length}…`;
      try {
        const bytes = new Uint8Array(await (await servicePicture(row)).arrayBuffer());
        files.push({ name: names[i], bytes, date: new Date(row.result.countedAt) });
      } catch (error) {
        failed.push(`${row.name} (${error.message})`);
      }
    }
    if (files.length) save(zipStored(files), `counted-photos-${stamp()}.zip`);
    showError(failed.length ? `Left out of the ZIP, as the service could not draw them: ${failed.join("; ")}.` : "");
  } finally {
    button.textContent = "Download photos (ZIP)";
    state.zipping = false;
  }
}
