#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# NEEDS HARDWARE: a webcam (V4L2) and a microphone, a display. Live analysis of the camera
# with the overlay on screen and the results as element messages on stdout.
#
# Usage: pipelines/webcam-to-screen.sh [/dev/video0]
#   MODEL=file.onnx   another model of the affect contract
#   AUDIO=0           no microphone (the model gets silence as its audio)
#   SOURCE=... SINK=... AUDIO_SOURCE=...   replace the camera, the screen or the microphone
#                     (e.g. SOURCE="videotestsrc is-live=true" SINK=fakesink to try it
#                     without hardware)
set -euo pipefail
source "$(dirname "$0")/common.sh"
DEVICE=${1:-/dev/video0}
SOURCE=${SOURCE:-v4l2src device=$DEVICE}
SINK=${SINK:-autovideosink sync=false}
AUDIO_SOURCE=${AUDIO_SOURCE:-autoaudiosrc}

audio=""
if [ "${AUDIO:-1}" != 0 ]; then
  audio="$AUDIO_SOURCE ! queue ! audioconvert ! audioresample ! affectspectro ! infer.audio_sink"
fi
# shellcheck disable=SC2086  # SOURCE, SINK and the audio branch are pipeline fragments.
exec gst-launch-1.0 -m -e \
  $SOURCE ! videoconvert ! videoscale ! video/x-raw,width=640,height=480 \
  ! queue max-size-buffers=2 leaky=downstream ! affectfacecrop ! infer.video_sink \
  $audio \
  affectinfer name=infer model="$MODEL" post-messages=true max-latency=30 \
  ! affectoverlay ! videoconvert ! $SINK
