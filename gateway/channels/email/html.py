"""HTML mail body -> plain text, with the clients' quoted-history containers removed.

A small stdlib HTMLParser is used rather than html2text: html2text emits Markdown
(``**bold**``, ``[label](url)``, escaped ``1\\.``) that would then leak into answers, and it
cannot drop an element subtree, which is exactly what quote removal needs.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_INVISIBLE = frozenset({"script", "style", "head", "title", "template", "noscript", "xml"})
_BLOCK = frozenset(
    {
        "address",
        "article",
        "blockquote",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
# Containers holding quoted history or an automatic signature; the subtree is dropped.
_SKIP_CLASSES = frozenset(
    {
        "gmail_quote",
        "gmail_quote_container",
        "gmail_signature",
        "gmail_signature_prefix",
        "yahoo_quoted",
        "moz-cite-prefix",
        "moz-signature",
        "protonmail_quote",
    }
)
# Outlook marks where the quoted original starts; everything from there on is history.
_CUT_IDS = ("appendonsend", "divrplyfwdmsg", "mail-editor-reference-message-container")
_CUT_CLASSES = frozenset({"outlookmessageheader"})
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0\u200b]+")
_BLANKS = re.compile(r"\n{3,}")
MAX_HTML = 400_000  # characters; new text comes first, what is cut is old history


class _TextExtractor(HTMLParser):
    def __init__(self, *, prune: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.prune = prune
        self.out: list[str] = []
        self.skip_tag: str | None = None
        self.skip_depth = 0
        self.stopped = False
        self.pre = 0
        self.lists: list[int] = []  # item counter per open list, 0 for <ul>

    def _last(self) -> str:
        return self.out[-1][-1:] if self.out and self.out[-1] else "\n"

    def _newline(self) -> None:
        if self._last() != "\n":
            self.out.append("\n")

    def _blank_line(self) -> None:
        self._newline()
        if "".join(self.out[-2:])[-2:] != "\n\n":
            self.out.append("\n")

    def _starts_skip(self, tag: str, attrs: dict[str, str]) -> bool:
        classes = set(attrs.get("class", "").lower().split())
        if tag in _INVISIBLE:
            return True
        if not self.prune:
            return False
        return bool(classes & _SKIP_CLASSES) or (
            tag == "blockquote" and attrs.get("type", "").lower() == "cite"
        )

    def handle_starttag(self, tag: str, raw_attrs: list[tuple[str, str | None]]) -> None:
        if self.stopped:
            return
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth += 1
            return
        attrs = {name.lower(): (value or "") for name, value in raw_attrs}
        element_id = attrs.get("id", "").lower()
        classes = set(attrs.get("class", "").lower().split())
        if self.prune and (element_id.endswith(_CUT_IDS) or classes & _CUT_CLASSES):
            self.stopped = True
            return
        if self._starts_skip(tag, attrs):
            if tag not in _VOID:
                self.skip_tag, self.skip_depth = tag, 1
            return
        self._open(tag, classes)

    def _open(self, tag: str, classes: set[str]) -> None:
        if tag == "br":
            self.out.append("\n")
        elif tag in ("ul", "ol"):
            self._newline()
            self.lists.append(1 if tag == "ol" else 0)
        elif tag == "li":
            self._newline()
            if self.lists and self.lists[-1]:
                self.out.append(f"{self.lists[-1]}. ")
                self.lists[-1] += 1
            else:
                self.out.append("- ")
        elif tag == "pre":
            self.pre += 1
            self._newline()
        elif tag == "p" and "msonormal" not in classes:
            self._blank_line()
        elif tag in _BLOCK:
            self._newline()
        elif tag in ("td", "th") and self._last() not in ("\n", " "):
            self.out.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stopped:
            return
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip_tag = None
            return
        if tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag == "p":
            self._blank_line()
        elif tag in _BLOCK:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.stopped or self.skip_tag is not None:
            return
        if self.pre:
            self.out.append(data.replace("\u00a0", " "))
            return
        text = _SPACES.sub(" ", data)
        if self._last() == "\n":
            text = text.lstrip(" ")
        if text:
            self.out.append(text)


def html_to_text(html: str, *, prune: bool = True) -> str:
    """Visible text of an HTML body, one line per block.

    With ``prune`` (the default) quoted history and automatic signatures are left out.
    """
    parser = _TextExtractor(prune=prune)
    try:
        parser.feed(html[:MAX_HTML])
        parser.close()
    except (AssertionError, ValueError):
        pass  # HTMLParser gives up on some malformed markup; keep what was read so far
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip("\n")
