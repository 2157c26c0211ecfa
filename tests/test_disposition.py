"""`content_disposition`: RFC 6266 values with an RFC 8187 ``filename*``.

Any string gives a value: never an error, never a control character, a bidi override,
a path separator or an over-long name in either parameter.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from streamfx._response.disposition import ascii_fallback, content_disposition, safe_filename

CONTROL = [*map(chr, range(0x20)), "\x7f", "\x85", "\x9f", "\u2028", "\u2029"]
BIDI = [*"\u202a\u202b\u202c\u202d\u202e", *"\u2066\u2067\u2068\u2069", "\u200e", "\u200f"]
BIDI.append("\u061c")
VALUE = re.compile(
    r"(?P<type>[!#$%&'*+\-.^_`|~0-9A-Za-z]+); filename=\"(?P<fallback>[^\"]*)\""
    r"(?:; filename\*=UTF-8''(?P<star>[!#$&+\-.^_`|~0-9A-Za-z%]+))?"
)


def parse(value: str) -> tuple[str, str, bool]:
    """The ASCII fallback, the name a modern agent saves as, and whether filename* is there.

    Fails if the value is not exactly the form `content_disposition` promises, or if
    ``filename*`` is not valid UTF-8 once percent-decoded.
    """
    match = VALUE.fullmatch(value)
    assert match is not None, value
    star = match["star"]
    if star is None:
        return match["fallback"], match["fallback"], False
    return match["fallback"], unquote(star, errors="strict"), True


def test_plain_ascii_name_gets_only_the_quoted_filename() -> None:
    assert content_disposition("report.csv") == 'attachment; filename="report.csv"'
    assert content_disposition(".bashrc") == 'attachment; filename=".bashrc"'


def test_inline_disposition() -> None:
    assert content_disposition("a.png", "inline") == 'inline; filename="a.png"'


def test_non_ascii_name_gets_filename_star_and_an_ascii_fallback() -> None:
    value = content_disposition("résumé 2024.pdf")
    assert value == (
        "attachment; filename=\"resume 2024.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf"
    )
    assert value.isascii()


def test_name_without_ascii_equivalent_falls_back_to_download_with_its_extension() -> None:
    assert parse(content_disposition("报告.txt")) == ("download.txt", "报告.txt", True)
    assert parse(content_disposition("报告")) == ("download", "报告", True)
    assert parse(content_disposition("报告.日本")) == ("download", "报告.日本", True)
    # underscores the caller chose are kept: only replaced characters trigger "download"
    assert content_disposition("___.txt") == 'attachment; filename="___.txt"'
    # a fallback with some letters or digits left keeps them
    assert parse(content_disposition("报告 2024.txt")) == ("__ 2024.txt", "报告 2024.txt", True)


@pytest.mark.parametrize("name", ['a"b.txt', "100%.txt", 'x"; filename="evil.exe'])
def test_quotes_and_percent_never_reach_the_quoted_fallback(name: str) -> None:
    fallback, saved, has_star = parse(content_disposition(name))
    assert has_star
    assert not set(fallback) & set('"\\%')
    assert saved == name


# -- defect 5: names that used to raise or to lie ------------------------------------


def test_an_empty_name_becomes_download() -> None:
    assert content_disposition("") == 'attachment; filename="download"'


@pytest.mark.parametrize("char", CONTROL)
def test_control_characters_are_removed(char: str) -> None:
    assert content_disposition(f"a{char}b.txt") == 'attachment; filename="ab.txt"'


def test_a_header_injection_attempt_stays_inside_the_value() -> None:
    value = content_disposition("a.txt\r\nSet-Cookie: session=stolen")
    assert value == 'attachment; filename="a.txtSet-Cookie: session=stolen"'
    assert content_disposition("\r\n\x00\t") == 'attachment; filename="download"'


@pytest.mark.parametrize("char", BIDI)
def test_bidi_controls_are_removed_from_both_parameters(char: str) -> None:
    # U+202E shows "invoice\u202egnp.exe" as "invoiceexe.png": the saved name must
    # read in its logical order, so the .exe shows.
    value = content_disposition(f"invoice{char}gnp.exe")
    assert value == 'attachment; filename="invoicegnp.exe"'
    fallback, saved, _ = parse(content_disposition(f"rapport été{char}gnp.exe"))
    assert (fallback, saved) == ("rapport etegnp.exe", "rapport étégnp.exe")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/b.txt", "a_b.txt"),
        ("a\\b.txt", "a_b.txt"),
        ("../../etc/passwd", ".._.._etc_passwd"),
        ("C:\\Windows\\evil.dll", "C:_Windows_evil.dll"),
    ],
)
def test_path_separators_are_replaced_in_both_parameters(name: str, expected: str) -> None:
    assert content_disposition(name) == f'attachment; filename="{expected}"'
    fallback, saved, _ = parse(content_disposition("é/" + name))
    assert (fallback, saved) == ("e_" + expected, "é_" + expected)


def test_separators_that_appear_in_the_ascii_fallback_are_replaced() -> None:
    # NFKD turns the fullwidth solidus and reverse solidus into "/" and "\", and
    # U+2100 into "a/c"
    fallback, saved, _ = parse(content_disposition("a\uff0fb\uff3cc\u2100.txt"))
    assert (fallback, saved) == ("a_b_ca_c.txt", "a\uff0fb\uff3cc\u2100.txt")


@pytest.mark.parametrize("name", [".", "..", "...", " ", " . ", "\u202e", ""])
def test_names_that_are_only_dots_or_spaces_become_download(name: str) -> None:
    assert content_disposition(name) == 'attachment; filename="download"'


def test_surrounding_whitespace_is_stripped() -> None:
    assert content_disposition("  report.csv \u3000") == 'attachment; filename="report.csv"'


@pytest.mark.parametrize(
    ("name", "fallback", "saved"),
    [
        # os.listdir gives lone surrogates for bytes that are not UTF-8: each is shown
        # as U+FFFD, as a UTF-8 decoder with errors="replace" would show the raw name
        ("\udc80.txt", "download.txt", "\ufffd.txt"),
        ("caf\udce9.txt", "caf_.txt", "caf\ufffd.txt"),
        ("\ud83d\ude00.png", "download.png", "\ufffd\ufffd.png"),
    ],
)
def test_lone_surrogates_become_replacement_characters(
    name: str, fallback: str, saved: str
) -> None:
    assert parse(content_disposition(name)) == (fallback, saved, True)


def test_a_long_name_is_cut_to_255_bytes_keeping_its_extension() -> None:
    value = content_disposition("a" * 10_000 + ".pdf")
    assert value == f'attachment; filename="{"a" * 251}.pdf"'
    fallback, saved, _ = parse(content_disposition("é" * 10_000 + ".pdf"))
    assert saved == "é" * 125 + ".pdf"  # 254 bytes: a 126th é would make 256
    assert fallback == "e" * 125 + ".pdf"
    # a very long "extension" is not one: the name is simply cut
    assert content_disposition("a." + "b" * 300) == f'attachment; filename="a.{"b" * 253}"'


def test_a_fallback_that_nfkd_lengthens_is_cut_too() -> None:
    # U+247D (3 bytes in UTF-8) decomposes into "(10)"
    fallback, saved, _ = parse(content_disposition("\u247d" * 80 + ".txt"))
    assert saved == "\u247d" * 80 + ".txt"
    assert fallback == ("(10)" * 80)[:251] + ".txt"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="token"):
        content_disposition("a.txt", "attachment; x=1")
    with pytest.raises(TypeError):
        content_disposition(b"a.txt")  # type: ignore[arg-type]


# -- properties over any string ------------------------------------------------------

FORBIDDEN_IN_NAME = set(BIDI) | set("/\\")
# every code point, lone surrogates included (hypothesis leaves them out unless asked)
any_char = st.characters(codec=None, exclude_categories=()) | st.characters(categories=["Cs"])
any_text = st.text(any_char, max_size=300)
interesting = st.text(
    st.sampled_from([*CONTROL, *BIDI, "/", "\\", ".", " ", "é", "报", "\udc80", '"', "%", "a"]),
    max_size=40,
)
names = any_text | interesting | st.builds(str.__add__, any_text, st.just(".pdf"))


def is_unsafe(char: str) -> bool:
    return char in FORBIDDEN_IN_NAME or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")


@given(names)
@example("\udc80.txt")
@example("x" * 3000)
@example("\u202egnp.exe")
def test_any_name_gives_a_bounded_safe_value(name: str) -> None:
    value = content_disposition(name)
    value.encode("latin-1")  # never raises: a header value
    assert value.isascii()
    assert value.isprintable()
    assert len(value) <= len("attachment") + 1100
    fallback, saved, _ = parse(value)
    for shown in (fallback, saved):
        assert shown
        assert shown.strip(". ")
        assert not any(map(is_unsafe, shown))
        assert len(shown.encode()) <= 255
    assert not set(fallback) & set('"\\%/')
    if name.endswith(".pdf"):
        assert fallback.endswith(".pdf")
        assert saved.endswith(".pdf")


@given(names)
def test_a_safe_name_is_sent_unchanged_and_the_rule_is_idempotent(name: str) -> None:
    _, saved, _ = parse(content_disposition(name))
    assert parse(content_disposition(saved))[1] == saved
    plain = re.fullmatch(r"[\x20-\x7e]{1,255}", name) and not set(name) & set('"\\%/')
    if plain and name == name.strip() and name.strip("."):
        assert content_disposition(name) == f'attachment; filename="{name}"'


@given(names | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300))
def test_the_plain_name_shortcut_agrees_with_the_rules(name: str) -> None:
    expected = safe_filename(name)
    fallback = ascii_fallback(expected)
    parsed = parse(content_disposition(name))
    assert parsed == (fallback, expected, fallback != expected)
