// Headless Chromium through Playwright, with WebGPU on SwiftShader.
import { chromium } from "playwright-core";

export const CHROMIUM_ARGS = [
  "--enable-unsafe-webgpu", "--no-sandbox", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
];

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: CHROMIUM_ARGS,
  });
}

/** A page with the harness loaded; browser console errors are echoed and kept in
 * `page.browserErrors`. */
export async function harnessPage(browser, url) {
  const page = await browser.newPage();
  page.browserErrors = [];
  // 404s are expected: optional files and weight variants are probed.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 404/.test(m.text())) {
      page.browserErrors.push(m.text());
      console.error(`  [browser] ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => {
    page.browserErrors.push(String(e));
    console.error(`  [browser] ${e}`);
  });
  await page.goto(`${url}/tests/web/harness.html`);
  await page.waitForFunction(() => window.harness !== undefined, null, { timeout: 60_000 });
  const state = await page.evaluate(() => window.harness);
  if (state !== "ready") throw new Error(`harness: ${state}`);
  return page;
}
