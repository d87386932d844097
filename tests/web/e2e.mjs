// Browser end-to-end test of the `maskforge` npm package (web/pkg, built by web/build.sh):
// headless Chromium loads the tiny fixture model from a localhost server and runs txt2img with
// the committed initial latents on the CPU and on WebGPU (SwiftShader); the PNG must match the
// native CLI's (reference/txt2img_96x128.png, see reference/README.md) within TOLERANCE. Other
// folders, ControlNet, SegGen (text2mask, imgsyn) and bad input are checked on the CPU.
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

import { serve } from "./serve.mjs";
import { launch, harnessPage } from "./browser.mjs";
import { decodePng, pixelDiff } from "./png.mjs";
import { TOLERANCE } from "./tolerance.mjs";
import { readNpyF32 } from "./npy.mjs";
import { decodeRle } from "../../www/coco.js";
import { unzip } from "./dataset.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const seggen = join(here, "reference", "seggen");
const REF = { prompt: "a photo of a single cat", height: 96, width: 128, steps: 4, guidance: 7.5, seed: 7 };
const devices = (process.env.MASKFORGE_DEVICES ?? "cpu,webgpu").split(",");

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

const server = await serve(root);
const browser = await launch();
const model = `${server.url}/tests/fixtures/tiny-sd15`;
const npy = readNpyF32(await readFile(join(here, "reference", "latents_96x128.npy")));
assert.deepEqual(npy.shape, [1, 4, REF.height / 8, REF.width / 8]);
const latents = Array.from(npy.data);
const reference = decodePng(await readFile(join(here, "reference", "txt2img_96x128.png")));
const timings = {};

try {
  for (const device of devices) {
    const page = await harnessPage(browser, server.url);
    let pipeReady = false;
    await check(`${device}: Pipeline.load fetches the model and uses ${device}`, async () => {
      const r = await page.evaluate(async ({ model, device }) => {
        const phases = new Set();
        const files = new Set();
        const t0 = performance.now();
        const pipe = await maskforge.Pipeline.load(model, {
          device, onProgress: (p) => { phases.add(p.phase); if (p.file) files.add(p.file); },
        });
        const ms = performance.now() - t0;
        window.pipe = pipe;
        return { device: pipe.device, ms, phases: [...phases], files: [...files] };
      }, { model, device });
      assert.equal(r.device, device);
      assert.ok(r.phases.includes("download") && r.phases.includes("init"), `phases ${r.phases}`);
      assert.ok(r.files.includes("unet/diffusion_pytorch_model.safetensors"), `files ${r.files}`);
      timings[device] = { load_ms: Math.round(r.ms) };
      pipeReady = true;
    });
    if (!pipeReady) continue;

    await check(`${device}: txt2img with given latents matches the native CLI`, async () => {
      const r = await page.evaluate(async ({ ref, latents }) => {
        const values = new Float32Array(latents);
        window.latents = values;
        const t0 = performance.now();
        const out = await pipe.txt2img({ ...ref, latents: values });
        return { png: Array.from(out.png), ms: performance.now() - t0 };
      }, { ref: REF, latents });
      const got = decodePng(Buffer.from(r.png));
      const d = pixelDiff(got, reference);
      console.log(`     ${device}: max |Δ| ${d.max}, mean |Δ| ${d.mean.toFixed(4)} (first run ${Math.round(r.ms)} ms)`);
      assert.ok(d.max <= TOLERANCE.max && d.mean <= TOLERANCE.mean,
        `differs from the native PNG: max ${d.max}, mean ${d.mean}`);
      timings[device].diff = d;
    });

    if (device === "cpu") await check(`${device}: a different prompt gives a different image (the comparison can fail)`, async () => {
      const png = await page.evaluate(async (ref) =>
        Array.from((await pipe.txt2img({ ...ref, prompt: "a teapot", latents: window.latents })).png), REF);
      const d = pixelDiff(decodePng(Buffer.from(png)), reference);
      assert.ok(d.max > TOLERANCE.max, `only ${d.max} apart`);
    });

    await check(`${device}: per-step time`, async () => {
      const r = await page.evaluate(async (ref) => {
        const time = async (steps) => {
          const t0 = performance.now();
          await pipe.txt2img({ ...ref, device: undefined, steps, latents: window.latents });
          return performance.now() - t0;
        };
        // SwiftShader takes seconds per step: time fewer there.
        const [a, b] = ref.device === "webgpu" ? [1, 3] : [2, 10];
        await time(a);
        const ta = await time(a), tb = await time(b);
        return { a, b, ta, tb };
      }, { ...REF, device });
      timings[device].step_ms = +((r.tb - r.ta) / (r.b - r.a)).toFixed(1);
      timings[device][`txt2img_${r.b}_steps_ms`] = Math.round(r.tb);
    });

    await check(`${device}: generate gives the native runner's sample (reference/dataset, sample 2)`, async () => {
      const categories = JSON.parse(await readFile(join(root, "tests/fixtures/categories.json"), "utf8")).categories;
      const r = await page.evaluate(async (categories) => {
        const s = await pipe.generate({ categories, regions: [1, 2, 4], regionSize: "64x64", overlap: "16x16",
          steps: 3, guidance: 7.5, seed: 1, index: 1, modelName: "tests/fixtures/tiny-sd15" });
        return { ...s, png: Array.from(s.png) };
      }, categories);
      const ref = join(here, "reference", "dataset");
      const native = (await readFile(join(ref, "manifest.jsonl"), "utf8")).trimEnd().split("\n").map((l) => JSON.parse(l))[1];
      const plan = (x) => ({ ...x, regions: x.regions.map((g) => ({ ...g, threshold: undefined })), annotations: undefined });
      assert.deepEqual(plan(r.record), plan(native), "the manifest record");
      assert.deepEqual(JSON.parse(r.recordJson), r.record);
      assert.equal(r.annotations.images.length, 1);
      assert.deepEqual(r.annotations.images[0], JSON.parse(await readFile(join(ref, "annotations.json"), "utf8")).images[1]);
      const [a] = r.annotations.annotations, [b] = native.annotations;
      const ma = decodeRle(a.segmentation), mb = decodeRle(b.segmentation);
      let inter = 0, union = 0;
      for (let p = 0; p < ma.length; p++) { inter += ma[p] & mb[p]; union += ma[p] | mb[p]; }
      const d = pixelDiff(decodePng(Buffer.from(r.png)), decodePng(await readFile(join(ref, "images", "000000000002.png"))));
      console.log(`     ${device}: mask IoU ${(inter / union).toFixed(4)}, image max |Δ| ${d.max}`);
      assert.ok(inter / union >= 0.95 && d.max <= TOLERANCE.max && d.mean <= TOLERANCE.mean);
    });

    await check(`${device}: text2mask draws the native CLI's colour map and reads the same labels`, async () => {
      const r = await page.evaluate(async () => {
        const steps = [];
        const t0 = performance.now();
        const out = await pipe.text2mask({ prompt: "a street with a tree and a person", palette: "ade20k",
          height: 64, width: 64, steps: 3, seed: 4, onStep: (i, n) => steps.push([i, n]) });
        const ms = performance.now() - t0;
        return { ...out, color: Array.from(out.color), labels: Array.from(out.labels), steps, ms, palette: maskforge.palette("ade20k") };
      });
      const color = decodePng(Buffer.from(r.color)), labels = decodePng(Buffer.from(r.labels));
      const nativeLabels = decodePng(await readFile(join(seggen, "text2mask_labels.png")));
      const d = pixelDiff(color, decodePng(await readFile(join(seggen, "text2mask_color.png"))));
      let same = 0;
      for (let p = 0; p < labels.pixels.length; p++) same += labels.pixels[p] === nativeLabels.pixels[p];
      const agree = same / labels.pixels.length;
      console.log(`     ${device}: text2mask colour max |Δ| ${d.max}, mean |Δ| ${d.mean.toFixed(4)}; labels agree on ${(100 * agree).toFixed(2)} %; ` +
        `${r.instances} instances of ${r.classes.length} classes (${Math.round(r.ms)} ms)`);
      assert.deepEqual([r.width, r.height, labels.width, labels.height, labels.channels], [64, 64, 64, 64, 1]);
      // PNDM's 3 steps run 4 UNet steps (its Runge-Kutta warm-up), as natively.
      assert.deepEqual(r.steps, [[1, 4], [2, 4], [3, 4], [4, 4]]);
      assert.ok(d.max <= TOLERANCE.max && d.mean <= TOLERANCE.mean, `colour: max ${d.max}, mean ${d.mean}`);
      assert.deepEqual(r.classes, [...new Set(labels.pixels)].filter((c) => c > 0).sort((a, b) => a - b), "classes are the labels present");
      // Every pixel nearest to a class colour or black (ties to the lowest id) has that label;
      // those nearest to the edge colour go to a neighbouring instance.
      const candidates = [[0, [0, 0, 0]], ...r.palette.map((e) => [e.id, e.color]), [-1, [120, 255, 70]]];
      let edges = 0;
      for (let p = 0; p < labels.pixels.length; p++) {
        const c = color.pixels.subarray(3 * p, 3 * p + 3);
        let best = [Infinity, 0];
        for (const [id, [r0, g0, b0]] of candidates) {
          const d2 = (c[0] - r0) ** 2 + (c[1] - g0) ** 2 + (c[2] - b0) ** 2;
          if (d2 < best[0]) best = [d2, id];
        }
        if (best[1] === -1) edges++;
        else assert.equal(labels.pixels[p], best[1], `pixel ${p}: colour ${c}`);
      }
      console.log(`     ${device}: text2mask ${edges} edge pixels`);
      // minArea absorbs small segments into their neighbours: fewer instances, no new class.
      const small = await page.evaluate(async () => {
        const out = await pipe.text2mask({ prompt: "a street with a tree and a person", palette: "ade20k",
          height: 64, width: 64, steps: 3, seed: 4, minArea: 8 });
        return { instances: out.instances, classes: out.classes };
      });
      assert.ok(small.instances < r.instances, `${small.instances} instances with minArea 8, ${r.instances} without`);
      assert.ok(small.classes.every((c) => r.classes.includes(c)), `${small.classes}`);
      // The same colours read the same: the native CLI printed 1936 instances of 114 classes.
      if (d.max === 0) {
        assert.deepEqual(labels.pixels, nativeLabels.pixels, "labels of an identical colour map");
        assert.deepEqual([r.instances, r.classes.length], [1936, 114]);
      } else {
        assert.ok(agree >= 0.99, `labels agree on ${agree}`);
      }
    });

    await check(`${device}: a second load reads the weights from the Cache Storage API`, async () => {
      const before = server.requests.length;
      const phases = await page.evaluate(async ({ model, device }) => {
        const seen = {};
        await maskforge.Pipeline.load(model, { device, onProgress: (p) => { if (p.file) seen[p.file] = p.phase; } });
        return seen;
      }, { model, device });
      assert.equal(phases["unet/diffusion_pytorch_model.safetensors"], "cache");
      const fetched = server.requests.slice(before).filter((r) => r.status === 200).map((r) => r.path);
      assert.deepEqual(fetched, [], "nothing downloaded again (404 probes aside)");
    });
    await check(`${device}: the page logged no error`, async () => {
      // A kernel the browser refuses shows up only here: an uncaptured wgpu error (a panic).
      assert.deepEqual(page.browserErrors, []);
    });
    await page.close();
  }

  /** Loads `model` (and `load` options) on the CPU, runs `run` and compares with `reference`. */
  async function matchesNative(name, model, { load = {}, run, files, reference }) {
    const page = await harnessPage(browser, server.url);
    const { control: controlPath, ...options } = run;
    const r = await page.evaluate(async ({ model, load, run, control }) => {
      const files = [];
      const pipe = await maskforge.Pipeline.load(model, { device: "cpu", ...load, onProgress: (p) => files.push(p.file) });
      const out = await pipe.txt2img({ ...run, ...(control ? { controlImage: new Uint8Array(control) } : {}) });
      return { files, png: Array.from(out.png) };
    }, { model: `${server.url}/${model}`, load, run: options,
         control: controlPath ? Array.from(await readFile(join(root, controlPath))) : null });
    for (const f of files) assert.ok(r.files.includes(f), `${f} not in ${r.files}`);
    const d = pixelDiff(decodePng(Buffer.from(r.png)), decodePng(await readFile(join(here, "reference", reference))));
    console.log(`     ${name}: max |Δ| ${d.max}, mean |Δ| ${d.mean.toFixed(4)}`);
    assert.ok(d.max <= TOLERANCE.max && d.mean <= TOLERANCE.mean, `max ${d.max}, mean ${d.mean}`);
    await page.close();
  }
  const teapot = { prompt: "a photo of a single teapot", height: 64, width: 64, steps: 3, guidance: 5, seed: 3 };
  await check("cpu: an fp16-variant SD 2 v-prediction folder, noise from the seed, matches the native CLI", () =>
    matchesNative("sd2v", "tests/fixtures/tiny-sd2v", {
      run: teapot, files: ["unet/diffusion_pytorch_model.fp16.safetensors"], reference: "txt2img_sd2v_seed3_64.png",
    }));
  await check("cpu: an SDXL folder (two tokenizers and text encoders) loads and matches the native CLI", () =>
    matchesNative("sdxl", "tests/fixtures/tiny-sdxl", {
      run: teapot, files: ["tokenizer_2/vocab.json", "text_encoder_2/config.json"], reference: "txt2img_sdxl_seed3_64.png",
    }));
  await check("cpu: a ControlNet folder conditions txt2img as in the native CLI", () =>
    matchesNative("controlnet", "tests/fixtures/tiny-sd15", {
      load: { controlnet: `${server.url}/tests/fixtures/tiny-controlnet-sd15` },
      run: { prompt: "a photo of a single cat", height: 64, width: 64, steps: 3, guidance: 7.5, seed: 5,
             control: "tests/fixtures/control-palette.png" },
      files: ["diffusion_pytorch_model.safetensors"], reference: "txt2img_controlnet_seed5_64.png",
    }));
  await check("cpu: imgsyn draws the native CLI's images for a label map; seggenZip writes its dataset", async () => {
    const page = await harnessPage(browser, server.url);
    const label = Array.from(await readFile(join(seggen, "labels", "street.png")));
    const r = await page.evaluate(async ({ model, controlnet, label }) => {
      const pipe = await maskforge.Pipeline.load(model, { device: "cpu", controlnet });
      // The two lines of reference/seggen/prompts.jsonl with --per-mask 2: line 1 is index 2.
      const common = { labels: new Uint8Array(label), palette: "ade20k", count: 2, seed: 5, steps: 3,
        sourceMask: "street.png", modelName: "tests/fixtures/tiny-sd15", controlnetName: "tests/fixtures/tiny-controlnet-sd15" };
      const steps = [];
      const t0 = performance.now();
      const a = await pipe.imgsyn({ ...common, prompt: "a street with a tree and a person", onStep: (i, n) => steps.push([i, n]) });
      const ms = performance.now() - t0;
      const b = await pipe.imgsyn({ ...common, prompt: "a quiet road at dusk", index: 2 });
      const zip = maskforge.seggenZip("ade20k", [...b.samples, ...a.samples]);
      const color = maskforge.colorize("ade20k", new Uint8Array(label));
      return { zip: Array.from(zip), color: Array.from(color), steps, ms, size: [a.width, a.height, a.samples.length],
               first: { ...a.samples[0], png: undefined, labels: undefined }, settings: pipe.seggenSettings };
    }, { model, controlnet: `${server.url}/tests/fixtures/tiny-controlnet-sd15`, label });
    assert.deepEqual(r.settings, { guidance: 7.5, controlScale: 1 }, "no seggen.json: SegGen's");
    assert.deepEqual(r.size, [64, 64, 2]);
    assert.deepEqual([r.steps.length, r.steps[4], r.steps.at(-1)], [8, [5, 8], [8, 8]], "steps over both images");
    assert.deepEqual(JSON.parse(r.first.recordJson), r.first.record);
    const files = unzip(r.zip);
    const ref = join(seggen, "imgsyn");
    const stems = [1, 2, 3, 4].map((k) => String(k).padStart(12, "0"));
    assert.deepEqual(Object.keys(files).sort(), ["manifest.jsonl", "palette.json",
      ...stems.map((s) => `annotations/${s}.png`), ...stems.map((s) => `images/${s}.png`)].sort());
    assert.equal(files["manifest.jsonl"].toString(), await readFile(join(ref, "manifest.jsonl"), "utf8"), "manifest.jsonl");
    const palette = JSON.parse(files["palette.json"]);
    assert.deepEqual(palette, JSON.parse(await readFile(join(ref, "run.json"), "utf8")).categories, "palette.json: run.json's categories");
    let worst = 0;
    for (const s of stems) {
      const labels = decodePng(files[`annotations/${s}.png`]);
      assert.deepEqual(labels, decodePng(await readFile(join(ref, "annotations", `${s}.png`))), `annotations/${s}.png`);
      const d = pixelDiff(decodePng(files[`images/${s}.png`]), decodePng(await readFile(join(ref, "images", `${s}.png`))));
      assert.ok(d.max <= TOLERANCE.max && d.mean <= TOLERANCE.mean, `images/${s}.png: max ${d.max}, mean ${d.mean}`);
      worst = Math.max(worst, d.max);
    }
    console.log(`     imgsyn: images max |Δ| ${worst} (2 images of 3 steps in ${Math.round(r.ms)} ms)`);
    // The conditioning image: every pixel in its class's colour.
    const color = decodePng(Buffer.from(r.color)), ids = decodePng(await readFile(join(seggen, "labels", "street.png")));
    const byId = new Map(palette.map((e) => [e.id, e.color]));
    for (let p = 0; p < ids.pixels.length; p++) {
      assert.deepEqual(Array.from(color.pixels.subarray(3 * p, 3 * p + 3)), byId.get(ids.pixels[p]), `pixel ${p}`);
    }
    await page.close();
  });

  await check("cpu: a ControlNet folder's seggen.json gives imgsyn its guidance and control scale; a broken one fails the load", async () => {
    const page = await harnessPage(browser, server.url);
    const mask2img = join(root, "native/models/shapes-mask2img");
    // The shapes world's Mask2Img with a broken seggen.json, under another URL.
    await page.route("**/broken-mask2img/*", (route) => {
      const file = new URL(route.request().url()).pathname.split("/").pop();
      if (file === "seggen.json") return route.fulfill({ body: '{"guidance": "high"}', contentType: "application/json" });
      return existsSync(join(mask2img, file)) ? route.fulfill({ path: join(mask2img, file) }) : route.fulfill({ status: 404 });
    });
    const r = await page.evaluate(async ({ model, controlnet, broken }) => {
      const pipe = await maskforge.Pipeline.load(model, { device: "cpu", controlnet });
      // A circle (class 1) in the middle of a 64×64 map.
      const ids = new Uint8Array(64 * 64).map((_, p) => ((p % 64) - 32) ** 2 + (Math.floor(p / 64) - 32) ** 2 < 200 ? 1 : 0);
      const common = { labels: { width: 64, height: 64, ids }, palette: "shapes", prompt: "a photo of a single red circle", steps: 1 };
      const own = (await pipe.imgsyn(common)).samples[0].record;
      const given = (await pipe.imgsyn({ ...common, guidance: 3, controlScale: 0.5 })).samples[0].record;
      let error;
      try { await maskforge.Pipeline.load(model, { device: "cpu", controlnet: broken }); } catch (e) { error = e.message; }
      return { settings: pipe.seggenSettings, own, given, error };
    }, { model: `${server.url}/native/models/shapes`, controlnet: `${server.url}/native/models/shapes-mask2img`,
         broken: `${server.url}/broken-mask2img` });
    const file = JSON.parse(await readFile(join(mask2img, "seggen.json"), "utf8"));
    assert.deepEqual(r.settings, { guidance: file.guidance, controlScale: file.control_scale });
    assert.deepEqual([r.own.guidance, r.own.control_scale, r.own.palette], [file.guidance, file.control_scale, "shapes"]);
    assert.deepEqual([r.given.guidance, r.given.control_scale], [3, 0.5], "options win");
    assert.match(r.error ?? "", /broken-mask2img\/seggen\.json: not a JSON object of SegGen settings: invalid type: string "high"/);
    await page.close();
  });

  await check("cpu: a ControlNet pipeline folder brings its ControlNet and seggen.json (load, fromFiles, `controlnet`); imgsyn draws the native CLI's images", async () => {
    // The tiny model and ControlNet as StableDiffusionControlNetPipeline.save_pretrained lays them out.
    const dir = await mkdtemp(join(tmpdir(), "maskforge-cn-pipeline-"));
    try {
      const folder = join(dir, "cn-pipeline");
      await cp(join(root, "tests/fixtures/tiny-sd15"), folder, { recursive: true });
      await cp(join(root, "tests/fixtures/tiny-controlnet-sd15"), join(folder, "controlnet"), { recursive: true });
      const index = JSON.parse(await readFile(join(folder, "model_index.json"), "utf8"));
      await writeFile(join(folder, "model_index.json"), JSON.stringify(
        { ...index, _class_name: "StableDiffusionControlNetPipeline", controlnet: ["diffusers", "ControlNetModel"] }));
      await writeFile(join(folder, "seggen.json"), '{"guidance": 3, "control_scale": 0.5}');
      const page = await harnessPage(browser, server.url);
      const serveFrom = (name, base) => page.route(`**/${name}/**`, (route) => {
        const path = new URL(route.request().url()).pathname.split(`/${name}/`)[1];
        const file = join(base, path);
        return existsSync(file) ? route.fulfill({ path: file }) : route.fulfill({ status: 404 });
      });
      await serveFrom("cn-pipeline", folder);
      await serveFrom("plain-pipeline", join(root, "tests/fixtures/tiny-sd15"));
      await page.evaluate(() => {
        const input = Object.assign(document.createElement("input"), { type: "file", id: "folder", webkitdirectory: true });
        document.body.append(input);
      });
      await page.setInputFiles("#folder", folder);
      const label = Array.from(await readFile(join(seggen, "labels", "street.png")));
      const r = await page.evaluate(async ({ model, pipeline, plain, label }) => {
        // reference/seggen/imgsyn's first caption (SegGen's guidance and scale, given: the folder's own differ).
        const run = async (pipe) => (await pipe.imgsyn({ labels: new Uint8Array(label), palette: "ade20k", count: 2, seed: 5,
          steps: 3, guidance: 7.5, controlScale: 1, prompt: "a street with a tree and a person" })).samples.map((s) => Array.from(s.png));
        const loaded = {
          load: await maskforge.Pipeline.load(pipeline, { device: "cpu" }),
          fromFiles: await maskforge.Pipeline.fromFiles(document.getElementById("folder").files, { device: "cpu" }),
          controlnet: await maskforge.Pipeline.load(model, { device: "cpu", controlnet: pipeline }),
        };
        const out = {};
        for (const [how, pipe] of Object.entries(loaded)) out[how] = { settings: pipe.seggenSettings, pngs: await run(pipe) };
        let error;
        try { await maskforge.Pipeline.load(model, { device: "cpu", controlnet: plain }); } catch (e) { error = e.message; }
        return { out, error };
      }, { model, pipeline: `${server.url}/cn-pipeline`, plain: `${server.url}/plain-pipeline`, label });
      for (const [how, { settings, pngs }] of Object.entries(r.out)) {
        assert.deepEqual(settings, { guidance: 3, controlScale: 0.5 }, `${how}: the folder's seggen.json`);
        pngs.forEach((png, k) => {
          const name = `${String(k + 1).padStart(12, "0")}.png`;
          const d = pixelDiff(decodePng(Buffer.from(png)), decodePng(readFileSync(join(seggen, "imgsyn", "images", name))));
          assert.ok(d.max <= TOLERANCE.max && d.mean <= TOLERANCE.mean, `${how}: images/${name}: max ${d.max}, mean ${d.mean}`);
        });
      }
      assert.match(r.error ?? "", /plain-pipeline\/model_index\.json: a pipeline without a `controlnet` component/);
      await page.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  await check("cpu: Pipeline.fromFiles reads only the files the model needs from a picked folder", async () => {
    const dir = await mkdtemp(join(tmpdir(), "maskforge-folder-"));
    try {
      const folder = join(dir, "my-model");
      await cp(join(root, "tests/fixtures/tiny-sd15"), folder, { recursive: true });
      await writeFile(join(folder, "unet", "diffusion_pytorch_model.bin"), "not read");
      await writeFile(join(folder, "notes.txt"), "not read");
      const page = await harnessPage(browser, server.url);
      await page.evaluate(() => {
        const input = Object.assign(document.createElement("input"), { type: "file", id: "folder", webkitdirectory: true });
        document.body.append(input);
      });
      await page.setInputFiles("#folder", folder);
      const r = await page.evaluate(async () => {
        const read = [];
        const pipe = await maskforge.Pipeline.fromFiles(document.getElementById("folder").files, {
          device: "cpu", onProgress: (p) => { if (p.phase === "read") read.push(p.file); } });
        const out = await pipe.txt2img({ prompt: "a cat", height: 64, width: 64, steps: 1 });
        return { read, device: pipe.device, png: out.png.length };
      });
      assert.equal(r.device, "cpu");
      assert.ok(r.png > 0);
      assert.ok(r.read.includes("unet/diffusion_pytorch_model.safetensors"), `read ${r.read}`);
      assert.ok(!r.read.some((f) => f.endsWith(".bin") || f === "notes.txt"), `read ${r.read}`);
      await page.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  const page = await harnessPage(browser, server.url);
  const rejection = (code, arg) => page.evaluate(async ({ code, arg }) => {
    try {
      await new Function("maskforge", "arg", `return (async () => { ${code} })()`)(maskforge, arg);
      return null;
    } catch (e) {
      return { isError: e instanceof Error, message: String(e.message ?? e) };
    }
  }, { code, arg });
  await check("errors: a missing model folder rejects naming the URL and 404", async () => {
    const e = await rejection(`await maskforge.Pipeline.load(arg + "/nope", { device: "cpu" })`, model);
    assert.ok(e?.isError, "rejected with an Error");
    assert.match(e.message, /nope\/model_index\.json.*404/);
  });
  await check("errors: a bad variant rejects", async () => {
    const e = await rejection(`await maskforge.Pipeline.load(arg, { device: "cpu", variant: "bf16" })`, model);
    assert.match(e?.message ?? "", /`variant` must be "fp16" or "fp32", got "bf16"/);
  });
  await check("errors: a bad dtype, and f16 on the CPU, reject", async () => {
    let e = await rejection(`await maskforge.Pipeline.load(arg, { device: "cpu", dtype: "bf16" })`, model);
    assert.match(e?.message ?? "", /`dtype` must be "auto", "f32" or "f16", got "bf16"/);
    e = await rejection(`await maskforge.Pipeline.load(arg, { device: "cpu", dtype: "f16" })`, model);
    assert.match(e?.message ?? "", /dtype "f16" needs a WebGPU adapter with the `shader-f16` feature \(cpu has none\)/);
  });
  await check("errors: an unknown device rejects", async () => {
    const e = await rejection(`await maskforge.Pipeline.load(arg, { device: "tpu" })`, model);
    assert.match(e?.message ?? "", /device must be "auto", "webgpu" or "cpu", got "tpu"/);
  });
  await check("errors: bad txt2img arguments reject with the field named", async () => {
    await page.evaluate(async (model) => { window.pipe = await maskforge.Pipeline.load(model, { device: "cpu" }); }, model);
    let e = await rejection(`await pipe.txt2img({ height: 64, width: 64, steps: 1 })`);
    assert.match(e?.message ?? "", /`prompt` is required/);
    e = await rejection(`await pipe.txt2img({ prompt: "x", height: 64, width: 64, steps: 1, latents: new Float32Array(5) })`);
    assert.match(e?.message ?? "", /`latents` has 5 values, expected 256/);
    e = await rejection(`await pipe.txt2img({ prompt: "x", height: 60, width: 64 })`);
    assert.match(e?.message ?? "", /multiples of 8/);
    e = await rejection(`await pipe.txt2img({ prompt: "x", height: 64, width: 64, scheduler: "magic" })`);
    assert.match(e?.message ?? "", /unknown scheduler "magic"/);
    e = await rejection(`await pipe.txt2img({ prompt: "x", height: 64, width: 64, steps: 1, controlImage: new Uint8Array(4) })`);
    assert.match(e?.message ?? "", /`controlImage` needs a ControlNet/);
  });
  await check("errors: SegGen rejects bad palettes, label maps and a pipeline without a ControlNet", async () => {
    const tiny = `(n, id) => ({ width: 8, height: 8, ids: new Uint8Array(n).fill(id) })`;
    let e = await rejection(`await pipe.text2mask({ prompt: "x", palette: "ade", height: 64, width: 64, steps: 1 })`);
    assert.match(e?.message ?? "", /^text2mask: unknown palette "ade": use "ade20k", "coco-panoptic", "shapes" or an array/);
    e = await rejection(`await pipe.text2mask({ prompt: "x", palette: [{ id: 0, name: "a", color: [1, 2, 3] }], steps: 1 })`);
    assert.match(e?.message ?? "", /^text2mask: custom palette: entry 0 \(id 0, "a"\): id 0 is reserved/);
    e = await rejection(`await pipe.imgsyn({ prompt: "x", palette: "ade20k", labels: (${tiny})(64, 1) })`);
    assert.match(e?.message ?? "", /^imgsyn: needs a ControlNet conditioned on colour maps \(Pipeline\.load's `controlnet`/);
    await page.evaluate(async ({ model, controlnet }) => {
      window.cn = await maskforge.Pipeline.load(model, { device: "cpu", controlnet });
    }, { model, controlnet: `${server.url}/tests/fixtures/tiny-controlnet-sd15` });
    e = await rejection(`await cn.imgsyn({ prompt: "x", palette: "ade20k", steps: 1, labels: (${tiny})(64, 200) })`);
    assert.match(e?.message ?? "", /^imgsyn: label map labels: label id 200 \(64 pixels\) is not in palette ade20k$/);
    e = await rejection(`await cn.imgsyn({ prompt: "x", palette: "ade20k", steps: 1, labels: (${tiny})(60, 1) })`);
    assert.match(e?.message ?? "", /^imgsyn: labels: label map of 8x8 needs 64 ids, got 60$/);
    e = await rejection(`await cn.imgsyn({ prompt: "x", palette: "ade20k", steps: 1, labels: { width: 12, height: 12, ids: new Uint8Array(144) } })`);
    assert.match(e?.message ?? "", /^imgsyn: label map labels: .*multiples of 8/);
    e = await rejection(`await cn.imgsyn({ prompt: "x", palette: "ade20k", labels: new Uint8Array([1, 2, 3]) })`);
    assert.match(e?.message ?? "", /^imgsyn: labels: not a readable image/);
    e = await rejection(`await cn.imgsyn({ palette: "ade20k", labels: (${tiny})(64, 1) })`);
    assert.match(e?.message ?? "", /`prompt` is required/);
    e = await rejection(`maskforge.colorize("coco-panoptic", (${tiny})(64, 12))`);
    assert.match(e?.message ?? "", /^colorize: label id 12 \(64 pixels\) is not in palette coco-panoptic$/);
    const s = await page.evaluate(async () => {
      const r = await cn.imgsyn({ prompt: "x", palette: "ade20k", steps: 1, labels: { width: 64, height: 64, ids: new Array(4096).fill(3) } });
      return r.samples;
    });
    e = await rejection(`maskforge.seggenZip("coco-panoptic", arg)`, s);
    assert.match(e?.message ?? "", /^seggenZip: sample 0 was drawn with palette ade20k, not coco-panoptic$/);
    e = await rejection(`maskforge.seggenZip("ade20k", [arg[0], arg[0]])`, s);
    assert.match(e?.message ?? "", /^seggenZip: two samples have index 0/);
    const entries = await page.evaluate(() => [maskforge.palette("ade20k"), maskforge.palette("coco-panoptic")]);
    assert.deepEqual([entries[0].length, entries[1].length], [150, 133]);
    assert.deepEqual(entries[0][6], { id: 7, name: "road", color: [140, 140, 140] });
    assert.equal(entries[1].find((c) => c.name === "snow").isthing, 0);
  });
  if (devices.includes("webgpu")) await check("auto: picks WebGPU when the browser has it, f16 only with shader-f16", async () => {
    const r = await page.evaluate(async (model) => {
      const p = await maskforge.Pipeline.load(model, { device: "auto" });
      const adapter = await navigator.gpu.requestAdapter();
      return { device: p.device, dtype: p.dtype, f16: adapter.features.has("shader-f16") };
    }, model);
    assert.equal(r.device, "webgpu");
    assert.equal(r.dtype, r.f16 ? "f16" : "f32");
  });
  if (devices.includes("webgpu")) await check("an adapter without subgroups: webgpu rejects naming it, auto uses the CPU", async () => {
    // A fresh page (the WebGPU device is made once per page) whose adapters hide `subgroups`.
    const fresh = await harnessPage(browser, server.url);
    const r = await fresh.evaluate(async (model) => {
      const features = Object.getOwnPropertyDescriptor(GPUAdapter.prototype, "features").get;
      Object.defineProperty(GPUAdapter.prototype, "features", {
        get() { const f = new Set(features.call(this)); f.delete("subgroups"); return f; },
      });
      let message = null;
      try { await maskforge.Pipeline.load(model, { device: "webgpu" }); } catch (e) { message = String(e.message ?? e); }
      return { message, auto: (await maskforge.Pipeline.load(model, { device: "auto" })).device };
    }, model);
    await fresh.close();
    assert.match(r.message ?? "", /lacks the `subgroups` feature/);
    assert.equal(r.auto, "cpu");
  });
} finally {
  await browser.close();
  await server.close();
}

console.log(`timings (headless Chromium, tiny-sd15, 96x128, CFG): ${JSON.stringify(timings)}`);
if (failures) {
  console.log(`${failures} browser test(s) failed`);
  process.exit(1);
}
console.log("all browser tests passed");
