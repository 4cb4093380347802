"""Bad input gets a clear error that names the problem and the fix."""
import pytest
import torch
import torch.nn as nn

import wsebench as wb


class CummaxHead(nn.Module):
    def forward(self, x):
        return torch.cummax(x, dim=-1).values


class WithCummax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.mix = CummaxHead()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.mix(self.fc1(x)))


def _example(features=8, classes=3, batch=4):
    return torch.randn(batch, features), torch.randint(0, classes, (batch,))


def test_unsupported_op_names_the_aten_op_and_module():
    model = WithCummax()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(wb.UnsupportedOpError) as err:
        wb.compile(model, nn.CrossEntropyLoss(), example=_example(), optimizer=opt)
    message = str(err.value)
    assert "aten.cummax" in message
    assert "mix" in message


def test_model_too_large_for_the_wafer_reports_bytes_per_core():
    model = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 4))
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(wb.WaferFitError) as err:
        wb.compile(model, nn.CrossEntropyLoss(), example=_example(2048, 4), optimizer=opt,
                   wafer="classroom")
    message = str(err.value)
    assert "bytes" in message and "49,152" in message


@pytest.mark.parametrize("kwargs, fragment", [
    ({"wafer": "wse9"}, "wse9"),
    ({"wafer": "classroom", "mapping": {"fc*": "big"}}, "Mapping"),
    ({"mapping": {"conv*": wb.Mapping(2, 2)}}, "conv*"),
    ({"sparsity": {"harvets": True}}, "harvets"),
    ({"backend": "tpu"}, "tpu"),
])
def test_bad_compile_arguments_name_the_value(kwargs, fragment):
    model = wb.models.mlp(8, 16, 3, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises((wb.ConfigError, ValueError)) as err:
        wb.compile(model, nn.CrossEntropyLoss(), example=_example(), optimizer=opt, **kwargs)
    assert fragment in str(err.value)


def test_unknown_optimizer_is_refused():
    model = wb.models.mlp(8, 16, 3, depth=2)
    opt = torch.optim.RMSprop(model.parameters())
    with pytest.raises(wb.ConfigError, match="RMSprop.*SGD, Adam, AdamW"):
        wb.compile(model, nn.CrossEntropyLoss(), example=_example(), optimizer=opt)


def test_unsupported_optimizer_option_is_refused():
    model = wb.models.mlp(8, 16, 3, depth=2)
    opt = torch.optim.Adam(model.parameters(), amsgrad=True)
    with pytest.raises(wb.ConfigError, match="amsgrad"):
        wb.compile(model, nn.CrossEntropyLoss(), example=_example(), optimizer=opt)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"hidden": -4}, "hidden"), ({"depth": 0}, "depth"), ({"activation": "swish"}, "swish"),
    ({"dropout": 1.5}, "dropout"),
])
def test_bad_model_sizes_name_the_value(kwargs, fragment):
    with pytest.raises(wb.ConfigError, match=fragment):
        wb.models.mlp(**kwargs)


def test_bad_wafer_overrides_name_the_field():
    with pytest.raises(wb.ConfigError, match="rows"):
        wb.wafer("classroom", rows=-3)
    with pytest.raises(wb.ConfigError, match="sram"):
        wb.wafer("classroom", sram=1)


def test_bad_mapping_values_are_refused():
    with pytest.raises(wb.ConfigError, match="rows"):
        wb.Mapping(0, 4)
