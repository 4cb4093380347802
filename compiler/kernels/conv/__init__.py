"""The convolution kernel kind: hand-optimized 1-D and 2-D convolutions (nn.Conv1d, nn.Conv2d:
stride, padding, dilation, groups), forward and backward of one layer.

Its cost is the ISPD 2020 contest's convolution model (`contest`: h', w', c', k' splits across
the fabric, the contest rectangle h' w' (c' + 1) x 3 k', the tile's multiply-accumulates as its
time, the weight tile plus the input window as its memory), the same formulas `wsebench ispd`
(`compiler.ispd.library`) evaluates. Training adds what the contest leaves out: the backward
pass (dW and dX are convolutions of the same tiles), the streamed operands' links, harvesting
(a zero in x or dY skips its multiplies, `terms`), and the optimizer state of the weights.
Groups are charged as C / groups input channels per output channel; padding and dilation do
not change the contest's time (it counts the input's H x W / T^2 positions).

Pooling and BatchNorm are not part of this kind: their ops form generated (element-wise)
kernels (`compiler.kernels.generated`), BatchNorm's with its scale and shift as parameters.
Building: `build`; counts and cost: `terms`; the contest's formulas: `contest`.
"""
from __future__ import annotations

import math

from ... import cost
from ..base import Kernel, KindDefaults
from . import terms as _terms
from .build import build, conv_kernel, conv_of
from .contest import conv_weight_words, conv_window_words


class ConvKind(KindDefaults):
    name = "conv"
    priority = 15     # build_kernels asks the kinds by priority
    origin = "hand-optimized (ISPD 2020 convolution model)"
    build = staticmethod(build)
    dense_macs = staticmethod(_terms.dense_macs)
    components = staticmethod(_terms.components)

    @staticmethod
    def weights_per_core(kernel: Kernel, mapping, tiles=None) -> int:
        """The contest's weight tile ceil(C/c') ceil(K/k') R S plus the bias's share."""
        c, (h, w, cc, k) = conv_of(kernel), _terms.params_of(kernel, mapping)
        weights = conv_weight_words(c, cc, k)
        bias = math.ceil(max(kernel.param_numel - c.K * c.C * c.R * c.S, 0) / mapping.cols)
        return weights + bias

    def memory_per_core(self, kernel: Kernel, mapping, target, optimizer, in_flight: int,
                        kept: int | None = None) -> int:
        """The weights with their gradient and optimizer state, the contest's input window,
        and the x tile of every sample between its forward and backward."""
        args = _terms.params_of(kernel, mapping)
        resident = cost.resident_bytes(self.weights_per_core(kernel, mapping), target, optimizer)
        window = conv_window_words(conv_of(kernel), args[0], args[1], args[3])
        stash = _terms.x_tile(kernel, args)
        return int(resident + (in_flight * stash + window) * target.activation_bytes)

    @staticmethod
    def assumed_counts(kernel: Kernel, mapping, target, density, harvest: bool):
        return _terms.assumed(kernel, mapping, density, harvest)

    @staticmethod
    def measured_counts(kernel: Kernel, mapping, env: dict, runs):
        return _terms.measured(kernel, mapping, env, runs)

    @staticmethod
    def governed(graph, kernel: Kernel, mask_shape) -> list:
        """Images have no token positions: no marker governs a call."""
        return [(None, None)]

    @staticmethod
    def streamed(kernel: Kernel) -> dict[str, str]:
        return {role: kernel.stream[role] for role in ("x", "dy") if role in kernel.stream}


CONV = KIND = ConvKind()

__all__ = ["CONV", "ConvKind", "conv_kernel", "conv_of"]
