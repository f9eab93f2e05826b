// Plain-loop convolution gradients on flat NHWC Float32Arrays. Pure functions: the kernels hand
// them views of the wasm heap. Reductions over batch x space accumulate in float64 so large batches
// do not lose precision.
import type { ConvGeometry } from './conv-geometry.js';

/** dW[kh,kw,ci,co] = sum over b,oy,ox of x[b, oy*s+kh-pad, ox*s+kw-pad, ci] * dy[b,oy,ox,co]. */
export function conv2dFilterGrad(x: Float32Array, dy: Float32Array, g: ConvGeometry, out: Float32Array): void {
  const { batch, inH, inW, inC, outH, outW, outC, kH, kW, strideH, strideW, padTop, padLeft } = g;
  const acc = new Float64Array(kH * kW * inC * outC);
  for (let b = 0; b < batch; b++) {
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        const dyOff = ((b * outH + oy) * outW + ox) * outC;
        for (let kh = 0; kh < kH; kh++) {
          const iy = oy * strideH + kh - padTop;
          if (iy < 0 || iy >= inH) continue;
          for (let kw = 0; kw < kW; kw++) {
            const ix = ox * strideW + kw - padLeft;
            if (ix < 0 || ix >= inW) continue;
            const xOff = ((b * inH + iy) * inW + ix) * inC;
            const wBase = (kh * kW + kw) * inC * outC;
            for (let ci = 0; ci < inC; ci++) {
              const xv = x[xOff + ci];
              if (xv === 0) continue; // post-ReLU activations are often zero
              const row = wBase + ci * outC;
              for (let co = 0; co < outC; co++) acc[row + co] += xv * dy[dyOff + co];
            }
          }
        }
      }
    }
  }
  for (let i = 0; i < acc.length; i++) out[i] = acc[i];
}

/** Depthwise dW[kh,kw,c,m] = sum over b,oy,ox of x[b,iy,ix,c] * dy[b,oy,ox,c*mult+m]. */
export function depthwiseFilterGrad(x: Float32Array, dy: Float32Array, g: ConvGeometry, out: Float32Array): void {
  const { batch, inH, inW, inC, outH, outW, kH, kW, strideH, strideW, padTop, padLeft, mult } = g;
  const outC = inC * mult;
  const acc = new Float64Array(kH * kW * outC);
  for (let b = 0; b < batch; b++) {
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        const dyOff = ((b * outH + oy) * outW + ox) * outC;
        for (let kh = 0; kh < kH; kh++) {
          const iy = oy * strideH + kh - padTop;
          if (iy < 0 || iy >= inH) continue;
          for (let kw = 0; kw < kW; kw++) {
            const ix = ox * strideW + kw - padLeft;
            if (ix < 0 || ix >= inW) continue;
            const xOff = ((b * inH + iy) * inW + ix) * inC;
            const wBase = (kh * kW + kw) * outC;
            if (mult === 1) {
              for (let c = 0; c < inC; c++) acc[wBase + c] += x[xOff + c] * dy[dyOff + c];
            } else {
              for (let c = 0; c < inC; c++) {
                const xv = x[xOff + c];
                for (let m = 0; m < mult; m++) acc[wBase + c * mult + m] += xv * dy[dyOff + c * mult + m];
              }
            }
          }
        }
      }
    }
  }
  for (let i = 0; i < acc.length; i++) out[i] = acc[i];
}

/** Depthwise dx[b,iy,ix,c] = sum over taps hitting (iy,ix) of dy[b,oy,ox,c*mult+m] * w[kh,kw,c,m]. */
export function depthwiseInputGrad(dy: Float32Array, w: Float32Array, g: ConvGeometry, out: Float32Array): void {
  const { batch, inH, inW, inC, outH, outW, kH, kW, strideH, strideW, padTop, padLeft, mult } = g;
  const outC = inC * mult;
  out.fill(0);
  for (let b = 0; b < batch; b++) {
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        const dyOff = ((b * outH + oy) * outW + ox) * outC;
        for (let kh = 0; kh < kH; kh++) {
          const iy = oy * strideH + kh - padTop;
          if (iy < 0 || iy >= inH) continue;
          for (let kw = 0; kw < kW; kw++) {
            const ix = ox * strideW + kw - padLeft;
            if (ix < 0 || ix >= inW) continue;
            const xOff = ((b * inH + iy) * inW + ix) * inC;
            const wBase = (kh * kW + kw) * outC;
            if (mult === 1) {
              for (let c = 0; c < inC; c++) out[xOff + c] += dy[dyOff + c] * w[wBase + c];
            } else {
              for (let c = 0; c < inC; c++) {
                let s = 0;
                for (let m = 0; m < mult; m++) s += dy[dyOff + c * mult + m] * w[wBase + c * mult + m];
                out[xOff + c] += s;
              }
            }
          }
        }
      }
    }
  }
}
