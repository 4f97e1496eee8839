"""Spreadsheet input and the plain-text crew table."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.crews.solver.solve import (
    CsvError,
    Sizing,
    SolveOptions,
    Status,
    load_people_csv,
    render_table,
    solve,
)

GOOD = """id,name,languages,facilitator,together,not_with,pinned_crew,experience,travel_group
ana,Ana,pt;en,yes,ben,,1,new,lisbon
ben,Ben,en,no,,cy,,returning,lisbon
cy,Cy,en;pt,x,,,,new,
di,Di,en,no,,,,veteran,
ed,Ed,pt,no,,,,new,
fay,Fay,en;pt,1,,,2,returning,
"""


def test_parses_columns_and_builds_solver_input(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(GOOD, encoding="utf-8")
    parsed = load_people_csv(path)
    assert [p.id for p in parsed.people] == ["ana", "ben", "cy", "di", "ed", "fay"]
    assert parsed.people[0].languages == frozenset({"pt", "en"})
    assert [p.facilitator for p in parsed.people] == [True, False, True, False, False, True]
    assert parsed.together == (("ana", "ben"),)
    assert parsed.not_with == (("ben", "cy"),)
    assert parsed.pins == {"ana": 0, "fay": 1}
    inp = parsed.solver_input(Sizing(min_size=2, max_size=4, n_crews=2))
    assert [a.name for a in inp.attributes] == ["experience"]
    assert inp.travel_attribute == "travel_group"
    res = solve(inp, SolveOptions(time_budget=5))
    assert res.status is Status.OPTIMAL
    assert res.assignment["ana"] == 0 and res.assignment["fay"] == 1
    table = render_table(res, {p.id: p.name for p in parsed.people}, parsed.people)
    assert table.startswith("6 people in 2 crews; sizes ")
    assert "Crew 1 (" in table and "Crew 2 (" in table
    assert "  - Ana [facilitator] · speaks en/pt · experience " in table
    assert "cost" not in table and "Objective" not in table


def test_without_languages_column_everyone_shares_one() -> None:
    parsed = load_people_csv("id,facilitator\na,yes\nb,no\n")
    assert {lang for p in parsed.people for lang in p.languages} == {"any"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("name\nAna\n", "line 1: missing column 'id'"),
        (
            "id,facilitator\na,maybe\n",
            "line 2, column 'facilitator': expected yes or no, got 'maybe'",
        ),
        ("id,languages\na,en\nb,\n", "line 3, column 'languages': empty"),
        ("id,together\na,zed\n", "line 2, column 'together': unknown id 'zed'"),
        ("id,pinned_crew\na,0\n", "line 2, column 'pinned_crew': expected a crew number from 1"),
        ("id\na\na\n", "line 3, column 'id': 'a' already used on line 2"),
    ],
)
def test_errors_name_line_and_column(text: str, message: str) -> None:
    with pytest.raises(CsvError) as err:
        load_people_csv(text)
    assert message in str(err.value)


def test_infeasible_table_lists_reasons() -> None:
    parsed = load_people_csv("id,facilitator\na,yes\nb,no\nc,no\n")
    res = solve(parsed.solver_input(Sizing(min_size=2, max_size=3, n_crews=2)))
    assert res.status is Status.INFEASIBLE
    assert render_table(res).startswith("No valid crew assignment.\n  - 3 people cannot fill")


def test_reads_what_excel_saves_on_windows_semicolons_and_cp1252(tmp_path: Path) -> None:
    """Excel in a European locale saves "CSV" with `;` separators in Windows-1252."""
    path = tmp_path / "people.csv"
    text = 'id;name;languages;together\nzoe;Zoë Müller;"de;en";ana\nana;Ana;en;\n'
    path.write_bytes(text.encode("cp1252"))
    parsed = load_people_csv(path)
    assert [p.id for p in parsed.people] == ["zoe", "ana"]
    assert parsed.people[0].languages == frozenset({"de", "en"})
    assert parsed.together == (("zoe", "ana"),)


def test_a_file_in_no_known_encoding_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b"id,name\n\x81\x8d\x8f\x90\x9d,x\n")
    with pytest.raises(CsvError, match="neither UTF-8 nor Windows-1252"):
        load_people_csv(path)


@pytest.mark.parametrize(
    ("column", "meant"),
    [
        ("apart", "not_with"),
        ("Not With", "not_with"),
        ("togther", "together"),
        ("pin", "pinned_crew"),
    ],
)
def test_a_misnamed_rule_column_is_an_error_not_a_balanced_attribute(
    column: str, meant: str
) -> None:
    """`apart` instead of `not_with` silently dropped a hard constraint."""
    with pytest.raises(CsvError, match=f"did you mean '{meant}'"):
        load_people_csv(f"id,name,{column}\na,A,b\nb,B,\n")


def test_the_report_lists_the_balanced_columns(tmp_path: Path) -> None:
    from gateway.ops.crews.commands import solve_csv

    path = tmp_path / "people.csv"
    path.write_text("id,name,experience\n" + "".join(f"p{i},P{i},{i % 2}\n" for i in range(8)))
    table, _ = solve_csv(path, seconds=1)
    assert table.startswith("balanced columns: experience")
