"""The 11-test for burgerservicenummers."""

import pytest

from gateway.core.bsn import bsn_valid


@pytest.mark.parametrize("bsn", ["111222333", "123456782", "999999990", "100000009"])
def test_valid_numbers_pass(bsn):
    assert bsn_valid(bsn) is True


@pytest.mark.parametrize(
    "bsn",
    [
        "111222334",  # one digit off
        "123456789",  # weighted sum not divisible by 11
        "000000000",  # passes the arithmetic, but is no number
        "12345678",  # eight digits
        "1234567820",  # ten digits
        "12345678a",
        " 11122233",
        "",
        "١١١٢٢٢٣٣٣",  # Arabic-Indic digits: int() would accept them, the contract does not
    ],
)
def test_invalid_numbers_fail(bsn):
    assert bsn_valid(bsn) is False


def test_weights_run_nine_to_two_minus_last():
    # 9*0 + 8*0 + ... + 2*1 - 1*2 = 0: divisible by 11 and not all zeros.
    assert bsn_valid("000000012") is True
    assert bsn_valid("000000011") is False
