"""Per-sample random transforms applied to whole batches on the run's device.

Each transform draws its parameters from the same distributions as the torchvision
transform the documents name (see `faithful()`), but from the run's own generator and for
a whole batch at once. `pixel` transforms run on [0, 1] images before Normalize (as
torchvision's PIL transforms do); `normalized` ones after it (RandomErasing, Cutout).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def _tv():
    """torchvision's transforms, imported on first use: only the faithful pipeline builds them, and importing
    torchvision costs about a second that `bench list` and `bench report` should not pay."""
    from torchvision import transforms
    return transforms


def _uniform(n, lo, hi, gen, device):
    return torch.empty(n, device=device).uniform_(lo, hi, generator=gen)


def inverse_affine_theta(angle, tx, ty, shear_x, shear_y, height, width):
    """Per-sample affine_grid theta equal to torchvision's F.affine on tensors.

    Follows torchvision's inverse matrix (rotation, then shear, about the image centre,
    translation in pixels), rescaled to the [-1, 1] grid of align_corners=False.
    """
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear_x), torch.deg2rad(shear_y)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m00, m01, m10, m11 = d, -b, -c, a
    m02 = m00 * -tx + m01 * -ty
    m12 = m10 * -tx + m11 * -ty
    sw, sh = width / 2, height / 2
    row0 = torch.stack([m00, m01 * sh / sw, m02 / sw], -1)
    row1 = torch.stack([m10 * sw / sh, m11, m12 / sh], -1)
    return torch.stack([row0, row1], 1)


@dataclass(frozen=True)
class RandomAffine:
    """torchvision.transforms.RandomAffine (nearest, fill 0): angle, integer shifts, x-shear."""
    degrees: float
    translate: Optional[tuple[float, float]] = None
    shear: Optional[float] = None
    stage = "pixel"

    def sample(self, n, gen, height, width, device="cpu"):
        angle = _uniform(n, -self.degrees, self.degrees, gen, device)
        zero = torch.zeros(n, device=device)
        tx = ty = zero
        if self.translate:
            tx = torch.round(_uniform(n, -self.translate[0] * width, self.translate[0] * width, gen, device))
            ty = torch.round(_uniform(n, -self.translate[1] * height, self.translate[1] * height, gen, device))
        shear_x = _uniform(n, -self.shear, self.shear, gen, device) if self.shear else zero
        return {"angle": angle, "tx": tx, "ty": ty, "shear_x": shear_x, "shear_y": zero}

    def apply(self, x, p):
        n, _, h, w = x.shape
        theta = inverse_affine_theta(p["angle"], p["tx"], p["ty"], p["shear_x"], p["shear_y"], h, w)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    def batched(self, x, gen):
        return self.apply(x, self.sample(len(x), gen, x.shape[2], x.shape[3], x.device))

    def faithful(self):
        return _tv().RandomAffine(self.degrees, translate=self.translate, shear=self.shear)


@dataclass(frozen=True)
class RandomRotation(RandomAffine):
    """torchvision.transforms.RandomRotation (nearest, fill 0): the rotation part of RandomAffine alone."""

    def faithful(self):
        return _tv().RandomRotation(self.degrees)


@dataclass(frozen=True)
class RandomCrop:
    """torchvision.transforms.RandomCrop(size, padding) with zero padding."""
    size: int
    padding: int
    stage = "pixel"

    def sample(self, n, gen, height, width, device="cpu"):
        top = torch.randint(0, height + 2 * self.padding - self.size + 1, (n,), generator=gen, device=device)
        left = torch.randint(0, width + 2 * self.padding - self.size + 1, (n,), generator=gen, device=device)
        return {"top": top, "left": left}

    def apply(self, x, p):
        pad = self.padding
        xp = F.pad(x, (pad, pad, pad, pad))
        ar = torch.arange(self.size, device=x.device)
        rows = (p["top"][:, None] + ar)[:, :, None]          # (N, size, 1)
        cols = (p["left"][:, None] + ar)[:, None, :]         # (N, 1, size)
        batch = torch.arange(len(x), device=x.device)[:, None, None]
        return xp[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()

    def batched(self, x, gen):
        return self.apply(x, self.sample(len(x), gen, x.shape[2], x.shape[3], x.device))

    def faithful(self):
        return _tv().RandomCrop(self.size, padding=self.padding)


@dataclass(frozen=True)
class RandomHorizontalFlip:
    p: float = 0.5
    stage = "pixel"

    def sample(self, n, gen, height, width, device="cpu"):
        return {"flip": torch.rand(n, generator=gen, device=device) < self.p}

    def apply(self, x, p):
        return torch.where(p["flip"][:, None, None, None], x.flip(-1), x)

    def batched(self, x, gen):
        return self.apply(x, self.sample(len(x), gen, x.shape[2], x.shape[3], x.device))

    def faithful(self):
        return _tv().RandomHorizontalFlip(self.p)


def _box_mask(top, left, h, w, height, width):
    """(N, 1, H, W) boolean mask of one rectangle per sample."""
    rows = torch.arange(height, device=top.device)[None, :]
    cols = torch.arange(width, device=top.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


@dataclass(frozen=True)
class RandomErasing:
    """torchvision.transforms.RandomErasing: up to 10 tries for a box of random area/ratio."""
    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float = 0.0
    stage = "normalized"
    attempts = 10

    def sample(self, n, gen, height, width, device="cpu"):
        apply = torch.rand(n, generator=gen, device=device) < self.p
        k = self.attempts
        area = height * width * torch.empty(n, k, device=device).uniform_(*self.scale, generator=gen)
        log_r = torch.empty(n, k, device=device).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]),
                                                          generator=gen)
        ratio = torch.exp(log_r)
        h = torch.round(torch.sqrt(area * ratio)).long()
        w = torch.round(torch.sqrt(area / ratio)).long()
        ok = (h < height) & (w < width)
        first = torch.argmax(ok.int(), dim=1)               # first attempt that fits
        found = ok.any(dim=1)
        h = h.gather(1, first[:, None])[:, 0]
        w = w.gather(1, first[:, None])[:, 0]
        u = torch.rand(n, 2, generator=gen, device=device)
        top = torch.floor(u[:, 0] * (height - h + 1)).long()
        left = torch.floor(u[:, 1] * (width - w + 1)).long()
        return {"erase": apply & found, "top": top, "left": left, "h": h, "w": w}

    def apply(self, x, p):
        mask = _box_mask(p["top"], p["left"], p["h"], p["w"], x.shape[2], x.shape[3])
        mask = mask & p["erase"][:, None, None, None]
        return x.masked_fill(mask, self.value)

    def batched(self, x, gen):
        return self.apply(x, self.sample(len(x), gen, x.shape[2], x.shape[3], x.device))

    def faithful(self):
        return _tv().RandomErasing(p=self.p, scale=self.scale, ratio=self.ratio, value=self.value)


@dataclass(frozen=True)
class Cutout:
    """One size x size square of zeros centred on a uniform pixel, clipped at the border."""
    size: int = 3
    stage = "normalized"

    def sample(self, n, gen, height, width, device="cpu"):
        cy = torch.randint(0, height, (n,), generator=gen, device=device)
        cx = torch.randint(0, width, (n,), generator=gen, device=device)
        return {"cy": cy, "cx": cx}

    def apply(self, x, p):
        half = self.size // 2
        top, left = p["cy"] - half, p["cx"] - half
        size = torch.full_like(top, self.size)
        mask = _box_mask(top, left, size, size, x.shape[2], x.shape[3])
        return x.masked_fill(mask, 0.0)

    def batched(self, x, gen):
        return self.apply(x, self.sample(len(x), gen, x.shape[2], x.shape[3], x.device))

    def faithful(self):
        return _CutoutImage(self)


class _CutoutImage:
    """Per-image Cutout on a tensor, drawing from torch's global RNG like torchvision does."""

    def __init__(self, spec: Cutout):
        self.spec = spec

    def __call__(self, img):
        p = self.spec.sample(1, None, img.shape[-2], img.shape[-1])
        return self.spec.apply(img[None], p)[0]

    def __repr__(self):
        return f"Cutout(size={self.spec.size})"


# ---------------------------------------------------------------- pipelines

def _stats(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)[None, :, None, None]


def _unit(x_uint8: torch.Tensor) -> torch.Tensor:
    """Pixels on [0, 1] in torch's default float dtype (float32; float64 in the numerics probe)."""
    return x_uint8.to(torch.get_default_dtype()).div(255)


def normalize(x_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """ToTensor + Normalize, on a batch: the evaluation input of every pipeline."""
    x = _unit(x_uint8)
    return x.sub(_stats(mean, x)).div(_stats(std, x))


def augment_batch(x_uint8: torch.Tensor, transforms, mean, std, gen) -> torch.Tensor:
    """The fast pipeline: pixel transforms, Normalize, normalized-space transforms."""
    x = _unit(x_uint8)
    for t in transforms:
        if t.stage == "pixel":
            x = t.batched(x, gen)
    x = x.sub(_stats(mean, x)).div(_stats(std, x))
    for t in transforms:
        if t.stage == "normalized":
            x = t.batched(x, gen)
    return x


def torchvision_pipeline(transforms, mean, std):
    """The faithful pipeline, per PIL image, as the documents wrote it (a torchvision Compose)."""
    tv = _tv()
    return tv.Compose([t.faithful() for t in transforms if t.stage == "pixel"]
                      + [tv.ToTensor(), tv.Normalize(mean, std)]
                      + [t.faithful() for t in transforms if t.stage == "normalized"])
