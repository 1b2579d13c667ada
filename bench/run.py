"""`make bench`: start the real stack (or use a running one), run every stage, print one table, write JSON.

    python -m bench.run [--mode quick|full] [--only STAGE,...] [--json OUT] [--set NAME=VALUE ...]
                        [--url URL --admin-token TOKEN] [--bootstrap HOST:PORT] [--topic-prefix P] [--cdp-pid PID]
    python -m bench.run --list

Without --bootstrap (or CDP_KAFKA_BOOTSTRAP) a broker is started on free loopback ports in .bench/work/kafka;
each stage starts the cdp processes it needs with their own data folders under .bench/work and their own topic
prefix. With --url (and --admin-token, and the deployment's broker), the stages that need the whole pipeline use
that running `cdp run` instead; the sink and stitching stages still start their own processes on that broker.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

import bench.stages  # noqa: F401  (registers the built-in stages)
from bench.context import Context
from bench.core import MODES, STAGES, Mode, Result, StageError, format_table, report_json, selected_stages
from bench.stack import ROOT, Broker, CdpClient, source_write_keys, warm_up_broker

DEFAULT_JSON = ROOT / ".bench" / "results.json"
WORKDIR = ROOT / ".bench" / "work"


def apply_overrides(mode: Mode, assignments: list[str] | None) -> Mode:
    """``NAME=VALUE`` pairs over a mode's fields, converted to the field's type (tuples: comma separated)."""
    if not assignments:
        return mode
    types = {f.name: type(getattr(mode, f.name)) for f in dataclasses.fields(mode)}
    changes: dict[str, Any] = {}
    for item in assignments:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in types or name == "name":
            raise ValueError(f"--set {item!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(types))}")
        kind = types[name]
        value: Any
        if kind is tuple or getattr(mode, name) is None:
            parts = [p.strip() for p in raw.split(",") if p.strip()]
            default = getattr(mode, name) or (0,)
            value = tuple(type(default[0])(p) for p in parts) if parts else None
        elif kind is bool:
            value = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            value = kind(raw)
        changes[name] = value
    return dataclasses.replace(mode, **changes)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description="cdp benchmarks: one table, one JSON.")
    p.add_argument("--mode", choices=sorted(MODES), default="quick")
    p.add_argument("--only", default=None, help="comma-separated stage names (default: all)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help=f"where to write the results (default {DEFAULT_JSON})")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a mode setting, e.g. --set sink_rows=500000 (see bench/core.py Mode)",
    )
    p.add_argument("--list", action="store_true", help="list the stages and exit")
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("CDP_KAFKA_BOOTSTRAP"),
        help="use this Kafka instead of starting one (default: $CDP_KAFKA_BOOTSTRAP)",
    )
    p.add_argument("--url", default=None, help="a running `cdp run` to measure (collector, freshness, accuracy)")
    p.add_argument("--admin-token", default=os.environ.get("CDP_ADMIN_TOKEN"), help="its admin token")
    p.add_argument("--topic-prefix", default=os.environ.get("CDP_TOPIC_PREFIX", "cdp"), help="its topic prefix")
    p.add_argument("--cdp-pid", type=int, default=None, help="its process id, for peak memory")
    return p.parse_args(argv)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, stage in STAGES.items():
            print(f"{name:<20} {stage.description}")
        return 0
    try:
        mode = apply_overrides(MODES[args.mode], args.set)
        stages = selected_stages(args.only)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if args.url and not (args.admin_token and args.bootstrap):
        print(
            "bench: --url needs --admin-token and the deployment's broker (--bootstrap or CDP_KAFKA_BOOTSTRAP)",
            file=sys.stderr,
        )
        return 2

    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    started = time.time()
    results: list[Result] = []
    errors: dict[str, str] = {}
    broker: Broker | None = None
    ctx: Context | None = None
    environment: dict[str, Any] = {"workdir": str(WORKDIR)}
    try:
        bootstrap = args.bootstrap
        if not bootstrap:
            _log("starting a Kafka broker on free ports")
            broker = Broker(WORKDIR / "kafka").start()
            bootstrap = broker.bootstrap
            _log(f"broker up on {bootstrap}; coordinators ready after {warm_up_broker(bootstrap):.1f} s")
        environment["kafka"] = bootstrap
        environment["kafka_started_by_bench"] = broker is not None
        external = None
        if args.url:
            keys = source_write_keys(bootstrap, args.topic_prefix)
            external = CdpClient(
                args.url,
                args.admin_token,
                keys,
                bootstrap,
                args.topic_prefix,
                args.cdp_pid,
                os.environ.get("CDP_PRIVACY_KEY", ""),
            )
            environment["cdp_url"] = args.url
        ctx = Context(
            mode=mode,
            workdir=WORKDIR,
            bootstrap=bootstrap,
            broker_pid=broker.pid if broker else None,
            external=external,
            log=_log,
        )
        for stage in stages:
            _log(f"stage {stage.name}: {stage.description}")
            t0 = time.monotonic()
            try:
                stage_results = stage.run(ctx)
            except KeyboardInterrupt:
                errors[stage.name] = "interrupted"
                raise
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [""])[0]
                errors[stage.name] = f"{type(exc).__name__}: {first[:300]}"
                with (WORKDIR / "errors.log").open("a") as fh:
                    fh.write(f"--- {stage.name}\n{traceback.format_exc()}\n")
                _log(f"stage {stage.name} FAILED: {errors[stage.name]} (traceback in {WORKDIR / 'errors.log'})")
                results.extend(exc.results if isinstance(exc, StageError) else [])
                continue
            results.extend(stage_results)
            ctx.results.extend(stage_results)
            _log(f"stage {stage.name} done in {time.monotonic() - t0:.0f} s")
            sys.stderr.write(format_table(stage_results))
    except KeyboardInterrupt:
        _log("interrupted; stopping the stack")
    finally:
        if ctx is not None:
            ctx.close()
            environment["metrics_moved"] = ctx.metrics_moved
            if ctx.external is not None:
                ctx.external.close()
        if broker is not None:
            broker.stop()

    print(f"\ncdp bench, mode {mode.name}, {os.cpu_count()} CPUs, {time.time() - started:.0f} s")
    print(format_table(results, errors), end="")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = report_json(mode, results, errors, started=started, environment=environment)
    out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"results written to {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
