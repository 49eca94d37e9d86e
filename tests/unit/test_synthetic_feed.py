"""The growing synthetic feed: an append equals a longer series, and changes the fingerprint."""

from __future__ import annotations

import numpy as np
import pytest

from forecast.data.sources import StoreSource, fingerprint
from forecast.data.synthetic import extend_feed, make_grid, write_feed


def test_extended_feed_equals_the_longer_series_and_is_new_data(tmp_path):
    path = tmp_path / "feed.zarr"
    write_feed(path, 20, n_lat=4, n_lon=5, n_blobs=2, seed=3)
    with StoreSource(str(path)).open() as ds:
        before = fingerprint(ds, path)
    assert extend_feed(path, 7) == 27
    longer = make_grid(27, n_lat=4, n_lon=5, n_blobs=2, seed=3)
    with StoreSource(str(path)).open() as ds:
        np.testing.assert_array_equal(ds["field"].values, longer["field"].values)
        np.testing.assert_array_equal(ds["time"].values, longer["time"].values)
        assert fingerprint(ds, path) != before
    with pytest.raises(ValueError, match="n_more"):
        extend_feed(path, 0)


def test_a_feed_grows_again_and_again(tmp_path):
    """Each append keeps the feed's attributes (an append rewrites them), so it can grow again."""
    path = write_feed(tmp_path / "feed.zarr", 10, n_lat=4, n_lon=5, n_blobs=2, seed=3)
    assert [extend_feed(path, 3) for _ in range(3)] == [13, 16, 19]
    longer = make_grid(19, n_lat=4, n_lon=5, n_blobs=2, seed=3)
    with StoreSource(str(path)).open() as ds:
        np.testing.assert_array_equal(ds["field"].values, longer["field"].values)
