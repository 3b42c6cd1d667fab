//! ONNX Runtime for the elements: the one process-wide environment (the library is loaded at
//! run time, from `ORT_DYLIB_PATH` or the system loader path where the set-up installs it) and
//! sessions opened with the execution provider a user asked for.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use affect_core::contract::TensorSpec;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::ValueType;

/// Library file loaded when `ORT_DYLIB_PATH` is not set; the set-up puts its folder on the
/// system loader path.
const DEFAULT_ORT_LIBRARY: &str = "libonnxruntime.so";

/// Where inference runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    Cpu,
    Cuda { device_id: i32 },
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Cpu => f.write_str("cpu"),
            Provider::Cuda { device_id } => write!(f, "cuda:{device_id}"),
        }
    }
}

/// How to open a model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionOptions {
    pub provider: Provider,
    /// Threads of one operator; 0 lets ONNX Runtime choose.
    pub intra_op_threads: usize,
    /// Run on the CPU, with a warning, when the asked-for provider cannot be used.
    pub fallback_to_cpu: bool,
}

/// The process-wide ONNX Runtime environment, loaded on first use.
pub fn environment() -> Result<&'static Environment, String> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let library = std::env::var_os("ORT_DYLIB_PATH")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| DEFAULT_ORT_LIBRARY.into());
        let builder = ort::init_from(&library).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from '{}': {e}. Run ./setup.sh, or set ORT_DYLIB_PATH \
                 to the libonnxruntime.so.* of the onnxruntime wheel",
                library.display()
            )
        })?;
        builder
            .with_name("affect")
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// A session on `path`, or an error that names the file and what is wrong with it. Returns
/// the provider the session really runs on (the CPU after a fallback).
pub fn open(path: &Path, options: &SessionOptions) -> Result<(Session, Provider), String> {
    match std::fs::metadata(path) {
        Err(e) => return Err(format!("cannot read model file '{}': {e}", path.display())),
        Ok(m) if !m.is_file() => {
            return Err(format!("model path '{}' is not a file", path.display()));
        }
        Ok(_) => {}
    }
    let env = environment()?;
    let build = |provider: Provider| -> Result<Session, String> {
        let mut builder =
            Session::builder(env).map_err(|e| format!("cannot create a session builder: {e}"))?;
        if options.intra_op_threads > 0 {
            builder = builder
                .with_intra_threads(options.intra_op_threads)
                .map_err(|e| {
                    format!(
                        "cannot set {} intra-op threads: {e}",
                        options.intra_op_threads
                    )
                })?;
        }
        if let Provider::Cuda { device_id } = provider {
            builder = builder
                .with_execution_providers([ort::ep::CUDA::default()
                    .with_device_id(device_id)
                    .build()
                    .error_on_failure()])
                .map_err(|e| {
                    format!(
                        "the CUDA execution provider is not available on device {device_id}: {e}"
                    )
                })?;
        }
        builder
            .commit_from_file(path)
            .map_err(|e| format!("cannot load model '{}': {e}", path.display()))
    };
    match build(options.provider) {
        Ok(s) => Ok((s, options.provider)),
        Err(e) if options.provider != Provider::Cpu && options.fallback_to_cpu => {
            let s = build(Provider::Cpu).map_err(|cpu| format!("{e}; on the CPU: {cpu}"))?;
            Ok((s, Provider::Cpu))
        }
        Err(e) => Err(e),
    }
}

fn tensor_spec(name: &str, ty: &ValueType) -> TensorSpec {
    match ty {
        ValueType::Tensor { ty, shape, .. } => TensorSpec {
            name: name.to_string(),
            is_f32: *ty == ort::value::TensorElementType::Float32,
            type_name: format!("{ty}"),
            dims: shape.iter().map(|&d| (d >= 0).then_some(d)).collect(),
        },
        other => TensorSpec {
            name: name.to_string(),
            is_f32: false,
            type_name: format!("{other}"),
            dims: Vec::new(),
        },
    }
}

/// The session's inputs and outputs as the model contract describes tensors.
pub fn io_specs(session: &Session) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    (
        session
            .inputs()
            .iter()
            .map(|o| tensor_spec(o.name(), o.dtype()))
            .collect(),
        session
            .outputs()
            .iter()
            .map(|o| tensor_spec(o.name(), o.dtype()))
            .collect(),
    )
}

/// The model's `metadata_props`.
pub fn metadata(session: &Session) -> Result<BTreeMap<String, String>, String> {
    let meta = session
        .metadata()
        .map_err(|e| format!("cannot read the model's metadata: {e}"))?;
    let keys = meta
        .custom_keys()
        .map_err(|e| format!("cannot list the model's metadata: {e}"))?;
    Ok(keys
        .into_iter()
        .filter_map(|k| meta.custom(&k).map(|v| (k, v)))
        .collect())
}
