#!/bin/sh
# meson's custom_target for the plugin: cargo-build.sh SOURCE_ROOT TARGET_DIR PROFILE OUTPUT
set -eu
src=$1 target=$2 profile=$3 output=$4
cd "$src"
cargo build --profile "$profile" -p gst-plugin-affect --target-dir "$target"
# cargo names the dev profile's output folder "debug".
[ "$profile" = dev ] && folder=debug || folder=$profile
cp "$target/$folder/libgstaffect.so" "$output"
