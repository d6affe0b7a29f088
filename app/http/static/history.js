// The history: every row and its photo in IndexedDB, so a reload keeps them.

import { showError } from "./dom.js";
import { learnClasses, state } from "./state.js";

const database = new Promise((resolve) => {
  try {
    const request = indexedDB.open("count-organisms", 1);
    request.onupgradeneeded = () => request.result.createObjectStore("results", { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => resolve(null);
  } catch {
    resolve(null); // no IndexedDB (a private window of some browsers): the page works without history
  }
});

async function inStore(mode, work) {
  const opened = await database;
  if (!opened) return undefined;
  return new Promise((resolve, reject) => {
    const transaction = opened.transaction("results", mode);
    const request = work(transaction.objectStore("results"));
    transaction.oncomplete = () => resolve(request.result);
    transaction.onerror = transaction.onabort = () => reject(transaction.error);
  });
}

// One transaction for all: once it commits, a reload or a closed page keeps every row.
export async function saveRows(rows) {
  if (!rows.length) return;
  const records = rows.map((row) => {
    const { id, name, photo, status, result, error, viewable, countedAt, failedWith } = row;
    return { id, order: state.rows.indexOf(row), name, photo, status, result, error, viewable, countedAt, failedWith };
  });
  try {
    await inStore("readwrite", (store) => records.map((record) => store.put(record)).at(-1));
  } catch (error) {
    showError(`This result could not be kept in the history (${error?.name || "storage error"}): ` +
      "the browser's storage may be full. Download what you need, then clear the history.");
  }
}

export const saveRow = (row) => saveRows([row]);

// The kept rows join the table (after any added meanwhile); the last one is selected.
export async function loadHistory() {
  const records = (await inStore("readonly", (store) => store.getAll()).catch(() => [])) || [];
  records.sort((a, b) => a.order - b.order);
  for (const record of records) {
    // A photo picked and not yet counted (the page was closed first) waits again.
    const status = record.result ? "done" : record.error ? "failed" : "waiting";
    state.rows.push({ ...record, status });
    if (record.result) learnClasses(Object.keys(record.result.stat));
  }
  if (records.length && state.selected === null) state.selected = records.at(-1).id;
}

export async function forgetRow(id) {
  await inStore("readwrite", (store) => store.delete(id)).catch(() => {});
}

export async function forgetAll() {
  await inStore("readwrite", (store) => store.clear()).catch(() => {});
}
