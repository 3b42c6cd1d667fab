#!/usr/bin/env bash
# A network stream in and out: receives VP8 video and 16 kHz L16 audio over RTP/UDP,
# analyses it, prints the results as element messages ('affect' structures, one per frame,
# gst-launch -m) and sends the annotated video on as VP8 over RTP/UDP.
#
# Usage: pipelines/rtp-analyze.sh
#   IN_VIDEO_PORT=5000 IN_AUDIO_PORT=5002   where the stream comes in
#   OUT_HOST=127.0.0.1 OUT_PORT=5004        where the annotated stream goes
#   MODEL=file.onnx                         another model of the affect contract
# Send a file with pipelines/rtp-send.sh; watch the output with
#   gst-launch-1.0 udpsrc port=5004 caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=96" \
#     ! rtpjitterbuffer ! rtpvp8depay ! vp8dec ! videoconvert ! autovideosink
set -euo pipefail
source "$(dirname "$0")/common.sh"
IN_VIDEO_PORT=${IN_VIDEO_PORT:-5000}
IN_AUDIO_PORT=${IN_AUDIO_PORT:-5002}
OUT_HOST=${OUT_HOST:-127.0.0.1}
OUT_PORT=${OUT_PORT:-5004}
VIDEO_CAPS="application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=96"
AUDIO_CAPS="application/x-rtp,media=audio,clock-rate=16000,encoding-name=L16,encoding-params=1,channels=1,payload=97"
exec gst-launch-1.0 -m -e \
  udpsrc port="$IN_VIDEO_PORT" caps="$VIDEO_CAPS" ! rtpjitterbuffer latency=100 \
  ! rtpvp8depay ! vp8dec ! videoconvert ! queue ! affectfacecrop ! infer.video_sink \
  udpsrc port="$IN_AUDIO_PORT" caps="$AUDIO_CAPS" ! rtpjitterbuffer latency=100 \
  ! rtpL16depay ! audioconvert ! audioresample ! queue ! affectspectro ! infer.audio_sink \
  affectinfer name=infer model="$MODEL" post-messages=true \
  ! affectoverlay ! videoconvert ! vp8enc deadline=1 cpu-used=8 threads=2 \
  ! rtpvp8pay pt=96 ! udpsink host="$OUT_HOST" port="$OUT_PORT" sync=false
