"""Parity fixtures for robust-paf's PyTorch interop (tests/interop.rs), run by hand:

    python3 -m venv .venv && .venv/bin/pip install torch
    .venv/bin/python scripts/make_parity_fixtures.py tests/fixtures/torch

The WideResNet is the official code's `models/wide_resnet.py` (identical to RobustBench's
`PAF_WideResNet`, PAPER.md §2.2) and PSSiLU its `PSSiLU2` (`models/activations.py`), written
out here so the script needs torch only. Depth 16, widen factor 1 (the crate's
`WideResNet16x1`), random weights, random BatchNorm statistics and affine parameters (the
defaults 0/1 would hide layout bugs), raw alpha = -1.3 and beta = 0.2 (negative: |.| matters).

Written with torch.save (PyTorch's own zip format):
- wrn16_1_{pssilu2,relu}.pt: the bare state_dict (RobustBench's layout);
- wrn16_1_pssilu2_official.pth.tar: {"epoch", "arch", "state_dict" (DataParallel `module.`
  prefix), "best_prec1", "optimizer"} as the official train.py saves it;
- wrn16_1_{pssilu2,relu}_io.pt: inputs x (NHWC, [0, 1]), labels, eval-mode logits, the summed
  cross-entropy and its input gradient (NHWC), and the running statistics after one train-mode
  forward on x (keys `after_train.<bn>.running_mean|var`).
"""

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class PSSiLU2(nn.Module):
    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor([1e-8]))
        self.alpha = nn.Parameter(torch.tensor([1.0]))

    def forward(self, x):
        b = torch.abs(self.beta)
        return x * (torch.sigmoid(torch.abs(self.alpha) * x) - b) / (1 - b)


class BasicBlock(nn.Module):
    def __init__(self, activation, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.activation = activation
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = (not self.equalInOut) and nn.Conv2d(
            in_planes, out_planes, 1, stride, 0, bias=False) or None

    def forward(self, x):
        if not self.equalInOut:
            x = self.activation(self.bn1(x))
        else:
            out = self.activation(self.bn1(x))
        out = self.activation(self.bn2(self.conv1(out if self.equalInOut else x)))
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class NetworkBlock(nn.Module):
    def __init__(self, activation, nb_layers, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[
            BasicBlock(activation, i == 0 and in_planes or out_planes, out_planes,
                       i == 0 and stride or 1) for i in range(nb_layers)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, activation, depth=16, num_classes=10, widen_factor=1):
        super().__init__()
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(activation, n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(activation, n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(activation, n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.activation = activation
        self.fc = nn.Linear(ch[3], num_classes)
        self.nChannels = ch[3]

    def forward(self, x):
        out = self.conv1(x)
        out = self.block3(self.block2(self.block1(out)))
        out = self.activation(self.bn1(out))
        out = F.avg_pool2d(out, 8)
        return self.fc(out.view(-1, self.nChannels))


def randomise(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0, (2.0 / (9 * m.out_channels)) ** 0.5, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.1, generator=gen)
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0, 0.1, generator=gen)
                m.bias.normal_(0, 0.1, generator=gen)
            elif isinstance(m, PSSiLU2):
                m.alpha.fill_(-1.3)
                m.beta.fill_(0.2)


def main(out):
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(20261201)
    x = torch.rand(4, 3, 32, 32, generator=gen)
    y = torch.tensor([3, 1, 7, 0])
    for name, act in [("pssilu2", PSSiLU2()), ("relu", nn.ReLU())]:
        model = WideResNet(act)
        randomise(model, gen)
        model.eval()
        sd = model.state_dict()
        torch.save(sd, os.path.join(out, f"wrn16_1_{name}.pt"))
        xi = x.clone().requires_grad_(True)
        logits = model(xi)
        loss = F.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xi)
        io = {
            "x": x.permute(0, 2, 3, 1).contiguous(),
            "labels": y.float(),
            "logits": logits.detach(),
            "loss": loss.detach().reshape(1),
            "grad": grad.permute(0, 2, 3, 1).contiguous(),
        }
        train_copy = WideResNet(PSSiLU2() if name == "pssilu2" else nn.ReLU())
        train_copy.load_state_dict(sd)
        train_copy.train()
        with torch.no_grad():
            train_copy(x)
        for k, v in train_copy.state_dict().items():
            if k.endswith("running_mean") or k.endswith("running_var"):
                io[f"after_train.{k}"] = v.clone()
        torch.save(io, os.path.join(out, f"wrn16_1_{name}_io.pt"))
        if name == "pssilu2":
            # the optimizer's state_dict without momentum buffers (fresh), to keep the file small
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
            official = {
                "epoch": 3,
                "arch": "wrn_16_1",
                "state_dict": {f"module.{k}": v for k, v in sd.items()},
                "best_prec1": 12.5,
                "optimizer": opt.state_dict(),
            }
            torch.save(official, os.path.join(out, f"wrn16_1_{name}_official.pth.tar"))
    for f in sorted(os.listdir(out)):
        print(f, os.path.getsize(os.path.join(out, f)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/torch")
