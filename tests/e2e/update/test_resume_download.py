"""A broker restart in the middle of a download: the agent asks only for the chunks it lacks.

The test controller serves the first chunks of v2 and withholds the rest, so the download is
surely half done when the broker is killed. After the broker comes back, every chunk the agent
requests must be one it did not have: chunk 0 is served exactly once and the whole transfer
stays well under two copies of the artifact.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from edgewise_wire import ArtifactRef
from simulator.broker import BrokerProcess
from tests.e2e.update.conftest import Models
from tests.harness.agents import (
    Signer,
    copy_data_dir,
    describe_reports,
    device,
    same_ref,
    serving_version,
)
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]


def chunks_on_disk(part: Path, ref: ArtifactRef) -> set[int]:
    """Indices of the chunks the partial file already holds, verified by their hashes."""
    try:
        data = part.read_bytes()
    except FileNotFoundError:
        return set()
    return {i for i in range(ref.chunk_count)
            if hashlib.sha256(data[i * ref.chunk_size:i * ref.chunk_size + ref.chunk_length(i)])
            .hexdigest() == ref.chunk_sha256[i]}


def test_broker_restart_mid_download_resumes_without_fetching_again(
        fresh_broker: BrokerProcess, signer: Signer, models: Models, v1_data_dir: Path,
        tmp_path: Path) -> None:
    artifact = models.v2
    ref = artifact.manifest.artifact
    first = 3  # chunks served before the broker goes down
    release = threading.Event()
    with device(tmp_path, fresh_broker.address, signer) as (agent, ctl):
        copy_data_dir(v1_data_dir, agent)
        ctl.tamper = lambda index, good, served: (
            good if index < first or release.is_set() else None)
        ctl.serve(artifact)
        ctl.publish_desired(signer.desired(artifact, "dep-v2"))
        agent.start()
        part = agent.data_dir / "download" / f"{artifact.sha256}.part"
        wait_for(lambda: chunks_on_disk(part, ref) >= set(range(first)), 15,
                 lambda: f"the first {first} chunks in {part}")

        fresh_broker.kill()
        assert serving_version(agent, models.rows[:2]) == 1  # no broker, still serving
        fresh_broker.start()
        since = time.monotonic()
        release.set()
        ctl.wait_connected(15)
        ctl.wait_reported(lambda r: r.state == "active" and same_ref(r.active, artifact), 30,
                          "v2 committed after the broker restart", since=since)

        served = ctl.served(artifact.sha256)
        assert served[0] == 1, f"chunk 0 was fetched again: {served}"
        assert all(served[i] == 1 for i in range(first)), served
        assert sum(served.values()) < 2 * ref.chunk_count, served
        asked = [r.ranges for r in ctl.requests(artifact.sha256, since=since)]
        assert asked, "the agent asked for nothing after reconnecting"
        refetched = [rng for ranges in asked for rng in ranges if rng[0] < first]
        assert refetched == [], (f"asked again for chunks it had: {refetched} "
                                 f"(all requests: {asked}; {describe_reports(ctl.reports())})")
        assert serving_version(agent, models.rows[:2]) == 2
