#!/usr/bin/python3
"""The PyTorch peer for `make bench PEER=1`: the same U-Net (tools/make_fixtures.py's module) on the
same machine, same sizes. Prints one JSON object that bench_unet reads to print ratios.

Runs with Debian's python3-torch (1.13, oneDNN); threads = all cores, like marsseg. Each figure is
the median over steps/calls within a run, and the best of PEER_RUNS (2) runs.
"""
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as Fn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from make_fixtures import UNet  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)
H, W, B = 64, 128, 32
steps = int(os.environ.get("PEER_STEPS", "5"))  # medians of per-step times, like bench_unet
# PyTorch's figures moved by up to 30% between runs on this shared 2-core machine: the whole
# sequence runs PEER_RUNS times and each figure is PyTorch's best, so a ratio never rests on
# one slow peer run
runs = int(os.environ.get("PEER_RUNS", "2"))


def median_s(call, n):
    """One warm-up call, then the median of n timed calls, in seconds."""
    call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
       "runs": runs}
for base in [32, 16] * runs:
    torch.manual_seed(0)
    model = UNet(4, base, 5, 0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.rand(B, 1, H, W)
    t = torch.randint(0, 5, (B, H, W))
    w = torch.tensor([0.1, 1, 1, 1, 1.0])
    model.train()
    steps_s = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = Fn.cross_entropy(model(x), t, weight=w)
        loss.backward()
        opt.step()
        if i > 0:
            steps_s.append(time.perf_counter() - t0)
    train = B / statistics.median(steps_s)
    model.eval()
    with torch.no_grad():
        b1 = median_s(lambda: model(x[:1]), 40)
        b32 = B / median_s(lambda: model(x), 5)
    key, new = "F%d" % base, {"train_img_s": train, "infer_b1_ms": b1 * 1e3, "infer_b32_img_s": b32}
    old = out.get(key)
    if old:
        new = {"train_img_s": max(train, old["train_img_s"]), "infer_b1_ms": min(b1 * 1e3, old["infer_b1_ms"]),
               "infer_b32_img_s": max(b32, old["infer_b32_img_s"])}
    out[key] = new
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
