#!/usr/bin/env node
'use strict';
// Runs every compiled uvu test file (build/ts/test/**/*.test.js), each in its own process so a
// native crash names its file, and ends with the line CI counts: "N passed, N failed".
//   node scripts/run-tests.js [filter]    only files whose path contains filter (or, comma-separated, one of several)
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const testRoot = path.join(root, 'build', 'ts', 'test');
const filter = process.argv[2] || '';

function collect(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return collect(full);
    return entry.name.endsWith('.test.js') ? [full] : [];
  }).sort();
}

const filters = filter.split(',').filter(Boolean);
const files = collect(testRoot).filter((f) => filters.length === 0 || filters.some((part) => f.includes(part)));
if (files.length === 0) {
  console.error(`no test files under ${path.relative(root, testRoot)} matching '${filter}' (did 'tsc -p test' run?)`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
for (const file of files) {
  const name = path.relative(testRoot, file);
  const started = Date.now();
  const result = spawnSync(process.execPath, ['--expose-gc', file], { cwd: root, encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' } });
  const output = (result.stdout || '') + (result.stderr || '');
  const total = /Total:\s+(\d+)/.exec(output);
  const ok = /Passed:\s+(\d+)/.exec(output);
  const skip = /Skipped:\s+(\d+)/.exec(output);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (!total || !ok) {
    failed += 1;
    failures.push(name);
    console.log(`✘ ${name} (${seconds}s): crashed or printed no summary (exit ${result.status}, signal ${result.signal})`);
    console.log(output.split('\n').slice(-40).join('\n'));
    continue;
  }
  // uvu's Total counts tests that ran; skipped ones are reported apart.
  const fileFailed = Number(total[1]) - Number(ok[1]);
  passed += Number(ok[1]);
  skipped += skip ? Number(skip[1]) : 0;
  failed += fileFailed;
  if (fileFailed > 0 || result.status !== 0) {
    if (fileFailed === 0) failed += 1;
    failures.push(name);
    console.log(`✘ ${name} (${seconds}s)`);
    console.log(output);
  } else {
    console.log(`✔ ${name}: ${ok[1]} passed${skip && Number(skip[1]) ? `, ${skip[1]} skipped` : ''} (${seconds}s)`);
  }
}
if (failures.length) console.log(`\nfailing files: ${failures.join(', ')}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed === 0 ? 0 : 1);
