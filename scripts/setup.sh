#!/usr/bin/env bash
# One-time set-up on a fresh machine: a project-local Python with the CPU PyTorch wheel (our
# libtorch, and the reference the tests compare against), then the npm install that builds the
# native addon and the TypeScript. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_BIN=${PYTHON_BIN:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PY_PACKAGES=(transformers==5.18.0 safetensors sentencepiece numpy tensorboard==2.21.0)

if [ -z "${LIBTORCH:-}" ]; then
  if [ ! -x .venv/bin/python3 ]; then
    echo "setup: creating .venv (Python for libtorch and the reference checks)"
    "$PYTHON_BIN" -m venv .venv
  fi
  if ! .venv/bin/python3 -c 'import torch, transformers, safetensors, sentencepiece, tensorboard' 2>/dev/null; then
    echo "setup: installing $TORCH_SPEC ${PY_PACKAGES[*]} into .venv"
    # PIP_INDEX_URL (and other pip settings) from the environment are honoured.
    .venv/bin/pip install --disable-pip-version-check -q "$TORCH_SPEC" "${PY_PACKAGES[@]}"
  fi
  echo "setup: torch $(.venv/bin/python3 -c 'import torch; print(torch.__version__)')"
fi

if ! command -v spm_train >/dev/null 2>&1 || [ ! -e /usr/include/sentencepiece_processor.h ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages (sentencepiece tools and library)"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sentencepiece libsentencepiece-dev >/dev/null
  else
    echo "setup: optional system packages missing (sentencepiece, libsentencepiece-dev): tokenizer training then needs Python sentencepiece, and tokenization uses the slower WebAssembly backend"
  fi
fi

# Gloo's headers for the distributed code (native/dist.cc): libtorch carries Gloo itself but not
# its headers. Headers only: the build never links Debian's libgloo.
if [ ! -e /usr/include/gloo/algorithm.h ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian package libgloo-dev (headers for distributed training)"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgloo-dev >/dev/null ||
      echo "setup: apt-get install libgloo-dev failed: the addon is built without distributed training"
  else
    echo "setup: gloo headers missing (/usr/include/gloo) and no root apt-get to install libgloo-dev: the addon is built without distributed training"
  fi
else
  echo "setup: gloo headers present (/usr/include/gloo)"
fi

# bench:train preloads tcmalloc into the PyTorch reference (as PyTorch's own CPU performance guide does).
if ! ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal.so.4 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4 >/dev/null || echo "setup: libtcmalloc-minimal4 not installed (bench:train's reference then runs on glibc malloc)"
fi

if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
npm run build
echo "setup: done"
