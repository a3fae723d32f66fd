"""PACS retrieve speed: ClinLens streamed retrieve vs plain sequential dicomweb-client, same run.

    python bench/bench_pacs.py [--instances 300] [--size 512] [--repeats 3]

Starts a local Orthanc (Debian packages orthanc, orthanc-dicomweb) on loopback with a temporary
configuration, seeds it with a generated CT series, then times, alternating the methods:

  * clinlens: ``engine.pacs.retrieve_series`` over DICOMweb into an empty on-disk cache (a
    series-level QIDO for the instance count, then WADO-RS of the series, each instance written
    atomically as soon as it is parsed).
    First image = the first instance on disk, opened and its first frame decoded and rendered.
  * series baseline: ``DICOMwebClient.retrieve_series`` (one request; the list arrives when
    the whole answer is in), then each instance written to disk.
  * instance baseline: ``DICOMwebClient.retrieve_instance`` for each instance in turn
    (sequential requests), each written to disk as it arrives.

Both baselines pay for the same first-image decode and write every instance to disk like the
cache does; the instance baseline also lists the instances (QIDO) to know what to ask for. After one
untimed warm-up retrieve, the methods take turns going first; medians of ``--repeats`` runs
are printed with the ratio baseline / clinlens (above 1: ClinLens faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dicomweb_client.api import DICOMwebClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.imaging import initial_window, open_paths, render
from engine.pacs import InstanceCache, connect, retrieve_series, server_from_url
from tests.orthanc import OrthancServer, ct_series


def show_first(path: Path) -> None:
    """What the viewer does for the first image: index the file, decode frame 0, render it."""
    frame = open_paths([str(path)]).stacks[0].frame(0)
    render(frame, initial_window(frame))


def run_clinlens(url: str, study: str, series: str, folder: Path) -> tuple[float, float]:
    start = time.perf_counter()
    first = [0.0]

    def on_instance(path, done, _total):
        if done == 1:
            show_first(path)
            first[0] = time.perf_counter() - start

    with connect(server_from_url(url)) as connection:
        retrieve_series(
            connection,
            InstanceCache(folder, limit_bytes=1 << 40),
            study,
            series,
            on_instance=on_instance,
            use_cache=False,
        )
    return first[0], time.perf_counter() - start


def run_series_baseline(url: str, study: str, series: str, folder: Path) -> tuple[float, float]:
    start = time.perf_counter()
    client = DICOMwebClient(url)
    first = None
    for dataset in client.retrieve_series(study, series):
        path = folder / f"{dataset.SOPInstanceUID}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        if first is None:
            show_first(path)
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


def run_instance_baseline(url: str, study: str, series: str, folder: Path) -> tuple[float, float]:
    start = time.perf_counter()
    client = DICOMwebClient(url)
    found = client.search_for_instances(study, series, fields=["SOPInstanceUID"])
    uids = [item["00080018"]["Value"][0] for item in found]
    first = None
    for uid in uids:
        dataset = client.retrieve_instance(study, series, uid)
        path = folder / f"{uid}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        if first is None:
            show_first(path)
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--size", type=int, default=512, help="rows = columns of each CT slice")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    methods = {
        "clinlens": run_clinlens,
        "series baseline": run_series_baseline,
        "instance baseline": run_instance_baseline,
    }
    with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp, OrthancServer(Path(tmp) / "orthanc") as server:
        slices = ct_series(args.instances, size=args.size, seed=7)
        seeding = time.perf_counter()
        for dataset in slices:
            server.upload(dataset)
        study, series = str(slices[0].StudyInstanceUID), str(slices[0].SeriesInstanceUID)
        megabytes = sum(len(ds.PixelData) for ds in slices) / 1e6
        print(
            f"Orthanc {server.rest('GET', '/system')['Version']}, {args.instances} CT instances "
            f"{args.size}x{args.size} int16 ({megabytes:.0f} MB pixel data), seeded in "
            f"{time.perf_counter() - seeding:.1f} s"
        )
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
        warm = Path(tmp) / "warm-up"
        warm.mkdir()
        run_series_baseline(server.dicomweb_url, study, series, warm)  # untimed: Orthanc reads its files once
        names = list(methods)
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:  # rotate who goes first
                method = methods[name]
                folder = Path(tmp) / f"{name.replace(' ', '-')}-{repeat}"
                folder.mkdir()
                times[name].append(method(server.dicomweb_url, study, series, folder))
        ours_first = statistics.median(t[0] for t in times["clinlens"])
        ours_total = statistics.median(t[1] for t in times["clinlens"])
        print(f"{'method':18} {'first image':>12} {'total':>9} {'first ratio':>12} {'total ratio':>12}")
        for name in methods:
            first = statistics.median(t[0] for t in times[name])
            total = statistics.median(t[1] for t in times[name])
            print(f"{name:18} {first:10.3f} s {total:7.2f} s {first / ours_first:11.2f}x {total / ours_total:11.2f}x")
        fastest = all(statistics.median(t[1] for t in times[n]) >= ours_total for n in methods)
        print(
            f"goal: first image < 1 s ({'met' if ours_first < 1 else 'NOT met'}), total at least as fast as "
            f"both baselines ({'met' if fastest else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
