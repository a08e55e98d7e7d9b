"""DCGD with error feedback, EF14 (spec 22, gradient units).

worker i:  v_i = e_i + grad f_i(x^k),  c_i = op(v_i),  e_i <- v_i - c_i      (e_i^0 = 0)
server:    x^{k+1} = x^k - (eta / n) sum_i c_i

The memory is :func:`compress_bench.compressors.chain.error_feedback` around the whole
operator, so the error it keeps is that of Q(C(v)), quantizer included. Virtual iterate:
x~^k = x^k - (eta / n) sum_i e_i^k follows x~^{k+1} = x~^k - (eta / n) sum_i grad f_i(x^k).
An operator that is contractive only after a scaling (TopK + dithering) runs scaled by
1/(1 + omega) (:meth:`Chain.contractive`). Step (``lr=auto``): 1/(delta L), delta the
operator's contraction constant; spec 22 cites linear convergence with a step of that order
(biased-compression paper; the exact constant is not re-checked), so sweep ``lr_mult``.
Bits: those of the operator. References: Seide et al. (2014); Stich, Cordonnier, Jaggi (2018);
Beznosikov, Horvath, Richtarik, Safaryan (2020).
"""

from __future__ import annotations

from compress_bench.compressors.chain import error_feedback
from compress_bench.methods.base import register_method
from compress_bench.methods.dcgd import DCGD


@register_method
class EF14(DCGD):
    name = "ef"

    def __init__(self, operator, *args, d: int, **kwargs):
        # a contractive operator (B3) is what EF's analysis needs: TopK + dithering runs
        # scaled by 1/(1 + omega) (Chain.contractive)
        super().__init__(error_feedback(operator.contractive(d)), *args, d=d, **kwargs)

    def worker(self, x, ev, state, streams, round_index, objective=None):
        out = super().worker(x, ev, state, streams, round_index, objective)
        error_before = state["operator"][0]
        # the diagnostic compares the message with what was compressed: e + g
        return type(out)(out.message, out.state, error_before + ev.grads)

    @classmethod
    def theory_lr(cls, problem, operator) -> float | None:
        delta = operator.contractive(problem.d).constants(problem.d).delta
        return None if delta is None else 1.0 / (delta * problem.smoothness)

    @classmethod
    def auto_lr_error(cls, operator) -> str:
        return (
            f"method=ef with lr=auto needs an operator with a contraction constant delta "
            f"(spec 22: a step of order 1/(delta L)); {operator.display.name} has none; set lr"
        )
