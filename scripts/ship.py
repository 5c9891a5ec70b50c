"""Release step: copy a trained model into ``resources/`` with its model card.

    python scripts/ship.py runs/nlm/nlm.safetensors --name nlm [--metrics FILE.md]

Copies ``MODEL`` to ``resources/NAME.safetensors`` and writes ``resources/NAME.md``, the
card :func:`pkn.training.card.render_card` renders from the model file (the same card
training wrote next to it, under the shipped name, with this command added to its
"Reproduce" section and optional extra validation tables). Release tooling: it lives in
the repository, not in the installed library.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from pkn.models.io import file_sha256
    from pkn.training.card import write_card

    p = argparse.ArgumentParser(
        prog="python scripts/ship.py",
        description="Copy MODEL to resources/NAME.safetensors and write resources/NAME.md "
        "(the model card).",
    )
    p.add_argument("model", help="trained .safetensors file (e.g. runs/nlm/nlm.safetensors)")
    p.add_argument("--name", required=True, help="shipped model name (e.g. nlm)")
    p.add_argument("--metrics", default=None, help="Markdown file with extra validation tables")
    p.add_argument(
        "--resources",
        default=str(REPO / "resources"),
        help="destination folder (default: the repository's resources/)",
    )
    a = p.parse_args(argv)
    src, dest = Path(a.model), Path(a.resources)
    if not src.is_file():
        p.error(f"no model file {src}")
    dst = dest / f"{a.name}.safetensors"
    shutil.copyfile(src, dst)
    md = Path(a.metrics).read_text() if a.metrics else ""
    words = [a.model, "--name", a.name] + (["--metrics", a.metrics] if a.metrics else [])
    card = write_card(
        dst,
        dest / f"{a.name}.md",
        a.name,
        md,
        extra_commands=["python scripts/ship.py " + shlex.join(words)],
    )
    print(f"shipped {dst} ({dst.stat().st_size / 1024:.1f} kB) with card {card}")
    print(json.dumps({"sha256": file_sha256(dst)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
