#!/usr/bin/env bash
# Builds dist/gate-lambda.zip: the analyzer for the AWS Lambda python3.12 x86_64 runtime.
#
#   bash lambda/build.sh            -> dist/gate-lambda.zip (handler: handler.lambda_handler)
#
# The package and its runtime dependencies (pyproject's, plus the `lambda` extra) as manylinux
# x86_64 wheels for CPython 3.12, minus what the runtime provides (boto3, botocore, s3transfer),
# minus tests, C sources and headers; bytecode compiled by python3.12 and the .py sources removed.
# Needs python3.12 (for the bytecode; PYTHON312 names it) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/dist}
WORK=$ROOT/build/lambda
PACKAGE=$WORK/package
WHEELS=$ROOT/build/lambda-wheels

find_python312() {
  for candidate in "${PYTHON312:-}" python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 \
                   "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
                   /usr/bin/python3.12 /usr/local/bin/python3.12; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      command -v "$candidate" || echo "$candidate"
      return 0
    fi
  done
  echo "lambda/build.sh: python3.12 not found (set PYTHON312)" >&2
  return 1
}
PY312=$(find_python312)
PIP=(python3 -m pip --disable-pip-version-check --quiet)
[ -x "$ROOT/.venv/bin/python" ] && PIP=("$ROOT/.venv/bin/python" -m pip --disable-pip-version-check --quiet)

rm -rf "$WORK"
mkdir -p "$PACKAGE" "$WORK/wheel" "$WHEELS" "$OUT"

echo "== wheel of canary-gate"
"${PIP[@]}" wheel --no-deps --wheel-dir "$WORK/wheel" "$ROOT"
WHEEL=$(ls "$WORK"/wheel/canary_gate-*.whl)

echo "== dependencies for cp312 manylinux x86_64 ($SECONDS s)"
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): manylinux up to 2_28 fits.
# The wheels are kept in build/lambda-wheels, so a rebuild downloads only what changed.
TARGET=(--implementation cp --python-version 3.12 --abi cp312 --only-binary=:all:
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
# pip run by python3.12 itself: an older pip run by another Python checks Requires-Python
# against its own interpreter on `install --target` (numpy >= 2.3 needs 3.12: "3.11.7 not in >=3.12").
PIP312=("$PY312" -m pip --disable-pip-version-check --quiet)
"${PIP312[@]}" download --dest "$WHEELS" "${TARGET[@]}" "python-dateutil<3" "${WHEEL}[lambda]"
"${PIP312[@]}" install --target "$PACKAGE" "${TARGET[@]}" --no-index --find-links "$WHEELS" --no-compile \
  "python-dateutil<3" "${WHEEL}[lambda]"

echo "== strip ($SECONDS s)"
cd "$PACKAGE"
# The runtime provides the AWS SDK (and keeps it patched); a bundled copy would only add 25 MB.
rm -rf boto3 boto3-* botocore botocore-* s3transfer s3transfer-* bin
find . -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
find . -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' -o -name '*.cpp' \
  -o -name '*.h' -o -name '*.hpp' -o -name '*.pyi' -o -name 'RECORD' -o -name 'INSTALLER' \) -delete
rm -rf numpy/_core/include numpy/f2py/src numpy/_pyinstaller numpy/_core/_simd.*.so \
       aws_lambda_powertools/event_handler/openapi/swagger_ui/*.js aws_lambda_powertools/event_handler/openapi/swagger_ui/*.css
find . -name '*.a' -delete
# statsmodels' example data sets (the modules stay importable; nothing here loads their data).
find statsmodels/datasets -type f ! -name '*.py' -delete
# Debug symbols of the extension modules (-10 MB). The vendored *.libs are left alone: they were
# patched by auditwheel, and strip can break such files.
if command -v strip >/dev/null; then
  find . -path './*.libs' -prune -o -type f -name '*.cpython-312-x86_64-linux-gnu.so' -print0 \
    | xargs -0 strip --strip-unneeded
fi

echo "== bytecode for 3.12, sources removed ($SECONDS s)"
cp "$ROOT/lambda/handler.py" "$PACKAGE/handler.py"
# The Datadog client is generated code whose docstrings (API docs, 4 MB) nothing reads: compiled
# without them (-o 2). Everything else keeps its docstrings and asserts (statsmodels and pandas
# build docstrings at import).
"$PY312" -W ignore::SyntaxWarning -m compileall -q -b -j 0 -o 2 datadog_api_client >/dev/null
"$PY312" -W ignore::SyntaxWarning -m compileall -q -b -j 0 -x '^\./(handler\.py|datadog_api_client/)' . >/dev/null
find . -type f -name '*.py' ! -path './handler.py' -delete

echo "== zip ($SECONDS s)"
rm -f "$OUT/gate-lambda.zip"
python3 - "$PACKAGE" "$OUT/gate-lambda.zip" <<'EOF'
import os, sys, zipfile
root, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            info = zipfile.ZipInfo(os.path.relpath(path, root), date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read(), compresslevel=6)
EOF
unzipped=$(du -sb "$PACKAGE" | cut -f1)
zipped=$(stat -c %s "$OUT/gate-lambda.zip")
echo "dist/gate-lambda.zip: $((zipped / 1048576)) MiB zipped, $((unzipped / 1048576)) MiB unzipped ($SECONDS s)"
