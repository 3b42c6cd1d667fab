// SPDX-License-Identifier: MPL-2.0
//! `affect-train import mtcnn` re-run on the facenet-pytorch package the set-up installs: it
//! gives the committed `models/mtcnn-*.onnx` byte for byte, and those networks compute what
//! facenet-pytorch's own `PNet`, `RNet` and `ONet` modules compute.

use std::path::{Path, PathBuf};

use affect_core::testutil::{run_python, scratch_dir};
use affect_train::import::{WeightSource, mtcnn};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The installed `facenet_pytorch` folder, as the peer interpreter sees it.
fn facenet_folder() -> PathBuf {
    let out = run_python(
        "import importlib.util, os; \
         print(os.path.dirname(importlib.util.find_spec('facenet_pytorch').origin))",
        &[],
    );
    PathBuf::from(out.trim())
}

#[test]
fn import_reproduces_the_committed_files() {
    let out = scratch_dir("import-mtcnn");
    let source = WeightSource::new(&facenet_folder());
    let written = mtcnn::import(&source, &out).expect("import the facenet-pytorch weights");
    assert_eq!(written.len(), 3);
    for path in written {
        let name = path.file_name().unwrap();
        let fresh = std::fs::read(&path).unwrap();
        let committed = std::fs::read(models().join(name)).unwrap();
        assert!(
            fresh == committed,
            "{} differs from the committed file: re-run `affect-train import mtcnn`",
            name.to_string_lossy()
        );
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn imported_networks_compute_what_facenet_pytorch_computes() {
    let out = run_python(
        r#"
import sys, numpy as np, onnxruntime as ort, torch
from facenet_pytorch.models.mtcnn import PNet, RNet, ONet
rng = np.random.default_rng(0)
for name, cls, shape in [('pnet', PNet, (1, 3, 57, 83)), ('rnet', RNet, (7, 3, 24, 24)),
                         ('onet', ONet, (7, 3, 48, 48))]:
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    with torch.no_grad():
        ref = [t.numpy() for t in cls().eval()(torch.from_numpy(x))]
    s = ort.InferenceSession(sys.argv[1] + f'/mtcnn-{name}.onnx', providers=['CPUExecutionProvider'])
    got = s.run(None, {'image': x})
    # The modules return (regression, probability) and (regression, landmarks, probability):
    # the files' outputs are in the same order.
    print(name, max(float(np.abs(g - r).max()) for g, r in zip(got, ref)))
"#,
        &[models().to_str().unwrap()],
    );
    let mut seen = 0;
    for line in out.lines() {
        let (name, err) = line.split_once(' ').unwrap();
        let err: f64 = err.parse().unwrap();
        // float32 reassociation only: the networks are the same.
        assert!(err < 1e-5, "{name}: max |onnx - facenet-pytorch| = {err}");
        seen += 1;
    }
    assert_eq!(seen, 3, "{out}");
}

#[test]
fn a_wheel_without_the_weights_is_named() {
    let dir = scratch_dir("import-empty");
    let err = mtcnn::import(&WeightSource::new(&dir), &dir.join("out")).unwrap_err();
    assert!(
        err.to_string().contains("facenet_pytorch/data/pnet.pt"),
        "{err}"
    );
    let bogus = dir.join("facenet_pytorch-2.6.0-py3-none-any.whl");
    std::fs::write(&bogus, b"not a zip").unwrap();
    let err = mtcnn::import(&WeightSource::new(&bogus), &dir.join("out")).unwrap_err();
    assert!(err.to_string().contains("not a readable wheel"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
