"""The goals of issue #5 checked against one run's figures, and the Markdown tables."""

from __future__ import annotations

from typing import Any

import gate
import profile_report

DBS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
#: Goals: request-path overhead at the largest K (ms), fan-out against the old library and
#: against the bare loop (ratios), latency p50 and p99 (ms), memory growth (fraction).
REQUEST_OVERHEAD_MS = 0.5
FANOUT_VS_OLD = 3.0
EFFICIENCY = 0.8
LATENCY_P50_MS = 5.0
LATENCY_P99_MS = 25.0
MEMORY_GROWTH = 0.05


def cell(s: dict[str, float] | None, fmt: str = "{:,.2f}") -> str:
    """``median [min, max]`` of a spread."""
    if not s:
        return "-"
    return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}, {fmt.format(s['max'])}]"


def by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in rows}


def fanout_row(side: dict[str, Any], processes: int, threads: int) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in side.get("fanout", [])
            if (r["processes"], r["threads"]) == (processes, threads)
        ),
        None,
    )


def goal(name: str, measured: str, target: str, met: bool) -> dict[str, Any]:
    return {"goal": name, "measured": measured, "target": target, "met": met}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    old = results.get("old", {})
    old_fanout = old.get("fanout", {}).get("per_s", {}).get("median")
    bare = by(results.get("bare", []), "processes")
    for db, side in results.get("ours", {}).items():
        name = DBS[db]
        rows = side.get("request_path", [])
        if rows and "overhead_ms" in rows[-1]:
            top = rows[-1]
            ms = top["overhead_ms"]["median"]
            out.append(
                goal(
                    f"request-path overhead at K = {top['k']:,} ({name})",
                    f"{ms:.3f} ms",
                    f"< {REQUEST_OVERHEAD_MS} ms",
                    ms < REQUEST_OVERHEAD_MS,
                )
            )
        fanout = side.get("fanout", [])
        if fanout:
            # The largest process count, with its better thread count (both are in the table).
            processes = max(r["processes"] for r in fanout)
            best = max(
                (r for r in fanout if r["processes"] == processes),
                key=lambda r: r["per_s"]["median"],
            )
            rate = best["per_s"]["median"]
            workers = f"{processes} processes of {best['threads']} threads"
            if old_fanout:
                ratio = rate / old_fanout
                out.append(
                    goal(
                        f"fan-out vs django-rest-hooks, {workers} ({name})",
                        f"{ratio:.2f}x ({rate:,.0f}/s vs {old_fanout:,.0f}/s)",
                        f"≥ {FANOUT_VS_OLD}x",
                        ratio >= FANOUT_VS_OLD,
                    )
                )
            if processes in bare:
                base = bare[processes]["per_s"]["median"]
                out.append(
                    goal(
                        f"pipeline efficiency vs bare httpx, {workers} ({name})",
                        f"{rate / base:.2f} ({rate:,.0f}/s vs {base:,.0f}/s)",
                        f"≥ {EFFICIENCY}",
                        rate / base >= EFFICIENCY,
                    )
                )
        latency = side.get("latency")
        if latency:
            # The better thread count, by p99 (every row is in the table).
            best = min(latency, key=lambda r: r["p99_ms"])
            out.append(
                goal(
                    f"latency at {best['rate']:.0f} events/s, {best['processes']} processes of "
                    f"{best['threads']} threads ({name})",
                    f"p50 {best['p50_ms']:.1f} ms, p99 {best['p99_ms']:.1f} ms",
                    f"p50 < {LATENCY_P50_MS:.0f} ms, p99 < {LATENCY_P99_MS:.0f} ms",
                    best["p50_ms"] < LATENCY_P50_MS and best["p99_ms"] < LATENCY_P99_MS,
                )
            )
        memory = side.get("memory")
        if memory and len(memory["points"]) > 1:
            first, last = memory["points"][0], memory["points"][-1]
            growth = max(b / a - 1 for a, b in zip(first["rss_mib"], last["rss_mib"], strict=True))
            out.append(
                goal(
                    f"worker RSS, {first['deliveries']:,} → {last['deliveries']:,} "
                    f"deliveries ({name})",
                    f"{growth:+.1%}",
                    f"≤ +{MEMORY_GROWTH:.0%}",
                    growth <= MEMORY_GROWTH,
                )
            )
    if results.get("gate"):
        rows = results["gate"]["rows"]
        pair = next(
            r for r in rows if r["measurement"] == "acquire+release" and r["gate"] == "RedisGate"
        )
        out.append(
            goal(
                "flow-control gate per delivery (Redis)",
                f"{pair['mean_ms']:.3f} ms",
                f"< {gate.GOAL_MS} ms",
                pair["mean_ms"] < gate.GOAL_MS,
            )
        )
    return out


# -- Markdown ---------------------------------------------------------------------------


def header(results: dict[str, Any]) -> str:
    m = results["machine"]
    versions = [f"Python {m['python']}"]
    for db, side in results.get("ours", {}).items():
        v = side["versions"]
        if "postgresql" in v:
            versions.append(f"PostgreSQL {v['postgresql']}")
        if db == "sqlite" or len(versions) == 1:
            versions.append(f"Django {v['django']} (rest_hooks)")
    if "old" in results:
        versions.append(f"Django {results['old']['versions']['django']} (django-rest-hooks 1.5.0)")
    versions += [f"Redis {m['redis']}", m["nginx"]]
    return (
        f"{m['date']}, `nproc` = {m['nproc']} ({m['cpu']}, {m['memory_gib']} GiB), "
        + ", ".join(dict.fromkeys(versions))
        + "."
    )


def request_table(results: dict[str, Any]) -> list[str]:
    columns = []
    if "request_path" in results.get("old", {}):
        columns.append(("django-rest-hooks 1.5 (SQLite)", results["old"]["request_path"]))
    for db, side in results.get("ours", {}).items():
        if "request_path" in side:
            columns.append((f"rest_hooks ({DBS[db]})", side["request_path"]))
    if not columns:
        return []
    lines = [
        "**1. Request path**: ms that `Book.objects.create()` costs over K = 0, median "
        "[min, max] of the repetitions; the K = 0 row is the create itself.",
        "",
        "| K subscribers | " + " | ".join(name for name, _ in columns) + " |",
        "|---:|" + "---:|" * len(columns),
    ]
    for i, row in enumerate(columns[0][1]):
        cells = []
        for _, rows in columns:
            r = rows[i]
            cells.append(cell(r["create_ms"] if r["k"] == 0 else r.get("overhead_ms")))
        label = f"{row['k']:,}" + (" (create ms)" if row["k"] == 0 else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def fanout_table(results: dict[str, Any]) -> list[str]:
    ours = {db: side for db, side in results.get("ours", {}).items() if side.get("fanout")}
    bare = by(results.get("bare", []), "processes")
    old = results.get("old", {}).get("fanout")
    workers = sorted({(r["processes"], r["threads"]) for s in ours.values() for r in s["fanout"]})
    workers += [(p, 0) for p in sorted(bare) if p not in {p for p, _ in workers}]
    if not workers and not old:
        return []
    hooks = next((r["hooks"] for side in ours.values() for r in side["fanout"]), None)
    columns = [f"rest_hooks ({DBS[db]})" for db in ours] + ["bare `httpx.Client` loop"]
    lines = [
        f"**2, 3. Fan-out**: one event to {hooks or old['hooks']:,} hooks, deliveries/s from the "
        "commit until nginx has every POST, median [min, max]. django-rest-hooks 1.5: "
        f"{cell(old['per_s'], '{:,.0f}') if old else '-'} (one process, its three threads). "
        "The bare loop runs one thread a process.",
        "",
        "| worker processes | threads | "
        + " | ".join(columns)
        + " | vs django-rest-hooks | vs bare loop |",
        "|---:|---:|" + "---:|" * (len(columns) + 2),
    ]
    for p, t in workers:
        rows = {db: fanout_row(side, p, t) for db, side in ours.items()}
        cells = [cell(row["per_s"] if row else None, "{:,.0f}") for row in rows.values()]
        cells.append(cell(bare.get(p, {}).get("per_s"), "{:,.0f}"))
        ratios_old, ratios_bare = [], []
        for db, row in rows.items():
            rate = row["per_s"]["median"] if row else None
            if rate and old:
                ratios_old.append(f"{rate / old['per_s']['median']:.2f}x ({DBS[db]})")
            if rate and p in bare:
                ratios_bare.append(f"{rate / bare[p]['per_s']['median']:.2f} ({DBS[db]})")
        cells += [", ".join(ratios_old) or "-", ", ".join(ratios_bare) or "-"]
        lines.append(f"| {p} | {t or '-'} | " + " | ".join(cells) + " |")
    costs = [(db, r) for db, side in ours.items() for r in side["fanout"] if r.get("per_delivery")]
    if costs:
        lines += [
            "",
            "Per delivery during the fan-out (CPU ms from `/proc` and Redis `INFO`; Redis "
            "commands from `INFO commandstats`, broker and gate together):",
            "",
            "| database | processes | threads | workers CPU ms | Redis CPU ms "
            "| PostgreSQL CPU ms | SQL statements | Redis commands |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for db, r in costs:
            c = r["per_delivery"]
            commands = sorted(c["redis_commands"].items(), key=lambda kv: -kv[1])
            text = ", ".join(f"{name} {n:.1f}" for name, n in commands if n >= 0.05)
            sql = sum(q["per_delivery"] for q in c.get("sql_statements", []))
            lines.append(
                f"| {DBS[db]} | {r['processes']} | {r['threads']} | {c['workers_cpu_ms']:.2f} "
                f"| {c['redis_cpu_ms']:.2f} | {c['postgres_cpu_ms']:.2f} "
                f"| {f'{sql:.2f}' if sql else '-'} | {text} |"
            )
    return lines


def parts(results: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    """(database, figures) of this project's sides that measured ``key``."""
    return [(db, side[key]) for db, side in results.get("ours", {}).items() if side.get(key)]


def latency_table(results: dict[str, Any]) -> list[str]:
    rows = [(db, r) for db, runs in parts(results, "latency") for r in runs]
    if not rows:
        return []
    lines = [
        "**4. Latency**: from the commit to the arrival at nginx, one hook per event; with "
        "the CPU the workers, Redis and PostgreSQL spent per event meanwhile.",
        "",
        "| database | processes | threads | events/s | events | p50 ms | p99 ms | max ms "
        "| workers CPU ms | Redis CPU ms | PostgreSQL CPU ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for db, r in rows:
        cpu = r.get("per_event", {})
        spent = " | ".join(
            f"{cpu[k]:.2f}" if k in cpu else "-"
            for k in ("workers_cpu_ms", "redis_cpu_ms", "postgres_cpu_ms")
        )
        lines.append(
            f"| {DBS[db]} | {r['processes']} | {r['threads']} | {r['rate']:.0f} "
            f"| {r['events']:,} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} "
            f"| {spent} |"
        )
    return lines


def memory_table(results: dict[str, Any]) -> list[str]:
    rows = parts(results, "memory")
    if not rows:
        return []
    lines = [
        "**6. Memory**: VmRSS of each worker process (MiB) after N deliveries.",
        "",
        "| database | processes | deliveries | RSS MiB per process |",
        "|---|---:|---:|---|",
    ]
    for db, m in rows:
        for point in m["points"]:
            rss = ", ".join(f"{x:.1f}" for x in point["rss_mib"])
            lines.append(f"| {DBS[db]} | {m['processes']} | {point['deliveries']:,} | {rss} |")
    return lines


def gate_table(results: dict[str, Any]) -> list[str]:
    if not results.get("gate"):
        return []
    server_us = results["gate"]["redis_server_us_per_delivery"]
    lines = ["**5. The flow-control gate alone** (`benchmarks/gate.py`):", ""]
    lines.append(gate.table([gate.Row(**r) for r in results["gate"]["rows"]]))
    if server_us:
        lines += [
            "",
            f"Redis spent {server_us:.1f} µs per delivery in the gate's scripts: one Redis "
            f"core sustains about {1e6 / server_us:,.0f} gated deliveries/s.",
        ]
    return lines


def goals_table(results: dict[str, Any]) -> list[str]:
    if not results["goals"]:
        return []
    lines = ["| goal | measured | target | met |", "|---|---|---|---|"]
    lines += [
        f"| {g['goal']} | {g['measured']} | {g['target']} | {'yes' if g['met'] else '**no**'} |"
        for g in results["goals"]
    ]
    return lines


def profile_tables(results: dict[str, Any]) -> list[str]:
    lines = []
    for db, side in results.get("ours", {}).items():
        for row in side.get("fanout", []):
            if row.get("profile"):
                lines += [
                    f"**Profile** ({DBS[db]}, {row['processes']} worker processes of "
                    f"{row['threads']} threads, one more "
                    f"fan-out to {row['hooks']:,} hooks under `py-spy record --gil`, not in "
                    "the figures above): worker CPU per delivery, by step.",
                    "",
                    profile_report.table(row["profile"]),
                    "",
                ]
        for latency in side.get("latency") or []:
            if latency.get("profile"):
                lines += [
                    f"**Profile** ({DBS[db]}, the latency run at {latency['rate']:.0f} events/s "
                    f"with {latency['threads']} threads a process, under `py-spy record "
                    "--gil`): worker CPU per event (one delivery), by step.",
                    "",
                    profile_report.table(latency["profile"]),
                    "",
                ]
    return lines[:-1]


def sql_table(results: dict[str, Any]) -> list[str]:
    """The statements of a delivery on PostgreSQL (pg_stat_statements), largest cost first."""
    lines = []
    for db, side in results.get("ours", {}).items():
        rows = [r for r in side.get("fanout", []) if r["per_delivery"].get("sql_statements")]
        if not rows:
            continue
        row = max(rows, key=lambda r: r["processes"])
        statements = row["per_delivery"]["sql_statements"]
        total = sum(q["per_delivery"] for q in statements)
        server = sum(q["per_delivery"] * q["mean_ms"] for q in statements)
        lines += [
            f"**SQL per delivery** ({DBS[db]}, {row['processes']} worker processes of "
            f"{row['threads']} threads, from "
            f"`pg_stat_statements`): {total:.2f} statements, {server:.3f} ms of execution in "
            "the server.",
            "",
            "| per delivery | mean ms | statement |",
            "|---:|---:|---|",
        ]
        lines += [
            f"| {q['per_delivery']:.3f} | {q['mean_ms']:.3f} "
            f"| `{' '.join(q['query'].split())[:150]}` |"
            for q in statements[:8]
        ]
        lines.append("")
    return lines[:-1]


def markdown(results: dict[str, Any]) -> str:
    sections = [
        [header(results)],
        goals_table(results),
        request_table(results),
        fanout_table(results),
        latency_table(results),
        gate_table(results),
        memory_table(results),
        sql_table(results),
        profile_tables(results),
    ]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"
