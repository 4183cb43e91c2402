"""The doctor's table and `-o json` document."""

from __future__ import annotations

import json

from kubectl_keepalive.doctor import analysis, balancers, render
from kubectl_keepalive.doctor.analysis import Profile
from kubectl_keepalive.model import Keepalive

from .test_doctor_timers import read_golden

NLB_SERVICE = {"metadata": {}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}],
                                        "loadBalancerClass": "service.k8s.aws/nlb"}}


def report(keepalive: Keepalive | None = None) -> analysis.Report:
    return analysis.analyze(read_golden("istio-gateway"), balancers.detect(NLB_SERVICE, port=80),
                            Profile(600), drains=analysis.drain_timers(), keepalive=keepalive)


def test_table_marks_the_first_and_gives_source_and_fix() -> None:
    text = render.table(report(Keepalive(enabled=False)))
    assert "balancer: aws-nlb (l4), idle timeout 5m50s" in text
    assert "listener keepalive: off" in text
    first_rows = [line for line in text.splitlines() if line.startswith("*")]
    assert len(first_rows) == 2  # one per route
    assert first_rows[0].split()[1:3] == ["4s", "per_try_timeout"]
    assert first_rows[1].split()[1:3] == ["5m50s", "aws-nlb"]
    assert "fix: kubectl keepalive enable --idle 60s --interval 10 --probes 3" in text
    assert "risk: listener drain 45s" in text
    assert text.rstrip().endswith("(exit 1)")
    assert "unset" not in text  # off and n/a rows only with show_all


def test_table_show_all_lists_off_timers() -> None:
    text = render.table(report(), show_all=True)
    assert "stream_idle_timeout" in text and "0s (off)" in text
    assert "listener keepalive: idle 60s, interval 10s, probes 3" in text


def test_document_is_json_and_complete() -> None:
    doc = render.document(report(Keepalive(enabled=False)))
    again = json.loads(json.dumps(doc))
    assert again["cut"] is True
    assert again["balancer"]["kind"] == "aws-nlb"
    assert again["balancer"]["idle_timeout_seconds"] == 350
    paths = {p["name"]: p for p in again["paths"]}
    default = paths["http.8080/httpbin.example.com:80/default"]
    assert default["first"] == {"timer": "aws-nlb idle timeout", "scope": "balancer",
                                "fires_at": 350.0}
    timer = default["timers"][0]
    assert set(timer) >= {"name", "layer", "seconds", "state", "counts", "source", "verdict",
                          "fires_at", "first", "fix"}
    assert [r["name"] for r in again["risks"]] == ["listener drain", "termination drain"]


def test_nothing_fires() -> None:
    quiet = analysis.analyze(read_golden("istio-gateway"), balancers.detect(NLB_SERVICE),
                             Profile(600, silence=30))
    default = next(p for p in render.document(quiet)["paths"] if p["name"].endswith("/default"))
    assert default["first"] is None
