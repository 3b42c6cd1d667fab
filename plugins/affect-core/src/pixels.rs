// SPDX-License-Identifier: MPL-2.0
//! Raw video frames of the formats the elements accept, converted to the packed RGB8 that
//! alignment and the detectors read, and to the grey plane the Haar detector reads.
//!
//! YUV conversion follows the frame's colour matrix and range (BT.601 or BT.709, limited or
//! full), as `videoconvert` does, so a crop cut from I420 equals one cut from the same frame
//! converted to RGB upstream within rounding.

use thiserror::Error;

/// Pixel layouts the elements read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Rgb,
    Bgr,
    /// 4 bytes per pixel, red first; the 4th byte (alpha or padding) is ignored.
    Rgbx,
    /// 4 bytes per pixel, blue first.
    Bgrx,
    /// Planar 4:2:0: Y, then U and V at half resolution.
    I420,
    /// Semi-planar 4:2:0: Y, then interleaved UV at half resolution.
    Nv12,
}

/// YUV to RGB matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum YuvMatrix {
    #[default]
    Bt601,
    Bt709,
}

/// The planes of one frame: byte offsets into the frame's data and row strides, as the media
/// framework reports them (planes may be padded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub offsets: [usize; 3],
    pub strides: [usize; 3],
    pub matrix: YuvMatrix,
    /// Luma in 0..=255 instead of 16..=235 (chroma 0..=255 instead of 16..=240).
    pub full_range: bool,
}

#[derive(Clone, Debug, PartialEq, Error)]
pub enum PixelError {
    #[error("{format:?} frame of {width}x{height} needs {needed} bytes, the buffer holds {got}")]
    TooSmall {
        format: PixelFormat,
        width: usize,
        height: usize,
        needed: usize,
        got: usize,
    },
    #[error("frame size {width}x{height} is not usable")]
    BadSize { width: usize, height: usize },
}

impl FrameLayout {
    /// Tightly packed planes (no row padding), for tests and frames made in memory.
    pub fn packed(format: PixelFormat, width: usize, height: usize) -> Self {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        let (offsets, strides) = match format {
            PixelFormat::Rgb | PixelFormat::Bgr => ([0, 0, 0], [width * 3, 0, 0]),
            PixelFormat::Rgbx | PixelFormat::Bgrx => ([0, 0, 0], [width * 4, 0, 0]),
            PixelFormat::I420 => (
                [0, width * height, width * height + cw * ch],
                [width, cw, cw],
            ),
            PixelFormat::Nv12 => ([0, width * height, 0], [width, cw * 2, 0]),
        };
        Self {
            format,
            width,
            height,
            offsets,
            strides,
            matrix: YuvMatrix::Bt601,
            full_range: false,
        }
    }

    /// Bytes a buffer must hold for this layout.
    pub fn min_len(&self) -> usize {
        let (w, h) = (self.width, self.height);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let plane = |i: usize, rows: usize, row_bytes: usize| {
            if rows == 0 {
                0
            } else {
                self.offsets[i] + self.strides[i] * (rows - 1) + row_bytes
            }
        };
        match self.format {
            PixelFormat::Rgb | PixelFormat::Bgr => plane(0, h, w * 3),
            PixelFormat::Rgbx | PixelFormat::Bgrx => plane(0, h, w * 4),
            PixelFormat::I420 => plane(0, h, w).max(plane(1, ch, cw)).max(plane(2, ch, cw)),
            PixelFormat::Nv12 => plane(0, h, w).max(plane(1, ch, cw * 2)),
        }
    }

    fn check(&self, len: usize) -> Result<(), PixelError> {
        if self.width == 0 || self.height == 0 {
            return Err(PixelError::BadSize {
                width: self.width,
                height: self.height,
            });
        }
        let needed = self.min_len();
        if len < needed {
            return Err(PixelError::TooSmall {
                format: self.format,
                width: self.width,
                height: self.height,
                needed,
                got: len,
            });
        }
        Ok(())
    }

    /// Whether the frame already is packed RGB8 that alignment can read in place.
    pub fn is_rgb(&self) -> bool {
        self.format == PixelFormat::Rgb
    }
}

/// Fixed-point (Q16) coefficients of a YUV to RGB conversion.
struct YuvCoefficients {
    y_offset: i32,
    y_scale: i32,
    r_v: i32,
    g_u: i32,
    g_v: i32,
    b_u: i32,
}

impl YuvCoefficients {
    fn new(matrix: YuvMatrix, full_range: bool) -> Self {
        let (kr, kb) = match matrix {
            YuvMatrix::Bt601 => (0.299, 0.114),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
        };
        let kg = 1.0 - kr - kb;
        let (y_offset, y_scale, c_scale) = if full_range {
            (0, 1.0, 1.0)
        } else {
            (16, 255.0 / 219.0, 255.0 / 224.0)
        };
        let q = |v: f64| (v * 65536.0).round() as i32;
        Self {
            y_offset,
            y_scale: q(y_scale),
            r_v: q(2.0 * (1.0 - kr) * c_scale),
            g_u: q(-2.0 * (1.0 - kb) * kb / kg * c_scale),
            g_v: q(-2.0 * (1.0 - kr) * kr / kg * c_scale),
            b_u: q(2.0 * (1.0 - kb) * c_scale),
        }
    }

    #[inline]
    fn rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let y = (y as i32 - self.y_offset) * self.y_scale;
        let (u, v) = (u as i32 - 128, v as i32 - 128);
        let clamp = |x: i32| ((x + 32768) >> 16).clamp(0, 255) as u8;
        [
            clamp(y + self.r_v * v),
            clamp(y + self.g_u * u + self.g_v * v),
            clamp(y + self.b_u * u),
        ]
    }
}

/// Converts a frame to tightly packed RGB8 (`width * 3` bytes a row) in `out`, resized as
/// needed.
pub fn to_rgb(data: &[u8], layout: &FrameLayout, out: &mut Vec<u8>) -> Result<(), PixelError> {
    layout.check(data.len())?;
    let (w, h) = (layout.width, layout.height);
    out.resize(w * h * 3, 0);
    let s0 = layout.strides[0];
    let o0 = layout.offsets[0];
    match layout.format {
        PixelFormat::Rgb | PixelFormat::Bgr | PixelFormat::Rgbx | PixelFormat::Bgrx => {
            let bpp = if matches!(layout.format, PixelFormat::Rgb | PixelFormat::Bgr) {
                3
            } else {
                4
            };
            let swap = matches!(layout.format, PixelFormat::Bgr | PixelFormat::Bgrx);
            for (row, dst) in out.chunks_exact_mut(w * 3).enumerate() {
                let src = &data[o0 + row * s0..o0 + row * s0 + w * bpp];
                if bpp == 3 && !swap {
                    dst.copy_from_slice(src);
                    continue;
                }
                for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(bpp)) {
                    if swap {
                        d.copy_from_slice(&[s[2], s[1], s[0]]);
                    } else {
                        d.copy_from_slice(&s[..3]);
                    }
                }
            }
        }
        PixelFormat::I420 | PixelFormat::Nv12 => {
            let c = YuvCoefficients::new(layout.matrix, layout.full_range);
            for (row, dst) in out.chunks_exact_mut(w * 3).enumerate() {
                let y_row = &data[o0 + row * s0..o0 + row * s0 + w];
                let crow = row / 2;
                for (col, d) in dst.chunks_exact_mut(3).enumerate() {
                    let (u, v) = match layout.format {
                        PixelFormat::I420 => (
                            data[layout.offsets[1] + crow * layout.strides[1] + col / 2],
                            data[layout.offsets[2] + crow * layout.strides[2] + col / 2],
                        ),
                        _ => {
                            let base = layout.offsets[1] + crow * layout.strides[1] + (col / 2) * 2;
                            (data[base], data[base + 1])
                        }
                    };
                    d.copy_from_slice(&c.rgb(y_row[col], u, v));
                }
            }
        }
    }
    Ok(())
}

/// The grey plane a Haar cascade reads: the luma plane itself for YUV frames (Haar features
/// are variance-normalised, so the luma range does not matter), `0.299 R + 0.587 G + 0.114 B`
/// otherwise. Tightly packed (`width` bytes a row) in `out`.
pub fn to_grey(data: &[u8], layout: &FrameLayout, out: &mut Vec<u8>) -> Result<(), PixelError> {
    layout.check(data.len())?;
    let (w, h) = (layout.width, layout.height);
    out.resize(w * h, 0);
    let (o0, s0) = (layout.offsets[0], layout.strides[0]);
    match layout.format {
        PixelFormat::I420 | PixelFormat::Nv12 => {
            for (row, dst) in out.chunks_exact_mut(w).enumerate() {
                dst.copy_from_slice(&data[o0 + row * s0..o0 + row * s0 + w]);
            }
        }
        _ => {
            let (bpp, swap) = match layout.format {
                PixelFormat::Rgb => (3, false),
                PixelFormat::Bgr => (3, true),
                PixelFormat::Rgbx => (4, false),
                _ => (4, true),
            };
            for (row, dst) in out.chunks_exact_mut(w).enumerate() {
                let src = &data[o0 + row * s0..o0 + row * s0 + w * bpp];
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(bpp)) {
                    let (r, b) = if swap { (s[2], s[0]) } else { (s[0], s[2]) };
                    *d = crate::detect::haar::grey_of(r, s[1], b);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The float BT.601/BT.709 formulas the fixed-point conversion must reproduce.
    fn reference(y: u8, u: u8, v: u8, matrix: YuvMatrix, full: bool) -> [f64; 3] {
        let (kr, kb) = match matrix {
            YuvMatrix::Bt601 => (0.299, 0.114),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
        };
        let kg = 1.0 - kr - kb;
        let (yy, pb, pr) = if full {
            (
                y as f64 / 255.0,
                (u as f64 - 128.0) / 255.0,
                (v as f64 - 128.0) / 255.0,
            )
        } else {
            (
                (y as f64 - 16.0) / 219.0,
                (u as f64 - 128.0) / 224.0,
                (v as f64 - 128.0) / 224.0,
            )
        };
        let r = yy + 2.0 * (1.0 - kr) * pr;
        let b = yy + 2.0 * (1.0 - kb) * pb;
        let g = (yy - kr * r - kb * b) / kg;
        [r, g, b].map(|c| (c * 255.0).clamp(0.0, 255.0))
    }

    #[test]
    fn yuv_conversion_matches_the_matrix_formulas() {
        for matrix in [YuvMatrix::Bt601, YuvMatrix::Bt709] {
            for full in [false, true] {
                let c = YuvCoefficients::new(matrix, full);
                for y in (0..=255).step_by(5) {
                    for u in (0..=255).step_by(15) {
                        for v in (0..=255).step_by(15) {
                            let got = c.rgb(y as u8, u as u8, v as u8);
                            let want = reference(y as u8, u as u8, v as u8, matrix, full);
                            for ch in 0..3 {
                                assert!(
                                    (got[ch] as f64 - want[ch]).abs() <= 1.0,
                                    "{matrix:?} full={full} yuv=({y},{u},{v}) ch {ch}: {} vs {}",
                                    got[ch],
                                    want[ch]
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn packed_formats_reorder_channels_and_respect_strides() {
        let (w, h) = (3, 2);
        // RGB reference pixels.
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect();
        for format in [
            PixelFormat::Rgb,
            PixelFormat::Bgr,
            PixelFormat::Rgbx,
            PixelFormat::Bgrx,
        ] {
            let bpp = if matches!(format, PixelFormat::Rgb | PixelFormat::Bgr) {
                3
            } else {
                4
            };
            let stride = w * bpp + 5;
            let mut data = vec![0xEE; stride * h];
            for p in 0..w * h {
                let (row, col) = (p / w, p % w);
                let px = &rgb[p * 3..p * 3 + 3];
                let dst = &mut data[row * stride + col * bpp..];
                match format {
                    PixelFormat::Rgb | PixelFormat::Rgbx => dst[..3].copy_from_slice(px),
                    _ => dst[..3].copy_from_slice(&[px[2], px[1], px[0]]),
                }
            }
            let mut layout = FrameLayout::packed(format, w, h);
            layout.strides[0] = stride;
            let mut out = Vec::new();
            to_rgb(&data, &layout, &mut out).unwrap();
            assert_eq!(out, rgb, "{format:?}");
            let mut grey = Vec::new();
            to_grey(&data, &layout, &mut grey).unwrap();
            for p in 0..w * h {
                let px = &rgb[p * 3..p * 3 + 3];
                let want = 0.299 * px[0] as f64 + 0.587 * px[1] as f64 + 0.114 * px[2] as f64;
                assert!((grey[p] as f64 - want).abs() <= 0.5 + 1e-9, "{format:?}");
            }
        }
    }

    #[test]
    fn i420_and_nv12_agree_and_use_shared_chroma() {
        let (w, h) = (4, 4);
        let y: Vec<u8> = (0..16).map(|i| 30 + i * 12).collect();
        let u = [90u8, 160, 120, 200];
        let v = [200u8, 60, 128, 100];
        let mut i420 = y.clone();
        i420.extend(u);
        i420.extend(v);
        let mut nv12 = y.clone();
        for k in 0..4 {
            nv12.push(u[k]);
            nv12.push(v[k]);
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        to_rgb(&i420, &FrameLayout::packed(PixelFormat::I420, w, h), &mut a).unwrap();
        to_rgb(&nv12, &FrameLayout::packed(PixelFormat::Nv12, w, h), &mut b).unwrap();
        assert_eq!(a, b);
        let c = YuvCoefficients::new(YuvMatrix::Bt601, false);
        // Pixel (3, 2) uses chroma sample (1, 1) = index 3.
        assert_eq!(
            &a[(2 * w + 3) * 3..(2 * w + 3) * 3 + 3],
            &c.rgb(y[2 * w + 3], u[3], v[3])
        );
        let mut grey = Vec::new();
        to_grey(
            &i420,
            &FrameLayout::packed(PixelFormat::I420, w, h),
            &mut grey,
        )
        .unwrap();
        assert_eq!(grey, y);
    }

    #[test]
    fn short_buffers_are_refused() {
        let layout = FrameLayout::packed(PixelFormat::I420, 64, 48);
        let err = to_rgb(&[0; 100], &layout, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("needs 4608 bytes"), "{err}");
    }
}
