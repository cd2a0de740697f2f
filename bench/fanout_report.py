"""The tables bench/fanout.py prints from its results."""

from __future__ import annotations

from typing import Any

from bench.harness import print_table

LATENCY_RATE = 5_000  # deliveries/s: the latency target is at this rate


def report(results: dict[str, Any]) -> None:
    """Setup, every step of both modes, and the summary against the issue's targets."""
    plan = results["plan"]
    print_table(
        "Fan-out setup (events injected straight into Redis in the worker's format)",
        ["subscribers", "APIs", "subscriber processes", "deliveries per event", "mix"],
        [
            [
                plan["subscriptions"],
                plan["apis"],
                plan["client_processes"],
                plan["per_event"],
                f"{plan['device_subscriptions']} per-device, {plan['owner_subscriptions']} "
                f"per-user, {plan['admin_subscriptions']} ADMIN (all devices)",
            ]
        ],
    )
    header = [
        "mode",
        "offered/s",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "lost",
        "closed",
        "API µs/deliv",
        "client µs/deliv",
        "API CPU",
        "client CPU",
        "load",
    ]
    rows = []
    for mode in results["modes"]:
        for step in mode["steps"]:
            rows.append(
                [
                    mode["mode"],
                    step["offered_deliveries_per_s"],
                    step["achieved_deliveries_per_s"],
                    step["p50_ms"],
                    step["p99_ms"],
                    step["p999_ms"],
                    step["lost"],
                    step["closed_subscribers"],
                    step["api_cpu_us_per_delivery"],
                    step["client_cpu_us_per_delivery"],
                    f"{step['api_cpu_share']:.2f}",
                    f"{step['client_cpu_share']:.2f}",
                    step["load_average"][0],
                ]
            )
    print_table("Deliveries at rising offered rates", header, rows)
    shared, naive = results["modes"][0], results["modes"][-1]

    def at_latency_rate(mode: dict[str, Any], key: str) -> object:
        step = mode["latency_step"]
        return "not reached" if step is None else step[key]

    def cheapest(mode: dict[str, Any]) -> float:
        return float(min(s["api_cpu_us_per_delivery"] for s in mode["steps"]))

    print_table(
        "Summary",
        ["measure", "shared listener", "naive baseline", "target"],
        [
            [
                "max sustained deliveries/s (all delivered at ≥ 95% of the offered rate)",
                shared["max_sustained_deliveries_per_s"],
                naive["max_sustained_deliveries_per_s"],
                "≥ 20,000",
            ],
            [
                "peak deliveries/s (drain rate when saturated)",
                shared["peak_deliveries_per_s"],
                naive["peak_deliveries_per_s"],
                "—",
            ],
            [
                f"p99 at {LATENCY_RATE:,} deliveries/s offered (ms)",
                at_latency_rate(shared, "p99_ms"),
                at_latency_rate(naive, "p99_ms"),
                "≤ 50",
            ],
            [
                f"API CPU per delivery at {LATENCY_RATE:,} deliveries/s offered (µs)",
                at_latency_rate(shared, "api_cpu_us_per_delivery"),
                at_latency_rate(naive, "api_cpu_us_per_delivery"),
                "—",
            ],
            [
                "API CPU per delivery, lowest step (µs)",
                cheapest(shared),
                cheapest(naive),
                "—",
            ],
            [
                "API RSS per idle subscription, its WebSocket included (KiB)",
                shared["rss_kib_per_subscription"],
                naive["rss_kib_per_subscription"],
                "≤ 50",
            ],
            [
                "  of which the connection (after connection_ack) / the subscription",
                f"{shared['rss_kib_per_connection_alone']} / "
                f"{shared['rss_kib_per_subscription_alone']}",
                f"{naive['rss_kib_per_connection_alone']} / "
                f"{naive['rss_kib_per_subscription_alone']}",
                "—",
            ],
            ["Redis connections", shared["redis_clients"], naive["redis_clients"], "—"],
            [
                "peak throughput ratio shared / naive",
                results["throughput_ratio_shared_to_naive"],
                "1",
                "—",
            ],
        ],
    )
    print(
        "\nSubscribers: bench/fanout_client.py, a minimal WebSocket client on asyncio "
        "protocols; 'client µs/deliv' and 'client CPU' (cores) are its cost on this machine."
    )
