"""The demo's process supervisor with real children (`tgms sim`, which needs no database): a busy
port does not stop it, a child that dies is reported once, a child it stops is not reported, and
nothing it started outlives `stop_all`."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo.helpers import assert_nothing_left
from tgms_tui.demo import processes as demo_processes
from tgms_tui.demo.processes import Child, Supervisor
from tgms_tui.demo.traffic import plan_groups


def _sim_args(port: int) -> list[str]:
    return ["sim", "--port", str(port), "--groups", "0"]


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    env = {k: v for k, v in os.environ.items() if k not in ("BOT_TOKEN", "TGMS_BOT_TOKEN")}
    env["BOT_TOKEN"] = "123456789:AAFakeTokenOfTheDemoSupervisorTest01"
    sup = Supervisor(tmp_path / "logs", env, tmp_path)
    yield sup
    sup.stop_all(grace=5.0)


def test_a_taken_port_makes_it_start_again_on_another(supervisor: Supervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = iter([taken])
        real_free_port = demo_processes.free_port
        monkeypatch.setattr(demo_processes, "free_port", lambda: next(ports, None) or real_free_port())
        child = supervisor.start_http("sim", _sim_args, "/_sim/health", timeout=30)
    assert child.port not in (None, taken)
    assert child.process.poll() is None
    assert [c.name for c in supervisor.children] == ["sim"]  # the failed first try is not kept
    supervisor.stop_all(grace=5.0)
    assert child.port is not None
    assert_nothing_left([child.pid], [child.port], Path("/nonexistent-demo-dir"))


def test_a_child_that_dies_is_reported_once_and_a_stopped_one_is_not(supervisor: Supervisor) -> None:
    reported: list[tuple[str, int]] = []
    seen = threading.Event()

    def on_exit(child: Child, code: int) -> None:
        reported.append((child.name, code))
        seen.set()

    supervisor.on_exit = on_exit
    alive = supervisor.start_http("sim", _sim_args, "/_sim/health", timeout=30)
    supervisor.start("broken", ["worker"])  # no pool given: argparse exits with code 2
    assert seen.wait(30)
    assert reported == [("broken", 2)]
    assert [c.name for c in supervisor.dead()] == ["broken"]
    supervisor.stop(["sim"], grace=5.0)
    supervisor.stop_all(grace=5.0)
    assert reported == [("broken", 2)]
    assert alive.process.poll() is not None


def test_the_simulated_world_is_the_same_for_a_seed_and_varied() -> None:
    first, again, other = plan_groups(25, 1), plan_groups(25, 1), plan_groups(25, 2)
    assert first == again
    assert first != other
    kinds = [g.type for g in first]
    assert kinds.count("group") >= 2 and kinds.count("supergroup") >= 10
    assert len({g.size for g in first}) >= 5
    assert len({g.title for g in first}) == 25
    small = plan_groups(4, 7)
    assert [g.type for g in small].count("group") >= 2  # the script always has a basic group to upgrade
