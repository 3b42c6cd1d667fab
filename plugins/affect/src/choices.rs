// SPDX-License-Identifier: MPL-2.0
//! Enumerations that several elements take as properties: `affectanalysisbin` forwards them
//! to its children with the same types, so they are defined once, here.

use gst::glib;

#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAffectExecutionProvider")]
pub enum ExecutionProvider {
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu = 0,
    #[enum_value(name = "NVIDIA CUDA", nick = "cuda")]
    Cuda = 1,
}

#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAffectAudioMissing")]
pub enum AudioMissing {
    #[enum_value(name = "Log-mel value of silence, as in training", nick = "silence")]
    Silence = 0,
    #[enum_value(name = "Zeros", nick = "zeros")]
    Zeros = 1,
    #[enum_value(name = "Skip the face (no result)", nick = "skip")]
    Skip = 2,
}

#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAffectFaceDetector")]
pub enum DetectorKind {
    #[enum_value(
        name = "Faces already in upstream region-of-interest meta",
        nick = "upstream"
    )]
    Upstream = 0,
    #[enum_value(
        name = "ONNX face detector (BlazeFace, YuNet, SCRFD, UltraFace layouts)",
        nick = "onnx"
    )]
    Onnx = 1,
    #[enum_value(name = "OpenCV Haar cascade", nick = "haar")]
    Haar = 2,
    #[enum_value(name = "The whole frame, or the region property", nick = "full-frame")]
    FullFrame = 3,
    #[enum_value(
        name = "MTCNN face detector with five landmarks (models/mtcnn-*.onnx)",
        nick = "mtcnn"
    )]
    Mtcnn = 4,
    #[enum_value(
        name = "BlazeFace on video streams, MTCNN on still images (else MTCNN, else the Haar cascade, as their files are found)",
        nick = "auto"
    )]
    Auto = 5,
    #[enum_value(
        name = "MediaPipe BlazeFace with eyes, nose and mouth centre, tiled for small faces (models/blazeface-back.onnx)",
        nick = "blazeface"
    )]
    Blazeface = 6,
}
