"""lstm1997::lstm under torch.func transforms (grad, vjp, jacrev, jvp, jacfwd, vmap, and their
compositions).

The op's autograd is a C++ ``torch::autograd::Function`` (csrc/autograd.cpp), which TorchScript and
LibTorch programs need, and which functorch refuses by design: ``Function::apply`` checks that no
functorch layer is active ("cannot use C++ torch::autograd::Function with functorch transforms").
PyTorch's own answer for custom ops, ``torch.library.register_autograd`` / ``register_vmap``, does
not serve here: both refuse a schema with a keyword-only tensor (``batch_sizes``), and a Python
kernel at the ``Autograd`` key would replace the C++ autograd for the whole process.

So the op gets one more kernel, at ``FuncTorchDynamicLayerFrontMode``: the key that the dispatcher
reaches only while a functorch transform is active (functorch includes it in the thread's dispatch
keys when it pushes a layer), above Autograd and FuncTorchBatched. It hands the call to a Python
``torch.autograd.Function`` with ``setup_context`` and a ``vmap`` rule, which functorch knows how to
differentiate and batch, level by level. Outside transforms nothing changes: eager calls,
TorchScript and LibTorch reach the C++ autograd as before.

The vmap rule runs a batch of E members in one call of the layer when the weights are shared (the
inputs, h0 and s0 batched: per-sample gradients, a batch of sequences): the members become more
rows of the batch. Members with weights of their own (an ensemble: stacked weights) run in one
call of _lstm_ensemble_forward and one of _lstm_ensemble_backward, which take the members in front
(on the CPU, members of the paper's sizes run together on the tiny-layer path). Those two ops are
not differentiable: under a transform that differentiates the rule's results (grad of a vmapped
ensemble), members run one differentiable call each.

First-order gradients come from the fast ops (_lstm_forward, _lstm_backward, _lstm_net_errors).
Forward mode, and the derivatives of a gradient (grad of grad, hessian), go through
_lstm_differentiable: the layer as a composition of ATen ops, which torch.func differentiates by
itself (slower, but only where such a derivative is asked for).
"""
import inspect
import types
from typing import Optional

import torch
from torch import Tensor

_LIBRARY = torch.library.Library("lstm1997", "IMPL")  # kept alive: its kernels live with it

# Positions in the argument lists of _LayerFunction.apply and _BackwardFunction.apply.
_TENSORS = 7  # input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0
_WEIGHTS = (1, 2, 3, 4)
_BATCH_SIZES = 9
_BACKWARD_WEIGHTS = (4, 5)
_BACKWARD_BATCH_SIZES = 13
# Ensembles through the ensemble ops (tests turn it off to check the per-member path).
_ENSEMBLE_OP = True


def _member(tensor: Optional[Tensor], dim: Optional[int], index: int) -> Optional[Tensor]:
    return tensor if tensor is None or dim is None else tensor.select(dim, index)


def _members_first(tensor: Optional[Tensor], dim: Optional[int], count: int) -> Optional[Tensor]:
    """The member dimension of a batched argument at the front; an unbatched one repeated."""
    if tensor is None:
        return None
    if dim is None:
        return tensor.expand(count, *tensor.shape)
    return tensor.movedim(dim, 0)


def _fold_rows(tensor: Tensor, dim: Optional[int], count: int, packed: bool) -> Tensor:
    """A per-step argument of E members as more batch rows of one call, the member index the
    fastest (row b * E + e): (T, B * E, F), or packed (N * E, F). With packed input the rows
    active at a step then stay a prefix of the batch (batch_sizes times E)."""
    x = _members_first(tensor, dim, count).movedim(0, -2)  # (T, B, E, F) or (N, E, F)
    return x.reshape(-1, x.shape[-1]) if packed else x.reshape(x.shape[0], -1, x.shape[-1])


def _fold_state(state: Optional[Tensor], dim: Optional[int], count: int) -> Optional[Tensor]:
    """(E, B, F) -> (B * E, F), rows as _fold_rows makes them."""
    state = _members_first(state, dim, count)
    return None if state is None else state.transpose(0, 1).reshape(-1, state.shape[-1])


def _unfold(tensor: Tensor, count: int) -> Tensor:
    """Folded rows b * E + e back to (..., B, E, F)."""
    return tensor.unflatten(tensor.dim() - 2, (-1, count))


def _recurrent_width(hidden_size: int, cells_per_block: int, gate_feedback: bool) -> int:
    """R, the columns of weight_hh (lstm1997.h)."""
    return hidden_size + 2 * (hidden_size // cells_per_block) if gate_feedback else hidden_size


def _composite_vjp(primals, cotangents, batch_sizes, options):
    """The gradients of the layer's outputs (cotangents: output, h_n, s_n) with respect to the
    seven primals (input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0; None where absent),
    through _lstm_differentiable, the layer as ATen ops: differentiable again, by autograd and by
    torch.func."""
    present = [i for i, p in enumerate(primals) if p is not None]
    _, pullback = torch.func.vjp(_composite_of(primals, present, batch_sizes, options),
                                 *(primals[i] for i in present))
    gradients = [None] * len(primals)
    for i, gradient in zip(present, pullback(tuple(cotangents))):
        gradients[i] = gradient
    return gradients


def _composite_of(primals, present, batch_sizes, options):
    """The layer's outputs as a function of the primals at positions `present`."""
    truncate, activation, cells_per_block, gate_feedback = options

    def outputs(*tensors):
        arguments = list(primals)
        for i, tensor in zip(present, tensors):
            arguments[i] = tensor
        return torch.ops.lstm1997._lstm_differentiable(
            *arguments, truncate=truncate, activation=activation, batch_sizes=batch_sizes,
            cells_per_block=cells_per_block, gate_feedback=gate_feedback)
    return outputs


def _with_signature(forward):
    """`forward` as a Function's staticmethod, its signature computed once: Function.apply binds
    its arguments to forward's signature on every call, and inspect.signature takes a stored
    __signature__ instead of parsing the function again."""
    forward.__signature__ = inspect.signature(forward)
    return staticmethod(forward)


def _forward_call(op):
    """The forward of the layer Functions: `op` (_lstm_forward or _lstm_ensemble_forward) on the
    Function's arguments."""
    def forward(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, truncate, activation,
                batch_sizes, cells_per_block, gate_feedback):
        return op(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, activation=activation,
                  batch_sizes=batch_sizes, cells_per_block=cells_per_block,
                  gate_feedback=gate_feedback)
    return _with_signature(forward)


def _backward_call(op):
    """The forward of the backward Functions: `op` (_lstm_backward or _lstm_ensemble_backward)
    on the Function's arguments (the biases and s0 are there for the double backward)."""
    def forward(grad_output, grad_h_n, grad_s_n, input, weight_ih, weight_hh, bias_ih, bias_hh,
                h0, s0, output, squashed_state, gates, batch_sizes, mask, truncate, activation,
                cells_per_block, gate_feedback):
        return op(grad_output, grad_h_n, grad_s_n, input, weight_ih, weight_hh, h0, output,
                  squashed_state, gates, truncate=truncate, activation=activation,
                  batch_sizes=batch_sizes, output_mask=mask, cells_per_block=cells_per_block,
                  gate_feedback=gate_feedback)
    return _with_signature(forward)


def _layer_gradients(ctx, grad_input, grad_weight_ih, grad_weight_hh, grad_bias, grad_h0,
                     grad_s0):
    """_lstm_backward's results as the gradients of the layer Functions' twelve arguments."""
    has_bias_ih, has_bias_hh, has_h0, has_s0 = ctx.given
    grad_bias_hh = None
    if has_bias_hh and grad_bias is not None:
        # Each bias its own tensor, as the C++ autograd gives (in-place users of .grad).
        grad_bias_hh = grad_bias.clone() if has_bias_ih else grad_bias
    return (grad_input, grad_weight_ih, grad_weight_hh, grad_bias if has_bias_ih else None,
            grad_bias_hh, grad_h0 if has_h0 else None, grad_s0 if has_s0 else None,
            None, None, None, None, None)


class _LayerFunction(torch.autograd.Function):
    """lstm1997::lstm for functorch: _lstm_forward, _lstm_backward and a batching rule. Returns
    the op's three results and what the forward saves for backward (not differentiable)."""

    forward = _forward_call(torch.ops.lstm1997._lstm_forward)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, truncate, activation, batch_sizes,
         cells_per_block, gate_feedback) = inputs
        out, _, _, squashed_state, gates = output
        ctx.mark_non_differentiable(squashed_state, gates)
        ctx.save_for_backward(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, out,
                              squashed_state, gates)
        ctx.save_for_forward(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0)
        ctx.batch_sizes = batch_sizes
        ctx.options = (truncate, activation, cells_per_block, gate_feedback)
        ctx.given = (bias_ih is not None, bias_hh is not None, h0 is not None, s0 is not None)

    @staticmethod
    def backward(ctx, grad_output, grad_h_n, grad_s_n, _grad_squashed_state, _grad_gates):
        needs = ctx.needs_input_grad
        mask = [needs[0], needs[1], needs[2], needs[3] or needs[4]]
        return _layer_gradients(ctx, *_BackwardFunction.apply(
            grad_output, grad_h_n, grad_s_n, *ctx.saved_tensors, ctx.batch_sizes, mask,
            *ctx.options))

    @staticmethod
    def jvp(ctx, *tangents):
        """Forward-mode AD (torch.func.jvp, jacfwd, hessian) through _lstm_differentiable."""
        _refuse_nested_forward_mode()
        primals = ctx.saved_tensors
        present = [i for i, p in enumerate(primals) if p is not None]
        outputs = _composite_of(primals, present, ctx.batch_sizes, ctx.options)
        _, (output, h_n, s_n) = torch.func.jvp(
            outputs, tuple(primals[i] for i in present),
            tuple(torch.zeros_like(primals[i]) if tangents[i] is None else tangents[i].contiguous()
                  for i in present))
        return output, h_n, s_n, None, None

    @staticmethod
    def vmap(info, in_dims, *args):
        if in_dims[_BATCH_SIZES] is not None:
            raise ValueError("lstm1997: batch_sizes: expected one batch_sizes for every member of "
                             "a vmap (as a PackedSequence's, on the CPU), got a batched tensor")
        count = info.batch_size
        if any(in_dims[i] is not None for i in _WEIGHTS):
            if _ENSEMBLE_OP and not _wrapped(args):
                return _ensemble_forward(count, in_dims, *args)
            # Members with weights of their own, under a transform outside this one: one call
            # each, through _LayerFunction, which every transform knows.
            results = [_LayerFunction.apply(*(_member(a, d, e) if i < _TENSORS else a
                                              for i, (a, d) in enumerate(zip(args, in_dims))))
                       for e in range(count)]
            return tuple(torch.stack(r) for r in zip(*results)), (0,) * 5
        return _fold_members(count, in_dims, *args)


def _fold_members(count, in_dims, input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0,
                  truncate, activation, batch_sizes, cells_per_block, gate_feedback):
    """Shared weights: the E members' sequences are E times the batch rows of one call."""
    packed = batch_sizes is not None
    output, h_n, s_n, squashed_state, gates = _LayerFunction.apply(
        _fold_rows(input, in_dims[0], count, packed), weight_ih, weight_hh, bias_ih, bias_hh,
        _fold_state(h0, in_dims[5], count), _fold_state(s0, in_dims[6], count), truncate,
        activation, batch_sizes * count if packed else None, cells_per_block, gate_feedback)
    per_step_dim = 1 if packed else 2
    return (tuple(_unfold(t, count) for t in (output, h_n, s_n, squashed_state, gates)),
            (per_step_dim, 1, 1, per_step_dim, per_step_dim))


class _BackwardFunction(torch.autograd.Function):
    """_lstm_backward for functorch, with a batching rule."""

    forward = _backward_call(torch.ops.lstm1997._lstm_backward)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:10])  # the output errors and the seven primals
        ctx.save_for_forward(*inputs[:10])
        ctx.batch_sizes = inputs[13]
        ctx.mask = inputs[14]
        ctx.options = inputs[15:]

    @staticmethod
    def backward(ctx, *cotangents):
        """Double backward: the gradients of the first-order gradients, as functions of the output
        errors and the primals, recomputed through _lstm_differentiable."""
        arguments, outputs, gradients_of = _gradient_function(ctx)
        _, pullback = torch.func.vjp(gradients_of, *arguments)
        results = pullback(tuple(
            torch.zeros_like(like) if cotangents[k] is None else cotangents[k]
            for k, like in outputs))
        return _per_input(ctx, results)

    @staticmethod
    def jvp(ctx, *tangents):
        """Forward-mode AD of the first-order gradients (torch.func.hessian, jacfwd of jacrev)."""
        _refuse_nested_forward_mode()
        arguments, outputs, gradients_of = _gradient_function(ctx)
        primals = ctx.saved_tensors
        argument_tangents = [tangents[i] for i in range(3)] + [
            tangents[3 + i] for i, p in enumerate(primals[3:]) if p is not None]
        # Primals and tangents may be expanded views, which a dual tensor cannot take.
        arguments = tuple(a.contiguous() for a in arguments)
        _, result = torch.func.jvp(gradients_of, arguments, tuple(
            torch.zeros_like(a) if t is None else t.contiguous()
            for a, t in zip(arguments, argument_tangents)))
        per_output = [None] * 6
        for (k, _), tangent in zip(outputs, result):
            per_output[k] = tangent
        return tuple(per_output)

    @staticmethod
    def vmap(info, in_dims, *args):
        if in_dims[_BACKWARD_BATCH_SIZES] is not None:
            raise ValueError("lstm1997: batch_sizes: expected one batch_sizes for every member of "
                             "a vmap, got a batched tensor")
        weights_batched = any(in_dims[i] is not None for i in _BACKWARD_WEIGHTS)
        if weights_batched and _ENSEMBLE_OP and not _wrapped(args):
            return _ensemble_backward(info.batch_size, in_dims, *args)
        if weights_batched or _differentiated(args):
            # Members with weights of their own, or a transform outside this one that
            # differentiates the result (jacrev of jacrev, hessian): one call each, through
            # _BackwardFunction, which is differentiable (_member_gradients is not).
            results = [
                _BackwardFunction.apply(*(_member(a, d, e) if i < _BACKWARD_BATCH_SIZES else a
                                          for i, (a, d) in enumerate(zip(args, in_dims))))
                for e in range(info.batch_size)]
            stacked = tuple(None if r[0] is None else torch.stack(r) for r in zip(*results))
            return stacked, tuple(None if r is None else 0 for r in stacked)
        return _member_gradients(info.batch_size, in_dims, *args)



def _ensemble_forward(count, in_dims, input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0,
                      truncate, activation, batch_sizes, cells_per_block, gate_feedback):
    """Members with weights of their own: every member's forward in one _lstm_ensemble_forward
    call (an argument the members share is expanded to each, as a view), through
    _EnsembleFunction for autograd outside the vmap (stacked parameters that require grad)."""
    results = _EnsembleFunction.apply(
        *(_members_first(t, d, count) for t, d in zip(
            (input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0), in_dims)),
        truncate, activation, batch_sizes, cells_per_block, gate_feedback)
    return results, (0,) * 5


class _EnsembleFunction(torch.autograd.Function):
    """_lstm_ensemble_forward for autograd (members in front), as _LayerFunction is
    _lstm_forward's; reached only where no functorch transform wraps its arguments. The backward
    is _EnsembleBackwardFunction's one call."""

    forward = _forward_call(torch.ops.lstm1997._lstm_ensemble_forward)

    setup_context = staticmethod(_LayerFunction.setup_context)

    @staticmethod
    def backward(ctx, grad_output, grad_h_n, grad_s_n, _grad_squashed_state, _grad_gates):
        needs = ctx.needs_input_grad
        mask = [needs[0], needs[1], needs[2], needs[3] or needs[4]]
        gradients = _EnsembleBackwardFunction.apply(
            grad_output, grad_h_n, grad_s_n, *ctx.saved_tensors, ctx.batch_sizes, mask,
            *ctx.options)
        return _layer_gradients(ctx, *gradients)


def _ensemble_backward(count, in_dims, *args):
    """Members with weights of their own: every member's _lstm_backward in one
    _lstm_ensemble_backward call, through _EnsembleBackwardFunction."""
    tensors = [_members_first(t, d, count)
               for t, d in zip(args[:_BACKWARD_BATCH_SIZES], in_dims)]
    results = _EnsembleBackwardFunction.apply(*tensors, *args[_BACKWARD_BATCH_SIZES:])
    return results, tuple(None if r is None else 0 for r in results)


class _EnsembleBackwardFunction(torch.autograd.Function):
    """_lstm_ensemble_backward for autograd, as _BackwardFunction is _lstm_backward's (members
    in front); reached only where no functorch transform wraps its arguments. Its own backward
    (a double backward through autograd outside the vmap) is _BackwardFunction's, member by
    member."""

    forward = _backward_call(torch.ops.lstm1997._lstm_ensemble_backward)

    setup_context = staticmethod(_BackwardFunction.setup_context)

    @staticmethod
    def backward(ctx, *cotangents):
        saved = ctx.saved_tensors
        per_member = []
        for e in range(saved[0].shape[0]):
            member = types.SimpleNamespace(
                saved_tensors=tuple(None if t is None else t[e] for t in saved),
                batch_sizes=ctx.batch_sizes, mask=ctx.mask, options=ctx.options)
            per_member.append(_BackwardFunction.backward(
                member, *(None if c is None else c[e] for c in cotangents)))
        return tuple(None if g[0] is None else torch.stack(g) for g in zip(*per_member))

def _refuse_nested_forward_mode() -> None:
    """Forward mode within forward mode (jvp of jvp, jacfwd of jacfwd) gives wrong second
    derivatives through these Functions' jvp rules: refused rather than answered wrongly."""
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
    from torch._C._functorch import TransformType

    levels = [i.key() for i in retrieve_all_functorch_interpreters()]
    if levels.count(TransformType.Jvp) > 1:
        raise NotImplementedError(
            "lstm1997: forward-mode AD of forward-mode AD (jvp of jvp, jacfwd of jacfwd) is not "
            "supported; for second derivatives use reverse mode inside: torch.func.hessian "
            "(jacfwd of jacrev), jacrev of jacrev, or grad of grad")


def _wrapped(args) -> bool:
    """Whether a functorch transform outside a batching rule sees what the rule computes: some
    argument is still wrapped by an outer level."""
    return any(isinstance(a, Tensor) and torch._C._functorch.is_functorch_wrapped_tensor(a)
               for a in args)


def _differentiated(args) -> bool:
    """Whether a transform or autograd outside a batching rule records what the rule computes:
    some argument is still wrapped by an outer functorch level, or requires grad. (torch.func's
    recipes pass detached parameters: {k: v.detach() for k, v in model.named_parameters()}.)"""
    return _wrapped(args) or any(isinstance(a, Tensor) and torch.is_grad_enabled() and
                                 a.requires_grad for a in args)


def _gradient_function(ctx):
    """What _lstm_backward computed, as a differentiable function (through _lstm_differentiable)
    of the output errors and the primals given: (its arguments, [(k, a tensor shaped like output
    k) for each output k computed], the function). Without h0 or s0 the layer starts from zeros,
    and _lstm_backward's grad_h0 and grad_s0 are the gradients with respect to those zeros."""
    grad_output, grad_h_n, grad_s_n, *primals = ctx.saved_tensors
    present = [i for i, p in enumerate(primals) if p is not None]
    filled = list(primals)
    filled[5] = torch.zeros_like(grad_h_n) if primals[5] is None else primals[5]
    filled[6] = torch.zeros_like(grad_s_n) if primals[6] is None else primals[6]
    bias = 3 if primals[3] is not None else 4
    # _lstm_backward's outputs: grad_input, grad_weight_ih, grad_weight_hh, grad_bias (as its
    # mask asked), grad_h0, grad_s0; each the gradient of one primal.
    outputs = [(k, p) for k, p in enumerate((0, 1, 2, bias, 5, 6)) if k >= 4 or ctx.mask[k]]

    def gradients_of(grad_output, grad_h_n, grad_s_n, *tensors):
        arguments = list(filled)
        for i, tensor in zip(present, tensors):
            arguments[i] = tensor
        gradients = _composite_vjp(arguments, (grad_output, grad_h_n, grad_s_n),
                                   ctx.batch_sizes, ctx.options)
        return tuple(gradients[p] for _, p in outputs)

    arguments = (grad_output, grad_h_n, grad_s_n, *(primals[i] for i in present))
    return arguments, [(k, filled[p]) for k, p in outputs], gradients_of


def _per_input(ctx, results):
    """The gradients of _gradients_function's arguments, placed among _BackwardFunction's 19."""
    primals = ctx.saved_tensors[3:]
    gradients = [None] * 19
    gradients[:3] = results[:3]
    for i, gradient in zip([i for i, p in enumerate(primals) if p is not None], results[3:]):
        gradients[3 + i] = gradient
    return tuple(gradients)


def _member_gradients(count, in_dims, grad_output, grad_h_n, grad_s_n, input, weight_ih,
                      weight_hh, bias_ih, bias_hh, h0, s0, output, squashed_state, gates,
                      batch_sizes, mask, truncate, activation, cells_per_block, gate_feedback):
    """Shared weights, E members (per-sample gradients): the net-input errors of all members in
    one call, on their rows folded into the batch as the forward's rule folds them; then each
    member's weight gradients as batched products over its own rows."""
    packed = batch_sizes is not None
    f_grad_output, f_input, f_output, f_squashed, f_gates = (
        _fold_rows(t, d, count, packed) for t, d in zip(
            (grad_output, input, output, squashed_state, gates),
            (in_dims[0], in_dims[3], in_dims[10], in_dims[11], in_dims[12])))
    with torch.no_grad():  # the errors of one backward pass (_BackwardFunction.backward: double)
        net_errors, grad_h0, grad_s0 = torch.ops.lstm1997._lstm_net_errors(
            f_grad_output, _fold_state(grad_h_n, in_dims[1], count),
            _fold_state(grad_s_n, in_dims[2], count), f_input, weight_ih, weight_hh,
            _fold_state(h0, in_dims[8], count), f_output, f_squashed, f_gates,
            truncate=truncate, activation=activation,
            batch_sizes=batch_sizes * count if packed else None,
            cells_per_block=cells_per_block, gate_feedback=gate_feedback)

    def per_member(tensor):  # folded rows -> (rows, E, F)
        return tensor.reshape(-1, count, tensor.shape[-1])

    errors = per_member(net_errors)
    grad_input = grad_weight_ih = grad_weight_hh = grad_bias = None
    if mask[0]:
        grad_input = _unfold((net_errors @ weight_ih).view(f_input.shape), count)
    if mask[1]:
        grad_weight_ih = torch.einsum("neg,nei->egi", errors, per_member(f_input))
    if mask[2]:
        batch = int(batch_sizes[0]) if packed else f_input.shape[1] // count
        previous = _previous_recurrent(per_member(f_output), per_member(f_gates), h0, in_dims[8],
                                       count, batch, batch_sizes, cells_per_block, gate_feedback)
        grad_weight_hh = torch.einsum("neg,ner->egr", errors, previous)
    if mask[3]:
        grad_bias = errors.sum(0)
    per_step_dim = 1 if packed else 2
    results = (grad_input, grad_weight_ih, grad_weight_hh, grad_bias, _unfold(grad_h0, count),
               _unfold(grad_s0, count))
    dims = (per_step_dim, 0, 0, 0, 1, 1)
    return results, tuple(None if r is None else d for r, d in zip(results, dims))


def _previous_recurrent(output, gates, h0, h0_dim, count, batch, batch_sizes, cells_per_block,
                        gate_feedback):
    """r_{t-1} of every row, (rows, E, R), from the per-member rows of output and gates: h0
    (zeros when absent) for the rows of the first step, then the recurrent state of the same
    sequence one step earlier (with gate feedback also the gate outputs of its blocks, read at
    each block's first cell, as blocks.h says)."""
    H = output.shape[-1]
    recurrent = output
    if output.shape[0] == 0:  # no steps: no rows
        return output.new_zeros(0, count, _recurrent_width(H, cells_per_block, gate_feedback))
    if gate_feedback:
        S = cells_per_block
        recurrent = torch.cat([gates[..., 0:H:S], output, gates[..., 2 * H:3 * H:S]], -1)
    if h0 is None:
        first = recurrent.new_zeros(batch, count, recurrent.shape[-1])
    else:
        first = _members_first(h0, h0_dim, count).transpose(0, 1)
    if batch_sizes is None:
        later = recurrent[:recurrent.shape[0] - batch]
    else:
        counts = batch_sizes.tolist()
        offsets = [0]
        for n in counts[:-1]:
            offsets.append(offsets[-1] + n)
        rows = [offsets[t - 1] + b for t in range(1, len(counts)) for b in range(counts[t])]
        later = recurrent.index_select(0, torch.tensor(rows, dtype=torch.long,
                                                       device=recurrent.device))
    return torch.cat([first, later], 0)


def _lstm_under_transforms(input, weight_ih, weight_hh, bias_ih=None, bias_hh=None, h0=None,
                           s0=None, *, truncate=True, activation="tanh", batch_sizes=None,
                           cells_per_block=1, gate_feedback=False):
    output, h_n, s_n, _, _ = _LayerFunction.apply(
        input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, truncate, activation, batch_sizes,
        cells_per_block, gate_feedback)
    return output, h_n, s_n


def _lstm_bidirectional_under_transforms(*args, **kwargs):
    """lstm_bidirectional is CompositeImplicitAutograd over lstm. Left to functorch, its
    decomposition would run below the transforms' layers, where lstm reaches the C++ autograd
    Function (which functorch refuses) or vmap's slow fallback; decomposed here, above them, its
    two lstm calls reach _lstm_under_transforms."""
    return torch.ops.lstm1997.lstm_bidirectional.default.decompose(*args, **kwargs)


for _name, _kernel in (("lstm", _lstm_under_transforms),
                       ("lstm_bidirectional", _lstm_bidirectional_under_transforms)):
    if not torch._C._dispatch_has_kernel_for_dispatch_key(f"lstm1997::{_name}",
                                                          "FuncTorchDynamicLayerFrontMode"):
        _LIBRARY.impl(_name, _kernel, "FuncTorchDynamicLayerFrontMode")
