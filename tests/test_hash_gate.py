"""Bounded password hashing with priority (services/platform/hashing.py): the gate itself with real
threads, and its answers over HTTP (503 busy with Retry-After, the same for registered and
unknown emails)."""

from __future__ import annotations

import threading
import time

import pytest

from authsvc import errors
from authsvc.services.platform.hashing import KNOWN, HashGate, Standing, failing, returning, stranger
from tests.support.flows import new_email, new_phone, register

JOIN = 5.0


def _occupy(gate: HashGate, *, known: bool = True) -> tuple[threading.Event, threading.Thread]:
    """A thread that holds one slot of ``gate`` until the returned event is set."""
    release, holding = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.slot(known=known):
            holding.set()
            release.wait(JOIN)

    t = threading.Thread(target=hold)
    t.start()
    assert holding.wait(JOIN)
    return release, t


def _teach_cost(gate: HashGate, seconds: float) -> None:
    with gate.slot(known=True):
        time.sleep(seconds)


def _wait_for(cond, timeout: float = JOIN) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.002)


def test_unknown_device_is_shed_at_once_when_the_expected_wait_exceeds_the_budget():
    gate = HashGate(1, budget=0.05, known_budget=5.0)
    _teach_cost(gate, 0.12)  # one computation now costs ~120 ms > the 50 ms budget
    release, holder = _occupy(gate)
    try:
        t = time.monotonic()
        with pytest.raises(errors.Busy) as exc:
            with gate.slot(known=False):
                pass
        assert time.monotonic() - t < 0.04  # refused before waiting out the budget
        assert exc.value.status == 503 and exc.value.code == "busy"
        assert int(exc.value.headers["Retry-After"]) >= 1
    finally:
        release.set()
        holder.join(JOIN)
    with gate.slot(known=False):  # free again: served
        pass


def test_known_device_waits_when_an_unknown_one_is_shed():
    gate = HashGate(1, budget=0.05, known_budget=5.0)
    _teach_cost(gate, 0.12)
    release, holder = _occupy(gate)
    served = []

    def known() -> None:
        with gate.slot(known=True):
            served.append("known")

    t = threading.Thread(target=known)
    t.start()
    _wait_for(lambda: gate.state()["known_waiting"] == 1)
    with pytest.raises(errors.Busy):
        with gate.slot(known=False):
            pass
    release.set()
    t.join(JOIN)
    holder.join(JOIN)
    assert served == ["known"]


def test_known_devices_go_before_unknown_ones_already_waiting():
    gate = HashGate(1, budget=5.0, known_budget=5.0)
    release, holder = _occupy(gate)
    order: list[str] = []

    def enter(label: str, known: bool) -> None:
        with gate.slot(known=known):
            order.append(label)

    threads = []
    for label, known in (("u1", False), ("u2", False), ("k1", True)):
        threads.append(threading.Thread(target=enter, args=(label, known)))
        threads[-1].start()
        expected = {"u1": (0, 1), "u2": (0, 2), "k1": (1, 2)}[label]
        _wait_for(lambda e=expected: (gate.state()["known_waiting"], gate.state()["unknown_waiting"]) == e)
    release.set()
    for t in threads:
        t.join(JOIN)
    holder.join(JOIN)
    assert order == ["k1", "u1", "u2"]


def test_an_unknown_device_that_waited_its_budget_is_shed():
    gate = HashGate(1, budget=0.08, known_budget=5.0)  # no cost measured yet: admitted to wait
    release, holder = _occupy(gate)
    try:
        t = time.monotonic()
        with pytest.raises(errors.Busy):
            with gate.slot(known=False):
                pass
        waited = time.monotonic() - t
        assert 0.07 <= waited < 1.0
        assert gate.state() == {"running": 1, "known_waiting": 0, "unknown_waiting": 0}
    finally:
        release.set()
        holder.join(JOIN)


def test_never_more_computations_at_once_than_slots():
    gate = HashGate(2, budget=5.0, known_budget=5.0)
    lock = threading.Lock()
    now = peak = 0

    def work(i: int) -> None:
        nonlocal now, peak
        with gate.slot(known=i % 3 == 0):
            with lock:
                now += 1
                peak = max(peak, now)
            time.sleep(0.01)
            with lock:
                now -= 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert peak == 2
    assert gate.state() == {"running": 0, "known_waiting": 0, "unknown_waiting": 0}


def test_shed_requests_are_counted_by_standing():
    seen: list[Standing] = []
    gate = HashGate(1, budget=0.01, known_budget=0.01, on_shed=seen.append)
    release, holder = _occupy(gate)
    try:
        for known in (False, True):
            with pytest.raises(errors.Busy):
                with gate.slot(known=known):
                    pass
    finally:
        release.set()
        holder.join(JOIN)
    assert [s.name for s in seen] == ["stranger", "known"]


# --------------------------------------------------------------------------- over HTTP
@pytest.fixture
def busy_app(make_app, settings):
    return make_app(settings.replace(hash_concurrency=1, hash_queue_budget=0.05, rate_limits_enabled=False))


def test_saturated_login_answers_503_busy_alike_for_registered_and_unknown_emails(busy_app, twilio, smtp):
    client = busy_app.test_client()
    acct = register(client, twilio, smtp)
    gate = busy_app.extensions["authsvc"].hasher.gate
    release, holder = _occupy(gate)
    try:
        answers = []
        for email in (acct["email"], new_email()):
            r = client.post("/v1/login", json={"email": email, "password": acct["password"]})
            answers.append((r.status_code, r.get_json()["code"], r.headers.get("Retry-After"), sorted(r.get_json())))
        reg = client.post("/v1/registrations", json={"email": new_email(), "phone": new_phone(),
                                                      "password": acct["password"]})
    finally:
        release.set()
        holder.join(JOIN)
    assert answers[0] == answers[1]
    status, code, retry_after, _ = answers[0]
    assert (status, code) == (503, "busy") and int(retry_after) >= 1
    assert reg.status_code == 503 and reg.get_json()["code"] == "busy"
    # Free again: the same login goes through.
    r = client.post("/v1/login", json={"email": acct["email"], "password": acct["password"]})
    assert r.status_code == 200, r.get_json()


def test_known_device_login_is_served_while_unknown_ones_are_shed(busy_app, twilio, smtp):
    client = busy_app.test_client()
    acct = register(client, twilio, smtp)
    container = busy_app.extensions["authsvc"]
    gate = container.hasher.gate
    _teach_cost(gate, 0.1)  # a hash costs ~100 ms > the 50 ms budget: unknowns are refused at once
    release, holder = _occupy(gate)
    from authsvc.services.core.sessions import RequestInfo

    info = RequestInfo(ip="192.0.2.7", user_agent="test", device_id=None, device_token=acct["device_token"])
    result: list = []
    t = threading.Thread(target=lambda: result.append(
        container.login.password(email=acct["email"], password=acct["password"], info=info)))
    try:
        t.start()
        _wait_for(lambda: gate.state()["known_waiting"] == 1)
        r = client.post("/v1/login", json={"email": acct["email"], "password": acct["password"]})
        assert r.status_code == 503 and r.get_json()["code"] == "busy"
    finally:
        release.set()
        holder.join(JOIN)
    t.join(JOIN)
    assert result and result[0].mfa_token


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    pytest.skip("no /proc")


def test_hashing_memory_is_bounded_and_reused_across_request_threads():
    """argon2's 19 MiB working block: many request threads hashing through the gate keep at
    most ``slots`` blocks resident, and a verify does not fault a fresh block in each time
    (which cost ~4,900 page faults and ~10 ms of kernel CPU per verify)."""
    import resource

    from authsvc.security.passwords import PasswordHasher
    from authsvc.services.platform.hashing import GatedHasher

    hasher = GatedHasher(PasswordHasher(), HashGate(1, budget=60.0, known_budget=60.0))  # production parameters
    stored = hasher.hasher.hash("correct horse battery")
    hasher.verify(stored, "warm-up")  # the hashing thread's block, kept from now on
    before = _rss_kib()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    results: list[bool] = []

    def work() -> None:
        results.append(hasher.verify(stored, "wrong horse battery"))
        results.append(hasher.verify(stored, "correct horse battery"))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN * 4)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    assert sorted(results) == [False] * 6 + [True] * 6
    assert _rss_kib() - before < 19456  # six request threads added less than one block
    assert faults < 12 * 4865 // 10  # a tenth of what 12 freshly mapped 19 MiB blocks fault


def test_closing_the_hasher_ends_its_hashing_threads():
    from authsvc.security.passwords import PasswordHasher
    from authsvc.services.platform.hashing import GatedHasher

    hasher = GatedHasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
                         HashGate(2, budget=5.0, known_budget=5.0))
    stored = hasher.hash("correct horse battery", known=True)
    assert hasher.verify(stored, "correct horse battery")
    mine = list(hasher._pool._threads)  # this hasher's hashing threads
    assert mine and all(t.name.startswith("argon2") for t in mine)
    hasher.close()
    for t in mine:
        t.join(JOIN)
    assert not any(t.is_alive() for t in mine)
    assert hasher.verify(stored, "correct horse battery")  # a late call still works (new threads)
    hasher.close()


# ---------------------------------------------------------------------------- standings (issue 16)
def test_a_wave_the_cores_can_hash_within_the_budget_is_never_shed():
    gate = HashGate(1, budget=3.0, known_budget=5.0)
    _teach_cost(gate, 0.02)
    shed, served = [], []

    def one() -> None:
        try:
            with gate.slot(standing=stranger()):
                time.sleep(0.02)
            served.append(1)
        except errors.Busy:
            shed.append(1)

    threads = [threading.Thread(target=one) for _ in range(30)]  # ~0.6 s of work at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not shed and len(served) == 30


def test_failing_traffic_waiting_never_delays_a_stranger_nor_counts_ahead_of_it():
    gate = HashGate(1, budget=0.32, known_budget=5.0, failing_budget=0.32, failing_room=10)
    gate._cost = 0.05  # one computation costs 50 ms
    release, holder = _occupy(gate)
    order: list[str] = []
    waiting = []
    try:
        for _ in range(6):  # 6 x 50 ms queued, and one running: more than a stranger's 320 ms budget
            t = threading.Thread(target=_served_or_shed, args=(gate, failing(3.0), order, "failing"))
            t.start()
            waiting.append(t)
        _wait_for(lambda: gate.state()["unknown_waiting"] == 6)
        t = threading.Thread(target=_served_or_shed, args=(gate, stranger(0.0), order, "stranger"))
        t.start()  # not shed: the failing ones are behind it, whatever their number
        waiting.append(t)
        _wait_for(lambda: gate.state()["unknown_waiting"] == 7)
    finally:
        release.set()
        holder.join(JOIN)
    for t in waiting:
        t.join(JOIN)
    assert order[0] == "stranger"


def test_failing_traffic_holds_at_most_its_room_of_waiting_places():
    gate = HashGate(1, budget=5.0, known_budget=5.0, failing_budget=5.0, failing_room=2)
    release, holder = _occupy(gate)
    order: list[str] = []
    waiting = [threading.Thread(target=_served_or_shed, args=(gate, failing(2.0), order, "failing"))
               for _ in range(2)]
    try:
        for t in waiting:
            t.start()
        _wait_for(lambda: gate.state()["unknown_waiting"] == 2)
        with pytest.raises(errors.Busy):  # a third waits nowhere: refused at once
            with gate.slot(standing=failing(2.0)):
                pass
        stranger_thread = threading.Thread(target=_served_or_shed, args=(gate, stranger(0.0), order, "stranger"))
        stranger_thread.start()  # a stranger still finds a place
        waiting.append(stranger_thread)
        _wait_for(lambda: gate.state()["unknown_waiting"] == 3)
    finally:
        release.set()
        holder.join(JOIN)
    for t in waiting:
        t.join(JOIN)
    assert order == ["stranger", "failing", "failing"]


def test_returning_strangers_go_before_new_ones_and_fewer_failures_before_more():
    gate = HashGate(1, budget=5.0, known_budget=5.0)
    release, holder = _occupy(gate)
    order: list[str] = []
    waiting = []
    try:
        for standing, name in [(stranger(0.6), "stranger 0.6"), (stranger(0.0), "stranger 0"),
                               (returning(0.3), "returning"), (KNOWN, "known")]:
            t = threading.Thread(target=_served_or_shed, args=(gate, standing, order, name))
            t.start()
            waiting.append(t)
            _wait_for(lambda n=len(waiting):  # noqa: B008 - the count when this one started waiting
                      sum(gate.state()[k] for k in ("known_waiting", "unknown_waiting")) == n)
    finally:
        release.set()
        holder.join(JOIN)
    for t in waiting:
        t.join(JOIN)
    assert order == ["known", "returning", "stranger 0", "stranger 0.6"]


def _served_or_shed(gate: HashGate, standing: Standing, order: list[str], name: str) -> None:
    try:
        with gate.slot(standing=standing):
            order.append(name)
            time.sleep(0.01)
    except errors.Busy:
        order.append(f"shed {name}")


# ---------------------------------------------------------------------------- sizing (issue 17)
@pytest.mark.parametrize("files,expected", [
    ({"cpu.max": "50000 100000\n"}, 0.5),  # cgroup v2: half a core
    ({"cpu.max": "max 100000\n"}, None),  # no quota: the cores it may run on
    ({"cpu/cpu.cfs_quota_us": "150000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.5),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
])
def test_hashing_is_sized_from_the_cpu_the_container_may_use(tmp_path, files, expected):
    import os

    from authsvc.config import usable_cpus

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    cores = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == (min(cores, expected) if expected else cores)
