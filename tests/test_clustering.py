"""Tests of k-means (both backends), choosing k, Sinkhorn-Knopp and feature preprocessing.

Synthetic well-separated blobs; the Sinkhorn example is worked out by hand in a comment.
"""

import math

import numpy as np
import pytest
import torch

import avalanche_ext  # noqa: F401  (stack fixes first)
from avalanche_ext.clustering import (
    balanced_kmeans_assign,
    estimate_num_clusters,
    k_range_edge,
    kmeans,
    preprocess_features,
    searched_k_range,
    sinkhorn_knopp,
)
from avalanche_ext.metrics.clustering import cluster_accuracy


def blobs(num_blobs: int = 5, per_blob: int = 40, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_blobs, dim)) * 10
    labels = np.repeat(np.arange(num_blobs), per_blob)
    return (centers[labels] + rng.normal(size=(labels.size, dim))).astype(np.float32), labels


def test_sklearn_kmeans_recovers_blobs_and_is_deterministic():
    x, y = blobs()
    labels, centroids = kmeans(x, 5, seed=3, backend="sklearn")
    assert labels.shape == (200,) and labels.dtype == np.int64
    assert centroids.shape == (5, 8) and centroids.dtype == np.float32
    assert cluster_accuracy(y, labels) == 1.0
    again, again_centroids = kmeans(x, 5, seed=3, backend="sklearn")
    assert np.array_equal(labels, again) and np.array_equal(centroids, again_centroids)


def test_faiss_kmeans_agrees_with_sklearn():
    pytest.importorskip("faiss")
    for seed in range(3):
        x, y = blobs(seed=seed)
        faiss_labels, faiss_centroids = kmeans(x, 5, seed=seed, backend="faiss")
        sk_labels, _ = kmeans(x, 5, seed=seed, backend="sklearn")
        assert cluster_accuracy(sk_labels, faiss_labels) >= 0.95
        assert cluster_accuracy(y, faiss_labels) >= 0.95
        again, _ = kmeans(x, 5, seed=seed, backend="faiss")
        assert np.array_equal(faiss_labels, again)
        assert faiss_centroids.shape == (5, 8)


def test_kmeans_rejects_bad_arguments():
    x, _ = blobs(per_blob=1)
    with pytest.raises(ValueError, match="cannot make"):
        kmeans(x, 6, backend="sklearn")
    with pytest.raises(ValueError, match="backend"):
        kmeans(x, 2, backend="cuml")


def test_estimate_num_clusters_finds_the_number_of_blobs():
    x, _ = blobs(num_blobs=4, per_blob=30)
    assert estimate_num_clusters(x, 2, 7, seed=0, sample_size=100) == 4
    with pytest.raises(ValueError, match="k_min"):
        estimate_num_clusters(x, 1, 3)


def test_sinkhorn_hand_computed_single_iteration():
    # scores [[1, 0], [0, 0]], eps = 1 -> Q = [[e, 1], [1, 1]]; N / K = 1
    # columns to sum 1: [[e/(e+1), 1/2], [1/(e+1), 1/2]]
    # rows to sum 1: row 0 sum (3e+1) / (2(e+1)) -> [2e/(3e+1), (e+1)/(3e+1)] = [0.593845, 0.406155]
    #                row 1 sum (e+3) / (2(e+1)) -> [2/(e+3), (e+1)/(e+3)] = [0.349756, 0.650244]
    e = math.e
    q = sinkhorn_knopp(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), epsilon=1.0, n_iter=1)
    expected = [[2 * e / (3 * e + 1), (e + 1) / (3 * e + 1)], [2 / (e + 3), (e + 1) / (e + 3)]]
    assert q.tolist()[0] == pytest.approx(expected[0], abs=1e-6)
    assert q.tolist()[1] == pytest.approx(expected[1], abs=1e-6)
    assert expected[0][0] == pytest.approx(0.593845, abs=1e-6)


def test_sinkhorn_balances_columns_and_survives_small_epsilon():
    torch.manual_seed(0)
    scores = (
        torch.nn.functional.normalize(torch.randn(120, 4), dim=1)
        @ torch.nn.functional.normalize(torch.randn(4, 4), dim=1).T
    )
    q = sinkhorn_knopp(scores, epsilon=0.05, n_iter=50)
    assert torch.allclose(q.sum(1), torch.ones(120), atol=1e-5)
    assert torch.allclose(q.sum(0), torch.full((4,), 30.0), atol=0.5)  # N / K = 120 / 4
    huge = sinkhorn_knopp(scores * 1000, epsilon=0.01, n_iter=3)  # exp(1e5) would overflow
    assert torch.isfinite(huge).all()
    assert torch.allclose(huge.sum(1), torch.ones(120), atol=1e-5)


def test_balanced_assignment_splits_a_pool_plain_argmax_gives_to_one_centroid():
    # 100 points at angles 0..90 deg; centroids at 0 and 180 deg: cos(theta) >= -cos(theta), so
    # nearest-centroid puts every point in cluster 0. Balanced: a sizeable share moves to cluster 1
    # after 3 rounds, about half after 30 (column sums converge to N / K).
    angles = np.linspace(0, np.pi / 2, 100)
    features = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    centroids = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert (np.argmax(features @ centroids.T, axis=1) == 0).all()
    labels, probs = balanced_kmeans_assign(features, centroids, epsilon=0.05, n_iter=3)
    assert np.bincount(labels, minlength=2).min() >= 30
    converged, _ = balanced_kmeans_assign(features, centroids, epsilon=0.05, n_iter=30)
    assert np.bincount(converged, minlength=2).min() >= 45
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    # the split follows the geometry: points closer to 0 deg stay in cluster 0
    assert labels[0] == 0 and labels[-1] == 1


def test_preprocess_features():
    x, _ = blobs()
    normalized = preprocess_features(x)
    assert np.allclose(np.linalg.norm(normalized, axis=1), 1.0, atol=1e-5)
    reduced = preprocess_features(x, pca_dim=3, seed=0)
    assert reduced.shape == (200, 3) and reduced.dtype == np.float32
    assert np.allclose(np.linalg.norm(reduced, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(reduced, preprocess_features(torch.from_numpy(x), pca_dim=3, seed=0))
    assert np.array_equal(preprocess_features(x, l2_normalize=False), x)
    with pytest.raises(ValueError, match="pca_dim"):
        preprocess_features(x, pca_dim=9)


def test_k_range_edge_flags_only_the_ends_the_range_imposed():
    assert searched_k_range((10, 40), 25) == (10, 24)  # fewer clusters than samples
    assert k_range_edge(10, 10, 40) == "lower" and k_range_edge(40, 10, 40) == "upper"
    assert k_range_edge(20, 10, 40) is None
    # 2 is no imposed end (the silhouette cannot score one cluster); nor is a one-value range
    assert k_range_edge(2, 2, 30) is None and k_range_edge(5, 5, 5) is None
    # on blobs the estimate inside a wide range is not flagged, a range below the truth is
    x, _ = blobs(5, 40, seed=0)
    low, high = searched_k_range((2, 8), len(x))
    assert k_range_edge(estimate_num_clusters(x, low, high, backend="sklearn"), low, high) is None
    assert k_range_edge(estimate_num_clusters(x, 2, 4, backend="sklearn"), 2, 4) == "upper"
