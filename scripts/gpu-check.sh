#!/usr/bin/env bash
# Builds the addon against the CUDA PyTorch of the machine's python3 and runs every test and the
# GPU benchmarks. Meant for a GPU machine without Node or npm: it uses a compressed node binary and
# a slim node_modules carried in .device/ (made by `scripts/gpu-check.sh --pack` on a machine that
# has them), and TypeScript already compiled to build/ts. Results go to $OUT (default /tmp/gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--pack" ]; then
  set -e
  rm -rf .device && mkdir -p .device/node_modules
  xz -6 -T0 -c "$(command -v node)" > .device/node.xz
  # What the addon build, the CLIs and the tests load at run time, with everything they depend on
  # (read from the installed packages, so a new dependency is never forgotten); not cmake-js:
  # this script calls CMake itself.
  node -e '
    const fs = require("fs"), path = require("path");
    const wanted = ["node-addon-api", "node-api-headers", "node-gyp-build", "uvu",
      ...Object.keys(require("./package.json").dependencies).filter((name) => name !== "cmake-js")];
    const seen = new Set();
    const visit = (name) => {
      if (seen.has(name)) return;
      seen.add(name);
      const manifest = path.join("node_modules", name, "package.json");
      if (!fs.existsSync(manifest)) return;
      for (const dep of Object.keys(JSON.parse(fs.readFileSync(manifest, "utf8")).dependencies || {})) visit(dep);
    };
    wanted.forEach(visit);
    for (const name of seen) {
      if (!fs.existsSync(path.join("node_modules", name))) continue;
      fs.mkdirSync(path.dirname(path.join(".device/node_modules", name)), { recursive: true });
      fs.cpSync(path.join("node_modules", name), path.join(".device/node_modules", name), { recursive: true });
    }
    console.log(`packed ${seen.size} packages`);
  '
  npx tsc -p tsconfig.json && npx tsc -p test/tsconfig.json
  du -sh .device build/ts
  exit 0
fi

OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if ! command -v node >/dev/null 2>&1; then
  mkdir -p /tmp/node-bin
  xz -dc .device/node.xz > /tmp/node-bin/node && chmod +x /tmp/node-bin/node
  export PATH=/tmp/node-bin:$PATH
fi
[ -e node_modules ] || ln -s .device/node_modules node_modules
node --version
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
echo "torch: $(python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available())')"
start=$(date +%s)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include;$PWD/node_modules/node-addon-api" > "$OUT/cmake.log" 2>&1 \
  && cmake --build build -j 16 >> "$OUT/cmake.log" 2>&1 || { tail -40 "$OUT/cmake.log"; exit 1; }
echo "addon built with CUDA in $(( $(date +%s) - start )) s"
node -e "const c=require('./build/ts/src'); console.log('builtWithCuda', c.builtWithCuda, 'cudaAvailable', c.cudaAvailable(), 'devices', c.deviceCount())"

export PYTHON=python3
if [ -n "${GPU_ONLY:-}" ]; then  # one script instead of the whole check, e.g. GPU_ONLY=build/ts/bench/gpu-profile.js
  node "$GPU_ONLY" 2>&1 | tee "$OUT/only.log"
  exit 0
fi
node scripts/run-tests.js "${GPU_TEST_FILTER:-}" 2>&1 | tee "$OUT/tests.log" | grep -E '^(✔|✘)|passed, ' 
BENCH_DEVICE=cuda node build/ts/bench/ops.js 2>&1 | tee "$OUT/bench-ops-cuda.log"
BENCH_DEVICE=cuda node build/ts/bench/model.js 2>&1 | tee "$OUT/bench-model-cuda-float32.log"
BENCH_DEVICE=cuda BENCH_AUTOCAST=bfloat16 node build/ts/bench/model.js 2>&1 | tee "$OUT/bench-model-cuda-bf16.log"
BENCH_DEVICE=cuda BENCH_AUTOCAST=bfloat16 BENCH_LAYERS=12 BENCH_HIDDEN=768 BENCH_BATCH=32 node build/ts/bench/model.js 2>&1 | tee "$OUT/bench-model-cuda-bf16-base.log"
echo "gpu-check finished in $(( $(date +%s) - start )) s"
