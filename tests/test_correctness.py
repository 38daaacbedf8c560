"""The comparison rule, NaN and Inf, shapes and names."""
from __future__ import annotations

import numpy as np

from navbuild.measure.settings import Tolerance
from navbuild.measure.correctness import compare

TOL = Tolerance(atol=1e-4, rtol=1e-3)


def check(actual, expected):
    return compare([{"y": np.asarray(actual, np.float32)}], [{"y": np.asarray(expected, np.float32)}], lambda _: TOL)


def test_within_tolerance_passes_and_reports_the_errors():
    result = check([1.0, 2.00005], [1.0, 2.0])
    assert result["passed"] and result["outputs"]["y"]["max_abs"] > 0


def test_outside_tolerance_names_output_error_and_tolerance():
    result = check([1.0, 2.1], [1.0, 2.0])
    assert not result["passed"]
    assert "output y, sample 0: max abs error 0.1 exceeds atol 0.0001" in result["failures"][0]


def test_nan_and_inf_have_their_own_message():
    assert "values are NaN" in check([np.nan, 1.0], [1.0, 1.0])["failures"][0]
    assert "values are Inf" in check([np.inf, 1.0], [1.0, 1.0])["failures"][0]
    assert "the reference itself holds NaN" in check([1.0], [np.nan])["failures"][0]


def test_shape_and_name_mismatches_fail():
    assert "shape [2]" in check([1.0, 2.0], [[1.0, 2.0]])["failures"][0]
    result = compare([{"z": np.zeros(1)}], [{"y": np.zeros(1)}], lambda _: TOL)
    assert "do not match the reference's" in result["failures"][0]


def test_integer_outputs_must_match_exactly():
    result = compare([{"ids": np.array([1, 2])}], [{"ids": np.array([1, 3])}], lambda _: TOL)
    assert "1 of 2 values differ" in result["failures"][0]


def test_nan_names_the_first_index():
    failure = check([[1.0, 2.0], [np.nan, np.nan]], [[1.0, 2.0], [3.0, 4.0]])["failures"][0]
    assert failure == "output y, sample 0: 2 of 4 values are NaN (the first at index (1, 0))"
    assert "(the first at index (0,))" in check([np.inf, 1.0], [1.0, 1.0])["failures"][0]


def test_a_source_that_disagrees_with_itself_is_blamed_not_the_format():
    from navbuild.measure.correctness import run_and_compare

    class Exact:  # a format that reproduces the first run exactly
        name = "exact"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def infer(self, sample):
            raise AssertionError("the artifact is not run when the source disagrees with itself")

    expected = [{"y": np.array([1.0, 2.0], np.float32)}]
    repeat = [{"y": np.array([1.0, 2.5], np.float32)}]
    result = run_and_compare(Exact(), [{"x": np.zeros(1)}], expected, lambda _: TOL, repeat=repeat)
    assert not result["passed"] and result["source_deterministic"] is False
    message = result["failures"][0]
    assert message.startswith("the source model is not deterministic")
    assert "atol >= 0.5 for y (it has 0.0001)" in message and "no format is to blame" in message


def test_range_tol_allows_a_share_of_the_outputs_range_over_every_sample():
    """tf32's rounding grows with what a layer accumulates: ResNet-50's logits reach 111 and a small
    logit was 0.049 off on an H100. range_tol scales with the output's largest |expected| over every
    sample (here 100, in the second sample), not with the element compared."""
    expected = [{"y": np.asarray([-0.08, 1.0], np.float32)}, {"y": np.asarray([100.0, -3.0], np.float32)}]
    actual = [{"y": np.asarray([-0.03, 1.0], np.float32)}, {"y": np.asarray([100.0, -3.0], np.float32)}]
    plain = compare(actual, expected, lambda _: Tolerance(5e-3, 5e-3))
    assert not plain["passed"]
    ranged = compare(actual, expected, lambda _: Tolerance(5e-3, 5e-3, range_tol=1e-3))
    assert ranged["passed"] and ranged["outputs"]["y"]["range_tol"] == 1e-3
    tight = compare(actual, expected, lambda _: Tolerance(5e-3, 5e-3, range_tol=1e-4))
    assert "exceeds atol 0.005 + range_tol 0.0001 * 100 (its range)" in tight["failures"][0]


def test_a_tolerance_without_range_keys_as_before():
    assert Tolerance(1e-4, 1e-3).as_key() == [1e-4, 1e-3]
    assert Tolerance(5e-3, 5e-3, 1e-3).as_key() == [5e-3, 5e-3, 1e-3]
