//! Reading the fields of JS option objects, with errors that name the field.

use js_sys::{Function, Reflect};
use wasm_bindgen::{JsCast, JsValue};

/// An options object (`undefined`/`null` read as empty).
pub struct Obj<'a> {
    what: &'a str,
    value: JsValue,
}

impl<'a> Obj<'a> {
    /// `what` names the object in messages (`txt2img`).
    pub fn new(what: &'a str, value: JsValue) -> Result<Self, String> {
        if !(value.is_undefined() || value.is_null() || value.is_object()) {
            return Err(format!("{what}: expected an options object"));
        }
        Ok(Self { what, value })
    }

    /// The field, or `None` when missing, `undefined` or `null`.
    pub fn get(&self, key: &str) -> Option<JsValue> {
        if !self.value.is_object() {
            return None;
        }
        Reflect::get(&self.value, &JsValue::from_str(key))
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    }

    fn bad(&self, key: &str, expected: &str) -> String {
        format!("{}: `{key}` must be {expected}", self.what)
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, String> {
        self.get(key)
            .map(|v| v.as_string().ok_or_else(|| self.bad(key, "a string")))
            .transpose()
    }

    pub fn required_string(&self, key: &str) -> Result<String, String> {
        self.string(key)?
            .ok_or_else(|| format!("{}: `{key}` is required", self.what))
    }

    pub fn number(&self, key: &str) -> Result<Option<f64>, String> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| self.bad(key, "a finite number"))
            })
            .transpose()
    }

    /// A whole number ≥ `min` (a JS number or BigInt).
    pub fn whole(&self, key: &str, min: u64) -> Result<Option<u64>, String> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let expected = format!("a whole number ≥ {min}");
        let n = if v.is_bigint() {
            u64::try_from(v).map_err(|_| self.bad(key, &expected))?
        } else {
            match v.as_f64() {
                Some(x) if x.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&x) => {
                    x as u64
                }
                _ => return Err(self.bad(key, &expected)),
            }
        };
        if n < min {
            return Err(self.bad(key, &expected));
        }
        Ok(Some(n))
    }

    pub fn function(&self, key: &str) -> Result<Option<Function>, String> {
        self.get(key)
            .map(|v| {
                v.dyn_into::<Function>()
                    .map_err(|_| self.bad(key, "a function"))
            })
            .transpose()
    }

    /// `[h, w]`, `"HxW"` or one number for both.
    pub fn size(&self, key: &str) -> Result<Option<(usize, usize)>, String> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let expected = "[height, width], \"HxW\" or a number";
        let whole = |x: f64| (x.fract() == 0.0 && (0.0..1e6).contains(&x)).then_some(x as usize);
        if let Some(x) = v.as_f64() {
            let n = whole(x).ok_or_else(|| self.bad(key, expected))?;
            return Ok(Some((n, n)));
        }
        if let Some(s) = v.as_string() {
            let (h, w) = s
                .split_once(['x', 'X'])
                .ok_or_else(|| self.bad(key, expected))?;
            let p = |t: &str| {
                t.trim()
                    .parse::<usize>()
                    .map_err(|_| self.bad(key, expected))
            };
            return Ok(Some((p(h)?, p(w)?)));
        }
        if js_sys::Array::is_array(&v) {
            let a = js_sys::Array::from(&v);
            if a.length() == 2
                && let (Some(h), Some(w)) = (
                    a.get(0).as_f64().and_then(whole),
                    a.get(1).as_f64().and_then(whole),
                )
            {
                return Ok(Some((h, w)));
            }
        }
        Err(self.bad(key, expected))
    }

    /// One count or an array of counts.
    pub fn counts(&self, key: &str) -> Result<Option<Vec<usize>>, String> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let expected = "a number or an array of numbers (1, 2, 4)";
        let whole = |x: &JsValue| {
            x.as_f64()
                .filter(|x| x.fract() == 0.0 && *x >= 0.0 && *x < 1e6)
                .map(|x| x as usize)
        };
        if let Some(n) = whole(&v) {
            return Ok(Some(vec![n]));
        }
        if js_sys::Array::is_array(&v) {
            return js_sys::Array::from(&v)
                .iter()
                .map(|x| whole(&x).ok_or_else(|| self.bad(key, expected)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some);
        }
        Err(self.bad(key, expected))
    }
}

/// Calls `f` with one argument, ignoring what it returns or throws.
pub fn call1(f: &Option<Function>, arg: &JsValue) {
    if let Some(f) = f {
        let _ = f.call1(&JsValue::UNDEFINED, arg);
    }
}

/// A plain object from `(key, value)` pairs.
pub fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}
