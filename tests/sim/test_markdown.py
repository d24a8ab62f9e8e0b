"""The formatting parsers (TDLib's rules): parsed text, UTF-16 entity offsets, byte-offset errors."""

from __future__ import annotations

import pytest

from telegram_sim.markdown import (
    EntityParseError,
    FormattedText,
    UnsupportedParseMode,
    auto_entities,
    parse,
    strip_text,
    utf16_len,
)


def entities(text: str, mode: str) -> tuple[str, list[tuple[str, int, int]]]:
    parsed = parse(text, mode)
    return parsed.text, [(e["type"], e["offset"], e["length"]) for e in parsed.entities]


def test_legacy_markdown_entities() -> None:
    assert entities("*b* _i_ `c` [t](http://x.org)", "Markdown") == (
        "b i c t", [("bold", 0, 1), ("italic", 2, 1), ("code", 4, 1), ("text_link", 6, 1)])  # fmt: skip
    parsed = parse("```python\nprint(1)```", "Markdown")
    assert parsed.text == "print(1)" and parsed.entities[0]["language"] == "python"


def test_legacy_markdown_escapes_only_outside_entities() -> None:
    assert parse(r"snake\_case", "Markdown").text == "snake_case"
    assert parse(r"\*not bold\*", "Markdown").entities == []
    assert parse("1.5 - (ok) !", "Markdown").text == "1.5 - (ok) !"  # no escaping needed in legacy


def test_legacy_markdown_error_is_a_byte_offset() -> None:
    with pytest.raises(EntityParseError) as err:
        parse("привет_", "Markdown")  # six 2-byte letters: the underscore is byte 12, character 6
    assert str(err.value) == "Can't find end of the entity starting at byte offset 12"
    with pytest.raises(EntityParseError) as err:
        parse("ab😀 *x", "Markdown")
    assert str(err.value) == "Can't find end of the entity starting at byte offset 7"


def test_markdown_v2_entities_may_span_lines() -> None:
    assert entities("*a\nb*", "MarkdownV2") == ("a\nb", [("bold", 0, 3)])


def test_markdown_v2_nesting_and_escapes() -> None:
    assert entities(r"*bold _italic_* \. __u__ ~s~ ||sp||", "MarkdownV2") == (
        "bold italic . u s sp",
        [("bold", 0, 11), ("italic", 5, 6), ("underline", 14, 1), ("strikethrough", 16, 1), ("spoiler", 18, 2)],
    )
    assert parse(r"`code with * inside`", "MarkdownV2").text == "code with * inside"
    link = parse(r"[x](https://e.com/a\)b)", "MarkdownV2").entities[0]
    assert link == {"type": "text_link", "offset": 0, "length": 1, "url": "https://e.com/a)b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a-b", "Character '-' is reserved and must be escaped with the preceding '\\'"),
        ("x = 1", "Character '=' is reserved and must be escaped with the preceding '\\'"),
        ("a|b", "Character '|' is reserved and must be escaped with the preceding '\\'"),
        ("__under", "Can't find end of Underline entity at byte offset 0"),
        ("x ~strike", "Can't find end of Strikethrough entity at byte offset 2"),
        ("[link](http://a.com", "Can't find end of a URL at byte offset 7"),
        ("wow!", "Character '!' is reserved and must be escaped with the preceding '\\'"),
        ("`code", "Can't find end of Code entity at byte offset 0"),
    ],
)
def test_markdown_v2_errors(text: str, message: str) -> None:
    with pytest.raises(EntityParseError) as err:
        parse(text, "MarkdownV2")
    assert str(err.value) == message


def test_html() -> None:
    assert entities("<b>b</b> <i>i</i> <u>u</u> <s>s</s> <tg-spoiler>p</tg-spoiler> &lt;&amp;&gt;", "HTML") == (
        "b i u s p <&>", [("bold", 0, 1), ("italic", 2, 1), ("underline", 4, 1), ("strikethrough", 6, 1),
                          ("spoiler", 8, 1)])  # fmt: skip
    mention = parse('<a href="tg://user?id=42">Ann</a>', "HTML").entities[0]
    assert mention["type"] == "text_mention" and mention["user"]["id"] == 42
    assert parse('<a href="not a url">x</a>', "HTML").entities == []  # unusable links are dropped
    with pytest.raises(EntityParseError, match='Tag "span" must have class "tg-spoiler" at byte offset 0'):
        parse("<span>x</span>", "HTML")
    with pytest.raises(EntityParseError, match="Unexpected end tag at byte offset 1"):
        parse("x</b>", "HTML")


def test_plain_and_unknown_modes() -> None:
    assert parse("*x*", None) == FormattedText("*x*", [])
    assert parse("*x*", "None").text == "*x*"
    with pytest.raises(UnsupportedParseMode):
        parse("x", "markdown3")


def test_utf16_length_and_strip() -> None:
    assert utf16_len("a😀é") == 4
    stripped = strip_text(FormattedText("  hi *x*  ", [{"type": "bold", "offset": 2, "length": 4}]))
    assert stripped.text == "hi *x*" and stripped.entities == [{"type": "bold", "offset": 0, "length": 4}]


def test_auto_entities() -> None:
    found = auto_entities("/start@my_bot hi @ann see #news at example.com", [])
    assert [(e["type"], e["offset"], e["length"]) for e in found] == [
        ("bot_command", 0, 13), ("mention", 17, 4), ("hashtag", 26, 5), ("url", 35, 11)]  # fmt: skip
    code = [{"type": "code", "offset": 0, "length": 4}]
    assert auto_entities("@ann", code) == code


def test_markdown_v2_block_quotes() -> None:
    # parse_markdown_v2() in TDLib: '>' opens a quote where a line may start one; a second one is dropped
    assert entities(">>a\nb", "MarkdownV2") == ("a\nb", [("blockquote", 0, 2)])
    assert entities("**>a\n>b||\nc", "MarkdownV2") == ("a\nb\nc", [("expandable_blockquote", 0, 4)])
    assert entities("**>a\n>b||", "MarkdownV2") == ("a\nb", [("expandable_blockquote", 0, 3)])
    with pytest.raises(EntityParseError, match="Character '>' is reserved"):
        parse("a>b", "MarkdownV2")


def test_markdown_v2_custom_emoji_and_time_links() -> None:
    emoji = parse("![👍](tg://emoji?id=5368324170671202286)", "MarkdownV2").entities[0]
    assert emoji == {"type": "custom_emoji", "offset": 0, "length": 2, "custom_emoji_id": "5368324170671202286"}
    date = parse("![now](tg://time?unix=1700000000&format=Tdw)", "MarkdownV2").entities[0]
    assert date == {"type": "date_time", "offset": 0, "length": 3, "unix_time": 1700000000, "date_time_format": "wdT"}
    for markup, message in [
        ("![x]", "The entity must contain a tg://emoji or tg://time URL"),
        ("![x](tg://emoji?id=0)", "Invalid tg://emoji or tg://time URL specified"),
        ("![x](http://x.org)", "Invalid tg://emoji or tg://time URL specified"),
        ("![x](tg://time?unix=1&format=q)", "Invalid date format used"),
        ("![x](tg://emoji?id=5", "Can't find end of a URL at byte offset 5"),
    ]:
        with pytest.raises(EntityParseError) as err:
            parse(markup, "MarkdownV2")
        assert str(err.value) == message


def test_html_as_the_bot_api_server_parses_it() -> None:
    with pytest.raises(EntityParseError) as err:
        parse("<u>x", "HTML")
    assert str(err.value) == 'Can\'t find end tag corresponding to start tag "u"'
    assert entities("<a href>x.org</a> <i a b>i</i>", "HTML") == ("x.org i", [("text_link", 0, 5), ("italic", 6, 1)])
    assert entities("<blockquote expandable>q</blockquote>", "HTML") == ("q", [("expandable_blockquote", 0, 1)])
    date = parse('<tg-time unix="1700000000" format="r">now</tg-time>', "HTML").entities[0]
    assert date == {"type": "date_time", "offset": 0, "length": 3, "unix_time": 1700000000, "date_time_format": "r"}
    with pytest.raises(EntityParseError, match="Text contains invalid Unicode characters"):
        parse("&#55357;&#56832;", "HTML")  # each half encoded on its own: not a valid pair


def test_strip_text_cleans_like_telegram() -> None:
    cleaned = strip_text(FormattedText("\r\n a\r\tb\u2028c ", [{"type": "bold", "offset": 3, "length": 5}]))
    assert cleaned.text == "a bc" and cleaned.entities == [{"type": "bold", "offset": 0, "length": 3}]
