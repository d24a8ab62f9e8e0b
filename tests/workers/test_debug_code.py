"""The debug code appended to a broadcast never breaks its markup and survives as visible text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tgms_tui.backend import debug_code
from tgms_tui.backend.markup import check_markup, parsed_text

MODES = [None, "Markdown", "MarkdownV2", "HTML"]
CODE = "B123G045"


@settings(max_examples=400, deadline=None)
@given(text=st.text(alphabet="ab \n*_~`|[]()<>&\\.!#-=+{}/", max_size=40), mode=st.sampled_from(MODES))
def test_a_valid_text_stays_valid_and_ends_with_the_code(text: str, mode: str | None) -> None:
    if check_markup(text, mode) is not None:
        return  # invalid before the code: rejected by validation, never sent
    final = debug_code.appended(text, CODE, mode)
    assert check_markup(final, mode) is None, (text, mode)
    if debug_code.problem(text, CODE, mode, caption=False) is None:
        assert parsed_text(final, mode).rstrip().endswith(CODE)
    else:  # only text that ends inside a link's URL (legacy Markdown) swallows what follows
        assert mode == "Markdown" and "](" in text, text


def test_a_link_url_left_open_at_the_end_is_caught_before_sending() -> None:
    problem = debug_code.problem("see [here](", CODE, "Markdown", caption=False)
    assert problem is not None and "not be visible" in problem


def test_codes_with_markup_characters_are_escaped_per_mode() -> None:
    assert debug_code.suffix("a_b.c", "MarkdownV2") == "a\\_b\\.c"
    assert debug_code.suffix("a<b>&", "HTML") == "a&lt;b&gt;&amp;"
    assert debug_code.suffix("a_b*c", "Markdown") == "abc"
    assert debug_code.appended(None, CODE, "HTML") == CODE  # a photo without caption: the code alone


def test_length_is_checked_with_the_code_appended() -> None:
    fits = "x" * (4096 - len(CODE) - 2)
    assert debug_code.problem(fits, CODE, None, caption=False) is None
    problem = debug_code.problem(fits + "x", CODE, None, caption=False)
    assert problem is not None and "too long with the debug code" in problem
    assert debug_code.problem("*" + "y" * 1000 + "*", CODE, "Markdown", caption=True) is None  # markup is free
    assert debug_code.problem("bad *markup", CODE, "MarkdownV2", caption=False) is not None
