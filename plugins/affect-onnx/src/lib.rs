// SPDX-License-Identifier: MPL-2.0
//! ONNX Runtime for every crate of the project: the one process-wide environment (the library
//! is loaded at run time, from `ORT_DYLIB_PATH` or the system loader path where the set-up
//! installs it), sessions opened with the execution provider a user asked for, and a model
//! file opened with the contract its metadata declares, read and checked against its tensors.
//! The elements (`gstaffect::session`), the `affect` command and the training crate's
//! reference predictor all open their models here, so a process has one environment whoever
//! opened the first model.
//!
//! Every session of the process (the face detector's networks, every model of every
//! `affectinfer`, in every pipeline) runs its operators on one global thread pool of the
//! environment, sized to the machine or to `AFFECT_THREADS`, whose threads do not spin while
//! they wait: sessions with pools of their own would each spin for the same cores. A session
//! opened with `intra_op_threads` set (an element's `intra-op-threads`) keeps a pool of its own
//! of that size.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use affect_core::contract::{ContractError, ModelContract, TensorSpec, io};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::ValueType;

/// Library file loaded when `ORT_DYLIB_PATH` is not set; the set-up puts its folder on the
/// system loader path.
const DEFAULT_ORT_LIBRARY: &str = "libonnxruntime.so";

/// Environment variable with the number of threads of the process's ONNX Runtime pool.
pub const THREADS_VARIABLE: &str = "AFFECT_THREADS";

/// The threads of the process's ONNX Runtime pool: `AFFECT_THREADS` when it holds a positive
/// number, else the cores this process may run on.
pub fn thread_budget() -> Result<usize, String> {
    match std::env::var(THREADS_VARIABLE) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{THREADS_VARIABLE}={v:?} is not a positive number of threads"
            )),
        },
        Err(_) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

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
    /// Threads of a pool of the session's own; 0 runs it on the process's shared pool.
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
        let threads = thread_budget()?;
        let pool = ort::environment::GlobalThreadPoolOptions::default()
            .with_intra_threads(threads)
            .and_then(|o| o.with_inter_threads(1))
            .and_then(|o| o.with_spin_control(false))
            .map_err(|e| format!("cannot configure ONNX Runtime's thread pool: {e}"))?;
        builder
            .with_name("affect")
            .with_global_thread_pool(pool)
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
            let threads_error = |e: ort::Error<_>| {
                format!(
                    "cannot set {} intra-op threads: {e}",
                    options.intra_op_threads
                )
            };
            builder = builder
                .with_independent_thread_pool()
                .map_err(threads_error)?
                .with_intra_threads(options.intra_op_threads)
                .map_err(threads_error)?;
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

/// A model file opened in the process's environment: its session, the provider the session
/// runs on, its `metadata_props` and its inputs and outputs as the model contract describes
/// tensors.
pub struct Model {
    pub session: Session,
    pub provider: Provider,
    pub metadata: BTreeMap<String, String>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl Model {
    /// Opens the model file at `path` ([`open`]) and reads its metadata and tensors.
    pub fn open(path: &Path, options: &SessionOptions) -> Result<Model, String> {
        let (session, provider) = open(path, options)?;
        Model::from_session(session, provider)
    }

    /// The metadata and tensors of an open session.
    pub fn from_session(session: Session, provider: Provider) -> Result<Model, String> {
        let metadata = metadata(&session)?;
        let (inputs, outputs) = io_specs(&session);
        Ok(Model {
            session,
            provider,
            metadata,
            inputs,
            outputs,
        })
    }

    /// Whether the model has an input named `name`.
    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|t| t.name == name)
    }

    /// The model contract its metadata declares, checked against its inputs and outputs.
    pub fn contract(&self) -> Result<ModelContract, ContractError> {
        let contract = ModelContract::from_metadata(
            &self.metadata,
            self.has_input(io::AUDIO),
            self.has_input(io::STATE_IN),
        )?;
        contract.check_io(&self.inputs, &self.outputs)?;
        Ok(contract)
    }
}
