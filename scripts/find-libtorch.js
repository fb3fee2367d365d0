#!/usr/bin/env node
'use strict';
// Locates libtorch for the build: $LIBTORCH, then the torch package of $PYTHON,
// of the project's own .venv, or of python3 on PATH. Prints one field with --field,
// or the whole answer as JSON. Exits 1 with instructions when nothing is found.
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');

function fromDirectory(dir, source) {
  const cmake = path.join(dir, 'share', 'cmake', 'Torch');
  if (!fs.existsSync(path.join(cmake, 'TorchConfig.cmake'))) return null;
  const lib = path.join(dir, 'lib');
  const cuda = fs.existsSync(path.join(lib, 'libtorch_cuda.so')) || fs.existsSync(path.join(lib, 'torch_cuda.dll'));
  return { source, prefix: path.join(dir, 'share', 'cmake'), root: dir, lib, include: path.join(dir, 'include'), cuda };
}

function fromPython(python, source) {
  try {
    const out = execFileSync(python, ['-c',
      'import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__)'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n');
    const found = fromDirectory(out[0], `${source} (${python}, torch ${out[1]})`);
    if (found) found.version = out[1];
    return found;
  } catch {
    return null;
  }
}

function findLibtorch() {
  const attempts = [];
  if (process.env.LIBTORCH) {
    const found = fromDirectory(path.resolve(process.env.LIBTORCH), `LIBTORCH=${process.env.LIBTORCH}`);
    if (found) return found;
    throw new Error(`LIBTORCH=${process.env.LIBTORCH} does not hold a libtorch (no share/cmake/Torch/TorchConfig.cmake there).`);
  }
  const pythons = [];
  if (process.env.PYTHON) pythons.push([process.env.PYTHON, '$PYTHON']);
  pythons.push([path.join(root, '.venv', 'bin', 'python3'), 'project .venv']);
  pythons.push(['python3', 'python3 on PATH']);
  for (const [python, source] of pythons) {
    if (python.includes(path.sep) && !fs.existsSync(python)) continue;
    attempts.push(python);
    const found = fromPython(python, source);
    if (found) return found;
  }
  throw new Error([
    'camemberta: libtorch not found.',
    `Tried $LIBTORCH (unset) and the torch package of: ${attempts.join(', ')}.`,
    'Fix it with one of:',
    '  python3 -m venv .venv && .venv/bin/pip install torch==2.13.0   (CPU wheel; the build finds .venv by itself)',
    '  export LIBTORCH=/path/to/libtorch                              (an unpacked libtorch, CPU or CUDA)',
    '  export PYTHON=/path/to/python                                  (a python whose torch you want to build against)',
  ].join('\n'));
}

module.exports = { findLibtorch };

if (require.main === module) {
  try {
    const found = findLibtorch();
    const field = process.argv[2] === '--field' ? process.argv[3] : null;
    if (field === 'sources') {
      const dir = path.join(root, 'native');
      console.log(fs.readdirSync(dir).filter((f) => f.endsWith('.cc')).sort().map((f) => `native/${f}`).join(' '));
    } else if (field === 'gypDefines') {
      // What CMakeLists.txt defines from the same discovery, for binding.gyp.
      const defines = [];
      if (found.cuda) defines.push('CAMEMBERTA_CUDA=1');
      // native/dist.cc needs gloo's headers (Debian: libgloo-dev), as CMakeLists.txt checks.
      if (fs.existsSync('/usr/include/gloo/algorithm.h')) defines.push('CAMEMBERTA_GLOO=1');
      console.log(defines.join(' '));
    } else if (field === 'gypLibraries') {
      const libraries = ['-ltorch', '-ltorch_cpu', '-lc10'];
      if (found.cuda) libraries.push('-ltorch_cuda', '-lc10_cuda');
      console.log(libraries.join(' '));
    } else if (field) {
      console.log(String(found[field]));
    } else {
      console.log(JSON.stringify(found, null, 2));
    }
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
