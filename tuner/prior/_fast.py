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

__all__ = ["FastEnsemble"]

_DTYPE = np.float32  # as the torch weights; float64 would double the cost for nothing


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


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
        weights: Per layer, ``(M, out, in)``.
        biases: Per layer, ``(M, out)``.
        lr_w: Per layer, the inner learning rate of the weight: ``(M, 1, 1)`` (one per
            tensor) or ``(M, out, in)`` (one per element, Meta-SGD).
        lr_b: Per layer, that of the bias: ``(M, 1)`` or ``(M, out)``.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    lr_w: list[np.ndarray]
    lr_b: list[np.ndarray]

    @classmethod
    def from_torch(
        cls, params: Mapping[str, torch.Tensor], log_lrs: Mapping[str, torch.Tensor]
    ) -> FastEnsemble:
        """Convert the stacked ``net.<i>.weight`` / ``net.<i>.bias`` parameters."""
        layer_ids = sorted({int(k.split(".")[1]) for k in params})
        w, b, lw, lb = [], [], [], []
        for i in layer_ids:
            w.append(params[f"net.{i}.weight"].numpy().astype(_DTYPE))
            b.append(params[f"net.{i}.bias"].numpy().astype(_DTYPE))
            lw.append(_step_sizes(log_lrs[f"net.{i}.weight"], w[-1].shape))
            lb.append(_step_sizes(log_lrs[f"net.{i}.bias"], b[-1].shape))
        return cls(w, b, lw, lb)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list, list[np.ndarray]]:
        """Outputs ``(M, n)`` plus ``(pre-activation, sigmoid)`` pairs and activations."""
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
            z = z + b[:, None, :]
            if i == last:
                return z[..., 0], pre, acts
            s = _sigmoid(z)
            pre.append((z, s))
            a = z * s
            acts.append(a)
        raise AssertionError("unreachable")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Every member's prediction ``(M, n)``."""
        return self.forward(np.asarray(x, dtype=_DTYPE))[0].astype(np.float64)

    def adapt(self, x: np.ndarray, t: np.ndarray, steps: int) -> FastEnsemble:
        """``steps`` of gradient descent on the mean squared error (first-order MAML)."""
        x = np.asarray(x, dtype=_DTYPE)
        t = np.asarray(t, dtype=_DTYPE)
        if len(x) == 0 or steps == 0:
            return self
        w = [v.copy() for v in self.weights]
        b = [v.copy() for v in self.biases]
        cur = FastEnsemble(w, b, self.lr_w, self.lr_b)
        n = len(x)
        for _ in range(steps):
            out, pre, acts = cur.forward(x)
            grad = 2.0 * (out - t[None, :]) / n  # (M, n)
            delta = grad[..., None]  # (M, n, 1) gradient w.r.t. the last pre-activation
            for i in range(len(w) - 1, -1, -1):
                a_prev = acts[i]
                if a_prev.ndim == 2:
                    m, _, o = delta.shape
                    flat = delta.transpose(0, 2, 1).reshape(m * o, -1)
                    gw = (flat @ a_prev).reshape(m, o, -1)
                else:
                    gw = np.swapaxes(delta, 1, 2) @ a_prev
                gb = delta.sum(axis=1)
                if i > 0:
                    da = delta @ w[i]  # (M, n, in)
                    z, s = pre[i - 1]
                    delta = da * (s * (1.0 + z * (1.0 - s)))
                w[i] = w[i] - self.lr_w[i] * gw
                b[i] = b[i] - self.lr_b[i] * gb
        return cur
