"""The goals of issues #5 and #14 checked against one run's figures, and the Markdown tables."""

from __future__ import annotations

from typing import Any

import common
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
#: The delivery engine's goals (issue #14): slow receivers (deliveries/s, against the old
#: library), the fast origin's pace kept beside stalled ones, one-hook events a second
#: sustained and worker CPU ms per one-hook event.
SLOW_PER_S = 1500
SLOW_VS_OLD = 60
ISOLATION_KEPT = 0.9
SUSTAINED_PER_S = 1000
EVENT_CPU_MS = 2.0


def cell(s: dict[str, float] | None, fmt: str = "{:,.2f}") -> str:
    """``median [min, max]`` of a spread."""
    if not s:
        return "-"
    return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}, {fmt.format(s['max'])}]"


def by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in rows}


def fanout_row(
    side: dict[str, Any], processes: int, threads: int, rate_limit: str | None = None
) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in side.get("fanout", [])
            if (r["processes"], r["threads"], r.get("rate_limit"))
            == (processes, threads, rate_limit)
        ),
        None,
    )


def fanout_goals(
    name: str,
    fanout: list[dict[str, Any]],
    old_fanout: float | None,
    bare: dict[Any, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Against the old library and the bare loop: the largest process count with its
    faster thread count (both are in the table), without a rate limit and with each."""
    out = []
    for limit in dict.fromkeys(r.get("rate_limit") for r in fanout):
        rows = [r for r in fanout if r.get("rate_limit") == limit]
        processes = max(r["processes"] for r in rows)
        best = max(
            (r for r in rows if r["processes"] == processes), key=lambda r: r["per_s"]["median"]
        )
        rate = best["per_s"]["median"]
        workers = f"{processes} processes of {best['threads']} threads"
        if limit:
            workers += f", RATE_LIMIT {limit}"
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
    return out


def engine_goals(name: str, side: dict[str, Any], old: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #14's goals of one database: slow receivers, isolation, one-hook events."""
    out = []
    if side.get("slow"):
        best = max(side["slow"], key=lambda r: r["per_s"]["median"])
        rate = best["per_s"]["median"]
        old_rate = old.get("slow", {}).get("per_s", {}).get("median")
        versus = (
            f", {rate / old_rate:.1f}x django-rest-hooks ({old_rate:,.0f}/s)" if old_rate else ""
        )
        most = max(r["open_at_once"] for r in side["slow"])
        out.append(
            goal(
                f"slow receivers ({best['origins']} origins, 100-150 ms), {best['processes']} "
                f"processes of {best['threads']} threads ({name})",
                f"{rate:,.0f}/s{versus}; at most {most} open on an origin",
                f"≥ {SLOW_PER_S:,}/s, ≥ {SLOW_VS_OLD}x, ≤ {best['max_in_flight']} open",
                rate >= SLOW_PER_S
                and bool(old_rate and rate / old_rate >= SLOW_VS_OLD)
                and most <= best["max_in_flight"],
            )
        )
    isolation = side.get("isolation")
    if isolation:
        kept = isolation["kept"]["median"]
        out.append(
            goal(
                f"isolation: the fast origin's pace beside {isolation['stalled_hooks']} stalled "
                f"deliveries, {isolation['processes']} processes of {isolation['threads']} "
                f"threads ({name})",
                f"{kept:.0%} ({isolation['with_stalled_per_s']['median']:,.0f}/s vs "
                f"{isolation['alone_per_s']['median']:,.0f}/s alone)",
                f"≥ {ISOLATION_KEPT:.0%}",
                kept >= ISOLATION_KEPT,
            )
        )
    if side.get("sustained"):
        best = max(side["sustained"], key=lambda r: r["per_s"])
        out.append(
            goal(
                f"one-hook events sustained, {best['processes']} processes of "
                f"{best['threads']} threads ({name})",
                f"{best['per_s']:,.0f}/s",
                f"≥ {SUSTAINED_PER_S:,}/s",
                best["per_s"] >= SUSTAINED_PER_S,
            )
        )
    # Runs that measured what an event costs (every run does since issue #14).
    measured = [r for r in side.get("latency", []) if "per_event" in r]
    if measured:
        best = min(measured, key=lambda r: r["per_event"]["workers_cpu_ms"])
        ms = best["per_event"]["workers_cpu_ms"]
        out.append(
            goal(
                f"worker CPU per one-hook event at {best['rate']:.0f} events/s, "
                f"{best['processes']} processes of {best['threads']} threads ({name})",
                f"{ms:.2f} ms",
                f"≤ {EVENT_CPU_MS} ms",
                ms <= EVENT_CPU_MS,
            )
        )
    return out


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
        if side.get("fanout"):
            out += fanout_goals(name, side["fanout"], old_fanout, bare)
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
        out += engine_goals(name, side, old)
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
    workers = list(
        dict.fromkeys(
            (r["processes"], r["threads"], r.get("rate_limit"))
            for s in ours.values()
            for r in s["fanout"]
        )
    )
    workers += [(p, 0, None) for p in sorted(bare) if p not in {w[0] for w in workers}]
    if not workers and not old:
        return []
    hooks = next((r["hooks"] for side in ours.values() for r in side["fanout"]), None)
    columns = [f"rest_hooks ({DBS[db]})" for db in ours] + ["bare aiohttp loop"]
    lines = [
        f"**2, 3. Fan-out**: one event to {hooks or old['hooks']:,} hooks, deliveries/s from the "
        "commit until nginx has every POST, median [min, max]. django-rest-hooks 1.5: "
        f"{cell(old['per_s'], '{:,.0f}') if old else '-'} (one process, its three threads). "
        "The bare loop runs one thread a process.",
        "",
        "| worker processes | threads | RATE_LIMIT | "
        + " | ".join(columns)
        + " | vs django-rest-hooks | vs bare loop |",
        "|---:|---:|---|" + "---:|" * (len(columns) + 2),
    ]
    for p, t, limit in workers:
        rows = {db: fanout_row(side, p, t, limit) for db, side in ours.items()}
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
        lines.append(f"| {p} | {t or '-'} | {limit or '-'} | " + " | ".join(cells) + " |")
    costs = [(db, r) for db, side in ours.items() for r in side["fanout"] if r.get("per_delivery")]
    if costs:
        lines += [
            "",
            "Per delivery during the fan-out (CPU ms from `/proc` and Redis `INFO`; round "
            "trips are the reads each redis-server processed, the broker's and the gate's "
            "apart; messages are those the broker enqueued; Redis commands from `INFO "
            "commandstats`, both servers, scripts' own commands included):",
            "",
            "| database | processes | threads | RATE_LIMIT | workers CPU ms | Redis CPU ms "
            "| PostgreSQL CPU ms | SQL statements | Redis round trips (broker, gate) "
            "| broker messages | Redis commands |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for db, r in costs:
            c = r["per_delivery"]
            commands = sorted(c["redis_commands"].items(), key=lambda kv: -kv[1])
            text = ", ".join(f"{name} {n:.1f}" for name, n in commands if n >= 0.05)
            sql = sum(q["per_delivery"] for q in c.get("sql_statements", []))
            lines.append(
                f"| {DBS[db]} | {r['processes']} | {r['threads']} | {r.get('rate_limit') or '-'} "
                f"| {c['workers_cpu_ms']:.2f} | {c['redis_cpu_ms']:.2f} "
                f"| {c['postgres_cpu_ms']:.2f} | {f'{sql:.2f}' if sql else '-'} "
                f"| {round_trips(c)} | {c.get('broker_messages', 0):.2f} | {text} |"
            )
    return lines


def round_trips(cost: dict[str, Any]) -> str:
    """Redis round trips of a ``Costs.per_delivery``: in all, and by server."""
    servers = cost.get("redis", {})
    if not servers:
        return "-"
    each = ", ".join(f"{r['round_trips']:.2f}" for r in servers.values())
    return f"{cost['redis_round_trips']:.2f} ({each})" if len(servers) > 1 else each


def parts(results: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    """(database, figures) of this project's sides that measured ``key``."""
    return [(db, side[key]) for db, side in results.get("ours", {}).items() if side.get(key)]


def latency_table(results: dict[str, Any]) -> list[str]:
    rows = [(db, r) for db, runs in parts(results, "latency") for r in runs]
    if not rows:
        return []
    lines = [
        "**4. Latency**: from the commit to the arrival at nginx, one hook per event; with "
        "what one event cost meanwhile: the CPU the workers, Redis and PostgreSQL spent, "
        "SQL statements (`pg_stat_statements`), Redis round trips (broker, gate) and broker "
        "messages.",
        "",
        "| database | processes | threads | events/s | events | p50 ms | p99 ms | max ms "
        "| workers CPU ms | Redis CPU ms | PostgreSQL CPU ms | SQL statements "
        "| Redis round trips | broker messages |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
            f"| {spent} | {statements(cpu)} | {round_trips(cpu)} "
            f"| {cpu.get('broker_messages', 0):.2f} |"
        )
    return lines


def statements(cost: dict[str, Any]) -> str:
    """SQL statements of a ``Costs.per_delivery`` (none counted on SQLite)."""
    sql = sum(q["per_delivery"] for q in cost.get("sql_statements", []))
    return f"{sql:.2f}" if sql else "-"


def sustained_table(results: dict[str, Any]) -> list[str]:
    rows = [(db, r) for db, runs in parts(results, "sustained") for r in runs]
    if not rows:
        return []
    lines = [
        "**7. Sustained one-hook events**: a backlog of one-hook events, made while no worker "
        "ran, drained by the workers: events a second between the 10th and the 90th "
        "percentile of the arrivals (the caller's CPU is not in it).",
        "",
        "| database | processes | threads | events | events/s |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {DBS[db]} | {r['processes']} | {r['threads']} | {r['events']:,} | {r['per_s']:,.0f} |"
        for db, r in rows
    ]
    return lines


def slow_table(results: dict[str, Any]) -> list[str]:
    rows = [(f"rest_hooks ({DBS[db]})", r) for db, runs in parts(results, "slow") for r in runs]
    old, bare = results.get("old", {}).get("slow"), results.get("bare_async", {}).get("slow")
    if not rows and not old:
        return []
    origins = (rows[0][1] if rows else old)["origins"]
    lines = [
        f"**8. Slow receivers**: one event to hooks spread over {origins} origins of "
        "`slow_receiver.py`, each answering 100-150 ms after a request arrives (uniform, per "
        "request); deliveries/s from the commit until the last answer, median [min, max], "
        "the most requests any origin had open at once (the receiver counts them) and the "
        "most open on all origins together; "
        f"this project with `MAX_IN_FLIGHT` {common.SLOW_MAX_IN_FLIGHT}, the bare loop "
        "(one client an origin) as many open on an origin.",
        "",
        "| sender | processes | threads | hooks | deliveries/s | most open on an origin "
        "| most open in all | vs django-rest-hooks | workers CPU ms a delivery |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    old_rate = old["per_s"]["median"] if old else None
    for name, r in rows:
        versus = f"{r['per_s']['median'] / old_rate:.1f}x" if old_rate else "-"
        lines.append(
            f"| {name} | {r['processes']} | {r['threads']} | {r['hooks']:,} "
            f"| {cell(r['per_s'], '{:,.0f}')} | {r['open_at_once']} | {r['open_in_all']} "
            f"| {versus} | {r['per_delivery']['workers_cpu_ms']:.2f} |"
        )
    if old:
        lines.append(
            f"| django-rest-hooks 1.5 | 1 | 3 | {old['hooks']:,} | {cell(old['per_s'], '{:,.0f}')} "
            f"| {old['open_at_once']} | {old['open_in_all']} | 1.0x | - |"
        )
    if bare:
        versus = f"{bare['per_s']['median'] / old_rate:.1f}x" if old_rate else "-"
        lines.append(
            f"| bare aiohttp loop | {results['bare_async']['processes']} | 1 "
            f"| {bare['hooks']:,} | {cell(bare['per_s'], '{:,.0f}')} | {bare['open_at_once']} "
            f"| {bare['open_in_all']} | {versus} | - |"
        )
    return lines


def isolation_table(results: dict[str, Any]) -> list[str]:
    rows = [(f"rest_hooks ({DBS[db]})", r) for db, r in parts(results, "isolation")]
    if results.get("old", {}).get("isolation"):
        rows.append(("django-rest-hooks 1.5", {"threads": 3, **results["old"]["isolation"]}))
    if results.get("bare_async", {}).get("isolation"):
        rows.append(("bare aiohttp loop", {"threads": 1, **results["bare_async"]["isolation"]}))
    if not rows:
        return []
    lines = [
        "**9. Isolation**: an event to the hooks of the one origin that answers at once, "
        "alone and just after an event to the stalled origins (each answering in 2 s): "
        "the fast origin's deliveries/s from its commit to its last answer, median [min, "
        "max], and the share of its pace alone it kept (each repetition's pair).",
        "",
        "| sender | threads a process | stalled hooks | fast hooks | alone /s "
        "| beside the stalled /s | kept |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {r['threads']} | {r['stalled_hooks']:,} | {r['fast_hooks']:,} "
        f"| {cell(r['alone_per_s'], '{:,.0f}')} | {cell(r['with_stalled_per_s'], '{:,.0f}')} "
        f"| {cell(r['kept'], '{:.0%}')} |"
        for name, r in rows
    ]
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
        rows = [
            r
            for r in side.get("fanout", [])
            if r["per_delivery"].get("sql_statements") and not r.get("rate_limit")
        ]
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
        sustained_table(results),
        slow_table(results),
        isolation_table(results),
        sql_table(results),
        profile_tables(results),
    ]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"
