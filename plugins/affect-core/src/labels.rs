// SPDX-License-Identifier: MPL-2.0
//! Label sets of the Aff-Wild2 / ABAW challenges, in the order the challenge files use.

/// The 12 facial action units annotated in Aff-Wild2, in the ABAW annotation column order.
pub const AU_LABELS: [&str; 12] = [
    "AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26",
];

/// FACS numbers of [`AU_LABELS`], same order.
pub const AU_NUMBERS: [u32; 12] = [1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26];

/// The 8 expression classes of Aff-Wild2 (six basic expressions, neutral and other), in the
/// ABAW annotation order: class index `i` in an `EXPR` file means `EXPRESSION_LABELS[i]`.
pub const EXPRESSION_LABELS: [&str; 8] = [
    "Neutral",
    "Anger",
    "Disgust",
    "Fear",
    "Happiness",
    "Sadness",
    "Surprise",
    "Other",
];

/// Number of action units.
pub const N_AUS: usize = AU_LABELS.len();
/// Number of expression classes.
pub const N_EXPRESSIONS: usize = EXPRESSION_LABELS.len();

/// Aff-Wild2 marks a frame without a valence/arousal annotation with this value.
pub const VA_UNANNOTATED: f32 = -5.0;
/// Aff-Wild2 marks a frame without an expression or AU annotation with this value.
pub const CLASS_UNANNOTATED: i32 = -1;

/// Index of an AU given its name (`"AU12"`) or its FACS number written alone (`"12"`).
pub fn au_index(name: &str) -> Option<usize> {
    let number = name
        .trim()
        .strip_prefix("AU")
        .unwrap_or(name.trim())
        .parse::<u32>()
        .ok()?;
    AU_NUMBERS.iter().position(|&n| n == number)
}

/// Index of an expression given its name, case-insensitively.
pub fn expression_index(name: &str) -> Option<usize> {
    EXPRESSION_LABELS
        .iter()
        .position(|l| l.eq_ignore_ascii_case(name.trim()))
}

/// OpenFace's column stem of an action unit: `AU1` -> `AU01`, `AU12` -> `AU12`; a label that
/// is not `AU<number>` is kept as it is.
pub fn au_column(label: &str) -> String {
    match label.strip_prefix("AU").and_then(|n| n.parse::<u32>().ok()) {
        Some(n) => format!("AU{n:02}"),
        None => label.to_string(),
    }
}

/// OpenFace-style column name of an AU (`AU01`, `AU12`), used by CSV writers.
pub fn au_openface_name(index: usize) -> Option<String> {
    AU_NUMBERS.get(index).map(|n| format!("AU{n:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn au_order_is_abaw() {
        assert_eq!(
            AU_LABELS.join(","),
            "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
        );
        for (i, l) in AU_LABELS.iter().enumerate() {
            assert_eq!(*l, format!("AU{}", AU_NUMBERS[i]));
        }
    }

    #[test]
    fn expression_order_is_abaw() {
        assert_eq!(
            EXPRESSION_LABELS.join(","),
            "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
        );
    }

    #[test]
    fn lookups() {
        assert_eq!(au_index("AU12"), Some(6));
        assert_eq!(au_index("26"), Some(11));
        assert_eq!(au_index("AU3"), None);
        assert_eq!(au_index("AUx"), None);
        assert_eq!(expression_index("happiness"), Some(4));
        assert_eq!(expression_index("Contempt"), None);
        assert_eq!(au_openface_name(0).as_deref(), Some("AU01"));
        assert_eq!(au_openface_name(11).as_deref(), Some("AU26"));
        assert_eq!(au_openface_name(12), None);
    }
}
