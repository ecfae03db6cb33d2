"""The one covariance factorization: F @ F.T == cov for both methods."""

import numpy as np
import pytest

from risk_engine.covariance import cov_factor


@pytest.mark.parametrize("method", ["eigen", "cholesky"])
def test_factor_reproduces_a_positive_definite_covariance(method):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 5))
    cov = a @ a.T + 0.1 * np.eye(5)
    f = cov_factor(cov, method=method)
    assert f.shape == (5, 5)
    np.testing.assert_allclose(f @ f.T, cov, rtol=0, atol=1e-12)
    if method == "cholesky":
        assert np.array_equal(f, np.linalg.cholesky(cov))


def test_singular_covariance_eigen_is_square_cholesky_drops_the_null_space():
    v = np.array([[1.0], [2.0], [-1.0]])
    cov = v @ v.T
    eig = cov_factor(cov)
    chol = cov_factor(cov, method="cholesky")
    assert eig.shape == (3, 3) and chol.shape == (3, 1)
    for f in (eig, chol):
        np.testing.assert_allclose(f @ f.T, cov, rtol=0, atol=1e-12)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="square"):
        cov_factor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="method"):
        cov_factor(np.eye(2), method="svd")  # type: ignore[arg-type]
    assert cov_factor(np.zeros((0, 0)), method="cholesky").shape == (0, 0)
