"""The small torch module the fastoptim.torch tests step beside torch.optim (import after
``pytest.importorskip("torch")``)."""

from __future__ import annotations

import copy

import torch


class Net(torch.nn.Module):
    """A convolution (its weight channels_last unless asked otherwise), two linear layers, a frozen
    layer and (with `unused`) one that never gets a gradient."""

    def __init__(self, dtype: torch.dtype, channels_last: bool = True, unused: bool = True) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.hidden = torch.nn.Linear(3 * 4 * 4, 7)
        self.frozen = torch.nn.Linear(7, 7)
        self.out = torch.nn.Linear(7, 2)
        if unused:
            self.unused = torch.nn.Linear(2, 2)  # .grad stays None
        self.frozen.requires_grad_(False)
        self.to(dtype)
        if channels_last:
            self.conv.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x)).flatten(1)
        return self.out(torch.tanh(self.frozen(torch.tanh(self.hidden(h)))))


def twins(make: type[torch.nn.Module], dtype: torch.dtype, seed: int = 0, **options: bool) -> tuple[torch.nn.Module,
                                                                                                    torch.nn.Module]:
    """Two identical modules (seeded): one for fastoptim.torch, one for torch.optim."""
    torch.manual_seed(seed)
    net = make(dtype, **options)
    return net, copy.deepcopy(net)
