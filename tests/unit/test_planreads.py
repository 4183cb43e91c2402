"""REST reads beside the Envoy reads (a plan's, doctor's): they really overlap, each is made
once, and a failure surfaces where the command asks for that answer, with nothing written."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kubectl_keepalive.errors import ClusterError, ForbiddenError
from kubectl_keepalive.model import Pod
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_cli import env, ingress, run  # noqa: F401  (env is a fixture)
from tests.unit.test_cli_doctor import NLB, gateway_with_dump, service


class Overlapping(FakeCluster):
    """Each Envoy read waits until the Services have been listed: a plan that made its REST
    reads only after the Envoy reads would wait here until the test fails."""

    def __init__(self) -> None:
        super().__init__(ingress())
        self.services = [service(NLB)]
        self.services_listed = threading.Event()
        self.asked: list[str] = []

    def list_services(self, namespace: str | None) -> list[dict[str, Any]]:
        self.asked.append("list_services")
        self.services_listed.set()
        return super().list_services(namespace)

    def read_admin_all(self, pod: Pod, paths: list[str], timeout: float) -> Any:
        assert self.services_listed.wait(10), "the Services were not listed beside the reads"
        return super().read_admin_all(pod, paths, timeout)


def test_the_rest_reads_overlap_the_envoy_reads_and_are_made_once(
        env: dict[str, str]) -> None:  # noqa: F811
    fake = Overlapping()
    code, _out, err = run(fake, env, "diff")
    assert code == 1, err
    assert err.count("note: using idle=") == 1, err  # the NLB's timeout, said once
    assert fake.asked == ["list_services"]


class DoctorOverlapping(Overlapping):
    def __init__(self) -> None:
        super().__init__()
        self.gateways = [gateway_with_dump()]

    def read_admin(self, pod: Pod, path: str, timeout: float) -> Any:
        assert self.services_listed.wait(10), "the Services were not listed beside the dump"
        return super().read_admin(pod, path, timeout)


def test_doctor_lists_services_while_it_reads_the_dump(env: dict[str, str]) -> None:  # noqa: F811
    fake = DoctorOverlapping()
    code, out, err = run(fake, env, "doctor", "--duration", "10m")
    assert code in (0, 1), err
    assert "Service istio-ingressgateway port 80" in out, out
    assert fake.asked == ["list_services"]


def test_work_beside_hands_back_its_result_or_its_exception() -> None:
    from kubectl_keepalive.usecases import background

    assert background.started(lambda: 42)() == 42

    def fails() -> int:
        raise ForbiddenError("nodes is forbidden")

    with pytest.raises(ForbiddenError, match="nodes is forbidden"):
        background.started(fails)()


class Refusing(FakeCluster):
    def __init__(self, method: str) -> None:
        super().__init__(ingress())
        self.services = [service(NLB)]
        self.method = method

    def list_services(self, namespace: str | None) -> list[dict[str, Any]]:
        if self.method == "list_services":
            raise ForbiddenError('services is forbidden: cannot list resource "services"')
        return super().list_services(namespace)

    def list_pods(self, namespace: str | None, selector: str) -> list[Pod]:
        # Discovery lists by the well-known labels; the selector check by the Deployment's.
        if self.method == "list_pods" and "istio=ingressgateway" in selector:
            raise ClusterError("list pods: the API server answered 500")
        return super().list_pods(namespace, selector)


def test_a_refused_rest_read_fails_the_plan_and_writes_nothing(
        env: dict[str, str]) -> None:  # noqa: F811
    for method, says in (("list_services", "services is forbidden"),
                         ("list_pods", "answered 500")):
        fake = Refusing(method)
        code, _out, err = run(fake, env, "enable", "-y")
        assert code == 3, (method, err)
        assert says in err and "Traceback" not in err, err
        assert fake.writes == [], method
