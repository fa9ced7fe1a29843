"""Loads a `robust-paf export` file into the reference PyTorch model of a parity fixture with
strict=True and compares its logits with the fixture's (run by hand, needs torch only):

    .venv/bin/python scripts/check_export.py EXPORTED.safetensors tests/fixtures/torch/wrn16_1_pssilu2_io.pt

The model is the one of the fixture named by the second argument (`<name>_io.pt`; see
`make_parity_fixtures.py`); the 224x224 ImageNet-stem fixture's input is generated.

The safetensors file is parsed here (an 8-byte header length, a JSON header, raw little-endian
data) so that the `safetensors` package is not needed.
"""

import json
import struct
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import os  # noqa: E402

import torch.nn as nn  # noqa: E402
from make_parity_fixtures import (  # noqa: E402
    PSSiLU2, VGG16BN, ResNet18, WideResNet, deterministic_input)

NARROW = (4, 8, 16, 32)
MODELS = {
    "wrn16_1_pssilu2": lambda: WideResNet(PSSiLU2()),
    "resnet18n_pssilu2": lambda: ResNet18(PSSiLU2(), NARROW),
    "resnet18n_relu": lambda: ResNet18(nn.ReLU(), NARROW),
    "vgg16bn_n_pssilu2": lambda: VGG16BN(PSSiLU2(), NARROW),
    "resnet18in_n_pssilu2": lambda: ResNet18(PSSiLU2(), NARROW, imagenet=True),
}

DTYPES = {"F32": torch.float32, "I64": torch.int64}


def load_safetensors(path):
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


def main(exported, io_path):
    sd = load_safetensors(exported)
    name = os.path.basename(io_path)[: -len("_io.pt")]
    model = MODELS[name]()
    model.load_state_dict(sd, strict=True)
    model.eval()
    io = torch.load(io_path)
    if "x" in io:
        x = io["x"].permute(0, 3, 1, 2)
    else:
        x = deterministic_input(len(io["labels"]), 224, 224, 3).permute(0, 3, 1, 2)
    with torch.no_grad():
        diff = (model(x) - io["logits"]).abs().max().item()
    print(f"load_state_dict(strict=True): ok; max |logits - fixture| = {diff:.3g}")
    assert diff < 1e-4


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
