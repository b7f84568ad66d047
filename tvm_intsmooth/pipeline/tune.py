"""MetaSchedule tuning of a smoothed classifier's kernels for one target: ``tune``.

The tasks are the PrimFuncs of the module exactly as the build schedules it
(:func:`~tvm_intsmooth.pipeline.phases.fused_module`: the build phases up to fusion), restricted
to those with a multiply-accumulate reduction (convolutions, dense layers): the rest (noise sampler,
pooling, reshapes, votes) keep the default schedule. The search uses the target's tensorizing
rules (MultiLevelTilingWithIntrin over the project's dot-product intrinsics for the target, then
plain MultiLevelTiling), TVM's XGBoost cost model, and the two mutators that work in TVM 0.27
(MutateTileSize, MutateUnroll; the default LLVM set crashes while the tuning context is
created, in MutateComputeLocation and MutateParallel).

The runner (where candidates are timed) and the builder are arguments, so that an ARM board can
be tuned over RPC (``runner=ms.runner.RPCRunner(...)``); by default candidates are built and
timed on this machine, which must then have the target's instruction set.

Nothing is lost: the database is written to the user's folder (never the installed package's),
merged into the database already there (the faster record of each workload is kept, and every
workload of either), saved after every round, and Ctrl-C stops the search after the candidate
that is running and keeps what was measured (:mod:`.tune_control`).
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tvm
import tvm_ffi
from tqdm import tqdm
from tvm import tirx
from tvm.ir.utils import derived_object
from tvm.s_tir import Schedule
from tvm.s_tir import meta_schedule as ms

from tvm_intsmooth.compat import filtered_stderr
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.phases import fused_module
from tvm_intsmooth.pipeline.tune_control import (
    RoundEnd,
    StopOnInterrupt,
    StoppableBuilder,
    StoppableRunner,
    StoppableSearch,
    ignore_sigint,
    is_interrupted,
)
from tvm_intsmooth.schedule.blocked_kernels import DATA_MAX_ATTR
from tvm_intsmooth.schedule.database import (
    MODULE_EQUALITY,
    TunedDatabase,
    find_database,
    load_database,
    merge_records,
    register_intrinsics,
    save_database,
    user_schedules_dir,
    workload_key,
)
from tvm_intsmooth.schedule.database_folder import check_destination
from tvm_intsmooth.schedule.targets import TargetSpec, resolve_target

__all__ = [
    "TaskResult",
    "TuneResult",
    "default_builder",
    "keep_best",
    "tunable_tasks",
    "tune",
]

# LLVM needs 15-30 s per tensorized conv candidate on a loaded 2-core machine; MetaSchedule's
# default of 30 s fails them all as "Build errors" and tuning ends with zero trials, silently.
BUILD_TIMEOUT_S = 600
_REUSE = {"req": "may", "levels": [1, 2], "scope": "global"}


@dataclass
class TaskResult:
    """One tuned task: its name, MACs per call, trials measured and the best time found."""

    name: str
    macs: int
    weight: int
    trials: int = 0
    best_us: float | None = None
    default_us: float | None = None
    kept: bool = False

    @property
    def gmacs(self) -> float | None:
        """Multiply-accumulates per second of the best tuned schedule, in GMAC/s."""
        return self.macs / self.best_us / 1e3 if self.best_us else None


@dataclass
class TuneResult:
    """What :func:`tune` did: the database folder, its workload key, and every task."""

    path: Path
    key: str
    target: str
    tasks: list[TaskResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def trials(self) -> int:
        return sum(t.trials for t in self.tasks)

    def summary(self) -> str:
        """A table of the tasks (trials, best tuned and default time, GMAC/s) for people."""

        def us(value: float | None) -> str:
            return f"{value:10.1f}" if value else f"{'-':>10}"

        lines = [
            f"{'task':<56} {'MACs':>12} {'trials':>6} {'best us':>10} {'default us':>10} "
            f"{'GMAC/s':>7} kept"
        ]
        for t in self.tasks:
            rate = f"{t.gmacs:7.1f}" if t.gmacs else f"{'-':>7}"
            lines.append(
                f"{t.name[:56]:<56} {t.macs:>12,} {t.trials:>6} {us(t.best_us)} "
                f"{us(t.default_us)} {rate} {'yes' if t.kept else 'no'}"
            )
        lines.append(
            f"{len(self.tasks)} tasks, {self.trials} trials in {self.seconds / 60:.1f} min; "
            f"database {self.path} (target {self.target}, key {self.key})"
        )
        return "\n".join(lines)


def _reduction_macs(func: tirx.PrimFunc) -> int:
    """MACs of the function's multiply-accumulate reduction blocks (0 when it has none)."""
    sch = Schedule(tvm.IRModule({"main": func}))
    try:
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception:  # no root block: not a TE-style function
        return 0
    total = 0
    for block in blocks:
        stmt = sch.get(block)
        reduces = [iv for iv in stmt.iter_vars if int(iv.iter_type) == 2]
        if not reduces or not _is_multiply_add(stmt.body):
            continue
        extents = [int(iv.dom.extent) for iv in stmt.iter_vars]
        count = 1
        for extent in extents:
            count *= extent
        total += count
    return total


def _is_multiply_add(body) -> bool:
    value = getattr(body, "value", None)
    return isinstance(value, tirx.Add) and any(
        isinstance(operand, tirx.Mul) for operand in (value.a, value.b)
    )


def tunable_tasks(fused: tvm.IRModule, target: TargetSpec) -> list[tuple[object, int]]:
    """MetaSchedule's tasks of the fused module that have a multiply-accumulate reduction,
    with their MACs per call."""
    tasks = ms.relax_integration.extract_tasks(
        fused, target.tvm_target, module_equality=MODULE_EQUALITY
    )
    out = []
    for task in tasks:
        macs = _reduction_macs(task.dispatched[0]["main"])
        if macs:
            out.append((task, macs))
    return out


def conv_data_max(func: tirx.PrimFunc) -> int | None:
    """The data bound annotated on the function's blocked convolution (``intsmooth.data_max``),
    or None where it has none (the bound is then unknown)."""
    sch = Schedule(tvm.IRModule({"main": func}))
    try:
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception:  # no root block: not a TE-style function
        return None
    bounds = [
        int(sch.get(block).annotations[DATA_MAX_ATTR])
        for block in blocks
        if DATA_MAX_ATTR in sch.get(block).annotations
    ]
    return max(bounds) if bounds else None


def _intrinsic_names(spec: TargetSpec, data_max: int | None = None) -> list[str]:
    """The project's intrinsics for the target's 8-bit and 16-bit (first layer) kernels that
    are exact for data up to ``data_max`` (None: unknown data, so only those exact for all)."""
    register_intrinsics()
    from tvm_intsmooth.schedule.intrinsics import tensor_intrin_for

    names = []
    for dtype in ("uint8", "int16"):
        intrin = tensor_intrin_for(spec, dtype)
        # MetaSchedule tensorizes every conv the intrinsic's shape fits, whatever its data; one
        # exact only for small data (AVX2 vpmaddubsw, ARM sdot on uint8: <= 127) is offered only
        # to a task whose conv is annotated with a bound within it (a shifted 0..255 input
        # would saturate).
        exact = intrin is not None and (
            intrin.max_data is None or (data_max is not None and data_max <= intrin.max_data)
        )
        if exact and intrin.name not in names:
            names.append(intrin.name)
    return names


def space_generator(spec: TargetSpec, data_max: int | None = None):
    """The target's tensorizing search space (TVM's x86/ARM rules with the project's
    intrinsics exact for data up to ``data_max``), its CPU tensorization postprocessors, and
    the mutators that work in 0.27; with the project's register-blocked schedule for every
    register tile (:func:`_blocked_designs`)."""
    rules = ms.schedule_rule
    tiling = {"structure": "SSRSRS", "max_innermost_factor": 64}
    # TVM's x86/ARM rules without ApplyCustomRule: 0.27 registers no custom rule for topi's
    # conv2d_NCHWc_int8 block and would only warn about it.
    sch_rules = [
        rules.InlineConstantScalars(),
        rules.AutoInline(
            into_producer=False,
            into_consumer=True,
            inline_const_tensor=True,
            disallow_if_then_else=True,
            require_injective=True,
            require_ordered=True,
            disallow_op=["tirx.exp"],
        ),
        rules.AddRFactor(max_jobs_per_core=16, max_innermost_factor=64),
        *(
            rules.MultiLevelTilingWithIntrin(name, **tiling, reuse_write=rules.ReuseType(**_REUSE))
            for name in _intrinsic_names(spec, data_max)
        ),
        rules.MultiLevelTiling(**tiling, reuse_write=rules.ReuseType(**_REUSE)),
        rules.ParallelizeVectorizeUnroll(
            max_jobs_per_core=16,
            max_vectorize_extent=64,
            unroll_max_steps=[0, 16, 64, 512],
            unroll_explicit=True,
        ),
        rules.RandomComputeLocation(),
    ]
    postprocs = [
        ms.postproc.DisallowDynamicLoop(),
        ms.postproc.RewriteParallelVectorizeUnroll(),
        ms.postproc.RewriteReductionBlock(),
        ms.postproc.RewriteTensorize(vectorize_init_loop=True),
    ]
    mutators = {ms.mutator.MutateTileSize(): 0.9, ms.mutator.MutateUnroll(): 0.1}
    searched = ms.space_generator.PostOrderApply(
        sch_rules=sch_rules, postprocs=postprocs, mutator_probs=mutators
    )
    return ms.space_generator.SpaceGeneratorUnion(
        [searched, _blocked_designs(spec)],
        sch_rules=sch_rules,
        postprocs=postprocs,
        mutator_probs=mutators,
    )


def _blocked_designs(spec: TargetSpec) -> ms.space_generator.ScheduleFn:
    """The project's own register-blocked conv schedule for every register tile that fits
    (:func:`~tvm_intsmooth.transform.schedule_blocked_kernels.tile_designs`): fixed designs,
    each timed once, beside the ones MetaSchedule's rules generate and mutate."""
    from tvm_intsmooth.transform.schedule_blocked_kernels import tile_designs

    def designs(sch: Schedule) -> list[Schedule]:
        return tile_designs(sch, spec.tvm_target)

    return ms.space_generator.ScheduleFn(designs, sch_rules=[], postprocs=[], mutator_probs={})


def _tune_contexts(
    spec: TargetSpec, tasks: list, work: str, trials_per_iter: int, seed: int, stop=None
) -> list[ms.TuneContext]:
    """MetaSchedule's ``extracted_tasks_to_tune_contexts``, with each task's own search space
    (its conv's data bound decides which intrinsics are exact for it); with ``stop`` (a
    :class:`~.tune_control.StopOnInterrupt`), searches that end once it is stopping."""
    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir
    from tvm.s_tir.meta_schedule.utils import fork_seed

    loggers = get_loggers_from_work_dir(work, [t.task_name for t in tasks])
    return [
        ms.TuneContext(
            mod=task.dispatched[0],
            target=task.target,
            space_generator=space_generator(spec, conv_data_max(task.dispatched[0]["main"])),
            search_strategy=_search_strategy(trials_per_iter, stop),
            task_name=task.task_name,
            logger=logger,
            rand_state=rand_state,
            num_threads=spec.num_cores or "physical",
        ).clone()
        for task, logger, rand_state in zip(
            tasks, loggers, fork_seed(seed, n=len(tasks)), strict=True
        )
    ]


def _search_strategy(trials_per_iter: int, stop) -> ms.search_strategy.SearchStrategy:
    search = ms.search_strategy.EvolutionarySearch(
        population_size=max(16, min(512, 4 * trials_per_iter))
    )
    return search if stop is None else StoppableSearch(search, stop)


def build_candidate(mod: tvm.IRModule, target: tvm.target.Target, _params) -> tvm.runtime.Module:
    """MetaSchedule's default candidate build without its ``import tvm.s_tir.tensor_intrin``:
    that import registers every backend's intrinsics (about 40 s of CPU) in each builder
    process, which MetaSchedule restarts for every batch; a scheduled candidate has its
    intrinsics inlined already and needs none registered."""
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def export_candidate(compiler: str | None, mod: tvm.runtime.Module) -> str:
    """Export a built candidate as a shared library, with ``compiler`` when cross-compiling."""
    from tvm.support import cc

    path = os.path.join(tempfile.mkdtemp(prefix="intsmooth_candidate_"), "candidate.so")
    mod.export_library(path, fcompile=cc.cross_compiler(compiler) if compiler else None)
    return path


def default_builder(spec: TargetSpec) -> ms.builder.Builder:
    """LocalBuilder with a build timeout long enough for tensorized candidates, linking with the
    target's cross compiler where it has one (e.g. for an RPC runner on a Raspberry Pi)."""
    return ms.builder.LocalBuilder(
        timeout_sec=BUILD_TIMEOUT_S,
        f_build=build_candidate,
        f_export=functools.partial(export_candidate, spec.cross_compiler),
        initializer=ignore_sigint,
    )


@derived_object
class _Progress(ms.measure_callback.PyMeasureCallback):
    """Counts measured candidates per task and keeps the best run time (a tqdm bar)."""

    def __init__(self, results: list[TaskResult], bar: tqdm):
        super().__init__()
        self.results = results
        self.bar = bar

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        result = self.results[task_id]
        for run in runner_results:
            if is_interrupted(run.error_msg):  # skipped after Ctrl-C: no trial
                continue
            result.trials += 1
            if run.error_msg is None and run.run_secs:
                seconds = sum(float(s) for s in run.run_secs) / len(run.run_secs)
                if result.best_us is None or seconds * 1e6 < result.best_us:
                    result.best_us = seconds * 1e6
        best = [r.best_us for r in self.results if r.best_us]
        self.bar.set_postfix_str(f"task {task_id}, tuned {len(best)}/{len(self.results)}")
        self.bar.update(len(runner_results))


def _quiet_meta_schedule_console() -> int:
    """MetaSchedule logs to its files in the work folder; keep its console output to warnings
    unless the user set a level. Returns the level to set again before each of MetaSchedule's
    logger setups, which leave the logger at DEBUG (and the next setup's console with it)."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return logger.level


def _best_records(database: ms.database.Database) -> dict[int, ms.database.TuningRecord]:
    """The best valid record of every workload of ``database``, by workload hash."""
    best = {}
    for record in database.get_all_tuning_records():
        top = database.get_top_k(record.workload, 1)
        if top and top[0].same_as(record):
            best[_workload_hash(record.workload.mod)] = record
    return best


def _workload_hash(mod: tvm.IRModule) -> int:
    return tvm_ffi.structural_hash(mod, skip_tensor_content=True)


def default_schedule(func: tirx.PrimFunc, spec: TargetSpec) -> tirx.PrimFunc:
    """The schedule an untuned build gives ``func``: the blocked kernels' fixed schedule, then
    ParallelizeOuterLoops."""
    from tvm_intsmooth.transform.parallelize_outer_loops import parallelize_primfunc
    from tvm_intsmooth.transform.schedule_blocked_kernels import schedule_blocked_conv

    return parallelize_primfunc(schedule_blocked_conv(func, spec.tvm_target))


def _measure(funcs: list[tirx.PrimFunc], spec, builder, runner) -> list[float | None]:
    """Mean run time (us) of each scheduled PrimFunc, built and run as tuning candidates are."""
    target = spec.tvm_target
    built = builder.build(
        [ms.builder.BuilderInput(tvm.IRModule({"main": f}), target) for f in funcs]
    )
    inputs, where = [], []
    for i, (func, result) in enumerate(zip(funcs, built, strict=True)):
        if result.error_msg is None:
            args = ms.arg_info.ArgInfo.from_prim_func(func)
            inputs.append(ms.runner.RunnerInput(result.artifact_path, "cpu", args))
            where.append(i)
    times: list[float | None] = [None] * len(funcs)
    for i, future in zip(where, runner.run(inputs) if inputs else [], strict=True):
        run = future.result()
        if run.error_msg is None and run.run_secs:
            times[i] = sum(float(t) for t in run.run_secs) / len(run.run_secs) * 1e6
    return times


def measure_defaults(
    found: list, results: list[TaskResult], spec: TargetSpec, builder, runner
) -> None:
    """Time the schedule that the untuned build gives every task of ``found`` (from
    :func:`tunable_tasks`) with the tuning's builder and runner, into ``results``."""
    untuned = [default_schedule(t.dispatched[0]["main"], spec) for t, _ in found]
    for task, default_us in zip(results, _measure(untuned, spec, builder, runner), strict=True):
        task.default_us = default_us


def keep_best(
    database: ms.database.Database, found: list, results: list[TaskResult], keep: str
) -> list[ms.database.TuningRecord]:
    """The best record of every tuned task of ``found``: with ``keep="faster"`` only where it
    beats the schedule the untuned build gives the task (:func:`measure_defaults`)."""
    best = _best_records(database)
    kept = []
    for (task_, _), task in zip(found, results, strict=True):
        record = best.get(_workload_hash(task_.dispatched[0]))
        tuned = record is not None and task.best_us is not None
        faster = tuned and (task.default_us is None or task.best_us < task.default_us)
        task.kept = tuned and (keep == "all" or faster)
        if task.kept:
            kept.append(record)
    return kept


def tune(
    smoothed,
    target="host",
    *,
    trials: int,
    output: str | os.PathLike | None = None,
    runner: ms.runner.Runner | None = None,
    builder: ms.builder.Builder | None = None,
    trials_per_iter: int = 64,
    seed: int = 0,
    keep: str = "faster",
    progress: bool = True,
    command: str | None = None,
    force: bool = False,
) -> TuneResult:
    """Tune the convolutions and dense layers of a smoothed classifier for ``target``.

    Args:
        smoothed: a :class:`~tvm_intsmooth.pipeline.smooth.SmoothedModel` (what ``intsmooth
            compile`` builds) or its Relax module.
        target: anything :func:`resolve_target` accepts.
        trials: measured candidates in all (MetaSchedule's ``max_trials_global``), shared
            among the tasks by the gradient task scheduler.
        output: the database folder (default ``<target>/<key>`` in the user's folder,
            :func:`~tvm_intsmooth.schedule.database.user_schedules_dir`, where the build finds
            it; never the installed package's). An existing database there is merged into: the
            faster record of each workload is kept, and every workload of either. Without
            ``output``, a shipped database for the key is merged in the same way.
        runner: where candidates run (default: a LocalRunner on this machine); pass an
            ``ms.runner.RPCRunner`` to time them on a board.
        builder: how candidates are built (default: :func:`default_builder`).
        trials_per_iter: candidates per search round of one task.
        seed: the search's random seed.
        keep: ``"faster"`` keeps a kernel's tuned schedule only where it beats the schedule the
            untuned build gives it (measured the same way, after tuning); ``"all"`` keeps every
            kernel's best tuned schedule.
        progress: show a progress bar on stderr.
        command: the command line to record in ``info.json`` (default: ``sys.argv``).
        force: write ``output`` even where it is a folder that is not a database of ours.

    Returns:
        A :class:`TuneResult` (its ``summary()`` is a table of the tasks). Ctrl-C stops the
        search after the candidate that is running and keeps what was measured
        (``result.interrupted``, and ``"interrupted": true`` in info.json). The database is saved
        after every round, so a crash loses at most the round in progress.

    Raises:
        IntSmoothError: the output folder is not ours, or cannot be written (the search stops at
            once and the last save is kept).
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise IntSmoothError(f"trials must be a positive integer, got {trials!r}.")
    if keep not in ("faster", "all"):
        raise IntSmoothError(f"keep must be 'faster' or 'all', got {keep!r}.")
    spec = resolve_target(target)
    mod = getattr(smoothed, "mod", smoothed)
    if not isinstance(mod, tvm.IRModule):
        raise IntSmoothError(f"tune expects a SmoothedModel or an IRModule, got {type(mod)}.")
    fused = fused_module(mod, spec)
    key = workload_key(fused)
    found = tunable_tasks(fused, spec)
    if not found:
        raise IntSmoothError(
            "tune: the module has no convolution or dense layer (no multiply-accumulate "
            "reduction) to tune."
        )
    out = Path(output) if output is not None else user_schedules_dir() / spec.resolved_name / key
    check_destination(out, force)
    base = _base_database(out, spec, key, default=output is None)
    builder = builder if builder is not None else default_builder(spec)
    runner = runner if runner is not None else ms.runner.LocalRunner(initializer=ignore_sigint)
    results = [TaskResult(t.task_name, macs, int(t.weight)) for t, macs in found]
    result = TuneResult(out, key, spec.resolved_name, results)
    info = {
        "key": key,
        "target": spec.resolved_name,
        "target_config": str(spec.target),
        "tvm": tvm.__version__,
        "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "keep": keep,
    }
    start = time.perf_counter()
    stop = StopOnInterrupt()
    with tempfile.TemporaryDirectory(prefix="intsmooth_tune_") as work:
        contexts = _tune_contexts(spec, [t for t, _ in found], work, trials_per_iter, seed, stop)
        database = ms.database.JSONDatabase(work_dir=work, module_equality=MODULE_EQUALITY)
        measure_defaults(found, results, spec, builder, runner)  # before: every save is pruned

        def save(complete: bool = False) -> None:
            result.seconds = time.perf_counter() - start
            kept = keep_best(database, found, results, keep)
            _save(out, base, kept, result, {**info, "interrupted": stop.requested}, complete)

        with stop:
            round_end = RoundEnd(stop, save)
            _search(
                contexts,
                found,
                work,
                database,
                StoppableRunner(runner, stop),
                [_Progress(results, None), round_end],
                trials=trials,
                trials_per_iter=trials_per_iter,
                builder=StoppableBuilder(builder, stop),
                progress=progress,
            )
        result.interrupted = stop.requested
        if round_end.error is None:
            try:
                save(complete=True)
            except OSError as err:
                round_end.error = err
    if round_end.error is not None:
        raise _disk_error(out, round_end.error, result)
    return result


def _search(
    contexts,
    found,
    work,
    database,
    runner,
    callbacks,
    *,
    trials,
    trials_per_iter,
    builder,
    progress,
) -> None:
    """MetaSchedule's search over ``contexts`` (its console quiet, a progress bar that the
    first of ``callbacks``, a :class:`_Progress`, advances)."""
    console_level = _quiet_meta_schedule_console()
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(console_level)
    with (
        filtered_stderr(),
        tqdm(total=trials, unit="trial", disable=not progress, desc="tuning") as bar,
    ):
        callbacks[0].bar = bar
        ms.tune.tune_tasks(
            tasks=contexts,
            task_weights=[float(t.weight) for t, _ in found],
            work_dir=work,
            max_trials_global=trials,
            num_trials_per_iter=min(trials_per_iter, trials),
            builder=builder,
            runner=runner,
            cost_model=ms.cost_model.XGBModel(
                extractor=ms.feature_extractor.PerStoreFeature(), adaptive_training=True
            ),
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), *callbacks],
            database=database,
            module_equality=MODULE_EQUALITY,
        )


def _base_database(out: Path, spec: TargetSpec, key: str, default: bool) -> TunedDatabase | None:
    """The database that tune merges into: the one at ``out``, else (for the default output)
    the shipped one for the key, else None."""
    if (out / "info.json").is_file():
        return load_database(out, spec)
    if default:
        shipped = find_database(key, spec)
        return shipped if shipped is not None and shipped.path != out else None
    return None


def _save(
    out: Path,
    base: TunedDatabase | None,
    kept: list,
    result: TuneResult,
    info: dict,
    complete: bool,
) -> None:
    """Write ``kept`` merged into ``base`` to ``out``, with info.json: this run's tasks merged
    into the base's, the trials of both."""
    old = base.info if base is not None else {}
    records = base.database.get_all_tuning_records() if base is not None else []
    tasks = {t.get("name"): t for t in old.get("tasks", [])}
    for task in result.tasks:
        before = tasks.get(task.name, {})
        merged = {**asdict(task), "gmacs": task.gmacs}
        merged["trials"] += int(before.get("trials", 0))
        if before.get("best_us") and (not task.best_us or before["best_us"] < task.best_us):
            merged.update(best_us=before["best_us"], gmacs=before.get("gmacs"))
        merged["kept"] = task.kept or bool(before.get("kept"))
        tasks[task.name] = merged
    save_database(
        merge_records(records, kept),
        out,
        {
            **info,
            "trials": int(old.get("trials", 0)) + result.trials,
            "complete": complete,
            "minutes": round(float(old.get("minutes", 0)) + result.seconds / 60, 1),
            "merged_into": str(base.path) if base is not None else None,
            "tasks": list(tasks.values()),
        },
    )


def _disk_error(out: Path, err: OSError, result: TuneResult) -> IntSmoothError:
    where = err.filename or out
    return IntSmoothError(
        f"tune: writing the database {where} failed ({err.strerror or err}) after "
        f"{result.trials} trials, so the search stopped. {out} holds the database as saved "
        "after the last round that could be written (nothing saved before is lost). Free "
        "space (or fix the folder's permissions) and run the same command again: it merges "
        "into that database."
    )
