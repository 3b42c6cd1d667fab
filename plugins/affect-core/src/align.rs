// SPDX-License-Identifier: MPL-2.0
//! Face alignment: the 5-point similarity transform onto the ArcFace template and the warp
//! that cuts the aligned crop out of a frame. The face-crop element and the training data
//! writer both use this code, so a model sees the same crops in training and in a pipeline.
//!
//! Coordinates are in pixels with integer values at pixel centres (OpenCV's convention):
//! pixel `(col, row)` of an image is sampled at `x = col`, `y = row`.
//!
//! The warp equals `cv2.warpAffine(frame, M, (w, h), flags=cv2.INTER_LINEAR)` with the default
//! constant border of 0: the source position of each crop pixel is rounded to 1/32 pixel and
//! bilinear weights are exact products of those 1/32 steps, as OpenCV's fixed-point path does,
//! and neighbours outside the frame count as 0.

use thiserror::Error;

/// The ArcFace (InsightFace) 112x112 template: left eye, right eye, nose tip, left mouth
/// corner, right mouth corner; "left" is the image's left.
pub const ARCFACE_112: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// The ArcFace template scaled to a square crop of `size` pixels.
pub fn arcface_template(size: u32) -> [[f32; 2]; 5] {
    let s = size as f32 / 112.0;
    ARCFACE_112.map(|[x, y]| [x * s, y * s])
}

/// Problems with alignment inputs.
#[derive(Debug, Error, PartialEq)]
pub enum AlignError {
    #[error("{src} source points for {dst} destination points")]
    PointCountMismatch { src: usize, dst: usize },
    #[error("a similarity transform needs at least 2 points, got {0}")]
    TooFewPoints(usize),
    #[error("the source points coincide; no transform maps them")]
    Degenerate,
    #[error("the transform is singular and has no inverse")]
    Singular,
    #[error("image of {width}x{height} with row stride {stride} needs {needed} bytes, got {got}")]
    ImageSize {
        width: u32,
        height: u32,
        stride: usize,
        needed: usize,
        got: usize,
    },
    #[error("the output of {width}x{height} RGB needs {needed} bytes, got {got}")]
    OutputSize {
        width: u32,
        height: u32,
        needed: usize,
        got: usize,
    },
}

/// A 2D affine map `x' = m[0][0] x + m[0][1] y + m[0][2]`, `y' = m[1][0] x + m[1][1] y + m[1][2]`
/// (the 2x3 matrix OpenCV's `warpAffine` takes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    pub m: [[f64; 3]; 2],
}

impl Affine {
    /// Maps a point.
    pub fn apply(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let (x, y) = (x as f64, y as f64);
        let m = &self.m;
        [
            (m[0][0] * x + m[0][1] * y + m[0][2]) as f32,
            (m[1][0] * x + m[1][1] * y + m[1][2]) as f32,
        ]
    }

    /// The inverse map.
    pub fn inverse(&self) -> Result<Affine, AlignError> {
        let [[a, b, c], [d, e, f]] = self.m;
        let det = a * e - b * d;
        if det == 0.0 || !det.is_finite() {
            return Err(AlignError::Singular);
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Ok(Affine {
            m: [[ia, ib, -(ia * c + ib * f)], [id, ie, -(id * c + ie * f)]],
        })
    }
}

/// A similarity transform (rotation, uniform scale, translation; no reflection):
/// `x' = a x - b y + tx`, `y' = b x + a y + ty`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    /// The least-squares similarity mapping `src` onto `dst` (Umeyama's estimate without
    /// reflection, as `skimage.transform.SimilarityTransform.estimate`). In the plane the
    /// scaled rotations `[[a, -b], [b, a]]` form a linear space, so Umeyama's solution is the
    /// closed form below on the centred points.
    pub fn estimate(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Result<Similarity, AlignError> {
        if src.len() != dst.len() {
            return Err(AlignError::PointCountMismatch {
                src: src.len(),
                dst: dst.len(),
            });
        }
        if src.len() < 2 {
            return Err(AlignError::TooFewPoints(src.len()));
        }
        let n = src.len() as f64;
        let centroid = |pts: &[[f32; 2]]| {
            let (sx, sy) = pts.iter().fold((0.0, 0.0), |(sx, sy), p| {
                (sx + p[0] as f64, sy + p[1] as f64)
            });
            (sx / n, sy / n)
        };
        let (msx, msy) = centroid(src);
        let (mdx, mdy) = centroid(dst);
        let (mut norm, mut dot, mut cross) = (0.0, 0.0, 0.0);
        for (s, d) in src.iter().zip(dst) {
            let (sx, sy) = (s[0] as f64 - msx, s[1] as f64 - msy);
            let (dx, dy) = (d[0] as f64 - mdx, d[1] as f64 - mdy);
            norm += sx * sx + sy * sy;
            dot += sx * dx + sy * dy;
            cross += sx * dy - sy * dx;
        }
        if norm <= f64::EPSILON * n {
            return Err(AlignError::Degenerate);
        }
        let a = dot / norm;
        let b = cross / norm;
        Ok(Similarity {
            a,
            b,
            tx: mdx - (a * msx - b * msy),
            ty: mdy - (b * msx + a * msy),
        })
    }

    /// The transform that maps 5 landmarks (ArcFace order, frame pixels) onto the ArcFace
    /// template of a `size` x `size` crop.
    pub fn to_arcface(landmarks: &[[f32; 2]; 5], size: u32) -> Result<Similarity, AlignError> {
        Similarity::estimate(landmarks, &arcface_template(size))
    }

    /// Scale factor.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// Rotation angle in radians (counter-clockwise in a y-up frame, clockwise on screen).
    pub fn rotation(&self) -> f64 {
        self.b.atan2(self.a)
    }

    /// Maps a point.
    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        self.affine().apply(p)
    }

    /// The 2x3 matrix.
    pub fn affine(&self) -> Affine {
        Affine {
            m: [[self.a, -self.b, self.tx], [self.b, self.a, self.ty]],
        }
    }

    /// The inverse similarity.
    pub fn inverse(&self) -> Result<Similarity, AlignError> {
        let s2 = self.a * self.a + self.b * self.b;
        if s2 == 0.0 || !s2.is_finite() {
            return Err(AlignError::Singular);
        }
        let (a, b) = (self.a / s2, -self.b / s2);
        Ok(Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// The transform for a face known only by its box `[x, y, w, h]` (frame pixels): a square of
/// side `max(w, h) * (1 + margin)` around the box centre, scaled onto a `size` x `size` crop.
pub fn box_crop_transform(
    bbox: [f32; 4],
    margin: f32,
    size: u32,
) -> Result<Similarity, AlignError> {
    let side = bbox[2].max(bbox[3]) as f64 * (1.0 + margin as f64);
    if side <= 0.0 || !side.is_finite() {
        return Err(AlignError::Degenerate);
    }
    let s = size as f64 / side;
    // The box is in edge coordinates (it covers x .. x + w); in pixel-centre coordinates its
    // centre is half a pixel less. Pixel centres run 0..size-1, so the crop's centre is at
    // (size - 1) / 2: a box of the crop's size maps onto it pixel for pixel.
    let cx = bbox[0] as f64 + bbox[2] as f64 / 2.0 - 0.5;
    let cy = bbox[1] as f64 + bbox[3] as f64 / 2.0 - 0.5;
    let c = (size as f64 - 1.0) / 2.0;
    Ok(Similarity {
        a: s,
        b: 0.0,
        tx: c - s * cx,
        ty: c - s * cy,
    })
}

/// A borrowed packed RGB8 image whose rows start `stride` bytes apart.
#[derive(Clone, Copy, Debug)]
pub struct RgbImage<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub stride: usize,
}

impl<'a> RgbImage<'a> {
    /// Checks that `data` holds `height` rows of `width` RGB pixels `stride` bytes apart.
    pub fn new(data: &'a [u8], width: u32, height: u32, stride: usize) -> Result<Self, AlignError> {
        let row = width as usize * 3;
        let needed = if height == 0 {
            0
        } else {
            stride * (height as usize - 1) + row
        };
        if stride < row || data.len() < needed {
            return Err(AlignError::ImageSize {
                width,
                height,
                stride,
                needed,
                got: data.len(),
            });
        }
        Ok(RgbImage {
            data,
            width,
            height,
            stride,
        })
    }
}

/// Sub-pixel steps of the source position (OpenCV's `INTER_BITS = 5`).
const SUBPIXEL_BITS: i32 = 5;
const SUBPIXEL: i32 = 1 << SUBPIXEL_BITS;
const SUBPIXEL_MASK: i32 = SUBPIXEL - 1;

/// `floor(v)` for |v| < 2^31 without a libm call (truncation, corrected for negatives).
#[inline]
fn floor_i32(v: f64) -> i32 {
    let t = v as i32;
    t - ((v < t as f64) as i32)
}

/// Warps `src` into the packed RGB8 `out` of `out_width` x `out_height` pixels with the map
/// `frame_to_crop` (bilinear, out-of-frame neighbours = 0). Allocates nothing.
pub fn warp_rgb8(
    src: &RgbImage<'_>,
    frame_to_crop: &Affine,
    out: &mut [u8],
    out_width: u32,
    out_height: u32,
) -> Result<(), AlignError> {
    let needed = out_width as usize * out_height as usize * 3;
    if out.len() < needed {
        return Err(AlignError::OutputSize {
            width: out_width,
            height: out_height,
            needed,
            got: out.len(),
        });
    }
    let inv = frame_to_crop.inverse()?;
    let [[a, b, c], [d, e, f]] = inv.m;
    let (w, h) = (src.width as i32, src.height as i32);
    let stride = src.stride;
    let data = src.data;
    // One RGB sample of the frame, or black outside it.
    let pixel = |x: i32, y: i32| -> [u32; 3] {
        if x < 0 || y < 0 || x >= w || y >= h {
            return [0; 3];
        }
        let i = y as usize * stride + x as usize * 3;
        [data[i] as u32, data[i + 1] as u32, data[i + 2] as u32]
    };
    let scale = SUBPIXEL as f64;
    let s = SUBPIXEL as u32;
    let half = 1u32 << (2 * SUBPIXEL_BITS - 1);
    for (row, out_row) in out[..needed]
        .chunks_exact_mut(out_width as usize * 3)
        .enumerate()
    {
        let y = row as f64;
        // Source position in 1/32 pixel, plus one half step so that flooring rounds.
        let (row_x, row_y) = ((b * y + c) * scale + 0.5, (e * y + f) * scale + 0.5);
        let (step_x, step_y) = (a * scale, d * scale);
        for (col, px) in out_row.chunks_exact_mut(3).enumerate() {
            let x = col as f64;
            let sx = step_x * x + row_x;
            let sy = step_y * x + row_y;
            // Far outside the frame (or not finite): black, and no overflow below.
            if !(sx.abs() < 1e9 && sy.abs() < 1e9) {
                px.fill(0);
                continue;
            }
            let (qx, qy) = (floor_i32(sx), floor_i32(sy));
            let (x0, y0) = (qx >> SUBPIXEL_BITS, qy >> SUBPIXEL_BITS);
            if x0 < -1 || y0 < -1 || x0 >= w || y0 >= h {
                px.fill(0);
                continue;
            }
            let fx = (qx & SUBPIXEL_MASK) as u32;
            let fy = (qy & SUBPIXEL_MASK) as u32;
            let weights = [(s - fx) * (s - fy), fx * (s - fy), (s - fx) * fy, fx * fy];
            if x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h {
                let i00 = y0 as usize * stride + x0 as usize * 3;
                let i10 = i00 + stride;
                let top = &data[i00..i00 + 6];
                let bottom = &data[i10..i10 + 6];
                for ch in 0..3 {
                    let acc = weights[0] * top[ch] as u32
                        + weights[1] * top[ch + 3] as u32
                        + weights[2] * bottom[ch] as u32
                        + weights[3] * bottom[ch + 3] as u32;
                    px[ch] = ((acc + half) >> (2 * SUBPIXEL_BITS)) as u8;
                }
            } else {
                let taps = [
                    pixel(x0, y0),
                    pixel(x0 + 1, y0),
                    pixel(x0, y0 + 1),
                    pixel(x0 + 1, y0 + 1),
                ];
                for (ch, o) in px.iter_mut().enumerate() {
                    let acc = weights[0] * taps[0][ch]
                        + weights[1] * taps[1][ch]
                        + weights[2] * taps[2][ch]
                        + weights[3] * taps[3][ch];
                    *o = ((acc + half) >> (2 * SUBPIXEL_BITS)) as u8;
                }
            }
        }
    }
    Ok(())
}

/// Cuts the `size` x `size` ArcFace-aligned crop of the face with `landmarks` out of `src`
/// into `out` (packed RGB8) and returns the transform used.
pub fn crop_aligned(
    src: &RgbImage<'_>,
    landmarks: &[[f32; 2]; 5],
    size: u32,
    out: &mut [u8],
) -> Result<Similarity, AlignError> {
    let t = Similarity::to_arcface(landmarks, size)?;
    warp_rgb8(src, &t.affine(), out, size, size)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_maps_onto_itself() {
        let t = Similarity::estimate(&ARCFACE_112, &ARCFACE_112).unwrap();
        assert!((t.a - 1.0).abs() < 1e-9 && t.b.abs() < 1e-9);
        assert!(t.tx.abs() < 1e-6 && t.ty.abs() < 1e-6);
        let big = arcface_template(224);
        assert_eq!(big[0], [38.2946 * 2.0, 51.6963 * 2.0]);
    }

    #[test]
    fn recovers_known_similarity_and_inverse() {
        let truth = Similarity {
            a: 2.0 * 0.3f64.cos(),
            b: 2.0 * 0.3f64.sin(),
            tx: 100.0,
            ty: -20.0,
        };
        let moved: Vec<[f32; 2]> = ARCFACE_112.iter().map(|&p| truth.apply(p)).collect();
        let t = Similarity::estimate(&ARCFACE_112, &moved).unwrap();
        assert!((t.scale() - 2.0).abs() < 1e-5);
        assert!((t.rotation() - 0.3).abs() < 1e-5);
        let inv = t.inverse().unwrap();
        for (p, q) in ARCFACE_112.iter().zip(&moved) {
            let back = inv.apply(*q);
            assert!((back[0] - p[0]).abs() < 1e-3 && (back[1] - p[1]).abs() < 1e-3);
        }
        let ia = t.affine().inverse().unwrap();
        let ii = inv.affine();
        for r in 0..2 {
            for c in 0..3 {
                assert!((ia.m[r][c] - ii.m[r][c]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn box_crop_centres_the_box() {
        // The box covers x 100..140, y 50..130: its centre in pixel-centre coordinates is
        // (119.5, 89.5), which lands on the crop's centre (55.5, 55.5).
        let t = box_crop_transform([100.0, 50.0, 40.0, 80.0], 0.25, 112).unwrap();
        let c = t.apply([119.5, 89.5]);
        assert!((c[0] - 55.5).abs() < 1e-4 && (c[1] - 55.5).abs() < 1e-4);
        // 80 px * 1.25 = 100 px spans the crop's 112 px.
        assert!((t.scale() - 1.12).abs() < 1e-9);
        // A box of the crop's size maps onto it pixel for pixel.
        let t = box_crop_transform([0.0, 0.0, 64.0, 64.0], 0.0, 64).unwrap();
        for p in [[0.0, 0.0], [63.0, 63.0], [10.0, 40.0]] {
            let q = t.apply(p);
            assert!(
                (q[0] - p[0]).abs() < 1e-9 && (q[1] - p[1]).abs() < 1e-9,
                "{p:?} -> {q:?}"
            );
        }
    }

    #[test]
    fn identity_warp_copies_and_pads_with_black() {
        let (w, h, stride) = (5u32, 4u32, 17usize);
        let mut data = vec![0u8; stride * h as usize];
        for y in 0..h as usize {
            for x in 0..w as usize * 3 {
                data[y * stride + x] = (y * 40 + x * 3) as u8;
            }
        }
        let img = RgbImage::new(&data, w, h, stride).unwrap();
        let shift = Affine {
            m: [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
        };
        let mut out = vec![7u8; 6 * 4 * 3];
        warp_rgb8(&img, &shift, &mut out, 6, 4).unwrap();
        for y in 0..4usize {
            assert_eq!(&out[y * 18..y * 18 + 3], &[0, 0, 0]);
            assert_eq!(
                &out[y * 18 + 3..y * 18 + 18],
                &data[y * stride..y * stride + 15]
            );
        }
    }

    #[test]
    fn bad_buffers_are_errors() {
        assert!(matches!(
            RgbImage::new(&[0u8; 10], 2, 2, 6),
            Err(AlignError::ImageSize { .. })
        ));
        let data = [0u8; 12];
        let img = RgbImage::new(&data, 2, 2, 6).unwrap();
        let id = Similarity {
            a: 1.0,
            b: 0.0,
            tx: 0.0,
            ty: 0.0,
        }
        .affine();
        assert!(matches!(
            warp_rgb8(&img, &id, &mut [0u8; 5], 2, 2),
            Err(AlignError::OutputSize { .. })
        ));
        assert_eq!(
            Similarity::estimate(&[[1.0, 1.0]; 3], &[[0.0, 0.0]; 3]),
            Err(AlignError::Degenerate)
        );
    }
}
