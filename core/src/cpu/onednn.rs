//! Convolutions through oneDNN (`libdnnl`), the library PyTorch runs its CPU convolutions on,
//! loaded at run time.
//!
//! oneDNN's direct AVX-512 kernels work on channel-blocked layouts and need no im2col matrix;
//! on this project's 2-core machine they reach 280–320 GFLOPS on the UNet and VAE shapes
//! where im2col + OpenBLAS ([`super::conv2d`]) reaches 140–200. Each call reorders the NCHW
//! input and the OIHW weight into the layouts the primitive chose, runs it, and reorders the
//! result back to NCHW, as PyTorch's eager mode does; primitives are built once per shape.
//!
//! The oneDNN 2.x C API is used (Debian 12's `libdnnl2`). `MASKFORGE_ONEDNN=off` disables
//! it, `MASKFORGE_ONEDNN=<library>` loads that file instead of `libdnnl.so.2`. Without it the
//! sgemm convolution is used, so nothing needs oneDNN to build or run.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::{Arc, Mutex, OnceLock};

use super::conv2d::Conv2dShape;

type Status = c_int;
type Handle = *mut c_void;
/// `dnnl_dims_t`: `int64_t[DNNL_MAX_NDIMS]`.
type Dims = [i64; 12];

/// `dnnl_memory_desc_t` of the 2.x API: a plain struct (696 bytes in 2.6) that this module
/// only fills and reads through oneDNN's functions; the buffer is larger than any 2.x one.
#[repr(C, align(64))]
struct MemoryDesc([u8; 1024]);

/// `dnnl_convolution_desc_t` of the 2.x API (5976 bytes in 2.6), likewise opaque here.
#[repr(C, align(64))]
struct ConvolutionDesc([u8; 8192]);

impl MemoryDesc {
    fn zeroed() -> Box<Self> {
        Box::new(Self([0; 1024]))
    }
}

/// `dnnl_exec_arg_t`.
#[repr(C)]
struct ExecArg {
    arg: c_int,
    memory: Handle,
}

/// `dnnl_version_t`.
#[repr(C)]
struct Version {
    major: c_int,
    minor: c_int,
    patch: c_int,
    hash: *const c_char,
    cpu_runtime: c_uint,
    gpu_runtime: c_uint,
}

// Constants of the 2.x headers.
const SUCCESS: Status = 0;
const ENGINE_CPU: c_int = 1;
const STREAM_DEFAULT_FLAGS: c_uint = 1;
const F32: c_int = 3;
const TAG_ANY: c_int = 1;
const TAG_A: c_int = 2;
/// `dnnl_abcd`, which is `dnnl_nchw` and `dnnl_oihw`.
const TAG_ABCD: c_int = 5;
const FORWARD_INFERENCE: c_int = 96;
const CONVOLUTION_DIRECT: c_int = 1;
const ARG_SRC: c_int = 1;
const ARG_DST: c_int = 17;
const ARG_WEIGHTS: c_int = 33;
const ARG_BIAS: c_int = 41;
const QUERY_SRC_MD: c_int = 129;
const QUERY_WEIGHTS_MD: c_int = 131;
const QUERY_DST_MD: c_int = 133;
const QUERY_IMPL_INFO_STR: c_int = 8;
/// Built primitives kept at most; the cache is emptied when it would grow past this.
const MAX_PLANS: usize = 256;

/// The C functions used, resolved once.
struct Api {
    engine_create: unsafe extern "C" fn(*mut Handle, c_int, usize) -> Status,
    stream_create: unsafe extern "C" fn(*mut Handle, Handle, c_uint) -> Status,
    stream_wait: unsafe extern "C" fn(Handle) -> Status,
    stream_destroy: unsafe extern "C" fn(Handle) -> Status,
    memory_desc_init_by_tag:
        unsafe extern "C" fn(*mut MemoryDesc, c_int, *const i64, c_int, c_int) -> Status,
    memory_desc_equal: unsafe extern "C" fn(*const MemoryDesc, *const MemoryDesc) -> c_int,
    memory_desc_get_size: unsafe extern "C" fn(*const MemoryDesc) -> usize,
    memory_create: unsafe extern "C" fn(*mut Handle, *const MemoryDesc, Handle, Handle) -> Status,
    memory_destroy: unsafe extern "C" fn(Handle) -> Status,
    #[allow(clippy::type_complexity)]
    convolution_forward_desc_init: unsafe extern "C" fn(
        *mut ConvolutionDesc,
        c_int,
        c_int,
        *const MemoryDesc,
        *const MemoryDesc,
        *const MemoryDesc,
        *const MemoryDesc,
        *const i64,
        *const i64,
        *const i64,
    ) -> Status,
    primitive_desc_create:
        unsafe extern "C" fn(*mut Handle, *const c_void, Handle, Handle, Handle) -> Status,
    reorder_primitive_desc_create: unsafe extern "C" fn(
        *mut Handle,
        *const MemoryDesc,
        Handle,
        *const MemoryDesc,
        Handle,
        Handle,
    ) -> Status,
    primitive_desc_query_md: unsafe extern "C" fn(Handle, c_int, c_int) -> *const MemoryDesc,
    primitive_desc_query: unsafe extern "C" fn(Handle, c_int, c_int, *mut c_void) -> Status,
    primitive_desc_destroy: unsafe extern "C" fn(Handle) -> Status,
    primitive_create: unsafe extern "C" fn(*mut Handle, Handle) -> Status,
    primitive_execute: unsafe extern "C" fn(Handle, Handle, c_int, *const ExecArg) -> Status,
    primitive_destroy: unsafe extern "C" fn(Handle) -> Status,
    sgemm: super::sgemm::DnnlSgemm,
}

/// oneDNN's CPU engine and the convolution primitives built so far.
pub struct OneDnn {
    /// The library name or path that was loaded, and its version.
    description: String,
    api: Api,
    engine: Handle,
    plans: Mutex<HashMap<PlanKey, Arc<Plan>>>,
    /// Held while a convolution runs.
    running: Mutex<()>,
    /// The OpenMP runtime oneDNN runs on, when it is one (libgomp, or a runtime with its
    /// entry points such as Intel's or LLVM's).
    openmp: Option<OpenMp>,
    /// Kept loaded for the life of the process.
    _library: libloading::Library,
}

// SAFETY: oneDNN engines and primitives may be used from any thread and executed
// concurrently; streams, which may not, are per thread (`LOCAL`).
unsafe impl Send for OneDnn {}
unsafe impl Sync for OneDnn {}

/// libgomp's `GOMP_parallel(fn, data, num_threads, flags)`: runs `fn(data)` on every thread
/// of a team (`num_threads` 0: the default size) and returns when all have finished.
type GompParallel =
    unsafe extern "C" fn(unsafe extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);

/// The OpenMP runtime's entry point for parallel regions.
pub struct OpenMp {
    parallel: GompParallel,
}

impl OpenMp {
    /// Runs `work(data)` on each thread of an OpenMP team of the default size, as
    /// `#pragma omp parallel` does, and returns when all are done. Inside another parallel
    /// region the team has one thread.
    ///
    /// # Safety
    /// `work` must not unwind, and must be safe to call from several threads at once with
    /// `data`.
    pub unsafe fn parallel(&self, work: unsafe extern "C" fn(*mut c_void), data: *mut c_void) {
        // SAFETY: the caller's contract; `GOMP_parallel` has this signature in every runtime
        // that exports it.
        unsafe { (self.parallel)(work, data, 0, 0) }
    }
}

/// What one convolution primitive is built for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    shape: Conv2dShape,
    bias: bool,
}

/// One operand's user (NCHW/OIHW) layout, the primitive's layout, and the reorder between
/// them when they differ.
struct Operand {
    user: Box<MemoryDesc>,
    /// Points into the convolution's primitive descriptor, which outlives it.
    inner: *const MemoryDesc,
    reorder: Option<(Handle, Handle)>,
}

/// A built convolution for one [`PlanKey`].
struct Plan {
    api: *const Api,
    descriptor: Handle,
    primitive: Handle,
    src: Operand,
    weights: Operand,
    dst: Operand,
    bias: Box<MemoryDesc>,
}

// SAFETY: see `OneDnn`; plans are read-only once built.
unsafe impl Send for Plan {}
unsafe impl Sync for Plan {}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: `api` is the process-wide `OneDnn`'s, which is never dropped; the handles
        // were created by it and are released once, here.
        unsafe {
            let api = &*self.api;
            for op in [&self.src, &self.weights, &self.dst] {
                if let Some((pd, p)) = op.reorder {
                    (api.primitive_destroy)(p);
                    (api.primitive_desc_destroy)(pd);
                }
            }
            (api.primitive_destroy)(self.primitive);
            (api.primitive_desc_destroy)(self.descriptor);
        }
    }
}

/// A oneDNN call's failure: the function and its status.
fn check(status: Status, what: &str) -> Result<(), String> {
    if status == SUCCESS {
        Ok(())
    } else {
        Err(format!("oneDNN {what} failed with status {status}"))
    }
}

impl OneDnn {
    fn load(library: &str) -> Result<Self, String> {
        // SAFETY: loading runs the library's initialisers; the signatures below are those
        // of the oneDNN 2.x C API, whose version is checked before anything else is called.
        unsafe {
            let lib = libloading::Library::new(library).map_err(|e| e.to_string())?;
            macro_rules! sym {
                ($name:literal) => {
                    *lib.get(concat!($name, "\0").as_bytes())
                        .map_err(|e| format!("{library}: {e}"))?
                };
            }
            let version: unsafe extern "C" fn() -> *const Version = sym!("dnnl_version");
            let v = &*version();
            if v.major != 2 {
                return Err(format!(
                    "{library} is oneDNN {}.{}; only the 2.x API is supported",
                    v.major, v.minor
                ));
            }
            let api = Api {
                engine_create: sym!("dnnl_engine_create"),
                stream_create: sym!("dnnl_stream_create"),
                stream_wait: sym!("dnnl_stream_wait"),
                stream_destroy: sym!("dnnl_stream_destroy"),
                memory_desc_init_by_tag: sym!("dnnl_memory_desc_init_by_tag"),
                memory_desc_equal: sym!("dnnl_memory_desc_equal"),
                memory_desc_get_size: sym!("dnnl_memory_desc_get_size"),
                memory_create: sym!("dnnl_memory_create"),
                memory_destroy: sym!("dnnl_memory_destroy"),
                convolution_forward_desc_init: sym!("dnnl_convolution_forward_desc_init"),
                primitive_desc_create: sym!("dnnl_primitive_desc_create"),
                reorder_primitive_desc_create: sym!("dnnl_reorder_primitive_desc_create"),
                primitive_desc_query_md: sym!("dnnl_primitive_desc_query_md"),
                primitive_desc_query: sym!("dnnl_primitive_desc_query"),
                primitive_desc_destroy: sym!("dnnl_primitive_desc_destroy"),
                primitive_create: sym!("dnnl_primitive_create"),
                primitive_execute: sym!("dnnl_primitive_execute"),
                primitive_destroy: sym!("dnnl_primitive_destroy"),
                sgemm: sym!("dnnl_sgemm"),
            };
            // `dlsym` on oneDNN's handle also searches the libraries it depends on.
            let openmp = lib
                .get::<GompParallel>(b"GOMP_parallel\0")
                .ok()
                .map(|parallel| OpenMp {
                    parallel: *parallel,
                });
            let mut engine = std::ptr::null_mut();
            check(
                (api.engine_create)(&mut engine, ENGINE_CPU, 0),
                "engine_create",
            )?;
            Ok(Self {
                description: format!("onednn {}.{}.{} ({library})", v.major, v.minor, v.patch),
                api,
                engine,
                plans: Mutex::new(HashMap::new()),
                running: Mutex::new(()),
                openmp,
                _library: lib,
            })
        }
    }

    /// `dnnl_sgemm`, for [`super::sgemm`].
    pub fn sgemm(&self) -> super::sgemm::DnnlSgemm {
        self.api.sgemm
    }

    /// The OpenMP runtime oneDNN's threads belong to, for [`super::parallel`].
    pub fn openmp(&self) -> Option<&OpenMp> {
        self.openmp.as_ref()
    }

    /// `onednn 2.6.3 (libdnnl.so.2)`.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Cross-correlation of `x` with `weight` plus `bias`, as `torch.nn.functional.conv2d`
    /// with `stride`, `shape.padding`, dilation 1 and one group.
    ///
    /// # Shapes
    /// `x`: `[B, C_in, H, W]`, `weight`: `[C_out, C_in, K_h, K_w]`, `bias`: `[C_out]` →
    /// `[B, C_out, H_out, W_out]` (row-major, flattened)
    ///
    /// With `pack`, the weight is reordered once and kept in the layer's slot with `owner`
    /// (anything that keeps `weight`'s buffer alive); later calls with the same buffer and
    /// shapes reuse it.
    ///
    /// # Errors
    /// If the slices do not match `shape`, or oneDNN rejects the convolution.
    pub fn conv2d(
        &self,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        shape: Conv2dShape,
        pack: Option<(&mut PackSlot, Box<dyn Any + Send>)>,
    ) -> Result<Vec<f32>, String> {
        let out_shape = shape
            .output()
            .ok_or("conv2d: kernel larger than the input")?;
        let [c_out, c_in, kh, kw] = shape.weight;
        if shape.input[1] != c_in
            || x.len() != shape.input.iter().product::<usize>()
            || weight.len() != c_out * c_in * kh * kw
            || bias.is_some_and(|b| b.len() != c_out)
        {
            return Err(format!("conv2d: slices do not match {shape:?}"));
        }
        let plan = self.plan(PlanKey {
            shape,
            bias: bias.is_some(),
        })?;
        let len = out_shape.iter().product();
        let mut out = Vec::<f32>::with_capacity(len);
        // One convolution at a time: each already uses every core through OpenMP, and calls
        // from several threads at once gave wrong results in the parallel parity tests (oneDNN
        // 2.x shares one scratchpad between primitives unless built for concurrent execution).
        let _running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        LOCAL.with(|local| -> Result<(), String> {
            let mut local = local.borrow_mut();
            let local = match &mut *local {
                Some(l) => l,
                None => local.insert(Local {
                    stream: Stream::new(self)?,
                    scratch: Default::default(),
                }),
            };
            // SAFETY: the user buffers have the sizes of the plan's user descriptors (checked
            // above); oneDNN only reads `x`, `weight` and `bias` and writes all of `out`.
            unsafe {
                self.execute(
                    &plan,
                    local,
                    x.as_ptr(),
                    weight.as_ptr(),
                    pack,
                    bias.map(<[f32]>::as_ptr),
                    out.as_mut_ptr(),
                )
            }
        })?;
        // SAFETY: the convolution (or the reorder after it) wrote all `len` elements.
        unsafe { out.set_len(len) };
        Ok(out)
    }

    /// The primitive for `key`, built on first use.
    fn plan(&self, key: PlanKey) -> Result<Arc<Plan>, String> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = plans.get(&key) {
            return Ok(p.clone());
        }
        let plan = Arc::new(self.build(key)?);
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert(key, plan.clone());
        Ok(plan)
    }

    fn build(&self, key: PlanKey) -> Result<Plan, String> {
        let api = &self.api;
        let dims = |v: &[usize]| {
            let mut d: Dims = [0; 12];
            for (o, &i) in d.iter_mut().zip(v) {
                *o = i as i64;
            }
            d
        };
        let shape = key.shape;
        let out = shape
            .output()
            .ok_or("conv2d: kernel larger than the input")?;
        let desc = |d: &[usize], tag: c_int| -> Result<Box<MemoryDesc>, String> {
            let mut md = MemoryDesc::zeroed();
            // SAFETY: `md` is larger than `dnnl_memory_desc_t`; `dims` has 12 entries.
            check(
                unsafe {
                    (api.memory_desc_init_by_tag)(
                        &mut *md,
                        d.len() as c_int,
                        dims(d).as_ptr(),
                        F32,
                        tag,
                    )
                },
                "memory_desc_init_by_tag",
            )?;
            Ok(md)
        };
        let (src_user, weights_user, dst_user) = (
            desc(&shape.input, TAG_ABCD)?,
            desc(&shape.weight, TAG_ABCD)?,
            desc(&out, TAG_ABCD)?,
        );
        let (src_any, weights_any, dst_any) = (
            desc(&shape.input, TAG_ANY)?,
            desc(&shape.weight, TAG_ANY)?,
            desc(&out, TAG_ANY)?,
        );
        let bias = if key.bias {
            desc(&[shape.weight[0]], TAG_A)?
        } else {
            MemoryDesc::zeroed()
        };
        let [top, left, bottom, right] = shape.padding;
        let mut conv = Box::new(ConvolutionDesc([0; 8192]));
        // SAFETY: the descriptors and the dims arrays are valid for the call; a zeroed bias
        // descriptor means "no bias" to oneDNN.
        unsafe {
            check(
                (api.convolution_forward_desc_init)(
                    &mut *conv,
                    FORWARD_INFERENCE,
                    CONVOLUTION_DIRECT,
                    &*src_any,
                    &*weights_any,
                    &*bias,
                    &*dst_any,
                    dims(&shape.stride).as_ptr(),
                    dims(&[top, left]).as_ptr(),
                    dims(&[bottom, right]).as_ptr(),
                ),
                "convolution_forward_desc_init",
            )?;
            let mut descriptor = std::ptr::null_mut();
            check(
                (api.primitive_desc_create)(
                    &mut descriptor,
                    (&*conv as *const ConvolutionDesc).cast(),
                    std::ptr::null_mut(),
                    self.engine,
                    std::ptr::null_mut(),
                ),
                "primitive_desc_create (convolution)",
            )?;
            let mut plan = Plan {
                api,
                descriptor,
                primitive: std::ptr::null_mut(),
                src: Operand {
                    user: src_user,
                    inner: (api.primitive_desc_query_md)(descriptor, QUERY_SRC_MD, 0),
                    reorder: None,
                },
                weights: Operand {
                    user: weights_user,
                    inner: (api.primitive_desc_query_md)(descriptor, QUERY_WEIGHTS_MD, 0),
                    reorder: None,
                },
                dst: Operand {
                    user: dst_user,
                    inner: (api.primitive_desc_query_md)(descriptor, QUERY_DST_MD, 0),
                    reorder: None,
                },
                bias,
            };
            // From here on `plan`'s `Drop` releases whatever was created.
            check(
                (api.primitive_create)(&mut plan.primitive, descriptor),
                "primitive_create (convolution)",
            )?;
            for (op, to_inner) in [
                (&mut plan.src, true),
                (&mut plan.weights, true),
                (&mut plan.dst, false),
            ] {
                if op.inner.is_null() {
                    return Err("oneDNN returned no memory descriptor".into());
                }
                if (api.memory_desc_equal)(&*op.user, op.inner) != 0 {
                    continue;
                }
                let (from, to) = if to_inner {
                    (&*op.user as *const MemoryDesc, op.inner)
                } else {
                    (op.inner, &*op.user as *const MemoryDesc)
                };
                let mut pd = std::ptr::null_mut();
                check(
                    (api.reorder_primitive_desc_create)(
                        &mut pd,
                        from,
                        self.engine,
                        to,
                        self.engine,
                        std::ptr::null_mut(),
                    ),
                    "reorder_primitive_desc_create",
                )?;
                let mut p = std::ptr::null_mut();
                if let Err(e) = check(
                    (api.primitive_create)(&mut p, pd),
                    "primitive_create (reorder)",
                ) {
                    (api.primitive_desc_destroy)(pd);
                    return Err(e);
                }
                op.reorder = Some((pd, p));
            }
            Ok(plan)
        }
    }

    /// The name of the kernel oneDNN picked for `shape` (for tests and reports).
    pub fn implementation(&self, shape: Conv2dShape, bias: bool) -> Result<String, String> {
        let plan = self.plan(PlanKey { shape, bias })?;
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: the query writes a pointer to a string owned by the descriptor.
        unsafe {
            check(
                (self.api.primitive_desc_query)(
                    plan.descriptor,
                    QUERY_IMPL_INFO_STR,
                    0,
                    (&mut name as *mut *const c_char).cast(),
                ),
                "primitive_desc_query",
            )?;
            Ok(CStr::from_ptr(name).to_string_lossy().into_owned())
        }
    }

    /// Runs `plan` on user buffers: reorders in, convolves, reorders out.
    ///
    /// # Safety
    /// The pointers must hold the element counts of the plan's user descriptors.
    #[allow(clippy::too_many_arguments)]
    unsafe fn execute(
        &self,
        plan: &Arc<Plan>,
        local: &mut Local,
        x: *const f32,
        weight: *const f32,
        pack: Option<(&mut PackSlot, Box<dyn Any + Send>)>,
        bias: Option<*const f32>,
        out: *mut f32,
    ) -> Result<(), String> {
        let api = &self.api;
        let stream = local.stream.0;
        let [src_scratch, weights_scratch, dst_scratch] = &mut local.scratch;
        // SAFETY: `md` is a valid descriptor.
        let scratch = |buffer: &mut Scratch, md: *const MemoryDesc| {
            buffer.get(unsafe { (api.memory_desc_get_size)(md) })
        };
        // Every memory object made here, destroyed on return.
        let mut memories = Memories(api, Vec::new());
        let mut memory = |md: *const MemoryDesc, data: Handle| -> Result<Handle, String> {
            let mut m = std::ptr::null_mut();
            // SAFETY: `md` is a valid descriptor; `data` holds its size.
            check(
                unsafe { (api.memory_create)(&mut m, md, self.engine, data) },
                "memory_create",
            )?;
            memories.1.push(m);
            Ok(m)
        };
        let run = |p: Handle, args: &[ExecArg]| {
            // SAFETY: the arguments are memories made above for this primitive's descriptors.
            check(
                unsafe { (api.primitive_execute)(p, stream, args.len() as c_int, args.as_ptr()) },
                "primitive_execute",
            )
        };
        let mut input = |op: &Operand, data: *const f32, buffer| -> Result<Handle, String> {
            let user = memory(&*op.user, data as Handle)?;
            match op.reorder {
                None => Ok(user),
                Some((_, reorder)) => {
                    let inner = memory(op.inner, scratch(buffer, op.inner))?;
                    run(reorder, &reorder_args(user, inner))?;
                    Ok(inner)
                }
            }
        };
        let src = input(&plan.src, x, src_scratch)?;
        let weights = match (plan.weights.reorder, pack) {
            (Some(_), Some((slot, owner))) => {
                let current = slot
                    .as_mut()
                    .and_then(|b| b.downcast_mut::<PackedWeights>())
                    .filter(|p| Arc::ptr_eq(&p.plan, plan) && p.weight == weight as usize);
                match current {
                    Some(p) => memory(
                        plan.weights.inner,
                        scratch(&mut p.buffer, plan.weights.inner),
                    )?,
                    None => {
                        let mut packed = PackedWeights {
                            plan: plan.clone(),
                            weight: weight as usize,
                            buffer: Scratch::default(),
                            _owner: owner,
                        };
                        // The buffer's heap block stays put when `packed` moves into the slot.
                        let inner = input(&plan.weights, weight, &mut packed.buffer)?;
                        *slot = Some(Box::new(packed));
                        inner
                    }
                }
            }
            _ => input(&plan.weights, weight, weights_scratch)?,
        };
        let dst_user = memory(&*plan.dst.user, out as Handle)?;
        let dst = match plan.dst.reorder {
            None => dst_user,
            Some(_) => memory(plan.dst.inner, scratch(dst_scratch, plan.dst.inner))?,
        };
        let mut args = vec![
            ExecArg {
                arg: ARG_SRC,
                memory: src,
            },
            ExecArg {
                arg: ARG_WEIGHTS,
                memory: weights,
            },
            ExecArg {
                arg: ARG_DST,
                memory: dst,
            },
        ];
        if let Some(b) = bias {
            args.push(ExecArg {
                arg: ARG_BIAS,
                memory: memory(&*plan.bias, b as Handle)?,
            });
        }
        run(plan.primitive, &args)?;
        if let Some((_, reorder)) = plan.dst.reorder {
            run(reorder, &reorder_args(dst, dst_user))?;
        }
        // SAFETY: `stream` is this thread's stream.
        check(unsafe { (api.stream_wait)(stream) }, "stream_wait")
    }
}

/// Where a layer keeps its convolution weights in oneDNN's layout between calls.
pub type PackSlot = Option<Box<dyn Any + Send>>;

/// A convolution weight reordered for one plan, kept in the layer's [`PackSlot`]. Reordering
/// SD 1.5's 2.2 GB of UNet convolution weights on every call cost 5–8 % of the call.
struct PackedWeights {
    plan: Arc<Plan>,
    /// Address of the weights it was made from. `_owner` keeps that buffer alive, so no other
    /// weights can be at this address while the copy exists.
    weight: usize,
    buffer: Scratch,
    _owner: Box<dyn Any + Send>,
}

/// A grow-only buffer for one reordered operand. Kept per thread so that large layouts are
/// not mapped afresh (and page-faulted in) on every call, which cost the UNet 15 %.
#[derive(Default)]
struct Scratch(Vec<u8>);

impl Scratch {
    /// A 64-byte-aligned buffer of at least `bytes` bytes: the same one on every call until a
    /// larger one is asked for.
    fn get(&mut self, bytes: usize) -> Handle {
        if self.0.len() < bytes + 64 {
            self.0 = vec![0; bytes + 64];
        }
        let offset = self.0.as_ptr().align_offset(64);
        self.0[offset..].as_mut_ptr().cast()
    }
}

/// What each thread keeps: its stream (streams may not be shared between threads) and the
/// scratch buffers of the source, weights and destination.
struct Local {
    stream: Stream,
    scratch: [Scratch; 3],
}

/// The arguments of a reorder from `from` to `to`.
fn reorder_args(from: Handle, to: Handle) -> [ExecArg; 2] {
    [
        ExecArg {
            arg: ARG_SRC,
            memory: from,
        },
        ExecArg {
            arg: ARG_DST,
            memory: to,
        },
    ]
}

/// Memory objects destroyed when dropped.
struct Memories<'a>(&'a Api, Vec<Handle>);

impl Drop for Memories<'_> {
    fn drop(&mut self) {
        for &m in &self.1 {
            // SAFETY: each handle was created by `memory_create` and is destroyed once.
            unsafe { (self.0.memory_destroy)(m) };
        }
    }
}

/// A oneDNN stream.
struct Stream(Handle);

impl Stream {
    fn new(dnn: &OneDnn) -> Result<Self, String> {
        let mut s = std::ptr::null_mut();
        // SAFETY: `engine` is valid for the life of the process.
        check(
            unsafe { (dnn.api.stream_create)(&mut s, dnn.engine, STREAM_DEFAULT_FLAGS) },
            "stream_create",
        )?;
        Ok(Self(s))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(Ok(dnn)) = ONEDNN.get() {
            // SAFETY: the stream was created by this library and is destroyed once.
            unsafe { (dnn.api.stream_destroy)(self.0) };
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

static ONEDNN: OnceLock<Result<OneDnn, String>> = OnceLock::new();

/// oneDNN for this process, loaded on first use, or why it is not used.
pub fn onednn() -> Result<&'static OneDnn, &'static str> {
    ONEDNN
        .get_or_init(|| match std::env::var("MASKFORGE_ONEDNN") {
            Ok(v) if v == "off" || v == "0" || v == "none" => Err("MASKFORGE_ONEDNN=off".into()),
            Ok(library) => {
                OneDnn::load(&library).map_err(|e| format!("MASKFORGE_ONEDNN={library}: {e}"))
            }
            Err(_) => OneDnn::load("libdnnl.so.2")
                .map_err(|_| "oneDNN 2.x (libdnnl.so.2) not found".to_string()),
        })
        .as_ref()
        .map_err(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv2d::tests::{direct_reference, test_shapes};

    /// CI installs oneDNN (`libdnnl2`), so there it must load; elsewhere it is checked when
    /// present.
    fn loaded() -> Option<&'static OneDnn> {
        match onednn() {
            Ok(d) => Some(d),
            Err(why) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI installs oneDNN (libdnnl2) but it does not load: {why}"
                );
                None
            }
        }
    }

    #[test]
    fn matches_direct_convolution() {
        let Some(dnn) = loaded() else { return };
        for (shape, x, weight, bias) in test_shapes() {
            for bias in [Some(bias.as_slice()), None] {
                let got = dnn.conv2d(&x, &weight, bias, shape, None).unwrap();
                // Packed weights: made on the first call, reused on the second.
                let mut slot = None;
                for _ in 0..2 {
                    let packed = dnn
                        .conv2d(&x, &weight, bias, shape, Some((&mut slot, Box::new(()))))
                        .unwrap();
                    assert_eq!(packed, got);
                }
                let zeros = vec![0.0; shape.weight[0]];
                let want = direct_reference(&x, &weight, bias.unwrap_or(&zeros), shape);
                assert_eq!(got.len(), want.len());
                for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - r).abs() <= 1e-4 * r.abs().max(1.0),
                        "{shape:?} bias {} [{i}]: {g} vs {r}",
                        bias.is_some()
                    );
                }
            }
        }
    }

    /// Convolutions called from several threads at once, with packed weights, give the
    /// results of sequential calls.
    #[test]
    fn concurrent_calls_match_sequential_ones() {
        let Some(dnn) = loaded() else { return };
        let cases = test_shapes();
        let want: Vec<Vec<f32>> = cases
            .iter()
            .map(|(shape, x, w, b)| dnn.conv2d(x, w, Some(b), *shape, None).unwrap())
            .collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (cases, want) = (&cases, &want);
                s.spawn(move || {
                    let mut slots: Vec<PackSlot> = cases.iter().map(|_| None).collect();
                    for round in 0..10 {
                        for i in 0..cases.len() {
                            let i = (i + t + round) % cases.len();
                            let (shape, x, w, b) = &cases[i];
                            let got = dnn
                                .conv2d(x, w, Some(b), *shape, Some((&mut slots[i], Box::new(()))))
                                .unwrap();
                            assert_eq!(got, want[i], "thread {t} round {round} case {i}");
                        }
                    }
                });
            }
        });
    }

    /// A slot packed from one weight buffer is not reused for another one.
    #[test]
    fn packed_weights_follow_the_buffer() {
        let Some(dnn) = loaded() else { return };
        let (shape, x, weight, bias) = test_shapes().swap_remove(0);
        let other: Vec<f32> = weight.iter().map(|w| w * -0.5 + 0.125).collect();
        let mut slot = None;
        for w in [&weight, &other, &weight] {
            let got = dnn
                .conv2d(&x, w, Some(&bias), shape, Some((&mut slot, Box::new(()))))
                .unwrap();
            assert_eq!(got, dnn.conv2d(&x, w, Some(&bias), shape, None).unwrap());
        }
    }

    /// On an AVX-512 or AVX2 machine, a UNet-sized convolution runs one of oneDNN's JIT
    /// kernels, not its reference loop.
    #[test]
    fn picks_a_jit_kernel() {
        let Some(dnn) = loaded() else { return };
        let shape = Conv2dShape {
            input: [2, 64, 16, 16],
            weight: [64, 64, 3, 3],
            padding: [1; 4],
            stride: [1, 1],
        };
        let name = dnn.implementation(shape, true).unwrap();
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            assert!(!name.starts_with("ref"), "{name}");
        }
        assert!(!name.is_empty());
    }

    #[test]
    fn rejects_mismatched_slices() {
        let Some(dnn) = loaded() else { return };
        let shape = Conv2dShape {
            input: [1, 2, 4, 4],
            weight: [3, 2, 3, 3],
            padding: [1; 4],
            stride: [1, 1],
        };
        let err = dnn
            .conv2d(&[0.0; 31], &[0.0; 54], None, shape, None)
            .unwrap_err();
        assert!(err.contains("do not match"), "{err}");
    }
}
