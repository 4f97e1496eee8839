"""Unit tests of reply extraction: the cases that separate a person's text from history."""

from __future__ import annotations

import pytest

from gateway.channels.email.html import html_to_text
from gateway.channels.email.reply_extract import extract_answers, extract_reply

QUOTE = "> Hi Maya,\n>\n> 1. Which diet?\n> 2. How many nights?\n"


@pytest.mark.parametrize(
    "attribution",
    [
        "On Tue, 3 Mar 2026 at 10:12, Camp <camp@x.org> wrote:",
        "On Tue, 3 Mar 2026 at 10:12, Camp <camp@x.org>\nwrote:",
        "Le mar. 3 mars 2026 à 10:12, Camp <camp@x.org> a écrit :",
        "Le mar. 3 mars 2026 à 10:12, Camp <camp@x.org> a\nécrit\u202f:",
        "Am Di., 3. März 2026 um 10:12 Uhr schrieb Camp <camp@x.org>:",
        "El mar, 3 mar 2026 a las 10:12, Camp (<camp@x.org>) escribió:",
        "Em ter., 3 de mar. de 2026 às 10:12, Camp <camp@x.org> escreveu:",
        "Op di 3 mrt 2026 om 10:12 schreef Camp <camp@x.org>:",
        "Il giorno mar 3 mar 2026 alle ore 10:12 Camp <camp@x.org> ha scritto:",
        "Camp <camp@x.org> schrieb am Di., 3. März 2026, 10:12:",
        "2026年3月3日(火) 10:12 Camp <camp@x.org>:",
        "On 03/03/2026 10:12, Camp wrote:",
    ],
)
def test_attribution_lines_in_many_languages(attribution: str) -> None:
    assert extract_reply(f"Yes!\n\n{attribution}\n\n{QUOTE}") == "Yes!"


@pytest.mark.parametrize(
    "block",
    [
        "From: Camp <camp@x.org>\nSent: Tuesday, March 3, 2026 10:12 AM\nTo: Maya\nSubject: Q",
        "*From:* Camp <camp@x.org>\n*Sent:* Tuesday, March 3, 2026 10:12 AM\n"
        "*To:* Maya\n*Subject:* Q",
        "Von: Camp <camp@x.org>\nGesendet: Dienstag, 3. März 2026 10:12\nAn: Maya\nBetreff: Q",
        "De : Camp <camp@x.org>\nEnvoyé : mardi 3 mars 2026 10:12\nÀ : Maya\nObjet : Q",
        "De: Camp <camp@x.org>\nEnviado: martes, 3 de marzo de 2026 10:12\nPara: Maya\nAsunto: Q",
        "Van: Camp <camp@x.org>\nVerzonden: dinsdag 3 maart 2026 10:12\nAan: Maya\nOnderwerp: Q",
        "From: Camp <camp@x.org>\nDate: Tuesday, 3 March 2026 at 10:12\nTo: Maya <maya@a.org>,\n"
        " Ben <ben@b.org>\nCc: Ana <ana@c.org>\nSubject: Q",
        "-----Original Message-----\nFrom: Camp\nSent: today\nSubject: Q",
        "-----Ursprüngliche Nachricht-----\nVon: Camp",
        "-----Message d'origine-----\nDe : Camp",
        "________________________________\nFrom: Camp",
        "-------- Original message --------\nFrom: Camp <camp@x.org>\nDate: 03/03/2026",
    ],
)
def test_outlook_history_blocks(block: str) -> None:
    text = f"Yes, two nights.\n\nMaya\n\n{block}\n\nHi Maya,\n1. Which diet?\n"
    assert extract_reply(text) == "Yes, two nights.\n\nMaya"


def test_own_header_like_lines_are_kept() -> None:
    text = "Route:\nFrom: Berlin\nTo: Leipzig\nSubject: to change\n\nMaya"
    assert extract_reply(text) == text


def test_lone_quote_line_typed_by_the_person_is_kept() -> None:
    assert extract_reply("We are\n> 5 people\nnow.") == "We are\n> 5 people\nnow."


def test_bottom_post() -> None:
    text = f"On Tue, 3 Mar 2026, Camp <camp@x.org> wrote:\n{QUOTE}\nvegan, 2 nights\n\nMaya\n"
    assert extract_reply(text) == "vegan, 2 nights\n\nMaya"


def test_signature_after_dashes_is_removed_but_sign_off_kept() -> None:
    text = "Yes.\n\nThanks,\nMaya\n\n-- \nMaya Keller\nACME Corp | +49 30 123\n"
    assert extract_reply(text) == "Yes.\n\nThanks,\nMaya"


@pytest.mark.parametrize(
    "line",
    [
        "Sent from my iPhone",
        "Sent from my Galaxy",
        "Envoyé de mon iPhone",
        "Von meinem iPhone gesendet",
        "Enviado desde mi iPhone",
        "Enviado do meu iPhone",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Get Outlook for Android",
        "Sent from Mail for Windows",
        "Sent from Mail<https://go.microsoft.com/fwlink/?LinkId=550986> for Windows 10",
        "Sent from my Samsung Galaxy smartphone.",
    ],
)
def test_mobile_sign_offs(line: str) -> None:
    assert extract_reply(f"On my way.\n\n{line}\n") == "On my way."


@pytest.mark.parametrize(
    "footer",
    [
        "This email and any attachments are confidential and intended solely for the addressee.",
        "CONFIDENTIALITY NOTICE: This message is for the intended recipient only.",
        "Diese E-Mail enthält vertrauliche und/oder rechtlich geschützte Informationen.",
        "Ce message et toutes les pièces jointes sont confidentiels.",
    ],
)
def test_legal_footers(footer: str) -> None:
    text = f"Fine by me.\n\nTom\n\n{footer}\nMore legalese.\n"
    assert extract_reply(text) == "Fine by me.\n\nTom"


def test_sentence_ending_in_wrote_is_kept_without_quote() -> None:
    text = "Here is what my friend wrote:\nshe comes too."
    assert extract_reply(text) == text


def test_html_quote_containers_are_dropped() -> None:
    html = (
        '<div dir="ltr">Yes<div><br></div><div>Maya</div></div>'
        '<div class="gmail_quote"><div class="gmail_attr">On ... wrote:</div>'
        "<blockquote>old</blockquote></div>"
    )
    assert extract_reply("", html=html) == "Yes\n\nMaya"
    html = (
        '<p>Ok</p><div class="moz-cite-prefix">On x, Camp wrote:</div>'
        '<blockquote type="cite">old</blockquote>'
    )
    assert extract_reply("", html=html) == "Ok"
    html = (
        '<div>Ok</div><div id="appendonsend"></div><hr>'
        '<div id="divRplyFwdMsg"><b>From:</b> x</div>old'
    )
    assert extract_reply("", html=html) == "Ok"


def test_html_to_text_layout() -> None:
    html = "<ol><li>vegan</li><li>3</li></ol><p>a&nbsp;b</p><script>x()</script><pre>  keep</pre>"
    assert html_to_text(html) == "1. vegan\n2. 3\n\na b\n\nkeep"


def test_inline_answers_under_quoted_questions() -> None:
    text = (
        "On Tue, Camp <camp@x.org> wrote:\n> Hi,\n>\n> 1. Which diet? (vegan /\n> vegetarian)\n"
        "vegan\n> 2. How many nights?\n3\n\nThanks, Maya\n"
    )
    new_text = extract_reply(text)
    assert extract_answers(text, new_text, 2) == {1: "vegan", 2: "3"}
    assert new_text == "vegan\n\n3\n\nThanks, Maya"


def test_trimmed_inline_reply_without_attribution() -> None:
    text = "> 1. Which diet?\nvegan\n> 2. How many nights?\n3\n"
    new_text = extract_reply(text)
    assert new_text == "vegan\n\n3"
    assert extract_answers(text, new_text, 2) == {1: "vegan", 2: "3"}


def test_numbered_answers_in_own_text() -> None:
    text = "1. vegan\n2) 3\n3: yes\n4 - maybe\n\n> 1. Which diet?\n> 2. Nights?"
    answers = extract_answers(text, extract_reply(text), 4)
    assert answers == {1: "vegan", 2: "3", 3: "yes", 4: "maybe"}


def test_numbered_history_lines_are_not_answers() -> None:
    text = "Sure!\n\nFrom: Camp\nSent: today\nTo: Maya\nSubject: Q\n\n1. Which diet?\n2. Nights?"
    assert extract_answers(text, extract_reply(text), 2) == {}


def test_no_answers_when_none_given() -> None:
    text = "I'll tell you later.\n\nOn x, Camp <c@x.org> wrote:\n> 1. Which diet?\n> 2. Nights?"
    assert extract_answers(text, extract_reply(text), 2) == {}


def test_huge_line_is_fast() -> None:
    text = "a" * 2_000_000 + "\n> b\n> c"
    assert extract_reply(text).startswith("aaa")


def test_quote_lines_typed_above_the_real_quote_are_the_persons_text() -> None:
    """A quoted doctor's letter typed above the reply history was dropped as history."""
    text = (
        "About my allergy, my doctor wrote:\n"
        "> Severe peanut allergy, carries an EpiPen.\n"
        "> No traces of nuts at all.\n"
        "\n"
        "Thanks!\n"
        "\n"
        "On Mon, 3 May 2027 at 10:00, Camp <camp@example.org> wrote:\n"
        "> 1. Any allergies?\n"
        "> Please answer below.\n"
    )
    reply = extract_reply(text)
    assert "Severe peanut allergy" in reply and "No traces of nuts" in reply
    assert "Any allergies?" not in reply


def test_a_corporate_signature_after_a_closing_is_not_part_of_the_answer() -> None:
    text = (
        "I'll bring a tent and arrive on Friday.\n"
        "\n"
        "Best regards,\n"
        "Ana Lima\n"
        "Senior Project Manager\n"
        "ACME Solutions GmbH\n"
        "Tel. +49 30 1234567\n"
        "ACME Solutions GmbH, Registered office Berlin, HRB 12345\n"
    )
    reply = extract_reply(text)
    assert reply == "I'll bring a tent and arrive on Friday.\n\nBest regards,\nAna Lima"


def test_a_closing_followed_by_more_text_is_kept() -> None:
    text = "Thanks!\n" + "\n".join(f"Line {n} of my long story about the camp." for n in range(12))
    assert extract_reply(text).startswith("Thanks!")
