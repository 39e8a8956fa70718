"""The pipeline panel's widgets, bound to `PipelineModel`: the pack picker, the prompts and
the settings. Names come from the runner (read-only lists, never typed); a field the model
refuses is marked in red with the reason next to it."""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

from stablenew.gui.pipeline_model import (
    FIELDS,
    SECTIONS,
    STAGES,
    FieldSpec,
    Kind,
    PipelineModel,
)
from stablenew.gui.widgets import PAD, SMALL_PAD, ScrollFrame

ENTRY_WIDTH = 10
ROWS_SHOWN = 5
ROW_TEXT = 70
NO_ROWS = "No row selected: Add Pack adds every row"
DEFAULT_CHOICE = "(default)"


def shown(spec: FieldSpec, value: str | bool) -> str:
    """A setting as its input shows it: an unset name reads "(default)"."""
    text = str(value)
    return DEFAULT_CHOICE if spec.kind == Kind.CHOICE and not text else text


def unshown(text: str) -> str:
    """What an input holds, as the model takes it ("(default)" is not set)."""
    return "" if text == DEFAULT_CHOICE else text


class PipelineView(ScrollFrame):
    """The left column of the window."""

    def __init__(self, parent: tk.Misc, model: PipelineModel) -> None:
        super().__init__(parent, width=380)
        self.model = model
        self._variables: dict[str, tk.StringVar | tk.BooleanVar] = {}
        self._inputs: dict[str, tk.Widget] = {}
        self._errors: dict[str, ttk.Label] = {}
        self._shown_pack = ""
        body = self.body
        body.columnconfigure(0, weight=1)
        self._build_pack(body).grid(row=0, column=0, sticky="ew", pady=(0, PAD))
        self._build_prompts(body).grid(row=1, column=0, sticky="ew", pady=(0, PAD))
        for row, section in enumerate(SECTIONS, start=2):
            self._build_section(body, section).grid(row=row, column=0, sticky="ew",
                                                    pady=(0, PAD))
        model.changed.connect(lambda _: self.refresh())
        self.refresh()

    # --- building -------------------------------------------------------------------------

    def _build_pack(self, parent: tk.Misc) -> ttk.Labelframe:
        frame = ttk.Labelframe(parent, text="Prompt pack")
        frame.columnconfigure(1, weight=1)
        ttk.Label(frame, text="Pack").grid(row=0, column=0, sticky="w")
        self.pack_choice = ttk.Combobox(frame, state="readonly", width=24)
        self.pack_choice.grid(row=0, column=1, sticky="ew", padx=SMALL_PAD)
        self.pack_choice.bind("<<ComboboxSelected>>",
                              lambda _e: self.model.select_pack(self.pack_choice.get()))
        self.refresh_button = ttk.Button(frame, text="Reload", width=7,
                                         command=self._reload)
        self.refresh_button.grid(row=0, column=2)
        ttk.Label(frame, text="Prepend").grid(row=1, column=0, sticky="w", pady=SMALL_PAD)
        self.prepend = tk.StringVar()
        self.prepend.trace_add("write", lambda *_: setattr(self.model, "prepend",
                                                           self.prepend.get()))
        ttk.Entry(frame, textvariable=self.prepend).grid(row=1, column=1, columnspan=2,
                                                         sticky="ew", padx=SMALL_PAD)
        self.rows = tk.Listbox(frame, selectmode="extended", height=ROWS_SHOWN,
                               exportselection=False, activestyle="none")
        self.rows.grid(row=2, column=0, columnspan=3, sticky="ew", pady=SMALL_PAD)
        self.rows.bind("<<ListboxSelect>>", lambda _e: self._rows_selected())
        self.rows_hint = ttk.Label(frame, style="Muted.TLabel", text=NO_ROWS)
        self.rows_hint.grid(row=3, column=0, columnspan=3, sticky="w")
        self.pack_stages = tk.BooleanVar(value=self.model.use_pack_stages)
        self.pack_stages.trace_add("write", lambda *_: setattr(
            self.model, "use_pack_stages", self.pack_stages.get()))
        ttk.Checkbutton(frame, text="Use the pack's stages", variable=self.pack_stages).grid(
            row=4, column=0, columnspan=2, sticky="w")
        ttk.Button(frame, text="Load pack settings",
                   command=self.model.load_pack_settings).grid(row=4, column=2, sticky="e")
        self.pack_error = ttk.Label(frame, style="Error.TLabel")
        self.pack_error.grid(row=5, column=0, columnspan=3, sticky="w")
        return frame

    def _rows_selected(self) -> None:
        rows = [index for index in range(self.rows.size()) if self.rows.selection_includes(index)]
        self.model.select_rows(rows)
        self.rows_hint.configure(text=f"Add Pack adds the {len(rows)} selected row(s)" if rows
                                 else NO_ROWS)

    def _reload(self) -> None:
        self.model.load_packs()
        self.model.load_capabilities(refresh=True)

    def _build_prompts(self, parent: tk.Misc) -> ttk.Labelframe:
        frame = ttk.Labelframe(parent, text="Prompt")
        frame.columnconfigure(0, weight=1)
        self.prompt = tk.Text(frame, height=4, wrap="word", undo=True, font="TkTextFont")
        self.prompt.grid(row=0, column=0, sticky="ew")
        self.prompt_error = ttk.Label(frame, style="Error.TLabel")
        self.prompt_error.grid(row=1, column=0, sticky="w")
        ttk.Label(frame, text="Negative prompt").grid(row=2, column=0, sticky="w",
                                                      pady=(SMALL_PAD, 0))
        self.negative = tk.Text(frame, height=2, wrap="word", undo=True, font="TkTextFont")
        self.negative.grid(row=3, column=0, sticky="ew")
        for widget in (self.prompt, self.negative):
            widget.bind("<<Modified>>", self._prompts_edited)
        return frame

    def _prompts_edited(self, event: tk.Event[tk.Text]) -> None:
        self.model.prompt = self.prompt.get("1.0", "end-1c")
        self.model.negative = self.negative.get("1.0", "end-1c")
        event.widget.edit_modified(False)  # so the next edit fires again

    def text_widgets(self) -> list[tk.Text]:
        """The multi-line inputs (the window binds its shortcuts on them too)."""
        return [self.prompt, self.negative]

    def _build_section(self, parent: tk.Misc, section: str) -> ttk.Labelframe:
        frame = ttk.Labelframe(parent, text=section)
        specs = [spec for spec in FIELDS if spec.section == section]
        if section == STAGES:
            for column, spec in enumerate(specs):
                self._input(frame, spec).grid(row=0, column=column, sticky="w", padx=(0, PAD))
            return frame
        frame.columnconfigure(1, weight=1)
        for row, spec in enumerate(specs):
            if spec.kind != Kind.FLAG:
                ttk.Label(frame, text=spec.label).grid(row=row, column=0, sticky="w",
                                                       pady=1)
            self._input(frame, spec).grid(row=row, column=1, sticky="ew", padx=SMALL_PAD,
                                          pady=1)
            error = self._errors[spec.key] = ttk.Label(frame, style="Error.TLabel")
            error.grid(row=row, column=2, sticky="w")
        return frame

    def _input(self, parent: tk.Misc, spec: FieldSpec) -> tk.Widget:
        value = self.model.values[spec.key]
        widget: tk.Widget
        if spec.kind == Kind.FLAG:
            flag = tk.BooleanVar(value=bool(value))
            flag.trace_add("write", lambda *_: self.model.set_value(spec.key, flag.get()))
            widget = ttk.Checkbutton(parent, text=spec.label, variable=flag)
            self._variables[spec.key] = flag
        else:
            text = tk.StringVar(value=shown(spec, value))
            text.trace_add("write", lambda *_: self.model.set_value(spec.key,
                                                                    unshown(text.get())))
            if spec.kind == Kind.CHOICE:
                widget = ttk.Combobox(parent, textvariable=text, state="readonly")
            else:
                width = ENTRY_WIDTH if spec.kind != Kind.TEXT else 0
                widget = ttk.Entry(parent, textvariable=text, width=width or 28)
            self._variables[spec.key] = text
        self._inputs[spec.key] = widget
        return widget

    def field(self, key: str) -> tk.Widget:
        """The input of one setting (by its key in FIELDS)."""
        return self._inputs[key]

    def field_error(self, key: str) -> str:
        """What the form says is wrong with one setting ("" when nothing)."""
        label = self._errors.get(key)
        return str(label.cget("text")) if label is not None else ""

    # --- following the model --------------------------------------------------------------

    def refresh(self) -> None:
        """Show the model's packs, rows, names, values and errors."""
        model = self.model
        self.pack_choice.configure(values=["", *(pack.pack_id for pack in model.packs)])
        pack_id = model.pack.pack_id if model.pack else ""
        if pack_id != self._shown_pack:
            self._shown_pack = pack_id
            self.pack_choice.set(pack_id)
            self.rows.delete(0, "end")
            self.rows_hint.configure(text=NO_ROWS)
            for row in model.pack.rows if model.pack else []:
                text = row.positive if len(row.positive) <= ROW_TEXT else (
                    row.positive[:ROW_TEXT - 1] + "…")
                self.rows.insert("end", f"{row.index + 1}. {text}")
        for spec in FIELDS:
            variable, value = self._variables[spec.key], model.values[spec.key]
            if isinstance(variable, tk.BooleanVar):
                if variable.get() != value:
                    variable.set(bool(value))
            elif variable.get() != shown(spec, value):
                variable.set(shown(spec, value))
            widget = self._inputs[spec.key]
            if isinstance(widget, ttk.Combobox):
                widget.configure(values=[shown(spec, name) for name in model.choices(spec)])
            if spec.key in self._errors:
                self._errors[spec.key].configure(text=model.errors.get(spec.key, ""))
        self.prompt_error.configure(text=model.errors.get("prompt", ""))
        self.pack_error.configure(text=model.errors.get("pack", ""))
