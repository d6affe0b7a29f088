// Small helpers for the page's elements. Text goes in as textContent, never as markup:
// file names and the service's words are shown, not parsed.

export const $ = (id) => document.getElementById(id);

export function element(tag, { dataset, ...properties } = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  Object.assign(node.dataset, dataset);
  node.append(...children);
  return node;
}

export function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

export function seconds(milliseconds) {
  return milliseconds < 1000 ? `${Math.round(milliseconds)} ms` : `${(milliseconds / 1000).toFixed(1)} s`;
}
