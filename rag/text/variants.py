"""Spellings and unit names that mean the same thing, brought to one form before words are compared.

An answer that says "meters" where the passage says "metres", or 千米 where it says 公里, states the
same fact: support checks must count it as the passage's word. Two tables, deliberately closed (an
open rule such as -ise -> -ize would also turn "precise" and "promise" into other words):

* `canonical_word`: British -> American spellings and English unit abbreviations -> the unit's word,
  applied to one folded Latin word before stemming;
* `canonical_units_zh`: Chinese unit synonyms -> one of them, applied to folded Chinese text;
* `MEASURE_UNITS_EN`: the English words that are units of measure, so a bare number may be completed
  with one ("6259.6" -> "6259.6 km") but never with whatever word happens to follow it in a passage
  ("built in 1743 beside the river" does not make "1743" a figure in "beside").
"""

from __future__ import annotations

import re

# British -> American: the spellings that occur in manuals and reference text.
_SPELLING = {
    "metre": "meter", "metres": "meters", "kilometre": "kilometer", "kilometres": "kilometers",
    "centimetre": "centimeter", "centimetres": "centimeters", "millimetre": "millimeter", "millimetres": "millimeters",
    "litre": "liter", "litres": "liters", "centre": "center", "centres": "centers", "fibre": "fiber",
    "colour": "color", "colours": "colors", "behaviour": "behavior", "behaviours": "behaviors", "favour": "favor",
    "favourite": "favorite", "honour": "honor", "labour": "labor", "neighbour": "neighbor", "neighbours": "neighbors",
    "organise": "organize", "organised": "organized", "organisation": "organization", "recognise": "recognize",
    "recognised": "recognized", "realise": "realize", "realised": "realized", "customise": "customize",
    "customised": "customized", "initialise": "initialize", "initialised": "initialized", "optimise": "optimize",
    "optimised": "optimized", "authorise": "authorize", "authorised": "authorized", "synchronise": "synchronize",
    "synchronised": "synchronized", "licence": "license", "licences": "licenses", "defence": "defense",
    "catalogue": "catalog", "catalogues": "catalogs", "programme": "program", "programmes": "programs",
    "analyse": "analyze", "analysed": "analyzed", "grey": "gray", "travelling": "traveling", "travelled": "traveled",
    "cancelled": "canceled", "cancelling": "canceling", "modelling": "modeling", "labelled": "labeled",
}
# Abbreviations -> the unit's word (plural forms stem alike afterwards).
_UNIT_WORDS_EN = {
    "km": "kilometer", "kms": "kilometers", "cm": "centimeter", "mm": "millimeter", "kg": "kilogram",
    "kgs": "kilograms", "mi": "mile", "hr": "hour", "hrs": "hours", "min": "minute", "mins": "minutes",
    "sec": "second", "secs": "seconds", "yr": "year", "yrs": "years", "sq": "square",
}

MEASURE_UNITS_EN = frozenset("""
    year month week day hour minute second millisecond microsecond nanosecond decade century
    meter kilometer centimeter millimeter mile foot feet inch yard metre kilometre centimetre millimetre
    km cm mm mi ft
    gram kilogram milligram tonne ton pound ounce kg mg lb lbs oz
    liter litre milliliter gallon
    byte kilobyte megabyte gigabyte terabyte bit kb mb gb tb kib mib gib tib kbit mbit gbit
    percent degree dollar euro yuan pound yen cent
    hz khz mhz ghz watt kw kwh volt amp ampere
    core thread cpu node page line character word file package user
""".split())

# Chinese unit synonyms -> one form (the first is kept).
_ZH_UNIT_GROUPS = (("公里", "千米"), ("千克", "公斤"), ("米", "公尺"), ("厘米", "公分"))
_ZH_UNIT_RE = re.compile("|".join(sorted((o for g in _ZH_UNIT_GROUPS for o in g[1:]), key=len, reverse=True)))
_ZH_UNIT = {o: g[0] for g in _ZH_UNIT_GROUPS for o in g[1:]}


def canonical_word(word: str) -> str:
    """One spelling for a folded Latin word: "metres" -> "meters", "km" -> "kilometer"."""
    return _SPELLING.get(word) or _UNIT_WORDS_EN.get(word) or word


def canonical_units_zh(folded: str) -> str:
    """Folded Chinese text with unit synonyms written one way: 千米 -> 公里, 公斤 -> 千克."""
    return _ZH_UNIT_RE.sub(lambda m: _ZH_UNIT[m.group(0)], folded)


def canonical_unit(unit: str) -> str:
    """A figure's unit (folded, singular) in one form: "metre" and "meter" and "km" compare equal."""
    return canonical_units_zh(canonical_word(unit)) if unit else unit
