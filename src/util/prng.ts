/**
 * mulberry32: a small, fast, deterministic PRNG. The seeder, the load generator and the tests
 * use it so a seed reproduces the same data, the same write load and the same kill points.
 * Not for anything that needs unpredictability.
 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
