"""NumPy inference path of the surrogate ensemble: adaptation and prediction in a few ms.

Meta-training runs on ``torch.func`` (see :mod:`tuner.prior._maml`); at tuning time the
sampler adapts the ensemble to a study on every ``ask()``, where torch's per-operation
overhead dominates for such small networks. This module implements the same MLP (SiLU
hidden layers, linear output) and the same first-order inner loop on plain NumPy arrays with
the member axis batched; ``tests/prior`` checks it against the torch implementation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch

from tuner.prior._maml import CONTEXT

__all__ = ["FastEnsemble"]

_DTYPE = np.float32  # as the torch weights; float64 would double the cost for nothing


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))``, in one new array.

    As torch computes it; float32 ``exp`` is faster than ``tanh``, and the values are those
    of ``0.5 * (1 + tanh(z / 2))`` within a float32 rounding.
    """
    s = np.negative(z)
    with np.errstate(over="ignore"):  # exp(88+) is inf: the sigmoid is 0 there, as it should
        np.exp(s, out=s)
    s += 1.0
    np.reciprocal(s, out=s)
    return s


def _step_sizes(log_lr: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """``exp(log_lr)`` shaped to broadcast against a stacked parameter of ``shape``."""
    lr = np.exp(log_lr.numpy()).astype(_DTYPE)
    if lr.shape == shape:  # one per element
        return lr
    return lr.reshape(lr.shape + (1,) * (len(shape) - lr.ndim))  # one per member


@dataclasses.dataclass
class FastEnsemble:
    """Stacked layers ``W (M, out, in)``, ``b (M, out)`` with their inner learning rates.

    Attributes:
        weights: Per layer, ``(M, out, in)``; the first layer's columns of the config only.
        biases: Per layer, ``(M, out)``; the first layer's with the context folded in.
        lr_w: Per layer, the inner learning rate of the weight: ``(M, 1, 1)`` (one per
            tensor) or ``(M, out, in)`` (one per element, Meta-SGD); empty with a context.
        lr_b: Per layer, that of the bias: ``(M, 1)`` or ``(M, out)``; empty with a context.
        ctx_w: CAVIA: the first layer's columns of the context ``(M, hidden, c)``, else None.
        lr_ctx: CAVIA: the context's step size, ``(M, 1)`` or ``(M, c)``.
        base_bias: CAVIA: the first layer's bias at context 0 (the adapted one is
            ``base_bias + ctx_w @ context``).
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    lr_w: list[np.ndarray]
    lr_b: list[np.ndarray]
    ctx_w: np.ndarray | None = None
    lr_ctx: np.ndarray | None = None
    base_bias: np.ndarray | None = None

    @classmethod
    def from_torch(
        cls,
        params: Mapping[str, torch.Tensor],
        log_lrs: Mapping[str, torch.Tensor],
        *,
        context: int = 0,
    ) -> FastEnsemble:
        """Convert the stacked ``net.<i>.weight`` / ``net.<i>.bias`` parameters.

        With ``context > 0`` (CAVIA) the last ``context`` input columns of the first layer
        are the context's, and ``log_lrs`` holds only the context's step size.
        """
        layer_ids = sorted({int(k.split(".")[1]) for k in params})
        w = [params[f"net.{i}.weight"].numpy().astype(_DTYPE) for i in layer_ids]
        b = [params[f"net.{i}.bias"].numpy().astype(_DTYPE) for i in layer_ids]
        if context:
            ctx_w = w[0][:, :, -context:].copy()
            w[0] = w[0][:, :, :-context].copy()
            lr_ctx = _step_sizes(log_lrs[CONTEXT], ctx_w.shape[::2])
            return cls(w, b, [], [], ctx_w, lr_ctx, b[0])
        pairs = list(zip(layer_ids, w, b, strict=True))
        lw = [_step_sizes(log_lrs[f"net.{i}.weight"], wi.shape) for i, wi, _ in pairs]
        lb = [_step_sizes(log_lrs[f"net.{i}.bias"], bi.shape) for i, _, bi in pairs]
        return cls(w, b, lw, lb)

    def forward(
        self, x: np.ndarray, *, keep: bool = True
    ) -> tuple[np.ndarray, list, list[np.ndarray]]:
        """Outputs ``(M, n)`` plus ``(pre-activation, sigmoid)`` pairs and activations.

        ``keep=False`` keeps neither (both lists empty) and computes the activations in
        place: the same values with fewer new arrays, which many candidates make costly.
        """
        a: np.ndarray = x  # (n, D) shared by all members at the input
        pre: list[tuple[np.ndarray, np.ndarray]] = []
        acts = [x]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if a.ndim == 2:  # shared input: one GEMM for all members
                m, h, d = w.shape
                z = (a @ w.reshape(m * h, d).T).reshape(len(a), m, h).transpose(1, 0, 2)
            else:
                z = a @ np.swapaxes(w, 1, 2)
            z += b[:, None, :]  # z is new: in place
            if i == last:
                return z[..., 0], pre, acts
            s = _sigmoid(z)
            if not keep:
                s *= z
                a = s
                continue
            pre.append((z, s))
            a = z * s
            acts.append(a)
        raise AssertionError("unreachable")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Every member's prediction ``(M, n)``."""
        return self.forward(np.asarray(x, dtype=_DTYPE), keep=False)[0].astype(np.float64)

    def adapt(self, x: np.ndarray, t: np.ndarray, steps: int) -> FastEnsemble:
        """``steps`` of gradient descent on the mean squared error (first-order MAML).

        With a context (CAVIA) only the context moves, from 0.
        """
        x = np.asarray(x, dtype=_DTYPE)
        t = np.asarray(t, dtype=_DTYPE)
        if len(x) == 0 or steps == 0:
            return self
        if self.ctx_w is not None:
            return self._adapt_context(x, t, steps)
        cur = self
        for _ in range(steps):
            gw, gb = cur._gradients(x, t)
            w = [v - lr * g for v, lr, g in zip(cur.weights, self.lr_w, gw, strict=True)]
            b = [v - lr * g for v, lr, g in zip(cur.biases, self.lr_b, gb, strict=True)]
            cur = FastEnsemble(w, b, self.lr_w, self.lr_b)
        return cur

    def _adapt_context(self, x: np.ndarray, t: np.ndarray, steps: int) -> FastEnsemble:
        """CAVIA: the context ``(M, c)`` by gradient descent, folded into the first bias."""
        assert self.ctx_w is not None and self.lr_ctx is not None
        context = np.zeros(self.ctx_w.shape[::2], dtype=_DTYPE)
        cur = self._at_context(context)
        for _ in range(steps):
            _, gb = cur._gradients(x, t)
            # d loss / d context = ctx_w^T (d loss / d first pre-activation, summed)
            context = context - self.lr_ctx * np.einsum("mh,mhc->mc", gb[0], self.ctx_w)
            cur = self._at_context(context)
        return cur

    def _at_context(self, context: np.ndarray) -> FastEnsemble:
        assert self.ctx_w is not None and self.base_bias is not None
        first = self.base_bias + np.einsum("mhc,mc->mh", self.ctx_w, context)
        biases = [first, *self.biases[1:]]
        return dataclasses.replace(self, biases=biases)

    def _gradients(
        self, x: np.ndarray, t: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per layer, the gradients of the mean squared error w.r.t. ``W`` and ``b``."""
        out, pre, acts = self.forward(x)
        delta = (2.0 * (out - t[None, :]) / len(x))[..., None]  # (M, n, 1): last pre-act.
        n_layers = len(self.weights)
        gws: list[np.ndarray] = [np.empty(0)] * n_layers
        gbs: list[np.ndarray] = [np.empty(0)] * n_layers
        for i in range(n_layers - 1, -1, -1):
            a_prev = acts[i]
            if a_prev.ndim == 2:
                m, _, o = delta.shape
                flat = delta.transpose(0, 2, 1).reshape(m * o, -1)
                gws[i] = (flat @ a_prev).reshape(m, o, -1)
            else:
                gws[i] = np.swapaxes(delta, 1, 2) @ a_prev
            gbs[i] = delta.sum(axis=1)
            if i > 0:
                z, s = pre[i - 1]
                delta = _backward(delta, self.weights[i], z, s)
        return gws, gbs


def _backward(delta: np.ndarray, w: np.ndarray, z: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The error at a SiLU layer's pre-activation ``z`` from the next layer's ``delta``.

    ``(delta @ w) * (s * (1 + z * (1 - s)))`` with ``s = sigmoid(z)``: the same operations,
    fewer new arrays; from a single output, ``delta @ w`` is a product (no sum), broadcast.
    """
    da = delta * w if delta.shape[-1] == 1 else delta @ w  # (M, n, in)
    g = np.subtract(1.0, s)
    g *= z
    g += 1.0
    g *= s
    g *= da
    return g
