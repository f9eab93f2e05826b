// ONNX's own reference checker (Debian's python3-onnx), run on files this code wrote: what other
// runtimes' loaders (ONNX Runtime in Python, OpenVINO, TensorRT, Netron) take a valid model to be.
// `check_model(full_check=True)` checks the graph against each operator's schema at the file's
// opset, and runs strict shape inference.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Debian's Python, which sees Debian's packages (a python3 earlier on the PATH may not). */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const SCRIPT = `
import json, sys
import onnx
out = []
for path in sys.argv[1:]:
    model = onnx.load(path)
    try:
        onnx.checker.check_model(model, full_check=True)
        problem = None
    except Exception as e:
        problem = str(e)
    out.append({"problem": problem, "metadata": {p.key: p.value for p in model.metadata_props}})
print(json.dumps(out))
`;

export interface CheckedFile {
  /** The checker's complaint, or null. */
  problem: string | null;
  /** The file's metadata_props, as Python's onnx (and ONNX Runtime's custom_metadata_map) reads them. */
  metadata: Record<string, string>;
}

export function onnxChecker(files: string[]): CheckedFile[] {
  try {
    execFileSync(PYTHON, ['-c', 'import onnx'], { stdio: 'ignore' });
  } catch {
    throw new Error("ONNX's checker needs Python's onnx package: apt-get install python3-onnx (.ci/run installs it)");
  }
  return JSON.parse(execFileSync(PYTHON, ['-c', SCRIPT, ...files], { encoding: 'utf8', maxBuffer: 1 << 24 })) as CheckedFile[];
}
