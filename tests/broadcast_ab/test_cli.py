"""`tgms broadcast --photo/--variant/--track-clicks/--ab-holdout` and `send-winner` as a user types
them: real subprocesses, a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests import images

ROOT = Path(__file__).resolve().parents[2]
ALPHA, BETA = -1001173879092, -1001270515404


def tgms(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "BOT_TOKEN", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", *args],
        cwd=ROOT, env={**clean, "DATABASE_URL": db_url, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def seed(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO managed_groups (group_id, title, phase, is_active) VALUES "
            "(%s, 'Alpha', 'growth', true), (%s, 'Beta', 'growth', true)",
            (ALPHA, BETA),
        )


def count(db_url: str, table: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def test_photo_from_disk_is_stored_with_the_broadcast(db_url: str, tmp_path: Path) -> None:
    seed(db_url)
    photo = tmp_path / "poster.webp"
    photo.write_bytes(images.webp_vp8x(1600, 900))
    sent = tgms(db_url, "broadcast", "--photo", str(photo), "--caption", "From disk")
    assert sent.returncode == 0, sent.stderr
    broadcast_id = json.loads(sent.stdout)["broadcast_id"]
    with psycopg.connect(db_url) as conn:
        url, caption = conn.execute(
            "SELECT photo_url, caption FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,)
        ).fetchone() or (None, None)
        stored = conn.execute("SELECT media_type, width, height, filename, content FROM broadcast_photos").fetchall()
    assert str(url).startswith("tgms-photo:") and caption == "From disk"
    assert stored == [("image/webp", 1600, 900, "poster.webp", photo.read_bytes())]
    shown = tgms(db_url, "broadcast", "show", str(broadcast_id))
    assert shown.returncode == 0 and "photo tgms-photo:" in shown.stdout


def test_refusals_name_the_flag_and_store_nothing(db_url: str, tmp_path: Path) -> None:
    seed(db_url)
    wide = tmp_path / "wide.png"
    wide.write_bytes(images.png(4200, 200))
    gif = tmp_path / "anim.gif"
    gif.write_bytes(images.GIF)
    good = tmp_path / "ok.jpg"
    good.write_bytes(images.jpeg(800, 600))
    cases = [
        (("--photo", str(wide)), "photo: 4200x200: the sides' ratio is over 20"),
        (("--photo", str(gif)), "photo: not a JPEG, PNG or WebP image"),
        (("--photo", str(tmp_path / "missing.jpg")), "photo: cannot read"),
        (("--photo", str(good), "--caption", "c" * 1025), "caption: message caption is too long"),
        (("--variant", "only one"), "variants: give 2 to 4 variants"),
        (("--variant", "a", "--variant", "b", "--track-clicks"), "track_clicks: TGMS_PUBLIC_BASE_URL is not set"),
        (("--text", "t", "--ab-holdout", "50%"), "holdout: holding groups back for a winner needs variants"),
        (("--variant", "a", "--variant", "b", "--ab-holdout", "95%"), "holdout: must be 0-90%"),
    ]
    for args, words in cases:
        refused = tgms(db_url, "broadcast", *args)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert refused.stderr.startswith("tgms: broadcast: ") and words in refused.stderr, (args, refused.stderr)
    assert count(db_url, "broadcasts") == 0 and count(db_url, "broadcast_photos") == 0


def test_variants_with_tracking_and_send_winner_refusals(db_url: str, tmp_path: Path) -> None:
    seed(db_url)
    base = {"TGMS_PUBLIC_BASE_URL": "https://tgms.example.org"}
    file = tmp_path / "variants.json"
    file.write_text(json.dumps([
        {"text": "A: https://example.org/a", "buttons": [[{"text": "Go", "url": "https://example.org/go"}]]},
        {"text": "B: https://example.org/b"},
    ]))  # fmt: skip
    sent = tgms(db_url, "broadcast", "--variants-file", str(file), "--track-clicks", "--ab-holdout", "50%", **base)
    assert sent.returncode == 0, sent.stderr
    broadcast_id = json.loads(sent.stdout)["broadcast_id"]
    with psycopg.connect(db_url) as conn:
        variants = conn.execute(
            "SELECT variant, body, buttons FROM broadcast_variants WHERE broadcast_id = %s ORDER BY variant",
            (broadcast_id,),
        ).fetchall()
        ab = conn.execute("SELECT track_clicks, public_base_url, holdout FROM broadcast_ab").fetchone()
    assert variants == [
        (1, "A: https://example.org/a", [[{"text": "Go", "url": "https://example.org/go"}]]),
        (2, "B: https://example.org/b", None),
    ]
    assert ab == (True, "https://tgms.example.org", 0.5)
    shown = tgms(db_url, "broadcast", "show", str(broadcast_id))
    assert "links tracked, 0 click(s)" in shown.stdout and "not enough data" in shown.stdout
    early = tgms(db_url, "broadcast", "send-winner", str(broadcast_id))
    assert early.returncode == 1 and "is pending: send the winner once it is done" in early.stderr
    plain = tgms(db_url, "broadcast", "--text", "plain")
    plain_id = json.loads(plain.stdout)["broadcast_id"]
    none = tgms(db_url, "broadcast", "send-winner", str(plain_id))
    assert none.returncode == 1 and "has no variants" in none.stderr
