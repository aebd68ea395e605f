"""The HTML drift report opens offline: it parses, holds a plot per column, and loads
nothing from elsewhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pandas as pd

import relevo
from relevo.datasets import CHURN_FEATURES, make_churn

VOID = {"meta", "br", "img", "input", "link", "hr", "col"}
SVG_EMPTY = {"rect", "line", "path", "circle"}


class Checker(HTMLParser):
    """Tags balanced; every attribute that loads something listed."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.loads: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data") and value:
                self.loads.append(value)
            if name == "style" and value and "url(" in value:
                self.loads.append(value)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.loads.append(value)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_report_parses_and_loads_nothing_from_elsewhere() -> None:
    reference = make_churn(5000, seed=1)[CHURN_FEATURES]
    current = make_churn(3000, seed=2, ageing=6, new_contract_share=0.1)[CHURN_FEATURES]
    current.loc[0, "region"] = '<script>alert("x")</script>'  # data is text, never markup
    page = relevo.drift(reference, current).to_html()
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert "script" not in checker.tags
    # links only within the page; no http(s) resource anywhere but the SVG namespace name
    assert all(link.startswith("#") for link in checker.loads), checker.loads
    external = re.findall(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", page, re.I)
    assert external == []
    assert re.findall(r"url\(", page) == []
    assert checker.tags.count("svg") == len(CHURN_FEATURES)
    text = " ".join(checker.text)
    assert "age" in text and "contract" in text and "pay-as-you-go" in text
    assert '<script>alert("x")</script>' in text  # shown as text
    assert "Drifted: " in text


def test_the_report_says_when_nothing_could_be_judged() -> None:
    reference = pd.DataFrame({"x": range(1000)})
    page = relevo.drift(reference, pd.DataFrame({"x": range(10)})).to_html()
    assert "No feature could be judged" in page
