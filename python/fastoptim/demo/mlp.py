"""A multilayer perceptron in plain NumPy: forward, backward, nothing else. Copy it freely.

    >>> import numpy as np, fastoptim as fo
    >>> from fastoptim.demo.mlp import MLP
    >>> model = MLP([64, 128, 10], seed=0)
    >>> opt = fo.Adam(model.params, lr=1e-3)
    >>> x, y = np.zeros((32, 64), np.float32), np.zeros(32, np.intp)
    >>> loss, grads = model.loss_and_grads(x, y)
    >>> opt.step(grads)                      # updates model.params in place

The layers are ``h = relu(h @ W + b)``, the last without the ReLU, and the loss is the mean
softmax cross-entropy of the logits. Parameters live in one dict (``W0, b0, W1, b1, ...``)
that the optimizer holds and updates in place: never rebind its arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MLP", "log_softmax"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) along the last axis, without overflow."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result


class MLP:
    """Fully connected ReLU network with a softmax cross-entropy loss.

    Args:
        sizes: widths from input to output, e.g. ``[64, 128, 10]``.
        seed: seeds the He-normal initialisation of the weights (biases start at zero).
        dtype: float32, float64 or ``ml_dtypes.bfloat16``; the gradients have the parameters'
            dtype. The arithmetic widens bfloat16 parameters to float32 (each matmul casts
            them, as a CPU bfloat16 model's kernels would), and rounds their gradients to
            bfloat16 at the end.
    """

    def __init__(self, sizes: Sequence[int], *, seed: int = 0, dtype: type = np.float32) -> None:
        if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
            raise ValueError(f"sizes needs at least two positive widths, got {list(sizes)!r}")
        rng = np.random.default_rng(seed)
        self.sizes = [int(n) for n in sizes]
        self.params: dict[str, np.ndarray] = {}
        for i, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            self.params[f"W{i}"] = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype)
            self.params[f"b{i}"] = np.zeros(n_out, dtype=dtype)

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def _value(self, name: str) -> np.ndarray:
        """A parameter as the arithmetic reads it: float32 for bfloat16 ones, else itself."""
        param = self.params[name]
        return param if param.dtype in (np.float32, np.float64) else param.astype(np.float32)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The logits (n, classes) and each layer's input (what the backward pass needs)."""
        inputs = []
        h = x
        for i in range(self.num_layers):
            inputs.append(h)
            h = h @ self._value(f"W{i}") + self._value(f"b{i}")
            if i < self.num_layers - 1:
                h = np.maximum(h, 0)
        return h, inputs

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most likely class of each row of `x`."""
        logits, _ = self.forward(x)
        return np.asarray(logits.argmax(axis=1))

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """Mean cross-entropy of the rows of `x` against the integer labels `y`."""
        logits, _ = self.forward(x)
        return float(-log_softmax(logits)[np.arange(len(y)), y].mean())

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """The mean cross-entropy and its gradient with respect to every parameter (fresh,
        C-contiguous arrays with the parameters' names, shapes and dtype)."""
        logits, inputs = self.forward(x)
        n = len(y)
        log_p = log_softmax(logits)
        loss = float(-log_p[np.arange(n), y].mean())
        delta = np.exp(log_p)  # d loss / d logits = (softmax - onehot) / n
        delta[np.arange(n), y] -= 1
        delta /= n
        grads: dict[str, np.ndarray] = {}
        for i in reversed(range(self.num_layers)):
            h = inputs[i]
            grads[f"W{i}"] = h.T @ delta
            grads[f"b{i}"] = delta.sum(axis=0)
            if i > 0:  # back through the layer, then through the ReLU that made h
                delta = (delta @ self._value(f"W{i}").T) * (h > 0)
        return loss, {name: grads[name].astype(param.dtype, copy=False) for name, param in self.params.items()}
