"""`NAME.KEY=VALUE` command-line items (`--hparams adamw.lr=3e-3`, `--workload-option
text_lm.text_file=my.txt`), split once here; each caller converts the values its own way."""

from __future__ import annotations

from collections.abc import Iterable

from trainlab.errors import UsageError


def named_items(
    items: Iterable[str], names: Iterable[str], flag: str, what: str, example: str, where: str = "run"
) -> dict[str, dict[str, str]]:
    """{name: {key: value text}} for every name of `names` (empty when not set). `flag` names the
    option in errors, `what` the kind of NAME ("algorithm", "workload"), `example` a valid item,
    `where` what the names belong to ("race", "run")."""
    known = list(names)
    out: dict[str, dict[str, str]] = {n: {} for n in known}
    for item in items:
        # a name may carry its own bracketed options (`lion[cautious=true].lr=1e-3`): they stay in it
        bracket = item.rfind("]") + 1
        head, sep, raw = item[bracket:].partition("=")
        name, dot, key = (item[:bracket] + head).rpartition(".")
        if not sep or not dot or not key:
            raise UsageError(f"bad {flag} item {item!r}: write {what.upper()}.KEY=VALUE, e.g. {example}")
        if name not in out:
            raise UsageError(
                f"{flag} {item!r} names {what} {name!r}, which is not in this {where} ({', '.join(known)})"
            )
        out[name][key] = raw
    return out
