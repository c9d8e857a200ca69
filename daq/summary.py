"""The run summary (``run_summary.json``) for the terminal.

The recorder writes the summary when a run ends; :func:`format_summary` prints it.
"""

from __future__ import annotations

from typing import Any


def format_summary(summary: dict[str, Any]) -> str:
    """The run summary for the terminal: conservation, seeds, efficiencies, latency."""
    from darktrigger.daq.trigger.rates import MenuCounts

    lines = []
    ev_in = summary.get("events_in")
    lines.append(f"events in {ev_in:,}  accepted {summary['events_accepted']:,}  rejected "
                 f"{summary['events_rejected']:,}  invalid {summary['events_invalid']:,}  "
                 f"lost {summary['events_lost']}  duplicated {summary['events_duplicated']}"
                 if ev_in is not None else
                 f"events accepted {summary['events_accepted']:,}, rejected {summary['events_rejected']:,} "
                 "(the source's count did not arrive)")
    lines.append(f"batches resent {summary.get('batches_resent', 0)}, duplicate batches dropped "
                 f"{summary.get('duplicate_batches_dropped', 0)}, workers lost {summary.get('workers_lost', 0)}, "
                 f"worker restarts {summary.get('worker_restarts', 0)}, malformed messages "
                 f"{sum(summary.get('malformed_messages', {}).values())}")
    lines.append("")
    lines.append(MenuCounts.from_dict(summary["menu"]).format_table())
    lines.append("")
    lines.append("per process (truth label): events in, accepted, efficiency")
    for name, row in summary.get("per_process", {}).items():
        lines.append(f"  {name:<12}{row['events']:>12,}{row['accepted']:>10,}{row['efficiency']:>10.4f}")
    lines.append("")
    lines.append(f"latency source → recorder: p50 {summary['latency_p50_s'] * 1e3:.1f} ms, "
                 f"p99 {summary['latency_p99_s'] * 1e3:.1f} ms")
    if summary.get("wall_s"):
        lines.append(f"{ev_in:,} events in {summary['wall_s']:.2f} s: {ev_in / summary['wall_s']:,.0f} events/s "
                     "end to end (start-up excluded)")
    return "\n".join(lines)
