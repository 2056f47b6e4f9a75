# What deploy/dev.sh and deploy/pgo.sh share (sourced from the repository
# root): Debian packages and the ONNX Runtime library.

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "${APT_UPDATED:-}" ]; then $sudo apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# ONNX Runtime for CTR scoring: the shared library shipped in the PyPI wheel
# `onnxruntime`, extracted under target/ort; ORT_DYLIB_PATH points at it.
ORT_VERSION=1.32.0
ensure_ort() {
  local dir=target/ort
  if ! ls "$dir"/onnxruntime/capi/libonnxruntime.so.* >/dev/null 2>&1; then
    command -v python3 >/dev/null 2>&1 || apt_install python3
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    echo "fetching onnxruntime $ORT_VERSION (for libonnxruntime)" >&2
    mkdir -p "$dir"
    python3 -m pip download -q --no-deps --only-binary=:all: "onnxruntime==$ORT_VERSION" -d "$dir/wheel"
    python3 - "$dir" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
z = zipfile.ZipFile(glob.glob(d + "/wheel/onnxruntime-*.whl")[0])
for n in z.namelist():
    if n.startswith("onnxruntime/capi/libonnxruntime"):
        z.extract(n, d)
PY
  fi
  ORT_DYLIB_PATH="$(ls "$PWD/$dir"/onnxruntime/capi/libonnxruntime.so.* | head -1)"
  export ORT_DYLIB_PATH
}
