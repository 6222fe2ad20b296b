"""Out-of-distribution score: Mahalanobis distance of the model's penultimate features.

Class-conditional means with one shared, shrunk covariance (Lee et al., 2018); the score of
an image is the smallest squared distance to a class mean. Fitted on the training split,
thresholded on validation (a quantile of in-distribution scores), stored in the manifest.
"""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class OODModel(BaseModel):
    """Reference statistics of the training features (``manifest.extra["ood"]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    means: list[list[float]] = Field(description="per-class feature means (C, D)")
    precision: list[list[float]] = Field(description="inverse of the shared covariance (D, D)")
    threshold: float = Field(description="scores above this are out of distribution")
    quantile: float = Field(0.99, description="validation quantile the threshold was set at")
    auroc: dict[str, float] = Field(default_factory=dict, description="detection AUROC per OOD probe set")

    def score(self, features: np.ndarray) -> np.ndarray:
        """Features (N, D) -> min over classes of the squared Mahalanobis distance (N,)."""
        f = np.atleast_2d(np.asarray(features, np.float64))
        mu = np.asarray(self.means, np.float64)
        prec = np.asarray(self.precision, np.float64)
        if f.shape[1] != mu.shape[1]:
            raise ValueError(f"expected features of width {mu.shape[1]}, got shape {f.shape}")
        d = f[:, None, :] - mu[None, :, :]
        return np.einsum("ncd,de,nce->nc", d, prec, d).min(axis=1)


def fit_stats(features: np.ndarray, labels: np.ndarray, shrinkage: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the shrunk shared precision matrix of training features."""
    f = np.asarray(features, np.float64)
    y = np.asarray(labels).reshape(-1)
    classes = np.unique(y)
    means = np.stack([f[y == c].mean(0) for c in classes])
    centred = f - means[np.searchsorted(classes, y)]
    cov = centred.T @ centred / len(f)
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
    return means, np.linalg.inv(cov)
