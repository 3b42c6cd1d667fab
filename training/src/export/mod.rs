// SPDX-License-Identifier: MPL-2.0
//! ONNX export: the graph builder and `onnx.proto` messages every exported file is written
//! with, and (with the `torch` feature) the export of a trained network: the graph written from
//! the weights (batch norm folded into convolutions, softmax/sigmoid/tanh inside the graph),
//! the contract's tensor names, a dynamic batch axis and every `metadata_props` key of the
//! model contract.

pub mod graph;
#[cfg(feature = "torch")]
mod network;
pub mod proto;

#[cfg(feature = "torch")]
pub use network::*;

/// ONNX operator set the graphs are written for.
pub const OPSET: i64 = 17;
/// ONNX IR version (the one that goes with opset 17).
pub const IR_VERSION: i64 = 8;

/// Rewrites the PRelu nodes of the ONNX file `model` (see [`graph::lower_prelu`]) and writes
/// the result to `out` through a temporary file; returns how many were rewritten.
pub fn lower_prelu_file(model: &std::path::Path, out: &std::path::Path) -> Result<usize, String> {
    use prost::Message;
    let bytes = std::fs::read(model).map_err(|e| format!("{}: {e}", model.display()))?;
    let mut proto = proto::ModelProto::decode(bytes.as_slice())
        .map_err(|e| format!("{}: not an ONNX model: {e}", model.display()))?;
    let graph = proto
        .graph
        .as_mut()
        .ok_or_else(|| format!("{}: the model has no graph", model.display()))?;
    let count = graph::lower_prelu(graph);
    let tmp = out.with_extension("onnx.partial");
    std::fs::write(&tmp, proto.encode_to_vec())
        .and_then(|()| std::fs::rename(&tmp, out))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(count)
}

/// Where a model came from, written into its metadata.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    pub name: Option<String>,
    pub training_data: Option<String>,
    pub command: Option<String>,
    /// UTC date, `YYYY-MM-DD`; today when absent.
    pub date: Option<String>,
}

/// Today's UTC date as `YYYY-MM-DD`.
pub fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
