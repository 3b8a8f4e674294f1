"""bench.training.augment must equal torchvision's transforms: same op for fixed parameters, same parameter laws."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from scipy import stats
from torchvision.transforms import InterpolationMode

from bench.training.augment import (
    Cutout,
    RandomAffine,
    RandomCrop,
    RandomErasing,
    RandomHorizontalFlip,
    augment_batch,
    inverse_affine_theta,
    torchvision_pipeline,
)

N = 20_000          # parameter draws per distribution test
ALPHA = 1e-3        # a correct law passes at p > ALPHA; the seeds are fixed, so the outcome is too
MNIST = ((0.1307,), (0.3081,))
CIFAR = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(channels, size, n=4, seed=0):
    return torch.randint(0, 256, (n, channels, size, size), generator=gen(seed), dtype=torch.uint8).float() / 255


def params(**kw):
    return {k: torch.as_tensor(v) for k, v in kw.items()}


SHAPES = [(1, 28), (3, 32)]

# ---------------------------------------------------------------- fixed parameters: the same op as torchvision

AFFINE = [(0.0, 0, 0, 0.0), (10.0, 3, -2, 0.0), (-7.5, -1, 2, 5.0), (30.0, 2, 3, -15.0)]  # angle, tx, ty, shear


@pytest.mark.parametrize("channels,size", SHAPES)
def test_affine_matches_torchvision(channels, size):
    """Nearest (what the class uses) and bilinear (which shows sub-pixel errors in the matrix)."""
    x = images(channels, size)
    angle, tx, ty, shear = (torch.tensor(c, dtype=torch.float32) for c in zip(*AFFINE))
    nearest = RandomAffine(10).apply(x, params(angle=angle, tx=tx, ty=ty, shear_x=shear, shear_y=torch.zeros(4)))
    grid = F.affine_grid(inverse_affine_theta(angle, tx, ty, shear, torch.zeros(4), size, size), list(x.shape),
                         align_corners=False)
    bilinear = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    for i, (a, dx, dy, s) in enumerate(AFFINE):
        kw = dict(angle=a, translate=[dx, dy], scale=1.0, shear=[s, 0.0])
        ref = TF.affine(x[i], interpolation=InterpolationMode.NEAREST, fill=0.0, **kw)
        assert (nearest[i] != ref).float().mean() < 0.005, kw      # nearest: a rounding tie may go either way
        ref = TF.affine(x[i], interpolation=InterpolationMode.BILINEAR, **kw)
        torch.testing.assert_close(bilinear[i], ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("channels,size", SHAPES)
def test_crop_with_padding_matches_torchvision_exactly(channels, size):
    x, pad = images(channels, size), 4
    p = params(top=[0, 8, 3, 5], left=[0, 8, 7, 1])
    out = RandomCrop(size, pad).apply(x, p)
    for i in range(4):
        ref = TF.crop(TF.pad(x[i], [pad], fill=0), int(p["top"][i]), int(p["left"][i]), size, size)
        assert torch.equal(out[i], ref)


@pytest.mark.parametrize("channels,size", SHAPES)
def test_flip_matches_torchvision_exactly(channels, size):
    x = images(channels, size)
    out = RandomHorizontalFlip().apply(x, params(flip=[True, False, True, False]))
    for i, flipped in enumerate([True, False, True, False]):
        assert torch.equal(out[i], TF.hflip(x[i]) if flipped else x[i])


@pytest.mark.parametrize("channels,size", SHAPES)
def test_erasing_region_matches_torchvision_exactly(channels, size):
    x = images(channels, size)
    p = params(erase=[True, True, False, True], top=[0, 5, 3, 20], left=[0, 9, 3, 2], h=[3, 10, 4, 7], w=[27, 2, 4, 6])
    out = RandomErasing(value=0.0).apply(x, p)
    for i in range(4):
        i0, j0, h, w = (int(p[k][i]) for k in ("top", "left", "h", "w"))
        ref = TF.erase(x[i], i0, j0, h, w, torch.tensor(0.0)) if p["erase"][i] else x[i]
        assert torch.equal(out[i], ref)


@pytest.mark.parametrize("channels,size", SHAPES)
def test_cutout_zeroes_the_centred_square_clipped_at_the_border(channels, size):
    x = images(channels, size)
    cy, cx = [0, 10, size - 1, 5], [4, 0, size - 1, 17]
    out = Cutout(3).apply(x, params(cy=cy, cx=cx))
    for i in range(4):
        ref = x[i].clone()
        ref[:, max(cy[i] - 1, 0):cy[i] + 2, max(cx[i] - 1, 0):cx[i] + 2] = 0
        assert torch.equal(out[i], ref)

# ---------------------------------------------------------------- parameter distributions: the same laws


def uniform_p(samples, lo, hi):
    return stats.kstest(np.asarray(samples), stats.uniform(lo, hi - lo).cdf).pvalue


def shift_law(m, rule="round"):
    """Law of an integer rule applied to U(-m, m): torchvision's is round, so P(k) = |[k-.5, k+.5] ∩ [-m, m]| / 2m."""
    ks = np.arange(-int(np.ceil(m)) - 1, int(np.ceil(m)) + 2)
    if rule == "round":
        lo, hi = ks - 0.5, ks + 0.5
    else:  # int(): truncation toward zero, a plausible slip
        lo, hi = np.where(ks > 0, ks, ks - 1.0), np.where(ks < 0, ks, ks + 1.0)
    return ks, (np.minimum(hi, m) - np.maximum(lo, -m)).clip(0) / (2 * m)


def discrete_p(samples, values, probs):
    """Chi-square goodness of fit; a sample off the support (probability 0) is an outright failure."""
    samples, keep = np.asarray(samples), probs > 0
    if not np.isin(samples, values[keep]).all():
        return 0.0
    observed = np.array([(samples == v).sum() for v in values[keep]])
    return stats.chisquare(observed, probs[keep] / probs[keep].sum() * len(samples)).pvalue


def test_affine_angle_and_shear_are_uniform_and_the_test_rejects_a_wrong_range():
    p = RandomAffine(10, translate=(0.1, 0.1), shear=5).sample(N, gen(), 28, 28)
    assert uniform_p(p["angle"], -10, 10) > ALPHA
    assert uniform_p(p["shear_x"], -5, 5) > ALPHA
    assert torch.equal(p["shear_y"], torch.zeros(N))
    assert uniform_p(p["angle"], -5, 5) < 1e-9           # halved degrees would be caught
    assert uniform_p(p["angle"] * 0.95, -10, 10) < ALPHA  # so would 5% too narrow
    p = RandomAffine(3).sample(1000, gen(), 28, 28)       # no translate, no shear: none drawn
    assert not (p["tx"].any() or p["ty"].any() or p["shear_x"].any())


@pytest.mark.parametrize("translate,height,width", [((0.1, 0.1), 28, 28), ((0.05, 0.05), 28, 28),
                                                    ((0.1, 0.05), 20, 40)])
def test_affine_shifts_follow_torchvisions_rounded_uniform(translate, height, width):
    """max_dx = translate[0] * width, max_dy = translate[1] * height (non-square catches a swap)."""
    p = RandomAffine(10, translate=translate).sample(N, gen(), height, width)
    for shifts, m in ((p["tx"], translate[0] * width), (p["ty"], translate[1] * height)):
        assert discrete_p(shifts.numpy(), *shift_law(m)) > ALPHA
        assert discrete_p(shifts.numpy() + 1, *shift_law(m)) < 1e-9        # off by one is caught
        assert discrete_p(shifts.numpy(), *shift_law(m, "trunc")) < 1e-9   # so is int() instead of round()


@pytest.mark.parametrize("size,pad,height", [(28, 2, 28), (32, 4, 32), (24, 3, 28)])
def test_crop_offsets_are_uniform_over_the_allowed_integers(size, pad, height):
    p = RandomCrop(size, pad).sample(N, gen(1), height, height)   # (seed 0 happens to give one p = .0014)
    values = np.arange(height + 2 * pad - size + 1)
    flat = np.full(len(values), 1 / len(values))
    for offsets in (p["top"].numpy(), p["left"].numpy()):
        assert discrete_p(offsets, values, flat) > ALPHA
        assert discrete_p(offsets, values[:-1], flat[:-1]) == 0.0   # the last offset is reachable


@pytest.mark.parametrize("prob", [0.5, 0.2])
def test_flip_probability(prob):
    flips = int(RandomHorizontalFlip(prob).sample(N, gen(), 28, 28)["flip"].sum())
    assert stats.binomtest(flips, N, prob).pvalue > ALPHA
    assert stats.binomtest(flips, N, prob - 0.02).pvalue < ALPHA


def test_cutout_centres_are_uniform_pixels():
    p = Cutout(3).sample(N, gen(), 32, 32)
    values, flat = np.arange(32), np.full(32, 1 / 32)
    assert discrete_p(p["cy"].numpy(), values, flat) > ALPHA and discrete_p(p["cx"].numpy(), values, flat) > ALPHA


def contingency_p(a, b, min_count=20):
    """Two-sample chi-square on discrete values, rare values pooled into one bin."""
    values, counts = np.unique(np.concatenate([a, b]), return_counts=True)
    common = values[counts >= min_count]
    table = [[(x == v).sum() for v in common] + [(~np.isin(x, common)).sum()] for x in (a, b)]
    table = np.array(table)[:, np.array(table).sum(0) > 0]
    return stats.chi2_contingency(table).pvalue


def torchvision_box_sizes(scale, ratio, height, width, n):
    img = torch.zeros(3, height, width)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return np.array([T.RandomErasing.get_params(img, scale=scale, ratio=ratio, value=[0.0])[2:4]
                         for _ in range(n)]).T


@pytest.mark.parametrize("scale,ratio", [((0.02, 0.33), (0.3, 3.3)), ((0.7, 0.99), (0.3, 3.3))])
def test_erasing_box_sizes_match_torchvisions_get_params(scale, ratio):
    """Same box sizes, and (second case: ~28% of draws) the same rate of 'no box in 10 tries', where h = H."""
    height, width, n = 32, 32, 10_000
    p = RandomErasing(p=1.0, scale=scale, ratio=ratio).sample(n, gen(), height, width)
    ours_h, ours_w = np.where(p["erase"], p["h"], height), np.where(p["erase"], p["w"], width)
    ref_h, ref_w = torchvision_box_sizes(scale, ratio, height, width, n)
    assert contingency_p(ours_h, ref_h) > ALPHA and contingency_p(ours_w, ref_w) > ALPHA
    assert contingency_p(ours_h * ours_w, ref_h * ref_w) > ALPHA
    wrong_h, wrong_w = torchvision_box_sizes((scale[0], scale[1] * 0.9), ratio, height, width, n)
    assert contingency_p(ours_h * ours_w, wrong_h * wrong_w) < ALPHA     # 10% smaller boxes are caught


def test_erasing_probability_and_positions():
    height = width = 32
    p = RandomErasing(p=0.5).sample(N, gen(), height, width)
    assert stats.binomtest(int(p["erase"].sum()), N, 0.5).pvalue > ALPHA   # a box always fits at these sizes
    # positions uniform over 0..H-h: the randomised probability integral transform must be U(0, 1)
    jitter = np.random.default_rng(0).random((2, N))
    for pos, side, size, u in ((p["top"], p["h"], height, jitter[0]), (p["left"], p["w"], width, jitter[1])):
        assert ((pos >= 0) & (pos + side <= size)).all()
        assert uniform_p((pos.numpy() + u) / (size - side.numpy() + 1), 0, 1) > ALPHA

# ---------------------------------------------------------------- determinism


def test_same_seed_same_batch_different_seed_different_and_global_rng_untouched():
    x = (images(3, 32, n=16) * 255).to(torch.uint8)
    transforms = [RandomCrop(32, 4), RandomHorizontalFlip(), RandomErasing(), Cutout(3),
                  RandomAffine(10, (0.1, 0.1), 5)]
    state = torch.get_rng_state()
    a = augment_batch(x, transforms, *CIFAR, gen(7))
    assert torch.equal(torch.get_rng_state(), state)   # all draws come from the run's generator
    assert torch.equal(a, augment_batch(x, transforms, *CIFAR, gen(7)))
    assert not torch.equal(a, augment_batch(x, transforms, *CIFAR, gen(8)))

# ---------------------------------------------------------------- fast and faithful pipelines agree


def template(channels, size):
    x = torch.full((channels, size, size), 20, dtype=torch.uint8)
    x[:, 6:14, 8:24], x[:, 16:26, 4:10] = 230, 140
    return x


def pipeline_z(fast_transforms, faithful_transforms, x, mean, std, n=1000):
    """Largest per-pixel z-score between the mean images of n augmented copies from each pipeline."""
    fast = augment_batch(x[None].expand(n, -1, -1, -1), fast_transforms, mean, std, gen())
    pil = Image.fromarray(x[0].numpy(), mode="L") if len(x) == 1 else Image.fromarray(x.permute(1, 2, 0).numpy())
    pipe = torchvision_pipeline(faithful_transforms, mean, std)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        slow = torch.stack([pipe(pil) for _ in range(n)])
    se = (fast.var(0) / n + slow.var(0) / n + 1e-12).sqrt()
    return float(((fast.mean(0) - slow.mean(0)).abs() / se).max())


@pytest.mark.parametrize("transforms,channels,size,stats_", [
    ([RandomAffine(10, (0.1, 0.1))], 1, 28, MNIST),                                     # mnist_99_4
    ([RandomCrop(32, 4), RandomHorizontalFlip(0.5), RandomErasing(0.5)], 3, 32, CIFAR),  # vgg_cifar10
    ([RandomCrop(32, 4), RandomHorizontalFlip(0.5), Cutout(3)], 3, 32, CIFAR),           # resnet_cifar10
    ([RandomAffine(3, (0.05, 0.05), 5)], 1, 28, ((0.5,), (0.5,))),                       # ultimate_mlp
    ([RandomCrop(28, 2), RandomHorizontalFlip(0.5)], 1, 28, MNIST),                      # vgg_mnist
])
def test_fast_and_faithful_pipelines_agree_on_mean_images(transforms, channels, size, stats_):
    assert pipeline_z(transforms, transforms, template(channels, size), *stats_) < 6


def test_pipeline_comparison_can_fail():
    x = template(1, 28)
    assert pipeline_z([RandomAffine(10, (0.05, 0.1))], [RandomAffine(10, (0.1, 0.1))], x, *MNIST) > 6
    cifar = [RandomCrop(32, 4), RandomHorizontalFlip(0.5)]
    assert pipeline_z([RandomCrop(32, 4), RandomHorizontalFlip(0.3)], cifar, template(3, 32), *CIFAR) > 6


@pytest.mark.parametrize("channels,size", SHAPES)
def test_rotation_matches_torchvision_rotate(channels, size):
    """RandomRotation's fast op is RandomAffine's rotation; torchvision's rotate agrees up to rounding ties.
    rotate(a) turns counter-clockwise and affine(a) clockwise, so angle a here is rotate(-a): the same
    law, since the angle is drawn uniformly from a symmetric range."""
    from bench.training.augment import RandomRotation
    x = images(channels, size)
    angles = torch.tensor([0.0, 10.0, -7.5, 3.0])
    zero = torch.zeros(4)
    out = RandomRotation(10).apply(x, params(angle=angles, tx=zero, ty=zero, shear_x=zero, shear_y=zero))
    for i, a in enumerate(angles.tolist()):
        ref = TF.rotate(x[i], -a, interpolation=InterpolationMode.NEAREST, fill=0.0)
        assert (out[i] != ref).float().mean() < 0.005, a
    assert isinstance(RandomRotation(10).faithful(), T.RandomRotation)
