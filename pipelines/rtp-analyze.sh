#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A network stream in and out: receives VP8 video and 16 kHz L16 audio over RTP/UDP,
# analyses it, prints the results as element messages ('affect' structures, one per frame,
# gst-launch -m) and sends the annotated video on as VP8 over RTP/UDP.
#
# Usage: pipelines/rtp-analyze.sh
#   IN_VIDEO_PORT=5000 IN_AUDIO_PORT=5002   where the stream comes in
#   OUT_HOST=127.0.0.1 OUT_PORT=5004        where the annotated stream goes
#   MODEL=file.onnx                         another model of the affect contract
#   JITTER_LATENCY=100                      ms the jitterbuffers wait for late packets
#   JITTER_OPTIONS="do-lost=true"           more rtpjitterbuffer properties
#
# Loss and jitter (tested with netsim, 5 % of packets dropped, 30 % delayed by 5-40 ms):
# - rtpjitterbuffer latency=JITTER_LATENCY reorders packets that come up to that late; set it
#   above the network's jitter (it adds to the end-to-end latency);
# - do-lost=true turns a missing packet into a GAP downstream, so the depayloaders and
#   decoders know at once instead of waiting; affectinfer passes the gap on as a GAP event,
#   never as an empty frame;
# - JITTER_OPTIONS="do-lost=true drop-on-latency=true" also keeps the jitterbuffer from ever
#   holding more than its latency: the strictest end-to-end latency, at the price of dropping
#   packets whenever the analysis falls behind the stream (a loaded machine);
# - rtpvp8depay wait-for-keyframe=true request-keyframe=true: after a loss, no broken frame
#   reaches the face finder; the sender is asked for a keyframe (rtp-send.sh sends one every
#   10 frames as well).
# Frames that arrive are analysed as usual; lost audio is a gap in the spectrogram, which the
# model hears as silence (affectinfer audio-missing=silence).
# Send a file with pipelines/rtp-send.sh; watch the output with
#   gst-launch-1.0 udpsrc port=5004 caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=96" \
#     ! rtpjitterbuffer ! rtpvp8depay ! vp8dec ! videoconvert ! autovideosink
set -euo pipefail
source "$(dirname "$0")/common.sh"
IN_VIDEO_PORT=${IN_VIDEO_PORT:-5000}
IN_AUDIO_PORT=${IN_AUDIO_PORT:-5002}
OUT_HOST=${OUT_HOST:-127.0.0.1}
OUT_PORT=${OUT_PORT:-5004}
JITTER_LATENCY=${JITTER_LATENCY:-100}
JITTER_OPTIONS=${JITTER_OPTIONS:-do-lost=true}
JITTER="rtpjitterbuffer latency=$JITTER_LATENCY $JITTER_OPTIONS"
VIDEO_CAPS="application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=96"
AUDIO_CAPS="application/x-rtp,media=audio,clock-rate=16000,encoding-name=L16,encoding-params=1,channels=1,payload=97"
exec gst-launch-1.0 -m -e \
  udpsrc port="$IN_VIDEO_PORT" caps="$VIDEO_CAPS" ! $JITTER \
  ! rtpvp8depay wait-for-keyframe=true request-keyframe=true ! vp8dec ! videoconvert ! queue ! affectfacecrop ! infer.video_sink \
  udpsrc port="$IN_AUDIO_PORT" caps="$AUDIO_CAPS" ! $JITTER \
  ! rtpL16depay ! audioconvert ! audioresample ! queue ! affectspectro ! infer.audio_sink \
  affectinfer name=infer model="$MODEL" post-messages=true \
  ! affectoverlay ! videoconvert ! vp8enc deadline=1 cpu-used=8 threads=2 \
  ! rtpvp8pay pt=96 ! udpsink host="$OUT_HOST" port="$OUT_PORT" sync=false
