#!/usr/bin/python3
"""Write the PyTorch reference fixtures for the C numerics tests (tests/fixtures/unet_*.npz).

Run by hand with Debian's python3-torch (`make fixtures` or `/usr/bin/python3 tools/make_fixtures.py`);
CI only reads the committed outputs.

The module below is the marsseg U-Net "written the obvious way": its state_dict names are the names
the C code uses in weight files. The reference runs in float64 and is stored as float32, so that a
mismatch measures the C code's error, not PyTorch's.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as Fn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")


class ResBlock(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.c1 = nn.Conv2d(cin, c, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(c)
        self.c2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(c)
        self.sc = nn.Conv2d(cin, c, 1, bias=True)

    def forward(self, x):
        y = Fn.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return Fn.relu(y + self.sc(x))


class AttentionGate(nn.Module):
    """Oktay et al.'s gate as LeeJunHyun/Image_Segmentation's Attention_block (W_g, W_x, psi as
    conv1x1+BN): psi = sigmoid(BN(conv(relu(BN(conv(g)) + BN(conv(x)))))), out = x * psi."""

    def __init__(self, c, f):
        super().__init__()
        self.wg = nn.Conv2d(c, f, 1, bias=True)
        self.bg = nn.BatchNorm2d(f)
        self.wx = nn.Conv2d(c, f, 1, bias=True)
        self.bx = nn.BatchNorm2d(f)
        self.psi = nn.Conv2d(f, 1, 1, bias=True)
        self.bpsi = nn.BatchNorm2d(1)

    def forward(self, g, x):
        s = Fn.relu(self.bg(self.wg(g)) + self.bx(self.wx(x)))
        return x * torch.sigmoid(self.bpsi(self.psi(s)))


class DecBlock(ResBlock):
    """A decoder ResBlock that owns its level's attention gate (dec.{i}.att.*) when there is one."""

    def __init__(self, cin, c, attention):
        super().__init__(cin, c)
        if attention:
            self.att = AttentionGate(c, max(c // 2, 1))


class UNet(nn.Module):
    def __init__(self, depth=4, base=32, classes=5, dropout=0.0, attention=False):
        super().__init__()
        ch = [base * 2 ** l for l in range(depth + 1)]
        self.depth = depth
        self.attention = attention
        self.enc = nn.ModuleList([ResBlock(1 if l == 0 else ch[l - 1], ch[l]) for l in range(depth)])
        self.bott = ResBlock(ch[depth - 1], ch[depth])
        # decoder i = 0 is the deepest level (l = depth-1)
        self.up = nn.ModuleList([nn.ConvTranspose2d(ch[l + 1], ch[l], 2, stride=2)
                                 for l in reversed(range(depth))])
        self.dec = nn.ModuleList([DecBlock(2 * ch[l], ch[l], attention) for l in reversed(range(depth))])
        self.head = nn.Conv2d(base, classes, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        skips = []
        for l in range(self.depth):
            x = self.enc[l](x)
            skips.append(x)
            x = Fn.max_pool2d(x, 2)
        x = self.drop(self.bott(x))
        for i in range(self.depth):
            x = self.up[i](x)
            skip = skips[self.depth - 1 - i]
            if self.attention:
                skip = self.dec[i].att(x, skip)
            x = torch.cat([x, skip], dim=1)
            x = self.drop(self.dec[i](x))
        return self.head(x)


def weighted_ce(logits, target, w):
    return Fn.cross_entropy(logits, target, weight=w)


def make_one(name, depth, base, B, H, W, eval_hw, seed, lr=1e-2, wd=1e-2, steps=3, attention=False, eps=1e-8):
    torch.manual_seed(seed)
    model = UNet(depth, base, 5, 0.0, attention).double()
    # non-trivial BN affine params and running stats, so every term of BN is exercised
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64)
    t = torch.randint(0, 5, (B, H, W), generator=g)
    cw = torch.tensor([0.2, 1.0, 1.3, 0.8, 2.5], dtype=torch.float64)
    ex = torch.rand(1, 1, eval_hw[0], eval_hw[1], generator=g, dtype=torch.float64)

    out = {}
    cfg = {"depth": depth, "base": base, "classes": 5, "dropout": 0.0,
           "batch": B, "height": H, "width": W, "lr": lr, "weight_decay": wd,
           "betas": [0.9, 0.999], "eps": eps, "steps": steps, "attention": attention}
    out["config.json"] = np.frombuffer(json.dumps(cfg).encode(), dtype=np.uint8)
    sd = model.state_dict()
    for k, v in sd.items():
        out["init." + k] = v.numpy().astype(np.int64 if v.dtype == torch.int64 else np.float32)
    # the test uses float32 copies of the inputs: compute the reference from those same values
    x = torch.from_numpy(x.numpy().astype(np.float32)).double()
    ex = torch.from_numpy(ex.numpy().astype(np.float32)).double()
    for k, v in sd.items():
        if v.dtype == torch.float64:
            v.copy_(torch.from_numpy(v.numpy().astype(np.float32)).double())
    out["input"] = x.numpy().astype(np.float32)
    out["target"] = t.numpy().astype(np.uint8)
    out["class_weights"] = cw.numpy().astype(np.float32)
    out["eval_input"] = ex.numpy().astype(np.float32)

    model.eval()
    with torch.no_grad():
        out["eval_logits"] = model(ex).numpy().astype(np.float32)

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=eps, weight_decay=wd)
    for step in range(1, steps + 1):
        opt.zero_grad()
        logits = model(x)
        loss = weighted_ce(logits, t, cw)
        loss.backward()
        if step == 1:
            out["logits"] = logits.detach().numpy().astype(np.float32)
            out["loss"] = np.array([loss.item()], dtype=np.float32)
            for n, p in model.named_parameters():
                out["grad." + n] = p.grad.numpy().astype(np.float32)
            for n, b in model.named_buffers():
                out["buf1." + n] = b.numpy().astype(np.int64 if b.dtype == torch.int64 else np.float32)
        opt.step()
        if step in (1, steps):
            for n, p in model.named_parameters():
                out["after%d.%s" % (step, n)] = p.detach().numpy().astype(np.float32)
    for n, b in model.named_buffers():
        out["buf%d.%s" % (steps, n)] = b.numpy().astype(np.int64 if b.dtype == torch.int64 else np.float32)
    path = os.path.join(OUT, name)
    np.savez(path, **out)
    print("wrote", path, os.path.getsize(path), "bytes,", len(out), "arrays")


def make_layers(name, seed):
    """Single-layer references for loss variants (values + gradients), float64 → float32."""
    g = torch.Generator().manual_seed(seed)
    K, B, H, W = 5, 2, 4, 6
    logits = torch.randn(B, K, H, W, generator=g, dtype=torch.float64) * 2
    t = torch.randint(0, K, (B, H, W), generator=g)
    cw = torch.tensor([0.0, 1.0, 1.3, 0.8, 2.5], dtype=torch.float64)
    logits = torch.from_numpy(logits.numpy().astype(np.float32)).double().requires_grad_(True)
    out = {"logits": logits.detach().numpy().astype(np.float32), "target": t.numpy().astype(np.uint8),
           "class_weights": cw.numpy().astype(np.float32)}
    loss = Fn.cross_entropy(logits, t, weight=cw)
    loss.backward()
    out["wce"] = np.array([loss.item()], np.float32)
    out["wce_grad"] = logits.grad.numpy().astype(np.float32)
    # focal loss, gamma 2, same weights and normalisation as the weighted CE
    logits.grad = None
    logp = Fn.log_softmax(logits, dim=1)
    logpt = logp.gather(1, t.unsqueeze(1)).squeeze(1)
    wt = cw[t]
    focal = (wt * -(1 - logpt.exp()) ** 2 * logpt).sum() / wt.sum()
    focal.backward()
    out["focal"] = np.array([focal.item()], np.float32)
    out["focal_grad"] = logits.grad.numpy().astype(np.float32)
    # soft dice over the batch, smoothing 1, class-weighted mean
    logits.grad = None
    p = Fn.softmax(logits, dim=1)
    onehot = Fn.one_hot(t, K).permute(0, 3, 1, 2).double()
    inter = (p * onehot).sum(dim=(0, 2, 3))
    dice = (2 * inter + 1) / (p.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3)) + 1)
    dl = 1 - (cw * dice).sum() / cw.sum()
    dl.backward()
    out["dice"] = np.array([dl.item()], np.float32)
    out["dice_grad"] = logits.grad.numpy().astype(np.float32)
    path = os.path.join(OUT, name)
    np.savez(path, **out)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    # `make_fixtures.py NAME...` writes only those fixtures (the others stay as committed)
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    want = set(sys.argv[1:])

    def make(name, *a, **k):
        if not want or name in want:
            make_one(name, *a, **k)

    make("unet_d3_f4.npz", depth=3, base=4, B=2, H=16, W=32, eval_hw=(128, 256), seed=1234)
    make("unet_d2_f4.npz", depth=2, base=4, B=3, H=8, W=12, eval_hw=(12, 20), seed=99)
    # every level on the direct AVX-512 convolution: 8+ channels, rows of 48 (3-vector blocks),
    # then 24 and 12 wide (vectors straddling rows, masks from the per-image table)
    make("unet_d2_f8.npz", depth=2, base=8, B=2, H=16, W=48, eval_hw=(32, 80), seed=4242)
    # the frozen model's Winograd convolutions: 32+ channels with enough tiles at eval size
    make("unet_d2_f16.npz", depth=2, base=16, B=1, H=8, W=16, eval_hw=(64, 128), seed=777)
    # training through Winograd: 32+ channels over 256 tiles at the top level (forward and dinp)
    # (one AdamW step: at this size three steps of lr 1e-2 amplify float32 rounding past the
    # 3-step bounds whatever the convolution path, im2col included)
    make("unet_d1_f32.npz", depth=1, base=32, B=2, H=16, W=32, eval_hw=(32, 64), seed=31, steps=1)
    # attention gates (model.attention) on both levels' skips, F_int = 2 and 4. The gate's conv
    # biases (wg, wx, psi) feed training-mode BatchNorms, so their gradient is exactly zero: float32
    # leaves ~1e-8 of rounding there, which AdamW with eps 1e-8 turns into steps of ~lr/2 in a
    # random direction (PyTorch in float32 too), and those biases then shift the BN running means.
    # eps 1e-5 keeps such steps at ~1e-5 while every real gradient (>= 1e-4) still dominates it.
    make("unet_d2_f4_att.npz", depth=2, base=4, B=3, H=8, W=12, eval_hw=(12, 20), seed=199, attention=True, eps=1e-5)
    if not want or "loss_ref.npz" in want:
        make_layers("loss_ref.npz", seed=7)
    sys.exit(0)
