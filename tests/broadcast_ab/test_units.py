"""Pure rules of photos from disk and A/B broadcasts: image headers, the statistics, tracked links,
variant dealing and the request's checks (no database, no processes)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from tests import images
from tgms_tui.backend import ab_assignment, ab_stats, link_tracking, submission
from tgms_tui.backend.ab_stats import VariantResult
from tgms_tui.backend.broadcast_variants import parse_holdout, split_request
from tgms_tui.backend.image_header import MAX_PHOTO_BYTES, check_photo, dimensions
from tgms_tui.backend.message_validation import ValidationError

# ---------------------------------------------------------------- image headers


@pytest.mark.parametrize(
    ("data", "kind", "size"),
    [
        (images.png(640, 480), "image/png", (640, 480)),
        (images.jpeg(1280, 720), "image/jpeg", (1280, 720)),
        (images.webp_vp8x(5000, 4000), "image/webp", (5000, 4000)),
        (images.webp_lossy(300, 200), "image/webp", (300, 200)),
        (images.webp_lossless(1024, 77), "image/webp", (1024, 77)),
    ],
)
def test_dimensions_come_from_the_header(data: bytes, kind: str, size: tuple[int, int]) -> None:
    assert dimensions(data) == (kind, *size)
    info = check_photo(data)
    assert (info.media_type, info.width, info.height, info.size) == (kind, *size, len(data))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (images.GIF, "not a JPEG, PNG or WebP"),
        (b"%PDF-1.7 not a picture", "not a JPEG, PNG or WebP"),
        (images.png(6000, 4001), "width + height is 10001"),
        (images.jpeg(2101, 100), "ratio is over 20"),
        (images.png(100, 2001), "ratio is over 20"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "without a frame header"),
        (images.png(10, 10)[:20], "IHDR"),
    ],
)
def test_refused_photos_name_the_field_and_the_problem(data: bytes, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_photo(data)
    assert caught.value.field == "photo"
    assert words in caught.value.message


def test_limits_are_inclusive() -> None:
    check_photo(images.png(5000, 5000))  # width + height exactly 10000
    check_photo(images.png(2000, 100))  # ratio exactly 20
    big = images.png(100, 100, padding=MAX_PHOTO_BYTES - 200)
    assert len(big) <= MAX_PHOTO_BYTES
    check_photo(big)
    with pytest.raises(ValidationError, match="10 MB"):
        check_photo(images.png(100, 100, padding=MAX_PHOTO_BYTES))


# ---------------------------------------------------------------- the statistics


def test_two_proportion_z_matches_a_worked_example() -> None:
    # 200/1000 vs 150/1000: pooled p = 0.175, se = sqrt(0.175*0.825*0.002) = 0.016994; z = 2.942
    z, p = ab_stats.two_proportion_z(200, 1000, 150, 1000)
    assert z == pytest.approx(2.9423, abs=1e-3)
    assert p == pytest.approx(0.00326, abs=2e-4)
    z0, p0 = ab_stats.two_proportion_z(10, 100, 10, 100)
    assert (z0, p0) == (0.0, 1.0)


def test_a_clear_winner_is_stated_with_its_evidence() -> None:
    verdict = ab_stats.decide(
        [VariantResult(1, 10, 10, 1000, 150), VariantResult(2, 10, 10, 1000, 200), VariantResult(3, 10, 10, 1000, 140)]
    )
    assert verdict.winner == 2 and verdict.enough_data
    assert verdict.statement.startswith("B wins: B 20.00% (200/1000) vs A 15.00% (150/1000)")
    assert "two-proportion z-test" in verdict.statement and "p < 0.025" in verdict.statement  # Bonferroni, 3 variants


def test_small_counts_are_not_enough_data() -> None:
    verdict = ab_stats.decide([VariantResult(1, 3, 3, 3, 3), VariantResult(2, 3, 3, 3, 0)])
    assert verdict.winner is None and not verdict.enough_data
    assert verdict.statement.startswith("not enough data: A has 3 click(s) of 3 reached")


def test_a_small_difference_is_no_clear_winner() -> None:
    verdict = ab_stats.decide([VariantResult(1, 10, 10, 1000, 105), VariantResult(2, 10, 10, 1000, 100)])
    assert verdict.winner is None and verdict.enough_data
    assert verdict.statement.startswith("no clear winner yet: A 10.50% (105/1000) vs B 10.00% (100/1000)")


def test_clicks_are_capped_at_the_reach() -> None:
    r = VariantResult(1, 1, 1, 1, 7)  # a group of unknown size clicked seven times
    assert r.rate == 1.0


# ---------------------------------------------------------------- dealing variants, holding back


@pytest.mark.parametrize(("count", "variants"), [(1, 2), (9, 3), (10, 3), (1000, 4), (7, 2)])
def test_variants_are_dealt_evenly(count: int, variants: int) -> None:
    dealt = ab_assignment.deal(count, variants, random.Random(count))
    counts = Counter(dealt)
    assert set(counts) <= set(range(1, variants + 1))
    assert sum(counts.values()) == count
    assert max(counts.values()) - min(counts.get(v, 0) for v in range(1, variants + 1)) <= 1


def test_dealing_is_random() -> None:
    assert ab_assignment.deal(50, 2, random.Random(1)) != ab_assignment.deal(50, 2, random.Random(2))


def test_held_back_share_leaves_each_variant_a_group() -> None:
    assert ab_assignment.held_count(10, 0.5, 2) == 5
    assert ab_assignment.held_count(3, 0.9, 2) == 1
    assert ab_assignment.held_count(2, 0.9, 2) == 0
    assert parse_holdout("50%") == 0.5 and parse_holdout(0.25) == 0.25 and parse_holdout(None) == 0.0
    for bad in ("95%", 1, -0.1, "half", True):
        with pytest.raises(ValidationError) as caught:
            parse_holdout(bad)
        assert caught.value.field == "holdout"


# ---------------------------------------------------------------- tracked links


def test_links_in_plain_text_html_and_buttons_are_rewritten() -> None:
    buttons = [[{"text": "Open", "url": "https://example.org/a?x=1&y=2"}]]
    body = 'See https://example.org/b. And <a href="https://example.org/c?p=1&amp;q=2">this</a>'
    urls = link_tracking.urls_in(body, "HTML", buttons)
    assert urls == ["https://example.org/b", "https://example.org/c?p=1&q=2", "https://example.org/a?x=1&y=2"]
    tokens = {u: f"{i:032x}" for i, u in enumerate(urls)}
    text, rendered = link_tracking.render(body, "HTML", buttons, tokens, "https://t.example/")
    assert text == (f'See https://t.example/r/{0:032x}. And <a href="https://t.example/r/{1:032x}">this</a>')
    assert rendered == [[{"text": "Open", "url": f"https://t.example/r/{2:032x}"}]]
    assert buttons[0][0]["url"] == "https://example.org/a?x=1&y=2"  # the stored variant is untouched


def test_markdown_text_links_are_left_as_written() -> None:
    body = "[here](https://example.org/x)"
    assert link_tracking.urls_in(body, "MarkdownV2", None) == []
    assert link_tracking.render(body, "MarkdownV2", None, {"https://example.org/x": "0" * 32}, "https://t")[0] == body


def test_tokens_are_long_and_hex() -> None:
    tokens = {link_tracking.new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(link_tracking.TOKEN_RE.match(t) for t in tokens)


# ---------------------------------------------------------------- the request


def test_variants_are_checked_like_a_broadcast_and_named() -> None:
    req, ab = split_request({"variants": [{"text": "one"}, {"text": "two"}], "track_clicks": True}, "https://t.example")
    assert req.text == "one" and ab is not None and [v.body for v in ab.variants] == ["one", "two"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"variants": [{"text": "only one"}]}, "variants"),
        ({"variants": [{"text": "a"}, {"text": "x" * 4097}]}, "variants[1].text"),
        ({"variants": [{"text": "a"}, {"text": "*bold"}], "parse_mode": "Markdown"}, "variants[1].text"),
        ({"text": "t", "variants": [{"text": "a"}, {"text": "b"}]}, "text"),
        ({"variants": [{"text": "a"}, {"text": "b", "buttons": [[{"text": "x", "url": "ftp://x"}]]}]},
         "variants[1].buttons"),
        ({"variants": [{"text": "a"}, {"text": "b", "colour": "red"}]}, "variants[1].colour"),
        ({"text": "t", "holdout": "50%"}, "holdout"),
        ({"photo_url": "https://x.example/p.jpg", "variants": [{"caption": "a"}, {"caption": "b" * 1025}]},
         "variants[1].caption"),
    ]  # fmt: skip
    for data, field in cases:
        with pytest.raises(ValidationError) as caught:
            split_request(data, "https://t.example")
        assert caught.value.field == field, (data, caught.value)


def test_tracking_needs_the_public_base_url() -> None:
    with pytest.raises(ValidationError) as caught:
        split_request({"text": "https://example.org", "track_clicks": True}, None)
    assert caught.value.field == "track_clicks" and "TGMS_PUBLIC_BASE_URL" in caught.value.message


# ---------------------------------------------------------------- one submission path


def test_prepare_takes_options_variants_and_a_photo_file_together() -> None:
    photo = images.png(200, 100)
    rows = [[{"text": "Shop", "url": "https://example.org/shop"}]]
    data = {
        "variants": [
            {"caption": "A"},
            {"caption": "B", "buttons": [[{"text": "Chat", "url": "tg://resolve?domain=x"}]]},
        ],
        "buttons": rows,
        "track_clicks": True,
        "delete_after": "2h",
    }
    sub = submission.prepare(data, "https://tgms.example.test", (photo, "poster.png"))
    assert sub.req.photo_url == submission.photo_ref(photo) and sub.photo == (photo, "poster.png")
    assert sub.options.buttons == rows and sub.options.delete_after is not None
    assert sub.ab is not None and [v.body for v in sub.ab.variants] == ["A", "B"]
    assert sub.ab.variants[0].buttons is None and sub.ab.variants[1].buttons is not None
    # the composer shows the stored photo's reference as its photo_url: the same file is accepted
    again = submission.prepare({"photo_url": submission.photo_ref(photo), "caption": "x"}, None, (photo, "p.png"))
    assert again.req.photo_url == submission.photo_ref(photo)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"variants": [{"text": "A", "buttons": [[{"text": "x", "url": "https://h"}] * 9]}, {"text": "B"}]},
            "variants[0].buttons",
        ),
        ({"text": "A", "buttons": [[{"text": "x", "url": "https://h"}] * 9]}, "buttons"),
        ({"variants": [{"text": "A"}, {"text": "B"}], "holdout": 0.5, "test": True}, "holdout"),
        ({"caption": "A", "photo_url": "https://example.org/p.jpg"}, "photo_url"),
    ],
)
def test_prepare_names_the_field_it_refuses(data: dict[str, Any], field: str) -> None:
    photo = (images.png(10, 10), "p.png") if "photo_url" in data else None
    with pytest.raises(ValidationError) as refused:
        submission.prepare(data, None, photo)
    assert refused.value.field == field


def test_tracked_links_leave_tg_buttons_as_written() -> None:
    buttons = [[{"text": "Shop", "url": "https://example.org/shop"}, {"text": "Chat", "url": "tg://resolve?domain=x"}]]
    assert link_tracking.urls_in(None, None, buttons) == ["https://example.org/shop"]
