// Decodes 8-bit grayscale/RGB/RGBA PNGs (what MaskForge writes) to pixels, for exact comparisons.
import { inflateSync } from "node:zlib";

export function decodePng(buf) {
  buf = Buffer.from(buf);
  if (buf.readUInt32BE(0) !== 0x89504e47) throw new Error("not a PNG");
  let off = 8, width, height, depth, type;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const kind = buf.toString("ascii", off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (kind === "IHDR") {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4);
      depth = data[8]; type = data[9];
    } else if (kind === "IDAT") idat.push(data);
    off += 12 + len;
  }
  if (depth !== 8 || ![0, 2, 6].includes(type)) throw new Error(`unsupported PNG (depth ${depth}, type ${type})`);
  const bpp = { 0: 1, 2: 3, 6: 4 }[type], stride = width * bpp;
  const raw = inflateSync(Buffer.concat(idat));
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? out[y * stride + x - bpp] : 0;
      const b = y > 0 ? out[(y - 1) * stride + x] : 0;
      const c = x >= bpp && y > 0 ? out[(y - 1) * stride + x - bpp] : 0;
      let p = 0;
      if (f === 1) p = a; else if (f === 2) p = b; else if (f === 3) p = (a + b) >> 1;
      else if (f === 4) {
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      out[y * stride + x] = (line[x] + p) & 255;
    }
  }
  return { width, height, channels: bpp, pixels: out };
}

/** Max and mean absolute difference of two decoded images of the same size. */
export function pixelDiff(a, b) {
  if (a.width !== b.width || a.height !== b.height || a.channels !== b.channels)
    throw new Error(`size differs: ${a.width}x${a.height}x${a.channels} vs ${b.width}x${b.height}x${b.channels}`);
  let max = 0, sum = 0;
  for (let i = 0; i < a.pixels.length; i++) {
    const d = Math.abs(a.pixels[i] - b.pixels[i]);
    if (d > max) max = d;
    sum += d;
  }
  return { max, mean: sum / a.pixels.length };
}
