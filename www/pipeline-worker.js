// `PipelineWorker`: the maskforge package's `Pipeline` in a module Web Worker (`worker.js`), so
// that the page stays responsive while a model loads or a sample denoises. It has Pipeline's
// calls (`load`, `fromFiles`, `generate`, `txt2img`, `imgsyn`, `text2mask`) with the same
// options and results; callbacks in the options are relayed from the worker.
//
// `cancel()` stops the worker at once, mid-sample: the pending call rejects with a
// `CancelledError`, and the next call starts a new worker that loads the same model again (the
// package's cache holds the files, so nothing is downloaded twice).

export class CancelledError extends Error {
  constructor() {
    super("cancelled");
    this.name = "CancelledError";
  }
}

export class PipelineWorker {
  #worker = null;
  #calls = new Map();
  #next = 0;
  #source = null;
  #info = null;

  /** A worker with the model at `baseUrl` loaded (`Pipeline.load`'s arguments). */
  static async load(baseUrl, options = {}) {
    const p = new PipelineWorker();
    await p.#open({ method: "load", source: baseUrl, options });
    return p;
  }

  /** A worker with the model in `files` loaded (`Pipeline.fromFiles`'s arguments). */
  static async fromFiles(files, options = {}) {
    const p = new PipelineWorker();
    await p.#open({ method: "fromFiles", source: [...files], options });
    return p;
  }

  /** `"webgpu"` or `"cpu"`: the device the worker's pipeline runs on. */
  get device() { return this.#info.device; }
  /** The model's own MosaicFusion settings (`mosaic.json`), as `Pipeline.mosaicSettings`. */
  get mosaicSettings() { return this.#info.mosaicSettings; }
  /** What `imgsyn` uses where its options are silent, as `Pipeline.seggenSettings`. */
  get seggenSettings() { return this.#info.seggenSettings; }

  generate(options) { return this.#run("generate", options); }
  txt2img(options) { return this.#run("txt2img", options); }
  imgsyn(options) { return this.#run("imgsyn", options); }
  text2mask(options) { return this.#run("text2mask", options); }

  /** Stops the running call now; the next call reloads the model in a new worker. */
  cancel() {
    this.#worker?.terminate();
    this.#worker = null;
    for (const { reject } of this.#calls.values()) reject(new CancelledError());
    this.#calls.clear();
  }

  /** Ends the worker and its model. */
  free() {
    this.cancel();
    this.#source = null;
  }

  async #open(source) {
    this.#source = source;
    this.#info = await this.#post(source.method, source.source, source.options);
  }

  async #run(method, options) {
    if (!this.#worker) {
      if (!this.#source) throw new Error("the pipeline was freed");
      await this.#open(this.#source);
    }
    return this.#post(method, undefined, options);
  }

  #post(method, source, options = {}) {
    if (!this.#worker) {
      this.#worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
      this.#worker.onmessage = ({ data }) => this.#receive(data);
      this.#worker.onerror = (e) => {
        for (const { reject } of this.#calls.values()) reject(new Error(e.message ?? "worker error"));
        this.#calls.clear();
      };
    }
    const id = this.#next++;
    const plain = {}, callbacks = {};
    for (const [key, value] of Object.entries(options)) {
      (typeof value === "function" ? callbacks : plain)[key] = value;
    }
    plain.callbacks = Object.keys(callbacks);
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject, callbacks });
      this.#worker.postMessage({ id, method, source, options: plain });
    });
  }

  #receive({ id, result, error, callback, args }) {
    const call = this.#calls.get(id);
    if (!call) return;
    if (callback) {
      call.callbacks[callback]?.(...args);
      return;
    }
    this.#calls.delete(id);
    if (error !== undefined) call.reject(new Error(error));
    else call.resolve(result);
  }
}
