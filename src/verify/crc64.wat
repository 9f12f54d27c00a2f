;; CRC-64/XZ and the row hash fmix64(CRC-64(u32be(n) · payload)), in WebAssembly.
;;
;; The same function as crc64.ts + rowhash.ts (RowHasher.hashView's one-pass case), for the
;; verifier's hot loop: with 64-bit integers the slicing-by-8 step is one load and eight table
;; loads instead of two halves' worth of everything, and fmix64 is two multiplications instead
;; of eight 16-bit limb products. The JavaScript version stays the reference (and the fallback);
;; test/unit/verify/crc64-wasm.test.ts checks the two agree.
;;
;; Build: `node scripts/wasm.mjs` compiles this file into crc64-wasm.ts (the bytes, base64); a
;; test fails when the committed bytes are not this file's.
;;
;; Memory layout (little-endian, as WebAssembly always is):
;;   [0, 16384)       table k (k = 0..7), entry i, at k * 2048 + i * 8: filled by the host
;;                    (crc64-fast.ts) from crc64.ts's tables, so both share one definition
;;   [16384, 16392)   the result of the last call (i64)
;;   [16448, …)       bytes to hash, copied in by the host; the host grows memory as needed
(module
  (memory (export "memory") 1)

  ;; c = the CRC register after feeding bytes [p, end) into register c (pre-inverted form).
  (func $update (param $c i64) (param $p i32) (param $end i32) (result i64)
    (local $end8 i32)
    (local $lo i32)
    (local $hi i32)
    (local.set $end8
      (i32.sub (local.get $end)
        (i32.and (i32.sub (local.get $end) (local.get $p)) (i32.const 7))))
    (block $done8
      (loop $eight
        (br_if $done8 (i32.ge_u (local.get $p) (local.get $end8)))
        (local.set $c (i64.xor (local.get $c) (i64.load (local.get $p))))
        (local.set $lo (i32.wrap_i64 (local.get $c)))
        (local.set $hi (i32.wrap_i64 (i64.shr_u (local.get $c) (i64.const 32))))
        ;; byte j of the register goes through table 7 - j.
        (local.set $c
          (i64.xor
            (i64.xor
              (i64.xor
                (i64.load offset=14336
                  (i32.shl (i32.and (local.get $lo) (i32.const 255)) (i32.const 3)))
                (i64.load offset=12288
                  (i32.shl (i32.and (i32.shr_u (local.get $lo) (i32.const 8)) (i32.const 255)) (i32.const 3))))
              (i64.xor
                (i64.load offset=10240
                  (i32.shl (i32.and (i32.shr_u (local.get $lo) (i32.const 16)) (i32.const 255)) (i32.const 3)))
                (i64.load offset=8192
                  (i32.shl (i32.shr_u (local.get $lo) (i32.const 24)) (i32.const 3)))))
            (i64.xor
              (i64.xor
                (i64.load offset=6144
                  (i32.shl (i32.and (local.get $hi) (i32.const 255)) (i32.const 3)))
                (i64.load offset=4096
                  (i32.shl (i32.and (i32.shr_u (local.get $hi) (i32.const 8)) (i32.const 255)) (i32.const 3))))
              (i64.xor
                (i64.load offset=2048
                  (i32.shl (i32.and (i32.shr_u (local.get $hi) (i32.const 16)) (i32.const 255)) (i32.const 3)))
                (i64.load
                  (i32.shl (i32.shr_u (local.get $hi) (i32.const 24)) (i32.const 3)))))))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br $eight)))
    (block $done
      (loop $one
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $c
          (i64.xor
            (i64.load
              (i32.shl
                (i32.and
                  (i32.xor (i32.wrap_i64 (local.get $c)) (i32.load8_u (local.get $p)))
                  (i32.const 255))
                (i32.const 3)))
            (i64.shr_u (local.get $c) (i64.const 8))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $one)))
    (local.get $c))

  ;; One byte into register c.
  (func $byte (param $c i64) (param $b i32) (result i64)
    (i64.xor
      (i64.load
        (i32.shl
          (i32.and (i32.xor (i32.wrap_i64 (local.get $c)) (local.get $b)) (i32.const 255))
          (i32.const 3)))
      (i64.shr_u (local.get $c) (i64.const 8))))

  ;; MurmurHash3's fmix64: a bijection that spreads every input bit over the output.
  (func $fmix64 (param $k i64) (result i64)
    (local.set $k (i64.xor (local.get $k) (i64.shr_u (local.get $k) (i64.const 33))))
    (local.set $k (i64.mul (local.get $k) (i64.const 0xff51afd7ed558ccd)))
    (local.set $k (i64.xor (local.get $k) (i64.shr_u (local.get $k) (i64.const 33))))
    (local.set $k (i64.mul (local.get $k) (i64.const 0xc4ceb9fe1a85ec53)))
    (i64.xor (local.get $k) (i64.shr_u (local.get $k) (i64.const 33))))

  ;; CRC-64/XZ of bytes [p, p + len), stored at 16384.
  (func (export "crc") (param $p i32) (param $len i32)
    (i64.store (i32.const 16384)
      (i64.xor
        (call $update (i64.const -1) (local.get $p) (i32.add (local.get $p) (local.get $len)))
        (i64.const -1))))

  ;; The row hash of a row of n columns whose canonical payload is [p, p + len): fmix64 of the
  ;; CRC-64/XZ of u32be(n) followed by the payload, stored at 16384.
  (func (export "row") (param $p i32) (param $len i32) (param $n i32)
    (local $c i64)
    (local.set $c (call $byte (i64.const -1) (i32.shr_u (local.get $n) (i32.const 24))))
    (local.set $c (call $byte (local.get $c) (i32.shr_u (local.get $n) (i32.const 16))))
    (local.set $c (call $byte (local.get $c) (i32.shr_u (local.get $n) (i32.const 8))))
    (local.set $c (call $byte (local.get $c) (local.get $n)))
    (local.set $c (call $update (local.get $c) (local.get $p) (i32.add (local.get $p) (local.get $len))))
    (i64.store (i32.const 16384) (call $fmix64 (i64.xor (local.get $c) (i64.const -1))))))
