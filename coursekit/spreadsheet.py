"""CSV files that a spreadsheet opens as data: no cell of text is ever read as a formula.

Student ids, notes, check messages, names from an LMS: any of them can start with `=`, and Excel or LibreOffice
would then run it as a formula (`=HYPERLINK(...)`, DDE). As OWASP advises against CSV injection, a text cell that
starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a single quote in front. A plain number (`-3`,
`+2.5`, `1e-3`) and the `-` placeholder stay as they are, so that scores stay numbers. A text cell that starts
with a quote gets one more, so that `restore` gives back exactly what was written. Every CSV the kit writes goes
through `writer`; every one it reads back, through `restore`.
"""

import csv
import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|-")


def neutralise(value):
    """The cell as written to a CSV file: text that a spreadsheet would read as a formula gets a leading quote.
    Values that are not text (numbers, None) are left to the csv module."""
    if not isinstance(value, str) or NUMBER.fullmatch(value):
        return value
    return QUOTE + value if value.startswith((*FORMULA_START, QUOTE)) else value


def restore(text):
    """The value that `neutralise` was given, from the cell it wrote (anything but text is left as it is)."""
    return text[1:] if isinstance(text, str) and text.startswith(QUOTE) else text


class Writer:
    """csv.writer, with every cell neutralised."""

    def __init__(self, f, **options):
        self._writer = csv.writer(f, **options)

    def writerow(self, row):
        return self._writer.writerow([neutralise(value) for value in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


def writer(f, **options) -> Writer:
    return Writer(f, **options)
