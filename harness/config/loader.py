"""Load a suite file and report every problem at once, each with file:line and its YAML path.
This floor stands above the registries: it imports them and lets each check its own entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness import models
from harness.config.yaml_lines import LineMap, read_yaml
from harness.errors import Problem, UserError
from harness.methods import METHODS
from harness.spec import MOVED_KEYS, LoadedSuite, MethodEntry, ModelSpec, Suite, TaskSpec, cell_id, yaml_number_hint
from harness.tasks import TASKS, family_for


def _pydantic_problems(exc: ValidationError, lines: LineMap) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden" and loc in MOVED_KEYS:
            message = MOVED_KEYS[loc]
        elif err["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif err["type"] == "missing":
            message = f"required key {loc[-1]!r} is missing"
        else:
            shown = repr(err.get("input"))
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            message = err["msg"] + (f", but got {shown}" if err["type"] not in ("value_error",)
                                    and not isinstance(err.get("input"), (dict, list)) else "")
            message = message.removeprefix("Value error, ") + yaml_number_hint(err.get("input"))
        out.append(lines.problem(loc, message))
    return out


def _items(raw: dict, section: str, model) -> list[tuple[int, Any]]:
    """(index, typed item) for each item of a list section that parses on its own, so the checks
    below run even where a sibling is broken; nothing where the section is not a list at all."""
    items = raw.get(section)
    out = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        try:
            out.append((i, model.model_validate(item)))
        except ValidationError:
            pass  # the schema's own problems are reported by check_raw
    return out


def _semantic_problems(raw: dict, suite: Suite | None, base_dir: Path, lines: LineMap) -> list[Problem]:
    """What only the registries can tell: each model source, task family and method checks its own
    entries; then which methods can run on which models and task heads."""
    out: list[Problem] = []
    at = lambda base, found: [f if isinstance(f, Problem) else lines.problem(base + f[0], f[1])  # noqa: E731
                              for f in found]
    infos = []
    for i, model in _items(raw, "models", ModelSpec):
        found = models.problems(model, base_dir)
        out += at(("models", i), found)
        info = None if found else models.model_info(model, base_dir)
        infos.append((model.label, info))
        if info is not None and info.max_positions and model.max_length > info.max_positions:
            out.append(lines.problem(("models", i, "max_length"), (
                f"max_length {model.max_length} is above the model's position limit {info.max_positions} "
                f"(its config's max_position_embeddings): longer inputs fail or run past what it was trained "
                f"on; use at most {info.max_positions}")))
    heads: dict[str, set[str]] = {}  # model label -> heads its tasks need
    families: dict = {}  # task name -> its family
    labels = [label for label, _ in infos]
    for i, task in _items(raw, "tasks", TaskSpec):
        try:
            family = family_for(task)
        except KeyError as exc:
            known_kind = "/" not in task.kind and task.kind in TASKS
            key = ("objective" if "objective" in exc.args[0] else "head") if known_kind else "kind"
            out.append(lines.problem(("tasks", i, key), exc.args[0]))
            continue
        out += at(("tasks", i), family.problems(task, base_dir))
        families[task.name] = family
        for j, name in enumerate(task.models or []):
            if name not in labels:
                out.append(lines.problem(("tasks", i, "models", j), f"no model is labelled {name!r}; the suite's "
                                                                    f"models are {', '.join(labels)}"))
        for label, info in infos:
            if task.models is not None and label not in task.models:
                continue
            if info is not None and family.unsupported(info.is_decoder):
                out.append(lines.problem(("tasks", i, "kind"), f"model {label} cannot run task {task.name}: "
                                                               f"{family.unsupported(info.is_decoder)} (tasks[{i}]."
                                                               f"models can leave it out)"))
            elif info is not None:
                heads.setdefault(label, set()).add(family.head_for(info.is_decoder))
    for i, entry in _items(raw, "methods", MethodEntry):
        if entry.name not in METHODS:
            out.append(lines.problem(("methods", i, "name"), METHODS.unknown_message(entry.name)))
            continue
        method = METHODS.get(entry.name)
        found = method.problems(entry.params, entry.search)
        out += at(("methods", i), found)
        messages = []
        for label, info in ([] if found else infos):
            for head in sorted(heads.get(label, set()) - {None}) if info else ():
                reason = method.check(info, head)
                if reason:
                    messages.append(f"method {entry.name} cannot be used with model {label}: {reason}")
        for task in families:
            reason = families[task].method_problem(method)
            if reason and not found:
                messages.append(f"method {entry.name} cannot run task {task}: {reason}")
        out += [lines.problem(("methods", i, "name"), m) for m in dict.fromkeys(messages)]  # each once
    if suite is not None:
        out += _suite_problems(suite, lines)
        out += _acceleration_problems(suite, dict(infos), lines)
    return out


def _cuda_here(requested: str) -> bool:
    """Whether trials of this suite will run on a CUDA device, asked as the runner asks (no context)."""
    if requested == "cpu":
        return False
    from harness.runner.prepare import pick_device

    return pick_device("auto") == "cuda"


def _acceleration_problems(suite: Suite, infos: dict, lines: LineMap) -> list[Problem]:
    """Acceleration options that cannot run where the suite will run, at the key that asks for them:
    Liger's kernels and flash attention need CUDA and their package; torch.compile on a CPU needs a
    C++ compiler (inductor writes C++); packing needs a decoder whose task trains a token-level head."""
    import importlib.util
    import shutil

    from harness.tasks.heads import HEADS

    sources = [(("acceleration",), suite.acceleration)]
    sources += [(("acceleration_axis", j), option) for j, option in enumerate(suite.acceleration_axis or [])]
    sources += [(("methods", i, "acceleration"), e.acceleration) for i, e in enumerate(suite.methods)
                if e.acceleration is not None]
    out, cuda = [], None
    for where, option in sources:
        need_cuda = [(key, why, package) for key, on, why, package in (
            ("kernels", option.kernels == "liger", "Liger's kernels are Triton (CUDA) kernels", "liger_kernel"),
            ("attention", option.attention == "flash_attention_2", "flash attention 2 runs on CUDA only", "flash_attn"),
        ) if on]
        for key, why, package in need_cuda:
            cuda = _cuda_here(suite.training.device) if cuda is None else cuda
            if not cuda:
                out.append(lines.problem(where + (key,), f"{why}, and this suite runs on the CPU here "
                                                         f"(training.device {suite.training.device}): leave it out "
                                                         f"or run on a GPU"))
            elif importlib.util.find_spec(package) is None:
                out.append(lines.problem(where + (key,), f"{package} is not installed here: "
                                                         f"pip install {package.replace('_', '-')}"))
        if option.compile and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")) \
                and not _cuda_here(suite.training.device):
            out.append(lines.problem(where + ("compile",), "torch.compile on the CPU needs a C++ compiler (inductor "
                                                           "writes C++), and none is on PATH: install g++"))
        if option.packing:
            for i, entry in enumerate(suite.methods):
                method = METHODS.get(entry.name) if entry.name in METHODS else None
                packs = suite.acceleration.merged(option).merged(entry.acceleration).packing
                if method is not None and method.no_packing and packs and (where[0] != "methods" or where[1] == i):
                    out.append(lines.problem(where + ("packing",), f"method {entry.display}: {method.no_packing}"))
            for task in suite.tasks:
                try:
                    family = family_for(task)
                except KeyError:
                    continue  # reported with the task
                if family.trainer is not None:
                    out.append(lines.problem(where + ("packing",), (
                        f"task {task.name} ({family.key}) trains through TRL's own trainer, which pads chosen and "
                        f"rejected answers side by side in its own batches: packing cannot apply")))
                    continue
                for label, info in infos.items():
                    if info is None or (task.models is not None and label not in task.models):
                        continue
                    head = family.head_for(info.is_decoder)
                    if not info.is_decoder or head is None or not HEADS.get(head).packable:
                        out.append(lines.problem(where + ("packing",), (
                            f"packing needs a decoder LM training a token-level head (position ids restart per "
                            f"example); model {label} on task {task.name} is "
                            f"{'a decoder with the ' + str(head) + ' head' if info.is_decoder else 'an encoder'}")))
    return out


def _suite_problems(suite: Suite, lines: LineMap) -> list[Problem]:
    """Checks across sections of a suite that parsed whole."""
    out = []
    metric = suite.search.objective.metric
    for i, task in enumerate(suite.tasks):
        try:
            family = family_for(task)
        except KeyError:
            continue  # reported above
        if task.metric is None and metric is not None and metric not in family.metrics:
            out.append(lines.problem(("search", "objective", "metric"),
                                     f"task {task.name} ({task.kind}) does not report {metric!r}; it reports "
                                     f"{', '.join(family.metrics)}"))
    labels = [e.display for e in suite.methods]
    for i, e in enumerate(suite.methods):
        if labels.count(e.display) > 1 and labels.index(e.display) != i:
            out.append(lines.problem(("methods", i), f"method {e.display!r} is listed twice: give one a label"))
    out += _cell_id_clashes(suite, lines) + _rung_problems(suite, lines)
    out += _tracking_problems(suite, lines) + _decision_problems(suite, lines)
    micro = suite.training.micro_batch_size
    if isinstance(micro, int):
        sizes = [(("training", "batch_size"), suite.training.batch_size)]
        sizes += [(("methods", i, "params", "batch_size"), e.params["batch_size"]) for i, e in enumerate(suite.methods)
                  if isinstance(e.params.get("batch_size"), int)]
        for where, size in sizes:
            if size % micro:
                out.append(lines.problem(where, f"batch_size {size} is not a multiple of training.micro_batch_size "
                                                f"{micro}: the effective batch must be whole micro-batches"))
    return out + _distributed_problems(suite, lines)


# transformers' bitsandbytes optimizers (trainer_optimizer._BITSANDBYTES_OPTIMIZERS in 5.25), named here:
# importing that module would load the training stack to read a suite
BITSANDBYTES_OPTIMIZERS = frozenset({
    "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_32bit", "paged_adamw_8bit", "ademamix", "ademamix_8bit",
    "paged_ademamix_32bit", "paged_ademamix_8bit", "lion_32bit", "lion_8bit", "paged_lion_32bit",
    "paged_lion_8bit", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit"})


def _fsdp_problems(suite: Suite, lines: LineMap, i: int, entry: MethodEntry, spec, where) -> list[Problem]:
    """A method FSDP cannot shard (MethodSpec.no_fsdp), and bitsandbytes' optimizers (QLoRA's paged 8-bit
    AdamW), which cannot step FSDP's sharded parameters (DTensors: "bitsandbytes.optimizer_update_32bit
    does not have a sharding strategy registered"; bitsandbytes issue 89). FSDP-QLoRA recipes train with
    torch's AdamW; the suite says so itself, so the method's optimizer never changes behind the
    comparison's back."""
    if spec.strategy != "fsdp" or entry.name not in METHODS:
        return []
    method = METHODS.get(entry.name)
    if method.no_fsdp:
        return [lines.problem(where, f"{entry.display} cannot train under strategy: fsdp: {method.no_fsdp}")]
    optim = entry.params.get("optim", method.defaults.get("optim", suite.training.optim))
    if optim not in BITSANDBYTES_OPTIMIZERS:
        return []
    at = ("methods", i, "params", "optim") if "optim" in entry.params else where
    return [lines.problem(at, f"{entry.display}'s optimizer {optim} (bitsandbytes) cannot step FSDP's sharded "
                              f"parameters: set params: {{optim: adamw_torch}} on this method, as FSDP-QLoRA "
                              f"recipes do, or strategy: ddp")]


def _distributed_problems(suite: Suite, lines: LineMap) -> list[Problem]:
    """Each method's ranks split its effective batch evenly (ranks x micro-batch x accumulation = batch_size)."""
    out = []
    micro = suite.training.micro_batch_size
    for i, entry in enumerate(suite.methods):
        spec = suite.runner.distributed.merged(entry.distributed)
        where = ("methods", i, "distributed") if entry.distributed is not None else ("runner", "distributed")
        if spec.processes == "auto" and spec.strategy != "fsdp":
            out.append(lines.problem(where, "processes: auto picks the fewest ranks the method fits on, and only "
                                            "sharding changes what a rank holds: set strategy: fsdp"))
            continue
        if spec.processes != 1:  # auto may come to several ranks
            out += _fsdp_problems(suite, lines, i, entry, spec, where)
        if not isinstance(spec.processes, int) or spec.processes == 1:
            continue
        if suite.runner.isolation != "process":
            out.append(lines.problem(where, "a trial over several processes needs runner.isolation: process (its "
                                            "ranks are forked from the trial's own process)"))
            continue
        size = entry.params.get("batch_size", suite.training.batch_size)
        per_step = spec.processes * (micro if isinstance(micro, int) else 1)
        if isinstance(size, int) and size % per_step:
            out.append(lines.problem(where, f"{spec.processes} processes cannot split batch_size {size}"
                                            f"{f' in micro-batches of {micro}' if isinstance(micro, int) else ''}: "
                                            f"batch_size must be a multiple of {per_step}, so every method trains "
                                            f"on the same effective batch"))
    return out


def _decision_problems(suite: Suite, lines: LineMap) -> list[Problem]:
    """The GPU kinds the decision names exist; a cost limit has a price to read costs from."""
    from harness.estimate import unknown_gpu

    out, decision = [], suite.decision
    for where, kind in ((("decision", "limits", "gpu"), decision.limits.gpu),
                        (("decision", "target", "gpu"), decision.target.gpu if decision.target else None)):
        if (problem := unknown_gpu(kind)) is not None:
            out.append(lines.problem(where, problem))
    if decision.limits.cost is not None and suite.measure.price_per_gpu_hour is None:
        out.append(lines.problem(("decision", "limits", "cost"), "a cost limit needs measure.price_per_gpu_hour "
                                                                 "(what one GPU-hour costs) to turn train time into cost"))
    return out


def _retention_problems(raw, base_dir: Path, lines: LineMap) -> list[Problem]:
    """retention.data's files and lm_eval's task folder exist; lm_eval is installed where it is asked for
    (read from the mapping, so these come with the schema's own problems, all at once)."""
    import importlib.util

    out, raw = [], raw if isinstance(raw, dict) else {}
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    files = data.get("files") if isinstance(data.get("files"), list) else []
    for i, name in enumerate(files):
        if isinstance(name, str) and not (base_dir / name).is_file():
            out.append(lines.problem(("retention", "data", "files", i), f"no such file: {base_dir / name}"))
    lm = raw.get("lm_eval")
    if isinstance(lm, dict):
        if importlib.util.find_spec("lm_eval") is None:
            out.append(lines.problem(("retention", "lm_eval"), "lm-evaluation-harness is not installed here: "
                                                               "pip install lm_eval"))
        folder = lm.get("include_path")
        if isinstance(folder, str) and not (base_dir / folder).is_dir():
            out.append(lines.problem(("retention", "lm_eval", "include_path"), f"no such folder: {base_dir / folder}"))
    return out


TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def _tracking_problems(suite: Suite, lines: LineMap) -> list[Problem]:
    """A tracker named must have its client installed here (the trial would fail at its first step)."""
    import importlib.util

    out = []
    for i, name in enumerate(suite.tracking.report_to):
        if importlib.util.find_spec(TRACKER_PACKAGES[name]) is None:
            extra = "pip install wandb" if name == "wandb" else "pip install -e '.[tracking]'"
            out.append(lines.problem(("tracking", "report_to", i), f"{name} is not installed here: {extra}"))
    return out


def _rung_problems(suite: Suite, lines: LineMap) -> list[Problem]:
    """Under a multi-fidelity strategy the validation steps are the rungs (plan.rungs): an
    eval_every_steps beside it would evaluate where no decision reads, or contradict the rungs."""
    from harness.plan import rungs

    search, out = suite.search, []
    if search.rung_max_length is not None:
        steps = rungs(suite)
        if search.strategy != "sha":
            out.append(lines.problem(("search", "rung_max_length"),
                                     f"only search.strategy sha trains a configuration again at each rung; "
                                     f"{search.strategy} judges a trial while it runs, and a running trial's "
                                     f"max_length cannot change"))
        elif len(search.rung_max_length) != len(steps):
            out.append(lines.problem(("search", "rung_max_length"),
                                     f"one length per rung: the rungs are at steps {steps} (search.min_steps x "
                                     f"reduction_factor^k below training.max_steps), and "
                                     f"{len(search.rung_max_length)} lengths are given"))
        elif search.rung_max_length != sorted(search.rung_max_length):
            out.append(lines.problem(("search", "rung_max_length"),
                                     "lengths must not fall from one rung to the next: a higher rung is a "
                                     "truer fidelity"))
    if search.strategy == "none":
        return out
    if suite.training.eval_every_steps:
        out.append(lines.problem(("training", "eval_every_steps"),
                                 f"search.strategy {search.strategy} scores the validation split at its rungs "
                                 f"(search.min_steps x search.reduction_factor^k); leave eval_every_steps out"))
    if search.min_steps is not None and search.min_steps * search.reduction_factor > suite.training.max_steps:
        out.append(lines.problem(("search", "min_steps"),
                                 f"the first rung ({search.min_steps} steps) x reduction_factor "
                                 f"({search.reduction_factor}) must be at most training.max_steps "
                                 f"({suite.training.max_steps}), or no trial could stop early enough to save anything"))
    return out


def _cell_id_clashes(suite: Suite, lines: LineMap) -> list[Problem]:
    """Two entries whose labels differ only in characters a folder name cannot hold ('a b' and 'a_b'),
    or are equal, would share one cell: one's trials would be read as the other's."""
    out = []
    for section, entries, label in (("models", suite.models, lambda m: m.label),
                                    ("tasks", suite.tasks, lambda t: t.name),
                                    ("methods", suite.methods, lambda e: e.display)):
        seen: dict[str, tuple[int, str]] = {}
        for i, entry in enumerate(entries):
            name = label(entry)
            key = cell_id(name, "", "")
            if key in seen and not (section == "methods" and seen[key][1] == name):
                first, other = seen[key]
                out.append(lines.problem((section, i), f"label {name!r} names the same results folder as "
                                                       f"{section}[{first}] ({other!r}); give one a distinct label"
                                                       + (" (name:)" if section == "models" else "")))
            seen.setdefault(key, (i, name))
    return out


def check_raw(raw: dict, base_dir: Path, lines: LineMap) -> tuple[Suite | None, list[Problem]]:
    """A suite's mapping, typed and checked: the suite (None where it does not parse) and every problem."""
    suite, problems = None, []
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as exc:
        problems = _pydantic_problems(exc, lines)
    retention = _retention_problems(raw.get("retention"), base_dir, lines)
    return suite, problems + _semantic_problems(raw, suite, base_dir, lines) + retention


def load_suite(path: str | Path) -> LoadedSuite:
    """Parse and validate a suite; raise UserError listing every problem found."""
    path = Path(path)
    raw, lines, problems = read_yaml(path)
    if raw is None and not problems:
        problems = [Problem(str(path), None, "", "the file is empty")]
    if problems and raw is None:
        raise UserError(problems)
    if not isinstance(raw, dict):
        raise UserError([Problem(str(path), 1, "", "a suite must be a YAML mapping (name:, models:, tasks:, methods:, ...)")])
    suite, found = check_raw(raw, path.parent, lines)
    problems.extend(found)
    if problems:
        raise UserError(sorted(problems, key=lambda p: (p.file != str(path), p.file, p.line or 0, p.path)))
    return LoadedSuite(suite=suite, path=path.resolve(), text=path.read_text(encoding="utf-8"))
