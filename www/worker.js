// The app's Web Worker: holds one `Pipeline` of the maskforge package and runs the calls that
// `pipeline-worker.js` posts, so that loading and denoising never block the page. Callbacks in
// the options (`onProgress`, `onStep`) come back as messages.
import init, { Pipeline } from "./maskforge-web.js";

const ready = init();
let pipe = null;

/** A callback that posts its arguments back to the page, tagged with the call's id. */
const relay = (id, name) => (...args) => postMessage({ id, callback: name, args });

self.onmessage = async ({ data: { id, method, source, options } }) => {
  try {
    await ready;
    const callbacks = {};
    for (const name of options.callbacks ?? []) callbacks[name] = relay(id, name);
    const opts = { ...options, ...callbacks };
    delete opts.callbacks;
    let result;
    if (method === "load" || method === "fromFiles") {
      pipe?.free();
      pipe = null;
      pipe = await Pipeline[method](source, opts);
      result = { device: pipe.device, mosaicSettings: pipe.mosaicSettings, seggenSettings: pipe.seggenSettings };
    } else {
      if (!pipe) throw new Error("no model is loaded");
      result = await pipe[method](opts);
    }
    postMessage({ id, result });
  } catch (e) {
    postMessage({ id, error: e?.message ?? String(e) });
  }
};
