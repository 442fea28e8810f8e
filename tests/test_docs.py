"""The docs stay true: every job-file key is documented under its section."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from shardrun.core import provider
from shardrun.core.spec import JobSpec

DOCS = Path(__file__).parents[1] / "docs"


def sections_of(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## `\[([a-z_.]+)\]`\s*$", markdown, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_job_file_key_is_documented() -> None:
    documented = sections_of((DOCS / "job-file.md").read_text(encoding="utf-8"))
    missing = []
    models: dict[str, type[BaseModel]] = {}
    for section, field in JobSpec.model_fields.items():
        if field.exclude or section == "sections":
            continue
        # a section may be optional (`ImageSection | None`): document the model inside
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        models[section] = next(m for m in candidates if isinstance(m, type) and issubclass(m, BaseModel))
    for name in provider.section_names():  # the providers' own sections: [batch], [storage]
        owner = provider.for_section(name)
        assert owner is not None
        models[name] = owner.sections[name]
    for section, model in models.items():
        text = documented.get(section)
        if text is None:
            missing.append(f"[{section}]")
            continue
        missing += [f"[{section}] {key}" for key in model.model_fields if f"`{key}`" not in text]
    assert missing == [], f"docs/job-file.md lacks: {', '.join(missing)}"


def test_task_contract_lists_every_variable() -> None:
    from shardrun.core.contract import task_environment

    env = task_environment(run_id="r", task_id="t", attempt=1, input_path=Path("i"),
                           output_path=Path("o"), config_path=None, task_dir=Path("d"),
                           working_dir=Path("w"), shared_dir=Path("s"), node_root=Path("n"),
                           node_id="x")
    text = (DOCS / "task-contract.md").read_text(encoding="utf-8")
    assert [k for k in env if f"`{k}`" not in text] == []
