// SPDX-License-Identifier: MPL-2.0
//! PReLU written as `Relu(x) + slope * Min(x, 0)` (by the graph builder, and by the rewrite
//! of existing files behind `affect-train lower-prelu`) against ONNX's own `PRelu` operator,
//! both run by Python's onnxruntime on the same inputs, slopes below 0, 0, between 0 and 1,
//! and above 1 included: in f32 graphs the outputs are bit for bit the same; in f16 graphs
//! within one half-precision step, as onnxruntime's CPU provider has no f16 `PRelu` and runs
//! the reference's two activations in f32 between casts, without rounding in between.

use affect_core::testutil::{run_python, scratch_dir};
use affect_train::export::graph::{GraphBuilder, lower_prelu};
use affect_train::export::proto::{ModelProto, OperatorSetIdProto};
use affect_train::export::{IR_VERSION, OPSET, lower_prelu_file};
use affect_train::import::write_model;

const COMPARE: &str = r#"
import sys, numpy as np, onnxruntime as ort
rng = np.random.default_rng(5)
x = (rng.standard_normal((3, 4, 5, 5)) * 3).astype(np.float32)
x[0, 0, 0, :3] = [0.0, -0.0, 1e-30]
outs = []
half = sys.argv[1] == 'f16'
for path in sys.argv[2:]:
    so = ort.SessionOptions(); so.log_severity_level = 3
    s = ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])
    outs.append(s.run(None, {'x': x})[0])
ref = outs[0]
assert not np.array_equal(ref, x), 'the reference does something'
for o in outs[1:]:
    if half:
        step = np.maximum(np.abs(ref), 6.1e-5) * 2.0 ** -10
        assert (np.abs(o - ref) <= step * 1.01).all(), float((np.abs(o - ref) / step).max())
    else:
        # Equal values; a zero may change sign.
        assert np.array_equal(o, ref), float(np.abs(o - ref).max())
print('ok', len(outs))
"#;

fn model(fp16: bool, lowered_by_builder: bool) -> ModelProto {
    let mut g = GraphBuilder::new(fp16);
    let x = g.input("x", &[None, Some(4), Some(5), Some(5)]);
    let slope = g.constant("slope", &[4, 1, 1], &[0.25, -0.5, 0.0, 2.5]);
    let y = if lowered_by_builder {
        g.prelu(&x, &slope)
    } else {
        g.binary("PRelu", &x, &slope)
    };
    // A second activation shares the builder's zero.
    let slope2 = g.constant("slope", &[4, 1, 1], &[0.1, 0.2, 0.3, 0.4]);
    let y = if lowered_by_builder {
        g.prelu(&y, &slope2)
    } else {
        g.binary("PRelu", &y, &slope2)
    };
    g.output(&y, "y", &[None, Some(4), Some(5), Some(5)]);
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        graph: Some(g.into_graph("prelu")),
        ..Default::default()
    }
}

#[test]
fn lowered_prelu_equals_onnx_prelu() {
    let dir = scratch_dir("lower-prelu");
    for fp16 in [false, true] {
        let reference = dir.join(format!("reference-{fp16}.onnx"));
        write_model(&model(fp16, false), &reference).unwrap();
        let built = dir.join(format!("built-{fp16}.onnx"));
        let built_model = model(fp16, true);
        let graph = built_model.graph.as_ref().unwrap();
        assert!(graph.node.iter().all(|n| n.op_type != "PRelu"));
        // One zero for both activations.
        assert_eq!(
            graph
                .initializer
                .iter()
                .filter(|t| t.name.starts_with("zero"))
                .count(),
            1
        );
        write_model(&built_model, &built).unwrap();
        let rewritten = dir.join(format!("rewritten-{fp16}.onnx"));
        assert_eq!(lower_prelu_file(&reference, &rewritten).unwrap(), 2);
        // Rewriting again finds nothing left to rewrite.
        let mut again = model(fp16, true);
        assert_eq!(lower_prelu(again.graph.as_mut().unwrap()), 0);
        let out = run_python(
            COMPARE,
            &[
                if fp16 { "f16" } else { "f32" },
                reference.to_str().unwrap(),
                built.to_str().unwrap(),
                rewritten.to_str().unwrap(),
            ],
        );
        assert_eq!(out.trim(), "ok 3", "fp16={fp16}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
