"""long_tail_counts on hand-computed values and the CIFAR-100-LT image totals of the literature."""

from __future__ import annotations

import pytest

import avalanche_ext  # noqa: F401  (import fixes first)
from avalanche_ext.datasets.long_tail import (
    IMBALANCE_PROFILES,
    long_tail_counts,
    normalize_imbalance_ratio,
    register_imbalance_profile,
)
from avalanche_ext.errors import ConfigError


def test_exp_80_classes_rho_001():
    counts = long_tail_counts(80, 500, "exp", 0.01)
    assert len(counts) == 80
    assert counts[0] == 500 and counts[-1] == 5
    # 500 * 0.01 ** (1/79) = 471.69; 500 * 0.01 ** (40/79) = 48.56; 500 * 0.01 ** (78/79) = 5.30
    assert counts[1] == 471 and counts[40] == 48 and counts[78] == 5
    assert all(a >= b for a, b in zip(counts, counts[1:]))


@pytest.mark.parametrize("rho, total", [(0.01, 10847), (0.02, 12608), (0.1, 19573)])
def test_exp_matches_cifar100_lt_totals(rho, total):
    # The training-set sizes of CIFAR-100-LT reported since LDAM (Cao et al., 2019).
    assert sum(long_tail_counts(100, 500, "exp", rho)) == total


def test_step_half_rho_01():
    assert long_tail_counts(80, 500, "step", 0.1, 0.5) == [500] * 40 + [50] * 40


def test_step_fraction_and_ratio():
    # mu = 0.25 of 10 classes -> floor(2.5) = 2 head classes; 200 * 0.5 = 100
    assert long_tail_counts(10, 200, "step", 0.5, 0.25) == [200] * 2 + [100] * 8
    assert long_tail_counts(4, 10, "step", 0.5, 1.0) == [10] * 4
    assert long_tail_counts(4, 10, "step", 0.5, 0.0) == [5] * 4


@pytest.mark.parametrize("profile", sorted(IMBALANCE_PROFILES))
def test_ratio_one_is_balanced(profile):
    assert long_tail_counts(7, 30, profile, 1.0) == [30] * 7


def test_never_below_one_image():
    assert long_tail_counts(5, 10, "exp", 0.01)[-1] == 1
    assert long_tail_counts(5, 10, "step", 0.01) == [10, 10, 1, 1, 1]


def test_single_class():
    assert long_tail_counts(1, 42, "exp", 0.01) == [42]


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(imbalance_type="linear"), "imbalance_type"),
        (dict(imbalance_ratio=0.0), "imbalance_ratio"),
        (dict(imbalance_ratio=-100), "imbalance_ratio"),
        (dict(imbalance_ratio="100"), "imbalance_ratio"),
        (dict(step_fraction=1.5), "step_fraction"),
    ],
)
def test_errors_name_the_key(kwargs, key):
    args = dict(num_classes=10, n_max=100, imbalance_type="exp", imbalance_ratio=0.1)
    args.update(kwargs)
    with pytest.raises(ConfigError, match=f"scenario.{key}"):
        long_tail_counts(**args)


@pytest.mark.parametrize("papers, documents", [(100, 0.01), (50, 0.02), (10, 0.1), (2, 0.5)])
def test_both_spellings_of_the_ratio_are_the_same_tail(papers, documents):
    for profile in ("exp", "step"):
        assert long_tail_counts(100, 500, profile, papers) == long_tail_counts(
            100, 500, profile, documents
        )
    assert normalize_imbalance_ratio(papers) == pytest.approx(documents)


@pytest.mark.parametrize("rho, total", [(100, 10847), (50, 12608), (10, 19573)])
def test_papers_spelling_gives_the_published_totals(rho, total):
    assert sum(long_tail_counts(100, 500, "exp", rho)) == total


def test_a_registered_profile_is_usable_by_name():
    @register_imbalance_profile("_test_linear")
    def linear(num_classes, n_max, ratio, step_fraction):
        return [
            round(n_max - (n_max - n_max * ratio) * c / (num_classes - 1))
            for c in range(num_classes)
        ]

    try:
        assert long_tail_counts(3, 100, "_test_linear", 10) == [100, 55, 10]
    finally:
        IMBALANCE_PROFILES.pop("_test_linear")
