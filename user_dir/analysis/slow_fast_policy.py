"""The learning-rate multipliers of "fine-tuning slow and fast" (Guo et al. 2023, Eq. 1-2).

The rate of a weight at update ``t`` is ``r_t * K`` with ``r_t`` the scheduled rate and

    K = c1                 if t in P1 and the weight is in Policy I's set      (S^I,  c1 = 0.01)
    K = R(phi(L_t))        if t in P2 and the weight is in Policy II's set     (S^II, Eq. 3)
    K = c2                 if t in P2 and the weight is in Policy IV's set     (V^II, c2 = 10)
    K = 1                  otherwise

Policy III ("do not slow down V^I in P1") is K = 1 on its set; it matters where its set
overlaps Policy I's: there K = 1 (III wins in P1).  Where Policies II and IV share a weight in
P2, Eq. 2 lists c2 first: K = c2.  The multipliers act on learning rates, not on gradients
(under Adam a gradient scale cancels out).

**Presets** (:data:`PRESETS`, which set each policy acts on): ``fsf`` (the method), ``fs`` (fine-tuning
slow only: I, II), ``ff`` (fine-tuning fast only: III, IV), ``df`` (no multiplier) and Table 8's
ablations: ``only_s1`` / ``only_s2`` (Policies I and II both on S^I / S^II), ``s2_to_s1`` (I on
S^II, II on S^I), ``only_v1`` / ``only_v2`` (III and IV both on V^I / V^II), ``v2_to_v1`` (III on
V^II, IV on V^I).  Note: since Policy III is K = 1, Eq. 1-2 make ``only_v2`` the same multipliers
as ``fsf`` and ``v2_to_v1`` the same as ``only_v1`` (with the paper's disjoint S and V sets); the
paper reports different numbers for them (Table 8) without saying what else differed.

**Policy IV and CKA** (:class:`PolicyIVSwitch`).  The paper applies Policy IV "if the
representation similarity of the last two layers is still dropping in P2" (Sec. 3.2), and not on
NER.  Modes: ``on``, ``off``, ``auto``.  In ``auto`` a probe every N updates gives ``c_k``, the
mean over the top two layers of linear CKA between the current and the pretrained model's
representations of the current batch.  Rule: with ``m`` (default 3) the comparison width,
the similarity **still falls** after probe ``k`` iff

    k < 2,  or  mean(c[k-m'+1 .. k]) < mean(c[k-2m'+1 .. k-m']) - tol,    m' = min(m, floor(k/2))

(``tol`` default 0).  Policy IV is on until the first probe at which it does not fall, and off
from then on (latched: the paper describes one trend per run, and a latch keeps noisy per-batch
probes from switching it back and forth).
"""
from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterable, List, Mapping


#: the phases, numbered as :mod:`.phase_detector` numbers them (P1, P2); not imported from there
#: because the analysis modules import nothing of each other
PHASE_FAST = 1
PHASE_SLOW = 2

POLICIES = ("I", "II", "III", "IV")
DEFAULT_C1 = 0.01
DEFAULT_C2 = 10.0

#: preset -> {policy: set name}; a policy that a preset does not name is not applied
PRESETS: Dict[str, Dict[str, str]] = {
    "fsf": {"I": "S1", "II": "S2", "III": "V1", "IV": "V2"},
    "fs": {"I": "S1", "II": "S2"},
    "ff": {"III": "V1", "IV": "V2"},
    "df": {},
    "only_s1": {"I": "S1", "II": "S1", "III": "V1", "IV": "V2"},
    "only_s2": {"I": "S2", "II": "S2", "III": "V1", "IV": "V2"},
    "s2_to_s1": {"I": "S2", "II": "S1", "III": "V1", "IV": "V2"},
    "only_v1": {"I": "S1", "II": "S2", "III": "V1", "IV": "V1"},
    "only_v2": {"I": "S1", "II": "S2", "III": "V2", "IV": "V2"},
    "v2_to_v1": {"I": "S1", "II": "S2", "III": "V2", "IV": "V1"},
}

POLICY_IV_MODES = ("auto", "on", "off")


def multiplier(policies: Iterable[str], phase: int, adaptive: float, c1: float = DEFAULT_C1,
               c2: float = DEFAULT_C2, policy_iv: bool = True) -> float:
    """``K`` of a weight under the ``policies`` whose sets contain it (Eq. 2, with the rules above).

    ``adaptive`` is ``R(phi(L_t))``; ``policy_iv`` whether Policy IV is on at this update.
    """
    active = set(policies)
    unknown = active - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; they are {', '.join(POLICIES)}")
    if phase == PHASE_FAST:
        if "III" in active:
            return 1.0
        return c1 if "I" in active else 1.0
    if phase == PHASE_SLOW:
        if "IV" in active and policy_iv:
            return c2
        return adaptive if "II" in active else 1.0
    raise ValueError(f"phase must be {PHASE_FAST} or {PHASE_SLOW}, got {phase}")


def policies_by_set(preset: Mapping[str, str]) -> Dict[str, FrozenSet[str]]:
    """``{set name: policies acting on it}`` of a preset's ``{policy: set}`` mapping."""
    out: Dict[str, set] = {}
    for policy, name in preset.items():
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}")
        out.setdefault(name, set()).add(policy)
    return {name: frozenset(p) for name, p in out.items()}


class PolicyIVSwitch:
    """Whether Policy IV is on: ``on``, ``off``, or ``auto`` from the CKA probes (rule above)."""

    def __init__(self, mode: str = "auto", width: int = 3, tol: float = 0.0):
        if mode not in POLICY_IV_MODES:
            raise ValueError(f"policy IV mode must be one of {', '.join(POLICY_IV_MODES)}, got {mode!r}")
        if width < 1:
            raise ValueError(f"the comparison width must be at least 1, got {width}")
        self.mode = mode
        self.width = int(width)
        self.tol = float(tol)
        self.probes: List[float] = []
        self._stopped = False

    @property
    def active(self) -> bool:
        if self.mode == "auto":
            return not self._stopped
        return self.mode == "on"

    @staticmethod
    def still_falls(probes: List[float], width: int, tol: float = 0.0) -> bool:
        """The rule of the module docstring on the probes ``c_1 .. c_k``."""
        k = len(probes)
        if k < 2:
            return True
        m = min(width, k // 2)
        recent = sum(probes[k - m:]) / m
        before = sum(probes[k - 2 * m:k - m]) / m
        return recent < before - tol

    def observe(self, value: float) -> bool:
        """Record one probe ``c_k``; return whether Policy IV is on afterwards."""
        value = float(value)
        if value != value:
            raise ValueError("a CKA probe is NaN")
        self.probes.append(value)
        if self.mode == "auto" and not self._stopped and not self.still_falls(self.probes, self.width, self.tol):
            self._stopped = True
        return self.active

    def state_dict(self) -> Dict[str, Any]:
        return {"mode": self.mode, "probes": list(self.probes), "stopped": self._stopped}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.probes = [float(x) for x in state["probes"]]
        self._stopped = bool(state["stopped"])
