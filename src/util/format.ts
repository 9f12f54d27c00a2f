/**
 * `n` with thousands separators, as `toLocaleString('en-US')` prints an integer (`1,234,567`),
 * rounded to a whole number. Written out because the first `toLocaleString` of a process loads
 * ICU's number formatting, about 20 ms on the bench machine: more than an incremental verify
 * spends on some of its phases, paid on its progress line.
 */
export function thousands(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const r = Math.round(n);
  const digits = String(Math.abs(r));
  let out = '';
  for (let i = 0; i < digits.length; i++) {
    if (i > 0 && (digits.length - i) % 3 === 0) out += ',';
    out += digits[i];
  }
  return r < 0 ? `-${out}` : out;
}
