import pytest

from nas.common.budget import Budget, format_flops, parse_budget
from nas.search_spaces import UserError


@pytest.mark.parametrize("text, high", [
    ("4GFLOPs", 4e9), ("4 GFLOPs", 4e9), ("600MFLOPs", 600e6), ("600M", 600e6), ("4e9", 4e9), ("4G", 4e9),
    ("4gflops", 4e9), ("4 gFlOpS", 4e9), ("0.5G", 5e8), ("1.5e3M", 1.5e9), ("4GMACs", 4e9), ("250k", 250e3),
    ("1T", 1e12),
])
def test_upper_bounds(text, high):
    assert parse_budget(text) == Budget(high=high)


@pytest.mark.parametrize("text, low, high", [
    ("3.5-4GFLOPs", 3.5e9, 4e9), ("3.5G-4G", 3.5e9, 4e9), ("3.5 - 4 GFLOPs", 3.5e9, 4e9),
    ("600M-1G", 600e6, 1e9), ("1e9-2e9", 1e9, 2e9), ("3.6-4gflops", 3.6e9, 4e9),
])
def test_windows(text, low, high):
    b = parse_budget(text)
    assert (b.low, b.high) == (low, high)
    assert b.contains(low) and b.contains(high) and not b.contains(high + 1) and not b.contains(low - 1)


@pytest.mark.parametrize("budget, flag", [
    (Budget(high=4e9), "4GFLOPs"), (Budget(high=20e6, low=15e6), "15-20MFLOPs"),
    (Budget(high=1.2e9, low=900e6), "900MFLOPs-1.2GFLOPs"), (Budget(high=4089184256), None),
    (Budget(high=1e12 / 3, low=1e6 / 7), None), (Budget(high=2.5e15), "2500TFLOPs"),
])
def test_a_budget_written_as_a_flag_reads_back_exactly(budget, flag):
    """What 'nas space refine' prints as the child's --budget is the parent's budget, to the FLOP."""
    if flag is not None:
        assert budget.flag() == flag
    assert parse_budget(budget.flag()) == budget


@pytest.mark.parametrize("text", ["", "abc", "4XFLOPs", "-4G", "4G-3G", "4G-4G", "G", "4 G F", "4,5G", "0G"])
def test_bad_budgets_show_the_accepted_forms(text):
    with pytest.raises(UserError) as err:
        parse_budget(text)
    assert "\n" not in str(err.value)


def test_unrecognised_text_lists_accepted_forms():
    with pytest.raises(UserError, match="accepted forms: 4GFLOPs"):
        parse_budget("four gigaflops")


def test_a_bare_small_number_asks_for_a_unit():
    with pytest.raises(UserError, match="add a unit, e.g. 4GFLOPs"):
        parse_budget("4")


def test_format_flops():
    assert format_flops(4_089_184_256) == "4.09 GFLOPs"
    assert format_flops(600e6) == "600 MFLOPs"
    assert str(parse_budget("3.5-4G")) == "3.5 GFLOPs - 4 GFLOPs"


@pytest.mark.parametrize("text", ["1e400", "1e999999999", "9" * 40])
def test_absurd_numbers_are_refused_not_crashed_on(text):
    with pytest.raises(UserError, match="cannot read budget"):
        parse_budget(text)
