#!/usr/bin/env python3
"""Golden values for tests/train_step.rs: two training steps of each trainer of the paper's
official code (dash29/robust_paf `trainers.py`: baseline, madry, adv = TRADES) on a tiny network,
in PyTorch float64, with the start perturbations given explicitly.

The network (the same in the Rust test): input 4 x 3 x 8 x 8, conv 3->4 3x3 s1 p1 (no bias) ->
BN -> PSSiLU -> conv 4->4 3x3 s2 p1 -> BN -> PSSiLU -> global average pool -> Linear(4, 10);
one PSSiLU (alpha 1, beta 1e-8) shared by both sites. Weights, inputs and starts are closed-form
functions of their indices (below). SGD(lr 0.1, momentum 0.9, nesterov, weight decay 5e-4),
loss + 10 |beta|, clip_grad_norm_(beta, 0.01) (0.1 for TRADES), as `trainers.py`.

    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch numpy
    .venv-ref/bin/python scripts/reference_train_step.py > tests/golden/train_step.json
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

N, C, H, W, K = 4, 3, 8, 8, 10
EPS, STEP, STEPS = 0.031, 0.0078, 10
LABELS = [1, 3, 0, 7]


class PSSiLU(nn.Module):
    # models/activations.py `pssilu2` (= RobustBench's PSSiLU)
    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor([1.0]))
        self.beta = nn.Parameter(torch.tensor([1e-8]))

    def forward(self, x):
        a, b = torch.abs(self.alpha), torch.abs(self.beta)
        return x * (torch.sigmoid(a * x) - b) / (1 - b)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.activation = PSSiLU()
        self.conv1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, K)

    def forward(self, x):
        x = self.activation(self.bn1(self.conv1(x)))
        x = self.activation(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def init(m):
    with torch.no_grad():
        for o in range(4):
            for i in range(3):
                for kh in range(3):
                    for kw in range(3):
                        m.conv1.weight[o, i, kh, kw] = 0.2 * math.sin(0.5 * o + 1.1 * i + 0.7 * kh + 0.3 * kw + 0.1)
            for i in range(4):
                for kh in range(3):
                    for kw in range(3):
                        m.conv2.weight[o, i, kh, kw] = 0.2 * math.cos(0.3 * o + 0.9 * i + 0.5 * kh + 0.2 * kw)
        for c in range(4):
            m.bn1.weight[c] = 1 + 0.1 * c
            m.bn1.bias[c] = 0.05 * c - 0.1
            m.bn2.weight[c] = 1 - 0.05 * c
            m.bn2.bias[c] = 0.02 * c
        for k in range(K):
            for c in range(4):
                m.fc.weight[k, c] = 0.3 * math.sin(0.4 * k + 1.7 * c)
            m.fc.bias[k] = 0.01 * k


def images():
    return torch.tensor([[[[0.5 + 0.4 * math.sin(1.3 * n + 0.7 * c + 0.31 * h + 0.17 * w)
                            for w in range(W)] for h in range(H)] for c in range(C)] for n in range(N)])


def pgd_start(step):
    return torch.tensor([[[[EPS * math.sin(2.1 * n + 1.3 * c + 0.9 * h + 0.4 * w + step)
                            for w in range(W)] for h in range(H)] for c in range(C)] for n in range(N)])


def trades_start(step):
    return torch.tensor([[[[0.001 * math.cos(1.7 * n + 0.6 * c + 1.1 * h + 0.3 * w + step)
                            for w in range(W)] for h in range(H)] for c in range(C)] for n in range(N)])


def pgd_whitebox(model, x, y, delta0):
    # utils_adv.pgd_whitebox, linf, is_random=True with the given start (not clamped)
    x_pgd = (x.detach() + delta0).requires_grad_(True)
    for _ in range(STEPS):
        loss = nn.CrossEntropyLoss()(model(x_pgd), y)
        grad = torch.autograd.grad(loss, [x_pgd])[0].detach()
        x_pgd.data = x_pgd.data + STEP * grad.sign()
        eta = torch.clamp(x_pgd.data - x.data, -EPS, EPS)
        x_pgd.data = torch.clamp(x.data + eta, 0.0, 1.0)
    return x_pgd.detach()


def trades_adv(model, x, delta0):
    # utils_adv.trades_loss, linf part
    kl = nn.KLDivLoss(reduction="sum")
    model.eval()
    x_adv = x.detach() + delta0
    for _ in range(STEPS):
        x_adv.requires_grad_()
        loss_kl = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + STEP * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    return x_adv.detach()


def state(model):
    return {k: v.detach().flatten().tolist() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def run(trainer):
    torch.manual_seed(0)
    model = Tiny()
    init(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    x = images()
    y = torch.tensor(LABELS)
    out = []
    for step in range(2):
        rec = {}
        model.train()
        if trainer == "baseline":
            logits = model(x)
            loss = nn.CrossEntropyLoss()(logits, y)
        elif trainer == "madry":
            logits = model(x)  # the logging pass: BN running statistics updated with x
            rec["after_clean_pass"] = state(model)
            model.eval()
            adv = pgd_whitebox(model, x, y, pgd_start(step))
            model.train()
            rec["adv"] = adv.flatten().tolist()
            logits_adv = model(adv)
            loss = nn.CrossEntropyLoss()(logits_adv, y)
        else:
            adv = trades_adv(model, x, trades_start(step))
            model.train()
            rec["adv"] = adv.flatten().tolist()
            logits, logits_adv = model(x), model(adv)
            kl = nn.KLDivLoss(reduction="sum")
            loss = nn.CrossEntropyLoss()(logits, y) + 6.0 * (1.0 / N) * kl(
                F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1))
        loss = loss + 10.0 * torch.abs(model.activation.beta.squeeze())
        rec["loss"] = loss.item()
        opt.zero_grad()
        loss.backward()
        rec["beta_grad"] = model.activation.beta.grad.item()
        torch.nn.utils.clip_grad_norm_(model.activation.beta, 0.1 if trainer == "adv" else 0.01)
        rec["beta_grad_clipped"] = model.activation.beta.grad.item()
        opt.step()
        rec["after_step"] = state(model)
        out.append(rec)
    return out


if __name__ == "__main__":
    print(json.dumps({
        "generator": "scripts/reference_train_step.py",
        "torch": torch.__version__,
        "dtype": "float64",
        "layout": "PyTorch (NCHW images, [out, in, kh, kw] conv weights)",
        "baseline": run("baseline"),
        "madry": run("madry"),
        "adv": run("adv"),
    }, indent=1))
