// A small seeded generator (SplitMix32 seeding + xoshiro128**) whose whole state is four integers, so
// that the data pipeline can be reproduced from a seed and derived per epoch and rank.
export class Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** `parts` (seed, epoch, rank, stream id...) are mixed into one independent stream. */
  constructor(...parts: number[]) {
    let x = 0x9e3779b9;
    const next = (): number => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    for (const part of parts) x = (x ^ Math.imul((part >>> 0) + 0x632be5ab, 0x27d4eb2f)) | 0, next();
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  private nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** uniform in [0, 1), 53 bits */
  random(): number {
    const high = this.nextUint32() >>> 5;
    const low = this.nextUint32() >>> 6;
    return (high * 67108864 + low) / 9007199254740992;
  }

  /** uniform integer in [min, max], both included (Python's random.randint) */
  randint(min: number, max: number): number {
    return min + Math.floor(this.random() * (max - min + 1));
  }

  /** Fisher-Yates permutation of 0..n-1 */
  permutation(n: number): Uint32Array {
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      const swap = order[i];
      order[i] = order[j];
      order[j] = swap;
    }
    return order;
  }
}

function rotl(value: number, bits: number): number {
  return (value << bits) | (value >>> (32 - bits));
}
