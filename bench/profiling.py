"""Reading py-spy's collapsed stacks: where a broker worker spends its time.

py-spy (``record --format raw``) writes one line per distinct stack, frames separated by
``;`` from the outermost, then the number of samples. Idle samples (the event loop
waiting in epoll) are not recorded, so shares are of the time the worker was busy.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STAGES", "Profile", "read_profile"]

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")

# What the worker does, named by the functions that do it (matched anywhere in a stack).
STAGES: dict[str, tuple[str, ...]] = {
    "parse": ("parse_untrusted",),
    "verify: chain (trust store)": ("TrustStore.validate",),
    "verify: signature": ("XMLVerifier.verify", "signing/enveloped.py"),
    "identify + header": ("Catalog.identify", "Standard.header"),
    "validate (schema)": ("Standard.validate",),
    "route": ("route (routing/rules.py",),
    "deduplicate (dedup store)": ("DedupStore.claim", "DedupStore.record_many"),
    "receipt: build + sign": ("build_receipt", "Signer.sign"),
    "publish + confirm (aio-pika)": ("publish_confirmed",),
    "AMQP client (aiormq: frames, socket writes)": ("aiormq/", "pamqp/"),
    "journal (status store, audit trail)": ("Journals.record", "StatusStore.", "AuditTrail."),
    "metrics + logs": ("Metrics.", "logs.py", "logging/"),
}


@dataclass(frozen=True)
class Profile:
    samples: int
    self_time: Counter[str]  # function → samples in which it was the innermost frame
    inclusive: Counter[str]  # function → samples in which it was anywhere on the stack
    stages: dict[str, int]  # STAGES name → samples

    def share(self, samples: int) -> float:
        return samples / self.samples if self.samples else 0.0


def _function(frame: str) -> str:
    found = _FRAME.match(frame)
    if found is None:
        return frame
    file = found.group("file")
    for marker in ("site-packages/", "lib/python3."):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{found.group('name')} ({file})"


def read_profile(path: Path) -> Profile:
    total = 0
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        found = _LINE.match(line.strip())
        if found is None:
            continue
        count = int(found.group("count"))
        frames = found.group("stack").split(";")
        total += count
        functions = [_function(f) for f in frames]
        self_time[functions[-1]] += count
        for function in set(functions):
            inclusive[function] += count
        stack = found.group("stack")
        for stage, markers in STAGES.items():
            if any(marker in stack for marker in markers):
                stages[stage] += count
    return Profile(total, self_time, inclusive, dict(stages))
