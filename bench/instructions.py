"""Instructions per step: a measure of the benchmark that does not move with the machine's load.

CPU time on a shared machine moves by 10-50 % between runs; the number of instructions a
process executes does not (the same binary on the same inputs executes the same instructions,
whatever else runs). valgrind's callgrind counts them. Counting everything would be slow
(valgrind runs ~50x slower while it instruments), so the variant runs with instrumentation off
(`--instr-atstart=no`, a few times slower) and `Clock` switches it on exactly for the timed
region: the count covers what the CPU-time column covers (the fit, its set-up included).

The switch is callgrind's client request, which is a magic instruction sequence that only C
can emit: a 10-line C file (below) is compiled once into a shared library and called through
ctypes. Outside valgrind the requests are no-ops.

    .venv/bin/python bench/run.py --instructions            # adds the column for the main rows
"""

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

_C_SOURCE = r"""
#include <valgrind/callgrind.h>
void bench_instr_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void bench_instr_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("timed"); }
"""

# Where the compiled toggle lives; the parent builds it and children find it through this variable.
LIB_ENV = "PYLUZ_BENCH_INSTR_LIB"

_lib = None


def unavailable():
    """Why instructions can't be counted here (None when they can)."""
    if shutil.which("valgrind") is None:
        return "valgrind not found (apt-get install valgrind)"
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "no C compiler for the callgrind toggle"
    if not Path("/usr/include/valgrind/callgrind.h").exists():
        return "valgrind's headers (valgrind/callgrind.h) not found"
    return None


def build_toggle(directory):
    """Compiles the toggle library into `directory`; returns its path."""
    src, lib = Path(directory) / "instr.c", Path(directory) / "libinstr.so"
    src.write_text(_C_SOURCE)
    cc = shutil.which("gcc") or shutil.which("cc")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return str(lib)


def _toggle():
    global _lib
    if _lib is None:
        path = os.environ.get(LIB_ENV)
        _lib = ctypes.CDLL(path) if path else False
    return _lib


def start():
    """Counts from here (inside a callgrind run that set the toggle library; otherwise nothing)."""
    lib = _toggle()
    if lib:
        lib.bench_instr_start()


def stop():
    lib = _toggle()
    if lib:
        lib.bench_instr_stop()


def valgrind_command(out_file):
    """The command prefix that runs a program with counting off until `start()`."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--trace-children=yes",
        f"--callgrind-out-file={out_file}",
        "--dump-instr=no",
        "--compress-strings=no",
    ]


def timed_instructions(out_pattern_dir):
    """Instructions of the timed region(s), read from callgrind's dump files in a directory.

    Each `stop()` writes one dump named "timed"; the last one belongs to the measured run (the
    ones before to warm-up runs of the same process)."""
    counts = []
    for f in sorted(Path(out_pattern_dir).glob("cg.out*"), key=lambda p: p.stat().st_mtime):
        text = f.read_text(errors="replace")
        if not re.search(r"^desc: Trigger: Client Request: timed", text, re.M):
            continue
        m = re.search(r"^totals:\s+(\d+)", text, re.M)
        if m:
            counts.append(int(m.group(1)))
    return counts


def count(argv, env=None):
    """Runs `argv` under callgrind; returns the instruction count of its last timed region."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = valgrind_command(os.path.join(tmp, "cg.out.%p")) + list(argv)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"valgrind run failed ({proc.returncode}): {tail[:400]}")
        counts = timed_instructions(tmp)
        if not counts:
            raise RuntimeError("callgrind wrote no timed region (did the variant call Clock?)")
        return counts[-1], proc.stdout
