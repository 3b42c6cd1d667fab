// SPDX-License-Identifier: MPL-2.0
//! Set-up shared by the element tests.

use std::path::{Path, PathBuf};
use std::sync::Once;

use affect_synth::testutil;
use gst::prelude::*;

use affect_core::testutil::run_python;

/// Initialises GStreamer and registers the affect elements once per test process.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstaffect::plugin_register_static().expect("register the affect plugin");
    });
}

/// Builds a small model of the contract with the `onnx` package. The graph is a real
/// multi-task network (pooled face colours and audio through linear layers, tanh / sigmoid /
/// softmax heads, a recurrent state), with fixed random weights.
#[allow(dead_code)]
pub const MODEL_BUILDER: &str = r#"
import sys, json, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
out = sys.argv[1]
opt = json.loads(sys.argv[2])
size, frames, state = opt['size'], opt.get('audio_frames', 0), opt.get('state', 0)
breaks = opt.get('break', '')
rng = np.random.default_rng(opt.get('seed', 1))
K = 16
nodes, inits = [], []
def w(name, shape, scale=1.0):
    inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
    return name
inputs = [helper.make_tensor_value_info('face', TensorProto.FLOAT, ['N', 3, size, size])]
nodes.append(helper.make_node('ReduceMean', ['face'], ['pooled'], axes=[2, 3], keepdims=0))
nodes.append(helper.make_node('MatMul', ['pooled', w('w_face', [3, K])], ['h_face']))
h = 'h_face'
if frames:
    inputs.append(helper.make_tensor_value_info('audio', TensorProto.FLOAT, ['N', 1, frames, 64]))
    nodes.append(helper.make_node('ReduceMean', ['audio'], ['a_slots'], axes=[1, 3], keepdims=0))
    nodes.append(helper.make_node('MatMul', ['a_slots', w('w_audio', [frames, K], 0.05)], ['h_audio']))
    nodes.append(helper.make_node('Add', [h, 'h_audio'], ['h_av']))
    h = 'h_av'
if state:
    inputs.append(helper.make_tensor_value_info('state_in', TensorProto.FLOAT, ['N', state]))
    nodes.append(helper.make_node('MatMul', ['state_in', w('w_state', [state, K])], ['h_state']))
    nodes.append(helper.make_node('Add', [h, 'h_state'], ['h_rec']))
    h = 'h_rec'
nodes.append(helper.make_node('Tanh', [h], ['hidden']))
outputs = []
if opt.get('va_from_audio_slots'):
    # valence = tanh(0.05 x mean of the last audio slot), arousal = the same of the first.
    inits.append(numpy_helper.from_array(np.array([frames - 1, 0], np.int64), 'slot_idx'))
    inits.append(numpy_helper.from_array(np.array(0.05, np.float32), 'slot_scale'))
    nodes.append(helper.make_node('Gather', ['a_slots', 'slot_idx'], ['va_slots'], axis=1))
    nodes.append(helper.make_node('Mul', ['va_slots', 'slot_scale'], ['va_scaled']))
    nodes.append(helper.make_node('Tanh', ['va_scaled'], ['valence_arousal']))
else:
    nodes.append(helper.make_node('MatMul', ['hidden', w('w_va', [K, 2])], ['va_logits']))
    if breaks == 'nan':
        # 0 / 0: a model that answers NaN.
        inits.append(numpy_helper.from_array(np.array(0.0, np.float32), 'zero'))
        nodes.append(helper.make_node('Div', ['zero', 'zero'], ['nan']))
        nodes.append(helper.make_node('Add', ['va_logits', 'nan'], ['va_nan']))
        nodes.append(helper.make_node('Tanh', ['va_nan'], ['valence_arousal']))
    else:
        nodes.append(helper.make_node('Tanh', ['va_logits'], ['valence_arousal']))
n_au = 10 if breaks == 'au_width' else 12
nodes.append(helper.make_node('MatMul', ['hidden', w('w_au', [K, n_au])], ['au_logits']))
nodes.append(helper.make_node('Sigmoid', ['au_logits'], ['au']))
nodes.append(helper.make_node('MatMul', ['hidden', w('w_expr', [K, 8])], ['expr_logits']))
nodes.append(helper.make_node('Softmax', ['expr_logits'], ['expression'], axis=1))
outputs += [helper.make_tensor_value_info('valence_arousal', TensorProto.FLOAT, ['N', 2]),
            helper.make_tensor_value_info('au', TensorProto.FLOAT, ['N', n_au]),
            helper.make_tensor_value_info('expression', TensorProto.FLOAT, ['N', 8])]
if state:
    nodes.append(helper.make_node('MatMul', ['hidden', w('w_next', [K, state])], ['next_logits']))
    nodes.append(helper.make_node('Tanh', ['next_logits'], ['state_out']))
    outputs.append(helper.make_tensor_value_info('state_out', TensorProto.FLOAT, ['N', state]))
graph = helper.make_graph(nodes, 'affect_test', inputs, outputs, inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
model.ir_version = 8
meta = {
    'affect.contract': '1', 'affect.face.height': str(size), 'affect.face.width': str(size),
    'affect.face.mean': '0.5,0.4,0.3', 'affect.face.std': '0.25,0.2,0.3',
    'affect.face.alignment': opt.get('alignment', 'arcface-5pt'), 'affect.face.box_margin': '0.2',
    'affect.labels.au': 'AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26',
    'affect.labels.expression': 'Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other',
    'affect.model.name': 'test-model',
}
if frames:
    meta.update({'affect.audio.sample_rate': '16000', 'affect.audio.n_fft': '512',
                 'affect.audio.win': '400', 'affect.audio.hop': '160', 'affect.audio.n_mels': '64',
                 'affect.audio.frames': str(frames)})
if state:
    meta['affect.state.size'] = str(state)
if breaks == 'no_contract_key':
    del meta['affect.contract']
if 'meta_size' in opt:
    meta['affect.face.height'] = meta['affect.face.width'] = str(opt['meta_size'])
for k, v in meta.items():
    p = model.metadata_props.add(); p.key = k; p.value = v
onnx.checker.check_model(model, full_check=True)
onnx.save(model, out)
"#;

#[allow(dead_code)]
pub fn build_model(dir: &Path, name: &str, options: &str) -> PathBuf {
    let path = dir.join(name);
    run_python(MODEL_BUILDER, &[path.to_str().unwrap(), options]);
    path
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
#[allow(dead_code)]
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

/// Runs `description` (ending in `appsink name=sink`) and returns every buffer, or the
/// error message the pipeline posted.
#[allow(dead_code)]
pub fn collect(description: &str) -> Result<Vec<gst::Sample>, String> {
    init();
    let pipeline = gst::parse::launch(description)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = testutil::appsink(&pipeline);
    sink.set_property("sync", false);
    let bus = pipeline.bus().unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let mut samples = Vec::new();
    let error = || {
        bus.pop_filtered(&[gst::MessageType::Error])
            .and_then(|msg| match msg.view() {
                gst::MessageView::Error(e) => Some(format!("{} | {:?}", e.error(), e.debug())),
                _ => None,
            })
    };
    let result = loop {
        if let Some(e) = error() {
            break Err(e);
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
            Some(s) => samples.push(s),
            // A source that fails to negotiate still ends the stream: its error comes first.
            None if sink.is_eos() => break error().map_or(Ok(samples), Err),
            None => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// scikit-image's `SimilarityTransform` from `landmarks` onto the ArcFace template, applied by
/// `cv2.warpAffine(..., INTER_LINEAR)` to the packed RGB `frame` of `width` x `height`: the
/// 112x112 crop an independent implementation cuts.
#[allow(dead_code)]
pub fn reference_arcface_crop(
    dir: &Path,
    frame: &[u8],
    width: usize,
    height: usize,
    landmarks: &[[f32; 2]; 5],
) -> Vec<u8> {
    std::fs::write(dir.join("reference-frame.rgb"), frame).unwrap();
    let mut args = vec![
        dir.join("reference-frame.rgb").display().to_string(),
        dir.join("reference-crop.rgb").display().to_string(),
        width.to_string(),
        height.to_string(),
    ];
    args.extend(
        landmarks
            .iter()
            .flat_map(|p| [p[0].to_string(), p[1].to_string()]),
    );
    run_python(
        r#"
import sys, numpy as np, cv2
from skimage.transform import SimilarityTransform
w, h = int(sys.argv[3]), int(sys.argv[4])
frame = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(h, w, 3)
src = np.array([float(v) for v in sys.argv[5:]], dtype=np.float64).reshape(5, 2)
dst = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                [41.5493, 92.3655], [70.7299, 92.2041]])
t = SimilarityTransform()
t.estimate(src, dst)
cv2.warpAffine(frame, t.params[:2], (112, 112), flags=cv2.INTER_LINEAR).tofile(sys.argv[2])
"#,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    std::fs::read(dir.join("reference-crop.rgb")).unwrap()
}

/// Mean absolute difference of two byte images.
#[allow(dead_code)]
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}
