// SPDX-License-Identifier: MPL-2.0
//! Raw video frames as affect-core reads them: the plane layout of the negotiated caps and of
//! each buffer.

use affect_core::pixels::{FrameLayout, PixelFormat, YuvMatrix};

/// Raw video formats the elements read (those `frame_layout` maps).
pub const VIDEO_FORMATS: [&str; 8] = ["RGB", "BGR", "RGBx", "BGRx", "RGBA", "BGRA", "I420", "NV12"];

/// Caps of the raw video the elements read: any size and rate in `VIDEO_FORMATS`.
pub fn video_caps() -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", gst::List::new(VIDEO_FORMATS))
        .field("width", gst::IntRange::new(1, i32::MAX))
        .field("height", gst::IntRange::new(1, i32::MAX))
        .field("framerate", gst::FractionRange::new((0, 1), (i32::MAX, 1)))
        .build()
}

/// The layout of frames of `info`, for the formats the elements accept.
pub fn frame_layout(info: &gst_video::VideoInfo) -> Option<FrameLayout> {
    use gst_video::VideoFormat as F;
    let format = match info.format() {
        F::Rgb => PixelFormat::Rgb,
        F::Bgr => PixelFormat::Bgr,
        F::Rgbx | F::Rgba => PixelFormat::Rgbx,
        F::Bgrx | F::Bgra => PixelFormat::Bgrx,
        F::I420 => PixelFormat::I420,
        F::Nv12 => PixelFormat::Nv12,
        _ => return None,
    };
    let mut offsets = [0usize; 3];
    let mut strides = [0usize; 3];
    for (i, (o, s)) in info.offset().iter().zip(info.stride()).take(3).enumerate() {
        offsets[i] = *o;
        strides[i] = (*s).max(0) as usize;
    }
    let colorimetry = info.colorimetry();
    Some(FrameLayout {
        format,
        width: info.width() as usize,
        height: info.height() as usize,
        offsets,
        strides,
        matrix: if colorimetry.matrix() == gst_video::VideoColorMatrix::Bt709 {
            YuvMatrix::Bt709
        } else {
            YuvMatrix::Bt601
        },
        full_range: colorimetry.range() == gst_video::VideoColorRange::Range0_255,
    })
}

/// The layout of one buffer: the caps' layout, with the planes a video meta describes (a
/// producer may pad rows or planes differently from the caps' defaults).
pub fn buffer_layout(base: &FrameLayout, buffer: &gst::BufferRef) -> FrameLayout {
    let mut layout = *base;
    if let Some(meta) = buffer.meta::<gst_video::VideoMeta>() {
        for (i, (o, s)) in meta.offset().iter().zip(meta.stride()).take(3).enumerate() {
            layout.offsets[i] = *o;
            layout.strides[i] = (*s).max(0) as usize;
        }
    }
    layout
}
