"""The Triton images' entry point (deploy/triton-entrypoint.sh) seeds a served repository from the
baked one: what the served repository lacks is copied, links as the files they name, and nothing
is replaced. Run with /bin/sh, as the images run it."""

from __future__ import annotations

import os
import pathlib
import subprocess

from inferscale.suite import REPO_ROOT

ENTRYPOINT = REPO_ROOT / "deploy" / "triton-entrypoint.sh"


def seed_repository(root: pathlib.Path) -> pathlib.Path:
    seed = root / "seed"
    (seed / "shared" / "1").mkdir(parents=True)
    (seed / "shared" / "1" / "model.py").write_text("ENTRY = 1\n")
    (seed / "shared" / "config.pbtxt").write_text('name: "shared"\n')
    (seed / "linked" / "1").mkdir(parents=True)
    (seed / "linked" / "1" / "model.py").symlink_to("../../shared/1/model.py")
    (seed / "linked" / "1" / "__pycache__").mkdir()
    (seed / "linked" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    return seed


def run_entrypoint(seed: pathlib.Path, served: pathlib.Path) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ["PATH"], "MODEL_REPOSITORY": str(served), "MODEL_REPOSITORY_SEED": str(seed)}
    return subprocess.run(["/bin/sh", str(ENTRYPOINT), "true"], env=environment, capture_output=True, text=True, check=True, timeout=60)


def test_seeding_copies_files_and_links_and_leaves_bytecode_behind(tmp_path: pathlib.Path) -> None:
    seed, served = seed_repository(tmp_path), tmp_path / "served"
    run_entrypoint(seed, served)
    linked = served / "linked" / "1" / "model.py"
    assert linked.is_file() and not linked.is_symlink() and linked.read_text() == "ENTRY = 1\n"
    assert (served / "shared" / "config.pbtxt").read_text() == 'name: "shared"\n'
    assert not (served / "linked" / "1" / "__pycache__").exists()


def test_seeding_replaces_nothing_the_served_repository_has(tmp_path: pathlib.Path) -> None:
    seed, served = seed_repository(tmp_path), tmp_path / "served"
    (served / "linked" / "1").mkdir(parents=True)
    (served / "linked" / "1" / "model.py").write_text("ENTRY = 'changed by its owner'\n")
    completed = run_entrypoint(seed, served)
    assert (served / "linked" / "1" / "model.py").read_text() == "ENTRY = 'changed by its owner'\n"
    assert "seeded" in completed.stdout and "linked/1/model.py" not in completed.stdout
