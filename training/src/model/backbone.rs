// SPDX-License-Identifier: MPL-2.0
//! Face backbones: ResNet-18/50, VGG-16 (VGGFace layout), SphereFace-20 and a
//! MobileFaceNet-style network, each ending in a linear embedding of size `embedding`.

use tch::nn;

use super::layers::{Act, ConvBn, Dense, Layer, Sequential};
use super::{BackboneKind, NetworkConfig};

fn conv_out(size: i64, kernel: i64, stride: i64, padding: i64) -> i64 {
    (size + 2 * padding - kernel) / stride + 1
}

/// Builds the face backbone of `cfg` under `p`; returns it with its output width.
pub fn build(p: nn::Path, cfg: &NetworkConfig) -> Sequential {
    let w = cfg.width();
    match cfg.backbone {
        BackboneKind::Resnet18 => resnet(p, cfg, w, &[2, 2, 2, 2], false),
        BackboneKind::Resnet50 => resnet(p, cfg, w, &[3, 4, 6, 3], true),
        BackboneKind::Vgg16 => vgg16(p, cfg, w),
        BackboneKind::Sphereface20 => sphereface20(p, cfg, w),
        BackboneKind::Mobilefacenet => mobilefacenet(p, cfg, w),
    }
}

fn resnet(
    p: nn::Path,
    cfg: &NetworkConfig,
    w: i64,
    blocks: &[usize; 4],
    bottleneck: bool,
) -> Sequential {
    let mut s = Sequential::default();
    s.push(Layer::Conv(ConvBn::new(
        &p / "stem",
        3,
        w,
        7,
        2,
        3,
        1,
        true,
        Act::Relu,
    )));
    s.push(Layer::MaxPool {
        kernel: 3,
        stride: 2,
        padding: 1,
    });
    let expansion = if bottleneck { 4 } else { 1 };
    let mut cin = w;
    for (stage, &n) in blocks.iter().enumerate() {
        let mid = w << stage;
        let cout = mid * expansion;
        for b in 0..n {
            let q = &p / format!("layer{}", stage + 1) / b;
            let stride = if b == 0 && stage > 0 { 2 } else { 1 };
            let shortcut = (stride != 1 || cin != cout)
                .then(|| ConvBn::new(&q / "down", cin, cout, 1, stride, 0, 1, true, Act::None));
            if bottleneck {
                s.push(Layer::Bottleneck {
                    c1: ConvBn::new(&q / "c1", cin, mid, 1, 1, 0, 1, true, Act::Relu),
                    c2: ConvBn::new(&q / "c2", mid, mid, 3, stride, 1, 1, true, Act::Relu),
                    c3: ConvBn::new(&q / "c3", mid, cout, 1, 1, 0, 1, true, Act::None),
                    shortcut,
                });
            } else {
                s.push(Layer::Basic {
                    c1: ConvBn::new(&q / "c1", cin, cout, 3, stride, 1, 1, true, Act::Relu),
                    c2: ConvBn::new(&q / "c2", cout, cout, 3, 1, 1, 1, true, Act::None),
                    shortcut,
                });
            }
            cin = cout;
        }
    }
    s.push(Layer::GlobalAvgPool);
    s.push(Layer::Flatten);
    s.push(Layer::Dense(Dense::new(
        &p / "embedding",
        cin,
        cfg.embedding,
    )));
    s
}

/// VGGFace's convolutional layout (13 3x3 convolutions with ReLU, five 2x2 max pools, no
/// batch norm); global pooling instead of the 7x7 `fc6` so any input size works.
fn vgg16(p: nn::Path, cfg: &NetworkConfig, w: i64) -> Sequential {
    let mut s = Sequential::default();
    let stages: [(usize, i64); 5] = [(2, w), (2, 2 * w), (3, 4 * w), (3, 8 * w), (3, 8 * w)];
    let mut cin = 3;
    for (i, (n, c)) in stages.into_iter().enumerate() {
        for k in 0..n {
            let q = &p / format!("conv{}_{}", i + 1, k + 1);
            s.push(Layer::Conv(ConvBn::new(
                q,
                cin,
                c,
                3,
                1,
                1,
                1,
                false,
                Act::Relu,
            )));
            cin = c;
        }
        s.push(Layer::MaxPool {
            kernel: 2,
            stride: 2,
            padding: 0,
        });
    }
    s.push(Layer::GlobalAvgPool);
    s.push(Layer::Flatten);
    s.push(Layer::Dense(Dense::new(&p / "fc6", cin, cfg.embedding)));
    s
}

/// SphereFace-20: four stride-2 3x3 convolutions with PReLU, followed by 1, 2, 4 and 1
/// residual units; the flattened map feeds the embedding.
fn sphereface20(p: nn::Path, cfg: &NetworkConfig, w: i64) -> Sequential {
    let mut s = Sequential::default();
    let mut size = cfg.input_size;
    let mut cin = 3;
    for (i, n) in [1usize, 2, 4, 1].into_iter().enumerate() {
        let c = w << i;
        let q = &p / format!("stage{}", i + 1);
        s.push(Layer::Conv(ConvBn::new(
            &q / "down",
            cin,
            c,
            3,
            2,
            1,
            1,
            false,
            Act::PRelu,
        )));
        size = conv_out(size, 3, 2, 1);
        for u in 0..n {
            let r = &q / format!("unit{u}");
            s.push(Layer::SphereUnit {
                c1: ConvBn::new(&r / "c1", c, c, 3, 1, 1, 1, false, Act::PRelu),
                c2: ConvBn::new(&r / "c2", c, c, 3, 1, 1, 1, false, Act::PRelu),
            });
        }
        cin = c;
    }
    s.push(Layer::Flatten);
    s.push(Layer::Dense(Dense::new(
        &p / "fc5",
        cin * size * size,
        cfg.embedding,
    )));
    s
}

/// MobileFaceNet: 3x3 stem, depthwise 3x3, inverted residual stages
/// (expansion, channels, repeats, stride) = (2,64,5,2) (4,128,1,2) (2,128,6,1) (4,128,1,2)
/// (2,128,2,1) with channels scaled by `width / 64`, 1x1 to 512 (scaled), a global depthwise
/// convolution over the final map and a linear embedding.
fn mobilefacenet(p: nn::Path, cfg: &NetworkConfig, w: i64) -> Sequential {
    let mut s = Sequential::default();
    let scale = |c: i64| (c * w / 64).max(4);
    let mut size = cfg.input_size;
    let c0 = scale(64);
    s.push(Layer::Conv(ConvBn::new(
        &p / "stem",
        3,
        c0,
        3,
        2,
        1,
        1,
        true,
        Act::PRelu,
    )));
    size = conv_out(size, 3, 2, 1);
    s.push(Layer::Conv(ConvBn::new(
        &p / "dw",
        c0,
        c0,
        3,
        1,
        1,
        c0,
        true,
        Act::PRelu,
    )));
    let mut cin = c0;
    let stages: [(i64, i64, usize, i64); 5] = [
        (2, 64, 5, 2),
        (4, 128, 1, 2),
        (2, 128, 6, 1),
        (4, 128, 1, 2),
        (2, 128, 2, 1),
    ];
    for (i, (t, c, n, stride)) in stages.into_iter().enumerate() {
        let c = scale(c);
        for k in 0..n {
            let q = &p / format!("block{i}_{k}");
            let st = if k == 0 { stride } else { 1 };
            let hidden = cin * t;
            s.push(Layer::InvertedResidual {
                expand: ConvBn::new(&q / "expand", cin, hidden, 1, 1, 0, 1, true, Act::PRelu),
                depthwise: ConvBn::new(
                    &q / "dw",
                    hidden,
                    hidden,
                    3,
                    st,
                    1,
                    hidden,
                    true,
                    Act::PRelu,
                ),
                project: ConvBn::new(&q / "project", hidden, c, 1, 1, 0, 1, true, Act::None),
                residual: st == 1 && cin == c,
            });
            size = conv_out(size, 3, st, 1);
            cin = c;
        }
    }
    let c_last = scale(512);
    s.push(Layer::Conv(ConvBn::new(
        &p / "conv_last",
        cin,
        c_last,
        1,
        1,
        0,
        1,
        true,
        Act::PRelu,
    )));
    // Global depthwise convolution: one weight per position and channel, unlike average
    // pooling it can weigh the face centre over the border.
    s.push(Layer::Conv(ConvBn::new(
        &p / "gdc",
        c_last,
        c_last,
        size,
        1,
        0,
        c_last,
        true,
        Act::None,
    )));
    s.push(Layer::Flatten);
    s.push(Layer::Dense(Dense::new(
        &p / "embedding",
        c_last,
        cfg.embedding,
    )));
    s
}

/// The audio branch: three 3x3 convolution / batch norm / ReLU blocks with 2x2 pooling over
/// the `[1, T, M]` log-mel window, global pooling, a linear embedding with ReLU.
pub fn audio(p: nn::Path, cfg: &NetworkConfig) -> Sequential {
    let c = cfg.audio_width;
    let mut s = Sequential::default();
    let mut cin = 1;
    for (i, cout) in [c, 2 * c, 4 * c].into_iter().enumerate() {
        s.push(Layer::Conv(ConvBn::new(
            &p / format!("conv{i}"),
            cin,
            cout,
            3,
            1,
            1,
            1,
            true,
            Act::Relu,
        )));
        if i < 2 {
            s.push(Layer::MaxPool {
                kernel: 2,
                stride: 2,
                padding: 0,
            });
        }
        cin = cout;
    }
    s.push(Layer::GlobalAvgPool);
    s.push(Layer::Flatten);
    s.push(Layer::Dense(Dense::new(
        &p / "embedding",
        cin,
        cfg.audio_embedding,
    )));
    s.push(Layer::Relu);
    s
}
