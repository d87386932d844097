//! A restricted unpickler for `torch.save` checkpoints. It interprets the binary opcodes that
//! pickling state dicts produces (protocols 2–5) and nothing else; globals are looked up in a
//! fixed allowlist of tensor-rebuilding functions, storage types and plain containers, and
//! every "call" is evaluated here in Rust. No Python object is ever constructed or executed.

use std::collections::HashMap;
use std::rc::Rc;

use safetensors::Dtype;

/// An allowlisted global, as the pickle names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Global {
    /// `collections.OrderedDict`, `collections.Counter`: dicts.
    Dict,
    /// `builtins.set`, `builtins.frozenset`: kept as lists.
    Set,
    /// `torch.Size`: a tuple.
    Size,
    /// `torch.device`: an opaque value.
    Device,
    /// `_codecs.encode`: how protocol 2 stores `bytes`.
    Encode,
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildFromTypeV2,
    /// `torch.Tensor`, `torch.nn.parameter.Parameter`: only as `_rebuild_from_type_v2`'s type.
    TensorType,
    /// A storage class: typed (`torch.FloatStorage`) or `torch.UntypedStorage` (`None`).
    Storage(Option<Dtype>),
    /// A `torch.dtype` (`torch.float8_e4m3fn`), the element type of `_rebuild_tensor_v3`.
    Dtype(Dtype),
}

/// A storage named by a persistent id: the record key, element type (bytes when untyped) and
/// its length in elements.
#[derive(Debug)]
pub(super) struct Storage {
    pub key: String,
    pub dtype: Option<Dtype>,
    pub numel: usize,
}

/// A tensor as `_rebuild_tensor_v2/v3` describes it: a strided view of a storage.
#[derive(Debug, Clone)]
pub(super) struct TensorRef {
    pub storage: Rc<Storage>,
    pub dtype: Dtype,
    /// In elements of `dtype`.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A value on the unpickler's stack. Lists and dicts live in arenas (shared by reference, as
/// in Python, so that items added after memoization are seen by every reference).
#[derive(Debug, Clone)]
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond 64 bits (kept only as a placeholder).
    BigInt,
    Float,
    Str(Rc<str>),
    Bytes,
    Tuple(Rc<[Value]>),
    List(usize),
    Dict(usize),
    Global(Global),
    Storage(Rc<Storage>),
    Tensor(Rc<TensorRef>),
    /// An allowlisted object of no interest (`torch.device(...)`).
    Opaque,
}

impl Value {
    /// What the value is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Opaque => "object",
        }
    }
}

/// The result of one pickle: its value and the containers it refers to.
pub(super) struct Unpickled {
    pub value: Value,
    pub lists: Vec<Vec<Value>>,
    pub dicts: Vec<Vec<(Value, Value)>>,
    /// Every storage the pickle names, by key.
    pub storages: HashMap<String, Rc<Storage>>,
    /// Where the pickle's STOP ended (the next pickle of a legacy file starts there).
    pub end: usize,
}

impl Unpickled {
    /// The entries of the dict `value`, or `None` if it is not a dict.
    pub fn dict(&self, value: &Value) -> Option<&[(Value, Value)]> {
        match value {
            Value::Dict(i) => Some(&self.dicts[*i]),
            _ => None,
        }
    }

    /// The items of the list `value`.
    pub fn list(&self, value: &Value) -> Option<&[Value]> {
        match value {
            Value::List(i) => Some(&self.lists[*i]),
            _ => None,
        }
    }
}

/// Unpickles the pickle starting at `start` of `data`. Errors are messages (the caller names
/// the file); a refused global says so and names it.
pub(super) fn unpickle(data: &[u8], start: usize) -> Result<Unpickled, String> {
    let mut m = Machine {
        data,
        pos: start,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        lists: Vec::new(),
        dicts: Vec::new(),
        storages: HashMap::new(),
        work: 0,
        budget: 64 * data.len().saturating_sub(start) + (1 << 20),
    };
    let value = m.run()?;
    Ok(Unpickled {
        value,
        lists: m.lists,
        dicts: m.dicts,
        storages: m.storages,
        end: m.pos,
    })
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    lists: Vec<Vec<Value>>,
    dicts: Vec<Vec<(Value, Value)>>,
    storages: HashMap<String, Rc<Storage>>,
    /// Items copied so far, bounded by `budget`: a hostile pickle cannot make copies grow
    /// quadratically with its size.
    work: usize,
    budget: usize,
}

/// The message for a global outside the allowlist.
fn refused(module: &str, name: &str) -> String {
    format!(
        "refused pickle global `{module}.{name}`: only tensors and plain containers are read \
         (nothing was executed)"
    )
}

/// The allowlisted global `module.name`.
fn resolve(module: &str, name: &str) -> Result<Global, String> {
    let module = if module == "__builtin__" {
        "builtins"
    } else {
        module
    };
    Ok(match (module, name) {
        ("collections", "OrderedDict" | "Counter") => Global::Dict,
        ("builtins", "set" | "frozenset") => Global::Set,
        ("torch", "Size") => Global::Size,
        ("torch", "device") => Global::Device,
        ("_codecs", "encode") => Global::Encode,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            Global::RebuildParameter
        }
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") | ("torch._tensor", "Tensor") | ("torch.nn.parameter", "Parameter") => {
            Global::TensorType
        }
        ("torch" | "torch.storage", "UntypedStorage") => Global::Storage(None),
        ("torch" | "torch.cuda", storage) if storage.ends_with("Storage") => {
            Global::Storage(Some(match storage {
                "FloatStorage" => Dtype::F32,
                "HalfStorage" => Dtype::F16,
                "BFloat16Storage" => Dtype::BF16,
                "DoubleStorage" => Dtype::F64,
                "LongStorage" => Dtype::I64,
                "IntStorage" => Dtype::I32,
                "ShortStorage" => Dtype::I16,
                "CharStorage" => Dtype::I8,
                "ByteStorage" => Dtype::U8,
                "BoolStorage" => Dtype::BOOL,
                _ => {
                    return Err(format!(
                        "tensors of `{module}.{name}` (complex or quantized) are not supported"
                    ));
                }
            }))
        }
        ("torch", dtype) => match torch_dtype(dtype) {
            Some(d) => Global::Dtype(d),
            None => return Err(refused(module, name)),
        },
        _ => return Err(refused(module, name)),
    })
}

/// The safetensors dtype of `torch.<name>`.
fn torch_dtype(name: &str) -> Option<Dtype> {
    Some(match name {
        "float32" | "float" => Dtype::F32,
        "float16" | "half" => Dtype::F16,
        "bfloat16" => Dtype::BF16,
        "float64" | "double" => Dtype::F64,
        "int64" | "long" => Dtype::I64,
        "int32" | "int" => Dtype::I32,
        "int16" | "short" => Dtype::I16,
        "int8" => Dtype::I8,
        "uint8" => Dtype::U8,
        "uint16" => Dtype::U16,
        "uint32" => Dtype::U32,
        "uint64" => Dtype::U64,
        "bool" => Dtype::BOOL,
        "float8_e4m3fn" => Dtype::F8_E4M3,
        "float8_e5m2" => Dtype::F8_E5M2,
        "float8_e8m0fnu" => Dtype::F8_E8M0,
        _ => return None,
    })
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("pickle ends early (truncated file?)")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// A length read as `N` little-endian bytes.
    fn len<const N: usize>(&mut self) -> Result<usize, String> {
        let b = self.le::<N>()?;
        let mut v = [0u8; 8];
        v[..N].copy_from_slice(&b);
        usize::try_from(u64::from_le_bytes(v)).map_err(|_| "length too large".to_string())
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle ends early (truncated file?)")?;
        let s = std::str::from_utf8(&rest[..n])
            .map_err(|_| "global name is not UTF-8")?
            .to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> Result<Value, String> {
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| "string is not UTF-8")?;
        Ok(Value::Str(s.into()))
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    /// The items pushed since the last MARK, removing the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("pickle MARK missing")?;
        if mark > self.stack.len() {
            return Err("pickle MARK beyond the stack".into());
        }
        Ok(self.stack.split_off(mark))
    }

    fn charge(&mut self, items: usize) -> Result<(), String> {
        self.work += items;
        if self.work > self.budget {
            return Err("pickle copies more data than a checkpoint can hold".into());
        }
        Ok(())
    }

    fn new_list(&mut self, items: Vec<Value>) -> Value {
        self.lists.push(items);
        Value::List(self.lists.len() - 1)
    }

    fn new_dict(&mut self, items: Vec<(Value, Value)>) -> Value {
        self.dicts.push(items);
        Value::Dict(self.dicts.len() - 1)
    }

    fn memo_get(&self, i: u32) -> Result<Value, String> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| format!("pickle memo entry {i} missing"))
    }

    fn memo_put(&mut self, i: u32) -> Result<(), String> {
        let v = self.stack.last().ok_or("pickle stack underflow")?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of items".into());
        }
        let Value::Dict(d) = *self.top()? else {
            let kind = self.top()?.kind();
            return Err(format!("SETITEMS on a {kind}"));
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            self.dicts[d].push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        let Value::List(l) = *self.top()? else {
            let kind = self.top()?.kind();
            return Err(format!("APPENDS on a {kind}"));
        };
        self.lists[l].extend(items);
        Ok(())
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let v = self.u8()?;
                    if !(2..=5).contains(&v) {
                        return Err(format!("pickle protocol {v} is not supported"));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.le::<8>()?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.stack.push(Value::Int(v.into()));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.stack.push(Value::Int(v.into()));
                }
                0x8a | 0x8b => {
                    // LONG1, LONG4: little-endian two's complement.
                    let n = if op == 0x8a {
                        self.len::<1>()?
                    } else {
                        self.len::<4>()?
                    };
                    let b = self.take(n)?;
                    let v = if n == 0 {
                        Value::Int(0)
                    } else if n <= 8 {
                        let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                        let mut v = [fill; 8];
                        v[..n].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(v))
                    } else {
                        Value::BigInt
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Value::Float);
                }
                b'X' => {
                    let n = self.len::<4>()?;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.len::<1>()?;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.len::<8>()?;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                b'T' | b'U' => {
                    // BINSTRING, SHORT_BINSTRING (Python 2 `str`), read as UTF-8 like torch.load.
                    let n = if op == b'T' {
                        self.len::<4>()?
                    } else {
                        self.len::<1>()?
                    };
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len::<4>()?,
                        b'C' => self.len::<1>()?,
                        _ => self.len::<8>()?,
                    };
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b')' => self.stack.push(Value::Tuple(Rc::new([]))),
                b']' => {
                    let v = self.new_list(Vec::new());
                    self.stack.push(v);
                }
                b'}' => {
                    let v = self.new_dict(Vec::new());
                    self.stack.push(v);
                }
                0x8f => {
                    // EMPTY_SET
                    let v = self.new_list(Vec::new());
                    self.stack.push(v);
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items.into()));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items.into()));
                }
                b'l' | 0x91 => {
                    // LIST, FROZENSET
                    let items = self.pop_mark()?;
                    let v = self.new_list(items);
                    self.stack.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let v = self.new_dict(Vec::new());
                    self.stack.push(v);
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' | 0x90 => {
                    // APPENDS, ADDITEMS
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i.into())?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.le()?);
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| "pickle memo too large")?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    let v = self.memo_get(i.into())?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.le()?);
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(resolve(&module, &name)?));
                }
                0x93 => {
                    // STACK_GLOBAL
                    let (Value::Str(name), Value::Str(module)) = (self.pop()?, self.pop()?) else {
                        return Err("STACK_GLOBAL without module and name strings".into());
                    };
                    self.stack.push(Value::Global(resolve(&module, &name)?));
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return Err(format!("REDUCE with {} arguments", args.kind()));
                    };
                    let v = self.call(&func, &args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // BUILD: the state of an OrderedDict (`_metadata`) or a tensor is ignored.
                    let _state = self.pop()?;
                    let target = self.top()?;
                    if !matches!(target, Value::Dict(_) | Value::Tensor(_)) {
                        let kind = target.kind();
                        return Err(format!("BUILD on a {kind} is not allowed"));
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = persistent_load(&pid)?;
                    if let Some(seen) = self.storages.get(&s.key)
                        && (seen.dtype, seen.numel) != (s.dtype, s.numel)
                    {
                        return Err(format!("storage `{}` is named with two types", s.key));
                    }
                    self.storages.insert(s.key.clone(), s.clone());
                    self.stack.push(Value::Storage(s));
                }
                _ => {
                    return Err(format!(
                        "refused pickle opcode 0x{op:02x} at byte {at}: only the opcodes of \
                         tensor data are read (nothing was executed)"
                    ));
                }
            }
        }
    }

    /// The items of a list or tuple.
    fn items(&self, v: &Value) -> Option<Vec<Value>> {
        match v {
            Value::List(l) => Some(self.lists[*l].clone()),
            Value::Tuple(t) => Some(t.to_vec()),
            _ => None,
        }
    }

    /// Evaluates the allowlisted `func` on `args` (REDUCE).
    fn call(&mut self, func: &Value, args: &[Value]) -> Result<Value, String> {
        let Value::Global(g) = func else {
            return Err(format!("REDUCE calls a {}", func.kind()));
        };
        Ok(match (g, args) {
            (Global::Dict, []) => self.new_dict(Vec::new()),
            (Global::Dict, [Value::Dict(d)]) => {
                let items = self.dicts[*d].clone();
                self.charge(items.len())?;
                self.new_dict(items)
            }
            (Global::Dict, [pairs @ (Value::List(_) | Value::Tuple(_))]) => {
                let pairs = self.items(pairs).unwrap_or_default();
                self.charge(pairs.len())?;
                let items = pairs
                    .into_iter()
                    .map(|p| match p {
                        Value::Tuple(kv) if kv.len() == 2 => Ok((kv[0].clone(), kv[1].clone())),
                        other => Err(format!("OrderedDict item is a {}", other.kind())),
                    })
                    .collect::<Result<_, String>>()?;
                self.new_dict(items)
            }
            (Global::Set, []) => self.new_list(Vec::new()),
            (Global::Set, [items @ (Value::List(_) | Value::Tuple(_))]) => {
                let items = self.items(items).unwrap_or_default();
                self.charge(items.len())?;
                self.new_list(items)
            }
            (Global::Size, [t @ Value::Tuple(_)]) => t.clone(),
            (Global::Device, _) => Value::Opaque,
            (Global::Encode, [Value::Str(_), Value::Str(_)]) => Value::Bytes,
            (Global::RebuildTensorV2, [Value::Storage(s), offset, size, stride, ..])
                if (6..=7).contains(&args.len()) =>
            {
                let dtype = s.dtype.ok_or("_rebuild_tensor_v2 of an untyped storage")?;
                tensor(s, dtype, offset, size, stride)?
            }
            (
                Global::RebuildTensorV3,
                [
                    Value::Storage(s),
                    offset,
                    size,
                    stride,
                    _,
                    _,
                    Value::Global(Global::Dtype(d)),
                    ..,
                ],
            ) if (7..=8).contains(&args.len()) => tensor(s, *d, offset, size, stride)?,
            (Global::RebuildParameter, [t @ Value::Tensor(_), ..]) => t.clone(),
            (
                Global::RebuildFromTypeV2,
                [func, Value::Global(Global::TensorType), Value::Tuple(a), _],
            ) if !matches!(func, Value::Global(Global::RebuildFromTypeV2)) => self.call(func, a)?,
            _ => {
                return Err(format!(
                    "unexpected call {g:?}({}) in the pickle",
                    args.iter().map(Value::kind).collect::<Vec<_>>().join(", ")
                ));
            }
        })
    }
}

/// A non-negative integer argument.
fn index(v: &Value, what: &str) -> Result<usize, String> {
    match v {
        Value::Int(i) => usize::try_from(*i).map_err(|_| format!("negative {what} {i}")),
        other => Err(format!("{what} is a {}", other.kind())),
    }
}

fn indices(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) => items.iter().map(|i| index(i, what)).collect(),
        other => Err(format!("{what} is a {}", other.kind())),
    }
}

/// A tensor view of `storage`, checked to lie inside it.
fn tensor(
    storage: &Rc<Storage>,
    dtype: Dtype,
    offset: &Value,
    size: &Value,
    stride: &Value,
) -> Result<Value, String> {
    let offset = index(offset, "storage offset")?;
    let shape = indices(size, "tensor size")?;
    let stride = indices(stride, "tensor stride")?;
    if shape.len() != stride.len() {
        return Err(format!("tensor size {shape:?} with stride {stride:?}"));
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("tensor size overflows")?;
    if numel > 0 {
        let last = shape
            .iter()
            .zip(&stride)
            .try_fold(offset, |e, (&d, &s)| e.checked_add((d - 1).checked_mul(s)?))
            .ok_or("tensor extent overflows")?;
        let es = dtype.bitsize() / 8;
        let (needed, available) = match storage.dtype {
            Some(_) => (last as u128 + 1, storage.numel as u128),
            None => ((last as u128 + 1) * es as u128, storage.numel as u128),
        };
        if needed > available {
            return Err(format!(
                "a tensor of size {shape:?}, stride {stride:?}, offset {offset} lies outside \
                 storage `{}` of {} {}",
                storage.key,
                storage.numel,
                if storage.dtype.is_some() {
                    "elements"
                } else {
                    "bytes"
                }
            ));
        }
    }
    Ok(Value::Tensor(Rc::new(TensorRef {
        storage: storage.clone(),
        dtype,
        offset,
        shape,
        stride,
    })))
}

/// A storage from its persistent id: `("storage", type, key, location, numel)`, plus
/// `view_metadata` (which must be `None`) in the legacy format.
fn persistent_load(pid: &Value) -> Result<Rc<Storage>, String> {
    let Value::Tuple(t) = pid else {
        return Err(format!("persistent id is a {}", pid.kind()));
    };
    match &t[..] {
        [
            Value::Str(tag),
            Value::Global(Global::Storage(dtype)),
            Value::Str(key),
            _,
            numel,
            rest @ ..,
        ] if &**tag == "storage" && rest.len() <= 1 => {
            if let [view] = rest
                && !matches!(view, Value::None)
            {
                return Err("storage views of the legacy format are not supported".into());
            }
            Ok(Rc::new(Storage {
                key: key.to_string(),
                dtype: *dtype,
                numel: index(numel, "storage size")?,
            }))
        }
        _ => Err(format!(
            "unexpected persistent id ({})",
            t.iter().map(Value::kind).collect::<Vec<_>>().join(", ")
        )),
    }
}
