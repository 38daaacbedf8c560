"""Batch buckets without a framework: choosing, padding, slicing, refusing, and what a check and a
profile add so that every bucket runs (``navbuild_rules.torch_compile.batching``, ``navbuild.measure.coverage``)."""
from __future__ import annotations

import numpy as np
import pytest

from navbuild.measure import coverage
from navbuild.measure.profiling import ProfileConfig
from navbuild_rules.torch_compile import batching


def test_default_buckets_are_powers_of_two_the_maximum_and_the_profile_sizes():
    assert batching.default_buckets(64) == [1, 2, 4, 8, 16, 32, 64]
    assert batching.default_buckets(6, [3, 100]) == [1, 2, 3, 4, 6]
    assert batching.default_buckets(1) == [1]
    assert batching.resolve("auto", 8, [5]) == [1, 2, 4, 5, 8]
    assert batching.resolve([8, 1, 8], 8) == [1, 8]
    with pytest.raises(ValueError, match="bucket 16 is above the model's max_batch_size 8"):
        batching.resolve([1, 16], 8)
    for bad in ([], [0], [True], "some", [1.5]):
        with pytest.raises(ValueError, match='buckets must be "auto" or a list of batch sizes'):
            batching.check_spec(bad)


def test_a_batch_runs_in_the_smallest_bucket_that_holds_it_and_a_larger_one_is_refused():
    assert [batching.pick(b, [1, 8, 64], "m") for b in (1, 2, 8, 9, 64)] == [1, 8, 8, 64, 64]
    with pytest.raises(batching.BucketError) as caught:
        batching.pick(65, [1, 8, 64], "model resnet (torch-compile fp16)")
    assert str(caught.value) == ("model resnet (torch-compile fp16): batch 65 is above the largest compiled bucket "
                                 "64 (buckets 1, 8, 64); rebuild with a larger bucket (buckets = [...] or "
                                 "max_batch_size) or send smaller batches")


def test_padding_repeats_the_batch_rows_and_slicing_undoes_it():
    feed = {"image": np.arange(3 * 2, dtype=np.float32).reshape(3, 2), "ids": np.array([[7], [8], [9]])}
    padded = batching.pad(feed, 8)
    assert padded["image"].shape == (8, 2) and padded["ids"][:, 0].tolist() == [7, 8, 9, 7, 8, 9, 7, 8]
    assert batching.pad(feed, 3)["image"] is feed["image"]
    outputs = [np.ones((8, 5)), np.ones((2, 5)), np.float32(1.0)]  # batch-first, another shape, a scalar
    sliced = batching.unpad(outputs, 3, 8)
    assert sliced[0].shape == (3, 5) and sliced[1].shape == (2, 5) and sliced[2] == 1.0


def test_the_check_adds_a_tiled_case_for_each_bucket_no_sample_reaches():
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((batch, 3)).astype(np.float32)} for batch in (1, 3)]
    expected = [{"y": s["x"] * 2} for s in samples]
    cases, references = coverage.check_cases(samples, expected, [1, 4, 16, 64])
    assert [coverage.batch_size(c) for c in cases] == [1, 3, 16, 64]  # 1 and 3 reach buckets 1 and 4
    for case, reference in zip(cases, references):
        np.testing.assert_array_equal(reference["y"], case["x"] * 2)  # the reference tiled like the inputs
    assert coverage.check_cases(samples, expected, None) == (samples, expected)
    # an output without the batch dimension cannot be tiled: no case is added for it
    flat = [{"y": np.float32(1.0)}, {"y": np.float32(2.0)}]
    assert len(coverage.check_cases(samples, flat, [1, 4, 16])[0]) == 2


def test_the_profile_measures_every_bucket_besides_its_own_sizes():
    config = ProfileConfig(batch_sizes=(1, 64, 128))
    widened = coverage.profile_config(config, [1, 8, 64])
    assert widened.batch_sizes == (1, 8, 64)  # 128 is above the largest bucket: the runner refuses it
    assert widened.window_s == config.window_s and widened.budget_s == config.budget_s
    swept = coverage.profile_config(ProfileConfig(), [1, 3], default_max=4)
    assert swept.batch_sizes == (1, 2, 3)
    assert coverage.profile_config(config, None) is config
