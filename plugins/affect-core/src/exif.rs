// SPDX-License-Identifier: MPL-2.0
//! The orientation a JPEG photograph's EXIF block gives (tag 0x0112), as GStreamer's
//! `image-orientation` tag names it. Cameras and phones store the sensor's pixels and say in
//! this tag how to turn them for display; GStreamer's JPEG decoder does not read it, so the
//! analysis does, before faces are found.

/// The `image-orientation` value of EXIF orientation `value` (1-8), `None` for others.
///
/// EXIF names the transform that displays the stored image; GStreamer's names are the same
/// transforms: `rotate-90` is a quarter turn clockwise, `flip-rotate-*` a horizontal flip
/// followed by the rotation.
pub fn orientation_name(value: u16) -> Option<&'static str> {
    Some(match value {
        1 => "rotate-0",
        2 => "flip-rotate-0",
        3 => "rotate-180",
        4 => "flip-rotate-180",
        5 => "flip-rotate-270",
        6 => "rotate-90",
        7 => "flip-rotate-90",
        8 => "rotate-270",
        _ => return None,
    })
}

/// The EXIF orientation (1-8) of the JPEG file that starts with `jpeg`, when its APP1 EXIF
/// segment is within `jpeg` and has one. Anything malformed is `None`, never a panic: the
/// bytes come from any file.
pub fn jpeg_orientation(jpeg: &[u8]) -> Option<u16> {
    if jpeg.get(..2)? != [0xff, 0xd8] {
        return None;
    }
    let mut at = 2;
    // Markers up to the start of scan: APPn segments come first.
    while at + 4 <= jpeg.len() {
        if jpeg[at] != 0xff {
            return None;
        }
        let marker = jpeg[at + 1];
        if marker == 0xff {
            // Fill byte.
            at += 1;
            continue;
        }
        if marker == 0xda || marker == 0xd9 {
            return None;
        }
        let length = u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
        if length < 2 {
            return None;
        }
        let body = jpeg.get(at + 4..at + 2 + length)?;
        if marker == 0xe1
            && let Some(tiff) = body.strip_prefix(b"Exif\0\0")
            && let Some(value) = tiff_orientation(tiff)
        {
            return Some(value);
        }
        at += 2 + length;
    }
    None
}

/// The orientation tag of IFD0 of a TIFF structure (the body of an EXIF segment).
fn tiff_orientation(tiff: &[u8]) -> Option<u16> {
    let little = match tiff.get(..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |i: usize| -> Option<u16> {
        let b = tiff.get(i..i + 2)?;
        Some(if little {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    };
    let u32_at = |i: usize| -> Option<u32> {
        let b = tiff.get(i..i + 4)?;
        let b = [b[0], b[1], b[2], b[3]];
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = u32_at(4)? as usize;
    let entries = u16_at(ifd)? as usize;
    for k in 0..entries {
        let entry = ifd.checked_add(2 + 12 * k)?;
        if u16_at(entry)? == 0x0112 {
            // SHORT, count 1: the value sits in the first two bytes of the value field.
            let value = u16_at(entry + 8)?;
            return orientation_name(value).map(|_| value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG head with an APP0 segment, then an APP1 EXIF segment whose IFD0 holds
    /// `entries` (tag, value) as SHORTs, in the byte order `little`.
    fn jpeg_with(entries: &[(u16, u16)], little: bool) -> Vec<u8> {
        let w16 = |v: u16| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let w32 = |v: u32| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let mut tiff = Vec::new();
        tiff.extend_from_slice(if little { b"II" } else { b"MM" });
        tiff.extend_from_slice(&w16(42));
        tiff.extend_from_slice(&w32(8));
        tiff.extend_from_slice(&w16(entries.len() as u16));
        for &(tag, value) in entries {
            tiff.extend_from_slice(&w16(tag));
            tiff.extend_from_slice(&w16(3));
            tiff.extend_from_slice(&w32(1));
            tiff.extend_from_slice(&w16(value));
            tiff.extend_from_slice(&[0, 0]);
        }
        tiff.extend_from_slice(&w32(0));
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut jpeg = vec![0xff, 0xd8];
        // APP0 (JFIF) first, as most files have it.
        jpeg.extend_from_slice(&[0xff, 0xe0, 0, 16]);
        jpeg.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        jpeg.extend_from_slice(&[0xff, 0xe1]);
        jpeg.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        jpeg.extend_from_slice(&app1);
        jpeg.extend_from_slice(&[0xff, 0xda, 0, 2]);
        jpeg
    }

    #[test]
    fn orientation_is_read_in_both_byte_orders_among_other_tags() {
        for little in [true, false] {
            for value in 1..=8 {
                let jpeg = jpeg_with(&[(0x010f, 7), (0x0112, value), (0x011a, 72)], little);
                assert_eq!(jpeg_orientation(&jpeg), Some(value), "little {little}");
            }
        }
        assert_eq!(orientation_name(6), Some("rotate-90"));
        assert_eq!(orientation_name(8), Some("rotate-270"));
        assert_eq!(orientation_name(3), Some("rotate-180"));
    }

    #[test]
    fn files_without_it_or_broken_ones_give_none() {
        assert_eq!(jpeg_orientation(&jpeg_with(&[(0x010f, 1)], true)), None);
        // Out of range.
        assert_eq!(jpeg_orientation(&jpeg_with(&[(0x0112, 9)], true)), None);
        assert_eq!(jpeg_orientation(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(jpeg_orientation(&[]), None);
        // Every cut of a good file is None or the value, never a panic.
        let jpeg = jpeg_with(&[(0x0112, 6)], false);
        for cut in 0..jpeg.len() {
            let got = jpeg_orientation(&jpeg[..cut]);
            assert!(got.is_none() || got == Some(6));
        }
        // An IFD offset pointing far outside.
        let mut bad = jpeg_with(&[(0x0112, 6)], true);
        // The TIFF structure is the last 26 bytes before the 4 of the scan marker; its IFD
        // offset is 4 bytes into it.
        let ifd_offset = bad.len() - 4 - 26 + 4;
        bad[ifd_offset..ifd_offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(jpeg_orientation(&bad), None);
    }
}
