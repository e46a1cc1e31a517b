"""Speaker clustering of window embeddings: spectral clustering on a pruned cosine affinity, the
number of speakers given, bounded, or estimated from the eigengap; then refinement in the
embedding space (spherical k-means from the spectral solution) and merging of clusters whose
centroids are as close as one speaker's windows are to each other.

numpy only; deterministic (k-means++ from a fixed seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpeakerCount:
    """``num`` fixes the count; otherwise it is estimated within ``[min, max]``."""

    num: int | None = None
    min: int = 1
    max: int = 8

    def __post_init__(self) -> None:
        if self.min < 1 or self.max < self.min:
            raise ValueError(f"speaker bounds must satisfy 1 <= min <= max, got min {self.min}, max {self.max}")
        if self.num is not None and not self.min <= self.num <= self.max:
            raise ValueError(f"num_speakers {self.num} is outside [{self.min}, {self.max}]")


@dataclass(frozen=True)
class ClusteringOptions:
    prune_fraction: float = 0.25  # neighbours each window keeps in the affinity graph
    merge_similarity: float = 0.8  # centroids at least this similar are one speaker (estimated counts)
    min_cluster_fraction: float = 0.04  # smaller clusters are absorbed (estimated counts)
    refine_iterations: int = 5


def cluster(embeddings: np.ndarray, count: SpeakerCount, options: ClusteringOptions = ClusteringOptions()) -> np.ndarray:
    """(n, d) unit-length embeddings -> (n,) cluster ids 0..k-1 (ids in no particular order)."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lo = min(count.min, n)
    hi = min(count.max, n)
    if count.num is not None:
        lo = hi = min(count.num, n)
    if hi <= 1 or n < 3:
        return np.zeros(n, dtype=np.int64) if hi <= 1 else _two_or_fewer(embeddings, hi, options)
    x = embeddings.astype(np.float64)
    spectral = _spectral_embedding(x, hi, options.prune_fraction)
    k = lo if lo == hi else _eigengap_count(spectral.eigenvalues, lo, hi)
    labels = _kmeans(spectral.vectors[:, :k], k)
    labels = _refine(x, labels, k, options.refine_iterations)
    if count.num is None:
        labels = _merge_close(x, labels, lo, options)
        labels = _absorb_small(x, labels, lo, options.min_cluster_fraction)
    return _compact(labels)


@dataclass(frozen=True)
class _Spectral:
    eigenvalues: np.ndarray  # (hi + 1,) smallest eigenvalues of the normalised Laplacian
    vectors: np.ndarray  # (n, hi) matching eigenvectors, rows normalised


def _spectral_embedding(x: np.ndarray, hi: int, prune_fraction: float) -> _Spectral:
    n = len(x)
    sim = x @ x.T
    np.fill_diagonal(sim, 1.0)
    keep = max(2, int(np.ceil(prune_fraction * n)))
    # Keep each row's `keep` strongest affinities (binarised), symmetrise: robust to the global
    # offset of cosine similarities between recordings.
    idx = np.argpartition(-sim, kth=min(keep, n - 1), axis=1)[:, :keep]
    aff = np.zeros_like(sim)
    np.put_along_axis(aff, idx, 1.0, axis=1)
    aff = np.maximum(aff, aff.T) * np.clip(sim, 0.0, None)
    deg = aff.sum(axis=1)
    inv = 1.0 / np.sqrt(np.maximum(deg, 1e-12))
    lap = np.eye(n) - inv[:, None] * aff * inv[None, :]
    values, vectors = np.linalg.eigh(lap)
    m = min(hi + 1, n)
    vecs = vectors[:, :hi]
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    return _Spectral(values[:m], vecs)


def _eigengap_count(values: np.ndarray, lo: int, hi: int) -> int:
    gaps = np.diff(values)  # gaps[k - 1] = lambda_k - lambda_{k-1}
    candidates = range(lo, min(hi, len(gaps)) + 1)
    return max(candidates, key=lambda k: gaps[k - 1]) if len(gaps) else lo


def _kmeans(x: np.ndarray, k: int, *, iterations: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(x)
    centres = [x[int(rng.integers(n))]]
    for _ in range(1, k):
        d = np.min([np.sum((x - c) ** 2, axis=1) for c in centres], axis=0)
        total = d.sum()
        centres.append(x[int(rng.choice(n, p=d / total))] if total > 0 else x[int(rng.integers(n))])
    c = np.stack(centres)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        new = np.argmin(((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2), axis=1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for j in range(k):
            if np.any(labels == j):
                c[j] = x[labels == j].mean(axis=0)
    return labels


def centroids(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, d) unit-length mean embedding of each cluster (zeros for an empty one)."""
    c = np.zeros((k, x.shape[1]))
    for j in range(k):
        members = x[labels == j]
        if len(members):
            m = members.mean(axis=0)
            c[j] = m / max(np.linalg.norm(m), 1e-12)
    return c


def _refine(x: np.ndarray, labels: np.ndarray, k: int, iterations: int) -> np.ndarray:
    """Spherical k-means in the embedding space, started from the spectral clusters."""
    for _ in range(iterations):
        c = centroids(x, labels, k)
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def _merge_close(x: np.ndarray, labels: np.ndarray, lo: int, options: ClusteringOptions) -> np.ndarray:
    labels = _compact(labels)
    while True:
        k = int(labels.max()) + 1
        if k <= lo:
            return labels
        c = centroids(x, labels, k)
        sim = c @ c.T
        np.fill_diagonal(sim, -np.inf)
        i, j = np.unravel_index(np.argmax(sim), sim.shape)
        if sim[i, j] < options.merge_similarity:
            return labels
        labels = _compact(np.where(labels == j, i, labels))


def _absorb_small(x: np.ndarray, labels: np.ndarray, lo: int, fraction: float) -> np.ndarray:
    labels = _compact(labels)
    while True:
        k = int(labels.max()) + 1
        sizes = np.bincount(labels, minlength=k)
        smallest = int(np.argmin(sizes))
        if k <= lo or sizes[smallest] >= max(1.0, fraction * len(labels)):
            return labels
        c = centroids(x, labels, k)
        members = labels == smallest
        scores = x[members] @ c.T
        scores[:, smallest] = -np.inf
        labels = labels.copy()
        labels[members] = np.argmax(scores, axis=1)
        labels = _compact(labels)


def _two_or_fewer(x: np.ndarray, hi: int, options: ClusteringOptions) -> np.ndarray:
    """One or two windows: separate them only when they are clearly different voices."""
    if len(x) == 2 and float(x[0] @ x[1]) < options.merge_similarity and hi >= 2:
        return np.array([0, 1])
    return np.zeros(len(x), dtype=np.int64)


def _compact(labels: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.astype(np.int64)
