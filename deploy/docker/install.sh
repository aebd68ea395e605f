#!/bin/sh
# Install relevo with the extras asked for from a folder of wheels (build-wheels.sh), with no
# index: the image gets exactly what was built, nothing fetched at this step.
# Usage: install.sh WHEEL_DIR [EXTRAS]
# The image's final stage runs it; so does tests/deploy/test_image_install.py.
set -eu
wheels=$1
extras=${2:-}
wheel=$(find "$wheels" -maxdepth 1 -name 'relevo-*.whl' | head -n 1)
if [ -z "$wheel" ]; then
  echo "install.sh: no relevo wheel in $wheels" >&2
  exit 1
fi
if [ -n "$extras" ]; then
  spec="$wheel[$extras]"
else
  spec="$wheel"
fi
python -m pip install --no-cache-dir --no-index --find-links "$wheels" "$spec"
relevo --version
