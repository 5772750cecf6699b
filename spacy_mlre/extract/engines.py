"""Where the chunks run: in this process, in a local process pool, or on a
Dask `distributed` cluster. Every engine loads the pipeline once per worker
before any work (`start`, which returns what the driver checks), then runs
tasks `(shard, chunk, items)` with a bounded number in flight (the input is
streamed, never held whole) and yields their results as they finish.
"""
import os
import time
from typing import Any, Iterable, Iterator, List, Optional, Tuple

from .inputs import ExtractError
from .worker import ChunkResult, PipelineInfo, Spec, extract_chunk, load_pipeline_info

Task = Tuple[int, int, List[Any]]

ENGINES = ("local", "dask")


class Engine:
    """The interface: start (load everywhere), run (unordered results), close."""

    workers: int = 1

    def start(self, spec: Spec) -> PipelineInfo:
        raise NotImplementedError

    def run(self, tasks: Iterable[Task]) -> Iterator[ChunkResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _first_error(reports: Iterable[Tuple[Optional[PipelineInfo], Optional[str]]]) -> PipelineInfo:
    """The pipeline info every worker reported, or the first worker's error as ExtractError."""
    infos = []
    for info, error in reports:
        if error is not None:
            raise ExtractError(error)
        infos.append(info)
    return infos[0]


class InProcess(Engine):
    """`--n-process 1`: the chunks run here, one after another."""

    def start(self, spec: Spec) -> PipelineInfo:
        self.spec = spec
        return _first_error([load_pipeline_info(spec)])

    def run(self, tasks: Iterable[Task]) -> Iterator[ChunkResult]:
        for shard, chunk, items in tasks:
            yield extract_chunk(self.spec, shard, chunk, items)


_WORKER_SPEC: Optional[Spec] = None


def _init_worker(spec: Spec, ready: Any) -> None:
    """Pool initializer: load the pipeline once and say whether it worked (an
    initializer that raised would leave the pool broken without the message)."""
    global _WORKER_SPEC
    _WORKER_SPEC = spec
    ready.put(load_pipeline_info(spec))


def _pool_task(shard: int, chunk: int, items: List[Any]) -> ChunkResult:
    assert _WORKER_SPEC is not None
    return extract_chunk(_WORKER_SPEC, shard, chunk, items)


def _start_method() -> str:
    """"forkserver" where there is one (Linux): workers fork from a clean server
    process that imported spaCy once, so they start fast and inherit no torch
    threads or locks from this process (plain "fork" could hang in torch);
    "spawn" elsewhere."""
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class ProcessPool(Engine):
    """`--n-process N`: N worker processes, each loading the pipeline once."""

    def __init__(self, n_process: int, start_method: Optional[str] = None) -> None:
        self.workers = n_process
        self.start_method = start_method or _start_method()
        self.pool: Any = None

    def start(self, spec: Spec) -> PipelineInfo:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload([__name__])
        ready = ctx.Queue()
        self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=(spec, ready))
        # the pool starts its processes as tasks arrive: one no-op each starts them all
        started = [self.pool.submit(time.sleep, 0) for _ in range(self.workers)]
        return _first_error(self._report(ready, started) for _ in range(self.workers))

    @staticmethod
    def _report(ready: Any, started: List[Any]) -> Tuple[Optional[PipelineInfo], Optional[str]]:
        """One worker's report; a worker that died before it could report (it
        could not even import this package) breaks the pool: say so, not hang."""
        import queue

        while True:
            try:
                return ready.get(timeout=0.5)
            except queue.Empty:
                broken = next((f.exception() for f in started if f.done() and f.exception()), None)
                if broken is not None:
                    return None, f"A worker process stopped while loading the pipeline: {broken}"

    def run(self, tasks: Iterable[Task]) -> Iterator[ChunkResult]:
        from concurrent.futures import FIRST_COMPLETED, wait

        window = 2 * self.workers
        pending = set()
        tasks = iter(tasks)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < window:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                else:
                    pending.add(self.pool.submit(_pool_task, *task))
            if pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class DaskEngine(Engine):
    """`--engine dask`: chunks as tasks on a `distributed` cluster, the one at
    `scheduler` (tcp://host:8786) or a LocalCluster of `n_process` worker
    processes started and stopped here. Every worker must be able to import
    spacy_mlre and load PIPELINE (a path that exists on each worker, or an
    installed package); only rows come back, the driver writes the shards.
    A worker process loads one pipeline and runs one chunk at a time, so start
    workers with one thread each and one process per core
    (`dask worker tcp://HOST:8786 --nworkers 8 --nthreads 1`)."""

    def __init__(self, n_process: int = 2, scheduler: Optional[str] = None) -> None:
        self.n_process = n_process
        self.scheduler = scheduler
        self.client: Any = None
        self.cluster: Any = None

    def start(self, spec: Spec) -> PipelineInfo:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ExtractError("--engine dask needs dask and distributed: pip install 'spacy-mlre[dask]'.") from None
        self.spec = spec
        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=30)
            except OSError as err:
                raise ExtractError(f"Cannot reach the Dask scheduler at {self.scheduler}: {err}") from None
        else:
            self.cluster = LocalCluster(
                n_workers=self.n_process, threads_per_worker=1, processes=True, dashboard_address=None,
            )
            self.client = Client(self.cluster)
        reports = self.client.run(load_pipeline_info, spec)
        if not reports:
            raise ExtractError(f"The Dask cluster at {self.scheduler} has no workers.")
        self.workers = len(reports)
        return _first_error(reports[address] for address in sorted(reports))

    def run(self, tasks: Iterable[Task]) -> Iterator[ChunkResult]:
        from distributed import as_completed

        # a task's round trip through the scheduler takes milliseconds: keep a few queued on every worker
        window = 4 * self.workers
        tasks = iter(tasks)
        submit = lambda task: self.client.submit(extract_chunk, self.spec, *task, pure=False)  # noqa: E731
        first = [submit(task) for task in _take(tasks, window)]
        if not first:
            return
        futures = as_completed(first)
        for future in futures:
            result = future.result()
            future.release()
            for task in _take(tasks, 1):
                futures.add(submit(task))
            yield result

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def _take(tasks: Iterator[Task], n: int) -> List[Task]:
    out = []
    for task in tasks:
        out.append(task)
        if len(out) == n:
            break
    return out


def make_engine(engine: str, n_process: int = 1, scheduler: Optional[str] = None) -> Engine:
    if engine not in ENGINES:
        raise ExtractError(f"Unknown engine {engine!r}: expected one of {', '.join(ENGINES)}.")
    if n_process < 1:
        raise ExtractError(f"--n-process must be 1 or more, got {n_process}.")
    if engine == "dask":
        return DaskEngine(n_process, scheduler)
    if scheduler:
        raise ExtractError("--scheduler is for --engine dask.")
    return ProcessPool(n_process) if n_process > 1 else InProcess()


def threads_per_worker(n_process: int) -> int:
    """torch threads for each of n worker processes sharing this machine's cores (0: torch's default)."""
    return max(1, (os.cpu_count() or 1) // n_process) if n_process > 1 else 0
