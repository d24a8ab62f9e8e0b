"""What every TGMS process does first: settings, safe logging, the database URL, the schema."""

from __future__ import annotations

import logging
import os

from .config import Settings, load_settings
from .db import database_url, migrate
from .embedded import CleanupMode
from .redaction import install_log_redaction

log = logging.getLogger(__name__)


def configure_logging(level: str = "INFO", secrets: list[str] | None = None) -> None:
    """Plain, greppable log lines on stderr with secrets redacted. httpx logs full request URLs
    (which carry the bot token) at INFO, so it is held at WARNING everywhere."""
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    install_log_redaction(secrets or [])


def prepare(
    settings: Settings | None = None,
    *,
    apply_migrations: bool = True,
    cleanup: CleanupMode = "stop",
    logging_on: bool = True,
) -> tuple[Settings, str]:
    """Load settings (unless given), set up logging, resolve the database and migrate it.

    Returns the settings and the database URL every role then connects to. The process's umask
    becomes 077 first: what TGMS writes (logs, state in TGMS_DATA_DIR) is for its own user only.
    """
    os.umask(0o077)
    settings = settings or load_settings()
    if logging_on:
        configure_logging(settings.log_level, settings.secrets())
    url = database_url(settings, cleanup=cleanup)
    if apply_migrations:
        applied = migrate(url)
        if applied:
            log.info("database migrated: %s", ", ".join(applied))
    return settings, url
