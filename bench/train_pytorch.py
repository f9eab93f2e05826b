"""PyTorch reference for bench/train.ts: training images/s of torchvision's MobileNetV2, float and
eager-mode QAT, on the same workloads and random data.

    OMP_NUM_THREADS=2 /usr/bin/python3 bench/train_pytorch.py --steps 5 --only 1x224x8

bench/train.ts --pytorch runs this (Debian's python3-torch and python3-torchvision) and prints
the two side by side. The QAT recipe is PyTorch's own: the quantizable mobilenet_v2,
fuse_model(is_qat=True), prepare_qat with the onednn qconfig, SGD with momentum. One line per
workload, as JSON, so the caller needs no parsing rules of its own.
"""
import argparse
import json
import os
import time

import torch
import torch.nn as nn
from torchvision.models.quantization import mobilenet_v2

WORKLOADS = [(0.35, 32, 16), (1.0, 32, 32), (1.0, 224, 8)]


def model_for(width, qat):
    # The quantizable variant is the float network plus QuantStub/DeQuantStub and fusable blocks.
    m = mobilenet_v2(weights=None, width_mult=width, num_classes=10, quantize=False)
    m.train()
    if qat:
        m.fuse_model(is_qat=True)
        torch.backends.quantized.engine = "onednn"
        m.qconfig = torch.ao.quantization.get_default_qat_qconfig("onednn")
        torch.ao.quantization.prepare_qat(m, inplace=True)
    return m


def rate(width, size, bs, steps, qat, warmup):
    torch.manual_seed(0)
    m = model_for(width, qat)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(bs, 3, size, size)
    y = torch.arange(bs) % 10

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(m(x), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):  # allocator, observers' first ranges; as many as bench/train.ts takes
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * bs / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=30, help="untimed steps per mode first")
    ap.add_argument("--only", help="one workload as WxSIZExBATCH, e.g. 1x224x8")
    args = ap.parse_args()
    for w, size, bs in WORKLOADS:
        if args.only and args.only != f"{w:g}x{size}x{bs}":
            continue
        print(json.dumps({
            "w": w, "size": size, "bs": bs, "threads": torch.get_num_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__,
            "float": rate(w, size, bs, args.steps, False, args.warmup),
            "qat": rate(w, size, bs, args.steps, True, args.warmup),
        }), flush=True)


if __name__ == "__main__":
    main()
