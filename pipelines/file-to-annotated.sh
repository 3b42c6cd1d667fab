#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A video file to an annotated WebM (VP8 + Opus): faces with their expression,
# valence/arousal and strongest action units drawn by affectoverlay, the voice kept.
#
# Usage: pipelines/file-to-annotated.sh INPUT OUTPUT.webm
#   MODEL=file.onnx  another model of the affect contract (default: models/affect-default.onnx)
#   AUDIO=0          the input has no audio stream (the video is analysed without voice)
set -euo pipefail
if [ $# -ne 2 ]; then
  sed -n '3,8p' "$0" >&2
  exit 2
fi
source "$(dirname "$0")/common.sh"
INPUT=$1
OUTPUT=$2
[ -f "$INPUT" ] || { echo "input $INPUT does not exist" >&2; exit 1; }

audio=()
if [ "${AUDIO:-1}" != 0 ]; then
  # The decoded audio goes both to the analysis and, encoded, into the output file.
  audio=(d. ! queue ! audioconvert ! audioresample ! tee name=voice
         voice. ! queue ! affectspectro ! infer.audio_sink
         voice. ! queue ! audioconvert ! opusenc ! mux.)
fi
exec gst-launch-1.0 -e \
  filesrc location="$INPUT" ! decodebin name=d \
  d. ! queue ! videoconvert ! affectfacecrop ! infer.video_sink \
  "${audio[@]}" \
  affectinfer name=infer model="$MODEL" \
  ! affectoverlay ! videoconvert ! vp8enc deadline=1 cpu-used=8 threads=2 target-bitrate=1500000 \
  ! webmmux name=mux ! filesink location="$OUTPUT"
