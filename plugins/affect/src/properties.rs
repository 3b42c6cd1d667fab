//! Checks of property values that GLib's own validation lets through.

use gst::prelude::*;

/// Refuses a NaN or infinite value of any floating-point property of `element`, naming it.
/// GLib clamps a double to its range with comparisons, and NaN fails every comparison, so
/// `smoothing=nan` on a `gst-launch-1.0` line reaches the element untouched.
pub fn check_finite(element: &impl IsA<gst::Element>) -> Result<(), gst::ErrorMessage> {
    let element = element.as_ref();
    for pspec in element.list_properties() {
        let value = element.property_value(pspec.name());
        let v = if let Ok(v) = value.get::<f64>() {
            v
        } else if let Ok(v) = value.get::<f32>() {
            v as f64
        } else {
            continue;
        };
        if !v.is_finite() {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                [
                    "Property '{}' of {} is {}: it must be a finite number",
                    pspec.name(),
                    element.name(),
                    v
                ]
            ));
        }
    }
    Ok(())
}
