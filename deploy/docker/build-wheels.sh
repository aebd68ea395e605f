#!/bin/sh
# Build relevo's wheel and the wheels of everything it needs with the extras asked for into one
# folder, for install.sh to install from without an index.
# Usage: build-wheels.sh SOURCE_DIR WHEEL_DIR [EXTRAS]   (EXTRAS e.g. "postgres,xgboost")
# The image's build stage runs it; so does tests/deploy/test_image_install.py.
set -eu
src=$1
out=$2
extras=${3:-}
if [ -n "$extras" ]; then
  target="$src[$extras]"
else
  target="$src"
fi
python -m pip wheel --wheel-dir "$out" "$target"
