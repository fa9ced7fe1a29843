"""PyTorch reference for examples/bench_cpu.rs (issue 11) and, with --device cuda,
examples/bench_gpu.rs (issue 3, 12): the same rows, the same model.

The model is the CIFAR ResNet-18 of the official code (3x3 stem, no max-pool, [2, 2, 2, 2] basic
blocks, 64..512 channels), one activation instance shared by the whole network; PSSiLU is the
paper's `x * (sigmoid(|a| x) - |b|) / (1 - |b|)` written as plain ops (a0 = 1, b0 = 1e-8), as in
the official `pssilu2`. Rows (median of --reps after one warm-up):

  train32, train128  forward + backward + SGD (momentum 0.9, nesterov, wd 5e-4), no penalty
  pgd128             one PGD step: forward + input gradient only (torch.autograd.grad), eval mode
  wrn128             a WRN-28-10 (pre-activation, the official `PAF_WideResNet`) training step
  at128              the official `madry` step: a clean train-mode forward (BN statistics),
                     PGD-10 in eval mode from the unclamped U(-eps, eps) start (eps 0.031, step
                     0.0078), then train mode CE (+ 10|b| and clip_grad_norm_(b, 0.01) for
                     PSSiLU) and the SGD step

Any batch size may follow a row's name (train512, at64). Prints `ROW row act median_ms min_ms
max_ms` lines and `PEAK_RSS_MB` at the end (with --device cuda also `PEAK_GPU_MB`, torch's
max_memory_allocated), as the Rust examples do; scripts/bench_pair.sh runs one row per process,
alternating with the crate. On CUDA the steps are synchronised before and after each timing,
TF32 is off (fp32 as the crate computes) and cudnn.benchmark on.

    OMP_NUM_THREADS=2 python3 scripts/bench_torch.py [--rows train32,pgd128] [--act relu]
        [--reps 3] [--at-reps 1] [--quick] [--device cpu|cuda]
"""
import argparse
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ROWS = ["train32", "train128", "pgd128", "at128"]
GPU_ROWS = ["train128", "train512", "pgd128", "at128", "wrn128"]
DEV = "cpu"


class PSSiLU(nn.Module):
    def __init__(self, a=1.0, b=1e-8):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([float(a)]))
        self.b = nn.Parameter(torch.tensor([float(b)]))

    def forward(self, x):
        b = self.b.abs()
        return x * (torch.sigmoid(self.a.abs() * x) - b) / (1 - b)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, act):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = act
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        o = self.act(self.bn1(self.conv1(x)))
        o = self.bn2(self.conv2(o))
        return self.act(o + self.short(x))


class ResNet18(nn.Module):
    def __init__(self, act, num_classes=10):
        super().__init__()
        self.act = nn.ReLU() if act == "relu" else PSSiLU()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [BasicBlock(cin, cout, stride, self.act), BasicBlock(cout, cout, 1, self.act)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        o = self.act(self.bn1(self.conv1(x)))
        o = self.layers(o)
        return self.fc(F.adaptive_avg_pool2d(o, 1).flatten(1))


class WideBlock(nn.Module):
    """Pre-activation block of the official PAF_WideResNet: act(bn(x)) feeds both the conv path
    and, when the shape changes, the 1x1 shortcut."""

    def __init__(self, cin, cout, stride, act):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.act = act
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        o = self.act(self.bn1(x))
        s = x if self.short is None else self.short(o)
        o = self.conv2(self.act(self.bn2(self.conv1(o))))
        return o + s


class WideResNet(nn.Module):
    def __init__(self, act, depth=28, width=10, num_classes=10):
        super().__init__()
        self.act = nn.ReLU() if act == "relu" else PSSiLU()
        n = (depth - 4) // 6
        chans = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        blocks, cin = [], 16
        for cout, stride in zip(chans[1:], [1, 2, 2]):
            for i in range(n):
                blocks.append(WideBlock(cin, cout, stride if i == 0 else 1, self.act))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        o = self.act(self.bn(self.blocks(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(o, 1).flatten(1))


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timeit(fn, reps):
    fn()  # warm-up
    sync()
    ts = []
    for _ in range(max(reps, 1)):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), min(ts), max(ts)


def penalty_and_clip(model, loss):
    """The official pssilu2 extra: + 10|b| (the caller clips b's gradient after backward)."""
    if isinstance(model.act, PSSiLU):
        return loss + 10.0 * model.act.b.abs().sum()
    return loss


def clip_beta(model):
    if isinstance(model.act, PSSiLU):
        torch.nn.utils.clip_grad_norm_([model.act.b], 0.01)


def bench(row, act, reps, at_reps):
    torch.manual_seed(0)
    model = (WideResNet(act) if row.startswith("wrn") else ResNet18(act)).to(DEV)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    digits = row.lstrip("trainpgdwr")
    if not digits.isdigit():
        sys.exit(f"error: unknown row {row!r} (rows: {', '.join(sorted(set(ROWS + GPU_ROWS)))})")
    b = int(digits)
    x = torch.rand(b, 3, 32, 32, device=DEV)
    y = torch.arange(b, device=DEV) % 10
    if row.startswith("train") or row.startswith("wrn"):
        model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        t = timeit(step, reps)
    elif row.startswith("pgd"):
        model.eval()

        def step():
            xd = x.clone().requires_grad_(True)
            loss = F.cross_entropy(model(xd), y)
            (g,) = torch.autograd.grad(loss, xd)
            return g

        t = timeit(step, reps)
    elif row.startswith("at"):
        eps, alpha = 0.031, 0.0078

        def step():
            model.train()
            with torch.no_grad():
                model(x)  # the official logging pass: updates the BN statistics
            model.eval()
            xa = x + torch.empty_like(x).uniform_(-eps, eps)  # not clamped (official)
            for _ in range(10):
                xa.requires_grad_(True)
                loss = F.cross_entropy(model(xa), y)
                (g,) = torch.autograd.grad(loss, xa)
                xa = xa.detach() + alpha * g.sign()
                xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1)
            model.train()
            opt.zero_grad(set_to_none=True)
            loss = penalty_and_clip(model, F.cross_entropy(model(xa), y))
            loss.backward()
            clip_beta(model)
            opt.step()

        t = timeit(step, at_reps)
    else:
        sys.exit(f"error: unknown row {row!r} (rows: {', '.join(ROWS)})")
    med, lo, hi = t
    name = "ReLU" if act == "relu" else "PSSiLU"
    if row.startswith("wrn"):
        name += " WRN-28-10"
    print(f"torch {row:9} {name:7} B={b:<4} {med*1e3:9.1f} ms  {b/med:7.1f} img/s  "
          f"(min {lo*1e3:.1f}, max {hi*1e3:.1f} ms)")
    print(f"ROW\t{row}\t{act}\t{med*1e3:.3f}\t{lo*1e3:.3f}\t{hi*1e3:.3f}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default=None)
    p.add_argument("--act", default="all", choices=["all", "relu", "pssilu"])
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--at-reps", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    global DEV
    DEV = a.device
    if DEV == "cuda":
        if not torch.cuda.is_available():
            sys.exit("error: --device cuda, but torch sees no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    reps = a.reps if a.reps is not None else (1 if a.quick else (10 if DEV == "cuda" else 3))
    default_rows = GPU_ROWS if DEV == "cuda" else ROWS
    rows = a.rows.split(",") if a.rows else (["train8", "pgd8", "at8"] if a.quick else default_rows)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    where = (f"CUDA {torch.cuda.get_device_name(0)}, TF32 off" if DEV == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__} benchmark, ResNet-18 (CIFAR), {where}")
    for row in rows:
        for act in (["relu", "pssilu"] if a.act == "all" else [a.act]):
            bench(row, act, reps, a.at_reps)
    print(f"PEAK_RSS_MB\t{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    if DEV == "cuda":
        print(f"PEAK_GPU_MB\t{torch.cuda.max_memory_allocated() / 2**20:.0f}")


if __name__ == "__main__":
    main()
