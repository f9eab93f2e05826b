// The PyTorch side of issue 12's comparison: bench/train_pytorch.py (torchvision's quantizable
// MobileNetV2, eager QAT with the onednn qconfig, SGD momentum, random data) run with
// /usr/bin/python3 (Debian's python3-torch, python3-torchvision), one workload per call.
import { execFile } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface TorchRate {
  threads: number;
  float: number;
  qat: number;
}

export interface TorchRun {
  steps: number;
  warmup: number;
  /** OMP_NUM_THREADS (default: every core of this machine). */
  threads?: string;
  /** ONEDNN_MAX_CPU_ISA, e.g. AVX2 to stand in for an AVX2-only machine; `native` leaves it unset. */
  isa: string;
}

/**
 * PyTorch's float and QAT images/s on one workload, or why it could not run. Asynchronous: a caller
 * holding HTTP keep-alive sockets (bench/worker-rate.ts) must not block its event loop for the
 * minutes this takes, or its next request goes out on a socket the server has since closed.
 */
export async function pytorchRate(w: number, size: number, bs: number, run: TorchRun): Promise<TorchRate | string> {
  const script = fileURLToPath(new URL('./train_pytorch.py', import.meta.url));
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: run.threads ?? String(os.availableParallelism()) };
  if (run.isa === 'native') delete env.ONEDNN_MAX_CPU_ISA;
  else env.ONEDNN_MAX_CPU_ISA = run.isa;
  const args = [script, '--steps', String(run.steps), '--warmup', String(run.warmup), '--only', `${w}x${size}x${bs}`];
  let out: string;
  try {
    out = (await execFileAsync('/usr/bin/python3', args, { env })).stdout;
  } catch (e) {
    // A string code (ENOENT, EACCES) is a failure to start; a numeric one is the script's exit status.
    const err = e as { code?: string | number; message: string; stderr?: string };
    if (typeof err.code === 'string') return `cannot run /usr/bin/python3 (${err.message}); apt-get install python3-torch python3-torchvision`;
    return `train_pytorch.py failed: ${(err.stderr ?? '').trim().split('\n').pop()}`;
  }
  const line = out.trim().split('\n').pop();
  if (!line) return 'train_pytorch.py printed nothing';
  const j = JSON.parse(line) as TorchRate;
  return { threads: j.threads, float: j.float, qat: j.qat };
}
