#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Streams a video file in real time as RTP/UDP: VP8 video and 16 kHz mono L16 audio, the
# input of pipelines/rtp-analyze.sh.
#
# Usage: pipelines/rtp-send.sh INPUT
#   HOST=127.0.0.1 VIDEO_PORT=5000 AUDIO_PORT=5002
set -euo pipefail
if [ $# -ne 1 ]; then
  sed -n '3,7p' "$0" >&2
  exit 2
fi
INPUT=$1
[ -f "$INPUT" ] || { echo "input $INPUT does not exist" >&2; exit 1; }
HOST=${HOST:-127.0.0.1}
VIDEO_PORT=${VIDEO_PORT:-5000}
AUDIO_PORT=${AUDIO_PORT:-5002}
exec gst-launch-1.0 -q \
  filesrc location="$INPUT" ! decodebin name=d \
  d. ! queue ! videoconvert ! vp8enc deadline=1 cpu-used=8 threads=2 keyframe-max-dist=10 error-resilient=default \
  ! rtpvp8pay pt=96 ! udpsink host="$HOST" port="$VIDEO_PORT" \
  d. ! queue ! audioconvert ! audioresample ! audio/x-raw,format=S16BE,rate=16000,channels=1 \
  ! rtpL16pay pt=97 ! udpsink host="$HOST" port="$AUDIO_PORT"
