// A ZIP of stored (uncompressed) entries, as PKWARE's APPNOTE lays it out: a local
// header before each file, a central directory, an end record. JPEGs gain nothing
// from deflate, and storing needs only the CRC-32. (No ZIP64: under 4 GB in all.)

// Names compared as a case-insensitive disk compares them (Windows, macOS; the count
// command case-folds alike): Dog.jpg and dog.jpg would be one file once extracted.
// NFC too: macOS may hand back a name decomposed.
const folded = (name) => name.normalize("NFC").toLowerCase();

// Each wanted name, or with " (2)", " (3)"… before its extension when taken already.
export function distinctNames(wanted) {
  const taken = new Set();
  return wanted.map((name) => {
    let given = name;
    for (let n = 2; taken.has(folded(given)); n += 1) given = name.replace(/(\.[^./]*)?$/, ` (${n})$1`);
    taken.add(folded(given));
    return given;
  });
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i += 1) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// files: [{ name, bytes (Uint8Array), date }], names distinct.
export function zipStored(files) {
  const encoder = new TextEncoder();
  const parts = [], directory = [];
  let offset = 0;
  for (const file of files) {
    const name = encoder.encode(file.name);
    const size = file.bytes.length;
    const crc = crc32(file.bytes);
    const d = file.date;
    const time = (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1);
    const date = ((Math.max(1980, d.getFullYear()) - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate();
    const local = new DataView(new ArrayBuffer(30));
    [[0, 0x04034b50, 4], [4, 20, 2], [6, 0x0800, 2], [8, 0, 2], [10, time, 2], [12, date, 2], [14, crc, 4],
      [18, size, 4], [22, size, 4], [26, name.length, 2], [28, 0, 2]].forEach(([at, value, width]) =>
      (width === 4 ? local.setUint32(at, value, true) : local.setUint16(at, value, true))); // 0x0800: UTF-8 names
    const entry = new DataView(new ArrayBuffer(46));
    [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [8, 0x0800, 2], [10, 0, 2], [12, time, 2], [14, date, 2],
      [16, crc, 4], [20, size, 4], [24, size, 4], [28, name.length, 2], [42, offset, 4]].forEach(([at, value, width]) =>
      (width === 4 ? entry.setUint32(at, value, true) : entry.setUint16(at, value, true)));
    parts.push(local, name, file.bytes);
    directory.push(entry, name);
    offset += 30 + name.length + size;
  }
  const directorySize = directory.reduce((sum, part) => sum + part.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, directorySize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...directory, end], { type: "application/zip" });
}
