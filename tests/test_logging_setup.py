"""Process logs: a proxy worker's lines say which worker wrote them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from aeraki.logging_setup import configure


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
@pytest.mark.parametrize("worker", [None, 2])
def test_text_lines_name_the_worker(worker: int | None, capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "text", worker=worker)
    logging.getLogger("aeraki.proxy.server").info("proxy ready")
    line = capsys.readouterr().err.strip()
    assert line.endswith(
        "INFO [worker 2] aeraki.proxy.server: proxy ready"
        if worker
        else "INFO aeraki.proxy.server: proxy ready"
    ), line


@pytest.mark.usefixtures("restore_root_logger")
@pytest.mark.parametrize("worker", [None, 0])
def test_json_records_carry_the_worker(
    worker: int | None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("info", "json", worker=worker)
    logging.getLogger("aeraki.proxy.server").warning("slow")
    entry = json.loads(capsys.readouterr().err)
    assert entry["message"] == "slow"
    assert entry.get("worker") == worker
    assert ("worker" in entry) == (worker is not None)
