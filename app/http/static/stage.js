// The stage the photo sits on: zoom (wheel, pinch, buttons, keys), pan (drag), fit,
// and full size. `view` is where the photo is; the viewer sets its size.

import { $ } from "./dom.js";

export const view = { scale: 1, x: 0, y: 0, width: 0, height: 0, fitted: true, rowId: null, url: null, source: null };

function applyView() {
  $("canvas").style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
  $("zoom-level").textContent = `${Math.round(view.scale * 100)}%`;
  // Box lines in photo pixels, as thick as the service draws them (longest side / 700), so
  // they grow and shrink with the photo on screen; never under one screen pixel.
  const line = Math.max(1, Math.round(Math.max(view.width, view.height) / 700), 1 / view.scale);
  $("boxes").style.setProperty("--line", `${line}px`);
}

function fitScale() {
  const box = $("stage").getBoundingClientRect();
  return view.width ? Math.min(box.width / view.width, box.height / view.height) : 1;
}

export function fit() {
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

export function setUpStage() {
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

export function exitFull() {
  $("viewer").classList.remove("full");
  document.body.classList.remove("viewing-full");
  $("full-size").setAttribute("aria-pressed", "false");
  $("full-size").textContent = "Full size";
  view.fitted = true;
}
