"""The training phase of "fine-tuning slow and fast" (Guo et al. 2023, Sec. 4.1, Eq. 3).

With ``L_0, L_1, ...`` the per-update training losses and the window ``w`` (100), update ``t``
(0-based: ``t`` losses are known before it) is in phase P1, "the loss drops fast", iff

    mean(L[t-2w : t-w]) - mean(L[t-w : t]) > threshold            (threshold = 0.1)

and in P2 otherwise.  The slices are Python's: the loss of update ``t`` itself is not known when
its learning rate is chosen.  The tendency of the learning curve and the adaptive multiplier are

    phi = mean(L[t-w : t]) / mean(L[t-2w : t-w]),        R = max(1 - phi^r, 0)     (r = 3)

Decisions:

* **warm-up**: before ``2w`` losses exist (``t < 2w``) the update is in P1; the paper's Fig. 2
  puts the first fine-tuning updates in the fast-dropping phase, and its criterion is undefined
  there.  ``phi`` and ``R`` are reported as 1 and 0 in that case (they are only used in P2).
* ``phi`` is the ratio of means (the paper divides the two window *sums*, the same ratio).  If the
  older window's mean is 0 (the loss was already 0), ``phi = 1`` and ``R = 0``.
* the losses are cross-entropies: finite and non-negative; anything else is refused.

Which loss (:mod:`xlint.user_dir.optim.slow_fast`): the per-update mean training loss in nats,
``sum(loss) / sum(sample_size)`` over all micro-batches and data-parallel workers of the update,
which is what the paper's threshold of 0.1 is calibrated on.

Cost: O(1) per update, a ring buffer of the last ``2w`` losses and the running sums of its two
halves (float64).  :meth:`PhaseDetector.state_dict` holds everything (buffer and running sums as
they are), so a resumed run continues bit for bit.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List

#: the paper's window ``w``, threshold and exponent ``r``
DEFAULT_WINDOW = 100
DEFAULT_THRESHOLD = 0.1
DEFAULT_POWER = 3.0

PHASE_FAST = 1
PHASE_SLOW = 2


def adaptive_multiplier(phi: float, power: float = DEFAULT_POWER) -> float:
    """``R = max(1 - phi^r, 0)`` (Eq. 3); ``phi`` must be non-negative."""
    if phi < 0 or not math.isfinite(phi):
        raise ValueError(f"phi must be finite and non-negative, got {phi}")
    return max(1.0 - phi ** power, 0.0)


class PhaseDetector:
    """Phase (P1/P2), ``phi`` and ``R`` of the next update from the losses pushed so far."""

    def __init__(self, window: int = DEFAULT_WINDOW, threshold: float = DEFAULT_THRESHOLD,
                 power: float = DEFAULT_POWER):
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if not power > 0:
            raise ValueError(f"power r must be positive, got {power}")
        self.window = int(window)
        self.threshold = float(threshold)
        self.power = float(power)
        self._buffer: List[float] = [0.0] * (2 * self.window)  # ring buffer of the last 2w losses
        self._count = 0  # losses pushed in all
        self._old_sum = 0.0  # sum of L[t-2w : t-w]
        self._new_sum = 0.0  # sum of L[t-w : t]

    # ------------------------------------------------------------------ updates

    def push(self, loss: float) -> None:
        """Record the loss of the update just made (O(1))."""
        loss = float(loss)
        if not (math.isfinite(loss) and loss >= 0):
            raise ValueError(f"the phase detector takes finite non-negative losses, got {loss}")
        w, size = self.window, 2 * self.window
        slot = self._count % size
        if self._count >= w:  # the loss leaving the new window enters the old one
            moved = self._buffer[(self._count - w) % size]
            self._new_sum -= moved
            self._old_sum += moved
        if self._count >= size:  # the loss leaving the old window is overwritten below
            self._old_sum -= self._buffer[slot]
        self._buffer[slot] = loss
        self._new_sum += loss
        self._count += 1

    # ------------------------------------------------------------------ queries

    @property
    def num_losses(self) -> int:
        return self._count

    @property
    def ready(self) -> bool:
        """Whether ``2w`` losses exist (before that, every update is in P1)."""
        return self._count >= 2 * self.window

    @property
    def drop(self) -> float:
        """``mean(L[t-2w:t-w]) - mean(L[t-w:t])`` (0 before ``2w`` losses)."""
        if not self.ready:
            return 0.0
        return (self._old_sum - self._new_sum) / self.window

    @property
    def phase(self) -> int:
        """:data:`PHASE_FAST` (P1) or :data:`PHASE_SLOW` (P2) for the next update."""
        if not self.ready:
            return PHASE_FAST
        return PHASE_FAST if self.drop > self.threshold else PHASE_SLOW

    @property
    def phi(self) -> float:
        """``mean(L[t-w:t]) / mean(L[t-2w:t-w])``; 1 before ``2w`` losses or if the old mean is 0."""
        if not self.ready or self._old_sum <= 0:
            return 1.0
        return max(self._new_sum, 0.0) / self._old_sum  # max: rounding of the running sum near 0

    @property
    def multiplier(self) -> float:
        """``R = max(1 - phi^r, 0)``."""
        return adaptive_multiplier(self.phi, self.power)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> Dict[str, Any]:
        return {"window": self.window, "threshold": self.threshold, "power": self.power,
                "buffer": list(self._buffer), "count": self._count,
                "old_sum": self._old_sum, "new_sum": self._new_sum}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the window must be this detector's (threshold and r may change)."""
        if int(state["window"]) != self.window:
            raise ValueError(f"the saved phase detector has window {state['window']}, this one {self.window}")
        buffer = [float(x) for x in state["buffer"]]
        if len(buffer) != 2 * self.window:
            raise ValueError("corrupt phase detector state: buffer size differs from 2 * window")
        self._buffer = buffer
        self._count = int(state["count"])
        self._old_sum = float(state["old_sum"])
        self._new_sum = float(state["new_sum"])
