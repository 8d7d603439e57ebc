"""The network graph and its builder API.

A :class:`Graph` wraps a :class:`networkx.DiGraph`.  Nodes have string ids and
carry one payload from :mod:`ntgraph.ir` plus a ``meta`` dict that passes
annotate (as torch.fx does).  Projections are nodes: the edges are
``source -> projection -> target`` and ``source -> output``.

Builder methods return the new node's id, so networks read naturally::

    g = Graph("demo")
    x = g.input("x", 100)
    h = g.population("hid", LIF(tau_mem=20e-3), 200, excitatory=0.8)
    g.dense(x, h)                      # feed-forward, delay 0
    g.dense(h, h, p=0.1, no_self=True) # recurrent: delay defaults to 1
    g.output("y", g.population("out", LI(tau_mem=10e-3), 10, inputs=h))
"""

from __future__ import annotations

import copy
import zlib
from typing import Any, Iterator, Optional, Sequence, Union

import networkx as nx
import numpy as np

from . import constraints as C
from .errors import ShapeError, ValidationError
from .ir import Dense, Input, Node, OneToOne, Output, Population, Projection, Sparse
from .models import NeuronModel

__all__ = ["Graph"]

ArrayLike = Any
WEIGHT_INITS = ("normal", "uniform", "zeros")


def _node_error(kind: str, node_id: str, exc: ValidationError) -> ValidationError:
    """Re-raise a payload construction error with the node id in front."""
    return type(exc)(f"{kind} '{node_id}': {exc}")


def _check_payload(node_id: str, payload: Node) -> None:
    """The payload-only checks of :func:`ntgraph.validate.check_node` (finite arrays, parameter signs)."""
    from .validate import check_node  # validate imports this module

    check_node(node_id, payload)


def _bounds(bounds: Any) -> C.WeightBounds:
    """``bounds=(low, high)`` of the builder as a :class:`~ntgraph.constraints.WeightBounds`."""
    if np.ndim(bounds) != 1 or len(bounds) != 2:
        raise ValidationError(f"bounds: expected a pair (low, high), got {bounds!r}")
    return C.WeightBounds(*bounds)


class Graph:
    """A network of inputs, populations, projections and outputs.

    ``name`` labels the network in prints and files.  ``seed`` makes the
    builder's random initialisation reproducible: each node draws from its own
    stream seeded by ``(seed, node id)``, so adding a node never changes the
    weights of another.
    """

    def __init__(self, name: str = "network", seed: int = 0) -> None:
        self.name = str(name)
        self.seed = int(seed)
        self._g = nx.DiGraph()
        #: Graph-level annotations made by passes (like node ``meta``: not saved, not compared).
        self.attrs: dict = {}

    # ------------------------------------------------------------------ access
    def __getitem__(self, node_id: str) -> Node:
        try:
            return self._g.nodes[node_id]["payload"]
        except KeyError:
            raise KeyError(f"graph '{self.name}' has no node {node_id!r}") from None

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._g

    def __iter__(self) -> Iterator[str]:
        return iter(self._g.nodes)

    def __len__(self) -> int:
        return self._g.number_of_nodes()

    def items(self) -> Iterator[tuple[str, Node]]:
        """(id, payload) pairs in insertion order."""
        for node_id, data in self._g.nodes(data=True):
            yield node_id, data["payload"]

    def meta(self, node_id: str) -> dict:
        """The mutable annotation dict of a node (filled by passes, ignored by equality and files)."""
        self[node_id]
        return self._g.nodes[node_id]["meta"]

    def ids(self, kind: type = Node) -> list[str]:
        """Ids of the nodes whose payload is an instance of ``kind``, in insertion order."""
        return [n for n, p in self.items() if isinstance(p, kind)]

    @property
    def inputs(self) -> list[str]:
        return self.ids(Input)

    @property
    def outputs(self) -> list[str]:
        return self.ids(Output)

    @property
    def populations(self) -> list[str]:
        return self.ids(Population)

    @property
    def projections(self) -> list[str]:
        return self.ids(Projection)

    def predecessors(self, node_id: str) -> list[str]:
        return list(self._g.predecessors(node_id))

    def successors(self, node_id: str) -> list[str]:
        return list(self._g.successors(node_id))

    def source(self, node_id: str) -> str:
        """The node a projection or an output reads from."""
        preds = self.predecessors(node_id)
        if len(preds) != 1:
            raise ValidationError(
                f"{self[node_id].kind} '{node_id}': expected exactly one source, got {len(preds)} ({preds})"
            )
        return preds[0]

    def target(self, node_id: str) -> str:
        """The population a projection drives."""
        succ = self.successors(node_id)
        if len(succ) != 1:
            raise ValidationError(
                f"{self[node_id].kind} '{node_id}': expected exactly one target, got {len(succ)} ({succ})"
            )
        return succ[0]

    def _insertion_rank(self) -> dict[str, int]:
        """Node id -> insertion index, cached until the node set changes (``incoming``/``outgoing`` sort by it)."""
        nodes = self._g.nodes
        cached = getattr(self, "_rank_cache", None)
        if cached is None or cached[0] != len(nodes) or cached[1] != next(reversed(self._g._node), None):
            cached = (len(nodes), next(reversed(self._g._node), None), {n: k for k, n in enumerate(nodes)})
            self._rank_cache = cached
        return cached[2]

    def incoming(self, node_id: str) -> list[str]:
        """Projections into a population, in insertion order."""
        order = self._insertion_rank()
        return sorted((p for p in self._g.predecessors(node_id) if isinstance(self[p], Projection)), key=order.get)

    def outgoing(self, node_id: str) -> list[str]:
        """Projections leaving a node, in insertion order."""
        order = self._insertion_rank()
        return sorted((p for p in self._g.successors(node_id) if isinstance(self[p], Projection)), key=order.get)

    def edges(self) -> list[tuple[str, str]]:
        return list(self._g.edges)

    def to_networkx(self) -> nx.DiGraph:
        """A copy of the underlying networkx graph (payloads shared, they are immutable)."""
        return self._g.copy()

    def node_size(self, node_id: str) -> int:
        """Number of neurons / channels a node emits."""
        payload = self[node_id]
        if isinstance(payload, (Input, Output, Population)):
            return payload.size
        if isinstance(payload, Projection):
            return payload.n_post
        raise ValidationError(f"{payload.kind} '{node_id}': has no size")

    # ------------------------------------------------------------ low level
    def add(self, node_id: str, payload: Node, *, source: Optional[str] = None, target: Optional[str] = None) -> str:
        """Add a node.  Projections need ``source`` and ``target``; Outputs need ``source``."""
        if not isinstance(node_id, str) or not node_id or node_id != node_id.strip() or any(ch in node_id for ch in "\n\r\t"):
            raise ValidationError(f"node id: expected a non-empty string without surrounding blanks, got {node_id!r}")
        if node_id in self._g:
            raise ValidationError(f"node id {node_id!r}: a node of that name already exists ({self[node_id].kind})")
        if not isinstance(payload, Node):
            raise ValidationError(f"node '{node_id}': expected an ntgraph.ir node payload, got {type(payload).__name__}")
        needs_source = isinstance(payload, (Projection, Output))
        needs_target = isinstance(payload, Projection)
        for role, value, needed in (("source", source, needs_source), ("target", target, needs_target)):
            if needed and value is None:
                raise ValidationError(f"{payload.kind} '{node_id}'.{role}: expected a node id, got None")
            if not needed and value is not None:
                raise ValidationError(f"{payload.kind} '{node_id}'.{role}: a {payload.kind} takes no {role}")
            if value is not None and value not in self._g:
                raise ValidationError(f"{payload.kind} '{node_id}'.{role}: no node {value!r} in graph '{self.name}'")
        self._g.add_node(node_id, payload=payload, meta={})
        if source is not None:
            self._g.add_edge(source, node_id)
        if target is not None:
            self._g.add_edge(node_id, target)
        return node_id

    def with_payload(self, node_id: str, payload: Node) -> "Graph":
        """A copy of the graph with one node's payload replaced (the original is untouched)."""
        old = self[node_id]
        if type(old) is not type(payload) and not (isinstance(old, Projection) and isinstance(payload, Projection)):
            raise ValidationError(f"{old.kind} '{node_id}': cannot replace it by a {payload.kind}")
        new = self.copy()
        new._g.nodes[node_id]["payload"] = payload
        return new

    def copy(self) -> "Graph":
        """A copy sharing the immutable payloads; ``meta`` dicts are deep-copied."""
        new = Graph(self.name, self.seed)
        for node_id, data in self._g.nodes(data=True):
            new._g.add_node(node_id, payload=data["payload"], meta=copy.deepcopy(data["meta"]))
        new._g.add_edges_from(self._g.edges)
        new.attrs = copy.deepcopy(self.attrs)
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (
            self.name == other.name
            and list(self) == list(other)
            and self.edges() == other.edges()
            and all(self[n] == other[n] for n in self)
        )

    __hash__ = None  # type: ignore[assignment]

    # -------------------------------------------------------------- builder
    def rng(self, node_id: str) -> np.random.Generator:
        """The random stream of a node: seeded by (graph seed, node id)."""
        return np.random.default_rng([self.seed, zlib.crc32(node_id.encode())])

    def input(self, name: str, size: int, *, excitatory: Union[None, float, ArrayLike] = None) -> str:
        """Add an external input of ``size`` channels.

        ``excitatory``: Dale's law for the channels, as a fraction of excitatory
        channels or an array of +1/-1 (see :meth:`population`).
        """
        try:
            payload = Input(size=size, constraints=self._dale(size, excitatory))
        except ValidationError as exc:
            raise _node_error("Input", name, exc) from None
        return self.add(name, payload)

    def population(
        self,
        name: str,
        model: NeuronModel,
        size: int,
        *,
        excitatory: Union[None, float, ArrayLike] = None,
        learnable: Sequence[str] = (),
    ) -> str:
        """Add ``size`` neurons of ``model``.

        ``excitatory`` turns on Dale's law: a float is the excitatory fraction
        (the first ``round(f*size)`` neurons are excitatory, the rest
        inhibitory), an array gives +1/-1 (or True/False) per neuron.
        ``learnable`` names model parameters a trainer may change.
        """
        try:
            payload = Population(model=model, size=size, constraints=self._dale(size, excitatory), learnable=tuple(learnable))
        except ValidationError as exc:
            raise _node_error("Population", name, exc) from None
        _check_payload(name, payload)  # tau <= 0, NaN thresholds: fail here, not at compile time
        return self.add(name, payload)

    def output(self, name: str, source: str) -> str:
        """Expose the primary output of ``source`` (spikes, voltage or rate) as ``name``."""
        self._require(source, (Input, Population), "Output", name, "source")
        return self.add(name, Output(size=self.node_size(source)), source=source)

    def dense(
        self,
        source: str,
        target: str,
        weight: Optional[ArrayLike] = None,
        *,
        init: str = "normal",
        scale: Optional[float] = None,
        bias: Optional[ArrayLike] = None,
        delay: Optional[int] = None,
        p: Optional[float] = None,
        mask: Optional[ArrayLike] = None,
        sign: Optional[ArrayLike] = None,
        no_self: bool = False,
        bounds: Optional[tuple[float, float]] = None,
        balanced: Union[bool, ArrayLike] = False,
        learnable: Optional[Sequence[str]] = None,
        name: Optional[str] = None,
    ) -> str:
        """Add a dense (optionally masked) projection ``source -> target``.

        Weights: ``weight`` (shape ``(n_post, n_pre)``) or a random ``init``
        (``"normal"``: N(0, scale^2); ``"uniform"``: U(-scale, scale);
        ``"zeros"``), ``scale`` defaulting to ``1/sqrt(fan_in)``.  The weights
        are then mapped onto the constraints (signs by magnitude, masked to 0,
        clipped to ``bounds``).

        Constraints: ``p`` (random connectivity with probability p) or ``mask``
        (boolean ``(n_post, n_pre)``); ``sign`` (fixed signs, 0 = free);
        ``no_self`` (no neuron connects to itself; source must be target);
        ``bounds=(low, high)``; ``balanced`` (E/I balanced initialisation;
        True for equal rates or an array of presynaptic rates; needs Dale's law
        on the source).  Dale's law comes from the source node.

        ``delay`` (steps) defaults to 1 when a delay of 0 would close a cycle of
        undelayed projections (recurrent and self-projections), else 0.
        """
        n_pre, n_post = self._sizes(source, target, name or f"{source}->{target}")
        node_id = self._projection_id(source, target, name)
        rng = self.rng(node_id)
        cons: list = []
        if p is not None and mask is not None:
            raise ValidationError(f"Dense '{node_id}': give either p or mask, not both")
        if p is not None:
            if not 0.0 < float(p) <= 1.0:
                raise ValidationError(f"Dense '{node_id}'.p: expected a connection probability in (0, 1], got {p!r}")
            mask = rng.random((n_post, n_pre)) < float(p)
        try:
            if mask is not None:
                cons.append(C.ConnectivityMask(mask))
            if sign is not None:
                cons.append(C.SignMask(sign))
            if no_self:
                cons.append(C.NoSelfConnections())
            if bounds is not None:
                cons.append(_bounds(bounds))
            if balanced is not False and balanced is not None:
                cons.append(C.BalancedInit(None if balanced is True else balanced))
        except ValidationError as exc:
            raise _node_error("Dense", node_id, exc) from None
        if weight is None:
            fan_in = max(1.0, n_pre * (float(np.mean(mask)) if mask is not None else 1.0))
            weight = self._init_weight(node_id, init, (n_post, n_pre), scale, fan_in, rng)
        try:
            payload = Dense(weight=weight, bias=bias, constraints=tuple(cons),
                            learnable=tuple(learnable) if learnable is not None else (("weight", "bias") if bias is not None else ("weight",)))
        except ValidationError as exc:
            raise _node_error("Dense", node_id, exc) from None
        return self._add_projection(node_id, payload, source, target, delay)

    def sparse(
        self,
        source: str,
        target: str,
        *,
        p: Optional[float] = None,
        post_index: Optional[ArrayLike] = None,
        pre_index: Optional[ArrayLike] = None,
        weight: Optional[ArrayLike] = None,
        init: str = "normal",
        scale: Optional[float] = None,
        delay: Optional[int] = None,
        bounds: Optional[tuple[float, float]] = None,
        learnable: Sequence[str] = ("weight",),
        name: Optional[str] = None,
    ) -> str:
        """Add a sparse projection stored as a synapse list (for large, sparse networks).

        Either ``p`` (each of the ``n_post*n_pre`` synapses exists with
        probability p, drawn without building a dense matrix) or explicit
        ``post_index``/``pre_index``.  Weights as in :meth:`dense` with
        ``fan_in = p*n_pre``; Dale's law of the source and ``bounds`` apply.
        """
        n_pre, n_post = self._sizes(source, target, name or f"{source}->{target}")
        node_id = self._projection_id(source, target, name)
        rng = self.rng(node_id)
        if (p is None) == (post_index is None or pre_index is None):
            raise ValidationError(f"Sparse '{node_id}': give either p or both post_index and pre_index")
        if p is not None:
            if not 0.0 < float(p) <= 1.0:
                raise ValidationError(f"Sparse '{node_id}'.p: expected a connection probability in (0, 1], got {p!r}")
            total = n_post * n_pre
            nnz = int(rng.binomial(total, float(p)))
            flat = np.sort(rng.choice(total, size=nnz, replace=False))
            post_index, pre_index = flat // n_pre, flat % n_pre
        n_syn = len(np.asarray(post_index))
        if weight is None:
            fan_in = max(1.0, n_syn / n_post)
            weight = self._init_weight(node_id, init, (n_syn,), scale, fan_in, rng)
        try:
            cons = (_bounds(bounds),) if bounds is not None else ()
            payload = Sparse(weight=weight, post_index=post_index, pre_index=pre_index, n_post=n_post, n_pre=n_pre,
                             constraints=cons, learnable=tuple(learnable))
        except ValidationError as exc:
            raise _node_error("Sparse", node_id, exc) from None
        return self._add_projection(node_id, payload, source, target, delay)

    def one_to_one(
        self,
        source: str,
        target: str,
        weight: ArrayLike = 1.0,
        *,
        delay: Optional[int] = None,
        bounds: Optional[tuple[float, float]] = None,
        learnable: Sequence[str] = ("weight",),
        name: Optional[str] = None,
    ) -> str:
        """Add a one-to-one projection: source neuron k drives target neuron k with ``weight[k]``."""
        n_pre, n_post = self._sizes(source, target, name or f"{source}->{target}")
        node_id = self._projection_id(source, target, name)
        if n_pre != n_post:
            raise ValidationError(
                f"OneToOne '{node_id}': source '{source}' has {n_pre} neurons but target '{target}' has {n_post}; expected equal sizes"
            )
        w = np.broadcast_to(np.asarray(weight, dtype=np.float64), (n_post,)) if np.ndim(weight) == 0 else weight
        try:
            cons = (_bounds(bounds),) if bounds is not None else ()
            payload = OneToOne(weight=w, constraints=cons, learnable=tuple(learnable))
        except ValidationError as exc:
            raise _node_error("OneToOne", node_id, exc) from None
        return self._add_projection(node_id, payload, source, target, delay)

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _dale(size: Any, excitatory: Any) -> tuple:
        if excitatory is None:
            return ()
        if np.ndim(excitatory) == 0 and not isinstance(excitatory, (bool, np.bool_)):
            return (C.DalesLaw.from_fraction(int(size), float(excitatory)),)
        arr = np.asarray(excitatory)
        if arr.dtype == bool:
            arr = np.where(arr, 1, -1)
        return (C.DalesLaw(arr),)

    def _require(self, node_id: str, kinds: tuple, kind: str, name: str, role: str) -> Node:
        if node_id not in self._g:
            raise ValidationError(f"{kind} '{name}'.{role}: no node {node_id!r} in graph '{self.name}'")
        payload = self[node_id]
        if not isinstance(payload, kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            article = "an" if expected[0] in "AEIOU" else "a"
            raise ValidationError(f"{kind} '{name}'.{role}: expected {article} {expected}, got {payload.kind} '{node_id}'")
        return payload

    def _sizes(self, source: str, target: str, name: str) -> tuple[int, int]:
        self._require(source, (Input, Population), "Projection", name, "source")
        self._require(target, (Population,), "Projection", name, "target")
        return self.node_size(source), self.node_size(target)

    def _projection_id(self, source: str, target: str, name: Optional[str]) -> str:
        if name is not None:
            return name
        base = f"{source}->{target}"
        node_id, k = base, 2
        while node_id in self._g:
            node_id, k = f"{base}#{k}", k + 1
        return node_id

    @staticmethod
    def _init_weight(node_id: str, init: str, shape: tuple, scale: Optional[float], fan_in: float,
                     rng: np.random.Generator) -> np.ndarray:
        s = 1.0 / np.sqrt(fan_in) if scale is None else float(scale)
        if init == "normal":
            return rng.normal(0.0, s, size=shape)
        if init == "uniform":
            return rng.uniform(-s, s, size=shape)
        if init == "zeros":
            return np.zeros(shape)
        raise ValidationError(f"Projection '{node_id}'.init: expected one of {', '.join(map(repr, WEIGHT_INITS))}, got {init!r}")

    def _closes_instant_cycle(self, source: str, target: str) -> bool:
        """Would an undelayed projection source -> target close a cycle of undelayed projections?"""
        if source == target:
            return True
        # Depth-first search from target over undelayed nodes, on the raw adjacency (O(nodes reached); a
        # filtered networkx view made building a 1000-population graph quadratic, benchmarks/compile_time.py).
        nodes, succ = self._g._node, self._g._succ  # networkx's plain dicts: views cost ~10x per lookup
        for n in (target, source):
            payload = nodes[n]["payload"] if n in nodes else None
            if payload is None or (isinstance(payload, Projection) and payload.delay > 0):
                return False
        seen, stack = {target}, [target]
        while stack:
            for nxt in succ[stack.pop()]:
                if nxt in seen:
                    continue
                if nxt == source:
                    return True
                seen.add(nxt)
                payload = nodes[nxt]["payload"]
                if not (isinstance(payload, Projection) and payload.delay > 0):
                    stack.append(nxt)
        return False

    def _add_projection(self, node_id: str, payload: Projection, source: str, target: str, delay: Optional[int]) -> str:
        if delay is None:
            delay = 1 if self._closes_instant_cycle(source, target) else 0
        try:
            payload = payload.replace(delay=delay)
        except ValidationError as exc:
            raise _node_error(payload.kind, node_id, exc) from None
        _check_payload(node_id, payload)  # NaN/inf weights or biases: fail here, before the constraint map
        n_pre, n_post = self.node_size(source), self.node_size(target)
        if (payload.n_post, payload.n_pre) != (n_post, n_pre):
            raise ShapeError(
                f"{payload.kind} '{node_id}'.weight: expected (n_post, n_pre) = ({n_post}, {n_pre}) for '{source}' "
                f"({n_pre}) -> '{target}' ({n_post}), got ({payload.n_post}, {payload.n_pre}) from weight of shape "
                f"{payload.weight.shape}"
            )
        src = self[source]
        dale = getattr(src, "dale", None)
        rc = C.resolve(node_id, payload, dale, source == target)
        # No constraint: the weights are already on the (empty) constraint set; keep the frozen array, no copy
        weight = payload.weight if rc.trivial else C.project_weights(payload.weight, rc)
        balance = next((c for c in payload.constraints if isinstance(c, C.BalancedInit)), None)
        if balance is not None:
            if dale is None:
                raise ValidationError(
                    f"{payload.kind} '{node_id}'.BalancedInit: needs Dale's law on the source '{source}' "
                    f"(pass excitatory=... when adding it)"
                )
            if balance.pre_rates is not None and balance.pre_rates.shape != (payload.n_pre,):
                raise ValidationError(
                    f"{payload.kind} '{node_id}'.BalancedInit.pre_rates: expected shape ({payload.n_pre},), got {balance.pre_rates.shape}"
                )
            if not isinstance(payload, Dense):
                raise ValidationError(f"{payload.kind} '{node_id}'.BalancedInit: only Dense projections support it")
            weight = C.project_weights(C.balance_ei(weight, dale.sign, balance.pre_rates, node_id), rc)
        return self.add(node_id, payload.replace(weight=weight), source=source, target=target)

    # ------------------------------------------------------------ printing
    def __repr__(self) -> str:
        return f"<Graph '{self.name}': {len(self)} nodes>"

    def __str__(self) -> str:
        width = max([len(n) for n in self] + [4])
        lines = [f"Graph '{self.name}' ({len(self)} nodes)"]
        for node_id, payload in self.items():
            detail = payload.describe()
            if isinstance(payload, Projection):
                detail = f"{self.source(node_id)} -> {self.target(node_id)}  {detail}"
            elif isinstance(payload, Output):
                detail = f"<- {self.source(node_id)}  {detail}"
            cons = self._constraint_text(node_id)
            if cons:
                detail += f"  [{cons}]"
            lines.append(f"  {node_id:<{width}}  {payload.kind:<10}  {detail}")
        return "\n".join(lines)

    def summary(self) -> str:
        """A table of every node: type, model, size, neurons, synapses, delay, constraints, learnable."""
        header = ("node", "type", "model", "size", "neurons", "synapses", "delay", "constraints", "learnable")
        rows = []
        neurons = synapses = 0
        for node_id, payload in self.items():
            model = size = n_neurons = n_syn = delay = ""
            learn = ",".join(getattr(payload, "learnable", ()))
            if isinstance(payload, Population):
                model, size, n_neurons = type(payload.model).__name__, str(payload.size), str(payload.size)
                neurons += payload.size
            elif isinstance(payload, (Input, Output)):
                size = str(payload.size)
            elif isinstance(payload, Projection):
                size = f"{payload.n_pre}->{payload.n_post}"
                n_syn, delay = str(payload.n_synapses), str(payload.delay)
                synapses += payload.n_synapses
            rows.append((node_id, payload.kind, model, size, n_neurons, n_syn, delay, self._constraint_text(node_id), learn))
        rows.append(("total", "", "", "", str(neurons), str(synapses), "", "", ""))
        widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        rule = "  ".join("-" * w for w in widths)
        lines = [f"Graph '{self.name}'", fmt.format(*header), rule]
        lines += [fmt.format(*r).rstrip() for r in rows[:-1]]
        lines += [rule, fmt.format(*rows[-1]).rstrip()]
        return "\n".join(lines)

    def _constraint_text(self, node_id: str) -> str:
        payload = self[node_id]
        parts = [c.describe() for c in getattr(payload, "constraints", ())]
        if isinstance(payload, Projection) and getattr(self[self.source(node_id)], "dale", None) is not None:
            parts.insert(0, "Dale (source)")
        return ", ".join(parts)
