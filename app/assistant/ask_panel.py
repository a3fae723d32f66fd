"""The Ask panel: questions to ClinKD about the frame on screen, answers streamed, boxes drawn.

The model is shown exactly what the user sees (the frame through the display pipeline in the
current window, as RGB). A selected box becomes the box prompt. The task row chooses what to ask
(a question, where something is, what a box holds…); one primary Ask button beside the question
sends it, and turns into Cancel while an answer streams; a cancelled answer keeps its text but
draws no boxes. Without a model, a one-line banner says so and offers the folder chooser.

Second opinion (the toggle beside Ask, when a second model is configured): the question goes to
both models, as one job on the one worker whose two answers generate at the same time
(app.inference.worker.SecondOpinionJob). The answers stream side by side, the second model's
boxes are dotted and lettered B, and each pair of boxes the two found is shown with its IoU
(engine.grounding.agreement); a box only one model found says so. Either answer's boxes are
accepted (A) and segmented like any answer's.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer, QUrl, Signal
from PySide6.QtGui import QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.annotations.controller import AnnotationController
from app.assistant.answer_overlay import AnswerBox, AnswerOverlay
from app.assistant.conversation import Conversations, Turn
from app.inference.settings import AssistantSettings
from app.inference.worker import AskJob, InferenceService
from app.viewer.state import ViewerState
from app.widgets.missing_model_banner import MissingModelBanner
from app.widgets.research_notice import research_notice
from engine.clinkd import Task, default_question
from engine.files import write_json_atomic
from engine.grounding.agreement import BoxMatch, match_boxes
from engine.imaging import render_rgb

TASK_BUTTONS = (
    (Task.FREE, "Question", "Free question about the image (a selected box is added as the box prompt)"),
    (Task.VG, "Where is…", "Visual grounding: name a structure, get its box"),
    (Task.ROC, "What is here?", "Referring object classification: what is in the selected box"),
    (Task.RC, "Describe region", "Region captioning: describe the selected box"),
    (Task.MIA, "Analyse image", "Whole-image analysis"),
)
PLACEHOLDERS = {Task.FREE: "Ask about this image…", Task.VG: "Structure to find, e.g. left lung"}
PRIMARY_STYLE = (
    "QPushButton { background: #3d6fb6; color: white; font-weight: bold; padding: 4px 18px; }"
    "QPushButton:disabled { background: #2b3a52; color: #8a8f98; }"
)
TASK_STYLE = (
    "QPushButton { background: #2b2d31; border: 1px solid #45474d; border-radius: 3px; padding: 3px 6px; }"
    "QPushButton:hover { border-color: #6b6e75; }"
    "QPushButton:checked { background: #34496a; border-color: #6ea8fe; color: white; }"
)
MISSING_MESSAGE = "No ClinKD model is configured."
MISSING_DETAILS = (
    "Choose the folder of a local checkpoint (ClinKD, or Qwen2-VL-2B/7B-Instruct: see docs/models/weights.md, "
    "“Point ClinLens at your weights”), or set a server in Assistant > Settings."
)
SECOND_CONFIGURED_TIP = (
    "Ask the second model too (Assistant > Settings > Second opinion): both answers side by side, "
    "their boxes paired with their IoU"
)
SECOND_MISSING_TIP = (
    "No second model is configured: fill Assistant > Settings > Second opinion (a checkpoint folder, or a "
    "server URL) to ask two models the same question"
)
LETTERS = {"primary": "A", "second": "B"}
# Streamed text is shown at most this often, both columns of a second opinion together: each
# showing lays out the lines that grew, and one per token (hundreds a second from a small model,
# twice that from two) would keep the GUI thread busy.
STREAM_REDRAW_MS = 50
# Where a running answer's text ends in the rendered chat: found and removed right after the chat
# is set, leaving a cursor there that the streamed text is appended at (_place_streams). A
# private-use character, taken out of every text the chat shows (_escape), so only marks are found.
STREAM_MARK = "\ue000"


class AskPanel(QWidget):
    # Emitted on the GUI thread (worker signals arrive queued): safe to wait on, unlike the
    # worker's own signals, whose direct Python callbacks would run in the worker thread.
    answer_updated = Signal(int)  # job id: more text streamed in
    answer_finished = Signal(int)  # job id (done, cancelled or failed)
    # "Segment" beside an answer box: (frame, (x1, y1, x2, y2) in image pixels, phrase). A plain
    # signal because the segmenter is a sibling capability: the main window connects the two.
    segment_requested = Signal(int, object, str)
    report_requested = Signal(int, str, object)  # frame, answer text, its boxes ((x1, y1, x2, y2), ...)

    def __init__(
        self,
        state: ViewerState,
        annotations: AnnotationController,
        service: InferenceService,
        overlay: AnswerOverlay,
        settings: Callable[[], AssistantSettings],
        choose_model: Callable[[], None],
        parent=None,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.annotations = annotations
        self.service = service
        self.overlay = overlay
        self.settings = settings
        self.conversations = Conversations()
        self.task = Task.FREE
        self.running_jobs: list[int] = []  # the answer streaming, or the two of a second opinion
        self.notice = research_notice()
        self.missing = MissingModelBanner(MISSING_MESSAGE, "Choose model folder…", MISSING_DETAILS)
        self.missing.action.connect(choose_model)
        self.choose_button = self.missing.button
        self.task_group = QButtonGroup(self)
        task_row = QHBoxLayout()
        task_row.setSpacing(2)
        task_label = QLabel("Task")
        task_label.setToolTip("What to ask; the Ask button sends it")
        task_row.addWidget(task_label)
        for task, text, tip in TASK_BUTTONS:
            button = QPushButton(text)
            button.setCheckable(True)
            button.setStyleSheet(TASK_STYLE)  # the chosen task must read as chosen
            button.setToolTip(tip)
            button.setChecked(task is Task.FREE)
            self.task_group.addButton(button)
            button.clicked.connect(lambda _=False, t=task: self.set_task(t))
            task_row.addWidget(button)
        self.question = QLineEdit()
        self.question.setPlaceholderText(PLACEHOLDERS[Task.FREE])
        self.question.setClearButtonEnabled(True)
        self.box_label = QLabel()
        self.box_label.setStyleSheet("color: #8a8f98;")
        self.history_label = QLabel()
        self.history_label.setWordWrap(True)
        self.history_label.setStyleSheet("color: #8a8f98;")
        self.ask_button = QPushButton("Ask")
        self.ask_button.setDefault(True)
        self.ask_button.setStyleSheet(PRIMARY_STYLE)
        self.ask_button.setToolTip("Send the question for the chosen task (Enter); Cancel while an answer streams")
        self.second_button = QPushButton("Second opinion")
        self.second_button.setCheckable(True)
        self.second_button.setStyleSheet(TASK_STYLE)  # on reads as on, like the chosen task
        self.regenerate_button = QPushButton("Regenerate")
        self.new_button = QPushButton("New conversation")
        self.new_button.setToolTip("The next question starts fresh: no earlier turns are sent with it")
        self.clear_button = QPushButton("Clear")
        self.export_button = QPushButton("Export…")
        self.accept_button = QPushButton("Accept box (A)")
        self.accept_button.setToolTip("Add the highlighted answer box to the annotations (undoable)")
        self.report_button = QPushButton("Add to report")
        self.report_button.setToolTip("Put the last answer into the study's report as a finding to review")
        self.chat = QTextBrowser()
        self.chat.setOpenLinks(False)
        self.chat.setPlaceholderText("Answers appear here. Hover a box link to find it on the image.")
        question_row = QHBoxLayout()
        question_row.addWidget(self.question, 1)
        question_row.addWidget(self.second_button)
        question_row.addWidget(self.ask_button)
        buttons = QHBoxLayout()
        for button in (self.regenerate_button, self.new_button, self.clear_button, self.export_button):
            button.setFlat(True)  # secondary: the conversation, not the question
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.missing)
        layout.addLayout(task_row)
        layout.addLayout(question_row)
        layout.addWidget(self.box_label)
        layout.addWidget(self.history_label)
        layout.addLayout(buttons)
        layout.addWidget(self.chat, 1)
        answer_row = QHBoxLayout()
        answer_row.addWidget(self.accept_button, 1)
        answer_row.addWidget(self.report_button)
        layout.addLayout(answer_row)
        layout.addWidget(self.notice)

        self.question.returnPressed.connect(self.ask_or_cancel)
        self.ask_button.clicked.connect(self.ask_or_cancel)
        self.regenerate_button.clicked.connect(self.regenerate)
        self.new_button.clicked.connect(self.new_conversation)
        self.clear_button.clicked.connect(self.clear)
        self.report_button.clicked.connect(self.add_last_answer_to_report)
        self.export_button.clicked.connect(self._choose_export)
        self.chat.highlighted.connect(self._hovered)
        self.chat.anchorClicked.connect(self._clicked)
        self._pending: dict[int, str] = {}  # job id -> text streamed in and not shown yet
        self._stream_at: dict[int, tuple[QTextCursor, QTextCharFormat]] = {}  # job id -> where its text grows
        self._marked: list[int] = []  # running answers' job ids in the order the chat marks them
        self._stream_timer = QTimer(self)
        self._stream_timer.setSingleShot(True)
        self._stream_timer.setInterval(STREAM_REDRAW_MS)
        self._stream_timer.timeout.connect(self._show_streamed)
        worker = service.worker
        worker.partial_text.connect(self._on_partial)
        worker.result.connect(self._on_result)
        worker.cancelled.connect(self._on_cancelled)
        worker.error.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        annotations.selection_changed.connect(self._update_box_label)
        annotations.changed.connect(lambda _event: self._update_box_label())  # undo can remove the selected box
        annotations.current_image_changed.connect(self.refresh)
        state.frame_changed.connect(lambda _i: (self._update_box_label(), self._update_buttons()))
        self.refresh_settings()
        self.refresh()

    # ----- state
    @property
    def running_job(self) -> int | None:
        """The job streaming now (a second opinion's first answer while either is streaming)."""
        return self.running_jobs[0] if self.running_jobs else None

    @property
    def second_opinion(self) -> bool:
        """The next question goes to both models."""
        return self.second_button.isChecked() and self.settings().second_configured

    @property
    def image_key(self) -> str | None:
        return self.state.stack.key if self.state.stack else None

    def refresh_settings(self) -> None:
        settings = self.settings()
        self.missing.set_missing(not settings.clinkd_configured)
        self.second_button.setToolTip(SECOND_CONFIGURED_TIP if settings.second_configured else SECOND_MISSING_TIP)
        if not settings.second_configured:
            self.second_button.setChecked(False)
        self._update_buttons()

    def set_task(self, task: Task) -> None:
        self.task = task
        self.question.setText(default_question(task))
        self.question.setPlaceholderText(PLACEHOLDERS.get(task, ""))
        for button, (button_task, _text, _tip) in zip(self.task_group.buttons(), TASK_BUTTONS, strict=True):
            button.setChecked(button_task is task)
        self._update_box_label()

    def selected_box(self) -> tuple[float, float, float, float] | None:
        boxes = [b for b in self.annotations.boxes(self.state.frame_index) if b.id in self.annotations.selected]
        return boxes[0].rect if boxes else None

    def _update_box_label(self) -> None:
        box = self.selected_box()
        if box is not None:
            self.box_label.setText("Box prompt: ({:.0f}, {:.0f}) – ({:.0f}, {:.0f}) px".format(*box))
        elif self.task.needs_box:
            self.box_label.setText("Select or draw a box (B) for this task.")
        else:
            self.box_label.setText("No box prompt (select a box to add one).")

    def _update_buttons(self) -> None:
        running = self.running_job is not None
        configured = self.settings().clinkd_configured
        self.ask_button.setText("Cancel" if running else "Ask")
        self.ask_button.setEnabled(running or (configured and self.state.frame is not None))
        has_turns = bool(self.image_key and self.conversations.turns(self.image_key))
        self.regenerate_button.setEnabled(not running and configured and has_turns)
        self.new_button.setEnabled(not running and bool(self.history()))
        self.clear_button.setEnabled(not running and has_turns)
        self.export_button.setEnabled(has_turns)
        self.accept_button.setEnabled(self.overlay.highlighted_box() is not None)
        self.second_button.setEnabled(not running and configured and self.settings().second_configured)
        self.report_button.setEnabled(self._last_answer() is not None)

    def _last_answer(self):
        """The newest finished answer of this image (the one "Add to report" takes), or None."""
        turns = self.conversations.turns(self.image_key) if self.image_key else []
        return next((t for t in reversed(turns) if t.status == "done" and t.answer.strip()), None)

    def add_last_answer_to_report(self) -> None:
        """Hand the last answer (text and boxes, on its frame) to the report; the window wires it."""
        turn = self._last_answer()
        if turn is not None:
            boxes = tuple((b.x1, b.y1, b.x2, b.y2) for b in turn.boxes)
            self.report_requested.emit(turn.frame, turn.answer.strip(), boxes)

    # ----- asking
    def ask_or_cancel(self) -> None:
        if self.running_jobs:
            for job_id in self.running_jobs:
                self.service.cancel(job_id)
            return
        self.ask(self.question.text(), self.task, self.selected_box())

    def history(self) -> tuple:
        """The earlier turns the next question would carry (this conversation, this frame)."""
        if self.image_key is None:
            return ()
        return self.conversations.history(self.image_key, self.state.frame_index)

    def _update_history_label(self) -> None:
        turns = self.conversations.turns(self.image_key) if self.image_key else []
        last = next((t for t in reversed(turns) if t.status == "done"), None)
        n = len(self.history())
        if n:
            text = (
                f"Follow-up: {n} earlier turn{'s' if n != 1 else ''} of this conversation "
                f"go{'' if n != 1 else 'es'} with the next question, within the history budget "
                f"({self.settings().history_tokens} tokens; the oldest are left out beyond it)."
            )
        elif turns:
            text = "New conversation: the next question is sent without earlier turns."
        else:
            text = ""
        if last is not None and last.history_dropped and turns.index(last) >= self.conversations.start(self.image_key):
            text += (
                f" The last answer was given without the {last.history_dropped} oldest turn(s): they did not fit "
                f"the history budget ({self.settings().history_tokens} tokens)."
            )
        self.history_label.setText(text)
        self.history_label.setVisible(bool(text))

    def new_conversation(self) -> None:
        if self.image_key and self.running_job is None:
            self.conversations.start_new(self.image_key)
            self.refresh()

    def ask(
        self, question: str, task: Task, box, history: tuple | None = None, second: bool | None = None
    ) -> int | None:
        """Send a question (to both models with ``second``, by default the toggle); the first job's id."""
        frame, key = self.state.shown_frame(), self.image_key
        if frame is None or key is None or self.running_job is not None:
            return None
        if task.needs_box and box is None:
            self.box_label.setText("Select or draw a box (B) first: this task asks about a region.")
            return None
        if task is Task.VG and not question.strip():
            self.question.setFocus()
            return None
        settings = self.settings()
        second = self.second_opinion if second is None else second and settings.second_configured
        image = render_rgb(frame, self.state.window, invert=self.state.invert)
        history = self.history() if history is None else history
        turns = self.conversations.turns(key)
        first = len(turns)
        jobs = []
        for slot in ("primary", "second") if second else ("primary",):
            turn = Turn(
                question=question.strip(),
                task=task.value,
                box=box,
                frame=self.state.frame_index,
                window=self.state.window,
                model=slot,
                model_name=model_name(settings, slot),
                second_of=first if slot == "second" else None,
            )
            jobs.append(
                AskJob(
                    image=image,
                    question=turn.question,
                    task=task.value,
                    box=box,
                    image_key=key,
                    frame=turn.frame,
                    window=turn.window,
                    settings=settings,
                    history=history,  # the same question in the same context: a fair second opinion
                    model=slot,
                )
            )
            turns.append(turn)
        ids = self.service.submit_pair(*jobs) if second else (self.service.submit(jobs[0]),)
        for turn, job_id in zip(turns[first:], ids, strict=True):
            turn.job_id = job_id
        self.running_jobs.extend(ids)
        self.refresh()
        return ids[0]

    def regenerate(self) -> None:
        turns = self.conversations.turns(self.image_key) if self.image_key else []
        if turns:
            index = turns[-1].second_of if turns[-1].second_of is not None else len(turns) - 1
            last = turns[index]
            history = self.conversations.history(self.image_key, last.frame, before=index)
            self.ask(last.question, Task(last.task), last.box, history, second=turns[-1].second_of is not None)

    def clear(self) -> None:
        if self.image_key and self.running_job is None:
            self.conversations.clear(self.image_key)
            self.refresh()

    # ----- worker signals
    def _on_partial(self, job_id: int, text: str) -> None:
        turn = self.conversations.find(job_id)
        if turn is not None:
            turn.streamed += text
            self._pending[job_id] = self._pending.get(job_id, "") + text
            if not self._stream_timer.isActive():
                self._stream_timer.start()

    def _show_streamed(self) -> None:
        """Append what streamed in since the last showing to each running answer, in place.

        Why not re-set the chat: setHtml parses and lays out the whole conversation, which grows
        with every answer (about 13 ms a showing after seven second opinions, 120 ms at worst on
        the 2-core machine); an insertion lays out only the lines that grew. An answer not on
        screen (another image is shown) keeps its text for when its conversation is shown again.
        """
        pending, self._pending = self._pending, {}
        for job_id, text in pending.items():
            place = self._stream_at.get(job_id)
            if place is not None:
                cursor, form = place
                cursor.insertText(" ".join(text.split("\n")), form)  # as the chat's HTML shows a line break
        self.chat.verticalScrollBar().setValue(self.chat.verticalScrollBar().maximum())
        for job_id in pending:
            self.answer_updated.emit(job_id)

    def _on_result(self, job_id: int, result) -> None:
        turn = self.conversations.find(job_id)
        if turn is not None:
            turn.result, turn.status = result, "done"
            turn.history_sent, turn.history_dropped = result.history_turns, result.history_dropped

    def _on_cancelled(self, job_id: int) -> None:
        turn = self.conversations.find(job_id)
        if turn is not None:
            turn.status = "cancelled"

    def _on_error(self, job_id: int, message: str) -> None:
        turn = self.conversations.find(job_id)
        if turn is not None:
            turn.status, turn.error = "error", message

    def _on_finished(self, job_id: int) -> None:
        if job_id in self.running_jobs:
            self.running_jobs.remove(job_id)
            self.refresh()  # a second opinion: the first answer's boxes are drawn while the other streams
            if not self.running_jobs:
                first = self.conversations.find(job_id)
                turns = self.conversations.turns(self.image_key) if self.image_key else []
                if first is not None and first.second_of is not None and first.second_of < len(turns):
                    job_id = turns[first.second_of].job_id or job_id
                self.answer_finished.emit(job_id)

    # ----- view
    def refresh(self) -> None:
        self._stream_timer.stop()  # everything streamed so far is shown now
        self._render_chat()
        self.overlay.show(self.answer_boxes())
        self._update_box_label()
        self._update_history_label()
        self._update_buttons()

    def answer_boxes(self) -> list[AnswerBox]:
        turns = self.conversations.turns(self.image_key) if self.image_key else []
        pairs = self.pairs()
        firsts = {turn.second_of for turn in turns if turn.second_of is not None}
        out = []
        for t, turn in enumerate(turns):
            pair = pairs.get(t)
            ious = {p.second: p.iou for p in pair.pairs} if pair is not None else {}
            for i, b in enumerate(turn.boxes):
                caption = ""
                if turn.model == "second" or t in firsts:
                    caption = f"{LETTERS[turn.model]} · {b.phrase or 'answer'}"
                    caption += f" · IoU {ious[i]:.2f}" if i in ious else ""
                out.append(
                    AnswerBox(t, i, b.x1, b.y1, b.x2, b.y2, b.phrase or "", turn.frame, caption, turn.model == "second")
                )
        return out

    def pairs(self) -> dict[int, BoxMatch]:
        """Second opinions answered: the second turn's index -> its boxes matched with the first's."""
        turns = self.conversations.turns(self.image_key) if self.image_key else []
        return {
            t: match_boxes([b.pixels for b in turns[turn.second_of].boxes], [b.pixels for b in turn.boxes])
            for t, turn in enumerate(turns)
            if turn.second_of is not None and turn.second_of < len(turns)
        }

    def _render_chat(self) -> None:
        turns = self.conversations.turns(self.image_key) if self.image_key else []
        start = self.conversations.start(self.image_key) if self.image_key else 0
        pairs = self.pairs()
        self._marked = []
        parts = []
        for t, turn in enumerate(turns):
            if t == start and start:
                parts.append("<p style='color:#8a8f98'>— new conversation: earlier turns are not sent —</p>")
            if turn.model == "second":
                continue  # drawn beside the first model's answer
            ask = _escape(turn.question or default_question(Task(turn.task)))
            where = f" · box ({', '.join(f'{v:.0f}' for v in turn.box)})" if turn.box else ""
            other = next((s for s, pair_turn in enumerate(turns) if pair_turn.second_of == t), None)
            second = " · second opinion" if other is not None else ""
            parts.append(
                f"<p><b>You</b> <span style='color:#8a8f98'>[{turn.task} · frame {turn.frame + 1}"
                f"{where}{second}]</span><br>{ask}</p>"
            )
            if other is None:
                parts.append(f"<p><b>ClinKD</b>{self._answer_html(t, turn)}</p>")
                continue
            columns = "".join(
                f"<td width='50%' valign='top'><b>{LETTERS[u.model]} · {_escape(u.name)}</b>"
                f"{self._answer_html(index, u)}</td>"
                for index, u in ((t, turn), (other, turns[other]))
            )
            parts.append(f"<table width='100%' cellspacing='6'><tr>{columns}</tr></table>")
            parts.append(self._agreement_html(turn, turns[other], pairs.get(other)))
        self._pending = {}  # everything streamed so far is in the turns just rendered
        self.chat.setHtml("".join(parts))
        self._place_streams()
        self.chat.verticalScrollBar().setValue(self.chat.verticalScrollBar().maximum())

    def _place_streams(self) -> None:
        """A cursor where each running answer's text ends (its mark, removed), to stream into."""
        self._stream_at = {}
        document = self.chat.document()
        for job_id in self._marked:
            cursor = document.find(STREAM_MARK)
            if cursor.isNull():
                break
            form = cursor.charFormat()
            cursor.removeSelectedText()
            self._stream_at[job_id] = (cursor, form)
        self._marked = []

    @staticmethod
    def _agreement_html(first: Turn, second: Turn, match: BoxMatch | None) -> str:
        """One line under a second opinion: each pair of boxes with its IoU, and what one model found alone."""
        if match is None or first.status == "running" or second.status == "running":
            return ""
        if not first.boxes and not second.boxes:
            return "<p style='color:#8a8f98'>Agreement: neither answer has a box.</p>"
        items = []
        for p in match.pairs:
            colour = "#7fdc7f" if p.agree else "#ffcf70"
            a, b = first.boxes[p.first], second.boxes[p.second]
            items.append(
                f"<span style='color:{colour}'>{_escape(a.phrase or 'box')} ↔ {_escape(b.phrase or 'box')}"
                f": IoU {p.iou:.2f}{'' if p.agree else ' (disagree)'}</span>"
            )
        for letter, turn, alone in (("A", first, match.only_first), ("B", second, match.only_second)):
            items += [
                f"<span style='color:#ffcf70'>{_escape(turn.boxes[i].phrase or 'box')}: found by {letter} only</span>"
                for i in alone
            ]
        return "<p><b>Agreement</b> · " + " · ".join(items) + "</p>"

    def _answer_html(self, t: int, turn: Turn) -> str:
        """One answer: its status, text, box links (hover, Segment) and timings."""
        answer = _escape(turn.answer)
        status = {
            "running": " <i>…</i>",
            "cancelled": " <i style='color:#ffcf70'>(cancelled: no boxes)</i>",
            "error": f" <span style='color:#ff8080'>Error: {_escape(turn.error)}</span>",
        }.get(turn.status, "")
        links = "".join(
            f"<br>▣ <a href='box:{t}:{i}'>{_escape(b.phrase or 'box ' + str(i + 1))}</a> "
            f"<span style='color:#8a8f98'>({b.x1:.0f}, {b.y1:.0f}) – ({b.x2:.0f}, {b.y2:.0f})</span>"
            f" · <a href='segment:{t}:{i}'>Segment</a>"
            for i, b in enumerate(turn.boxes)
        )
        mark = ""
        if turn.status == "running" and turn.job_id is not None:
            mark = STREAM_MARK
            self._marked.append(turn.job_id)
        meta = ""
        if turn.result is not None and turn.status == "done":
            r = turn.result
            speed = f" · {r.tokens_per_second:.1f} tok/s" if r.tokens_per_second else ""
            sent = f" · {turn.history_sent} earlier turn(s) sent" if turn.history_sent else ""
            dropped = (
                (
                    f" · <span style='color:#ffcf70'>{turn.history_dropped} oldest turn(s) left out "
                    "(history budget)</span>"
                )
                if turn.history_dropped
                else ""
            )
            meta = (
                f"<br><span style='color:#8a8f98'>{_escape(r.model.model_id)} · {r.new_tokens} tokens"
                f" · {r.total_s:.1f} s{speed}{sent}</span>{dropped}"
            )
        return f"{status}<br>{answer}{mark}{links}{meta}"

    def _hovered(self, url: QUrl) -> None:
        text = url.toString()
        self.overlay.highlight(text.split(":", 1)[1] if text.startswith("box:") else None)
        self._update_buttons()

    def _clicked(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("segment:"):
            self.segment_answer_box(text.split(":", 1)[1])
        else:
            self._hovered(url)

    def segment_answer_box(self, key: str) -> bool:
        """ "Segment" beside an answer box: its rectangle (image pixels, its frame) becomes a mask prompt."""
        box = next((b for b in self.answer_boxes() if b.key == key), None)
        if box is None:
            return False
        self.segment_requested.emit(box.frame, (box.x1, box.y1, box.x2, box.y2), box.phrase)
        return True

    def accept_highlighted(self) -> bool:
        """A: the highlighted answer box becomes a model annotation (one undoable step)."""
        box = self.overlay.highlighted_box()
        if box is None or self.annotations.doc is None:
            return False
        self.annotations.accept_model_box(box.frame, (box.x1, box.y1, box.x2, box.y2), box.phrase)
        return True

    # ----- export
    def _choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export conversation", "conversation.json", "JSON (*.json)")
        if path:
            self.export(path)

    def export(self, path: str) -> None:
        if self.image_key and self.state.stack is not None:
            write_json_atomic(path, self.conversations.export(self.image_key, self.state.stack.paths))


def _escape(text: str) -> str:
    """Text for the chat's HTML, without the stream mark (a model could write that character)."""
    return html.escape(text.replace(STREAM_MARK, ""))


def model_name(settings: AssistantSettings, slot: str) -> str:
    """How an answer is labelled while it streams (its result names the model afterwards)."""
    where = settings.for_model(slot)
    if where.server_url:
        return where.server_model or where.server_url
    return Path(where.clinkd_dir).name or "ClinKD"
