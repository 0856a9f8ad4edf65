"""Write a phantom data set of case folders, with a manifest.

``python -m vce_core.phantom --out data/phantom --cases 60 --seed 0 --split 40/10/10``

Case folders (``vce_core.io.save_case``) go to ``OUT/train``, ``OUT/val`` and ``OUT/test``;
``OUT/manifest.json`` lists every case with its seed and split, plus the command's arguments.
Case seeds are derived from ``--seed`` through ``numpy.random.SeedSequence``, so the data set is
identical on every machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vce_core.errors import VCEInputError

from .case import PhantomCase, check_low_doses, make_case

SPLITS = ("train", "val", "test")


def case_seeds(seed: int, n: int) -> list[int]:
    """``n`` case seeds (non-negative 32-bit integers) derived from the data-set ``seed``."""
    return [int(s) for s in np.random.SeedSequence([int(seed), 0x5EED]).generate_state(n, dtype=np.uint32)]


def parse_split(text: str, n: int) -> tuple[int, int, int]:
    """``"a/b/c"`` → (a, b, c) with a + b + c == n."""
    try:
        parts = tuple(int(p) for p in text.split("/"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0:
        raise VCEInputError(
            f"split {text!r} is not valid", expected="three non-negative counts like 40/10/10"
        )
    if sum(parts) != n:
        raise VCEInputError(
            f"split {text!r} adds up to {sum(parts)}, not to --cases {n}",
            expected="counts that add up to --cases",
        )
    return parts  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vce_core.phantom", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--cases", type=int, default=60, help="number of cases (default 60)")
    p.add_argument("--seed", type=int, default=0, help="data-set seed (default 0)")
    p.add_argument(
        "--split", default=None, help="train/val/test counts, e.g. 40/10/10 (default: 2/3, 1/6, rest)"
    )
    p.add_argument(
        "--resolution", type=float, default=1.0, choices=(1.0, 2.0), help="voxel size in mm (1 or 2)"
    )
    p.add_argument(
        "--doses", type=float, nargs="+", default=[0.1, 0.2, 0.33], help="low doses (fractions of standard)"
    )
    p.add_argument("--dtype", default="float32", choices=("float32", "int16"), help="NIfTI storage type")
    p.add_argument("--force", action="store_true", help="write into a non-empty output folder (replaces it)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return run(args, command="python -m vce_core.phantom " + shlex.join(argv))
    except VCEInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, command: str = "") -> int:
    """Generate and write the data set described by ``args`` (see :func:`build_parser`)."""
    from vce_core.io import save_case

    if args.cases < 1:
        raise VCEInputError(f"--cases {args.cases} is not valid", expected="at least 1")
    if args.seed < 0:
        raise VCEInputError(f"--seed {args.seed} is not valid", expected="a non-negative integer")
    split = default_split(args.cases) if args.split is None else parse_split(args.split, args.cases)
    doses = tuple(check_low_doses(args.doses))
    out: Path = args.out
    _prepare_output(out, force=args.force)
    seeds = case_seeds(args.seed, args.cases)
    names = [name for name, count in zip(SPLITS, split, strict=True) for _ in range(count)]
    entries = []
    start = time.perf_counter()
    for i, (case_seed, split_name) in enumerate(
        tqdm(list(zip(seeds, names, strict=True)), desc="phantom cases", unit="case")
    ):
        case_id = f"phantom-s{args.seed}-{i:04d}"
        case = make_case(case_seed, doses=doses, resolution=args.resolution)
        case.meta["case_id"] = case_id
        save_case(case, out / split_name / case_id, dtype=args.dtype)
        entries.append(_manifest_entry(case, case_seed, split_name))
    manifest = {
        "format": "vce-phantom-dataset",
        "version": 1,
        "arguments": {
            "cases": args.cases,
            "seed": args.seed,
            "split": list(split),
            "resolution": args.resolution,
            "doses": list(args.doses),
            "dtype": args.dtype,
        },
        "command": command,
        "split": {name: count for name, count in zip(SPLITS, split, strict=True)},
        "seconds": round(time.perf_counter() - start, 1),
        "cases": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return 0


def default_split(n: int) -> tuple[int, int, int]:
    """``n`` cases split 2/3 train, then half of the rest validation, the remainder test."""
    n_train = (2 * n) // 3
    n_val = (n - n_train) // 2
    return n_train, n_val, n - n_train - n_val


def _prepare_output(out: Path, *, force: bool) -> None:
    """Create ``out``; a non-empty folder (or a file) there is replaced only with ``force``."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise VCEInputError(
                "the output folder is not empty", path=out, expected="an empty or new folder, or --force"
            )
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _manifest_entry(case: PhantomCase, seed: int, split: str) -> dict[str, Any]:
    """The manifest's line for one case written to ``split/<case id>``."""
    case_id = case.meta["case_id"]
    return {
        "case_id": case_id,
        "seed": seed,
        "split": split,
        "path": f"{split}/{case_id}",
        "field_strength": case.field_strength,
        "agent": case.agent,
        "sequence": case.meta["sequence"]["name"],
        "lesions": [spec.kind for spec in case.lesions],
    }


if __name__ == "__main__":
    raise SystemExit(main())
