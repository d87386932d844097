//! [`ModelOptimizer`]: gradient accumulation, clipping, AdamW, the learning-rate schedule
//! and EMA over one model's named parameters.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Gradients;
use burn::tensor::Tensor;

use super::adamw::AdamW;
use super::ema::Ema;
use super::lr_schedule::LrSchedule;
use super::param_names::ParamNames;
use crate::error::Result;
use crate::weights::HostTensor;

/// Optimises the parameters of one model (an instance of the architecture of `names`).
pub struct ModelOptimizer {
    names: ParamNames,
    ids: HashMap<ParamId, usize>,
    pub adamw: AdamW,
    pub schedule: LrSchedule,
    /// `max_grad_norm` of `clip_grad_norm_`; `None` does not clip.
    pub max_grad_norm: Option<f64>,
    pub ema: Option<Ema>,
    /// The gradients' total 2-norm before clipping, at the last [`step`](Self::step).
    pub last_grad_norm: f64,
    accumulated: Vec<Option<Tensor<1>>>,
}

impl ModelOptimizer {
    /// An optimiser for `model`, whose parameters `names` lists; `ema_decay` keeps an EMA.
    pub fn new<M: Module>(
        names: ParamNames,
        model: &M,
        adamw: AdamW,
        schedule: LrSchedule,
        max_grad_norm: Option<f64>,
        ema_decay: Option<f64>,
    ) -> Result<Self> {
        let ids = names.bind(model)?;
        let n = names.params().len();
        let ema = ema_decay.map(|d| Ema::new(d, flat_values(model)));
        Ok(Self {
            names,
            ids,
            adamw,
            schedule,
            max_grad_norm,
            ema,
            last_grad_norm: 0.0,
            accumulated: vec![None; n],
        })
    }

    /// The parameter names this optimiser follows.
    pub fn names(&self) -> &ParamNames {
        &self.names
    }

    /// Adds the gradients of `model`'s parameters in `grads` to the accumulated ones.
    pub fn accumulate<M: Module>(&mut self, model: &M, mut grads: Gradients) {
        let mut collector = GradCollector {
            ids: &self.ids,
            grads: &mut grads,
            out: &mut self.accumulated,
        };
        model.visit(&mut collector);
    }

    /// The 2-norm of the accumulated gradients (`clip_grad_norm_`'s total norm).
    pub fn grad_norm(&self) -> f64 {
        let norms: Vec<Tensor<1>> = self
            .accumulated
            .iter()
            .flatten()
            .map(|g| (g.clone() * g.clone()).sum().sqrt())
            .collect();
        if norms.is_empty() {
            return 0.0;
        }
        let total = Tensor::cat(norms, 0);
        (total.clone() * total).sum().sqrt().into_scalar::<f32>() as f64
    }

    /// One optimiser step on the accumulated gradients: clipping, AdamW at the schedule's
    /// learning rate, then the EMA. Returns the updated model and the learning rate used; the
    /// gradient norm is left in [`last_grad_norm`](Self::last_grad_norm).
    pub fn step<M: Module>(&mut self, model: M) -> (M, f64) {
        let lr = self.schedule.lr(self.adamw.step);
        self.last_grad_norm = self.grad_norm();
        if let Some(max) = self.max_grad_norm {
            let coef = (max as f32 / (self.last_grad_norm as f32 + 1e-6)).min(1.0);
            for g in self.accumulated.iter_mut().flatten() {
                *g = g.clone().mul_scalar(coef);
            }
        }
        self.adamw.begin_step();
        let mut mapper = AdamWMapper {
            ids: &self.ids,
            grads: &mut self.accumulated,
            adamw: &mut self.adamw,
            lr,
        };
        let model = model.map(&mut mapper);
        self.accumulated.iter_mut().for_each(|g| *g = None);
        if let Some(ema) = &mut self.ema {
            ema.update(&flat_values(&model));
        }
        (model, lr)
    }

    /// The accumulated gradients under the parameters' stored keys and shapes (zeros for
    /// parameters without one).
    pub fn gradients(&self) -> Vec<(String, HostTensor)> {
        let values = self
            .accumulated
            .iter()
            .zip(self.names.params())
            .map(|(g, p)| {
                g.clone().unwrap_or_else(|| {
                    Tensor::zeros(
                        [p.shape.iter().product::<usize>()],
                        &burn::tensor::Device::flex(),
                    )
                })
            })
            .collect();
        self.names.to_host(values)
    }

    /// `model`'s parameters under their stored keys and shapes.
    pub fn weights<M: Module>(&self, model: &M) -> Vec<(String, HostTensor)> {
        self.names.to_host(flat_values(model))
    }

    /// The EMA's parameters under their stored keys and shapes.
    pub fn ema_weights(&self) -> Option<Vec<(String, HostTensor)>> {
        self.ema
            .as_ref()
            .map(|e| self.names.to_host(e.shadow().to_vec()))
    }
}

/// Every float parameter of `model`, flattened, without autodiff, in visiting order.
pub fn flat_values<M: Module>(model: &M) -> Vec<Tensor<1>> {
    struct Values(Vec<Tensor<1>>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val().inner();
            let n = t.shape().num_elements();
            self.0.push(t.reshape([n]));
        }
    }
    let mut v = Values(Vec::new());
    model.visit(&mut v);
    v.0
}

struct GradCollector<'a> {
    ids: &'a HashMap<ParamId, usize>,
    grads: &'a mut Gradients,
    out: &'a mut Vec<Option<Tensor<1>>>,
}

impl ModuleVisitor for GradCollector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (Some(&i), Some(g)) = (self.ids.get(&param.id), param.val().grad_remove(self.grads))
        else {
            return;
        };
        let n = g.shape().num_elements();
        let g = g.reshape([n]);
        self.out[i] = Some(match self.out[i].take() {
            Some(acc) => acc + g,
            None => g,
        });
    }
}

struct AdamWMapper<'a> {
    ids: &'a HashMap<ParamId, usize>,
    grads: &'a mut Vec<Option<Tensor<1>>>,
    adamw: &'a mut AdamW,
    lr: f64,
}

impl ModuleMapper for AdamWMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self
            .ids
            .get(&id)
            .and_then(|&i| Some((i, self.grads[i].take()?)))
        else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let (index, grad) = grad;
        let require_grad = tensor.is_require_grad();
        let inner = tensor.inner();
        let shape = inner.shape();
        let n = shape.num_elements();
        let updated = self.adamw.update(index, inner.reshape([n]), grad, self.lr);
        let mut updated = Tensor::<D>::from_inner(updated.reshape(shape));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}
