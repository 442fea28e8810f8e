"""[app] stdout = "output" and the folder merge on the azure-batch backend: the real SDKs against our
Batch emulator and Azurite, as in test_batch_backend.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.cli import main
from shardrun.core.merge import MERGED_MARK
from shardrun.emulator import Emulator

from .fixtures.azurite import Azurite
from .test_batch_backend import batch_job, emulator, secrets_env  # noqa: F401  (fixtures)


def test_stdout_is_the_output_on_batch_and_the_outputs_keep_their_names(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path,  # noqa: F811
    shardrun_home: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # sed takes a path and prints its result, as pandoc, jq and gzip -c do: no {output}
    job = batch_job(tmp_path, emulator, azurite, lines=12, per_task=4,
                    app=["sed", "s/line/LINE/", "{input}"])
    text = job.read_text().replace("[app]\n", '[app]\nstdout = "output"\noutput_name = "{stem}.out"\n')
    text = text.replace('method = "concat"', 'method = "folder"')
    text = text.replace('output = "result.txt"', 'output = "results"')
    job.write_text(text)
    assert 'method = "folder"' in text and 'stdout = "output"' in text
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    merged = tmp_path / "results"
    names = sorted(p.name for p in merged.iterdir())
    assert names == [MERGED_MARK, "piece-000001.out", "piece-000002.out", "piece-000003.out"]
    assert (merged / "piece-000002.out").read_text() == "".join(f"LINE {i}\n" for i in range(4, 8))
