"""PyTorch CPU reference for examples/bench_cpu.rs: the same measurements, same model.

Uses the model and timing code of ../shared/bench/pytorch_resnet18.py (the project's reference
benchmark) but only what a 2-core CPU can finish in minutes: the ResNet-18 training step
(fwd + bwd + SGD) at B=32 and B=128 and one PGD step (forward + input gradient, eval mode) at
B=128, with ReLU and PSSiLU. Run right after the Rust benchmark, on the same machine:

    OMP_NUM_THREADS=2 python3 scripts/bench_torch_cpu.py [path/to/shared/bench]
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
bench_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "bench")
sys.argv = [sys.argv[0], "--device", "cpu"]
sys.path.insert(0, bench_dir)
import pytorch_resnet18 as ref  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def bench_pgd_step(act, batch, warm, iters):
    m, _ = ref.build(act, "fp32-strict")
    m.eval()
    x, y = ref.data(batch, "fp32-strict")

    def step():
        xd = x.clone().requires_grad_(True)
        loss = F.cross_entropy(m(xd), y)
        (g,) = torch.autograd.grad(loss, xd)
        return g

    sec, lo, hi = ref.timeit(step, warm, iters)
    ref.record(f"torch PGD step (fwd + input grad, eval) {act}", batch, sec,
               f"(min {lo*1e3:.1f} max {hi*1e3:.1f} ms)")


def main():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    ref.log("torch", torch.__version__, "threads", torch.get_num_threads())
    for act in ["relu", "pssilu"]:
        for b in [32, 128]:
            ref.bench_train(act, "fp32-strict", b, 1, 3)
        bench_pgd_step(act, 128, 1, 3)


if __name__ == "__main__":
    main()
