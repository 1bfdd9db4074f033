"""The benchmarks' one timing loop: warm up, then the mean wall time of ``n`` calls in ms."""
import time


def time_ms(f, n: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e3
