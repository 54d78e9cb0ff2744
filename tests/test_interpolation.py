"""Unit tests of the interpolation formulas (Wu et al. 2022, Eq. 1-3, App. B) and the seed statistics,
each against an independent computation (numpy in float64, scipy by hand)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from xlint.analysis.confidence import normalised, t_interval
from xlint.analysis.interpolation import (
    PAPER_EXTRA,
    combinable,
    combine,
    combine_into,
    delta_geometry,
    distance,
    in_scope,
    paper_grid_1d,
    paper_grid_2d,
    unique_float_names,
    weights_1d,
    weights_2d,
)


def tiny_state(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "encoder.w": torch.randn(4, 3, generator=g),
        "encoder.b": torch.randn(3, generator=g),
        "encoder.steps": torch.tensor([7, 8], dtype=torch.long),
        "heads.tagging.out_proj.weight": torch.randn(2, 3, generator=g),
        "heads.tagging.out_proj.bias": torch.randn(2, generator=g),
    }


def as_numpy(state: dict) -> dict:
    return {k: v.numpy().astype(np.float64) for k, v in state.items()}


def test_paper_grid():
    grid = paper_grid_1d()
    assert len(grid) == 21 + 12 == 33
    assert grid[0] == -0.5 and grid[-1] == 1.5 and 0.3 in grid and 1.0 in grid and 0.0 in grid
    assert set(PAPER_EXTRA) < set(grid) and grid == sorted(grid)
    assert len(paper_grid_2d()) == 21 * 21 and (0.0, 0.0) in paper_grid_2d()


def test_endpoints_are_exact_and_the_line_matches_numpy():
    a, b = tiny_state(1), tiny_state(2)
    b["encoder.steps"] = a["encoder.steps"].clone()
    assert combinable([a, b]) is None
    for name in ("encoder.w", "heads.tagging.out_proj.bias"):
        assert torch.equal(combine([a, b], weights_1d(0.0))[name], a[name])
        assert torch.equal(combine([a, b], weights_1d(1.0))[name], b[name])
    na, nb = as_numpy(a), as_numpy(b)
    for alpha in (-0.5, 0.025, 0.3, 0.975, 1.5):
        mixed = combine([a, b], weights_1d(alpha))
        for name in ("encoder.w", "encoder.b", "heads.tagging.out_proj.weight"):
            expected = alpha * nb[name] + (1 - alpha) * na[name]
            np.testing.assert_allclose(mixed[name].numpy(), expected, rtol=0, atol=1e-6)
        assert torch.equal(mixed["encoder.steps"], a["encoder.steps"])  # non-float: copied


def test_interpolation_is_linear_in_alpha():
    a, b = tiny_state(3), tiny_state(4)
    b["encoder.steps"] = a["encoder.steps"].clone()
    points = {alpha: combine([a, b], weights_1d(alpha))["encoder.w"].double() for alpha in (-0.5, 0.0, 0.4, 1.0, 1.5)}
    slope = points[1.0] - points[0.0]
    for alpha, value in points.items():
        torch.testing.assert_close(value, points[0.0] + alpha * slope, rtol=0, atol=1e-6)
    mid = combine([a, b], weights_1d(0.5))["encoder.w"].double()
    torch.testing.assert_close(mid, (a["encoder.w"].double() + b["encoder.w"].double()) / 2, rtol=0, atol=1e-6)


def test_the_plane_passes_through_the_three_models():
    bi, src, tgt = tiny_state(5), tiny_state(6), tiny_state(7)
    src["encoder.steps"] = bi["encoder.steps"].clone()
    tgt["encoder.steps"] = bi["encoder.steps"].clone()
    anchors = [bi, src, tgt]
    for (a1, a2), expected in (((0.0, 0.0), bi), ((1.0, 0.0), src), ((0.0, 1.0), tgt)):
        mixed = combine(anchors, weights_2d(a1, a2))
        assert all(torch.equal(mixed[k], expected[k]) for k in expected), (a1, a2)
    nb, ns, nt = as_numpy(bi), as_numpy(src), as_numpy(tgt)
    for a1, a2 in ((-0.5, 1.5), (0.3, 0.6), (1.2, -0.4)):
        mixed = combine(anchors, weights_2d(a1, a2))
        for name in ("encoder.w", "heads.tagging.out_proj.weight"):
            expected = nb[name] + a1 * (ns[name] - nb[name]) + a2 * (nt[name] - nb[name])
            np.testing.assert_allclose(mixed[name].numpy(), expected, rtol=0, atol=1e-5)


def test_scopes_choose_encoder_or_head():
    assert in_scope("encoder.w", "encoder") and not in_scope("heads.x", "encoder")
    assert in_scope("heads.x", "head") and not in_scope("encoder.w", "head")
    assert in_scope("heads.x", "all") and in_scope("encoder.w", "all")
    with pytest.raises(ValueError):
        in_scope("x", "decoder")
    a, b = tiny_state(8), tiny_state(9)
    encoder_only = combine([a, b], weights_1d(0.5), scope="encoder")
    assert torch.equal(encoder_only["heads.tagging.out_proj.weight"], a["heads.tagging.out_proj.weight"])
    assert not torch.equal(encoder_only["encoder.w"], a["encoder.w"])
    head_only = combine([a, b], weights_1d(0.5), scope="head")
    assert torch.equal(head_only["encoder.w"], a["encoder.w"])
    assert not torch.equal(head_only["heads.tagging.out_proj.bias"], a["heads.tagging.out_proj.bias"])


def test_combine_into_writes_a_model_in_place_and_leaves_anchors_and_buffers_alone():
    model = torch.nn.Linear(3, 4)
    model.register_buffer("counter", torch.tensor([5], dtype=torch.long))
    anchors = []
    for seed in (1, 2, 3):
        g = torch.Generator().manual_seed(seed)
        anchors.append({"weight": torch.randn(4, 3, generator=g), "bias": torch.randn(4, generator=g),
                        "counter": torch.tensor([5], dtype=torch.long)})
    before = [{k: v.clone() for k, v in anchor.items()} for anchor in anchors]
    targets = model.state_dict(keep_vars=True)
    storage = {k: v.data_ptr() for k, v in targets.items()}
    for a1, a2 in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.7, -0.2)):
        weights = weights_2d(a1, a2)
        assert combine_into(targets, anchors, weights) == 3
        expected = combine(anchors, weights)
        for name in ("weight", "bias"):
            if (a1, a2) in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)):
                assert torch.equal(targets[name], expected[name])
            else:
                torch.testing.assert_close(targets[name].detach(), expected[name], rtol=0, atol=1e-6)
        assert model.counter.item() == 5
    assert {k: v.data_ptr() for k, v in model.state_dict(keep_vars=True).items()} == storage  # in place
    for anchor, saved in zip(anchors, before):
        assert all(torch.equal(anchor[k], saved[k]) for k in saved)


def test_tied_weights_are_written_and_counted_once():
    shared = torch.randn(5, 2)
    state = {"encoder.embed_tokens.weight": shared, "encoder.lm_head.weight": shared, "encoder.b": torch.randn(2)}
    assert unique_float_names(state) == ["encoder.embed_tokens.weight", "encoder.b"]


def test_mismatches_name_the_first_tensor():
    a = tiny_state(1)
    b = tiny_state(2)
    b["encoder.steps"] = a["encoder.steps"].clone()
    assert combinable([a, b]) is None
    c = dict(b)
    c["encoder.b"] = torch.randn(4)
    assert combinable([a, c]) == "tensor encoder.b has shape [3] in model 1 and [4] in model 2"
    d = dict(b)
    del d["encoder.w"]
    assert combinable([a, d]) == "tensor encoder.w is missing from model 2"
    e = dict(b, extra=torch.zeros(1))
    assert combinable([a, e]) == "tensor extra of model 2 is missing from model 1"
    f = dict(b, **{"encoder.steps": torch.tensor([7, 9])})
    assert combinable([a, f]) == "non-float tensor encoder.steps differs between model 1 and model 2"
    g = dict(b, **{"encoder.b": b["encoder.b"].long()})
    assert "torch.float32 in model 1 and torch.int64 in model 2" in combinable([a, g])


def test_norm_ratio_and_angle_against_numpy():
    bi, src, tgt = tiny_state(11), tiny_state(12), tiny_state(13)
    names = ["encoder.w", "encoder.b", "heads.tagging.out_proj.weight", "heads.tagging.out_proj.bias"]
    geometry = delta_geometry(bi, src, tgt, names)
    d_src = np.concatenate([(as_numpy(src)[k] - as_numpy(bi)[k]).ravel() for k in names])
    d_tgt = np.concatenate([(as_numpy(tgt)[k] - as_numpy(bi)[k]).ravel() for k in names])
    assert geometry.norm_src == pytest.approx(np.linalg.norm(d_src), rel=1e-12)
    assert geometry.ratio == pytest.approx(np.linalg.norm(d_src) / np.linalg.norm(d_tgt), rel=1e-12)
    cosine = d_src @ d_tgt / (np.linalg.norm(d_src) * np.linalg.norm(d_tgt))
    assert geometry.angle_degrees == pytest.approx(np.degrees(np.arccos(cosine)), rel=1e-10)
    assert distance(bi, src, names) == pytest.approx(np.linalg.norm(d_src), rel=1e-12)
    # default names: float tensors only (the long buffer is left out)
    assert delta_geometry(bi, src, tgt).angle_degrees == pytest.approx(geometry.angle_degrees, rel=1e-12)
    # orthogonal and parallel directions
    zero = {"x": torch.zeros(2, dtype=torch.float64)}
    right = delta_geometry(zero, {"x": torch.tensor([1.0, 0.0])}, {"x": torch.tensor([0.0, 2.0])})
    assert right.angle_degrees == pytest.approx(90.0) and right.ratio == pytest.approx(0.5)
    same = delta_geometry(zero, {"x": torch.tensor([1.0, 1.0])}, {"x": torch.tensor([3.0, 3.0])})
    assert same.angle_degrees == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(delta_geometry(zero, zero, {"x": torch.tensor([1.0, 0.0])}).angle_degrees)


def test_t_interval_against_a_hand_computation():
    values = [0.91, 0.97, 0.88]
    interval = t_interval(values)
    mean = sum(values) / 3
    variance = sum((v - mean) ** 2 for v in values) / 2
    half = stats.t.ppf(0.975, df=2) * math.sqrt(variance) / math.sqrt(3)
    assert half == pytest.approx(4.302652729911275 * math.sqrt(variance / 3))  # t_{0.975, 2}
    assert interval.mean == pytest.approx(mean) and interval.variance == pytest.approx(variance)
    assert interval.low == pytest.approx(mean - half) and interval.high == pytest.approx(mean + half)
    assert interval.half_width == pytest.approx(half) and interval.n == 3
    single = t_interval([0.5])
    assert single.mean == 0.5 and math.isnan(single.variance) and math.isnan(single.low)
    with pytest.raises(ValueError):
        t_interval([])
    assert normalised(45.0, 90.0) == 0.5 and math.isnan(normalised(1.0, 0.0))


def test_geometry_in_slices_equals_the_whole(monkeypatch):
    from xlint.analysis import interpolation

    bi, src, tgt = tiny_state(21), tiny_state(22), tiny_state(23)
    whole = delta_geometry(bi, src, tgt)
    monkeypatch.setattr(interpolation, "CHUNK_ELEMENTS", 5)  # every 12-element tensor in three slices
    sliced = delta_geometry(bi, src, tgt)
    assert sliced.norm_src == pytest.approx(whole.norm_src, rel=1e-12)
    assert sliced.angle_degrees == pytest.approx(whole.angle_degrees, rel=1e-12)
    assert distance(bi, src) == pytest.approx(whole.norm_src, rel=1e-12)
