"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the time goes.

    python bench/profile_summary.py PROFILE.txt [--top 25]

Each line of the input is `frame;frame;...;leaf COUNT`, a frame being
`function (file:line)`. Prints, over all samples, the functions with the most
self time (the leaf) and the most inclusive time (anywhere on the stack), as %
of samples, with line numbers dropped so a function counts once.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def _function(frame: str) -> str:
    frame = _LINE.sub(")", frame.strip())
    # Shorten site-packages paths to the package-relative part.
    return re.sub(r"\(.*?(site-packages|lib/python3\.\d+)/", "(", frame)


def summarise(path: Path, top: int = 25) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        self_time[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    if not total:
        return f"{path.name}: no samples\n"
    out = [f"{path.name}: {total} samples (active threads only)", "", "self time:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in self_time.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.profile, args.top), end="")


if __name__ == "__main__":
    main()
