"""`flask files check`: every counter against the rows it counts, in both configurations. Drift made
by hand in the database is reported (exit status 1), `--repair` mends it, and a check after the
repair finds none."""

from __future__ import annotations

import json

from sqlalchemy import update

from files_app.models import Bucket, OwnerUsage, Share, db
from tests.helpers import bearer, make_token, put


def check(runner, *args: str):
    return runner.invoke(args=["files", "check", *args])


def test_a_service_without_drift_checks_clean(client, runner):
    put(client, "b", "one.txt", b"x" * 100)
    put(client, "b", "dir/two.txt", b"y" * 50)
    client.delete("/v1/files/b/one.txt")
    result = check(runner)
    assert result.exit_code == 0, result.output
    assert "no drift" in result.stdout


def test_drift_made_by_hand_is_reported_and_repaired(app, client, runner):
    token = make_token(runner, "write")
    for index in range(3):
        assert client.put(f"/v1/files/b/f{index}.txt", data=b"z" * 1000, headers=bearer(token)).status_code == 200
    assert client.put("/v1/files/other/a.txt", data=b"a" * 10, headers=bearer(token)).status_code == 200
    share = client.post("/v1/shares", data=json.dumps({"bucket": "b", "key": "f0.txt", "max_downloads": 2}),
                        headers=bearer(token))
    assert share.status_code == 201, share.get_json()
    with app.app_context():  # what the issue saw: counters moved twice for one change, and negative
        db.session.execute(update(Bucket).where(Bucket.name == "b").values(object_count=-67, total_bytes=-3_851_200))
        db.session.execute(update(OwnerUsage).values(bytes=-1_600_000))
        db.session.execute(update(Share).values(downloads=-1))
        db.session.commit()

    result = check(runner)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert "bucket b: files is -67, its rows say 3 (off by -70)" in lines
    assert "bucket b: bytes is -3851200, its rows say 3000 (off by -3854200)" in lines
    owner_lines = [line for line in lines if line.startswith("owner token:")]
    assert len(owner_lines) == 1 and "bytes is -1600000, its rows say 3010 (off by -1603010)" in owner_lines[0], lines
    assert any(line.startswith("share ") and "downloads" in line and "is -1" in line for line in lines), lines
    assert not any("bucket other" in line for line in lines)  # only what drifted
    assert "4 differences" in result.stdout

    repaired = check(runner, "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "repaired 4 counters" in repaired.stdout
    again = check(runner)
    assert again.exit_code == 0, again.output
    assert "no drift" in again.stdout
    bucket = client.get("/v1/files", headers=bearer(token)).get_json()["data"]
    assert {(entry["name"], entry["files"], entry["bytes"]) for entry in bucket} == {("b", 3, 3000), ("other", 1, 10)}


def test_a_counter_for_an_owner_with_no_files_left_is_drift(app, client, runner):
    put(client, "b", "a.txt", b"a" * 10)
    with app.app_context():
        db.session.add(OwnerUsage(owner="user:999", files=2, bytes=20))
        db.session.commit()
    result = check(runner)
    assert result.exit_code == 1
    assert "owner user:999: files is 2, its rows say 0 (off by +2)" in result.stdout
    assert check(runner, "--repair").exit_code == 0
    assert check(runner).exit_code == 0
    with app.app_context():
        assert db.session.get(OwnerUsage, "user:999") is None
