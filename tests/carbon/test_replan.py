"""Re-planning: the rule on hand-made forecasts, deadlines, the runtime step agreeing with the
evaluation's replay, and no look ever using data from after it."""

import numpy as np
import pytest

from flowcache.carbon.decision import Job
from flowcache.carbon.forecasting.ensemble import Ensemble
from flowcache.carbon.forecasting.seasonal import HourOfDayMean, PerfectForesight, predict
from flowcache.carbon.providers.emcsv import ElectricityMapsCSV
from flowcache.carbon.replan import remaining, replan_step, replan_with_provider
from flowcache.carbon.replay import defer_hourly, defer_hourly_replan, replan_starts
from flowcache.carbon.series import IntensitySeries
from flowcache.errors import ProviderUnavailable

H = 3600.0
T0 = 1_654_041_600.0  # 2022-06-01T00:00Z


@pytest.fixture(scope="module")
def de():
    series = ElectricityMapsCSV().load("DE")
    return series.values[: 24 * 45].copy(), series.start


def test_a_fresher_forecast_can_start_a_deferred_job_early():
    # at 0 the forecast says slot 2 is cheapest; at 1 the new forecast says now is best
    f = np.array([[5.0, 4.0, 1.0, 3.0],
                  [2.0, 3.0, 4.0, 4.0],
                  [9.0, 9.0, 9.0, 9.0],
                  [9.0, 9.0, 9.0, 9.0]])
    assert replan_starts(np.arange(4), f, 2)[0] == 1
    assert np.argmin(f[0, :3]) == 2  # planning once would have waited for slot 2


def test_the_latest_start_holds_whatever_the_forecasts_say():
    n, delay = 30, 5
    ever_later = np.tile(-np.arange(delay + 1.0), (n, 1))  # always "later is cheaper"
    starts = replan_starts(np.arange(n), ever_later, delay)
    np.testing.assert_array_equal(starts, np.arange(n) + delay)
    with pytest.raises(ValueError, match="consecutive"):
        replan_starts(np.array([0, 2]), ever_later[:2], delay)


def test_the_oracle_gains_nothing_from_replanning(de):
    v, _ = de
    origins = np.arange(24 * 8, v.size - 25)
    f = PerfectForesight().predict_block(v, origins, 9, 24)
    once = defer_hourly(v, origins, f, 8).saving
    assert defer_hourly_replan(v, origins, f, 8).saving == pytest.approx(once)


def one_hour(earliest: float, delay: float) -> Job:
    return Job(duration=H, earliest=earliest, home="a", energy_kwh=1.0, max_delay=delay)


def test_the_runtime_step_agrees_with_the_replay(de):
    v, start = de
    delay = 8
    origins = np.arange(24 * 20, 24 * 22 + delay + 1)
    f = HourOfDayMean().predict_block(v, origins, delay + 1, 24)
    expected = replan_starts(origins, f, delay)
    for i in range(24 * 2):
        job = one_hour(start + origins[i] * H, delay * H)
        for s in range(i, i + delay + 1):
            now = start + origins[s] * H
            forecast = IntensitySeries(now, H, f[s], region="a")
            step = replan_step(job, {"a": forecast}, now)
            if step.commit:
                break
            assert step.next_check == now + H
        assert step.commit
        assert step.start == start + expected[i] * H
        assert step.decision.delay == step.start - job.earliest


def test_no_look_uses_data_from_after_it(de):
    v, start = de
    delay, model = 8, Ensemble()
    origins = np.arange(24 * 30, 24 * 30 + 12 + delay + 1)
    f = predict(model, v, origins, delay + 1, 24, start=start)
    starts = replan_starts(origins, f, delay)
    for i in (0, 5, 11):
        poisoned = v.copy()
        poisoned[starts[i]:] = 1e6  # everything from the chosen start on is unknown
        looks = np.arange(origins[i], starts[i] + 1)
        again = predict(model, poisoned, looks, delay + 1, 24, start=start)
        np.testing.assert_allclose(again, f[i:i + looks.size], rtol=1e-9)


def test_remaining_keeps_the_window_and_a_late_look_runs_now():
    job = one_hour(T0, 8 * H)
    later = remaining(job, T0 + 3 * H)
    assert later.earliest == T0 + 3 * H
    assert later.latest_start == job.latest_start
    with_deadline = Job(duration=H, earliest=T0, home="a", energy_kwh=1.0, deadline=T0 + 6 * H)
    assert remaining(with_deadline, T0 + 2 * H).latest_start == T0 + 5 * H
    flat = IntensitySeries(T0, H, np.r_[np.full(9, 5.0), 1.0], region="a")
    late = replan_step(job, {"a": flat}, T0 + 9 * H)
    assert late.commit
    assert late.start == T0 + 9 * H


class Broken:
    name = "broken"
    signal = "average"

    def forecast(self, region, start, end):
        raise ProviderUnavailable("broken", "down")

    history = forecast


def test_without_data_a_waiting_job_commits_to_running_now_at_home():
    step = replan_with_provider(one_hour(T0, 8 * H), Broken(), T0 + 2 * H)
    assert step.commit
    assert step.start == T0 + 2 * H
    assert step.decision.fallback
    assert step.next_check is None
