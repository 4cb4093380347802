"""CNNs train on the wafer equal to eager torch (issue 14, "CNNs on the wafer"): Conv2d,
BatchNorm2d in training mode (its running statistics and batch count updated as torch updates
them), ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and Linear; the zoo's ResNet-18 trains
equal to torch, and a ResNet-50 compiles onto the full wse1 wafer with its convolutions on the
convolution kind."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import wsebench as wb

from .oracle import (ADAM_TOLERANCE, SGD_TOLERANCE, STEPS, adamw, assert_same_parameters,
                     assert_trained, parameters_of, sgd, train_both)


def small_cnn() -> nn.Module:
    """No bias before a BatchNorm (it removes the mean, so that bias's gradient is rounding
    noise, which Adam would amplify into steps of lr); the last convolution keeps its bias."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2), nn.AvgPool2d(2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def image_batches(batch: int, size: int, classes: int, steps: int = STEPS, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, size, size, generator=gen),
             torch.randint(0, classes, (batch,), generator=gen)) for _ in range(steps)]


def running_stats(model_or_state) -> dict:
    state = model_or_state if isinstance(model_or_state, dict) else model_or_state.state_dict()
    return {k: v.clone() for k, v in state.items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("optimizer, tolerance, method", [(sgd, SGD_TOLERANCE, "aot"),
                                                           (sgd, SGD_TOLERANCE, "export"),
                                                           (adamw, ADAM_TOLERANCE, "aot")])
def test_small_cnn_trains_equal_to_torch_running_statistics_included(optimizer, tolerance, method):
    """Both captures: torch.export reports the running statistics as buffer mutations, the aot
    capture as input mutations; either way the step writes them back."""
    model = small_cnn()
    initial, stats = parameters_of(model), running_stats(model)
    session, eager = train_both(model, nn.CrossEntropyLoss(), optimizer, image_batches(4, 12, 4),
                                capture_method=method)
    assert_same_parameters(session, eager, tolerance)   # every key: buffers too
    assert_trained(session, initial)
    trained = running_stats(session.state_dict())
    for key, value in stats.items():                    # the statistics moved, as torch's did
        assert not torch.equal(trained[key], value), key
    assert trained["1.num_batches_tracked"].item() == STEPS


def test_conv_layers_are_conv_kernels_and_pooling_and_norms_generated():
    model = small_cnn()
    x, y = image_batches(4, 12, 4, steps=1)[0]
    session = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y),
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy")
    kinds = {k.name: k.kind for k in session.plan.kernels}
    assert kinds["0"] == kinds["4"] == kinds["7"] == "conv"
    assert kinds["1"] == kinds["5"] == "generated"
    assert kinds["11"] == "matmul"


def test_resnet18_trains_equal_to_torch():
    """In float64: in float32, torch's single-threaded CPU convolution (the tests run torch on
    one thread) sums the stem's weight gradient over every output position in float32, and
    after three steps its weights differ from its own float64 run by ~1e-3 (measured at 64 x 64
    inputs; ours stay within 1e-6 of float64), so only float64 compares the formulas. The
    small CNN above is the float32 comparison."""
    model = wb.models.resnet(18, width=4, classes=3, seed=0).double()
    initial = parameters_of(model)
    batches = [(x.double(), y) for x, y in image_batches(4, 32, 3, steps=3)]
    session, eager = train_both(model, nn.CrossEntropyLoss(), sgd, batches)
    assert_same_parameters(session, eager, SGD_TOLERANCE)
    assert_trained(session, initial)


def test_resnet_zoo_has_the_papers_shapes():
    r18, r50 = wb.models.resnet(18, width=4), wb.models.resnet(50, width=4)
    convs = lambda m: [c for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    # 1 stem + 16 (BasicBlock) + 3 projections; 1 stem + 48 (Bottleneck) + 4 projections
    assert len(convs(r18)) == 20 and len(convs(r50)) == 53
    assert r18.fc.in_features == 8 * 4 and r50.fc.in_features == 8 * 4 * 4
    assert r50.layer4[0].conv2.stride == (2, 2) and r50.layer4[0].downsample[0].stride == (2, 2)
    with pytest.raises(wb.ConfigError, match="depth"):
        wb.models.resnet(20)


def test_resnet50_compiles_onto_wse1_with_timed_conv_kernels():
    model = wb.models.resnet(50, width=2, classes=5, seed=0)
    x, y = image_batches(2, 32, 5, steps=1)[0]
    session = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), wafer="wse1",
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy",
                         capture_method="aot")
    plan = session.plan
    convs = [k for k in plan.kernels if k.kind == "conv"]
    assert len(convs) == 53 and plan.target.rows == 633
    per_sample = plan.estimate()["per_sample_cycles"]
    assert all(per_sample[k.name] > 0 for k in convs)
    assert {"conv1", "layer4.2.conv3", "layer1.0.downsample.0"} <= {k.name for k in convs}


def test_a_checkpoint_resumes_the_running_statistics(tmp_path):
    model = small_cnn()
    batches = image_batches(4, 12, 4, steps=3)
    session = wb.compile(model, nn.CrossEntropyLoss(), example=batches[0], backend="numpy",
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    for x, y in batches[:2]:
        session.step(x, y)
    resumed = wb.load_session(session.save(tmp_path / "cnn.npz"))
    for s in (session, resumed):
        s.step(*batches[2])
    ours, theirs = session.state_dict(), resumed.state_dict()
    assert ours["5.num_batches_tracked"].item() == 3
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


def test_one_dimensional_cnn_trains_equal_to_torch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(),
                          nn.MaxPool1d(2), nn.AvgPool1d(2), nn.AdaptiveAvgPool1d(3), nn.Flatten(),
                          nn.Linear(12, 3))
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 2, 16, generator=gen), torch.randint(0, 3, (4,), generator=gen))
               for _ in range(STEPS)]
    session, eager = train_both(model, nn.CrossEntropyLoss(), sgd, batches)
    assert_same_parameters(session, eager, SGD_TOLERANCE)
    assert session.plan.kernel["0"].kind == "conv"
