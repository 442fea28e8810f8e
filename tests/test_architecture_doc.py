"""docs/architecture.md stays true: its state diagram, folders, links and provider checklist are
checked against the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from shardrun.core.provider import Provider
from shardrun.core.states import TRANSITIONS, RunState
from shardrun.testing.compute_contract import ComputeContract
from shardrun.testing.store_contract import StoreContract

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "architecture.md"
TUNABLES = {"patience", "block_size"}  # settings of the suites, not capabilities


def text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_state_diagram_draws_only_moves_the_state_machine_allows() -> None:
    diagram = text().split("```mermaid", 1)[1].split("```", 1)[0]
    edges = re.findall(r"^\s*(\w+) --> (\w+)", diagram, flags=re.M)
    state = {s.value.replace("-", "_"): s for s in RunState}
    drawn = {(state[a], state[b]) for a, b in edges if a != "[*]"}
    assert drawn, "no edges found in the mermaid diagram"
    assert sorted(m for m in drawn if m[1] not in TRANSITIONS[m[0]]) == []
    assert {s for move in drawn for s in move} == set(RunState)  # every state is drawn


def test_every_package_folder_is_described() -> None:
    src = ROOT / "src" / "shardrun"
    packages = {p.parent.relative_to(src).as_posix() for p in src.glob("**/__init__.py")} - {"."}
    leaves = {p for p in packages if not any(q.startswith(f"{p}/") for q in packages)}
    assert sorted(p for p in leaves if f"| `{p}/` |" not in text()) == []


def test_links_resolve() -> None:
    links = re.findall(r"\]\(([^)#\s]+)\)", text())
    assert links and [link for link in links if not (DOC.parent / link).exists()] == []


def test_adding_a_provider_names_every_member_and_capability() -> None:
    checklist = text().split("## Adding a provider", 1)[1]
    members = {n for n in dir(Provider) if not n.startswith("_")} | set(Provider.__annotations__)
    capabilities = (set(ComputeContract.__annotations__) | set(StoreContract.__annotations__)) - TUNABLES
    assert sorted(n for n in members | capabilities if f"`{n}" not in checklist) == []
