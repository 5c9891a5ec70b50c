"""The chain of training runs behind a fine-tuned model, as Markdown for its model card.

    python scripts/training_chain.py runs/x/anisotropic.safetensors > chain.md
    python scripts/training_chain.py runs/y/anisotropic.safetensors \
        --via anisotropic-fluo=runs/x/anisotropic.safetensors > chain.md

A run started with ``--init MODEL`` records that model's path and SHA-256 in its
``summary.json``; this follows those links back to a shipped model (or a run without
``--init``) and prints every command in the order to run them, with the SHA-256 each step
starts from, so that ``scripts/ship.py ... --metrics chain.md`` puts the whole recipe on
the card. ``--via NAME=FILE`` follows a run started from a shipped model ``NAME`` on through
the run whose output ``FILE`` was shipped under that name (refused unless its SHA-256 is
the one the run recorded), so that a model fine-tuned from an earlier release lists the
runs behind that release too. Release tooling: it lives in the repository, not in the
installed library.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def chain(model: Path, limit: int = 50, via: dict[str, Path] | None = None) -> list[dict]:
    """The runs from the first to ``model``'s: ``[{"command", "init", "sha256", "seconds",
    "out"}]``. Stops at a run without ``init`` or whose ``init`` is a shipped model name
    (unless ``via`` maps that name to the run output it was shipped from)."""
    via = dict(via or {})
    steps: list[dict] = []
    path = model
    for _ in range(limit):
        summary = path.parent / "summary.json"
        if not summary.is_file():
            raise FileNotFoundError(f"no summary.json next to {path} (not a training run's model)")
        s = json.loads(summary.read_text())
        init = s.get("init") or {}
        steps.append(
            {
                "command": s["config"].get("command", ""),
                "init": init.get("model", ""),
                "sha256": init.get("sha256", ""),
                "seconds": float(s.get("seconds", 0.0)),
                "out": str(path.parent),
            }
        )
        nxt = Path(init.get("model", ""))
        if init and init.get("model") in via:
            nxt = Path(via.pop(init["model"]))
            sha = _sha256(nxt)
            if sha != init.get("sha256"):
                raise ValueError(
                    f"--via {init['model']}={nxt}: that file's SHA-256 is {sha[:12]}, but "
                    f"{path.parent} started from {init['model']!r} with "
                    f"{str(init.get('sha256'))[:12]}; give the run whose output was shipped."
                )
        if not init or nxt.suffix != ".safetensors" or not nxt.is_file():
            break
        path = nxt
    else:
        raise RuntimeError(f"more than {limit} chained runs behind {model}")
    return steps[::-1]


def _sha256(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"no model file {path}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _via(text: str) -> tuple[str, Path]:
    """argparse type of ``--via``: ``NAME=FILE``."""
    name, sep, file = text.partition("=")
    if not (sep and name and file):
        raise argparse.ArgumentTypeError(f"--via takes NAME=FILE, got {text!r}")
    return name, Path(file)


def markdown(steps: list[dict]) -> str:
    total = sum(s["seconds"] for s in steps) / 60
    lines = [
        "## Training chain",
        "",
        f"{len(steps)} runs, each fine-tuning the previous one's model ({total:.0f} min of "
        "CPU in all); run them in this order (each `--init` is the previous run's output):",
        "",
        "```bash",
    ]
    for s in steps:
        lines.append(f"PKN_DATA=../shared/data {s['command']}")
    lines += [
        "```",
        "",
        "| step | starts from | its SHA-256 | minutes |",
        "| --- | --- | --- | --- |",
    ]
    for i, s in enumerate(steps, 1):
        lines.append(
            f"| {i} | `{s['init'] or 'scratch'}` | `{s['sha256'][:12]}` | {s['seconds'] / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python scripts/training_chain.py", description=__doc__.split("\n")[0]
    )
    p.add_argument("model", type=Path, help="the last run's .safetensors")
    p.add_argument(
        "--via",
        type=_via,
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a shipped model NAME was the output FILE of an earlier run: follow it",
    )
    a = p.parse_args(argv)
    try:
        sys.stdout.write(markdown(chain(a.model, via=dict(a.via))))
    except (FileNotFoundError, RuntimeError, KeyError, ValueError) as e:
        p.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
