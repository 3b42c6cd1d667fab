#!/bin/sh
# SPDX-License-Identifier: MPL-2.0
# meson's custom_target for the plugin: cargo-build.sh SOURCE_ROOT TARGET_DIR PROFILE OUTPUT
set -eu
src=$1 target=$2 profile=$3
# meson passes OUTPUT relative to the build folder, where this script starts.
output=$(cd "$(dirname "$4")" && pwd)/$(basename "$4")
cd "$src"
cargo build --profile "$profile" -p gst-plugin-affect --target-dir "$target"
# cargo names the dev profile's output folder "debug".
[ "$profile" = dev ] && folder=debug || folder=$profile
cp "$target/$folder/libgstaffect.so" "$output"
