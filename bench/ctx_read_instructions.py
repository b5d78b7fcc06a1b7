"""Instructions per read of ``ctx$<field>`` from an R callback, counted by callgrind.

Wall-clock µs per read (bench/r/ctx_read_cost.R) move by ±50 % on a shared machine; the
instructions a read executes do not. This runs bench/r/ctx_read_instructions.R under valgrind with
counting switched on only around its loops (bench/instructions.py's toggle) and prints, per field,
the instructions of one read: the first after the engine replaced the field for `loss`, `pred`,
`target` (what a callback pays every batch), an unchanged value for the others.

    .venv/bin/python bench/ctx_read_instructions.py [--reads 1000] [--fields loss,pred]

Needs the R package installed (R_LIBS) and valgrind; a few minutes.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import instructions  # noqa: E402

FIELDS = "loss,pred,target,opt,iter,epoch,records"


def dumps(directory):
    """Instruction totals of the counted regions, in the order they were written."""
    found = []
    for f in Path(directory).glob("cg.out.*"):
        text = f.read_text(errors="replace")
        if re.search(r"^desc: Trigger: Client Request: timed", text, re.M):
            part = int(f.name.rsplit(".", 1)[-1])  # callgrind numbers the dumps of a process
            found.append((part, int(re.search(r"^totals:\s+(\d+)", text, re.M).group(1))))
    return [n for _, n in sorted(found)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reads", type=int, default=1000, help="reads counted per field (default 1000)")
    p.add_argument("--fields", default=FIELDS)
    args = p.parse_args(argv)
    why = instructions.unavailable()
    if why:
        sys.exit(f"can't count instructions: {why}")
    script = Path(__file__).resolve().parent / "r" / "ctx_read_instructions.R"
    fields = args.fields.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, K=str(args.reads), FIELDS=args.fields, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
        env[instructions.LIB_ENV] = instructions.build_toggle(tmp)
        cmd = instructions.valgrind_command(os.path.join(tmp, "cg.out.%p")) + ["Rscript", str(script)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit("run failed: " + " | ".join(proc.stderr.strip().splitlines()[-3:]))
        totals = dumps(tmp)
    if len(totals) != 2 * len(fields):
        sys.exit(f"expected {2 * len(fields)} counted regions, got {len(totals)}")
    print(f"instructions per ctx$<field> read from an R callback ({args.reads} reads each)")
    for i, f in enumerate(fields):
        with_read, without = totals[2 * i], totals[2 * i + 1]
        what = "first read after a change" if f in ("loss", "pred", "target") else "unchanged"
        print(f"{f:8s} {(with_read - without) / args.reads:10.0f}   {what}")


if __name__ == "__main__":
    main()
