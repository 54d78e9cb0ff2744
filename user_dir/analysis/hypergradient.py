"""The meta-gradient of Wang et al. (2020), Algorithm 1 / Eq. 3 and Appendix B.

For shared parameters theta, the language-specific parameters phi_i of the batch's
language i, a mean training loss L_train^i and meta-dev losses L_val^j:

    theta'     = theta - beta * grad_theta L_train^i(theta, phi_i)                (virtual step)
    V          = (1/L) sum_j L_val^j(theta', phi_j)                                (meta loss)
    grad_phi V = dV/dphi_i |theta'  -  beta * H_{phi_i,theta} L_train^i(theta, phi_i) . v,
                 v = grad_theta' V                                                 (Eq. 3)

The mixed second-order term H . v is computed in one of four ways (``mode``):

``hvp``
    the exact mixed product H . v = grad_phi (grad_theta L_train^i(theta, phi_i) . v),
    by double backward at theta through the graph the virtual step's backward already
    built (``create_graph``): no extra forward pass, no epsilon, and theta' is a new
    tensor, so no weight is perturbed in place.
``finite-difference`` (the paper's Eq. 8, as in DARTS; the default of ``meta_mlm``)
    H . v ~= [grad_phi L_train(theta + eps v) - grad_phi L_train(theta - eps v)] / (2 eps),
    eps = epsilon_scale / ||v|| (``fd_scheme="central"``); or the one-sided
    H . v ~= [grad_phi L_train(theta + eps v) - grad_phi L_train(theta)] / eps
    (``fd_scheme="forward"``), whose second term comes free with the virtual step's
    backward pass: one network pass fewer, first-order instead of second-order accurate.
``exact``
    double backpropagation through the whole virtual step (memory: the bilevel graph).
``first-order``
    the term is dropped (an ablation).

Every evaluation of L_train^i must see the same stochastic function (dropout masks):
the caller's closures are responsible for that (``meta_mlm`` re-seeds the generator
before each one); a difference of gradients under different masks is mask noise.

For ``finite-difference`` and ``first-order``, theta is modified in place for the
virtual and finite-difference steps and always restored bit-exactly from a copy;
gradients are taken with ``torch.autograd.grad``, so the ``.grad`` fields (e.g.
gradients accumulated over ``--update-freq``) are never touched.  How much of each
in-place perturbation survived rounding is reported (the fraction of theta's elements
that changed): in half precision a virtual step or an eps-step can round back to theta
exactly.
"""
import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import torch

SECOND_ORDER_MODES = ("hvp", "finite-difference", "exact", "first-order")
FD_SCHEMES = ("central", "forward")
#: modes that differentiate twice (the fused attention kernels have no double backward)
DOUBLE_BACKWARD_MODES = ("hvp", "exact")

#: a loss closure; with a mapping it evaluates the model with those parameters substituted
LossFn = Callable[[Optional[Mapping[str, torch.Tensor]]], torch.Tensor]


@dataclass
class MetaGradient:
    """grad_phi V (aligned with the phi parameters) and its parts, for logging."""

    grads: List[torch.Tensor]
    meta_loss: torch.Tensor
    direct_norm: torch.Tensor
    second_order_norm: torch.Tensor
    seconds: Dict[str, float] = field(default_factory=dict)
    #: fraction of theta's elements changed by the virtual step (1.0: nothing rounded away)
    virtual_step_changed: Optional[torch.Tensor] = None
    #: fraction of theta's elements changed by the +eps v step (finite differences only)
    fd_step_changed: Optional[torch.Tensor] = None


def _norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((t.detach().float() ** 2).sum() for t in tensors))


def _grads(output: torch.Tensor, inputs: Sequence[torch.Tensor], **kwargs) -> List[torch.Tensor]:
    grads = torch.autograd.grad(output, list(inputs), allow_unused=True, **kwargs)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(inputs, grads)]


def _changed_fraction(after: Sequence[torch.Tensor], before: Sequence[torch.Tensor]) -> torch.Tensor:
    changed = sum((a.detach() != b).sum().double() for a, b in zip(after, before))
    return changed / max(sum(a.numel() for a in after), 1)


@contextlib.contextmanager
def requiring_grad(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """Temporarily make ``params`` require gradients (phi is frozen for fairseq's optimizer)."""
    previous = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(params, previous):
            p.requires_grad_(flag)


@contextlib.contextmanager
def perturbed(params: Sequence[torch.Tensor], backup: Sequence[torch.Tensor]) -> Iterator[None]:
    """Let the body modify ``params`` in place; restore them bit-exactly from ``backup`` after."""
    try:
        yield
    finally:
        with torch.no_grad():
            for p, saved in zip(params, backup):
                p.copy_(saved)


def double_backward_attention(enabled: bool):
    """The math SDPA kernel where a mode differentiates twice (fused kernels cannot)."""
    if not enabled:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


class _Clock:
    """Wall time per phase; synchronises CUDA first so that a lap measures finished work."""

    def __init__(self, device: torch.device) -> None:
        self.seconds: Dict[str, float] = {}
        self._cuda = device.type == "cuda"
        self._start = self._now()

    def _now(self) -> float:
        if self._cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, phase: str) -> None:
        now = self._now()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._start
        self._start = now


def compute_meta_gradient(
    theta: Mapping[str, torch.nn.Parameter],
    phi: Mapping[str, torch.nn.Parameter],
    train_loss: LossFn,
    meta_losses: Sequence[LossFn],
    beta: float,
    mode: str = "finite-difference",
    epsilon_scale: float = 0.01,
    fd_scheme: str = "central",
) -> MetaGradient:
    """grad_phi V for one meta step; see the module docstring.

    ``train_loss`` is the mean L_train^i; ``meta_losses`` are the terms of V, already
    weighted (each L_val^j / L), each evaluated through its own language's modules.
    """
    if mode not in SECOND_ORDER_MODES:
        raise ValueError(f"unknown second-order mode {mode!r}; choose from {SECOND_ORDER_MODES}")
    if fd_scheme not in FD_SCHEMES:
        raise ValueError(f"unknown finite-difference scheme {fd_scheme!r}; choose from {FD_SCHEMES}")
    phi_params = list(phi.values())
    with requiring_grad(phi_params):
        if mode == "exact":
            return _exact_meta_gradient(theta, phi_params, train_loss, meta_losses, beta)
        if mode == "hvp":
            return _hvp_meta_gradient(theta, phi_params, train_loss, meta_losses, beta)
        return _stepwise_meta_gradient(theta, phi_params, train_loss, meta_losses, beta, mode, epsilon_scale,
                                       fd_scheme)


def _stepwise_meta_gradient(theta, phi_params, train_loss, meta_losses, beta, mode, epsilon_scale, fd_scheme):
    """finite-difference and first-order: an in-place virtual step, then the H . v term."""
    theta_params = list(theta.values())
    clock = _Clock(theta_params[0].device)
    backup = [p.detach().clone() for p in theta_params]

    one_sided = mode == "finite-difference" and fd_scheme == "forward"
    grads_at_theta = _grads(train_loss(None), theta_params + (phi_params if one_sided else []))
    grad_theta, grad_phi_at_theta = grads_at_theta[: len(theta_params)], grads_at_theta[len(theta_params):]
    del grads_at_theta
    with perturbed(theta_params, backup):
        with torch.no_grad():
            for p, g in zip(theta_params, grad_theta):
                p.sub_(g, alpha=beta)  # theta' = theta - beta * grad
        virtual_changed = _changed_fraction(theta_params, backup)
        del grad_theta
        clock.lap("virtual_step")
        meta_loss, v, direct = _meta_loss_and_grads(meta_losses, None, theta_params, phi_params)
    clock.lap("meta_loss")

    second_order = [torch.zeros_like(p) for p in phi_params]
    fd_changed = None
    v_norm = _norm(v)
    if mode == "finite-difference" and float(v_norm) > 0:
        epsilon = epsilon_scale / float(v_norm)
        plus, fd_changed = _train_grad_at(theta_params, backup, v, +epsilon, phi_params, train_loss)
        if one_sided:
            minus, step = grad_phi_at_theta, epsilon
        else:
            minus, step = _train_grad_at(theta_params, backup, v, -epsilon, phi_params, train_loss)[0], 2 * epsilon
        for out, gp, gm in zip(second_order, plus, minus):
            out.copy_((gp - gm) / step).mul_(-beta)  # -beta * H . v
    clock.lap("second_order")
    grads = [d + s for d, s in zip(direct, second_order)]
    return MetaGradient(grads, meta_loss, _norm(direct), _norm(second_order), clock.seconds,
                        virtual_step_changed=virtual_changed, fd_step_changed=fd_changed)


def _meta_loss_and_grads(meta_losses, substitute, theta_params, phi_params):
    """V = sum of the terms (each evaluated with ``substitute``), v = grad_theta V and dV/dphi, term by term."""
    v = [torch.zeros_like(p) for p in theta_params]
    direct = [torch.zeros_like(p) for p in phi_params]
    meta_loss = torch.zeros((), device=theta_params[0].device)
    for term in meta_losses:  # one term's graph at a time
        value = term(substitute)
        for acc, g in zip(v + direct, _grads(value, theta_params + phi_params)):
            acc.add_(g)
        meta_loss += value.detach().float()
    return meta_loss, v, direct


def _train_grad_at(theta_params, backup, direction, scale, phi_params, train_loss):
    """(grad_phi L_train at theta + scale * direction, fraction of theta changed); theta restored."""
    with perturbed(theta_params, backup):
        with torch.no_grad():
            for p, d in zip(theta_params, direction):
                p.add_(d, alpha=scale)
        changed = _changed_fraction(theta_params, backup)
        return _grads(train_loss(None), phi_params), changed


def _hvp_meta_gradient(theta, phi_params, train_loss, meta_losses, beta):
    """The virtual step's own graph gives H . v: grad_phi (grad_theta L_train . v) by double backward.

    theta' is a new tensor (theta is never modified), so the graph of grad_theta L_train
    at theta stays valid while the meta-dev passes run at theta'.
    """
    names = list(theta.keys())
    theta_params = list(theta.values())
    clock = _Clock(theta_params[0].device)
    with double_backward_attention(True):
        grad_theta = torch.autograd.grad(train_loss(None), theta_params, create_graph=True, allow_unused=True)
    with torch.no_grad():
        prime_values = [(p - beta * g if g is not None else p.detach().clone()).requires_grad_(True)
                        for p, g in zip(theta_params, grad_theta)]
    virtual_changed = _changed_fraction(prime_values, theta_params)
    theta_prime = dict(zip(names, prime_values))
    clock.lap("virtual_step")
    meta_loss, v, direct = _meta_loss_and_grads(meta_losses, theta_prime, prime_values, phi_params)
    del theta_prime, prime_values
    clock.lap("meta_loss")
    dot = sum((g * d).sum() for g, d in zip(grad_theta, v) if g is not None)
    second_order = [torch.zeros_like(p) for p in phi_params]
    if torch.is_tensor(dot) and dot.requires_grad:
        for out, g in zip(second_order, _grads(dot, phi_params)):
            out.copy_(g).mul_(-beta)  # -beta * H . v
    del grad_theta, dot
    clock.lap("second_order")
    grads = [d + s for d, s in zip(direct, second_order)]
    return MetaGradient(grads, meta_loss, _norm(direct), _norm(second_order), clock.seconds,
                        virtual_step_changed=virtual_changed)


def _exact_meta_gradient(theta, phi_params, train_loss, meta_losses, beta):
    names = list(theta.keys())
    theta_params = list(theta.values())
    clock = _Clock(theta_params[0].device)
    with double_backward_attention(True):
        grad_theta = _grads(train_loss(None), theta_params, create_graph=True)
        theta_prime = {name: p - beta * g for name, p, g in zip(names, theta_params, grad_theta)}
        virtual_changed = _changed_fraction(list(theta_prime.values()), theta_params)
        clock.lap("virtual_step")
        meta_loss = sum(term(theta_prime) for term in meta_losses)
        prime_values = list(theta_prime.values())
        outputs = _grads(meta_loss, prime_values + phi_params, retain_graph=True)
        v, total = outputs[: len(prime_values)], outputs[len(prime_values):]
        clock.lap("meta_loss")
        # the part of the total that flows through theta': -beta * H . v
        through_theta = torch.autograd.grad(prime_values, phi_params, grad_outputs=v, allow_unused=True)
    second_order = [torch.zeros_like(p) if g is None else g for p, g in zip(phi_params, through_theta)]
    direct = [t - s for t, s in zip(total, second_order)]
    clock.lap("second_order")
    return MetaGradient([t.detach() for t in total], meta_loss.detach().float(),
                        _norm(direct), _norm(second_order), clock.seconds,
                        virtual_step_changed=virtual_changed)
