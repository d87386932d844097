// COCO compressed RLE (pycocotools' string encoding) to a row-major mask.

/** Run lengths of a compressed RLE string. */
export function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** `{size: [h, w], counts}` → Uint8Array of h·w, row-major, 1 inside. */
export function decodeRle({ size: [h, w], counts }) {
  const runs = typeof counts === "string" ? rleCounts(counts) : counts;
  const mask = new Uint8Array(h * w);
  let i = 0, v = 0;
  for (const n of runs) {
    if (v) for (let j = i; j < i + n; j++) mask[(j % h) * w + Math.floor(j / h)] = 1;
    i += n; v ^= 1;
  }
  if (i !== h * w) throw new Error(`RLE covers ${i} pixels, expected ${h * w}`);
  return mask;
}
