"""The spin-wait's contention rule in the goal table: bench.vm's goal part (`--part goal`, its other options
as given) with every pool's spin-waits judged by the rule named first (`--rule old|new`, vm/sandbox/channel.py
`SpinWait`: `old` stops spinning after one contended spin, `new` after TRIP_AFTER in the last WINDOW). bench.vm
prints, per pool, the spins each side began, those judged contended, the rule's trips and the waits it made
block; run `old` and `new` back to back (or alternating) to compare them at the same load.

Run: python -m bench.spin_census --rule old|new [bench.vm options, e.g. --models digits --runs 2]
"""

from __future__ import annotations

import sys

from bench import vm as bench_vm
from vm.sandbox import worker
from vm.sandbox.channel import SpinWait

RULES = {"old": SpinWait.OLD_RULE, "new": (SpinWait.WINDOW, SpinWait.TRIP_AFTER)}


def main() -> None:
    args = sys.argv[1:]
    rule = "new"
    if "--rule" in args:
        at = args.index("--rule")
        rule = args[at + 1]
        del args[at:at + 2]
    if rule not in RULES:
        raise SystemExit(f"--rule must be one of {sorted(RULES)}")
    defaults = worker.WorkerPool.__init__.__kwdefaults__
    assert defaults is not None
    defaults["spin_rule"] = RULES[rule]  # every pool the goal part builds (and so its workers) gets this rule
    print(f"spin rule {rule}: window {RULES[rule][0]}, trips after {RULES[rule][1]} contended spins")
    sys.argv = [sys.argv[0], "--part", "goal", *args]
    bench_vm.main()


if __name__ == "__main__":
    main()
