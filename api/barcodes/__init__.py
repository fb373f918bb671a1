"""Barcodes read at the counter: NW-7 (Codabar) labels and patron cards (see nw7.py, docs/barcodes.md)."""

from api.barcodes.nw7 import (
    CHECK_SCHEMES,
    SCHEME_NAMES_EN,
    SCHEME_NAMES_JA,
    BarcodeRule,
    classify,
    compute_check_digit,
    describe_rule,
    has_valid_check_digit,
    is_book_jan,
    match_rule,
    parse_scan,
    rule_accepts,
    rules_for_branch,
    strip_scanner_chars,
)

__all__ = [
    "CHECK_SCHEMES",
    "SCHEME_NAMES_EN",
    "SCHEME_NAMES_JA",
    "BarcodeRule",
    "classify",
    "compute_check_digit",
    "describe_rule",
    "has_valid_check_digit",
    "is_book_jan",
    "match_rule",
    "parse_scan",
    "rule_accepts",
    "rules_for_branch",
    "strip_scanner_chars",
]
