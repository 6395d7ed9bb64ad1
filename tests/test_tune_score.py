"""The install gate of ``edge-agent tune``: an adapter is installed only if it is strictly
better (more right answers) and proposes no more wrong commands than the model in use."""

from __future__ import annotations

import pytest

from agent.tune.evaluate import Score


def score(right: int, total: int = 60, wrong: int = 0) -> Score:
    return Score({"held-out": right}, {"held-out": total}, [0.1] * total, wrong)


@pytest.mark.parametrize(("after", "before", "better"), [
    (score(40), score(30), True),
    (score(30), score(30), False),  # a tie is not better
    (score(29), score(30), False),
    (score(40, wrong=1), score(30, wrong=1), True),  # no more wrong commands: fine
    (score(40, wrong=2), score(30, wrong=1), False),  # more right, but more wrong commands
    (score(40, wrong=0), score(40, wrong=3), False),  # fewer wrong commands alone is no gain
    (score(1), score(0), True),
    (score(0, total=0), score(0, total=0), False),  # nothing measured
])
def test_better_than(after: Score, before: Score, better: bool) -> None:
    assert after.better_than(before) is better


def test_right_answers_count_across_sets() -> None:
    a = Score({"held-out": 50, "other bands": 10}, {"held-out": 60, "other bands": 60})
    b = Score({"held-out": 30, "other bands": 29}, {"held-out": 60, "other bands": 60})
    assert a.correct == 60 and b.correct == 59
    assert a.better_than(b) and not b.better_than(a)
    assert a.accuracy == pytest.approx(0.5)
    assert a.line() == "50.0% [held-out 83.3% (60), other bands 16.7% (60)]"
