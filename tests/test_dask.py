"""Offline jobs on Dask (issue 18, item 4-5): ``darktrigger score`` and ``menu rates`` with
``--dask local:2`` give the same output as in one process — bit for bit — on 1.04M toy
zero-bias crossings in four files; a worker killed mid-job changes nothing; a scheduler
that is not there is a clear error within seconds.

Real parts: a real ``distributed`` LocalCluster of worker processes (started by the CLI, or
here for the kill test), real model files scored by onnxruntime in the workers.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from darktrigger.daq.cli import main
from darktrigger.daq.offline import (
    DaskExecutor,
    ModelRef,
    OfflineJobError,
    plan_chunks,
    score_files,
)
from darktrigger.daq.trigger.menus import example_menu
from darktrigger.models import get_scorer
from darktrigger.replay.generators.toy import ToyGenerator
from darktrigger.replay.readers import open_events
from darktrigger.replay.storage import write_events

pytestmark = pytest.mark.slow  # 69 s on this 2-core machine under a load of 4 (less when idle): three local clusters start

T = TypeVar("T")
R = TypeVar("R")
N_PER_FILE = 260_000  # 1.04M crossings in all
CHUNK = 100_000


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dask")
    gen = ToyGenerator()
    for seed in (1, 2, 3, 4):
        write_events(root / f"zb{seed}.h5", gen.generate("zero_bias", N_PER_FILE, seed=seed))
    pca = get_scorer("pca")
    pca.fit(next(gen.generate("zero_bias", 20_000, seed=9, batch_size=20_000)))
    pca.save(root / "models" / "vae")
    text = example_menu().read_text().replace("vae: {path: models/vae, variant: mu2, backend: onnxruntime}",
                                              "vae: {path: models/vae, backend: onnxruntime}")
    (root / "menu.yaml").write_text(text)
    assert main(["menu", "calibrate", "--menu", str(root / "menu.yaml"), "--zero-bias", str(root / "zb1.h5"),
                 "--out", str(root / "menu_cal.yaml")]) == 0
    return root


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A running scheduler with two worker processes (started as ``--dask local:2`` starts
    one), for the commands' ``--dask ADDRESS``; its workers stay warm between the tests."""
    executor = DaskExecutor("local:2")
    try:
        yield str(executor.cluster.scheduler_address)
    finally:
        executor.close()


def _files(root: Path) -> list[str]:
    return [str(root / f"zb{s}.h5") for s in (1, 2, 3, 4)]


def _columns(path: Path) -> dict[str, np.ndarray]:
    batch = open_events(path).read_all()
    return {name: batch[name] for name in batch.names}


def _same_file(a: Path, b: Path) -> None:
    ca, cb = _columns(a), _columns(b)
    assert sorted(ca) == sorted(cb)
    assert len(ca["event"]) == 4 * N_PER_FILE
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)


def test_the_plan_splits_native_files_into_ranges(setup: Path) -> None:
    chunks = plan_chunks(_files(setup), CHUNK)
    assert len(chunks) == 12  # 3 ranges of at most 100k rows a file
    assert sum(c.stop - c.start for c in chunks) == 4 * N_PER_FILE


def test_score_on_dask_equals_one_process(setup: Path) -> None:
    common = ["score", "--model", str(setup / "models" / "vae"), "--events", *_files(setup),
              "--chunk-events", str(CHUNK), "--no-progress"]
    assert main([*common, "--out", str(setup / "one.h5")]) == 0
    assert main([*common, "--out", str(setup / "dask.h5"), "--dask", "local:2"]) == 0
    _same_file(setup / "one.h5", setup / "dask.h5")
    assert "score/vae" in _columns(setup / "one.h5")


def test_menu_rates_on_dask_equal_one_process(setup: Path, scheduler: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    common = ["menu", "rates", "--menu", str(setup / "menu_cal.yaml"), "--events", *_files(setup),
              "--chunk-events", str(CHUNK)]
    assert main([*common, "--json", str(setup / "one.json")]) == 0
    one_table = capsys.readouterr().out.split("JSON written")[0]
    assert main([*common, "--json", str(setup / "dask.json"), "--dask", scheduler]) == 0
    dask_table = capsys.readouterr().out.split("JSON written")[0]
    one, dask = json.loads((setup / "one.json").read_text()), json.loads((setup / "dask.json").read_text())
    assert one["events"] == dask["events"] == 4 * N_PER_FILE
    assert one == dask  # counts, weighted sums, rates and their errors: the same floats
    assert one_table == dask_table


def test_evaluate_and_calibrate_on_dask_equal_one_process(setup: Path, scheduler: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The models score on the workers, the metrics and thresholds are computed here: the same."""
    model, zb = str(setup / "models" / "vae"), _files(setup)
    common = ["evaluate", "--model", model, "--background", zb[1], "--signal", f"other={zb[2]}",
              "--chunk-events", str(CHUNK)]
    assert main([*common, "--json", str(setup / "ev1.json")]) == 0
    assert main([*common, "--json", str(setup / "ev2.json"), "--dask", scheduler]) == 0
    assert json.loads((setup / "ev1.json").read_text()) == json.loads((setup / "ev2.json").read_text())
    card = setup / "models" / "vae" / "card.json"
    found: list[list[tuple[float, float, int]]] = []
    for dask in ([], ["--dask", scheduler]):
        assert main(["calibrate", "--model", model, "--zero-bias", zb[3], "--rate-khz", "100,1000",
                     "--chunk-events", str(CHUNK), *dask]) == 0
        found.append([(t["rate_khz"], t["threshold"], t["n_above"]) for t in json.loads(card.read_text())["thresholds"]])
    assert len(found[0]) == 2
    assert found[0] == found[1]
    capsys.readouterr()


class _KillAfterFirst(DaskExecutor):
    """Kills one worker process (SIGKILL) as soon as the first chunk's result is in."""

    killed: int | None = None

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str,
            events: Sequence[int] | None = None, progress: bool = True) -> Iterator[R]:
        results = super().map(fn, items, desc=desc, events=events, progress=progress)
        first = next(results)
        pids: dict[str, int] = self.client.run(os.getpid)
        self.killed = sorted(pids.values())[0]
        os.kill(self.killed, signal.SIGKILL)
        yield first
        yield from results


def test_a_worker_killed_mid_job_changes_nothing(setup: Path, scheduler: str) -> None:
    """A worker of the running cluster is killed after the first chunk is in: the scheduler
    runs its tasks again elsewhere, its nanny starts a new one, and the scores are the same."""
    model, files = ModelRef("vae", str(setup / "models" / "vae")), _files(setup)[:2]
    executor = _KillAfterFirst(scheduler)
    try:
        score_files(files, [model], setup / "killed.h5", executor=executor, chunk_events=CHUNK,
                    progress=False)
        deadline = time.monotonic() + 60
        while executor.workers < 2 and time.monotonic() < deadline:  # the nanny starts a new one
            time.sleep(0.2)
        after: dict[str, Any] = executor.client.run(os.getpid)
    finally:
        executor.close()
    assert executor.killed is not None
    assert executor.killed not in after.values()
    assert len(after) == 2
    if not (setup / "one.h5").exists():  # this test run alone
        score_files(_files(setup), [model], setup / "one.h5", chunk_events=CHUNK, progress=False)
    alive, killed = _columns(setup / "one.h5"), _columns(setup / "killed.h5")
    assert sorted(alive) == sorted(killed)
    assert len(killed["event"]) == 2 * N_PER_FILE
    for k in killed:  # the same chunks as the first two files' in one.h5: the same bits
        np.testing.assert_array_equal(alive[k][: 2 * N_PER_FILE], killed[k], err_msg=k)


def test_an_unreachable_scheduler_is_a_clear_error_within_seconds(setup: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    code = main(["score", "--model", str(setup / "models" / "vae"), "--events", _files(setup)[0],
                 "--out", str(setup / "never.h5"), "--dask", "tcp://127.0.0.1:9"])
    assert code != 0
    assert time.monotonic() - t0 < 20
    err = capsys.readouterr().err
    assert "could not reach a Dask scheduler at tcp://127.0.0.1:9" in err
    assert not (setup / "never.h5").exists()


def _exit_process(item: int) -> int:
    os._exit(3)


def test_a_task_that_kills_every_worker_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Dask gives up on a task after its workers died (allowed-failures, 0 here): an error
    naming the task, not a hang or a traceback from the scheduler."""
    import dask
    import distributed  # noqa: F401 (its defaults are in the config before one key is changed)

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        executor = DaskExecutor("local:1")
    try:
        with pytest.raises(OfflineJobError, match=r"^7: the task was running on every worker that died"):
            list(executor.map(_exit_process, [7], desc="doomed", progress=False))
    finally:
        executor.close()
    capsys.readouterr()
