// SPDX-License-Identifier: MPL-2.0
//! Progress display of the commands (indicatif): a spinner for steps without a known
//! length, and bars over a file's media time, fed from the pipeline's position and duration
//! queries. Bars draw to stderr only when it is a terminal, so logs and tests stay clean.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner with a message, ticking by itself.
pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar over the media time of one file, in milliseconds.
pub fn file_bar(name: &str, duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_millis().max(1) as u64);
    bar.set_style(file_style());
    bar.set_message(name.to_string());
    bar
}

pub fn file_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{msg:30!} [{bar:32}] {percent:>3}% media {pos_s} [{elapsed} elapsed, {eta} left]",
    )
    .map(|s| {
        s.with_key(
            "pos_s",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} s", state.pos() as f64 / 1000.0);
            },
        )
        .progress_chars("=> ")
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Moves `bar` to the pipeline's `position`, taking the length from `duration` once the
/// pipeline knows it.
pub fn update(bar: &ProgressBar, position: Duration, duration: Option<Duration>) {
    if let Some(d) = duration
        && d.as_millis() > 0
    {
        bar.set_length(d.as_millis() as u64);
    }
    bar.set_position(position.as_millis() as u64);
}
