"""Speaker clustering of window embeddings: spectral clustering on a pruned cosine affinity, refined
by spherical k-means in the embedding space; the number of speakers given, bounded, or estimated
as the most clusters that are all distinct voices.

numpy only; deterministic (k-means++ from a fixed seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omoai_asr.diarization.types import DiarizationOptions


@dataclass(frozen=True)
class ClusteringOptions:
    prune_fraction: float = 0.15  # neighbours each window keeps in the affinity graph
    distinct_similarity: float = 0.86  # two centroids at least this similar are one voice (estimated counts)
    min_cluster_fraction: float = 0.04  # an estimated speaker holds at least this share of the windows
    min_cluster_windows: int = 4  # ... and at least this many (~3 s of speech): fewer make a noisy centroid
    refine_iterations: int = 5
    # Also try k+1..k+n clusters merged back to k (_partition). 0 (off) measured best with estimated
    # counts: 2 raised DER in 6 of 9 corpus rows (docs/benchmarks.md, "Over-partitioning").
    over_partition: int = 0


def cluster(
    embeddings: np.ndarray, count: DiarizationOptions, options: ClusteringOptions = ClusteringOptions()
) -> np.ndarray:
    """(n, d) unit-length embeddings -> (n,) cluster ids 0..k-1 (ids in no particular order).

    ``count``'s speaker numbers (validated there, once): with ``num_speakers`` given, spectral clustering into that many. Estimated: the largest k in
    ``[min, max]`` whose clusters are all distinct voices (every pair of centroids less similar
    than ``distinct_similarity``, tuned on the Festival corpus: one voice's half-recordings are
    >= 0.92 alike, two voices <= 0.87) and none of them a sliver; ``min`` when none is.
    """
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = min(count.min_speakers, n), min(count.max_speakers, n)
    if count.num_speakers is not None:
        lo = hi = min(count.num_speakers, n)
    if hi <= 1:
        return np.zeros(n, dtype=np.int64)
    if n < 3:
        return _two_or_fewer(embeddings, hi, options)
    x = embeddings.astype(np.float64)
    spectral = _spectral_embedding(x, hi + options.over_partition, options.prune_fraction)
    if lo == hi:
        return _compact(_partition(x, spectral, hi, options))
    for k in range(hi, lo, -1):
        labels = _compact(_partition(x, spectral, k, options))
        if int(labels.max()) + 1 < k:
            continue
        c = centroids(x, labels, k)
        sim = c @ c.T
        np.fill_diagonal(sim, -1.0)
        smallest = np.bincount(labels).min()
        big_enough = smallest >= max(options.min_cluster_windows, options.min_cluster_fraction * n)
        if sim.max() < options.distinct_similarity and big_enough:
            return labels
    return _compact(_partition(x, spectral, lo, options)) if lo > 1 else np.zeros(n, dtype=np.int64)


def _partition(x: np.ndarray, spectral: _Spectral, k: int, options: ClusteringOptions) -> np.ndarray:
    """k-means into k clusters on the spectral coordinates, refined by spherical k-means on the
    embeddings. With ``options.over_partition`` n > 0, also into k+1..k+n clusters merged down to k
    by closest centroids (:func:`_merge_to`), and the best separated of the n+1 answers is kept:
    over-partitioning can let a speaker with few windows keep a cluster of its own where a direct
    k-way split would halve the talkative speaker. Off by default (0: only the k-way split), as
    measured on the corpus."""
    best: tuple[float, np.ndarray] | None = None
    for extra in range(options.over_partition + 1):
        m = k + extra
        if m > spectral.vectors.shape[1] or m > len(x):
            break
        vecs = spectral.vectors[:, :m]
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        labels = _merge_to(x, _compact(_refine(x, _kmeans(vecs, m), m, options.refine_iterations)), k)
        c = centroids(x, labels, int(labels.max()) + 1)
        sim = c @ c.T
        np.fill_diagonal(sim, -1.0)
        score = float(sim.max()) if len(c) > 1 else -1.0
        if best is None or score < best[0]:
            best = (score, labels)
    assert best is not None
    return best[1]


def _merge_to(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Join the two clusters with the most similar centroids until ``k`` remain."""
    while int(labels.max()) + 1 > k:
        c = centroids(x, labels, int(labels.max()) + 1)
        sim = c @ c.T
        np.fill_diagonal(sim, -np.inf)
        i, j = np.unravel_index(np.argmax(sim), sim.shape)
        labels = _compact(np.where(labels == j, i, labels))
    return labels


@dataclass(frozen=True)
class _Spectral:
    vectors: np.ndarray  # (n, hi) eigenvectors of the smallest eigenvalues of the normalised Laplacian


def _spectral_embedding(x: np.ndarray, hi: int, prune_fraction: float) -> _Spectral:
    """Eigenvectors of the normalised Laplacian of the pruned affinity. One (n, n) matrix is
    rewritten in place (plus one temporary at a time): 3000 windows stay within a few 72 MB arrays."""
    n = len(x)
    sim = x @ x.T  # (n, n) cosine similarities
    np.fill_diagonal(sim, 1.0)
    keep = max(2, int(np.ceil(prune_fraction * n)))
    # Keep each row's `keep` strongest affinities, symmetrise: robust to the global offset of
    # cosine similarities between recordings.
    if keep < n:
        kth = -np.partition(-sim, keep - 1, axis=1)[:, keep - 1]  # each row's keep-th largest
        mask = sim >= kth[:, None]
        mask |= mask.T
    else:
        mask = np.ones_like(sim, dtype=bool)
    np.clip(sim, 0.0, None, out=sim)
    sim *= mask
    del mask
    inv = 1.0 / np.sqrt(np.maximum(sim.sum(axis=1), 1e-12))
    sim *= inv[:, None]
    sim *= inv[None, :]
    np.negative(sim, out=sim)
    sim[np.diag_indices(n)] += 1.0  # L = I - D^-1/2 A D^-1/2
    _, vectors = np.linalg.eigh(sim)  # eigenvalues ascending
    return _Spectral(vectors[:, : min(hi, n)])


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


def _two_or_fewer(x: np.ndarray, hi: int, options: ClusteringOptions) -> np.ndarray:
    """One or two windows: separate them only when they are clearly different voices."""
    if len(x) == 2 and float(x[0] @ x[1]) < options.distinct_similarity and hi >= 2:
        return np.array([0, 1])
    return np.zeros(len(x), dtype=np.int64)


def _compact(labels: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.astype(np.int64)
