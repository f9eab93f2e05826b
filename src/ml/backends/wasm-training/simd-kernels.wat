;; Hot loops of the wasm training kernels in WebAssembly SIMD, running on tfjs-backend-wasm's own
;; memory (imported). Pointers are byte offsets into that memory; counts are elements. Every
;; function that works per channel needs C % 4 == 0 (the caller falls back to JS otherwise):
;; element i belongs to channel i % C, four consecutive channels per f32x4.
;; Assemble with build-simd.ts (npm wabt); the bytes are committed in simd-module.generated.ts.
;; The matrix products' register tiles (gram_xty, gemm) use relaxed SIMD's f32x4.relaxed_madd (a
;; fused multiply-add where the CPU has FMA, as every x86 of this project's class; else multiply,
;; then add): one instruction instead of two per product, gram_xty's 1x1 filter gradients of a
;; 1.0@224 bs8 step 200-209 -> 152-177 ms CPU on an AVX-512 EPYC. build-simd.ts also writes the same module with
;; each of them as f32x4.mul then f32x4.add, for runtimes without relaxed SIMD (simd.ts picks).
(module
  (import "env" "memory" (memory 1))

  ;; f32x4 lanes 2,3 moved down to 0,1 (for promoting the high half to f64x2).
  (func $hi (param $v v128) (result v128)
    (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))

  ;; y = clamp(nearest(x / s), lo, hi) * s   (fake quant; nearest = round half to even; the clamps
  ;; are pmin/pmax with the value first, as in bn_act_apply)
  (func (export "fq_fwd") (param $x i32) (param $y i32) (param $n i32) (param $s f32) (param $lo f32) (param $hi f32)
    (local $i i32) (local $e i32) (local $vs v128) (local $vlo v128) (local $vhi v128)
    (local.set $vs (f32x4.splat (local.get $s)))
    (local.set $vlo (f32x4.splat (local.get $lo)))
    (local.set $vhi (f32x4.splat (local.get $hi)))
    (local.set $e (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (v128.store (i32.add (local.get $y) (local.get $i))
        (f32x4.mul
          (f32x4.pmin (f32x4.pmax (f32x4.nearest (f32x4.div (v128.load (i32.add (local.get $x) (local.get $i))) (local.get $vs)))
            (local.get $vlo)) (local.get $vhi))
          (local.get $vs)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $l)))
    (local.set $e (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (f32.store (i32.add (local.get $y) (local.get $i))
        (f32.mul
          (f32.min (f32.max (f32.nearest (f32.div (f32.load (i32.add (local.get $x) (local.get $i))) (local.get $s)))
            (local.get $lo)) (local.get $hi))
          (local.get $s)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l))))

  ;; y = pmin(pmax(nearest((x + bias[c]) * mult[c]), lo), hi) + 0, per channel (C % 4 == 0): the int8
  ;; graph's requantization of a convolution's integer sums (int8-graph-runner.ts). + 0 turns a -0
  ;; into +0, as the composite's "+ zero point ... - zero point" does.
  (func (export "requant") (param $x i32) (param $y i32) (param $rows i32) (param $c i32) (param $b i32) (param $m i32) (param $lo f32) (param $hi f32)
    (local $r i32) (local $j i32) (local $cb i32) (local $at i32) (local $vlo v128) (local $vhi v128) (local $zero v128)
    (local.set $vlo (f32x4.splat (local.get $lo)))
    (local.set $vhi (f32x4.splat (local.get $hi)))
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (block $rdone (loop $rl
      (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $j (i32.const 0))
      (block $cdone (loop $cl
        (br_if $cdone (i32.ge_u (local.get $j) (local.get $cb)))
        (v128.store (i32.add (local.get $y) (local.get $at))
          (f32x4.add
            (f32x4.pmin
              (f32x4.pmax
                (f32x4.nearest
                  (f32x4.mul
                    (f32x4.add (v128.load (i32.add (local.get $x) (local.get $at))) (v128.load (i32.add (local.get $b) (local.get $j))))
                    (v128.load (i32.add (local.get $m) (local.get $j)))))
                (local.get $vlo))
              (local.get $vhi))
            (local.get $zero)))
        (local.set $at (i32.add (local.get $at) (i32.const 16)))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $cl)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rl))))

  ;; ONNX Runtime's QLinearAdd on activations stored minus their zero points (the int8 graph's
  ;; residual adds), bit for bit src/ml/qlinear-add.ts: with qa = a + za and qb = b + zb,
  ;; u = f32(f32(fixed + qb * rB) + qa * rA) in float64 (the products are exact there), then
  ;; nearest, clamp to [0, 255], - zo, + 0 (nearest keeps a -0 that the JS rounding does not).
  ;; Written out in the loop: with the two halves in helper functions (Node 20's V8 does not
  ;; inline wasm calls) it ran at 4.1 ns an element, the JS loop's speed; inline, 1.0.
  (func (export "qadd") (param $a i32) (param $b i32) (param $y i32) (param $n i32)
    (param $za f32) (param $zb f32) (param $zo f32) (param $ra f64) (param $rb f64) (param $fixed f32)
    (local $i i32) (local $e i32) (local $vza v128) (local $vzb v128) (local $vzo v128) (local $vra v128) (local $vrb v128)
    (local $dfixed v128) (local $vhi v128) (local $zero v128) (local $q v128) (local $t v128) (local $u v128)
    (local $st f32)
    (local.set $vza (f32x4.splat (local.get $za)))
    (local.set $vzb (f32x4.splat (local.get $zb)))
    (local.set $vzo (f32x4.splat (local.get $zo)))
    (local.set $vra (f64x2.splat (local.get $ra)))
    (local.set $vrb (f64x2.splat (local.get $rb)))
    (local.set $dfixed (f64x2.splat (f64.promote_f32 (local.get $fixed))))
    (local.set $vhi (f32x4.splat (f32.const 255)))
    (local.set $e (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      ;; t = f32(fixed + qb * rB), lanes 0-1 then 2-3 (the high half moved down), joined
      (local.set $q (f32x4.add (v128.load (i32.add (local.get $b) (local.get $i))) (local.get $vzb)))
      (local.set $t (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
        (f32x4.demote_f64x2_zero (f64x2.add (local.get $dfixed) (f64x2.mul (f64x2.promote_low_f32x4 (local.get $q)) (local.get $vrb))))
        (f32x4.demote_f64x2_zero (f64x2.add (local.get $dfixed)
          (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q))) (local.get $vrb))))))
      ;; u = f32(t + qa * rA), the same way
      (local.set $q (f32x4.add (v128.load (i32.add (local.get $a) (local.get $i))) (local.get $vza)))
      (local.set $u (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
        (f32x4.demote_f64x2_zero (f64x2.add (f64x2.promote_low_f32x4 (local.get $t)) (f64x2.mul (f64x2.promote_low_f32x4 (local.get $q)) (local.get $vra))))
        (f32x4.demote_f64x2_zero (f64x2.add
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $t) (local.get $t)))
          (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q))) (local.get $vra))))))
      (v128.store (i32.add (local.get $y) (local.get $i))
        (f32x4.add
          (f32x4.sub (f32x4.pmin (f32x4.pmax (f32x4.nearest (local.get $u)) (local.get $zero)) (local.get $vhi)) (local.get $vzo))
          (local.get $zero)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $l)))
    (local.set $e (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (local.set $st (f32.demote_f64 (f64.add (f64.promote_f32 (local.get $fixed))
        (f64.mul (f64.promote_f32 (f32.add (f32.load (i32.add (local.get $b) (local.get $i))) (local.get $zb))) (local.get $rb)))))
      (local.set $st (f32.demote_f64 (f64.add (f64.promote_f32 (local.get $st))
        (f64.mul (f64.promote_f32 (f32.add (f32.load (i32.add (local.get $a) (local.get $i))) (local.get $za))) (local.get $ra)))))
      (f32.store (i32.add (local.get $y) (local.get $i))
        (f32.add
          (f32.sub (f32.min (f32.max (f32.nearest (local.get $st)) (f32.const 0)) (f32.const 255)) (local.get $zo))
          (f32.const 0)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l))))

  ;; dx = dy * (lo <= x <= hi ? 1 : 0)   (straight-through gradient, same product as tfjs)
  (func (export "fq_bwd") (param $dy i32) (param $x i32) (param $dx i32) (param $n i32) (param $lo f32) (param $hi f32)
    (local $i i32) (local $e i32) (local $vlo v128) (local $vhi v128) (local $one v128) (local $v v128)
    (local.set $vlo (f32x4.splat (local.get $lo)))
    (local.set $vhi (f32x4.splat (local.get $hi)))
    (local.set $one (f32x4.splat (f32.const 1)))
    (local.set $e (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (local.set $v (v128.load (i32.add (local.get $x) (local.get $i))))
      (v128.store (i32.add (local.get $dx) (local.get $i))
        (f32x4.mul (v128.load (i32.add (local.get $dy) (local.get $i)))
          (v128.and (local.get $one)
            (v128.and (f32x4.ge (local.get $v) (local.get $vlo)) (f32x4.le (local.get $v) (local.get $vhi))))))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $l)))
    (local.set $e (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (f32.store (i32.add (local.get $dx) (local.get $i))
        (f32.mul (f32.load (i32.add (local.get $dy) (local.get $i)))
          (f32.convert_i32_u (i32.and
            (f32.ge (f32.load (i32.add (local.get $x) (local.get $i))) (local.get $lo))
            (f32.le (f32.load (i32.add (local.get $x) (local.get $i))) (local.get $hi))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l))))

  ;; dx = dy * (0 < x <= 6 ? 1 : 0), NaN where x is NaN (as tfjs's Step-based mask)
  (func (export "relu6_bwd") (param $dy i32) (param $x i32) (param $dx i32) (param $n i32)
    (local $i i32) (local $e i32) (local $zero v128) (local $six v128) (local $one v128) (local $v v128) (local $m v128)
    (local.set $six (f32x4.splat (f32.const 6)))
    (local.set $one (f32x4.splat (f32.const 1)))
    (local.set $e (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (local.set $v (v128.load (i32.add (local.get $x) (local.get $i))))
      (local.set $m (v128.and (local.get $one)
        (v128.and (f32x4.gt (local.get $v) (local.get $zero)) (f32x4.le (local.get $v) (local.get $six)))))
      ;; NaN lanes of x pass their NaN into the product.
      (local.set $m (v128.bitselect (local.get $v) (local.get $m) (f32x4.ne (local.get $v) (local.get $v))))
      (v128.store (i32.add (local.get $dx) (local.get $i))
        (f32x4.mul (v128.load (i32.add (local.get $dy) (local.get $i))) (local.get $m)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $l)))
    (local.set $e (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (local.set $v (v128.load32_zero (i32.add (local.get $x) (local.get $i))))
      (local.set $m (v128.and (local.get $one)
        (v128.and (f32x4.gt (local.get $v) (local.get $zero)) (f32x4.le (local.get $v) (local.get $six)))))
      (local.set $m (v128.bitselect (local.get $v) (local.get $m) (f32x4.ne (local.get $v) (local.get $v))))
      (f32.store (i32.add (local.get $dx) (local.get $i))
        (f32.mul (f32.load (i32.add (local.get $dy) (local.get $i))) (f32x4.extract_lane 0 (local.get $m))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l))))

  ;; Batch norm's output with its activation, in one pass (bn-act in ops.ts):
  ;;   v = clamp(x[r, c] * k[c] + b[c], clo, chi)        (f32 mul then add, as tfjs rounds; ReLU6
  ;;                                                      or +-inf bounds)
  ;;   y = s > 0 ? clamp(nearest(v / s), qlo, qhi) * s : v   (the activation's fake quant)
  ;; The clamps are pmin/pmax with v first (one x86 instruction each; f32x4.min/max are a
  ;; sequence of about seven): a NaN v stays NaN, as with min/max; a -0 may stay -0.
  (func (export "bn_act_apply") (param $x i32) (param $y i32) (param $rows i32) (param $c i32) (param $k i32) (param $b i32)
      (param $clo f32) (param $chi f32) (param $s f32) (param $qlo f32) (param $qhi f32)
    (local $off i32) (local $end i32) (local $j i32) (local $cb i32) (local $quant i32) (local $v v128)
    (local $vclo v128) (local $vchi v128) (local $vs v128) (local $vqlo v128) (local $vqhi v128)
    (local.set $vclo (f32x4.splat (local.get $clo)))
    (local.set $vchi (f32x4.splat (local.get $chi)))
    (local.set $vs (f32x4.splat (local.get $s)))
    (local.set $vqlo (f32x4.splat (local.get $qlo)))
    (local.set $vqhi (f32x4.splat (local.get $qhi)))
    (local.set $quant (f32.gt (local.get $s) (f32.const 0)))
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end (i32.mul (local.get $rows) (local.get $cb)))
    (block $done (loop $rowl
      (br_if $done (i32.ge_u (local.get $off) (local.get $end)))
      (local.set $j (i32.const 0))
      (block $cd (loop $cl
        (br_if $cd (i32.ge_u (local.get $j) (local.get $cb)))
        (local.set $v
          (f32x4.pmin
            (f32x4.pmax
              (f32x4.add
                (f32x4.mul (v128.load (i32.add (local.get $x) (i32.add (local.get $off) (local.get $j)))) (v128.load (i32.add (local.get $k) (local.get $j))))
                (v128.load (i32.add (local.get $b) (local.get $j))))
              (local.get $vclo))
            (local.get $vchi)))
        (if (local.get $quant) (then
          (local.set $v
            (f32x4.mul
              (f32x4.pmin (f32x4.pmax (f32x4.nearest (f32x4.div (local.get $v) (local.get $vs))) (local.get $vqlo)) (local.get $vqhi))
              (local.get $vs)))))
        (v128.store (i32.add (local.get $y) (i32.add (local.get $off) (local.get $j))) (local.get $v))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $cl)))
      (local.set $off (i32.add (local.get $off) (local.get $cb)))
      (br $rowl))))

  ;; dx = a[c] * g + bc[c] * (x - m[c]) + d[c]   (batch-norm backward, per-channel coefficients f32)
  ;; with g = dy where the activation passed its gradient: not (y < lo or y > hi), y = x * k[c] + b[c]
  ;; recomputed as bn_act_apply did (lo, hi = -inf, inf: every element; a NaN y passes dy)
  (func (export "bn_bwd_apply") (param $dy i32) (param $x i32) (param $dx i32) (param $rows i32) (param $c i32) (param $a i32) (param $bc i32) (param $m i32) (param $d i32)
      (param $k i32) (param $b i32) (param $lo f32) (param $hi f32)
    (local $off i32) (local $end i32) (local $j i32) (local $cb i32) (local $xv v128) (local $y v128) (local $vlo v128) (local $vhi v128)
    (local.set $vlo (f32x4.splat (local.get $lo)))
    (local.set $vhi (f32x4.splat (local.get $hi)))
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end (i32.mul (local.get $rows) (local.get $cb)))
    (block $done (loop $rowl
      (br_if $done (i32.ge_u (local.get $off) (local.get $end)))
      (local.set $j (i32.const 0))
      (block $cd (loop $cl
        (br_if $cd (i32.ge_u (local.get $j) (local.get $cb)))
        (local.set $xv (v128.load (i32.add (local.get $x) (i32.add (local.get $off) (local.get $j)))))
        (local.set $y (f32x4.add (f32x4.mul (local.get $xv) (v128.load (i32.add (local.get $k) (local.get $j)))) (v128.load (i32.add (local.get $b) (local.get $j)))))
        (v128.store (i32.add (local.get $dx) (i32.add (local.get $off) (local.get $j)))
          (f32x4.add
            (f32x4.add
              (f32x4.mul (v128.load (i32.add (local.get $a) (local.get $j)))
                (v128.andnot (v128.load (i32.add (local.get $dy) (i32.add (local.get $off) (local.get $j))))
                  (v128.or (f32x4.lt (local.get $y) (local.get $vlo)) (f32x4.gt (local.get $y) (local.get $vhi)))))
              (f32x4.mul (v128.load (i32.add (local.get $bc) (local.get $j)))
                (f32x4.sub (local.get $xv) (v128.load (i32.add (local.get $m) (local.get $j))))))
            (v128.load (i32.add (local.get $d) (local.get $j)))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $cl)))
      (local.set $off (i32.add (local.get $off) (local.get $cb)))
      (br $rowl))))

  ;; out[c] = max over rows of |x[r, c]|   (per-channel weight range)
  (func (export "chan_absmax") (param $x i32) (param $rows i32) (param $c i32) (param $out i32)
    (local $off i32) (local $end i32) (local $j i32) (local $cb i32)
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end (i32.mul (local.get $rows) (local.get $cb)))
    (block $done (loop $rowl
      (br_if $done (i32.ge_u (local.get $off) (local.get $end)))
      (local.set $j (i32.const 0))
      (block $cd (loop $cl
        (br_if $cd (i32.ge_u (local.get $j) (local.get $cb)))
        (v128.store (i32.add (local.get $out) (local.get $j))
          (f32x4.max (v128.load (i32.add (local.get $out) (local.get $j)))
            (f32x4.abs (v128.load (i32.add (local.get $x) (i32.add (local.get $off) (local.get $j)))))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $cl)))
      (local.set $off (i32.add (local.get $off) (local.get $cb)))
      (br $rowl))))

  ;; y[r, c] = clamp(nearest(x[r, c] / s[c]), -q, q) * s[c]   (per-channel symmetric fake quant)
  (func (export "fq_chan") (param $x i32) (param $y i32) (param $rows i32) (param $c i32) (param $s i32) (param $q f32)
    (local $off i32) (local $end i32) (local $j i32) (local $cb i32) (local $vs v128) (local $vq v128) (local $vnq v128)
    (local.set $vq (f32x4.splat (local.get $q)))
    (local.set $vnq (f32x4.neg (local.get $vq)))
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end (i32.mul (local.get $rows) (local.get $cb)))
    (block $done (loop $rowl
      (br_if $done (i32.ge_u (local.get $off) (local.get $end)))
      (local.set $j (i32.const 0))
      (block $cd (loop $cl
        (br_if $cd (i32.ge_u (local.get $j) (local.get $cb)))
        (local.set $vs (v128.load (i32.add (local.get $s) (local.get $j))))
        (v128.store (i32.add (local.get $y) (i32.add (local.get $off) (local.get $j)))
          (f32x4.mul
            (f32x4.pmin (f32x4.pmax
              (f32x4.nearest (f32x4.div (v128.load (i32.add (local.get $x) (i32.add (local.get $off) (local.get $j)))) (local.get $vs)))
              (local.get $vnq)) (local.get $vq))
            (local.get $vs)))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $cl)))
      (local.set $off (i32.add (local.get $off) (local.get $cb)))
      (br $rowl))))

  ;; dst[i] += src[i] (f32 -> f64), then src[i] = 0; n elements, n % 2 == 0
  (func $flush (param $src i32) (param $dst i32) (param $n i32)
    (local $i i32) (local $e i32)
    (local.set $e (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (v128.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1)))
        (f64x2.add (v128.load (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1))))
          (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $src) (local.get $i))))))
      (i64.store (i32.add (local.get $src) (local.get $i)) (i64.const 0))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $l))))

  ;; $n bytes (a multiple of 4) from $src to $dst, 16 at a time, then 4 at a time.
  (func $copy (param $src i32) (param $dst i32) (param $n i32)
    (block $vd (loop $vl
      (br_if $vd (i32.lt_u (local.get $n) (i32.const 16)))
      (v128.store (local.get $dst) (v128.load (local.get $src)))
      (local.set $src (i32.add (local.get $src) (i32.const 16)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
      (local.set $n (i32.sub (local.get $n) (i32.const 16)))
      (br $vl)))
    (block $sd (loop $sl
      (br_if $sd (i32.eqz (local.get $n)))
      (f32.store (local.get $dst) (f32.load (local.get $src)))
      (local.set $src (i32.add (local.get $src) (i32.const 4)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
      (local.set $n (i32.sub (local.get $n) (i32.const 4)))
      (br $sl))))

  ;; Patches of x for a filter gradient (im2col): row (b, oy, ox) of out, $k floats from the next,
  ;; holds the window's taps in (kh, kw, c) order; taps in the padding are left as they are (the
  ;; caller zeroes out). A window row whose kw taps are all inside the image is kw*c consecutive
  ;; floats of x, copied as one run. Addresses are i32 sums that may wrap past 2^31 (heaps above
  ;; 2 GB): only their final values are used.
  (func (export "im2col") (param $x i32) (param $out i32)
    (param $nb i32) (param $h i32) (param $w i32) (param $c i32) (param $oh i32) (param $ow i32)
    (param $kh i32) (param $kw i32) (param $sh i32) (param $sw i32) (param $pt i32) (param $pl i32) (param $k i32)
    (local $b i32) (local $oy i32) (local $ox i32) (local $i i32) (local $j i32) (local $iy i32) (local $ix0 i32)
    (local $cb i32) (local $span i32) (local $row i32) (local $src i32) (local $dst i32) (local $inside i32)
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (local.set $span (i32.mul (local.get $kw) (local.get $cb)))
    (local.set $row (local.get $out))
    (block $bd (loop $bl
      (br_if $bd (i32.ge_u (local.get $b) (local.get $nb)))
      (local.set $oy (i32.const 0))
      (block $yd (loop $yl
        (br_if $yd (i32.ge_u (local.get $oy) (local.get $oh)))
        (local.set $ox (i32.const 0))
        (block $xd (loop $xl
          (br_if $xd (i32.ge_u (local.get $ox) (local.get $ow)))
          (local.set $ix0 (i32.sub (i32.mul (local.get $ox) (local.get $sw)) (local.get $pl)))
          (local.set $inside (i32.and (i32.ge_s (local.get $ix0) (i32.const 0))
            (i32.le_s (i32.add (local.get $ix0) (local.get $kw)) (local.get $w))))
          (local.set $i (i32.const 0))
          (block $id (loop $il
            (br_if $id (i32.ge_u (local.get $i) (local.get $kh)))
            (local.set $iy (i32.sub (i32.add (i32.mul (local.get $oy) (local.get $sh)) (local.get $i)) (local.get $pt)))
            (if (i32.lt_u (local.get $iy) (local.get $h)) (then
              ;; x at (b, iy, ix0), ix0 possibly left of the image; out at tap (i, 0).
              (local.set $src (i32.add (local.get $x)
                (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $h)) (local.get $iy)) (local.get $w)) (local.get $ix0)) (local.get $cb))))
              (local.set $dst (i32.add (local.get $row) (i32.mul (local.get $i) (local.get $span))))
              (if (local.get $inside)
                (then (call $copy (local.get $src) (local.get $dst) (local.get $span)))
                (else
                  (local.set $j (i32.const 0))
                  (block $jd (loop $jl
                    (br_if $jd (i32.ge_u (local.get $j) (local.get $kw)))
                    (if (i32.lt_u (i32.add (local.get $ix0) (local.get $j)) (local.get $w)) (then
                      (call $copy (i32.add (local.get $src) (i32.mul (local.get $j) (local.get $cb)))
                        (i32.add (local.get $dst) (i32.mul (local.get $j) (local.get $cb))) (local.get $cb))))
                    (local.set $j (i32.add (local.get $j) (i32.const 1)))
                    (br $jl)))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $il)))
          (local.set $row (i32.add (local.get $row) (i32.shl (local.get $k) (i32.const 2))))
          (local.set $ox (i32.add (local.get $ox) (i32.const 1)))
          (br $xl)))
        (local.set $oy (i32.add (local.get $oy) (i32.const 1)))
        (br $yl)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bl))))

  ;; Depthwise filter gradient, multiplier 1: acc64[kh, kw, c] += sum over b, oy, ox of
  ;; x[b, oy*sh+kh-pt, ox*sw+kw-pl, c] * dy[b, oy, ox, c]. Sums per image in f32 (acc32, zeroed by
  ;; the caller), flushed into the f64 totals after each image. Output pixels in the box
  ;; [oy0, oy1) x [ox0, ox1) (3x3 filters only: every tap inside the image; empty otherwise) go
  ;; through $dw3_fgrad_row, the rest through the generic tap loop here.
  (func (export "dw_filter_grad")
    (param $x i32) (param $dy i32) (param $acc32 i32) (param $acc64 i32)
    (param $nb i32) (param $h i32) (param $w i32) (param $c i32) (param $oh i32) (param $ow i32)
    (param $kh i32) (param $kw i32) (param $sh i32) (param $sw i32) (param $pt i32) (param $pl i32)
    (param $oy0 i32) (param $oy1 i32) (param $ox0 i32) (param $ox1 i32)
    (local $b i32) (local $oy i32) (local $ox i32) (local $i i32) (local $j i32) (local $iy i32) (local $ix i32)
    (local $cb i32) (local $xp i32) (local $dyp i32) (local $ap i32) (local $k i32) (local $inner i32)
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (block $bd (loop $bl
      (br_if $bd (i32.ge_u (local.get $b) (local.get $nb)))
      (local.set $oy (i32.const 0))
      (block $yd (loop $yl
        (br_if $yd (i32.ge_u (local.get $oy) (local.get $oh)))
        (local.set $ox (i32.const 0))
        (block $xd (loop $xl
          (br_if $xd (i32.ge_u (local.get $ox) (local.get $ow)))
          (local.set $dyp (i32.add (local.get $dy)
            (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $oh)) (local.get $oy)) (local.get $ow)) (local.get $ox)) (local.get $cb))))
          ;; Pixels of the interior box are summed by $dw3_fgrad_row below.
          (local.set $inner (i32.and
            (i32.and (i32.ge_s (local.get $oy) (local.get $oy0)) (i32.lt_s (local.get $oy) (local.get $oy1)))
            (i32.and (i32.ge_s (local.get $ox) (local.get $ox0)) (i32.lt_s (local.get $ox) (local.get $ox1)))))
          (local.set $i (select (local.get $kh) (i32.const 0) (local.get $inner)))
          (block $id (loop $il
            (br_if $id (i32.ge_u (local.get $i) (local.get $kh)))
            (local.set $iy (i32.sub (i32.add (i32.mul (local.get $oy) (local.get $sh)) (local.get $i)) (local.get $pt)))
            (if (i32.lt_u (local.get $iy) (local.get $h)) (then
              (local.set $j (i32.const 0))
              (block $jd (loop $jl
                (br_if $jd (i32.ge_u (local.get $j) (local.get $kw)))
                (local.set $ix (i32.sub (i32.add (i32.mul (local.get $ox) (local.get $sw)) (local.get $j)) (local.get $pl)))
                (if (i32.lt_u (local.get $ix) (local.get $w)) (then
                  (local.set $xp (i32.add (local.get $x)
                    (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $h)) (local.get $iy)) (local.get $w)) (local.get $ix)) (local.get $cb))))
                  (local.set $ap (i32.add (local.get $acc32) (i32.mul (i32.add (i32.mul (local.get $i) (local.get $kw)) (local.get $j)) (local.get $cb))))
                  (local.set $k (i32.const 0))
                  (block $kd (loop $kl
                    (br_if $kd (i32.ge_u (local.get $k) (local.get $cb)))
                    (v128.store (i32.add (local.get $ap) (local.get $k))
                      (f32x4.add (v128.load (i32.add (local.get $ap) (local.get $k)))
                        (f32x4.mul (v128.load (i32.add (local.get $xp) (local.get $k))) (v128.load (i32.add (local.get $dyp) (local.get $k))))))
                    (local.set $k (i32.add (local.get $k) (i32.const 16)))
                    (br $kl)))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $jl)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $il)))
          (local.set $ox (i32.add (local.get $ox) (i32.const 1)))
          (br $xl)))
        (local.set $oy (i32.add (local.get $oy) (i32.const 1)))
        (br $yl)))
      (local.set $oy (local.get $oy0))
      (block $rd (loop $rl
        (br_if $rd (i32.ge_s (local.get $oy) (local.get $oy1)))
        (call $dw3_fgrad_row
          (i32.add (local.get $x) (i32.mul (i32.add
            (i32.mul (i32.add (i32.mul (local.get $b) (local.get $h)) (i32.sub (i32.mul (local.get $oy) (local.get $sh)) (local.get $pt))) (local.get $w))
            (i32.sub (i32.mul (local.get $ox0) (local.get $sw)) (local.get $pl))) (local.get $cb)))
          (i32.add (local.get $dy) (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $oh)) (local.get $oy)) (local.get $ow)) (local.get $ox0)) (local.get $cb)))
          (i32.sub (local.get $ox1) (local.get $ox0)) (local.get $cb) (i32.mul (local.get $sw) (local.get $cb)) (i32.mul (local.get $w) (local.get $cb)) (local.get $acc32))
        (local.set $oy (i32.add (local.get $oy) (i32.const 1)))
        (br $rl)))
      (call $flush (local.get $acc32) (local.get $acc64) (i32.mul (i32.mul (local.get $kh) (local.get $kw)) (local.get $c)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bl))))

  ;; One output row of the 3x3 depthwise filter gradient over $n interior pixels: for each four
  ;; channels, the nine tap sums stay in registers across the row (one dy load and nine x loads per
  ;; pixel, instead of a load-add-store of the tap sum per tap), then are added to acc32.
  ;; $px: x at (row oy*sh-pt, col ox0*sw-pl); $pd: dy at (oy, ox0); $cb: channel bytes; $sx: bytes
  ;; between horizontally adjacent windows (sw*cb); $wb: bytes per input row.
  (func $dw3_fgrad_row (param $px i32) (param $pd i32) (param $n i32) (param $cb i32) (param $sx i32) (param $wb i32) (param $acc i32)
    (local $k i32) (local $p i32) (local $q i32) (local $r i32) (local $d v128)
    (local $o1 i32) (local $o2 i32) (local $o3 i32) (local $o4 i32) (local $o5 i32) (local $o6 i32) (local $o7 i32) (local $o8 i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $a4 v128) (local $a5 v128) (local $a6 v128) (local $a7 v128) (local $a8 v128)
    (local.set $o1 (local.get $cb))
    (local.set $o2 (i32.shl (local.get $cb) (i32.const 1)))
    (local.set $o3 (local.get $wb))
    (local.set $o4 (i32.add (local.get $wb) (local.get $o1)))
    (local.set $o5 (i32.add (local.get $wb) (local.get $o2)))
    (local.set $o6 (i32.shl (local.get $wb) (i32.const 1)))
    (local.set $o7 (i32.add (local.get $o6) (local.get $o1)))
    (local.set $o8 (i32.add (local.get $o6) (local.get $o2)))
    (block $kd (loop $kl
      (br_if $kd (i32.ge_u (local.get $k) (local.get $cb)))
      (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (local.get $a0)) (local.set $a2 (local.get $a0))
      (local.set $a3 (local.get $a0)) (local.set $a4 (local.get $a0)) (local.set $a5 (local.get $a0))
      (local.set $a6 (local.get $a0)) (local.set $a7 (local.get $a0)) (local.set $a8 (local.get $a0))
      (local.set $p (i32.add (local.get $px) (local.get $k)))
      (local.set $q (i32.add (local.get $pd) (local.get $k)))
      (local.set $r (local.get $n))
      (block $xd (loop $xl
        (br_if $xd (i32.eqz (local.get $r)))
        (local.set $d (v128.load (local.get $q)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load (local.get $p)) (local.get $d))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o1))) (local.get $d))))
        (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o2))) (local.get $d))))
        (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o3))) (local.get $d))))
        (local.set $a4 (f32x4.add (local.get $a4) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o4))) (local.get $d))))
        (local.set $a5 (f32x4.add (local.get $a5) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o5))) (local.get $d))))
        (local.set $a6 (f32x4.add (local.get $a6) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o6))) (local.get $d))))
        (local.set $a7 (f32x4.add (local.get $a7) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o7))) (local.get $d))))
        (local.set $a8 (f32x4.add (local.get $a8) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o8))) (local.get $d))))
        (local.set $p (i32.add (local.get $p) (local.get $sx)))
        (local.set $q (i32.add (local.get $q) (local.get $cb)))
        (local.set $r (i32.sub (local.get $r) (i32.const 1)))
        (br $xl)))
      (local.set $p (i32.add (local.get $acc) (i32.add (i32.mul (local.get $cb) (i32.const 0)) (local.get $k))))
      (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $a0)))
      (local.set $p (i32.add (local.get $acc) (i32.add (i32.mul (local.get $cb) (i32.const 1)) (local.get $k))))
      (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $a1)))
      (local.set $p (i32.add (local.get $acc) (i32.add (i32.mul (local.get $cb) (i32.const 2)) (local.get $k))))
      (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $a2)))
      (local.set $p (i32.add (local.get $acc) (i32.add (i32.mul (local.get $cb) (i32.const 3)) (local.get $k))))
      (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $a3)))
      (local.set $p (i32.add (local.get $acc) (i32.add (i32.mul (local.get $cb) (i32.const 4)) (local.get $k))))
      (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $a4)))
      (local.set $p (i32.add (local.get $acc) (i32.add (i32.mul (local.get $cb) (i32.const 5)) (local.get $k))))
      (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $a5)))
      (local.set $p (i32.add (local.get $acc) (i32.add (i32.mul (local.get $cb) (i32.const 6)) (local.get $k))))
      (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $a6)))
      (local.set $p (i32.add (local.get $acc) (i32.add (i32.mul (local.get $cb) (i32.const 7)) (local.get $k))))
      (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $a7)))
      (local.set $p (i32.add (local.get $acc) (i32.add (i32.mul (local.get $cb) (i32.const 8)) (local.get $k))))
      (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $a8)))
      (local.set $k (i32.add (local.get $k) (i32.const 16)))
      (br $kl))))

  ;; dx[p..p+cb) = dy * w (first tap of a pixel) or += dy * w, four channels at a time.
  (func $dw_tap (param $pdx i32) (param $pdy i32) (param $pf i32) (param $cb i32) (param $first i32)
    (local $k i32)
    (if (local.get $first)
      (then
        (block $d (loop $l
          (br_if $d (i32.ge_u (local.get $k) (local.get $cb)))
          (v128.store (i32.add (local.get $pdx) (local.get $k))
            (f32x4.mul (v128.load (i32.add (local.get $pdy) (local.get $k))) (v128.load (i32.add (local.get $pf) (local.get $k)))))
          (local.set $k (i32.add (local.get $k) (i32.const 16)))
          (br $l))))
      (else
        (block $d (loop $l
          (br_if $d (i32.ge_u (local.get $k) (local.get $cb)))
          (v128.store (i32.add (local.get $pdx) (local.get $k))
            (f32x4.add (v128.load (i32.add (local.get $pdx) (local.get $k)))
              (f32x4.mul (v128.load (i32.add (local.get $pdy) (local.get $k))) (v128.load (i32.add (local.get $pf) (local.get $k))))))
          (local.set $k (i32.add (local.get $k) (i32.const 16)))
          (br $l))))))

  ;; Depthwise input gradient, multiplier 1: dx[b, iy, ix, c] = sum of dy[b, oy, ox, c] *
  ;; w[kh, kw, c] over the taps that read (iy, ix) (oy*sh + kh - pt = iy, likewise x). Every dx
  ;; pixel is written (zero where no tap reads it), so dx needs no zeroing. Input pixels in the box
  ;; [iy0, iy1) x [ix0, ix1) (3x3, stride 1 only: every tap that reads them is inside dy; empty
  ;; otherwise) go through $dw3_igrad_row; the others are gathered here tap by tap, their
  ;; channels summed in place (one pixel's channels stay in L1). Against adding each output
  ;; pixel's nine products into a zeroed dx, at 1.0@224 bs8: the four stride-2 gradients 18.3 ->
  ;; 12.3 ms, all seventeen 45.9 -> 31.8 (minimum of 8 calls each, Intel family 6 model 167).
  (func (export "dw_input_grad")
    (param $dy i32) (param $f i32) (param $dx i32)
    (param $nb i32) (param $h i32) (param $w i32) (param $c i32) (param $oh i32) (param $ow i32)
    (param $kh i32) (param $kw i32) (param $sh i32) (param $sw i32) (param $pt i32) (param $pl i32)
    (param $iy0 i32) (param $iy1 i32) (param $ix0 i32) (param $ix1 i32)
    (local $b i32) (local $iy i32) (local $ix i32) (local $i i32) (local $j i32) (local $t i32) (local $u i32)
    (local $oy i32) (local $ox i32) (local $cb i32) (local $pdx i32) (local $first i32) (local $rowIn i32) (local $k i32)
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (block $bd (loop $bl
      (br_if $bd (i32.ge_u (local.get $b) (local.get $nb)))
      (local.set $iy (i32.const 0))
      (block $yd (loop $yl
        (br_if $yd (i32.ge_u (local.get $iy) (local.get $h)))
        (local.set $rowIn (i32.and (i32.ge_s (local.get $iy) (local.get $iy0)) (i32.lt_s (local.get $iy) (local.get $iy1))))
        (local.set $ix (i32.const 0))
        (block $xd (loop $xl
          (br_if $xd (i32.ge_u (local.get $ix) (local.get $w)))
          ;; Interior pixels: $dw3_igrad_row below.
          (if (i32.eqz (i32.and (local.get $rowIn)
                (i32.and (i32.ge_s (local.get $ix) (local.get $ix0)) (i32.lt_s (local.get $ix) (local.get $ix1))))) (then
            (local.set $pdx (i32.add (local.get $dx)
              (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $h)) (local.get $iy)) (local.get $w)) (local.get $ix)) (local.get $cb))))
            (local.set $first (i32.const 1))
            (local.set $i (i32.const 0))
            (block $id (loop $il
              (br_if $id (i32.ge_u (local.get $i) (local.get $kh)))
              ;; oy = (iy + pt - kh) / sh when that divides and lands inside dy.
              (local.set $t (i32.sub (i32.add (local.get $iy) (local.get $pt)) (local.get $i)))
              (local.set $oy (i32.div_u (local.get $t) (local.get $sh)))
              (if (i32.and (i32.ge_s (local.get $t) (i32.const 0))
                    (i32.and (i32.eqz (i32.rem_u (local.get $t) (local.get $sh))) (i32.lt_u (local.get $oy) (local.get $oh)))) (then
                (local.set $j (i32.const 0))
                (block $jd (loop $jl
                  (br_if $jd (i32.ge_u (local.get $j) (local.get $kw)))
                  (local.set $u (i32.sub (i32.add (local.get $ix) (local.get $pl)) (local.get $j)))
                  (local.set $ox (i32.div_u (local.get $u) (local.get $sw)))
                  (if (i32.and (i32.ge_s (local.get $u) (i32.const 0))
                        (i32.and (i32.eqz (i32.rem_u (local.get $u) (local.get $sw))) (i32.lt_u (local.get $ox) (local.get $ow)))) (then
                    (call $dw_tap (local.get $pdx)
                      (i32.add (local.get $dy) (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $oh)) (local.get $oy)) (local.get $ow)) (local.get $ox)) (local.get $cb)))
                      (i32.add (local.get $f) (i32.mul (i32.add (i32.mul (local.get $i) (local.get $kw)) (local.get $j)) (local.get $cb)))
                      (local.get $cb) (local.get $first))
                    (local.set $first (i32.const 0))))
                  (local.set $j (i32.add (local.get $j) (i32.const 1)))
                  (br $jl)))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $il)))
            ;; No tap reads this pixel (a stride larger than the filter): its gradient is zero.
            (if (local.get $first) (then
              (local.set $k (i32.const 0))
              (block $zd (loop $zl
                (br_if $zd (i32.ge_u (local.get $k) (local.get $cb)))
                (v128.store (i32.add (local.get $pdx) (local.get $k)) (v128.const i32x4 0 0 0 0))
                (local.set $k (i32.add (local.get $k) (i32.const 16)))
                (br $zl)))))))
          (local.set $ix (i32.add (local.get $ix) (i32.const 1)))
          (br $xl)))
        (local.set $iy (i32.add (local.get $iy) (i32.const 1)))
        (br $yl)))
      (local.set $iy (local.get $iy0))
      (block $rd (loop $rl
        (br_if $rd (i32.ge_s (local.get $iy) (local.get $iy1)))
        ;; dy at the (kh, kw) = (2, 2) tap of (iy, ix0): row iy+pt-2, column ix0+pl-2.
        (call $dw3_igrad_row
          (i32.add (local.get $dy) (i32.mul (i32.add
            (i32.mul (i32.add (i32.mul (local.get $b) (local.get $oh)) (i32.sub (i32.add (local.get $iy) (local.get $pt)) (i32.const 2))) (local.get $ow))
            (i32.sub (i32.add (local.get $ix0) (local.get $pl)) (i32.const 2))) (local.get $cb)))
          (local.get $f)
          (i32.add (local.get $dx) (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $h)) (local.get $iy)) (local.get $w)) (local.get $ix0)) (local.get $cb)))
          (i32.sub (local.get $ix1) (local.get $ix0)) (local.get $cb) (i32.mul (local.get $ow) (local.get $cb)))
        (local.set $iy (i32.add (local.get $iy) (i32.const 1)))
        (br $rl)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bl))))

  ;; One input row of the 3x3 stride-1 depthwise input gradient over $n interior pixels: for each
  ;; four channels the nine filter taps stay in registers and each dx is the sum of its nine
  ;; dy * w products, stored once (instead of nine load-add-stores of dx per output pixel).
  ;; $pd: dy at tap (2, 2) of the first pixel; tap (kh, kw) is (2 - kh) dy rows and (2 - kw)
  ;; pixels further; $pf: the filter [3, 3, C]; $pdx: dx of the first pixel; $owb: bytes per dy row.
  (func $dw3_igrad_row (param $pd i32) (param $pf i32) (param $pdx i32) (param $n i32) (param $cb i32) (param $owb i32)
    (local $k i32) (local $p i32) (local $q i32) (local $r i32) (local $s v128)
    (local $o0 i32) (local $o1 i32) (local $o2 i32) (local $o3 i32) (local $o4 i32) (local $o5 i32) (local $o6 i32) (local $o7 i32) (local $o8 i32)
    (local $w0 v128) (local $w1 v128) (local $w2 v128) (local $w3 v128) (local $w4 v128) (local $w5 v128) (local $w6 v128) (local $w7 v128) (local $w8 v128)
    ;; $oT: byte offset from $p of the dy read by tap T = kh*3 + kw, i.e. (2-kh)*owb + (2-kw)*cb.
    (local.set $o8 (i32.const 0))
    (local.set $o7 (local.get $cb))
    (local.set $o6 (i32.shl (local.get $cb) (i32.const 1)))
    (local.set $o5 (local.get $owb))
    (local.set $o4 (i32.add (local.get $owb) (local.get $o7)))
    (local.set $o3 (i32.add (local.get $owb) (local.get $o6)))
    (local.set $o2 (i32.shl (local.get $owb) (i32.const 1)))
    (local.set $o1 (i32.add (local.get $o2) (local.get $o7)))
    (local.set $o0 (i32.add (local.get $o2) (local.get $o6)))
    (block $kd (loop $kl
      (br_if $kd (i32.ge_u (local.get $k) (local.get $cb)))
      (local.set $w0 (v128.load (i32.add (local.get $pf) (i32.add (i32.mul (local.get $cb) (i32.const 0)) (local.get $k)))))
      (local.set $w1 (v128.load (i32.add (local.get $pf) (i32.add (i32.mul (local.get $cb) (i32.const 1)) (local.get $k)))))
      (local.set $w2 (v128.load (i32.add (local.get $pf) (i32.add (i32.mul (local.get $cb) (i32.const 2)) (local.get $k)))))
      (local.set $w3 (v128.load (i32.add (local.get $pf) (i32.add (i32.mul (local.get $cb) (i32.const 3)) (local.get $k)))))
      (local.set $w4 (v128.load (i32.add (local.get $pf) (i32.add (i32.mul (local.get $cb) (i32.const 4)) (local.get $k)))))
      (local.set $w5 (v128.load (i32.add (local.get $pf) (i32.add (i32.mul (local.get $cb) (i32.const 5)) (local.get $k)))))
      (local.set $w6 (v128.load (i32.add (local.get $pf) (i32.add (i32.mul (local.get $cb) (i32.const 6)) (local.get $k)))))
      (local.set $w7 (v128.load (i32.add (local.get $pf) (i32.add (i32.mul (local.get $cb) (i32.const 7)) (local.get $k)))))
      (local.set $w8 (v128.load (i32.add (local.get $pf) (i32.add (i32.mul (local.get $cb) (i32.const 8)) (local.get $k)))))
      (local.set $p (i32.add (local.get $pd) (local.get $k)))
      (local.set $q (i32.add (local.get $pdx) (local.get $k)))
      (local.set $r (local.get $n))
      (block $xd (loop $xl
        (br_if $xd (i32.eqz (local.get $r)))
        (local.set $s (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o0))) (local.get $w0)))
        (local.set $s (f32x4.add (local.get $s) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o1))) (local.get $w1))))
        (local.set $s (f32x4.add (local.get $s) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o2))) (local.get $w2))))
        (local.set $s (f32x4.add (local.get $s) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o3))) (local.get $w3))))
        (local.set $s (f32x4.add (local.get $s) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o4))) (local.get $w4))))
        (local.set $s (f32x4.add (local.get $s) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o5))) (local.get $w5))))
        (local.set $s (f32x4.add (local.get $s) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o6))) (local.get $w6))))
        (local.set $s (f32x4.add (local.get $s) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o7))) (local.get $w7))))
        (local.set $s (f32x4.add (local.get $s) (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o8))) (local.get $w8))))
        (v128.store (local.get $q) (local.get $s))
        (local.set $p (i32.add (local.get $p) (local.get $cb)))
        (local.set $q (i32.add (local.get $q) (local.get $cb)))
        (local.set $r (i32.sub (local.get $r) (i32.const 1)))
        (br $xl)))
      (local.set $k (i32.add (local.get $k) (i32.const 16)))
      (br $kl))))

  ;; The four f32 lanes of $v added to the f64s at $p .. $p+32.
  (func $add4 (param $p i32) (param $v v128)
    (v128.store (local.get $p) (f64x2.add (v128.load (local.get $p)) (f64x2.promote_low_f32x4 (local.get $v))))
    (v128.store offset=16 (local.get $p)
      (f64x2.add (v128.load offset=16 (local.get $p)) (f64x2.promote_low_f32x4 (call $hi (local.get $v))))))

  ;; A tile's row of 4 sums out: stored as f32 at $p when $cw is 16 (a single row block, whose f32
  ;; sums are the totals), else added to the f64 totals at $p ($cw 32: 4 f64s).
  (func $out4 (param $p i32) (param $v v128) (param $cw i32)
    (if (i32.eq (local.get $cw) (i32.const 16))
      (then (v128.store (local.get $p) (local.get $v)))
      (else (call $add4 (local.get $p) (local.get $v)))))

  ;; acc[i0+a, j0+b] += sum over $rows rows r of x[r, a] * y[r, b], a < 4, b < 8: one register
  ;; tile of the filter gradient, summed in f32 over the row block and added to the f64 totals at
  ;; the end (or stored as f32: $out4). $px, $py: the tile's first elements; $sx, $sy: row strides
  ;; (bytes); $acc: acc at (i0, j0); $n8: acc row stride (bytes); $cw: 4 columns of acc (bytes).
  (func $tile4x8 (param $px i32) (param $py i32) (param $rows i32) (param $sx i32) (param $sy i32) (param $acc i32) (param $n8 i32) (param $cw i32)
    (local $s v128) (local $y0 v128) (local $y1 v128) (local $a00 v128) (local $a01 v128) (local $a10 v128) (local $a11 v128) (local $a20 v128) (local $a21 v128) (local $a30 v128) (local $a31 v128)
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $rows)))
      (local.set $y0 (v128.load (local.get $py)))
      (local.set $y1 (v128.load offset=16 (local.get $py)))
      (local.set $s (v128.load32_splat offset=0 (local.get $px)))
      (local.set $a00 (f32x4.relaxed_madd (local.get $s) (local.get $y0) (local.get $a00)))
      (local.set $a01 (f32x4.relaxed_madd (local.get $s) (local.get $y1) (local.get $a01)))
      (local.set $s (v128.load32_splat offset=4 (local.get $px)))
      (local.set $a10 (f32x4.relaxed_madd (local.get $s) (local.get $y0) (local.get $a10)))
      (local.set $a11 (f32x4.relaxed_madd (local.get $s) (local.get $y1) (local.get $a11)))
      (local.set $s (v128.load32_splat offset=8 (local.get $px)))
      (local.set $a20 (f32x4.relaxed_madd (local.get $s) (local.get $y0) (local.get $a20)))
      (local.set $a21 (f32x4.relaxed_madd (local.get $s) (local.get $y1) (local.get $a21)))
      (local.set $s (v128.load32_splat offset=12 (local.get $px)))
      (local.set $a30 (f32x4.relaxed_madd (local.get $s) (local.get $y0) (local.get $a30)))
      (local.set $a31 (f32x4.relaxed_madd (local.get $s) (local.get $y1) (local.get $a31)))
      (local.set $px (i32.add (local.get $px) (local.get $sx)))
      (local.set $py (i32.add (local.get $py) (local.get $sy)))
      (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
      (br $l)))
    (call $out4 (local.get $acc) (local.get $a00) (local.get $cw))
    (call $out4 (i32.add (local.get $acc) (local.get $cw)) (local.get $a01) (local.get $cw))
    (call $out4 (i32.add (local.get $acc) (i32.mul (local.get $n8) (i32.const 1))) (local.get $a10) (local.get $cw))
    (call $out4 (i32.add (i32.add (local.get $acc) (i32.mul (local.get $n8) (i32.const 1))) (local.get $cw)) (local.get $a11) (local.get $cw))
    (call $out4 (i32.add (local.get $acc) (i32.mul (local.get $n8) (i32.const 2))) (local.get $a20) (local.get $cw))
    (call $out4 (i32.add (i32.add (local.get $acc) (i32.mul (local.get $n8) (i32.const 2))) (local.get $cw)) (local.get $a21) (local.get $cw))
    (call $out4 (i32.add (local.get $acc) (i32.mul (local.get $n8) (i32.const 3))) (local.get $a30) (local.get $cw))
    (call $out4 (i32.add (i32.add (local.get $acc) (i32.mul (local.get $n8) (i32.const 3))) (local.get $cw)) (local.get $a31) (local.get $cw)))

  ;; $tile4x8 for the last four columns when n % 8 == 4.
  (func $tile4x4 (param $px i32) (param $py i32) (param $rows i32) (param $sx i32) (param $sy i32) (param $acc i32) (param $n8 i32) (param $cw i32)
    (local $s v128) (local $y0 v128) (local $a00 v128) (local $a10 v128) (local $a20 v128) (local $a30 v128)
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $rows)))
      (local.set $y0 (v128.load (local.get $py)))
      (local.set $s (v128.load32_splat offset=0 (local.get $px)))
      (local.set $a00 (f32x4.relaxed_madd (local.get $s) (local.get $y0) (local.get $a00)))
      (local.set $s (v128.load32_splat offset=4 (local.get $px)))
      (local.set $a10 (f32x4.relaxed_madd (local.get $s) (local.get $y0) (local.get $a10)))
      (local.set $s (v128.load32_splat offset=8 (local.get $px)))
      (local.set $a20 (f32x4.relaxed_madd (local.get $s) (local.get $y0) (local.get $a20)))
      (local.set $s (v128.load32_splat offset=12 (local.get $px)))
      (local.set $a30 (f32x4.relaxed_madd (local.get $s) (local.get $y0) (local.get $a30)))
      (local.set $px (i32.add (local.get $px) (local.get $sx)))
      (local.set $py (i32.add (local.get $py) (local.get $sy)))
      (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
      (br $l)))
    (call $out4 (local.get $acc) (local.get $a00) (local.get $cw))
    (call $out4 (i32.add (local.get $acc) (i32.mul (local.get $n8) (i32.const 1))) (local.get $a10) (local.get $cw))
    (call $out4 (i32.add (local.get $acc) (i32.mul (local.get $n8) (i32.const 2))) (local.get $a20) (local.get $cw))
    (call $out4 (i32.add (local.get $acc) (i32.mul (local.get $n8) (i32.const 3))) (local.get $a30) (local.get $cw)))

  ;; Filter gradient as a matrix product without transposes: acc64[m, n] += X[rows, m]^T Y[rows, n]
  ;; (acc64 zeroed by the caller), m % 4 == 0, n % 4 == 0. Rows go in blocks of $rb, each packed at
  ;; $pk ($rb * (m + n) floats) into panels of X's columns (4 wide) and Y's (8 wide), so the tiles
  ;; read contiguous memory; within a block each 4x8 tile of the result lives in registers (4
  ;; splatted x values times two vectors of y per row) and is added to the f64 totals at its end.
  (func (export "gram_xty") (param $x i32) (param $y i32) (param $acc i32) (param $rows i32) (param $m i32) (param $n i32) (param $rb i32) (param $pk i32) (param $direct i32)
    (local $r0 i32) (local $cnt i32) (local $i i32) (local $j i32) (local $r i32) (local $n8 i32) (local $cw i32)
    (local $px i32) (local $py i32) (local $pa i32) (local $pyk i32) (local $src i32) (local $dst i32) (local $w i32)
    ;; acc: f64 [m, n] totals, or with $direct (only when rows <= $rb: one block) the f32 result itself.
    (local.set $cw (select (i32.const 16) (i32.const 32) (local.get $direct)))
    (local.set $n8 (i32.mul (local.get $n) (i32.shr_u (local.get $cw) (i32.const 2))))
    (local.set $pyk (i32.add (local.get $pk) (i32.shl (i32.mul (local.get $rb) (local.get $m)) (i32.const 2))))
    (block $rd (loop $rl
      (br_if $rd (i32.ge_u (local.get $r0) (local.get $rows)))
      (local.set $cnt (i32.sub (local.get $rows) (local.get $r0)))
      (if (i32.gt_u (local.get $cnt) (local.get $rb)) (then (local.set $cnt (local.get $rb))))
      ;; Pack the block: X in panels of 4 columns, Y in panels of 8 (the last 4 if n % 8 == 4),
      ;; each panel's rows contiguous.
      (local.set $dst (local.get $pk))
      (local.set $i (i32.const 0))
      (block $pd (loop $pl
        (br_if $pd (i32.ge_u (local.get $i) (local.get $m)))
        (local.set $src (i32.add (local.get $x) (i32.shl (i32.add (i32.mul (local.get $r0) (local.get $m)) (local.get $i)) (i32.const 2))))
        (local.set $r (local.get $cnt))
        (block $qd (loop $ql
          (br_if $qd (i32.eqz (local.get $r)))
          (v128.store (local.get $dst) (v128.load (local.get $src)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
          (local.set $src (i32.add (local.get $src) (i32.shl (local.get $m) (i32.const 2))))
          (local.set $r (i32.sub (local.get $r) (i32.const 1)))
          (br $ql)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $pl)))
      (local.set $dst (local.get $pyk))
      (local.set $j (i32.const 0))
      (block $pd (loop $pl
        (br_if $pd (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $w (select (i32.const 8) (i32.const 4) (i32.ge_u (i32.sub (local.get $n) (local.get $j)) (i32.const 8))))
        (local.set $src (i32.add (local.get $y) (i32.shl (i32.add (i32.mul (local.get $r0) (local.get $n)) (local.get $j)) (i32.const 2))))
        (local.set $r (local.get $cnt))
        (block $qd (loop $ql
          (br_if $qd (i32.eqz (local.get $r)))
          (v128.store (local.get $dst) (v128.load (local.get $src)))
          (if (i32.eq (local.get $w) (i32.const 8)) (then
            (v128.store offset=16 (local.get $dst) (v128.load offset=16 (local.get $src)))))
          (local.set $dst (i32.add (local.get $dst) (i32.shl (local.get $w) (i32.const 2))))
          (local.set $src (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
          (local.set $r (i32.sub (local.get $r) (i32.const 1)))
          (br $ql)))
        (local.set $j (i32.add (local.get $j) (local.get $w)))
        (br $pl)))
      (local.set $i (i32.const 0))
      (block $id (loop $il
        (br_if $id (i32.ge_u (local.get $i) (local.get $m)))
        (local.set $px (i32.add (local.get $pk) (i32.shl (i32.mul (local.get $i) (local.get $cnt)) (i32.const 2))))
        (local.set $py (local.get $pyk))
        (local.set $pa (i32.add (local.get $acc) (i32.mul (local.get $i) (local.get $n8))))
        (local.set $j (i32.const 0))
        (block $jd (loop $jl
          (br_if $jd (i32.gt_u (i32.add (local.get $j) (i32.const 8)) (local.get $n)))
          (call $tile4x8 (local.get $px) (local.get $py) (local.get $cnt) (i32.const 16) (i32.const 32) (local.get $pa) (local.get $n8) (local.get $cw))
          (local.set $py (i32.add (local.get $py) (i32.shl (local.get $cnt) (i32.const 5))))
          (local.set $pa (i32.add (local.get $pa) (i32.shl (local.get $cw) (i32.const 1))))
          (local.set $j (i32.add (local.get $j) (i32.const 8)))
          (br $jl)))
        (if (i32.lt_u (local.get $j) (local.get $n)) (then
          (call $tile4x4 (local.get $px) (local.get $py) (local.get $cnt) (i32.const 16) (i32.const 16) (local.get $pa) (local.get $n8) (local.get $cw))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $il)))
      (local.set $r0 (i32.add (local.get $r0) (local.get $rb)))
      (br $rl))))

  ;; One register tile of gemm: C[rows x cols] at $pc (rows $sc bytes apart) = A's rows from $pa
  ;; ($sa bytes apart, $k floats each) times a packed panel of B at $pb ($k rows of `cols` floats,
  ;; contiguous). $gtile4x8 is the main tile (8 accumulators, 2 B vectors, 1 splat: 11 of V8's 15
  ;; SIMD registers); the others take the last rows (m % 4) and the last columns (n % 8 == 4).
  (func $gtile4x8 (param $pa i32) (param $sa i32) (param $pb i32) (param $k i32) (param $pc i32) (param $sc i32)
    (local $end i32) (local $p1 i32) (local $p2 i32) (local $p3 i32) (local $s v128) (local $b0 v128) (local $b1 v128) (local $a00 v128) (local $a01 v128) (local $a10 v128) (local $a11 v128) (local $a20 v128) (local $a21 v128) (local $a30 v128) (local $a31 v128)
    (local.set $p1 (i32.add (local.get $pa) (local.get $sa)))
    (local.set $p2 (i32.add (local.get $p1) (local.get $sa)))
    (local.set $p3 (i32.add (local.get $p2) (local.get $sa)))
    (local.set $end (i32.add (local.get $pa) (i32.shl (local.get $k) (i32.const 2))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $pa) (local.get $end)))
      (local.set $b0 (v128.load (local.get $pb)))
      (local.set $b1 (v128.load offset=16 (local.get $pb)))
      (local.set $s (v128.load32_splat (local.get $pa)))
      (local.set $a00 (f32x4.relaxed_madd (local.get $s) (local.get $b0) (local.get $a00)))
      (local.set $a01 (f32x4.relaxed_madd (local.get $s) (local.get $b1) (local.get $a01)))
      (local.set $s (v128.load32_splat (local.get $p1)))
      (local.set $a10 (f32x4.relaxed_madd (local.get $s) (local.get $b0) (local.get $a10)))
      (local.set $a11 (f32x4.relaxed_madd (local.get $s) (local.get $b1) (local.get $a11)))
      (local.set $s (v128.load32_splat (local.get $p2)))
      (local.set $a20 (f32x4.relaxed_madd (local.get $s) (local.get $b0) (local.get $a20)))
      (local.set $a21 (f32x4.relaxed_madd (local.get $s) (local.get $b1) (local.get $a21)))
      (local.set $s (v128.load32_splat (local.get $p3)))
      (local.set $a30 (f32x4.relaxed_madd (local.get $s) (local.get $b0) (local.get $a30)))
      (local.set $a31 (f32x4.relaxed_madd (local.get $s) (local.get $b1) (local.get $a31)))
      (local.set $pa (i32.add (local.get $pa) (i32.const 4)))
      (local.set $p1 (i32.add (local.get $p1) (i32.const 4)))
      (local.set $p2 (i32.add (local.get $p2) (i32.const 4)))
      (local.set $p3 (i32.add (local.get $p3) (i32.const 4)))
      (local.set $pb (i32.add (local.get $pb) (i32.const 32)))
      (br $l)))
    (v128.store (local.get $pc) (local.get $a00))
    (v128.store offset=16 (local.get $pc) (local.get $a01))
    (local.set $pc (i32.add (local.get $pc) (local.get $sc)))
    (v128.store (local.get $pc) (local.get $a10))
    (v128.store offset=16 (local.get $pc) (local.get $a11))
    (local.set $pc (i32.add (local.get $pc) (local.get $sc)))
    (v128.store (local.get $pc) (local.get $a20))
    (v128.store offset=16 (local.get $pc) (local.get $a21))
    (local.set $pc (i32.add (local.get $pc) (local.get $sc)))
    (v128.store (local.get $pc) (local.get $a30))
    (v128.store offset=16 (local.get $pc) (local.get $a31)))
  (func $gtile1x8 (param $pa i32) (param $sa i32) (param $pb i32) (param $k i32) (param $pc i32) (param $sc i32)
    (local $end i32) (local $s v128) (local $b0 v128) (local $b1 v128) (local $a00 v128) (local $a01 v128)
    (local.set $end (i32.add (local.get $pa) (i32.shl (local.get $k) (i32.const 2))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $pa) (local.get $end)))
      (local.set $b0 (v128.load (local.get $pb)))
      (local.set $b1 (v128.load offset=16 (local.get $pb)))
      (local.set $s (v128.load32_splat (local.get $pa)))
      (local.set $a00 (f32x4.relaxed_madd (local.get $s) (local.get $b0) (local.get $a00)))
      (local.set $a01 (f32x4.relaxed_madd (local.get $s) (local.get $b1) (local.get $a01)))
      (local.set $pa (i32.add (local.get $pa) (i32.const 4)))
      (local.set $pb (i32.add (local.get $pb) (i32.const 32)))
      (br $l)))
    (v128.store (local.get $pc) (local.get $a00))
    (v128.store offset=16 (local.get $pc) (local.get $a01)))
  (func $gtile4x4 (param $pa i32) (param $sa i32) (param $pb i32) (param $k i32) (param $pc i32) (param $sc i32)
    (local $end i32) (local $p1 i32) (local $p2 i32) (local $p3 i32) (local $s v128) (local $b0 v128) (local $a00 v128) (local $a10 v128) (local $a20 v128) (local $a30 v128)
    (local.set $p1 (i32.add (local.get $pa) (local.get $sa)))
    (local.set $p2 (i32.add (local.get $p1) (local.get $sa)))
    (local.set $p3 (i32.add (local.get $p2) (local.get $sa)))
    (local.set $end (i32.add (local.get $pa) (i32.shl (local.get $k) (i32.const 2))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $pa) (local.get $end)))
      (local.set $b0 (v128.load (local.get $pb)))
      (local.set $s (v128.load32_splat (local.get $pa)))
      (local.set $a00 (f32x4.relaxed_madd (local.get $s) (local.get $b0) (local.get $a00)))
      (local.set $s (v128.load32_splat (local.get $p1)))
      (local.set $a10 (f32x4.relaxed_madd (local.get $s) (local.get $b0) (local.get $a10)))
      (local.set $s (v128.load32_splat (local.get $p2)))
      (local.set $a20 (f32x4.relaxed_madd (local.get $s) (local.get $b0) (local.get $a20)))
      (local.set $s (v128.load32_splat (local.get $p3)))
      (local.set $a30 (f32x4.relaxed_madd (local.get $s) (local.get $b0) (local.get $a30)))
      (local.set $pa (i32.add (local.get $pa) (i32.const 4)))
      (local.set $p1 (i32.add (local.get $p1) (i32.const 4)))
      (local.set $p2 (i32.add (local.get $p2) (i32.const 4)))
      (local.set $p3 (i32.add (local.get $p3) (i32.const 4)))
      (local.set $pb (i32.add (local.get $pb) (i32.const 16)))
      (br $l)))
    (v128.store (local.get $pc) (local.get $a00))
    (local.set $pc (i32.add (local.get $pc) (local.get $sc)))
    (v128.store (local.get $pc) (local.get $a10))
    (local.set $pc (i32.add (local.get $pc) (local.get $sc)))
    (v128.store (local.get $pc) (local.get $a20))
    (local.set $pc (i32.add (local.get $pc) (local.get $sc)))
    (v128.store (local.get $pc) (local.get $a30)))
  (func $gtile1x4 (param $pa i32) (param $sa i32) (param $pb i32) (param $k i32) (param $pc i32) (param $sc i32)
    (local $end i32) (local $s v128) (local $b0 v128) (local $a00 v128)
    (local.set $end (i32.add (local.get $pa) (i32.shl (local.get $k) (i32.const 2))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $pa) (local.get $end)))
      (local.set $b0 (v128.load (local.get $pb)))
      (local.set $s (v128.load32_splat (local.get $pa)))
      (local.set $a00 (f32x4.relaxed_madd (local.get $s) (local.get $b0) (local.get $a00)))
      (local.set $pa (i32.add (local.get $pa) (i32.const 4)))
      (local.set $pb (i32.add (local.get $pb) (i32.const 16)))
      (br $l)))
    (v128.store (local.get $pc) (local.get $a00)))

  ;; Packs B for gemm: panels of 8 columns (the last one 4 if n % 8 == 4), each $k rows of its
  ;; columns, contiguous. Element (r, j) of B is at $b + r * $sk + j * $sj (bytes), so B may be a
  ;; matrix's transpose (a 1x1 filter for the input gradient) without a copy.
  (func (export "gemm_pack") (param $b i32) (param $out i32) (param $k i32) (param $n i32) (param $sk i32) (param $sj i32)
    (local $j i32) (local $w i32) (local $r i32) (local $t i32) (local $row i32)
    (block $jd (loop $jl
      (br_if $jd (i32.ge_u (local.get $j) (local.get $n)))
      (local.set $w (select (i32.const 8) (i32.const 4) (i32.ge_u (i32.sub (local.get $n) (local.get $j)) (i32.const 8))))
      (local.set $r (i32.const 0))
      (block $rd (loop $rl
        (br_if $rd (i32.ge_u (local.get $r) (local.get $k)))
        (local.set $row (i32.add (local.get $b) (i32.add (i32.mul (local.get $r) (local.get $sk)) (i32.mul (local.get $j) (local.get $sj)))))
        (local.set $t (i32.const 0))
        (block $td (loop $tl
          (br_if $td (i32.ge_u (local.get $t) (local.get $w)))
          (f32.store (local.get $out) (f32.load (local.get $row)))
          (local.set $out (i32.add (local.get $out) (i32.const 4)))
          (local.set $row (i32.add (local.get $row) (local.get $sj)))
          (local.set $t (i32.add (local.get $t) (i32.const 1)))
          (br $tl)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rl)))
      (local.set $j (i32.add (local.get $j) (local.get $w)))
      (br $jl))))

  ;; C[m, n] = A[m, k] B[k, n] in f32 (a 1x1 convolution's output or input gradient), B packed by
  ;; gemm_pack, n % 4 == 0. Rows of A go in blocks of $mb (a multiple of 4) that stay in cache while
  ;; every panel of B passes over them; within a block each 4x8 tile of C lives in registers.
  (func (export "gemm") (param $a i32) (param $bp i32) (param $c i32) (param $m i32) (param $k i32) (param $n i32) (param $mb i32)
    (local $r0 i32) (local $r1 i32) (local $i i32) (local $j i32) (local $w i32) (local $sa i32) (local $sc i32) (local $pp i32)
    (local $pa i32) (local $pc i32)
    (local.set $sa (i32.shl (local.get $k) (i32.const 2)))
    (local.set $sc (i32.shl (local.get $n) (i32.const 2)))
    (block $rd (loop $rl
      (br_if $rd (i32.ge_u (local.get $r0) (local.get $m)))
      (local.set $r1 (i32.add (local.get $r0) (local.get $mb)))
      (if (i32.gt_u (local.get $r1) (local.get $m)) (then (local.set $r1 (local.get $m))))
      (local.set $j (i32.const 0))
      (local.set $pp (local.get $bp))
      (block $jd (loop $jl
        (br_if $jd (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $w (select (i32.const 8) (i32.const 4) (i32.ge_u (i32.sub (local.get $n) (local.get $j)) (i32.const 8))))
        (local.set $i (local.get $r0))
        (local.set $pa (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $sa))))
        (local.set $pc (i32.add (local.get $c) (i32.add (i32.mul (local.get $i) (local.get $sc)) (i32.shl (local.get $j) (i32.const 2)))))
        (block $id (loop $il
          (br_if $id (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $r1)))
          (if (i32.eq (local.get $w) (i32.const 8))
            (then (call $gtile4x8 (local.get $pa) (local.get $sa) (local.get $pp) (local.get $k) (local.get $pc) (local.get $sc)))
            (else (call $gtile4x4 (local.get $pa) (local.get $sa) (local.get $pp) (local.get $k) (local.get $pc) (local.get $sc))))
          (local.set $pa (i32.add (local.get $pa) (i32.shl (local.get $sa) (i32.const 2))))
          (local.set $pc (i32.add (local.get $pc) (i32.shl (local.get $sc) (i32.const 2))))
          (local.set $i (i32.add (local.get $i) (i32.const 4)))
          (br $il)))
        (block $id (loop $il
          (br_if $id (i32.ge_u (local.get $i) (local.get $r1)))
          (if (i32.eq (local.get $w) (i32.const 8))
            (then (call $gtile1x8 (local.get $pa) (local.get $sa) (local.get $pp) (local.get $k) (local.get $pc) (local.get $sc)))
            (else (call $gtile1x4 (local.get $pa) (local.get $sa) (local.get $pp) (local.get $k) (local.get $pc) (local.get $sc))))
          (local.set $pa (i32.add (local.get $pa) (local.get $sa)))
          (local.set $pc (i32.add (local.get $pc) (local.get $sc)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $il)))
        (local.set $pp (i32.add (local.get $pp) (i32.mul (local.get $w) (local.get $sa))))
        (local.set $j (i32.add (local.get $j) (local.get $w)))
        (br $jl)))
      (local.set $r0 (local.get $r1))
      (br $rl))))

  ;; Register groups of chan_moments / bn_bwd_sums: 4 channels from $p (and $pd) over $rows rows
  ;; $stride bytes apart, shift/mean from $m, f64 sums added to the totals at $sa, $sb. $mom4 also
  ;; folds the raw values into the f32 minima and maxima at $mn, $mx; $bwd4 sums the gradient
  ;; the activation lets through (as in bn_bwd_apply; k, b from $kp, $bp).
  (func $mom4 (param $p i32) (param $rows i32) (param $stride i32) (param $mp i32) (param $sa i32) (param $sb i32) (param $mn i32) (param $mx i32)
    (local $m v128) (local $x v128) (local $v v128) (local $vl v128) (local $vh v128)
    (local $al v128) (local $ah v128) (local $bl v128) (local $bh v128) (local $lo v128) (local $hi v128)
    (local.set $m (v128.load (local.get $mp)))
    (local.set $lo (v128.load (local.get $mn)))
    (local.set $hi (v128.load (local.get $mx)))
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $rows)))
      (local.set $x (v128.load (local.get $p)))
      (local.set $lo (f32x4.pmin (local.get $lo) (local.get $x)))
      (local.set $hi (f32x4.pmax (local.get $hi) (local.get $x)))
      (local.set $v (f32x4.sub (local.get $x) (local.get $m)))
      (local.set $vl (f64x2.promote_low_f32x4 (local.get $v)))
      (local.set $vh (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))))
      (local.set $al (f64x2.add (local.get $al) (local.get $vl)))
      (local.set $ah (f64x2.add (local.get $ah) (local.get $vh)))
      (local.set $bl (f64x2.add (local.get $bl) (f64x2.mul (local.get $vl) (local.get $vl))))
      (local.set $bh (f64x2.add (local.get $bh) (f64x2.mul (local.get $vh) (local.get $vh))))
      (local.set $p (i32.add (local.get $p) (local.get $stride)))
      (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
      (br $l)))
    (v128.store (local.get $mn) (local.get $lo))
    (v128.store (local.get $mx) (local.get $hi))
    (v128.store (local.get $sa) (f64x2.add (v128.load (local.get $sa)) (local.get $al)))
    (v128.store offset=16 (local.get $sa) (f64x2.add (v128.load offset=16 (local.get $sa)) (local.get $ah)))
    (v128.store (local.get $sb) (f64x2.add (v128.load (local.get $sb)) (local.get $bl)))
    (v128.store offset=16 (local.get $sb) (f64x2.add (v128.load offset=16 (local.get $sb)) (local.get $bh))))

  (func $bwd4 (param $p i32) (param $pd i32) (param $rows i32) (param $stride i32) (param $mp i32) (param $sa i32) (param $sb i32)
      (param $kp i32) (param $bp i32) (param $lo v128) (param $hi v128)
    (local $m v128) (local $k v128) (local $b v128) (local $x v128) (local $x2 v128) (local $y v128) (local $g v128) (local $g2 v128) (local $v v128)
    (local $al v128) (local $ah v128) (local $bl v128) (local $bh v128) (local $g4 v128) (local $v4 v128)
    (local.set $m (v128.load (local.get $mp)))
    (local.set $k (v128.load (local.get $kp)))
    (local.set $b (v128.load (local.get $bp)))
    ;; Four rows per iteration, then two, then one: their g and g * (x - m) are added in f32
    ;; (pairwise) before the f64 sums, which cuts the f64 work: QatBnActGrad 140 -> 123-125 ms
    ;; per 1.0@224 bs8 step with two rows, and (Intel family 6 model 167, alternated 3x, the
    ;; step's QatBnActGrad calls by tf.profile) 122.7-124.4 -> 110.2-116.1 with four. (The same in
    ;; $mom4 failed the 1- vs 2-thread equivalence test, a running variance 16% off; its squares
    ;; are of deviations from a shift, not from the mean.) The mask (as in bn_bwd_apply) is
    ;; written out: V8 does not inline a wasm call here.
    (block $done4 (loop $l4
      (br_if $done4 (i32.lt_u (local.get $rows) (i32.const 4)))
      ;; rows 1 and 2 into $g4, $v4, then rows 3 and 4 added to them
      (local.set $x (v128.load (local.get $p)))
      (local.set $x2 (v128.load (i32.add (local.get $p) (local.get $stride))))
      (local.set $g (v128.andnot (v128.load (local.get $pd)) (v128.or (f32x4.lt (local.tee $y (f32x4.add (f32x4.mul (local.get $x) (local.get $k)) (local.get $b))) (local.get $lo)) (f32x4.gt (local.get $y) (local.get $hi)))))
      (local.set $g2 (v128.andnot (v128.load (i32.add (local.get $pd) (local.get $stride))) (v128.or (f32x4.lt (local.tee $y (f32x4.add (f32x4.mul (local.get $x2) (local.get $k)) (local.get $b))) (local.get $lo)) (f32x4.gt (local.get $y) (local.get $hi)))))
      (local.set $v4 (f32x4.add
        (f32x4.mul (local.get $g) (f32x4.sub (local.get $x) (local.get $m)))
        (f32x4.mul (local.get $g2) (f32x4.sub (local.get $x2) (local.get $m)))))
      (local.set $g4 (f32x4.add (local.get $g) (local.get $g2)))
      (local.set $p (i32.add (local.get $p) (i32.shl (local.get $stride) (i32.const 1))))
      (local.set $pd (i32.add (local.get $pd) (i32.shl (local.get $stride) (i32.const 1))))
      (local.set $x (v128.load (local.get $p)))
      (local.set $x2 (v128.load (i32.add (local.get $p) (local.get $stride))))
      (local.set $g (v128.andnot (v128.load (local.get $pd)) (v128.or (f32x4.lt (local.tee $y (f32x4.add (f32x4.mul (local.get $x) (local.get $k)) (local.get $b))) (local.get $lo)) (f32x4.gt (local.get $y) (local.get $hi)))))
      (local.set $g2 (v128.andnot (v128.load (i32.add (local.get $pd) (local.get $stride))) (v128.or (f32x4.lt (local.tee $y (f32x4.add (f32x4.mul (local.get $x2) (local.get $k)) (local.get $b))) (local.get $lo)) (f32x4.gt (local.get $y) (local.get $hi)))))
      (local.set $v (f32x4.add (local.get $v4) (f32x4.add
        (f32x4.mul (local.get $g) (f32x4.sub (local.get $x) (local.get $m)))
        (f32x4.mul (local.get $g2) (f32x4.sub (local.get $x2) (local.get $m))))))
      (local.set $g (f32x4.add (local.get $g4) (f32x4.add (local.get $g) (local.get $g2))))
      (local.set $al (f64x2.add (local.get $al) (f64x2.promote_low_f32x4 (local.get $g))))
      (local.set $ah (f64x2.add (local.get $ah) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $g) (local.get $g)))))
      (local.set $bl (f64x2.add (local.get $bl) (f64x2.promote_low_f32x4 (local.get $v))))
      (local.set $bh (f64x2.add (local.get $bh) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))))
      (local.set $p (i32.add (local.get $p) (i32.shl (local.get $stride) (i32.const 1))))
      (local.set $pd (i32.add (local.get $pd) (i32.shl (local.get $stride) (i32.const 1))))
      (local.set $rows (i32.sub (local.get $rows) (i32.const 4)))
      (br $l4)))
    (block $done (loop $l
      (br_if $done (i32.lt_u (local.get $rows) (i32.const 2)))
      (local.set $x (v128.load (local.get $p)))
      (local.set $x2 (v128.load (i32.add (local.get $p) (local.get $stride))))
      (local.set $g (v128.andnot (v128.load (local.get $pd)) (v128.or (f32x4.lt (local.tee $y (f32x4.add (f32x4.mul (local.get $x) (local.get $k)) (local.get $b))) (local.get $lo)) (f32x4.gt (local.get $y) (local.get $hi)))))
      (local.set $g2 (v128.andnot (v128.load (i32.add (local.get $pd) (local.get $stride))) (v128.or (f32x4.lt (local.tee $y (f32x4.add (f32x4.mul (local.get $x2) (local.get $k)) (local.get $b))) (local.get $lo)) (f32x4.gt (local.get $y) (local.get $hi)))))
      (local.set $v (f32x4.add
        (f32x4.mul (local.get $g) (f32x4.sub (local.get $x) (local.get $m)))
        (f32x4.mul (local.get $g2) (f32x4.sub (local.get $x2) (local.get $m)))))
      (local.set $g (f32x4.add (local.get $g) (local.get $g2)))
      (local.set $al (f64x2.add (local.get $al) (f64x2.promote_low_f32x4 (local.get $g))))
      (local.set $ah (f64x2.add (local.get $ah) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $g) (local.get $g)))))
      (local.set $bl (f64x2.add (local.get $bl) (f64x2.promote_low_f32x4 (local.get $v))))
      (local.set $bh (f64x2.add (local.get $bh) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))))
      (local.set $p (i32.add (local.get $p) (i32.shl (local.get $stride) (i32.const 1))))
      (local.set $pd (i32.add (local.get $pd) (i32.shl (local.get $stride) (i32.const 1))))
      (local.set $rows (i32.sub (local.get $rows) (i32.const 2)))
      (br $l)))
    (if (local.get $rows) (then
      (local.set $x (v128.load (local.get $p)))
      (local.set $g (v128.andnot (v128.load (local.get $pd)) (v128.or (f32x4.lt (local.tee $y (f32x4.add (f32x4.mul (local.get $x) (local.get $k)) (local.get $b))) (local.get $lo)) (f32x4.gt (local.get $y) (local.get $hi)))))
      (local.set $v (f32x4.mul (local.get $g) (f32x4.sub (local.get $x) (local.get $m))))
      (local.set $al (f64x2.add (local.get $al) (f64x2.promote_low_f32x4 (local.get $g))))
      (local.set $ah (f64x2.add (local.get $ah) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $g) (local.get $g)))))
      (local.set $bl (f64x2.add (local.get $bl) (f64x2.promote_low_f32x4 (local.get $v))))
      (local.set $bh (f64x2.add (local.get $bh) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))))))
    (v128.store (local.get $sa) (f64x2.add (v128.load (local.get $sa)) (local.get $al)))
    (v128.store offset=16 (local.get $sa) (f64x2.add (v128.load offset=16 (local.get $sa)) (local.get $ah)))
    (v128.store (local.get $sb) (f64x2.add (v128.load (local.get $sb)) (local.get $bl)))
    (v128.store offset=16 (local.get $sb) (f64x2.add (v128.load offset=16 (local.get $sb)) (local.get $bh))))

  ;; Batch-norm statistics in one pass, shifted for accuracy: sa[c] += x[r, c] - m[c] and
  ;; sb[c] += (x[r, c] - m[c])^2 over rows (m: f32 shift per channel, e.g. the first row; sa, sb:
  ;; f64, zeroed by the caller). Four channels at a time with f64 sums in registers, over blocks of
  ;; $rb rows so a block read for the first channel group is still in cache for the others.
  ;; Replaces a sum pass plus a centred-square pass, each adding every element to f64 memory.
  ;; (f32 partial sums per block were 2x cheaper again but lost the whole-model gradient check:
  ;; the BN backward cancels to small values that amplify the rounding.) Also mn[c] = min(mn[c],
  ;; x[r, c]) and mx[c] likewise (f32, set to +inf/-inf by the caller): the
  ;; activation range of the layer's output follows from them without another pass. pmin/pmax
  ;; (one instruction each) skip a NaN x, but a NaN makes the channel's sums NaN, and with them its
  ;; mean, fold and range (finishBnStats), so the range still carries it.
  (func (export "chan_moments") (param $x i32) (param $rows i32) (param $c i32) (param $m i32) (param $sa i32) (param $sb i32) (param $rb i32)
      (param $mn i32) (param $mx i32)
    (local $r0 i32) (local $cnt i32) (local $j i32) (local $cb i32) (local $off i32)
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (block $rd (loop $rl
      (br_if $rd (i32.ge_u (local.get $r0) (local.get $rows)))
      (local.set $cnt (i32.sub (local.get $rows) (local.get $r0)))
      (if (i32.gt_u (local.get $cnt) (local.get $rb)) (then (local.set $cnt (local.get $rb))))
      (local.set $j (i32.const 0))
      (block $jd (loop $jl
        (br_if $jd (i32.ge_u (local.get $j) (local.get $cb)))
        (local.set $off (i32.add (i32.mul (local.get $r0) (local.get $cb)) (local.get $j)))
        (call $mom4 (i32.add (local.get $x) (local.get $off)) (local.get $cnt) (local.get $cb) (i32.add (local.get $m) (local.get $j))
          (i32.add (local.get $sa) (i32.shl (local.get $j) (i32.const 1))) (i32.add (local.get $sb) (i32.shl (local.get $j) (i32.const 1)))
          (i32.add (local.get $mn) (local.get $j)) (i32.add (local.get $mx) (local.get $j)))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $jl)))
      (local.set $r0 (i32.add (local.get $r0) (local.get $rb)))
      (br $rl))))

  ;; Batch-norm backward sums, same blocking as chan_moments: sa[c] += g[r, c] and
  ;; sb[c] += g[r, c] * (x[r, c] - m[c]) (m: f32 batch mean; sa, sb: f64, zeroed by the caller), g
  ;; the gradient past the activation (k, b, lo, hi as in bn_bwd_apply).
  (func (export "bn_bwd_sums") (param $x i32) (param $dy i32) (param $rows i32) (param $c i32) (param $m i32) (param $sa i32) (param $sb i32) (param $rb i32)
      (param $k i32) (param $b i32) (param $lo f32) (param $hi f32)
    (local $r0 i32) (local $cnt i32) (local $j i32) (local $cb i32) (local $off i32) (local $vlo v128) (local $vhi v128)
    (local.set $vlo (f32x4.splat (local.get $lo)))
    (local.set $vhi (f32x4.splat (local.get $hi)))
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (block $rd (loop $rl
      (br_if $rd (i32.ge_u (local.get $r0) (local.get $rows)))
      (local.set $cnt (i32.sub (local.get $rows) (local.get $r0)))
      (if (i32.gt_u (local.get $cnt) (local.get $rb)) (then (local.set $cnt (local.get $rb))))
      (local.set $j (i32.const 0))
      (block $jd (loop $jl
        (br_if $jd (i32.ge_u (local.get $j) (local.get $cb)))
        (local.set $off (i32.add (i32.mul (local.get $r0) (local.get $cb)) (local.get $j)))
        (call $bwd4 (i32.add (local.get $x) (local.get $off)) (i32.add (local.get $dy) (local.get $off)) (local.get $cnt) (local.get $cb) (i32.add (local.get $m) (local.get $j))
          (i32.add (local.get $sa) (i32.shl (local.get $j) (i32.const 1))) (i32.add (local.get $sb) (i32.shl (local.get $j) (i32.const 1)))
          (i32.add (local.get $k) (local.get $j)) (i32.add (local.get $b) (local.get $j)) (local.get $vlo) (local.get $vhi))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $jl)))
      (local.set $r0 (i32.add (local.get $r0) (local.get $rb)))
      (br $rl))))

  ;; One momentum-SGD update per element, in f32 as optimizer.ts sgdUpdate computes it (each JS
  ;; Math.fround of a product or sum of two floats is the correctly rounded f32 result, as here):
  ;; g' = wd > 0 ? g + w * wd : g, v = first ? g' : v * m + g', out = w - v * lr; v in place.
  (func (export "sgd_update") (param $w i32) (param $g i32) (param $v i32) (param $out i32) (param $n i32)
      (param $wd f32) (param $m f32) (param $lr f32) (param $first i32)
    (local $i i32) (local $e i32) (local $decay i32) (local $vwd v128) (local $vm v128) (local $vlr v128)
    (local $wi v128) (local $gi v128) (local $vi v128) (local $ws f32) (local $gs f32) (local $vs f32)
    (local.set $decay (f32.gt (local.get $wd) (f32.const 0)))
    (local.set $vwd (f32x4.splat (local.get $wd)))
    (local.set $vm (f32x4.splat (local.get $m)))
    (local.set $vlr (f32x4.splat (local.get $lr)))
    (local.set $e (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (local.set $wi (v128.load (i32.add (local.get $w) (local.get $i))))
      (local.set $gi (v128.load (i32.add (local.get $g) (local.get $i))))
      (if (local.get $decay) (then (local.set $gi (f32x4.add (local.get $gi) (f32x4.mul (local.get $wi) (local.get $vwd))))))
      (local.set $vi (local.get $gi))
      (if (i32.eqz (local.get $first)) (then
        (local.set $vi (f32x4.add (f32x4.mul (v128.load (i32.add (local.get $v) (local.get $i))) (local.get $vm)) (local.get $gi)))))
      (v128.store (i32.add (local.get $v) (local.get $i)) (local.get $vi))
      (v128.store (i32.add (local.get $out) (local.get $i)) (f32x4.sub (local.get $wi) (f32x4.mul (local.get $vi) (local.get $vlr))))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $l)))
    (local.set $e (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (local.set $ws (f32.load (i32.add (local.get $w) (local.get $i))))
      (local.set $gs (f32.load (i32.add (local.get $g) (local.get $i))))
      (if (local.get $decay) (then (local.set $gs (f32.add (local.get $gs) (f32.mul (local.get $ws) (local.get $wd))))))
      (local.set $vs (local.get $gs))
      (if (i32.eqz (local.get $first)) (then
        (local.set $vs (f32.add (f32.mul (f32.load (i32.add (local.get $v) (local.get $i))) (local.get $m)) (local.get $gs)))))
      (f32.store (i32.add (local.get $v) (local.get $i)) (local.get $vs))
      (f32.store (i32.add (local.get $out) (local.get $i)) (f32.sub (local.get $ws) (f32.mul (local.get $vs) (local.get $lr))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l))))

  ;; The max of x[0..n), n >= 1: NaN if any element is NaN, as the stock wasm and cpu kernels.
  ;; f32x4.max and f32.max propagate NaN. Four accumulators so the loop is not latency-bound.
  (func (export "vec_max") (param $x i32) (param $n i32) (result f32)
    (local $i i32) (local $e i32) (local $m f32) (local $a v128) (local $b v128) (local $c v128) (local $d v128)
    (local.set $m (f32.load (local.get $x)))
    (local.set $a (f32x4.splat (local.get $m)))
    (local.set $b (local.get $a))
    (local.set $c (local.get $a))
    (local.set $d (local.get $a))
    (local.set $e (i32.shl (i32.and (local.get $n) (i32.const -16)) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (local.set $a (f32x4.max (local.get $a) (v128.load (i32.add (local.get $x) (local.get $i)))))
      (local.set $b (f32x4.max (local.get $b) (v128.load offset=16 (i32.add (local.get $x) (local.get $i)))))
      (local.set $c (f32x4.max (local.get $c) (v128.load offset=32 (i32.add (local.get $x) (local.get $i)))))
      (local.set $d (f32x4.max (local.get $d) (v128.load offset=48 (i32.add (local.get $x) (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 64)))
      (br $l)))
    (local.set $a (f32x4.max (f32x4.max (local.get $a) (local.get $b)) (f32x4.max (local.get $c) (local.get $d))))
    (local.set $m (f32.max (f32.max (f32x4.extract_lane 0 (local.get $a)) (f32x4.extract_lane 1 (local.get $a)))
      (f32.max (f32x4.extract_lane 2 (local.get $a)) (f32x4.extract_lane 3 (local.get $a)))))
    (local.set $e (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (local.set $m (f32.max (local.get $m) (f32.load (i32.add (local.get $x) (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (local.get $m))

  ;; The min of x[0..n), n >= 1: NaN if any element is NaN, as the stock wasm and cpu kernels.
  ;; f32x4.min and f32.min propagate NaN. Four accumulators so the loop is not latency-bound.
  (func (export "vec_min") (param $x i32) (param $n i32) (result f32)
    (local $i i32) (local $e i32) (local $m f32) (local $a v128) (local $b v128) (local $c v128) (local $d v128)
    (local.set $m (f32.load (local.get $x)))
    (local.set $a (f32x4.splat (local.get $m)))
    (local.set $b (local.get $a))
    (local.set $c (local.get $a))
    (local.set $d (local.get $a))
    (local.set $e (i32.shl (i32.and (local.get $n) (i32.const -16)) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (local.set $a (f32x4.min (local.get $a) (v128.load (i32.add (local.get $x) (local.get $i)))))
      (local.set $b (f32x4.min (local.get $b) (v128.load offset=16 (i32.add (local.get $x) (local.get $i)))))
      (local.set $c (f32x4.min (local.get $c) (v128.load offset=32 (i32.add (local.get $x) (local.get $i)))))
      (local.set $d (f32x4.min (local.get $d) (v128.load offset=48 (i32.add (local.get $x) (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 64)))
      (br $l)))
    (local.set $a (f32x4.min (f32x4.min (local.get $a) (local.get $b)) (f32x4.min (local.get $c) (local.get $d))))
    (local.set $m (f32.min (f32.min (f32x4.extract_lane 0 (local.get $a)) (f32x4.extract_lane 1 (local.get $a)))
      (f32.min (f32x4.extract_lane 2 (local.get $a)) (f32x4.extract_lane 3 (local.get $a)))))
    (local.set $e (i32.shl (local.get $n) (i32.const 2)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $e)))
      (local.set $m (f32.min (local.get $m) (f32.load (i32.add (local.get $x) (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (local.get $m))
)
