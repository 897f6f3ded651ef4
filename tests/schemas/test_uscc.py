"""GB 32100-2015 Unified Social Credit Code validation."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.uscc import (
    ALPHABET,
    WEIGHTS,
    USCCError,
    check_character,
    is_individual_business,
    normalize_uscc,
    organisation_code_warning,
    uscc_problem_reason,
    validate_uscc,
)

PUBLISHED = ("91440300708461136T", "914403001922038216")

bodies = st.text(alphabet=ALPHABET, min_size=17, max_size=17)
valid_codes = bodies.map(lambda b: b + check_character(b))


def test_alphabet_and_weights_match_the_standard() -> None:
    assert len(ALPHABET) == 31
    assert not set("IOSVZ") & set(ALPHABET)
    # Literal list from GB 32100 / DOMAIN.md, not recomputed.
    assert WEIGHTS == (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_are_valid(code: str) -> None:
    assert validate_uscc(code) == code
    assert uscc_problem_reason(code) is None


def test_worked_example() -> None:
    code = PUBLISHED[0]
    values = [ALPHABET.index(c) for c in code[:17]]
    assert values == [9, 1, 4, 4, 0, 3, 0, 0, 7, 0, 8, 4, 6, 1, 1, 3, 6]
    total = sum(v * w for v, w in zip(values, WEIGHTS, strict=True))
    assert total == 966
    assert total % 31 == 5
    assert check_character(code[:17]) == "T" == ALPHABET[26]


def test_check_value_31_is_written_as_zero() -> None:
    # W (28) x 1 + 1 x 3 = 31: the sum is divisible by 31, so 31 - 0 = 31 -> "0".
    assert check_character("W1" + "0" * 15) == "0"
    assert check_character("0" * 17) == "0"
    assert uscc_problem_reason("W1" + "0" * 16) is None


def test_check_value_30_is_y() -> None:
    # Body value 1 at position 1 (weight 1): sum 1, check value 30.
    assert check_character("1" + "0" * 16) == "Y"


@pytest.mark.parametrize(
    "raw",
    [
        "91440300708461136t",
        " 91440300708461136T ",
        "\t91440300708461136t\n",
        "\u300091440300708461136T\u3000",
        "\ufeff91440300708461136T",
    ],
)
def test_input_is_normalised(raw: str) -> None:
    assert normalize_uscc(raw) == PUBLISHED[0]
    assert validate_uscc(raw) == PUBLISHED[0]


def test_inner_whitespace_is_not_removed() -> None:
    assert uscc_problem_reason("914403007084 61136T") == "length"
    assert uscc_problem_reason("91440300708 61136T") == "charset"


def test_non_ascii_is_not_upper_cased_into_the_alphabet() -> None:
    # "ﬀ".upper() == "FF": a 17-character input must not become a valid code.
    body = "9112010" + "FF" + "12345678"
    code = body + check_character(body)
    assert validate_uscc(code) == code
    assert uscc_problem_reason(code.replace("FF", "\ufb00")) == "length"
    assert uscc_problem_reason(code.replace("FF", "ff")) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "length"),
        ("   ", "length"),
        ("91440300708461136", "length"),
        ("91440300708461136TT", "length"),
        ("9144030070846113IT", "charset"),  # I is excluded
        ("9144030070846113OT", "charset"),
        ("91440300708461136S", "charset"),
        ("91440300708461136Z", "charset"),
        ("9144030070846113-T", "charset"),
        ("9144030070846113６T", "charset"),  # full-width digit
        ("91440300708461136U", "checksum"),
        ("914403007084611360", "checksum"),
        ("914403001922038217", "checksum"),
        # Order: a wrong-length code with a bad character reports length.
        ("9144030070846113IT0", "length"),
        # A right-length code with a bad character and a bad check reports charset.
        ("I1440300708461136U", "charset"),
    ],
)
def test_reasons(raw: str, reason: str) -> None:
    with pytest.raises(USCCError) as info:
        validate_uscc(raw)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)
    assert uscc_problem_reason(raw) == reason


def test_error_message_never_echoes_input() -> None:
    for raw in ("91440300708461136U", "HELLO-SECRET-INPUT", "91440300708461136"):
        with pytest.raises(USCCError) as info:
            validate_uscc(raw)
        text = str(info.value) + repr(info.value)
        assert raw not in text
        assert raw.lower() not in text


def test_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(USCCError("checksum")))  # noqa: S301 - own object
    assert isinstance(err, USCCError)
    assert err.reason == "checksum"


def test_check_character_rejects_bad_bodies() -> None:
    with pytest.raises(USCCError) as info:
        check_character("9144030070846113")
    assert info.value.reason == "length"
    with pytest.raises(USCCError) as info:
        check_character("9144030070846113I")
    assert info.value.reason == "charset"


@given(bodies)
def test_every_body_has_exactly_one_valid_check_character(body: str) -> None:
    valid = [c for c in ALPHABET if uscc_problem_reason(body + c) is None]
    assert valid == [check_character(body)]


@given(valid_codes, st.integers(0, 17), st.integers(1, 30))
def test_any_single_substitution_is_caught(code: str, position: int, shift: int) -> None:
    assert validate_uscc(code) == code
    replacement = ALPHABET[(ALPHABET.index(code[position]) + shift) % 31]
    mutated = code[:position] + replacement + code[position + 1 :]
    assert mutated != code
    with pytest.raises(USCCError) as info:
        validate_uscc(mutated)
    assert info.value.reason == "checksum"


@given(valid_codes, st.integers(0, 16))
def test_any_adjacent_transposition_is_caught(code: str, position: int) -> None:
    a, b = code[position], code[position + 1]
    swapped = code[:position] + b + a + code[position + 2 :]
    if a == b:
        assert validate_uscc(swapped) == code
    else:
        assert uscc_problem_reason(swapped) == "checksum"


@given(valid_codes)
def test_lower_case_of_a_valid_code_is_valid(code: str) -> None:
    assert validate_uscc(f" {code.lower()}\u3000") == code


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_pass_the_organisation_check(code: str) -> None:
    assert organisation_code_warning(code) is False


def test_organisation_check_digit_x_and_zero() -> None:
    # Weights 3 7 9 10 5 8 4 2; check = 11 - (sum mod 11), 10 -> "X", 11 -> "0".
    # Org body 00000001: sum 2 -> 9.
    assert organisation_code_warning("91120101" + "00000001" + "9" + "0") is False
    # Org body 00000005: sum 10 -> 1.
    assert organisation_code_warning("91120101" + "00000005" + "1" + "X") is False
    # Org body 00000006: sum 12 -> 12 mod 11 = 1 -> 10 -> "X".
    assert organisation_code_warning("91120101" + "00000006" + "X" + "0") is False
    assert organisation_code_warning("91120101" + "00000006" + "0" + "X") is True
    # Org body 00000000: sum 0 -> 11 -> "0".
    assert organisation_code_warning("91120101" + "00000000" + "0" + "0") is False
    assert organisation_code_warning("91120101" + "00000000" + "1" + "0") is True


def test_organisation_check_letters_are_valued_from_ten() -> None:
    # Body 0000000A: A = 10, weight 2 -> 20 mod 11 = 9 -> 2.
    assert organisation_code_warning("91120101" + "0000000A" + "2" + "0") is False
    assert organisation_code_warning("91120101" + "0000000A" + "3" + "0") is True


def test_organisation_warning_never_rejects() -> None:
    body = "91120101" + "00000006" + "1"  # GB 11714 expects X here
    code = body + check_character(body)
    assert organisation_code_warning(code) is True
    assert validate_uscc(code) == code


def test_organisation_warning_on_malformed_input() -> None:
    assert organisation_code_warning("9144") is True


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("92120103MA05T4KX4Q", True),
        (" 92120103ma05t4kx4q ", True),
        ("91440300708461136T", False),
        ("29120103MA05T4KX4Q", False),
    ],
)
def test_is_individual_business(code: str, expected: bool) -> None:
    assert is_individual_business(code) is expected
