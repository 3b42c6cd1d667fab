// SPDX-License-Identifier: MPL-2.0
//! Writes a Matroska file with MJPEG video and 16-bit PCM audio through GStreamer:
//! `appsrc (RGB) ! videoconvert ! jpegenc ! matroskamux ! filesink` with a second `appsrc`
//! (S16LE mono) into the same muxer.

use std::path::{Path, PathBuf};

use gst::prelude::*;

use super::SynthError;

/// An open video file being written frame by frame.
pub struct MkvWriter {
    pipeline: gst::Pipeline,
    video: gst_app::AppSrc,
    audio: gst_app::AppSrc,
    info: gst_video::VideoInfo,
    fps: u32,
    sample_rate: u32,
    frames: u64,
    samples: u64,
    path: PathBuf,
}

fn gst_error(path: &Path, what: impl std::fmt::Display) -> SynthError {
    SynthError::Media {
        path: path.to_path_buf(),
        message: what.to_string(),
    }
}

impl MkvWriter {
    pub fn create(
        path: &Path,
        width: u32,
        height: u32,
        fps: u32,
        sample_rate: u32,
        jpeg_quality: u8,
    ) -> Result<MkvWriter, SynthError> {
        gst::init().map_err(|e| gst_error(path, e))?;
        let description = format!(
            "appsrc name=video format=time ! videoconvert ! jpegenc quality={jpeg_quality} ! queue ! mux.video_0 \
             appsrc name=audio format=time ! queue ! mux.audio_0 \
             matroskamux name=mux ! filesink name=sink"
        );
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| gst_error(path, format!("cannot build the muxing pipeline: {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| gst_error(path, "the muxing description is not a pipeline"))?;
        let by_name = |n: &str| {
            pipeline
                .by_name(n)
                .ok_or_else(|| gst_error(path, format!("no element {n}")))
        };
        by_name("sink")?.set_property("location", path.to_string_lossy().as_ref());
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width, height)
            .fps(gst::Fraction::new(fps as i32, 1))
            .build()
            .map_err(|e| gst_error(path, e))?;
        let video = by_name("video")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| gst_error(path, "video source is not an appsrc"))?;
        video.set_caps(Some(&info.to_caps().map_err(|e| gst_error(path, e))?));
        // Never block inside appsrc: a blocked push cannot notice a pipeline error. The
        // writer waits for room itself (see `push_frame`).
        video.set_block(false);
        video.set_max_bytes(0);
        let audio = by_name("audio")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| gst_error(path, "audio source is not an appsrc"))?;
        let audio_caps = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("layout", "interleaved")
            .field("rate", sample_rate as i32)
            .field("channels", 1i32)
            .build();
        audio.set_caps(Some(&audio_caps));
        // Audio is pushed ahead of the video it belongs to and is small: never block on it,
        // so the muxer always has audio when a video frame arrives.
        audio.set_block(false);
        audio.set_max_bytes(0);
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| gst_error(path, format!("cannot start muxing: {e}")))?;
        Ok(MkvWriter {
            pipeline,
            video,
            audio,
            info,
            fps,
            sample_rate,
            frames: 0,
            samples: 0,
            path: path.to_path_buf(),
        })
    }

    fn bus_error(&self) -> SynthError {
        if let Some(bus) = self.pipeline.bus()
            && let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            return gst_error(&self.path, format!("{} ({:?})", e.error(), e.debug()));
        }
        gst_error(&self.path, "the muxing pipeline stopped")
    }

    /// Appends one packed RGB8 frame.
    pub fn push_frame(&mut self, rgb: &[u8]) -> Result<(), SynthError> {
        let (w, h) = (self.info.width() as usize, self.info.height() as usize);
        let stride = self.info.stride()[0] as usize;
        if rgb.len() != w * h * 3 {
            return Err(gst_error(
                &self.path,
                format!("frame of {} bytes, {} expected", rgb.len(), w * h * 3),
            ));
        }
        let mut buffer =
            gst::Buffer::with_size(self.info.size()).map_err(|e| gst_error(&self.path, e))?;
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            let pts = gst::ClockTime::SECOND.mul_div_floor(self.frames, self.fps as u64);
            let end = gst::ClockTime::SECOND.mul_div_floor(self.frames + 1, self.fps as u64);
            b.set_pts(pts);
            b.set_duration(end.zip(pts).map(|(e, p)| e - p));
            let mut map = b.map_writable().map_err(|e| gst_error(&self.path, e))?;
            for (dst, src) in map.chunks_mut(stride).zip(rgb.chunks_exact(w * 3)) {
                dst[..w * 3].copy_from_slice(src);
            }
        }
        self.frames += 1;
        // Keep at most a few raw frames queued, watching for errors while waiting.
        let bus = self.pipeline.bus().expect("a pipeline has a bus");
        while self.video.current_level_bytes() > 4 * self.info.size() as u64 {
            if let Some(msg) =
                bus.timed_pop_filtered(gst::ClockTime::from_mseconds(1), &[gst::MessageType::Error])
                && let gst::MessageView::Error(e) = msg.view()
            {
                return Err(gst_error(
                    &self.path,
                    format!("{} ({:?})", e.error(), e.debug()),
                ));
            }
        }
        self.video
            .push_buffer(buffer)
            .map_err(|_| self.bus_error())?;
        Ok(())
    }

    /// Appends PCM samples.
    pub fn push_audio(&mut self, samples: &[i16]) -> Result<(), SynthError> {
        if samples.is_empty() {
            return Ok(());
        }
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            let rate = self.sample_rate as u64;
            let pts = gst::ClockTime::SECOND.mul_div_floor(self.samples, rate);
            let end =
                gst::ClockTime::SECOND.mul_div_floor(self.samples + samples.len() as u64, rate);
            b.set_pts(pts);
            b.set_duration(end.zip(pts).map(|(e, p)| e - p));
        }
        self.samples += samples.len() as u64;
        self.audio
            .push_buffer(buffer)
            .map_err(|_| self.bus_error())?;
        Ok(())
    }

    /// Ends both streams and waits until the file is complete.
    pub fn finish(self) -> Result<(), SynthError> {
        let _ = self.audio.end_of_stream();
        let _ = self.video.end_of_stream();
        let bus = self.pipeline.bus().expect("a pipeline has a bus");
        let result = match bus.timed_pop_filtered(
            gst::ClockTime::NONE,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(msg) => match msg.view() {
                gst::MessageView::Error(e) => Err(gst_error(
                    &self.path,
                    format!("{} ({:?})", e.error(), e.debug()),
                )),
                _ => Ok(()),
            },
            None => Err(gst_error(
                &self.path,
                "the muxing pipeline ended without EOS",
            )),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }
}

impl Drop for MkvWriter {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
