// The MaskForge web app: load a model, generate a MosaicFusion dataset with progress and
// cancel, show it with mask overlays, download it as a zip in the native runner's format;
// text to image; SegGen's ImgSyn (images for an uploaded or drawn label map, as a zip);
// DiffusionInst detection (boxes, masks and category ids over an uploaded image).
// trunk builds the `maskforge-web` crate (web/) into ./maskforge-web.js and initialises it. The
// pipeline runs in a Web Worker (`pipeline-worker.js`): the page never waits on a model, and
// Cancel stops a sample mid-way.
import { Detector, colorize, datasetZip, palette, seggenZip } from "./maskforge-web.js";
import { CancelledError, PipelineWorker } from "./pipeline-worker.js";
import { decodeRle } from "./coco.js";

const $ = (id) => document.getElementById(id);
let pipe = null;
/** What SegGen's ImgSyn runs on: `pipe` with its ControlNet or, when the ControlNet URL is a
 * ControlNet pipeline folder, that pipeline on its own model, in a worker of its own. */
let segPipe = null;
let samples = [];
let categoriesUsed = null;
let cancelled = false;

const nextFrame = () => new Promise((r) => setTimeout(r, 0));
const setStatus = (el, text, error = false) => { el.textContent = text; el.classList.toggle("error", error); };
/** Shows why a run stopped: Cancel (the worker's `CancelledError`) after `done`, or an error. */
function showStopped(status, e, done) {
  const cancelled = e instanceof CancelledError;
  setStatus(status, cancelled ? `Cancelled after ${done}.` : `Generation failed: ${e.message ?? e}`, !cancelled);
  status.dataset.state = cancelled ? "cancelled" : "error";
}

if (!window.wasmBindings) {
  await new Promise((ok) => addEventListener("TrunkApplicationStarted", ok, { once: true }));
}
document.body.dataset.ready = "true";

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    for (const p of document.querySelectorAll(".tab-panel")) p.hidden = p.id !== `tab-${tab.dataset.tab}`;
  });
}

const params = new URLSearchParams(location.search);
if (params.get("model")) $("model-url").value = params.get("model");
if (params.has("controlnet")) $("controlnet-url").value = params.get("controlnet");
if (params.get("detector")) $("d-url").value = params.get("detector");

function loadProgress(p) {
  const fraction = p.total ? p.loaded / p.total : 0;
  $("load-progress").value = p.phase === "init" ? 1 : fraction;
  const verb = { download: "Downloading", cache: "From the cache:", read: "Reading" }[p.phase];
  setStatus($("model-status"), p.phase === "init" ? "Building the model…" : `${verb} ${p.file} (${(p.loaded / 1e6).toFixed(1)} MB)`);
}

/** Puts a model's own MosaicFusion settings (its `mosaic.json`) into the dataset, txt2img and
 * SegGen fields; its region size is the size it draws, so SegGen's canvas takes it. */
function showSettings(settings) {
  const text = (v) => Array.isArray(v) ? v.join("x") : String(v);
  if (settings.region_size !== undefined) {
    $("region-size").value = text(settings.region_size);
    const [h, w] = text(settings.region_size).split("x");
    $("t-height").value = h;
    $("t-width").value = w ?? h;
    $("s-size").value = `${h}x${w ?? h}`;
    // A drawing of another size starts anew; an uploaded map or a drawing of this size is kept.
    if (!seg.png && (seg.height !== Number(h) || seg.width !== Number(w ?? h))) newCanvas();
  }
  if (settings.overlap !== undefined) $("overlap").value = text(settings.overlap);
  if (settings.steps !== undefined) $("steps").value = $("t-steps").value = settings.steps;
  if (settings.guidance !== undefined) $("guidance").value = $("t-guidance").value = settings.guidance;
}

/** Whether `url` is a diffusers ControlNet pipeline folder: its `model_index.json` names a
 * `controlnet` (anything else is left to the package, which names what is wrong). */
async function isControlNetPipeline(url) {
  const folder = new URL(url.endsWith("/") ? url : `${url}/`, location.href);
  try {
    const response = await fetch(new URL("model_index.json", folder));
    return response.ok && Boolean((await response.json()).controlnet);
  } catch {
    return false;
  }
}

async function load(fromFolder) {
  $("load").disabled = true;
  const device = $("device").value;
  const controlnet = $("controlnet-url").value.trim();
  const t0 = performance.now();
  try {
    if (segPipe !== pipe) segPipe?.free();
    pipe?.free();
    pipe = segPipe = null;
    const own = controlnet !== "" && await isControlNetPipeline(controlnet);
    pipe = fromFolder
      ? await PipelineWorker.fromFiles($("model-folder").files, { device, onProgress: loadProgress })
      : await PipelineWorker.load($("model-url").value, {
        device, onProgress: loadProgress, controlnet: own ? undefined : controlnet || undefined,
      });
    segPipe = own ? await PipelineWorker.load(controlnet, { device, onProgress: loadProgress }) : pipe;
    showSettings(pipe.mosaicSettings);
    $("s-guidance").value = segPipe.seggenSettings.guidance;
    $("s-scale").value = segPipe.seggenSettings.controlScale;
    setStatus($("model-status"), `Loaded on ${pipe.device} in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
    $("model-status").dataset.device = pipe.device;
    $("generate").disabled = false;
    $("t-run").disabled = false;
    $("s-run").disabled = false;
  } catch (e) {
    setStatus($("model-status"), `Could not load the model: ${e.message ?? e}`, true);
  } finally {
    $("load").disabled = false;
  }
}
$("load").addEventListener("click", () => load(false));
$("model-folder").addEventListener("change", () => load(true));

// An LVIS/COCO file is reduced to its categories (every field kept, as the native runner
// keeps them): the full lvis_v1_val.json is 200 MB, too much for a text box.
$("categories-file").addEventListener("change", async () => {
  const file = $("categories-file").files[0];
  if (!file) return;
  const text = await file.text();
  let parsed = null;
  try { parsed = JSON.parse(text); } catch { /* one name per line */ }
  $("categories").value = parsed && Array.isArray(parsed.categories)
    ? JSON.stringify(parsed.categories, null, 1)
    : text;
});

function size(text, what) {
  const m = /^\s*(\d+)\s*[xX]\s*(\d+)\s*$/.exec(text);
  if (!m) throw new Error(`${what} must be HxW, e.g. 384x512`);
  return [Number(m[1]), Number(m[2])];
}

const COLORS = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180]];

async function showSample(s, k) {
  const card = document.createElement("div");
  card.className = `sample${s.kept ? "" : " dropped"}`;
  card.dataset.index = k;
  const canvas = document.createElement("canvas");
  canvas.width = s.width;
  canvas.height = s.height;
  const ctx = canvas.getContext("2d");
  const bitmap = await createImageBitmap(new Blob([s.png], { type: "image/png" }));
  ctx.drawImage(bitmap, 0, 0);
  const names = new Map(s.annotations.categories.map((c) => [c.id, c.name]));
  const image = ctx.getImageData(0, 0, s.width, s.height);
  s.annotations.annotations.forEach((a, i) => {
    const mask = decodeRle(a.segmentation);
    const [r, g, b] = COLORS[i % COLORS.length];
    for (let p = 0; p < mask.length; p++) {
      if (!mask[p]) continue;
      image.data[4 * p] = (image.data[4 * p] + r) >> 1;
      image.data[4 * p + 1] = (image.data[4 * p + 1] + g) >> 1;
      image.data[4 * p + 2] = (image.data[4 * p + 2] + b) >> 1;
    }
  });
  ctx.putImageData(image, 0, 0);
  ctx.font = "12px sans-serif";
  s.annotations.annotations.forEach((a, i) => {
    const [x, y, w] = a.bbox;
    const [r, g, b] = COLORS[i % COLORS.length];
    ctx.strokeStyle = `rgb(${r},${g},${b})`;
    ctx.strokeRect(x + 0.5, y + 0.5, w - 1, a.bbox[3] - 1);
    ctx.fillStyle = "white";
    ctx.fillText(names.get(a.category_id) ?? a.category_id, x + 2, y + 12);
  });
  const caption = document.createElement("div");
  caption.textContent = s.kept
    ? `#${k + 1}: ${s.annotations.annotations.map((a) => names.get(a.category_id)).join(", ")}`
    : `#${k + 1}: dropped (${s.reason})`;
  card.append(canvas, caption);
  $("gallery").append(card);
}

$("generate").addEventListener("click", async () => {
  const status = $("gen-status");
  let options;
  try {
    const regions = [...document.querySelectorAll(".regions:checked")].map((c) => Number(c.value));
    if (!regions.length) throw new Error("choose at least one region count");
    options = {
      categories: $("categories").value,
      regions,
      regionSize: size($("region-size").value, "Region size"),
      overlap: size($("overlap").value, "Overlap"),
      steps: Number($("steps").value),
      guidance: Number($("guidance").value),
      seed: Number($("seed").value),
    };
  } catch (e) {
    setStatus(status, e.message, true);
    return;
  }
  const count = Number($("count").value);
  samples = [];
  categoriesUsed = options.categories;
  $("gallery").replaceChildren();
  cancelled = false;
  $("generate").disabled = true;
  $("load").disabled = true;
  $("download").disabled = true;
  $("cancel").disabled = false;
  status.dataset.state = "running";
  const t0 = performance.now();
  try {
    for (let k = 0; k < count && !cancelled; k++) {
      setStatus(status, `Sample ${k + 1} of ${count}…`);
      $("gen-progress").value = k / count;
      const s = await pipe.generate({
        ...options, index: k,
        onStep: (i, n) => { $("gen-progress").value = (k + i / n) / count; },
      });
      samples.push(s);
      await showSample(s, k);
    }
    $("gen-progress").value = samples.length / count;
    const kept = samples.filter((s) => s.kept).length;
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    setStatus(status, `${cancelled ? "Cancelled after" : "Done:"} ${samples.length} samples (${kept} kept) in ${secs} s.`);
    status.dataset.state = cancelled ? "cancelled" : "done";
  } catch (e) {
    showStopped(status, e, `${samples.length} samples`);
  } finally {
    $("generate").disabled = false;
    $("load").disabled = false;
    $("cancel").disabled = true;
    $("download").disabled = samples.length === 0;
  }
});

$("cancel").addEventListener("click", () => {
  cancelled = true;
  pipe.cancel();
});

/** Offers `bytes` as a download named `name`. */
function download(bytes, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([bytes], { type: "application/zip" }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

$("download").addEventListener("click", () => {
  try {
    download(datasetZip(categoriesUsed, samples), "maskforge-dataset.zip");
  } catch (e) {
    setStatus($("gen-status"), e.message ?? String(e), true);
  }
});

$("t-run").addEventListener("click", async () => {
  const status = $("t-status");
  $("t-run").disabled = true;
  setStatus(status, "Generating…");
  const t0 = performance.now();
  try {
    const out = await pipe.txt2img({
      prompt: $("prompt").value,
      negativePrompt: $("negative").value || undefined,
      height: Number($("t-height").value),
      width: Number($("t-width").value),
      steps: Number($("t-steps").value),
      guidance: Number($("t-guidance").value),
      scheduler: $("t-scheduler").value || undefined,
      seed: Number($("t-seed").value),
    });
    const old = $("t-image").src;
    $("t-image").src = URL.createObjectURL(new Blob([out.png], { type: "image/png" }));
    if (old) URL.revokeObjectURL(old);
    setStatus(status, `Done in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
    status.dataset.state = "done";
  } catch (e) {
    setStatus(status, `Failed: ${e.message ?? e}`, true);
    status.dataset.state = "error";
  } finally {
    $("t-run").disabled = false;
  }
});

// SegGen: the label map is an uploaded PNG or class ids drawn on the canvas; the core colours
// it (`colorize`), and `pipe.imgsyn` draws one image per sample so that Cancel can stop a run.
const seg = { png: null, ids: null, width: 0, height: 0, name: "drawn", entries: [] };
let segSamples = [];
let segPalette = null;
let segCancelled = false;

async function showMap() {
  const labels = seg.png ?? { width: seg.width, height: seg.height, ids: seg.ids };
  try {
    const bitmap = await createImageBitmap(new Blob([colorize($("s-palette").value, labels)], { type: "image/png" }));
    const canvas = $("s-canvas");
    [canvas.width, canvas.height] = [bitmap.width, bitmap.height];
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    setStatus($("s-map-status"), seg.png
      ? `${seg.name}: ${bitmap.width}×${bitmap.height} (New canvas to draw instead).`
      : `Drawn map, ${bitmap.width}×${bitmap.height}.`);
  } catch (e) {
    setStatus($("s-map-status"), e.message ?? String(e), true);
  }
}

/** The class picker: the palette's classes in their colours. */
function fillClasses() {
  seg.entries = palette($("s-palette").value);
  $("s-class").replaceChildren(...seg.entries.map((c) => {
    const option = new Option(`${c.id} ${c.name}`, c.id);
    const [r, g, b] = c.color;
    option.style.background = `rgb(${r},${g},${b})`;
    option.style.color = r * 0.3 + g * 0.6 + b * 0.1 > 128 ? "black" : "white";
    return option;
  }));
}

function newCanvas() {
  try {
    [seg.height, seg.width] = size($("s-size").value, "Size");
  } catch (e) {
    setStatus($("s-map-status"), e.message, true);
    return;
  }
  seg.ids = new Uint16Array(seg.width * seg.height);
  seg.png = null;
  seg.name = "drawn";
  return showMap();
}

/** Paints a disc of the chosen class at the pointer: its ids, and its colour on the canvas. */
function paint(e) {
  if (!seg.ids || !(e.buttons & 1)) return;
  const canvas = $("s-canvas"), box = canvas.getBoundingClientRect();
  const cx = (e.clientX - box.left) * canvas.width / box.width;
  const cy = (e.clientY - box.top) * canvas.height / box.height;
  const r = Number($("s-brush").value) / 2, id = Number($("s-class").value);
  const [red, green, blue] = seg.entries.find((c) => c.id === id).color;
  const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(seg.width, Math.ceil(cx + r));
  const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(seg.height, Math.ceil(cy + r));
  if (x1 <= x0 || y1 <= y0) return;
  const ctx = canvas.getContext("2d");
  const image = ctx.getImageData(x0, y0, x1 - x0, y1 - y0);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) {
    if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 > r * r) continue;
    seg.ids[y * seg.width + x] = id;
    image.data.set([red, green, blue, 255], 4 * ((y - y0) * (x1 - x0) + x - x0));
  }
  ctx.putImageData(image, x0, y0);
}

$("s-palette").addEventListener("change", () => { fillClasses(); showMap(); });
$("s-new").addEventListener("click", newCanvas);
$("s-canvas").addEventListener("pointerdown", paint);
$("s-canvas").addEventListener("pointermove", paint);
$("s-labels-file").addEventListener("change", async () => {
  const file = $("s-labels-file").files[0];
  if (!file) return;
  seg.png = new Uint8Array(await file.arrayBuffer());
  seg.ids = null;
  seg.name = file.name;
  await showMap();
});
fillClasses();
newCanvas();

$("s-run").addEventListener("click", async () => {
  const status = $("s-status");
  const count = Number($("s-count").value);
  const options = {
    labels: seg.png ?? { width: seg.width, height: seg.height, ids: seg.ids.slice() },
    palette: $("s-palette").value,
    prompt: $("s-prompt").value,
    negativePrompt: $("s-negative").value || undefined,
    steps: Number($("s-steps").value),
    guidance: Number($("s-guidance").value),
    controlScale: Number($("s-scale").value),
    seed: Number($("s-seed").value),
    sourceMask: seg.name,
  };
  segSamples = [];
  segPalette = options.palette;
  segCancelled = false;
  $("s-gallery").replaceChildren();
  for (const id of ["s-run", "load", "s-download"]) $(id).disabled = true;
  $("s-cancel").disabled = false;
  status.dataset.state = "running";
  const t0 = performance.now();
  try {
    for (let k = 0; k < count && !segCancelled; k++) {
      setStatus(status, `Image ${k + 1} of ${count}…`);
      $("s-progress").value = k / count;
      const [s] = (await segPipe.imgsyn({
        ...options, index: k,
        onStep: (i, n) => { $("s-progress").value = (k + i / n) / count; },
      })).samples;
      segSamples.push(s);
      const card = document.createElement("div");
      card.className = "sample";
      const img = new Image();
      img.src = URL.createObjectURL(new Blob([s.png], { type: "image/png" }));
      const caption = document.createElement("div");
      caption.textContent = `#${k + 1}: seed ${s.record.seed}`;
      card.append(img, caption);
      $("s-gallery").append(card);
    }
    $("s-progress").value = segSamples.length / count;
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    setStatus(status, `${segCancelled ? "Cancelled after" : "Done:"} ${segSamples.length} images in ${secs} s.`);
    status.dataset.state = segCancelled ? "cancelled" : "done";
  } catch (e) {
    showStopped(status, e, `${segSamples.length} images`);
  } finally {
    $("s-run").disabled = false;
    $("load").disabled = false;
    $("s-cancel").disabled = true;
    $("s-download").disabled = segSamples.length === 0;
  }
});

$("s-cancel").addEventListener("click", () => {
  segCancelled = true;
  segPipe.cancel();
});

$("s-download").addEventListener("click", () => {
  try {
    download(seggenZip(segPalette, segSamples), "maskforge-seggen.zip");
  } catch (e) {
    setStatus($("s-status"), e.message ?? String(e), true);
  }
});

// Detect: a DiffusionInst folder (config.yaml, model.safetensors or model.pth) loaded on the
// device chosen above; `detector.detect` takes the uploaded file as it is and gives COCO
// results, drawn over the image (masks, boxes, category ids) and listed.
let detector = null;
let detectResults = [];
// Category names of an 80-class COCO model: COCO panoptic's things have COCO's ids and names.
const COCO_NAMES = new Map(palette("coco-panoptic").filter((c) => c.isthing).map((c) => [c.id, c.name]));

$("d-load").addEventListener("click", async () => {
  const status = $("d-model-status");
  $("d-load").disabled = true;
  $("d-run").disabled = true;
  delete status.dataset.device;
  const t0 = performance.now();
  try {
    detector?.free();
    detector = null;
    detector = await Detector.load($("d-url").value, {
      device: $("device").value,
      onProgress: (p) => {
        $("d-load-progress").value = p.phase === "init" ? 1 : p.total ? p.loaded / p.total : 0;
        setStatus(status, p.phase === "init" ? "Building the model…" : `${p.phase === "cache" ? "From the cache:" : "Downloading"} ${p.file}`);
      },
    });
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    setStatus(status, `Loaded ${detector.architecture} (${detector.categoryIds.length} classes${detector.hasMasks ? ", masks" : ""}) on ${detector.device} in ${secs} s.`);
    status.dataset.device = detector.device;
    $("d-steps").placeholder = `config: ${detector.defaultSteps}`;
    $("d-run").disabled = false;
  } catch (e) {
    setStatus(status, `Could not load the detector: ${e.message ?? e}`, true);
  } finally {
    $("d-load").disabled = false;
  }
});

/** Draws `image` scaled up to at least 320 pixels wide, with each result's mask, box and category. */
function drawDetections(bitmap, results, names) {
  const [w, h] = [bitmap.width, bitmap.height];
  const base = new OffscreenCanvas(w, h).getContext("2d");
  base.drawImage(bitmap, 0, 0);
  const image = base.getImageData(0, 0, w, h);
  results.forEach((r, i) => {
    if (!r.segmentation) return;
    const mask = decodeRle(r.segmentation);
    const [red, green, blue] = COLORS[i % COLORS.length];
    for (let p = 0; p < mask.length; p++) {
      if (!mask[p]) continue;
      image.data[4 * p] = (image.data[4 * p] + red) >> 1;
      image.data[4 * p + 1] = (image.data[4 * p + 1] + green) >> 1;
      image.data[4 * p + 2] = (image.data[4 * p + 2] + blue) >> 1;
    }
  });
  base.putImageData(image, 0, 0);
  const scale = Math.max(1, Math.ceil(320 / w));
  const canvas = $("d-canvas");
  [canvas.width, canvas.height] = [w * scale, h * scale];
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(base.canvas, 0, 0, w * scale, h * scale);
  ctx.font = "12px sans-serif";
  ctx.lineWidth = 2;
  results.forEach((r, i) => {
    const [x, y, bw, bh] = r.bbox.map((v) => v * scale);
    const [red, green, blue] = COLORS[i % COLORS.length];
    ctx.strokeStyle = `rgb(${red},${green},${blue})`;
    ctx.strokeRect(x, y, bw, bh);
    const label = names.get(r.category_id) ? `${r.category_id} ${names.get(r.category_id)}` : String(r.category_id);
    const tw = ctx.measureText(label).width + 4;
    ctx.fillStyle = `rgba(${red},${green},${blue},0.8)`;
    ctx.fillRect(x, y, tw, 14);
    ctx.fillStyle = "white";
    ctx.fillText(label, x + 2, y + 11);
  });
}

$("d-run").addEventListener("click", async () => {
  const status = $("d-status");
  const file = $("d-image-file").files[0];
  if (!file) {
    setStatus(status, "Choose an image first.", true);
    status.dataset.state = "error";
    return;
  }
  $("d-run").disabled = true;
  $("d-load").disabled = true;
  $("d-download").disabled = true;
  detectResults = [];
  status.dataset.state = "running";
  setStatus(status, "Detecting…");
  await nextFrame();
  const t0 = performance.now();
  try {
    const steps = $("d-steps").value ? Number($("d-steps").value) : undefined;
    detectResults = await detector.detect(file, {
      steps, seed: Number($("d-seed").value), scoreThreshold: Number($("d-threshold").value),
    });
    const names = detector.categoryIds.length === 80 ? COCO_NAMES : new Map();
    drawDetections(await createImageBitmap(file), detectResults, names);
    $("d-results").replaceChildren(...detectResults.map((r, i) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = `rgb(${COLORS[i % COLORS.length].join(",")})`;
      const [x, y, w, h] = r.bbox.map((v) => v.toFixed(1));
      const name = names.get(r.category_id);
      li.dataset.categoryId = r.category_id;
      li.append(swatch, `category ${r.category_id}${name ? ` (${name})` : ""}, score ${r.score.toFixed(3)}, box [${x}, ${y}, ${w}, ${h}]`);
      return li;
    }));
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    setStatus(status, `${detectResults.length} detections in ${file.name} in ${secs} s.`);
    status.dataset.state = "done";
  } catch (e) {
    setStatus(status, `Detection failed: ${e.message ?? e}`, true);
    status.dataset.state = "error";
  } finally {
    $("d-run").disabled = false;
    $("d-load").disabled = false;
    $("d-download").disabled = detectResults.length === 0;
  }
});

$("d-download").addEventListener("click", () => {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([JSON.stringify(detectResults)], { type: "application/json" }));
  a.download = "results.json";
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
});
