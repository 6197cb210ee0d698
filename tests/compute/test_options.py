"""ExecutorConfig: where blocks run, validated on construction, never part of a run."""

import pytest

from kipd import compute, runs


@pytest.mark.parametrize(
    "options, message",
    [
        ({"executor": "spark"}, "--executor local"),
        ({"workers": 2}, "add --executor ray"),
        ({"ray_address": "auto"}, "add --executor ray"),
        ({"executor": "ray", "workers": 0}, "--workers 2"),
    ],
)
def test_bad_options_name_the_fix(options, message):
    with pytest.raises(ValueError, match=message):
        compute.ExecutorConfig(**options)


def test_local_executor_by_default():
    with compute.ExecutorConfig().make() as executor:
        assert executor.name == "local" and executor.workers_alive >= 1


def test_runtime_options_of_old_run_configs_are_ignored():
    """kipd 0.1 recorded the executor in config.json; such a config still loads."""
    saved = {**runs.KipConfig().to_json(), "executor": "ray", "workers": 2, "ray_address": None}
    from kipd.runs._config import config_from_json

    config = config_from_json(saved)
    assert config == runs.KipConfig()
