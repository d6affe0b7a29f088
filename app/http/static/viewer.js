// The viewer: the selected photo with its boxes (SVG over the picture), the caption,
// and the counts per class, each class's boxes shown or hidden from its tick box.

import { $, element, seconds } from "./dom.js";
import { exitFull, fit, view } from "./stage.js";
import { classColour, rowById, state, total } from "./state.js";

export function renderViewer() {
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
