"""Kubernetes client errors belong to the project's one exception tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from aeraki import errors
from aeraki.control.sources.kubeclient import ApiError, ConfigError, load_config


def test_an_unreadable_kubeconfig_is_a_project_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(errors.ConfigError, match="cannot read kubeconfig"):
        load_config(missing)


def test_api_errors_are_aeraki_errors() -> None:
    assert issubclass(ApiError, errors.AerakiError)
    assert issubclass(ConfigError, errors.ConfigError)
