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

    pub fn boolean(&self, key: &str) -> Result<Option<bool>, String> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.bad(key, "a boolean")))
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
}

/// Calls `f` with one argument, ignoring what it returns or throws.
pub fn call1(f: &Option<Function>, arg: &JsValue) {
    if let Some(f) = f {
        let _ = f.call1(&JsValue::UNDEFINED, arg);
    }
}

/// Calls a progress callback `f(step, total)`, ignoring what it returns or throws.
pub fn call2(f: &Option<Function>, step: usize, total: usize) {
    if let Some(f) = f {
        let _ = f.call2(
            &JsValue::UNDEFINED,
            &(step as u32).into(),
            &(total as u32).into(),
        );
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
