// The npm package in a fresh Vite project: `npm pack` web/pkg, install the tarball into a new
// project, bundle a page importing "maskforge" with Vite, serve it, and run txt2img on the CPU
// in headless Chromium from the bundle; the documented API type-checks with tsc --strict.
import { execFileSync } from "node:child_process";
import { cp, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { build } from "vite";

import { serve } from "./serve.mjs";
import { launch } from "./browser.mjs";
import { decodePng } from "./png.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const project = await mkdtemp(join(tmpdir(), "maskforge-vite-"));
let server, browser;
try {
  execFileSync("npm", ["pack", "--silent", "--pack-destination", project], { cwd: join(root, "web", "pkg"), stdio: ["ignore", "ignore", "inherit"] });
  const tarball = (await readdir(project)).find((f) => f.endsWith(".tgz"));
  assert.ok(tarball, "npm pack wrote a tarball");
  await writeFile(join(project, "package.json"), JSON.stringify({ name: "vite-app", private: true, type: "module" }));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--silent", `./${tarball}`], { cwd: project, stdio: ["ignore", "ignore", "inherit"] });
  // The API exactly as documented type-checks against the package's .d.ts.
  await writeFile(join(project, "check.ts"), `
import init, { Detector, Pipeline, colorize, datasetZip, palette, seggenZip, type DetectionResult, type GenerateResult,
  type PaletteEntry } from "maskforge";
export async function main(baseUrl: string, latents: Float32Array): Promise<void> {
  await init();
  const pipe = await Pipeline.load(baseUrl, { device: "auto", onProgress: (p) => console.log(p.phase, p.loaded) });
  const device: "webgpu" | "cpu" = pipe.device;
  const img = await pipe.txt2img({ prompt: "a cat", negativePrompt: "", height: 64, width: 64, steps: 2,
    guidance: 7.5, scheduler: "ddim", seed: 1, latents });
  const png: Uint8Array = img.png;
  const s: GenerateResult = await pipe.generate({ categories: [{ id: 1, name: "cat", def: "a cat" }],
    regions: [1, 2, 4], regionSize: [64, 64], overlap: [16, 16], steps: 2, guidance: 7.5, seed: 0 });
  const counts: string = s.annotations.annotations[0].segmentation.counts;
  const zip: Uint8Array = datasetZip([{ id: 1, name: "cat" }], [s]);
  const mask = await pipe.text2mask({ prompt: "a street", palette: "ade20k", height: 64, width: 64, steps: 2,
    guidance: 7.5, seed: 1, negativePrompt: "", scheduler: "euler", maxDistance: 40 });
  const classes: number[] = mask.classes;
  const mine: PaletteEntry[] = [{ id: 1, name: "road", color: [128, 64, 128] }];
  const cn = await Pipeline.load(baseUrl, { controlnet: baseUrl + "/controlnet" });
  const syn = await cn.imgsyn({ labels: mask.labels, palette: "ade20k", prompt: "a street", count: 2, seed: 0,
    index: 0, steps: 2, guidance: 7.5, controlScale: 1, sourceMask: "street.png",
    onStep: (i: number, n: number) => console.log(i, n) });
  await cn.imgsyn({ labels: { width: 64, height: 64, ids: new Uint8Array(4096).fill(1) }, palette: mine, prompt: "a road" });
  const seggen: Uint8Array = seggenZip("ade20k", syn.samples);
  const color: Uint8Array = colorize(mine, { width: 1, height: 1, ids: [1] });
  const road: [number, number, number] = palette("ade20k")[6].color;
  const det = await Detector.load(baseUrl, { device: "cpu", config: "config.yaml", model: "model.pth",
    onProgress: (p) => console.log(p.file) });
  const found: DetectionResult[] = await det.detect(png, { steps: 1, seed: 0, scoreThreshold: 0.3, nms: 0.5, imageId: 3 });
  const bbox: [number, number, number, number] = found[0].bbox;
  const rle: string | undefined = found[0].segmentation?.counts;
  await det.detect(new Blob([new Uint8Array(png)]), { seed: 1n });
  await det.detect({ width: 1, height: 1, data: new Uint8ClampedArray(4) });
  const ids: number[] = det.categoryIds;
  const where: "webgpu" | "cpu" = det.device;
  console.log(device, png.length, s.png.length, counts, zip.length, classes, mask.instances, seggen.length,
    syn.samples[0].record, color.length, road, bbox, rle, ids, where, det.hasMasks, det.architecture, det.defaultSteps);
}
`);
  execFileSync(join(here, "node_modules", ".bin", "tsc"), ["--noEmit", "--strict", "--target", "es2022",
    "--module", "esnext", "--moduleResolution", "bundler", "--lib", "es2022,esnext.disposable,dom,dom.iterable", "--skipLibCheck", "false", "check.ts"],
    { cwd: project, stdio: "inherit" });
  console.log("ok   the documented API type-checks against maskforge.d.ts (tsc --strict)");
  await writeFile(join(project, "index.html"), `<!doctype html><script type="module" src="/main.js"></script>`);
  await writeFile(join(project, "main.js"), `
import init, { Pipeline } from "maskforge";
window.run = async (model) => {
  await init();
  const pipe = await Pipeline.load(model, { device: "cpu" });
  const img = await pipe.txt2img({ prompt: "a photo of a cat", height: 64, width: 64, steps: 2 });
  return { device: pipe.device, png: Array.from(img.png) };
};
window.loaded = true;
`);
  await build({ root: project, logLevel: "warn", build: { outDir: "dist", target: "es2022" } });
  const assets = await readdir(join(project, "dist", "assets"));
  assert.ok(assets.some((f) => f.endsWith(".wasm")), `Vite emitted the .wasm (${assets})`);
  await cp(join(root, "tests", "fixtures", "tiny-sd15"), join(project, "dist", "model"), { recursive: true });

  server = await serve(join(project, "dist"));
  browser = await launch();
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error(`  [browser] ${e}`));
  await page.goto(`${server.url}/index.html`);
  await page.waitForFunction(() => window.loaded === true);
  const r = await page.evaluate((model) => window.run(model), `${server.url}/model`);
  assert.equal(r.device, "cpu");
  const png = decodePng(Buffer.from(r.png));
  assert.deepEqual([png.width, png.height], [64, 64]);
  console.log("ok   npm pack installs into a fresh Vite project; the bundle runs txt2img");
} catch (e) {
  console.log(`FAIL vite: ${e?.stack ?? e}`);
  process.exitCode = 1;
} finally {
  await browser?.close();
  await server?.close();
  await rm(project, { recursive: true, force: true });
}
