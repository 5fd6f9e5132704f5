"""MAML on ``torch.func``: the surrogate network, inner-loop adaptation and the outer loss.

Shapes: an ensemble of ``M`` members, meta-batches of ``T`` tasks of ``N`` points in ``D``
dimensions. Parameters are stacked along a leading member axis (``stack_module_state``) and
the task loss is ``vmap``-ed over tasks (inner) and members (outer), as in the ``torch.func``
MAML example: ``functional_call`` for the network, ``grad`` for the inner loop, and ordinary
autograd through it for the (second-order) meta-gradient.

Target units
    The inner loop fits the support targets *relative to the support set*: with ``k >= 1``
    support points, ``t = z - mean(z_support)``; with ``k = 0`` (zero-shot), ``t = z``. Query
    targets get the same shift. ``z`` is already on a unit scale (a rank transform), so only
    the level is relative: dividing by the support's spread blows up when a few support
    points happen to be close. At prediction time the observed trials of a new study are
    rank-normalised among themselves and shifted the same way, so training and use agree.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from tuner.metadataset import relative_to_support
from tuner.prior._config import MAMLConfig

__all__ = [
    "CONTEXT",
    "Surrogate",
    "adapt",
    "adapt_context",
    "adapt_contexts",
    "adapt_members",
    "forward_members",
    "init_ensemble",
    "inner_lr_shape",
    "masked_mse",
    "predict",
    "surrogate_shapes",
]

Params = dict[str, torch.Tensor]
# the key of the CAVIA context's log step size among the inner log learning rates
CONTEXT = "context"


class Surrogate(nn.Module):
    """An MLP regressor ``[0, 1]^D -> R`` (SiLU: smooth, so second-order terms are alive)."""

    def __init__(self, dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        width = dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        mods.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def surrogate_shapes(dim: int, hidden: int, layers: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of ``Surrogate(dim, hidden, layers)``, without building it."""
    shapes: dict[str, tuple[int, ...]] = {}
    width = dim
    for i in range(layers):
        shapes[f"net.{2 * i}.weight"] = (hidden, width)
        shapes[f"net.{2 * i}.bias"] = (hidden,)
        width = hidden
    shapes[f"net.{2 * layers}.weight"] = (1, width)
    shapes[f"net.{2 * layers}.bias"] = (1,)
    return shapes


def inner_lr_shape(param_shape: Sequence[int], maml: MAMLConfig) -> tuple[int, ...]:
    """Shape of the inner log learning rates of a stacked parameter ``(M, ...)``.

    ``(M,)`` with ``inner_lr_shape="tensor"``, the parameter's own shape with ``"element"``
    (Meta-SGD); either broadcasts against one member's gradient in :func:`adapt`.
    """
    if maml.inner_lr_shape == "element":
        return tuple(param_shape)
    return (param_shape[0],)


def init_ensemble(
    dim: int, hidden: int, layers: int, members: int, generator: torch.Generator
) -> tuple[Surrogate, Params]:
    """A stateless base module (on ``meta``) and ``members`` stacked parameter sets."""
    nets = []
    for _ in range(members):
        net = Surrogate(dim, hidden, layers)
        with torch.no_grad():
            for p in net.parameters():
                if p.ndim == 2:
                    bound = (6.0 / (p.shape[0] + p.shape[1])) ** 0.5
                    p.copy_(torch.rand(p.shape, generator=generator) * 2 * bound - bound)
                else:
                    p.zero_()
        nets.append(net)
    params, _ = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    return base, {k: v.detach().clone() for k, v in params.items()}


def _forward(
    base: nn.Module,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    context: torch.Tensor | None = None,
):
    if context is not None:  # CAVIA: the same context vector beside every config
        x = torch.cat([x, context.expand(*x.shape[:-1], context.shape[-1])], dim=-1)
    return functional_call(base, dict(params), (x,))


def masked_mse(
    params: Params,
    base: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error over the points where ``mask`` is 1 (0 when the mask is empty)."""
    err = (_forward(base, params, x, context) - t) ** 2
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def _context_mse(context, params, base, x, t, mask) -> torch.Tensor:
    return masked_mse(params, base, x, t, mask, context)


def adapt_context(
    params: Params,
    log_lr: torch.Tensor,
    base: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor,
    steps: int,
    *,
    first_order: bool = False,
) -> torch.Tensor:
    """CAVIA's inner loop: the context vector fitted to the support points (one member/task).

    ``steps`` of gradient descent on the context alone, from 0; the weights stay as they
    are (they are learned by the outer loop through it). Returns the context ``(c,)``.
    """
    width = params["net.0.weight"].shape[-1] - x.shape[-1]
    context = torch.zeros(width, dtype=x.dtype, device=x.device)
    context_grad = grad(_context_mse)
    for _ in range(steps):
        g = context_grad(context, params, base, x, t, mask)
        if first_order:
            g = g.detach()
        context = context - torch.exp(log_lr) * g
    return context


def adapt(
    params: Params,
    log_lrs: Mapping[str, torch.Tensor],
    base: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor,
    steps: int,
    *,
    first_order: bool = False,
) -> Params:
    """``steps`` of gradient descent on the support points (one member, one task).

    ``log_lrs[k]`` is a scalar (one step size per tensor) or has the shape of
    ``params[k]`` (Meta-SGD: one per element). Differentiable w.r.t. ``params`` and
    ``log_lrs`` (second-order MAML) unless ``first_order``.
    """
    loss_grad = grad(masked_mse)
    for _ in range(steps):
        grads = loss_grad(params, base, x, t, mask)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        params = {k: p - torch.exp(log_lrs[k]) * grads[k] for k, p in params.items()}
    return params


def task_query_loss(
    params: Params,
    log_lrs: Mapping[str, torch.Tensor],
    base: nn.Module,
    x: torch.Tensor,
    z: torch.Tensor,
    support: torch.Tensor,
    query: torch.Tensor,
    steps: int,
    first_order: bool,
) -> torch.Tensor:
    """Adapt on the support points, return the MSE on the query points (one member/task)."""
    t = relative_to_support(z, support)
    if CONTEXT in log_lrs:
        ctx = adapt_context(
            params, log_lrs[CONTEXT], base, x, t, support, steps, first_order=first_order
        )
        return masked_mse(params, base, x, t, query, ctx)
    adapted = adapt(params, log_lrs, base, x, t, support, steps, first_order=first_order)
    return masked_mse(adapted, base, x, t, query)


def batched_query_loss(
    params: Params,
    log_lrs: Mapping[str, torch.Tensor],
    base: nn.Module,
    x: torch.Tensor,
    z: torch.Tensor,
    support: torch.Tensor,
    query: torch.Tensor,
    steps: int,
    first_order: bool,
) -> torch.Tensor:
    """Query losses ``(M, T)``: ``vmap`` over members (outer) and tasks (inner).

    ``params``/``log_lrs`` have a leading member axis; ``x`` is ``(M, T, N, D)`` and
    ``z``/``support``/``query`` are ``(M, T, N)``.
    """

    def per_task(p, lr, xx, zz, ss, qq):
        return task_query_loss(p, lr, base, xx, zz, ss, qq, steps, first_order)

    over_tasks = vmap(per_task, in_dims=(None, None, 0, 0, 0, 0))
    over_members = vmap(over_tasks, in_dims=(0, 0, 0, 0, 0, 0))
    return over_members(params, log_lrs, x, z, support, query)


def adapt_members(
    params: Params,
    log_lrs: Mapping[str, torch.Tensor],
    base: nn.Module,
    x_obs: torch.Tensor,
    t_obs: torch.Tensor,
    steps: int,
) -> Params:
    """Adapt every member (leading axis of ``params``) to the observations, first-order.

    ``t_obs`` are in support units (:func:`tuner.metadataset.relative_to_support`); with no
    observations or no steps the parameters come back unchanged (zero-shot).
    """
    if x_obs.shape[0] == 0 or steps == 0:
        return params
    mask = torch.ones(x_obs.shape[0], dtype=x_obs.dtype, device=x_obs.device)

    def one(p, lr):
        return adapt(p, lr, base, x_obs, t_obs, mask, steps, first_order=True)

    return vmap(one, in_dims=(0, 0))(params, log_lrs)


def adapt_contexts(
    params: Params,
    log_lr: torch.Tensor,
    base: nn.Module,
    x_obs: torch.Tensor,
    t_obs: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """Every member's CAVIA context ``(M, c)`` fitted to the observations, first-order."""
    members, width = params["net.0.weight"].shape[0], params["net.0.weight"].shape[-1]
    if x_obs.shape[0] == 0 or steps == 0:
        return torch.zeros(members, width - x_obs.shape[-1], dtype=x_obs.dtype)
    mask = torch.ones(x_obs.shape[0], dtype=x_obs.dtype, device=x_obs.device)

    def one(p, lr):
        return adapt_context(p, lr, base, x_obs, t_obs, mask, steps, first_order=True)

    return vmap(one, in_dims=(0, 0))(params, log_lr)


def forward_members(
    params: Params, base: nn.Module, x: torch.Tensor, contexts: torch.Tensor | None = None
) -> torch.Tensor:
    """Every member's prediction for ``x`` (with its CAVIA context, if any): ``(M, n)``."""
    if contexts is None:
        return vmap(lambda p: _forward(base, p, x))(params)
    return vmap(lambda p, c: _forward(base, p, x, c))(params, contexts)


def predict(
    params: Params,
    log_lrs: Mapping[str, torch.Tensor],
    base: nn.Module,
    x_obs: torch.Tensor,
    t_obs: torch.Tensor,
    x_new: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """Adapt every member to ``(x_obs, t_obs)`` and predict ``x_new``: returns ``(M, n_new)``.

    With a ``"context"`` entry in ``log_lrs`` (CAVIA) only the members' contexts adapt.
    """
    if CONTEXT in log_lrs:
        contexts = adapt_contexts(params, log_lrs[CONTEXT], base, x_obs, t_obs, steps)
        return forward_members(params, base, x_new, contexts)
    adapted = adapt_members(params, log_lrs, base, x_obs, t_obs, steps)
    return forward_members(adapted, base, x_new)
