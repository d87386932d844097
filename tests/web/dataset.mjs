// Reading a dataset zip and validating it as the native tests validate `maskforge generate`
// output (native/tests/generate.rs): ids unique, images present with the recorded size, every
// RLE decodes with the recorded area and bbox, category counts agree, LVIS fields kept.
import { inflateRawSync } from "node:zlib";
import assert from "node:assert/strict";
import { decodePng } from "./png.mjs";
import { decodeRle } from "../../www/coco.js";

/** `{path: Buffer}` of a zip archive (stored or deflated entries). */
export function unzip(buf) {
  buf = Buffer.from(buf);
  let end = buf.length - 22;
  while (end >= 0 && buf.readUInt32LE(end) !== 0x06054b50) end--;
  if (end < 0) throw new Error("not a zip archive (no end of central directory)");
  const count = buf.readUInt16LE(end + 10);
  let p = buf.readUInt32LE(end + 16);
  const files = {};
  for (let i = 0; i < count; i++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error("bad central directory");
    const method = buf.readUInt16LE(p + 10), size = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28), extra = buf.readUInt16LE(p + 30), comment = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.toString("utf8", p + 46, p + 46 + nameLen);
    const dataStart = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const raw = buf.subarray(dataStart, dataStart + size);
    files[name] = method === 0 ? raw : method === 8 ? inflateRawSync(raw) : (() => { throw new Error(`${name}: method ${method}`); })();
    p += 46 + nameLen + extra + comment;
  }
  return files;
}

/** The pixel bbox `[x, y, w, h]` of a row-major mask (pycocotools' toBbox). */
function maskBbox(mask, h, w) {
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (mask[y * w + x]) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  return x1 < 0 ? [0, 0, 0, 0] : [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}

/** Validates `files` (from unzip); returns the parsed annotations and manifest. */
export function validateDataset(files) {
  const names = Object.keys(files).sort();
  assert.ok(names.includes("annotations.json") && names.includes("manifest.jsonl"), `files: ${names}`);
  assert.ok(names.every((n) => n === "annotations.json" || n === "manifest.jsonl" || /^images\/[^/]+\.png$/.test(n)),
    `unexpected files: ${names}`);
  const ann = JSON.parse(files["annotations.json"]);
  const manifest = files["manifest.jsonl"].toString().trimEnd().split("\n").map((l) => JSON.parse(l));
  const imgIds = new Set(ann.images.map((i) => i.id));
  assert.equal(imgIds.size, ann.images.length, "image ids are unique");
  assert.equal(new Set(ann.annotations.map((a) => a.id)).size, ann.annotations.length, "annotation ids are unique");
  assert.equal(names.filter((n) => n.startsWith("images/")).length, ann.images.length, "one file per image");
  for (const img of ann.images) {
    const file = files[`images/${img.file_name}`];
    assert.ok(file, `images/${img.file_name} is in the zip`);
    const png = decodePng(file);
    assert.deepEqual([png.width, png.height], [img.width, img.height], `${img.file_name} size`);
    assert.equal(img.coco_url, `images/${img.file_name}`);
    assert.ok(Array.isArray(img.neg_category_ids) && Array.isArray(img.not_exhaustive_category_ids));
  }
  const byImage = new Map(ann.images.map((i) => [i.id, i]));
  for (const a of ann.annotations) {
    const img = byImage.get(a.image_id);
    assert.ok(img, `annotation ${a.id}: image ${a.image_id} exists`);
    assert.deepEqual(a.segmentation.size, [img.height, img.width]);
    const mask = decodeRle(a.segmentation);
    const area = mask.reduce((s, v) => s + v, 0);
    assert.ok(area > 0, `annotation ${a.id} is not empty`);
    assert.equal(a.area, area, `annotation ${a.id}: area agrees with the mask`);
    assert.deepEqual(a.bbox, maskBbox(mask, img.height, img.width), `annotation ${a.id}: bbox agrees with the mask`);
    assert.equal(a.iscrowd, 0);
  }
  for (const c of ann.categories) {
    const n = ann.annotations.filter((a) => a.category_id === c.id).length;
    assert.equal(c.instance_count, n, `category ${c.id} instance_count`);
    assert.equal(c.image_count, new Set(ann.annotations.filter((a) => a.category_id === c.id).map((a) => a.image_id)).size);
    assert.equal(typeof c.synset, "string", "category fields are kept");
  }
  assert.deepEqual(manifest.map((r) => r.index), [...manifest.map((r) => r.index)].sort((a, b) => a - b), "manifest sorted");
  assert.equal(manifest.filter((r) => r.kept).length, ann.images.length, "kept samples are the images");
  return { ann, manifest };
}
