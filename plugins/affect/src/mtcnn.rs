// SPDX-License-Identifier: MPL-2.0
//! The MTCNN networks (`mtcnn-{pnet,rnet,onet}.onnx`, made by `affect-train import mtcnn`)
//! run through ONNX Runtime for [`affect_core::detect::mtcnn`], and where their files are
//! found when no folder is given.

use std::path::{Path, PathBuf};

use affect_core::detect::mtcnn::{
    self as spec, MtcnnNets, ONET, ONET_SIZE, PNET, PnetOutput, RNET, RNET_SIZE, RefineOutput,
};
use ort::session::Session;
use ort::value::ValueType;

use crate::session::{self, Provider, SessionOptions};

/// Environment variable with folders (`:`-separated) searched for model files first.
pub const MODEL_PATH_ENV: &str = "AFFECT_MODEL_PATH";

/// The folders searched for the MTCNN files, in order: `$AFFECT_MODEL_PATH`, then beside the
/// plugin (`<prefix>/share/affect/models` for an installed plugin, `<checkout>/models` for one
/// built in a source tree; `plugin_file` is the loaded plugin's path), then the source tree the
/// plugin was built from.
pub fn search_path(plugin_file: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(paths) = std::env::var_os(MODEL_PATH_ENV) {
        dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Some(file) = plugin_file {
        // The per-user plugin folder holds a link to the build: follow it to the checkout.
        let real = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        for dir in real.ancestors().skip(1).take(5) {
            dirs.push(dir.join("share/affect/models"));
            dirs.push(dir.join("models"));
        }
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    dirs
}

/// The first folder of `dirs` holding all three MTCNN files.
pub fn find(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .find(|d| {
            [PNET, RNET, ONET]
                .iter()
                .all(|s| d.join(spec::file_name(s)).is_file())
        })
        .cloned()
}

/// The three sessions.
pub struct OrtMtcnn {
    pnet: Session,
    rnet: Session,
    onet: Session,
    /// Where they run (CPU when CUDA was asked for and fell back).
    pub provider: Provider,
}

fn dims(ty: &ValueType) -> Vec<i64> {
    match ty {
        ValueType::Tensor { shape, .. } => shape.to_vec(),
        _ => Vec::new(),
    }
}

/// Checks one stage's file against the layout the cascade needs: its input `image` of
/// `[N, 3, H, W]` (fixed `side` for R-/O-Net) and its outputs with their channel counts.
fn check_stage(
    session: &Session,
    path: &Path,
    stage: &str,
    side: Option<i64>,
    outputs: &[(&str, i64)],
) -> Result<(), String> {
    let not_one = |why: String| {
        format!(
            "'{}' is not an MTCNN {stage} as `affect-train import mtcnn` writes it: {why}",
            path.display()
        )
    };
    if let Ok(meta) = session::metadata(session)
        && let Some(found) = meta.get(spec::keys::STAGE)
        && found != stage
    {
        return Err(not_one(format!("its metadata says it is the {found}")));
    }
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == spec::INPUT)
        .ok_or_else(|| not_one(format!("it has no input '{}'", spec::INPUT)))?;
    let d = dims(input.dtype());
    let side_ok = |v: i64| side.is_none_or(|s| v == s || v < 0);
    if d.len() != 4 || (d[1] != 3 && d[1] >= 0) || !side_ok(d[2]) || !side_ok(d[3]) {
        return Err(not_one(format!(
            "input '{}' has shape {d:?}, needs [N, 3, {s}, {s}]",
            spec::INPUT,
            s = side.map_or("H".to_string(), |s| s.to_string())
        )));
    }
    for (name, channels) in outputs {
        let o = session
            .outputs()
            .iter()
            .find(|o| o.name() == *name)
            .ok_or_else(|| not_one(format!("it has no output '{name}'")))?;
        let d = dims(o.dtype());
        if d.len() < 2 || (d[1] >= 0 && d[1] != *channels) {
            return Err(not_one(format!(
                "output '{name}' has shape {d:?}, needs {channels} channels"
            )));
        }
    }
    Ok(())
}

impl OrtMtcnn {
    /// Opens the three files in `dir` and checks that each is the stage it is named for.
    pub fn open(dir: &Path, options: &SessionOptions) -> Result<Self, String> {
        let open = |stage: &str| -> Result<(Session, Provider, PathBuf), String> {
            let path = dir.join(spec::file_name(stage));
            let (s, p) = session::open(&path, options)?;
            Ok((s, p, path))
        };
        let (pnet, provider, p) = open(PNET)?;
        check_stage(
            &pnet,
            &p,
            PNET,
            None,
            &[(spec::REGRESSION, 4), (spec::PROBABILITY, 2)],
        )?;
        let (rnet, _, p) = open(RNET)?;
        check_stage(
            &rnet,
            &p,
            RNET,
            Some(RNET_SIZE as i64),
            &[(spec::REGRESSION, 4), (spec::PROBABILITY, 2)],
        )?;
        let (onet, _, p) = open(ONET)?;
        check_stage(
            &onet,
            &p,
            ONET,
            Some(ONET_SIZE as i64),
            &[
                (spec::REGRESSION, 4),
                (spec::LANDMARKS, 10),
                (spec::PROBABILITY, 2),
            ],
        )?;
        Ok(Self {
            pnet,
            rnet,
            onet,
            provider,
        })
    }
}

/// Runs `session` on `input` of `shape` and returns the named outputs as vectors.
fn run(
    session: &mut Session,
    stage: &str,
    input: &[f32],
    shape: [usize; 4],
    names: &[&str],
) -> Result<Vec<Vec<f32>>, String> {
    let tensor = ort::value::TensorRef::from_array_view((shape, input))
        .map_err(|e| format!("cannot make the {stage} input: {e}"))?;
    let outputs = session
        .run(ort::inputs![spec::INPUT => tensor])
        .map_err(|e| format!("{stage} run failed: {e}"))?;
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let v = outputs
            .get(*name)
            .ok_or_else(|| format!("{stage} gave no output '{name}'"))?;
        let (_, data) = v
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("{stage} output '{name}' is not f32: {e}"))?;
        values.push(data.to_vec());
    }
    Ok(values)
}

impl MtcnnNets for OrtMtcnn {
    fn pnet(
        &mut self,
        input: &[f32],
        height: usize,
        width: usize,
        out: &mut PnetOutput,
    ) -> Result<(), String> {
        let tensor = ort::value::TensorRef::from_array_view(([1, 3, height, width], input))
            .map_err(|e| format!("cannot make the {PNET} input: {e}"))?;
        let outputs = self
            .pnet
            .run(ort::inputs![spec::INPUT => tensor])
            .map_err(|e| format!("{PNET} run failed: {e}"))?;
        for (name, dst) in [
            (spec::REGRESSION, &mut out.regression),
            (spec::PROBABILITY, &mut out.probability),
        ] {
            let v = outputs
                .get(name)
                .ok_or_else(|| format!("{PNET} gave no output '{name}'"))?;
            let (shape, data) = v
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("{PNET} output '{name}' is not f32: {e}"))?;
            if shape.len() != 4 {
                return Err(format!("{PNET} output '{name}' has shape {shape:?}"));
            }
            out.height = shape[2].max(0) as usize;
            out.width = shape[3].max(0) as usize;
            // The level's output overwrites the last one's in place.
            dst.clear();
            dst.extend_from_slice(data);
        }
        Ok(())
    }

    fn rnet(&mut self, input: &[f32], n: usize) -> Result<RefineOutput, String> {
        let mut v = run(
            &mut self.rnet,
            RNET,
            input,
            [n, 3, RNET_SIZE, RNET_SIZE],
            &[spec::REGRESSION, spec::PROBABILITY],
        )?;
        let probability = v.pop().unwrap_or_default();
        let regression = v.pop().unwrap_or_default();
        Ok(RefineOutput {
            regression,
            landmarks: Vec::new(),
            probability,
        })
    }

    fn onet(&mut self, input: &[f32], n: usize) -> Result<RefineOutput, String> {
        let mut v = run(
            &mut self.onet,
            ONET,
            input,
            [n, 3, ONET_SIZE, ONET_SIZE],
            &[spec::REGRESSION, spec::LANDMARKS, spec::PROBABILITY],
        )?;
        let probability = v.pop().unwrap_or_default();
        let landmarks = v.pop().unwrap_or_default();
        let regression = v.pop().unwrap_or_default();
        Ok(RefineOutput {
            regression,
            landmarks,
            probability,
        })
    }
}
