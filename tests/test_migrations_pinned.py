"""Landed migrations never change: in the repository (their bytes are pinned here) and in a database
(each applied file's checksum is recorded, and a changed file stops `migrate`).

Every database that ran a migration keeps the schema it made; editing the file afterwards changes
nothing there, so fresh and old databases would silently differ. A schema change is a new file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
import pytest

from tgms_tui.backend.db import MigrationChanged, migrate, migration_checksum, migration_files, sql_dir

# Every landed migration and the SHA-256 of its bytes. Add a line for each new migration once it lands;
# never change or remove one.
PINNED = {
    "001_core.sql": "2396f3fe636a3b510a382b18068cfd2d6db8c62423911167728b3de9b8ede9cc",
    "005_tui_groups.sql": "d2c1684cdde8ae755e2e2c54eac3a8cbd29e5b699b4aa2db16e560846a2d4d45",
    "006_notify_when_due.sql": "ffe550665a055d9721d2a274bf3889c728c98ec9fc5735659a0f45e8d0f4ee33",
    "014_bans_and_links.sql": "6a2defc1388c9a2d0fd9c8f0ff3fb86c1213f26f6a84fa26c46ebadc80f2e32d",
    "008_worker_watchdog.sql": "4f170f531996471fa0084b7690fecc4303f96cec491fc3e53cc9d29e1977572a",
    "007_broadcast_actions.sql": "53ce4eb40a31a0f11edaa3beb1e24795d38d067c3c08edbfa0465455e95622f4",
    "009_idempotency_keys.sql": "402e039075ff0ac6772807f9a5fd531f2bdd485e85b2838a8766add2e84fe531",
    "013_join_gate.sql": "af3d1a06c084a31ae7aeed1ec6812c73c48c947b2b21dd0e730ac02ec271d009",
    "016_broadcast_followups.sql": "77165f57f480101a1d4a8bd233994d5a0722aca8603b33649396c243564a0a9c",
    "020_event_hooks.sql": "d86cdae774b7dd3a0bdfab7fa33d657956c35aca98fadec440c43f6704dc6b71",
    "015_jobs_failed_by_pool.sql": "a24342fbd957a1d6fc218bfb1e0c0cd714a25e4330c3e46304115d9a070cc710",
    "018_broadcast_buttons_test_sends.sql": "b54a38b77f98c0b1b19f3dbc9a345f7dc5269e73d75d7d3ab287e79f738ed627",
    "021_analytics.sql": "d454b2748772871378a0dfd9ed719dc155e34e390c6c6cac74f6c579aa79894d",
    "019_photos_and_variants.sql": "024429c45d46a02dc87740ca16db9c4cd169651cc6d646cda4d02996471f6c29",
    "023_paid_broadcasts.sql": "66186ff461c640124702e0e38139c02d703dc735bb0bee513c40865821fa5a50",
    "022_jobs_history.sql": "a1db48a204b2b0fd5fe2bd9e55526a6daa2e665e45d03781d7c96f06dcc67bea",
    "024_change_listeners.sql": "e08c436db81d550271e5bd92c5bf55e747e3af439f98cdf2c5202a6abc2c750c",
    "025_join_sweep_index.sql": "f8b8f739c164a136d026007868e8f5c950ef3f257737cd977529008959c62bd7",
    "026_history_fill_reserve.sql": "46c486547160d3e540246f796e8ba3245e2a418bb52c762bf9174a80a0b31783",
    "027_held_groups_index.sql": "4cbb6449dcd2d1201cd66e395df275d954b785c3d090abeac2fd7f3164863d5c",
    "028_sent_messages_statement_key_check.sql": "fada8ffbc7db2beccf2121b4ec6553e63e491a3aafa054e8ed6844b619919138",
}


def test_landed_migrations_are_unchanged() -> None:
    on_disk = {path.name: path for path in migration_files()}
    missing = sorted(set(PINNED) - set(on_disk))
    assert not missing, (
        f"landed migrations were renamed or removed: {missing}. A migration that ran somewhere can never "
        "go away; restore it (a later migration can undo what it did)."
    )
    changed = [
        name for name, digest in PINNED.items() if hashlib.sha256(on_disk[name].read_bytes()).hexdigest() != digest
    ]
    assert not changed, (
        f"landed migrations were edited: {changed}. Databases that already applied them keep the old "
        "version; restore the file and put the change in a new migration."
    )


def test_new_migrations_sort_after_the_landed_ones() -> None:
    last = max(PINNED)
    early = [path.name for path in migration_files() if path.name not in PINNED and path.name < last]
    assert not early, f"new migrations {early} must sort after {last}: they run after it everywhere"


def test_only_numbered_migrations_in_sql_dir() -> None:
    """A file the glob skips (a typo in its name) would never run anywhere."""
    stray = sorted(p.name for p in sql_dir().iterdir() if p.suffix == ".sql" and p not in migration_files())
    assert not stray, f"{stray} would never be applied: migrations are named NNN_description.sql"


def test_migrate_records_each_checksum(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        recorded: dict[str, str | None] = dict(
            conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        )
    assert recorded == {path.stem: migration_checksum(path) for path in migration_files()}


def test_a_changed_migration_stops_migrate_and_names_the_file(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = '001_core'")
    with pytest.raises(MigrationChanged, match=r"001_core\.sql .*a landed migration never changes"):
        migrate(db_url)


def test_a_database_from_before_checksums_gets_them_recorded(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("ALTER TABLE schema_migrations DROP COLUMN checksum")
    assert migrate(db_url) == []  # nothing is applied again
    with psycopg.connect(db_url) as conn:
        recorded: dict[str, str | None] = dict(
            conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        )
    assert recorded == {path.stem: migration_checksum(path) for path in migration_files()}


def test_line_endings_do_not_change_a_checksum(tmp_path: Path) -> None:
    lf, crlf = tmp_path / "lf.sql", tmp_path / "crlf.sql"
    lf.write_bytes(b"SELECT 1;\nSELECT 2;\n")
    crlf.write_bytes(b"SELECT 1;\r\nSELECT 2;\r\n")
    assert migration_checksum(lf) == migration_checksum(crlf)
