#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A batch of videos (files or folders) through `affect analyze`: one CSV and timeline plot
# per video and a summary table, two videos at a time; run it again to resume.
#
# Usage: pipelines/batch.sh OUTPUT_DIR INPUT... [affect analyze options]
#   JOBS=2   videos at a time; AFFECT=path of the affect program (default: target/release/affect)
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '3,7p' "$0" >&2
  exit 2
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AFFECT=${AFFECT:-$REPO/target/release/affect}
[ -x "$AFFECT" ] || { echo "$AFFECT is not built: run ./setup.sh" >&2; exit 1; }
OUT=$1
shift
exec "$AFFECT" analyze --out "$OUT" --jobs "${JOBS:-2}" "$@"
