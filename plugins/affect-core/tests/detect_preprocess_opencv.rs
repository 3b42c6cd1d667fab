// SPDX-License-Identifier: MPL-2.0
//! A detector's input tensor filled from a frame against the same tensor built with OpenCV:
//! `cv2.resize(INTER_LINEAR)` of the frame (as float, so no fixed-point rounding) onto a
//! zero canvas at the letterbox offset, channels reordered, normalised, transposed to CHW.

use affect_core::detect::{ChannelOrder, Preprocess, ResizeMode};
use affect_core::testutil::{read_f32, run_python, scratch_dir};

const SCRIPT: &str = r#"
import sys, numpy as np, cv2
src, dst = sys.argv[1], sys.argv[2]
w, h, cw, ch, px, py, iw, ih = map(int, sys.argv[3:11])
bgr = sys.argv[11] == 'bgr'
mean = np.array(list(map(float, sys.argv[12].split(','))), np.float32)
scale = np.array(list(map(float, sys.argv[13].split(','))), np.float32)
rgb = np.fromfile(src, np.uint8).reshape(h, w, 3).astype(np.float32)
resized = cv2.resize(rgb, (cw, ch), interpolation=cv2.INTER_LINEAR)
canvas = np.zeros((ih, iw, 3), np.float32)
canvas[py:py + ch, px:px + cw] = resized
if bgr:
    canvas = canvas[..., ::-1]
((canvas - mean) * scale).transpose(2, 0, 1).astype('<f4').tofile(dst)
"#;

fn frame(w: usize, h: usize) -> Vec<u8> {
    // Smooth structure plus pseudo-random detail, different per channel.
    let mut state = 12345u32;
    (0..w * h * 3)
        .map(|i| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let (p, c) = (i / 3, i % 3);
            let (x, y) = (p % w, p / w);
            ((x * (c + 1) * 3 + y * 2) % 200) as u8 + (state >> 27) as u8
        })
        .collect()
}

#[test]
fn fill_nchw_matches_opencv_resize_for_every_detector_preprocessing() {
    let dir = scratch_dir("detect-preprocess");
    let cases = [
        // (frame w, h, stride padding, preprocessing)
        (
            193,
            101,
            5,
            Preprocess {
                input_width: 64,
                input_height: 64,
                resize: ResizeMode::LetterboxTopLeft,
                channels: ChannelOrder::Rgb,
                mean: [127.5; 3],
                scale: [1.0 / 128.0; 3],
            },
        ),
        (
            90,
            160,
            0,
            Preprocess {
                input_width: 96,
                input_height: 64,
                resize: ResizeMode::LetterboxCentered,
                channels: ChannelOrder::Bgr,
                mean: [0.0; 3],
                scale: [1.0; 3],
            },
        ),
        (
            97,
            61,
            3,
            Preprocess {
                input_width: 320,
                input_height: 240,
                resize: ResizeMode::Stretch,
                channels: ChannelOrder::Rgb,
                mean: [127.0; 3],
                scale: [1.0 / 128.0; 3],
            },
        ),
    ];
    for (k, (w, h, pad, pre)) in cases.into_iter().enumerate() {
        let packed = frame(w, h);
        let stride = w * 3 + pad;
        let mut strided = vec![0u8; stride * h];
        for y in 0..h {
            strided[y * stride..y * stride + w * 3]
                .copy_from_slice(&packed[y * w * 3..(y + 1) * w * 3]);
        }
        let lb = pre.letterbox(w, h).unwrap();
        let mut ours = vec![0.0f32; pre.tensor_len()];
        pre.fill_nchw(&strided, stride, &lb, &mut ours).unwrap();

        let src = dir.join(format!("frame{k}.u8"));
        let dst = dir.join(format!("tensor{k}.f32"));
        std::fs::write(&src, &packed).unwrap();
        let list = |v: [f32; 3]| v.map(|x| x.to_string()).join(",");
        run_python(
            SCRIPT,
            &[
                src.to_str().unwrap(),
                dst.to_str().unwrap(),
                &w.to_string(),
                &h.to_string(),
                &lb.content_width.to_string(),
                &lb.content_height.to_string(),
                &(lb.pad_x as usize).to_string(),
                &(lb.pad_y as usize).to_string(),
                &pre.input_width.to_string(),
                &pre.input_height.to_string(),
                if pre.channels == ChannelOrder::Bgr {
                    "bgr"
                } else {
                    "rgb"
                },
                &list(pre.mean),
                &list(pre.scale),
            ],
        );
        let reference = read_f32(&dst);
        assert_eq!(reference.len(), ours.len());
        // A few thousandths of a grey level (f32 rounding), in the tensor's units; a
        // half-pixel misalignment would differ by whole grey levels.
        let tol = 5e-3 * pre.scale[0];
        let worst = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= tol,
            "case {k} ({:?}): worst difference {worst} > {tol}",
            pre.resize
        );
    }
}
