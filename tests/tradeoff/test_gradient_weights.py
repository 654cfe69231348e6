"""TradeOff.gradient_weights: the linear weights of the policy gradient of S(J), by hand."""

from __future__ import annotations

import pytest
import torch

from moalign.errors import ConfigError
from moalign.tradeoff.tradeoff import TradeOff

NAMES = ["first", "second"]
REWARDS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.6], [0.0, 0.0]])  # means J = (0.4, 0.4)


def test_linear_gives_its_weights():
    trade = TradeOff(NAMES, weights=[0.7, 0.3])
    assert trade.is_linear
    assert trade.gradient_weights(REWARDS).tolist() == pytest.approx([0.7, 0.3])
    assert trade.gradient_weights(REWARDS).tolist() == pytest.approx(trade.linear_weights().tolist())


def test_tchebycheff_is_the_weight_of_its_largest_term():
    # S(J) = -max_k w_k (z_k - J_k); 0.7 (1 - 0.4) > 0.3 (1 - 0.4): dS/dJ = (0.7, 0)
    trade = TradeOff(NAMES, weights=[0.7, 0.3], scalarizer={"name": "tchebycheff", "ideal": [1, 1]})
    assert not trade.is_linear
    assert trade.gradient_weights(REWARDS).tolist() == pytest.approx([0.7, 0.0])
    # the augmented form adds rho w
    trade = TradeOff(NAMES, weights=[0.7, 0.3],
                     scalarizer={"name": "tchebycheff", "ideal": [1, 1], "rho": 0.1})
    assert trade.gradient_weights(REWARDS).tolist() == pytest.approx([0.77, 0.03])
    # an ideal point that makes the second term the larger one moves the weight there
    trade = TradeOff(NAMES, weights=[0.7, 0.3], scalarizer={"name": "tchebycheff", "ideal": [1, 3]})
    assert trade.gradient_weights(REWARDS).tolist() == pytest.approx([0.0, 0.3])


def test_the_online_ideal_point_is_the_running_maximum_of_the_rewards():
    trade = TradeOff(NAMES, weights=[0.5, 0.5], scalarizer="tchebycheff")
    trade.gradient_weights(REWARDS)
    assert trade.scalarizer.ideal.tolist() == [1.0, 1.0]  # not the maximum of the means (0.4)
    assert trade.scalarizer.training  # the mode is restored
    trade.gradient_weights(REWARDS * 0.5)
    assert trade.scalarizer.ideal.tolist() == [1.0, 1.0]  # a running maximum


def test_constraints_fold_in_as_safe_rlhf_does():
    trade = TradeOff(NAMES, weights=[0.7, 0.3], scalarizer={"name": "tchebycheff", "ideal": [1, 1]},
                     constraints={"second": 0.5}, lagrangian_init=0.5)
    # (dS/dJ + lambda) / (1 + lambda) with lambda = 0.5 on 'second'
    assert trade.gradient_weights(REWARDS).tolist() == pytest.approx([0.7 / 1.5, 0.5 / 1.5])


def test_running_normalization_divides_by_the_standard_deviations():
    trade = TradeOff(NAMES, weights=[0.5, 0.5],
                     scalarizer={"name": "normalized_tchebycheff", "ideal": [2.0, 2.0]})
    rewards = torch.tensor([[1.0, 0.0], [0.0, 4.0], [1.0, 0.0], [0.0, 4.0]])
    # normalized: (r - (0.5, 2)) / (0.5, 2); at the means both values are 0 and both terms are
    # 0.5 (2 - 0): a tie, where the subgradient 0.5 w is shared, then divided by the stds
    assert trade.gradient_weights(rewards).tolist() == pytest.approx([0.25 / 0.5, 0.25 / 2.0],
                                                                      rel=1e-5)


def test_sample_statistics_before_a_non_linear_scalarizer_are_refused():
    for spec in ("group_normalized_tchebycheff",
                 {"name": "tchebycheff", "normalize": "batch"}):
        trade = TradeOff(NAMES, scalarizer=spec)
        assert trade.gradient_weight_problems()
        with pytest.raises(ConfigError, match="mean rewards"):
            trade.gradient_weights(REWARDS)
    assert TradeOff(NAMES, scalarizer="group_normalized_linear").gradient_weight_problems() == []
