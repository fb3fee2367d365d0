#!/usr/bin/env node
'use strict';
// Builds the native addon with cmake-js against the libtorch that find-libtorch.js locates.
//   node scripts/build-native.js               build unless build/Release/camemberta.node is up to date
//   node scripts/build-native.js --force       always rebuild
//   node scripts/build-native.js --prebuildify package prebuilds/<platform>-<arch>/ with prebuildify
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { findLibtorch } = require('./find-libtorch');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);

function run(command, commandArgs) {
  const result = spawnSync(command, commandArgs, { cwd: root, stdio: 'inherit', env: process.env });
  if (result.status !== 0) {
    console.error(`camemberta: '${command} ${commandArgs.join(' ')}' failed (exit ${result.status}).`);
    process.exit(result.status || 1);
  }
}

// npm runs a script named "prebuild" as a hook before "build" (the TypeScript compile); only
// package a prebuild when the user asked for it by name.
function invokedAsBuildHook() {
  if (process.env.npm_lifecycle_event !== 'prebuild') return false;
  let pid = process.ppid;
  for (let depth = 0; depth < 4 && pid > 1; depth++) {
    let cmdline;
    let status;
    try {
      // npm rewrites its process title, which can turn argv into one space-separated string.
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split(/[\0 ]+/);
      status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      return false;
    }
    const runIndex = cmdline.findIndex((a) => a === 'run' || a === 'run-script');
    if (runIndex >= 0) return cmdline[runIndex + 1] === 'build';
    const parent = /PPid:\s*(\d+)/.exec(status);
    pid = parent ? Number(parent[1]) : 0;
  }
  return false;
}

function upToDate(output) {
  if (!fs.existsSync(output)) return false;
  // libsentencepiece installed after the last build: its addon is still to be built.
  const tokenizerAddon = path.join(path.dirname(output), 'camemberta_sentencepiece.node');
  if (fs.existsSync('/usr/include/sentencepiece_processor.h') && !fs.existsSync(tokenizerAddon)) return false;
  // gloo headers installed after the last build: the distributed code is still to be built.
  const cache = path.join(root, 'build', 'CMakeCache.txt');
  if (fs.existsSync('/usr/include/gloo/algorithm.h') && fs.existsSync(cache) &&
      fs.readFileSync(cache, 'utf8').includes('GLOO_INCLUDE_DIR:PATH=GLOO_INCLUDE_DIR-NOTFOUND')) return false;
  const built = fs.statSync(output).mtimeMs;
  const inputs = [path.join(root, 'CMakeLists.txt'),
    ...['native', 'native-sentencepiece'].flatMap((dir) => fs.readdirSync(path.join(root, dir)).map((f) => path.join(root, dir, f)))];
  return inputs.every((f) => fs.statSync(f).mtimeMs <= built);
}

let libtorch;
try {
  libtorch = findLibtorch();
} catch (error) {
  console.error(error.message);
  process.exit(1);
}

const cmakeDefines = [`--CDCMAKE_PREFIX_PATH=${libtorch.prefix}`];
const cmakeJs = path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');

if (args.includes('--prebuildify')) {
  if (invokedAsBuildHook()) process.exit(0);
  const prebuildify = path.join(root, 'node_modules', 'prebuildify', 'bin.js');
  // prebuildify drives node-gyp, which builds binding.gyp: the same native/*.cc and the same
  // libtorch discovery as the CMake build.
  run(process.execPath, [prebuildify, '--napi', '--strip']);
  console.log(`camemberta: prebuild written to prebuilds/ (libtorch: ${libtorch.source}; it loads libtorch from ${libtorch.lib})`);
  process.exit(0);
}

const output = path.join(root, 'build', 'Release', 'camemberta.node');
if (!args.includes('--force') && upToDate(output)) {
  console.log(`camemberta: native addon up to date (${path.relative(root, output)})`);
  process.exit(0);
}
console.log(`camemberta: building the native addon against libtorch from ${libtorch.source}${libtorch.cuda ? ' with CUDA' : ' (CPU only)'}`);
const parallel = ['--parallel', String(Math.max(1, require('os').availableParallelism?.() ?? 2))];
run(process.execPath, [cmakeJs, 'compile', ...parallel, ...cmakeDefines]);
