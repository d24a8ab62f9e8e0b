"""Broadcast validation: Telegram's markup errors (cases from TDLib's test/message_entities.cpp),
lengths counted in UTF-16 after parsing, targets, schedule and field naming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tgms_tui.backend.markup import check_markup, parsed_text, visible_length
from tgms_tui.backend.message_validation import BroadcastRequest, ValidationError, validate_broadcast

STADIUM = "🏟 🏟"  # 9 bytes of UTF-8: offsets below are in bytes, as Telegram reports them

MARKDOWN_V2_ERRORS = [
    (STADIUM + "_abacaba", "Can't find end of Italic entity at byte offset 9"),
    (STADIUM + "_abac * asd ", "Can't find end of Bold entity at byte offset 15"),
    (STADIUM + "`", "Can't find end of Code entity at byte offset 9"),
    (STADIUM + "```", "Can't find end of Pre entity at byte offset 9"),
    (STADIUM + "```a ", "Can't find end of PreCode entity at byte offset 9"),
    (STADIUM + "_🏟 🏟__", "Can't find end of Underline entity at byte offset 19"),
    ("[telegram\\.org](asd\\)", "Can't find end of a URL at byte offset 16"),
    (STADIUM + "||test\\|", "Can't find end of Spoiler entity at byte offset 9"),
    (STADIUM + "!", "Character '!' is reserved and must be escaped with the preceding '\\'"),
    (STADIUM + ">", "Character '>' is reserved and must be escaped with the preceding '\\'"),
    ("Price: 5.00", "Character '.' is reserved and must be escaped with the preceding '\\'"),
    (">*b\n>ld \n>bo\nld*\nasd\ndef", "Can't find end of Bold entity at byte offset 1"),
    (">asd\n>q||ew\n||asdad", "Can't find end of Spoiler entity at byte offset 7"),
    ("![x]", "The entity must contain a tg://emoji or tg://time URL"),
    ("![x](tg://emoji?id=007)", "Invalid tg://emoji or tg://time URL specified"),
    ("![x](tg://emoji?id=5", "Can't find end of a URL at byte offset 5"),
    ("![x](tg://time?unix=1&format=q)", "Invalid date format used"),
    ("a>b", "Character '>' is reserved and must be escaped with the preceding '\\'"),
]

MARKDOWN_V2_OK = [
    ("\\\\", "\\"),
    (STADIUM + "_abac \\* asd _", STADIUM + "abac * asd "),
    ("`_* *_`__*` `*__", "_* *_ "),
    ("||test||", "test"),
    ("[telegram\\.org](https://telegram.dog?)", "telegram.org"),
    (">a", "a"),
    ("> \n> \n>", " \n \n"),
    (">asd\n>q||e||w||\nasdad", "asd\nqew\nasdad"),
    (STADIUM + "```🏟\n🏟```", STADIUM + "🏟"),
    (">>a", "a"),  # a second '>' where a quote may start is dropped
    ("**>a\n>b||", "a\nb"),  # an expandable quote
    ("![x](tg://emoji?id=-7)![y](TG://TIME/?unix=1&format=wdT)", "xy"),
]

HTML_ERRORS = [
    (STADIUM + "&lt;<abacaba", "Unclosed start tag at byte offset 13"),
    (STADIUM + "&lt;<abac aba>", 'Unsupported start tag "abac" at byte offset 13'),
    (STADIUM + "&lt;<i   =aba>", 'Empty attribute name in the tag "i" at byte offset 13'),
    (STADIUM + "&lt;<i    aba>", 'Can\'t find end tag corresponding to start tag "i"'),
    (STADIUM + "&lt;<i    aba  =  ", 'Unclosed start tag "i" at byte offset 13'),
    (STADIUM + "&lt;<i    aba  =  190azAz-.,", "Unexpected end of name token at byte offset 27"),
    (STADIUM + "&lt;</", "Unexpected end tag at byte offset 13"),
    (STADIUM + "&lt;<i>a</i   ", "Unclosed end tag at byte offset 17"),
    (STADIUM + "&lt;<i>a</em   >", 'Unmatched end tag at byte offset 17, expected "</i>", found "</em>"'),
    ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
    ('<tg-emoji emoji-id="007">x</tg-emoji>', "Invalid custom emoji identifier specified"),
    ('<tg-time unix="1" format="q">x</tg-time>', "Invalid date format used"),
    ("<i a=b/>x</i>", "Unexpected end of name token at byte offset 5"),
    (
        "&#55357;&#56832;",
        "Text contains invalid Unicode characters after decoding HTML entities, "
        "check for unmatched surrogate code units",
    ),
]

HTML_OK = [
    ("&ge;&lt;&gt;&amp;&quot;&laquo;", '&ge;<>&"&laquo;'),
    (STADIUM + "<i>🏟 &lt🏟</i>", STADIUM + "🏟 <🏟"),
    (STADIUM + '&lt;<i    aba  =  "&lt;&gt;&quot;">a</i>', STADIUM + "<a"),
    (STADIUM + "&lt;<i>a</    >", STADIUM + "<a"),
    ('<span class = "tg-spoiler">x</span><b>y</b>', "xy"),
    ('<a href="https://example.com/?a=1&amp;b=2">link</a>', "link"),
    ("<blockquote expandable>a&lt;<pre  >b;</></>", "a<b;"),
    ('<tg-emoji emoji-id="0"></tg-emoji>x', "x"),  # only a non-empty element is checked at its end
    ('<tg-time unix="1" format="wDt">x</tg-time><a href>y</a>', "xy"),
]

MARKDOWN_ERRORS = [
    ("join @my_group now", "Can't find end of the entity starting at byte offset 8"),
    ("*bold", "Can't find end of the entity starting at byte offset 0"),
    ("`code", "Can't find end of the entity starting at byte offset 0"),
    ("```pre`", "Can't find end of the entity starting at byte offset 0"),
    ("see [the link", "Can't find end of the entity starting at byte offset 4"),
]

MARKDOWN_OK = [
    ("*bold* _it_ `c` [t](http://x.y)", "bold it c t"),
    ("snake\\_case and 2\\*3", "snake_case and 2*3"),
    ("```python\nprint(1)```", "print(1)"),
    ("Price: 5.00 (incl. tax)!", "Price: 5.00 (incl. tax)!"),
]


@pytest.mark.parametrize(("markup", "error"), MARKDOWN_V2_ERRORS)
def test_markdown_v2_errors_match_telegram(markup: str, error: str) -> None:
    assert check_markup(markup, "MarkdownV2") == f"can't parse entities: {error}"


@pytest.mark.parametrize(("markup", "shown"), MARKDOWN_V2_OK)
def test_markdown_v2_valid_markup_and_visible_text(markup: str, shown: str) -> None:
    assert check_markup(markup, "MarkdownV2") is None
    assert visible_length(markup, "MarkdownV2") == len(shown.strip().encode("utf-16-le")) // 2


@pytest.mark.parametrize(("markup", "error"), HTML_ERRORS)
def test_html_errors_match_telegram(markup: str, error: str) -> None:
    assert check_markup(markup, "HTML") == f"can't parse entities: {error}"


@pytest.mark.parametrize(("markup", "shown"), HTML_OK)
def test_html_valid_markup_and_visible_text(markup: str, shown: str) -> None:
    assert check_markup(markup, "html") is None
    assert visible_length(markup, "HTML") == len(shown.strip().encode("utf-16-le")) // 2


@pytest.mark.parametrize(("markup", "error"), MARKDOWN_ERRORS)
def test_legacy_markdown_unclosed_entities(markup: str, error: str) -> None:
    assert check_markup(markup, "Markdown") == f"can't parse entities: {error}"


@pytest.mark.parametrize(("markup", "shown"), MARKDOWN_OK)
def test_legacy_markdown_valid(markup: str, shown: str) -> None:
    assert check_markup(markup, "Markdown") is None
    assert visible_length(markup, "Markdown") == len(shown)


def test_plain_text_has_no_markup_errors() -> None:
    assert check_markup("*_[`<&", None) is None
    assert visible_length("*_[`<&", None) == 6


def test_unknown_parse_mode_is_reported() -> None:
    assert check_markup("x", "markdown3") == "unsupported parse_mode (use Markdown, MarkdownV2 or HTML)"


def test_minimal_text_request_defaults() -> None:
    req = validate_broadcast({"text": "Hello"})
    assert req == BroadcastRequest(text="Hello", photo_url=None, caption=None, parse_mode=None, target={"kind": "all"})


def test_parse_mode_is_normalised_to_telegram_spelling() -> None:
    assert validate_broadcast({"text": "*x*", "parse_mode": "markdownv2"}).parse_mode == "MarkdownV2"
    assert validate_broadcast({"text": "<b>x</b>", "parse_mode": "html"}).parse_mode == "HTML"
    assert validate_broadcast({"text": "*x*", "parse_mode": "MARKDOWN"}).parse_mode == "Markdown"


def _field_of(data: dict[str, object], **kw: object) -> str:
    with pytest.raises(ValidationError) as info:
        validate_broadcast(data, **kw)  # type: ignore[arg-type]
    assert info.value.message
    return info.value.field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "text"),
        ({"text": "   "}, "text"),
        ({"text": 5}, "text"),
        ({"text": "a", "photo_url": "https://x.org/a.jpg"}, "photo_url"),
        ({"text": "a", "caption": "c"}, "caption"),
        ({"text": "x" * 4097}, "text"),
        ({"photo_url": "ftp://x.org/a.jpg"}, "photo_url"),
        ({"photo_url": "https:///a.jpg"}, "photo_url"),
        ({"photo_url": "not a url"}, "photo_url"),
        ({"photo_url": "https://x.org:99999/a.jpg"}, "photo_url"),
        ({"photo_url": "https://x.org/a.jpg", "caption": "c" * 1025}, "caption"),
        ({"photo_url": "https://x.org/a.jpg", "caption": "*x", "parse_mode": "Markdown"}, "caption"),
        ({"text": "a_b", "parse_mode": "Markdown"}, "text"),
        ({"text": "a", "parse_mode": "rtf"}, "parse_mode"),
        ({"text": "a", "parse_mode": 3}, "parse_mode"),
        ({"text": "a", "target": "some"}, "target"),
        ({"text": "a", "target": {"phase": "dead"}}, "target"),
        ({"text": "a", "target": {"group_ids": []}}, "target"),
        ({"text": "a", "target": {"group_ids": [1, "2"]}}, "target"),
        ({"text": "a", "target": {"group_ids": [True]}}, "target"),
        ({"text": "a", "target": {"group_ids": [2**70]}}, "target"),
        ({"text": "a", "target": {"phase": "growth", "group_ids": [1]}}, "target"),
        ({"text": "a", "final": "yes"}, "final"),
        ({"text": "a", "send_at": "2030-01-01T10:00:00"}, "send_at"),
        ({"text": "a", "send_at": "tomorrow"}, "send_at"),
        ({"text": "a", "send_at": 1234}, "send_at"),
        ({"text": "a", "send_at": "2000-01-01T10:00:00+00:00"}, "send_at"),
        ({"text": "a", "colour": "red"}, "colour"),
        ({"text": "a\ud800"}, "text"),
    ],
)
def test_invalid_requests_name_the_field(data: dict[str, object], field: str) -> None:
    assert _field_of(data) == field


def test_length_counts_utf16_units_after_parsing() -> None:
    # 2048 emoji outside the BMP = 4096 UTF-16 units: exactly at the limit.
    assert validate_broadcast({"text": "😀" * 2048}).text
    assert _field_of({"text": "😀" * 2049}) == "text"
    # Markup does not count: 4096 visible characters wrapped in bold are fine.
    assert validate_broadcast({"text": "<b>" + "x" * 4096 + "</b>", "parse_mode": "HTML"}).text
    assert _field_of({"text": "<b>" + "x" * 4097 + "</b>", "parse_mode": "HTML"}) == "text"


def test_markup_error_message_is_telegram_like() -> None:
    with pytest.raises(ValidationError) as info:
        validate_broadcast({"text": "hi *there", "parse_mode": "Markdown"})
    assert info.value.message == "can't parse entities: Can't find end of the entity starting at byte offset 3"


def test_targets_are_normalised() -> None:
    assert validate_broadcast({"text": "a", "target": "all"}).target == {"kind": "all"}
    assert validate_broadcast({"text": "a", "target": {"phase": "monitoring"}}).target == {
        "kind": "phase",
        "phase": "monitoring",
    }
    assert validate_broadcast({"text": "a", "target": {"group_ids": [-100, 5, -100]}}).target == {
        "kind": "groups",
        "group_ids": [-100, 5],
    }
    stored = {"kind": "groups", "group_ids": [7]}
    assert validate_broadcast({"text": "a", "target": stored}).target == stored


def test_photo_with_caption_and_final_flag() -> None:
    req = validate_broadcast(
        {"photo_url": "https://cdn.example.org/p.jpg", "caption": "<b>New</b>", "parse_mode": "HTML", "final": True}
    )
    assert (req.photo_url, req.caption, req.is_final, req.text) == (
        "https://cdn.example.org/p.jpg",
        "<b>New</b>",
        True,
        None,
    )


def test_send_at_needs_timezone_and_is_normalised_to_utc() -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    req = validate_broadcast({"text": "a", "send_at": "2030-01-01T14:00:00+02:00"}, now=now)
    assert req.send_at == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    req = validate_broadcast({"text": "a", "send_at": "2030-01-01T11:59:30Z"}, now=now)  # within a minute
    assert req.send_at == now - timedelta(seconds=30)
    assert _field_of({"text": "a", "send_at": "2030-01-01T11:58:00Z"}, now=now) == "send_at"


def test_form_feed_is_not_a_space_for_telegram() -> None:
    # TDLib's is_space() (tdutils/td/utils/misc.h) leaves out form feed: it belongs to a pre's language
    assert parsed_text("```\x0c\x0bz```", "Markdown") == "\x0bz"
    assert parsed_text("```\x0c\x0bz```", "MarkdownV2") == "\x0bz"


def test_visible_length_counts_what_telegram_stores() -> None:
    # control characters become spaces, carriage returns go, spaces and line breaks are trimmed
    assert visible_length("\t a\r\nb\x00\x0c\n", None) == 3
    assert visible_length("\u00a0x\u2028", None) == 2  # no-break space stays, U+2028 is dropped
