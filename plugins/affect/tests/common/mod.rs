//! Set-up shared by the element tests.

use std::sync::Once;

/// Initialises GStreamer and registers the affect elements once per test process.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstaffect::plugin_register_static().expect("register the affect plugin");
    });
}
