"""What the wafer cannot run yet fails at `compile`, never at `step`, with a message that names
the op, the module path and what to do (issue 14, "Errors"): convolution, pooling and the
norms that have no kernel, and BatchNorm's running statistics (a buffer the step updates)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler.frontend import CaptureError
from wsebench.session import UnsupportedOpError

CASES = {  # layer under test (module `body`), its input shape, the op the message names
    "Conv2d": (lambda: nn.Conv2d(2, 2, 3, padding=1), (4, 2, 4, 4), "aten.convolution"),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), (4, 2, 4, 4), "aten.max_pool2d_with_indices"),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d(2), (4, 2, 4, 4), "aten._adaptive_avg_pool2d"),
    "BatchNorm2d without stats": (lambda: nn.BatchNorm2d(2, track_running_stats=False),
                                  (4, 2, 4, 4), "aten._native_batch_norm_legit"),
}


def _compile(model, shape):
    x, y = torch.randn(shape), torch.randint(0, 3, (shape[0],))
    return wb.compile(model, nn.CrossEntropyLoss(), example=(x, y),
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy")


@pytest.mark.parametrize("case", list(CASES))
def test_unsupported_layer_fails_at_compile_naming_op_and_module(case):
    make, shape, op = CASES[case]
    layer = make()
    model = nn.Sequential(nn.Linear(shape[-1], shape[-1]))
    model.add_module("body", layer)
    model.add_module("flatten", nn.Flatten())
    with torch.no_grad():
        width = model(torch.randn(shape)).flatten(1).shape[1]
    model.add_module("head", nn.Linear(width, 3))
    with pytest.raises(UnsupportedOpError) as caught:
        _compile(model, shape)
    message = str(caught.value)
    assert op in message and "'body" in message and "Replace that layer" in message


@pytest.mark.parametrize("norm, shape", [(nn.BatchNorm1d(4), (4, 4))])
def test_batchnorm_running_statistics_are_refused_at_compile(norm, shape):
    model = nn.Sequential(nn.Linear(shape[-1], shape[-1]))
    model.add_module("bn", norm)
    model.add_module("flatten", nn.Flatten())
    model.add_module("head", nn.Linear(shape[1] * (shape[2] * shape[3] if len(shape) > 2 else 1), 3))
    with pytest.raises(CaptureError, match=r"module 'bn' updates its buffer 'bn.running_mean'.*LayerNorm"):
        _compile(model, shape)
