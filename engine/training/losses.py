"""Losses on answer tokens: cross-entropy, ClinKD's pseudo-label KD (forward KL) and the teacher's
confidence margin that orders the curriculum.

What ClinKD publishes (README ``PseudoKDTrainer``): ``loss = (0.5 * kl + ce) / 1.5`` with
``kl = compute_fkl(student_logits, teacher_logits, labels, padding_id=-100, temp=0.5)``, the
teacher vocabulary cut to the student's. ``compute_fkl`` itself is not released; the snippet it
names divides both logit sets by the temperature, takes KL(p_teacher || p_student) per position
and SUMS it over non-padding positions, without shifting labels. Our choices, all settings:

- positions are the answer tokens after the causal shift (logits at t predict the label at t+1),
  the same positions cross-entropy trains on; the unshifted mask is off by one token;
- ``reduction="mean"`` (default) averages KL over answer tokens so alpha weighs two losses of the
  same scale; ``"sum"`` reproduces the snippet (its size then grows with the batch's length);
- no T^2 factor (the snippet has none).

Logits are gathered at answer positions BEFORE any softmax: a 150k vocabulary times a 2k-token
prompt would otherwise cost gigabytes per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.training.encode import IGNORE_INDEX

KD_REDUCTIONS = ("mean", "sum")


@dataclass(frozen=True)
class AnswerTokens:
    """Logits at answer positions (N, V), their target ids (N,), and the batch row of each (N,)."""

    logits: torch.Tensor
    targets: torch.Tensor
    rows: torch.Tensor


def answer_tokens(logits: torch.Tensor, labels: torch.Tensor) -> AnswerTokens:
    """Select the positions whose NEXT label is a target (the causal shift)."""
    shifted_labels = labels[:, 1:]
    keep = shifted_labels != IGNORE_INDEX
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(shifted_labels)
    return AnswerTokens(logits=logits[:, :-1][keep], targets=shifted_labels[keep], rows=rows[keep])


def truncate_vocabulary(teacher_logits: torch.Tensor, student_vocab: int) -> torch.Tensor:
    """Cut the teacher's logits to the student's vocabulary (Qwen2-VL-7B pads to 152064, 2B to 151936)."""
    if teacher_logits.shape[-1] < student_vocab:
        raise ValueError(
            f"the teacher's vocabulary ({teacher_logits.shape[-1]}) is smaller than the student's ({student_vocab}); "
            "distillation needs the same tokenizer"
        )
    return teacher_logits[..., :student_vocab]


def forward_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-position KL(p_teacher || p_student) of temperature-scaled logits (N, V) -> (N,), in float32."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    teacher = truncate_vocabulary(teacher, student.shape[-1])
    student_log = F.log_softmax(student.float() / temperature, dim=-1)
    teacher_log = F.log_softmax(teacher.float() / temperature, dim=-1)
    return (teacher_log.exp() * (teacher_log - student_log)).sum(dim=-1)


@dataclass(frozen=True)
class LossParts:
    """The loss to optimise and its parts (detached), for logging."""

    loss: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor | None
    tokens: int


def clinkd_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    teacher_logits: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
    alpha: float = 0.5,
    temperature: float = 0.5,
    use_ce: bool = True,
    kd_reduction: str = "mean",
) -> LossParts:
    """Cross-entropy on answer tokens, or ClinKD's ``(alpha * KL + CE) / (1 + alpha)`` with a teacher.

    ``sample_weight`` (B,) multiplies every token of its row (the confidence-margin curriculum);
    token means divide by the number of answer tokens. Without ``use_ce`` the loss is the KL alone.
    A batch without answer tokens gives a zero loss that still reaches every trainable weight.
    """
    if kd_reduction not in KD_REDUCTIONS:
        raise ValueError(f"kd_reduction must be one of {KD_REDUCTIONS}, got {kd_reduction!r}")
    student = answer_tokens(student_logits, labels)
    count = int(student.targets.numel())
    if sample_weight is None:
        weights = torch.ones(count, device=student.targets.device)
    else:
        weights = sample_weight.to(student.targets.device, torch.float32)[student.rows]
    denominator = max(count, 1)
    ce_tokens = F.cross_entropy(student.logits.float(), student.targets, reduction="none")
    ce = (weights * ce_tokens).sum() / denominator
    if count == 0:
        ce = ce + student_logits.sum() * 0.0  # keeps the graph connected for DDP and GradScaler
    if teacher_logits is None:
        return LossParts(loss=ce, ce=ce.detach(), kl=None, tokens=count)
    teacher = answer_tokens(teacher_logits, labels).logits
    kl_tokens = forward_kl(student.logits, teacher, temperature)
    kl = (weights * kl_tokens).sum()
    if kd_reduction == "mean":
        kl = kl / denominator
    loss = (alpha * kl + ce) / (1 + alpha) if use_ce else kl
    return LossParts(loss=loss, ce=ce.detach(), kl=kl.detach(), tokens=count)


def confidence_margins(teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample (B,): the teacher's mean top-1 minus top-2 probability over its answer tokens.

    A large margin means the teacher is sure of every answer token: an easy sample. Rows without
    answer tokens get 0.
    """
    tokens = answer_tokens(teacher_logits, labels)
    batch = labels.shape[0]
    if tokens.targets.numel() == 0:
        return torch.zeros(batch)
    top = F.softmax(tokens.logits.float(), dim=-1).topk(2, dim=-1).values
    margin = top[:, 0] - top[:, 1]
    sums = torch.zeros(batch, device=margin.device).index_add_(0, tokens.rows, margin)
    counts = torch.zeros(batch, device=margin.device).index_add_(0, tokens.rows, torch.ones_like(margin))
    return (sums / counts.clamp(min=1)).cpu()
