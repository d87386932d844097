// A static file server for the browser tests: serves `root` on 127.0.0.1 (a secure context,
// so the Cache Storage API works), with the wasm MIME type. `files` maps extra URL paths to
// contents (e.g. a broken config a test needs), served before `root`.
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, sep } from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".wasm": "application/wasm", ".json": "application/json", ".txt": "text/plain",
  ".png": "image/png", ".css": "text/css", ".npy": "application/octet-stream",
};

export async function serve(root, files = {}) {
  const requests = [];
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const entry = { path, status: 200 };
    requests.push(entry);
    if (Object.hasOwn(files, path)) {
      const body = Buffer.from(files[path]);
      res.writeHead(200, { "content-type": TYPES[extname(path)] ?? "application/octet-stream", "content-length": body.length });
      res.end(body);
      return;
    }
    let file = normalize(join(root, path));
    if (!file.startsWith(normalize(root + sep)) && file !== normalize(root)) {
      entry.status = 403;
      res.writeHead(403).end();
      return;
    }
    try {
      if ((await stat(file)).isDirectory()) file = join(file, "index.html");
      const body = await readFile(file);
      res.writeHead(200, {
        "content-type": TYPES[extname(file)] ?? "application/octet-stream",
        "content-length": body.length,
      });
      res.end(body);
    } catch {
      entry.status = 404;
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    }
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, requests, close: () => new Promise((ok) => server.close(ok)) };
}
