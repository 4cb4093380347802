"""What the wafer cannot run yet fails at `compile`, never at `step`, with a message that names
the op, the module path and what to do (issue 14, "Errors"): 3-D pooling and adaptive max
pooling (no kernel for the op), 3-D and transposed convolutions (the op has a kernel, that
variant has none), and BatchNorm's cumulative average (momentum=None)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler import ConfigError
from compiler.frontend import CaptureError
from wsebench.session import UnsupportedOpError

CASES = {  # layer under test (module `body`), its input shape, the op the message names
    "MaxPool3d": (lambda: nn.MaxPool3d(2), (4, 2, 4, 4, 4), "aten.max_pool3d_with_indices"),
    "AdaptiveMaxPool2d": (lambda: nn.AdaptiveMaxPool2d(2), (4, 2, 4, 4), "aten.adaptive_max_pool2d"),
}

VARIANTS = {  # a convolution variant without a kernel, its input shape, what the message says
    "Conv3d": (lambda: nn.Conv3d(2, 2, 3, padding=1), (4, 2, 4, 4, 4), "a 3-D convolution"),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(2, 2, 3), (4, 2, 4, 4), "a transposed convolution"),
}


def _model(layer, shape):
    model = nn.Sequential(nn.Linear(shape[-1], shape[-1]))
    model.add_module("body", layer)
    model.add_module("flatten", nn.Flatten())
    with torch.no_grad():
        width = model(torch.randn(shape)).flatten(1).shape[1]
    model.add_module("head", nn.Linear(width, 3))
    return model


def _compile(model, shape):
    x, y = torch.randn(shape), torch.randint(0, 3, (shape[0],))
    return wb.compile(model, nn.CrossEntropyLoss(), example=(x, y),
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy")


@pytest.mark.parametrize("case", list(CASES))
def test_unsupported_layer_fails_at_compile_naming_op_and_module(case):
    make, shape, op = CASES[case]
    model = _model(make(), shape)
    with pytest.raises(UnsupportedOpError) as caught:
        _compile(model, shape)
    message = str(caught.value)
    assert op in message and "'body" in message and "Replace that layer" in message


@pytest.mark.parametrize("case", list(VARIANTS))
def test_convolution_without_a_kernel_fails_at_compile_naming_op_and_module(case):
    make, shape, what = VARIANTS[case]
    model = _model(make(), shape)
    with pytest.raises(ConfigError) as caught:
        _compile(model, shape)
    message = str(caught.value)
    assert "aten.convolution" in message and what in message and "'body'" in message
    assert "Replace that layer" in message


def test_batchnorm_cumulative_average_is_refused_at_compile():
    shape = (4, 2, 4, 4)
    model = _model(nn.BatchNorm2d(2, momentum=None), shape)
    with pytest.raises(CaptureError, match=r"module 'body' \(BatchNorm2d\) has momentum=None.*"
                                           r"set momentum to a number"):
        _compile(model, shape)
