"""``python -m bench.shadow [--subs N --days D]``: the second-SIM join's added cost per event.

One simulated operator (``stream.tools.simulate``: its competitor traffic, switchers' shadow numbers),
replayed in process twice over the same bytes, side by side in one run: the engine with the join
off (``shadow_enabled = false``) and on (the engine's share: contact extraction, circle
publications, confirmation; plus stages 1 and 2 in process, as the backtest runs them). Reports
events/s both ways, the added CPU microseconds per event (engine share and stage share), and the
messages the join puts on Kafka per 1,000 input events (contacts, bands, evidence).
"""

from __future__ import annotations

import argparse
import json
import time

__all__ = ["bench_shadow"]


def _replay(raws, cfg, batch_size: int, join: bool) -> dict:
    from stream.engine import Engine
    from stream.engine.shadow import BANDS, ShadowJoin
    from stream.service.shadow import band_messages, contact_messages

    state = {"now": 0.0}
    eng = Engine(cfg, clock=lambda: state["now"] + 2 * 86400)
    sj = ShadowJoin(cfg) if join else None
    t_engine = t_stage = 0.0
    n_contacts = n_bands = n_evidence = n_env = 0
    partitions = 12
    last_day = None
    for i in range(0, len(raws), batch_size):
        t0 = time.process_time()
        batch, _ = eng.decode(raws[i : i + batch_size])
        if len(batch):
            state["now"] = max(state["now"], float(batch.ts.max()))
        ap = eng.apply(batch)
        touched, contacts = ap.rows, ap.contacts
        wm = eng.watermark_s
        if wm is None:
            continue
        day = eng.day_of(wm)
        if last_day is not None and day > last_day:
            for d in range(last_day + 1, day + 1):
                eng.sweep(cfg.day_start_s(d))
        last_day = day if last_day is None else max(last_day, day)
        eng.evaluate(touched)
        t1 = time.process_time()
        t_engine += t1 - t0
        if sj is not None:
            pubs = eng.take_shadow_publications()
            n_contacts += len(contacts[0])
            n_bands += sum(len(r["bands"]) for r in pubs)
            n_env += len(contact_messages(contacts, partitions)) + len(band_messages([], pubs, partitions))
            ev = sj.step(contacts, pubs, day)
            n_evidence += len(ev)
            t2 = time.process_time()
            confirmed = eng.apply_shadow(ev)
            eng.evaluate(confirmed)
            t3 = time.process_time()
            t_stage += t2 - t1
            t_engine += t3 - t2
    n = len(raws)
    out = {
        "events": n,
        "engine_cpu_s": round(t_engine, 3),
        "engine_events_per_s_cpu": round(n / t_engine) if t_engine else None,
    }
    if sj is not None:
        out.update(
            stage_cpu_s=round(t_stage, 3),
            competitor_numbers_sketched=len(sj.peers),
            band_keys=len(sj.bands),
            contact_records_per_1k_events=round(1000 * n_contacts / n, 2),
            band_records_per_1k_events_subscribers=round(1000 * n_bands / n, 2),
            band_records_per_1k_events_numbers=round(1000 * BANDS * sj.x_publications / n, 2),
            engine_envelopes_per_1k_events_12_partitions=round(1000 * n_env / n, 2),
            evidence_messages=n_evidence,
            subscribers=len(eng),
            shadows_confirmed=sum(1 for m in eng if eng.state_of(m)["shadow"][0] != 0),
        )
    return out


def bench_shadow(subs: int, days: int, seed: int = 5, batch_size: int = 5000, log=print) -> dict:
    from stream.engine import EngineConfig
    from stream.tools.simulate import generate

    log(f"[shadow] simulating {subs:,} subscribers x {days} days (seed {seed})")
    events, _ = generate(subs, days, seed, fmt="records", malformed_rate=0.0)
    raws = [v for _, _, v in events]
    off = _replay(raws, EngineConfig(shadow_enabled=False), batch_size, join=False)
    on = _replay(raws, EngineConfig(), batch_size, join=True)
    n = len(raws)
    added_engine = 1e6 * (on["engine_cpu_s"] - off["engine_cpu_s"]) / n
    added_stage = 1e6 * on["stage_cpu_s"] / n
    res = {
        "subscribers": subs,
        "days": days,
        "seed": seed,
        "batch_size": batch_size,
        "off": off,
        "on": on,
        "added_us_per_event_engine": round(added_engine, 3),
        "added_us_per_event_stages": round(added_stage, 3),
        "added_us_per_event_total": round(added_engine + added_stage, 3),
        "base_us_per_event": round(1e6 * off["engine_cpu_s"] / n, 3),
        "ratio_on_to_off": round((off["engine_cpu_s"]) / (on["engine_cpu_s"] + on["stage_cpu_s"]), 3),
    }
    log(
        f"    off {off['engine_events_per_s_cpu']:,} ev/s | on: engine {on['engine_events_per_s_cpu']:,} ev/s + stages "
        f"{on['stage_cpu_s']} s | added {res['added_us_per_event_total']} us/event on a base of {res['base_us_per_event']} "
        f"(engine {res['added_us_per_event_engine']}, stages {res['added_us_per_event_stages']}) | "
        f"per 1k events: {on['contact_records_per_1k_events']} contact records, {on['band_records_per_1k_events_subscribers']} "
        f"+ {on['band_records_per_1k_events_numbers']} band records, {on['engine_envelopes_per_1k_events_12_partitions']} envelopes "
        f"from the engine agent (12 partitions, batches of {batch_size})"
    )
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shadow", description=__doc__.split("\n\n")[0])
    p.add_argument("--subs", type=int, default=5000)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args(argv)
    print(json.dumps(bench_shadow(args.subs, args.days, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
