"""How fast does pre-annotation go? Two ratios, each against a baseline measured in the same run.

1. Local model: the same questions in batches of --batch-size through ``ask_batch`` vs one at a
   time (batch size 1), with a tiny random Qwen2-VL built here (greedy, a fixed answer length).
2. Server replicas: two loopback stub OpenAI servers that answer after --latency-ms each (standing
   for vLLM replicas; the stub's answer is fixed text), with --concurrency requests in flight per
   replica vs 1. Goal: >= 5x.
3. Ray (with the cluster extra installed): the same two stub replicas, --ray-images images through
   ``run_preannotation_ray`` on a private local Ray cluster of 1 and then 2 CPUs (one model actor,
   --concurrency requests in flight per replica), against the local dispatcher at the same
   concurrency on the same images: the whole time (each run starts its pipeline; the cluster is
   started before the clock, as a cluster would already be up) and the steady rate (see
   ``bench_ray``). Goal: steady rate >= 1.0x.

    .venv/bin/python bench/bench_annotate.py [--images 24] [--batch-size 8] [--concurrency 8] [--skip-ray]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def write_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (128, 128), dtype=np.uint8)).save(folder / f"img{i:03d}.png")


def timed_run(works, spec, dispatcher, model_id: str) -> tuple[float, int, int]:
    from engine.preannotate import run_preannotation

    began = time.perf_counter()
    stats = run_preannotation(works, spec, dispatcher, model_id=model_id, on_image=lambda outcome: None)
    return time.perf_counter() - began, stats.questions, stats.failed


def bench_local(works, labels, batch_size: int, tokens: int) -> None:
    from engine.clinkd import GenerationSettings, LoadSettings, LocalBackend, load_model
    from engine.preannotate import LocalDispatcher, PreannotateSpec, PreTask
    from tests.engine.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, build_tiny_qwen2vl

    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_qwen2vl(Path(folder) / "tiny")
        backend = LocalBackend(
            load_model(LoadSettings(str(model), min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS))
        )
    spec = PreannotateSpec(PreTask.VG, labels, max_new_tokens=tokens)
    settings = GenerationSettings(max_new_tokens=tokens)
    timed_run(works[:2], spec, LocalDispatcher(backend, settings, batch_size), backend.info.model_id)  # warm-up
    one, questions, _ = timed_run(works, spec, LocalDispatcher(backend, settings, 1), backend.info.model_id)
    batched, _, _ = timed_run(works, spec, LocalDispatcher(backend, settings, batch_size), backend.info.model_id)
    print(f"local tiny Qwen2-VL, {questions} questions, {tokens} new tokens max:")
    print(f"  one at a time:      {one:6.2f} s  ({questions / one:6.1f} questions/s)")
    print(f"  batches of {batch_size:<3d}:     {batched:6.2f} s  ({questions / batched:6.1f} questions/s)")
    print(f"  ratio batched / one at a time: {one / batched:.2f}x")


STUB_SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.engine.openai_stub import OpenAIStub, StubBehaviour
def answer(body):
    time.sleep({latency})
    return "It is at <|box_start|>(100,100),(400,500)<|box_end|>."
with OpenAIStub(StubBehaviour(answer=answer)) as stub:
    print(stub.url, flush=True)
    sys.stdin.read()   # until the benchmark closes our stdin
    print(len(stub.behaviour.requests), flush=True)
"""


@contextlib.contextmanager
def stub_replica(latency_ms: int):
    """A stub server in its own process, like a real replica (it does not share our GIL)."""
    code = STUB_SERVER.format(root=str(ROOT), latency=latency_ms / 1000)
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        answered: list[int] = []
        yield url, answered
        process.stdin.close()
        answered.append(int(process.stdout.readline() or 0))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def bench_servers(works, labels, concurrency: int, latency_ms: int) -> None:
    from engine.clinkd import GenerationSettings, ServerSettings, open_server
    from engine.preannotate import PreannotateSpec, PreTask, ReplicaDispatcher

    spec = PreannotateSpec(PreTask.VG, labels)
    with stub_replica(latency_ms) as (a, a_count), stub_replica(latency_ms) as (b, b_count):
        backends = [open_server(ServerSettings(a)), open_server(ServerSettings(b))]
        settings = GenerationSettings()
        timed_run(works[:2], spec, ReplicaDispatcher(backends, settings, 1), "stub")  # warm-up (imports)
        serial, questions, failed = timed_run(works, spec, ReplicaDispatcher(backends, settings, 1), "stub")
        parallel, _, failed2 = timed_run(works, spec, ReplicaDispatcher(backends, settings, concurrency), "stub")
    ratio = serial / parallel
    print(
        f"two loopback stub replicas (separate processes) answering after {latency_ms} ms, {questions} questions "
        f"per setting (requests answered per replica, all runs: {a_count[0]}/{b_count[0]}; "
        f"failures {failed + failed2}):"
    )
    print(f"  concurrency 1 per replica:  {serial:6.2f} s  ({questions / serial:6.1f} questions/s)")
    print(f"  concurrency {concurrency} per replica:  {parallel:6.2f} s  ({questions / parallel:6.1f} questions/s)")
    print(f"  ratio: {ratio:.2f}x (goal >= 5x: {'met' if ratio >= 5 else 'NOT met'})")


def bench_ray(works, labels, concurrency: int, latency_ms: int) -> None:
    """Ray against the local dispatcher on the same images and replicas. Each Ray run starts its own
    pipeline (decoding workers and a model actor, each importing torch: seconds on a busy machine),
    so besides the whole time the steady rate is measured: the questions of the images that arrive
    after the first outcome, divided by the time from the first outcome to the last. That is the
    rate a large dataset runs at once the pipeline is up."""
    try:
        import ray
    except ImportError:
        print('ray: not installed (pip install ".[cluster]"); skipped')
        return
    from engine.clinkd import GenerationSettings, ServerSettings, open_server
    from engine.cluster import ModelRecipe
    from engine.cluster.session import quiet
    from engine.preannotate import PreannotateSpec, PreTask, ReplicaDispatcher, run_preannotation
    from engine.preannotate.ray_run import run_preannotation_ray

    spec = PreannotateSpec(PreTask.VG, labels)

    def clocked(run) -> tuple[float, int, float]:
        """(whole time, questions, steady questions/s) of one run."""
        arrivals: list[tuple[float, int]] = []
        began = time.perf_counter()
        stats = run(on_image=lambda outcome: arrivals.append((time.perf_counter(), outcome.questions)))
        first, last = arrivals[0][0], arrivals[-1][0]
        later = sum(q for at, q in arrivals if at > first)
        return time.perf_counter() - began, stats.questions, later / (last - first)

    with stub_replica(latency_ms) as (a, _), stub_replica(latency_ms) as (b, _):
        backends = [open_server(ServerSettings(a)), open_server(ServerSettings(b))]
        recipe = ModelRecipe(servers=tuple(x.settings for x in backends), concurrency=concurrency)

        def local(images):
            dispatcher = ReplicaDispatcher(backends, GenerationSettings(), concurrency)
            return functools.partial(run_preannotation, images, spec, dispatcher, model_id="s")

        clocked(local(works[:2]))  # warm-up
        local_all, questions, local_rate = clocked(local(works))
        print(
            f"Ray vs the local dispatcher, two stub replicas (separate processes) answering after {latency_ms} ms, "
            f"{len(works)} images, {questions} questions, concurrency {concurrency} per replica:"
        )
        print(
            f"  local dispatcher:               {local_all:6.2f} s  ({questions / local_all:6.1f} questions/s; "
            f"steady {local_rate:6.1f} questions/s)"
        )
        for cpus in (1, 2):
            quiet(ray)
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
            try:

                def on_ray(images):
                    return functools.partial(run_preannotation_ray, images, spec, recipe, model_id="s")

                clocked(on_ray(works[:4]))  # warm-up: the cluster's first workers import the engine
                ray_all, ray_questions, rate = clocked(on_ray(works))
            finally:
                ray.shutdown()
            print(
                f"  Ray, local cluster of {cpus} CPU(s): {ray_all:6.2f} s  ({ray_questions / ray_all:6.1f} "
                f"questions/s, {local_all / ray_all:.2f}x; steady {rate:6.1f} questions/s, {rate / local_rate:.2f}x, "
                f"goal >= 1.0x: {'met' if rate >= local_rate else 'NOT met'})"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24, help="images, 2 questions each (24)")
    parser.add_argument("--server-images", type=int, default=96, help="images for the server part (96)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16, help="max new tokens per local answer (16)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--ray-images", type=int, default=400, help="images for the Ray part (400)")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    from engine.imaging import open_paths
    from engine.preannotate import ImageWork

    labels = ("left lung", "heart")
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder) / "local", args.images)
        works = [ImageWork.of(stack) for stack in open_paths([str(Path(folder) / "local")]).stacks]
        if not args.skip_local:
            bench_local(works, labels, args.batch_size, args.tokens)
        write_images(Path(folder) / "more", args.server_images)
        more = [ImageWork.of(stack) for stack in open_paths([str(Path(folder) / "more")]).stacks]
        bench_servers(more, labels, args.concurrency, args.latency_ms)
        if not args.skip_ray:
            write_images(Path(folder) / "ray", args.ray_images)
            many = [ImageWork.of(stack) for stack in open_paths([str(Path(folder) / "ray")]).stacks]
            bench_ray(many, labels, args.concurrency, args.latency_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
