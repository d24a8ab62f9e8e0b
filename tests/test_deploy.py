"""The deployment files in deploy/ stay true to the code: every unit starts a real `tgms` subcommand
with options it accepts, the environment example names only variables TGMS reads (and all of
them), the proxies expose exactly the routes the webhook server has, and systemd accepts the units
(`systemd-analyze verify`, where it is installed).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tgms_tui.backend.config import ENV_NAMES, Settings, load_settings, read_dotenv
from tgms_tui.commands.cli import build_parser
from webhook_server.app import create_app

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ENV_EXAMPLE = DEPLOY / "tgms.env.example"
NGINX = DEPLOY / "nginx" / "tgms.conf"
CADDY = DEPLOY / "caddy" / "Caddyfile"
# Telegram's published webhook source ranges (https://core.telegram.org/bots/webhooks).
TELEGRAM_RANGES = {"149.154.160.0/20", "91.108.4.0/22"}
WORKER_INSTANCES = ("main", "tgms")
TGMS = Path(sys.executable).with_name("tgms")


def directives(unit: Path) -> dict[str, list[str]]:
    """KEY -> values of a unit file (keys may repeat; comments and section headers dropped)."""
    found: dict[str, list[str]] = {}
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def instances(unit: Path) -> list[tuple[str, list[str]]]:
    """(instance name, ExecStart argv) for a unit; a template once per worker pool."""
    (exec_start,) = directives(unit)["ExecStart"]
    if "@" in unit.name:
        return [(unit.name.replace("@", f"@{i}"), shlex.split(exec_start.replace("%i", i))) for i in WORKER_INSTANCES]
    return [(unit.name, shlex.split(exec_start))]


def test_there_are_units_for_the_webhook_and_each_worker() -> None:
    names = {name for unit in UNITS for name, _ in instances(unit)}
    assert {"tgms-webhook.service", "tgms-worker@main.service", "tgms-worker@tgms.service"} <= names


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_starts_a_real_tgms_subcommand(unit: Path) -> None:
    for name, argv in instances(unit):
        assert Path(argv[0]).name == "tgms", f"{name}: ExecStart runs {argv[0]}, not tgms"
        args = argv[1:]
        # The arguments as `tgms` parses them: unknown options or a bad pool fail here.
        parser, command = build_parser(args[0])
        assert command is not None, f"{name}: {args[0]!r} is not a tgms subcommand"
        parser.parse_args(args)
        done = subprocess.run([str(TGMS), *args, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{name}: tgms {' '.join(args)} --help failed: {done.stderr}"
        assert "usage: tgms" in done.stdout


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_is_hardened_and_reads_the_environment_file(unit: Path) -> None:
    d = directives(unit)
    expected = {
        "EnvironmentFile": ["/etc/tgms/tgms.env"],
        "User": ["tgms"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "CapabilityBoundingSet": [""],
        "SystemCallFilter": ["@system-service"],
        "Restart": ["on-failure"],
        "KillSignal": ["SIGTERM"],
        "ReadWritePaths": ["/var/lib/tgms"],
    }
    for key, value in expected.items():
        assert d.get(key) == value, f"{unit.name}: {key}={d.get(key)}, expected {value}"
    families = set(d["RestrictAddressFamilies"][0].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_worker_stop_timeout_outlasts_its_grace_period() -> None:
    """systemd must not SIGKILL a worker while it finishes in-flight jobs and releases the rest."""
    (unit,) = [u for u in UNITS if u.name.startswith("tgms-worker@")]
    d = directives(unit)
    argv = shlex.split(d["ExecStart"][0])
    grace = float(argv[argv.index("--grace") + 1])
    assert float(d["TimeoutStopSec"][0]) >= grace + 5


def test_env_example_names_every_variable_and_only_those() -> None:
    names = set(read_dotenv(ENV_EXAMPLE))
    unknown = names - set(ENV_NAMES.values())
    assert not unknown, f"deploy/tgms.env.example sets variables TGMS never reads: {sorted(unknown)}"
    missing = set(ENV_NAMES.values()) - names
    assert not missing, f"deploy/tgms.env.example lacks {sorted(missing)}"


def test_env_example_parses_and_holds_no_secret() -> None:
    """Every value is one TGMS accepts; the secrets are empty (unset), never a placeholder that
    would run in production."""
    settings = load_settings(environ={}, dotenv=ENV_EXAMPLE)
    assert settings.bot_token is None and settings.tgms_bot_token is None
    assert settings.admin_api_key is None and settings.webhook_secret is None
    assert isinstance(settings, Settings) and settings.database_url is not None


def _allowed(block: str) -> set[str]:
    return {str(ipaddress.ip_network(a)) for a in re.findall(r"allow\s+([0-9./]+);", block)}


def test_nginx_proxies_exactly_the_webhook_and_admin_routes() -> None:
    text = NGINX.read_text()
    locations = dict(re.findall(r"location = (\S+) \{(.*?)\n    \}", text, flags=re.S))
    prefixes = dict(re.findall(r"location (/api/\S*/) \{(.*?)\n    \}", text, flags=re.S))
    app_routes = {r.path for r in create_app(Settings(), "postgresql://unused/x", allow_insecure=True).routes}  # type: ignore[attr-defined]
    webhook_paths = {"/api/webhook", "/api/webhook/tgms"}
    assert set(locations) == webhook_paths and set(locations) <= app_routes
    for path in webhook_paths:
        assert _allowed(locations[path]) == TELEGRAM_RANGES
        assert "deny all;" in locations[path]
    # Every admin route, and nothing else of the app (health and metrics stay private), is under the prefix.
    assert set(prefixes) == {"/api/tgms/"}
    admin_routes = {p for p in app_routes if p.startswith("/api/tgms/")}
    assert admin_routes and "/api/tgms/send" in admin_routes
    assert not {p for p in app_routes - admin_routes - webhook_paths if p.startswith("/api/")}
    assert "deny all;" in prefixes["/api/tgms/"]
    assert not _allowed(prefixes["/api/tgms/"]) & TELEGRAM_RANGES
    # Set, never appended: a client's own X-Forwarded-For must not reach the server.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
    assert "$proxy_add_x_forwarded_for" not in text
    assert re.search(r"location / \{ return 404; \}", text)
    # Tracked links are public (anyone clicks them), for GET (and so HEAD) only.
    clicks = re.search(r"location /r/ \{(.*?)\n    \}", text, flags=re.S)
    assert clicks is not None and "limit_except GET { deny all; }" in clicks.group(1)
    assert "/r/{token}" in app_routes


def test_caddy_proxies_exactly_the_webhook_and_admin_routes() -> None:
    text = CADDY.read_text()
    assert set(re.findall(r"@(\w+) \{", text)) == {"telegram", "admin", "clicks"}
    telegram = re.search(r"@telegram \{\n\t\tpath ([^\n]+)\n\t\tremote_ip ([^\n]+)\n", text)
    assert telegram is not None
    assert set(telegram.group(1).split()) == {"/api/webhook", "/api/webhook/tgms"}
    assert {str(ipaddress.ip_network(n)) for n in telegram.group(2).split()} == TELEGRAM_RANGES
    admin = re.search(r"@admin \{\n\t\tpath ([^\n]+)\n\t\tremote_ip ([^\n]+)\n", text)
    assert admin is not None and admin.group(1).split() == ["/api/tgms/*"]
    # Tracked links are public (anyone clicks them), for GET and HEAD only.
    clicks = re.search(r"@clicks \{\n\t\tpath ([^\n]+)\n\t\tmethod ([^\n]+)\n", text)
    assert clicks is not None and clicks.group(1) == "/r/*" and set(clicks.group(2).split()) == {"GET", "HEAD"}
    assert text.count("header_up X-Forwarded-For {remote_host}") == 3
    assert "respond 404" in text


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` on each unit (the template as its instances), with ExecStart pointed
    at this checkout's `tgms` (verify checks that the program exists). Any warning fails: systemd
    ignores an unknown or malformed directive with a warning, which would silently drop hardening."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd provides it)")
    paths = []
    for unit in UNITS:
        text = unit.read_text().replace("/opt/tgms/.venv/bin/tgms", str(TGMS))
        for name, _ in instances(unit):
            target = tmp_path / name
            target.write_text(text)
            paths.append(str(target))
    done = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, timeout=120)
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0 and "System has not been booted with systemd" in output:
        pytest.skip(f"systemd-analyze cannot run in this container: {output.splitlines()[0]}")
    assert done.returncode == 0 and not output, output


def test_the_web_control_center_sits_behind_tls_and_a_login() -> None:
    """`tgms tui --web --behind-proxy` is only as safe as the proxy: both examples terminate TLS, ask
    for a login, carry the websocket and pass on the Host (TGMS checks websocket origins against it)."""
    (exec_start,) = directives(DEPLOY / "systemd" / "tgms-tui-web.service")["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[1:3] == ["tui", "--web"] and "--behind-proxy" in argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    port = argv[argv.index("--port") + 1]
    nginx = (DEPLOY / "nginx" / "tgms-tui-web.conf").read_text()
    assert f"proxy_pass http://127.0.0.1:{port};" in nginx
    assert "listen 443 ssl;" in nginx and "ssl_certificate " in nginx
    assert "auth_basic_user_file /etc/nginx/tgms-tui.htpasswd;" in nginx
    for header in ("Upgrade $http_upgrade", "Host $http_host", "X-Forwarded-Proto $scheme"):
        assert f"proxy_set_header {header};" in nginx
    caddy = (DEPLOY / "caddy" / "Caddyfile.tui-web").read_text()
    assert "basic_auth {" in caddy and f"reverse_proxy 127.0.0.1:{port} {{" in caddy
