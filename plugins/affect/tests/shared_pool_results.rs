// SPDX-License-Identifier: MPL-2.0
//! The process's one ONNX Runtime thread pool changes no result: three pipelines at once, each
//! with BlazeFace and two chained models (the default audio-visual model and the FER2013
//! model, shared between the pipelines), give every face of every frame the results that one
//! pipeline alone gives, on a real photograph (matplotlib's Grace Hopper, public domain).

mod common;

use std::path::{Path, PathBuf};

use gstaffect::meta::{self, AnalysedFace};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn photograph() -> PathBuf {
    let out = affect_core::testutil::run_python(
        "import os, matplotlib; print(os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg'))",
        &[],
    );
    PathBuf::from(out.trim())
}

/// Every frame's analysed faces of one pipeline over `frames` frames of the photograph.
fn analyse(photo: &Path, frames: usize) -> Vec<Vec<AnalysedFace>> {
    let samples = common::collect(&format!(
        "filesrc location={} ! jpegdec ! imagefreeze num-buffers={frames} ! videoconvert \
         ! video/x-raw,format=RGB,framerate=25/1 ! affectfacecrop detector=blazeface \
           detect-interval=1 track-min-hits=1 \
         ! affectinfer model={} ! affectinfer model={} ! appsink name=sink",
        photo.display(),
        models().join("affect-default.onnx").display(),
        models().join("fer2013-mini-xception.onnx").display()
    ))
    .unwrap();
    samples
        .iter()
        .map(|s| meta::analysed_faces(s.buffer().unwrap()))
        .collect()
}

#[test]
fn pipelines_on_the_shared_pool_give_the_results_of_one_alone() {
    common::init();
    let photo = photograph();
    let frames = 12;
    let alone = analyse(&photo, frames);
    assert_eq!(alone.len(), frames);
    assert!(
        alone
            .iter()
            .all(|f| f.len() == 1 && f[0].affect.as_ref().is_some_and(|a| a.has_expression())),
        "one face with results on every frame: {alone:?}"
    );
    let together: Vec<Vec<Vec<AnalysedFace>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| analyse(&photo, frames)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &together {
        assert_eq!(run.len(), frames);
        for (a, b) in run.iter().zip(&alone) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_eq!(x.face, y.face, "same faces");
                let (x, y) = (x.affect.as_ref().unwrap(), y.affect.as_ref().unwrap());
                // Batches mix the pipelines' faces; a batch's size may change the order of a
                // sum in ONNX Runtime's kernels, nothing more.
                let values = |r: &meta::AffectResult| -> Vec<f64> {
                    [r.valence, r.arousal]
                        .into_iter()
                        .flatten()
                        .chain(r.expression_probs.iter().copied())
                        .chain(r.au_probs.iter().copied())
                        .collect()
                };
                assert_eq!(values(x).len(), values(y).len());
                assert!(values(x).len() > 20, "both models' heads: {x:?}");
                for (p, q) in values(x).iter().zip(values(y)) {
                    assert!((p - q).abs() < 1e-5, "{x:?} vs {y:?}");
                }
                assert_eq!(x.expression, y.expression);
            }
        }
    }
}
