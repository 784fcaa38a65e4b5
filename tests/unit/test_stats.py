import numpy as np

from engine.measure.stats import QUANTILES, quantiles


def test_quantiles_are_numpy_quantiles_at_the_report_levels():
    values = np.arange(101, dtype=np.float64)
    assert quantiles(values) == {"p10": 10.0, "p25": 25.0, "p50": 50.0, "p75": 75.0, "p90": 90.0}
    assert list(quantiles([3.0])) == list(QUANTILES)


def test_no_values_give_every_key_as_none():
    # analyze (complexity) and diversity write the same empty case; the report reads the same keys either way
    assert quantiles([]) == {"p10": None, "p25": None, "p50": None, "p75": None, "p90": None}
    assert quantiles(np.array([])) == dict.fromkeys(QUANTILES)
