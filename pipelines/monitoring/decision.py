"""Judge the measures against the thresholds: breaches, what was left unjudged, retrain or not."""

from __future__ import annotations

from typing import Any, Mapping

from pipelines.monitoring.config import RULES, Thresholds


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def judge(measures: Mapping[str, float | None], thresholds: Thresholds) -> dict[str, Any]:
    """Compare every measure with its threshold (:data:`~pipelines.monitoring.config.RULES`).

    A measure is judged when its threshold is set, its value is known and its evidence count
    reaches the rule's minimum. Returns ``{"breaches": [...], "unjudged": [...], "retrain": bool,
    "alert": bool, "reason": str}``; a breach is ``{"measure", "value", "threshold",
    "threshold_name", "op", "action", "message"}`` (``action``: "retrain" or "alert"), an
    unjudged entry ``{"measure", "threshold_name", "why"}``. ``reason`` names every breach,
    retrain ones first ("" when none).
    """
    breaches: list[dict[str, Any]] = []
    unjudged: list[dict[str, Any]] = []
    for name, rule in RULES.items():
        limit = getattr(thresholds, name)
        if limit is None:
            continue
        for measure in rule.measures:
            value = measures.get(measure)
            if value is None:
                unjudged.append({"measure": measure, "threshold_name": name, "why": "not measured"})
                continue
            if rule.support is not None:
                count, needed = measures.get(rule.support) or 0.0, getattr(thresholds, rule.support_field)
                if count < needed:
                    unjudged.append({"measure": measure, "threshold_name": name,
                                     "why": f"{rule.support} {int(count)} < {rule.support_field} {needed}"})
                    continue
            broken = value > limit if rule.op == "max" else value < limit
            if broken:
                sign = ">" if rule.op == "max" else "<"
                breaches.append({
                    "measure": measure, "value": float(value), "threshold": float(limit), "threshold_name": name,
                    "op": rule.op, "action": rule.action,
                    "message": f"{measure} {_fmt(value)} {sign} {rule.op} {_fmt(limit)} ({name}): {rule.action}",
                })
    retrain = [b for b in breaches if b["action"] == "retrain"]
    alerts = [b for b in breaches if b["action"] == "alert"]
    parts = []
    for label, group in (("retrain", retrain), ("alert", alerts)):
        if group:
            sign = {"max": ">", "min": "<"}
            named = "; ".join(f"{b['measure']} {_fmt(b['value'])} {sign[b['op']]} {_fmt(b['threshold'])}" for b in group)
            parts.append(f"{label}: {named}")
    return {"breaches": breaches, "unjudged": unjudged, "retrain": bool(retrain), "alert": bool(alerts),
            "reason": ". ".join(parts)}
