"""Caption metrics for region captioning and image analysis, with pycocoevalcap as the papers ran it.

The papers call ``COCOEvalCap.evaluate()`` once per modality: Stanford PTBTokenizer (Java), then
BLEU-1..4, METEOR (Java), ROUGE-L, CIDEr and SPICE (Java plus Stanford CoreNLP 3.6.0, which
pycocoevalcap downloads on first use). We call the same scorers on the same tokenised text, per
group, so the numbers are theirs; only the bookkeeping around them is ours (one tokenizer call and
one METEOR process for all groups, instead of one per modality: the PTB tokenizer works line by
line, so the result is the same).

Without Java the PTB tokenizer, METEOR and SPICE cannot run: BLEU, ROUGE-L and CIDEr are then
computed on a Python approximation of the tokenizer (marked in the result), and METEOR / SPICE are
reported absent with the reason. SPICE is also absent when its CoreNLP jars are missing, because
fetching them needs the network.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CAPTION_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
PTB_JAVA = "Stanford PTBTokenizer (Java), as the papers"
PTB_PYTHON = "Python approximation of the PTB tokenizer (no Java)"

_LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]")
_WORDS = re.compile(r"-lrb-|-rrb-|\w+?(?=n't\b)|n't|'\w+|\w+(?:[-./]\w+)*|[^\w\s]")


@functools.cache
def java_problem() -> str | None:
    """None when a working ``java`` is on PATH, else why not (cached for the process)."""
    java = shutil.which("java")
    if java is None:
        return "needs Java (no 'java' on PATH; install a JRE, e.g. apt-get install default-jre-headless)"
    try:
        subprocess.run([java, "-version"], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        return f"needs a working Java ('java -version' failed: {err})"
    return None


def spice_problem() -> str | None:
    """None when SPICE can run offline, else why not."""
    problem = java_problem()
    if problem is not None:
        return problem
    import pycocoevalcap.spice.get_stanford_models as models

    lib = Path(models.SPICEDIR) / models.SPICELIB
    wanted = [lib / f"{models.JAR}.jar", lib / f"{models.JAR}-models.jar"]
    missing = [p.name for p in wanted if not p.is_file()]
    if missing:
        return (
            f"needs Stanford CoreNLP 3.6.0 ({', '.join(missing)}) in {lib}; pycocoevalcap downloads it on first "
            "use, which needs the network: run get_stanford_models() from pycocoevalcap.spice once online"
        )
    return None


def _python_tokenize(text: str) -> str:
    """Lower-case PTB-like tokens without the punctuation pycocoevalcap drops ("(" becomes -lrb-)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    text = text.lower().replace("(", " -lrb- ").replace(")", " -rrb- ")
    return " ".join(t for t in _WORDS.findall(text) if t not in PUNCTUATIONS)


def _tokenize(captions: Mapping[object, str], java: bool) -> dict[object, list[str]]:
    if not java:
        return {key: [_python_tokenize(text)] for key, text in captions.items()}
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # one caption per line: a caption's own line breaks would shift every later caption
    return PTBTokenizer().tokenize({key: [{"caption": _LINE_BREAKS.sub(" ", text)}] for key, text in captions.items()})


@dataclass(frozen=True)
class CaptionScores:
    scores: dict[str, dict[str, float]]  # group -> metric -> value (only the metrics computed)
    absent: dict[str, str]  # metric -> why it was not computed
    tokenizer: str  # PTB_JAVA or PTB_PYTHON


def score_captions(groups: Mapping[str, Sequence[tuple[str, str]]], *, use_java: bool = True) -> CaptionScores:
    """Score ``(reference, candidate)`` pairs group by group (the papers group by modality).

    ``use_java=False`` skips Java even when installed (faster: METEOR loads for seconds).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    java_issue = java_problem() if use_java else "skipped (--no-java)"
    spice_issue = spice_problem() if use_java else java_issue
    java = java_issue is None
    groups = {name: pairs for name, pairs in groups.items() if pairs}
    captions: dict[object, str] = {}
    for name, pairs in groups.items():
        for i, (reference, candidate) in enumerate(pairs):
            captions[("ref", name, i)] = reference
            captions[("hyp", name, i)] = candidate
    tokens = _tokenize(captions, java)
    meteor = None
    if java:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
    scores: dict[str, dict[str, float]] = {}
    absent: dict[str, str] = {}
    try:
        for name, pairs in groups.items():
            gts = {i: tokens[("ref", name, i)] for i in range(len(pairs))}
            res = {i: tokens[("hyp", name, i)] for i in range(len(pairs))}
            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
            row = {f"Bleu_{n}": float(v) for n, v in enumerate(bleu, 1)}
            if meteor is not None:
                row["METEOR"] = float(meteor.compute_score(gts, res)[0])
            row["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
            row["CIDEr"] = float(Cider().compute_score(gts, res)[0])
            if spice_issue is None:
                try:
                    row["SPICE"] = float(_spice(gts, res))
                except (OSError, subprocess.SubprocessError, ValueError) as err:
                    spice_issue = f"SPICE failed to run ({err})"
            scores[name] = row
    finally:
        if meteor is not None:
            meteor.__del__()  # pycocoevalcap stops its Java process only there
    if not java:
        absent["METEOR"] = java_issue or ""
    if spice_issue is not None:
        absent["SPICE"] = spice_issue
        for row in scores.values():
            row.pop("SPICE", None)
    return CaptionScores(scores=scores, absent=absent, tokenizer=PTB_JAVA if java else PTB_PYTHON)


def _spice(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    from pycocoevalcap.spice.spice import Spice

    return Spice().compute_score(gts, res)[0]
