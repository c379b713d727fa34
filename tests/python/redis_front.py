"""redis-py against two nodes' Redis fronts (plain TCP on loopback).

Usage: python3 redis_front.py PORT1 PORT2. Exits non-zero, with the failed check, on any
difference from what a Redis server would answer.
"""

import sys

import redis
from redis.cluster import RedisCluster


def main() -> None:
    p1, p2 = int(sys.argv[1]), int(sys.argv[2])

    # The handshake: HELLO 3, CLIENT SETINFO (redis-py sends both), SELECT 0.
    r = redis.Redis(host="127.0.0.1", port=p1, protocol=3, client_name="py-test")
    assert r.ping() is True
    assert r.execute_command("SELECT", 0) in (True, b"OK", "OK")
    assert r.client_getname() in (b"py-test", "py-test")
    info = r.client_info()
    assert info["lib-name"].startswith("redis-py"), info

    # A key written through one node's front is read through another's.
    assert r.set("py:shared", "across") is True
    other = redis.Redis(host="127.0.0.1", port=p2)
    assert other.get("py:shared") == b"across"

    # A pipeline without MULTI: answers in order.
    pipe = r.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"py:{i}", str(i))
    for i in range(200):
        pipe.get(f"py:{i}")
    out = pipe.execute()
    assert out[:200] == [True] * 200, out[:5]
    wrong = [(i, v) for i, v in enumerate(out[200:]) if v != str(i).encode()]
    assert not wrong, wrong[:5]
    assert r.mget("py:1", "py:missing", "py:2") == [b"1", None, b"2"]
    assert r.delete("py:1", "py:missing") == 1
    assert r.exists("py:1", "py:2") == 1

    # SCAN through redis-py's cursor loop (it parses the cursor as an integer), on RESP3.
    want = sorted([b"py:shared"] + [f"py:{i}".encode() for i in range(200) if i != 1])
    assert sorted(r.scan_iter(match="py:*", count=50)) == want
    assert other.dbsize() == len(want)

    # Errors a client can tell apart.
    try:
        r.execute_command("LPUSH", "py:list", "x")
        raise AssertionError("LPUSH was accepted")
    except redis.ResponseError as e:
        assert "not supported" in str(e), e

    # A cluster-aware client: the slot map names every node, and keys spread over them.
    rc = RedisCluster(host="127.0.0.1", port=p1)
    nodes = {(n.host, n.port) for n in rc.get_nodes()}
    assert len(nodes) == 3, nodes
    for i in range(100):
        rc.set(f"pc:{i}", str(i))
    for i in range(100):
        assert rc.get(f"pc:{i}") == str(i).encode(), i
    used = {rc.get_node_from_key(f"pc:{i}").port for i in range(100)}
    assert len(used) == 3, used
    print("redis-py: ok")


if __name__ == "__main__":
    main()
