"""The ``qserv czar`` / ``qserv up`` timeout options reach the czar's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from qserv.cli import _cluster_spec, _config, _parser


def test_czar_timeouts_parse_postgres_forms(tmp_path: Path) -> None:
    argv = ["czar", "--data-dir", str(tmp_path), "--statement-timeout", "2min", "--worker-timeout", "30"]
    config = _config(_parser().parse_args(argv))
    assert (config.czar.statement_timeout, config.czar.worker_timeout) == (120.0, 30.0)
    default = _config(_parser().parse_args(["czar", "--data-dir", str(tmp_path)]))
    assert (default.czar.statement_timeout, default.czar.worker_timeout) == (0.0, 600.0)


def test_up_passes_timeouts_to_its_czar(tmp_path: Path) -> None:
    spec = _cluster_spec(
        _parser().parse_args(["up", "--data-dir", str(tmp_path), "--statement-timeout", "1500"])
    )
    assert spec.statement_timeout == 1.5


def test_bad_duration_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["up", "--statement-timeout", "soon"])
    assert info.value.code == 2
    assert 'invalid value for parameter "statement_timeout": "soon"' in capsys.readouterr().err
