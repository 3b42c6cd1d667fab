// SPDX-License-Identifier: MPL-2.0
//! Helpers for tests that compare against peer libraries run in Python (librosa, numpy).
//! Public so that the integration tests of every crate find the same interpreter.

use std::path::PathBuf;
use std::process::Command;

/// The Python interpreter holding the peer libraries: `$AFFECT_PYTHON`, else the set-up's
/// `.venv` at the workspace root, else `python3` from `PATH`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AFFECT_PYTHON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join(".venv/bin/python3");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// The start of a peer script that makes `crops`: six real 64x64 grey face crops (uint8,
/// `[6, 64, 64]`) from photographs packages on the index ship (scikit-image's astronaut,
/// matplotlib's Grace Hopper), each face as MTCNN boxes it and shifted and scaled copies,
/// grey as OpenCV makes it, resized with `INTER_AREA`; with `keras` imported on its torch
/// backend.
pub const REAL_FACE_CROPS: &str = r#"
import os, sys, importlib.util, numpy as np, cv2, skimage.data, matplotlib, PIL.Image
os.environ['KERAS_BACKEND'] = 'torch'
import keras
grace = np.asarray(PIL.Image.open(os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')).convert('RGB'))
faces = [(skimage.data.astronaut(), (181, 62, 268, 172)), (grace, (174, 120, 356, 340))]
crops = []
for img, (x1, y1, x2, y2) in faces:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    for dx, dy, grow in [(0, 0, 0), (6, -4, 10), (-5, 3, -8)]:
        c = grey[y1 + dy - grow:y2 + dy + grow, x1 + dx - grow:x2 + dx + grow]
        crops.append(cv2.resize(c, (64, 64), interpolation=cv2.INTER_AREA))
crops = np.stack(crops)
"#;

/// The start of a script that composes group photographs of real faces: `astronaut` and
/// `grace` (scikit-image's astronaut, NASA, and matplotlib's Grace Hopper, both public domain),
/// `heads` cut from them with their surroundings, and `group(w, h, places)`: the heads scaled
/// and tilted on scikit-image's coffee photograph, `places` as `(x, y, width, degrees, head)`
/// in 1280x720 pixels scaled with the frame; uint8 RGB `[h, w, 3]`.
pub const GROUP_PHOTOGRAPH: &str = r#"
import os, numpy as np, skimage.data, skimage.transform, matplotlib, PIL.Image
astronaut = skimage.data.astronaut()
grace = np.asarray(PIL.Image.open(os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')).convert('RGB'))
heads = [astronaut[20:230, 140:310], grace[60:420, 110:420]]
def group(w, h, places):
    canvas = skimage.transform.resize(skimage.data.coffee(), (h, w), anti_aliasing=True)
    k = w / 1280
    for x, y, size, angle, which in places:
        x, y, size = int(x * k), int(y * h / 720), max(int(size * k), 8)
        head = skimage.transform.rotate(heads[which], angle, resize=False, mode='edge')
        hh = int(size * head.shape[0] / head.shape[1])
        head = skimage.transform.resize(head, (hh, size), anti_aliasing=True)
        canvas[y:y + hh, x:x + size] = head[:h - y, :w - x]
    return np.ascontiguousarray((np.clip(canvas, 0, 1) * 255).round().astype(np.uint8))
"#;

/// Runs `script` with the peer-library interpreter and the given arguments; panics with the
/// interpreter's output (and how to install what it lacks) if it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let py = python();
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (run ./setup.sh first)", py.display()));
    assert!(
        out.status.success(),
        "{} failed (run ./setup.sh to install the test's Python packages):\n{}",
        py.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `values` as little-endian f32 (numpy `'<f4'`).
pub fn write_f32(path: &std::path::Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// Reads little-endian f32 written by numpy's `tofile`.
pub fn read_f32(path: &std::path::Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A fresh, empty directory under the target dir for one test's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("affect-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The columns every `affectsink` CSV starts with, in order: OpenFace's `frame`, `face_id`,
/// `timestamp`, `confidence` and `success`, then the face box and the affect results. Written
/// out here from the format's description (not taken from the sink), so that the tests of
/// the sink and of the `affect` command check its files against the same reference.
pub const CSV_LEADING_COLUMNS: [&str; 12] = [
    "frame",
    "face_id",
    "timestamp",
    "confidence",
    "success",
    "x",
    "y",
    "width",
    "height",
    "valence",
    "arousal",
    "expression",
];

/// Writes the display rotation `degrees` (0, 90, 180 or 270, clockwise) into the matrix of the
/// first track header (`tkhd`) of the QuickTime/MP4 file at `path`, as phones store their
/// orientation; GStreamer's demuxer reads it back as the `image-orientation` tag.
pub fn set_quicktime_rotation(path: &std::path::Path, degrees: u32) {
    let mut b = std::fs::read(path).unwrap();
    let at = b.windows(4).position(|w| w == b"tkhd").expect("a tkhd box");
    // version and flags, times (64-bit in version 1), track id, reserved, duration,
    // reserved, layer, alternate group, volume, reserved: then the 3x3 matrix.
    let times = if b[at + 4] == 1 { 32 } else { 20 };
    let matrix = at + 4 + 4 + times + 8 + 8;
    let one = 1i32 << 16;
    let (a, bb, c, d) = match degrees {
        0 => (one, 0, 0, one),
        90 => (0, one, -one, 0),
        180 => (-one, 0, 0, -one),
        270 => (0, -one, one, 0),
        _ => panic!("{degrees} is not a quarter turn"),
    };
    for (k, v) in [a, bb, 0, c, d, 0, 0, 0, 1 << 30].iter().enumerate() {
        b[matrix + 4 * k..matrix + 4 * k + 4].copy_from_slice(&v.to_be_bytes());
    }
    std::fs::write(path, b).unwrap();
}
