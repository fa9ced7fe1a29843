"""torchattacks' AutoAttack on the crate's quick model (issue 11), the PyTorch side of
scripts/bench_autoattack.sh, which runs it after the crate's own AutoAttack on the same images.

The model is `models::SmallCnn` written in PyTorch: three conv (3x3, no bias) -> BatchNorm ->
activation stages (3->16 stride 1, 16->32 stride 2, 32->32 stride 2), a 2x2 average pool and a
linear head on the 4x4x32 features **flattened channels-last** (h, w, c), as the crate's NHWC
tensors are; one activation shared by the three sites, PSSiLU (`pssilu2`)
`x * (sigmoid(|a| x) - |b|) / (1 - |b|)` or ReLU. The weights are a `robust-paf export` file
(loaded with strict=True); the images, labels and the crate's clean logits come from
`examples/dump_test_set.rs`. The clean logits must match the crate's within --tol (max |diff|
is printed; the script fails above it), so both sides attack the same function.

Then `torchattacks.AutoAttack(model, norm='Linf', eps=EPS, version='standard', n_classes=10,
seed=0)`, with torch.set_num_threads(--threads), timed. Its four attacks (APGD-CE, APGD-T,
FAB-T, Square) are run one after the other over the whole set, each on the points every earlier
attack left robust (what its MultiAttack does batch by batch, and what the crate does), so each
attack's time and the robust accuracy after it are known. Variants (--variants):

  default   torchattacks 3.5's AutoAttack as it is: APGD-CE, APGD-T and FAB-T at its default
            10 steps (the original AutoAttack and the crate: 100), Square 5,000 queries
  steps100  the same objects with .steps = 100 for APGD-CE, APGD-T and FAB-T: the original
            AutoAttack's (and the crate's) iteration counts

    python3 scripts/torchattacks_autoattack.py --weights model.safetensors --data DIR \
        [--eps 8/255] [--batch-size 256] [--threads 2] [--variants default,steps100] \
        [--act auto] [--tol 1e-4] [--json OUT]
"""
import argparse
import json
import struct
import sys
import time
from fractions import Fraction

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VARIANTS = ("default", "steps100")
NAMES = ("apgd-ce", "apgd-t", "fab-t", "square")


class PSSiLU2(nn.Module):
    """The official `pssilu2` (learnable alpha and beta), as scripts/make_parity_fixtures.py."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor([1e-8]))
        self.alpha = nn.Parameter(torch.tensor([1.0]))

    def forward(self, x):
        b = torch.abs(self.beta)
        return x * (torch.sigmoid(torch.abs(self.alpha) * x) - b) / (1 - b)


class SmallCnn(nn.Module):
    """`models::SmallCnn` (src/models/small_cnn.rs): the same tensor names as its state_dict."""

    def __init__(self, activation, classes=10):
        super().__init__()
        self.activation = activation
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, 2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.activation(self.bn1(self.conv1(x)))
        x = self.activation(self.bn2(self.conv2(x)))
        x = self.activation(self.bn3(self.conv3(x)))
        x = F.avg_pool2d(x, 2)
        # the crate flattens its NHWC features as (h, w, c)
        return self.fc(x.permute(0, 2, 3, 1).flatten(1))


DTYPES = {"F32": torch.float32, "I64": torch.int64}


def load_safetensors(path):
    """A safetensors file without the safetensors package (as scripts/check_export.py)."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=DTYPES[info["dtype"]])
        out[key] = t.reshape(info["shape"]).clone()
    return out


def parse_eps(s):
    return float(Fraction(s.strip())) if "/" in s else float(s)


@torch.no_grad()
def logits_of(model, x, batch_size):
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def run_autoattack(model, x, y, eps, variant, batch_size, robust):
    """The attacks of torchattacks.AutoAttack in order on the still-robust points; returns
    `(per_attack, robust)`; per_attack: one dict per attack with its name, the robust accuracy
    after it, its wall and CPU seconds (time.process_time: every thread of this process) and the
    number of points it attacked."""
    import torchattacks

    atk = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10,
                                  seed=0)
    attacks = atk._autoattack.attacks
    names = [type(a).__name__ for a in attacks]
    if names != ["APGD", "APGDT", "FAB", "Square"]:
        sys.exit(f"torchattacks_autoattack: unexpected AutoAttack attacks {names}")
    if variant == "steps100":
        for a in attacks[:3]:
            a.steps = 100
    robust = robust.clone()
    per_attack = []
    for name, attack in zip(NAMES, attacks):
        todo = robust.nonzero().flatten()
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(todo), batch_size):
            idx = todo[i:i + batch_size]
            adv = attack(x[idx], y[idx])
            d = (adv - x[idx]).abs().flatten(1).max(1).values
            if not (torch.isfinite(adv).all() and adv.min() >= 0 and adv.max() <= 1
                    and (d <= eps * (1 + 1e-5) + 1e-6).all()):
                sys.exit(f"torchattacks_autoattack: {name} left the eps-ball or [0, 1]")
            with torch.no_grad():
                still = model(adv).argmax(1) == y[idx]
            robust[idx[~still]] = False
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        acc = robust.float().mean().item()
        print(f"  {variant:9} {name:8} robust {100 * acc:6.2f}%  {dt:8.1f} s  (CPU {cpu:.1f} s, "
              f"{len(todo)} points)", flush=True)
        per_attack.append({"attack": name, "robust_accuracy": acc, "seconds": dt,
                           "cpu_seconds": cpu, "points": len(todo)})
    return per_attack, robust


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="a `robust-paf export` safetensors file")
    p.add_argument("--data", required=True,
                   help="folder with images.npy, labels.npy, logits.npy (examples/dump_test_set)")
    p.add_argument("--eps", default="8/255")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", default="default,steps100")
    p.add_argument("--act", default="auto", choices=["auto", "pssilu2", "relu"],
                   help="the activation (auto: PSSiLU if the weights hold activation.alpha/beta, "
                        "ReLU if they hold no activation parameters)")
    p.add_argument("--tol", type=float, default=1e-4, help="max |logits - crate's| allowed")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()
    variants = [v for v in a.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v} (expected {', '.join(VARIANTS)})")

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    eps = parse_eps(a.eps)
    sd = load_safetensors(a.weights)
    act = a.act
    if act == "auto":
        params = sorted(k for k in sd if k.startswith("activation."))
        if params == ["activation.alpha", "activation.beta"]:
            act = "pssilu2"
        elif not params:
            act = "relu"
        else:
            sys.exit(f"torchattacks_autoattack: activation parameters {params}: only PSSiLU "
                     "(pssilu2) and ReLU models are written here")
    model = SmallCnn(PSSiLU2() if act == "pssilu2" else nn.ReLU())
    model.load_state_dict(sd, strict=True)
    model.eval()
    images = np.load(f"{a.data}/images.npy")
    labels = np.load(f"{a.data}/labels.npy")
    crate_logits = torch.from_numpy(np.load(f"{a.data}/logits.npy"))
    # byte / 255 in f32, as the crate does (the same bits)
    x = (torch.from_numpy(images).float() / 255.0).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels.astype(np.int64))

    logits = logits_of(model, x, a.batch_size)
    diff = (logits - crate_logits).abs().max().item()
    scale = crate_logits.abs().max().item()
    print(f"clean logits: max |PyTorch - crate| = {diff:.3g} (largest |logit| {scale:.3g}, "
          f"tolerance {a.tol:g})", flush=True)
    if not diff <= a.tol:
        sys.exit(f"torchattacks_autoattack: the PyTorch model does not match the crate's "
                 f"(max |diff| {diff:.3g} > {a.tol:g}); wrong architecture or weights?")
    robust = logits.argmax(1) == y
    clean = robust.float().mean().item()
    crate_clean = (crate_logits.argmax(1) == y).float().mean().item()
    print(f"clean accuracy: {100 * clean:.2f}% (the crate's logits: {100 * crate_clean:.2f}%), "
          f"{len(y)} images, eps {a.eps} = {eps:.6f}, batch {a.batch_size}, "
          f"{torch.get_num_threads()} threads", flush=True)

    import torchattacks

    results = []
    for v in variants:
        per_attack, r = run_autoattack(model, x, y, eps, v, a.batch_size, robust)
        seconds = sum(t["seconds"] for t in per_attack)
        cpu = sum(t["cpu_seconds"] for t in per_attack)
        acc = r.float().mean().item()
        print(f"torchattacks AutoAttack ({v}): robust {100 * acc:.2f}% in {seconds:.1f} s "
              f"(CPU {cpu:.1f} s)", flush=True)
        results.append({"variant": v, "robust_accuracy": acc, "seconds": seconds,
                        "cpu_seconds": cpu, "per_attack": per_attack})
    out = {
        "n_examples": len(y),
        "eps": eps,
        "eps_text": a.eps,
        "batch_size": a.batch_size,
        "threads": torch.get_num_threads(),
        "activation": act,
        "torch": torch.__version__,
        "torchattacks": getattr(torchattacks, "__version__", "?"),
        "logits_max_diff": diff,
        "clean_accuracy": clean,
        "crate_logits_clean_accuracy": crate_clean,
        "variants": results,
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
