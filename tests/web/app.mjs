// End-to-end test of the www/ app (www/dist, built by trunk): load the tiny model on the CPU,
// generate a dataset, download the zip, validate it as the native datasets are validated and
// compare it with the native runner's output for the same settings (reference/dataset);
// then check that the page stays responsive and Cancel stops a sample mid-way (the pipeline
// runs in a Web Worker), use the txt2img tab (a new worker reloads the model after the cancel),
// make SegGen datasets (reference/seggen) from an uploaded and a drawn label map, and detect instances in an uploaded image with the tiny
// DiffusionInst (reference/diffinst); last, a first visit with the default (shapes) model, and
// the SegGen tab with the shapes world's Mask2Img pipeline served beside it.
import { readFile, readdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

import { serve } from "./serve.mjs";
import { launch } from "./browser.mjs";
import { decodePng, pixelDiff } from "./png.mjs";
import { unzip, validateDataset } from "./dataset.mjs";
import { decodeRle } from "../../www/coco.js";
import { TOLERANCE } from "./tolerance.mjs";
import { COCO_CATEGORY_IDS } from "./diffinst.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const device = process.env.MASKFORGE_APP_DEVICE ?? "cpu";
// On WebGPU the first call at each new size tunes its kernels (CubeCL autotune), minutes on
// SwiftShader: the waits for results are longer there.
const slow = device === "webgpu" ? 5 : 1;
// The native reference: `maskforge generate --model tests/fixtures/tiny-sd15 --categories tests/fixtures/categories.json
// --num-images 4 --regions 1,2,4 --region-size 64x64 --overlap 16x16 --steps 3 --seed 1`.
const SETTINGS = { regions: [1, 2, 4], regionSize: "64x64", overlap: "16x16", steps: 3, guidance: 7.5, seed: 1, count: 4 };

let failures = 0;
async function check(name, f) {
  try { await f(); console.log(`ok   ${name}`); } catch (e) {
    failures++;
    console.log(`FAIL ${name}\n     ${String(e?.stack ?? e).split("\n").join("\n     ")}`);
  }
}

const server = await serve(root);
const browser = await launch();
const page = await browser.newPage({ acceptDownloads: true });
page.on("pageerror", (e) => console.error(`  [browser] ${e}`));
const model = `${server.url}/tests/fixtures/tiny-sd15`;

async function fill(settings, count) {
  await page.fill("#categories", await readFile(join(root, "tests/fixtures/categories.json"), "utf8"));
  for (const n of [1, 2, 4]) await page.setChecked(`.regions[value="${n}"]`, settings.regions.includes(n));
  await page.fill("#region-size", settings.regionSize);
  await page.fill("#overlap", settings.overlap);
  await page.fill("#steps", String(settings.steps));
  await page.fill("#guidance", String(settings.guidance));
  await page.fill("#seed", String(settings.seed));
  await page.fill("#count", String(count));
}

try {
  await page.goto(`${server.url}/www/dist/index.html?model=${encodeURIComponent(model)}`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 60_000 });

  await check(`app: loads the model from the URL on ${device}`, async () => {
    await page.selectOption("#device", device);
    await page.click("#load");
    await page.waitForSelector("#model-status[data-device]", { timeout: 120_000 * slow });
    assert.equal(await page.getAttribute("#model-status", "data-device"), device);
  });

  let zip;
  await check("app: generates a dataset with progress and shows it with mask overlays", async () => {
    await fill(SETTINGS, SETTINGS.count);
    await page.click("#generate");
    await page.waitForSelector("#gen-status[data-state=done], #gen-status[data-state=error]", { timeout: 300_000 * slow });
    assert.equal(await page.getAttribute("#gen-status", "data-state"), "done", await page.textContent("#gen-status"));
    assert.equal(await page.locator("#gallery .sample canvas").count(), SETTINGS.count);
    assert.equal(await page.evaluate(() => document.getElementById("gen-progress").value), 1);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    assert.equal(download.suggestedFilename(), "maskforge-dataset.zip");
    zip = await readFile(await download.path());
  });

  await check("app: the zip is a valid dataset in the native runner's format", async () => {
    const files = unzip(zip);
    const { ann, manifest } = validateDataset(files);
    assert.equal(manifest.length, SETTINGS.count);
    console.log(`     ${ann.images.length} images, ${ann.annotations.length} annotations`);
  });

  await check("app: the dataset matches the native runner's for the same settings", async () => {
    const files = unzip(zip);
    const ref = join(here, "reference", "dataset");
    const nativeAnn = JSON.parse(await readFile(join(ref, "annotations.json"), "utf8"));
    const nativeManifest = (await readFile(join(ref, "manifest.jsonl"), "utf8")).trimEnd().split("\n").map((l) => JSON.parse(l));
    const ann = JSON.parse(files["annotations.json"]);
    const manifest = files["manifest.jsonl"].toString().trimEnd().split("\n").map((l) => JSON.parse(l));
    // Everything decided by the seed and settings is identical; `model` names where it came from.
    const plan = (r) => ({ ...r, model: undefined, regions: r.regions.map((g) => ({ ...g, threshold: undefined, components: undefined, passed: undefined, kept: undefined })), annotations: undefined, image: undefined, kept: undefined, reason: undefined });
    assert.deepEqual(manifest.map(plan), nativeManifest.map(plan), "layouts, prompts, tokens and settings");
    assert.deepEqual(ann.images, nativeAnn.images, "image records");
    assert.deepEqual(ann.categories, nativeAnn.categories, "categories with counts");
    assert.equal(ann.annotations.length, nativeAnn.annotations.length);
    let worstIou = 1, worstPixel = 0;
    for (const [i, a] of ann.annotations.entries()) {
      const b = nativeAnn.annotations[i];
      assert.deepEqual([a.image_id, a.category_id], [b.image_id, b.category_id]);
      const ma = decodeRle(a.segmentation), mb = decodeRle(b.segmentation);
      let inter = 0, union = 0;
      for (let p = 0; p < ma.length; p++) { inter += ma[p] & mb[p]; union += ma[p] | mb[p]; }
      worstIou = Math.min(worstIou, inter / union);
    }
    for (const img of ann.images) {
      const d = pixelDiff(decodePng(files[`images/${img.file_name}`]), decodePng(await readFile(join(ref, "images", img.file_name))));
      assert.ok(d.max <= TOLERANCE.max && d.mean <= TOLERANCE.mean, `${img.file_name}: max ${d.max}, mean ${d.mean}`);
      worstPixel = Math.max(worstPixel, d.max);
    }
    console.log(`     masks: worst IoU with native ${worstIou.toFixed(4)}; images: max |Δ| ${worstPixel}`);
    assert.ok(worstIou >= 0.95, `mask IoU ${worstIou} < 0.95`);
  });

  await check("app: the page stays responsive while a sample denoises, and Cancel stops it mid-way", async () => {
    // Long samples (300 steps, one region): a timer on the page must keep firing while the
    // worker denoises, and Cancel must end the run inside the first sample.
    await fill({ ...SETTINGS, regions: [1], steps: 300 }, 3);
    await page.evaluate(() => {
      window.ticks = [];
      window.ticker = setInterval(() => window.ticks.push(performance.now()), 20);
    });
    await page.click("#generate");
    await page.waitForFunction(() => document.getElementById("gen-progress").value > 0, null, { timeout: 180_000 * slow });
    await page.waitForTimeout(1000);
    const gap = await page.evaluate(() => {
      clearInterval(window.ticker);
      const t = window.ticks;
      return Math.max(...t.slice(1).map((v, i) => v - t[i]));
    });
    const progress = await page.evaluate(() => document.getElementById("gen-progress").value);
    const t0 = Date.now();
    await page.click("#cancel");
    await page.waitForSelector("#gen-status[data-state=cancelled]", { timeout: 10_000 });
    const ms = Date.now() - t0;
    console.log(`     longest gap between 20 ms timer ticks while denoising: ${gap.toFixed(0)} ms; cancelled at progress ${progress.toFixed(3)} in ${ms} ms`);
    assert.ok(gap < 250, `the page blocked for ${gap} ms`);
    assert.ok(progress < 1 / 3, `the first sample was done (progress ${progress}) before Cancel`);
    assert.equal(await page.locator("#gallery .sample").count(), 0);
    assert.match(await page.textContent("#gen-status"), /Cancelled after 0 samples/);
  });

  await check("app: the txt2img tab makes an image", async () => {
    await page.click('.tab[data-tab="txt2img"]');
    await page.fill("#t-height", "64");
    await page.fill("#t-width", "64");
    await page.fill("#t-steps", "2");
    await page.click("#t-run");
    await page.waitForSelector("#t-status[data-state]", { timeout: 60_000 * slow });
    assert.equal(await page.getAttribute("#t-status", "data-state"), "done", await page.textContent("#t-status"));
    assert.equal(await page.evaluate(() => document.getElementById("t-image").naturalWidth), 64);
  });

  await check("app: loads a local model folder and reads categories from an LVIS file", async () => {
    await page.click('.tab[data-tab="dataset"]');
    await page.setInputFiles("#categories-file", join(root, "tests/fixtures/categories.json"));
    await page.waitForFunction(() => document.getElementById("categories").value.trimStart().startsWith("["));
    const cats = JSON.parse(await page.inputValue("#categories"));
    assert.deepEqual(cats.map((c) => c.id), [1, 2, 3, 4, 5, 6]);
    assert.equal(cats[3].synset, "bow.n.04");
    await page.evaluate(() => document.getElementById("model-status").removeAttribute("data-device"));
    await page.setInputFiles("#model-folder", join(root, "tests/fixtures/tiny-sd15"));
    await page.waitForSelector("#model-status[data-device], #model-status.error", { timeout: 120_000 * slow });
    assert.match(await page.textContent("#model-status"), /^Loaded on /);
    await fill(SETTINGS, 1);
    await page.fill("#categories", JSON.stringify(cats));
    await page.click("#generate");
    await page.waitForSelector("#gen-status[data-state=done], #gen-status[data-state=error]", { timeout: 120_000 * slow });
    assert.equal(await page.getAttribute("#gen-status", "data-state"), "done", await page.textContent("#gen-status"));
  });

  const seggen = join(here, "reference", "seggen");
  async function runSegGen(settings) {
    for (const [id, value] of Object.entries(settings)) await page.fill(`#${id}`, String(value));
    await page.click("#s-run");
    await page.waitForSelector("#s-status[data-state=done], #s-status[data-state=error]", { timeout: 120_000 * slow });
    assert.equal(await page.getAttribute("#s-status", "data-state"), "done", await page.textContent("#s-status"));
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#s-download")]);
    assert.equal(download.suggestedFilename(), "maskforge-seggen.zip");
    return unzip(await readFile(await download.path()));
  }

  await check("app: the SegGen tab makes the native CLI's ImgSyn dataset for an uploaded label map", async () => {
    await page.fill("#model-url", model);
    await page.fill("#controlnet-url", `${server.url}/tests/fixtures/tiny-controlnet-sd15`);
    await page.evaluate(() => document.getElementById("model-status").removeAttribute("data-device"));
    await page.click("#load");
    await page.waitForSelector("#model-status[data-device], #model-status.error", { timeout: 120_000 * slow });
    assert.match(await page.textContent("#model-status"), /^Loaded on /);
    await page.click('.tab[data-tab="seggen"]');
    await page.setInputFiles("#s-labels-file", join(seggen, "labels", "street.png"));
    await page.waitForFunction(() => document.getElementById("s-map-status").textContent.startsWith("street.png: 64×64"));
    // The first line of reference/seggen/prompts.jsonl, --per-mask 2 --steps 3 --seed 5.
    const files = await runSegGen({ "s-prompt": "a street with a tree and a person", "s-count": 2, "s-steps": 3, "s-seed": 5 });
    assert.equal(await page.locator("#s-gallery .sample img").count(), 2);
    const ref = join(seggen, "imgsyn");
    const native = (await readFile(join(ref, "manifest.jsonl"), "utf8")).trimEnd().split("\n").slice(0, 2).map((l) => JSON.parse(l));
    const manifest = files["manifest.jsonl"].toString().trimEnd().split("\n").map((l) => JSON.parse(l));
    // `model` and `controlnet` name where they came from: URLs here, paths natively.
    const settings = (r) => ({ ...r, model: undefined, controlnet: undefined });
    assert.deepEqual(manifest.map(settings), native.map(settings));
    assert.equal(manifest[0].model, model);
    for (const r of native) {
      assert.deepEqual(decodePng(files[r.labels]), decodePng(await readFile(join(ref, r.labels))), r.labels);
      const d = pixelDiff(decodePng(files[r.image]), decodePng(await readFile(join(ref, r.image))));
      assert.ok(d.max <= TOLERANCE.max && d.mean <= TOLERANCE.mean, `${r.image}: max ${d.max}, mean ${d.mean}`);
    }
    assert.equal(JSON.parse(files["palette.json"]).length, 150);
  });

  await check("app: a label map drawn on the canvas gives a sample of the drawn classes", async () => {
    await page.fill("#s-size", "64x64");
    await page.click("#s-new");
    await page.waitForFunction(() => document.getElementById("s-map-status").textContent.startsWith("Drawn map, 64×64"));
    const box = await page.locator("#s-canvas").boundingBox();
    const stroke = async (cls, brush, from, to) => {
      await page.selectOption("#s-class", String(cls));
      await page.fill("#s-brush", String(brush));
      await page.mouse.move(box.x + from[0] * box.width, box.y + from[1] * box.height);
      await page.mouse.down();
      await page.mouse.move(box.x + to[0] * box.width, box.y + to[1] * box.height, { steps: 8 });
      await page.mouse.up();
    };
    await stroke(3, 200, [0.5, 0.5], [0.5, 0.5]); // sky everywhere
    await stroke(13, 10, [0.3, 0.5], [0.7, 0.5]); // a person across the middle
    const files = await runSegGen({ "s-count": 1, "s-steps": 2 });
    const [record] = files["manifest.jsonl"].toString().trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.equal(record.source_mask, "drawn");
    const labels = decodePng(files[record.labels]).pixels;
    const counts = {};
    for (const v of labels) counts[v] = (counts[v] ?? 0) + 1;
    assert.deepEqual(Object.keys(counts), ["3", "13"], JSON.stringify(counts));
    assert.ok(counts[13] > 200, JSON.stringify(counts));
  });

  await check("app: the Detect tab loads a DiffusionInst, detects in an uploaded image and draws the results", async () => {
    await page.click('.tab[data-tab="detect"]');
    assert.equal(await page.isVisible("#tab-detect"), true);
    await page.fill("#d-url", `${server.url}/tests/fixtures/diffusioninst/tiny-r50-web`);
    await page.click("#d-load");
    await page.waitForSelector("#d-model-status[data-device], #d-model-status.error", { timeout: 120_000 * slow });
    assert.match(await page.textContent("#d-model-status"), new RegExp(`^Loaded DiffusionInst \\(80 classes, masks\\) on ${device} `));
    await page.setInputFiles("#d-image-file", join(here, "reference", "diffinst", "image_a.png"));
    await page.fill("#d-steps", "1");
    await page.fill("#d-seed", "0");
    await page.click("#d-run");
    await page.waitForSelector("#d-status[data-state=done], #d-status[data-state=error]", { timeout: 120_000 * slow });
    assert.equal(await page.getAttribute("#d-status", "data-state"), "done", await page.textContent("#d-status"));
    // The PyTorch reference's 1-step, seed-0 run on image A: its classes as COCO ids, in order.
    const reference = JSON.parse(await readFile(join(here, "reference", "diffinst", "expected.json"), "utf8"))["a.s1"];
    const ids = await page.$$eval("#d-results li", (items) => items.map((li) => Number(li.dataset.categoryId)));
    assert.deepEqual(ids, reference.labels.map((l) => COCO_CATEGORY_IDS[l]));
    assert.match(await page.textContent("#d-results li"), /^category \d+ \(.+\), score \d\.\d{3}, box \[/);
    assert.match(await page.textContent("#d-status"), /^18 detections in image_a\.png/);
    // The canvas shows the image scaled up (77 → 385 pixels wide), with the overlays drawn.
    const drawn = await page.evaluate(() => {
      const c = document.getElementById("d-canvas");
      return { width: c.width, height: c.height };
    });
    assert.deepEqual(drawn, { width: 77 * 5, height: 48 * 5 });
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#d-download")]);
    assert.equal(download.suggestedFilename(), "results.json");
    const results = JSON.parse(await readFile(await download.path(), "utf8"));
    assert.deepEqual(results.map((r) => r.category_id), ids);
    for (const [k, r] of results.entries()) {
      const [x1, y1, x2, y2] = reference.boxes[k];
      const [x, y, w, h] = r.bbox;
      assert.ok(Math.max(Math.abs(x - x1), Math.abs(y - y1), Math.abs(x + w - x2), Math.abs(y + h - y2)) <= 1e-2, `box ${k}`);
      assert.equal(decodeRle(r.segmentation).length, 48 * 77);
    }
  });

  await check("app: a bad detector URL is shown as a clear error", async () => {
    await page.fill("#d-url", `${server.url}/no/such/detector`);
    await page.click("#d-load");
    await page.waitForSelector("#d-model-status.error", { timeout: 30_000 });
    assert.match(await page.textContent("#d-model-status"), /no\/such\/detector\/config\.yaml: not found \(HTTP 404\)/);
    assert.equal(await page.isDisabled("#d-run"), true);
  });

  await check("app: a bad model URL is shown as a clear error", async () => {
    await page.fill("#model-url", `${server.url}/no/such/model`);
    await page.click("#load");
    await page.waitForSelector("#model-status.error", { timeout: 30_000 });
    assert.match(await page.textContent("#model-status"), /model_index\.json: not found \(HTTP 404\)/);
  });

  await check("app: a first visit loads the shapes model served beside it, with its settings", async () => {
    const fresh = await browser.newPage();
    fresh.on("pageerror", (e) => console.error(`  [browser] ${e}`));
    await fresh.goto(`${server.url}/www/dist/index.html`);
    await fresh.waitForSelector("body[data-ready=true]", { timeout: 60_000 });
    assert.equal(await fresh.inputValue("#model-url"), "./models/shapes/");
    await fresh.selectOption("#device", device);
    await fresh.click("#load");
    await fresh.waitForSelector("#model-status[data-device], #model-status.error", { timeout: 120_000 * slow });
    assert.equal(await fresh.getAttribute("#model-status", "data-device"), device, await fresh.textContent("#model-status"));
    assert.equal(await fresh.inputValue("#region-size"), "64x64");
    assert.equal(await fresh.inputValue("#overlap"), "16x16");
    // One sample of the default categories with two steps: the model's attention resolutions apply.
    await fresh.fill("#steps", "2");
    await fresh.fill("#count", "1");
    await fresh.click("#generate");
    await fresh.waitForSelector("#gen-status[data-state=done], #gen-status[data-state=error]", { timeout: 300_000 * slow });
    assert.equal(await fresh.getAttribute("#gen-status", "data-state"), "done", await fresh.textContent("#gen-status"));
    assert.equal(await fresh.locator("#gallery .sample canvas").count(), 1);
    await fresh.close();
  });

  await check("app: a first visit's SegGen tab: the shapes world's Mask2Img pipeline served beside it, on its own model, with its settings and the shapes palette", async () => {
    const fresh = await browser.newPage({ acceptDownloads: true });
    fresh.on("pageerror", (e) => console.error(`  [browser] ${e}`));
    await fresh.goto(`${server.url}/www/dist/index.html`);
    assert.equal(await fresh.inputValue("#controlnet-url"), "./models/shapes-seggen/");
    await fresh.waitForSelector("body[data-ready=true]", { timeout: 60_000 });
    await fresh.selectOption("#device", device);
    await fresh.click("#load");
    await fresh.waitForSelector("#model-status[data-device], #model-status.error", { timeout: 120_000 * slow });
    assert.match(await fresh.textContent("#model-status"), /^Loaded on /);
    const own = JSON.parse(await readFile(join(root, "native/models/shapes-seggen/seggen.json"), "utf8"));
    assert.deepEqual([await fresh.inputValue("#s-guidance"), await fresh.inputValue("#s-scale")],
      [String(own.guidance), String(own.control_scale)]);
    await fresh.click('.tab[data-tab="seggen"]');
    await fresh.selectOption("#s-palette", "shapes");
    // The drawn map starts at the model's own size.
    assert.equal(await fresh.inputValue("#s-size"), "64x64");
    await fresh.waitForFunction(() => document.getElementById("s-map-status").textContent.startsWith("Drawn map, 64×64"));
    const box = await fresh.locator("#s-canvas").boundingBox();
    await fresh.selectOption("#s-class", "1"); // circle
    await fresh.fill("#s-brush", "24");
    await fresh.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await fresh.mouse.down();
    await fresh.mouse.up();
    for (const [id, value] of Object.entries({ "s-prompt": "a photo of a single red circle", "s-count": 1, "s-steps": 2 })) {
      await fresh.fill(`#${id}`, String(value));
    }
    await fresh.click("#s-run");
    await fresh.waitForSelector("#s-status[data-state=done], #s-status[data-state=error]", { timeout: 120_000 * slow });
    assert.equal(await fresh.getAttribute("#s-status", "data-state"), "done", await fresh.textContent("#s-status"));
    const [download] = await Promise.all([fresh.waitForEvent("download"), fresh.click("#s-download")]);
    const files = unzip(await readFile(await download.path()));
    const [record] = files["manifest.jsonl"].toString().trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual([record.palette, record.guidance, record.control_scale], ["shapes", own.guidance, own.control_scale]);
    // The pipeline's own UNet drew it, not the dataset tab's model.
    assert.deepEqual([record.model, record.controlnet], ["./models/shapes-seggen/", "./models/shapes-seggen/"]);
    assert.deepEqual(JSON.parse(files["palette.json"]).map((c) => c.name).slice(0, 3), ["circle", "square", "triangle"]);
    const labels = new Set(decodePng(files[record.labels]).pixels);
    assert.deepEqual([...labels].sort(), [0, 1]);
    await fresh.close();
  });
} finally {
  await browser.close();
  await server.close();
}
if (failures) { console.log(`${failures} app test(s) failed`); process.exit(1); }
console.log("all app tests passed");
