"""The demo's debrief chapter: after the camp, everyone who came is asked to look back.

Simulated time jumps to the prompt (the configured hour after the end), then to a reminder
that goes only to those who have not finished, then to the deadline, where anonymised
answers leave their authors and each crew hears what its members shared with it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

from flows.debrief import times
from flows.debrief.flow import Share, share_question
from gateway.demo.simulate import SimulatedPerson
from gateway.demo.world import Demo, transcript
from gateway.model import Channel, OutKind
from gateway.ops.debrief import Audience, collect, summary, to_markdown

LEARNED = (
    "Asking for help early makes everything lighter",
    "Silence in a circle is not awkward, it is room",
    "I can facilitate more than I thought",
    "Cooking for forty people is a meditation",
    "My crew will keep meeting, and that matters",
)


async def debrief_chapter(demo: Demo, people: Sequence[SimulatedPerson], number: int) -> None:
    g = demo.gathering
    if g.debrief is None:
        return
    print(f"\n{number}. After the camp, the debrief asks everyone who came to look back")
    await demo.engine.schedule()
    prompt_at = times.prompt_at(g, g.debrief)
    prompts = await demo.at(prompt_at)
    asked = [p for p in people if await demo.person_id(p) in await _asked(demo)]
    local = prompt_at.astimezone(g.zone).strftime("%a %d %b %H:%M")
    print(f"  {local} ({g.timezone}): {len(asked)} people asked (cancelled people are not)")
    for person in asked[:2]:
        print(f"  {person.name} ({person.channel.value}):")
        print(transcript(prompts[person.identity.address], limit=2))

    rng = random.Random(11)
    options = share_question(g).options
    answering = asked[: max(1, len(asked) * 2 // 3)]
    for n, person in enumerate(answering):
        share = options[n % len(options)]
        answers = [str(options.index(share) + 1), rng.choice(LEARNED), str(rng.randint(3, 5))]
        if person.channel == Channel.EMAIL:
            numbered = {n: text for n, text in enumerate(answers, start=1)}
            await demo.say(person, "", answers={**numbered, len(answers) + 1: "skip"})
        else:
            for text in [*answers, "skip"]:
                await demo.say(person, text)
    shares = {s: 0 for s in Share}
    for person in answering:
        last = demo.postbox.delivered[person.identity.address][-1].body.text
        shares[_share_in(last)] += 1
    print(
        f"  {len(answering)} answer (by chat one at a time, by email inline):"
        f" {shares[Share.ORGANISERS]} for the organisers only, {shares[Share.CREW]} for their"
        f" crew too, {shares[Share.EVERYONE]} for everyone without their name"
    )

    reminder_at = min(times.reminders(g, g.debrief).values(), default=None)
    if reminder_at is not None:
        reminded = await demo.at(reminder_at)
        print(f"  A reminder goes to the {len(reminded)} who have not finished:")
        print(transcript([items[0] for items in reminded.values()], limit=1))

    closing = await demo.at(times.deadline(g, g.debrief))
    crews = {
        i.body.subject
        for items in closing.values()
        for i in items
        if i.kind == OutKind.GROUP and "looks back" in i.body.subject
    }
    print(f"  The deadline passes: the debrief closes; {len(crews)} crew(s) hear what was shared")

    report = await collect(demo.engine.store, g, Audience.ORGANISERS)
    print("\n  gateway debrief report (the organisers' summary; --public keeps only what")
    print("  people shared with everyone, without names):")
    print("\n".join("    " + line for line in summary(report).splitlines()))
    public = to_markdown(await collect(demo.engine.store, g, Audience.PUBLIC))
    print("\n".join("    " + line for line in public.splitlines()[:12]))


async def _asked(demo: Demo) -> set[int]:
    """Who the debrief asked (its gathering-level run's record)."""
    async with demo.engine.store.read() as tx:
        row = await tx.one(
            "SELECT json_extract(state, '$.asked') FROM flow_runs"
            " WHERE gathering = ? AND flow = 'debrief' AND person_id = 0",
            (demo.gathering.slug,),
        )
    return set(json.loads(row[0])) if row and row[0] else set()


def _share_in(thanks: str) -> Share:
    """Which choice the thank-you message confirms."""
    if "without your name" in thanks:
        return Share.EVERYONE
    if "crew" in thanks:
        return Share.CREW
    return Share.ORGANISERS
