"""The README's main job, in a short mode: people act through the HTTP API, and it must end
with its rebuild check passing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def count(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the summary"
    return int(found.group(1))


def test_the_demo_plays_a_day_through_topics_and_api_and_its_rebuild_equals_the_live_read_models(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "OMS_DATA_DIR": str(tmp_path)}
    for name in ("OMS_DATABASE_URL", "OMS_KAFKA_BOOTSTRAP"):
        env.pop(name, None)  # the embedded default, exactly as a fresh machine runs it
    result = subprocess.run(
        [sys.executable, "-m", "adapters.driving.cli", "demo", "--orders", "40", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "orders placed: 40" in out
    # People acted over HTTP: requests on both tools, policy refusals as 422 problems, the
    # company's batch held for review, declined by the provider and paid as store credit.
    assert count(r"RMAs requested on the portal (\d+)", out) > 0
    assert count(r"by customer service (\d+);", out) > 0
    assert count(r"POST /v1/returns 422 x(\d+)", out) == sum(
        int(n)
        for n in re.findall(r"[a-z_]+ (\d+)", out.split("refused by policy: ")[1].split("\n")[0])
    )
    assert count(r"held for review: approved (\d+)", out) > 0
    assert count(r"POST /v1/returns/\{ref\}/approve 200 x(\d+)", out) > 0
    assert count(r"failed refunds paid as store credit: (\d+)", out) > 0
    assert count(r"POST /v1/returns/\{ref\}/refund-retry 200 x(\d+)", out) > 0
    assert count(r"POST /v1/blind-returns/\{ref\}/match 200 x(\d+)", out) > 0
    assert count(r"retried POSTs answered with their first result: (\d+)", out) == 1
    # Blind parcels run to their end: placed by the system, inspected first, linked.
    assert re.search(
        r"blind parcel BLR-\w+-SERIAL matched automatically by serial to \S+ as RMA-", out
    )
    assert re.search(
        r"blind parcel BLR-\w+-INSPECTED inspected before its match .* requested once", out
    )
    assert re.search(
        r"blind parcel BLR-\w+-DUPLICATE linked by customer service to RMA-\S+, .*: closed", out
    )
    # Every command recorded the acting key's principal as its events' actor.
    assert count(r"actor: demo-customer-service \d+, demo-portal (\d+)", out) > 0
    assert count(r"actor: demo-customer-service (\d+)", out) > 0
    # The read side answered through the API too.
    assert re.search(
        r"return reasons \(GET /v1/analytics/return-reasons as analytics\): \w+ \d", out
    )
    assert re.search(
        r"expiry: RMA-\S+ \(authorized 40 days ago, never shipped\) expired and RMA-\S+'s"
        r" keep-the-item offer \(ran out 3 days ago\) lapsed by .+ after the dry run listed"
        r" both; accepting the lapsed offer: 409 keep_item_offer_lapsed",
        out,
    ), out[-3000:]
    # The legs journey: the repair centre through the topic, the vendor through the API.
    assert re.search(
        r"repair leg L\d+ of RMA-\S+ \(serial \w+\) sent to REPAIR-LYON as JOB-\w+, repaired"
        r" and back in stock at WH-1 through wms.receipts.v1: stock moved from in_repair to"
        r" available",
        out,
    )
    assert re.search(
        r"vendor leg L\d+ of RMA-\S+ \(serial \w+\) shipped to SoundCo as VRA-\w+ and credited"
        r" 95.00 EUR over HTTP by the warehouse: SoundCo's supplier credits in the costs read"
        r" model now \d+\.\d\d EUR",
        out,
    )
    assert count(r"POST /v1/legs/\{ref\}/\{ref\}/vendor-credited 200 x(\d+)", out) == 1
    # Store counters: a store-method RMA scanned at a counter, settled there and printed;
    # a counter return sent before its order, parked until the order came.
    assert re.search(
        r"store-method RMA RMA-\S+ of \S+ received at counter STORE-9 by its RMA number, "
        r"\w+; receipt: \d settled, \d pending",
        out,
    ), out
    assert re.search(
        r"counter return SR-\w+-EARLY sent before its order EARLY-\w+: parked \(1 message\), "
        r"applied once the order came as RMA-\S+",
        out,
    ), out
    assert "unbalanced refunds: 0" in out
    # One serial's life in one line, read over HTTP, and the counter sale it flags.
    assert re.search(
        r"serial SN\w+LIFE \(GET /v1/serials/\{serial\}\): sold CLIFE1 -> shipped CLIFE1"
        r" -> return requested WEB-\w+-LIFE1 -> rma authorized RMA-[\w-]+ -> received WH-1"
        r" -> inspected WH-1 -> sold CLIFE2 -> shipped CLIFE2 -> sold CWALKIN;"
        r" now with_customer CWALKIN",
        out,
    ), out
    assert re.search(
        r"flagged sale of serial SN\w+LIFE: STO-\w+-LIFE3 to CWALKIN,"
        r" sold while with customer CLIFE2 and not returned",
        out,
    ), out
    # The policy team's question, asked of the day's own history: a 14-day window refuses
    # requests the 30-day one accepted (the demo delivers orders up to 36 days back).
    simulated = re.search(
        r"policy simulation \(rma policy simulate, writes nothing\): .* would have decided"
        r" (\d+) of the (\d+) requests since \S+ otherwise: authorized (\d+) -> (\d+),"
        r" held (\d+) -> (\d+), rejected (\d+) -> (\d+); refunds EUR \S+ -> \S+",
        out,
    )
    assert simulated, out[-3000:]
    changed, requests, auth0, auth1, held0, held1, rej0, rej1 = map(int, simulated.groups())
    assert 0 < changed <= requests
    assert auth0 + held0 + rej0 == auth1 + held1 + rej1 == requests
    assert rej1 > rej0
    assert "rebuild check: a replay of the event store equals the live read models" in out
    assert (tmp_path / "returns-by-reason-and-supplier.html").read_text().count("<rect") > 0
