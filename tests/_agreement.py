"""The test of a sampled estimate against its exact expectation, shared by the sampled-backend tests."""

import numpy as np

Z_MAX = 5.0
EPISODES = 50_000


def assert_agrees(mean, stderr, expected, what=""):
    """Elementwise z-scores below Z_MAX; entries with zero spread must match exactly (to round-off)."""
    assert mean.shape == expected.shape
    spread = stderr > 0
    z = np.abs(mean - expected)[spread] / stderr[spread]
    assert z.size == 0 or z.max() < Z_MAX, f"{what}: max |z| = {z.max():.2f}\nsampled\n{mean}\nexact\n{expected}"
    np.testing.assert_allclose(mean[~spread], expected[~spread], atol=1e-12, err_msg=what)
