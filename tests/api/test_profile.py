"""navbuild.profile: any callable, Model Navigator's (batch_size, sample) pairs or plain samples."""
from __future__ import annotations

import numpy as np

import navbuild

QUICK = {"batch_sizes": [1, 2], "warmup_runs": 1, "warmup_s": 0.0, "window_size": 3, "min_window_s": 0.0,
         "min_trials": 3, "max_trials": 3}


def test_profile_takes_pairs_or_samples_and_tiles_the_batch():
    seen = []

    def double(x):
        seen.append(x.shape[0])
        return x * 2

    sample = np.ones((1, 3), dtype=np.float32)
    for dataloader in ([(1, sample)], [sample]):
        seen.clear()
        result = navbuild.profile(double, dataloader, QUICK)
        assert result.batch_sizes == [1, 2]
        assert set(seen) == {1, 2}
        assert all(point.throughput > 0 for point in result.points)
