//! Downloading model files over HTTP, streamed into wasm memory (no intermediate whole-file
//! ArrayBuffer), with progress, through the Cache Storage API when the page has it.

use js_sys::{Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, ReadableStreamDefaultReader, Response};

use crate::args::{call1, object};

/// The Cache Storage bucket model files are kept in.
pub const CACHE_NAME: &str = "maskforge-models-v1";

/// A JS exception or rejection as a message.
pub fn js_message(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// `console[method](message)`, if there is a console.
pub fn console(method: &str, message: &str) {
    let Ok(console) = Reflect::get(&js_sys::global(), &JsValue::from_str("console")) else {
        return;
    };
    if let Some(f) = Reflect::get(&console, &JsValue::from_str(method))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
    {
        let _ = f.call1(&console, &JsValue::from_str(message));
    }
}

fn global_fn(name: &str) -> Result<(JsValue, Function), String> {
    let global = js_sys::global();
    let f = Reflect::get(&global, &JsValue::from_str(name))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .ok_or_else(|| format!("`{name}` is not available in this JavaScript environment"))?;
    Ok((global.into(), f))
}

/// Downloads files relative to a base URL.
pub struct Fetcher {
    base: String,
    cache: Option<Cache>,
    on_progress: Option<Function>,
}

impl Fetcher {
    /// Opens the cache when the environment has one (secure contexts only); without it files
    /// are downloaded every time.
    pub async fn new(base_url: &str, on_progress: Option<Function>) -> Self {
        let mut base = base_url.trim().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        Self {
            base,
            cache: open_cache().await,
            on_progress,
        }
    }

    /// A fetcher of the folder `dir` under this one's base URL.
    pub fn folder(&self, dir: &str) -> Self {
        Self {
            base: format!("{}{dir}/", self.base),
            cache: self.cache.clone(),
            on_progress: self.on_progress.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The file at `path`, `Ok(None)` when the server answers 404.
    pub async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        self.get_at(path, self.url(path)).await
    }

    /// The file at `url` (absolute, or relative to the page), reported to the progress
    /// callback as `file`; `Ok(None)` when the server answers 404.
    pub async fn get_at(&self, file: &str, url: String) -> Result<Option<Vec<u8>>, String> {
        let path = file;
        if let Some(cache) = &self.cache
            && let Ok(hit) = JsFuture::from(cache.match_with_str(&url)).await
            && let Ok(response) = hit.dyn_into::<Response>()
        {
            return self
                .read_body(path, &url, response, "cache")
                .await
                .map(Some);
        }
        let (global, fetch) = global_fn("fetch")?;
        let promise = fetch
            .call1(&global, &JsValue::from_str(&url))
            .map_err(|e| format!("{url}: {}", js_message(&e)))?;
        let response: Response = JsFuture::from(Promise::from(promise))
            .await
            .map_err(|e| format!("{url}: network error ({})", js_message(&e)))?
            .dyn_into()
            .map_err(|_| format!("{url}: fetch did not return a Response"))?;
        if response.status() == 404 {
            return Ok(None);
        }
        if !response.ok() {
            return Err(format!(
                "{url}: HTTP {} {}",
                response.status(),
                response.status_text()
            ));
        }
        // The cache reads its own copy of the stream; wait for it only after ours is read, so
        // the body is never held whole in a JS buffer.
        let stored = match (&self.cache, response.clone()) {
            (Some(cache), Ok(copy)) => Some(JsFuture::from(cache.put_with_str(&url, &copy))),
            _ => None,
        };
        let bytes = self.read_body(path, &url, response, "download").await?;
        if let Some(stored) = stored
            && let Err(e) = stored.await
        {
            console(
                "warn",
                &format!("maskforge: {url} not cached ({})", js_message(&e)),
            );
        }
        Ok(Some(bytes))
    }

    /// The file at `path`, an error naming its URL when missing.
    pub async fn required(&self, path: &str) -> Result<Vec<u8>, String> {
        self.get(path)
            .await?
            .ok_or_else(|| format!("{}: not found (HTTP 404)", self.url(path)))
    }

    async fn read_body(
        &self,
        path: &str,
        url: &str,
        response: Response,
        phase: &str,
    ) -> Result<Vec<u8>, String> {
        let total = response
            .headers()
            .get("content-length")
            .ok()
            .flatten()
            .and_then(|v| v.parse::<usize>().ok());
        let mut bytes = Vec::new();
        reserve(&mut bytes, total.unwrap_or(0), url)?;
        let report = |loaded: usize| {
            call1(
                &self.on_progress,
                &object(&[
                    ("phase", JsValue::from_str(phase)),
                    ("file", JsValue::from_str(path)),
                    ("url", JsValue::from_str(url)),
                    ("loaded", JsValue::from_f64(loaded as f64)),
                    (
                        "total",
                        total.map_or(JsValue::NULL, |t| JsValue::from_f64(t as f64)),
                    ),
                ]),
            )
        };
        report(0);
        let Some(body) = response.body() else {
            return Ok(bytes);
        };
        let reader: ReadableStreamDefaultReader = body
            .get_reader()
            .dyn_into()
            .map_err(|_| format!("{url}: cannot read the response body"))?;
        loop {
            let chunk = JsFuture::from(reader.read())
                .await
                .map_err(|e| format!("{url}: download interrupted ({})", js_message(&e)))?;
            let done = Reflect::get(&chunk, &JsValue::from_str("done"))
                .ok()
                .and_then(|d| d.as_bool())
                .unwrap_or(true);
            if done {
                break;
            }
            let value: Uint8Array = Reflect::get(&chunk, &JsValue::from_str("value"))
                .ok()
                .and_then(|v| v.dyn_into().ok())
                .ok_or_else(|| format!("{url}: the response body is not bytes"))?;
            let start = bytes.len();
            let n = value.length() as usize;
            if bytes.capacity() < start + n {
                reserve(&mut bytes, (start + n).max(2 * start) - start, url)?;
            }
            bytes.resize(start + n, 0);
            value.copy_to(&mut bytes[start..]);
            report(bytes.len());
        }
        Ok(bytes)
    }
}

/// Grows `bytes` by `additional` or says why not: wasm32 memory ends at 4 GB, and a failed
/// allocation would otherwise abort.
fn reserve(bytes: &mut Vec<u8>, additional: usize, url: &str) -> Result<(), String> {
    bytes.try_reserve_exact(additional).map_err(|_| {
        format!(
            "{url}: cannot hold {} MB more in WebAssembly memory (4 GB in all, model files \
             included); use the model's .fp16. variant or a smaller model",
            additional / 1_000_000
        )
    })
}

async fn open_cache() -> Option<Cache> {
    let caches = Reflect::get(&js_sys::global(), &JsValue::from_str("caches")).ok()?;
    if caches.is_undefined() || caches.is_null() {
        return None;
    }
    let caches: web_sys::CacheStorage = caches.dyn_into().ok()?;
    JsFuture::from(caches.open(CACHE_NAME))
        .await
        .ok()?
        .dyn_into()
        .ok()
}

/// Deletes the model cache; resolves to whether there was one.
pub async fn clear_cache() -> Result<bool, String> {
    let caches = Reflect::get(&js_sys::global(), &JsValue::from_str("caches"))
        .ok()
        .filter(|c| !c.is_undefined() && !c.is_null())
        .ok_or("the Cache Storage API is not available (it needs a secure context)")?;
    let caches: web_sys::CacheStorage = caches
        .dyn_into()
        .map_err(|_| "`caches` is not a CacheStorage")?;
    let deleted = JsFuture::from(caches.delete(CACHE_NAME))
        .await
        .map_err(|e| js_message(&e))?;
    Ok(deleted.as_bool().unwrap_or(false))
}
