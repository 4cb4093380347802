"""wsebench.tasks: variable-length classroom tasks, collate/padding, batches, padding reports."""
import numpy as np
import pytest
import torch

from compiler import ConfigError
from wsebench import tasks as T

ALL = {"parity": {}, "copy": {}, "reverse": {}, "longtail": {"samples": 256}}


@pytest.mark.parametrize("name", sorted(ALL))
def test_tasks_are_deterministic_from_the_seed(name):
    a, b, c = (T.make(name, seed=s, **ALL[name]) for s in (3, 3, 4))
    assert len(a) == len(b)
    for sa, sb in zip(a.samples, b.samples):
        np.testing.assert_array_equal(sa.tokens, sb.tokens)
        np.testing.assert_array_equal(sa.target, sb.target)
    assert any(len(sa.tokens) != len(sc.tokens) or (sa.tokens != sc.tokens).any()
               for sa, sc in zip(a.samples, c.samples))


@pytest.mark.parametrize("name", sorted(ALL))
def test_lengths_tokens_and_labels_stay_in_range(name):
    task = T.make(name, **ALL[name])
    lengths = task.lengths
    assert lengths.min() >= 1 and lengths.max() <= task.max_len
    assert len(np.unique(lengths)) > 3                        # variable length
    for s in task.samples:
        assert s.tokens.min() >= 1 and s.tokens.max() < task.vocab   # 0 is only ever padding
        labels = np.atleast_1d(s.target)
        assert labels.min() >= 0 and labels.max() < task.classes
        assert s.target.shape == ((len(s.tokens),) if task.kind == "tag" else ())


def test_targets_follow_the_task_rules():
    for s in T.parity(samples=64).samples:
        assert int(s.target) == int((s.tokens == 2).sum()) % 2
    for s in T.copy(samples=64).samples:
        np.testing.assert_array_equal(s.target, s.tokens - 1)
    for s in T.reverse(samples=64).samples:
        np.testing.assert_array_equal(s.target, s.tokens[::-1] - 1)


def test_longtail_label_is_the_majority_group_of_the_content():
    task = T.longtail(samples=300, classes=4, symbols=16, seed=1)
    group = np.arange(16) * 4 // 16
    for s in task.samples:
        counts = np.bincount(group[s.tokens - 1], minlength=4)
        assert counts[int(s.target)] == counts.max()
    assert len(np.unique([int(s.target) for s in task.samples])) == 4


@pytest.mark.parametrize("distribution", T.LENGTH_DISTRIBUTIONS)
def test_longtail_lengths_have_a_long_tail(distribution):
    task = T.longtail(samples=2000, min_len=2, max_len=64, distribution=distribution, seed=0)
    lengths = task.lengths
    median, p99 = np.percentile(lengths, [50, 99])
    assert lengths.mean() > median                            # skewed to the right
    assert p99 >= 3 * median                                  # a few samples are much longer
    # the empirical distribution follows the pmf it was drawn from
    pmf = T.length_pmf(2, 64, distribution)
    counts = np.bincount(lengths - 2, minlength=63) / len(lengths)
    assert np.abs(counts - pmf).max() < 0.03


def test_length_pmf_is_a_truncated_distribution():
    for distribution in T.LENGTH_DISTRIBUTIONS:
        pmf = T.length_pmf(3, 40, distribution)
        assert pmf.shape == (38,) and abs(pmf.sum() - 1) < 1e-12 and (pmf > 0).all()
    zipf = T.length_pmf(1, 10, "zipf", exponent=2.0)
    np.testing.assert_allclose(zipf[1] / zipf[0], 0.25)       # P(L) ∝ L^-2


def test_collate_pads_on_the_right_with_pad_and_ignore_index():
    task = T.reverse(samples=8, min_len=1, max_len=6, seed=2)
    samples = task.samples[:5]
    x, y, lengths = T.collate(samples)
    longest = max(len(s.tokens) for s in samples)
    assert x.shape == y.shape == (5, longest) and x.dtype == y.dtype == torch.int64
    for i, s in enumerate(samples):
        n = len(s.tokens)
        assert lengths[i] == n
        np.testing.assert_array_equal(x[i, :n].numpy(), s.tokens)
        np.testing.assert_array_equal(y[i, :n].numpy(), s.target)
        assert (x[i, n:] == T.PAD_ID).all() and (y[i, n:] == T.IGNORE_INDEX).all()
    torch.testing.assert_close(T.lengths_of(x), lengths)


def test_collate_to_a_fixed_length_is_the_padded_baseline():
    task = T.parity(samples=16, max_len=9, seed=0)
    unpadded = T.collate(task.samples[:4])
    padded = T.collate(task.samples[:4], pad_to=12)
    assert padded.x.shape == (4, 12) and padded.y.shape == (4,)
    torch.testing.assert_close(padded.x[:, :unpadded.x.shape[1]], unpadded.x)
    torch.testing.assert_close(padded.lengths, unpadded.lengths)
    torch.testing.assert_close(padded.y, unpadded.y)
    real = int(unpadded.lengths.sum())
    assert T.padding_fraction(padded) == pytest.approx(1 - real / 48)
    assert T.padding_fraction(unpadded.x) == pytest.approx(1 - real / unpadded.x.numel())
    assert T.padding_fraction(padded) > T.padding_fraction(unpadded)


def test_batches_are_shuffled_full_batches_of_every_sample():
    task = T.copy(samples=50, max_len=7, seed=0)
    epoch = list(T.batches(task, 8, seed=1, epochs=1, with_lengths=True))
    assert len(epoch) == 6                                    # 50 // 8, the rest is dropped
    seen = [tuple(b.x[i, :b.lengths[i]].tolist()) for b in epoch for i in range(8)]
    assert len(set(seen)) > 40
    all_samples = {tuple(s.tokens.tolist()) for s in task.samples}
    assert set(seen) <= all_samples
    again = list(T.batches(task, 8, seed=1, epochs=1, with_lengths=True))
    assert all(torch.equal(a.x, b.x) for a, b in zip(epoch, again))
    other = next(T.batches(task, 8, seed=2, with_lengths=True))
    assert not torch.equal(other.x[:, :1], epoch[0].x[:, :1])


def test_batches_pad_per_batch_or_to_a_fixed_length():
    task = T.longtail(samples=128, max_len=40, seed=0)
    widths = {x.shape[1] for x, _ in T.batches(task, 16, epochs=1)}
    assert len(widths) > 1 and max(widths) <= 40
    for x, y in T.batches(task, 16, epochs=1, pad_to="max"):
        assert x.shape == (16, 40) and y.shape == (16,)
    assert {x.shape[1] for x, _ in T.batches(task, 16, epochs=1, pad_to=48)} == {48}


def test_dataset_padding_fraction_compares_padded_and_per_batch_padding():
    task = T.longtail(samples=512, max_len=64, seed=0)
    fixed = T.dataset_padding_fraction(task)
    assert fixed == pytest.approx(1 - task.lengths.mean() / 64)
    per_batch = T.dataset_padding_fraction(task, batch_size=32, pad_to=None)
    epoch = [x for x, _ in T.batches(task, 32, epochs=1)]
    by_hand = sum(T.padding_fraction(x) * x.numel() for x in epoch) / sum(x.numel() for x in epoch)
    assert per_batch == pytest.approx(by_hand)                # pads over positions, all batches
    assert 0 < per_batch < fixed
    assert T.dataset_padding_fraction(task, pad_to=None) == 0.0
    assert T.dataset_padding_fraction(task, batch_size=32, pad_to="max") == pytest.approx(fixed, abs=0.05)


@pytest.mark.parametrize("call, message", [
    (lambda: T.parity(samples=0), "samples"),
    (lambda: T.parity(min_len=0), "min_len"),
    (lambda: T.copy(min_len=5, max_len=4), "max_len"),
    (lambda: T.reverse(symbols=1), "symbols"),
    (lambda: T.longtail(classes=8, symbols=4), "symbols"),
    (lambda: T.longtail(distribution="pareto"), "distribution"),
    (lambda: T.longtail(sigma=0), "sigma"),
    (lambda: T.longtail(signal=1.5), "signal"),
    (lambda: T.make("addition"), "unknown task"),
    (lambda: T.collate([]), "at least one"),
    (lambda: T.collate(T.parity(samples=4, min_len=5, max_len=5).samples, pad_to=3), "pad_to"),
    (lambda: next(T.batches(T.parity(samples=4), 5)), "batch_size"),
    (lambda: next(T.batches(T.parity(samples=4, max_len=8), 2, pad_to=4)), "pad_to"),
    (lambda: next(T.batches(T.parity(samples=4), 2, pad_to="min")), "pad_to"),
    (lambda: next(T.batches([1, 2, 3], 2)), "SequenceTask"),
    (lambda: T.padding_fraction(torch.zeros(3, dtype=torch.int64)), "batch, length"),
])
def test_bad_arguments_raise_config_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
