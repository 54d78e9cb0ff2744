"""The phase detector and the multipliers of fine-tuning slow and fast against a naive re-computation.

The reference recomputes Eq. 1-3 from the whole loss history at every update with numpy
(O(w) per update), independently of the detector's running sums.
"""
import numpy as np
import pytest

from xlint.analysis import phase_detector as pd
from xlint.analysis import slow_fast_policy as sfp
from xlint.analysis.phase_detector import PhaseDetector, adaptive_multiplier


def naive(history, t, w, threshold, r):
    """(phase, phi, R) of update t from L[0:t] by the formulas, recomputed from scratch."""
    if t < 2 * w:
        return 1, 1.0, 0.0
    losses = np.asarray(history[:t], dtype=np.float64)
    old, new = losses[t - 2 * w:t - w].mean(), losses[t - w:t].mean()
    phase = 1 if old - new > threshold else 2
    phi = new / old if old > 0 else 1.0
    return phase, phi, max(1.0 - phi ** r, 0.0)


def naive_k(set_name, phase, big_r, c1=0.01, c2=10.0):
    """Eq. 2 for the paper's sets (S1 contains S2; V1 contains V2), by hand."""
    return {("S1", 1): c1, ("S1", 2): 1.0, ("S1+S2", 1): c1, ("S1+S2", 2): big_r, ("V1", 1): 1.0,
            ("V1", 2): 1.0, ("V1+V2", 1): 1.0, ("V1+V2", 2): c2, ("none", 1): 1.0, ("none", 2): 1.0}[(set_name, phase)]


#: the policies of the tags the fsf preset gives to a weight of each set
FSF_POLICIES = {"S1": {"I"}, "S1+S2": {"I", "II"}, "V1": {"III"}, "V1+V2": {"III", "IV"}, "none": set()}


def crossing_sequence(w: int, seed: int = 0) -> np.ndarray:
    """Losses that drop fast, level off, drop fast again, level off, rise, drop: both directions."""
    rng = np.random.default_rng(seed)
    pieces = [np.linspace(3.0, 1.0, 3 * w), np.full(4 * w, 1.0), np.linspace(1.0, 0.2, 2 * w),
              np.full(3 * w, 0.2), np.linspace(0.2, 0.9, 2 * w), np.linspace(0.9, 0.3, 2 * w), np.full(2 * w, 0.3)]
    losses = np.concatenate(pieces) + rng.uniform(0, 0.02, size=sum(len(p) for p in pieces))
    return np.maximum(losses, 0.0)


@pytest.mark.parametrize("w,threshold", [(100, 0.1), (7, 0.05), (1, 0.0)])
def test_detector_and_multipliers_match_the_formulas(w, threshold):
    losses = crossing_sequence(w)
    det = PhaseDetector(window=w, threshold=threshold, power=3)
    phases = []
    for t, loss in enumerate(losses):
        phase, phi, big_r = naive(losses, t, w, threshold, 3)
        assert det.phase == phase, t
        assert det.phi == pytest.approx(phi, rel=1e-9, abs=1e-12)
        assert det.multiplier == pytest.approx(big_r, rel=1e-9, abs=1e-9)
        for set_name, policies in FSF_POLICIES.items():
            k = sfp.multiplier(policies, det.phase, det.multiplier, 0.01, 10.0, policy_iv=True)
            assert k == pytest.approx(naive_k(set_name, phase, big_r)), (t, set_name)
        phases.append(phase)
        det.push(loss)
    changes = {(a, b) for a, b in zip(phases, phases[1:]) if a != b}
    assert changes == {(1, 2), (2, 1)}, "the sequence must cross the phases in both directions"


def test_warm_up_is_p1_until_2w_losses():
    det = PhaseDetector(window=3, threshold=0.1)
    for t in range(6):
        assert det.phase == pd.PHASE_FAST and not det.ready and det.drop == 0.0
        det.push(1.0)  # a flat loss: P2 as soon as the criterion is defined
    assert det.ready and det.phase == pd.PHASE_SLOW and det.phi == 1.0 and det.multiplier == 0.0


def test_eq3_values():
    assert adaptive_multiplier(0.5, 3) == pytest.approx(0.875)
    assert adaptive_multiplier(1.0, 3) == 0.0
    assert adaptive_multiplier(1.2, 3) == 0.0  # a rising loss gives no plasticity
    assert adaptive_multiplier(0.0, 3) == 1.0
    with pytest.raises(ValueError):
        adaptive_multiplier(-0.1)


def test_zero_old_window_gives_phi_one():
    det = PhaseDetector(window=1)
    det.push(0.0)
    det.push(0.0)
    assert det.phi == 1.0 and det.multiplier == 0.0 and det.phase == pd.PHASE_SLOW


@pytest.mark.parametrize("split", [0, 5, 13, 14, 40])
def test_state_dict_resume_equals_uninterrupted(split):
    losses = crossing_sequence(7, seed=3)
    whole = PhaseDetector(window=7, threshold=0.05)
    trace_whole = []
    for loss in losses:
        trace_whole.append((whole.phase, whole.phi, whole.multiplier))
        whole.push(loss)
    first = PhaseDetector(window=7, threshold=0.05)
    trace = []
    for loss in losses[:split]:
        trace.append((first.phase, first.phi, first.multiplier))
        first.push(loss)
    resumed = PhaseDetector(window=7, threshold=0.05)
    resumed.load_state_dict(first.state_dict())
    for loss in losses[split:]:
        trace.append((resumed.phase, resumed.phi, resumed.multiplier))
        resumed.push(loss)
    assert trace == trace_whole  # bit for bit
    assert resumed.state_dict() == whole.state_dict()


def test_bad_inputs():
    det = PhaseDetector(window=2)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            det.push(bad)
    with pytest.raises(ValueError):
        PhaseDetector(window=0)
    with pytest.raises(ValueError):
        PhaseDetector(window=3).load_state_dict(det.state_dict())


def test_phase_numbers_agree_between_modules():
    assert (sfp.PHASE_FAST, sfp.PHASE_SLOW) == (pd.PHASE_FAST, pd.PHASE_SLOW)


def test_policy_rules_and_presets():
    m = sfp.multiplier
    assert m({"I", "III"}, 1, 0.4) == 1.0  # III wins over I in P1
    assert m({"II", "IV"}, 2, 0.4) == 10.0  # c2 first in P2
    assert m({"II", "IV"}, 2, 0.4, policy_iv=False) == 0.4
    assert m({"IV"}, 2, 0.4, policy_iv=False) == 1.0
    assert m(set(), 1, 0.4) == 1.0 and m(set(), 2, 0.4) == 1.0
    with pytest.raises(ValueError):
        m({"V"}, 1, 0.4)
    with pytest.raises(ValueError):
        m({"I"}, 3, 0.4)
    assert sfp.policies_by_set(sfp.PRESETS["s2_to_s1"]) == {"S2": {"I"}, "S1": {"II"}, "V1": {"III"}, "V2": {"IV"}}
    assert sfp.policies_by_set(sfp.PRESETS["only_s2"])["S2"] == {"I", "II"}
    assert sfp.PRESETS["df"] == {} and set(sfp.PRESETS["fs"]) == {"I", "II"} and set(sfp.PRESETS["ff"]) == {"III", "IV"}


def naive_still_falls(probes, width, tol):
    k = len(probes)
    if k < 2:
        return True
    m = min(width, k // 2)
    return np.mean(probes[-m:]) < np.mean(probes[-2 * m:-m]) - tol


def test_policy_iv_switch_auto_latches_off_when_cka_stops_falling():
    probes = [0.95, 0.9, 0.86, 0.8, 0.79, 0.8, 0.81, 0.7]
    switch = sfp.PolicyIVSwitch("auto", width=2, tol=0.0)
    expected_on = True
    for k in range(len(probes)):
        expected_on = expected_on and naive_still_falls(probes[:k + 1], 2, 0.0)
        assert switch.observe(probes[k]) == expected_on
    assert not switch.active  # it stopped falling at some point and stays off after 0.7
    restored = sfp.PolicyIVSwitch("auto", width=2)
    restored.load_state_dict(switch.state_dict())
    assert not restored.active and restored.probes == probes
    assert sfp.PolicyIVSwitch("on").observe(1.0) and not sfp.PolicyIVSwitch("off").observe(0.0)
    falling = sfp.PolicyIVSwitch("auto", width=3)
    assert all(falling.observe(v) for v in np.linspace(0.9, 0.5, 12))
