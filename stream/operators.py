"""Default number plan: which operator a peer number belongs to, and the care hotlines.

A Chinese-market default (numbers are E.164 digits with country code 86, e.g. ``8613800001234``;
short service numbers such as ``10086`` have no country code). Our network is ``own``; the
competitors are ``cu`` and ``ct``. All of it is configurable in the engine config.
"""

from __future__ import annotations

__all__ = ["DEFAULT_PREFIXES", "DEFAULT_COMPETITOR_HOTLINES", "DEFAULT_OWN_HOTLINES", "COUNTRY_CODE", "operator_of"]

COUNTRY_CODE = "86"

# national-number prefix (after the country code) -> operator code
DEFAULT_PREFIXES: dict[str, str] = {
    **{
        p: "own"
        for p in (
            "134",
            "135",
            "136",
            "137",
            "138",
            "139",
            "147",
            "150",
            "151",
            "152",
            "157",
            "158",
            "159",
            "178",
            "182",
            "183",
            "184",
            "187",
            "188",
            "198",
        )
    },
    **{p: "cu" for p in ("130", "131", "132", "145", "155", "156", "166", "175", "176", "185", "186")},
    **{p: "ct" for p in ("133", "149", "153", "173", "177", "180", "181", "189", "191", "199")},
}

# Care hotlines of competitors (a dial is alarm-level evidence) and our own (never a competitor).
DEFAULT_COMPETITOR_HOTLINES: dict[str, str] = {"10010": "cu", "10000": "ct"}
DEFAULT_OWN_HOTLINES: tuple[str, ...] = ("10086",)


def operator_of(number: str, prefixes: dict[str, str] = DEFAULT_PREFIXES, country_code: str = COUNTRY_CODE) -> str:
    """Operator code for a peer number by prefix; ``"unknown"`` when no prefix matches."""
    national = number[len(country_code) :] if number.startswith(country_code) and len(number) > 11 else number
    for n in (4, 3):
        op = prefixes.get(national[:n])
        if op is not None:
            return op
    return "unknown"
