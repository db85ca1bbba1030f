"""An Optuna sampler that proposes methods in the order of metasel's active loop.

For a study whose search space has the method as a categorical parameter (``method`` by
default; its choices are method names), :class:`MetaselSampler` answers that parameter
with the next benchmark metasel's selector asks for (:class:`metasel.select.Selector`:
the surrogate's joint predictive, conditioned in closed form on every finished trial of
the study, expected improvement by default). Failed trials remove their method, as a
failed benchmark does in ``metasel tune``. Every other parameter (an engine's numeric
settings, say) goes to an independent sampler (Optuna's ``RandomSampler`` unless given),
as do methods the model does not know: the sampler proposes known methods first.

Usage::

    import optuna
    from metasel.integrations.optuna import MetaselSampler

    sampler = MetaselSampler.from_store("store.sqlite", "spec.yaml")   # or MetaselSampler(model, task, hw, …)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: benchmark(t.suggest_categorical("method", sampler.methods)), n_trials=4)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from metasel.errors import InputDataError, MissingDependencyError

try:
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial, TrialState
except ImportError as _exc:  # pragma: no cover - the 'integrations' extra
    raise MissingDependencyError(f"metasel.integrations.optuna needs optuna ({_exc}); "
                                 f"pip install 'metasel[integrations]'") from None


class MetaselSampler(BaseSampler):
    """Propose the method of each trial by metasel's acquisition, conditioned on the study so far.

    Args:
        surrogate: a fitted :class:`~metasel.surrogate.base.Surrogate` (``metasel fit``, or the
            cached fit of a store: :meth:`from_store`).
        task_id, hardware_id: the (task, hardware) the study optimises.
        table: descriptors of that task and hardware when the model has not seen them (a
            :class:`~metasel.data.table.PerfTable`, e.g. ``app.descriptors.descriptor_table``),
            and any observations of them to condition on first.
        param: the name of the categorical parameter whose choices are methods.
        acquisition: the selector's acquisition (``ei``, ``ucb``, ``thompson``, ``pbest``).
        seed: seed of the acquisition's random parts and of the default independent sampler.
        independent_sampler: the sampler of every other parameter.
        skip_repeats: do not propose a method that runs the same computation on this task as one
            already tried (static batching of one request is plain generation).
    """

    def __init__(self, surrogate, task_id: str, hardware_id: str, *, table=None, param: str = "method",
                 acquisition: str = "ei", seed: int = 0, independent_sampler: BaseSampler | None = None,
                 skip_repeats: bool = True):
        from metasel.select import acquisition as acq

        acq.resolve(acquisition)  # an unknown name fails here
        self.surrogate = surrogate.condition(table) if table is not None else surrogate
        self.task_id, self.hardware_id, self.param = task_id, hardware_id, param
        self.acquisition, self.seed, self.skip_repeats = acquisition, int(seed), skip_repeats
        self._independent = independent_sampler or optuna.samplers.RandomSampler(seed=seed)
        self.last_reason = ""

    @property
    def methods(self) -> list[str]:
        """The methods the model knows: the choices to give ``suggest_categorical``."""
        return list(self.surrogate.methods)

    @classmethod
    def from_store(cls, store, spec, *, hardware: dict | None = None, model_path: str | None = None,
                   say=lambda m: None, **kwargs) -> "MetaselSampler":
        """A sampler for a task spec (a path or a parsed :class:`~metasel.spec.TaskSpec`) from a
        store (a path or an open :class:`~metasel.data.store.Store`): the model file, or the store's
        cached fit (as ``metasel suggest``), on the spec's hardware (``auto``: this machine)."""
        from metasel.app.descriptors import descriptor_table, hardware_descriptor
        from metasel.app.suggest import prepare
        from metasel.data.store import Store
        from metasel.spec import parse_task_spec, read_yaml

        if not hasattr(spec, "task_id"):
            spec = parse_task_spec(read_yaml(str(spec)), source=str(spec))
        own = not hasattr(store, "load")
        st = Store(store) if own else store
        try:
            _, model, _, task = prepare(spec, st, model_path=model_path, landmarks=False, say=say)
        finally:
            if own:
                st.close()
        hw = hardware or hardware_descriptor(spec.hardware)
        return cls(model, spec.task_id, hw["hardware_id"], table=descriptor_table(task, hw), **kwargs)

    # Optuna's interface --------------------------------------------------------------------

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}  # the method is sampled on its own (it is known on a study's first trial too)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def before_trial(self, study, trial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._independent.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._independent.reseed_rng()

    def sample_independent(self, study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        if param_name != self.param or not isinstance(param_distribution, CategoricalDistribution):
            return self._independent.sample_independent(study, trial, param_name, param_distribution)
        pick = self.next_method(study, param_distribution.choices)
        if pick is None:  # every known method tried: the rest as the independent sampler draws them
            return self._independent.sample_independent(study, trial, param_name, param_distribution)
        return pick

    # metasel's side --------------------------------------------------------------------------

    def selector(self, study, choices: Sequence[Any]):
        """A :class:`~metasel.select.Selector` over the known ``choices``, told every finished trial."""
        from metasel.select import Selector, StopRule

        direction = "max" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "min"
        if direction != self.surrogate.direction:
            raise InputDataError(f"MetaselSampler: the study is to {study.direction.name.lower()} but the model's "
                                 f"metric {self.surrogate.metric} is better when {self.surrogate.direction}imised")
        known = set(self.surrogate.methods)
        candidates = [c for c in choices if isinstance(c, str) and c in known]
        sel = Selector(self.surrogate, self.task_id, self.hardware_id, candidates=candidates or None,
                       acquisition=self.acquisition, rule=StopRule(min_gain=0.0), key=self.seed,
                       skip_repeats=self.skip_repeats)
        if not candidates:
            return sel
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            method = t.params.get(self.param)
            if method not in known:
                continue
            value = t.value if t.state == TrialState.COMPLETE else None
            if value is not None and math.isfinite(value) and value > 0:
                sel.tell(method, float(value))
            else:
                sel.tell(method, status="error")
        return sel

    def next_method(self, study, choices: Sequence[Any]) -> str | None:
        """The method metasel would benchmark next among ``choices``; None when every known one was tried."""
        known = set(self.surrogate.methods)
        if not any(isinstance(c, str) and c in known for c in choices):
            self.last_reason = "no choice is a method the model knows"
            return None
        ask = self.selector(study, choices).ask()
        self.last_reason = ask.reason
        return ask.method
