// The camemberta package root (where package.json and build/Release are), from wherever the compiled
// file lives: dist/ when installed, build/ts/src/ in the test build.
import * as fs from 'fs';
import * as path from 'path';

export function packageRoot(from: string = __dirname): string {
  let dir = from;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'camemberta') return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`camemberta: cannot find the package root above ${from}`);
    dir = parent;
  }
}
