// The reference's side of MKL's CPU dispatch. libtorch's statically linked MKL takes its fast code
// paths only where mkl_serv_intel_cpu_true() answers 1, which its own definition does on Intel CPUs
// only; our addon defines that function itself (native/mkl.cc). A PyTorch expert on an AMD CPU can
// do the same with LD_PRELOAD of a library that defines it, and `bench:train --reference-mkl
// features` gives the reference that library: built here with the C++ compiler (CXX, else g++,
// else c++) into a directory under the system's temporary directory, once per source text.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';

export const REFERENCE_MKL_MODES = ['features', 'vendor'] as const;
export type ReferenceMkl = (typeof REFERENCE_MKL_MODES)[number];

/** The rule of native/mkl.cc's features mode: 1 on Intel, or where the CPU has AVX2 and FMA. */
const SOURCE = `// Built by bench/mkl-preload.ts for the PyTorch reference of bench:train (LD_PRELOAD).
extern "C" __attribute__((visibility("default"))) int mkl_serv_intel_cpu_true() {
  __builtin_cpu_init();
  return (__builtin_cpu_is("intel") || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) ? 1 : 0;
}
`;

export const MKL_PRELOAD_NAME = 'libcamemberta_mkl_features.so';

/** The path of the preload library (built on first use), or why it could not be built. */
export function mklPreloadLibrary(): { path: string } | { error: string } {
  const digest = crypto.createHash('sha256').update(SOURCE).digest('hex').slice(0, 12);
  const dir = path.join(os.tmpdir(), `camemberta-bench-mkl-${digest}`);
  const library = path.join(dir, MKL_PRELOAD_NAME);
  if (fs.existsSync(library)) return { path: library };
  fs.mkdirSync(dir, { recursive: true });
  const source = path.join(dir, 'mkl_features.cc');
  fs.writeFileSync(source, SOURCE);
  const staged = `${library}.${process.pid}.tmp`;
  const errors: string[] = [];
  for (const compiler of [process.env.CXX, 'g++', 'c++'].filter((c): c is string => Boolean(c))) {
    const built = spawnSync(compiler, ['-shared', '-fPIC', '-O2', '-o', staged, source], { encoding: 'utf8' });
    if (built.status === 0) {
      fs.renameSync(staged, library);
      return { path: library };
    }
    errors.push(`${compiler}: ${built.error ? built.error.message : (built.stderr || '').trim().split('\n').slice(-3).join(' ')}`);
  }
  fs.rmSync(staged, { force: true });
  return { error: `could not build ${MKL_PRELOAD_NAME} (${errors.join('; ')})` };
}
