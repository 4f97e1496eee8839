"""Message templates: `templates/<lang>/<flow>/<message>.<variant>.j2`, rendered in a sandbox.

Variants: `txt` (required: the plain text every channel can show), `html` (email HTML and the
Matrix `formatted_body`; derived from the text when absent), and a channel-specific
`email.txt` / `matrix.txt` when plain text is not enough. A template sets its email subject
with `{% set subject = "…" %}`. A missing language falls back to English, so a translation can
be partial. Organisers may edit templates; the sandbox keeps a template from reaching into
Python objects.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

DEFAULT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
FALLBACK_LANGUAGE = "en"
_URL = re.compile(r"(https?://[^\s<]+)")


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


class TemplateError(Exception):
    """A template is missing or broken; the message names which."""


class Renderer:
    """Renders a named message for a language and channel."""

    def __init__(self, root: Path = DEFAULT_TEMPLATES) -> None:
        self.root = root
        self.env = _environment(root, autoescape=False)
        self.html_env = _environment(root, autoescape=True)
        self._found: dict[tuple[str, str, tuple[str, ...]], str | None] = {}
        #: Compiled templates by environment and path: jinja's own cache is an LRU with a
        #: lock and a loader check on each lookup, and every outgoing message looks up two.
        self._compiled: dict[tuple[bool, str], Template] = {}

    def clear(self) -> None:
        """Forget found and compiled templates, so edited ones are read again (on reload).

        Rendering happens for every outgoing message inside the engine's transaction; not
        looking at the file system each time keeps that cheap.
        """
        self._found.clear()
        self._compiled.clear()
        for env in (self.env, self.html_env):
            if env.cache is not None:
                env.cache.clear()

    def render(
        self, name: str, *, language: str, channel: str, context: Mapping[str, Any]
    ) -> Rendered:
        """Render message `name` (e.g. "registration/question") for a person."""
        ctx = {**context, "channel": channel, "language": language}
        text_path = self._find(name, language, (f"{channel}.txt", "txt"))
        if text_path is None:
            raise TemplateError(f"no template {name}.txt.j2 in {self.root} for '{language}'")
        try:
            module = self._template(text_path, html=False).make_module(ctx)
            text = _tidy(str(module))
            subject = str(getattr(module, "subject", "")).strip()
            html_path = self._find(name, language, (f"{channel}.html", "html"))
            body_html = (
                self._template(html_path, html=True).render(ctx).strip()
                if html_path
                else text_to_html(text)
            )
        except TemplateNotFound as exc:
            raise TemplateError(f"template {name}: included file {exc.name} not found") from exc
        except Exception as exc:  # jinja2 raises many kinds; name the template in every case
            raise TemplateError(f"template {name} ({language}): {exc}") from exc
        return Rendered(subject=subject, text=text, html=body_html)

    def _template(self, path: str, *, html: bool) -> Template:
        key = (html, path)
        if key not in self._compiled:
            self._compiled[key] = (self.html_env if html else self.env).get_template(path)
        return self._compiled[key]

    def _find(self, name: str, language: str, variants: tuple[str, ...]) -> str | None:
        key = (name, language, variants)
        if key not in self._found:
            self._found[key] = next(
                (
                    f"{lang}/{name}.{variant}.j2"
                    for lang in dict.fromkeys((language, FALLBACK_LANGUAGE))
                    for variant in variants
                    if (self.root / f"{lang}/{name}.{variant}.j2").is_file()
                ),
                None,
            )
        return self._found[key]


#: Names a template reaches on a dict as its methods (`d.items`), not as its keys.
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Sandbox(SandboxedEnvironment):
    """The sandbox, with a shorter way to the values in the contexts' dicts."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Templates read dicts with dots (`gathering.name`): jinja looks for an attribute
        # first and finds the key only after an AttributeError, a dozen times a message. A
        # key of a plain dict is what that path returns too, without a safety check, as it
        # is data; dict's own names still go the long way, which finds the method first.
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def _environment(root: Path, *, autoescape: bool) -> SandboxedEnvironment:
    """Templates are found once and compiled once; `Renderer.clear` forgets them."""
    return _Sandbox(
        loader=FileSystemLoader(str(root)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=autoescape,
        auto_reload=False,
    )


def text_to_html(text: str) -> str:
    """A plain, safe HTML version of a text message: paragraphs, line breaks and links."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    out = []
    for paragraph in paragraphs:
        escaped = html.escape(paragraph)
        linked = _URL.sub(r'<a href="\1">\1</a>', escaped) if "://" in escaped else escaped
        out.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    return "\n".join(out)


def _tidy(text: str) -> str:
    """Strip trailing spaces and collapse runs of blank lines left by template logic."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
