"""The package bench's baseline worker: the bare generated stubs, no package — lease as
many jobs as there are free threads, complete each with its result. What the package's
Worker does per job beyond this (its context, heartbeat bookkeeping, conversions) is its
overhead.

    python raw_worker.py ADDRESS CONCURRENCY
"""
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.protobuf import json_format, struct_pb2

from jobstream.v1 import workers_pb2, workers_pb2_grpc


def main():
    address, concurrency = sys.argv[1], int(sys.argv[2])
    stub = workers_pb2_grpc.WorkerServiceStub(grpc.insecure_channel(address))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    slots = threading.Semaphore(concurrency)
    pool = ThreadPoolExecutor(concurrency)

    def run(leased):
        try:
            params = json_format.MessageToDict(leased.job.params)
            result = struct_pb2.Value()
            json_format.ParseDict({"n": params.get("n")}, result)
            stub.CompleteJob(workers_pb2.CompleteJobRequest(lease_id=leased.lease_id, result=result),
                             timeout=30)
        finally:
            slots.release()

    while not stop.is_set():
        slots.acquire()
        free = 1
        while free < concurrency and slots.acquire(blocking=False):
            free += 1
        request = workers_pb2.LeaseJobRequest(types=["noop"], worker_id="bench-raw", max_jobs=free)
        request.wait.FromSeconds(1)
        jobs = stub.LeaseJob(request, timeout=30).jobs
        for _ in range(free - len(jobs)):
            slots.release()
        for leased in jobs:
            pool.submit(run, leased)


if __name__ == "__main__":
    main()
