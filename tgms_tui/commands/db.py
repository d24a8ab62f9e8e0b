"""`tgms migrate` and `tgms db url|stop`."""

from __future__ import annotations

import argparse

from tgms_tui.backend.bootstrap import configure_logging
from tgms_tui.backend.config import load_settings
from tgms_tui.backend.db import database_url, migrate
from tgms_tui.backend.embedded import stop_embedded


class _Migrate:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.set_defaults(db_action="migrate")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        settings = load_settings()
        configure_logging(settings.log_level, settings.secrets())
        applied = migrate(database_url(settings))
        print("applied: " + ", ".join(applied) if applied else "database is up to date")
        return 0


class _Db:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "action",
            choices=["url", "stop"],
            help="url: print the URL in use (the "
            "embedded server is left running for psql); stop: stop the embedded server",
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        settings = load_settings()
        if args.action == "url":
            # Leave an embedded server running after we exit: the user wants to connect to it.
            print(database_url(settings, cleanup=None))
            return 0
        if settings.database_url:
            print("tgms: DATABASE_URL is set: not stopping a server TGMS does not own")
            return 1
        stopped = stop_embedded(settings.data_dir)
        print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
        return 0


command_migrate = _Migrate()
command_db = _Db()
