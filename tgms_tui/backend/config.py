"""Settings from the environment and an optional `.env` file.

Every process reads the same variables. A missing or malformed value raises
`ConfigError` naming the variable, which the `tgms` command prints as one line, never a traceback.
Secrets are kept out of `repr` so a Settings object can be logged safely.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, TypeVar

import platformdirs

T = TypeVar("T")

TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,}$")
# Telegram's alphabet for setWebhook's secret_token (which it allows from 1 to 256 characters).
SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# ADMIN_API_KEY and TGMS_WEBHOOK_SECRET: guessable below this (Telegram itself accepts 1 character).
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256
GENERATE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
HttpTransport = Literal["lean", "httpx"]


class ConfigError(ValueError):
    """A configuration variable is missing or malformed; the message names it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """Configuration of every TGMS process. Secret fields are excluded from repr."""

    database_url: str | None = None
    bot_token: str | None = field(default=None, repr=False)
    tgms_bot_token: str | None = field(default=None, repr=False)
    admin_api_key: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    # What a browser must present to `tgms tui --web` (the control center served over HTTP).
    web_token: str | None = field(default=None, repr=False)
    telegram_api_base: str = "https://api.telegram.org"
    rate_per_second: float = 5.0
    # A paid broadcast's bot rate (allow_paid_broadcast: Telegram allows up to 1000 messages/s).
    paid_rate_per_second: float = 1000.0
    group_delay_seconds: float = 3.0
    group_per_minute: int = 20
    max_consecutive_failures: int = 3
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    worker_concurrency: int = 16
    lease_seconds: float = 60.0
    # A TCP connection to PostgreSQL that has not acknowledged data (or keepalive probes) for this long
    # is given up (libpq keepalives + tcp_user_timeout), so a network partition ends in an error, not a
    # wait of many minutes. 0 leaves the operating system's defaults. See db.tcp_options().
    db_tcp_timeout: float = 20.0
    member_count_interval: float = 3600.0
    job_retention_days: float = 7.0
    admin_allow_networks: tuple[str, ...] = ()
    # The webhook server: who may read /healthz, /readyz and /metrics (empty: everyone), the proxies
    # whose X-Forwarded-For is believed (uvicorn's own variable), the time a client has to send a whole
    # request, and the connections plus requests one server process takes on at once.
    metrics_allow_networks: tuple[str, ...] = ()
    forwarded_allow_ips: tuple[str, ...] = ()
    webhook_request_timeout: float = 10.0
    webhook_limit_concurrency: int = 1000
    log_level: str = "INFO"
    # The workers' HTTP transport to the Bot API: TGMS's lean one, or httpx's own as a fallback.
    http_transport: HttpTransport = "lean"
    # Time limits of job types that override the handlers' own defaults (job type -> seconds).
    job_timeouts: dict[str, float] = field(default_factory=dict)
    # Where a broadcast's test send goes when the operator names no chat (a chat the TGMS bot is in).
    test_chat_id: int | None = None
    # A worker's own /metrics: off unless a port is given; loopback unless a host is given.
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "127.0.0.1"
    # Where the webhook server is reached from the internet: tracked links point to <it>/r/<token>.
    public_base_url: str | None = None
    # Event webhooks: deliver to private/loopback/link-local addresses too (local receivers, the demo);
    # the time one delivery attempt may take; the attempts one worker process makes at once.
    hooks_allow_private: bool = False
    hooks_timeout: float = 5.0
    hooks_concurrency: int = 8

    def require(self, name: str) -> str:
        """Return a secret/required string setting or raise ConfigError naming its variable."""
        value = getattr(self, name)
        if not value:
            raise ConfigError(ENV_NAMES[name], "is not set")
        return str(value)

    def bot_tokens(self) -> dict[str, str]:
        """Configured bots by role name ('main', 'tgms'); only those whose token is set."""
        bots = {"main": self.bot_token, "tgms": self.tgms_bot_token}
        return {role: token for role, token in bots.items() if token}

    def secrets(self) -> list[str]:
        """Every secret value in use, for redaction and for the test-suite leak check."""
        values = [self.bot_token, self.tgms_bot_token, self.admin_api_key, self.webhook_secret, self.web_token]
        return [v for v in values if v]


def default_data_dir() -> Path:
    """~/.local/share/tgms; /var/lib/tgms for root, whose embedded PostgreSQL runs as another user that
    must be able to reach it (TGMS will not open /root for it)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/tgms")
    return Path(platformdirs.user_data_dir("tgms"))


def secret_weakness(value: str) -> str | None:
    """Why `value` is a weak ADMIN_API_KEY / TGMS_WEBHOOK_SECRET, or None (doctor warns on it)."""
    if len(value) < MIN_SECRET_LENGTH:
        return f"is short ({len(value)} characters, at least {MIN_SECRET_LENGTH} are needed)"
    if len(set(value)) < 8:
        return f"uses only {len(set(value))} different characters"
    return None


# Settings field -> environment variable. Seed names are kept verbatim.
ENV_NAMES: dict[str, str] = {
    "database_url": "DATABASE_URL",
    "bot_token": "BOT_TOKEN",
    "tgms_bot_token": "TGMS_BOT_TOKEN",
    "admin_api_key": "ADMIN_API_KEY",
    "webhook_secret": "TGMS_WEBHOOK_SECRET",
    "web_token": "TGMS_WEB_TOKEN",
    "telegram_api_base": "TELEGRAM_API_BASE",
    "rate_per_second": "TGMS_RATE_PER_SECOND",
    "paid_rate_per_second": "TGMS_PAID_RATE_PER_SECOND",
    "group_delay_seconds": "TGMS_GROUP_DELAY_SECONDS",
    "group_per_minute": "TGMS_GROUP_MESSAGES_PER_MINUTE",
    "max_consecutive_failures": "TGMS_MAX_CONSECUTIVE_FAILURES",
    "data_dir": "TGMS_DATA_DIR",
    "worker_concurrency": "TGMS_WORKER_CONCURRENCY",
    "lease_seconds": "TGMS_JOB_LEASE_SECONDS",
    "db_tcp_timeout": "TGMS_DB_TCP_TIMEOUT_SECONDS",
    "member_count_interval": "TGMS_MEMBER_COUNT_INTERVAL_SECONDS",
    "job_retention_days": "TGMS_JOB_RETENTION_DAYS",
    "admin_allow_networks": "TGMS_ADMIN_ALLOW_NETWORKS",
    "metrics_allow_networks": "TGMS_METRICS_ALLOW_NETWORKS",
    "forwarded_allow_ips": "FORWARDED_ALLOW_IPS",
    "webhook_request_timeout": "TGMS_WEBHOOK_REQUEST_TIMEOUT",
    "webhook_limit_concurrency": "TGMS_WEBHOOK_LIMIT_CONCURRENCY",
    "log_level": "TGMS_LOG_LEVEL",
    "http_transport": "TGMS_HTTP_TRANSPORT",
    "job_timeouts": "TGMS_JOB_TIMEOUTS",
    "test_chat_id": "TGMS_TEST_CHAT_ID",
    "worker_metrics_port": "TGMS_WORKER_METRICS_PORT",
    "worker_metrics_host": "TGMS_WORKER_METRICS_HOST",
    "public_base_url": "TGMS_PUBLIC_BASE_URL",
    "hooks_allow_private": "TGMS_HOOKS_ALLOW_PRIVATE",
    "hooks_timeout": "TGMS_HOOKS_TIMEOUT",
    "hooks_concurrency": "TGMS_HOOKS_CONCURRENCY",
}


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a `.env` file: KEY=VALUE lines, optional `export`, quotes, `#` comments."""
    values: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"{path.name} line {lineno}", "expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _number(cast: Callable[[str], T], *, minimum: float, allow_equal: bool = True) -> Callable[[str, str], T]:
    def parse(var: str, raw: str) -> T:
        try:
            value = cast(raw)
        except ValueError:
            raise ConfigError(var, f"expected a {cast.__name__}, got {raw!r}") from None
        too_small = value < minimum if allow_equal else value <= minimum  # type: ignore[operator]
        if too_small:
            bound = ">=" if allow_equal else ">"
            raise ConfigError(var, f"must be {bound} {minimum}, got {raw!r}")
        return value

    return parse


def _chat_id(var: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(var, f"expected a chat id such as -1001234567890, got {raw!r}") from None
    if value == 0 or not -(2**63) <= value < 2**63:
        raise ConfigError(var, f"not a Telegram chat id: {raw!r}")
    return value


def port_number(var: str, raw: str) -> int:
    """A TCP port, 0-65535 (0: any free port, for tests)."""
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(var, f"expected a port number, got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(var, f"must be a port number 0-65535, got {raw!r}")
    return value


def _token(var: str, raw: str) -> str:
    if not TOKEN_RE.match(raw):
        # Never echo the value: it may be a real token with a typo.
        raise ConfigError(var, "is not a bot token of the form <digits>:<secret> (value not shown)")
    return raw


def _long_enough(var: str, raw: str) -> None:
    if not MIN_SECRET_LENGTH <= len(raw) <= MAX_SECRET_LENGTH:
        # The length only, never the value.
        raise ConfigError(
            var,
            f"must be {MIN_SECRET_LENGTH}-{MAX_SECRET_LENGTH} characters, got {len(raw)} "
            f"(value not shown); generate one with {GENERATE_SECRET}",
        )


def _api_key(var: str, raw: str) -> str:
    _long_enough(var, raw)
    if not raw.isprintable():
        raise ConfigError(var, "must be printable characters only (it travels in an HTTP header; value not shown)")
    return raw


def web_token(var: str, raw: str) -> str:
    """The web control center's token (from TGMS_WEB_TOKEN or `tgms tui --web --token-file`): typed
    into a form or a URL, so printable without spaces, and long enough not to be guessed."""
    _long_enough(var, raw)
    if not raw.isprintable() or any(c.isspace() for c in raw):
        raise ConfigError(var, "must be printable characters without spaces (value not shown)")
    return raw


def _secret_token(var: str, raw: str) -> str:
    if not SECRET_TOKEN_RE.match(raw):
        raise ConfigError(
            var, "must be characters of A-Z, a-z, 0-9, _ and - only (Telegram's rule for secret_token; value not shown)"
        )
    _long_enough(var, raw)
    return raw


def _database_url(var: str, raw: str) -> str:
    if not re.match(r"^postgres(ql)?://", raw):
        raise ConfigError(var, "must start with postgresql:// (value not shown)")
    return raw


def _api_base(var: str, raw: str) -> str:
    if not re.match(r"^https?://[^/\s]+", raw):
        raise ConfigError(var, f"must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _public_base_url(var: str, raw: str) -> str:
    """An http(s) origin with an optional path prefix; no query or fragment (a token is appended)."""
    if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", raw):
        raise ConfigError(
            var, f"must be an http(s) URL without query or fragment, e.g. https://tgms.example.org, got {raw!r}"
        )
    return raw.rstrip("/")


def _networks(var: str, raw: str) -> tuple[str, ...]:
    import ipaddress

    nets = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            nets.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(var, f"{part!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return tuple(nets)


def proxy_addresses(var: str, raw: str) -> tuple[str, ...]:
    """Trusted proxies: addresses or networks, or `*` (any peer; the webhook refuses it together with
    an allow-list). Host names are refused: a proxy is known by the address it connects from."""
    import ipaddress

    items = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        if part != "*":
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ConfigError(var, f"{part!r} is not an IP address or network (e.g. 10.0.0.5)") from None
        items.append(part)
    return tuple(items)


def _log_level(var: str, raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(var, f"must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return level


def _http_transport(var: str, raw: str) -> HttpTransport:
    choice = raw.lower()
    if choice == "lean":
        return "lean"
    if choice == "httpx":
        return "httpx"
    raise ConfigError(var, f"must be lean or httpx, got {raw!r}")


def _hooks_timeout(var: str, raw: str) -> float:
    """Seconds per delivery attempt: 0.1 to 60 (a drainer's job has 120 s; receivers answer fast)."""
    value = _number(float, minimum=0.1)(var, raw)
    if value > 60:
        raise ConfigError(var, f"must be at most 60 seconds, got {raw!r}")
    return value


def _boolean(var: str, raw: str) -> bool:
    choice = raw.lower()
    if choice in ("1", "true", "yes", "on"):
        return True
    if choice in ("0", "false", "no", "off"):
        return False
    raise ConfigError(var, f"must be true or false, got {raw!r}")


def _job_timeouts(var: str, raw: str) -> dict[str, float]:
    """`job_type=seconds,...`: each job type once, seconds a finite number >= 1."""
    limits: dict[str, float] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, sep, seconds = (x.strip() for x in part.partition("="))
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ConfigError(var, f"expected job_type=seconds entries separated by commas, got {part!r}")
        if name in limits:
            raise ConfigError(var, f"{name} is given twice")
        try:
            value = float(seconds)
        except ValueError:
            raise ConfigError(var, f"{name}: expected seconds as a number, got {seconds!r}") from None
        if not 1 <= value < float("inf"):
            raise ConfigError(var, f"{name}: must be at least 1 second, got {seconds!r}")
        limits[name] = value
    return limits


PARSERS: dict[str, Callable[[str, str], object]] = {
    "database_url": _database_url,
    "bot_token": _token,
    "tgms_bot_token": _token,
    "admin_api_key": _api_key,
    "webhook_secret": _secret_token,
    "web_token": web_token,
    "telegram_api_base": _api_base,
    "rate_per_second": _number(float, minimum=0, allow_equal=False),
    "paid_rate_per_second": _number(float, minimum=0, allow_equal=False),
    "group_delay_seconds": _number(float, minimum=0),
    "group_per_minute": _number(int, minimum=1),
    "max_consecutive_failures": _number(int, minimum=1),
    "data_dir": lambda var, raw: Path(raw).expanduser(),
    "worker_concurrency": _number(int, minimum=1),
    "lease_seconds": _number(float, minimum=1),
    "db_tcp_timeout": _number(float, minimum=0),
    "member_count_interval": _number(float, minimum=1),
    "job_retention_days": _number(float, minimum=0, allow_equal=False),
    "admin_allow_networks": _networks,
    "metrics_allow_networks": _networks,
    "forwarded_allow_ips": proxy_addresses,
    "webhook_request_timeout": _number(float, minimum=0, allow_equal=False),
    "webhook_limit_concurrency": _number(int, minimum=1),
    "log_level": _log_level,
    "http_transport": _http_transport,
    "job_timeouts": _job_timeouts,
    "test_chat_id": lambda var, raw: _chat_id(var, raw),
    "worker_metrics_port": lambda var, raw: port_number(var, raw),
    "worker_metrics_host": lambda var, raw: raw,
    "public_base_url": _public_base_url,
    "hooks_allow_private": _boolean,
    "hooks_timeout": _hooks_timeout,
    "hooks_concurrency": _number(int, minimum=1),
}


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build Settings from `environ` (default os.environ) over an optional `.env` file.

    Real environment variables win over `.env`, as with docker and most 12-factor tools.
    Empty values count as unset.
    """
    source: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        source.update(read_dotenv(dotenv))
    source.update(os.environ if environ is None else environ)
    kwargs: dict[str, object] = {}
    for f in fields(Settings):
        var = ENV_NAMES[f.name]
        raw = source.get(var, "").strip()
        if raw:
            kwargs[f.name] = PARSERS[f.name](var, raw)
    return Settings(**kwargs)  # type: ignore[arg-type]
