// SPDX-License-Identifier: MPL-2.0
//! Layers that both run in libtorch and write themselves into an ONNX graph from their
//! weights, so that the exported file computes what the trained network computes.

use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use crate::export::graph::{Attr, GraphBuilder};

/// Weights of a tensor as host f32, row-major.
pub fn host(t: &Tensor) -> Result<Vec<f32>, tch::TchError> {
    let t = t
        .detach()
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .flatten(0, -1);
    let n = t.numel();
    let mut v = vec![0f32; n];
    t.f_copy_data(&mut v, n)?;
    Ok(v)
}

/// Activation after a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    /// Learned slope per channel for negative inputs.
    PRelu,
}

const BN_EPS: f64 = 1e-5;

fn batch_norm(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        c,
        nn::BatchNormConfig {
            eps: BN_EPS,
            ws_init: nn::Init::Const(1.0),
            ..Default::default()
        },
    )
}

/// Convolution, optional batch norm (folded into the convolution at export), activation.
#[derive(Debug)]
pub struct ConvBn {
    conv: nn::Conv2D,
    bn: Option<nn::BatchNorm>,
    act: Act,
    prelu: Option<Tensor>,
    stride: i64,
    padding: i64,
    groups: i64,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: nn::Path,
        cin: i64,
        cout: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
        groups: i64,
        bn: bool,
        act: Act,
    ) -> Self {
        let conv = nn::conv2d(
            &p / "conv",
            cin,
            cout,
            kernel,
            nn::ConvConfig {
                stride,
                padding,
                groups,
                // With batch norm the bias is redundant (the norm's shift takes its place).
                bias: !bn,
                ..Default::default()
            },
        );
        let bn = bn.then(|| batch_norm(&p / "bn", cout));
        let prelu = (act == Act::PRelu).then(|| p.var("prelu", &[cout], nn::Init::Const(0.25)));
        Self {
            conv,
            bn,
            act,
            prelu,
            stride,
            padding,
            groups,
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> i64 {
        self.conv.ws.size()[0]
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = self.conv.forward(x);
        if let Some(bn) = &self.bn {
            y = bn.forward_t(&y, train);
        }
        match (self.act, &self.prelu) {
            (Act::Relu, _) => y.relu(),
            (Act::PRelu, Some(w)) => {
                let w = w.view([1, -1, 1, 1]);
                y.relu() - w * (-&y).relu()
            }
            _ => y,
        }
    }

    pub fn export(&self, g: &mut GraphBuilder, x: &str) -> Result<String, tch::TchError> {
        let dims = self.conv.ws.size();
        let cout = dims[0] as usize;
        let mut w = host(&self.conv.ws)?;
        let mut b = match &self.conv.bs {
            Some(b) => host(b)?,
            None => vec![0.0; cout],
        };
        if let Some(bn) = &self.bn {
            let mean = host(&bn.running_mean)?;
            let var = host(&bn.running_var)?;
            let gamma = match &bn.ws {
                Some(t) => host(t)?,
                None => vec![1.0; cout],
            };
            let beta = match &bn.bs {
                Some(t) => host(t)?,
                None => vec![0.0; cout],
            };
            let per_out = w.len() / cout;
            for o in 0..cout {
                // Same arithmetic order as libtorch's inference batch norm: scale in f64 so
                // folding adds no error of its own beyond f32 rounding.
                let scale = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
                for v in &mut w[o * per_out..(o + 1) * per_out] {
                    *v = (*v as f64 * scale) as f32;
                }
                b[o] = ((b[o] as f64 - mean[o] as f64) * scale + beta[o] as f64) as f32;
            }
        }
        let y = g.conv(x, (&dims, &w), &b, self.stride, self.padding, self.groups);
        Ok(match (self.act, &self.prelu) {
            (Act::Relu, _) => g.unary("Relu", &y),
            (Act::PRelu, Some(slope)) => {
                let s = g.constant("prelu", &[cout as i64, 1, 1], &host(slope)?);
                g.prelu(&y, &s)
            }
            _ => y,
        })
    }
}

/// Fully connected layer.
#[derive(Debug)]
pub struct Dense {
    pub fc: nn::Linear,
}

impl Dense {
    pub fn new(p: nn::Path, input: i64, output: i64) -> Self {
        Self {
            fc: nn::linear(p, input, output, Default::default()),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.fc.forward(x)
    }

    pub fn export(&self, g: &mut GraphBuilder, x: &str) -> Result<String, tch::TchError> {
        let dims = self.fc.ws.size();
        let b = self.fc.bs.as_ref().map(host).transpose()?;
        Ok(g.linear(x, &host(&self.fc.ws)?, dims[0], dims[1], b.as_deref()))
    }
}

/// One stage element of a backbone.
// Layers are built once and only borrowed afterwards, so the size of the largest variant
// costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Layer {
    Conv(ConvBn),
    /// ResNet basic block: two 3x3 convolutions and a shortcut, ReLU after the sum.
    Basic {
        c1: ConvBn,
        c2: ConvBn,
        shortcut: Option<ConvBn>,
    },
    /// ResNet bottleneck: 1x1, 3x3, 1x1 (x4 channels), shortcut, ReLU after the sum.
    Bottleneck {
        c1: ConvBn,
        c2: ConvBn,
        c3: ConvBn,
        shortcut: Option<ConvBn>,
    },
    /// SphereFace residual unit: two 3x3 convolutions with PReLU, identity added.
    SphereUnit {
        c1: ConvBn,
        c2: ConvBn,
    },
    /// MobileFaceNet inverted residual: expand 1x1, depthwise 3x3, linear project 1x1;
    /// identity added when shapes allow.
    InvertedResidual {
        expand: ConvBn,
        depthwise: ConvBn,
        project: ConvBn,
        residual: bool,
    },
    MaxPool {
        kernel: i64,
        stride: i64,
        padding: i64,
    },
    GlobalAvgPool,
    Flatten,
    Dense(Dense),
    Relu,
}

impl Layer {
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Layer::Conv(c) => c.forward_t(x, train),
            Layer::Basic { c1, c2, shortcut } => {
                let y = c2.forward_t(&c1.forward_t(x, train), train);
                let s = match shortcut {
                    Some(s) => s.forward_t(x, train),
                    None => x.shallow_clone(),
                };
                (y + s).relu()
            }
            Layer::Bottleneck {
                c1,
                c2,
                c3,
                shortcut,
            } => {
                let y = c3.forward_t(&c2.forward_t(&c1.forward_t(x, train), train), train);
                let s = match shortcut {
                    Some(s) => s.forward_t(x, train),
                    None => x.shallow_clone(),
                };
                (y + s).relu()
            }
            Layer::SphereUnit { c1, c2 } => x + c2.forward_t(&c1.forward_t(x, train), train),
            Layer::InvertedResidual {
                expand,
                depthwise,
                project,
                residual,
            } => {
                let y = project.forward_t(
                    &depthwise.forward_t(&expand.forward_t(x, train), train),
                    train,
                );
                if *residual { x + y } else { y }
            }
            Layer::MaxPool {
                kernel,
                stride,
                padding,
            } => x.max_pool2d(
                [*kernel, *kernel],
                [*stride, *stride],
                [*padding, *padding],
                [1, 1],
                false,
            ),
            Layer::GlobalAvgPool => x.adaptive_avg_pool2d([1, 1]),
            Layer::Flatten => x.flatten(1, -1),
            Layer::Dense(d) => d.forward(x),
            Layer::Relu => x.relu(),
        }
    }

    pub fn export(&self, g: &mut GraphBuilder, x: &str) -> Result<String, tch::TchError> {
        Ok(match self {
            Layer::Conv(c) => c.export(g, x)?,
            Layer::Basic { c1, c2, shortcut } => {
                let y = c1.export(g, x)?;
                let y = c2.export(g, &y)?;
                let s = match shortcut {
                    Some(s) => s.export(g, x)?,
                    None => x.to_string(),
                };
                let sum = g.binary("Add", &y, &s);
                g.unary("Relu", &sum)
            }
            Layer::Bottleneck {
                c1,
                c2,
                c3,
                shortcut,
            } => {
                let y = c1.export(g, x)?;
                let y = c2.export(g, &y)?;
                let y = c3.export(g, &y)?;
                let s = match shortcut {
                    Some(s) => s.export(g, x)?,
                    None => x.to_string(),
                };
                let sum = g.binary("Add", &y, &s);
                g.unary("Relu", &sum)
            }
            Layer::SphereUnit { c1, c2 } => {
                let y = c1.export(g, x)?;
                let y = c2.export(g, &y)?;
                g.binary("Add", x, &y)
            }
            Layer::InvertedResidual {
                expand,
                depthwise,
                project,
                residual,
            } => {
                let y = expand.export(g, x)?;
                let y = depthwise.export(g, &y)?;
                let y = project.export(g, &y)?;
                if *residual { g.binary("Add", x, &y) } else { y }
            }
            Layer::MaxPool {
                kernel,
                stride,
                padding,
            } => g.op(
                "MaxPool",
                &[x],
                vec![
                    ("kernel_shape", Attr::Ints(vec![*kernel, *kernel])),
                    ("strides", Attr::Ints(vec![*stride, *stride])),
                    ("pads", Attr::Ints(vec![*padding; 4])),
                ],
            ),
            Layer::GlobalAvgPool => g.unary("GlobalAveragePool", x),
            Layer::Flatten => g.op("Flatten", &[x], vec![("axis", Attr::Int(1))]),
            Layer::Dense(d) => d.export(g, x)?,
            Layer::Relu => g.unary("Relu", x),
        })
    }
}

/// A chain of layers.
#[derive(Debug, Default)]
pub struct Sequential {
    pub layers: Vec<Layer>,
}

impl Sequential {
    pub fn push(&mut self, layer: Layer) {
        self.layers.push(layer);
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        for l in &self.layers {
            y = l.forward_t(&y, train);
        }
        y
    }

    pub fn export(&self, g: &mut GraphBuilder, x: &str) -> Result<String, tch::TchError> {
        let mut y = x.to_string();
        for l in &self.layers {
            y = l.export(g, &y)?;
        }
        Ok(y)
    }
}

/// A GRU cell with PyTorch's gate equations (`torch.nn.GRUCell`): reset `r`, update `z`,
/// candidate `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`, `h' = (1 - z) n + z h`.
#[derive(Debug)]
pub struct GruCell {
    input: nn::Linear,
    hidden: nn::Linear,
    pub size: i64,
}

impl GruCell {
    pub fn new(p: nn::Path, input: i64, size: i64) -> Self {
        Self {
            input: nn::linear(&p / "ih", input, 3 * size, Default::default()),
            hidden: nn::linear(&p / "hh", size, 3 * size, Default::default()),
            size,
        }
    }

    pub fn step(&self, x: &Tensor, h: &Tensor) -> Tensor {
        let gi = self.input.forward(x).chunk(3, 1);
        let gh = self.hidden.forward(h).chunk(3, 1);
        let r = (&gi[0] + &gh[0]).sigmoid();
        let z = (&gi[1] + &gh[1]).sigmoid();
        let n = (&gi[2] + r * &gh[2]).tanh();
        &n + z * (h - &n)
    }

    /// One step as explicit gate arithmetic (`Gemm`, `Sigmoid`, `Tanh`), so the state stays a
    /// plain input and output of the graph.
    pub fn export(&self, g: &mut GraphBuilder, x: &str, h: &str) -> Result<String, tch::TchError> {
        let s = self.size as usize;
        let wi = host(&self.input.ws)?;
        let wh = host(&self.hidden.ws)?;
        let bi = host(self.input.bs.as_ref().expect("GRU input bias"))?;
        let bh = host(self.hidden.bs.as_ref().expect("GRU hidden bias"))?;
        let din = self.input.ws.size()[1];
        let gate = |g: &mut GraphBuilder, k: usize| {
            let xi = g.linear(
                x,
                &wi[k * s * din as usize..(k + 1) * s * din as usize],
                s as i64,
                din,
                Some(&bi[k * s..(k + 1) * s]),
            );
            let hh = g.linear(
                h,
                &wh[k * s * s..(k + 1) * s * s],
                s as i64,
                s as i64,
                Some(&bh[k * s..(k + 1) * s]),
            );
            (xi, hh)
        };
        let (xr, hr) = gate(g, 0);
        let (xz, hz) = gate(g, 1);
        let (xn, hn) = gate(g, 2);
        let r = g.binary("Add", &xr, &hr);
        let r = g.unary("Sigmoid", &r);
        let z = g.binary("Add", &xz, &hz);
        let z = g.unary("Sigmoid", &z);
        let rh = g.binary("Mul", &r, &hn);
        let n = g.binary("Add", &xn, &rh);
        let n = g.unary("Tanh", &n);
        let d = g.binary("Sub", h, &n);
        let zd = g.binary("Mul", &z, &d);
        Ok(g.binary("Add", &n, &zd))
    }
}
