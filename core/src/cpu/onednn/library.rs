//! The oneDNN 2.x C API: its types, constants and functions, resolved from the library
//! loaded at run time, and the process-wide [`OneDnn`] handle.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::{Arc, Mutex, OnceLock};

use super::openmp::OpenMp;
use super::plans::{Plan, PlanKey};

pub(super) type Status = c_int;
pub(super) type Handle = *mut c_void;
/// `dnnl_dims_t`: `int64_t[DNNL_MAX_NDIMS]`.
pub(super) type Dims = [i64; 12];

/// `dnnl_memory_desc_t` of the 2.x API: a plain struct (696 bytes in 2.6) that this module
/// only fills and reads through oneDNN's functions; the buffer is larger than any 2.x one.
#[repr(C, align(64))]
pub(super) struct MemoryDesc([u8; 1024]);

/// `dnnl_convolution_desc_t` of the 2.x API (5976 bytes in 2.6), likewise opaque here.
#[repr(C, align(64))]
pub(super) struct ConvolutionDesc([u8; 8192]);

impl MemoryDesc {
    pub(super) fn zeroed() -> Box<Self> {
        Box::new(Self([0; 1024]))
    }
}

impl ConvolutionDesc {
    pub(super) fn zeroed() -> Box<Self> {
        Box::new(Self([0; 8192]))
    }
}

/// `dnnl_exec_arg_t`.
#[repr(C)]
pub(super) struct ExecArg {
    pub(super) arg: c_int,
    pub(super) memory: Handle,
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
pub(super) const STREAM_DEFAULT_FLAGS: c_uint = 1;
pub(super) const F32: c_int = 3;
pub(super) const TAG_ANY: c_int = 1;
pub(super) const TAG_A: c_int = 2;
/// `dnnl_abcd`, which is `dnnl_nchw` and `dnnl_oihw`.
pub(super) const TAG_ABCD: c_int = 5;
pub(super) const FORWARD_INFERENCE: c_int = 96;
pub(super) const CONVOLUTION_DIRECT: c_int = 1;
pub(super) const ARG_SRC: c_int = 1;
pub(super) const ARG_DST: c_int = 17;
pub(super) const ARG_WEIGHTS: c_int = 33;
pub(super) const ARG_BIAS: c_int = 41;
pub(super) const QUERY_SRC_MD: c_int = 129;
pub(super) const QUERY_WEIGHTS_MD: c_int = 131;
pub(super) const QUERY_DST_MD: c_int = 133;
pub(super) const QUERY_IMPL_INFO_STR: c_int = 8;

/// The C functions used, resolved once.
pub(super) struct Api {
    engine_create: unsafe extern "C" fn(*mut Handle, c_int, usize) -> Status,
    pub(super) stream_create: unsafe extern "C" fn(*mut Handle, Handle, c_uint) -> Status,
    pub(super) stream_wait: unsafe extern "C" fn(Handle) -> Status,
    pub(super) stream_destroy: unsafe extern "C" fn(Handle) -> Status,
    pub(super) memory_desc_init_by_tag:
        unsafe extern "C" fn(*mut MemoryDesc, c_int, *const i64, c_int, c_int) -> Status,
    pub(super) memory_desc_equal:
        unsafe extern "C" fn(*const MemoryDesc, *const MemoryDesc) -> c_int,
    pub(super) memory_desc_get_size: unsafe extern "C" fn(*const MemoryDesc) -> usize,
    pub(super) memory_create:
        unsafe extern "C" fn(*mut Handle, *const MemoryDesc, Handle, Handle) -> Status,
    pub(super) memory_destroy: unsafe extern "C" fn(Handle) -> Status,
    #[allow(clippy::type_complexity)]
    pub(super) convolution_forward_desc_init: unsafe extern "C" fn(
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
    pub(super) primitive_desc_create:
        unsafe extern "C" fn(*mut Handle, *const c_void, Handle, Handle, Handle) -> Status,
    pub(super) reorder_primitive_desc_create: unsafe extern "C" fn(
        *mut Handle,
        *const MemoryDesc,
        Handle,
        *const MemoryDesc,
        Handle,
        Handle,
    ) -> Status,
    pub(super) primitive_desc_query_md:
        unsafe extern "C" fn(Handle, c_int, c_int) -> *const MemoryDesc,
    pub(super) primitive_desc_query:
        unsafe extern "C" fn(Handle, c_int, c_int, *mut c_void) -> Status,
    pub(super) primitive_desc_destroy: unsafe extern "C" fn(Handle) -> Status,
    pub(super) primitive_create: unsafe extern "C" fn(*mut Handle, Handle) -> Status,
    pub(super) primitive_execute:
        unsafe extern "C" fn(Handle, Handle, c_int, *const ExecArg) -> Status,
    pub(super) primitive_destroy: unsafe extern "C" fn(Handle) -> Status,
    sgemm: crate::cpu::sgemm::DnnlSgemm,
}

/// oneDNN's CPU engine and the convolution primitives built so far.
pub struct OneDnn {
    /// The library name or path that was loaded, and its version.
    description: String,
    pub(super) api: Api,
    pub(super) engine: Handle,
    pub(super) plans: Mutex<HashMap<PlanKey, Arc<Plan>>>,
    /// Held while a convolution runs.
    pub(super) running: Mutex<()>,
    /// The OpenMP runtime oneDNN runs on, when it is one (libgomp, or a runtime with its
    /// entry points such as Intel's or LLVM's).
    openmp: Option<OpenMp>,
    /// Kept loaded for the life of the process.
    _library: libloading::Library,
}

// SAFETY: oneDNN engines and primitives may be used from any thread and executed
// concurrently; streams, which may not, are per thread (`execute::LOCAL`).
unsafe impl Send for OneDnn {}
unsafe impl Sync for OneDnn {}

/// A oneDNN call's failure: the function and its status.
pub(super) fn check(status: Status, what: &str) -> Result<(), String> {
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
            let openmp = OpenMp::find(&lib);
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

    /// `dnnl_sgemm`, for [`crate::cpu::sgemm`].
    pub fn sgemm(&self) -> crate::cpu::sgemm::DnnlSgemm {
        self.api.sgemm
    }

    /// The OpenMP runtime oneDNN's threads belong to, for [`crate::cpu::parallel`].
    pub fn openmp(&self) -> Option<&OpenMp> {
        self.openmp.as_ref()
    }

    /// `onednn 2.6.3 (libdnnl.so.2)`.
    pub fn describe(&self) -> &str {
        &self.description
    }
}

pub(super) static ONEDNN: OnceLock<Result<OneDnn, String>> = OnceLock::new();

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
pub(super) mod tests {
    use super::*;

    /// CI installs oneDNN (`libdnnl2`), so there it must load; elsewhere it is checked when
    /// present.
    pub(in crate::cpu::onednn) fn loaded() -> Option<&'static OneDnn> {
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
}
