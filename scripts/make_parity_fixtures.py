"""Parity fixtures for robust-paf's PyTorch interop (tests/interop.rs), run by hand:

    python3 -m venv .venv && .venv/bin/pip install torch
    .venv/bin/pip install --no-deps robustbench==1.1.1   # its PAF_WideResNet; no deps needed
    .venv/bin/python scripts/make_parity_fixtures.py tests/fixtures/torch

The WideResNet is RobustBench's own `PAF_WideResNet` and `PSSiLU`
(`robustbench/model_zoo/architectures/paf_wide_resnet.py`, the `Dai2021Parameterizing` model),
loaded from the installed package's file without importing `robustbench` itself (whose
`__init__` pulls in autoattack, not on PyPI). Without the package, `--no-robustbench` uses the
official code's `models/wide_resnet.py`, written out below (the same modules and key names).
The ResNet-18s (CIFAR stem docs/reproduction.md §2.1, ImageNet stem §2.3) are the official
`models/resnet_cifar.py` / `models/ResNet.py` (torchvision's BasicBlock) written from
docs/reproduction.md with the stage widths as a parameter, and the VGG-16-BN the official
`models/vgg.py` (`make_layers(cfg["D"], act, batch_norm=True)`) likewise; all at 1/16 of the paper's
widths (4-8-16-32) so that the files stay small; the crate's `ResNet18Narrow`,
`ResNet18ImageNetNarrow` and `Vgg16BnNarrow` are the same networks.

Every model gets random weights, random BatchNorm statistics and affine parameters (the defaults
0/1 would hide layout bugs) and random raw alpha < 0, beta of either sign (|.| matters).

Written with torch.save (PyTorch's own zip format unless said):
- wrn16_1_pssilu2.pt: the bare state_dict (RobustBench's layout);
- resnet18n_{pssilu2,relu}.pt, vgg16bn_n_pssilu2.pt, resnet18in_n_pssilu2.pt: bare state_dicts;
- resnet18n_relu_official.pth.tar: {"epoch", "arch", "state_dict" (DataParallel `module.`
  prefix), "best_prec1", "optimizer"} as the official train.py saves it;
- resnet18n_relu_legacy.pt: the same state_dict in the legacy (PyTorch < 1.6) format;
- <model>_io.pt: inputs x (NHWC, [0, 1]), labels, eval-mode logits, the summed cross-entropy
  and its input gradient (NHWC), and the running statistics after one train-mode forward on x
  (keys `after_train.<bn>.running_mean|var`). For the 224x224 ImageNet-stem model x is not
  stored but generated (`deterministic_input`, which tests/interop.rs repeats) and the gradient
  is stored at every 97th NHWC element (`grad_index`, `grad_at`) and as the sum of |grad|.
"""

import importlib.util
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


class WrnBasicBlock(nn.Module):
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
            WrnBasicBlock(activation, i == 0 and in_planes or out_planes, out_planes,
                          i == 0 and stride or 1) for i in range(nb_layers)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    """The official models/wide_resnet.py (fallback for RobustBench's PAF_WideResNet)."""

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


def robustbench_paf():
    """RobustBench's paf_wide_resnet module, from the installed package's file."""
    spec = importlib.util.find_spec("robustbench")
    if spec is None:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "model_zoo", "architectures",
                        "paf_wide_resnet.py")
    mod_spec = importlib.util.spec_from_file_location("paf_wide_resnet", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


class BasicBlock(nn.Module):
    """torchvision's post-activation BasicBlock with the shared activation (resnet_cifar.py)."""

    def __init__(self, activation, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.activation = activation
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.activation(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.activation(out)


class ResNet18(nn.Module):
    """ResNet-18, [2, 2, 2, 2] BasicBlocks; CIFAR stem (3x3/1, no max-pool) or ImageNet stem
    (7x7/2, 3x3/2 max-pool); `widths` the four stage widths (64, 128, 256, 512 in the paper)."""

    def __init__(self, activation, widths, num_classes=10, imagenet=False):
        super().__init__()
        self.activation = activation
        self.imagenet = imagenet
        w1 = widths[0]
        if imagenet:
            self.conv1 = nn.Conv2d(3, w1, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, w1, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        inplanes = w1
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != w:
                down = nn.Sequential(nn.Conv2d(inplanes, w, 1, stride, bias=False),
                                     nn.BatchNorm2d(w))
            layer = nn.Sequential(BasicBlock(activation, inplanes, w, stride, down),
                                  BasicBlock(activation, w, w))
            setattr(self, f"layer{i + 1}", layer)
            inplanes = w
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.activation(self.bn1(self.conv1(x)))
        if self.imagenet:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG16BN(nn.Module):
    """The official models/vgg.py, configuration "D" with batch norm, widths scaled."""

    def __init__(self, act, widths, num_classes=10):
        super().__init__()
        w1, w2, w3, w4 = widths
        cfg = [w1, w1, "M", w2, w2, "M", w3, w3, w3, "M", w4, w4, w4, "M", w4, w4, w4, "M"]
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.BatchNorm2d(v), act]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(w4, w4), act, nn.Dropout(), nn.Linear(w4, w4), act,
            nn.Linear(w4, num_classes))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


def deterministic_input(n, h, w, c):
    """NHWC [0, 1] values from integers only, so that Rust can make the same f32s:
    x[i] = ((i * 2654435761) mod 2^32 mod 4096) / 4095 for the flat NHWC index i."""
    i = torch.arange(n * h * w * c, dtype=torch.int64)
    v = ((i * 2654435761) % 4294967296) % 4096
    return (v.double() / 4095.0).float().reshape(n, h, w, c)


def randomise(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0, (2.0 / (k * m.out_channels)) ** 0.5, generator=gen)
                if m.bias is not None:
                    m.bias.normal_(0, 0.1, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.1, generator=gen)
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0, 0.1, generator=gen)
                m.bias.normal_(0, 0.1, generator=gen)
            elif hasattr(m, "alpha") and hasattr(m, "beta"):  # PSSiLU (ours or RobustBench's)
                m.alpha.fill_(-(0.5 + torch.rand(1, generator=gen).item()))
                m.beta.fill_(0.6 * torch.rand(1, generator=gen).item() - 0.3)


def reference_io(make, sd, x, y, sampled=False):
    """Eval-mode logits, summed CE, input gradient and a train-mode forward's statistics."""
    model = make()
    model.load_state_dict(sd)
    model.eval()
    xi = x.clone().requires_grad_(True)
    logits = model(xi)
    loss = F.cross_entropy(logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xi)
    grad = grad.permute(0, 2, 3, 1).contiguous()
    io = {"labels": y.float(), "logits": logits.detach(), "loss": loss.detach().reshape(1)}
    if sampled:
        flat = grad.reshape(-1)
        index = torch.arange(0, flat.numel(), 97)
        io["grad_index"] = index.float()
        io["grad_at"] = flat[index].clone()
        io["grad_abs_sum"] = flat.double().abs().sum().float().reshape(1)
    else:
        io["x"] = x.permute(0, 2, 3, 1).contiguous()
        io["grad"] = grad
    train_copy = make()
    train_copy.load_state_dict(sd)
    train_copy.train()
    with torch.no_grad():
        train_copy(x)  # dropout (VGG) comes after every batch norm: the statistics are exact
    for k, v in train_copy.state_dict().items():
        if k.endswith("running_mean") or k.endswith("running_var"):
            io[f"after_train.{k}"] = v.clone()
    return io


def main(out, use_robustbench=True):
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith((".pt", ".tar")):
            os.remove(os.path.join(out, f))
    gen = torch.Generator().manual_seed(20261201)
    x = torch.rand(4, 3, 32, 32, generator=gen)
    y = torch.tensor([3, 1, 7, 0])
    narrow = (4, 8, 16, 32)
    rb = robustbench_paf() if use_robustbench else None
    if use_robustbench and rb is None:
        sys.exit("robustbench is not installed (pip install --no-deps robustbench==1.1.1), "
                 "or pass --no-robustbench")
    if rb is not None:
        wrn = lambda: rb.PAF_WideResNet(rb.PSSiLU(), depth=16, widen_factor=1)
    else:
        wrn = lambda: WideResNet(PSSiLU2(), depth=16, widen_factor=1)
    models = [
        ("wrn16_1_pssilu2", wrn, False),
        ("resnet18n_pssilu2", lambda: ResNet18(PSSiLU2(), narrow), False),
        ("resnet18n_relu", lambda: ResNet18(nn.ReLU(), narrow), False),
        ("vgg16bn_n_pssilu2", lambda: VGG16BN(PSSiLU2(), narrow), False),
        ("resnet18in_n_pssilu2", lambda: ResNet18(PSSiLU2(), narrow, imagenet=True), True),
    ]
    for name, make, imagenet in models:
        model = make()
        randomise(model, gen)
        sd = model.state_dict()
        torch.save(sd, os.path.join(out, f"{name}.pt"))
        if imagenet:
            xin = deterministic_input(2, 224, 224, 3).permute(0, 3, 1, 2).contiguous()
            io = reference_io(make, sd, xin, torch.tensor([5, 2]), sampled=True)
        else:
            io = reference_io(make, sd, x, y)
        torch.save(io, os.path.join(out, f"{name}_io.pt"))
        if name == "resnet18n_relu":
            # the optimizer's state_dict without momentum buffers (fresh), to keep the file small
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
            official = {
                "epoch": 3,
                "arch": "ResNet18",
                "state_dict": {f"module.{k}": v for k, v in sd.items()},
                "best_prec1": 12.5,
                "optimizer": opt.state_dict(),
            }
            torch.save(official, os.path.join(out, f"{name}_official.pth.tar"))
            torch.save(sd, os.path.join(out, f"{name}_legacy.pt"),
                       _use_new_zipfile_serialization=False)
    total = 0
    for f in sorted(os.listdir(out)):
        size = os.path.getsize(os.path.join(out, f))
        total += size
        print(f, size)
    print("total", total)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(args[0] if args else "tests/fixtures/torch", "--no-robustbench" not in sys.argv)
