// Browser test of the package's `Detector` (web/pkg): headless Chromium loads the tiny
// DiffusionInst (tests/fixtures/diffusioninst/tiny-r50-web/: config.yaml with a `_BASE_`,
// model.pth) from a localhost server on the CPU and on WebGPU (SwiftShader), detects in image
// A and compares with the PyTorch reference (reference/diffinst/, see reference/README.md):
// count and category ids exact, boxes within 1e-2, masks (RLE decoded) with at most 0.5 %
// of pixels differing. Seeds and steps change the results, deterministically; every image
// input type gives the same results; bad input rejects with the file or field named.
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

import { serve } from "./serve.mjs";
import { launch, harnessPage } from "./browser.mjs";
import { decodeRle } from "../../www/coco.js";
import { COCO_CATEGORY_IDS } from "./diffinst.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const devices = (process.env.MASKFORGE_DEVICES ?? "cpu,webgpu").split(",");
const BOX_TOL = 1e-2;
const SCORE_TOL = 1e-3;
const MASK_DIFF = 0.005;

let failures = 0;
async function check(name, f) {
  try {
    await f();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}\n     ${String(e?.stack ?? e).split("\n").join("\n     ")}`);
  }
}

const expected = JSON.parse(await readFile(join(here, "reference", "diffinst", "expected.json"), "utf8"));
const imageA = Array.from(await readFile(join(here, "reference", "diffinst", "image_a.png")));
const [H, W] = [48, 77];

/** The reference masks of a run: N row-major H·W masks of 0/1. */
function referenceMasks(run) {
  const bits = Buffer.from(run.masks_packbits, "base64");
  const [n, h, w] = run.masks_shape;
  return Array.from({ length: n }, (_, k) => {
    const m = new Uint8Array(h * w);
    for (let p = 0; p < h * w; p++) {
      const i = k * h * w + p;
      m[p] = (bits[i >> 3] >> (7 - (i & 7))) & 1;
    }
    return m;
  });
}

/** Checks COCO results against a reference run; returns the worst differences. */
function compare(results, run, label) {
  assert.equal(results.length, run.labels.length, `${label}: ${results.length} detections, expected ${run.labels.length}`);
  assert.deepEqual(results.map((r) => r.category_id), run.labels.map((l) => COCO_CATEGORY_IDS[l]), `${label}: category ids`);
  const masks = referenceMasks(run);
  let box = 0, score = 0, differ = 0, worstMask = 0;
  results.forEach((r, k) => {
    assert.equal(r.image_id, 1);
    const [x, y, w, h] = r.bbox;
    const [x1, y1, x2, y2] = run.boxes[k];
    box = Math.max(box, Math.abs(x - x1), Math.abs(y - y1), Math.abs(x + w - x2), Math.abs(y + h - y2));
    score = Math.max(score, Math.abs(r.score - run.scores[k]));
    assert.deepEqual(r.segmentation.size, [H, W]);
    const m = decodeRle(r.segmentation);
    let d = 0;
    for (let p = 0; p < m.length; p++) d += m[p] !== masks[k][p];
    differ += d;
    worstMask = Math.max(worstMask, d / m.length);
  });
  const fraction = differ / (results.length * H * W);
  assert.ok(box <= BOX_TOL, `${label}: boxes differ by ${box}`);
  assert.ok(score <= SCORE_TOL, `${label}: scores differ by ${score}`);
  assert.ok(fraction <= MASK_DIFF && worstMask <= MASK_DIFF,
    `${label}: ${differ} mask pixels differ (${(100 * fraction).toFixed(3)} %, worst mask ${(100 * worstMask).toFixed(3)} %)`);
  return { box, score, differ, fraction };
}

const badYaml = "MODEL:\n  DiffusionInst: [unclosed\n";
const server = await serve(root, {
  "/virtual/bad-yaml/config.yaml": badYaml,
  "/virtual/no-base/config.yaml": "_BASE_: \"configs/Missing.yaml\"\nMODEL:\n  MASK_ON: True\n",
  "/virtual/no-model/config.yaml": await readFile(join(root, "tests/fixtures/diffusioninst/tiny-r50.yaml")),
  "/virtual/no-model/configs/Base-DiffusionInst.yaml": await readFile(join(root, "tests/fixtures/diffusioninst/configs/Base-DiffusionInst.yaml")),
});
const browser = await launch();
const model = `${server.url}/tests/fixtures/diffusioninst/tiny-r50-web`;
const timings = {};

try {
  for (const device of devices) {
    const page = await harnessPage(browser, server.url);
    let ready = false;
    await check(`${device}: Detector.load fetches config.yaml, its _BASE_ and model.pth`, async () => {
      const r = await page.evaluate(async ({ model, device }) => {
        const files = new Set(), phases = new Set();
        const t0 = performance.now();
        const det = await maskforge.Detector.load(model, {
          device, onProgress: (p) => { phases.add(p.phase); if (p.file) files.add(p.file); },
        });
        const ms = performance.now() - t0;
        window.det = det;
        return { ms, files: [...files], phases: [...phases], device: det.device, architecture: det.architecture,
                 hasMasks: det.hasMasks, categoryIds: det.categoryIds, defaultSteps: det.defaultSteps };
      }, { model, device });
      assert.equal(r.device, device);
      assert.equal(r.architecture, "DiffusionInst");
      assert.equal(r.hasMasks, true);
      assert.deepEqual(r.categoryIds, COCO_CATEGORY_IDS);
      assert.equal(r.defaultSteps, 1);
      assert.ok(r.files.includes("config.yaml") && r.files.includes("model.pth"), `files ${r.files}`);
      assert.ok(r.files.some((f) => f.endsWith("/tiny-r50-web/configs/Base-DiffusionInst.yaml")), `files ${r.files}`);
      assert.ok(r.phases.includes("init"), `phases ${r.phases}`);
      timings[device] = { load_ms: Math.round(r.ms) };
      ready = true;
    });
    if (!ready) continue;

    const detect = (image, options) => page.evaluate(async ({ image, options }) => {
      const t0 = performance.now();
      const results = await det.detect(new Uint8Array(image), options);
      return { results, ms: performance.now() - t0 };
    }, { image: imageA, options });

    let s1;
    await check(`${device}: detect(image A, 1 step, seed 0) equals the PyTorch reference`, async () => {
      const r = await detect(imageA, { steps: 1, seed: 0 });
      // On WebGPU the first call runs untuned fallback kernels while CubeCL tunes them in the
      // background; later calls run the tuned ones, whose results may differ in the last bits.
      s1 = device === "webgpu" ? (await detect(imageA, { steps: 1, seed: 0 })).results : r.results;
      const d = compare(r.results, expected["a.s1"], "a.s1");
      console.log(`     ${device}: ${r.results.length} detections; boxes |Δ| ≤ ${d.box.toExponential(2)}, scores |Δ| ≤ ${d.score.toExponential(2)}, ` +
        `${d.differ} mask pixels differ (${Math.round(r.ms)} ms)`);
      timings[device].detect_1_step_ms = Math.round(r.ms);
      // The config's SAMPLE_STEP (1) and seed 0 are the defaults.
      assert.deepEqual((await page.evaluate(async (image) => det.detect(new Uint8Array(image)), imageA)), s1, "defaults");
    });

    await check(`${device}: detect(image A, 4 steps, seed 0) equals the PyTorch reference`, async () => {
      const r = await detect(imageA, { steps: 4, seed: 0 });
      const d = compare(r.results, expected["a.s4"], "a.s4");
      console.log(`     ${device}: ${r.results.length} detections; boxes |Δ| ≤ ${d.box.toExponential(2)}, ${d.differ} mask pixels differ (${Math.round(r.ms)} ms)`);
    });

    await check(`${device}: the same seed gives the same results; other seeds and steps others`, async () => {
      const again = (await detect(imageA, { steps: 1, seed: 0 })).results;
      assert.deepEqual(again, s1, "seed 0 twice");
      const seed1 = (await detect(imageA, { steps: 1, seed: 1 })).results;
      assert.deepEqual((await detect(imageA, { steps: 1, seed: 1 })).results, seed1, "seed 1 twice");
      assert.notDeepEqual(seed1, s1, "seed 1 differs from seed 0");
      // Not 2: the original leaves the last step out of its ensemble, so 2 steps give the
      // first step's detections, which are 1 step's (both start at t = 999).
      const steps3 = (await detect(imageA, { steps: 3, seed: 0 })).results;
      assert.deepEqual((await detect(imageA, { steps: 3, seed: 0 })).results, steps3, "3 steps twice");
      assert.notDeepEqual(steps3, s1, "3 steps differ from 1");
    });

    if (device === "cpu") await check(`${device}: every image input type gives the same results`, async () => {
      const r = await page.evaluate(async (bytes) => {
        const png = new Uint8Array(bytes);
        const blob = new Blob([png], { type: "image/png" });
        const bitmap = await createImageBitmap(blob);
        const canvas = Object.assign(document.createElement("canvas"), { width: bitmap.width, height: bitmap.height });
        const ctx = canvas.getContext("2d");
        ctx.drawImage(bitmap, 0, 0);
        const imageData = ctx.getImageData(0, 0, canvas.width, canvas.height);
        const rgb = new Uint8Array(canvas.width * canvas.height * 3);
        for (let p = 0; p < canvas.width * canvas.height; p++) rgb.set(imageData.data.subarray(4 * p, 4 * p + 3), 3 * p);
        const img = new Image();
        img.src = URL.createObjectURL(blob);
        const inputs = {
          arrayBuffer: png.buffer, blob, file: new File([png], "a.png"), imageData, bitmap, canvas, img,
          rgb: { width: canvas.width, height: canvas.height, data: rgb },
        };
        const out = {};
        for (const [name, image] of Object.entries(inputs)) out[name] = await det.detect(image, { steps: 1, seed: 0 });
        out.imageIdSeven = (await det.detect(png, { imageId: 7 })).map((r) => r.image_id);
        return out;
      }, imageA);
      const ids = r.imageIdSeven;
      delete r.imageIdSeven;
      for (const [name, results] of Object.entries(r)) assert.deepEqual(results, s1, name);
      assert.ok(ids.length > 0 && ids.every((id) => id === 7), `imageId: ${ids}`);
    });
    await check(`${device}: the page logged no error`, async () => {
      // A kernel the browser refuses shows up only here: an uncaptured wgpu error (a panic).
      assert.deepEqual(page.browserErrors, []);
    });
    await page.close();
  }

  const page = await harnessPage(browser, server.url);
  const rejection = (code, arg) => page.evaluate(async ({ code, arg }) => {
    try {
      await new Function("maskforge", "arg", `return (async () => { ${code} })()`)(maskforge, arg);
      return null;
    } catch (e) {
      return { isError: e instanceof Error, message: String(e.message ?? e) };
    }
  }, { code, arg });

  await check("cpu: config and checkpoint names can be given (the fixture's own files)", async () => {
    const r = await page.evaluate(async ({ url, image }) => {
      const det = await maskforge.Detector.load(url, { device: "cpu", config: "tiny-r50.yaml", model: "tiny-r50.pth" });
      return det.detect(new Uint8Array(image), { steps: 1, seed: 0 });
    }, { url: `${server.url}/tests/fixtures/diffusioninst/`, image: imageA });
    compare(r, expected["a.s1"], "named files");
  });
  await check("errors: a missing config, _BASE_ or checkpoint rejects naming the file", async () => {
    let e = await rejection(`await maskforge.Detector.load(arg + "/nope", { device: "cpu" })`, model);
    assert.ok(e?.isError, "rejected with an Error");
    assert.match(e.message, /^Detector\.load: http:\/\/.*\/nope\/config\.yaml: not found \(HTTP 404\)$/);
    e = await rejection(`await maskforge.Detector.load(arg + "/virtual/no-base", { device: "cpu" })`, server.url);
    assert.match(e?.message ?? "", /no-base\/config\.yaml: _BASE_ `configs\/Missing\.yaml`: .*no-base\/configs\/Missing\.yaml: not found \(HTTP 404\)/);
    e = await rejection(`await maskforge.Detector.load(arg + "/virtual/no-model", { device: "cpu" })`, server.url);
    assert.match(e?.message ?? "", /no-model\/model\.safetensors, .*no-model\/model\.pth: not found \(HTTP 404\)$/);
    e = await rejection(`await maskforge.Detector.load(arg + "/virtual/no-model", { device: "cpu", model: "weights.pth" })`, server.url);
    assert.match(e?.message ?? "", /no-model\/weights\.pth: not found \(HTTP 404\)$/);
  });
  await check("errors: bad YAML, a config that is not a checkpoint's, an unknown device", async () => {
    let e = await rejection(`await maskforge.Detector.load(arg + "/virtual/bad-yaml", { device: "cpu" })`, server.url);
    assert.match(e?.message ?? "", /bad-yaml\/config\.yaml: invalid YAML/);
    e = await rejection(`await maskforge.Detector.load(arg, { device: "cpu", model: "../tiny-r50-backbone.safetensors" })`, model);
    assert.match(e?.message ?? "", /tiny-r50-backbone\.safetensors: does not fit .*config\.yaml/);
    e = await rejection(`await maskforge.Detector.load(arg, { device: "tpu" })`, model);
    assert.match(e?.message ?? "", /device must be "auto", "webgpu" or "cpu", got "tpu"/);
  });
  await check("errors: a wrong image or option rejects naming it", async () => {
    await page.evaluate(async (model) => { window.det = await maskforge.Detector.load(model, { device: "cpu" }); }, model);
    let e = await rejection(`await det.detect(new Uint8Array([1, 2, 3]))`);
    assert.ok(e?.isError);
    assert.match(e.message, /^detect: image: not a readable PNG or JPEG image/);
    e = await rejection(`await det.detect(42)`);
    assert.match(e?.message ?? "", /^detect: image must be PNG\/JPEG bytes/);
    e = await rejection(`await det.detect()`);
    assert.match(e?.message ?? "", /^detect: image is required/);
    e = await rejection(`await det.detect({ width: 4, height: 4, data: new Uint8Array(10) })`);
    assert.match(e?.message ?? "", /^detect: image: `data` has 10 values, expected 64 \(RGBA, as ImageData\) or 48 \(RGB\)/);
    e = await rejection(`await det.detect(new File([new Uint8Array(4)], "x.png"))`);
    assert.match(e?.message ?? "", /^detect: image \(x\.png\): not a readable/);
    e = await rejection(`await det.detect(new Uint8Array(arg), { steps: 0 })`, imageA);
    assert.match(e?.message ?? "", /^detect: options: `steps` must be a whole number ≥ 1/);
    e = await rejection(`await det.detect(new Uint8Array(arg), { nms: 2 })`, imageA);
    assert.match(e?.message ?? "", /`nms` is an IoU in 0…1/);
  });
} finally {
  await browser.close();
  await server.close();
}

console.log(`timings (headless Chromium, tiny DiffusionInst, 48x77): ${JSON.stringify(timings)}`);
if (failures) {
  console.log(`${failures} detector test(s) failed`);
  process.exit(1);
}
console.log("all detector tests passed");
