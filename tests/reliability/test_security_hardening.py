"""Scenarios 12-14: the hardening items a security review named, each against the real thing.

12: the embedded PostgreSQL started by `tgms db url` (as root, and as an ordinary user) with a data
directory too long for a socket in its cluster: every folder and file it makes is its owner's alone, no
parent is widened, no TCP port is open, and other uids are refused at the socket. 13: titles,
usernames and errors carrying Rich markup, control characters, bidi marks and a 500-character title
driven through every screen of the live TUI under Pilot. 14: weak ADMIN_API_KEY / TGMS_WEBHOOK_SECRET
values refused at the start of the webhook process, warned about by `tgms doctor`, and every
configured secret, whatever its length, redacted from a TGMS process's log lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from telegram_sim.server import SimServer
from tests.client.test_doctor import run_doctor
from tests.private_pg import long_dir, mode_of, needs_root, postmaster_of, private_base, psql, started, system_user
from tests.support import simulator_fixtures
from tests.tui.hostile import TITLES, walk_every_screen
from tests.webhook.process import run_webhook_command
from tgms_tui.backend.embedded import SOCKET_NAME

from .results import ScenarioFactory

REPO = Path(__file__).resolve().parents[2]

sim_server, sim = simulator_fixtures(bots=2, seed=14)


# ---------------------------------------------------------------------------------------- 12


@needs_root
@pytest.mark.slow
def test_embedded_postgres_is_private(scenario: ScenarioFactory) -> None:
    rec = scenario(
        "12", "Hardening: the embedded PostgreSQL is private",
        injected="`tgms db url` as root and as `nobody`, each with a 150-character TGMS_DATA_DIR (too long for a "
        "socket in the cluster folder) under parents of modes 0711 and 0750; then `psql` as other uids (`nobody` "
        "against root's server, `daemon` against nobody's)",
        checked="data dir, cluster, run folder and socket folder 0700 (0710 for root's data dir and the folder TGMS "
        "made for it, which the server user must pass), owned by the right uid; keep-running 0600; /tmp and the "
        "parents keep their modes; listen_addresses empty and no inet socket of the postmaster; each other uid "
        "refused with Permission denied at the socket while the owner gets in",
    )  # fmt: skip
    modes: set[str] = set()
    checked = refused = 0
    with private_base() as base:
        middle = base / "middle"
        middle.mkdir(mode=0o750)  # root's group only: the server user passes (it keeps root's groups)
        data = long_dir(middle)
        with started(data) as url:
            server = system_user("pgserver")
            socket_dir = Path(url.rsplit("host=", 1)[1])
            assert socket_dir.parent == Path("/tmp") and len(str(socket_dir / SOCKET_NAME)) < 100
            seen = {
                data: (0o710, None), data.parent: (0o710, None), data / "pgdata": (0o700, server.pw_uid),
                data / "run": (0o700, None), socket_dir: (0o700, server.pw_uid),
                socket_dir / SOCKET_NAME: (0o700, None),
            }  # fmt: skip
            for path, (want, uid) in seen.items():
                assert mode_of(path) == want, path
                assert uid is None or os.stat(path).st_uid == uid, path
                modes.add(f"{want:04o}")
                checked += 1
            assert not (data / "keep-running").stat().st_mode & 0o077
            assert (mode_of(Path("/tmp")), mode_of(base), mode_of(middle)) == (0o1777, 0o711, 0o750)
            with psycopg.connect(url) as conn:
                assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
            assert postmaster_of(data).net_connections(kind="inet") == []
            intruder = psql("nobody", url)
            assert intruder.returncode != 0 and "Permission denied" in intruder.stderr, intruder
            refused += 1

    with private_base() as base:
        owner = system_user("nobody")
        system_user("daemon")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        data = long_dir(base)
        with started(data, user="nobody") as url:
            socket_dir = Path(url.rsplit("host=", 1)[1])
            for folder in (data, data / "pgdata", data / "run", socket_dir):
                assert (mode_of(folder), os.stat(folder).st_uid) == (0o700, owner.pw_uid), folder
                checked += 1
            assert mode_of(data / "keep-running") == 0o600
            modes.add("0600")
            checked += 1
            assert psql("nobody", url).stdout.strip() == "postgres"  # its owner gets in
            intruder = psql("daemon", url)
            assert intruder.returncode != 0 and "Permission denied" in intruder.stderr, intruder
            refused += 1
    rec.measure("data dir length", len(str(data)))
    rec.measure("paths checked", checked)
    rec.measure("modes seen", "/".join(sorted(modes)))
    rec.measure("parents widened", 0)
    rec.measure("TCP listeners", 0)
    rec.measure("other uids refused", refused)


# ---------------------------------------------------------------------------------------- 13


@pytest.mark.slow
async def test_hostile_text_in_every_screen(db_url: str, scenario: ScenarioFactory) -> None:
    rec = scenario(
        "13", "Hardening: hostile text from Telegram in the TUI",
        injected=f"{len(TITLES)} group titles (`[/]`, `[@click=app.quit]`, ESC and C1 sequences, an RTL override, "
        "500 characters of `[bold]L…`), a username and worker host with markup and bidi marks, one error text "
        "with all of them in jobs, workers, join requests, kicks, broadcasts and deliveries; then every pane, its "
        "filter, the phase and confirmation dialogs, a notice, group and job detail, the composer and help driven "
        "under Pilot",
        checked="the app stays up (no MarkupError, no action run); each string is on screen as its characters, "
        "control and bidi characters made visible, none reaching the terminal; the long title cut to its column",
    )  # fmt: skip
    walk = await walk_every_screen(db_url)
    assert walk.screens >= {"PhaseScreen", "ConfirmScreen", "GroupDetailScreen", "JobDetailScreen", "ComposerScreen"}
    rec.measure("hostile strings seeded", len(TITLES) + 3)  # + the username, the worker host, the error
    rec.measure("screens driven", len(walk.screens))
    rec.measure("strings checked on screen", walk.strings)
    rec.measure("crashes", 0)


# ---------------------------------------------------------------------------------------- 14

WEAK_AT_START = {
    "ADMIN_API_KEY": ["Short-admin-key", "k" * 8, "k" * 257, "admin-key\x01with-control"],
    "TGMS_WEBHOOK_SECRET": ["Short-hook-secr", "has space and is long", "exclaim!secret-value", "é" * 20, "w" * 264],
}
# Accepted by the configuration (16+ characters of the right alphabet) but weak: doctor warns.
WEAK_FOR_DOCTOR = [
    ({"ADMIN_API_KEY": "k" * 40, "TGMS_WEBHOOK_SECRET": "ab" * 10}, ["ADMIN_API_KEY uses only 1 different",
                                                                     "TGMS_WEBHOOK_SECRET uses only 2 different"]),
    ({"ADMIN_API_KEY": "Same-Kq3vT9pX2mW8", "TGMS_WEBHOOK_SECRET": "Same-Kq3vT9pX2mW8"},
     ["TGMS_WEBHOOK_SECRET is the same as ADMIN_API_KEY"]),
]  # fmt: skip
# Logged by a TGMS process: the configured secrets (two bot tokens, a 16- and a 256-character secret)
# and short ones a caller registered; each as a word, in a URL, in an exception.
TOKENS = ["123456789:AAE" + "t" * 32, "987654321:AAF" + "u" * 32]
CONFIGURED = {"BOT_TOKEN": TOKENS[0], "TGMS_BOT_TOKEN": TOKENS[1], "ADMIN_API_KEY": "Kq3_vT9-pX2mW8zR",
              "TGMS_WEBHOOK_SECRET": "Zr8-Lp" * 42 + "Zr8L"}  # fmt: skip
SHORT = ["q7", "Zx-9", "wq3Zr8Lp"]
LOGGER = """
import logging, os, sys
from tgms_tui.backend.bootstrap import configure_logging
from tgms_tui.backend.config import load_settings
from tgms_tui.backend.redaction import register_secrets
settings = load_settings(os.environ, dotenv=None)
configure_logging("INFO", settings.secrets())
register_secrets(os.environ["EXTRA"].split())
log = logging.getLogger("tgms.probe")
for secret in settings.secrets() + os.environ["EXTRA"].split():
    log.info("key=%s (%s) url=https://h/%s/getMe?k=%s", secret, secret, secret, secret)
    try:
        raise RuntimeError(f"refused {secret}")
    except RuntimeError:
        log.exception("failed with %s", secret)
"""


def _standalone(secret: str, text: str) -> bool:
    return re.search(f"(?<![A-Za-z0-9_-]){re.escape(secret)}(?![A-Za-z0-9_-])", text) is not None


@pytest.mark.slow
def test_weak_secrets_refused_warned_and_redacted(
    sim: SimServer, db_url: str, tmp_path: Path, scenario: ScenarioFactory
) -> None:
    weak = sum(map(len, WEAK_AT_START.values()))
    rec = scenario(
        "14", "Hardening: weak secrets",
        injected=f"`python -m webhook_server` started with {weak} weak values (shorter than 16 or longer than 256 "
        "characters, a control character, spaces, `!` or non-ASCII in TGMS_WEBHOOK_SECRET); `tgms doctor` with "
        "accepted but weak ones (one or two distinct characters, the same value for both); a TGMS process logging "
        f"each of {len(CONFIGURED) + len(SHORT)} secrets (two bot tokens, 16 and 256 characters, and registered "
        "ones of 2, 4 and 8) as words, in URLs and in exceptions",
        checked="each start exits 2 with one line naming the variable and never the value; doctor prints a WARN "
        "line naming each weakness, no value; no secret stands in any log line, as `***` instead",
    )  # fmt: skip
    refused = 0
    for variable, values in WEAK_AT_START.items():
        for value in values:
            done = run_webhook_command(db_url, tmp_path, **{variable: value})
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2 and len(lines) == 1, (variable, done.stderr)
            assert variable in lines[0] and "Traceback" not in done.stderr
            assert value not in done.stderr + done.stdout
            refused += 1

    main, tgms = sim.bots
    base = {"DATABASE_URL": db_url, "BOT_TOKEN": main.token, "TGMS_BOT_TOKEN": tgms.token,
            "TELEGRAM_API_BASE": sim.base_url}  # fmt: skip
    warnings = 0
    for env, expected in WEAK_FOR_DOCTOR:
        done = run_doctor({**base, **env}, tmp_path)
        output = done.stdout + done.stderr
        for line in expected:
            assert f"WARN config: {line}" in output, output
            warnings += 1
        assert not any(value in output for value in env.values()), output

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "BOT_TOKEN", "ADMIN_API_KEY"))}
    done = subprocess.run(
        [sys.executable, "-c", LOGGER], cwd=REPO, env={**env, **CONFIGURED, "EXTRA": " ".join(SHORT)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    secrets = [*CONFIGURED.values(), *SHORT]
    assert len([line for line in lines if "tgms.probe" in line]) == 2 * len(secrets)
    assert not [s for s in secrets if _standalone(s, done.stderr)]
    assert not [s for s in secrets if len(s) >= 8 and s in done.stderr]
    assert done.stderr.count("***") >= 6 * len(secrets)
    rec.measure("weak values refused at start", refused)
    rec.measure("doctor warnings", warnings)
    rec.measure("secrets redacted", len(secrets))
    rec.measure("shortest / longest (chars)", f"{min(map(len, secrets))} / {max(map(len, secrets))}")
    rec.measure("log lines checked", len(lines))
    rec.measure("values shown", 0)
