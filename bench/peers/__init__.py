"""Peers for the end-to-end benchmark (``bench.e2e``): each reads the same pre-produced topics in
its own consumer group and commits offsets, so the harness measures them all the same way.

Configuration from the environment (set by ``bench.e2e.peer_consumer``): ``BENCH_BOOTSTRAP``,
``BENCH_GROUP``, ``BENCH_TOPICS`` (comma-separated: calls, sms, recharges), ``BENCH_PARTITIONS``,
``BENCH_DATA_DIR``, ``BENCH_WEB_PORT``.
"""
