// SPDX-License-Identifier: MPL-2.0
//! Reader of PyTorch's legacy `torch.save` format (the one before the zip archive, used by
//! files saved with PyTorch < 1.6 and still read by `torch.load`), for the state dicts of
//! float tensors that pretrained-weight files hold.
//!
//! The file is five pickles followed by the raw storages:
//! the magic number, the protocol version (1001), a dict of system information, the object
//! itself (tensors refer to storages through pickle "persistent ids"), and the sorted list of
//! storage keys; then, for each key in that order, an int64 element count and the elements.
//! The pickles need only a small subset of the pickle machine: protocol 2 opcodes, globals
//! resolved by name (no code is ever run).

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

/// `torch.serialization.MAGIC_NUMBER`.
const MAGIC_NUMBER: u128 = 0x1950a86a20f9469cfc6c;
/// `torch.serialization.PROTOCOL_VERSION`.
const PROTOCOL_VERSION: i64 = 1001;

#[derive(Debug, Error, PartialEq)]
pub enum TorchFileError {
    #[error(
        "not a legacy torch.save file (it does not start with PyTorch's magic number{}); \
         files saved with PyTorch >= 1.6 are zip archives, which this reader does not read",
        if *.0 { ", it is a zip archive" } else { "" }
    )]
    NotLegacy(bool),
    #[error("unsupported torch.save protocol version {0} (expected 1001)")]
    Protocol(i64),
    #[error("the file ends early ({0})")]
    Truncated(&'static str),
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {at}")]
    Opcode { opcode: u8, at: usize },
    #[error("malformed pickle: {0}")]
    Malformed(String),
    #[error("tensor '{name}': {why}")]
    Tensor { name: String, why: String },
}

/// A value of the (restricted) pickle machine.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage {
        key: String,
        dtype: String,
    },
    Tensor(TensorRef),
    /// An object this reader has no use for (built by a global it does not know).
    Opaque(String),
}

#[derive(Clone, Debug, PartialEq)]
struct TensorRef {
    key: String,
    dtype: String,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

/// One float tensor of a state dict.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TorchFileError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(TorchFileError::Truncated("inside a pickle"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, TorchFileError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, TorchFileError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, TorchFileError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, TorchFileError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(TorchFileError::Truncated("in a GLOBAL name"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> Result<String, TorchFileError> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|e| TorchFileError::Malformed(e.to_string()))
    }

    /// Runs one pickle to its STOP and returns the value it builds.
    fn pickle(&mut self) -> Result<Value, TorchFileError> {
        let mut stack: Vec<Value> = Vec::new();
        let mut marks: Vec<usize> = Vec::new();
        let mut memo: HashMap<u32, Value> = HashMap::new();
        let malformed = |what: &str| TorchFileError::Malformed(what.to_string());
        loop {
            let at = self.pos;
            let opcode = self.u8()?;
            match opcode {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => {
                    return stack
                        .pop()
                        .ok_or_else(|| malformed("STOP on an empty stack"));
                }
                b'(' => marks.push(stack.len()),
                b'}' => stack.push(Value::Dict(Vec::new())),
                b')' => stack.push(Value::Tuple(Vec::new())),
                b']' => stack.push(Value::List(Vec::new())),
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    stack.push(Value::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    stack.push(Value::Int(v as i64))
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    stack.push(Value::Int(v as i64))
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 16 {
                        return Err(malformed("LONG1 wider than 128 bits"));
                    }
                    let mut v: i128 = 0;
                    for (i, byte) in b.iter().enumerate() {
                        v |= (*byte as i128) << (8 * i);
                    }
                    if n > 0 && n < 16 && b[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    // The magic number is the only integer beyond i64 in these files.
                    if v as u128 == MAGIC_NUMBER {
                        stack.push(Value::Str("<torch magic>".into()));
                    } else {
                        stack.push(Value::Int(
                            i64::try_from(v).map_err(|_| malformed("integer beyond 64 bits"))?,
                        ));
                    }
                }
                b'G' => {
                    let b = self.take(8)?;
                    stack.push(Value::Float(f64::from_be_bytes(b.try_into().unwrap())))
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    stack.push(Value::Str(s))
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    stack.push(Value::Str(s))
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    stack.push(Value::Str(s))
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    stack.push(Value::Str(s))
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    stack.push(Value::Bytes(self.take(n)?.to_vec()))
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    stack.push(Value::Bytes(self.take(n)?.to_vec()))
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    stack.push(Value::Global(module, name))
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    memo.insert(k, stack.last().cloned().ok_or_else(|| malformed("BINPUT"))?);
                }
                b'r' => {
                    let k = self.u32()?;
                    memo.insert(k, stack.last().cloned().ok_or_else(|| malformed("BINPUT"))?);
                }
                0x94 => {
                    let k = memo.len() as u32;
                    memo.insert(
                        k,
                        stack.last().cloned().ok_or_else(|| malformed("MEMOIZE"))?,
                    );
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    stack.push(memo.get(&k).cloned().ok_or_else(|| malformed("BINGET"))?)
                }
                b'j' => {
                    let k = self.u32()?;
                    stack.push(memo.get(&k).cloned().ok_or_else(|| malformed("BINGET"))?)
                }
                b't' => {
                    let m = marks.pop().ok_or_else(|| malformed("TUPLE without MARK"))?;
                    let items = stack.split_off(m);
                    stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (opcode - 0x84) as usize;
                    if stack.len() < n {
                        return Err(malformed("TUPLEn on a short stack"));
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(items))
                }
                b'a' => {
                    let v = stack.pop().ok_or_else(|| malformed("APPEND"))?;
                    match stack.last_mut() {
                        Some(Value::List(l)) => l.push(v),
                        _ => return Err(malformed("APPEND to a non-list")),
                    }
                }
                b'e' => {
                    let m = marks
                        .pop()
                        .ok_or_else(|| malformed("APPENDS without MARK"))?;
                    let items = stack.split_off(m);
                    match stack.last_mut() {
                        Some(Value::List(l)) => l.extend(items),
                        _ => return Err(malformed("APPENDS to a non-list")),
                    }
                }
                b's' => {
                    let v = stack.pop().ok_or_else(|| malformed("SETITEM"))?;
                    let k = stack.pop().ok_or_else(|| malformed("SETITEM"))?;
                    match stack.last_mut() {
                        Some(Value::Dict(d)) => d.push((k, v)),
                        _ => return Err(malformed("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let m = marks
                        .pop()
                        .ok_or_else(|| malformed("SETITEMS without MARK"))?;
                    let items = stack.split_off(m);
                    if !items.len().is_multiple_of(2) {
                        return Err(malformed("SETITEMS with an odd item count"));
                    }
                    match stack.last_mut() {
                        Some(Value::Dict(d)) => {
                            let mut it = items.into_iter();
                            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                                d.push((k, v));
                            }
                        }
                        _ => return Err(malformed("SETITEMS on a non-dict")),
                    }
                }
                b'b' => {
                    // BUILD sets an object's state (an OrderedDict's `_metadata`): not needed.
                    stack.pop().ok_or_else(|| malformed("BUILD"))?;
                }
                b'Q' => {
                    let pid = stack.pop().ok_or_else(|| malformed("BINPERSID"))?;
                    stack.push(persistent_storage(pid)?)
                }
                b'R' | 0x81 => {
                    let args = stack.pop().ok_or_else(|| malformed("REDUCE"))?;
                    let callable = stack.pop().ok_or_else(|| malformed("REDUCE"))?;
                    stack.push(reduce(callable, args)?)
                }
                _ => return Err(TorchFileError::Opcode { opcode, at }),
            }
        }
    }
}

/// `('storage', <storage class>, key, location, numel[, view metadata])`.
fn persistent_storage(pid: Value) -> Result<Value, TorchFileError> {
    let Value::Tuple(items) = pid else {
        return Err(TorchFileError::Malformed(
            "persistent id is not a tuple".into(),
        ));
    };
    match items.as_slice() {
        [
            Value::Str(kind),
            Value::Global(_, class),
            Value::Str(key),
            ..,
        ] if kind == "storage" => Ok(Value::Storage {
            key: key.clone(),
            dtype: class.clone(),
        }),
        _ => Err(TorchFileError::Malformed(format!(
            "unexpected persistent id {items:?}"
        ))),
    }
}

fn usizes(v: &Value, what: &str) -> Result<Vec<usize>, TorchFileError> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => Err(TorchFileError::Malformed(format!("{what} holds {i:?}"))),
            })
            .collect(),
        _ => Err(TorchFileError::Malformed(format!("{what} is {v:?}"))),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, TorchFileError> {
    let Value::Global(module, name) = callable else {
        return Err(TorchFileError::Malformed(format!(
            "REDUCE of a non-global {callable:?}"
        )));
    };
    let items = match args {
        Value::Tuple(items) => items,
        other => vec![other],
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => match items.as_slice() {
            [
                Value::Storage { key, dtype },
                Value::Int(offset),
                size,
                stride,
                ..,
            ] => Ok(Value::Tensor(TensorRef {
                key: key.clone(),
                dtype: dtype.clone(),
                offset: usize::try_from(*offset)
                    .map_err(|_| TorchFileError::Malformed("negative storage offset".into()))?,
                size: usizes(size, "tensor size")?,
                stride: usizes(stride, "tensor stride")?,
            })),
            _ => Err(TorchFileError::Malformed(format!(
                "unexpected tensor arguments {items:?}"
            ))),
        },
        ("torch._utils", "_rebuild_parameter") => match items.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            other => Err(TorchFileError::Malformed(format!("parameter of {other:?}"))),
        },
        _ => Ok(Value::Opaque(format!("{module}.{name}"))),
    }
}

/// Reads a state dict of float tensors (name → tensor, in the file's order, which is the
/// module's parameter order) from the bytes of a legacy `torch.save` file.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, TorchFileError> {
    let mut r = Reader {
        data: bytes,
        pos: 0,
    };
    let is_zip = bytes.starts_with(b"PK\x03\x04");
    match r.pickle() {
        Ok(Value::Str(s)) if s == "<torch magic>" => {}
        _ => return Err(TorchFileError::NotLegacy(is_zip)),
    }
    match r.pickle()? {
        Value::Int(PROTOCOL_VERSION) => {}
        Value::Int(v) => return Err(TorchFileError::Protocol(v)),
        _ => return Err(TorchFileError::Malformed("protocol version".into())),
    }
    if let Value::Dict(info) = r.pickle()? {
        let big_endian = info
            .iter()
            .any(|(k, v)| *k == Value::Str("little_endian".into()) && *v == Value::Bool(false));
        if big_endian {
            return Err(TorchFileError::Malformed(
                "the file was written on a big-endian machine".into(),
            ));
        }
    }
    let Value::Dict(entries) = r.pickle()? else {
        return Err(TorchFileError::Malformed(
            "the saved object is not a state dict".into(),
        ));
    };
    let keys = match r.pickle()? {
        Value::List(k) => k,
        other => {
            return Err(TorchFileError::Malformed(format!(
                "storage keys are {other:?}"
            )));
        }
    };
    // The storages follow, in the order of the key list: an int64 element count, then the
    // elements (4 bytes each for FloatStorage).
    let mut storages: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(TorchFileError::Malformed(
                "storage key is not a string".into(),
            ));
        };
        let count = r
            .take(8)
            .map_err(|_| TorchFileError::Truncated("in a storage header"))?;
        let numel = u64::from_le_bytes(count.try_into().unwrap()) as usize;
        let bytes = numel
            .checked_mul(4)
            .and_then(|n| r.take(n).ok())
            .ok_or(TorchFileError::Truncated("in a storage"))?;
        let values = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        storages.insert(key, values);
    }
    let mut out = Vec::new();
    for (k, v) in entries {
        let Value::Str(name) = k else { continue };
        let Value::Tensor(t) = v else { continue };
        let fail = |why: String| TorchFileError::Tensor {
            name: name.clone(),
            why,
        };
        if t.dtype != "FloatStorage" {
            return Err(fail(format!("holds {} (only float32 is read)", t.dtype)));
        }
        let storage = storages
            .get(&t.key)
            .ok_or_else(|| fail(format!("its storage '{}' is not in the file", t.key)))?;
        if t.size.len() != t.stride.len() {
            return Err(fail("size and stride differ in rank".into()));
        }
        let numel: usize = t.size.iter().product();
        let mut data = Vec::with_capacity(numel);
        let mut index = vec![0usize; t.size.len()];
        for _ in 0..numel {
            let at = t.offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            data.push(
                *storage
                    .get(at)
                    .ok_or_else(|| fail("reaches past its storage".into()))?,
            );
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.size[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        out.push((
            name.clone(),
            Tensor {
                shape: t.size,
                data,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy file written by hand, opcode by opcode, as `torch.save` (protocol 2) writes
    /// `OrderedDict(w=tensor([[1., 2.], [3., 4.]]).t(), b=tensor([5.]))`.
    fn handmade() -> Vec<u8> {
        let mut f = Vec::new();
        // Magic number, protocol version, system info.
        f.extend([0x80, 2, 0x8a, 10]);
        f.extend(&MAGIC_NUMBER.to_le_bytes()[..10]);
        f.push(b'.');
        f.extend([0x80, 2, b'M']);
        f.extend(1001u16.to_le_bytes());
        f.push(b'.');
        f.extend([0x80, 2, b'}', b'(', b'X']);
        f.extend(13u32.to_le_bytes());
        f.extend(b"little_endian");
        f.extend([0x88, b'u', b'.']);
        // The state dict.
        f.extend([0x80, 2]);
        f.extend(b"ccollections\nOrderedDict\nq\x00)R");
        let tensor = |f: &mut Vec<u8>, name: &str, key: &str, size: &[u8], stride: &[u8]| {
            f.push(b'X');
            f.extend((name.len() as u32).to_le_bytes());
            f.extend(name.as_bytes());
            f.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
            f.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX");
            f.extend((key.len() as u32).to_le_bytes());
            f.extend(key.as_bytes());
            f.extend(b"X\x03\x00\x00\x00cpuK\x04NtQ");
            f.extend(b"K\x00");
            f.push(b'(');
            for s in size {
                f.extend([b'K', *s]);
            }
            f.push(b't');
            f.push(b'(');
            for s in stride {
                f.extend([b'K', *s]);
            }
            f.push(b't');
            f.extend(b"\x89ccollections\nOrderedDict\n)RtR");
        };
        f.push(b'(');
        tensor(&mut f, "w", "10", &[2, 2], &[1, 2]);
        tensor(&mut f, "b", "11", &[1], &[1]);
        f.extend(b"u}b.");
        // Storage keys, then each storage: its element count and its float32 elements.
        f.extend(b"\x80\x02](X\x02\x00\x00\x0010X\x02\x00\x00\x0011e.");
        for values in [[1f32, 2., 3., 4.].as_slice(), &[5.]] {
            f.extend((values.len() as u64).to_le_bytes());
            for v in values {
                f.extend(v.to_le_bytes());
            }
        }
        f
    }

    #[test]
    fn reads_a_handmade_state_dict_with_strides() {
        let sd = read_state_dict(&handmade()).unwrap();
        assert_eq!(sd.len(), 2);
        assert_eq!(sd[0].0, "w");
        assert_eq!(sd[0].1.shape, vec![2, 2]);
        // Storage [1, 2, 3, 4] viewed with strides (1, 2) is the transpose [[1, 3], [2, 4]].
        assert_eq!(sd[0].1.data, vec![1., 3., 2., 4.]);
        assert_eq!(sd[1].0, "b");
        assert_eq!(sd[1].1.data, vec![5.]);
    }

    #[test]
    fn rejects_other_files_clearly() {
        assert_eq!(
            read_state_dict(b"PK\x03\x04rest"),
            Err(TorchFileError::NotLegacy(true))
        );
        assert_eq!(
            read_state_dict(b"\x80\x02K\x01."),
            Err(TorchFileError::NotLegacy(false))
        );
        let mut f = handmade();
        f.truncate(f.len() - 3);
        assert_eq!(
            read_state_dict(&f),
            Err(TorchFileError::Truncated("in a storage"))
        );
    }
}
