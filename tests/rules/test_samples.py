"""The samples' checks with and without a batch dimension (``max_batch_size = 0``: shapes as they are)."""
from __future__ import annotations

import numpy as np
import pytest

from navbuild_rules.samples import check_samples


def pair(first: tuple[int, ...], second: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {"0": np.zeros(first), "1": np.zeros(second)}


def test_without_a_batch_dimension_inputs_keep_their_own_shapes():
    check_samples("add", [pair((2, 3), (3,)), pair((2, 3), (3,))], ("0", "1"), 0, {})
    check_samples("scalar", [{"x": np.float64(1.0).reshape(())}], (), 0, {})  # a scalar is an input too
    check_samples("seq", [{"x": np.zeros((5, 4))}, {"x": np.zeros((7, 4))}], (), 0, {"x": {0: "seq"}})


@pytest.mark.parametrize("samples,max_batch_size,message", [
    ([pair((2, 3), (3,))], 4, "sample 0 has batch 2 for one input and 3 for 1; set max_batch_size = 0 if dimension "
                              "0 is no batch"),
    ([{"x": np.zeros(())}], 4, "input x of sample 0 has no batch dimension; set max_batch_size = 0"),
    ([{"x": np.zeros((5, 2))}], 4, "sample 0 has batch 5, over max_batch_size 4"),
    ([pair((2, 3), (3,)), pair((4, 3), (3,))], 0, "input 0 has shape [4, 3] in sample 1 but [2, 3] in sample 0; "
                                                  "declare the axis in dynamic_axes if it varies (max_batch_size = 0"),
])
def test_contradictions_are_refused_with_the_way_out(samples, max_batch_size, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        check_samples("m", samples, (), max_batch_size, {})
