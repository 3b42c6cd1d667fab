// SPDX-License-Identifier: MPL-2.0
//! A small builder of ONNX graphs: named values, constant initializers and nodes, written
//! by the layers of [`crate::model`] from their trained weights.

use super::proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, NodeProto, TensorProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto, attribute_type, data_type,
};

/// One node attribute.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// Converts to IEEE half precision, rounding to nearest even (as numpy's `astype(float16)`).
pub fn f32_to_f16_bits(value: f32) -> u16 {
    let x = value.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let mant = x & 0x7f_ffff;
    if exp == 0xff {
        // Inf or NaN (keep NaN quiet).
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // Subnormal half: shift the mantissa with its implicit bit in.
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = u32::from(rem > mid || (rem == mid && (half & 1) == 1));
        return sign | (half + round) as u16;
    }
    let half = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    let round = u32::from(rem > 0x1000 || (rem == 0x1000 && (half & 1) == 1));
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    sign | (half + round) as u16
}

/// Graph under construction. With `fp16`, float weights are stored and computed in half
/// precision; the graph's inputs and outputs stay f32 and are cast at the edges.
pub struct GraphBuilder {
    pub fp16: bool,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
    /// The scalar 0 that [`GraphBuilder::prelu`] compares with, made once.
    zero: Option<String>,
}

fn value_info(name: &str, elem_type: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, d)| Dimension {
            value: Some(match d {
                Some(v) => DimensionValue::DimValue(*v),
                // The batch axis is `N`; other free axes (an image's height and width) each
                // have their own name, so that no two are taken to be equal.
                None if i == 0 => DimensionValue::DimParam("N".into()),
                None => DimensionValue::DimParam(format!("D{i}")),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: String::new(),
    }
}

impl GraphBuilder {
    pub fn new(fp16: bool) -> Self {
        Self {
            fp16,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            counter: 0,
            zero: None,
        }
    }

    /// `PRelu(x, slope)`, written as [`prelu_nodes`] writes it.
    pub fn prelu(&mut self, x: &str, slope: &str) -> String {
        let zero = match &self.zero {
            Some(z) => z.clone(),
            None => {
                let z = self.constant("zero", &[], &[0.0]);
                self.zero = Some(z.clone());
                z
            }
        };
        let y = self.fresh("prelu");
        self.nodes.extend(prelu_nodes(&y, x, slope, &zero, &y));
        y
    }

    /// The element type of computed float values.
    fn float_type(&self) -> i32 {
        if self.fp16 {
            data_type::FLOAT16
        } else {
            data_type::FLOAT
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Declares an f32 graph input (`None` = the dynamic batch axis) and returns the value
    /// the rest of the graph computes with (cast to half precision in fp16 graphs).
    pub fn input(&mut self, name: &str, dims: &[Option<i64>]) -> String {
        self.inputs.push(value_info(name, data_type::FLOAT, dims));
        if self.fp16 {
            self.cast(name, data_type::FLOAT16)
        } else {
            name.to_string()
        }
    }

    /// Makes `value` the f32 graph output `name`.
    pub fn output(&mut self, value: &str, name: &str, dims: &[Option<i64>]) {
        let to = data_type::FLOAT;
        self.nodes.push(NodeProto {
            input: vec![value.into()],
            output: vec![name.into()],
            name: format!("{name}_out"),
            op_type: if self.fp16 { "Cast" } else { "Identity" }.into(),
            attribute: if self.fp16 {
                vec![AttributeProto {
                    name: "to".into(),
                    r#type: attribute_type::INT,
                    i: to as i64,
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
            ..Default::default()
        });
        self.outputs.push(value_info(name, to, dims));
    }

    fn cast(&mut self, value: &str, to: i32) -> String {
        self.op("Cast", &[value], vec![("to", Attr::Int(to as i64))])
    }

    /// A float constant (weights), stored in the graph's float type.
    pub fn constant(&mut self, hint: &str, dims: &[i64], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, values.len());
        let name = self.fresh(hint);
        let raw_data = if self.fp16 {
            values
                .iter()
                .flat_map(|v| f32_to_f16_bits(*v).to_le_bytes())
                .collect()
        } else {
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        };
        self.initializers.push(TensorProto {
            dims: dims.to_vec(),
            data_type: self.float_type(),
            name: name.clone(),
            raw_data,
        });
        name
    }

    /// An int64 constant (shapes, axes).
    pub fn constant_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// Adds a node with one output and returns that output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op_type.to_ascii_lowercase());
        let attribute = attrs
            .into_iter()
            .map(|(name, a)| {
                let mut p = AttributeProto {
                    name: name.into(),
                    ..Default::default()
                };
                match a {
                    Attr::Int(i) => {
                        p.r#type = attribute_type::INT;
                        p.i = i;
                    }
                    Attr::Ints(v) => {
                        p.r#type = attribute_type::INTS;
                        p.ints = v;
                    }
                    Attr::Float(f) => {
                        p.r#type = attribute_type::FLOAT;
                        p.f = f;
                    }
                }
                p
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op_type.into(),
            attribute,
            ..Default::default()
        });
        out
    }

    /// `Conv` with square kernel, symmetric padding and a bias.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        x: &str,
        weight: (&[i64], &[f32]),
        bias: &[f32],
        stride: i64,
        padding: i64,
        groups: i64,
    ) -> String {
        let (dims, w) = weight;
        let kh = dims[2];
        let kw = dims[3];
        let w = self.constant("conv_w", dims, w);
        let b = self.constant("conv_b", &[dims[0]], bias);
        self.op(
            "Conv",
            &[x, &w, &b],
            vec![
                ("kernel_shape", Attr::Ints(vec![kh, kw])),
                ("strides", Attr::Ints(vec![stride, stride])),
                ("pads", Attr::Ints(vec![padding, padding, padding, padding])),
                ("dilations", Attr::Ints(vec![1, 1])),
                ("group", Attr::Int(groups)),
            ],
        )
    }

    /// `x @ W^T + b` (`Gemm` with `transB`), W of shape `[out, in]`.
    pub fn linear(
        &mut self,
        x: &str,
        weight: &[f32],
        out: i64,
        input: i64,
        bias: Option<&[f32]>,
    ) -> String {
        let w = self.constant("fc_w", &[out, input], weight);
        match bias {
            Some(b) => {
                let b = self.constant("fc_b", &[out], b);
                self.op("Gemm", &[x, &w, &b], vec![("transB", Attr::Int(1))])
            }
            None => self.op("Gemm", &[x, &w], vec![("transB", Attr::Int(1))]),
        }
    }

    pub fn unary(&mut self, op_type: &str, x: &str) -> String {
        self.op(op_type, &[x], Vec::new())
    }

    pub fn binary(&mut self, op_type: &str, a: &str, b: &str) -> String {
        self.op(op_type, &[a, b], Vec::new())
    }

    pub fn into_graph(self, name: &str) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.into(),
            initializer: self.initializers,
            doc_string: String::new(),
            input: self.inputs,
            output: self.outputs,
            value_info: Vec::new(),
        }
    }
}

/// The nodes computing `y = PRelu(x, slope)` as `Relu(x) + slope * Min(x, 0)`: the same values
/// (up to the sign of a zero), which ONNX Runtime's CPU provider runs 1.5-3x faster than its
/// `PRelu` kernel in the networks here, as that kernel makes it leave its blocked convolution
/// layout around every activation. Intermediate values are named after `prefix`.
pub fn prelu_nodes(prefix: &str, x: &str, slope: &str, zero: &str, y: &str) -> Vec<NodeProto> {
    let node = |op: &str, inputs: &[&str], output: &str| NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: output.to_string(),
        op_type: op.into(),
        ..Default::default()
    };
    let (positive, negative, scaled) = (
        format!("{prefix}_positive"),
        format!("{prefix}_negative"),
        format!("{prefix}_scaled"),
    );
    vec![
        node("Relu", &[x], &positive),
        node("Min", &[x, zero], &negative),
        node("Mul", &[&negative, slope], &scaled),
        node("Add", &[&positive, &scaled], y),
    ]
}

/// Rewrites every `PRelu` node of `graph` as [`prelu_nodes`] writes it, in place, with one
/// scalar zero initializer per float type the slopes use; returns how many were rewritten.
/// Files exported before the exporter wrote PReLU this way get the same speed from it.
pub fn lower_prelu(graph: &mut GraphProto) -> usize {
    let slope_type = |name: &str, inits: &[TensorProto]| {
        inits
            .iter()
            .find(|t| t.name == name)
            .map_or(data_type::FLOAT, |t| t.data_type)
    };
    let mut count = 0;
    let mut zeros: Vec<(i32, String)> = Vec::new();
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        if node.op_type != "PRelu" || node.input.len() != 2 || node.output.len() != 1 {
            nodes.push(node);
            continue;
        }
        let elem = slope_type(&node.input[1], &graph.initializer);
        let zero = match zeros.iter().find(|(t, _)| *t == elem) {
            Some((_, name)) => name.clone(),
            None => {
                let name = format!("prelu_zero_{elem}");
                let width = if elem == data_type::FLOAT16 { 2 } else { 4 };
                graph.initializer.push(TensorProto {
                    dims: Vec::new(),
                    data_type: elem,
                    name: name.clone(),
                    raw_data: vec![0; width],
                });
                zeros.push((elem, name.clone()));
                name
            }
        };
        let prefix = if node.name.is_empty() {
            format!("{}_lowered", node.output[0])
        } else {
            node.name.clone()
        };
        nodes.extend(prelu_nodes(
            &prefix,
            &node.input[0],
            &node.input[1],
            &zero,
            &node.output[0],
        ));
        count += 1;
    }
    graph.node = nodes;
    count
}

#[cfg(test)]
mod tests {
    use super::f32_to_f16_bits;

    #[test]
    fn half_conversion_matches_known_bit_patterns() {
        // Values and bit patterns from the IEEE 754 binary16 definition.
        let cases: [(f32, u16); 9] = [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (1e6, 0x7c00),
            (5.960_464_5e-8, 0x0001),
            (0.333_333_34, 0x3555),
            (6.103_515_6e-5, 0x0400),
        ];
        for (v, bits) in cases {
            assert_eq!(f32_to_f16_bits(v), bits, "{v}");
        }
    }
}
