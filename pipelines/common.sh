# SPDX-License-Identifier: MPL-2.0
# Shared set-up of the pipeline scripts (sourced, not run): finds the affect plugin and the
# default model of this checkout, whether or not ./setup.sh linked the plugin for the user.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -f "$REPO/target/release/libgstaffect.so" ]; then
  export GST_PLUGIN_PATH="$REPO/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
fi
MODEL=${MODEL:-$REPO/models/affect-default.onnx}
if ! gst-inspect-1.0 affectinfer >/dev/null 2>&1; then
  echo "the affect elements are not found: run ./setup.sh (or cargo build --release -p gst-plugin-affect)" >&2
  exit 1
fi
if [ ! -f "$MODEL" ]; then
  echo "model $MODEL does not exist (set MODEL=...)" >&2
  exit 1
fi
